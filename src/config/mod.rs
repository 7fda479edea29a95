//! Layered configuration of `weft up`: built-in defaults < network settings carried by the
//! token < YAML config file < Kairos cloud-config files < edgevpn environment aliases <
//! `WEFT_*` environment < flags.
//!
//! Raw values are merged with figment, one provider per origin; only then is each setting typed,
//! so a bad value is reported with its setting, its value and exactly where it came from, before
//! anything starts. [`Resolved`] keeps the origin of every effective value for
//! `weft up --print-config`.

mod cloud;
mod edgevpn;
mod layers;
mod values;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::value::Value;
use ipnet::Ipv4Net;
use libp2p::Multiaddr;

pub use edgevpn::VARIABLES as EDGEVPN_VARIABLES;
pub use layers::{Origin, RawSetting, RawValue, read_text};
pub use values::parse_bool;

use crate::api::{ApiAddr, ApiAuth};
use crate::bootstrap::{BootstrapperKind, InitChoice};
use crate::ledger::state::{FixedRole, MAX_CONTROL_PLANES, parse_role_choice};
use crate::token::{Token, TokenError};
use layers::Layer;
use values::Found;

/// A bad setting, named with its value and origin. Always a usage error (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid {key} {value} from {origin}: {reason}")]
    Invalid {
        key: &'static str,
        value: String,
        origin: Origin,
        reason: String,
    },
    #[error("cannot use config file {path}: {reason}", path = path.display())]
    File { path: PathBuf, reason: String },
    #[error("cloud-config {path}: {key}: {reason}", path = path.display())]
    CloudConfig {
        path: PathBuf,
        key: String,
        reason: String,
    },
    #[error("unknown setting {key:?} in config file {path}; known settings are: {known}", path = path.display())]
    UnknownKey {
        key: String,
        path: PathBuf,
        known: String,
    },
    #[error("token from {origin}: {source}")]
    Token {
        origin: Origin,
        #[source]
        source: TokenError,
    },
    #[error("cannot read token file {path} (from {origin}): {reason}", path = path.display())]
    TokenFile {
        path: PathBuf,
        origin: Origin,
        reason: String,
    },
}

/// The setting keys, in the order `--print-config` shows them. The YAML file uses these names.
pub const KEYS: &[&str] = &[
    "token",
    "token_file",
    "state_dir",
    "hostname",
    "interface",
    "cidr",
    "address",
    "listen",
    "bootstrap",
    "mdns",
    "dht",
    "public_dht",
    "relay",
    "block_duration",
    "idle_timeout",
    "data_port",
    "mtu",
    "offload",
    "api",
    "api_unix_mode",
    "api_token_file",
    "api_auth",
    "dns",
    "dns_domain",
    "dns_forward",
    "dns_forward_servers",
    "dns_cache_size",
    "dns_allow",
    "max_connections",
    "lease_timeout",
    "operator_key",
    "tun",
    "role",
    "control_planes",
    "minimum_nodes",
    "bootstrapper",
    "bootstrap_script",
    "init",
    "root",
    "sentinel",
    "k3s_vpn",
    "k3s_args",
    "k3s_env",
    "k3s_agent_args",
    "k3s_agent_env",
    "log_level",
];

/// The default local API address.
pub const DEFAULT_API: &str = "unix:///run/weft/weft.sock";
/// The default overlay pool (edgevpn's default network).
pub const DEFAULT_CIDR: &str = "10.1.0.0/24";
/// How long the leader lets a member go without renewing before its lease expires, unless
/// configured (`lease_timeout`).
pub const DEFAULT_LEASE_TIMEOUT: Duration = Duration::from_secs(600);

