//! Idle traffic of a weft mesh: starts N nodes (default 4) in network namespaces on one LAN,
//! waits until every node has admitted every other, then counts the bytes each node's LAN
//! interface sends and receives over a window (default 120 s) and prints bytes per node per
//! second. Run as root: `cargo run --release --example idle_traffic [-- NODES SECONDS]`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::ExitCode;
use std::time::Duration;

use support::netns::{Host, Lan, sibling_weft_binary, unavailable, wait_until};

const DEADLINE: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    if let Some(reason) = unavailable() {
        eprintln!("idle_traffic cannot run here: {reason}");
        return ExitCode::FAILURE;
    }
    let mut args = std::env::args().skip(1);
    let nodes: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(4);
    let seconds: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(120);
    let weft = sibling_weft_binary();
    let mut lan = Lan::new(nodes, &weft);
    let token = lan.new_token();
    for i in 0..nodes {
        lan.start_weft(i, &["--token", &token, "--log-level", "warn"], &[]);
    }
    for i in 0..nodes {
        lan.wait_api(i, DEADLINE);
        wait_until(DEADLINE, "a full mesh", || {
            lan.status(i)
                .filter(|s| s["admitted_peers"].as_u64() == Some(nodes as u64 - 1))
        });
    }
    println!("{nodes} nodes admitted each other; counting LAN bytes for {seconds} s...");
    let before: Vec<(u64, u64)> = lan.hosts.iter().map(counters).collect();
    std::thread::sleep(Duration::from_secs(seconds));
    let after: Vec<(u64, u64)> = lan.hosts.iter().map(counters).collect();

    println!("| node | tx B/s | rx B/s |");
    println!("|---|---:|---:|");
    let mut total = 0.0;
    for (i, ((tx0, rx0), (tx1, rx1))) in before.iter().zip(&after).enumerate() {
        let tx = (tx1 - tx0) as f64 / seconds as f64;
        let rx = (rx1 - rx0) as f64 / seconds as f64;
        total += tx;
        println!("| {} | {tx:.1} | {rx:.1} |", lan.hosts[i].name);
    }
    println!("mean sent per node: {:.1} B/s", total / nodes as f64);
    ExitCode::SUCCESS
}

/// (tx bytes, rx bytes) of the host's LAN interface.
fn counters(host: &Host) -> (u64, u64) {
    let out = host.run("ip", &["-s", "-j", "link", "show", "eth0"]);
    let links: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j prints JSON");
    let stats = &links[0]["stats64"];
    (
        stats["tx"]["bytes"].as_u64().unwrap_or(0),
        stats["rx"]["bytes"].as_u64().unwrap_or(0),
    )
}
