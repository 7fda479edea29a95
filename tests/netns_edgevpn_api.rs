//! edgevpn's `/api` as Kairos' provider uses it (`../shared/reference/kairos.md`, "What Kairos'
//! provider sends to the daemon's API"), replayed against real `weft` processes in namespaces:
//! a node advertises itself with `PUT /api/ledger/kairos/<uuid>-uuid/<base64url JSON>`, another
//! reads it back by key and by bucket, double-encoded as edgevpn answers; a missing key is `""`;
//! the `healthcheck` bucket lists every live member with a fresh RFC 3339 time; the machines
//! carry their overlay addresses; DELETE answers like PUT and the key is gone. Expected bodies
//! are the snapshot files of `tests/snapshots/edgevpn/` (Go's encoder: compact,
//! newline-terminated), derived from the reference, not recorded from a running edgevpn (no Go
//! toolchain on these machines; their README says how to record them).
//!
//! `edgevpn api --enable-healthchecks` runs without CAP_NET_ADMIN (dropped from its bounding set)
//! and serves the same ledger.
//!
//! Needs root and iproute2; elsewhere it prints why it is skipped.

mod support;

use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;
use support::netns::{Lan, wait_until};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
const DEADLINE: Duration = Duration::from_secs(60);

/// `METHOD path` on host `i`'s API socket; (status, body).
fn call(lan: &Lan, i: usize, method: &str, path: &str) -> (u16, String) {
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "-X",
            method,
            "--unix-socket",
        ])
        .arg(lan.hosts[i].api_socket())
        .arg(format!("http://localhost{path}"))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').expect("curl printed the status");
    (status.trim().parse().unwrap_or(0), body.to_string())
}

