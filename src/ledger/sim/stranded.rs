//! A learner whose leader left its cluster before sending it the log (issue 16), in the
//! simulation. Seen at 100 nodes forming (`BENCHMARKS.md`, "100 nodes: the churn found and
//! removed"): a founder took a node in as a learner and merged into a larger cluster 30 s
//! later, under a new raft id. The learner's membership named the founder's raft node as its
//! only voter, its vote named that node as leader, and it held no cluster. It waited until the
//! end of the run. What cut its log short is not known, so it is not arranged here: the node
//! starts from that state on disk, its log the founder's first entry alone, written as raft
//! writes it ([`crate::ledger::raft::store::plant`]). On the code before the fix
//! ([`crate::ledger::Ledger::is_seatless`]) it stayed so for the 150 s the test allows and
//! left only once its own record counted as frozen (821.5 s, the daemon's lease timeout and
//! a renewal interval); since, it starts over within about 90 s.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Membership, Vote};
use rand::SeedableRng as _;
use rand::rngs::StdRng;

use super::{DAEMON, World, check};
use crate::ledger::raft::LedgerNode;
use crate::ledger::raft::store::plant;

/// The founder's raft id before it merged away: no running node has it.
const GONE: u64 = 7;
/// How long the stranded node may take to be in the others' cluster with an address: the
/// leader's silence ([`crate::ledger::follower::LEADER_SILENCE`], 75 s), the stranded grace
/// (15 s) and a join.
const BOUND: Duration = Duration::from_secs(150);

#[test]
fn a_learner_whose_leader_left_before_sending_it_the_log_starts_over() {
    super::scripted(1, async {
        let mut world = World::of(StdRng::seed_from_u64(1), 1, DAEMON, 3);
        // n1's raft holds the first entry of the cluster n0 founded as raft node GONE, and
        // n0's vote: n1 names GONE, at n0's PeerId, as its leader.
        let founder = LedgerNode {
            peer_id: world.nodes[0].peer.to_string(),
        };
        let first = Entry {
            log_id: LogId::new(CommittedLeaderId::new(0, 0), 0),
            payload: EntryPayload::Membership(Membership::new(
                vec![BTreeSet::from([GONE])],
                BTreeMap::from([(GONE, founder)]),
            )),
        };
        let database = world.nodes[1]
            .dir
            .path()
            .join("raft")
            .join(crate::ledger::DATABASE_FILE);
        plant(&database, &Vote::new_committed(1, GONE), &[first]).expect("n1's raft state");
        // n0 (since merged away) and n2 are one cluster.
        for index in [0, 2, 1] {
            world.start(index).await.expect("a node starts");
        }
        let stranded = world.ledger(1);
        let mut metrics = stranded.raft().metrics();
        tokio::time::timeout(
            Duration::from_secs(1),
            metrics.wait_for(|m| m.current_leader == Some(GONE)),
        )
        .await
        .expect("n1 names the founder's old raft node as its leader")
        .expect("n1's raft runs");
        assert!(stranded.state().cluster().is_none());
        let peers: Vec<String> = world.nodes.iter().map(|n| n.peer.to_string()).collect();
        let nothing = BTreeSet::new();
        let took = world
            .until(
                "n1 in the cluster of n0 and n2 with an address",
                BOUND,
                |nodes| check::unconverged(nodes, &peers, &nothing).is_none(),
            )
            .await;
        eprintln!(
            "n1 in the cluster of n0 and n2 with an address {:.1} s after it started",
            took.as_secs_f64()
        );
        world.shut_down();
    });
}
