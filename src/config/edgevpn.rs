//! edgevpn's environment variables, mapped onto weft's settings so that the Kairos unit
//! (`ExecStart=edgevpn` with its env file) runs weft unchanged. Variables not listed here are
//! ignored, as edgevpn ignores them. weft's own `WEFT_*` variables and flags take precedence
//! over these aliases.

use std::collections::BTreeMap;

use ipnet::Ipv4Net;

use super::ConfigError;
use super::layers::{Layer, Origin};
use super::values::parse_bool;

/// edgevpn variables that map one-to-one onto a weft setting.
const DIRECT: &[(&str, &str)] = &[
    ("EDGEVPNTOKEN", "token"),
    ("EDGEVPNCONFIG", "token_file"),
    ("IFACE", "interface"),
    ("EDGEVPNMTU", "mtu"),
    ("EDGEVPNMDNS", "mdns"),
    ("EDGEVPNDHT", "dht"),
    ("EDGEVPNBOOTSTRAPPEERS", "bootstrap"),
    ("EDGEVPNLISTENMADDRS", "listen"),
    ("EDGEVPNMAXCONNS", "max_connections"),
    ("APILISTEN", "api"),
    ("APILISTENUNIXMODE", "api_unix_mode"),
    ("DNSADDRESS", "dns"),
    ("DNSFORWARD", "dns_forward"),
    ("DNSFORWARDSERVER", "dns_forward_servers"),
    ("DNSCACHESIZE", "dns_cache_size"),
    // edgevpn keeps its IP lease there; weft keeps its lease, identity and ledger in the state dir.
    ("DHCPLEASEDIR", "state_dir"),
];

/// Every edgevpn variable weft reads, for documentation and `--help`.
pub const VARIABLES: &[&str] = &[
    "EDGEVPNTOKEN",
    "EDGEVPNCONFIG",
    "IFACE",
    "ADDRESS",
    "DHCP",
    "DHCPLEASEDIR",
    "EDGEVPNMTU",
    "EDGEVPNMDNS",
    "EDGEVPNDHT",
    "EDGEVPNBOOTSTRAPPEERS",
    "EDGEVPNLISTENMADDRS",
    "EDGEVPNMAXCONNS",
    "APILISTEN",
    "APILISTENUNIXMODE",
    "DNSADDRESS",
    "DNSFORWARD",
    "DNSFORWARDSERVER",
    "DNSCACHESIZE",
    "EDGEVPNLOGLEVEL",
];

/// The layers the edgevpn variables present in the process environment contribute, lowest
/// priority first.
pub(super) fn layers(env: &BTreeMap<String, String>) -> Result<Vec<Layer>, ConfigError> {
    layers_from(env, |var| Origin::Env(var.to_string()))
}

/// The layers edgevpn variables contribute, each with the origin `origin_of` gives its
/// variable (the process environment, or a cloud-config's `p2p.vpn.env`).
pub(super) fn layers_from(
    env: &BTreeMap<String, String>,
    origin_of: impl Fn(&str) -> Origin,
) -> Result<Vec<Layer>, ConfigError> {
    let mut layers = Vec::new();
    for (var, key) in DIRECT {
        if let Some(value) = env.get(*var) {
            layers.push(Layer::new(origin_of(var)).with(key, value.clone()));
        }
    }
    if let Some(level) = env.get("EDGEVPNLOGLEVEL") {
        layers.push(Layer::new(origin_of("EDGEVPNLOGLEVEL")).with("log_level", log_level(level)));
    }
    if let Some(address) = env.get("ADDRESS") {
        layers.push(address_layer(
            address,
            dhcp(env, &origin_of)?,
            origin_of("ADDRESS"),
        ));
    }
    if let Some(layer) = public_dht_layer(env, &origin_of)? {
        layers.push(layer);
    }
    Ok(layers)
}

/// edgevpn's `ADDRESS` (default `10.1.0.1/24`) is both the node's address and the pool. weft
/// allocates addresses from the pool; the address itself is requested only when edgevpn's
/// `DHCP` is not on, which is what such a node would have used.
fn address_layer(address: &str, dhcp: bool, origin: Origin) -> Layer {
    let layer = Layer::new(origin);
    match address.trim().parse::<Ipv4Net>() {
        Ok(net) if dhcp => layer.with("cidr", net.trunc().to_string()),
        Ok(net) => layer
            .with("cidr", net.trunc().to_string())
            .with("address", net.addr().to_string()),
        // Handed on as is, so that the cidr reader reports it with its origin.
        Err(_) => layer.with("cidr", address.to_string()),
    }
}

