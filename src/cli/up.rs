//! `weft up`: the daemon's settings as flags (each also a `WEFT_*` variable), handed with their
//! origins to [`crate::config`], then the daemon itself.

use anyhow::Context as _;
use clap::{ArgMatches, Args, CommandFactory as _};
use std::io::IsTerminal as _;

use super::{Cli, Failure, usage};
use crate::config::{self, ConfigError, Inputs, Origin, RawSetting, RawValue};

/// Settings of `weft up`. Each has a `WEFT_*` variable; precedence is
/// flag > WEFT_* variable > edgevpn variable > cloud-config > config file > token > default.
#[derive(Debug, Args)]
#[command(after_long_help = SCRIPT_HELP)]
pub(super) struct UpArgs {
    /// Network token (native or edgevpn). Create one with `weft token new`. A command line is
    /// visible to every local user: prefer --token-file or WEFT_TOKEN.
    #[arg(long, env = "WEFT_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    token: Option<String>,
    /// File holding the network token (native, edgevpn base64, or edgevpn YAML).
    #[arg(long, env = "WEFT_TOKEN_FILE", value_name = "FILE")]
    token_file: Option<String>,
    /// YAML config file; its keys are the setting names shown by --print-config.
    #[arg(long, env = "WEFT_CONFIG", value_name = "FILE")]
    config: Option<String>,
    /// Directory for the node's identity, raft log and leases [default: /var/lib/weft].
    #[arg(long, env = "WEFT_STATE_DIR", value_name = "DIR")]
    state_dir: Option<String>,
    /// Name this node announces to the mesh [default: the system hostname].
    #[arg(long, env = "WEFT_HOSTNAME")]
    hostname: Option<String>,
    /// Name of the TUN interface [default: weft0].
    #[arg(long, env = "WEFT_INTERFACE", value_name = "NAME")]
    interface: Option<String>,
    /// Overlay address pool [default: 10.1.0.0/24, or the token's].
    #[arg(long, env = "WEFT_CIDR")]
    cidr: Option<String>,
    /// Overlay address to ask for instead of the next free one.
    #[arg(long, env = "WEFT_ADDRESS", value_name = "IPV4")]
    address: Option<String>,
    /// libp2p listen multiaddr (repeatable) [default: QUIC and TCP on all interfaces, OS-chosen ports].
    #[arg(long, env = "WEFT_LISTEN", value_name = "MULTIADDR")]
    listen: Vec<String>,
    /// Peer multiaddr to dial at start (repeatable).
    #[arg(long, env = "WEFT_BOOTSTRAP", value_name = "MULTIADDR")]
    bootstrap: Vec<String>,
    /// Turn off LAN discovery by mDNS.
    #[arg(long, env = "WEFT_NO_MDNS", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    no_mdns: Option<String>,
    /// Turn off discovery through the DHT.
    #[arg(long, env = "WEFT_NO_DHT", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    no_dht: Option<String>,
    /// Also rendezvous on the public IPFS DHT (dials public bootstrap nodes) [default: false].
    #[arg(long, env = "WEFT_PUBLIC_DHT", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    public_dht: Option<String>,
    /// Serve as a circuit relay for admitted members that cannot reach each other directly:
    /// auto (while AutoNAT finds this node public), on, or off; `--relay` alone is on
    /// [default: auto].
    #[arg(long, env = "WEFT_RELAY", num_args = 0..=1, require_equals = true, default_missing_value = "on", value_name = "MODE")]
    relay: Option<String>,
    /// Seconds a peer that failed admission stays blocked [default: 300].
    #[arg(long, env = "WEFT_BLOCK_DURATION", value_name = "SECS")]
    block_duration: Option<String>,
    /// Seconds a connection to a member stays open while nothing uses it: a node keeps a few
    /// connections (its gossip neighbours, the leader it renews with) and dials others when a
    /// request or a packet needs them; below the lease renewal interval (200 s by default)
    /// each renewal dials the leader again [default: 300].
    #[arg(long, env = "WEFT_IDLE_TIMEOUT", value_name = "SECS")]
    idle_timeout: Option<String>,
    /// UDP port of the data plane; 0 lets the OS choose [default: 0].
    #[arg(long, env = "WEFT_DATA_PORT", value_name = "PORT")]
    data_port: Option<String>,
    /// MTU of the TUN interface [default: 1420].
    #[arg(long, env = "WEFT_MTU")]
    mtu: Option<String>,
    /// Do not ask the kernel for TUN offloads (TSO/GRO super-packets); weft falls back to this
    /// by itself when the kernel refuses them.
    #[arg(long, env = "WEFT_NO_OFFLOAD", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    no_offload: Option<String>,
    /// Local API address: unix:///path or host:port [default: unix:///run/weft/weft.sock].
    #[arg(long, env = "WEFT_API", value_name = "ADDR")]
    api: Option<String>,
    /// File mode of the API's unix socket, octal [default: 0600].
    #[arg(long, env = "WEFT_API_UNIX_MODE", value_name = "MODE")]
    api_unix_mode: Option<String>,
    /// Bearer token file a TCP API listener requires; made (mode 0600) when absent
    /// [default: <state dir>/api.token].
    #[arg(long, env = "WEFT_API_TOKEN_FILE", value_name = "FILE")]
    api_token_file: Option<String>,
    /// Who may use a TCP API without the token: `token` (nobody) or `edgevpn` (callers on a
    /// loopback listener may use edgevpn's /api and read-only routes, as Kairos' provider
    /// expects) [default: token; edgevpn when run as edgevpn].
    #[arg(long, env = "WEFT_API_AUTH", value_name = "MODE")]
    api_auth: Option<String>,
    /// Serve the mesh's DNS on this address, e.g. 127.0.0.1:53 [default: off].
    #[arg(long, env = "WEFT_DNS", value_name = "ADDR")]
    dns: Option<String>,
    /// The mesh's DNS domain: members answer as <hostname>.<domain> [default: weft.internal].
    #[arg(long, env = "WEFT_DNS_DOMAIN", value_name = "DOMAIN")]
    dns_domain: Option<String>,
    /// Do not forward DNS queries outside the mesh.
    #[arg(long, env = "WEFT_NO_DNS_FORWARD", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    no_dns_forward: Option<String>,
    /// Upstream DNS server host:port (repeatable) [default: those of /etc/resolv.conf, else
    /// systemd-resolved's; never weft's own address].
    #[arg(long, env = "WEFT_DNS_FORWARD_SERVER", value_name = "ADDR")]
    dns_forward_server: Vec<String>,
    /// Entries in the DNS forwarding cache [default: 200].
    #[arg(long, env = "WEFT_DNS_CACHE_SIZE", value_name = "N")]
    dns_cache_size: Option<String>,
    /// Also answer DNS clients in this network (repeatable); loopback and the overlay always
    /// may ask, anyone else is REFUSED [default: none].
    #[arg(long, env = "WEFT_DNS_ALLOW", value_name = "CIDR")]
    dns_allow: Vec<String>,
    /// Upper bound on open peer connections [default: 256].
    #[arg(long, env = "WEFT_MAX_CONNECTIONS", value_name = "N")]
    max_connections: Option<String>,
    /// Seconds a member may stay unreachable before the leader expires its lease and frees its
    /// address (a member that deployed a Kubernetes role keeps both) [default: 600].
    #[arg(long, env = "WEFT_LEASE_TIMEOUT", value_name = "SECS")]
    lease_timeout: Option<String>,
    /// The operator's public key (what `weft operator keygen` prints). Give every node the
    /// same one: removing, denying or allowing a member, fixing another member's role,
    /// reservations, the role policy and token rotations then take the operator's signature
    /// (`--operator-key-file` on those commands), so a stolen member cannot issue them, and a
    /// node started without the key gets no raft seat from a leader that has it [default: none,
    /// any member may].
    #[arg(long, env = "WEFT_OPERATOR_KEY", value_name = "KEY")]
    operator_key: Option<String>,
    /// Run without the TUN interface and the data plane: discovery, ledger, DNS and the API
    /// only (Kairos' p2p.vpn.create: false).
    #[arg(long, env = "WEFT_NO_TUN", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    no_tun: Option<String>,
    /// Kairos cloud-config file, or directory of them (its *.yaml in name order), to read p2p:,
    /// k3s: and k3s-agent: from (repeatable or comma-separated; later files win). Implies
    /// --bootstrapper k3s.
    #[arg(
        long,
        env = "WEFT_CLOUD_CONFIG",
        value_name = "FILE|DIR",
        value_delimiter = ','
    )]
    cloud_config: Vec<String>,
    /// This node's Kubernetes role: auto (the mesh decides), master (a control plane), worker,
    /// or none (a mesh member without Kubernetes) [default: auto].
    #[arg(long, env = "WEFT_ROLE", value_name = "ROLE")]
    role: Option<String>,
    /// Control planes the mesh should have: 1 gives one master; N > 1 gives one
    /// master/clusterinit and N-1 master/ha (k3s with embedded etcd). The first node to set it
    /// decides; change it later with `weft role policy`. Ignored with --operator-key (the
    /// operator sets the policy) [default: the mesh's policy, 1 until set].
    #[arg(long, env = "WEFT_CONTROL_PLANES", value_name = "N")]
    control_planes: Option<String>,
    /// Live members to wait for before bootstrapping Kubernetes [default: 1; 2 with
    /// --cloud-config, as Kairos].
    #[arg(long, env = "WEFT_MINIMUM_NODES", value_name = "N")]
    minimum_nodes: Option<String>,
    /// What turns this node's role into a running cluster: k3s, script or none [default: none;
    /// k3s with --cloud-config].
    #[arg(long, env = "WEFT_BOOTSTRAPPER", value_name = "KIND")]
    bootstrapper: Option<String>,
    /// Executable of the script bootstrapper (its environment is described below).
    #[arg(long, env = "WEFT_BOOTSTRAP_SCRIPT", value_name = "PATH")]
    bootstrap_script: Option<String>,
    /// Init system that runs k3s: auto, systemd or openrc [default: auto].
    #[arg(long, env = "WEFT_INIT", value_name = "INIT")]
    init: Option<String>,
    /// Prefix of every path the bootstrapper writes or reads [default: /].
    #[arg(long, env = "WEFT_ROOT", value_name = "DIR")]
    root: Option<String>,
    /// File written once the role is deployed; while it exists k3s is not reconfigured at start
    /// [default: <root>/usr/local/.kairos/deployed with --cloud-config, else
    /// <state-dir>/deployed].
    #[arg(long, env = "WEFT_SENTINEL", value_name = "FILE")]
    sentinel: Option<String>,
    /// Run k3s on the host's network rather than over the overlay (no --flannel-iface,
    /// --node-ip) (Kairos' p2p.vpn.use: false).
    #[arg(long, env = "WEFT_NO_K3S_VPN", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    no_k3s_vpn: Option<String>,
    /// Extra argument for `k3s server` (repeatable), e.g. --k3s-arg=--disable=traefik.
    #[arg(
        long,
        env = "WEFT_K3S_ARGS",
        value_name = "ARG",
        allow_hyphen_values = true
    )]
    k3s_arg: Vec<String>,
    /// Extra KEY=VALUE in the k3s server's environment file (repeatable).
    #[arg(long, env = "WEFT_K3S_ENV", value_name = "KEY=VALUE")]
    k3s_env: Vec<String>,
    /// Extra argument for `k3s agent` (repeatable).
    #[arg(
        long,
        env = "WEFT_K3S_AGENT_ARGS",
        value_name = "ARG",
        allow_hyphen_values = true
    )]
    k3s_agent_arg: Vec<String>,
    /// Extra KEY=VALUE in the k3s agent's environment file (repeatable).
    #[arg(long, env = "WEFT_K3S_AGENT_ENV", value_name = "KEY=VALUE")]
    k3s_agent_env: Vec<String>,
    /// Log level or tracing filter, e.g. debug or weft=debug,libp2p=warn [default: info].
    #[arg(long, env = "WEFT_LOG_LEVEL", value_name = "FILTER")]
    log_level: Option<String>,
    /// Print the effective configuration (secrets redacted) with each value's origin, and exit.
    #[arg(long)]
    print_config: bool,
}

