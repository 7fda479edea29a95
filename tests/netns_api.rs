//! The local API's exposure, health and metrics, against real `weft` processes in namespaces:
//!
//! - on TCP, the bearer token of `--api-token-file` (made 0600) is required: none or a wrong one
//!   is 401, the right one 200, and the CLI sends it; a foreign `Host` is refused; a body over
//!   the limit is 413; a client that never finishes its headers is cut off while others are
//!   served;
//! - run as `edgevpn` on loopback TCP (Kairos' `APILISTEN=127.0.0.1:8080`), edgevpn's `/api`
//!   works without a token, native mutating routes do not;
//! - the unix socket gets the configured mode;
//! - `/readyz` is 503 naming what is missing until the node holds an address, then 200;
//! - `/metrics` after overlay traffic and DNS queries holds non-zero data-plane, raft, ledger and
//!   DNS series, and `promtool check metrics` (Debian's `prometheus` package) accepts it.
//!
//! Needs root, iproute2 and curl; elsewhere it prints why it is skipped.

mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::dig;
use support::netns::{Host, Lan, report_skip, wait_until};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
const DEADLINE: Duration = Duration::from_secs(60);
const TCP_API: &str = "127.0.0.1:8080";

/// `curl args... http://127.0.0.1:8080<path>` in `host`'s namespace: (status, body).
fn curl_tcp(host: &Host, path: &str, args: &[&str]) -> (u16, String) {
    let out = host
        .command("curl")
        .args(["-s", "-w", "\n%{http_code}", "--max-time", "20"])
        .args(args)
        .arg(format!("http://{TCP_API}{path}"))
        .output()
        .expect("curl runs");
    split(&out.stdout)
}

/// `curl` against `host`'s API socket: (status, body).
fn curl_socket(host: &Host, path: &str) -> (u16, String) {
    let out = std::process::Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "--unix-socket"])
        .arg(host.api_socket())
        .arg(format!("http://localhost{path}"))
        .output()
        .expect("curl runs");
    split(&out.stdout)
}

fn split(stdout: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_string())
}

fn code(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["code"].as_str().map(str::to_string))
        .unwrap_or_else(|| format!("<not an error body: {body}>"))
}

/// Starts `weft up` on host `i` with its API on loopback TCP.
fn start_tcp(lan: &mut Lan, i: usize, token: &str) {
    let host = lan.hosts[i].clone();
    let state = host.state_dir();
    lan.spawn(
        i,
        &format!("weft@{}", host.name),
        std::path::Path::new(WEFT),
        &[
            "up",
            "--state-dir",
            state.to_str().unwrap(),
            "--api",
            TCP_API,
            "--hostname",
            &host.name,
            "--token",
            token,
            "--no-dht",
        ],
        &[],
    );
}

fn curl_missing() -> Option<String> {
    match std::process::Command::new("curl").arg("--version").output() {
        Ok(_) => None,
        Err(e) => Some(format!("`curl` cannot run: {e}")),
    }
}

