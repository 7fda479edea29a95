//! What a mesh costs by its size: starts N `weft up` nodes together in network namespaces on one
//! LAN and reports, from one run, how long the mesh takes to form (every node knows every member
//! with an overlay address, a role and a DNS name, and resolves every name), then what each node
//! sends and how much memory it holds while the mesh is idle. Figures go to `BENCHMARKS.md`.
//!
//! Run as root with a release build: `cargo build --release --bin weft`, then, apart,
//! `cargo build --release --example scale` (in one command the example's dev-dependencies give
//! `weft` tokio's `test-util` feature: another binary than the one shipped, whose functions the
//! release link's symbol order does not name), then
//! `target/release/examples/scale NODES [SAMPLE_AT END]` (`WEFT=path` runs another `weft`
//! binary, `WEFT_ARGS` adds arguments to each `weft up`). The idle window runs from `SAMPLE_AT`
//! to `END` seconds after the start (default 120 and 600: minute 2 to minute 10); RSS is read at
//! both ends of it and bytes sent are counted across it (`eth0` counters: all control traffic,
//! libp2p, raft, gossip, mDNS and keepalives). When the mesh does not form, it prints what each
//! node sees. `KEEP_LOGS=dir` keeps the nodes' logs up to formation (or the deadline), and
//! again when roles are not deployed as the idle window opens; they
//! hold warnings only unless `WEFT_ARGS` sets another `--log-level`. `START_GAP_MS=n` starts
//! the nodes one after another, `n` ms apart, rather than all at once: two cores cannot start
//! 200 daemons together (their handshakes starve each other), and a fleet powers on over
//! minutes anyway. Times are still counted from the first node's start.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use support::netns::{Host, Lan, sibling_weft_binary, unavailable};

/// What each node's bootstrapper runs: it deploys at once, and a control plane hands out a join
/// token, so that the idle mesh measured is one whose roles are deployed. (A script that
/// writes no token fails on the control plane, which retries with backoff, and each failure
/// is a ledger entry every member receives.)
const BOOTSTRAP_SCRIPT: &str = "#!/bin/sh\n\
[ \"$WEFT_ROLE\" = worker ] || echo scale-join-token >\"$WEFT_JOIN_TOKEN_OUT\"\n";

/// How long formation may take before the run gives up: this, or [`FORMATION_PER_NODE`] for
/// each node when that is longer (on two cores, 100 nodes took 96 s).
const FORMATION_DEADLINE: Duration = Duration::from_secs(300);
/// How long each node may add to the formation deadline.
const FORMATION_PER_NODE: Duration = Duration::from_secs(3);
/// How often formation is polled, for each [`POLL_NODES`] nodes: each poll reads the member
/// list of every node not yet complete over its API socket, and at 200 nodes ten polls a
/// second would have the daemons write 120 MB of JSON a second on the two cores they start on.
const POLL: Duration = Duration::from_millis(100);
const POLL_NODES: usize = 20;

