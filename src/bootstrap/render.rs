//! The files k3s is configured with, rendered from a job (Kairos' layout, see the reference's
//! k3s table): the service, its command line, its environment, the systemd drop-in or the
//! OpenRC environment file, and the admin kubeconfig pointed at the control plane's overlay
//! address. Pure text in, text out.

use std::net::Ipv4Addr;

use super::plan::Job;
use crate::ledger::state::Role;

/// The port k3s serves its API (and its join endpoint) on.
pub const API_PORT: u16 = 6443;

/// What k3s runs as for a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct K3sService {
    /// `k3s` or `k3s-agent`.
    pub name: &'static str,
    /// Arguments after the binary (`server ...` or `agent ...`).
    pub args: Vec<String>,
    /// The environment file's variables, in order.
    pub env: Vec<(String, String)>,
}

/// The user's additions and how k3s meets the overlay.
#[derive(Debug, Clone, Default)]
pub struct K3sOptions {
    /// The TUN interface.
    pub interface: String,
    /// Run k3s over the overlay (`--flannel-iface`, `--node-ip`, `--advertise-address`).
    pub over_vpn: bool,
    pub server_args: Vec<String>,
    pub server_env: Vec<(String, String)>,
    pub agent_args: Vec<String>,
    pub agent_env: Vec<(String, String)>,
}

/// The URL a control plane at `ip` serves its API and joins on.
pub fn server_url(ip: Ipv4Addr) -> String {
    format!("https://{ip}:{API_PORT}")
}

/// The service, arguments and environment a job needs. A joining role without join facts
/// cannot be rendered (the planner never asks for that).
pub fn service(job: &Job, options: &K3sOptions) -> Result<K3sService, String> {
    let ip = job.overlay_ip;
    let overlay = |args: &mut Vec<String>, advertise: bool| {
        if options.over_vpn {
            args.push(format!("--flannel-iface={}", options.interface));
            args.push(format!("--node-ip={ip}"));
            if advertise {
                args.push(format!("--advertise-address={ip}"));
            }
        }
    };
    let join = || {
        job.join
            .as_ref()
            .ok_or_else(|| format!("{} needs a control plane to join", job.role))
    };
    let join_url = |join: &super::plan::JoinFacts| {
        join.server_url
            .clone()
            .unwrap_or_else(|| server_url(join.ip))
    };
    match job.role {
        Role::Master | Role::MasterClusterInit | Role::MasterHa => {
            let mut args = vec!["server".to_string()];
            overlay(&mut args, true);
            let mut env = Vec::new();
            if job.role == Role::MasterClusterInit {
                args.push("--cluster-init".into());
            }
            if job.role == Role::MasterHa {
                let join = join()?;
                args.push(format!("--server={}", join_url(join)));
                env.push(("K3S_TOKEN".to_string(), join.token.clone()));
            }
            args.extend(options.server_args.iter().cloned());
            env.extend(options.server_env.iter().cloned());
            Ok(K3sService {
                name: "k3s",
                args,
                env,
            })
        }
        Role::Worker => {
            let join = join()?;
            let mut args = vec!["agent".to_string(), "--with-node-id".to_string()];
            overlay(&mut args, false);
            args.extend(options.agent_args.iter().cloned());
            let mut env = vec![
                ("K3S_URL".to_string(), join_url(join)),
                ("K3S_TOKEN".to_string(), join.token.clone()),
            ];
            env.extend(options.agent_env.iter().cloned());
            Ok(K3sService {
                name: "k3s-agent",
                args,
                env,
            })
        }
    }
}

/// An environment file as systemd's `EnvironmentFile=` and a shell both read it: `KEY="value"`
/// lines, with `\`, `"`, `$` and `` ` `` escaped. Later duplicates win, as in both readers.
pub fn env_file(env: &[(String, String)]) -> String {
    let mut out = String::from("# written by weft's k3s bootstrapper\n");
    for (key, value) in env {
        out.push_str(key);
        out.push('=');
        out.push_str(&quote(value));
        out.push('\n');
    }
    out
}

/// The systemd drop-in that replaces the service's command line.
pub fn systemd_dropin(binary: &str, args: &[String]) -> String {
    let line = std::iter::once(quote_word(binary))
        .chain(args.iter().map(|a| quote_word(a)))
        .collect::<Vec<_>>()
        .join(" ");
    format!("# written by weft's k3s bootstrapper\n[Service]\nExecStart=\nExecStart={line}\n")
}

/// OpenRC's `command_args` for the k3s init script (which sources the environment file after
/// setting its own), logging where the k3s install script does.
pub fn openrc_command_args(service: &str, args: &[String]) -> String {
    let words = args
        .iter()
        .map(|a| shell_word(a))
        .collect::<Vec<_>>()
        .join(" ");
    format!("{words} >>/var/log/{service}.log 2>&1")
}

