//! The ledger over slow links, in network namespaces: three `weft up` processes form one
//! cluster, then every host's link is shaped to 4 Mbit/s (a `tbf` queue on its interface) and
//! 24 writes of 60 kB each are put at once. Raft gives an append one heartbeat interval
//! (500 ms); a batch of twelve such entries takes 1.4 s to cross that link, so the leader must
//! send fewer at a time ([`weft::ledger::raft`]'s network) or no write after them ever
//! commits. Every write must reach every node. Needs root, iproute2 and the `tbf` queueing
//! discipline; elsewhere it prints why it is skipped.

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

/// The value written under key `i`: distinct per key, so that a key holding another's value
/// shows.
fn value(i: usize) -> String {
    format!("{i:04}").repeat(VALUE_BYTES / 4)
}

/// Shapes every host's outgoing traffic to [`RATE`]; `false` (having said why) when the kernel
/// has no `tbf`.
fn shape(lan: &Lan) -> bool {
    for host in &lan.hosts {
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
    if !shape(&lan) {
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
        wait_until(
            SLOW_DEADLINE,
            &format!("n{} to hold every write", i + 1),
            || {
                (0..WRITES)
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
    eprintln!("every write on every node after {:.1?}", started.elapsed());
}
