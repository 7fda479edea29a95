//! Whether this node's cluster is the one it will stay in, as its merge checks find it: the
//! founder of a cluster deploys Kubernetes' control plane only then. A cluster formed while the
//! mesh was still finding itself can merge into a larger one moments later, and a control
//! plane deployed in it would be a second Kubernetes cluster the operator has to tear down.
//!
//! Pure and time-injected: the autopilot records each merge check's outcome, the bootstrapper
//! asks. A cluster is settled once the last merge check in it found no better cluster to join
//! while the cluster had a working leader, no unsettled peer (one asked that answered from no
//! cluster or gave no answer, through an error or the hello's timeout, and one heard of and not
//! yet admitted nor refused: each may still form, join or grow a rival), and the cluster
//! holding more members than the peers answering from other clusters together. A cluster that
//! holds such a majority of what this node sees cannot be outgrown by the rest merging into
//! one, whoever they believe, so its members, which count it from the ledger they share, do
//! not leave it. A check whose answers from a larger rival timed out on a starved machine no
//! longer settles: an unanswered peer is unsettled, where it once counted as nothing.
//!
//! Unsettled peers that stay so (one that cannot reach the leader, one that went away before
//! its admission) keep the cluster from settling for [`SETTLE_LIMIT`] from the first check in
//! it; after that they count with the rivals, as any of them may still be a rival whose answers
//! are lost, and the cluster needs more members than all of them. Rivals and unsettled peers
//! that neither join nor win hold it back for [`RIVALS_LIMIT`], after which a cluster larger
//! than the largest rival settles. Each condition adds to the rule before these, which settled
//! once no better cluster answered and no peer was unsettled, or the settle limit had passed.
//!
//! A peer this node never heard of is counted nowhere: the rule cannot hold a founder back for
//! it. That peers heard of must all be resolved before the limit is what holds a founder back
//! while the mesh is still finding itself (a first version that let a majority of the peers
//! seen settle a cluster at once failed a 100-node start: founders that had heard of few peers
//! deployed, then merged away).

use std::time::{Duration, Instant};

use super::state::ClusterId;

/// How long unsettled peers keep a cluster from settling, from its first merge check; short
/// beside a Kubernetes install. After it they count with the rivals. A check that finds a
/// better cluster, or no working leader, holds the founder whatever the time (in a starved
/// 100-node start, transient clusters merged away 37 to 72 s after forming, their founders held
/// by one or the other).
pub const SETTLE_LIMIT: Duration = Duration::from_secs(60);

/// How long rival clusters and unsettled peers that together hold as many peers as this
/// cluster may hold it back, from its first merge check, when no rival is better alone: they
/// merge into it, or into each other and then win, within a few merge checks where every node
/// reaches every other. Ones still there after this are cut off from this cluster's members,
/// or gone; the founder deploys when its cluster is larger than the largest rival.
pub const RIVALS_LIMIT: Duration = Duration::from_secs(300);

/// What one merge check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Check {
    /// The cluster this node is in.
    pub cluster: ClusterId,
    /// Whether it stays in it: the cluster has a working leader and no better cluster answered.
    pub stays: bool,
    /// How many members this node counts its cluster as having ([`super::merge`]: itself, its
    /// live members, and the other peers that answered from it).
    pub own: usize,
    /// How many of the peers asked answered from another cluster.
    pub rivals: usize,
    /// How many of them answered from the one other cluster most answered from.
    pub largest_rival: usize,
    /// How many of the peers asked answered from no cluster (or one with no id yet) or gave no
    /// answer (an error or the hello's timeout), and how many peers heard of are not yet
    /// admitted nor refused ([`crate::p2p::heard`]): each may still form, join or grow a rival.
    pub unsettled: usize,
}

/// The merge checks seen in this node's current cluster.
#[derive(Debug, Default)]
pub struct Settling {
    last: Option<(Check, Instant)>,
    /// Whether [`Settling::newly_settled`] has told of the current cluster.
    told: bool,
}

impl Settling {
    /// Records a merge check made at `now`.
    pub fn checked(&mut self, check: Check, now: Instant) {
        let since = match self.last {
            Some((last, since)) if last.cluster == check.cluster => since,
            _ => {
                self.told = false;
                now
            }
        };
        self.last = Some((check, since));
    }