/// edgevpn joins the public IPFS DHT unless told not to or given its own bootstrap peers; a
/// node configured the edgevpn way (its token in `EDGEVPNTOKEN` or `EDGEVPNCONFIG`) does too.
fn public_dht_layer(
    env: &BTreeMap<String, String>,
    origin_of: &impl Fn(&str) -> Origin,
) -> Result<Option<Layer>, ConfigError> {
    let edgevpn_mode = ["EDGEVPNTOKEN", "EDGEVPNCONFIG"]
        .iter()
        .find(|var| env.contains_key(**var));
    let Some(mode_var) = edgevpn_mode else {
        return Ok(None);
    };
    let has_bootstrap = env
        .get("EDGEVPNBOOTSTRAPPEERS")
        .is_some_and(|peers| !peers.trim().is_empty());
    let (dht, origin) = match env.get("EDGEVPNDHT") {
        Some(text) => {
            let on = parse_bool(text).ok_or_else(|| ConfigError::Invalid {
                key: "dht",
                value: format!("{text:?}"),
                origin: origin_of("EDGEVPNDHT"),
                reason: "expected a boolean (true or false)".into(),
            })?;
            (on, "EDGEVPNDHT")
        }
        None => (true, *mode_var),
    };
    Ok(Some(
        Layer::new(origin_of(origin)).with("public_dht", dht && !has_bootstrap),
    ))
}

fn dhcp(
    env: &BTreeMap<String, String>,
    origin_of: &impl Fn(&str) -> Origin,
) -> Result<bool, ConfigError> {
    match env.get("DHCP") {
        None => Ok(false),
        Some(text) => parse_bool(text).ok_or_else(|| ConfigError::Invalid {
            key: "dhcp",
            value: format!("{text:?}"),
            origin: origin_of("DHCP"),
            reason: "expected a boolean (true or false)".into(),
        }),
    }
}

/// edgevpn's log levels include zap's `dpanic`, `panic` and `fatal`; weft's most severe is `error`.
fn log_level(level: &str) -> String {
    match level.trim().to_ascii_lowercase().as_str() {
        "dpanic" | "panic" | "fatal" => "error".to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn address_sets_pool_and_static_address_without_dhcp() {
        let layers = layers(&env(&[("ADDRESS", "10.9.0.7/24")])).unwrap();
        assert_eq!(layers[0].values["cidr"], "10.9.0.0/24".to_string().into());
        assert_eq!(layers[0].values["address"], "10.9.0.7".to_string().into());
    }

    #[test]
    fn address_sets_only_the_pool_under_dhcp() {
        let layers = layers(&env(&[("ADDRESS", "10.9.0.7/24"), ("DHCP", "true")])).unwrap();
        assert!(!layers[0].values.contains_key("address"));
    }

    #[test]
    fn a_bad_dhcp_boolean_is_reported_with_its_variable() {
        let err = layers(&env(&[("ADDRESS", "10.9.0.7/24"), ("DHCP", "sure")])).unwrap_err();
        assert!(err.to_string().contains("environment variable DHCP"));
    }

    #[test]
    fn variables_weft_does_not_know_are_ignored() {
        assert!(
            layers(&env(&[("EDGEVPNFOO", "1"), ("PATH", "/bin")]))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn edgevpn_mode_uses_the_public_dht_as_edgevpn_does() {
        let public = |pairs: &[(&str, &str)]| {
            layers(&env(pairs))
                .unwrap()
                .iter()
                .find_map(|l| l.values.get("public_dht").cloned())
        };
        assert_eq!(public(&[("EDGEVPNTOKEN", "x")]), Some(true.into()));
        assert_eq!(
            public(&[("EDGEVPNTOKEN", "x"), ("EDGEVPNDHT", "false")]),
            Some(false.into())
        );
        assert_eq!(
            public(&[
                ("EDGEVPNTOKEN", "x"),
                ("EDGEVPNBOOTSTRAPPEERS", "/ip4/10.0.0.1/tcp/1")
            ]),
            Some(false.into())
        );
        assert_eq!(public(&[("WEFT_TOKEN", "x")]), None);
    }

    #[test]
    fn zap_only_levels_become_error() {
        assert_eq!(log_level("fatal"), "error");
        assert_eq!(log_level("Debug"), "debug");
    }
}
