//! The embedded DNS server (`--dns ADDR`): every member answers for the whole mesh, over UDP
//! and TCP, from a snapshot of the ledger it rebuilds on every change, and forwards the rest.
//!
//! [`zone`] owns what the mesh answers ([`names`] how members are named, [`records`] what user
//! records may hold); [`forward`] and [`cache`] own the way to upstream resolvers; [`handler`]
//! turns one query into one answer, for clients it admits within their budget ([`limit`]);
//! [`udp`] serves UDP on reader threads that answer what they can at once. This module binds the
//! sockets, runs that loop and hickory-server (TCP) on them and keeps the snapshot in step with
//! the ledger.

pub mod cache;
pub mod forward;
pub mod handler;
mod limit;
pub mod metrics;
pub mod names;
pub mod records;
mod udp;
pub mod zone;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use crate::ledger::Ledger;
use forward::Forwarder;
use handler::{Handler, OverTcp};
use metrics::DnsMetrics;
use zone::Zone;

/// How long a TCP client may stay idle between queries.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Answers queued per TCP connection.
const TCP_QUEUE: usize = 32;

/// What the DNS server needs to start.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// The address it listens on (`--dns`), UDP and TCP.
    pub listen: SocketAddr,
    /// The mesh domain, canonical (`weft.internal`).
    pub domain: String,
    /// Upstream resolvers; `None` turns forwarding off.
    pub upstreams: Option<Vec<SocketAddr>>,
    /// Answers the forwarding cache holds.
    pub cache_size: usize,
    /// Who may ask: loopback, the overlay pool and what `--dns-allow` adds. Anyone else is
    /// answered REFUSED, so a server on a LAN address is no open resolver.
    pub clients: Vec<ipnet::IpNet>,
}

/// Why the DNS server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("cannot listen for DNS on {addr} over {transport}: {source}{}", hint(*addr, source))]
    Bind {
        addr: SocketAddr,
        transport: &'static str,
        source: io::Error,
    },
}

fn hint(addr: SocketAddr, e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::PermissionDenied if addr.port() < 1024 => {
            " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
        }
        io::ErrorKind::AddrInUse => {
            " (another DNS server, such as systemd-resolved, may already hold it)"
        }
        _ => "",
    }
}

/// A running DNS server.
#[derive(Debug, Clone)]
pub struct DnsServer {
    /// Where it listens (UDP and TCP share it).
    pub addr: SocketAddr,
    /// The upstream resolvers it forwards to; `None` when forwarding is off.
    pub upstreams: Option<Vec<SocketAddr>>,
}

/// The DNS server's sockets. The daemon binds them before it touches the network, so that a
/// taken or forbidden port stops start-up at once.
#[derive(Debug)]
pub struct DnsSockets {
    udp: UdpSocket,
    tcp: TcpListener,
    addr: SocketAddr,
}

impl DnsSockets {
    /// Binds UDP and TCP on `listen` (port 0: any free port, the same for both).
    pub async fn bind(listen: SocketAddr) -> Result<DnsSockets, DnsError> {
        let bind = |transport, source| DnsError::Bind {
            addr: listen,
            transport,
            source,
        };
        let udp = UdpSocket::bind(listen).await.map_err(|e| bind("UDP", e))?;
        let addr = udp.local_addr().map_err(|e| bind("UDP", e))?;
        let tcp = TcpListener::bind(addr).await.map_err(|e| bind("TCP", e))?;
        Ok(DnsSockets { udp, tcp, addr })
    }

