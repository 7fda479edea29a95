//! A trusted voter takes the lead from a leader the operator does not trust. Once the operator
//! trusts some machines with raft seats (`ledger/state/trust.rs`), the leader replaces its
//! untrusted voters, itself included, by trusted learners; with no trusted learner to step in
//! (every trusted machine already votes) an untrusted leader would keep leading, since openraft
//! 0.9 cannot hand the lead over. So a voter the operator trusts, caught up with the log and
//! hearing from the leader, stands for election when that leader is not trusted, at most once
//! per [`CAMPAIGN_BACKOFF`]: with its log as long as any, a majority elects it, and the leader
//! steps down at the higher term. The decision is pure and time-injected ([`should_campaign`]).
//!
//! An honest untrusted leader then follows. A hostile one can stand again and, elected, lead
//! until the next campaign: raft gives no way to keep a voter from standing, and refusing its
//! votes would leave the cluster headless whenever the trusted voters are down.

use std::time::{Duration, Instant};

use super::Ledger;

/// How long a trusted voter waits between two campaigns against an untrusted leader: long
/// enough that a lost election, or a hostile leader elected back, does not keep the cluster
/// electing.
pub const CAMPAIGN_BACKOFF: Duration = Duration::from_secs(30);

/// What a voter sees when it considers a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    /// This node holds a voter seat and does not lead.
    pub follows_as_voter: bool,
    /// The operator trusts this node with a seat, in a ledger whose trust list is not empty.
    pub trusted: bool,
    /// The operator does not trust the leader this node follows (false with no leader known).
    pub leader_untrusted: bool,
    /// This node's log is caught up: every entry it holds is applied, and its leader is not
    /// silent.
    pub caught_up: bool,
}

/// Whether a voter that sees `view` at `now`, having last stood at `last`, stands for election.
pub fn should_campaign(view: View, last: Option<Instant>, now: Instant) -> bool {
    view.follows_as_voter
        && view.trusted
        && view.leader_untrusted
        && view.caught_up
        && last.is_none_or(|last| now.duration_since(last) >= CAMPAIGN_BACKOFF)
}

/// What `ledger` sees at `now` ([`View`]).
pub fn view(ledger: &Ledger, now: Instant) -> View {
    let metrics = ledger.raft().metrics().borrow().clone();
    let own = ledger.node_id();
    let membership = metrics.membership_config.membership();
    let follows_as_voter = metrics.current_leader.is_some_and(|leader| leader != own)
        && membership.voter_ids().any(|id| id == own);
    let state = ledger.state();
    let leader_peer = metrics
        .current_leader
        .and_then(|leader| membership.get_node(&leader))
        .map(|node| node.peer_id.clone());
    View {
        follows_as_voter,
        trusted: !state.trusted().is_empty() && state.trusted().contains(ledger.p2p().peer_key()),
        leader_untrusted: leader_peer.is_some_and(|peer| !state.may_hold_seat(&peer)),
        caught_up: metrics.last_applied.map(|l| l.index) == metrics.last_log_index
            && !ledger.raft_leader_silent(now),
    }
}

/// Stands for election when [`should_campaign`] says so; the time it stood, or `last`.
pub async fn maybe_campaign(ledger: &Ledger, last: Option<Instant>) -> Option<Instant> {
    let now = crate::clock::now();
    if !should_campaign(view(ledger, now), last, now) {
        return last;
    }
    tracing::info!("the leader is not trusted with a raft seat; standing for election");
    if let Err(e) = ledger.raft().trigger().elect().await {
        tracing::warn!(error = %e, "cannot stand for election");
    }
    Some(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trusted_caught_up_voter_stands_against_an_untrusted_leader_once_per_backoff() {
        let now = crate::clock::now();
        let view = View {
            follows_as_voter: true,
            trusted: true,
            leader_untrusted: true,
            caught_up: true,
        };
        assert!(should_campaign(view, None, now));
        assert!(!should_campaign(
            view,
            Some(now),
            now + CAMPAIGN_BACKOFF / 2
        ));
        assert!(should_campaign(view, Some(now), now + CAMPAIGN_BACKOFF));
        // Each condition is needed: a learner or the leader itself, an untrusted voter, a
        // trusted leader, a voter behind the log.
        for unmet in [
            View {
                follows_as_voter: false,
                ..view
            },
            View {
                trusted: false,
                ..view
            },
            View {
                leader_untrusted: false,
                ..view
            },
            View {
                caught_up: false,
                ..view
            },
        ] {
            assert!(!should_campaign(unmet, None, now), "{unmet:?}");
        }
    }
}
