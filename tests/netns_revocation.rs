//! Revoking a member, end to end in namespaces, in a mesh started with an operator key: `weft
//! members deny` without the operator's key is refused, naming it; with `--operator-key-file`
//! it cuts the denied node off everywhere within 10 s (no member lists it as a peer, its
//! overlay address stops answering, it is no member of the ledger) and it stays out while
//! denied; `weft members allow` lets it back in. The operator's commands are signed for the
//! mesh's network. A token rotation needs the key as well. The machines the operator trusts
//! (`weft members trust`, signed) take every raft seat.
//! (`tests/netns_rotation.rs` denies and rotates in a mesh without one.) Needs root and
//! iproute2; elsewhere it prints why it is skipped.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use support::netns::{Lan, wait_until};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
const DEADLINE: Duration = Duration::from_secs(60);
/// How fast a denial must reach every member.
const CUT_OFF: Duration = Duration::from_secs(10);

/// PeerIds of host `i`'s admitted peers.
fn admitted(lan: &Lan, i: usize) -> BTreeSet<String> {
    let out = lan.weft(&["peers", "--json", "--api", &lan.hosts[i].api()]);
    assert!(out.status.success(), "weft peers on n{}", i + 1);
    let peers: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    peers
        .iter()
        .filter_map(|p| p["peer_id"].as_str().map(str::to_string))
        .collect()
}

fn pings(lan: &Lan, from: usize, to: &str) -> bool {
    lan.hosts[from]
        .run("ping", &["-c", "1", "-W", "1", to])
        .status
        .success()
}

/// `hosts` nodes on one LAN, each started with the public key of an operator key made by
/// `weft operator keygen`, with the directory holding the key file (kept while the test runs)
/// and the key file's path.
fn keyed_lan(hosts: usize) -> (Lan, tempfile::TempDir, String) {
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("operator.key");
    let key_file = key_file.to_str().unwrap().to_string();
    let mut lan = Lan::new(hosts, WEFT);
    let token = lan.new_token();
    let keygen = lan.weft(&["operator", "keygen", "--out", &key_file]);
    assert!(keygen.status.success(), "weft operator keygen");
    let public = String::from_utf8(keygen.stdout).unwrap();
    let public = public.trim();
    for i in 0..hosts {
        lan.start_weft(
            i,
            &["--token", &token, "--no-dht", "--operator-key", public],
            &[],
        );
    }
    (lan, keys, key_file)
}