    /// The address both sockets are bound to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Answers on `sockets` from `zone` until `shutdown`. The returned task ends when the server
/// has stopped.
pub fn serve(
    sockets: DnsSockets,
    config: &DnsConfig,
    zone: Arc<ArcSwap<Zone>>,
    metrics: DnsMetrics,
    shutdown: CancellationToken,
) -> (DnsServer, tokio::task::JoinHandle<()>) {
    let forwarder = config
        .upstreams
        .clone()
        .map(|servers| Arc::new(Forwarder::new(servers, config.cache_size)));
    let handler = Arc::new(Handler::new(
        zone,
        forwarder,
        metrics,
        config.clients.clone(),
    ));
    let mut server = Server::new(OverTcp(handler.clone()));
    server.register_listener(sockets.tcp, TCP_IDLE, TCP_QUEUE);
    let stop = server.shutdown_token().clone();
    let runtime = tokio::runtime::Handle::current();
    let stop_udp = shutdown.child_token();
    let udp = sockets.udp.into_std();
    // A thread of its own rather than the runtime's blocking pool: a runtime dropped before the
    // server stopped would wait for it.
    let (udp_ended, mut over_udp) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new().name("weft-dns".into()).spawn({
        let stop_udp = stop_udp.clone();
        move || {
            let _ = udp_ended.send(udp.and_then(|udp| udp::serve(udp, handler, runtime, stop_udp)));
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the DNS server's UDP thread");
    }
    // The server stops when either side ends: a broken UDP socket stops the daemon (its
    // supervision) rather than leave it half a DNS server, and so does a TCP side that ended.
    // Made before the task, so that a task dropped unfinished (its runtime gone first), even
    // before it first ran, still stops the readers.
    let stop_udp_on_drop = stop_udp.clone().drop_guard();
    let task = tokio::spawn(async move {
        let _stop_udp = stop_udp_on_drop;
        let (udp_ended, tcp_ended) = tokio::select! {
            _ = shutdown.cancelled() => (None, None),
            ended = &mut over_udp => (Some(ended), None),
            ended = server.block_until_done() => (None, Some(ended)),
        };
        stop_udp.cancel();
        stop.cancel();
        let udp_ended = match udp_ended {
            Some(ended) => ended,
            None => over_udp.await,
        };
        match udp_ended {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "the DNS server's UDP socket broke"),
            Err(_) => tracing::error!("the DNS server's UDP thread ended without a word"),
        }
        match tcp_ended {
            Some(Err(e)) => tracing::error!(error = %e, "the DNS server stopped"),
            Some(Ok(())) => {}
            None => {
                if let Err(e) = server.block_until_done().await {
                    tracing::warn!(error = %e, "the DNS server did not stop cleanly");
                }
            }
        }
    });
    (
        DnsServer {
            addr: sockets.addr,
            upstreams: config.upstreams.clone(),
        },
        task,
    )
}

/// Starts the DNS server on `sockets` over the ledger: the snapshot is rebuilt whenever the
/// ledger changes.
pub fn start(
    sockets: DnsSockets,
    config: &DnsConfig,
    ledger: Ledger,
    metrics: DnsMetrics,
    tasks: &mut tokio::task::JoinSet<()>,
    shutdown: CancellationToken,
) -> DnsServer {
    let (first, _) = Zone::build(&ledger.state(), &config.domain, &mut HashMap::new());
    let zone = Arc::new(ArcSwap::from_pointee(first));
    let (server, task) = serve(sockets, config, zone.clone(), metrics, shutdown.clone());
    tasks.spawn(async move {
        let _ = task.await;
    });
    tasks.spawn(follow(ledger, zone, config.domain.clone(), shutdown));
    match &server.upstreams {
        Some(upstreams) if upstreams.is_empty() => tracing::warn!(
            "DNS forwarding is on but there is no upstream resolver (none configured, none \
             usable in the system's resolver files): names outside the mesh get SERVFAIL; set \
             --dns-forward-server or DNSFORWARDSERVER"
        ),
        _ => {}
    }
    tracing::info!(
        addr = %server.addr,
        domain = %config.domain,
        upstreams = ?server.upstreams,
        "DNS server listening"
    );
    server
}

/// Rebuilds the snapshot whenever the ledger's applied state moves (not on every tick of its
/// watch: a follower's ticks include the leader's heartbeats), reusing compiled patterns.
async fn follow(
    ledger: Ledger,
    zone: Arc<ArcSwap<Zone>>,
    domain: String,
    shutdown: CancellationToken,
) {
    let mut changes = ledger.subscribe();
    let mut regexes = HashMap::new();
    let mut reported = Vec::new();
    let mut built_from = None;
    loop {
        // Read and let go before waiting: the state held meanwhile would be copied on every
        // entry applied.
        let state = ledger.state();
        let version = (state.cluster(), state.applied());
        if built_from != Some(version) {
            let (built, skipped) = Zone::build(&state, &domain, &mut regexes);
            if skipped != reported {
                for what in &skipped {
                    tracing::warn!(record = %what, "DNS record in the ledger skipped");
                }
                reported = skipped;
            }
            zone.store(Arc::new(built));
            built_from = Some(version);
        }
        drop(state);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = changes.changed() => if changed.is_err() { return },
        }
    }
}

/// The system's upstream resolvers, from the text of `/etc/resolv.conf` and of
/// systemd-resolved's upstream list: resolv.conf's, unless they are only resolved's stub (or
/// nothing usable, when resolv.conf names only weft, as Kairos sets it); then resolved's own
/// upstreams, so that resolved forwarding to weft cannot make a loop. Never `listen` itself.
pub fn system_upstreams(resolv_conf: &str, resolved: &str, listen: SocketAddr) -> Vec<SocketAddr> {
    let read = |text| forward::without_self(forward::resolv_conf_servers(text), listen);
    let system = read(resolv_conf);
    if system.iter().all(|s| forward::is_resolved_stub(s.ip())) {
        let resolved = read(resolved);
        if !resolved.is_empty() || system.is_empty() {
            return resolved;
        }
    }
    system
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn system_upstreams_avoid_weft_and_resolveds_stub() {
        let listen: SocketAddr = "127.0.0.1:53".parse().unwrap();
        let resolved = "nameserver 192.168.1.1\nnameserver 127.0.0.1\n";
        // Plain resolv.conf: its servers.
        assert_eq!(
            system_upstreams("nameserver 10.0.0.53\n", resolved, listen),
            addrs(&["10.0.0.53:53"])
        );
        // resolved's stub, or only weft itself: resolved's upstreams, without weft.
        for resolv_conf in ["nameserver 127.0.0.53\n", "nameserver 127.0.0.1\n", ""] {
            assert_eq!(
                system_upstreams(resolv_conf, resolved, listen),
                addrs(&["192.168.1.1:53"]),
                "{resolv_conf:?}"
            );
        }
        // The stub with no readable upstream list: the stub is all there is.
        assert_eq!(
            system_upstreams("nameserver 127.0.0.53\n", "", listen),
            addrs(&["127.0.0.53:53"])
        );
        // Nothing anywhere but weft: nothing.
        assert!(system_upstreams("nameserver 127.0.0.1\n", "", listen).is_empty());
    }
}
