//! The ledger layer's idle cost by mesh size (issue 15), in the simulation: `n` nodes with the
//! daemon's timeouts start together over the simulated network, with no fault. Once they form
//! one cluster with an address for each, the network counts, for ten simulated minutes, what
//! each node sends in requests and answers (raft, renewals, catch-up) and the gossip delivered
//! to each (the leader's feed and beats). What runs beneath the ledger in the daemon
//! (connections, pings, identify, gossipsub's own control messages and forwarding, the DHT) is
//! not simulated: the namespace runs of `benches/scale.sh` measure the whole, up to 100 nodes.
//!
//! A measurement, not run by CI; one size per process, so that the resident memory it reports
//! (the process's growth over the run, divided by the nodes) holds that size alone:
//! `for n in 5 20 50 200; do WEFT_SIM_SIZES=$n cargo test --lib ledger::sim::idle -- --ignored
//! --nocapture; done` (200 nodes take about two minutes in a debug build).

use std::collections::BTreeSet;
use std::time::Duration;

use rand::SeedableRng as _;
use rand::rngs::StdRng;
use tokio::time::Instant;

use super::{DAEMON, World, check};

/// How long the idle mesh is measured.
const IDLE: Duration = Duration::from_secs(600);
/// How long the nodes may take to form one cluster with an address for each.
const FORMATION: Duration = Duration::from_secs(900);

/// What one size showed.
struct Row {
    nodes: usize,
    formed: Duration,
    /// Bytes per second sent by the nodes that do not lead: median and largest.
    sent_median: f64,
    sent_max: f64,
    /// Bytes per second sent by the leader.
    sent_leader: f64,
    /// Bytes per second of gossip delivered to a node, median.
    gossip_median: f64,
    /// The ledger's state as one node encodes it.
    state_bytes: usize,
    /// The process's resident memory over the run, per node.
    rss_per_node_kib: f64,
}

#[test]
#[ignore = "a measurement of ten simulated minutes at each size (WEFT_SIM_SIZES, by default \
            5,20,50,200): run it with --ignored"]
fn idle_cost_per_node_by_mesh_size() {
    let sizes: Vec<usize> = std::env::var("WEFT_SIM_SIZES")
        .unwrap_or_else(|_| "5,20,50,200".into())
        .split(',')
        .map(|n| n.trim().parse().expect("WEFT_SIM_SIZES lists node counts"))
        .collect();
    eprintln!(
        "nodes  formed    sent/node median   max      leader   gossip in/node   state     RSS/node"
    );
    let mut rows = Vec::new();
    for count in sizes {
        let row = measure(count);
        eprintln!(
            "{:5} {:7.1} s {:10.3} B/s {:8.1} {:8.1} B/s {:10.1} B/s {:8} B {:8.0} KiB",
            row.nodes,
            row.formed.as_secs_f64(),
            row.sent_median,
            row.sent_max,
            row.sent_leader,
            row.gossip_median,
            row.state_bytes,
            row.rss_per_node_kib
        );
        rows.push(row);
    }
    // Flat in the mesh's size: what a node sends and receives, and what the leader sends,
    // grow by less than half from the smallest mesh measured to the largest.
    let (Some(small), Some(large)) = (rows.first(), rows.last()) else {
        return;
    };
    for (what, small, large) in [
        ("sent by a node, largest", small.sent_max, large.sent_max),
        ("sent by the leader", small.sent_leader, large.sent_leader),
        (
            "gossip delivered to a node",
            small.gossip_median,
            large.gossip_median,
        ),
    ] {
        assert!(
            large <= small * 1.5 + 1.0,
            "{what}: {large:.1} B/s at {} nodes against {small:.1} at {}",
            rows.last().map_or(0, |r| r.nodes),
            rows.first().map_or(0, |r| r.nodes)
        );
    }
}

fn measure(count: usize) -> Row {
    let rss_before = rss_kib();
    let seed = count as u64;
    super::simulate(seed, async {
        let mut world = World::of(StdRng::seed_from_u64(seed), seed, DAEMON, count);
        for index in 0..count {
            world.start(index).await.expect("a node starts");
        }
        let started = Instant::now();
        let peers: Vec<String> = world.nodes.iter().map(|n| n.peer.to_string()).collect();
        let nothing = BTreeSet::new();
        while let Some(why) = check::unconverged(&world.running(), &peers, &nothing) {
            assert!(
                started.elapsed() < FORMATION,
                "{count} nodes did not form within {} s: {why}",
                FORMATION.as_secs()
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let formed = started.elapsed();
        world.net.take_traffic();
        tokio::time::sleep(IDLE).await;
        let traffic = world.net.take_traffic();
        if let Some(why) = check::unconverged(&world.running(), &peers, &nothing) {
            panic!("{count} idle nodes came apart: {why}");
        }
        let (leader, state_bytes) = {
            let ledger = world.running()[0].1;
            let leader = ledger.status().leader.expect("a leader");
            (leader, ledger.state().snapshot().len())
        };
        let leader = peers
            .iter()
            .position(|p| *p == leader)
            .expect("a node leads");
        let rate = |bytes: u64| bytes as f64 / IDLE.as_secs_f64();
        let mut sent: Vec<u64> = (0..count)
            .filter(|&i| i != leader)
            .map(|i| traffic.sent[i])
            .collect();
        sent.sort_unstable();
        let mut gossip = traffic.gossip.clone();
        gossip.sort_unstable();
        let rss_per_node_kib = rss_kib().saturating_sub(rss_before) as f64 / count as f64;
        world.shut_down();
        Row {
            nodes: count,
            formed,
            sent_median: rate(sent[sent.len() / 2]),
            sent_max: rate(*sent.last().expect("nodes that do not lead")),
            sent_leader: rate(traffic.sent[leader]),
            gossip_median: rate(gossip[gossip.len() / 2]),
            state_bytes,
            rss_per_node_kib,
        }
    })
}

/// This process's resident memory (VmRSS), in KiB; 0 where `/proc` does not tell.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}