/// The effective, typed settings of a node.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The network token, parsed; `None` only when none was given anywhere.
    pub token: Option<Token>,
    /// Identity, raft log and leases live here.
    pub state_dir: PathBuf,
    /// The name this node announces to the mesh.
    pub hostname: String,
    /// Name of the TUN interface.
    pub interface: String,
    /// The overlay address pool.
    pub cidr: Ipv4Net,
    /// An overlay address this node asks for (edgevpn's static `ADDRESS`).
    pub address: Option<Ipv4Addr>,
    /// libp2p listen addresses.
    pub listen: Vec<Multiaddr>,
    /// Peers dialled at start (configuration plus the token's own).
    pub bootstrap: Vec<Multiaddr>,
    /// LAN discovery by mDNS.
    pub mdns: bool,
    /// Discovery through the (private) Kademlia DHT.
    pub dht: bool,
    /// Rendezvous also on the public IPFS DHT (reaches public bootstrap nodes).
    pub public_dht: bool,
    /// When to serve as a circuit relay for admitted members.
    pub relay: crate::p2p::RelayMode,
    /// How long a peer that failed admission stays blocked.
    pub block_duration: Duration,
    /// How long a connection to a member that nothing uses stays open.
    pub idle_timeout: Duration,
    /// UDP port of the data plane; 0 lets the OS choose.
    pub data_port: u16,
    /// MTU of the TUN interface.
    pub mtu: u16,
    /// Ask the kernel for TUN offloads (TSO/GRO).
    pub offload: bool,
    /// Where the local API listens.
    pub api: ApiAddr,
    /// File mode of the API's unix socket.
    pub api_unix_mode: u32,
    /// The bearer token a TCP API listener requires (made, mode 0600, when absent).
    pub api_token_file: PathBuf,
    /// Who may use a TCP API listener without the bearer token.
    pub api_auth: ApiAuth,
    /// Where the embedded DNS server listens; off when `None`.
    pub dns: Option<SocketAddr>,
    /// The mesh's DNS domain: members are `<hostname>.<domain>`.
    pub dns_domain: String,
    /// Whether DNS queries outside the mesh are forwarded upstream.
    pub dns_forward: bool,
    /// Upstream resolvers; empty means those of `/etc/resolv.conf`.
    pub dns_forward_servers: Vec<SocketAddr>,
    /// Entries in the DNS forwarding cache.
    pub dns_cache_size: usize,
    /// Networks beyond loopback and the overlay whose clients the DNS server answers.
    pub dns_allow: Vec<ipnet::IpNet>,
    /// Upper bound on open libp2p connections.
    pub max_connections: u32,
    /// How long a member may be unreachable before the leader expires its lease (freeing its
    /// address, unless it deployed a role).
    pub lease_timeout: Duration,
    /// The operator's public key: when set, removing, denying or allowing a member, another
    /// member's role, reservations and the policy need its signature ([`crate::operator`]).
    pub operator_key: Option<crate::operator::OperatorKey>,
    /// Create the TUN interface and run the data plane (Kairos' `p2p.vpn.create`).
    pub tun: bool,
    /// The role this node fixes for itself; `None` lets the policy decide.
    pub role: Option<FixedRole>,
    /// How many control planes this node asks the mesh for; `None` leaves the ledger's policy
    /// (or the default of one) alone.
    pub control_planes: Option<u32>,
    /// Live members the bootstrapper waits for before it acts (Kairos' `minimum_nodes`).
    pub minimum_nodes: u32,
    /// What consumes this node's role.
    pub bootstrapper: BootstrapperKind,
    /// The executable of the `script` bootstrapper.
    pub bootstrap_script: Option<PathBuf>,
    /// The init system that runs k3s.
    pub init: InitChoice,
    /// Prefix of every path the bootstrapper writes (tests use a temporary directory).
    pub root: PathBuf,
    /// Written after a successful bootstrap; while it exists k3s is not reconfigured.
    pub sentinel: PathBuf,
    /// Run k3s over the overlay (`--flannel-iface`, `--node-ip`; Kairos' `p2p.vpn.use`).
    pub k3s_vpn: bool,
    /// Extra arguments for `k3s server`.
    pub k3s_args: Vec<String>,
    /// Extra environment of the k3s server (`KEY`, `VALUE`).
    pub k3s_env: Vec<(String, String)>,
    /// Extra arguments for `k3s agent`.
    pub k3s_agent_args: Vec<String>,
    /// Extra environment of the k3s agent.
    pub k3s_agent_env: Vec<(String, String)>,
    /// A tracing filter directive (`info`, `weft=debug,libp2p=warn`, ...).
    pub log_level: String,
}

