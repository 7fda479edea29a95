//! The members the operator trusts with a raft seat. Any token holder can join, and a raft node
//! may lead, and a leader commits what it likes: a stolen member holding a seat could rewrite
//! the ledger. So in a mesh with an operator key the operator may name the machines it trusts
//! (`weft members trust`, signed): once it names any, only those hold raft seats, vote and
//! lead ([`LedgerState::may_hold_seat`]); the others follow the feed. An untrusted raft node
//! loses its seat as the leader's seat rules replace unfit nodes (`ledger/seats.rs`), the
//! leader's own included, and a node that joins gets a seat only when trusted.
//!
//! The list changes only by the operator's signed [`Command::Trust`] and [`Command::Untrust`]
//! (never unsigned, with or without an operator key: a member that could trust itself alone
//! would take every seat), applied by the rules of [`super::TRUSTED_SEATS`] so that a weft that
//! does not know these commands never holds a seat while one applies. It holds at most
//! [`MAX_TRUSTED`] PeerIds, any of which need not be a member yet (a machine trusted before it
//! joins).

use std::collections::BTreeSet;

use super::bounds::plausible_peer;
use super::operator::SEAT_SUBJECT;
use super::{Command, LedgerState, Outcome, PeerKey};
use crate::operator::Signed;

/// PeerIds the trust list holds: raft seats are a handful, so this is room to spare.
pub const MAX_TRUSTED: usize = 64;

impl LedgerState {
    /// The PeerIds the operator trusts with a raft seat; empty while it trusts none.
    pub fn trusted(&self) -> &BTreeSet<PeerKey> {
        &self.trusted
    }

    /// The operator's signed trust of `peer`, as this ledger applied it last, while `peer` is
    /// trusted: what a leader shows in its hello, so that a node of another cluster can check
    /// with the operator's key that a machine the operator trusts leads this one
    /// (`ledger/merge.rs`).
    pub fn trust_of(&self, peer: &str) -> Option<&Signed> {
        if !self.trusted.contains(peer) {
            return None;
        }
        self.operator.last().get(&format!("{SEAT_SUBJECT}{peer}"))
    }

    /// Whether `peer` may hold a raft seat by the trust list: any member while the operator
    /// trusts none, else only a trusted one.
    pub fn may_hold_seat(&self, peer: &str) -> bool {
        self.trusted.is_empty() || self.trusted.contains(peer)
    }

    /// Applies the operator's signed change of the trust list (the leader verified the
    /// signature): `peer` trusted or, with `trusted` false, no longer. The caller applies it
    /// only under the rules of [`super::TRUSTED_SEATS`] ([`Command::changes_trust`]).
    pub(super) fn set_trust(&mut self, peer: &PeerKey, trusted: bool) -> Outcome {
        if !plausible_peer(peer) {
            return Outcome::NotOperatorCommand;
        }
        if !trusted {
            self.trusted.remove(peer);
        } else if self.trusted.contains(peer) || self.trusted.len() < MAX_TRUSTED {
            self.trusted.insert(peer.clone());
        } else {
            return Outcome::ListFull;
        }
        Outcome::Done
    }
}

impl Command {
    /// Whether this command changes the trust list: before the rules of
    /// [`super::TRUSTED_SEATS`] such a command does nothing and uses up no number, as on a weft
    /// that cannot read it.
    pub fn changes_trust(&self) -> bool {
        matches!(self, Command::Trust { .. } | Command::Untrust { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::state::TRUSTED_SEATS;
    use crate::ledger::state::tests::{pool, run};
    use crate::operator::OperatorSecret;

    fn signed(secret: &OperatorSecret, seq: u64, command: Command) -> Command {
        Command::Operator(Box::new(secret.sign(seq, &command)))
    }

    fn trust(peer: &str) -> Command {
        Command::Trust { peer: peer.into() }
    }

    fn untrust(peer: &str) -> Command {
        Command::Untrust { peer: peer.into() }
    }

    fn adopt() -> Command {
        Command::AdoptRules {
            version: TRUSTED_SEATS,
        }
    }

    #[test]
    fn the_trust_list_changes_only_signed_and_under_its_rules() {
        let secret = OperatorSecret::generate();
        let mut s = LedgerState::new(pool());
        // Before the rules, a signed trust applies as it does on a weft that cannot read it:
        // not at all, and it uses up no number.
        let before = run(&mut s, &[signed(&secret, 1, trust("a"))]);
        assert_eq!(before, [Outcome::NotOperatorCommand]);
        assert!(s.trusted().is_empty() && s.operator_marks().last().is_empty());
        assert!(s.may_hold_seat("b"));
        // Its line in the audit trail is the one a weft that cannot read it writes, so the
        // replicas of both keep the same state.
        let audited = Command::Audited {
            issuer: "p".into(),
            at: 1,
            command: Box::new(signed(&secret, 1, trust("a"))),
        };
        run(&mut s, &[audited]);
        let line = s.audit().last().map(|e| e.action.clone());
        assert_eq!(
            line.as_deref(),
            Some("a signed command that does not decode")
        );
        let outcomes = run(
            &mut s,
            &[
                adopt(),
                trust("b"),
                signed(&secret, 2, trust("a")),
                signed(&secret, 3, trust("b")),
            ],
        );
        assert_eq!(
            outcomes,
            [
                Outcome::Done,
                Outcome::NotOperatorCommand,
                Outcome::Done,
                Outcome::Done
            ]
        );
        assert!(s.may_hold_seat("a") && s.may_hold_seat("b") && !s.may_hold_seat("c"));
        // A replay of the trust of "b" after its withdrawal changes nothing.
        let outcomes = run(
            &mut s,
            &[
                signed(&secret, 4, untrust("b")),
                untrust("a"),
                signed(&secret, 3, trust("b")),
            ],
        );
        assert_eq!(
            outcomes,
            [
                Outcome::Done,
                Outcome::NotOperatorCommand,
                Outcome::OperatorStale
            ]
        );
        assert_eq!(s.trusted().iter().collect::<Vec<_>>(), ["a"]);
        // What a trusted machine shows of its trust: the operator's signed command, while it
        // stands.
        let shown = s.trust_of("a").and_then(|signed| signed.command().ok());
        assert_eq!(shown, Some(trust("a")));
        assert!(s.trust_of("b").is_none() && s.trust_of("c").is_none());
        // Withdrawing the last trust opens the seats to every member again.
        run(&mut s, &[signed(&secret, 5, untrust("a"))]);
        assert!(s.trusted().is_empty() && s.may_hold_seat("c"));
        assert!(s.trust_of("a").is_none());
    }

    #[test]
    fn the_trust_list_is_bounded_and_takes_no_text_that_is_no_peer_id() {
        let secret = OperatorSecret::generate();
        let mut s = LedgerState::new(pool());
        run(&mut s, &[adopt()]);
        let commands: Vec<Command> = (0..=MAX_TRUSTED)
            .map(|i| signed(&secret, i as u64 + 1, trust(&format!("p{i}"))))
            .collect();
        let outcomes = run(&mut s, &commands);
        assert!(outcomes[..MAX_TRUSTED].iter().all(|o| *o == Outcome::Done));
        assert_eq!(outcomes[MAX_TRUSTED], Outcome::ListFull);
        assert_eq!(s.trusted().len(), MAX_TRUSTED);
        let long = "p".repeat(super::super::bounds::PEER_KEY_LIMIT + 1);
        let outcome = run(&mut s, &[signed(&secret, 1000, untrust(&long))]);
        assert_eq!(outcome, [Outcome::NotOperatorCommand]);
    }
}
