//! End-to-end data plane in network namespaces: members reach each other's overlay addresses
//! through the encrypted UDP path, with and without TUN offloads. Needs root and iproute2;
//! elsewhere it prints why it is skipped.

mod support;

use std::time::Duration;

use support::netns::{Lan, wait_until};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
const DEADLINE: Duration = Duration::from_secs(60);

/// Starts `n` nodes (the last one without TUN offloads) and returns their overlay addresses.
fn mesh(lan: &mut Lan, n: usize) -> Vec<String> {
    let token = lan.new_token();
    for i in 0..n {
        let mut args = vec!["--token", token.as_str(), "--no-dht"];
        if i == n - 1 {
            args.push("--no-offload");
        }
        lan.start_weft(i, &args, &[]);
    }
    (0..n)
        .map(|i| {
            lan.wait_api(i, DEADLINE);
            let status = wait_until(
                DEADLINE,
                &format!("n{} to get an overlay address", i + 1),
                || lan.status(i).filter(|s| s["overlay_ip"].is_string()),
            );
            status["overlay_ip"].as_str().unwrap().to_string()
        })
        .collect()
}

fn peers(lan: &Lan, i: usize) -> Vec<serde_json::Value> {
    let out = lan.weft(&["peers", "--json", "--api", &lan.hosts[i].api()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("peers JSON")
}

#[test]
fn three_nodes_ping_each_other_over_the_overlay() {
    require_netns!();
    let mut lan = Lan::new(3, WEFT);
    let overlay = mesh(&mut lan, 3);
    for i in 0..3 {
        for j in (0..3).filter(|&j| j != i) {
            wait_until(
                DEADLINE,
                &format!("n{} to ping n{} at {}", i + 1, j + 1, overlay[j]),
                || {
                    let out = lan.hosts[i].run("ping", &["-c", "1", "-W", "1", &overlay[j]]);
                    out.status.success().then_some(())
                },
            );
        }
    }
    // Every pair uses the direct UDP path, seen from both ends.
    for i in 0..3 {
        let peers = peers(&lan, i);
        assert_eq!(peers.len(), 2, "{peers:#?}");
        for peer in &peers {
            let data = &peer["dataplane"];
            let path = data["path"].as_str().unwrap_or_default();
            assert!(path.starts_with("udp 10."), "n{}: {peer:#?}", i + 1);
            assert!(data["rx_packets"].as_u64().unwrap() > 0, "{peer:#?}");
            assert!(data["tx_packets"].as_u64().unwrap() > 0, "{peer:#?}");
        }
    }
    // A pool address no member holds is answered with ICMP host unreachable, not silence.
    let status = lan.status(0).unwrap();
    let unused = unused_address(&overlay, status["cidr"].as_str().unwrap());
    let out = lan.hosts[0].run("ping", &["-c", "1", "-W", "2", &unused]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Destination Host Unreachable"),
        "ping {unused}: {text}"
    );
}

/// An address of the pool `cidr` that is none of `taken`.
fn unused_address(taken: &[String], cidr: &str) -> String {
    let net: ipnet::Ipv4Net = cidr.parse().unwrap();
    net.hosts()
        .map(|a| a.to_string())
        .rfind(|a| !taken.contains(a))
        .expect("a free address")
}

#[test]
fn a_tcp_transfer_arrives_intact_with_and_without_offloads() {
    require_netns!();
    let mut lan = Lan::new(3, WEFT);
    let overlay = mesh(&mut lan, 3);
    // n1 → n2: both with offloads; n1 → n3: into a node without them.
    for target in [1, 2] {
        let sent = transfer(&mut lan, 0, target, &overlay[target], TRANSFER_MIB);
        let received = lan.hosts[target].dir.join("received.sha256");
        let got = wait_until(DEADLINE, "the receiver to hash what arrived", || {
            std::fs::read_to_string(&received)
                .ok()
                .filter(|t| t.len() >= 64)
        });
        assert_eq!(got[..64], sent[..64], "n1 → n{}", target + 1);
    }
}

/// Size of each TCP transfer.
const TRANSFER_MIB: usize = 1024;

/// Sends `mib` MiB of random bytes over TCP from host `from` to host `to` (overlay address
/// `address`), where `nc` hashes what it receives into `received.sha256`; returns the
/// SHA-256 of what was sent.
fn transfer(lan: &mut Lan, from: usize, to: usize, address: &str, mib: usize) -> String {
    let received = lan.hosts[to].dir.join("received.sha256");
    let _ = std::fs::remove_file(&received);
    let sink = format!("nc -l 7000 | sha256sum > {}", received.display());
    lan.spawn(
        to,
        "sink",
        std::path::Path::new("bash"),
        &["-c", &sink],
        &[],
    );
    wait_until(DEADLINE, "the sink to listen", || {
        let out = lan.hosts[to].run("ss", &["-ltnH", "sport = :7000"]);
        (!out.stdout.is_empty()).then_some(())
    });
    let sent = lan.hosts[from].dir.join("sent.sha256");
    let source = format!(
        "set -o pipefail; head -c {bytes} /dev/urandom | tee >(sha256sum > {sent}) | timeout 300 nc -N {address} 7000",
        bytes = mib << 20,
        sent = sent.display(),
    );
    let out = lan.hosts[from].run("bash", &["-c", &source]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until(DEADLINE, "the sender's hash", || {
        std::fs::read_to_string(&sent)
            .ok()
            .filter(|t| t.len() >= 64)
    })
}
