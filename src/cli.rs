//! The command line: clap definitions and one small function per subcommand over the library.
//!
//! `weft up`'s flags are read as raw text (clap also fills them from their `WEFT_*` variables)
//! and handed to [`crate::config`] with their origin, which types them and reports bad values by
//! flag or variable name. Usage errors exit with code 2, runtime failures with 1.

use std::ffi::OsString;
use std::io::{IsTerminal as _, Read as _};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{ArgMatches, Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

use crate::api::{self, ApiAddr, MemberView, PeerEntry, StatusView};
use crate::config::{self, ConfigError, Inputs, Origin, RawSetting, RawValue};
use crate::token::{DEFAULT_EPOCH_SECS, NativeToken, Token};

/// weft: a peer-to-peer mesh VPN and coordination daemon (a drop-in for edgevpn).
#[derive(Debug, Parser)]
#[command(name = "weft", version, propagate_version = true)]
#[command(
    after_help = "Invoked as `edgevpn` with no subcommand, weft runs `up` and reads \
edgevpn's environment variables (EDGEVPNTOKEN, ADDRESS, IFACE, APILISTEN, ...)."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the mesh daemon on this machine.
    Up(Box<UpArgs>),
    /// Create or read network tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Show what the local daemon reports about this node.
    Status(ClientArgs),
    /// List the peers that proved membership, how they are reached and their round-trip time.
    Peers(ClientArgs),
    /// List the ledger's members: hostname, DNS name, overlay address, role, lease.
    Members(MembersArgs),
    /// Read and change what the mesh's DNS answers.
    #[command(subcommand)]
    Dns(DnsCommand),
    /// Read and write the ledger's key-value buckets (any member may write).
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Print weft's version.
    Version,
}