#[test]
fn a_tcp_api_needs_its_bearer_token_and_bounds_its_clients() {
    require_netns!();
    if let Some(reason) = curl_missing() {
        report_skip(&reason);
        return;
    }
    let mut lan = Lan::new(1, WEFT);
    let token = lan.new_token();
    start_tcp(&mut lan, 0, &token);
    let host = lan.hosts[0].clone();
    wait_until(DEADLINE, "the TCP API to answer /healthz", || {
        (curl_tcp(&host, "/healthz", &[]).0 == 200).then_some(())
    });
    let token_file = host.state_dir().join("api.token");
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the token file is private");
    let bearer = format!(
        "Authorization: Bearer {}",
        std::fs::read_to_string(&token_file).unwrap().trim()
    );

    let (status, body) = curl_tcp(&host, "/v1/status", &[]);
    assert_eq!(
        (status, code(&body).as_str()),
        (401, "unauthorized"),
        "{body}"
    );
    let (status, _) = curl_tcp(&host, "/v1/status", &["-H", "Authorization: Bearer wrong"]);
    assert_eq!(status, 401);
    let (status, body) = curl_tcp(&host, "/v1/status", &["-H", &bearer]);
    assert_eq!(status, 200, "{body}");
    // Mutating routes are no more open than reading ones.
    let (status, _) = curl_tcp(&host, "/v1/recover", &["-X", "POST"]);
    assert_eq!(status, 401);

    // The CLI sends the token it is pointed at, and says what is missing without it.
    let cli = |extra: &[&str]| {
        host.command(WEFT)
            .args(["status", "--json", "--api", TCP_API])
            .args(extra)
            .env("WEFT_API_TOKEN_FILE", "/nonexistent/api.token")
            .output()
            .unwrap()
    };
    let out = cli(&["--api-token-file", token_file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = host
        .command(WEFT)
        .args(["status", "--api", TCP_API])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Authorization: Bearer"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // DNS rebinding: a page on a foreign name that resolves here is refused, token or not.
    let (status, body) = curl_tcp(
        &host,
        "/v1/status",
        &["-H", &bearer, "-H", "Host: evil.example"],
    );
    assert_eq!((status, code(&body).as_str()), (403, "bad_host"), "{body}");

    // The body of `bytes` sent by `method` to `path` with the token.
    let send = |method: &str, path: &str, bytes: Vec<u8>| {
        let file = host.dir.join("body");
        std::fs::write(&file, bytes).unwrap();
        let data = format!("@{}", file.display());
        curl_tcp(
            &host,
            path,
            &["-H", &bearer, "-X", method, "--data-binary", &data],
        )
    };
    // An oversized body is refused before any handler reads it.
    let (status, body) = send("POST", "/v1/dns", vec![b'x'; 100 * 1024]);
    assert_eq!(
        (status, code(&body).as_str()),
        (413, "payload_too_large"),
        "{body}"
    );

    // A write within the body limit whose encoding is over the ledger's per-write limit is
    // refused naming the limit, and the ledger goes on taking writes.
    let (status, body) = send("PUT", "/v1/ledger/big/value", vec![b'"'; 40 * 1024]);
    assert_eq!(
        (status, code(&body).as_str()),
        (413, "payload_too_large"),
        "{body}"
    );
    assert!(body.contains("at most 65536 bytes per write"), "{body}");
    let (status, body) = send("PUT", "/v1/ledger/small/value", b"fits".to_vec());
    assert_eq!(status, 200, "{body}");

    // A client that never finishes its headers is disconnected; others are served meanwhile.
    let started = Instant::now();
    let mut slow = host
        .command("timeout")
        .args([
            "40",
            "bash",
            "-c",
            "exec 3<>/dev/tcp/127.0.0.1/8080; printf 'GET /healthz HTTP/1.1\\r\\nHost: localhost\\r\\n' >&3; cat <&3 >/dev/null",
        ])
        .spawn()
        .unwrap();
    let (status, _) = curl_tcp(&host, "/v1/status", &["-H", &bearer]);
    assert_eq!(status, 200, "served while a slow client holds a connection");
    let exit = wait_until(DEADLINE, "the slow client to be cut off", || {
        slow.try_wait().unwrap()
    });
    assert_eq!(
        exit.code(),
        Some(0),
        "the server closed the connection (124 would be the 40 s timeout)"
    );
    let held = started.elapsed();
    assert!(
        held >= weft::api::HEADER_TIMEOUT - Duration::from_secs(1),
        "cut off after {held:?}, not before the header timeout"
    );
}

#[test]
fn edgevpn_mode_on_loopback_opens_only_edgevpns_routes() {
    require_netns!();
    if let Some(reason) = curl_missing() {
        report_skip(&reason);
        return;
    }
    let mut lan = Lan::new(1, WEFT);
    let token = lan.new_token();
    let host = lan.hosts[0].clone();
    let edgevpn = host.dir.join("edgevpn");
    std::os::unix::fs::symlink(WEFT, &edgevpn).unwrap();
    let state = host.state_dir();
    lan.spawn(
        0,
        "edgevpn@n1",
        &edgevpn,
        &[],
        &[
            ("EDGEVPNTOKEN", token.as_str()),
            ("EDGEVPNDHT", "false"),
            ("APILISTEN", TCP_API),
            ("DHCPLEASEDIR", state.to_str().unwrap()),
        ],
    );
    wait_until(DEADLINE, "the node to hold an address", || {
        (curl_tcp(&host, "/readyz", &[]).0 == 200).then_some(())
    });
    // Kairos' provider: no token, edgevpn's routes.
    let (status, body) = curl_tcp(&host, "/api/ledger/kairos/k/dmFsdWU=", &["-X", "PUT"]);
    assert_eq!(
        (status, body.as_str()),
        (200, "{\"State\":\"Announcing\"}\n")
    );
    let (status, body) = curl_tcp(&host, "/api/ledger/kairos/k", &[]);
    assert_eq!((status, body.as_str()), (200, "\"\\\"dmFsdWU=\\\"\"\n"));
    let (status, _) = curl_tcp(&host, "/v1/members", &[]);
    assert_eq!(status, 200, "reading is open too");
    // Never the native mutating routes, nor the kubeconfig.
    for (method, path) in [
        ("POST", "/v1/recover"),
        ("DELETE", "/v1/members/n1"),
        ("PUT", "/v1/policy"),
        ("GET", "/v1/kubeconfig"),
    ] {
        let (status, body) = curl_tcp(&host, path, &["-X", method]);
        assert_eq!(status, 401, "{method} {path}: {body}");
    }
    let log = lan.processes[0].log_text();
    assert!(log.contains("edgevpn compatibility"), "{log}");
}

/// The value of the sample `name{labels}` (exact series text) in Prometheus text.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}

#[test]
fn readiness_and_metrics_follow_the_node() {
    require_netns!();
    if let Some(reason) = curl_missing().or_else(dig::unavailable) {
        report_skip(&reason);
        return;
    }
    let mut lan = Lan::new(2, WEFT);
    let token = lan.new_token();
    let dns = ["--dns", "127.0.0.1:53", "--no-dns-forward"];
    lan.start_weft(
        0,
        &[&["--token", &token, "--no-dht"][..], &dns].concat(),
        &[],
    );
    // Until the node has formed or joined a cluster (formation waits 5 s), it is not ready.
    let first = wait_until(DEADLINE, "n1's API", || {
        let (status, body) = curl_socket(&lan.hosts[0], "/readyz");
        (status != 0).then_some((status, body))
    });
    assert_eq!(
        (first.0, code(&first.1).as_str()),
        (503, "not_ready"),
        "{}",
        first.1
    );
    assert!(first.1.contains("not admitted"), "{}", first.1);
    lan.start_weft(
        1,
        &[
            &["--token", &token, "--no-dht", "--api-unix-mode", "0660"][..],
            &dns,
        ]
        .concat(),
        &[],
    );
    let addresses = lan.settled_addresses(&[0, 1], DEADLINE);
    for (i, mode) in [(0, 0o600), (1, 0o660)] {
        let meta = std::fs::metadata(lan.hosts[i].api_socket()).unwrap();
        assert_eq!(
            meta.permissions().mode() & 0o777,
            mode,
            "socket of n{}",
            i + 1
        );
    }
    let (status, body) = curl_socket(&lan.hosts[0], "/readyz");
    assert_eq!(status, 200, "{body}");
    let ready: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["overlay_ip"], addresses[0].as_str());

    // Traffic over the overlay (once a session is up) and questions to the mesh's DNS.
    wait_until(DEADLINE, "a ping through the overlay", || {
        let ping = lan.hosts[0].run("ping", &["-c", "1", "-W", "1", &addresses[1]]);
        ping.status.success().then_some(())
    });
    let ping = lan.hosts[0].run("ping", &["-c", "5", "-i", "0.2", "-W", "2", &addresses[1]]);
    assert!(
        ping.status.success(),
        "{}",
        String::from_utf8_lossy(&ping.stdout)
    );
    wait_until(DEADLINE, "n2's name in n1's DNS", || {
        let mut command = lan.hosts[0].command("dig");
        command.args(["@127.0.0.1", "n2.weft.internal", "A"]);
        dig::run(command)
            .data("A")
            .contains(&addresses[1])
            .then_some(())
    });

    let peer = lan.status(1).unwrap()["peer_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, metrics) = curl_socket(&lan.hosts[0], "/metrics");
    assert_eq!(status, 200);
    let at_least_one = |series: &str| {
        let value = sample(&metrics, series);
        assert!(
            value.is_some_and(|v| v >= 1.0),
            "{series} = {value:?} in\n{metrics}"
        );
    };
    at_least_one(&format!(
        "weft_dataplane_sent_bytes_total{{peer=\"{peer}\"}}"
    ));
    at_least_one(&format!(
        "weft_dataplane_received_bytes_total{{peer=\"{peer}\"}}"
    ));
    at_least_one(&format!(
        "weft_dataplane_sent_packets_total{{peer=\"{peer}\"}}"
    ));
    at_least_one(&format!(
        "weft_dataplane_handshakes_total{{peer=\"{peer}\"}}"
    ));
    at_least_one(&format!(
        "weft_dataplane_path{{peer=\"{peer}\",path=\"udp\"}}"
    ));
    at_least_one("weft_raft_term");
    at_least_one("weft_raft_leader");
    at_least_one("weft_raft_applied_index");
    at_least_one("weft_ledger_members{lease=\"live\"}");
    at_least_one("weft_ledger_proposals_total{result=\"committed\"}");
    at_least_one("weft_ledger_proposal_duration_seconds_count");
    at_least_one("weft_dns_answers_total{source=\"mesh\"}");
    at_least_one("weft_dns_answer_duration_seconds_count{source=\"mesh\"}");
    at_least_one("weft_admitted_peers");

    match std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(mut child) => {
            use std::io::Write as _;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(metrics.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "promtool check metrics: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Err(e) => report_skip(&format!(
            "promtool cannot run ({e}): the lint of /metrics is skipped; install Debian's \
             prometheus package"
        )),
    }
}