/// Settings together with the origin of each effective value.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub settings: Settings,
    origins: BTreeMap<&'static str, Origin>,
    /// Things worth telling the operator that do not stop start-up (unknown cloud-config
    /// keys...).
    pub warnings: Vec<String>,
}

/// Everything configuration is resolved from.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// Values from flags and `WEFT_*` variables (as the command-line parser found them).
    pub args: Vec<RawSetting>,
    /// The process environment, read for edgevpn's variables.
    pub env: BTreeMap<String, String>,
    /// The system's hostname, the default for `hostname`.
    pub system_hostname: String,
    /// Whether weft runs as `edgevpn` (Kairos' drop-in mode).
    pub as_edgevpn: bool,
}

impl Inputs {
    /// Inputs with the process environment and the system hostname filled in.
    pub fn from_process(args: Vec<RawSetting>, as_edgevpn: bool) -> Self {
        Inputs {
            args,
            env: std::env::vars().collect(),
            system_hostname: system_hostname(),
            as_edgevpn,
        }
    }
}

/// The kernel's hostname, or `weft` when it cannot be read.
fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "weft".to_string())
}

/// Merges the layers and types every setting.
pub fn resolve(inputs: &Inputs) -> Result<Resolved, ConfigError> {
    let mut upper = Vec::new();
    if let Some(config) = inputs.args.iter().rev().find(|a| a.key == "config") {
        let path = match &config.value {
            RawValue::Text(path) => PathBuf::from(path),
            RawValue::List(paths) => PathBuf::from(paths.last().cloned().unwrap_or_default()),
        };
        upper.push(layers::read_file(&path, KEYS)?);
    }
    let given: Vec<PathBuf> = inputs
        .args
        .iter()
        .filter(|a| a.key == "cloud_config")
        .flat_map(|a| match &a.value {
            RawValue::Text(path) => vec![PathBuf::from(path)],
            RawValue::List(paths) => paths.iter().map(PathBuf::from).collect(),
        })
        .collect();
    let cloud = cloud::read(&given, inputs.as_edgevpn)?;
    upper.extend(cloud.layers);
    upper.extend(edgevpn::layers(&inputs.env)?);
    let (weft_env, flags): (Vec<_>, Vec<_>) = inputs
        .args
        .iter()
        .filter(|a| a.key != "config" && a.key != "cloud_config")
        .partition(|a| matches!(a.origin, Origin::Env(_)));
    for arg in weft_env.into_iter().chain(flags) {
        upper.push(Layer::new(arg.origin.clone()).with(arg.key, arg.value.clone()));
    }

    let merged = merge(&upper);
    let token = read_token(&merged)?;
    let mut all = Vec::with_capacity(upper.len() + 1);
    if let Some(token) = &token {
        let mut layer = Layer::new(Origin::Token);
        if let Some(cidr) = token.cidr() {
            layer = layer.with("cidr", cidr.to_string());
        }
        all.push(layer);
    }
    all.extend(upper);
    let merged = merge(&all);

    let mut bootstrap: Vec<Multiaddr> = merged
        .get("bootstrap")
        .map(|f| f.list("a multiaddr"))
        .transpose()?
        .unwrap_or_default();
    if let Some(token) = &token {
        for addr in token.bootstrap() {
            if !bootstrap.contains(addr) {
                bootstrap.push(addr.clone());
            }
        }
    }
    let settings = Settings {
        token,
        state_dir: merged.or("state_dir", "/var/lib/weft".into(), |f| {
            f.parse_with(absolute_path)
        })?,
        hostname: merged.or("hostname", inputs.system_hostname.clone(), |f| {
            f.parse_with(hostname)
        })?,
        interface: merged.or("interface", "weft0".into(), |f| {
            f.parse_with(interface_name)
        })?,
        cidr: merged.or(
            "cidr",
            DEFAULT_CIDR.parse().expect("the default pool is valid"),
            |f| f.parse_with(pool),
        )?,
        address: merged.optional("address", |f| f.parse("expected an IPv4 address"))?,
        listen: merged.or("listen", default_listen(), |f| f.list("a multiaddr"))?,
        bootstrap,
        mdns: merged.or("mdns", true, |f| f.boolean())?,
        dht: merged.or("dht", true, |f| f.boolean())?,
        public_dht: merged.or("public_dht", false, |f| f.boolean())?,
        relay: merged.or("relay", Default::default(), |f| f.parse_with(|t| t.parse()))?,
        block_duration: merged.or("block_duration", Duration::from_secs(300), |f| {
            f.integer(1, 7 * 24 * 3600).map(Duration::from_secs)
        })?,
        idle_timeout: merged.or("idle_timeout", crate::p2p::links::IDLE, |f| {
            f.integer(1, 7 * 24 * 3600).map(Duration::from_secs)
        })?,
        data_port: merged.or("data_port", 0, |f| {
            f.integer(0, u16::MAX.into()).map(|n| n as u16)
        })?,
        mtu: merged.or("mtu", 1420, |f| {
            f.integer(576, crate::dataplane::frame::MAX_MTU as u64)
                .map(|n| n as u16)
        })?,
        offload: merged.or("offload", true, |f| f.boolean())?,
        api: merged.or(
            "api",
            DEFAULT_API
                .parse()
                .expect("the default API address is valid"),
            |f| f.parse_with(|t| t.parse()),
        )?,
        api_unix_mode: merged.or("api_unix_mode", 0o600, |f| f.parse_with(file_mode))?,
        api_token_file: PathBuf::new(),
        api_auth: merged.or(
            "api_auth",
            if inputs.as_edgevpn {
                ApiAuth::Edgevpn
            } else {
                ApiAuth::Token
            },
            |f| f.parse_with(|t| t.parse()),
        )?,
        dns: merged.optional("dns", |f| {
            f.parse("expected host:port such as 127.0.0.1:53")
        })?,
        dns_domain: merged.or("dns_domain", crate::dns::zone::DEFAULT_DOMAIN.into(), |f| {
            f.parse_with(dns_domain)
        })?,
        dns_forward: merged.or("dns_forward", true, |f| f.boolean())?,
        dns_forward_servers: merged.or("dns_forward_servers", Vec::new(), |f| {
            f.list("host:port such as 1.1.1.1:53")
        })?,
        dns_allow: merged.or("dns_allow", Vec::new(), |f| {
            f.list("a network such as 192.168.1.0/24")
        })?,
        dns_cache_size: merged.or("dns_cache_size", 200, |f| {
            f.integer(0, 1 << 24).map(|n| n as usize)
        })?,
        max_connections: merged.or("max_connections", 256, |f| {
            f.integer(1, 1 << 20).map(|n| n as u32)
        })?,
        lease_timeout: merged.or("lease_timeout", DEFAULT_LEASE_TIMEOUT, |f| {
            f.integer(5, 30 * 24 * 3600).map(Duration::from_secs)
        })?,
        operator_key: merged.optional("operator_key", |f| f.parse_with(|t| t.parse()))?,
        tun: merged.or("tun", true, |f| f.boolean())?,
        role: merged.or("role", None, |f| f.parse_with(parse_role_choice))?,
        control_planes: merged.optional("control_planes", |f| {
            f.integer(1, MAX_CONTROL_PLANES.into()).map(|n| n as u32)
        })?,
        minimum_nodes: merged.or("minimum_nodes", 1, |f| {
            f.integer(1, 100_000).map(|n| n as u32)
        })?,
        bootstrapper: merged.or("bootstrapper", BootstrapperKind::None, |f| {
            f.parse_with(|t| t.parse())
        })?,
        bootstrap_script: merged.optional("bootstrap_script", |f| f.parse_with(absolute_path))?,
        init: merged.or("init", InitChoice::Auto, |f| f.parse_with(|t| t.parse()))?,
        root: merged.or("root", PathBuf::from("/"), |f| f.parse_with(absolute_path))?,
        sentinel: PathBuf::new(),
        k3s_vpn: true,
        k3s_args: merged.or("k3s_args", Vec::new(), |f| f.items(k3s_arg))?,
        k3s_env: merged.or("k3s_env", Vec::new(), |f| f.items(env_pair))?,
        k3s_agent_args: merged.or("k3s_agent_args", Vec::new(), |f| f.items(k3s_arg))?,
        k3s_agent_env: merged.or("k3s_agent_env", Vec::new(), |f| f.items(env_pair))?,
        log_level: merged.or("log_level", "info".into(), |f| f.parse_with(log_filter))?,
    };
    let mut settings = settings;
    settings.sentinel = match merged.optional("sentinel", |f| f.parse_with(absolute_path))? {
        Some(path) => path,
        None if !given.is_empty() => settings.root.join(KAIROS_SENTINEL),
        None => settings.state_dir.join("deployed"),
    };
    settings.api_token_file = merged.or(
        "api_token_file",
        settings.state_dir.join("api.token"),
        |f| f.parse_with(absolute_path),
    )?;
    // k3s runs over the overlay when there is one, unless told otherwise.
    settings.k3s_vpn = merged.or("k3s_vpn", settings.tun, |f| f.boolean())?;
    check_address_in_pool(&settings, &merged)?;
    check_bootstrap(&settings, &merged)?;
    let origins = KEYS.iter().map(|key| (*key, merged.origin(key))).collect();
    Ok(Resolved {
        settings,
        origins,
        warnings: cloud.warnings,
    })
}

