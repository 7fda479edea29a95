//! A node that joins again under a new raft id while a learner seat of its earlier id is still
//! in the leader's membership (issue 16), in the simulation. The seat rules tell a superseded
//! raft node by its PeerId being registered again as a learner ([`crate::ledger::seats`]), so
//! the new id must never be seated beside the earlier one: once promoted, it would count as
//! superseded by a seat that never answers. A join therefore removes the joiner's earlier
//! learner seats first, and seats nothing when that removal does not commit in time
//! ([`crate::ledger::service`], `join`).
//!
//! The scenario: n0, n2 and n3 are the voters; n3 stops, so the leader n0 recruits n1 as a
//! learner, which the network keeps from ever taking the log (the seat stays, lagging). Then n0
//! is cut off from n2, so it commits nothing more, and n1 wipes its raft state and joins again
//! under a new id: the removal of its earlier seat cannot commit, and the new id must not be
//! seated. Once everything heals, n1 is back with one seat, or none, and an address.
//!
//! Here the join's own check is not what keeps the new id out: with it removed, openraft's
//! rule of one membership change at a time refuses the seat as well, since the removal is
//! still pending. The check matters when the removal fails at once (another change pending)
//! and that change commits before the seat is asked for, which this does not arrange.

use std::collections::BTreeSet;
use std::time::Duration;

use rand::SeedableRng as _;
use rand::rngs::StdRng;

use super::{DAEMON, World, check};
use crate::ledger::Ledger;
use crate::ledger::service::LEARNER_TIMEOUT;

/// How long each step may take, in simulated time.
const STEP: Duration = Duration::from_secs(120);

/// The raft ids of n0's membership that belong to `peer`.
fn seats_of(n0: &Ledger, peer: &str) -> Vec<u64> {
    n0.raft()
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .nodes()
        .filter(|(_, node)| node.peer_id == peer)
        .map(|(id, _)| *id)
        .collect()
}

#[test]
fn a_join_whose_removal_of_the_earlier_seat_times_out_seats_nothing_and_the_node_comes_back() {
    super::scripted(2, async {
        let mut world = World::of(StdRng::seed_from_u64(2), 2, DAEMON, 4);
        world.start(0).await.expect("n0 starts");
        world
            .until("n0 founds a cluster", STEP, |nodes| {
                nodes[0].1.status().leader == Some(nodes[0].1.p2p().peer_id().to_string())
            })
            .await;
        for index in [2, 3] {
            world.start(index).await.expect("a node starts");
        }
        world
            .until("n0, n2 and n3 are the voters", STEP, |nodes| {
                nodes[0].1.status().voters.len() == 3
            })
            .await;
        let n0 = world.ledger(0);
        let n1_peer = world.nodes[1].peer.to_string();
        world.net.withhold_log(0, 1);
        world.start(1).await.expect("n1 starts");
        world.stop(3);
        world
            .until("n0 recruits n1 as a learner in n3's absence", STEP, |_| {
                !seats_of(&n0, &n1_peer).is_empty()
            })
            .await;
        let earlier = world.ledger(1).node_id();
        assert_eq!(seats_of(&n0, &n1_peer), vec![earlier]);
        // n0 can commit nothing more: of its voters, n3 is stopped and n2 cut off.
        world.net.cut(0, 2);
        world
            .ledger(1)
            .reset()
            .await
            .expect("n1 wipes its raft state");
        let new = world.ledger(1).node_id();
        assert_ne!(new, earlier);
        // n1 asks n0 to take it in under its new id (at once, or after the cooldown of a
        // learner that did not catch up): n0 takes up the removal of the earlier seat, which
        // cannot commit, and must not seat the new id, then or while the join waits.
        let not_beside = |n0: &Ledger| {
            let seats = seats_of(n0, &n1_peer);
            assert!(
                !seats.contains(&new),
                "n1's new raft id {new} is seated while its earlier seat's removal has not \
                 committed: {seats:?}"
            );
            seats
        };
        world
            .until(
                "n0 takes up the removal of n1's earlier seat",
                STEP * 2,
                |_| !not_beside(&n0).contains(&earlier),
            )
            .await;
        let watch = tokio::time::Instant::now();
        world
            .until("n1's join has waited its time out", STEP, |_| {
                not_beside(&n0);
                watch.elapsed() > LEARNER_TIMEOUT + Duration::from_secs(10)
            })
            .await;
        // Healed, with n3 back: n1 is back with an address and one seat at most, its new one.
        world.net.partition(vec![0; 4]);
        world.start(3).await.expect("n3 starts again");
        let peers: Vec<String> = world.nodes.iter().map(|n| n.peer.to_string()).collect();
        let nothing = BTreeSet::new();
        let took = world
            .until(
                "every node in one cluster with an address",
                STEP * 2,
                |nodes| check::unconverged(nodes, &peers, &nothing).is_none(),
            )
            .await;
        let seats = seats_of(&world.ledger(0), &n1_peer);
        assert!(
            seats.is_empty() || seats == vec![world.ledger(1).node_id()],
            "n1's seats in the leader's membership: {seats:?}"
        );
        eprintln!(
            "converged {:.1} s after the heal; n1's seats {seats:?}",
            took.as_secs_f64()
        );
        world.shut_down();
    });
}
