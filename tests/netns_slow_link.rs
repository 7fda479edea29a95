//! The ledger over slow links, in network namespaces: every host's link is shaped to 4 Mbit/s
//! (a `tbf` queue on its interface).
//!
//! - Three `weft up` processes form one cluster, then 24 writes of 60 kB each are put at once.
//!   Raft gives an append one heartbeat interval (500 ms); a batch of twelve such entries takes
//!   1.4 s to cross that link, so the leader must send fewer at a time
//!   ([`weft::ledger::raft`]'s network) or no write after them ever commits.
//! - A cluster whose log is folded into a snapshot (a recovery after quorum loss does that at
//!   once) takes two new members as voters: raft sends them the snapshot in chunks of 192 KiB,
//!   each about 600 kB on the wire, which must cross within the time raft gives a chunk.
//!
//! Every write must reach every node. Needs root, iproute2 and the `tbf` queueing discipline;
//! elsewhere it prints why it is skipped.

mod support;

use std::time::{Duration, Instant};

use support::netns::{Lan, report_skip, wait_until};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
const DEADLINE: Duration = Duration::from_secs(60);
/// How long the writes may take to reach every node: 24 × 60 kB to two followers is 2.9 MB,
/// 6 s of the leader's link at the least.
const SLOW_DEADLINE: Duration = Duration::from_secs(120);
const NODES: usize = 3;
const WRITES: usize = 24;
const VALUE_BYTES: usize = 60_000;
const RATE: &str = "4mbit";
/// Writes of 60 kB before the recovery: a state of about 500 kB, three snapshot chunks.
const SNAPSHOT_WRITES: usize = 8;

/// The value written under key `i`: distinct per key, so that a key holding another's value
/// shows.
fn value(i: usize) -> String {
    format!("{i:04}").repeat(VALUE_BYTES / 4)
}

