//! End-to-end DNS in network namespaces: three real `weft` nodes each serve the mesh's names on
//! 127.0.0.1:53 of their own namespace, queried with `dig`. Needs root, iproute2, dig and curl;
//! elsewhere it prints why it is skipped.

mod support;

use std::time::Duration;

use support::dig;
use support::netns::{Lan, wait_until};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
const DEADLINE: Duration = Duration::from_secs(60);
/// How long a change in the ledger may take to show in every node's answers.
const DNS_DEADLINE: Duration = Duration::from_secs(20);
const DNS_ARGS: &[&str] = &["--no-dht", "--dns", "127.0.0.1:53", "--no-dns-forward"];

/// `dig @127.0.0.1 args...` inside host `i`'s namespace.
fn dig_on(lan: &Lan, i: usize, args: &[&str]) -> dig::Reply {
    let mut command = lan.hosts[i].command("dig");
    command.arg("@127.0.0.1").args(args);
    dig::run(command)
}

/// Waits until host `i` answers `name` with exactly the A records `want` (none: NXDOMAIN).
fn wait_for_a(lan: &Lan, i: usize, name: &str, want: &[&str]) {
    wait_until(
        DNS_DEADLINE,
        &format!("n{} to answer {name} with {want:?}", i + 1),
        || {
            let reply = dig_on(lan, i, &[name]);
            let expected_status = if want.is_empty() {
                "NXDOMAIN"
            } else {
                "NOERROR"
            };
            (reply.status == expected_status && reply.data("A") == want).then_some(())
        },
    );
}

/// `curl` against host `i`'s API socket: (HTTP status, body).
fn curl(lan: &Lan, i: usize, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let socket = lan.hosts[i].api_socket();
    let mut command = std::process::Command::new("curl");
    command
        .args(["-s", "-w", "\n%{http_code}", "-X", method, "--unix-socket"])
        .arg(&socket)
        .arg(format!("http://weft{path}"));
    if let Some(body) = body {
        command.args(["-H", "Content-Type: application/json", "-d", body]);
    }
    let out = command.output().expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_string())
}

fn tools_missing() -> Option<String> {
    if let Some(reason) = dig::unavailable() {
        return Some(reason);
    }
    match std::process::Command::new("curl").arg("--version").output() {
        Ok(_) => None,
        Err(e) => Some(format!("`curl` cannot run: {e}")),
    }
}