fn get(lan: &Lan, i: usize, path: &str) -> String {
    let (status, body) = call(lan, i, "GET", path);
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// The snapshot `name` of `tests/snapshots/edgevpn/` with its placeholders filled in.
fn snapshot(name: &str, fill: &[(&str, &str)]) -> String {
    let path = format!(
        "{}/tests/snapshots/edgevpn/{name}.txt",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    for (placeholder, value) in fill {
        text = text.replace(&format!("{{{placeholder}}}"), value);
    }
    text
}

/// What edgevpn answers for a value stored from path segment `segment`: the segment's JSON
/// text, as a JSON string, and a newline.
fn twice_encoded(segment: &str) -> String {
    snapshot("ledger-key", &[("value", segment)])
}

#[test]
fn kairos_provider_call_sequence_gets_edgevpn_answers() {
    require_netns!();
    let mut lan = Lan::new(2, WEFT);
    let token = lan.new_token();
    for i in 0..2 {
        lan.start_weft(i, &["--token", &token, "--no-dht"], &[]);
    }
    let addresses = lan.settled_addresses(&[0, 1], DEADLINE);
    let ids: Vec<String> = (0..2).map(|i| lan.peer_id(i)).collect();

    // 1. Advertise: PUT of base64url (padded) JSON, answered {"State":"Announcing"}.
    let uuid = "0f6c4bd1e7a94c2f9b3e8d2a1c5f7e60-n1";
    let advert = base64::engine::general_purpose::URL_SAFE
        .encode(br#"{"Time":"2026-11-30T15:00:00.123456789Z"}"#);
    let key = format!("{uuid}-uuid");
    let (status, body) = call(
        &lan,
        0,
        "PUT",
        &format!("/api/ledger/kairos/{key}/{advert}"),
    );
    assert_eq!(
        (status, body.as_str()),
        (200, snapshot("announcing", &[]).as_str())
    );

    // 2. The other node reads it back by key (once its copy applied it) and by bucket.
    let by_key = wait_until(DEADLINE, "the advert on n2", || {
        let body = get(&lan, 1, &format!("/api/ledger/kairos/{key}"));
        (body != snapshot("missing-key", &[])).then_some(body)
    });
    assert_eq!(by_key, twice_encoded(&advert));
    let bucket = get(&lan, 1, "/api/ledger/kairos");
    assert_eq!(
        bucket,
        snapshot("ledger-bucket", &[("key", &key), ("value", &advert)])
    );
    let all: Value = serde_json::from_str(&get(&lan, 1, "/api/ledger")).unwrap();
    assert_eq!(all["kairos"][&key], format!("\"{advert}\""));

    // Kairos' client decodes twice, then base64url: the advert comes back whole.
    let once: String = serde_json::from_str(&by_key).unwrap();
    let twice: String = serde_json::from_str(&once).unwrap();
    let json = base64::engine::general_purpose::URL_SAFE
        .decode(twice)
        .unwrap();
    assert_eq!(json, br#"{"Time":"2026-11-30T15:00:00.123456789Z"}"#);

    // 3. A missing key is "" with 200.
    assert_eq!(
        get(&lan, 1, "/api/ledger/kairos/nobody-role"),
        snapshot("missing-key", &[])
    );

    // 4. healthcheck: every live member, a fresh RFC 3339 time, double-encoded.
    let health: Value = serde_json::from_str(&get(&lan, 1, "/api/ledger/healthcheck")).unwrap();
    let health = health.as_object().unwrap();
    for id in &ids {
        let value = health[id].as_str().unwrap();
        let time: String = serde_json::from_str(value).unwrap();
        assert!(
            time.len() == 20 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
            "{time}"
        );
    }

    // 5. Roles, IPs and the join token as the provider writes them, read on the other node.
    for (k, v) in [
        ("leader-auto", "bGVhZGVy"),
        (&format!("{uuid}-role")[..], "bWFzdGVy"),
    ] {
        let (status, _) = call(&lan, 1, "PUT", &format!("/api/ledger/kairos/{k}/{v}"));
        assert_eq!(status, 200);
        wait_until(DEADLINE, "the provider's key on n1", || {
            (get(&lan, 0, &format!("/api/ledger/kairos/{k}")) == twice_encoded(v)).then_some(())
        });
    }

    // 6. Machines: each member with its overlay address.
    let machines: Value = serde_json::from_str(&get(&lan, 0, "/api/machines")).unwrap();
    let machines = machines.as_array().unwrap();
    assert_eq!(machines.len(), 2, "{machines:?}");
    for (id, address) in ids.iter().zip(&addresses) {
        let m = machines
            .iter()
            .find(|m| m["PeerID"] == id.as_str())
            .unwrap_or_else(|| panic!("{id} in {machines:?}"));
        assert_eq!(m["Address"], address.as_str());
        assert_eq!(m["OS"], std::env::consts::OS);
        assert_eq!(m["Online"], true);
        assert_eq!(m["OnChain"], true);
    }
    let raw = get(&lan, 0, "/api/machines");
    let fields: Vec<&str> = raw
        .split(',')
        .filter_map(|f| {
            f.split_once(':')
                .map(|(k, _)| k.trim_start_matches(['[', '{']))
        })
        .take(9)
        .collect();
    assert_eq!(
        fields,
        [
            "\"PeerID\"",
            "\"Hostname\"",
            "\"OS\"",
            "\"Arch\"",
            "\"Address\"",
            "\"Version\"",
            "\"Connected\"",
            "\"OnChain\"",
            "\"Online\""
        ],
        "edgevpn's field order: {raw}"
    );

    // 7. Summary, nodes, peerstore, users, services.
    let summary: Value = serde_json::from_str(&get(&lan, 0, "/api/summary")).unwrap();
    assert_eq!(summary["NodeID"], ids[0].as_str());
    assert_eq!(summary["Machines"], 2);
    assert_eq!(summary["Peers"], 1);
    assert_eq!(
        get(&lan, 0, "/api/nodes"),
        snapshot("nodes", &[("peer", &ids[1])])
    );
    assert_eq!(
        get(&lan, 0, "/api/peerstore"),
        snapshot("peerstore", &[("peer", &ids[1])])
    );
    assert_eq!(get(&lan, 0, "/api/users"), snapshot("users", &[]));
    assert_eq!(get(&lan, 0, "/api/services"), snapshot("services", &[]));

    // 8. DELETE a key, then the bucket: answered like PUT, gone everywhere.
    let (status, body) = call(&lan, 1, "DELETE", &format!("/api/ledger/kairos/{key}"));
    assert_eq!(
        (status, body.as_str()),
        (200, snapshot("announcing", &[]).as_str())
    );
    wait_until(DEADLINE, "the deleted advert to be gone on n1", || {
        (get(&lan, 0, &format!("/api/ledger/kairos/{key}")) == snapshot("missing-key", &[]))
            .then_some(())
    });
    let (status, body) = call(&lan, 0, "DELETE", "/api/ledger/kairos");
    assert_eq!(
        (status, body.as_str()),
        (200, snapshot("announcing", &[]).as_str())
    );
    wait_until(DEADLINE, "the bucket to be gone on n2", || {
        (get(&lan, 1, "/api/ledger/kairos") == snapshot("empty-bucket", &[])).then_some(())
    });
}

#[test]
fn edgevpn_api_runs_without_net_admin_and_serves_the_same_ledger() {
    require_netns!();
    let mut lan = Lan::new(2, WEFT);
    let token = lan.new_token();
    lan.start_weft(0, &["--token", &token, "--no-dht"], &[]);
    lan.wait_api(0, DEADLINE);
    // Kairos' form: the binary named edgevpn, its environment, `api --enable-healthchecks`.
    let edgevpn = lan.hosts[1].dir.join("edgevpn");
    std::os::unix::fs::symlink(WEFT, &edgevpn).unwrap();
    let state = lan.hosts[1].state_dir();
    let api = lan.hosts[1].api();
    let env = [
        ("EDGEVPNTOKEN", token.as_str()),
        ("EDGEVPNDHT", "false"),
        ("APILISTEN", api.as_str()),
        ("DHCPLEASEDIR", state.to_str().unwrap()),
    ];
    lan.spawn(
        1,
        "edgevpn-api@n2",
        std::path::Path::new("setpriv"),
        &[
            "--bounding-set=-net_admin",
            edgevpn.to_str().unwrap(),
            "api",
            "--enable-healthchecks",
        ],
        &env,
    );
    // It joins the mesh's cluster like any member (its ledger record gets an address).
    lan.settled_addresses(&[0, 1], DEADLINE);
    let (put, _) = call(&lan, 0, "PUT", "/api/ledger/kairos/from-n1/dmFsdWU=");
    assert_eq!(put, 200);
    wait_until(DEADLINE, "the value on the api-only node", || {
        (get(&lan, 1, "/api/ledger/kairos/from-n1") == twice_encoded("dmFsdWU=")).then_some(())
    });
    let health: Value = serde_json::from_str(&get(&lan, 1, "/api/ledger/healthcheck")).unwrap();
    assert_eq!(health.as_object().unwrap().len(), 2, "{health}");
    let log = lan.processes.last().unwrap().log_text();
    assert!(log.contains("no TUN interface"), "{log}");
    let caps = std::fs::read_to_string(format!(
        "/proc/{}/status",
        lan.processes.last().unwrap().pid()
    ))
    .unwrap_or_default();
    let effective = caps
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|hex| u64::from_str_radix(hex.trim(), 16).unwrap())
        .unwrap_or(0);
    assert_eq!(effective & (1 << 12), 0, "CAP_NET_ADMIN (12) is not held");
}
