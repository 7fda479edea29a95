//! Whether this node's cluster is the one it will stay in, as its merge checks find it: the
//! founder of a cluster deploys Kubernetes' control plane only then. A cluster formed while the
//! mesh was still finding itself can merge into a larger one moments later, and a control
//! plane deployed in it would be a second Kubernetes cluster the operator has to tear down.
//!
//! Pure and time-injected: the autopilot records each merge check's outcome, the bootstrapper
//! asks. A cluster is settled once the last merge check in it found no better cluster to join
//! while the cluster had a working leader, no peer it asked was outside any cluster, and every
//! peer this node heard of was admitted or refused: a peer outside a cluster, or not yet
//! admitted, may still form or join a rival. A peer that stays so (one that cannot reach the
//! leader, one that went away before its admission) holds the cluster back for
//! [`SETTLE_LIMIT`] from the first check in it, not for ever.

use std::time::{Duration, Instant};

use super::state::ClusterId;

/// How long unsettled peers may hold a cluster back, from its first merge check; short beside a
/// Kubernetes install. It lifts only that wait: a check that finds a better cluster, or no
/// working leader, holds the founder whatever the time (in a starved 100-node start, transient
/// clusters merged away 37 to 72 s after forming, their founders held by one or the other).
pub const SETTLE_LIMIT: Duration = Duration::from_secs(60);

/// What one merge check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Check {
    /// The cluster this node is in.
    pub cluster: ClusterId,
    /// Whether it stays in it: the cluster has a working leader and no better cluster answered.
    pub stays: bool,
    /// How many of the peers asked answered from no cluster (or one with no id yet), and how
    /// many peers heard of are not yet admitted nor refused ([`crate::p2p::heard`]): each may
    /// still form or join a rival.
    pub unsettled: usize,
}

/// The merge checks seen in this node's current cluster.
#[derive(Debug, Default)]
pub struct Settling {
    last: Option<(Check, Instant)>,
}

impl Settling {
    /// Records a merge check made at `now`.
    pub fn checked(&mut self, check: Check, now: Instant) {
        let since = match self.last {
            Some((last, since)) if last.cluster == check.cluster => since,
            _ => now,
        };
        self.last = Some((check, since));
    }

    /// Whether `cluster` (this node's, if any) is settled at `now`.
    pub fn settled(&self, cluster: Option<ClusterId>, now: Instant) -> bool {
        let Some((last, since)) = self.last else {
            return false;
        };
        Some(last.cluster) == cluster
            && last.stays
            && (last.unsettled == 0 || now.saturating_duration_since(since) >= SETTLE_LIMIT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(n: u64) -> ClusterId {
        ClusterId {
            created_at: n,
            id: n,
        }
    }

    fn check(n: u64, stays: bool, unsettled: usize) -> Check {
        Check {
            cluster: cluster(n),
            stays,
            unsettled,
        }
    }

    #[test]
    fn a_cluster_is_settled_only_by_a_check_made_in_it_that_found_nothing_better() {
        let t = Instant::now();
        let mut s = Settling::default();
        assert!(!s.settled(Some(cluster(1)), t), "no check yet");
        s.checked(check(1, false, 0), t);
        assert!(!s.settled(Some(cluster(1)), t), "a better cluster answered");
        s.checked(check(1, true, 0), t);
        assert!(s.settled(Some(cluster(1)), t));
        assert!(
            !s.settled(Some(cluster(2)), t),
            "a check of another cluster"
        );
        assert!(!s.settled(None, t), "no cluster now");
    }

    #[test]
    fn peers_outside_any_cluster_hold_it_back_for_the_limit_from_the_first_check() {
        let t = Instant::now();
        let mut s = Settling::default();
        s.checked(check(1, true, 3), t);
        s.checked(check(1, true, 1), t + Duration::from_secs(20));
        assert!(!s.settled(Some(cluster(1)), t + Duration::from_secs(59)));
        assert!(s.settled(Some(cluster(1)), t + SETTLE_LIMIT));
        // A merge into another cluster starts the count again there.
        s.checked(check(2, true, 1), t + Duration::from_secs(70));
        assert!(!s.settled(Some(cluster(2)), t + Duration::from_secs(129)));
        assert!(s.settled(Some(cluster(2)), t + Duration::from_secs(130)));
        // Those peers joined: settled at once.
        s.checked(check(2, true, 0), t + Duration::from_secs(75));
        assert!(s.settled(Some(cluster(2)), t + Duration::from_secs(75)));
    }
}