#[test]
fn every_member_resolves_every_member_and_follows_renames_collisions_and_leaves() {
    require_netns!();
    if let Some(reason) = tools_missing() {
        support::netns::report_skip(&reason);
        return;
    }
    let mut lan = Lan::new(3, WEFT);
    let token = lan.new_token();
    let mut args = vec!["--token", token.as_str()];
    args.extend(DNS_ARGS);
    let mut procs: Vec<usize> = (0..3).map(|i| lan.start_weft(i, &args, &[])).collect();
    let overlay = lan.settled_addresses(&[0, 1, 2], DEADLINE);

    // Every node answers for every member, over UDP and TCP, with PTR records back.
    for i in 0..3 {
        for (j, address) in overlay.iter().enumerate() {
            wait_for_a(&lan, i, &format!("n{}.weft.internal", j + 1), &[address]);
        }
    }
    let reply = dig_on(&lan, 1, &["+tcp", "n1.weft.internal"]);
    assert_eq!(reply.data("A"), [overlay[0].clone()], "{}", reply.text);
    assert!(reply.has_flag("aa"), "{}", reply.text);
    let reply = dig_on(&lan, 2, &["-x", &overlay[1]]);
    assert_eq!(reply.data("PTR"), ["n2.weft.internal."], "{}", reply.text);
    let reply = dig_on(&lan, 0, &["nobody.weft.internal"]);
    assert_eq!(reply.status, "NXDOMAIN", "{}", reply.text);
    assert_eq!(reply.authority[0].rtype, "SOA", "{}", reply.text);
    let members: Vec<serde_json::Value> =
        serde_json::from_str(&lan.weft_ok(0, &["members", "--json"])).unwrap();
    let names: Vec<&str> = members
        .iter()
        .filter_map(|m| m["dns_name"].as_str())
        .collect();
    assert_eq!(
        names.len(),
        3,
        "every member shows its DNS name: {members:#?}"
    );

    // A rename that collides: n3 restarts as `N1.lab`, whose label is n1's. Its address
    // stays; both members take PeerId suffixes, the bare name answers nothing and the old one
    // is gone.
    lan.processes[procs[2]].signal("TERM");
    lan.processes[procs[2]]
        .wait_exit(DEADLINE)
        .expect("n3 stops");
    procs[2] = lan.start_weft_as(2, "N1.lab", &args, &[]);
    lan.wait_api(2, DEADLINE);
    let suffixed = wait_until(DNS_DEADLINE, "both n1s to show suffixed names", || {
        let members: Vec<serde_json::Value> =
            serde_json::from_str(&lan.weft_ok(0, &["members", "--json"])).ok()?;
        let name = |hostname: &str| -> Option<String> {
            let member = members.iter().find(|m| m["hostname"] == hostname)?;
            Some(member["dns_name"].as_str()?.to_string())
        };
        let (first, renamed) = (name("n1")?, name("N1.lab")?);
        let suffixed = |n: &str| n.starts_with("n1-") && n.ends_with(".weft.internal");
        (suffixed(&first) && suffixed(&renamed) && first != renamed).then_some((first, renamed))
    });
    for i in 0..3 {
        wait_for_a(&lan, i, &suffixed.0, &[&overlay[0]]);
        wait_for_a(&lan, i, &suffixed.1, &[&overlay[2]]);
        wait_for_a(&lan, i, "n1.weft.internal", &[]);
        wait_for_a(&lan, i, "n3.weft.internal", &[]);
    }

    // A leave: the renamed node stops and is removed; its name is gone from every answer and
    // n1 has its bare name back.
    lan.processes[procs[2]].signal("TERM");
    lan.processes[procs[2]]
        .wait_exit(DEADLINE)
        .expect("the renamed node stops");
    // The stopped node may have led the cluster: until the others have elected a leader, a
    // removal is answered 503 (no leader reached), as an operator would see; ask until it is
    // taken.
    let api = lan.hosts[0].api();
    let asked = std::time::Instant::now();
    loop {
        let out = lan.weft(&["members", "rm", "N1.lab", "--api", &api]);
        if out.status.success() {
            break;
        }
        assert!(
            asked.elapsed() < DEADLINE,
            "weft members rm N1.lab on n1: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    for i in 0..2 {
        wait_for_a(&lan, i, &suffixed.1, &[]);
        wait_for_a(&lan, i, "n1.weft.internal", &[&overlay[0]]);
    }
}

#[test]
fn user_records_wildcards_and_edgevpn_regex_records() {
    require_netns!();
    if let Some(reason) = tools_missing() {
        support::netns::report_skip(&reason);
        return;
    }
    let mut lan = Lan::new(2, WEFT);
    let token = lan.new_token();
    let mut args = vec!["--token", token.as_str()];
    args.extend(DNS_ARGS);
    for i in 0..2 {
        lan.start_weft(i, &args, &[]);
    }
    let overlay = lan.settled_addresses(&[0, 1], DEADLINE);

    // A wildcard CNAME added on one node answers on the other, with the member's A record.
    lan.weft_ok(
        1,
        &[
            "dns",
            "add",
            "*.apps.weft.internal",
            "CNAME",
            "n1.weft.internal",
        ],
    );
    lan.weft_ok(
        1,
        &[
            "dns",
            "add",
            "db.weft.internal",
            "TXT",
            "role=primary",
            "--ttl",
            "30",
        ],
    );
    wait_until(DNS_DEADLINE, "the wildcard to answer on n1", || {
        let reply = dig_on(&lan, 0, &["web.apps.weft.internal"]);
        (reply.data("CNAME") == ["n1.weft.internal."] && reply.data("A") == [overlay[0].clone()])
            .then_some(())
    });
    let reply = wait_until(DNS_DEADLINE, "the TXT record to answer on n1", || {
        let reply = dig_on(&lan, 0, &["db.weft.internal", "TXT"]);
        (!reply.answers.is_empty()).then_some(reply)
    });
    assert_eq!(reply.data("TXT"), ["\"role=primary\""], "{}", reply.text);
    assert_eq!(reply.answers[0].ttl, 30, "{}", reply.text);
    let listing = lan.weft_ok(0, &["dns", "ls"]);
    assert!(listing.contains("*.apps.weft.internal"), "{listing}");
    assert!(listing.contains("n2.weft.internal"), "{listing}");
    // Invalid input is refused with what is wrong, and changes nothing.
    let out = lan.weft(&[
        "dns",
        "add",
        "bad.weft.internal",
        "A",
        "10.1.0.300",
        "--api",
        &lan.hosts[0].api(),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid A value \"10.1.0.300\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // edgevpn's API: a regex record, matched against whole names only.
    let (status, body) = curl(
        &lan,
        0,
        "POST",
        "/api/dns",
        Some(r#"{"Regex":"foo","Records":{"A":"10.1.0.77"}}"#),
    );
    assert_eq!(status, 200, "{body}");
    wait_until(DNS_DEADLINE, "the regex record to answer on n2", || {
        (dig_on(&lan, 1, &["foo"]).data("A") == ["10.1.0.77"]).then_some(())
    });
    let reply = dig_on(&lan, 1, &["xfoo.bar"]);
    assert!(reply.data("A").is_empty(), "{}", reply.text);
    assert_eq!(reply.status, "REFUSED", "{}", reply.text);
    let reply = dig_on(&lan, 1, &["foo.bar"]);
    assert!(reply.data("A").is_empty(), "{}", reply.text);
    let (status, body) = curl(&lan, 1, "GET", "/api/dns", None);
    assert_eq!(status, 200, "{body}");
    let listed: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        listed,
        serde_json::json!([{"Regex": "foo", "Records": {"A": "10.1.0.77"}}])
    );
    let (status, body) = curl(
        &lan,
        0,
        "POST",
        "/api/dns",
        Some(r#"{"Regex":"foo(","Records":{"A":"10.1.0.78"}}"#),
    );
    assert_eq!(status, 400, "{body}");
    let error: serde_json::Value = serde_json::from_str(&body).expect("a JSON error");
    assert_eq!(error["code"], "bad_request", "{body}");
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|e| e.contains("invalid regex \"foo(\"")),
        "{body}"
    );

    // Removing records takes them out of the answers.
    lan.weft_ok(0, &["dns", "rm", "*.apps.weft.internal"]);
    lan.weft_ok(0, &["dns", "rm", "--regex", "foo"]);
    wait_until(DNS_DEADLINE, "removed records to stop answering", || {
        let wildcard = dig_on(&lan, 1, &["web.apps.weft.internal"]);
        let regex = dig_on(&lan, 1, &["foo"]);
        (wildcard.status == "NXDOMAIN" && regex.status == "REFUSED").then_some(())
    });
}

#[test]
fn a_taken_dns_port_stops_start_up_before_the_network() {
    require_netns!();
    let mut lan = Lan::new(1, WEFT);
    let token = lan.new_token();
    let mut args = vec!["--token", token.as_str()];
    args.extend(DNS_ARGS);
    lan.start_weft(0, &args, &[]);
    lan.wait_api(0, DEADLINE);
    // A second daemon in the same namespace, with its own state and API but the same DNS port.
    let dir = lan.hosts[0].dir.join("second");
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("state").display().to_string();
    let api = format!("unix://{}", dir.join("api.sock").display());
    let mut second = vec![
        "up",
        "--state-dir",
        &state,
        "--api",
        &api,
        "--hostname",
        "second",
    ];
    second.extend(["--interface", "weft1"]);
    second.extend(&args);
    let p = lan.spawn(0, "weft-second", std::path::Path::new(WEFT), &second, &[]);
    let status = lan.processes[p]
        .wait_exit(DEADLINE)
        .expect("the second daemon exits");
    let log = lan.processes[p].log_text();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("cannot listen for DNS on 127.0.0.1:53 over UDP")
            && log.contains("may already hold it"),
        "{log}"
    );
    // It stopped before it made its TUN interface.
    let out = lan.hosts[0].run("ip", &["link", "show", "weft1"]);
    assert!(!out.status.success(), "weft1 exists");
}

#[test]
fn only_loopback_the_overlay_and_allowed_networks_are_answered() {
    require_netns!();
    if let Some(reason) = tools_missing() {
        support::netns::report_skip(&reason);
        return;
    }
    let mut lan = Lan::new(3, WEFT);
    let token = lan.new_token();
    let allowed = format!("{}/32", lan.hosts[2].addr);
    lan.start_weft(
        0,
        &[
            "--token",
            &token,
            "--no-dht",
            "--dns",
            "0.0.0.0:53",
            "--no-dns-forward",
            "--dns-allow",
            &allowed,
        ],
        &[],
    );
    for i in 1..3 {
        lan.start_weft(i, &["--token", &token, "--no-dht"], &[]);
    }
    let overlay = lan.settled_addresses(&[0, 1, 2], DEADLINE);
    let ask = |from: usize, server: &str| {
        let mut command = lan.hosts[from].command("dig");
        command.arg(format!("@{server}")).arg("n1.weft.internal");
        dig::run(command)
    };
    let lan_address = lan.hosts[0].addr.to_string();
    // On the LAN, a client outside the allowed networks is refused: no open resolver.
    let refused = ask(1, &lan_address);
    assert_eq!(refused.status, "REFUSED", "{}", refused.text);
    assert!(refused.answers.is_empty(), "{}", refused.text);
    // The allowed network, loopback and the overlay are answered.
    assert_eq!(ask(2, &lan_address).data("A"), [overlay[0].clone()]);
    assert_eq!(ask(0, "127.0.0.1").data("A"), [overlay[0].clone()]);
    wait_until(DEADLINE, "an answer over the overlay", || {
        (ask(1, &overlay[0]).data("A") == [overlay[0].clone()]).then_some(())
    });
}