/// Kairos' sentinel, under the root: once it exists the node is deployed.
const KAIROS_SENTINEL: &str = "usr/local/.kairos/deployed";

/// Settings of the bootstrapper that only make sense together.
fn check_bootstrap(settings: &Settings, merged: &Merged) -> Result<(), ConfigError> {
    if settings.bootstrapper == BootstrapperKind::Script && settings.bootstrap_script.is_none() {
        return Err(ConfigError::Invalid {
            key: "bootstrapper",
            value: "\"script\"".into(),
            origin: merged.origin("bootstrapper"),
            reason: "the script bootstrapper needs the executable to run: give \
                     --bootstrap-script PATH"
                .into(),
        });
    }
    if settings.bootstrapper == BootstrapperKind::K3s && settings.k3s_vpn && !settings.tun {
        return Err(ConfigError::Invalid {
            key: "k3s_vpn",
            value: "true".into(),
            origin: merged.origin("k3s_vpn"),
            reason: format!(
                "k3s cannot run over the overlay without the TUN interface (tun is off, from {})",
                merged.origin("tun")
            ),
        });
    }
    Ok(())
}

/// One extra argument for k3s: anything printable on one line.
fn k3s_arg(text: &str) -> Result<String, String> {
    if text.is_empty() || text.chars().any(char::is_control) {
        return Err("an argument must be one line of printable text".into());
    }
    Ok(text.to_string())
}

