//! The data plane's control task: everything that is not per packet.
//!
//! It follows the ledger (routes to live members, this node's own address on the TUN), makes
//! and answers session handshakes over libp2p when traffic asks for them ([`demand`]), rekeys
//! sessions that carry data, releases the packets that waited for a session, probes and keeps
//! paths alive, and publishes the [`Table`] the packet tasks read. What to do for each peer,
//! and when, is decided by its [`PathControl`] ([`paths`], pure and time-injected); this task reads
//! the packet path's view of the peer into it and carries out what it asks.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::clock::ms;
use super::frame::{self, OVERHEAD};
use super::paths::{Action, PathControl, Seen};
use super::peer::{DEAD_AFTER, DropReason, Peer, Receiver, Table};
use super::router::RouteTable;
use super::session::{self, Hello, Keyring, Keys, Session};
use super::{Shared, fallback};
use crate::clock::unix_now;
use crate::ledger::Ledger;
use crate::p2p::{InboundRpc, P2pHandle, Service};
use crate::token::{NetworkId, NetworkKeys};

/// How often timers run.
pub(super) const TICK: Duration = Duration::from_millis(250);
/// The least time between two rounds of upkeep when the packet path keeps asking for one.
const MIN_UPKEEP_GAP: Duration = Duration::from_millis(100);
/// The most candidates taken from a peer's hello.
pub(crate) const MAX_CANDIDATES: usize = 16;

/// One peer, as the control task keeps it.
struct Entry {
    peer: Arc<Peer>,
    ring: Keyring,
    /// What to do for the peer, and when.
    path: PathControl,
    /// Whether the ledger routes an overlay address to this peer.
    routed: bool,
    /// The task writing the fallback stream to this peer.
    writer: Option<JoinHandle<()>>,
}

impl Entry {
    /// A peer not yet handshaken with; `lower` when this node's PeerId is the lower one.
    fn new(id: PeerId, lower: bool) -> Self {
        Entry {
            peer: Arc::new(Peer::new(id)),
            ring: Keyring::default(),
            path: PathControl::new(lower),
            routed: false,
            writer: None,
        }
    }

    /// The peer as the packet path and the keyring show it at `now` (`clock` on the packet
    /// path's clock).
    fn seen(&self, now: Instant, clock: u64) -> Seen {
        let peer = &self.peer;
        Seen {
            routed: self.routed,
            session: self
                .ring
                .sending()
                .map(|s| now.saturating_duration_since(s.established)),
            worn: self.ring.sending().is_some_and(|s| s.worn()),
            last_data: peer.last_data.load(Ordering::Relaxed),
            endpoint: peer.endpoint.load_full().map(|a| *a),
            dead: peer.path_dead(clock, ms(DEAD_AFTER)),
            last_tx: peer.last_tx.load(Ordering::Relaxed),
            last_rx: peer.last_rx.load(Ordering::Relaxed),
            writer_running: self.writer.as_ref().is_some_and(|t| !t.is_finished()),
        }
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        if let Some(writer) = &self.writer {
            writer.abort();
        }
    }
}

/// A handshake this node started, once it ended.
type Outcome = (PeerId, Result<(Keys, Vec<SocketAddr>), String>);

pub(super) struct Control {
    pub shared: Arc<Shared>,
    pub identity: Keypair,
    /// The tokens held: the current one salts this node's offers.
    pub keyring: crate::keyring::Keyring,
    pub p2p: P2pHandle,
    pub ledger: Ledger,
    pub pool: ipnet::Ipv4Net,
    pub inbox: mpsc::Receiver<InboundRpc>,
    pub confirm: mpsc::Receiver<(PeerId, u32)>,
}