/// What `weft up --help` says about the script bootstrapper.
const SCRIPT_HELP: &str = "\
The script bootstrapper (--bootstrapper script --bootstrap-script PATH) runs PATH once this node
has a role and what the role needs (a control plane's address and join token for master/ha and
worker), with these variables:
  WEFT_ROLE             master, master/clusterinit, master/ha or worker
  WEFT_OVERLAY_IP       this node's overlay address
  WEFT_MASTER_IP        the control plane's overlay address (empty on the cluster's founder)
  WEFT_INTERFACE        the TUN interface
  WEFT_JOIN_TOKEN_FILE  a 0600 file holding the cluster's join token (empty on the founder)
  WEFT_JOIN_TOKEN_OUT   where the founder writes the join token it makes, for the others
Exit code 0 is success (the role is deployed); anything else is retried with backoff and shown
in `weft status` and `weft role ls`.";

/// How each `up` argument maps onto a setting: (clap id, setting key, negated boolean).
const UP_SETTINGS: &[(&str, &str, bool)] = &[
    ("token", "token", false),
    ("token_file", "token_file", false),
    ("config", "config", false),
    ("state_dir", "state_dir", false),
    ("hostname", "hostname", false),
    ("interface", "interface", false),
    ("cidr", "cidr", false),
    ("address", "address", false),
    ("listen", "listen", false),
    ("bootstrap", "bootstrap", false),
    ("no_mdns", "mdns", true),
    ("no_dht", "dht", true),
    ("public_dht", "public_dht", false),
    ("relay", "relay", false),
    ("block_duration", "block_duration", false),
    ("idle_timeout", "idle_timeout", false),
    ("data_port", "data_port", false),
    ("mtu", "mtu", false),
    ("no_offload", "offload", true),
    ("api", "api", false),
    ("api_unix_mode", "api_unix_mode", false),
    ("api_token_file", "api_token_file", false),
    ("api_auth", "api_auth", false),
    ("dns", "dns", false),
    ("dns_domain", "dns_domain", false),
    ("no_dns_forward", "dns_forward", true),
    ("dns_forward_server", "dns_forward_servers", false),
    ("dns_cache_size", "dns_cache_size", false),
    ("dns_allow", "dns_allow", false),
    ("max_connections", "max_connections", false),
    ("lease_timeout", "lease_timeout", false),
    ("operator_key", "operator_key", false),
    ("no_tun", "tun", true),
    ("cloud_config", "cloud_config", false),
    ("role", "role", false),
    ("control_planes", "control_planes", false),
    ("minimum_nodes", "minimum_nodes", false),
    ("bootstrapper", "bootstrapper", false),
    ("bootstrap_script", "bootstrap_script", false),
    ("init", "init", false),
    ("root", "root", false),
    ("sentinel", "sentinel", false),
    ("no_k3s_vpn", "k3s_vpn", true),
    ("k3s_arg", "k3s_args", false),
    ("k3s_env", "k3s_env", false),
    ("k3s_agent_arg", "k3s_agent_args", false),
    ("k3s_agent_env", "k3s_agent_env", false),
    ("log_level", "log_level", false),
];

