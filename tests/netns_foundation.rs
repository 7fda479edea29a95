//! End-to-end in network namespaces: real `weft up` processes serve their API, keep their
//! identity across restarts, refuse a corrupt key, and stop cleanly on SIGTERM.
//! Needs root and iproute2; elsewhere each test prints why it is skipped.

mod support;

use std::time::Duration;

use support::netns::{Lan, wait_until};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
const DEADLINE: Duration = Duration::from_secs(30);

#[test]
fn three_nodes_serve_status_and_stop_cleanly_on_sigterm() {
    require_netns!();
    let mut lan = Lan::new(3, WEFT);
    let token = lan.new_token();
    let procs: Vec<usize> = (0..3)
        .map(|i| lan.start_weft(i, &["--token", &token], &[]))
        .collect();

    let statuses: Vec<serde_json::Value> = (0..3)
        .map(|i| wait_until(DEADLINE, &format!("status of n{}", i + 1), || lan.status(i)))
        .collect();
    for (i, status) in statuses.iter().enumerate() {
        assert_eq!(status["hostname"], format!("n{}", i + 1));
        assert!(status["peer_id"].as_str().unwrap().starts_with("12D3KooW"));
        assert_eq!(status["network_id"], statuses[0]["network_id"]);
    }
    let mut ids: Vec<&str> = statuses
        .iter()
        .map(|s| s["peer_id"].as_str().unwrap())
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), 3, "every node has its own identity");

    for (i, p) in procs.into_iter().enumerate() {
        lan.processes[p].signal("TERM");
        let status = lan.processes[p]
            .wait_exit(DEADLINE)
            .expect("weft exits after SIGTERM");
        assert_eq!(status.code(), Some(0), "{}", lan.processes[p].log_text());
        assert!(
            !lan.hosts[i].api_socket().exists(),
            "n{} left its socket behind",
            i + 1
        );
    }
}

#[test]
fn identity_survives_a_restart_with_the_same_state_dir() {
    require_netns!();
    let mut lan = Lan::new(1, WEFT);
    let token = lan.new_token();
    let mut peer_ids = Vec::new();
    for _ in 0..2 {
        let p = lan.start_weft(0, &["--token", &token], &[]);
        let status = wait_until(DEADLINE, "status of n1", || lan.status(0));
        peer_ids.push(status["peer_id"].as_str().unwrap().to_string());
        lan.processes[p].signal("TERM");
        assert_eq!(
            lan.processes[p].wait_exit(DEADLINE).and_then(|s| s.code()),
            Some(0)
        );
    }
    assert_eq!(peer_ids[0], peer_ids[1]);
}

#[test]
fn a_corrupt_identity_key_stops_start_up_with_a_clear_message() {
    require_netns!();
    let mut lan = Lan::new(1, WEFT);
    let key = lan.hosts[0].state_dir().join("identity.key");
    std::fs::create_dir_all(key.parent().unwrap()).unwrap();
    std::fs::write(&key, b"garbage, not a key").unwrap();
    let p = lan.start_weft(0, &["--token", &lan.new_token()], &[]);
    let status = lan.processes[p].wait_exit(DEADLINE).expect("weft exits");
    assert_eq!(status.code(), Some(1));
    let log = lan.processes[p].log_text();
    assert!(
        log.contains("is corrupt") && log.contains(key.to_str().unwrap()),
        "{log}"
    );
    assert_eq!(
        std::fs::read(&key).unwrap(),
        b"garbage, not a key",
        "the key is left as it was"
    );
    assert!(!lan.hosts[0].api_socket().exists());
}

#[test]
fn a_second_daemon_on_the_same_socket_is_refused() {
    require_netns!();
    let mut lan = Lan::new(1, WEFT);
    let token = lan.new_token();
    lan.start_weft(0, &["--token", &token], &[]);
    wait_until(DEADLINE, "status of n1", || lan.status(0));
    let second_state = lan.hosts[0].dir.join("state2");
    let api = lan.hosts[0].api();
    let args = [
        "up",
        "--token",
        &token,
        "--api",
        &api,
        "--state-dir",
        second_state.to_str().unwrap(),
    ];
    let second = lan.spawn(0, "second", WEFT.as_ref(), &args, &[]);
    let status = lan.processes[second]
        .wait_exit(DEADLINE)
        .expect("second weft exits");
    assert_eq!(status.code(), Some(1));
    assert!(lan.processes[second].log_text().contains("already serving"));
    assert!(lan.status(0).is_some(), "the first daemon keeps serving");
}

#[test]
fn systemd_hears_ready_once_the_api_answers_and_stopping_on_sigterm() {
    require_netns!();
    let mut lan = Lan::new(1, WEFT);
    let notify_path = lan.hosts[0].dir.join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(DEADLINE)).unwrap();
    let p = lan.start_weft(
        0,
        &["--token", &lan.new_token()],
        &[("NOTIFY_SOCKET", notify_path.to_str().unwrap())],
    );
    let mut buf = [0u8; 256];
    let n = notify.recv(&mut buf).expect("a notification arrives");
    assert_eq!(String::from_utf8_lossy(&buf[..n]).trim(), "READY=1");
    assert!(lan.status(0).is_some(), "READY means the API answers");
    lan.processes[p].signal("TERM");
    let n = notify.recv(&mut buf).expect("a notification arrives");
    assert_eq!(String::from_utf8_lossy(&buf[..n]).trim(), "STOPPING=1");
    assert_eq!(
        lan.processes[p].wait_exit(DEADLINE).and_then(|s| s.code()),
        Some(0)
    );
}