impl Control {
    pub(super) async fn run(self, shutdown: CancellationToken) {
        let Control {
            shared,
            identity,
            keyring,
            p2p,
            ledger,
            pool,
            mut inbox,
            mut confirm,
        } = self;
        let (streams, frames) = p2p.frame_streams();
        let mut state = State {
            me: identity.public().to_peer_id(),
            streams,
            frames,
            shutdown: shutdown.clone(),
            shared,
            identity,
            aes_gcm: super::frame::Cipher::aes_gcm_in_hardware(),
            keyring,
            p2p,
            pool,
            peers: HashMap::new(),
            address: None,
            routes: RouteTable::default(),
            handshakes: JoinSet::new(),
            handshaking: HashMap::new(),
            scratch: vec![0u8; OVERHEAD],
            last_upkeep: Instant::now(),
        };
        let mut changes = ledger.subscribe();
        state.follow(&ledger);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                changed = changes.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    state.follow(&ledger);
                }
                Some(rpc) = inbox.recv() => state.answer(rpc).await,
                Some(done) = state.handshakes.join_next_with_id(), if !state.handshakes.is_empty() => {
                    match done {
                        Ok((id, outcome)) => {
                            state.handshaking.remove(&id);
                            state.finished(outcome).await;
                        }
                        Err(e) => {
                            if let Some(peer) = state.handshaking.remove(&e.id())
                                && let Some(entry) = state.peers.get_mut(&peer)
                            {
                                entry.path.handshake_ended();
                            }
                        }
                    }
                }
                Some((peer, index)) = confirm.recv() => {
                    if let Some(entry) = state.peers.get_mut(&peer)
                        && entry.ring.confirm(index)
                    {
                        state.publish();
                    }
                }
                _ = state.shared.wake.notified() => {
                    if state.last_upkeep.elapsed() >= MIN_UPKEEP_GAP {
                        state.last_upkeep = Instant::now();
                        state.maintain().await;
                    }
                }
                _ = tick.tick() => {
                    state.last_upkeep = Instant::now();
                    state.maintain().await;
                }
            }
        }
        tracing::debug!("data-plane control stopped");
    }
}

struct State {
    me: PeerId,
    streams: libp2p_stream::Control,
    frames: libp2p::StreamProtocol,
    shutdown: CancellationToken,
    shared: Arc<Shared>,
    identity: Keypair,
    /// Whether this node offers AES-256-GCM in its handshakes (it runs it in hardware).
    aes_gcm: bool,
    keyring: crate::keyring::Keyring,
    p2p: P2pHandle,
    pool: ipnet::Ipv4Net,
    peers: HashMap<PeerId, Entry>,
    /// The address set on the TUN.
    address: Option<Ipv4Addr>,
    routes: RouteTable,
    handshakes: JoinSet<Outcome>,
    /// The peer of each running handshake task.
    handshaking: HashMap<tokio::task::Id, PeerId>,
    /// Where keepalives are sealed.
    scratch: Vec<u8>,
    last_upkeep: Instant,
}

impl State {
    /// Applies the ledger: this node's address on the TUN, routes to live members.
    fn follow(&mut self, ledger: &Ledger) {
        let ledger_state = ledger.state();
        let me = self.me.to_string();
        let mine = ledger_state.members().get(&me).and_then(|m| m.address);
        if mine != self.address {
            let result = match (mine, self.address) {
                (Some(address), _) => self
                    .shared
                    .tun
                    .set_address(address, self.pool.prefix_len())
                    .inspect(|()| tracing::info!(%address, "overlay address set")),
                (None, Some(old)) => self
                    .shared
                    .tun
                    .remove_address(old)
                    .inspect(|()| tracing::warn!(address = %old, "overlay address lost")),
                (None, None) => Ok(()),
            };
            match result {
                Ok(()) => {
                    self.address = mine;
                    self.shared.address.store(mine.map(std::sync::Arc::new));
                }
                Err(e) => tracing::error!(error = %e, "cannot change the overlay address"),
            }
        }
        self.routes = RouteTable::from_state(&ledger_state, &me);
        for entry in self.peers.values_mut() {
            entry.routed = false;
        }
        for (_, peer) in self.routes.iter() {
            let Ok(id) = peer.parse::<PeerId>() else {
                continue;
            };
            let lower = self.me < id;
            self.peers
                .entry(id)
                .or_insert_with(|| Entry::new(id, lower))
                .routed = true;
        }
        // A peer that is no member with a live lease any more loses its sessions at once.
        for entry in self.peers.values_mut().filter(|e| !e.routed) {
            entry.ring = Keyring::default();
        }
        self.publish();
        self.shared.wake.notify_one();
    }

