//! The version of the state machine's rules. A weft cannot just change how an entry applies: a
//! node replaying old entries under the new rule would reach another state than a node that
//! applied them under the old one, or holds a snapshot past them. So a new rule takes effect
//! from a log entry, [`Command::AdoptRules`], which the leader writes once every raft node
//! (voter or learner) runs a weft that reads it (the form of that version in [`FORMS`]; the
//! newest such version, [`RULES_FORM`] for this weft's); every node then applies the
//! entries before it by the old rule and those after it by the new one, whatever its code.
//!
//! Members that follow without a raft seat are not waited for, so that a member without one
//! cannot hold a rule back by declaring an old weft (any token holder could). An older weft
//! among them does not read the entry: it fetches the state from a voter, as after a lost
//! message, and applies later entries by its old rules, so its own view can differ where a
//! later rule decides. Once rules are adopted, a raft seat goes only to a weft that reads them
//! ([`LedgerState::may_seat`]), and a state whose rules are newer than this weft's does not
//! decode here ([`known`]): a node that restores or catches up from one stops with a message
//! to upgrade, and a raft node whose record comes to say it runs an older weft loses its seat
//! ([`LedgerState::outdated`], `ledger/seats.rs`). A follower that meets the adoption of rules
//! newer than its own in the feed
//! applies it as [`Outcome::RulesUnknown`] and goes on by its own rules, as such a follower
//! does today.
//!
//! - Version 1 ([`SIGNED_ROLES`]): a role the operator signed for a member stands against the
//!   member's own word ([`super::operator`]).
//! - Version 2 ([`ROLES_AHEAD`]): a role the operator signs for a PeerId that is not a member
//!   stands for when it joins, where it failed as an unknown member before (a role carried by a
//!   merge ahead of its member, or set for a machine before it first starts).
//! - Version 3 ([`NETWORK_BOUND`]): every raft node, any of which may lead and so check the
//!   operator's signatures, checks one signed for one network
//!   ([`crate::operator::Signed::network`]); the operator's CLI signs so only from then on,
//!   since a leader of an earlier weft would find such a signature false. A signed command
//!   naming a cluster or network longer than [`super::operator::MAX_SCOPE`] (no honest leader
//!   commits one) does not apply, so the state keeps no such text.
//! - Version 4 ([`TRUSTED_SEATS`]): the operator's signed trust of a member with a raft seat
//!   applies ([`super::trust`]); before it, such a command does nothing, as on a weft that
//!   cannot read it.
//! - Version 5 ([`TRUSTED_LEAD`]): once trusted machines hold most voter seats, raft nodes
//!   take raft RPCs from trusted ones only (`ledger/authority.rs`, `may_lead`). Not a rule of
//!   how entries apply, but one every raft node must keep: a voter of an earlier weft that
//!   still answered an untrusted leader would keep it in office, with the trusted voters
//!   that refuse it shut out of the log.

use serde::{Deserialize, Deserializer};

use super::{Command, LedgerState, Outcome};

/// The operator's signed role for a member stands against the role its join declares and its
/// own unsigned changes.
pub const SIGNED_ROLES: u32 = 1;
/// The operator's signed role for a PeerId that is not a member stands for when it joins.
pub const ROLES_AHEAD: u32 = 2;
/// Every raft node checks an operator's command signed for one network.
pub const NETWORK_BOUND: u32 = 3;
/// The operator's signed trust list decides who may hold a raft seat.
pub const TRUSTED_SEATS: u32 = 4;
/// Once trusted machines hold most voter seats, only they lead.
pub const TRUSTED_LEAD: u32 = 5;
/// The newest rules this weft applies. A new version adds its form to [`FORMS`].
pub const RULES: u32 = TRUSTED_LEAD;
/// For each version of the rules, the form of the ledger's commands a weft must read to apply
/// entries by it ([`super::COMMAND_FORM`]): version 0 needs none.
const FORMS: [u32; RULES as usize + 1] = [0, 5, 6, 7, 8, 9];
/// The form in which [`Command::AdoptRules`] of [`RULES`] is written.
pub const RULES_FORM: u32 = FORMS[RULES as usize];