#[test]
fn a_denied_member_is_cut_off_everywhere_and_stays_out_until_allowed() {
    require_netns!();
    let (mut lan, _keys, key_file) = keyed_lan(3);
    let key_file = key_file.as_str();
    let addresses = lan.settled_addresses(&[0, 1, 2], DEADLINE);
    let ids: Vec<String> = (0..3).map(|i| lan.peer_id(i)).collect();
    wait_until(DEADLINE, "n1 to reach n3 over the overlay", || {
        pings(&lan, 0, &addresses[2]).then_some(())
    });

    // Without the operator's key, n1 (any member) cannot deny n3.
    let unsigned = lan.weft(&["members", "deny", "n3", "--api", &lan.hosts[0].api()]);
    assert!(!unsigned.status.success());
    let why = String::from_utf8_lossy(&unsigned.stderr);
    assert!(why.contains("operator's signature"), "{why}");
    assert!(lan.weft_ok(1, &["members", "--json"]).contains(&ids[2]));

    // Deny n3 (by hostname) from n1, signed for this mesh's network alone once every raft
    // node checks that (the rules of version 3, adopted as the mesh forms).
    wait_until(DEADLINE, "the rules of version 3 on n1", || {
        let status = lan.weft_ok(0, &["status", "--json"]);
        let status: serde_json::Value = serde_json::from_str(&status).unwrap();
        (status["ledger"]["rules"].as_u64() >= Some(3)).then_some(())
    });
    let network = network_id(&lan, 0);
    let denied_at = Instant::now();
    let api = lan.hosts[0].api();
    let deny = ["members", "deny", "n3", "--operator-key-file", key_file];
    let signed = lan.weft(&[&deny[..], &["--api", &api]].concat());
    let said = String::from_utf8_lossy(&signed.stderr);
    assert!(signed.status.success(), "{said}");
    assert!(said.contains(&format!("in network {network}")), "{said}");
    wait_until(CUT_OFF, "n1 and n2 to drop n3", || {
        (!admitted(&lan, 0).contains(&ids[2]) && !admitted(&lan, 1).contains(&ids[2])).then_some(())
    });
    eprintln!("n3 cut off after {:?}", denied_at.elapsed());
    let members = lan.weft_ok(1, &["members", "--json"]);
    assert!(!members.contains(&ids[2]), "n3 is no member: {members}");
    assert!(
        lan.weft_ok(1, &["members", "denied"]).contains(&ids[2]),
        "n2 lists n3 as denied"
    );
    assert!(
        !pings(&lan, 0, &addresses[2]),
        "n3's address no longer answers"
    );
    // n3 itself notices it is cut off: it is no longer ready.
    wait_until(CUT_OFF, "n3's /readyz to turn 503", || {
        let out = std::process::Command::new("curl")
            .args(["-s", "-w", "\n%{http_code}", "--unix-socket"])
            .arg(lan.hosts[2].api_socket())
            .arg("http://localhost/readyz")
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.ends_with("503").then_some(text)
    });

    // It keeps trying (it still runs and holds the token), and stays out.
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(5) {
        assert!(!admitted(&lan, 0).contains(&ids[2]), "n3 got back in");
        assert!(!admitted(&lan, 1).contains(&ids[2]), "n3 got back in");
        std::thread::sleep(Duration::from_millis(500));
    }
    // A node cannot deny itself.
    let out = lan.weft(&["members", "deny", &ids[0], "--api", &lan.hosts[0].api()]);
    assert!(!out.status.success());

    // Allowed again, it rejoins.
    lan.weft_ok(
        0,
        &["members", "allow", &ids[2], "--operator-key-file", key_file],
    );
    wait_until(DEADLINE, "n3 admitted again and a member", || {
        (admitted(&lan, 0).contains(&ids[2])
            && lan.weft_ok(0, &["members", "--json"]).contains(&ids[2]))
        .then_some(())
    });

    // A removal is signed for the cluster the node is in: refused unsigned, done signed.
    let unsigned = lan.weft(&["members", "rm", "n3", "--api", &lan.hosts[0].api()]);
    assert!(!unsigned.status.success());
    lan.weft_ok(0, &["members", "rm", "n3", "--operator-key-file", key_file]);

    // A token rotation is the operator's too: refused unsigned, done signed.
    let unsigned = lan.weft(&["token", "rotate", "--api", &lan.hosts[0].api()]);
    assert!(!unsigned.status.success());
    let why = String::from_utf8_lossy(&unsigned.stderr);
    assert!(why.contains("operator's signature"), "{why}");
    let before = network_id(&lan, 1);
    lan.weft_ok(0, &["token", "rotate", "--operator-key-file", key_file]);
    wait_until(DEADLINE, "n2 on the new token", || {
        (network_id(&lan, 1) != before).then_some(())
    });
}

