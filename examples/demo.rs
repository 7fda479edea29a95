//! The weft demo: a small mesh of real `weft up` processes, each in its own network namespace on
//! one bridged LAN (the same harness the end-to-end tests use). The nodes find each other by
//! mDNS and admit each other with the shared token, the ledger gives each an overlay address, and
//! every node pings every other over the encrypted data plane and resolves every other by name
//! through its own DNS server. The ledger elects one Kubernetes control plane and makes the
//! others workers; each node's k3s bootstrapper configures k3s for its role against fake
//! `systemctl` and `k3s` executables (tests/fixtures/fake-k3s) in a directory of its own, and
//! the demo shows the calls each node made. It shows what every node reports and which peers it
//! admitted, with the data path each uses, then stops them and removes everything it made. Run
//! it as root through `./demo.sh`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use support::k3s::{FakeRoot, borrowed};
use support::netns::{Lan, sibling_weft_binary, unavailable, wait_until};

const NODES: usize = 3;
const DEADLINE: Duration = Duration::from_secs(30);

fn main() -> ExitCode {
    if let Some(reason) = unavailable() {
        eprintln!("the demo cannot run here: {reason}");
        return ExitCode::FAILURE;
    }
    let weft = sibling_weft_binary();
    println!("== weft demo: {NODES} nodes, each in its own network namespace on one LAN ==\n");

    let token = run(&weft, &["token", "new"]).trim().to_string();
    println!("$ weft token new");
    println!("{token}\n");
    println!("$ weft token inspect <token>");
    print!("{}", run(&weft, &["token", "inspect", &token]));

    let mut lan = Lan::new(NODES, &weft);
    for i in 0..NODES {
        // DNS on the namespace's own loopback; no forwarding, so nothing leaves the demo's LAN.
        // k3s is bootstrapped against the fakes under the node's own root directory.
        let fake = FakeRoot::of(&lan.hosts[i]);
        let nodes = NODES.to_string();
        let mut args = vec![
            "--token",
            &token,
            "--dns",
            "127.0.0.1:53",
            "--no-dns-forward",
            "--minimum-nodes",
            &nodes,
        ];
        let fake_args = fake.args();
        args.extend(fake_args.iter().map(String::as_str));
        let env = fake.env();
        lan.start_weft(i, &args, &borrowed(&env));
    }
    for i in 0..NODES {
        lan.wait_api(i, DEADLINE);
    }
    println!(
        "\nwaiting for every node to find and admit the {} others...",
        NODES - 1
    );
    for i in 0..NODES {
        wait_until(DEADLINE, "a full mesh", || {
            lan.status(i)
                .filter(|s| s["admitted_peers"].as_u64() == Some(NODES as u64 - 1))
        });
    }
    println!(
        "waiting for the ledger to form one cluster and give every node an overlay address..."
    );
    let overlay = lan.settled_addresses(&(0..NODES).collect::<Vec<_>>(), DEADLINE);
    println!("pinging every node from every other over the encrypted overlay...");
    for i in 0..NODES {
        for j in (0..NODES).filter(|&j| j != i) {
            let host = &lan.hosts[i];
            // The first packets may wait for the session handshake and the path probe.
            wait_until(DEADLINE, "an overlay ping", || {
                let out = host.run("ping", &["-c", "1", "-W", "1", &overlay[j]]);
                out.status.success().then_some(())
            });
            let out = host.run("ping", &["-c", "3", "-i", "0.2", "-q", &overlay[j]]);
            let summary = String::from_utf8_lossy(&out.stdout);
            let rtt = summary
                .lines()
                .find(|l| l.starts_with("rtt"))
                .unwrap_or("no reply");
            println!(
                "{} -> {} ({}): {rtt}",
                host.name, lan.hosts[j].name, overlay[j]
            );
        }
    }
    println!("resolving every node from every other with dig @127.0.0.1 (weft's DNS)...");
    for i in 0..NODES {
        for j in (0..NODES).filter(|&j| j != i) {
            let name = format!("{}.weft.internal", lan.hosts[j].name);
            let address = wait_until(DEADLINE, "a DNS answer", || {
                let out = lan.hosts[i].run("dig", &["@127.0.0.1", "+short", &name]);
                let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
                (text == overlay[j]).then_some(text)
            });
            println!("{}: {name} -> {address}", lan.hosts[i].name);
        }
    }
    for i in 0..NODES {
        let host = lan.hosts[i].clone();
        println!(
            "\n-- {} (namespace {}, LAN address {}) --",
            host.name, host.netns, host.addr
        );
        println!("$ weft status --api {}", host.api());
        print!("{}", run(&weft, &["status", "--api", &host.api()]));
        println!("$ weft peers --api {}", host.api());
        print!("{}", run(&weft, &["peers", "--api", &host.api()]));
    }

    println!("\nwaiting for every node's k3s bootstrapper to deploy its role...");
    for i in 0..NODES {
        wait_until(DEADLINE, "a deployed role", || {
            lan.status(i)
                .filter(|s| s["bootstrap"]["phase"] == "deployed")
        });
    }
    let api = lan.hosts[0].api();
    println!("$ weft role ls --api {api}");
    print!("{}", run(&weft, &["role", "ls", "--api", &api]));
    for i in 0..NODES {
        let host = &lan.hosts[i];
        println!(
            "{}: what its bootstrapper ran (fake systemctl and k3s):",
            host.name
        );
        for call in FakeRoot::of(host).calls() {
            println!("  {call}");
        }
    }
    let worker_api = (0..NODES)
        .map(|i| lan.hosts[i].api())
        .find(|api| run(&weft, &["status", "--api", api]).contains("role:         worker"))
        .expect("a worker");
    println!("$ weft kubeconfig --api {worker_api}   (on a worker: the control plane's address)");
    for line in run(&weft, &["kubeconfig", "--api", &worker_api])
        .lines()
        .filter(|l| l.contains("server:"))
    {
        println!("{line}");
    }

    println!("\n$ weft members --api {api}");
    print!("{}", run(&weft, &["members", "--api", &api]));
    println!("$ weft dns ls --api {api}");
    print!("{}", run(&weft, &["dns", "ls", "--api", &api]));
    println!("$ weft ledger put demo greeting 'hello mesh' --api {api}");
    run(
        &weft,
        &[
            "ledger",
            "put",
            "demo",
            "greeting",
            "hello mesh",
            "--api",
            &api,
        ],
    );
    let other = lan.hosts[NODES - 1].api();
    println!("$ weft ledger get demo greeting --api {other}");
    // Committed on the leader; the other node applies it with the next replication round.
    let value = wait_until(DEADLINE, "the value on another node", || {
        let out = std::process::Command::new(&weft)
            .args(["ledger", "get", "demo", "greeting", "--api", &other])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    });
    print!("{value}");

    println!("\nstopping every node with SIGTERM...");
    for i in 0..lan.processes.len() {
        let name = lan.hosts[lan.processes[i].host].name.clone();
        lan.processes[i].signal("TERM");
        match lan.processes[i].wait_exit(DEADLINE) {
            Some(status) => println!("{name}: exited with {status}"),
            None => println!("{name}: did not stop in time; it will be killed"),
        }
    }
    drop(lan);
    println!("namespaces removed; done.");
    ExitCode::SUCCESS
}

fn run(weft: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(weft)
        .args(args)
        .output()
        .expect("weft runs");
    assert!(
        out.status.success(),
        "weft {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim_end().to_string() + "\n"
}