/// Decodes a state's rules version, refusing one newer than this weft's: applying later
/// entries by older rules would make this node's state differ from the others'.
pub(super) fn known<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    let version = u32::deserialize(deserializer)?;
    if version > RULES {
        return Err(serde::de::Error::custom(format!(
            "the ledger's rules are of version {version}, newer than this weft's ({RULES}): \
             upgrade weft on this node"
        )));
    }
    Ok(version)
}

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
        self.rules = self.rules.max(version);
        Outcome::Done
    }

    /// Whether a raft seat may go to a node whose weft reads the ledger's commands up to
    /// `form`: once rules are adopted, only when it reads the form they need (not this weft's
    /// newest), since a raft node applies every entry and may lead.
    pub fn may_seat(&self, form: u32) -> bool {
        FORMS
            .get(self.rules as usize)
            .is_some_and(|needed| form >= *needed)
    }

    /// Whether `peer`'s member record says its weft does not read the rules this state applies
    /// by (one taken back to an older weft after the adoption): it may not hold a raft seat.
    /// No record says nothing.
    pub fn outdated(&self, peer: &str) -> bool {
        self.members
            .get(peer)
            .is_some_and(|m| !self.may_seat(m.platform.commands))
    }

    /// The entry the leader writes to move this state forward: to the newest rules of this
    /// weft that every raft node of `raft` (PeerIds) has a member record reading (one without
    /// a record reads none), when newer than the state's.
    pub fn rules_to_adopt<'a>(&self, raft: impl Iterator<Item = &'a String>) -> Option<Command> {
        let least = raft
            .map(|peer| self.members.get(peer).map_or(0, |m| m.platform.commands))
            .min()
            .unwrap_or(RULES_FORM);
        let version = (0..=RULES)
            .rev()
            .find(|version| FORMS[*version as usize] <= least)?;
        (version > self.rules).then_some(Command::AdoptRules { version })
    }

    /// What `weft status` says while this weft's rules wait for raft nodes `raft` (PeerIds)
    /// whose record says they run an older weft (up to eight named), so that the operator
    /// knows whom to upgrade; `None` once adopted or when none does. A raft node without a
    /// record yet (one that just joined) holds the rules back too, for a moment, unnamed.
    pub fn rules_note<'a>(&self, raft: impl Iterator<Item = &'a String>) -> Option<String> {
        if self.rules >= RULES {
            return None;
        }
        let waiting: Vec<(&String, &super::Member)> = self
            .not_reading_rules(raft)
            .filter_map(|peer| Some((peer, self.members.get(peer)?)))
            .collect();
        if waiting.is_empty() {
            return None;
        }
        let named: Vec<String> = waiting
            .iter()
            .take(8)
            .map(|(peer, m)| format!("{} ({peer}, weft {})", m.hostname, m.platform.version))
            .collect();
        Some(format!(
            "the ledger's rules stay at version {} until every raft node runs a weft that reads \
             version {RULES}; raft nodes on an older weft ({}): {}{}",
            self.rules,
            waiting.len(),
            named.join(", "),
            if waiting.len() > named.len() {
                ", ..."
            } else {
                ""
            }
        ))
    }

    /// The raft nodes of `raft` whose member record does not say they read this weft's rules.
    fn not_reading_rules<'s, 'a>(
        &'s self,
        raft: impl Iterator<Item = &'a String> + 's,
    ) -> impl Iterator<Item = &'a String> + 's {
        raft.filter(|peer| {
            self.members
                .get(*peer)
                .is_none_or(|m| m.platform.commands < RULES_FORM)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::join_reading;
    use super::*;

    /// A state of three members, before any rules: one reading them, one reading the form
    /// before, one the oldest (applied at indexes 1 to 3).
    fn mixed() -> LedgerState {
        let mut s = LedgerState::new("10.1.0.0/24".parse().unwrap());
        s.apply(1, &join_reading("voter", RULES_FORM));
        s.apply(2, &join_reading("old voter", RULES_FORM - 1));
        s.apply(3, &join_reading("old follower", 0));
        s
    }

    #[test]
    fn rules_are_adopted_once_every_raft_node_reads_them_and_never_go_back() {
        let mut s = mixed();
        let raft = |peers: &[&str]| peers.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        assert_eq!(s.rules(), 0);
        assert_eq!(s.rules_to_adopt(raft(&["voter", "no record"]).iter()), None);
        assert_eq!(
            s.rules_to_adopt(raft(&["voter", "old follower"]).iter()),
            None
        );
        // The newest rules every raft node reads, short of this weft's.
        let older = s.rules_to_adopt(raft(&["voter", "old voter"]).iter());
        assert_eq!(older, Some(Command::AdoptRules { version: RULES - 1 }));
        assert_eq!(s.apply(4, &older.unwrap()), Outcome::Done);
        assert_eq!(s.rules(), RULES - 1);
        assert_eq!(s.rules_to_adopt(raft(&["voter", "old voter"]).iter()), None);
        // A member without a raft seat does not hold the rules back, whatever it declares.
        let adopt = s.rules_to_adopt(raft(&["voter"]).iter()).unwrap();
        assert_eq!(s.apply(5, &adopt), Outcome::Done);
        assert_eq!(s.rules(), RULES);
        assert_eq!(s.rules_to_adopt(raft(&["voter"]).iter()), None);
        assert_eq!(
            s.apply(6, &Command::AdoptRules { version: 0 }),
            Outcome::Done
        );
        assert_eq!(s.rules(), RULES, "never back");
        assert_eq!(
            s.apply(7, &Command::AdoptRules { version: RULES + 1 }),
            Outcome::RulesUnknown
        );
        assert_eq!(s.rules(), RULES);
    }

    #[test]
    fn status_names_the_raft_nodes_that_hold_the_rules_back_until_they_are_adopted() {
        let mut s = mixed();
        let raft = ["voter", "old voter", "learner"].map(String::from);
        let note = s.rules_note(raft.iter()).unwrap();
        assert!(note.contains("an older weft (1)"), "{note}");
        assert!(note.contains("host-old voter (old voter"), "{note}");
        assert!(
            !note.contains("learner"),
            "a raft node without a record yet: {note}"
        );
        assert!(!note.contains("old follower"), "{note}");
        assert_eq!(s.rules_note(raft[..1].iter()), None);
        s.apply(4, &Command::AdoptRules { version: RULES });
        assert_eq!(s.rules_note(raft.iter()), None);
    }

    #[test]
    fn a_log_with_rules_adopted_in_it_gives_one_state_replayed_or_restored_at_any_entry() {
        use super::super::tests::join_declaring;
        use crate::ledger::state::FixedRole;
        let secret = crate::operator::OperatorSecret::generate();
        let fix = |role| Command::SetFixedRole {
            peer: "m".into(),
            role,
            force: false,
        };
        let signed =
            |seq, command: Command| Command::Operator(Box::new(secret.sign(seq, &command)));
        let declaring = |role| join_declaring("m", role, None, true);
        // A role for a member to come, before and after the rules that make it stand.
        let ahead = |role| Command::SetFixedRole {
            peer: "g".into(),
            role,
            force: false,
        };
        let log = vec![
            declaring(Some(FixedRole::Master)),
            signed(1, fix(Some(FixedRole::Worker))),
            fix(Some(FixedRole::Master)),
            declaring(Some(FixedRole::Worker)),
            Command::AdoptRules {
                version: SIGNED_ROLES,
            },
            signed(3, ahead(Some(FixedRole::Worker))),
            Command::AdoptRules { version: RULES },
            signed(4, ahead(Some(FixedRole::Worker))),
            join_declaring("g", Some(FixedRole::Master), None, true),
            declaring(Some(FixedRole::Master)),
            signed(2, fix(Some(FixedRole::Worker))),
            fix(Some(FixedRole::Master)),
            Command::Leave { peer: "m".into() },
            declaring(Some(FixedRole::Master)),
        ];
        let replay = |state: &mut LedgerState, from: usize| {
            for (i, command) in log.iter().enumerate().skip(from) {
                state.apply(i as u64 + 1, command);
            }
        };
        let mut whole = LedgerState::new("10.1.0.0/24".parse().unwrap());
        replay(&mut whole, 0);
        assert_eq!(whole.rules(), RULES);
        assert_eq!(whole.members()["m"].fixed_role, Some(FixedRole::Worker));
        assert_eq!(whole.members()["g"].fixed_role, Some(FixedRole::Worker));
        for at in 0..=log.len() {
            let mut first = LedgerState::new("10.1.0.0/24".parse().unwrap());
            for (i, command) in log.iter().enumerate().take(at) {
                first.apply(i as u64 + 1, command);
            }
            let mut restored = LedgerState::restore(&first.snapshot()).unwrap();
            replay(&mut restored, at);
            assert_eq!(restored, whole, "restored after entry {at}");
        }
    }

    #[test]
    fn a_state_of_newer_rules_does_not_decode() {
        let mut s = LedgerState::new("10.1.0.0/24".parse().unwrap());
        s.rules = RULES + 1;
        let error = LedgerState::restore(&s.snapshot()).unwrap_err().to_string();
        assert!(error.contains("upgrade weft"), "{error}");
        s.rules = RULES;
        assert!(LedgerState::restore(&s.snapshot()).is_ok());
    }

    #[test]
    fn once_rules_are_adopted_a_raft_seat_goes_only_to_a_weft_that_reads_them() {
        let mut s = LedgerState::new("10.1.0.0/24".parse().unwrap());
        assert!(s.may_seat(0));
        s.apply(1, &Command::AdoptRules { version: RULES });
        assert!(!s.may_seat(0));
        assert!(!s.may_seat(RULES_FORM - 1));
        assert!(s.may_seat(RULES_FORM));
    }
}
