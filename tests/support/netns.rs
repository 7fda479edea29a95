//! Network-namespace test harness: several real `weft` processes, each in its own namespace,
//! joined by veth pairs to a bridge in a hub namespace, like machines on one LAN.
//!
//! Everything it makes is named from the process id and a counter, so tests run in parallel and
//! never touch namespaces they did not create; interfaces are made inside the hub namespace,
//! never in the machine's own. Dropping a [`Lan`] stops its processes (by PID), prints their logs
//! if the test is failing, and deletes its namespaces, even when a test panics. Conditions are
//! awaited with [`wait_until`] and a deadline, never with fixed sleeps.
//!
//! Shared by the end-to-end tests (`tests/*`) and the demo (`examples/demo.rs`).

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Why namespace tests cannot run here, or `None` when they can.
pub fn unavailable() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .unwrap_or("");
    if euid != "0" {
        return Some("not running as root (network namespaces need CAP_SYS_ADMIN)".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(out) if out.status.success() => {}
        _ => return Some("the `ip` command (iproute2) is not installed".into()),
    }
    let probe = format!(
        "wftprobe{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    match Command::new("ip").args(["netns", "add", &probe]).output() {
        Ok(out) if out.status.success() => {
            delete_netns(&probe);
            None
        }
        Ok(out) => Some(format!(
            "cannot create a network namespace: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Some(format!("cannot run ip: {e}")),
    }
}

/// Returns from the calling test, after printing why, when namespaces are unavailable.
#[macro_export]
macro_rules! require_netns {
    () => {
        if let Some(reason) = $crate::support::netns::unavailable() {
            $crate::support::netns::report_skip(&reason);
            return;
        }
    };
}

/// Whether nftables is missing; if so, says so as the reason the current test is skipped.
pub fn nft_missing() -> bool {
    let missing = Command::new("nft").arg("--version").output().is_err();
    if missing {
        report_skip("nft (nftables) is not installed");
    }
    missing
}

/// Prints why the current test is skipped, past the test harness's output capture so that the
/// reason shows in CI logs.
pub fn report_skip(reason: &str) {
    use std::io::Write as _;
    let test = std::thread::current()
        .name()
        .unwrap_or("a namespace test")
        .to_string();
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {reason}");
}

/// Runs `ip args...`, panicking with its stderr on failure (harness set-up must not half-work).
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// One machine: a namespace with an interface on each of its LAN segments (`eth0`, `eth1`, ...)
/// and its own working directory.
#[derive(Debug, Clone)]
pub struct Host {
    /// Short name used in logs and paths (`n1`, `n2`, ...).
    pub name: String,
    /// The network namespace's name.
    pub netns: String,
    /// The host's address on its first segment.
    pub addr: Ipv4Addr,
    /// The host's address on each of its segments, in segment order.
    pub addrs: Vec<Ipv4Addr>,
    /// The host's private directory (state dir, API socket, logs).
    pub dir: PathBuf,
}

impl Host {
    /// A command that runs `program` inside this host's namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.netns]).arg(program);
        cmd
    }

    /// Runs `program args...` in the namespace and returns its output.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        self.command(program)
            .args(args)
            .output()
            .expect("ip netns exec runs")
    }

    /// The state directory weft uses on this host.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// The API socket weft listens on on this host.
    pub fn api_socket(&self) -> PathBuf {
        self.dir.join("api.sock")
    }

    /// The `--api` value for this host.
    pub fn api(&self) -> String {
        format!("unix://{}", self.api_socket().display())
    }
}

/// A process started by the harness, with its log.
#[derive(Debug)]
pub struct Process {
    pub host: usize,
    pub child: Child,
    pub log: PathBuf,
    pub label: String,
    /// Whether it runs the weft binary (a daemon), not another program (a ping, a sink).
    pub weft: bool,
}

impl Process {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal to this process (by PID).
    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status();
    }

    /// Waits for the process to exit, up to `deadline`.
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if start.elapsed() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the process wrote so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Hosts in their own namespaces on bridged LAN segments. Segment `k` is `10.(99+k).0.0/24`
/// and host `i` is `.(i+1)` on each segment it joins. Hosts do not forward packets, so hosts
/// that share no segment cannot reach each other.
pub struct Lan {
    pub hosts: Vec<Host>,
    pub processes: Vec<Process>,
    hub: String,
    namespaces: Vec<String>,
    weft: PathBuf,
    dir: tempfile::TempDir,
}

impl Lan {
    /// Creates `n` hosts named `n1..=n{n}` with addresses 10.99.0.1.. on one bridge.
    pub fn new(n: usize, weft: impl Into<PathBuf>) -> Lan {
        let all: Vec<usize> = (0..n).collect();
        Lan::segments(n, &[&all], weft)
    }

