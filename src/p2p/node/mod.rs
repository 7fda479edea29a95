//! The task that owns the libp2p swarm: it turns swarm events into admission decisions,
//! discovery dials, peer-table updates and gossip, and publishes snapshots for the handle.
//!
//! Until a peer is admitted it gets identify, ping and the auth protocol only: the control
//! protocol answers it `Refused`, gossipsub has it blacklisted, it is kept out of the Kademlia
//! routing table and the relay server refuses it. A failed or overdue proof closes its
//! connections and blocks its PeerId for `block_duration`.

mod admit;
mod demand;
mod discovery;
mod messages;

pub(crate) use discovery::records_of;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt as _;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use libp2p::identity::Keypair;
use libp2p::kad::store::RecordStore as _;
use libp2p::metrics::Recorder as _;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{
    Multiaddr, PeerId, Swarm, SwarmBuilder, autonat, gossipsub, identify, kad, mdns, noise, ping,
    relay, request_response, tcp, yamux,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::admission::{Admission, Rejection, Verdict};
use super::behaviour::{AdmittedSet, Behaviour, BehaviourEvent, MemberSet, OpaqueCodec, Serving};
use super::bootstrap::Bootstrap;
use super::heard::HeardOf;
use super::links::Links;
use super::ondemand::{OnDemand, Queued};
use super::pacer::Pacer;
use super::peers::{PeerTable, is_nested_circuit, is_relayed, is_shareable};
use super::protocol::Protocols;
use super::redial::Redial;
use super::relaying::{RelayMode, Reservations};
use super::{Command, GossipMessage, InboundRpc, P2pConfig, P2pError, Service, Shared, gossip};
use crate::keyring::Keyring;
use crate::proto::p2p::v1::{
    AuthChallenge, AuthProof, ControlRequest, ControlResponse, Opaque, PeerExchangeRequest,
    PeerList, PeerRecord, Refused, control_request, control_response,
};

/// How often an otherwise silent QUIC connection sends a keep-alive.
const QUIC_KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How long a QUIC connection may hear nothing before it is closed, in milliseconds.
const QUIC_IDLE_TIMEOUT_MS: u32 = 30_000;

/// How often the rendezvous providers are looked up while there is someone to find: while this
/// node has no admitted peer, and after a lookup found a member it did not know.
const RENDEZVOUS_LOOKUP: Duration = Duration::from_secs(60);
/// The longest gap between lookups: each lookup that finds nobody new doubles the gap up to
/// this, and a node that reaches every member it has heard of, or holds the member connections
/// it keeps, stays at it ([`super::pacer::lookup_pace`]), so a settled mesh
/// does not walk the DHT every few minutes (a lookup asks members near the key, and each
/// answers with up to 20 providers and their addresses), while a member that only the DHT
/// would name (one of a cluster formed apart) is still found within it.
const RENDEZVOUS_LOOKUP_MAX: Duration = Duration::from_secs(16 * 60);

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

/// Counters of the control plane, registered under `weft_`.
struct Metrics {
    libp2p: libp2p::metrics::Metrics,
    rejections: Family<ReasonLabel, Counter>,
    refused_requests: Counter,
    busy_requests: Counter,
    admitted: Gauge,
}

impl Metrics {
    fn new(registry: &mut Registry) -> Self {
        let weft = registry.sub_registry_with_prefix("weft");
        let rejections = Family::<ReasonLabel, Counter>::default();
        weft.register(
            "admission_rejections",
            "Peers refused admission, by reason",
            rejections.clone(),
        );
        let refused_requests = Counter::default();
        weft.register(
            "refused_requests",
            "Requests on weft protocols refused because the peer was not admitted",
            refused_requests.clone(),
        );
        let busy_requests = Counter::default();
        weft.register(
            "busy_requests",
            "Requests of admitted peers refused because the peer, or all peers together, had \
             the most requests in flight",
            busy_requests.clone(),
        );
        let admitted = Gauge::default();
        weft.register(
            "admitted_peers",
            "Peers currently admitted",
            admitted.clone(),
        );
        Metrics {
            libp2p: libp2p::metrics::Metrics::new(registry),
            rejections,
            refused_requests,
            busy_requests,
            admitted,
        }
    }
}

pub(super) struct Node {
    swarm: Swarm<Behaviour>,
    config: P2pConfig,
    keyring: Keyring,
    protocols: Protocols,
    topic: gossipsub::IdentTopic,
    admission: Admission,
    admitted: AdmittedSet,
    /// The live members, shared with the private DHT's wrapper ([`super::gated`]).
    members: MemberSet,
    peers: PeerTable,
    bootstrap: Bootstrap,
    redial: Redial,
    /// The members met, and the few this node keeps connections to ([`super::links`]).
    links: Links,
    /// Requests waiting for a member to be dialled and admitted ([`super::ondemand`]).
    on_demand: OnDemand<Outbound>,
    heard: HeardOf,
    blocked_until: HashMap<PeerId, Instant>,
    /// The peers the ledger denies, blocked for as long as they are on its list, with the
    /// addresses they listened on (dialled again if they are allowed back).
    denied: HashMap<PeerId, Vec<Multiaddr>>,
    reservations: Reservations,
    /// Whether the relay server grants slots and circuits now ([`RelayMode::serves`]).
    serving: Serving,
    listen: HashSet<Multiaddr>,
    /// The external addresses connected peers were last told of by an identify push.
    pushed_external: HashSet<Multiaddr>,
    /// The rendezvous record this node provides (its current token's, this epoch's).
    provided: Option<libp2p::kad::RecordKey>,
    /// When the rendezvous is next looked up.
    lookups: Pacer,
    /// The lookup round under way may still dial one member it is not connected to, drawn from
    /// the providers its answers name ([`Node::on_providers`]).
    probe_due: bool,
    /// When a peer is next asked which members it knows.
    exchanges: Pacer,
    /// Rendezvous providers whose addresses are being looked up in the private DHT.
    address_lookups: HashSet<PeerId>,
    shared: Arc<Shared>,
    commands: mpsc::Receiver<Command>,
    gossip_tx: broadcast::Sender<GossipMessage>,
    /// Where inbound requests go, per [`Service`].
    inboxes: [mpsc::Sender<InboundRpc>; 2],
    /// Outbound requests waiting for their answer, with the peer asked.
    pending: HashMap<(Service, request_response::OutboundRequestId), (PeerId, Reply)>,
    /// Requests of peers whose admission is under way ([`messages`]).
    parked: HashMap<PeerId, Vec<(Service, Opaque, OpaqueChannel)>>,
    /// Inbound requests their service is answering.
    answers: FuturesUnordered<BoxFuture<'static, Answer>>,
    /// How many of them each peer sent.
    inflight: HashMap<PeerId, usize>,
    metrics: Metrics,
}

/// The task's ends of the channels to its handle.
pub(super) struct Channels {
    pub commands: mpsc::Receiver<Command>,
    pub gossip_tx: broadcast::Sender<GossipMessage>,
    pub inboxes: [mpsc::Sender<InboundRpc>; 2],
}

type Reply = tokio::sync::oneshot::Sender<Result<Vec<u8>, P2pError>>;
/// A request to a service of a member, not sent yet.
type Outbound = (Service, Vec<u8>, Reply);
/// How many addresses peers observed this node at are kept.
const MAX_OBSERVED: usize = 4;
type OpaqueChannel = request_response::ResponseChannel<Opaque>;
/// A service's answer to an inbound request (`None`: it dropped the request), who asked, and
/// where it goes.
type Answer = (Service, PeerId, Option<Vec<u8>>, OpaqueChannel);
/// Inbound requests one peer may have in flight: raft sends one append stream and a vote at a
/// time, the data plane one handshake, so only a flood reaches it.
const MAX_INFLIGHT_PER_PEER: usize = 16;
/// Inbound requests all peers together may have in flight (the size of a service's inbox).
const MAX_INFLIGHT: usize = 256;
/// Requests waiting for their peer's admission, in all: whoever connects may send them, token
/// or not, so few and small ([`MAX_PARKED_BYTES`]).
const MAX_PARKED: usize = 64;
/// Requests waiting for one peer's admission.
const MAX_PARKED_PER_PEER: usize = 2;
/// The largest request that waits for its peer's admission (votes, handshakes and `Hello`s are
/// far smaller; raft appends from a new leader are sent again).
const MAX_PARKED_BYTES: usize = 64 * 1024;

impl Node {
    pub(super) fn new(
        config: P2pConfig,
        keypair: &Keypair,
        keyring: Keyring,
        registry: &mut Registry,
        shared: Arc<Shared>,
        channels: Channels,
    ) -> Result<Self, P2pError> {
        let Channels {
            commands,
            gossip_tx,
            inboxes,
        } = channels;
        let protocols = Protocols::new();
        let admitted: AdmittedSet = Arc::new(RwLock::new(HashSet::new()));
        let serving: Serving = Arc::new(AtomicBool::new(false));
        let members: MemberSet = Arc::new(RwLock::new(HashSet::new()));
        let setup = |e: &dyn std::fmt::Display| P2pError::Setup(e.to_string());
        let mut swarm = SwarmBuilder::with_existing_identity(keypair.clone())
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| setup(&e))?
            .with_quic_config(|mut quic| {
                // QUIC's keep-alive holds a connection's NAT binding when nothing else crosses it
                // for 15 s (pings cross it only every minute); its default of 5 s added a packet
                // and an acknowledgement per connection three times as often. A dead QUIC peer is
                // noticed after 30 s.
                quic.keep_alive_interval = QUIC_KEEP_ALIVE;
                quic.max_idle_timeout = QUIC_IDLE_TIMEOUT_MS;
                quic
            })
            .with_dns()
            .map_err(|e| setup(&e))?
            .with_relay_client(noise::Config::new, yamux::Config::default)
            .map_err(|e| setup(&e))?
            .with_bandwidth_metrics(registry)
            .with_behaviour(|key, relay_client| {
                Behaviour::new(
                    key,
                    relay_client,
                    &config,
                    &protocols,
                    admitted.clone(),
                    members.clone(),
                    serving.clone(),
                )
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
            })
            .map_err(|e| setup(&e))?
            // A connection nothing uses closes: a node keeps a few, not one to every member.
            .with_swarm_config(|c| c.with_idle_connection_timeout(config.idle_timeout))
            .build();
        for addr in &config.listen {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| P2pError::Listen {
                    addr: addr.clone(),
                    reason: e.to_string(),
                })?;
        }
        let topic = gossipsub::IdentTopic::new(protocols.gossip_topic.clone());
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&topic)
            .map_err(|e| setup(&e))?;
        let local = *swarm.local_peer_id();
        let now = Instant::now();
        // Without peer exchange the pacer is never consulted.
        let exchange_every = config
            .peer_exchange_interval
            .unwrap_or(Duration::from_secs(3600));
        let mut node = Node {
            admission: Admission::new(local, config.hostname.clone(), config.auth_timeout),
            bootstrap: Bootstrap::new(&config.bootstrap, now),
            redial: Redial::default(),
            links: Links::new(now),
            on_demand: OnDemand::default(),
            heard: HeardOf::default(),
            metrics: Metrics::new(registry),
            swarm,
            config,
            keyring,
            protocols,
            topic,
            admitted,
            members,
            peers: PeerTable::default(),
            blocked_until: HashMap::new(),
            denied: HashMap::new(),
            reservations: Reservations::default(),
            serving,
            listen: HashSet::new(),
            pushed_external: HashSet::new(),
            provided: None,
            lookups: Pacer::new(RENDEZVOUS_LOOKUP, RENDEZVOUS_LOOKUP_MAX, now),
            probe_due: false,
            exchanges: Pacer::new(exchange_every, exchange_every * 16, now + exchange_every),
            address_lookups: HashSet::new(),
            shared,
            commands,
            gossip_tx,
            inboxes,
            pending: HashMap::new(),
            parked: HashMap::new(),
            answers: FuturesUnordered::new(),
            inflight: HashMap::new(),
        };
        node.set_serving(false);
        Ok(node)
    }

    /// Starts serving as a relay, or stops, by the relay mode and AutoNAT's verdict (`public`),
    /// and tells readers.
    fn set_serving(&mut self, public: bool) {
        let serves = self.config.relay.serves(public);
        if self.serving.swap(serves, Ordering::Relaxed) != serves {
            tracing::info!(mode = %self.config.relay, serves, "relay service changed");
        }
        // Serving, the relay protocol is advertised while some direct external address is
        // confirmed (libp2p's own rule: slots answer with those addresses); not serving, never,
        // so members do not ask for slots it would refuse.
        if let Some(server) = self.swarm.behaviour_mut().relay_server.as_mut() {
            server.set_status((!serves).then_some(relay::Status::Disable));
        }
        let shown = match (self.config.relay, serves) {
            (RelayMode::Off, _) => "off",
            (_, true) => "serving",
            (_, false) => "standby",
        };
        self.shared.relay.store(Arc::new(shown.to_string()));
    }

    /// An admitted peer saw this node at `addr`: remember its IP (newest first, a few), for the
    /// data plane's candidates.
    fn observed(&mut self, addr: &Multiaddr) {
        let ip = match addr.iter().next() {
            Some(Protocol::Ip4(ip)) if !in_overlay(addr, self.config.overlay) => {
                std::net::IpAddr::V4(ip)
            }
            Some(Protocol::Ip6(ip)) => std::net::IpAddr::V6(ip),
            _ => return,
        };
        if ip.is_loopback() || ip.is_unspecified() {
            return;
        }
        let current = self.shared.observed.load();
        if current.first() == Some(&ip) {
            return;
        }
        let mut next = vec![ip];
        next.extend(current.iter().filter(|&&o| o != ip).take(MAX_OBSERVED - 1));
        self.shared.observed.store(Arc::new(next));
    }

    /// A handle that opens and accepts raw streams through this swarm.
    pub(super) fn stream_control(&self) -> libp2p_stream::Control {
        self.swarm.behaviour().streams.new_control()
    }

    pub(super) async fn run(mut self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                event = self.swarm.select_next_some() => self.on_event(event),
                Some(command) = self.commands.recv() => self.on_command(command),
                Some((service, peer, answer, channel)) = self.answers.next(), if !self.answers.is_empty() => {
                    self.finished(peer);
                    if let Some(payload) = answer {
                        let _ = self.opaque(service).send_response(channel, Opaque { payload });
                    }
                }
                _ = tick.tick() => self.on_tick(),
            }
        }
        tracing::debug!("control plane stopped");
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Publish { data, reply } => {
                let local = *self.swarm.local_peer_id();
                let sealed = gossip::seal(
                    &self.keyring.current().ledger_seal,
                    &self.protocols.gossip_topic,
                    &local,
                    &data,
                );
                let result = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(self.topic.clone(), sealed)
                    .map(|_| ())
                    .map_err(|e| P2pError::Publish(e.to_string()));
                let _ = reply.send(result);
            }
            Command::Request {
                service,
                peer,
                payload,
                reply,
            } => {
                if self.admission.is_admitted(&peer) {
                    self.send_request(service, peer, payload, reply);
                } else {
                    self.request_on_demand(service, peer, payload, reply);
                }
            }
            Command::Deny { peers } => self.deny(peers),
            Command::Connect { peer } => self.connect(peer),
            Command::Members { peers } => {
                // Members whose addresses are being looked up stay dialable by the DHT.
                if let Ok(mut members) = self.members.write() {
                    *members = peers.difference(&self.address_lookups).copied().collect();
                }
                self.links.set_members(peers);
            }
            Command::Used { peer } => {
                if self.peers.is_connected(&peer) {
                    self.links.used(peer, Instant::now());
                }
            }
        }
    }

    /// Blocks the newly denied peers (closing their connections) and unblocks those no longer
    /// denied, unless a failed admission still blocks them.
    fn deny(&mut self, peers: HashSet<PeerId>) {
        let added: Vec<PeerId> = peers
            .iter()
            .filter(|p| !self.denied.contains_key(p))
            .copied()
            .collect();
        let lifted: Vec<PeerId> = self
            .denied
            .keys()
            .filter(|p| !peers.contains(p))
            .copied()
            .collect();
        for peer in added {
            tracing::warn!(%peer, "cutting off a peer the mesh denies");
            let addrs = self.peers.listen_addrs(&peer).to_vec();
            self.denied.insert(peer, addrs);
            self.admission.forget(&peer);
            self.set_admitted(&peer, false);
            self.swarm.behaviour_mut().blocked.block_peer(peer);
        }
        for peer in lifted {
            tracing::info!(%peer, "a peer is no longer denied");
            let addrs = self.denied.remove(&peer).unwrap_or_default();
            if !self.blocked_until.contains_key(&peer) {
                self.swarm.behaviour_mut().blocked.unblock_peer(peer);
                self.dial_member(peer, addrs, false, "no longer denied");
            }
        }
        self.publish_peers();
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        let admitted = self.member_links();
        // Bootstrap peers are dialled for a way into the mesh, not kept for their own sake.
        let bootstrap_due = if admitted < super::links::ENOUGH {
            self.bootstrap.due(now)
        } else {
            Vec::new()
        };
        for (index, addr) in bootstrap_due {
            let opts = dial_opts_for(&addr);
            let id = opts.connection_id();
            self.bootstrap.dialing(index, id);
            if let Err(e) = self.swarm.dial(opts) {
                tracing::debug!(%addr, error = %e, "bootstrap dial failed");
                self.bootstrap.failed(id);
            }
        }
        let admission = &self.admission;
        let due = self.redial.due(now, |peer| admission.is_admitted(peer));
        for (peer, addrs, held) in due {
            self.dial_member(peer, addrs, !held, "heard of, not reached yet");
        }
        for peer in self.admission.overdue(now) {
            self.reject(peer, Rejection::Timeout);
        }
        for (peer, (_, _, reply)) in self.on_demand.expired(now) {
            let _ = reply.send(Err(P2pError::NotAdmitted(peer)));
        }
        self.top_up(admitted, now);
        self.close_duplicates(now);
        self.close_idle(now);
        if self.config.peer_exchange_interval.is_some() && self.exchanges.due(now) {
            self.exchange_peers();
        }
        self.recheck(now);
        self.publish_behind();
        let expired: Vec<PeerId> = self
            .blocked_until
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in expired {
            self.blocked_until.remove(&peer);
            if !self.denied.contains_key(&peer) {
                self.swarm.behaviour_mut().blocked.unblock_peer(peer);
            }
        }
        self.rendezvous(now);
        self.reserve_relays();
    }

    fn on_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        self.metrics.libp2p.record(&event);
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                self.listen.insert(address);
                self.publish_listen();
            }
            // A slot on a relay makes its circuit address confirmed as external. Handed on in
            // this node's own reservation answers (when it relays), it would give the members
            // holding slots here circuits through circuits, which nobody can dial; and the relay
            // server's advertisement follows the direct external addresses alone.
            // An address in the overlay pool reaches this node only through the data plane (an
            // AutoNAT dial-back from another member crosses it): handed on, it would have
            // members carry their libp2p connections through the overlay.
            SwarmEvent::ExternalAddrConfirmed { address }
                if is_relayed(&address) || in_overlay(&address, self.config.overlay) =>
            {
                self.swarm.remove_external_address(&address);
            }
            // Peers learn this node's addresses from identify, pushed when they change rather
            // than asked for every few minutes (`behaviour.rs`); identify pushes changes of
            // listen addresses itself, not of external ones. AutoNAT confirms the same address
            // again at every probe: only a change is pushed.
            SwarmEvent::ExternalAddrConfirmed { .. } | SwarmEvent::ExternalAddrExpired { .. } => {
                let external: HashSet<Multiaddr> =
                    self.swarm.external_addresses().cloned().collect();
                if external != self.pushed_external {
                    self.pushed_external = external;
                    let connected: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
                    self.swarm.behaviour_mut().identify.push(connected);
                }
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen.remove(&address);
                self.publish_listen();
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                if let Some(relay) = self.reservations.closed(listener_id, Instant::now()) {
                    match reason {
                        Ok(()) => tracing::debug!(%relay, "relay slot closed"),
                        Err(e) => tracing::debug!(%relay, error = %e, "relay slot refused or lost"),
                    }
                }
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                tracing::debug!(
                    peer = %peer_id,
                    dialer = endpoint.is_dialer(),
                    relayed = endpoint.is_relayed(),
                    "connection established"
                );
                self.peers.connected(
                    peer_id,
                    connection_id,
                    endpoint.get_remote_address().clone(),
                    endpoint.is_dialer(),
                    endpoint.is_relayed(),
                    Instant::now(),
                );
                self.bootstrap.established(connection_id, peer_id);
                self.redial.reached(&peer_id);
                self.heard_of(peer_id);
                if !self.admission.is_admitted(&peer_id) {
                    self.swarm
                        .behaviour_mut()
                        .gossipsub
                        .blacklist_peer(&peer_id);
                }
                if let Some(nonce) = self.admission.on_connected(peer_id, Instant::now()) {
                    self.challenge(peer_id, nonce.to_vec());
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                if self.peers.disconnected(&peer_id, connection_id) || num_established == 0 {
                    self.admission.forget(&peer_id);
                    self.set_admitted(&peer_id, false);
                    self.bootstrap.peer_gone(&peer_id, Instant::now());
                    // Closed before it was admitted: what waited for it fails.
                    self.unreachable(peer_id);
                    self.links.gone(&peer_id);
                    self.parked.remove(&peer_id);
                    // An AutoNAT server is a member this node holds a connection to: a probe
                    // asks over it, and dials nobody.
                    self.swarm.behaviour_mut().autonat.remove_server(&peer_id);
                }
                self.publish_peers();
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                ..
            } => {
                self.bootstrap.failed(connection_id);
                if let Some(peer) = peer_id
                    && !self.peers.is_connected(&peer)
                {
                    self.unreachable(peer);
                }
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour(event),
            _ => {}
        }
    }

    fn on_behaviour(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Auth(event) => self.on_auth(event),
            BehaviourEvent::Control(event) => self.on_control(event),
            BehaviourEvent::Raft(event) => self.on_opaque(Service::Raft, event),
            BehaviourEvent::Dataplane(event) => self.on_opaque(Service::Dataplane, event),
            BehaviourEvent::Identify(event) => {
                self.metrics.libp2p.record(&event);
                if let identify::Event::Received { peer_id, info, .. } = event {
                    let relay = info.protocols.contains(&relay::HOP_PROTOCOL_NAME);
                    let addrs = info
                        .listen_addrs
                        .iter()
                        .filter(|a| !in_overlay(a, self.config.overlay) && !is_nested_circuit(a))
                        .cloned()
                        .collect();
                    if self.peers.identified(peer_id, addrs, relay) != relay
                        && let Some(slot) = self.reservations.relay_changed(&peer_id, relay)
                    {
                        tracing::info!(relay = %peer_id, "the relay stopped serving; giving up its slot");
                        self.swarm.remove_listener(slot);
                    }
                    if self.admission.is_admitted(&peer_id) {
                        self.observed(&info.observed_addr);
                    }
                    if self.admission.is_admitted(&peer_id) {
                        self.add_to_routing(peer_id);
                        let addrs = self.dialable_listen_addrs(&peer_id);
                        self.links.met(peer_id, &addrs);
                    }
                    self.publish_peers();
                }
            }
            BehaviourEvent::Ping(event) => {
                self.metrics.libp2p.record(&event);
                if let ping::Event {
                    peer,
                    result: Ok(rtt),
                    ..
                } = event
                {
                    self.peers.rtt(peer, rtt);
                    self.publish_peers();
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                let mut by_peer: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
                for (peer, addr) in found {
                    by_peer.entry(peer).or_default().push(addr);
                }
                let local = *self.swarm.local_peer_id();
                let now = Instant::now();
                let admitted = self.member_links();
                let mut wanted = self.links.wanted(admitted, now);
                for (peer, addrs) in by_peer {
                    self.heard_of(peer);
                    let connected = self.peers.is_connected(&peer);
                    if !self.links.dial_heard(&peer, connected, &mut wanted, now) {
                        continue;
                    }
                    let new = self.redial.heard_of(peer, &addrs, Instant::now());
                    // Both ends hear of each other now: the lower PeerId dials, so that a
                    // pair does not hold two connections, each with its own pings.
                    if new && peer < local {
                        self.redial.hold_back(&peer);
                    } else if !self.dial_member(peer, addrs, false, "mDNS found it") {
                        self.links.not_dialled(&peer, &mut wanted);
                    }
                }
            }
            BehaviourEvent::Kad(event) => self.on_kad(event),
            BehaviourEvent::PublicKad(kad::Event::OutboundQueryProgressed {
                result: kad::QueryResult::GetProviders(Ok(found)),
                ..
            }) => self.on_providers(found),
            BehaviourEvent::Gossipsub(event) => self.on_gossip(event),
            BehaviourEvent::Autonat(autonat::Event::StatusChanged { new, .. }) => {
                let public = matches!(new, autonat::NatStatus::Public(_));
                let status = match new {
                    autonat::NatStatus::Public(_) => "public",
                    autonat::NatStatus::Private => "private",
                    autonat::NatStatus::Unknown => "unknown",
                };
                tracing::info!(status, "reachability changed");
                self.shared.reachability.store(Arc::new(status.to_string()));
                self.set_serving(public);
            }
            BehaviourEvent::Autonat(autonat::Event::InboundProbe(
                autonat::InboundProbeEvent::Response { peer, address, .. },
            )) => {
                // The dial-back proved the peer reachable and has done its work; left open it
                // would live until the idle timeout, one more connection per probe.
                if let Some(connection) = self.peers.dial_back(&peer, &address) {
                    self.swarm.close_connection(connection);
                }
            }
            BehaviourEvent::RelayClient(event) => {
                tracing::debug!(?event, "relay client");
                if let relay::client::Event::ReservationReqAccepted {
                    relay_peer_id,
                    renewal,
                    ..
                } = event
                {
                    if !renewal {
                        tracing::info!(relay = %relay_peer_id, "holding a relay slot");
                    }
                    self.reservations.granted(&relay_peer_id);
                }
            }
            BehaviourEvent::RelayServer(event) => {
                self.metrics.libp2p.record(&event);
                tracing::debug!(?event, "relay server");
                match event {
                    relay::Event::ReservationReqAccepted { src_peer_id, .. } => {
                        self.links.slot(src_peer_id, true);
                    }
                    relay::Event::ReservationClosed { src_peer_id }
                    | relay::Event::ReservationTimedOut { src_peer_id } => {
                        self.links.slot(src_peer_id, false);
                    }
                    relay::Event::CircuitReqAccepted {
                        src_peer_id,
                        dst_peer_id,
                    } => {
                        self.links.circuit(src_peer_id, true);
                        self.links.circuit(dst_peer_id, true);
                    }
                    relay::Event::CircuitClosed {
                        src_peer_id,
                        dst_peer_id,
                        ..
                    } => {
                        self.links.circuit(src_peer_id, false);
                        self.links.circuit(dst_peer_id, false);
                    }
                    _ => {}
                }
            }
            BehaviourEvent::Dcutr(event) => {
                self.metrics.libp2p.record(&event);
                tracing::info!(peer = %event.remote_peer_id, result = ?event.result, "hole punch");
            }
            _ => {}
        }
    }

    fn publish_peers(&mut self) {
        self.shared.peers.store(Arc::new(self.peers.views()));
    }

    /// Notes a peer found or connected, for formation ([`HeardOf`]).
    fn heard_of(&mut self, peer: PeerId) {
        if peer != *self.swarm.local_peer_id() && self.heard.note(peer) {
            self.publish_heard();
        }
    }

    /// Notes a peer refused admission on evidence: formation no longer waits for it.
    fn refused(&mut self, peer: PeerId) {
        if self.heard.refused(peer) {
            self.publish_heard();
        }
    }

    /// Notes a peer admitted: no longer unresolved, and waited for by formation again if it
    /// was refused before.
    fn admitted_after_all(&mut self, peer: PeerId) {
        if self.heard.admitted(peer) {
            self.publish_heard();
        }
    }

    fn publish_heard(&self) {
        self.shared
            .heard
            .store(Arc::new(self.heard.summary().clone()));
    }

    fn publish_listen(&self) {
        let mut addrs: Vec<Multiaddr> = self.listen.iter().cloned().collect();
        addrs.sort();
        self.shared.listen.store(Arc::new(addrs));
    }
}

