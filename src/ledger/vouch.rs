//! Vouching for a leader this node's raft membership does not register. A raft member takes
//! appends and snapshots only from raft nodes its membership registers
//! ([`super::authority::may_send_raft`]), so no token holder can make up a leader. But a
//! member's membership can lag behind its cluster's: a new learner replays the log from
//! memberships older than its leader's seat, and a member cut off while the voters changed
//! comes back to a leader it never heard of. Either would refuse its real leader for ever.
//!
//! So when a raft node this node's membership does not register claims to lead it, this node
//! asks the voters its membership registers who leads its cluster. When a majority of them (of
//! each voter set, while a change is in flight) name that raft node at that PeerId, the node
//! is vouched for, and its appends are taken for as long as this raft instance lives. A
//! majority of the voters is what elects a leader: no token holder is vouched for without one.
//! The leader a node asks to join is vouched for by the join itself: the newcomer takes the
//! first append from anyone, and this keeps taking them from the one it chose.
//!
//! Raft node ids are drawn anew whenever a node wipes its raft state, so a vouched pair names
//! one node's term of office in one cluster, never a later one elsewhere.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use std::time::Instant;

use openraft::Membership;

use super::Ledger;
use super::raft::LedgerNode;
use super::service;
use super::state::ClusterId;

/// How often an unregistered leader's claim is checked with the voters, at most.
const ASK_INTERVAL: Duration = Duration::from_secs(1);

/// The leader vouched for in one raft instance, and the checks made for it.
#[derive(Debug, Default)]
pub(crate) struct Vouch(Mutex<Checks>);

#[derive(Debug, Default)]
struct Checks {
    leader: Option<(u64, String)>,
    asked_at: Option<Instant>,
    asking: bool,
}

impl Vouch {
    fn lock(&self) -> std::sync::MutexGuard<'_, Checks> {
        // Nothing panics while holding it.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Vouches for raft node `node` at PeerId `peer`.
    pub(crate) fn set(&self, node: u64, peer: &str) {
        self.lock().leader = Some((node, peer.to_string()));
    }

    /// Withdraws the vouch for raft node `node` at `peer`, if it is the one held.
    pub(crate) fn withdraw(&self, node: u64, peer: &str) {
        let mut checks = self.lock();
        if checks
            .leader
            .as_ref()
            .is_some_and(|(n, p)| *n == node && p == peer)
        {
            checks.leader = None;
        }
    }

    fn holds(&self, node: u64, peer: &str) -> bool {
        self.lock()
            .leader
            .as_ref()
            .is_some_and(|(n, p)| *n == node && p == peer)
    }

    /// Whether a check may start now: none is running and none started within
    /// [`ASK_INTERVAL`]; if so, it is marked running.
    fn start(&self, now: Instant) -> bool {
        let mut checks = self.lock();
        let due = !checks.asking
            && checks
                .asked_at
                .is_none_or(|at| now.duration_since(at) >= ASK_INTERVAL);
        if due {
            checks.asking = true;
            checks.asked_at = Some(now);
        }
        due
    }

    fn finish(&self, vouched: Option<(u64, String)>) {
        let mut checks = self.lock();
        checks.asking = false;
        if vouched.is_some() {
            checks.leader = vouched;
        }
    }
}

/// Whether raft node `node`, which this node's raft instance `to` does not register, may send
/// it appends and snapshots from PeerId `sender`: vouched for already, or now by a majority of
/// the registered voters. At most one check runs at a time, one per [`ASK_INTERVAL`]; it
/// vouches for the leader a majority names, whoever's append started it.
pub(crate) async fn vouched(ledger: &Ledger, to: u64, node: u64, sender: &str) -> bool {
    let engine = ledger.engine.load_full();
    if engine.node_id != to {
        return false;
    }
    if engine.vouch.holds(node, sender) {
        return true;
    }
    if !engine.vouch.start(crate::clock::now()) {
        return false;
    }
    let metrics = engine.raft.metrics().borrow().clone();
    let configs = voter_sets(metrics.membership_config.membership());
    let me = ledger.p2p().peer_key().to_string();
    let p2p = ledger.p2p();
    let asked: BTreeSet<libp2p::PeerId> = configs
        .iter()
        .flatten()
        .filter(|peer| **peer != me)
        .filter_map(|peer| peer.parse().ok())
        .filter(|peer| !p2p.is_behind(peer))
        .collect();
    let ours = engine.machine.state().cluster();
    let answers = service::ask_each(ledger, asked).await;
    // Whichever leader a majority names is vouched for, not only the one whose append started
    // the check: appends in a made-up name must not keep the real leader from being checked.
    let vouched = answers
        .iter()
        .filter_map(|(_, hello)| hello.leader.clone())
        .find(|claim| {
            let naming: BTreeSet<String> = answers
                .iter()
                .filter(|(_, hello)| names(ours, hello.cluster, hello.leader.as_ref(), claim))
                .map(|(peer, _)| peer.to_string())
                .collect();
            majority_in_each(&configs, &naming)
        });
    if let Some((named, leader)) = &vouched {
        tracing::info!(
            node = named,
            leader = %leader.peer_id,
            "a majority of the voters this node knows name a leader its raft membership does \
             not register yet; taking its appends"
        );
    }
    engine
        .vouch
        .finish(vouched.map(|(named, leader)| (named, leader.peer_id)));
    engine.vouch.holds(node, sender)
}