/// `KEY=VALUE` for an environment file: a shell-style variable name and a one-line value.
fn env_pair(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or("expected KEY=VALUE".to_string())?;
    let valid_key = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_key {
        return Err(format!(
            "{key:?} is not a variable name (letters, digits and _)"
        ));
    }
    if value.contains(['\n', '\r', '\0']) {
        return Err("the value must be one line".into());
    }
    Ok((key.to_string(), value.to_string()))
}

/// The merged figment and a way back from its metadata names to [`Origin`]s.
struct Merged {
    figment: Figment,
    origins: HashMap<String, Origin>,
}

fn merge(layers: &[Layer]) -> Merged {
    let mut figment = Figment::new();
    let mut origins = HashMap::new();
    for layer in layers {
        origins.insert(Layer::name(&layer.origin), layer.origin.clone());
        figment = figment.merge(layer.clone());
    }
    Merged { figment, origins }
}

impl Merged {
    fn origin(&self, key: &str) -> Origin {
        match self.figment.find_value(key) {
            Ok(_) => self
                .figment
                .find_metadata(key)
                .and_then(|m| self.origins.get(m.name.as_ref()))
                .cloned()
                .unwrap_or(Origin::Default),
            Err(_) => Origin::Default,
        }
    }

    fn get(&self, key: &'static str) -> Option<FoundValue> {
        let value = self.figment.find_value(key).ok()?;
        Some(FoundValue {
            key,
            value,
            origin: self.origin(key),
        })
    }