/// Dial options for a configured address: by PeerId when it names one.
fn dial_opts_for(addr: &Multiaddr) -> DialOpts {
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => DialOpts::peer_id(peer)
            .addresses(vec![addr.clone()])
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build(),
        _ => DialOpts::unknown_peer_id().address(addr.clone()).build(),
    }
}

/// Whether `addr` is an IPv4 address inside the overlay pool.
fn in_overlay(addr: &Multiaddr, overlay: Option<ipnet::Ipv4Net>) -> bool {
    overlay.is_some_and(|pool| {
        addr.iter()
            .any(|p| matches!(p, Protocol::Ip4(ip) if pool.contains(&ip)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_addresses_inside_the_overlay_pool_are_set_aside() {
        let pool = Some("10.1.0.0/24".parse().unwrap());
        let addr = |s: &str| s.parse::<Multiaddr>().unwrap();
        assert!(in_overlay(&addr("/ip4/10.1.0.7/tcp/4001"), pool));
        assert!(!in_overlay(&addr("/ip4/10.99.0.7/tcp/4001"), pool));
        assert!(!in_overlay(&addr("/ip6/::1/tcp/4001"), pool));
        assert!(!in_overlay(&addr("/ip4/10.1.0.7/tcp/4001"), None));
    }
}
