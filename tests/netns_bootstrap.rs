//! The k3s and script bootstrappers end to end: real `weft up` processes in network namespaces,
//! each with its own root prefix and fake `systemctl` and `k3s` (tests/fixtures/fake-k3s) that
//! record their calls and write k3s' join token and kubeconfig as k3s does.
//!
//! - Three nodes make one control plane and two workers; the workers' env files point at the
//!   control plane's overlay address with the token its k3s wrote, a token that appears in
//!   clear in no state dir, log, ledger listing or API answer; `weft kubeconfig` on a worker
//!   prints the kubeconfig with the control plane's address; a restart of all three runs no
//!   bootstrapper again (sentinel) and removing one node's sentinel reconfigures only it.
//! - The control plane stopped past the lease timeout while a fourth node joins: the fourth
//!   becomes a worker, no second master appears, and the control plane returns to its role and
//!   address.
//! - Five nodes with `--control-planes 3`: one clusterinit, two ha (joining it with its token),
//!   two workers.
//! - The script bootstrapper: the script sees the documented environment; a failing script is
//!   retried and its error shows in `weft status` and `weft role ls`.
//!
//! Needs root and iproute2; elsewhere it prints why it is skipped.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::k3s::{FakeRoot, borrowed};
use support::netns::{Lan, wait_until};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
const DEADLINE: Duration = Duration::from_secs(90);

/// Starts `weft up` with the fake k3s on host `i`, plus `extra` arguments.
fn start(lan: &mut Lan, i: usize, token: &str, extra: &[&str]) -> usize {
    let fake = FakeRoot::of(&lan.hosts[i]);
    let mut args: Vec<String> = vec!["--token".into(), token.into(), "--no-dht".into()];
    args.extend(fake.args());
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let env = fake.env();
    lan.start_weft(i, &args, &borrowed(&env))
}

fn fake(lan: &Lan, i: usize) -> FakeRoot {
    FakeRoot::of(&lan.hosts[i])
}

