//! Which commands are the operator's, and how a signed one applies. In a mesh with an operator
//! key ([`crate::operator`]) the leader takes these only signed by it
//! ([`crate::ledger::authority::may_propose`]): removing or fixing the role of another member,
//! denying or allowing any PeerId, trusting one with a raft seat ([`super::trust`]), reserving
//! or freeing an address, and the role policy; a token rotation only with the operator's signed
//! grant for it. What a member says for itself (leaving, fixing its own role) stays its own,
//! until the operator signs that member's role:
//! under the rules of [`super::SIGNED_ROLES`], the role the operator last signed for a member
//! and that applied stands against the role the member's join declares, after a removal too,
//! and against its own unsigned changes. Under the rules of [`super::ROLES_AHEAD`] it stands
//! too when signed for a PeerId that is not a member yet, for when it joins.
//!
//! Each operator command has a subject: a PeerId (denial and allowance share it), a member's
//! removal, a member's role, an address, the policy, a PeerId's trust. The state keeps the last
//! signed command applied for each subject, and applies a signed command only when its number
//! is above that one's. So a member that read a signed command in the log cannot commit it
//! again later (an old removal, once the member rejoined, or an old denial after the operator
//! allowed the PeerId back), and a merge carries each subject's last signed command into the
//! winner, where the later of the two clusters' commands wins ([`crate::ledger::merge`]). A
//! removal is an act, not a lasting fact: it is signed for one cluster
//! ([`crate::operator::Signed::cluster`]), never carried, and refused in any other. A command
//! that fails (an unknown member, a deployed role without force) still uses up its number, so
//! it cannot be replayed once it would succeed. A rotation's grant is the subject `token`. The
//! table holds [`MAX_MARKS`] subjects; to make room it drops the lowest-numbered, and from then
//! on nothing numbered at or below it applies (a merge does not carry that floor).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    Command, FixedRole, LedgerState, NETWORK_BOUND, Outcome, PeerKey, ROLES_AHEAD, SIGNED_ROLES,
    TRUSTED_SEATS,
};
use crate::operator::Signed;

/// How the subject of a member's role begins; its PeerId follows.
const ROLE_SUBJECT: &str = "role ";
/// How the subject of a PeerId's trust with a raft seat begins; the PeerId follows.
pub(super) const SEAT_SUBJECT: &str = "seat ";
/// The subject of the operator's grants of token rotations.
pub const ROTATION: &str = "token";
/// Subjects whose last signed command the state keeps.
pub const MAX_MARKS: usize = 4096;
/// The longest signed command (its JSON) the state applies: an operator command names a
/// PeerId, an address or a role, far less than this.
pub const MAX_SIGNED_COMMAND: usize = 512;
/// The longest cluster or network id a signed command the state applies names, under the rules
/// of [`NETWORK_BOUND`]: a leader takes only its own (16 hex digits each), and the state keeps
/// what applies.
pub const MAX_SCOPE: usize = 64;

/// Whether `command`, proposed by `sender` (a PeerId), is the operator's to make.
pub fn needs_operator(command: &Command, sender: &str) -> bool {
    match command {
        Command::Leave { peer } | Command::SetFixedRole { peer, .. } => peer != sender,
        Command::Deny { .. }
        | Command::Allow { .. }
        | Command::Trust { .. }
        | Command::Untrust { .. }
        | Command::Reserve { .. }
        | Command::Unreserve { .. }
        | Command::SetRolePolicy(_) => true,
        _ => false,
    }
}

/// What an operator command is about; `None` for a command that is not one.
pub fn subject(command: &Command) -> Option<String> {
    match command {
        // A removal is an act, kept apart from the denial and allowance of the same PeerId so
        // that it never stands in for them in a merge.
        Command::Leave { peer } => Some(format!("member {peer}")),
        Command::Deny { peer } | Command::Allow { peer } => Some(format!("peer {peer}")),
        Command::Trust { peer } | Command::Untrust { peer } => {
            Some(format!("{SEAT_SUBJECT}{peer}"))
        }
        Command::SetFixedRole { peer, .. } => Some(format!("{ROLE_SUBJECT}{peer}")),
        Command::Reserve { address, .. } | Command::Unreserve { address } => {
            Some(format!("address {address}"))
        }
        Command::SetRolePolicy(_) => Some("policy".into()),
        _ => None,
    }
}