    /// Whether `cluster` (this node's, if any) is settled at `now`.
    pub fn settled(&self, cluster: Option<ClusterId>, now: Instant) -> bool {
        let Some((last, since)) = self.last else {
            return false;
        };
        let waited = now.saturating_duration_since(since);
        let holds = if waited < SETTLE_LIMIT {
            last.unsettled == 0 && last.own > last.rivals
        } else if waited < RIVALS_LIMIT {
            last.own > last.rivals + last.unsettled
        } else {
            last.own > last.largest_rival
        };
        Some(last.cluster) == cluster && last.stays && holds
    }

    /// What keeps `cluster` from being settled at `now`, in words for `weft status`; `None`
    /// once it is settled. The words name the condition and the limit, not the counts or the
    /// time left: the bootstrapper reports its wait to the ledger whenever the words change,
    /// and counts that moved at every merge check would be a ledger write at each.
    pub fn holding(&self, cluster: Option<ClusterId>, now: Instant) -> Option<String> {
        if self.settled(cluster, now) {
            return None;
        }
        let Some((last, since)) = self.last.filter(|(last, _)| Some(last.cluster) == cluster)
        else {
            return Some("no merge check in this cluster yet".into());
        };
        let waited = now.saturating_duration_since(since);
        let words = if !last.stays {
            "the last merge check found a better cluster or no working leader"
        } else if waited < SETTLE_LIMIT && last.unsettled > 0 {
            "peers are unsettled (outside any cluster, not answering, or not yet admitted); \
             60 s after the first merge check they count with the other clusters"
        } else if waited < RIVALS_LIMIT {
            "other clusters and unsettled peers hold as many peers as this one; 300 s after the \
             first merge check only the largest other cluster counts"
        } else {
            "another cluster answers with as many peers as this one"
        };
        Some(words.into())
    }