/// `weft ARGS --api <host i> [--json]` run on the machine; its standard output.
fn weft(lan: &Lan, i: usize, args: &[&str]) -> String {
    let api = lan.hosts[i].api();
    let mut all = args.to_vec();
    all.extend(["--api", &api]);
    let out = lan.weft(&all);
    assert!(
        out.status.success(),
        "weft {args:?} on n{}: {}",
        i + 1,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `weft role ls --json` of host `i`, or `None` while it does not answer.
fn roles(lan: &Lan, i: usize) -> Option<Value> {
    let api = lan.hosts[i].api();
    let out = lan.weft(&["role", "ls", "--json", "--api", &api]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

/// Role of every member by hostname, as host `i` sees them.
fn role_map(view: &Value) -> BTreeMap<String, Value> {
    view["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| (m["hostname"].as_str().unwrap().to_string(), m.clone()))
        .collect()
}

/// Waits until hosts `which` all report their role deployed, and returns their statuses.
fn wait_deployed(lan: &mut Lan, which: &[usize]) -> Vec<Value> {
    for &i in which {
        lan.wait_api(i, DEADLINE);
    }
    which
        .iter()
        .map(|&i| {
            wait_until(DEADLINE, &format!("n{} to deploy its role", i + 1), || {
                lan.status(i)
                    .filter(|s| s["bootstrap"]["phase"] == "deployed" && s["role_deployed"] == true)
            })
        })
        .collect()
}

fn stop(lan: &mut Lan, process: usize) {
    lan.processes[process].signal("TERM");
    let status = lan.processes[process].wait_exit(Duration::from_secs(20));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "clean exit");
}

/// Every file under `dir`, with its bytes.
fn files_under(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path, bytes));
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// `GET path` on host `i`'s API socket, with curl.
fn api_get(lan: &Lan, i: usize, path: &str) -> String {
    let out = std::process::Command::new("curl")
        .args(["-s", "--unix-socket"])
        .arg(lan.hosts[i].api_socket())
        .arg(format!("http://weft{path}"))
        .output()
        .expect("curl runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn three_nodes_make_one_control_plane_and_two_workers_and_keep_them_across_restarts() {
    require_netns!();
    let mut lan = Lan::new(3, WEFT);
    let token = lan.new_token();
    let mut procs: Vec<usize> = (0..3)
        .map(|i| start(&mut lan, i, &token, &["--minimum-nodes", "3"]))
        .collect();
    let statuses = wait_deployed(&mut lan, &[0, 1, 2]);
    let role_of: Vec<&str> = statuses
        .iter()
        .map(|s| s["role"].as_str().unwrap())
        .collect();
    let masters: Vec<usize> = (0..3).filter(|&i| role_of[i] == "master").collect();
    assert_eq!(masters.len(), 1, "one control plane: {role_of:?}");
    let master = masters[0];
    let workers: Vec<usize> = (0..3).filter(|&i| i != master).collect();
    assert!(
        workers.iter().all(|&i| role_of[i] == "worker"),
        "{role_of:?}"
    );
    let master_ip = statuses[master]["overlay_ip"].as_str().unwrap().to_string();
    let node_token = fake(&lan, master)
        .node_token()
        .expect("the fake k3s server wrote a token");

    let server_calls = fake(&lan, master).calls();
    assert!(
        server_calls.iter().any(|c| c.starts_with("k3s server ")
            && c.contains("--flannel-iface=weft0")
            && c.contains(&format!("--node-ip={master_ip}"))
            && c.contains(&format!("--advertise-address={master_ip}"))),
        "{server_calls:?}"
    );
    for &w in &workers {
        let f = fake(&lan, w);
        let env = f
            .file("/etc/sysconfig/k3s-agent")
            .expect("the agent's env file");
        assert!(
            env.contains(&format!("K3S_URL=\"https://{master_ip}:6443\"")),
            "{env}"
        );
        assert!(
            env.contains(&format!("K3S_TOKEN=\"{node_token}\"")),
            "{env}"
        );
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(f.path("/etc/sysconfig/k3s-agent"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the env file holds the token");
        let dropin = f
            .file("/etc/systemd/system/k3s-agent.service.d/override.conf")
            .expect("the agent's drop-in");
        assert!(dropin.contains("agent --with-node-id"), "{dropin}");
        let calls = f.calls();
        assert!(
            calls.contains(&"systemctl restart --no-block k3s-agent".to_string()),
            "{calls:?}"
        );
    }

    // The token is in clear nowhere weft keeps or shows things.
    for (i, host) in lan.hosts.iter().enumerate() {
        for (path, bytes) in files_under(&host.state_dir()) {
            assert!(
                !contains(&bytes, &node_token),
                "the token is in clear in {}",
                path.display()
            );
        }
        for path in [
            "/v1/status",
            "/v1/members",
            "/v1/roles",
            "/v1/policy",
            "/v1/ledger",
            "/v1/peers",
            "/v1/dns",
            "/v1/dataplane",
            "/v1/kubeconfig",
            "/metrics",
        ] {
            let answer = api_get(&lan, i, path);
            assert!(!answer.is_empty(), "{path} answered on n{}", i + 1);
            assert!(
                !answer.contains(&node_token),
                "{path} on n{} shows the token",
                i + 1
            );
        }
        let listing = weft(&lan, i, &["ledger", "ls", "--json"]);
        assert!(
            !listing.contains(&node_token),
            "weft ledger ls shows the token"
        );
    }
    for p in &lan.processes {
        assert!(
            !p.log_text().contains(&node_token),
            "{}'s log shows the token",
            p.label
        );
    }

    let kubeconfig = weft(&lan, workers[0], &["kubeconfig"]);
    assert!(
        kubeconfig.contains(&format!("server: https://{master_ip}:6443")),
        "{kubeconfig}"
    );
    assert!(!kubeconfig.contains("127.0.0.1"));
    // --output with a bare file name writes it, 0600, in the current directory.
    let here = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(WEFT)
        .args(["kubeconfig", "--output", "kubeconfig", "--api"])
        .arg(lan.hosts[workers[0]].api())
        .current_dir(here.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = here.path().join("kubeconfig");
    assert_eq!(std::fs::read_to_string(&written).unwrap(), kubeconfig);
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&written).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // A restart of all three runs no bootstrapper: the sentinels hold.
    let calls_before: Vec<Vec<String>> = (0..3).map(|i| fake(&lan, i).calls()).collect();
    let restart = |lan: &mut Lan, procs: &mut Vec<usize>| {
        for p in procs.iter() {
            stop(lan, *p);
        }
        *procs = (0..3)
            .map(|i| start(lan, i, &token, &["--minimum-nodes", "3"]))
            .collect();
        let statuses = wait_deployed(lan, &[0, 1, 2]);
        for (i, s) in statuses.iter().enumerate() {
            assert_eq!(s["role"], role_of[i], "n{} kept its role", i + 1);
        }
        assert_eq!(statuses[master]["overlay_ip"], master_ip.as_str());
    };
    restart(&mut lan, &mut procs);
    for (i, before) in calls_before.iter().enumerate() {
        assert_eq!(
            &fake(&lan, i).calls(),
            before,
            "n{} reconfigured k3s despite its sentinel",
            i + 1
        );
    }

    // Without its sentinel, only that node is configured again.
    let again = workers[0];
    std::fs::remove_file(lan.hosts[again].state_dir().join("deployed")).unwrap();
    restart(&mut lan, &mut procs);
    for (i, before) in calls_before.iter().enumerate() {
        let calls = fake(&lan, i).calls();
        if i == again {
            assert!(calls.len() > before.len(), "n{} bootstrapped again", i + 1);
        } else {
            assert_eq!(&calls, before, "n{} was left alone", i + 1);
        }
    }
}

#[test]
fn a_control_plane_away_past_its_lease_keeps_its_seat_and_address() {
    require_netns!();
    let mut lan = Lan::new(4, WEFT);
    let token = lan.new_token();
    let extra = ["--minimum-nodes", "3", "--lease-timeout", "8"];
    let procs: Vec<usize> = (0..3).map(|i| start(&mut lan, i, &token, &extra)).collect();
    let statuses = wait_deployed(&mut lan, &[0, 1, 2]);
    let master = (0..3)
        .find(|&i| statuses[i]["role"] == "master")
        .expect("a master");
    let master_ip = statuses[master]["overlay_ip"].as_str().unwrap().to_string();
    let master_name = lan.hosts[master].name.clone();
    let witness = (master + 1) % 3;
    let master_calls = fake(&lan, master).calls();

    stop(&mut lan, procs[master]);
    wait_until(DEADLINE, "the master's lease to expire", || {
        let view = roles(&lan, witness)?;
        let m = role_map(&view).get(&master_name)?.clone();
        (m["lease"] == "expired").then_some(())
    });
    start(&mut lan, 3, &token, &extra);
    let fourth = wait_deployed(&mut lan, &[3]).remove(0);
    assert_eq!(fourth["role"], "worker");
    let env = fake(&lan, 3).file("/etc/sysconfig/k3s-agent").unwrap();
    assert!(env.contains(&format!("https://{master_ip}:6443")), "{env}");
    let view = roles(&lan, witness).unwrap();
    let all = role_map(&view);
    let masters: Vec<&String> = all
        .iter()
        .filter(|(_, m)| m["role"].as_str().is_some_and(|r| r.starts_with("master")))
        .map(|(h, _)| h)
        .collect();
    assert_eq!(masters, [&master_name], "no second master: {view}");
    assert_eq!(all[&master_name]["overlay_ip"], master_ip.as_str());

    start(&mut lan, master, &token, &extra);
    let back = wait_deployed(&mut lan, &[master]).remove(0);
    assert_eq!(back["role"], "master");
    assert_eq!(back["overlay_ip"], master_ip.as_str());
    wait_until(DEADLINE, "the master's lease to be live again", || {
        let view = roles(&lan, witness)?;
        (role_map(&view).get(&master_name)?["lease"] == "live").then_some(())
    });
    assert_eq!(
        fake(&lan, master).calls(),
        master_calls,
        "the returning master is not reconfigured"
    );

    // Its deployed role changes only by force, and the refusal says what forcing breaks.
    let api = lan.hosts[witness].api();
    let refused = lan.weft(&["role", "set", &master_name, "worker", "--api", &api]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("409") && said.contains("new, empty cluster") && said.contains("--force"),
        "{said}"
    );
    let view = roles(&lan, witness).unwrap();
    assert_eq!(role_map(&view)[&master_name]["role"], "master");
}

#[test]
fn five_nodes_with_three_control_planes_make_clusterinit_two_ha_and_two_workers() {
    require_netns!();
    let mut lan = Lan::new(5, WEFT);
    let token = lan.new_token();
    let extra = ["--minimum-nodes", "5", "--control-planes", "3"];
    for i in 0..5 {
        start(&mut lan, i, &token, &extra);
    }
    let statuses = wait_deployed(&mut lan, &[0, 1, 2, 3, 4]);
    let by_role =
        |role: &str| -> Vec<usize> { (0..5).filter(|&i| statuses[i]["role"] == role).collect() };
    let init = by_role("master/clusterinit");
    let ha = by_role("master/ha");
    let workers = by_role("worker");
    assert_eq!(
        (init.len(), ha.len(), workers.len()),
        (1, 2, 2),
        "{statuses:?}"
    );
    let init_ip = statuses[init[0]]["overlay_ip"].as_str().unwrap();
    let init_token = fake(&lan, init[0]).node_token().unwrap();
    let init_calls = fake(&lan, init[0]).calls();
    assert!(
        init_calls
            .iter()
            .any(|c| c.starts_with("k3s server") && c.contains("--cluster-init")),
        "{init_calls:?}"
    );
    for &i in &ha {
        let f = fake(&lan, i);
        let calls = f.calls();
        assert!(
            calls.iter().any(|c| c.starts_with("k3s server")
                && c.contains(&format!("--server=https://{init_ip}:6443"))
                && !c.contains("--cluster-init")),
            "{calls:?}"
        );
        let env = f.file("/etc/sysconfig/k3s").unwrap();
        assert!(
            env.contains(&format!("K3S_TOKEN=\"{init_token}\"")),
            "{env}"
        );
    }
    for &i in &workers {
        let env = fake(&lan, i).file("/etc/sysconfig/k3s-agent").unwrap();
        assert!(
            env.contains(&format!("K3S_URL=\"https://{init_ip}:6443\"")),
            "{env}"
        );
    }
    let policy = weft(&lan, workers[0], &["role", "policy"]);
    assert!(policy.starts_with("policy: 3 control planes\n"), "{policy}");
}

#[test]
fn the_script_bootstrapper_sees_its_facts_and_a_failing_script_is_retried_visibly() {
    require_netns!();
    let mut lan = Lan::new(2, WEFT);
    let token = lan.new_token();
    let scripts = lan.hosts[0].dir.join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    // Records what it sees; the founder makes a join token. The worker's copy fails twice
    // first (a counter beside it), with a message weft must show.
    let body = r#"#!/bin/sh
set -eu
here=$(dirname "$0")
if [ "$WEFT_ROLE" = worker ]; then
  n=$(cat "$here/failures" 2>/dev/null || echo 0)
  if [ "$n" -lt 2 ]; then
    echo $((n + 1)) >"$here/failures"
    echo "disk not ready (try $((n + 1)))" >&2
    exit 3
  fi
fi
{
  echo "role=$WEFT_ROLE"
  echo "ip=$WEFT_OVERLAY_IP"
  echo "master=$WEFT_MASTER_IP"
  echo "interface=$WEFT_INTERFACE"
  echo "token_file=$WEFT_JOIN_TOKEN_FILE"
  if [ -n "$WEFT_JOIN_TOKEN_FILE" ]; then
    echo "token=$(cat "$WEFT_JOIN_TOKEN_FILE")"
    echo "mode=$(stat -c %a "$WEFT_JOIN_TOKEN_FILE")"
  fi
  echo "token_in_env=$(env | grep -c script-made-token || true)"
} >"$here/seen-$WEFT_ROLE"
if [ "$WEFT_ROLE" != worker ]; then
  echo script-made-token >"$WEFT_JOIN_TOKEN_OUT"
fi
"#;
    let mut procs = Vec::new();
    for i in 0..2 {
        let dir = scripts.join(format!("n{}", i + 1));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("bootstrap.sh");
        std::fs::write(&script, body).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let root = lan.hosts[i].dir.join("root");
        let args = [
            "--token",
            &token,
            "--no-dht",
            "--minimum-nodes",
            "2",
            "--bootstrapper",
            "script",
            "--bootstrap-script",
            script.to_str().unwrap(),
            "--root",
            root.to_str().unwrap(),
        ];
        procs.push(lan.start_weft(i, &args, &[]));
    }
    let founder = wait_deployed(&mut lan, &[0, 1]);
    let master = (0..2).find(|&i| founder[i]["role"] == "master").unwrap();
    let worker = 1 - master;
    let master_ip = founder[master]["overlay_ip"].as_str().unwrap();
    let worker_ip = founder[worker]["overlay_ip"].as_str().unwrap();

    let seen = |i: usize, role: &str| {
        std::fs::read_to_string(
            scripts
                .join(format!("n{}", i + 1))
                .join(format!("seen-{role}")),
        )
        .unwrap()
    };
    let master_seen = seen(master, "master");
    assert!(
        master_seen.contains(&format!("ip={master_ip}\n")),
        "{master_seen}"
    );
    assert!(master_seen.contains("master=\n") && master_seen.contains("token_file=\n"));
    assert!(master_seen.contains("interface=weft0\n"), "{master_seen}");
    let worker_seen = seen(worker, "worker");
    for expected in [
        "role=worker\n".to_string(),
        format!("ip={worker_ip}\n"),
        format!("master={master_ip}\n"),
        "token=script-made-token\n".to_string(),
        "mode=600\n".to_string(),
        "token_in_env=0\n".to_string(),
    ] {
        assert!(
            worker_seen.contains(&expected),
            "{expected:?} in {worker_seen}"
        );
    }

    // The worker failed twice before it succeeded; weft showed why. Its log and the ledger's
    // report say so (the failures are over by now, so check what was recorded on the way).
    let log = lan.processes[procs[worker]].log_text();
    assert!(log.contains("disk not ready (try 1)"), "{log}");
    assert!(log.contains("disk not ready (try 2)"), "{log}");
}

#[test]
fn a_failing_script_shows_its_error_in_status_and_role_ls() {
    require_netns!();
    let mut lan = Lan::new(1, WEFT);
    let token = lan.new_token();
    let script = lan.hosts[0].dir.join("fail.sh");
    std::fs::write(&script, "#!/bin/sh\necho 'no k3s image here' >&2\nexit 7\n").unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = lan.hosts[0].dir.join("root");
    lan.start_weft(
        0,
        &[
            "--token",
            &token,
            "--no-dht",
            "--bootstrapper",
            "script",
            "--bootstrap-script",
            script.to_str().unwrap(),
            "--root",
            root.to_str().unwrap(),
        ],
        &[],
    );
    lan.wait_api(0, DEADLINE);
    let status = wait_until(DEADLINE, "a second failed attempt in the status", || {
        lan.status(0)
            .filter(|s| s["bootstrap"]["phase"] == "failed" && s["bootstrap"]["failures"] == 2)
    });
    let detail = status["bootstrap"]["detail"].as_str().unwrap();
    assert!(
        detail.contains("exit code 7") && detail.contains("no k3s image here"),
        "{detail}"
    );
    assert!(detail.contains("retrying in"), "{detail}");
    // Each attempt costs the log two reports (installing, failed), not a stream of them.
    let applied = status["ledger"]["applied_index"].as_u64().unwrap();
    assert!(
        applied < 30,
        "{applied} log entries for two failed attempts"
    );
    let text = weft(&lan, 0, &["status"]);
    assert!(text.contains("bootstrap:    script failed: "), "{text}");
    // A cluster of one: this node is its only voter.
    assert!(text.contains("(voter, raft node "), "{text}");
    assert!(text.contains(", 1 voters, 0 learners, applied "), "{text}");
    let view = wait_until(DEADLINE, "the failure in weft role ls", || {
        let view = roles(&lan, 0)?;
        let me = view["members"][0].clone();
        (me["phase"] == "failed").then_some(me)
    });
    assert!(
        view["detail"]
            .as_str()
            .unwrap()
            .contains("no k3s image here"),
        "{view}"
    );
    let table = weft(&lan, 0, &["role", "ls"]);
    assert!(
        table.contains("failed") && table.contains("no k3s image here"),
        "{table}"
    );
}