/// The subject of a signed command, when it is one of the operator's within the size the
/// state keeps.
pub(crate) fn signed_subject(signed: &Signed) -> Option<String> {
    if signed.command.len() > MAX_SIGNED_COMMAND {
        return None;
    }
    subject(&signed.command().ok()?)
}

/// The last signed command applied for each subject.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marks {
    last: BTreeMap<String, Signed>,
    /// The highest number dropped to make room: nothing at or below it applies any more.
    floor: u64,
    /// Under [`SIGNED_ROLES`], the role the operator signed last for each member and that
    /// applied (`None`: not fixed). An entry goes with its subject's mark, so the table is
    /// bounded as the marks are.
    #[serde(default)]
    roles: BTreeMap<PeerKey, Option<FixedRole>>,
}

impl Marks {
    /// The last signed command applied for each subject.
    pub fn last(&self) -> &BTreeMap<String, Signed> {
        &self.last
    }

    /// Whether a command numbered `seq` about `subject` is newer than what was applied.
    pub(crate) fn fresh(&self, subject: &str, seq: u64) -> bool {
        seq > self.floor && self.last.get(subject).is_none_or(|last| seq > last.seq)
    }

    fn record(&mut self, subject: String, signed: Signed) {
        if !self.last.contains_key(&subject) && self.last.len() >= MAX_MARKS {
            let lowest = self
                .last
                .iter()
                .min_by_key(|(_, s)| s.seq)
                .map(|(k, s)| (k.clone(), s.seq));
            if let Some((key, seq)) = lowest {
                self.last.remove(&key);
                if let Some(peer) = key.strip_prefix(ROLE_SUBJECT) {
                    self.roles.remove(peer);
                }
                self.floor = self.floor.max(seq);
            }
        }
        self.last.insert(subject, signed);
    }
}

impl LedgerState {
    /// The operator's signed commands, last per subject.
    pub fn operator_marks(&self) -> &Marks {
        &self.operator
    }

    /// Applies `apply` under the operator's `grant` (the leader verified its signature and
    /// that it allows this rotation): when the grant is newer than the last one, which it then
    /// becomes.
    pub(super) fn apply_grant(
        &mut self,
        grant: &Signed,
        apply: impl FnOnce(&mut LedgerState) -> Outcome,
    ) -> Outcome {
        if !self.operator.fresh(ROTATION, grant.seq) {
            return Outcome::OperatorStale;
        }
        let outcome = apply(self);
        self.operator.record(ROTATION.into(), grant.clone());
        outcome
    }

    /// Applies a command the operator signed (the leader verified the signature): the command
    /// it holds, when newer than the last one applied for its subject.
    pub(super) fn apply_signed(&mut self, signed: &Signed) -> Outcome {
        let (Some(subject), Ok(command)) = (signed_subject(signed), signed.command()) else {
            return Outcome::NotOperatorCommand;
        };
        let scope = [&signed.cluster, &signed.network];
        if self.rules >= NETWORK_BOUND && scope.into_iter().flatten().any(|s| s.len() > MAX_SCOPE) {
            return Outcome::NotOperatorCommand;
        }
        if command.changes_trust() && self.rules < TRUSTED_SEATS {
            return Outcome::NotOperatorCommand;
        }
        if !self.operator.fresh(&subject, signed.seq) {
            return Outcome::OperatorStale;
        }
        let outcome = match &command {
            // Signed for a PeerId that is not a member, it waits for the member's join (one
            // that could be a PeerId's text at all).
            Command::SetFixedRole { peer, .. }
                if self.rules >= ROLES_AHEAD
                    && !self.members.contains_key(peer)
                    && super::bounds::plausible_peer(peer) =>
            {
                Outcome::Done
            }
            // Signed, a role change is the operator's, whatever the member's own word was.
            Command::SetFixedRole { peer, role, force } => self.set_fixed_role(peer, *role, *force),
            Command::Trust { peer } => self.set_trust(peer, true),
            Command::Untrust { peer } => self.set_trust(peer, false),
            command => self.execute(command),
        };
        self.operator.record(subject, signed.clone());
        if let Command::SetFixedRole { peer, role, .. } = command
            && outcome == Outcome::Done
            && self.rules >= SIGNED_ROLES
        {
            self.operator.roles.insert(peer, role);
        }
        outcome
    }

