//! End-to-end ledger in network namespaces: five `weft up` processes started at once agree on
//! one cluster and distinct overlay addresses, a value put on one node is read back on every
//! other, and `weft members` shows three of them as raft voters. Needs root and iproute2;
//! elsewhere it prints why it is skipped.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::netns::{Lan, wait_until};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
const DEADLINE: Duration = Duration::from_secs(60);

#[test]
fn five_nodes_started_together_get_distinct_addresses_in_one_cluster() {
    require_netns!();
    let mut lan = Lan::new(5, WEFT);
    let token = lan.new_token();
    for i in 0..5 {
        lan.start_weft(i, &["--token", &token, "--no-dht"], &[]);
    }
    let statuses: Vec<serde_json::Value> = (0..5)
        .map(|i| {
            lan.wait_api(i, DEADLINE);
            wait_until(
                DEADLINE,
                &format!("n{} to get an overlay address", i + 1),
                || {
                    lan.status(i).filter(|s| {
                        s["overlay_ip"].is_string() && s["ledger"]["cluster_id"].is_string()
                    })
                },
            )
        })
        .collect();
    let addresses: BTreeSet<&str> = statuses
        .iter()
        .map(|s| s["overlay_ip"].as_str().unwrap())
        .collect();
    assert_eq!(addresses.len(), 5, "distinct addresses: {addresses:?}");
    let clusters: BTreeSet<&str> = statuses
        .iter()
        .map(|s| s["ledger"]["cluster_id"].as_str().unwrap())
        .collect();
    assert_eq!(clusters.len(), 1, "one cluster: {clusters:?}");

    let put = lan.weft(&[
        "ledger",
        "put",
        "demo",
        "greeting",
        "hello mesh",
        "--api",
        &lan.hosts[2].api(),
    ]);
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    for i in 0..5 {
        wait_until(
            DEADLINE,
            &format!("n{} to read the value back", i + 1),
            || {
                let out = lan.weft(&[
                    "ledger",
                    "get",
                    "demo",
                    "greeting",
                    "--api",
                    &lan.hosts[i].api(),
                ]);
                (out.status.success()
                    && String::from_utf8_lossy(&out.stdout).trim() == "hello mesh")
                    .then_some(())
            },
        );
    }

    // The raft seats each member holds, as `weft members` shows them: the mesh aims for three
    // voters, the leader among them; the two other members hold no vote.
    wait_until(DEADLINE, "three voters, the leader one", || {
        let leader = lan.status(0)?["ledger"]["leader"].as_str()?.to_string();
        let out = lan.weft_ok(0, &["members", "--json"]);
        let members: Vec<serde_json::Value> = serde_json::from_str(&out).ok()?;
        let voters = members.iter().filter(|m| m["raft"] == "voter").count();
        let leads = members
            .iter()
            .any(|m| m["peer_id"] == leader.as_str() && m["raft"] == "voter");
        (members.len() == 5 && voters == 3 && leads).then_some(())
    });
    let table = lan.weft_ok(0, &["members"]);
    assert!(
        table.contains(" RAFT ") && table.contains(" voter "),
        "{table}"
    );
}

#[test]
fn a_restarted_node_keeps_its_peer_id_and_its_address() {
    require_netns!();
    let mut lan = Lan::new(3, WEFT);
    let token = lan.new_token();
    let mut procs = Vec::new();
    for i in 0..3 {
        procs.push(lan.start_weft(i, &["--token", &token, "--no-dht"], &[]));
    }
    let addressed = |lan: &Lan, i: usize| lan.status(i).filter(|s| s["overlay_ip"].is_string());
    for i in 0..3 {
        lan.wait_api(i, DEADLINE);
        wait_until(DEADLINE, "an overlay address", || addressed(&lan, i));
    }
    let before = addressed(&lan, 1).unwrap();
    lan.processes[procs[1]].signal("TERM");
    assert_eq!(
        lan.processes[procs[1]]
            .wait_exit(DEADLINE)
            .and_then(|s| s.code()),
        Some(0)
    );
    lan.start_weft(1, &["--token", &token, "--no-dht"], &[]);
    lan.wait_api(1, DEADLINE);
    let after = wait_until(DEADLINE, "the restarted node's address", || {
        addressed(&lan, 1)
    });
    assert_eq!(after["peer_id"], before["peer_id"]);
    assert_eq!(after["overlay_ip"], before["overlay_ip"]);
    assert_eq!(
        after["ledger"]["cluster_id"],
        before["ledger"]["cluster_id"]
    );
}