    /// Publishes the packet tasks' snapshot and each peer's sending session.
    fn publish(&mut self) {
        let now = Instant::now();
        for entry in self.peers.values_mut() {
            entry.ring.expire(now);
        }
        self.peers
            .retain(|_, e| e.routed || e.path.handshaking() || e.ring.sending().is_some());
        let sources: HashMap<String, Ipv4Addr> = self
            .routes
            .iter()
            .map(|(address, peer)| (peer.to_string(), address))
            .collect();
        let mut receivers = HashMap::new();
        for entry in self.peers.values_mut() {
            entry.peer.send.store(entry.ring.sending().cloned());
            let pending = entry.ring.pending_index();
            let source = sources.get(&entry.peer.id.to_string()).copied();
            for session in entry.ring.receiving() {
                let index = session.keys.recv_index;
                receivers.insert(
                    index,
                    Receiver {
                        peer: entry.peer.clone(),
                        session: session.clone(),
                        unconfirmed: pending == Some(index),
                        source,
                    },
                );
            }
        }
        let routes = self
            .routes
            .iter()
            .filter_map(|(address, peer)| {
                let id = peer.parse::<PeerId>().ok()?;
                Some((address, self.peers.get(&id)?.peer.clone()))
            })
            .collect();
        self.shared.table.store(Arc::new(Table {
            routes,
            receivers,
            me: self.address,
            network: self
                .address
                .and_then(|a| ipnet::Ipv4Net::new(a, self.pool.prefix_len()).ok()),
        }));
    }

    /// This node's UDP candidates now.
    fn candidates(&self) -> Vec<SocketAddr> {
        candidates(
            &self.p2p.listen_addrs(),
            &self.p2p.observed_ips(),
            self.shared.upnp.load().as_deref().copied(),
            self.shared.udp.port(),
            self.pool,
        )
    }

    /// Does what each peer's [`PathControl`] asks now: starts handshakes and fallback-stream
    /// writers, probes and keeps paths alive; then releases packets that waited.
    async fn maintain(&mut self) {
        let now = Instant::now();
        let clock = self.shared.clock.now();
        let mut due = Vec::new();
        let mut sends: Vec<(Arc<Peer>, Arc<Session>, Vec<SocketAddr>)> = Vec::new();
        let mut expired = false;
        for (id, entry) in &mut self.peers {
            expired |= entry.ring.expire(now);
            let seen = entry.seen(now, clock);
            for action in entry.path.poll(clock, &seen) {
                match action {
                    Action::Handshake => due.push(*id),
                    Action::StartWriter => {
                        entry.writer = Some(tokio::spawn(fallback::write(
                            self.streams.clone(),
                            self.frames.clone(),
                            entry.peer.clone(),
                            self.shutdown.clone(),
                        )));
                    }
                    Action::Keepalive(targets) => {
                        if let Some(session) = entry.ring.sending() {
                            sends.push((entry.peer.clone(), session.clone(), targets));
                        }
                    }
                }
            }
        }
        if expired {
            self.publish();
        }
        let candidates = self.candidates();
        for peer in due {
            let p2p = self.p2p.clone();
            let identity = self.identity.clone();
            let keys = self.keyring.current();
            let candidates = candidates.clone();
            let aes_gcm = self.aes_gcm;
            let task = self.handshakes.spawn(async move {
                (
                    peer,
                    initiate(&p2p, &identity, &keys, peer, candidates, aes_gcm).await,
                )
            });
            self.handshaking.insert(task.id(), peer);
        }
        for (peer, session, targets) in sends {
            for target in targets {
                self.keepalive(&peer, &session, target).await;
            }
        }
        self.release_waiting().await;
    }

    /// Sends the packets that waited for a peer's session and path, once both exist, and drops
    /// those that waited too long.
    async fn release_waiting(&mut self) {
        let now = self.shared.clock.now();
        let mut ready = Vec::new();
        for entry in self.peers.values() {
            let peer = &entry.peer;
            let Ok(mut waiting) = peer.waiting.lock() else {
                continue;
            };
            for _ in 0..waiting.expire(now) {
                peer.drops.count(DropReason::NoSession);
            }
            if waiting.is_empty() || !peer.has_path() {
                continue;
            }
            if let Some(session) = entry.ring.sending() {
                ready.push((peer.clone(), session.clone(), waiting.take()));
            }
        }
        for (peer, session, frames) in ready {
            for mut buf in frames {
                let Some(header) = session.next_header() else {
                    peer.drops.count(DropReason::NoSession);
                    continue;
                };
                let plain = buf.len() - OVERHEAD;
                let Ok(len) = frame::seal(&session.keys.send, header, &mut buf, plain) else {
                    peer.drops.count(DropReason::Io);
                    continue;
                };
                let frame = &buf[..len];
                if let Some(addr) = peer.udp_path(now, ms(DEAD_AFTER)) {
                    match self.shared.udp.send(addr, frame, None).await {
                        Ok(()) => peer.sent(1, len as u64, now),
                        Err(_) => peer.drops.count(DropReason::Io),
                    }
                } else if let Some(queue) = peer.stream.load().as_deref() {
                    match queue.try_send(fallback::framed(frame)) {
                        Ok(()) => peer.sent_stream(1, len as u64),
                        Err(_) => peer.drops.count(DropReason::NoPath),
                    }
                } else {
                    peer.drops.count(DropReason::NoPath);
                }
            }
        }
    }