    /// Creates `n` hosts and one bridge per entry of `segments`, each listing the hosts on it.
    pub fn segments(n: usize, segments: &[&[usize]], weft: impl Into<PathBuf>) -> Lan {
        let id = format!(
            "wft{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let dir = tempfile::Builder::new()
            .prefix("weft-lan-")
            .tempdir()
            .expect("temp dir");
        let hub = format!("{id}-hub");
        make_room_for_neighbours(n);
        let mut lan = Lan {
            hosts: Vec::new(),
            processes: Vec::new(),
            hub: hub.clone(),
            namespaces: Vec::new(),
            weft: weft.into(),
            dir,
        };
        // Recorded before it exists, so a failure half-way still deletes it on drop.
        lan.namespaces.push(hub.clone());
        ip(&["netns", "add", &hub]);
        ip(&["-n", &hub, "link", "set", "lo", "up"]);
        for i in 1..=n {
            let name = format!("n{i}");
            let netns = format!("{id}-{name}");
            lan.namespaces.push(netns.clone());
            ip(&["netns", "add", &netns]);
            ip(&["-n", &netns, "link", "set", "lo", "up"]);
            let host_dir = lan.dir.path().join(&name);
            std::fs::create_dir_all(&host_dir).expect("host dir");
            lan.hosts.push(Host {
                name,
                netns,
                addr: Ipv4Addr::UNSPECIFIED,
                addrs: Vec::new(),
                dir: host_dir,
            });
        }
        for (k, members) in segments.iter().enumerate() {
            let bridge = format!("br{k}");
            ip(&["-n", &hub, "link", "add", &bridge, "type", "bridge"]);
            ip(&["-n", &hub, "link", "set", &bridge, "up"]);
            for &i in members.iter() {
                let host = &mut lan.hosts[i];
                let hub_end = format!("v{k}h{i}");
                let eth = format!("eth{}", host.addrs.len());
                ip(&[
                    "-n",
                    &hub,
                    "link",
                    "add",
                    &hub_end,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &eth,
                    "netns",
                    &host.netns,
                ]);
                ip(&["-n", &hub, "link", "set", &hub_end, "master", &bridge, "up"]);
                let addr = Ipv4Addr::new(10, 99 + k as u8, 0, i as u8 + 1);
                ip(&[
                    "-n",
                    &host.netns,
                    "addr",
                    "add",
                    &format!("{addr}/24"),
                    "dev",
                    &eth,
                ]);
                ip(&["-n", &host.netns, "link", "set", &eth, "up"]);
                if host.addrs.is_empty() {
                    host.addr = addr;
                }
                host.addrs.push(addr);
            }
        }
        lan
    }

    /// Starts `weft up` on host `i` with its own state dir and API socket plus `args`.
    pub fn start_weft(&mut self, i: usize, args: &[&str], env: &[(&str, &str)]) -> usize {
        let name = self.hosts[i].name.clone();
        self.start_weft_as(i, &name, args, env)
    }

    /// [`Lan::start_weft`] with another hostname than the host's name.
    pub fn start_weft_as(
        &mut self,
        i: usize,
        hostname: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> usize {
        let host = self.hosts[i].clone();
        let state = host.state_dir();
        let api = host.api();
        let mut all: Vec<&str> = vec![
            "up",
            "--state-dir",
            state.to_str().expect("utf-8 path"),
            "--api",
            &api,
            "--hostname",
            hostname,
        ];
        all.extend_from_slice(args);
        self.spawn(
            i,
            &format!("weft@{}", host.name),
            &self.weft.clone(),
            &all,
            env,
        )
    }

    /// Starts `program args...` on host `i` in the background, logging to the host's directory.
    pub fn spawn(
        &mut self,
        i: usize,
        label: &str,
        program: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> usize {
        let host = &self.hosts[i];
        let log = host.dir.join(format!(
            "{}.{}.log",
            label.replace(['@', '/'], "_"),
            self.processes.len()
        ));
        let file = File::create(&log).expect("log file");
        let child = host
            .command(program)
            .args(args)
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .expect("spawn in namespace");
        self.processes.push(Process {
            host: i,
            child,
            log,
            label: label.to_string(),
            weft: program == self.weft,
        });
        self.processes.len() - 1
    }

    /// A new network token from `weft token new`.
    pub fn new_token(&self) -> String {
        let out = self.weft(&["token", "new"]);
        assert!(out.status.success(), "weft token new failed");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Runs `weft args...` (a client command) on the machine, as an operator would.
    pub fn weft(&self, args: &[&str]) -> Output {
        Command::new(&self.weft)
            .args(args)
            .env_remove("WEFT_API")
            .output()
            .expect("weft runs")
    }

    /// `weft args... --api <host i>`, which must succeed; its standard output.
    pub fn weft_ok(&self, i: usize, args: &[&str]) -> String {
        let api = self.hosts[i].api();
        let mut all = args.to_vec();
        all.extend(["--api", api.as_str()]);
        let out = self.weft(&all);
        assert!(
            out.status.success(),
            "weft {args:?} on {}: {}",
            self.hosts[i].name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The PeerId host `i`'s weft reports.
    pub fn peer_id(&self, i: usize) -> String {
        let status = self.status(i).expect("weft answers weft status");
        status["peer_id"].as_str().expect("a peer id").to_string()
    }

    /// `weft status --json` of host `i`, or `None` while it does not answer.
    pub fn status(&self, i: usize) -> Option<serde_json::Value> {
        let out = self.weft(&["status", "--json", "--api", &self.hosts[i].api()]);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Waits until host `i`'s weft answers `weft status`; fails at once if the weft started last
    /// on that host exited (other programs started there, a ping, a sink, may have ended).
    pub fn wait_api(&mut self, i: usize, deadline: Duration) -> serde_json::Value {
        wait_until(
            deadline,
            &format!("{} to answer on its API", self.hosts[i].name),
            || {
                if let Some(p) = self.processes.iter_mut().rfind(|p| p.host == i && p.weft)
                    && let Ok(Some(status)) = p.child.try_wait()
                {
                    panic!("{} exited with {status}:\n{}", p.label, p.log_text());
                }
                self.status(i)
            },
        )
    }

    /// Waits until `hosts` all report one cluster and distinct overlay addresses, and returns
    /// those addresses in `hosts` order. Nodes started together may first form clusters apart,
    /// then merge and change address: overlay addresses mean something only once this holds.
    pub fn settled_addresses(&mut self, hosts: &[usize], deadline: Duration) -> Vec<String> {
        for &i in hosts {
            self.wait_api(i, deadline);
        }
        wait_until(
            deadline,
            "one cluster with distinct overlay addresses",
            || {
                let statuses: Vec<serde_json::Value> = hosts
                    .iter()
                    .map(|&i| self.status(i))
                    .collect::<Option<_>>()?;
                let addresses: Vec<String> = statuses
                    .iter()
                    .map(|s| s["overlay_ip"].as_str().map(str::to_string))
                    .collect::<Option<_>>()?;
                let clusters: std::collections::BTreeSet<&str> = statuses
                    .iter()
                    .filter_map(|s| s["ledger"]["cluster_id"].as_str())
                    .collect();
                let distinct: std::collections::BTreeSet<&String> = addresses.iter().collect();
                (clusters.len() == 1 && distinct.len() == hosts.len()).then_some(addresses)
            },
        )
    }

    /// Starts `weft up` with `token` and `extra` arguments on relay host `r` (`--relay`,
    /// listening on TCP 4001) and on hosts `a` and `b`, each bootstrapped to `r` through `r`'s
    /// address on `a`'s and `b`'s segment (`r`'s first and second). Returns `r`'s PeerId.
    pub fn start_relayed(
        &mut self,
        token: &str,
        (a, r, b): (usize, usize, usize),
        extra: &[&str],
        deadline: Duration,
    ) -> String {
        let mut relay_args = vec![
            "--token",
            token,
            "--relay",
            "--listen",
            "/ip4/0.0.0.0/tcp/4001",
        ];
        relay_args.extend(extra);
        self.start_weft(r, &relay_args, &[]);
        let relay_id = self.wait_api(r, deadline)["peer_id"]
            .as_str()
            .expect("a PeerId")
            .to_string();
        let relay_addrs = self.hosts[r].addrs.clone();
        for (host, relay_addr) in [(a, relay_addrs[0]), (b, relay_addrs[1])] {
            let bootstrap = format!("/ip4/{relay_addr}/tcp/4001/p2p/{relay_id}");
            let mut args = vec!["--token", token, "--bootstrap", &bootstrap];
            args.extend(extra);
            self.start_weft(host, &args, &[]);
        }
        relay_id
    }

    /// Waits until host `from` gets an answer to one ping of `to` (an overlay address, say).
    pub fn wait_ping(&self, from: usize, to: &str, deadline: Duration) {
        wait_until(deadline, &format!("n{} to ping {to}", from + 1), || {
            let out = self.hosts[from].run("ping", &["-c", "1", "-W", "1", to]);
            // `ip netns exec` says so when the program is missing: no wait makes it appear.
            let said = String::from_utf8_lossy(&out.stderr);
            assert!(
                !said.contains("exec of \"ping\" failed"),
                "cannot run ping ({}): install iputils-ping (`sudo scripts/install-deps.sh`)",
                said.trim()
            );
            out.status.success().then_some(())
        });
    }

    /// Every process's log, for a failing test.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        for p in &self.processes {
            all.push_str(&format!(
                "----- {} (pid {}) -----\n{}\n",
                p.label,
                p.pid(),
                p.log_text()
            ));
        }
        all
    }

    /// Stops every process still running: SIGTERM, then SIGKILL after a grace period.
    pub fn stop_all(&mut self) {
        for p in &mut self.processes {
            if matches!(p.child.try_wait(), Ok(None)) {
                p.signal("TERM");
            }
        }
        for p in &mut self.processes {
            if p.wait_exit(Duration::from_secs(5)).is_none() {
                let _ = p.child.kill();
                let _ = p.child.wait();
            }
        }
    }
}

impl Drop for Lan {
    /// Stops every process and deletes the namespaces; then fails a test (or an example) that
    /// passed so far when a daemon panicked, since a panic in a connection's or a task's thread
    /// can leave the daemon running, and the test passing, without what panicked. Only the
    /// logs of the daemons that panicked are printed then: a scale run has hundreds.
    fn drop(&mut self) {
        self.stop_all();
        let mut found = Vec::new();
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        } else {
            for p in self.processes.iter().filter(|p| p.weft) {
                let log = p.log_text();
                let lines = panics(&log);
                if !lines.is_empty() {
                    eprintln!("----- {} (pid {}) -----\n{log}", p.label, p.pid());
                    found.extend(lines.iter().map(|line| format!("{}: {line}", p.label)));
                }
            }
        }
        for ns in self.namespaces.iter().rev() {
            delete_netns(ns);
        }
        assert!(found.is_empty(), "a daemon panicked: {found:#?}");
    }
}

/// The lines of daemon log `log` that say a thread panicked, less the two kinds a passing run
/// may show: the relay client's "Relay connection exist", which `p2p/contained.rs` contains
/// (the panic hook prints it, on the line after its place, before weft drops the event), and
/// a fault a test injected on purpose (`WEFT_FAULT`, `src/fault.rs`).
fn panics(log: &str) -> Vec<&str> {
    let lines: Vec<&str> = log.lines().collect();
    lines
        .iter()
        .enumerate()
        .filter(|(_, line)| line.contains("panicked at"))
        .filter(|(i, line)| {
            let contained = line.contains("priv_client.rs:")
                && lines
                    .get(i + 1)
                    .is_some_and(|next| next.contains("Relay connection exist"));
            !contained && !line.contains("src/fault.rs")
        })
        .map(|(_, line)| *line)
        .collect()
}

/// Deletes network namespace `ns`, trying again for up to 2 s while `ip` fails and the
/// namespace is still there (a passing test once left its four namespaces behind, every error
/// ignored), and saying so on stderr when it stays.
fn delete_netns(ns: &str) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let error = match Command::new("ip").args(["netns", "del", ns]).output() {
            Ok(out) if out.status.success() => return,
            Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_string(),
            Err(e) => format!("cannot run ip: {e}"),
        };
        if !Path::new("/run/netns").join(ns).exists() {
            return;
        }
        if Instant::now() >= deadline {
            eprintln!("network namespace {ns} left behind: {error}");
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The kernel's neighbour (ARP and NDP) tables are shared by every network namespace, 1024
/// entries by default: a LAN of 50 hosts that all talk to each other needs 2450 in each, and
/// past the limit new neighbours are refused ("neighbor table overflow!" in the kernel log,
/// ENOBUFS to the sender), so some hosts never reach others. Raises the limits, never lowers
/// them, and says so: the setting is the machine's, and stays after the run.
fn make_room_for_neighbours(hosts: usize) {
    let needed = (hosts * hosts.saturating_sub(1)).max(1);
    for family in ["ipv4", "ipv6"] {
        let dir = format!("/proc/sys/net/{family}/neigh/default");
        for (knob, want) in [("gc_thresh2", needed), ("gc_thresh3", needed * 2)] {
            let path = format!("{dir}/{knob}");
            let Some(now) = std::fs::read_to_string(&path)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
            else {
                continue;
            };
            if now < want {
                match std::fs::write(&path, want.to_string()) {
                    Ok(()) => eprintln!(
                        "raised net.{family}.neigh.default.{knob} from {now} to {want} for {hosts} hosts"
                    ),
                    Err(e) => eprintln!(
                        "cannot raise net.{family}.neigh.default.{knob} to {want} ({e}); {hosts} hosts may not all reach each other"
                    ),
                }
            }
        }
    }
}

/// The `weft` binary next to the running example (`target/<profile>/weft`), for the demo and
/// the measurement examples.
pub fn sibling_weft_binary() -> PathBuf {
    let me = std::env::current_exe().expect("a program knows its own path");
    me.parent()
        .and_then(|examples| examples.parent())
        .expect("examples live in target/<profile>/examples")
        .join("weft")
}

/// Polls `check` until it returns `Some`, or panics after `deadline` naming `what`.
pub fn wait_until<T>(deadline: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    let mut pause = Duration::from_millis(20);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}