/// `edgevpn api`'s options (Kairos runs it for `p2p.vpn.create: false`).
#[derive(Debug, Args)]
pub(super) struct ApiArgs {
    /// Accepted for edgevpn's command line: weft always answers the healthcheck bucket.
    #[arg(long)]
    enable_healthchecks: bool,
    /// The API's address, as edgevpn takes it (`:8080` is loopback here, where run as
    /// `edgevpn` Kairos' provider gets in without a token) [default: APILISTEN, else weft's].
    #[arg(long, short, value_name = "ADDR")]
    listen: Option<String>,
    /// Print the effective configuration and exit.
    #[arg(long)]
    print_config: bool,
}

/// Resolves the settings and runs the daemon (or prints the settings with --print-config).
pub(super) fn run(up: &UpArgs, matches: &ArgMatches, as_edgevpn: bool) -> Result<(), Failure> {
    launch(raw_settings(matches)?, up.print_config, as_edgevpn)
}

/// `edgevpn api`: the daemon without a TUN (control plane, ledger, DNS, API), configured by
/// edgevpn's environment.
pub(super) fn run_api(args: &ApiArgs, as_edgevpn: bool) -> Result<(), Failure> {
    let origin = Origin::Flag("api (coordination only, no TUN)".into());
    let mut raw = vec![RawSetting {
        key: "tun",
        origin,
        value: RawValue::Text("false".into()),
    }];
    if let Some(listen) = &args.listen {
        let listen = match listen.strip_prefix(':') {
            Some(port) => format!("127.0.0.1:{port}"),
            None => listen.clone(),
        };
        raw.push(RawSetting {
            key: "api",
            origin: Origin::Flag("--listen".into()),
            value: RawValue::Text(listen),
        });
    }
    launch(raw, args.print_config, as_edgevpn)
}