fn main() -> ExitCode {
    if let Some(reason) = unavailable() {
        eprintln!("scale cannot run here: {reason}");
        return ExitCode::FAILURE;
    }
    // Formation is judged by every node resolving every name; without dig each would fail.
    if std::process::Command::new("dig")
        .arg("-v")
        .output()
        .is_err()
    {
        eprintln!("scale needs dig (Debian: dnsutils; scripts/install-deps.sh installs it)");
        return ExitCode::FAILURE;
    }
    let args: Vec<u64> = match std::env::args().skip(1).map(|a| a.parse()).collect() {
        Ok(args) => args,
        Err(_) => {
            eprintln!("usage: scale NODES [SAMPLE_AT END]  (whole numbers; seconds)");
            return ExitCode::FAILURE;
        }
    };
    let nodes = args.first().copied().unwrap_or(5) as usize;
    let sample_at = Duration::from_secs(args.get(1).copied().unwrap_or(120));
    let end = Duration::from_secs(args.get(2).copied().unwrap_or(600));
    if nodes == 0 || end <= sample_at {
        eprintln!("scale: NODES must be at least 1 and END after SAMPLE_AT");
        return ExitCode::FAILURE;
    }
    let weft = std::env::var_os("WEFT").map_or_else(sibling_weft_binary, PathBuf::from);
    let mut lan = Lan::new(nodes, &weft);
    let token = lan.new_token();
    let script = match deploying_script() {
        Ok(script) => script,
        Err(e) => {
            eprintln!("scale: cannot write the bootstrap script: {e}");
            return ExitCode::FAILURE;
        }
    };
    let script_path = script.to_string_lossy().into_owned();
    let gap = match std::env::var("START_GAP_MS").map(|v| v.parse::<u64>()) {
        Err(_) => Duration::ZERO,
        Ok(Ok(ms)) => Duration::from_millis(ms),
        Ok(Err(_)) => {
            eprintln!("scale: START_GAP_MS must be a whole number of milliseconds");
            return ExitCode::FAILURE;
        }
    };
    let start = Instant::now();
    let extra = std::env::var("WEFT_ARGS").unwrap_or_default();
    for i in 0..nodes {
        if i > 0 {
            std::thread::sleep(gap);
        }
        // Each node its own root, so the script bootstrappers' token files (under
        // `/run/weft/bootstrap` of the root) are not one file shared by every node.
        let root = lan.hosts[i].dir.join("root");
        let root = root.to_string_lossy().into_owned();
        let mut args = vec![
            "--token",
            &token,
            "--log-level",
            "warn",
            "--dns",
            "127.0.0.1:53",
            "--bootstrapper",
            "script",
            "--bootstrap-script",
            &script_path,
            "--root",
            &root,
        ];
        if extra.contains("--log-level") {
            args.retain(|a| *a != "--log-level" && *a != "warn");
        }
        args.extend(extra.split_whitespace());
        lan.start_weft(i, &args, &[]);
    }
    if !gap.is_zero() {
        println!(
            "started {nodes} nodes {} ms apart, the last {:.1} s after the first",
            gap.as_millis(),
            start.elapsed().as_secs_f64()
        );
    }
    let deadline = FORMATION_DEADLINE.max(FORMATION_PER_NODE * nodes as u32) + start.elapsed();
    let Some(formed) = formation(&lan, start, deadline) else {
        eprintln!("scale: the mesh of {nodes} did not form within {deadline:?}");
        eprintln!("{}", views(&lan));
        if let Some(dir) = std::env::var_os("KEEP_LOGS") {
            keep_logs(&lan, Path::new(&dir));
        }
        return ExitCode::FAILURE;
    };
    println!("formation: {:.2} s for {nodes} nodes", formed.as_secs_f64());
    if let Some(dir) = std::env::var_os("KEEP_LOGS") {
        keep_logs(&lan, Path::new(&dir));
    }
    if let Err(missing) = resolves_everyone(&lan) {
        eprintln!("scale: {missing}");
        return ExitCode::FAILURE;
    }
    println!("every node resolves every member's name");
    if start.elapsed() > sample_at {
        eprintln!(
            "scale: formation ran past {} s, so the idle window starts late; choose a later SAMPLE_AT",
            sample_at.as_secs()
        );
        return ExitCode::FAILURE;
    }

    sleep_until(start + sample_at);
    if let Err(undeployed) = deployed_everywhere(&lan) {
        eprintln!("scale: roles not deployed when the idle window opens: {undeployed}");
        if let Some(dir) = std::env::var_os("KEEP_LOGS") {
            keep_logs(&lan, Path::new(&dir));
        }
        return ExitCode::FAILURE;
    }
    let rss_before: Vec<u64> = lan.processes.iter().map(|p| rss_kib(p.pid())).collect();
    let bytes_before: Vec<u64> = lan.hosts.iter().map(sent_bytes).collect();
    let window = end - sample_at;
    println!(
        "idle window {} s to {} s after the start...",
        sample_at.as_secs(),
        end.as_secs()
    );
    sleep_until(start + end);
    let rss_after: Vec<u64> = lan.processes.iter().map(|p| rss_kib(p.pid())).collect();
    let bytes_after: Vec<u64> = lan.hosts.iter().map(sent_bytes).collect();
    if let Some(i) = (0..nodes).find(|&i| rss_after[i] == 0 || rss_before[i] == 0) {
        eprintln!(
            "scale: weft on {} stopped during the run:\n{}",
            lan.hosts[i].name,
            lan.logs()
        );
        return ExitCode::FAILURE;
    }

    println!(
        "| node | sent B/s | RSS at {} s MiB | RSS at {} s MiB |",
        sample_at.as_secs(),
        end.as_secs()
    );
    println!("|---|---:|---:|---:|");
    let mut rates = Vec::new();
    for i in 0..nodes {
        let rate = bytes_after[i].saturating_sub(bytes_before[i]) as f64 / window.as_secs_f64();
        rates.push(rate);
        println!(
            "| {} | {rate:.1} | {:.1} | {:.1} |",
            lan.hosts[i].name,
            rss_before[i] as f64 / 1024.0,
            rss_after[i] as f64 / 1024.0
        );
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let max = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
    let mib = |v: &[u64]| v.iter().map(|k| *k as f64 / 1024.0).collect::<Vec<_>>();
    println!(
        "summary: nodes {nodes} formation {:.2} s; sent per node mean {:.1} B/s max {:.1} B/s; \
         RSS mean {:.1} -> {:.1} MiB, max {:.1} -> {:.1} MiB",
        formed.as_secs_f64(),
        mean(&rates),
        max(&rates),
        mean(&mib(&rss_before)),
        mean(&mib(&rss_after)),
        max(&mib(&rss_before)),
        max(&mib(&rss_after)),
    );
    ExitCode::SUCCESS
}

/// Polls every node's member list until each holds all `nodes` members, live, each with a
/// distinct overlay address, a role and a DNS name, and every node agrees; returns the time
/// since `start`, or `None` past `deadline`.
fn formation(lan: &Lan, start: Instant, deadline: Duration) -> Option<Duration> {
    let nodes = lan.hosts.len();
    let poll = POLL * nodes.div_ceil(POLL_NODES).max(1) as u32;
    let mut done = vec![false; nodes];
    while start.elapsed() < deadline {
        for (i, host) in lan.hosts.iter().enumerate() {
            if !done[i] {
                done[i] = get(&host.api_socket(), "/v1/members")
                    .is_some_and(|members| complete(&members, nodes));
            }
        }
        if done.iter().all(|d| *d) {
            return Some(start.elapsed());
        }
        std::thread::sleep(poll);
    }
    None
}

/// Whether a `/v1/members` answer lists `nodes` live members with distinct addresses, roles and
/// DNS names.
fn complete(members: &serde_json::Value, nodes: usize) -> bool {
    let Some(list) = members.as_array() else {
        return false;
    };
    let ready: Vec<&str> = list
        .iter()
        .filter(|m| m["lease"] == "live" && m["role"].is_string() && m["dns_name"].is_string())
        .filter_map(|m| m["overlay_ip"].as_str())
        .collect();
    ready.len() == nodes && ready.iter().collect::<BTreeSet<_>>().len() == nodes
}

/// What each node sees, one line per node, for a mesh that did not form: how many peers it
/// admitted, its address and role, its cluster, leader and raft place, and how many members its list
/// holds ready (live, with an address, a role and a DNS name).
fn views(lan: &Lan) -> String {
    let mut lines = String::new();
    for host in &lan.hosts {
        let status = get(&host.api_socket(), "/v1/status").unwrap_or_default();
        let members = get(&host.api_socket(), "/v1/members").unwrap_or_default();
        let listed = members.as_array().map_or(0, Vec::len);
        let ready = members.as_array().map_or(0, |list| {
            list.iter()
                .filter(|m| m["lease"] == "live" && m["role"].is_string())
                .filter(|m| m["dns_name"].is_string() && m["overlay_ip"].is_string())
                .count()
        });
        let ledger = &status["ledger"];
        let short = |v: &serde_json::Value| {
            v.as_str().map_or("-".to_string(), |s| {
                let tail: Vec<char> = s.chars().rev().take(6).collect();
                tail.into_iter().rev().collect()
            })
        };
        lines.push_str(&format!(
            "{}: peer ..{} admitted {} ip {} role {} | cluster {} leader ..{} voters {} \
             follower {} applied {} | members {listed}, ready {ready}\n",
            host.name,
            short(&status["peer_id"]),
            status["admitted_peers"],
            status["overlay_ip"].as_str().unwrap_or("-"),
            status["role"].as_str().unwrap_or("-"),
            ledger["cluster_id"].as_str().unwrap_or("-"),
            short(&ledger["leader"]),
            ledger["voters"].as_array().map_or(0, Vec::len),
            ledger["follower"],
            ledger["applied_index"],
        ));
    }
    lines
}

/// Copies every process's log so far into `dir` (`<host>-<n>.log`, the `n`th process started).
fn keep_logs(lan: &Lan, dir: &Path) {
    if let Err(e) = std::fs::create_dir_all(dir) {
        eprintln!("scale: cannot make {}: {e}", dir.display());
        return;
    }
    for (i, process) in lan.processes.iter().enumerate() {
        let to = dir.join(format!("{}-{i}.log", lan.hosts[process.host].name));
        if let Err(e) = std::fs::write(&to, process.log_text()) {
            eprintln!("scale: cannot write {}: {e}", to.display());
        }
    }
    eprintln!("scale: the nodes' logs are in {}", dir.display());
}

/// Asks each node's DNS server for every member's name (one `dig` per node, batch mode) and
/// checks each answers with the address the node's member list holds.
fn resolves_everyone(lan: &Lan) -> Result<(), String> {
    for host in &lan.hosts {
        let members = get(&host.api_socket(), "/v1/members").ok_or("a node stopped answering")?;
        let mut expected = BTreeSet::new();
        let mut queries = String::new();
        for m in members.as_array().into_iter().flatten() {
            let (Some(name), Some(ip)) = (m["dns_name"].as_str(), m["overlay_ip"].as_str()) else {
                continue;
            };
            expected.insert(format!("{} {ip}", name.trim_end_matches('.')));
            queries.push_str(&format!("{name} A\n"));
        }
        let batch = host.dir.join("names.txt");
        std::fs::write(&batch, queries).map_err(|e| e.to_string())?;
        let out = host.run(
            "dig",
            &[
                "@127.0.0.1",
                "+noall",
                "+answer",
                "+time=2",
                "+tries=2",
                "-f",
                batch.to_str().ok_or("a non-UTF-8 temp path")?,
            ],
        );
        let answered: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                (fields.len() == 5 && fields[3] == "A")
                    .then(|| format!("{} {}", fields[0].trim_end_matches('.'), fields[4]))
            })
            .collect();
        if let Some(missing) = expected.difference(&answered).next() {
            return Err(format!("{} does not resolve {missing}", host.name));
        }
    }
    Ok(())
}

