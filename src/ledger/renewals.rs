//! Lease renewals coalesced by the leader: a member asks the leader to renew its lease
//! ([`super::raft::network::LedgerRpc::Renew`]), the leader answers at once and queues it, and
//! every [`window`] at most it commits the queued renewals together as one
//! [`Command::Renewals`](super::state::Command::Renewals) entry.
//!
//! Every member renews a third of the lease timeout after its stamp last changed, so with one
//! log entry per renewal a mesh of N members wrote N entries per renewal interval, and each
//! entry went to every node as a feed message: idle traffic per node grew with the mesh. Now
//! the log holds at most one renewal entry per window, whatever the mesh's size (one per
//! [`PER_COMMAND`] members besides, within the command size limit). A renewal shows in the
//! stamp a window and a leader's round (a second) later at most, well within what the lease
//! timeout, a member's doubt of its own record and the merge checks' silence allow (each is a
//! lease timeout or more).
//!
//! Such an entry named each member by its PeerId, about 56 bytes in JSON, so it still grew with
//! the mesh, and every node received it. Once every live member reads it, the leader names them
//! by their places in the member table instead, a bit each
//! ([`LedgerState::renewal_set`](super::state::LedgerState::renewal_set),
//! [`MemberSet`](super::state::MemberSet)): an entry renewing 50 members takes about 100 bytes
//! of JSON where it took about 2.8 kB, and one set holds every renewal of its window. A set
//! drawn against a member table that changed before it applied renews nobody, and the leader
//! commits the same renewals by PeerId at once, so a churn of members cannot hold them back.
//!
//! The queue is the leader's own, committed only at the rounds it leads; a node drops it when it
//! starts leading (what it queued in an earlier leadership, and what it answered between its
//! election and its first round). Those members renew again a renewal interval later, as they
//! would after any renewal that did not commit. Pure and time-injected.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::pilot::renew_interval;
use super::state::{MAX_MEMBERS, PeerKey};

/// Members renewed by one command, at most: named by PeerId they take about 56 bytes each, so
/// a full command stays near 29 KiB, under the command size limit ([`super::limits`]).
pub const PER_COMMAND: usize = 512;

/// How long the leader gathers renewals before committing them: a quarter of the renewal
/// interval (50 s with the default 10-minute lease timeout).
pub fn window(lease_timeout: Duration) -> Duration {
    renew_interval(lease_timeout) / 4
}

/// The renewals the leader has answered and not yet committed.
#[derive(Debug, Default)]
pub struct Renewals {
    pending: BTreeSet<PeerKey>,
    last_commit: Option<Instant>,
}

impl Renewals {
    /// Queues `peer`'s renewal. False when the queue already holds as many members as a ledger
    /// can (a member is queued once however often it asks).
    pub fn queue(&mut self, peer: PeerKey) -> bool {
        if self.pending.len() >= MAX_MEMBERS && !self.pending.contains(&peer) {
            return false;
        }
        self.pending.insert(peer);
        true
    }

    /// The members whose renewals are to be committed at `now`, in commands of at most
    /// [`PER_COMMAND`]: all that are queued, once `window` has passed since the last commit
    /// (the first at once). Empty while nothing is due.
    pub fn due(&mut self, now: Instant, window: Duration) -> Vec<Vec<PeerKey>> {
        let waited = self
            .last_commit
            .is_none_or(|at| now.saturating_duration_since(at) >= window);
        if self.pending.is_empty() || !waited {
            return Vec::new();
        }
        self.last_commit = Some(now);
        let pending: Vec<PeerKey> = std::mem::take(&mut self.pending).into_iter().collect();
        pending
            .chunks(PER_COMMAND)
            .map(<[PeerKey]>::to_vec)
            .collect()
    }

    /// Forgets what was queued: this node leads anew.
    pub fn clear(&mut self) {
        self.pending.clear();
        self.last_commit = None;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const WINDOW: Duration = Duration::from_secs(50);

    fn at(start: Instant, s: u64) -> Instant {
        start + Duration::from_secs(s)
    }

    #[test]
    fn the_window_is_a_quarter_of_the_renewal_interval() {
        assert_eq!(window(Duration::from_secs(600)), Duration::from_secs(50));
        assert_eq!(window(Duration::from_secs(12)), Duration::from_secs(1));
    }

    #[test]
    fn renewals_are_committed_together_once_per_window() {
        let start = Instant::now();
        let mut renewals = Renewals::default();
        assert!(renewals.due(start, WINDOW).is_empty(), "nothing queued");
        renewals.queue("a".into());
        assert_eq!(renewals.due(at(start, 1), WINDOW), [vec!["a".to_string()]]);
        renewals.queue("b".into());
        renewals.queue("c".into());
        renewals.queue("b".into());
        assert!(
            renewals.due(at(start, 50), WINDOW).is_empty(),
            "within the window"
        );
        assert_eq!(
            renewals.due(at(start, 51), WINDOW),
            [vec!["b".to_string(), "c".to_string()]]
        );
        assert!(renewals.due(at(start, 200), WINDOW).is_empty(), "all taken");
    }

    #[test]
    fn a_large_queue_is_split_into_commands_and_bounded() {
        let start = Instant::now();
        let mut renewals = Renewals::default();
        for i in 0..MAX_MEMBERS {
            assert!(renewals.queue(format!("peer-{i:05}")));
        }
        assert!(!renewals.queue("one-too-many".into()));
        assert!(renewals.queue("peer-00000".into()), "already queued");
        let commands = renewals.due(start, WINDOW);
        assert_eq!(commands.len(), MAX_MEMBERS.div_ceil(PER_COMMAND));
        assert!(commands.iter().all(|c| c.len() <= PER_COMMAND));
        assert_eq!(commands.iter().map(Vec::len).sum::<usize>(), MAX_MEMBERS);
    }

    #[test]
    fn a_cleared_queue_forgets_its_renewals_and_its_window() {
        let start = Instant::now();
        let mut renewals = Renewals::default();
        renewals.queue("a".into());
        renewals.due(start, WINDOW);
        renewals.queue("b".into());
        renewals.clear();
        assert!(renewals.due(at(start, 1), WINDOW).is_empty());
        renewals.queue("c".into());
        assert_eq!(renewals.due(at(start, 2), WINDOW), [vec!["c".to_string()]]);
    }

    proptest! {
        /// Whatever the order of renewals and looks, every queued member is committed within a
        /// window of its renewal, and no two commits are closer than a window.
        #[test]
        fn each_renewal_commits_within_a_window_and_commits_are_a_window_apart(
            events in proptest::collection::vec((0u8..8, 0u64..30), 1..200),
        ) {
            let start = Instant::now();
            let mut renewals = Renewals::default();
            let mut now = start;
            let mut waiting: Vec<(String, Instant)> = Vec::new();
            let mut last_commit: Option<Instant> = None;
            for (peer, step) in events {
                now += Duration::from_secs(step);
                let committed: Vec<String> = renewals.due(now, WINDOW).concat();
                if !committed.is_empty() {
                    if let Some(last) = last_commit {
                        prop_assert!(now - last >= WINDOW);
                    }
                    last_commit = Some(now);
                }
                waiting.retain(|(p, _)| !committed.contains(p));
                // Looks come at least every 30 s here, so a renewal waits a window and a look.
                for (p, since) in &waiting {
                    prop_assert!(now - *since <= WINDOW + Duration::from_secs(30), "{p} waited");
                }
                let peer = format!("p{peer}");
                if !waiting.iter().any(|(p, _)| *p == peer) {
                    waiting.push((peer.clone(), now));
                }
                renewals.queue(peer);
            }
        }
    }
}