/// The stack of each of the runtime's threads: 8 MiB, as Linux gives the main thread.
const WORKER_STACK: usize = 8 << 20;

fn launch(raw: Vec<RawSetting>, print_config: bool, as_edgevpn: bool) -> Result<(), Failure> {
    let inputs = Inputs::from_process(raw, as_edgevpn);
    let resolved = config::resolve(&inputs).map_err(usage)?;
    if print_config {
        for warning in &resolved.warnings {
            eprintln!("weft: warning: {warning}");
        }
        print!("{}", resolved.to_yaml());
        return Ok(());
    }
    let settings = resolved.settings;
    let token = settings.token.clone().ok_or_else(|| {
        usage(anyhow::anyhow!(
            "no network token: give --token, WEFT_TOKEN, EDGEVPNTOKEN, --token-file or `token:` \
             in the config file (create one with `weft token new`)"
        ))
    })?;
    init_logging(&settings.log_level);
    for warning in &resolved.warnings {
        tracing::warn!("{warning}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // The main thread's size: the daemon starts on a worker, and a debug build's frames
        // are several times a release build's. Only the pages touched are resident.
        .thread_stack_size(WORKER_STACK)
        .build()
        .context("cannot start the async runtime")?;
    // The daemon runs on a worker, not on this thread: starting it takes some 250 kB of stack
    // (the swarm and its behaviours are built and moved by value), pages a thread keeps
    // resident once touched. On a worker they are pages the worker's later work reuses; here
    // they were a stack nothing used again.
    let daemon = runtime.spawn(async move { crate::daemon::run(&settings, &token).await });
    match runtime.block_on(daemon) {
        Ok(outcome) => outcome?,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => return Err(anyhow::anyhow!("the daemon's task ended: {e}").into()),
    }
    Ok(())
}

/// The `up` arguments that were given, each with the flag or variable it came from.
fn raw_settings(matches: &ArgMatches) -> Result<Vec<RawSetting>, Failure> {
    let command = Cli::command();
    let up = command
        .find_subcommand("up")
        .expect("the up subcommand is defined");
    let mut raw = Vec::new();
    for (id, key, negated) in UP_SETTINGS {
        let Some(source) = matches.value_source(id) else {
            continue;
        };
        let arg = up
            .get_arguments()
            .find(|a| a.get_id() == id)
            .expect("every mapped id is an argument of up");
        let origin = match source {
            clap::parser::ValueSource::EnvVariable => Origin::Env(
                arg.get_env()
                    .map(|e| e.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            ),
            _ => Origin::Flag(format!("--{}", arg.get_long().unwrap_or(id))),
        };
        let mut values: Vec<String> = matches
            .get_many::<String>(id)
            .map(|v| v.cloned().collect())
            .unwrap_or_default();
        let value = if *negated {
            let text = values.pop().unwrap_or_default();
            let on = config::parse_bool(&text).ok_or_else(|| {
                usage(ConfigError::Invalid {
                    key,
                    value: format!("{text:?}"),
                    origin: origin.clone(),
                    reason: "expected a boolean (true or false)".into(),
                })
            })?;
            RawValue::Text((!on).to_string())
        } else if matches!(arg.get_action(), clap::ArgAction::Append) {
            RawValue::List(values)
        } else {
            RawValue::Text(values.pop().unwrap_or_default())
        };
        raw.push(RawSetting { key, origin, value });
    }
    Ok(raw)
}

/// Logs go to standard error (journald captures them); `RUST_LOG` overrides the setting.
fn init_logging(level: &str) {
    // hickory-server logs every DNS query at info; that is a line per name lookup on a node
    // whose resolver is weft. Asked for by name (`hickory_server=info`), it still logs them.
    let directives = if level.contains("hickory") {
        level.to_string()
    } else {
        format!("{level},hickory_server=warn")
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(directives));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_up_argument_is_mapped_to_a_setting() {
        let command = Cli::command();
        let up = command.find_subcommand("up").unwrap();
        for arg in up.get_arguments() {
            let id = arg.get_id().as_str();
            if ["print_config", "help", "version"].contains(&id) {
                continue;
            }
            assert!(
                UP_SETTINGS.iter().any(|(i, ..)| *i == id),
                "{id} is not mapped"
            );
            assert!(arg.get_env().is_some(), "{id} has no WEFT_* variable");
        }
    }
}
