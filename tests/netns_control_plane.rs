//! End-to-end control plane in network namespaces: discovery by mDNS alone, and a relayed
//! pair that has no route to each other. Needs root and iproute2; elsewhere each test prints
//! why it is skipped.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::netns::{Lan, wait_until};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
const DEADLINE: Duration = Duration::from_secs(60);

fn token() -> String {
    let out = std::process::Command::new(WEFT)
        .args(["token", "new"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

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
    let token = token();
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