    /// Sends one empty, sealed frame to `target`.
    async fn keepalive(&mut self, peer: &Peer, session: &Session, target: SocketAddr) {
        let Some(header) = session.next_header() else {
            return;
        };
        self.scratch.resize(OVERHEAD, 0);
        if frame::seal(&session.keys.send, header, &mut self.scratch, 0).is_err() {
            return;
        }
        match self.shared.udp.send(target, &self.scratch, None).await {
            Ok(()) => peer.sent_keepalive(1, OVERHEAD as u64, self.shared.clock.now()),
            Err(e) => tracing::debug!(peer = %peer.id, %target, error = %e, "keepalive"),
        }
    }

    /// Answers a peer's handshake offer.
    async fn answer(&mut self, rpc: InboundRpc) {
        let InboundRpc {
            peer,
            payload,
            reply,
            ..
        } = rpc;
        if !self.peers.get(&peer).is_some_and(|e| e.routed) {
            tracing::debug!(%peer, "handshake from a peer that is not a live member; ignored");
            return;
        }
        let offer: Hello = match serde_json::from_slice(&payload) {
            Ok(offer) => offer,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "malformed data-plane handshake");
                return;
            }
        };
        let held = self.keyring.held();
        let Some(generation) = held.by_id(NetworkId(offer.network), unix_now()) else {
            tracing::debug!(%peer, "data-plane handshake salted with a token this node does not hold");
            return;
        };
        let data_key = generation.keys.dataplane.0;
        let candidates = self.candidates();
        let (answer, keys) = match session::answer(
            &self.identity,
            &data_key,
            &peer,
            &offer,
            candidates,
            self.aes_gcm,
        ) {
            Ok(done) => done,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "refused a data-plane handshake");
                return;
            }
        };
        let Ok(bytes) = serde_json::to_vec(&answer) else {
            return;
        };
        if !self.install(peer, keys, offer.candidates) {
            return;
        }
        let _ = reply.send(bytes);
        self.maintain().await;
    }

    /// A handshake this node started ended.
    async fn finished(&mut self, (peer, outcome): Outcome) {
        if let Some(entry) = self.peers.get_mut(&peer) {
            entry.path.handshake_ended();
        }
        match outcome {
            Ok((keys, candidates)) => {
                // The new session's probes go out, and packets that waited for it go out at
                // once on a path known from an earlier session.
                if self.install(peer, keys, candidates) {
                    self.maintain().await;
                }
            }
            Err(e) => tracing::debug!(%peer, error = %e, "data-plane handshake failed"),
        }
    }

    /// Installs a new session with `peer`; false when it cannot be used (the peer is no live
    /// member, or its receiving index is already taken here: the peer should try again).
    fn install(&mut self, peer: PeerId, keys: Keys, candidates: Vec<SocketAddr>) -> bool {
        let (send_index, recv_index, cipher) = (keys.send_index, keys.recv_index, keys.cipher);
        let taken = self
            .peers
            .values()
            .flat_map(|e| e.ring.receiving())
            .any(|s| s.keys.recv_index == recv_index);
        if taken {
            tracing::debug!(%peer, recv_index, "session index already in use; handshake dropped");
            return false;
        }
        let Some(entry) = self.peers.get_mut(&peer).filter(|e| e.routed) else {
            return false;
        };
        entry
            .ring
            .install(Arc::new(Session::new(keys, Instant::now())));
        entry.peer.handshakes.fetch_add(1, Ordering::Relaxed);
        entry.path.installed(usable(candidates, self.pool));
        tracing::debug!(
            %peer,
            send_index,
            recv_index,
            cipher = cipher.as_str(),
            "data-plane session installed"
        );
        self.publish();
        true
    }
}