    fn or<T>(
        &self,
        key: &'static str,
        default: T,
        read: impl FnOnce(&Found<'_>) -> Result<T, ConfigError>,
    ) -> Result<T, ConfigError> {
        match self.get(key) {
            Some(found) => read(&found.as_found()),
            None => Ok(default),
        }
    }

    fn optional<T>(
        &self,
        key: &'static str,
        read: impl FnOnce(&Found<'_>) -> Result<T, ConfigError>,
    ) -> Result<Option<T>, ConfigError> {
        match self.get(key) {
            Some(found) if is_blank(&found.value) => Ok(None),
            Some(found) => read(&found.as_found()).map(Some),
            None => Ok(None),
        }
    }
}

/// An owned [`Found`].
struct FoundValue {
    key: &'static str,
    value: Value,
    origin: Origin,
}

impl FoundValue {
    fn as_found(&self) -> Found<'_> {
        Found {
            key: self.key,
            value: &self.value,
            origin: &self.origin,
        }
    }

    fn list<T: std::str::FromStr>(&self, expected: &str) -> Result<Vec<T>, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        self.as_found().list(expected)
    }
}

/// An empty value switches an optional setting off (`WEFT_DNS=` or `dns:` in YAML).
fn is_blank(value: &Value) -> bool {
    match value {
        Value::Empty(..) => true,
        Value::String(_, s) => s.trim().is_empty(),
        _ => false,
    }
}

/// The largest token file read: a token is a few hundred bytes.
const MAX_TOKEN_FILE: u64 = 64 * 1024;

/// Reads the token from `token` or, failing that, from the file named by `token_file`.
fn read_token(merged: &Merged) -> Result<Option<Token>, ConfigError> {
    if let Some(found) = merged.get("token")
        && !is_blank(&found.value)
    {
        let text = found.as_found().text()?;
        return Token::parse(&text)
            .map(Some)
            .map_err(|source| ConfigError::Token {
                origin: found.origin,
                source,
            });
    }
    let Some(found) = merged.get("token_file") else {
        return Ok(None);
    };
    let path = PathBuf::from(found.as_found().text()?);
    let text =
        layers::read_text(&path, MAX_TOKEN_FILE).map_err(|reason| ConfigError::TokenFile {
            path: path.clone(),
            origin: found.origin.clone(),
            reason,
        })?;
    Token::parse(&text)
        .map(Some)
        .map_err(|source| ConfigError::Token {
            origin: Origin::File(path),
            source,
        })
}