/// Settings of `weft up`. Each has a `WEFT_*` variable; precedence is
/// flag > WEFT_* variable > edgevpn variable > config file > token > default.
#[derive(Debug, Args)]
struct UpArgs {
    /// Network token (native or edgevpn). Create one with `weft token new`.
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
    /// Run a circuit relay server for admitted members [default: false].
    #[arg(long, env = "WEFT_RELAY", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    relay: Option<String>,
    /// Seconds a peer that failed admission stays blocked [default: 300].
    #[arg(long, env = "WEFT_BLOCK_DURATION", value_name = "SECS")]
    block_duration: Option<String>,
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
    /// Upper bound on open peer connections [default: 256].
    #[arg(long, env = "WEFT_MAX_CONNECTIONS", value_name = "N")]
    max_connections: Option<String>,
    /// Log level or tracing filter, e.g. debug or weft=debug,libp2p=warn [default: info].
    #[arg(long, env = "WEFT_LOG_LEVEL", value_name = "FILTER")]
    log_level: Option<String>,
    /// Print the effective configuration (secrets redacted) with each value's origin, and exit.
    #[arg(long)]
    print_config: bool,
}

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
    ("data_port", "data_port", false),
    ("mtu", "mtu", false),
    ("no_offload", "offload", true),
    ("api", "api", false),
    ("api_unix_mode", "api_unix_mode", false),
    ("dns", "dns", false),
    ("dns_domain", "dns_domain", false),
    ("no_dns_forward", "dns_forward", true),
    ("dns_forward_server", "dns_forward_servers", false),
    ("dns_cache_size", "dns_cache_size", false),
    ("max_connections", "max_connections", false),
    ("log_level", "log_level", false),
];

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Print a new native token with a fresh 32-byte secret.
    New {
        /// Overlay address pool every member uses unless configured otherwise.
        #[arg(long)]
        cidr: Option<ipnet::Ipv4Net>,
        /// Multiaddr every member dials at start (repeatable).
        #[arg(long, value_name = "MULTIADDR")]
        bootstrap: Vec<libp2p::Multiaddr>,
        /// Seconds per DHT rendezvous epoch.
        #[arg(long, value_name = "SECS", default_value_t = DEFAULT_EPOCH_SECS, value_parser = clap::value_parser!(u64).range(60..))]
        rendezvous_epoch: u64,
    },
    /// Show a token's kind, version, network id and settings (never its secret).
    Inspect {
        /// The token, or - to read it from standard input.
        #[arg(value_name = "TOKEN|-")]
        token: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum LedgerCommand {
    /// List the buckets, or the keys and values of one bucket.
    Ls {
        bucket: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print one value.
    Get {
        bucket: String,
        key: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Store a value; returns once the cluster has committed it.
    Put {
        bucket: String,
        key: String,
        value: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a key, or a whole bucket when no key is given.
    Rm {
        bucket: String,
        key: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// After the cluster lost its quorum for good: start a new cluster from this node's copy
    /// of the ledger. Without --force, explains the risk and does nothing.
    Recover {
        /// Proceed: entries this node had not applied are lost.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Args)]
struct MembersArgs {
    #[command(subcommand)]
    command: Option<MembersCommand>,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Subcommand)]
enum MembersCommand {
    /// Remove a member that left for good: its overlay address and DNS name are freed at once
    /// instead of when its lease runs out. A node that is still running records itself again.
    Rm {
        /// The member's PeerId or hostname.
        member: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
enum DnsCommand {
    /// List members' names, user records and regex records.
    Ls {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Add a record value (a name may hold several); returns once the cluster has committed it.
    #[command(
        after_help = "Examples:\n  weft dns add db.weft.internal A 10.1.0.20\n  \
weft dns add '*.apps.weft.internal' CNAME ingress.weft.internal\n  \
weft dns add _k3s._tcp.weft.internal SRV '0 5 6443 cp1.weft.internal'\n  \
weft dns add --regex 'registry(-mirror)?\\.lan' A 10.1.0.30"
    )]
    Add {
        /// A fully-qualified name (`db.weft.internal`) or wildcard (`*.apps.weft.internal`); with
        /// --regex, an edgevpn-style regular expression matched against whole names.
        name: String,
        /// A, AAAA, CNAME, TXT or SRV.
        #[arg(value_name = "TYPE")]
        rtype: String,
        /// An address (A, AAAA), a name (CNAME), text (TXT), or `priority weight port target`
        /// (SRV).
        value: String,
        /// Seconds resolvers may cache the record.
        #[arg(long, default_value_t = crate::dns::records::DEFAULT_TTL)]
        ttl: u32,
        /// NAME is a regular expression (edgevpn's DNS records); it matches whole names only.
        #[arg(long)]
        regex: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove all of a name's records, those of one type, or one value.
    Rm {
        /// The name, or with --regex the regular expression, as listed by `weft dns ls`.
        name: String,
        /// Only records of this type.
        #[arg(value_name = "TYPE")]
        rtype: Option<String>,
        /// Only this value.
        value: Option<String>,
        /// NAME is a regular expression record (removed whole).
        #[arg(long, conflicts_with_all = ["rtype", "value"])]
        regex: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Options of commands that talk to a running daemon.
#[derive(Debug, Args)]
struct ClientArgs {
    /// The daemon's API address: unix:///path or host:port.
    #[arg(long, env = "WEFT_API", default_value = config::DEFAULT_API, value_parser = parse_api)]
    api: ApiAddr,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn parse_api(text: &str) -> Result<ApiAddr, String> {
    text.parse()
}

/// A command's failure: usage errors (bad input) exit 2, everything else 1.
#[derive(Debug)]
pub enum Failure {
    Usage(anyhow::Error),
    Runtime(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Runtime(e.into())
    }
}

fn usage(e: impl Into<anyhow::Error>) -> Failure {
    Failure::Usage(e.into())
}

/// The whole program: parse the command line, run the command, map the outcome to an exit code.
pub fn main() -> ExitCode {
    let args = with_edgevpn_default(std::env::args_os().collect());
    let matches = Cli::command().get_matches_from(args);
    match run(&matches) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(e)) => {
            eprintln!("weft: {e:#}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("weft: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Under the name `edgevpn` and without a subcommand, weft runs `up` (Kairos starts the unit
/// with `ExecStart=edgevpn` and only environment variables).
fn with_edgevpn_default(mut args: Vec<OsString>) -> Vec<OsString> {
    let as_edgevpn = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .is_some_and(|n| n == "edgevpn");
    let has_subcommand = args
        .get(1)
        .is_some_and(|a| !a.to_string_lossy().starts_with('-'));
    if as_edgevpn && !has_subcommand {
        args.insert(1, "up".into());
    }
    args
}

fn run(matches: &ArgMatches) -> Result<(), Failure> {
    let cli = Cli::from_arg_matches(matches).map_err(usage)?;
    match cli.command {
        Command::Up(up) => {
            let up_matches = matches
                .subcommand_matches("up")
                .expect("clap parsed the up subcommand");
            run_up(&up, up_matches)
        }
        Command::Token(TokenCommand::New {
            cidr,
            bootstrap,
            rendezvous_epoch,
        }) => {
            println!(
                "{}",
                NativeToken::generate(cidr, bootstrap, rendezvous_epoch).encode()
            );
            Ok(())
        }
        Command::Token(TokenCommand::Inspect { token, json }) => inspect_token(&token, json),
        Command::Status(client) => status(&client),
        Command::Peers(client) => peers(&client),
        Command::Members(MembersArgs {
            command: None,
            client,
        }) => members(&client),
        Command::Members(MembersArgs {
            command: Some(MembersCommand::Rm { member, client }),
            ..
        }) => {
            let path = format!("/v1/members/{}", segment(&member));
            call(&client, hyper::Method::DELETE, &path, Vec::new())?;
            Ok(())
        }
        Command::Dns(command) => dns(command),
        Command::Ledger(command) => ledger(command),
        Command::Version => {
            println!("weft {}", crate::VERSION);
            Ok(())
        }
    }
}

fn run_up(up: &UpArgs, matches: &ArgMatches) -> Result<(), Failure> {
    let inputs = Inputs::from_process(raw_settings(matches)?);
    let resolved = config::resolve(&inputs).map_err(usage)?;
    if up.print_config {
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(crate::daemon::run(&settings, &token))?;
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

fn inspect_token(text: &str, json: bool) -> Result<(), Failure> {
    let text = if text == "-" {
        let mut buf = String::new();
        std::io::stdin()
            .read_to_string(&mut buf)
            .context("cannot read the token from standard input")?;
        buf
    } else {
        text.to_string()
    };
    let description = Token::parse(&text).map_err(usage)?.describe();
    if json {
        println!("{}", serde_json::to_string_pretty(&description)?);
    } else {
        print!("{description}");
    }
    Ok(())
}

/// `GET path` on the daemon's API, decoded.
fn fetch<T: serde::de::DeserializeOwned>(client: &ClientArgs, path: &str) -> Result<T, Failure> {
    let body = call(client, hyper::Method::GET, path, Vec::new())?;
    serde_json::from_slice(&body)
        .with_context(|| format!("the answer to {path} is not what this weft expects"))
        .map_err(Failure::Runtime)
}

/// `method path` with `body` on the daemon's API; the answer's body.
fn call(
    client: &ClientArgs,
    method: hyper::Method,
    path: &str,
    body: Vec<u8>,
) -> Result<Vec<u8>, Failure> {
    send(client, method, path, None, body)
}

/// `method path` with `body` as JSON on the daemon's API; the answer's body.
fn call_json(
    client: &ClientArgs,
    method: hyper::Method,
    path: &str,
    body: &impl serde::Serialize,
) -> Result<Vec<u8>, Failure> {
    let body = serde_json::to_vec(body)?;
    send(client, method, path, Some("application/json"), body)
}

fn send(
    client: &ClientArgs,
    method: hyper::Method,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Result<Vec<u8>, Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let answer = runtime.block_on(api::client::send(
        &client.api,
        method,
        path,
        content_type,
        body.into(),
    ))?;
    Ok(answer.to_vec())
}

/// Percent-encodes one path segment (bucket and key names may hold any character).
fn segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

fn members(client: &ClientArgs) -> Result<(), Failure> {
    let members: Vec<MemberView> = fetch(client, "/v1/members")?;
    if client.json {
        println!("{}", serde_json::to_string_pretty(&members)?);
        return Ok(());
    }
    println!(
        "{:<20} {:<32} {:<15} {:<20} {:<8} PEER ID",
        "HOSTNAME", "DNS NAME", "OVERLAY IP", "ROLE", "LEASE"
    );
    for m in &members {
        println!(
            "{:<20} {:<32} {:<15} {:<20} {:<8} {}",
            m.hostname,
            m.dns_name.as_deref().unwrap_or("-"),
            m.overlay_ip.as_deref().unwrap_or("-"),
            m.role.as_deref().unwrap_or("-"),
            m.lease,
            m.peer_id
        );
    }
    Ok(())
}

fn dns(command: DnsCommand) -> Result<(), Failure> {
    use crate::api::dns::{DnsView, NewRecord};
    use hyper::Method;
    match command {
        DnsCommand::Ls { client } => {
            let view: DnsView = fetch(&client, "/v1/dns")?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&view)?);
                return Ok(());
            }
            let server = match (&view.listen, &view.upstreams) {
                (None, _) => "this node runs no DNS server (--dns)".to_string(),
                (Some(listen), None) => format!("served on {listen}, no forwarding"),
                (Some(listen), Some(up)) if up.is_empty() => {
                    format!("served on {listen}, forwarding on but no upstream resolver")
                }
                (Some(listen), Some(up)) => {
                    format!("served on {listen}, forwarding to {}", up.join(", "))
                }
            };
            println!("domain {} ({server})\n", view.domain);
            println!(
                "{:<7} {:<40} {:<6} {:>6}  VALUE",
                "KIND", "NAME", "TYPE", "TTL"
            );
            for h in &view.hosts {
                println!(
                    "{:<7} {:<40} {:<6} {:>6}  {}",
                    "member", h.name, "A", h.ttl, h.address
                );
            }
            for r in &view.records {
                println!(
                    "{:<7} {:<40} {:<6} {:>6}  {}",
                    "record", r.name, r.rtype, r.ttl, r.value
                );
            }
            for p in &view.patterns {
                for (rtype, value) in &p.records {
                    println!(
                        "{:<7} {:<40} {:<6} {:>6}  {}",
                        "regex", p.regex, rtype, p.ttl, value
                    );
                }
            }
        }
        DnsCommand::Add {
            name,
            rtype,
            value,
            ttl,
            regex,
            client,
        } => {
            let (name, regex) = if regex {
                (None, Some(name))
            } else {
                (Some(name), None)
            };
            let record = NewRecord {
                name,
                regex,
                rtype,
                value,
                ttl: Some(ttl),
            };
            call_json(&client, Method::POST, "/v1/dns", &record)?;
        }
        DnsCommand::Rm {
            name,
            rtype,
            value,
            regex,
            client,
        } => {
            let path = if regex {
                format!("/v1/dns/regex/{}", segment(&name))
            } else {
                let mut path = format!("/v1/dns/name/{}", segment(&name));
                for part in [&rtype, &value].into_iter().flatten() {
                    path.push('/');
                    path.push_str(&segment(part));
                }
                path
            };
            call(&client, Method::DELETE, &path, Vec::new())?;
        }
    }
    Ok(())
}

fn ledger(command: LedgerCommand) -> Result<(), Failure> {
    use hyper::Method;
    match command {
        LedgerCommand::Ls { bucket, client } => {
            let path = match &bucket {
                Some(bucket) => format!("/v1/ledger/{}", segment(bucket)),
                None => "/v1/ledger".to_string(),
            };
            let value: serde_json::Value = fetch(&client, &path)?;
            match (&value, client.json) {
                (_, true) => println!("{}", serde_json::to_string_pretty(&value)?),
                (serde_json::Value::Object(map), false) if bucket.is_some() => {
                    for (key, value) in map {
                        println!("{key}\t{}", value.as_str().unwrap_or_default());
                    }
                }
                (serde_json::Value::Object(map), false) => {
                    for (name, keys) in map {
                        let count = keys.as_object().map(|k| k.len()).unwrap_or(0);
                        println!("{name}\t{count} keys");
                    }
                }
                _ => println!("{value}"),
            }
        }
        LedgerCommand::Get {
            bucket,
            key,
            client,
        } => {
            let path = format!("/v1/ledger/{}/{}", segment(&bucket), segment(&key));
            let value = call(&client, Method::GET, &path, Vec::new())?;
            println!("{}", String::from_utf8_lossy(&value));
        }
        LedgerCommand::Put {
            bucket,
            key,
            value,
            client,
        } => {
            let path = format!("/v1/ledger/{}/{}", segment(&bucket), segment(&key));
            call(&client, Method::PUT, &path, value.into_bytes())?;
        }
        LedgerCommand::Rm {
            bucket,
            key,
            client,
        } => {
            let path = match key {
                Some(key) => format!("/v1/ledger/{}/{}", segment(&bucket), segment(&key)),
                None => format!("/v1/ledger/{}", segment(&bucket)),
            };
            call(&client, Method::DELETE, &path, Vec::new())?;
        }
        LedgerCommand::Recover { force, client } => {
            if !force {
                return Err(usage(anyhow::anyhow!("{}", crate::ledger::recover::RISK)));
            }
            let body = call(&client, Method::POST, "/v1/recover", Vec::new())?;
            let recovery: crate::ledger::recover::Recovery = serde_json::from_slice(&body)
                .context("the answer to /v1/recover is not what this weft expects")?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&recovery)?);
            } else {
                println!(
                    "left cluster {} at entry {}; new cluster {} seeded with {} members",
                    recovery.previous_cluster,
                    recovery.applied_index,
                    recovery.cluster,
                    recovery.members
                );
            }
        }
    }
    Ok(())
}

fn status(client: &ClientArgs) -> Result<(), Failure> {
    let view: StatusView = fetch(client, "/v1/status")?;
    if client.json {
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(());
    }
    println!("peer id:      {}", view.peer_id);
    println!("hostname:     {}", view.hostname);
    println!("network id:   {}", view.network_id);
    println!("interface:    {} (pool {})", view.interface, view.cidr);
    println!(
        "overlay ip:   {}",
        view.overlay_ip.as_deref().unwrap_or("none yet")
    );
    println!(
        "role:         {}",
        view.role.as_deref().unwrap_or("none yet")
    );
    println!("peers:        {} admitted", view.admitted_peers);
    println!(
        "cluster:      {} ({} {:016x}, leader {}, {} voters, applied {})",
        view.ledger.cluster_id.as_deref().unwrap_or("forming"),
        if view.ledger.follower {
            "follower, raft node"
        } else {
            "raft node"
        },
        view.ledger.node_id,
        view.ledger.leader.as_deref().unwrap_or("unknown"),
        view.ledger.voters.len(),
        view.ledger.applied_index
    );
    println!("reachability: {}", view.reachability);
    println!("version:      {}", view.version);
    println!("uptime:       {} s", view.uptime_secs);
    Ok(())
}

fn peers(client: &ClientArgs) -> Result<(), Failure> {
    let peers: Vec<PeerEntry> = fetch(client, "/v1/peers")?;
    if client.json {
        println!("{}", serde_json::to_string_pretty(&peers)?);
        return Ok(());
    }
    if peers.is_empty() {
        println!("no admitted peers");
        return Ok(());
    }
    println!(
        "{:<16} {:<54} {:<8} {:>9}  {:<26} {:>10} {:>10} {:>6}",
        "HOSTNAME", "PEER ID", "LINK", "RTT", "DATA PATH", "TX", "RX", "DROPS"
    );
    for PeerEntry { control, dataplane } in &peers {
        let rtt = control
            .rtt_ms
            .map(|ms| format!("{ms:.2} ms"))
            .unwrap_or_else(|| "-".into());
        let link = match control.connection {
            crate::p2p::ConnectionKind::Direct => "direct",
            crate::p2p::ConnectionKind::Relayed => "relayed",
        };
        let (path, tx, rx, drops) = match dataplane {
            Some(d) => (
                d.path.clone(),
                bytes(d.tx_bytes),
                bytes(d.rx_bytes),
                d.drops.values().sum::<u64>().to_string(),
            ),
            None => ("no session".into(), "-".into(), "-".into(), "-".into()),
        };
        println!(
            "{:<16} {:<54} {:<8} {:>9}  {:<26} {:>10} {:>10} {:>6}",
            control.hostname, control.peer_id, link, rtt, path, tx, rx, drops
        );
    }
    Ok(())
}

/// A byte count for people: 512 B, 1.5 KiB, 3.2 GiB.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
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
    fn byte_counts_read_in_binary_units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
    }

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn edgevpn_with_no_subcommand_runs_up() {
        assert_eq!(
            with_edgevpn_default(os(&["/usr/bin/edgevpn"])),
            os(&["/usr/bin/edgevpn", "up"])
        );
        assert_eq!(
            with_edgevpn_default(os(&["edgevpn", "--print-config"])),
            os(&["edgevpn", "up", "--print-config"])
        );
        assert_eq!(
            with_edgevpn_default(os(&["edgevpn", "status"])),
            os(&["edgevpn", "status"])
        );
        assert_eq!(with_edgevpn_default(os(&["weft"])), os(&["weft"]));
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

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
