//! `weft up`: wires the node's parts together and owns their lifetime. Start-up loads the
//! identity, binds the API and the DNS sockets, then starts the control plane and the rest
//! before telling systemd the node is ready; SIGINT or SIGTERM cancel one shutdown token that
//! every task honours, and the daemon returns once they have stopped. Every few seconds it
//! checks that the swarm, the ledger, the data plane and the bootstrapper still run: while they
//! do it pings systemd's watchdog (when the unit sets `WatchdogSec=`); when one has died it
//! stops with an error, so the service manager restarts it. Once a minute it hands memory the
//! node has freed back to the kernel ([`crate::memory`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use prometheus_client::registry::Registry;

use crate::api::{self, Access, ApiListener, ApiState, ListenError, NodeInfo};
use crate::bootstrap::{self, BootstrapConfig, render::K3sOptions};
use crate::config::Settings;
use crate::dataplane::{Dataplane, DataplaneConfig, DataplaneError};
use crate::dns::{self, DnsConfig, DnsError, DnsSockets};
use crate::identity::{Identity, IdentityError};
use crate::ledger::autopilot::MemberFacts;
use crate::ledger::sealed::Sealer;
use crate::ledger::state::RolePolicy;
use crate::ledger::{Ledger, LedgerConfig, LedgerError};
use crate::memory;
use crate::p2p::{self, P2pConfig, P2pError};
use crate::rotation::{self, follow::Follower};
use crate::token::Token;

/// How long tasks get to finish after shutdown is requested.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long a connected peer has to prove membership.
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a new node listens for an existing cluster before forming one, at most.
const FORMATION_WAIT: Duration = Duration::from_secs(5);
/// With discovery on the LAN only (mDNS on, no bootstrap peers, no public DHT): how long a new
/// node hears of no new peer before it looks for a cluster. mDNS answers within a second.
const FORMATION_QUIET: Duration = Duration::from_secs(1);
/// How many raft voters the ledger aims for.
pub const TARGET_VOTERS: usize = 3;
/// How long a voter may be unreachable before a live member replaces it.
pub(crate) const VOTER_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a learner may lag the leader's log without a break before its seat goes: as long
/// as a follower may take to fetch the largest state (`ledger/catchup.rs`).
pub(crate) const STALE_LEARNER_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a member whose lease expired in the middle of installing its control-plane seat
/// may stay away before the leader gives the install up: with the lease timeout before it, a
/// machine has half an hour to reboot and come back to its seat.
pub(crate) const INSTALL_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// How often the daemon checks that its parts still run (and pings the watchdog at most): a
/// part that stopped ends the daemon within about this time.
const HEALTH_CHECK: Duration = Duration::from_secs(1);
/// How long the daemon waits, when a part stopped, for the control plane to turn out to be
/// the cause.
const CAUSE_GRACE: Duration = Duration::from_millis(200);
/// How long a k3s server may take to write its join token.
const K3S_TOKEN_WAIT: Duration = Duration::from_secs(300);
/// How long one run of a bootstrap script may take.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(600);
/// The system's resolver configuration.
const RESOLV_CONF: &str = "/etc/resolv.conf";
/// systemd-resolved's upstream servers (its stub is what resolv.conf usually names).
const RESOLVED_UPSTREAMS: &str = "/run/systemd/resolve/resolv.conf";
/// How often an admitted peer is asked which members it knows, while that finds someone new.
const PEER_EXCHANGE_INTERVAL: Duration = Duration::from_secs(60);