/// UDP addresses a data plane on `port` may be reached at: the IPs libp2p listens on
/// (interfaces) and those peers observed it at (right behind NATs that keep the port), without
/// loopback, link-local IPv6 or the overlay `pool`, and the UPnP mapping.
fn candidates(
    listen: &[libp2p::Multiaddr],
    observed: &[IpAddr],
    upnp: Option<SocketAddr>,
    port: u16,
    pool: ipnet::Ipv4Net,
) -> Vec<SocketAddr> {
    let listening = listen.iter().filter_map(|addr| match addr.iter().next()? {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    });
    let mut out: Vec<SocketAddr> = listening
        .chain(observed.iter().copied())
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
        .filter(|ip| match ip {
            IpAddr::V4(v4) => !pool.contains(v4),
            IpAddr::V6(v6) => !v6.is_unicast_link_local(),
        })
        .map(|ip| SocketAddr::new(ip, port))
        .chain(upnp)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The candidates of a peer's hello worth probing: unicast, a real port, not loopback and not
/// in the overlay `pool` (probes there would loop through this node's own TUN), at most
/// [`MAX_CANDIDATES`]. An IPv4 address written as IPv6 (`::ffff:a.b.c.d`, which the dual-stack
/// socket would send to) is taken as the IPv4 address it is, so it is checked as one.
pub(crate) fn usable(candidates: Vec<SocketAddr>, pool: ipnet::Ipv4Net) -> Vec<SocketAddr> {
    candidates
        .into_iter()
        .map(|c| SocketAddr::new(c.ip().to_canonical(), c.port()))
        .filter(|c| c.port() != 0)
        .filter(|c| {
            let ip = c.ip();
            !(ip.is_loopback() || ip.is_unspecified() || ip.is_multicast())
        })
        .filter(|c| match c.ip() {
            IpAddr::V4(v4) => !pool.contains(&v4) && !v4.is_broadcast(),
            IpAddr::V6(_) => true,
        })
        .take(MAX_CANDIDATES)
        .collect()
}

async fn initiate(
    p2p: &P2pHandle,
    identity: &Keypair,
    keys: &NetworkKeys,
    peer: PeerId,
    candidates: Vec<SocketAddr>,
    aes_gcm: bool,
) -> Result<(Keys, Vec<SocketAddr>), String> {
    let (pending, offer) =
        session::offer(identity, &peer, keys.network_id().0, candidates, aes_gcm)
            .map_err(|e| e.to_string())?;
    let bytes = serde_json::to_vec(&offer).map_err(|e| e.to_string())?;
    let reply = p2p
        .request(Service::Dataplane, peer, bytes)
        .await
        .map_err(|e| e.to_string())?;
    let answer: Hello = serde_json::from_slice(&reply).map_err(|e| e.to_string())?;
    let keys = session::finish(identity, &keys.dataplane.0, &peer, pending, &answer)
        .map_err(|e| e.to_string())?;
    Ok((keys, answer.candidates))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_interfaces_observed_addresses_and_the_mapping_never_the_overlay() {
        let listen: Vec<libp2p::Multiaddr> = [
            "/ip4/10.99.0.3/tcp/4001",
            "/ip4/10.99.0.3/udp/4001/quic-v1",
            "/ip4/127.0.0.1/tcp/4001",
            "/ip4/10.1.0.9/tcp/4001",
            "/ip6/fe80::1/tcp/4001",
            "/ip6/2001:db8::3/tcp/4001",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let observed = ["198.51.100.7".parse().unwrap(), "10.1.0.9".parse().unwrap()];
        let upnp = Some("203.0.113.1:61000".parse().unwrap());
        let got = candidates(
            &listen,
            &observed,
            upnp,
            51820,
            "10.1.0.0/24".parse().unwrap(),
        );
        let want: Vec<SocketAddr> = [
            "10.99.0.3:51820",
            "198.51.100.7:51820",
            "203.0.113.1:61000",
            "[2001:db8::3]:51820",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_peers_candidates_are_filtered_and_capped() {
        let pool = "10.1.0.0/24".parse().unwrap();
        let mut offered: Vec<SocketAddr> = [
            "10.99.0.3:5000",
            "127.0.0.1:5000",
            "10.1.0.4:5000",
            "224.0.0.251:5353",
            "10.99.0.3:0",
            "0.0.0.0:5000",
            "[2001:db8::3]:5000",
            "[::ffff:127.0.0.1]:5000",
            "[::ffff:10.1.0.4]:5000",
            "[::ffff:10.99.0.5]:5000",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        assert_eq!(
            usable(offered.clone(), pool),
            vec![
                "10.99.0.3:5000".parse::<SocketAddr>().unwrap(),
                "[2001:db8::3]:5000".parse().unwrap(),
                "10.99.0.5:5000".parse().unwrap()
            ]
        );
        offered.extend((1..100).map(|p| SocketAddr::from(([192, 0, 2, 1], p))));
        assert_eq!(usable(offered, pool).len(), MAX_CANDIDATES);
    }
}