fn check_address_in_pool(settings: &Settings, merged: &Merged) -> Result<(), ConfigError> {
    let Some(address) = settings.address else {
        return Ok(());
    };
    let pool = settings.cidr;
    let usable = pool.contains(&address)
        && (pool.prefix_len() >= 31 || (address != pool.network() && address != pool.broadcast()));
    if usable {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        key: "address",
        value: format!("{address:?}"),
        origin: merged.origin("address"),
        reason: format!("not a usable host address of the overlay pool {pool}"),
    })
}

fn default_listen() -> Vec<Multiaddr> {
    [
        "/ip4/0.0.0.0/udp/0/quic-v1",
        "/ip4/0.0.0.0/tcp/0",
        "/ip6/::/udp/0/quic-v1",
        "/ip6/::/tcp/0",
    ]
    .iter()
    .map(|a| a.parse().expect("built-in multiaddrs are valid"))
    .collect()
}

fn absolute_path(text: &str) -> Result<PathBuf, String> {
    let path = Path::new(text);
    if path.is_absolute() {
        Ok(path.to_path_buf())
    } else {
        Err("expected an absolute directory path".into())
    }
}

fn hostname(text: &str) -> Result<String, String> {
    if text.is_empty() || text.len() > 253 {
        return Err("expected a name of 1 to 253 characters".into());
    }
    if text.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("a hostname may not contain spaces or control characters".into());
    }
    Ok(text.to_string())
}

fn dns_domain(text: &str) -> Result<String, String> {
    match crate::dns::records::canonical_name(text) {
        Ok(name) if name.starts_with("*.") => Err("a domain cannot be a wildcard".into()),
        Ok(name) => Ok(name),
        Err(e) => Err(e.to_string()),
    }
}

fn interface_name(text: &str) -> Result<String, String> {
    // Linux: IFNAMSIZ is 16 including the terminating NUL.
    let valid = (1..=15).contains(&text.len())
        && text != "."
        && text != ".."
        && !text
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if valid {
        Ok(text.to_string())
    } else {
        Err("expected an interface name of 1 to 15 characters without '/', ':' or spaces".into())
    }
}

fn pool(text: &str) -> Result<Ipv4Net, String> {
    let net: Ipv4Net = text
        .parse()
        .map_err(|_| "expected an IPv4 network such as 10.1.0.0/24".to_string())?;
    if net.prefix_len() > 30 {
        return Err("the pool must hold at least two members (prefix /30 or shorter)".into());
    }
    if net.trunc() != net {
        return Err(format!("host bits are set; the network is {}", net.trunc()));
    }
    Ok(net)
}

fn file_mode(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    u32::from_str_radix(digits, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| "expected an octal file mode such as 0600".to_string())
}

fn log_filter(text: &str) -> Result<String, String> {
    // tracing-subscriber's filter parser slices by byte and panics on some text that is not
    // ASCII (found by the `config` fuzz target); no target, level or field weft logs needs it.
    if !text.is_ascii() {
        return Err(
            "expected a level (error, warn, info, debug, trace) or filter, in ASCII".to_string(),
        );
    }
    tracing_subscriber::EnvFilter::try_new(text)
        .map(|_| text.to_string())
        .map_err(|e| format!("expected a level (error, warn, info, debug, trace) or filter: {e}"))
}

impl Resolved {
    /// Where the effective value of `key` came from.
    pub fn origin(&self, key: &str) -> Origin {
        self.origins.get(key).cloned().unwrap_or(Origin::Default)
    }

