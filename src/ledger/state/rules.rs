//! The version of the state machine's rules. A weft cannot just change how an entry applies: a
//! node replaying old entries under the new rule would reach another state than a node that
//! applied them under the old one, or holds a snapshot past them. So a new rule takes effect
//! from a log entry, [`Command::AdoptRules`], which the leader writes once every raft node
//! (voter or learner) runs a weft that reads it ([`RULES_FORM`]); every node then applies the
//! entries before it by the old rule and those after it by the new one, whatever its code.
//!
//! Members that follow without a raft seat are not waited for, so that no member can hold a
//! rule back by declaring an old weft (any token holder could). An older weft among them does
//! not read the entry: it fetches the state from a voter, as after a lost message, and applies
//! later entries by its old rules, so its own view can differ where a later rule decides.
//!
//! - Version 1 ([`SIGNED_ROLES`]): a role the operator signed for a member stands against the
//!   member's own word ([`super::operator`]).

use super::{Command, LedgerState, Outcome};

/// The operator's signed role for a member stands against the role its join declares and its
/// own unsigned changes.
pub const SIGNED_ROLES: u32 = 1;
/// The newest rules this weft applies.
pub const RULES: u32 = SIGNED_ROLES;
/// The form of the ledger's commands in which [`Command::AdoptRules`] is written
/// ([`super::COMMAND_FORM`]).
pub const RULES_FORM: u32 = 5;

impl LedgerState {
    /// The version of the rules this state applies entries by.
    pub fn rules(&self) -> u32 {
        self.rules
    }

    /// Moves the state to the rules of `version`, never back. A version newer than this weft's
    /// is not taken ([`Outcome::RulesUnknown`]): the leader writes one only once every raft node
    /// reads it, so only a member without a raft seat, running an older weft, meets one.
    pub(super) fn adopt_rules(&mut self, version: u32) -> Outcome {
        if version > RULES {
            return Outcome::RulesUnknown;
        }
        if version >= SIGNED_ROLES && self.rules < SIGNED_ROLES {
            self.adopt_signed_roles();
        }
        self.rules = self.rules.max(version);
        Outcome::Done
    }

    /// The entry the leader writes to move this state to this weft's rules, when the raft
    /// nodes `raft` (PeerIds) all have member records that read it.
    pub fn rules_to_adopt<'a>(
        &self,
        mut raft: impl Iterator<Item = &'a String>,
    ) -> Option<Command> {
        let ready = raft.all(|peer| {
            self.members
                .get(peer)
                .is_some_and(|m| m.platform.commands >= RULES_FORM)
        });
        (self.rules < RULES && ready).then_some(Command::AdoptRules { version: RULES })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::join_reading;
    use super::*;

    #[test]
    fn rules_are_adopted_once_every_raft_node_reads_them_and_never_go_back() {
        let mut s = LedgerState::new("10.1.0.0/24".parse().unwrap());
        s.apply(1, &join_reading("voter", RULES_FORM));
        s.apply(2, &join_reading("old voter", RULES_FORM - 1));
        s.apply(3, &join_reading("old follower", 0));
        let raft = |peers: &[&str]| peers.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        assert_eq!(s.rules(), 0);
        assert_eq!(s.rules_to_adopt(raft(&["voter", "old voter"]).iter()), None);
        assert_eq!(s.rules_to_adopt(raft(&["voter", "no record"]).iter()), None);
        // A member without a raft seat does not hold the rules back, whatever it declares.
        let adopt = s.rules_to_adopt(raft(&["voter"]).iter()).unwrap();
        assert_eq!(s.apply(4, &adopt), Outcome::Done);
        assert_eq!(s.rules(), RULES);
        assert_eq!(s.rules_to_adopt(raft(&["voter"]).iter()), None);
        assert_eq!(
            s.apply(5, &Command::AdoptRules { version: 0 }),
            Outcome::Done
        );
        assert_eq!(s.rules(), RULES, "never back");
        assert_eq!(
            s.apply(6, &Command::AdoptRules { version: RULES + 1 }),
            Outcome::RulesUnknown
        );
        assert_eq!(s.rules(), RULES);
    }
}