/// Whether an answer from cluster `theirs` naming `leader` names `claim` as the leader of
/// `ours` (any cluster while this raft has applied no genesis yet).
fn names(
    ours: Option<ClusterId>,
    theirs: Option<ClusterId>,
    leader: Option<&(u64, LedgerNode)>,
    claim: &(u64, LedgerNode),
) -> bool {
    theirs.is_some() && (ours.is_none() || theirs == ours) && leader == Some(claim)
}

/// The PeerIds of the voters of each voter set of `membership`: one set, or two while the
/// voters change (raft's joint consensus, where each must agree).
pub(super) fn voter_sets(membership: &Membership<u64, LedgerNode>) -> Vec<Vec<String>> {
    let peer_of = |id: &u64| membership.get_node(id).map(|n| n.peer_id.clone());
    membership
        .get_joint_config()
        .iter()
        .map(|config| config.iter().filter_map(peer_of).collect())
        .collect()
}

/// Whether more than half of the voters of each of `configs` (their PeerIds) are in `naming`.
/// Seats are counted, not machines: a machine that holds two (its raft state wiped, its old
/// seat not yet replaced) names a leader for both. Counting it once was tried, and could leave
/// a node that missed the replacement refusing its real leader for good, since its own seat
/// is never among the ones that name.
fn majority_in_each(configs: &[Vec<String>], naming: &BTreeSet<String>) -> bool {
    !configs.is_empty()
        && configs.iter().all(|voters| {
            let named = voters.iter().filter(|v| naming.contains(*v)).count();
            named * 2 > voters.len()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(peers: &[&str]) -> BTreeSet<String> {
        peers.iter().map(|p| p.to_string()).collect()
    }

    fn config(peers: &[&str]) -> Vec<String> {
        peers.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn a_majority_of_every_voter_set_vouches() {
        let voters = [config(&["a", "b", "c"])];
        assert!(majority_in_each(&voters, &set(&["a", "b"])));
        assert!(!majority_in_each(&voters, &set(&["a"])));
        assert!(!majority_in_each(&voters, &set(&["a", "x", "y"])));
        // While the voters change, both sets must agree.
        let joint = [config(&["a", "b", "c"]), config(&["c", "d", "e"])];
        assert!(!majority_in_each(&joint, &set(&["a", "b"])));
        assert!(majority_in_each(&joint, &set(&["a", "c", "d"])));
        // Half is not a majority, and no voter set vouches for nobody.
        assert!(!majority_in_each(&[config(&["a", "b"])], &set(&["a"])));
        assert!(!majority_in_each(&[], &set(&["a"])));
    }

    #[test]
    fn an_answer_names_the_claimed_leader_of_this_cluster_only() {
        let claim = (
            7,
            LedgerNode {
                peer_id: "l".into(),
            },
        );
        let ours = ClusterId {
            created_at: 1,
            id: 1,
        };
        let other = ClusterId {
            created_at: 1,
            id: 2,
        };
        assert!(names(Some(ours), Some(ours), Some(&claim), &claim));
        assert!(!names(Some(ours), Some(other), Some(&claim), &claim));
        assert!(!names(Some(ours), None, Some(&claim), &claim));
        assert!(!names(Some(ours), Some(ours), None, &claim));
        let same_peer_other_node = (8, claim.1.clone());
        assert!(!names(
            Some(ours),
            Some(ours),
            Some(&same_peer_other_node),
            &claim
        ));
        // A raft instance without a genesis yet knows no cluster of its own.
        assert!(names(None, Some(other), Some(&claim), &claim));
    }

    #[test]
    fn checks_are_one_at_a_time_and_spaced() {
        let vouch = Vouch::default();
        let now = Instant::now();
        assert!(vouch.start(now));
        assert!(!vouch.start(now), "one check at a time");
        vouch.finish(None);
        assert!(!vouch.start(now + ASK_INTERVAL / 2), "spaced");
        assert!(vouch.start(now + ASK_INTERVAL));
        vouch.finish(Some((7, "l".into())));
        assert!(vouch.holds(7, "l"));
        assert!(!vouch.holds(7, "m"));
        assert!(!vouch.holds(8, "l"));
    }
}