/// Shapes the outgoing traffic of `hosts` to [`RATE`]; `false` (having said why) when the
/// kernel has no `tbf`.
fn shape(lan: &Lan, hosts: &[usize]) -> bool {
    for host in hosts.iter().map(|&i| &lan.hosts[i]) {
        let out = host.run(
            "tc",
            &[
                "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", RATE, "burst", "16kb",
                "latency", "2s",
            ],
        );
        if !out.status.success() {
            report_skip(&format!(
                "tc cannot add a tbf queue: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
            return false;
        }
    }
    true
}

#[test]
fn large_writes_over_slow_links_commit_and_reach_every_node() {
    require_netns!();
    let mut lan = Lan::new(NODES, WEFT);
    let token = lan.new_token();
    for i in 0..NODES {
        lan.start_weft(i, &["--token", &token, "--no-dht"], &[]);
    }
    let all: Vec<usize> = (0..NODES).collect();
    lan.settled_addresses(&all, DEADLINE);
    wait_until(DEADLINE, "three voters", || {
        let status = lan.status(0)?;
        (status["ledger"]["voters"].as_array()?.len() == NODES).then_some(())
    });
    if !shape(&lan, &all) {
        return;
    }

    let started = Instant::now();
    let answered: usize = std::thread::scope(|s| {
        let puts: Vec<_> = (0..WRITES)
            .map(|i| {
                let lan = &lan;
                s.spawn(move || {
                    let key = format!("k{i:02}");
                    let api = lan.hosts[i % NODES].api();
                    let out = lan.weft(&["ledger", "put", "slow", &key, &value(i), "--api", &api]);
                    out.status.success()
                })
            })
            .collect();
        puts.into_iter()
            .map(|p| usize::from(p.join().expect("a put thread")))
            .sum()
    });
    eprintln!(
        "{answered} of {WRITES} puts answered as committed, after {:.1?}",
        started.elapsed()
    );
    for i in all {
        holds_every_write(&lan, i, WRITES);
    }
    eprintln!("every write on every node after {:.1?}", started.elapsed());
}

/// Waits until host `i` reads back the value of each of the first `writes` keys.
fn holds_every_write(lan: &Lan, i: usize, writes: usize) {
    wait_until(
        SLOW_DEADLINE,
        &format!("n{} to hold every write", i + 1),
        || {
            (0..writes)
                .all(|k| {
                    let out = lan.weft(&[
                        "ledger",
                        "get",
                        "slow",
                        &format!("k{k:02}"),
                        "--api",
                        &lan.hosts[i].api(),
                    ]);
                    out.status.success() && out.stdout.trim_ascii() == value(k).as_bytes()
                })
                .then_some(())
        },
    );
}

/// Puts the first `writes` keys through host `i`, one after another, each until it commits.
fn put_in_turn(lan: &Lan, i: usize, writes: usize) {
    for k in 0..writes {
        let key = format!("k{k:02}");
        wait_until(DEADLINE, &format!("{key} to commit"), || {
            let out = lan.weft(&[
                "ledger",
                "put",
                "slow",
                &key,
                &value(k),
                "--api",
                &lan.hosts[i].api(),
            ]);
            out.status.success().then_some(())
        });
    }
}

#[test]
fn new_voters_take_a_snapshot_over_slow_links() {
    require_netns!();
    // n1 to n3 form the cluster that loses its quorum; n4 and n5 join the recovered one.
    let mut lan = Lan::new(5, WEFT);
    let token = lan.new_token();
    let args = ["--token", token.as_str(), "--no-dht"];
    let first: Vec<usize> = (0..3).map(|i| lan.start_weft(i, &args, &[])).collect();
    lan.settled_addresses(&[0, 1, 2], DEADLINE);
    let statuses = wait_until(DEADLINE, "three voters", || {
        let statuses: Vec<serde_json::Value> =
            (0..3).map(|i| lan.status(i)).collect::<Option<_>>()?;
        (statuses[0]["ledger"]["voters"].as_array()?.len() == 3).then_some(statuses)
    });
    put_in_turn(&lan, 0, SNAPSHOT_WRITES);

    // Two voters die for good; the third, once it holds every write (recovery keeps only what
    // it applied), recovers, which folds its log into a snapshot.
    let survivor = statuses
        .iter()
        .position(|s| s["ledger"]["leader"] != s["peer_id"])
        .expect("a voter that does not lead");
    holds_every_write(&lan, survivor, SNAPSHOT_WRITES);
    for i in (0..3).filter(|&i| i != survivor) {
        let process = &mut lan.processes[first[i]];
        process.signal("KILL");
        process.wait_exit(DEADLINE).expect("a killed process exits");
    }
    lan.weft_ok(survivor, &["ledger", "recover", "--force"]);
    let old_cluster = &statuses[survivor]["ledger"]["cluster_id"];
    let cluster = wait_until(DEADLINE, "the recovered cluster to have a leader", || {
        let status = lan.status(survivor)?;
        let cluster = &status["ledger"]["cluster_id"];
        (status["ledger"]["leader"] == status["peer_id"]
            && cluster.is_string()
            && cluster != old_cluster)
            .then(|| cluster.clone())
    });

    if !shape(&lan, &[survivor, 3, 4]) {
        return;
    }
    let started = Instant::now();
    for i in [3, 4] {
        lan.start_weft(i, &args, &[]);
    }
    wait_until(
        SLOW_DEADLINE,
        "n4 and n5 as voters of the recovered cluster",
        || {
            let status = lan.status(survivor)?;
            let voters = status["ledger"]["voters"].as_array()?;
            let newcomers: Vec<String> = [3, 4]
                .iter()
                .map(|&i| Some(lan.status(i)?["peer_id"].as_str()?.to_string()))
                .collect::<Option<_>>()?;
            (status["ledger"]["cluster_id"] == cluster
                && newcomers
                    .iter()
                    .all(|p| voters.iter().any(|v| v.as_str() == Some(p.as_str()))))
            .then_some(())
        },
    );
    for i in [3, 4] {
        holds_every_write(&lan, i, SNAPSHOT_WRITES);
    }
    eprintln!(
        "two new voters hold the recovered ledger after {:.1?}",
        started.elapsed()
    );
}