    /// The role the operator signed last for `peer` and that applied (`Some(None)`: not
    /// fixed), under the rules of [`SIGNED_ROLES`]. It stands against the member's own word:
    /// the role its join declares and its own unsigned changes
    /// ([`LedgerState::own_fixed_role`]).
    pub(crate) fn signed_role(&self, peer: &str) -> Option<Option<FixedRole>> {
        if self.rules < SIGNED_ROLES {
            return None;
        }
        self.operator.roles.get(peer).copied()
    }

    /// An unsigned [`Command::SetFixedRole`]: a member's change of its own role (or, in a mesh
    /// without an operator key, of any member's), refused once the operator's signed role for
    /// that member stands ([`Outcome::OperatorRole`]).
    pub(super) fn own_fixed_role(
        &mut self,
        peer: &PeerKey,
        role: Option<FixedRole>,
        force: bool,
    ) -> Outcome {
        if self.signed_role(peer).is_some() {
            return Outcome::OperatorRole;
        }
        self.set_fixed_role(peer, role, force)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::state::{BootstrapReport, Phase, Role};
    use crate::operator::OperatorSecret;

    fn state() -> LedgerState {
        LedgerState::new("10.1.0.0/24".parse().unwrap())
    }

    /// `peer`'s role fixed to `role`, without force.
    fn fix(peer: &str, role: Option<FixedRole>) -> Command {
        Command::SetFixedRole {
            peer: peer.into(),
            role,
            force: false,
        }
    }

    fn signed(secret: &OperatorSecret, seq: u64, command: Command) -> Command {
        Command::Operator(Box::new(secret.sign(seq, &command)))
    }

    #[test]
    fn under_the_network_bound_rules_a_signed_command_naming_an_overlong_scope_does_not_apply() {
        let secret = OperatorSecret::generate();
        let deny = Command::Deny { peer: "p".into() };
        let named = |seq, network: String| {
            let scope = crate::operator::Scope {
                cluster: None,
                network: Some(network),
            };
            Command::Operator(Box::new(secret.sign_in(seq, &deny, scope)))
        };
        let long = "a".repeat(MAX_SCOPE + 1);
        let mut s = LedgerState::new("10.1.0.0/24".parse().unwrap());
        // Before the rules, it applies as it always did.
        assert_eq!(s.apply(1, &named(1, long.clone())), Outcome::Done);
        s.apply(
            2,
            &Command::AdoptRules {
                version: NETWORK_BOUND,
            },
        );
        assert_eq!(
            s.apply(3, &named(2, long.clone())),
            Outcome::NotOperatorCommand
        );
        assert_eq!(s.apply(4, &named(3, "a".repeat(MAX_SCOPE))), Outcome::Done);
    }

    #[test]
    fn what_a_member_says_for_itself_needs_no_operator() {
        let leave = |p: &str| Command::Leave { peer: p.into() };
        assert!(!needs_operator(&leave("a"), "a"));
        assert!(needs_operator(&leave("b"), "a"));
        let fix = |p: &str| Command::SetFixedRole {
            peer: p.into(),
            role: None,
            force: false,
        };
        assert!(!needs_operator(&fix("a"), "a"));
        assert!(needs_operator(&fix("b"), "a"));
        assert!(needs_operator(&Command::Deny { peer: "a".into() }, "a"));
        let put = Command::KvPut {
            bucket: "b".into(),
            key: "k".into(),
            value: "v".into(),
        };
        assert!(!needs_operator(&put, "a"));
        assert_eq!(subject(&put), None);
    }

    #[test]
    fn under_the_signed_roles_rules_a_role_the_operator_signed_stands_against_the_members_word() {
        use super::super::tests::join_declaring;
        let secret = OperatorSecret::generate();
        let mut s = state();
        let role = |s: &LedgerState, peer: &str| s.members()[peer].fixed_role;
        let declaring = |peer: &str, role| join_declaring(peer, role, None, true);
        let worker = Some(FixedRole::Worker);
        let master = Some(FixedRole::Master);
        let mut index = 0;
        let mut apply = |s: &mut LedgerState, command: &Command| {
            index += 1;
            s.apply(index, command)
        };
        // Before the mesh adopts the rules, entries apply as they always did: the member's
        // own word replaces the operator's.
        apply(&mut s, &declaring("m", master));
        assert_eq!(
            apply(&mut s, &signed(&secret, 10, fix("m", worker))),
            Outcome::Done
        );
        assert_eq!(apply(&mut s, &fix("m", master)), Outcome::Done);
        assert_eq!(role(&s, "m"), master);
        // "d" deploys a worker; the operator's master without force fails, and must not stand.
        apply(&mut s, &declaring("d", worker));
        let deployed = BootstrapReport {
            role: Some(Role::Worker),
            phase: Phase::Deployed,
            detail: String::new(),
            at: 1,
        };
        apply(
            &mut s,
            &Command::ReportBootstrap {
                peer: "d".into(),
                report: deployed,
                restored: false,
            },
        );
        assert_eq!(
            apply(
                &mut s,
                &Command::AdoptRules {
                    version: SIGNED_ROLES
                }
            ),
            Outcome::Done
        );
        // Adopted: a role signed before stands only once signed again.
        assert_eq!(apply(&mut s, &fix("m", None)), Outcome::Done);
        // A signed role that failed does not stand.
        let failed = signed(&secret, 12, fix("d", master));
        assert_eq!(apply(&mut s, &failed), Outcome::RoleDeployed);
        assert_eq!(apply(&mut s, &fix("d", worker)), Outcome::Done);
        // Once the operator signs its role, neither its own change nor its join replaces it.
        assert_eq!(
            apply(&mut s, &signed(&secret, 13, fix("m", master))),
            Outcome::Done
        );
        assert_eq!(apply(&mut s, &fix("m", None)), Outcome::OperatorRole);
        apply(&mut s, &declaring("m", worker));
        assert_eq!(role(&s, "m"), master);
        // Removed and back, it takes the role the operator signed, not the one it declares.
        apply(&mut s, &Command::Leave { peer: "m".into() });
        apply(&mut s, &declaring("m", worker));
        assert_eq!(role(&s, "m"), master);
        // The operator unfixes it: it stays unfixed, whatever it declares.
        assert_eq!(
            apply(&mut s, &signed(&secret, 14, fix("m", None))),
            Outcome::Done
        );
        apply(&mut s, &declaring("m", worker));
        assert_eq!(role(&s, "m"), None);
        // Another member's own word is still its own.
        apply(&mut s, &declaring("n", worker));
        assert_eq!(role(&s, "n"), worker);
    }

    #[test]
    fn under_the_roles_ahead_rules_a_role_signed_before_the_member_joins_stands_once_it_does() {
        use super::super::tests::join_declaring;
        let secret = OperatorSecret::generate();
        let mut s = state();
        let master = Some(FixedRole::Master);
        let worker = Some(FixedRole::Worker);
        let adopt = |version| Command::AdoptRules { version };
        s.apply(1, &adopt(SIGNED_ROLES));
        // Under the signed roles' rules, a role for a PeerId that is not a member fails, and
        // uses up its number: the member declares its own.
        let early = signed(&secret, 10, fix("a", worker));
        assert_eq!(s.apply(2, &early), Outcome::UnknownMember);
        s.apply(3, &join_declaring("a", master, None, true));
        assert_eq!(s.members()["a"].fixed_role, master);
        assert_eq!(s.apply(4, &adopt(ROLES_AHEAD)), Outcome::Done);
        // Now it stands for when the member joins, against what it declares and its own word.
        let ahead = signed(&secret, 11, fix("b", worker));
        assert_eq!(s.apply(5, &ahead), Outcome::Done);
        assert!(!s.members().contains_key("b"), "no member made");
        s.apply(6, &join_declaring("b", master, None, true));
        assert_eq!(s.members()["b"].fixed_role, worker);
        assert_eq!(s.apply(7, &fix("b", master)), Outcome::OperatorRole);
        // Its number is used up as any signed command's.
        assert_eq!(s.apply(8, &ahead), Outcome::OperatorStale);
    }

    #[test]
    fn a_signed_command_applies_once_and_an_older_one_for_its_subject_never() {
        let secret = OperatorSecret::generate();
        let mut s = state();
        let deny = signed(&secret, 10, Command::Deny { peer: "x".into() });
        assert_eq!(s.apply(1, &deny), Outcome::Done);
        assert!(s.is_denied("x"));
        let allow = signed(&secret, 20, Command::Allow { peer: "x".into() });
        assert_eq!(s.apply(2, &allow), Outcome::Done);
        assert!(!s.is_denied("x"));
        // The denial read from the log, proposed again: refused, x stays allowed.
        assert_eq!(s.apply(3, &deny), Outcome::OperatorStale);
        assert!(!s.is_denied("x"));
        // Another subject is not held back by x's numbers.
        let other = signed(&secret, 5, Command::Deny { peer: "y".into() });
        assert_eq!(s.apply(4, &other), Outcome::Done);
        assert!(s.is_denied("y"));
    }

    #[test]
    fn a_rotation_grant_is_used_once() {
        let secret = OperatorSecret::generate();
        let mut s = state();
        let grant = secret.sign(
            7,
            &Command::AllowRotation {
                cluster: "0000000000000001".into(),
                previous: "old".into(),
                rotation: None,
            },
        );
        let rotate = |network: &str| Command::RotateToken {
            rotation: Box::new(super::super::TokenRotation {
                network: network.into(),
                previous: "old".into(),
                grace_until: 1,
                sealed: super::super::SealedToken {
                    ephemeral: String::new(),
                    token: String::new(),
                    keys: Default::default(),
                },
                pages: vec![],
            }),
            secrets: Default::default(),
            grant: Some(Box::new(grant.clone())),
        };
        assert_eq!(s.apply(1, &rotate("mine")), Outcome::Done);
        assert_eq!(s.apply(2, &rotate("theirs")), Outcome::OperatorStale);
        assert_eq!(s.token_rotation().unwrap().network, "mine");
    }

    #[test]
    fn what_is_not_an_operator_command_does_not_apply_signed() {
        let secret = OperatorSecret::generate();
        let mut s = state();
        let put = signed(
            &secret,
            1,
            Command::KvPut {
                bucket: "b".into(),
                key: "k".into(),
                value: "v".into(),
            },
        );
        assert_eq!(s.apply(1, &put), Outcome::NotOperatorCommand);
        assert!(s.buckets().is_empty());
        let nested = signed(
            &secret,
            2,
            signed(&secret, 1, Command::Allow { peer: "x".into() }),
        );
        assert_eq!(s.apply(2, &nested), Outcome::NotOperatorCommand);
    }

    #[test]
    fn a_full_table_drops_its_lowest_number_and_refuses_everything_at_or_below_it() {
        let secret = OperatorSecret::generate();
        let mut marks = Marks::default();
        for i in 0..MAX_MARKS as u64 {
            let command = Command::Allow {
                peer: format!("p{i}"),
            };
            marks.record(format!("peer p{i}"), secret.sign(i + 1, &command));
        }
        assert!(marks.fresh("peer new", 1));
        let command = Command::Allow { peer: "new".into() };
        marks.record("peer new".into(), secret.sign(9000, &command));
        assert_eq!(marks.last.len(), MAX_MARKS);
        assert!(!marks.last.contains_key("peer p0"));
        assert!(
            !marks.fresh("peer p0", 1),
            "the dropped subject's old number"
        );
        assert!(!marks.fresh("peer other", 1), "any number at the floor");
        assert!(marks.fresh("peer other", 2));
    }
}