    /// The effective configuration as YAML, each line commented with its origin. Secrets are
    /// redacted; the output is otherwise valid as a config file.
    pub fn to_yaml(&self) -> String {
        use serde_json::json;
        let s = &self.settings;
        let texts =
            |items: &[Multiaddr]| json!(items.iter().map(ToString::to_string).collect::<Vec<_>>());
        // Values of variables that look secret are redacted, like the token.
        let pairs = |items: &[(String, String)]| {
            json!(
                items
                    .iter()
                    .map(|(k, v)| {
                        let upper = k.to_ascii_uppercase();
                        let secret = ["TOKEN", "PASSWORD", "SECRET", "KEY"]
                            .iter()
                            .any(|word| upper.contains(word));
                        if secret {
                            format!("{k}=<redacted>")
                        } else {
                            format!("{k}={v}")
                        }
                    })
                    .collect::<Vec<_>>()
            )
        };
        let token = s.token.as_ref().map(|t| {
            format!(
                "<redacted {} token, network {}>",
                t.kind(),
                t.keys().network_id()
            )
        });
        let rows = [
            ("token", json!(token)),
            ("state_dir", json!(s.state_dir)),
            ("hostname", json!(s.hostname)),
            ("interface", json!(s.interface)),
            ("cidr", json!(s.cidr.to_string())),
            ("address", json!(s.address.map(|a| a.to_string()))),
            ("listen", texts(&s.listen)),
            ("bootstrap", texts(&s.bootstrap)),
            ("mdns", json!(s.mdns)),
            ("dht", json!(s.dht)),
            ("public_dht", json!(s.public_dht)),
            ("relay", json!(s.relay.as_str())),
            ("block_duration", json!(s.block_duration.as_secs())),
            ("idle_timeout", json!(s.idle_timeout.as_secs())),
            ("data_port", json!(s.data_port)),
            ("mtu", json!(s.mtu)),
            ("offload", json!(s.offload)),
            ("api", json!(s.api.to_string())),
            ("api_unix_mode", json!(format!("{:04o}", s.api_unix_mode))),
            ("api_token_file", json!(s.api_token_file)),
            ("api_auth", json!(s.api_auth.as_str())),
            ("dns", json!(s.dns.map(|a| a.to_string()))),
            ("dns_domain", json!(s.dns_domain)),
            ("dns_forward", json!(s.dns_forward)),
            (
                "dns_forward_servers",
                json!(
                    s.dns_forward_servers
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                ),
            ),
            ("dns_cache_size", json!(s.dns_cache_size)),
            (
                "dns_allow",
                json!(
                    s.dns_allow
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                ),
            ),
            ("max_connections", json!(s.max_connections)),
            ("lease_timeout", json!(s.lease_timeout.as_secs())),
            (
                "operator_key",
                json!(s.operator_key.as_ref().map(ToString::to_string)),
            ),
            ("tun", json!(s.tun)),
            ("role", json!(s.role.map_or("auto", FixedRole::as_str))),
            ("control_planes", json!(s.control_planes)),
            ("minimum_nodes", json!(s.minimum_nodes)),
            ("bootstrapper", json!(s.bootstrapper.as_str())),
            ("bootstrap_script", json!(s.bootstrap_script)),
            ("init", json!(s.init.as_str())),
            ("root", json!(s.root)),
            ("sentinel", json!(s.sentinel)),
            ("k3s_vpn", json!(s.k3s_vpn)),
            ("k3s_args", json!(s.k3s_args)),
            ("k3s_env", pairs(&s.k3s_env)),
            ("k3s_agent_args", json!(s.k3s_agent_args)),
            ("k3s_agent_env", pairs(&s.k3s_agent_env)),
            ("log_level", json!(s.log_level)),
        ];
        let mut out =
            String::from("# effective configuration of weft up; each value's origin follows it\n");
        for (key, value) in rows {
            let origin = match key {
                "token" if s.token.is_none() => "not set".to_string(),
                "operator_key" if s.operator_key.is_none() => {
                    "not set: any member may issue operator commands".to_string()
                }
                "control_planes" if s.control_planes.is_none() => {
                    "not set: the mesh's policy applies (one control plane until set)".to_string()
                }
                "token" => match self.origin("token") {
                    Origin::Default => format!("file named by {}", self.origin("token_file")),
                    other => other.to_string(),
                },
                _ => self.origin(key).to_string(),
            };
            let _ = writeln!(out, "{key}: {value}  # {origin}");
        }
        out
    }
}