/// The admin kubeconfig k3s writes (server `https://127.0.0.1:6443`) with its server pointed at
/// `url`, so it works from any member.
pub fn kubeconfig_for(k3s_yaml: &str, url: &str) -> String {
    k3s_yaml
        .lines()
        .map(|line| {
            let trimmed = line.trim_start();
            match trimmed.strip_prefix("server:") {
                Some(_) => {
                    let indent = &line[..line.len() - trimmed.len()];
                    format!("{indent}server: {url}")
                }
                None => line.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// A value in double quotes for an environment file.
fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if matches!(c, '\\' | '"' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// One word of a systemd command line: bare when safe, else double-quoted (systemd unquotes
/// `\"` and `\\`; `%` is a specifier and doubled; `$` would expand and is doubled).
fn quote_word(word: &str) -> String {
    let escaped = word.replace('%', "%%").replace('$', "$$");
    let bare = !escaped.is_empty()
        && escaped
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@".contains(c));
    if bare {
        return escaped;
    }
    let mut out = String::from("\"");
    for c in escaped.chars() {
        if matches!(c, '\\' | '"') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// One word for a POSIX shell: bare when safe, else in single quotes.
fn shell_word(word: &str) -> String {
    let bare = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@".contains(c));
    if bare {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::super::plan::JoinFacts;
    use super::*;

    fn options() -> K3sOptions {
        K3sOptions {
            interface: "weft0".into(),
            over_vpn: true,
            server_args: vec!["--disable=traefik".into()],
            server_env: vec![("HTTP_PROXY".into(), "http://proxy:3128".into())],
            agent_args: vec!["--node-label=zone=edge".into()],
            agent_env: vec![],
        }
    }

    fn job(role: Role) -> Job {
        Job {
            role,
            overlay_ip: Ipv4Addr::new(10, 1, 0, 2),
            join: (!role.founds_cluster()).then(|| JoinFacts {
                ip: Ipv4Addr::new(10, 1, 0, 1),
                server_url: None,
                token: "K10secret::server:abc".into(),
            }),
        }
    }

    #[test]
    fn each_role_gets_kairos_command_line_and_environment() {
        let master = service(&job(Role::Master), &options()).unwrap();
        assert_eq!(master.name, "k3s");
        assert_eq!(
            master.args,
            [
                "server",
                "--flannel-iface=weft0",
                "--node-ip=10.1.0.2",
                "--advertise-address=10.1.0.2",
                "--disable=traefik"
            ]
        );
        assert_eq!(
            master.env,
            [("HTTP_PROXY".into(), "http://proxy:3128".into())]
        );

        let init = service(&job(Role::MasterClusterInit), &options()).unwrap();
        assert!(init.args.contains(&"--cluster-init".to_string()));

        let ha = service(&job(Role::MasterHa), &options()).unwrap();
        assert!(
            ha.args
                .contains(&"--server=https://10.1.0.1:6443".to_string())
        );
        assert!(!ha.args.contains(&"--cluster-init".to_string()));
        assert_eq!(
            ha.env[0],
            ("K3S_TOKEN".into(), "K10secret::server:abc".into())
        );

        let worker = service(&job(Role::Worker), &options()).unwrap();
        assert_eq!(worker.name, "k3s-agent");
        assert_eq!(
            worker.args,
            [
                "agent",
                "--with-node-id",
                "--flannel-iface=weft0",
                "--node-ip=10.1.0.2",
                "--node-label=zone=edge"
            ]
        );
        assert_eq!(
            &worker.env[..2],
            [
                ("K3S_URL".into(), "https://10.1.0.1:6443".into()),
                ("K3S_TOKEN".into(), "K10secret::server:abc".into())
            ]
        );
    }

    #[test]
    fn without_the_vpn_k3s_keeps_the_host_network() {
        let mut o = options();
        o.over_vpn = false;
        let master = service(&job(Role::Master), &o).unwrap();
        assert_eq!(master.args, ["server", "--disable=traefik"]);
    }

    #[test]
    fn env_files_and_command_lines_survive_awkward_values() {
        let env = env_file(&[("A".into(), "x \"y\" $z `w` \\".into())]);
        assert!(
            env.ends_with("A=\"x \\\"y\\\" \\$z \\`w\\` \\\\\"\n"),
            "{env}"
        );
        let dropin = systemd_dropin(
            "/usr/bin/k3s",
            &["server".into(), "--a=b c".into(), "50%".into()],
        );
        assert!(
            dropin.contains("ExecStart=\nExecStart=/usr/bin/k3s server \"--a=b c\" \"50%%\"\n"),
            "{dropin}"
        );
        assert_eq!(
            openrc_command_args("k3s", &["server".into(), "it's".into()]),
            "server 'it'\\''s' >>/var/log/k3s.log 2>&1"
        );
    }

    #[test]
    fn the_kubeconfig_points_at_the_control_plane() {
        let k3s = "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: AAA\n    server: https://127.0.0.1:6443\n  name: default\n";
        let out = kubeconfig_for(k3s, "https://10.1.0.1:6443");
        assert!(out.contains("    server: https://10.1.0.1:6443\n"), "{out}");
        assert!(!out.contains("127.0.0.1"));
        assert!(out.contains("certificate-authority-data: AAA"));
    }
}