    /// The check that settled `cluster` and how long after the first check in it, the first time
    /// it is found settled at `now` (by a check or by a limit passing): for the log.
    pub fn newly_settled(
        &mut self,
        cluster: Option<ClusterId>,
        now: Instant,
    ) -> Option<(Check, Duration)> {
        if self.told || !self.settled(cluster, now) {
            return None;
        }
        self.told = true;
        self.last
            .map(|(check, since)| (check, now.saturating_duration_since(since)))
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

    fn check(n: u64, stays: bool, own: usize, rivals: usize, unsettled: usize) -> Check {
        Check {
            cluster: cluster(n),
            stays,
            own,
            rivals,
            largest_rival: rivals,
            unsettled,
        }
    }

    #[test]
    fn a_cluster_is_settled_only_by_a_check_made_in_it_that_found_nothing_better() {
        let t = Instant::now();
        let mut s = Settling::default();
        assert!(!s.settled(Some(cluster(1)), t), "no check yet");
        s.checked(check(1, false, 5, 6, 0), t);
        assert!(!s.settled(Some(cluster(1)), t), "a better cluster answered");
        s.checked(check(1, true, 1, 0, 0), t);
        assert!(s.settled(Some(cluster(1)), t), "a founder alone");
        assert!(
            !s.settled(Some(cluster(2)), t),
            "a check of another cluster"
        );
        assert!(!s.settled(None, t), "no cluster now");
        s.checked(check(1, false, 5, 6, 0), t + RIVALS_LIMIT);
        assert!(
            !s.settled(Some(cluster(1)), t + RIVALS_LIMIT),
            "a better cluster holds it back whatever the time"
        );
    }

    #[test]
    fn a_cluster_settles_only_with_no_unsettled_peer_and_more_members_than_its_rivals() {
        let t = Instant::now();
        let mut s = Settling::default();
        // Two rivals of 4 each: neither beats 6 alone, but together they would.
        s.checked(check(1, true, 6, 8, 0), t);
        assert!(!s.settled(Some(cluster(1)), t));
        // One of them merged in.
        s.checked(check(1, true, 10, 4, 0), t + Duration::from_secs(5));
        assert!(s.settled(Some(cluster(1)), t + Duration::from_secs(5)));
        // One peer unsettled (outside any cluster, silent, or not yet admitted): held, however
        // few it is beside the cluster; more may be on their way.
        s.checked(check(1, true, 10, 0, 1), t + Duration::from_secs(10));
        assert!(!s.settled(Some(cluster(1)), t + Duration::from_secs(10)));
    }

    #[test]
    fn unsettled_peers_hold_it_back_for_the_settle_limit_and_rivals_for_theirs() {
        let t = Instant::now();
        let mut s = Settling::default();
        s.checked(check(1, true, 4, 0, 3), t);
        s.checked(check(1, true, 4, 0, 3), t + Duration::from_secs(20));
        assert!(!s.settled(Some(cluster(1)), t + Duration::from_secs(59)));
        assert!(s.settled(Some(cluster(1)), t + SETTLE_LIMIT), "4 against 3");
        // A merge into another cluster starts the count again there.
        s.checked(check(2, true, 4, 0, 3), t + Duration::from_secs(70));
        assert!(!s.settled(Some(cluster(2)), t + Duration::from_secs(129)));
        assert!(s.settled(Some(cluster(2)), t + Duration::from_secs(130)));
        // Past the settle limit, rivals and unsettled peers that together hold as many still
        // hold it back, until theirs.
        s.checked(check(2, true, 4, 3, 1), t + Duration::from_secs(130));
        assert!(!s.settled(Some(cluster(2)), t + Duration::from_secs(130)));
        assert!(!s.settled(Some(cluster(2)), t + Duration::from_secs(369)));
        assert!(s.settled(Some(cluster(2)), t + Duration::from_secs(70) + RIVALS_LIMIT));
        // Past that, a rival larger than the cluster holds it back still, though its leader
        // did not confirm it (so the check found no better cluster).
        s.checked(check(2, true, 4, 5, 0), t + Duration::from_secs(400));
        assert!(!s.settled(Some(cluster(2)), t + Duration::from_secs(400)));
    }

    #[test]
    fn a_cluster_is_told_settled_once_whether_a_check_or_a_limit_settles_it() {
        let t = Instant::now();
        let mut s = Settling::default();
        s.checked(check(1, true, 4, 0, 1), t);
        assert_eq!(s.newly_settled(Some(cluster(1)), t), None);
        let (told, waited) = s
            .newly_settled(Some(cluster(1)), t + SETTLE_LIMIT)
            .expect("the limit passed");
        assert_eq!((told.own, told.unsettled, waited), (4, 1, SETTLE_LIMIT));
        assert_eq!(s.newly_settled(Some(cluster(1)), t + SETTLE_LIMIT), None);
        s.checked(check(1, true, 5, 0, 0), t + SETTLE_LIMIT);
        assert_eq!(
            s.newly_settled(Some(cluster(1)), t + SETTLE_LIMIT),
            None,
            "told already"
        );
        // Another cluster is told of again.
        s.checked(check(2, true, 5, 0, 0), t + SETTLE_LIMIT);
        assert!(
            s.newly_settled(Some(cluster(2)), t + SETTLE_LIMIT)
                .is_some()
        );
    }

    #[test]
    fn what_holds_a_cluster_back_is_said_in_words_that_do_not_move_with_each_check() {
        let t = Instant::now();
        let mut s = Settling::default();
        let at = |secs: u64| t + Duration::from_secs(secs);
        let said = |s: &Settling, secs: u64| s.holding(Some(cluster(1)), at(secs));
        assert_eq!(
            said(&s, 0).as_deref(),
            Some("no merge check in this cluster yet")
        );
        s.checked(check(1, true, 4, 0, 3), t);
        let early = said(&s, 20).expect("held");
        assert!(early.contains("peers are unsettled"), "{early}");
        s.checked(check(1, true, 5, 0, 2), at(25));
        assert_eq!(
            said(&s, 25),
            Some(early),
            "the same words as the counts move"
        );
        s.checked(check(1, true, 4, 2, 3), at(61));
        let later = said(&s, 61).expect("held");
        assert!(later.contains("other clusters and unsettled"), "{later}");
        s.checked(check(1, false, 4, 5, 0), at(62));
        assert!(said(&s, 62).expect("held").contains("better cluster"));
        s.checked(check(1, true, 4, 5, 0), at(400));
        assert!(
            said(&s, 400)
                .expect("held")
                .contains("as many peers as this one")
        );
        s.checked(check(1, true, 6, 5, 0), at(401));
        assert_eq!(said(&s, 401), None);
    }
}
