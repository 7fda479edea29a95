//! In-process meshes: weft control planes in one process on loopback, joined by explicit
//! bootstrap addresses (no mDNS, no public anything). Shared by the in-process tests.

#![allow(dead_code)] // each test binary uses a different part of the helpers

use std::collections::BTreeSet;
use std::time::Duration;

use libp2p::Multiaddr;
use libp2p::identity::Keypair;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use weft::p2p::per_ip::PerIpLimits;
use weft::p2p::{self, P2pConfig, P2pHandle};
use weft::token::{DEFAULT_EPOCH_SECS, NativeToken, Token};

pub const DEADLINE: Duration = Duration::from_secs(30);

/// One running node, its metrics, its tokens and the token that stops it.
pub struct Member {
    pub handle: P2pHandle,
    pub registry: Registry,
    pub keyring: weft::keyring::Keyring,
    pub stop: CancellationToken,
}

impl Member {
    /// The value of a counter in this node's metrics, 0 when absent.
    pub fn counter(&self, name_and_labels: &str) -> u64 {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name_and_labels))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub fn network() -> Token {
    Token::Native(NativeToken::generate(None, vec![], DEFAULT_EPOCH_SECS))
}

pub async fn start(token: &Token, hostname: &str, bootstrap: Vec<Multiaddr>) -> Member {
    start_with(token, hostname, bootstrap, Some(Duration::from_secs(2))).await
}

pub async fn start_with(
    token: &Token,
    hostname: &str,
    bootstrap: Vec<Multiaddr>,
    peer_exchange_interval: Option<Duration>,
) -> Member {
    start_configured(
        token,
        hostname,
        bootstrap,
        peer_exchange_interval,
        true,
        UNLIMITED,
    )
    .await
}

/// A member for large in-process meshes: no DHT, peer exchange every 10 s (a new peer is asked
/// at once anyway), so dozens of nodes fit on two cores.
pub async fn start_light(token: &Token, hostname: &str, bootstrap: Vec<Multiaddr>) -> Member {
    start_configured(
        token,
        hostname,
        bootstrap,
        Some(Duration::from_secs(10)),
        false,
        UNLIMITED,
    )
    .await
}

/// A member with a given identity: a node restarted with the key it had.
pub async fn start_as(
    token: &Token,
    hostname: &str,
    bootstrap: Vec<Multiaddr>,
    keypair: &Keypair,
) -> Member {
    start_keyed(
        token,
        hostname,
        bootstrap,
        Some(Duration::from_secs(2)),
        true,
        keypair,
        UNLIMITED,
    )
    .await
}

/// In-process nodes all connect from 127.0.0.1: no limit per address.
const UNLIMITED: PerIpLimits = PerIpLimits {
    pending: usize::MAX,
    total: usize::MAX,
};

/// A member that takes at most `max_per_ip` inbound connections from one address, as a
/// daemon does.
pub async fn start_guarded(
    token: &Token,
    hostname: &str,
    bootstrap: Vec<Multiaddr>,
    max_per_ip: PerIpLimits,
) -> Member {
    start_configured(
        token,
        hostname,
        bootstrap,
        Some(Duration::from_secs(2)),
        true,
        max_per_ip,
    )
    .await
}

async fn start_configured(
    token: &Token,
    hostname: &str,
    bootstrap: Vec<Multiaddr>,
    peer_exchange_interval: Option<Duration>,
    dht: bool,
    max_per_ip: PerIpLimits,
) -> Member {
    let keypair = Keypair::generate_ed25519();
    start_keyed(
        token,
        hostname,
        bootstrap,
        peer_exchange_interval,
        dht,
        &keypair,
        max_per_ip,
    )
    .await
}

async fn start_keyed(
    token: &Token,
    hostname: &str,
    bootstrap: Vec<Multiaddr>,
    peer_exchange_interval: Option<Duration>,
    dht: bool,
    keypair: &Keypair,
    max_per_ip: PerIpLimits,
) -> Member {
    let keyring = weft::keyring::Keyring::new(token.clone());
    let config = P2pConfig {
        hostname: hostname.to_string(),
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        bootstrap,
        mdns: false,
        dht,
        public_dht: false,
        relay: weft::p2p::RelayMode::Off,
        max_connections: 64,
        max_per_ip,
        auth_timeout: Duration::from_secs(10),
        block_duration: Duration::from_secs(60),
        idle_timeout: weft::p2p::links::IDLE,
        peer_exchange_interval,
        overlay: None,
    };
    let stop = CancellationToken::new();
    let mut registry = Registry::default();
    let (handle, _task) = p2p::start(
        config,
        keypair,
        keyring.clone(),
        &mut registry,
        stop.clone(),
    )
    .expect("the swarm starts");
    Member {
        handle,
        registry,
        keyring,
        stop,
    }
}

/// The node's full dialable address, once it listens.
pub async fn address(member: &Member) -> Multiaddr {
    let addr = wait_for("a listen address", || {
        member.handle.listen_addrs().first().cloned()
    })
    .await;
    addr.with(libp2p::multiaddr::Protocol::P2p(member.handle.peer_id()))
}

pub async fn wait_for<T>(what: &str, check: impl FnMut() -> Option<T>) -> T {
    wait_within(DEADLINE, what, check).await
}

/// Like [`wait_for`], with a deadline of `limit`.
pub async fn wait_within<T>(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn admitted(member: &Member) -> BTreeSet<String> {
    member
        .handle
        .peers()
        .iter()
        .map(|p| p.peer_id.clone())
        .collect()
}