/// GET `path` from the API on the unix socket `socket`, as JSON; `None` on any failure.
fn get(socket: &Path, path: &str) -> Option<serde_json::Value> {
    let mut stream = UnixStream::connect(socket).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: weft\r\n\r\n").ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let body = response.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    serde_json::from_slice(&response[body..]).ok()
}

/// Bytes sent so far by the host's LAN interface.
fn sent_bytes(host: &Host) -> u64 {
    let out = host.run("ip", &["-s", "-j", "link", "show", "eth0"]);
    let links: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    links[0]["stats64"]["tx"]["bytes"].as_u64().unwrap_or(0)
}

/// The resident set of process `pid` in KiB (0 once it is gone).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn sleep_until(when: Instant) {
    if let Some(left) = when.checked_duration_since(Instant::now()) {
        std::thread::sleep(left);
    }
}

/// Whether every node's bootstrapper reports its role deployed: a node whose script failed
/// retries, and the ledger entries of each retry would be measured as idle traffic.
fn deployed_everywhere(lan: &Lan) -> Result<(), String> {
    let undeployed: Vec<String> = lan
        .hosts
        .iter()
        .filter_map(|host| {
            let status = get(&host.api_socket(), "/v1/status").unwrap_or_default();
            let bootstrap = &status["bootstrap"];
            (bootstrap["phase"] != "deployed").then(|| {
                format!(
                    "{} ({}: {})",
                    host.name,
                    bootstrap["phase"].as_str().unwrap_or("no status"),
                    bootstrap["detail"].as_str().unwrap_or("")
                )
            })
        })
        .collect();
    if undeployed.is_empty() {
        Ok(())
    } else {
        Err(undeployed.join(", "))
    }
}

/// Writes [`BOOTSTRAP_SCRIPT`] to an executable temporary file, removed when dropped.
fn deploying_script() -> std::io::Result<tempfile::TempPath> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut file = tempfile::Builder::new()
        .prefix("weft-scale-bootstrap-")
        .suffix(".sh")
        .tempfile()?;
    file.write_all(BOOTSTRAP_SCRIPT.as_bytes())?;
    file.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o755))?;
    Ok(file.into_temp_path())
}
