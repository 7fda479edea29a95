//! End-to-end control plane in network namespaces: discovery by mDNS alone, and a relayed
//! pair that has no route to each other. Needs root and iproute2; elsewhere each test prints
//! why it is skipped.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::netns::{Lan, wait_until};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
const DEADLINE: Duration = Duration::from_secs(60);

/// PeerIds of host `i`'s admitted peers, once its API answers.
fn admitted(lan: &Lan, i: usize) -> Option<BTreeSet<String>> {
    let out = lan.weft(&["peers", "--json", "--api", &lan.hosts[i].api()]);
    if !out.status.success() {
        return None;
    }
    let peers: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).ok()?;
    Some(
        peers
            .iter()
            .filter_map(|p| p["peer_id"].as_str().map(str::to_string))
            .collect(),
    )
}

#[test]
fn four_nodes_on_one_lan_admit_each_other_by_mdns_alone() {
    require_netns!();
    let mut lan = Lan::new(4, WEFT);
    let token = lan.new_token();
    for i in 0..4 {
        lan.start_weft(i, &["--token", &token, "--no-dht"], &[]);
    }
    let ids: Vec<String> = (0..4)
        .map(|i| {
            lan.wait_api(i, DEADLINE)["peer_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    for i in 0..4 {
        let others: BTreeSet<String> = ids
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, id)| id.clone())
            .collect();
        wait_until(
            DEADLINE,
            &format!("n{} to admit the three others", i + 1),
            || admitted(&lan, i).filter(|set| *set == others),
        );
    }
}

/// The admitted peers of host `i` as JSON objects.
fn peer_views(lan: &Lan, i: usize) -> Vec<serde_json::Value> {
    let out = lan.weft(&["peers", "--json", "--api", &lan.hosts[i].api()]);
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

#[test]
fn two_nodes_without_a_route_between_them_become_peers_through_a_relay() {
    require_netns!();
    // n1 (A) and n3 (B) each share a segment with n2 (R) only; R does not forward packets.
    let mut lan = Lan::segments(3, &[&[0, 1], &[1, 2]], WEFT);
    let token = lan.new_token();
    let (a, r, b) = (0, 1, 2);
    let relay_id = lan.start_relayed(&token, (a, r, b), &["--no-mdns", "--no-dht"], DEADLINE);
    let b_id = lan.wait_api(b, DEADLINE)["peer_id"]
        .as_str()
        .unwrap()
        .to_string();
    let a_id = lan.wait_api(a, DEADLINE)["peer_id"]
        .as_str()
        .unwrap()
        .to_string();

    for (me, other) in [(a, &b_id), (b, &a_id)] {
        let view = wait_until(
            DEADLINE,
            &format!("n{} to admit its unroutable peer", me + 1),
            || {
                peer_views(&lan, me)
                    .into_iter()
                    .find(|p| p["peer_id"] == other.as_str())
            },
        );
        assert_eq!(view["connection"], "relayed", "{view}");
        let relay = peer_views(&lan, me)
            .into_iter()
            .find(|p| p["peer_id"] == relay_id.as_str())
            .expect("the relay is a peer too");
        assert_eq!(relay["connection"], "direct");
        assert_eq!(relay["relay"], true);
    }
}

/// Gives host `i` a default route into a dead-end veth pair (so a dial to any public address
/// really emits packets) and an nftables counter of every packet sent beyond the test LANs.
fn count_packets_beyond_the_lan(lan: &Lan, i: usize) {
    let host = &lan.hosts[i];
    for args in [
        vec![
            "link", "add", "wan0", "type", "veth", "peer", "name", "wan0end",
        ],
        vec!["link", "set", "wan0end", "up"],
        vec!["link", "set", "wan0", "up"],
        vec!["route", "add", "default", "dev", "wan0"],
        vec!["-6", "route", "add", "default", "dev", "wan0"],
        vec!["route", "add", "224.0.0.0/4", "dev", "eth0"],
    ] {
        let mut all = vec!["-n", host.netns.as_str()];
        all.extend(args);
        support::netns::ip(&all);
    }
    let rules = "table inet weft_test {
        chain out {
            type filter hook output priority 0; policy accept;
            ip daddr != { 10.99.0.0/16, 127.0.0.0/8, 224.0.0.0/4, 255.255.255.255 } counter
            ip6 daddr != { ::1, fe80::/10, ff00::/8 } counter
        }
    }";
    let rules_file = host.dir.join("count.nft");
    std::fs::write(&rules_file, rules).unwrap();
    let out = host.run("nft", &["-f", rules_file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "nft: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Packets host `i` sent beyond the test LANs so far.
fn packets_beyond_the_lan(lan: &Lan, i: usize) -> u64 {
    let out = lan.hosts[i].run("nft", &["list", "chain", "inet", "weft_test", "out"]);
    let text = String::from_utf8_lossy(&out.stdout);
    text.split("packets ")
        .skip(1)
        .filter_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn a_default_node_sends_nothing_beyond_its_lan() {
    require_netns!();
    if support::netns::nft_missing() {
        return;
    }
    let mut lan = Lan::new(2, WEFT);
    let token = lan.new_token();
    for i in 0..2 {
        count_packets_beyond_the_lan(&lan, i);
        // Defaults: mDNS and the private DHT on, no bootstrap peers, no --public-dht.
        lan.start_weft(i, &["--token", &token], &[]);
    }
    for i in 0..2 {
        lan.wait_api(i, DEADLINE);
        wait_until(DEADLINE, "the two nodes to admit each other", || {
            admitted(&lan, i).filter(|set| set.len() == 1)
        });
    }
    // Start-up, discovery, admission and the first rendezvous round are over; keep watching
    // for a few more seconds of steady state.
    let watch_until = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < watch_until {
        for i in 0..2 {
            assert_eq!(
                packets_beyond_the_lan(&lan, i),
                0,
                "n{} sent packets beyond its LAN",
                i + 1
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