/// Why the daemon could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("local API: {0}")]
    Listen(#[from] ListenError),
    #[error("local API: {0}")]
    ApiToken(#[from] api::bearer::BearerError),
    #[error("control plane: {0}")]
    P2p(#[from] P2pError),
    #[error("token rotation: {0}")]
    Rotation(#[from] rotation::file::FileError),
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    #[error("data plane: {0}")]
    Dataplane(#[from] DataplaneError),
    #[error("DNS: {0}")]
    Dns(#[from] DnsError),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("local API stopped: {0}")]
    Api(std::io::Error),
    #[error("{0} stopped unexpectedly; exiting so that the service manager restarts weft")]
    Died(&'static str),
}

/// Runs the node until SIGINT or SIGTERM.
pub async fn run(settings: &Settings, token: &Token) -> Result<(), DaemonError> {
    let started = Instant::now();
    let identity = Identity::load_or_create(&settings.state_dir)?;
    let kept = rotation::file::load(&settings.state_dir)?;
    let keyring = rotation::file::choose(&settings.state_dir, token.clone(), kept.as_ref())?;
    let mut terminate = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    let shutdown = CancellationToken::new();
    // Bound first: a second daemon on the same socket stops before touching the network.
    let listener = ApiListener::bind(&settings.api, settings.api_unix_mode).await?;
    let api_addr = listener.local_addr();
    let access = api_access(settings, &api_addr)?;
    // Likewise a DNS port that is taken or forbidden.
    let dns_sockets = match settings.dns {
        Some(listen) => Some(DnsSockets::bind(listen).await?),
        None => None,
    };

    let mut registry = Registry::default();
    let (p2p, p2p_task) = p2p::start(
        p2p_config(settings),
        identity.keypair(),
        keyring.clone(),
        &mut registry,
        shutdown.clone(),
    )?;
    let ledger = Ledger::start(
        &settings.state_dir,
        LedgerConfig {
            pool: settings.cidr,
            formation_wait: FORMATION_WAIT,
            formation_quiet: (settings.mdns
                && !settings.public_dht
                && settings.bootstrap.is_empty())
            .then_some(FORMATION_QUIET),
            target_voters: TARGET_VOTERS,
            lease_timeout: settings.lease_timeout,
            voter_timeout: VOTER_TIMEOUT,
            stale_learner_timeout: STALE_LEARNER_TIMEOUT,
            install_timeout: INSTALL_TIMEOUT,
            operator: settings.operator_key.clone(),
            wall: crate::clock::Wall::default(),
        },
        MemberFacts {
            hostname: settings.hostname.clone(),
            requested: settings.address,
            fixed_role: settings.role,
            policy: configured_policy(settings),
            bootstraps: settings.bootstrapper != bootstrap::BootstrapperKind::None,
            sealing_key: identity.sealing_public(),
        },
        p2p.clone(),
        shutdown.clone(),
    )
    .await?;
    let mut dataplane_tasks = tokio::task::JoinSet::new();
    let dataplane = if settings.tun {
        Some(Dataplane::start(
            &DataplaneConfig {
                interface: settings.interface.clone(),
                mtu: settings.mtu,
                offload: settings.offload,
                port: settings.data_port,
                pool: settings.cidr,
            },
            identity.keypair(),
            &keyring,
            p2p.clone(),
            ledger.clone(),
            &mut dataplane_tasks,
            shutdown.clone(),
        )?)
    } else {
        tracing::info!("no TUN interface (tun is off): coordination only");
        None
    };
    let mut dns_tasks = tokio::task::JoinSet::new();
    let dns = dns_sockets.map(|sockets| {
        let config = dns_config(settings, sockets.addr());
        dns::start(
            sockets,
            &config,
            ledger.clone(),
            dns::metrics::DnsMetrics::new(&mut registry),
            &mut dns_tasks,
            shutdown.clone(),
        )
    });
    let sealer = Sealer::new(keyring.clone());
    let outbox = rotation::pages::Outbox::kept_in(&settings.state_dir);
    let mut rotation_tasks = tokio::task::JoinSet::new();
    rotation_tasks.spawn(rotation::pages::deliver(
        outbox.clone(),
        ledger.clone(),
        shutdown.clone(),
    ));
    rotation_tasks.spawn(
        Follower::new(
            keyring.clone(),
            identity.peer_id().to_string(),
            identity.sealing_secret(),
            settings.state_dir.clone(),
            kept,
        )
        .run(ledger.clone(), shutdown.clone()),
    );
    let mut bootstrap_tasks = tokio::task::JoinSet::new();
    let bootstrap = bootstrap::start(
        bootstrap_config(settings),
        ledger.clone(),
        sealer.clone(),
        dataplane.clone(),
        &mut bootstrap_tasks,
        shutdown.clone(),
    );
    ledger.register_metrics(&mut registry);
    if let Some(dataplane) = &dataplane {
        dataplane.register_metrics(&mut registry);
    }
    if let Some(bootstrap) = &bootstrap {
        bootstrap.register_metrics(&mut registry);
    }
    let state = Arc::new(ApiState {
        node: NodeInfo {
            hostname: settings.hostname.clone(),
            dns_domain: settings.dns_domain.clone(),
            interface: settings.interface.clone(),
            cidr: settings.cidr.to_string(),
            started,
            configured_control_planes: settings.control_planes,
        },
        p2p,
        ledger: ledger.clone(),
        dataplane,
        dns,
        bootstrap,
        sealer,
        keyring: keyring.clone(),
        prepared: Default::default(),
        outbox,
        registry: Arc::new(registry),
    });
    let mut api_task = tokio::spawn(listener.serve(api::router(state, access), shutdown.clone()));

    notify(&[sd_notify::NotifyState::Ready]);
    tracing::info!(
        peer_id = %identity.peer_id(),
        network = %keyring.current().network_id(),
        api = %api_addr,
        "weft is up"
    );

    let watchdog = sd_notify::watchdog_enabled();
    let mut health = tokio::time::interval(match watchdog {
        Some(timeout) => (timeout / 2).min(HEALTH_CHECK),
        None => HEALTH_CHECK,
    });
    let mut trim = tokio::time::interval_at(
        tokio::time::Instant::now() + memory::TRIM_EVERY,
        memory::TRIM_EVERY,
    );
    let early_end = loop {
        tokio::select! {
            _ = trim.tick() => memory::trim(),
            _ = terminate.recv() => { tracing::info!("SIGTERM: shutting down"); break None }
            _ = interrupt.recv() => { tracing::info!("SIGINT: shutting down"); break None }
            ended = &mut api_task => break Some(Ended::Api(ended)),
            _ = health.tick() => {
                let dead = [
                    ("the control plane", p2p_task.is_finished()),
                    ("the ledger", !ledger.is_running()),
                    (ledger.stopped_part().unwrap_or("the ledger"), ledger.stopped_part().is_some()),
                    ("the data plane", dataplane_tasks.try_join_next().is_some()),
                    ("the DNS server", dns_tasks.try_join_next().is_some()),
                    ("the bootstrapper", bootstrap_tasks.try_join_next().is_some()),
                    ("the token rotation tasks", rotation_tasks.try_join_next().is_some()),
                ]
                .into_iter()
                .find_map(|(part, dead)| dead.then_some(part));
                match dead {
                    Some(part) => {
                        // Ledger, data-plane and DNS tasks end when the control plane closes
                        // their channels: give its task a moment to finish, so that the cause
                        // is the part named.
                        tokio::time::sleep(CAUSE_GRACE).await;
                        let part = if p2p_task.is_finished() { "the control plane" } else { part };
                        tracing::error!("{part} stopped unexpectedly");
                        break Some(Ended::Died(part));
                    }
                    None if watchdog.is_some() => notify(&[sd_notify::NotifyState::Watchdog]),
                    None => {}
                }
            }
        }
    };
    notify(&[sd_notify::NotifyState::Stopping]);
    shutdown.cancel();
    if tokio::time::timeout(SHUTDOWN_GRACE, p2p_task)
        .await
        .is_err()
    {
        tracing::warn!("the control plane did not stop in time");
    }
    for (part, tasks) in [
        ("the data plane", dataplane_tasks),
        ("the DNS server", dns_tasks),
        ("the bootstrapper", bootstrap_tasks),
        ("the token rotation tasks", rotation_tasks),
    ] {
        if tokio::time::timeout(SHUTDOWN_GRACE, tasks.join_all())
            .await
            .is_err()
        {
            tracing::warn!("{part} did not stop in time");
        }
    }
    let api_result = match early_end {
        Some(Ended::Died(part)) => {
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, &mut api_task).await;
            return Err(DaemonError::Died(part));
        }
        Some(Ended::Api(ended)) => ended,
        None => match tokio::time::timeout(SHUTDOWN_GRACE, &mut api_task).await {
            Ok(ended) => ended,
            Err(_) => {
                tracing::warn!("the local API did not stop in time");
                api_task.abort();
                Ok(Ok(()))
            }
        },
    };
    match api_result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(DaemonError::Api(e)),
        Err(join) => Err(DaemonError::Api(std::io::Error::other(join))),
    }
}

/// Why the daemon's main loop ended before a signal.
enum Ended {
    Api(Result<std::io::Result<()>, tokio::task::JoinError>),
    Died(&'static str),
}

/// Who may use the API on `addr`: a unix socket is guarded by its mode; TCP needs the bearer
/// token (made when its file is absent), except what edgevpn compatibility opens on loopback.
fn api_access(settings: &Settings, addr: &api::ApiAddr) -> Result<Access, DaemonError> {
    let api::ApiAddr::Tcp(socket) = addr else {
        return Ok(Access::Socket);
    };
    let token = api::bearer::load_or_create(&settings.api_token_file)?;
    let access = Access::tcp(&token, settings.api_auth, socket.ip());
    match &access {
        Access::Tcp {
            open_compat: true, ..
        } => tracing::warn!(
            %socket,
            "edgevpn compatibility (--api-auth edgevpn): callers on this loopback API may use \
             edgevpn's /api and read-only routes without the bearer token, as Kairos' provider \
             does; native mutating routes and the kubeconfig still need it"
        ),
        _ => tracing::info!(
            %socket,
            token_file = %settings.api_token_file.display(),
            "the API on TCP requires the bearer token"
        ),
    }
    Ok(access)
}

fn bootstrap_config(settings: &Settings) -> BootstrapConfig {
    BootstrapConfig {
        kind: settings.bootstrapper,
        configured_role: settings.role,
        minimum_nodes: settings.minimum_nodes,
        sentinel: settings.sentinel.clone(),
        root: settings.root.clone(),
        init: settings.init,
        options: K3sOptions {
            interface: settings.interface.clone(),
            over_vpn: settings.k3s_vpn,
            server_args: settings.k3s_args.clone(),
            server_env: settings.k3s_env.clone(),
            agent_args: settings.k3s_agent_args.clone(),
            agent_env: settings.k3s_agent_env.clone(),
        },
        script: settings.bootstrap_script.clone(),
        token_wait: K3S_TOKEN_WAIT,
        script_deadline: SCRIPT_DEADLINE,
    }
}

fn p2p_config(settings: &Settings) -> P2pConfig {
    P2pConfig {
        hostname: settings.hostname.clone(),
        listen: settings.listen.clone(),
        bootstrap: settings.bootstrap.clone(),
        mdns: settings.mdns,
        dht: settings.dht,
        public_dht: settings.public_dht,
        relay: settings.relay,
        max_connections: settings.max_connections,
        max_per_ip: crate::p2p::per_ip::PerIpLimits::share_of(settings.max_connections),
        auth_timeout: AUTH_TIMEOUT,
        block_duration: settings.block_duration,
        idle_timeout: settings.idle_timeout,
        peer_exchange_interval: Some(PEER_EXCHANGE_INTERVAL),
        overlay: Some(settings.cidr),
    }
}

/// The DNS server's settings. Upstreams are the configured ones, else the system's resolvers
/// ([`dns::system_upstreams`]); never weft's own address.
fn dns_config(settings: &Settings, listen: std::net::SocketAddr) -> DnsConfig {
    let upstreams = settings.dns_forward.then(|| {
        if !settings.dns_forward_servers.is_empty() {
            return dns::forward::without_self(settings.dns_forward_servers.clone(), listen);
        }
        let read = |path| std::fs::read_to_string(path).unwrap_or_default();
        dns::system_upstreams(&read(RESOLV_CONF), &read(RESOLVED_UPSTREAMS), listen)
    });
    DnsConfig {
        listen,
        domain: settings.dns_domain.clone(),
        upstreams,
        cache_size: settings.dns_cache_size,
        clients: [
            "127.0.0.0/8".parse().expect("a valid network"),
            "::1/128".parse().expect("a valid network"),
            ipnet::IpNet::V4(settings.cidr),
        ]
        .into_iter()
        .chain(settings.dns_allow.iter().copied())
        .collect(),
    }
}

/// Tells systemd about a state change; without a notify socket this does nothing.
fn notify(state: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!(error = %e, "could not notify systemd");
    }
}

/// The role policy this node asks the mesh for: none in a mesh with an operator key, whose
/// policy only the operator sets (`weft role policy --operator-key-file`).
fn configured_policy(settings: &Settings) -> Option<RolePolicy> {
    let policy = settings
        .control_planes
        .map(|n| RolePolicy { control_planes: n });
    if policy.is_some() && settings.operator_key.is_some() {
        tracing::warn!(
            "control_planes (--control-planes, p2p.auto.ha) is ignored in a mesh with an operator \
             key: the operator sets the policy with weft role policy --operator-key-file"
        );
        return None;
    }
    policy
}