/// The operator trusts three of four machines with raft seats, through the CLI: unsigned the
/// trust is refused, naming the key, and by hostname, naming the PeerId it takes; signed, the
/// three take every seat and hold them, the fourth (whichever it was) votes no more, and `weft
/// members trusted` lists them.
#[test]
fn the_machines_the_operator_trusts_take_the_raft_seats() {
    require_netns!();
    let (mut lan, _keys, key_file) = keyed_lan(4);
    let key_file = key_file.as_str();
    lan.settled_addresses(&[0, 1, 2, 3], DEADLINE);
    let ids: Vec<String> = (0..4).map(|i| lan.peer_id(i)).collect();
    let voters = |i: usize| -> (BTreeSet<String>, Option<String>, u64) {
        let status = lan.weft_ok(i, &["status", "--json"]);
        let status: serde_json::Value = serde_json::from_str(&status).unwrap();
        let ledger = &status["ledger"];
        let voters = ledger["voters"].as_array().cloned().unwrap_or_default();
        let voters = voters
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        let leader = ledger["leader"].as_str().map(str::to_string);
        (voters, leader, ledger["rules"].as_u64().unwrap_or(0))
    };
    wait_until(
        DEADLINE,
        "three voters and the rules of version 4 on n1",
        || {
            let (voters, _, rules) = voters(0);
            (voters.len() == 3 && rules >= 4).then_some(())
        },
    );
    // The first voter by host order stays untrusted; the three others are trusted.
    let untrusted = (0..4)
        .find(|i| voters(0).0.contains(&ids[*i]))
        .expect("a voter");
    let chosen: Vec<usize> = (0..4).filter(|i| *i != untrusted).collect();
    let unsigned = lan.weft(&["members", "trust", "n1", "--api", &lan.hosts[0].api()]);
    assert!(!unsigned.status.success());
    let why = String::from_utf8_lossy(&unsigned.stderr);
    assert!(why.contains("--operator-key-file"), "{why}");
    // A hostname is a member's own word: trust takes a PeerId.
    let by_name = lan.weft(&[
        "members",
        "trust",
        "n2",
        "--operator-key-file",
        key_file,
        "--api",
        &lan.hosts[0].api(),
    ]);
    assert!(!by_name.status.success());
    let why = String::from_utf8_lossy(&by_name.stderr);
    assert!(why.contains("takes a PeerId"), "{why}");
    for (n, i) in chosen.iter().enumerate() {
        let api = lan.hosts[untrusted].api();
        let trust = [
            "members",
            "trust",
            &ids[*i],
            "--operator-key-file",
            key_file,
        ];
        let out = lan.weft(&[&trust[..], &["--api", &api]].concat());
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{said}");
        // Until three trusted machines are live members, the CLI says the seats wait.
        assert_eq!(said.contains("note:"), n < 2, "{said}");
    }
    let trusted: BTreeSet<String> = chosen.iter().map(|i| ids[*i].clone()).collect();
    let listed = lan.weft_ok(untrusted, &["members", "trusted", "--json"]);
    let listed: BTreeSet<String> = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed, trusted);
    // Untrusting a member that is not trusted (a decoy under a trusted machine's old name)
    // fails instead of reporting success.
    let decoy = format!("n{}", untrusted + 1);
    let api = lan.hosts[0].api();
    let untrust = [
        "members",
        "untrust",
        &decoy,
        "--operator-key-file",
        key_file,
    ];
    let out = lan.weft(&[&untrust[..], &["--api", &api]].concat());
    let why = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && why.contains("is not trusted"),
        "{why}"
    );
    let moved = Instant::now();
    wait_until(
        DEADLINE,
        "the trusted machines alone as voters, one of them leading",
        || {
            let (voters, leader, _) = voters(chosen[0]);
            (voters == trusted && leader.is_some_and(|l| trusted.contains(&l))).then_some(())
        },
    );
    eprintln!(
        "n{} untrusted; seats moved {:?} after the trust",
        untrusted + 1,
        moved.elapsed()
    );
    // Every node agrees.
    wait_until(DEADLINE, "every node seeing the trusted voters", || {
        (0..4).all(|i| voters(i).0 == trusted).then_some(())
    });
}

/// The network id host `i`'s weft reports.
fn network_id(lan: &Lan, i: usize) -> String {
    let status = lan.weft_ok(i, &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(status.as_bytes()).unwrap();
    status["network_id"].as_str().unwrap().to_string()
}
