//! The control plane: a libp2p swarm that finds peers (mDNS, bootstrap addresses, peer
//! exchange, a private Kademlia rendezvous), proves membership ([`admission`]), traverses NATs
//! (AutoNAT, circuit relay, DCUtR), keeps the peer table and carries sealed gossip.
//!
//! [`start`] spawns the task that owns the swarm; the returned [`P2pHandle`] reads lock-free
//! snapshots of its state and sends it commands. Nothing here knows about the ledger or the data
//! plane; they use this handle.

pub mod admission;
mod behaviour;
mod bootstrap;
mod boxed;
mod contained;
mod gated;
pub mod gossip;
pub mod heard;
pub mod links;
mod node;
pub mod ondemand;
pub(crate) mod pacer;
pub mod peers;
pub mod per_ip;
pub mod protocol;
pub(crate) mod redial;
mod relay_server;
pub mod relaying;
pub mod slots;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use prometheus_client::registry::Registry;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use behaviour::{AuthCodec, ControlCodec, OpaqueCodec};
pub(crate) use node::records_of;
pub use peers::{ConnectionKind, PeerView};
pub use relaying::RelayMode;

use crate::keyring::Keyring;

/// What the control plane needs to know.
#[derive(Debug, Clone)]
pub struct P2pConfig {
    pub hostname: String,
    pub listen: Vec<Multiaddr>,
    pub bootstrap: Vec<Multiaddr>,
    pub mdns: bool,
    pub dht: bool,
    /// Also use the public IPFS DHT for rendezvous (never in tests).
    pub public_dht: bool,
    /// When to serve as a circuit relay for admitted members.
    pub relay: RelayMode,
    pub max_connections: u32,
    /// Inbound connections one remote IP address may hold ([`per_ip`]).
    pub max_per_ip: per_ip::PerIpLimits,
    /// How long a peer has to prove membership.
    pub auth_timeout: Duration,
    /// How long a peer that failed admission stays blocked.
    pub block_duration: Duration,
    /// How long a connection nothing uses stays open ([`links::IDLE`] by default).
    pub idle_timeout: Duration,
    /// How often an admitted peer is asked which members it knows while rounds find someone
    /// new (each round that finds nobody doubles the gap, up to 16 times this); `None` turns
    /// asking off (the node still answers), leaving discovery to mDNS, bootstrap and the DHT.
    pub peer_exchange_interval: Option<Duration>,
    /// The overlay pool: addresses in it are reachable only through the data plane, so peers'
    /// addresses there are never dialled or shared (the control plane must not ride the
    /// overlay it sets up).
    pub overlay: Option<ipnet::Ipv4Net>,
}

/// A gossip message from an admitted peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GossipMessage {
    pub author: PeerId,
    /// What it holds, once opened with a token this node holds. `None` when none opens it:
    /// sealed under a newer token (a rotation this node has not heard of) or junk.
    pub data: Option<Vec<u8>>,
}

/// Why the control plane could not start or a command failed.
#[derive(Debug, thiserror::Error)]
pub enum P2pError {
    #[error("cannot set up libp2p: {0}")]
    Setup(String),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: Multiaddr, reason: String },
    #[error("cannot publish gossip: {0}")]
    Publish(String),
    #[error("{0} is not an admitted peer")]
    NotAdmitted(PeerId),
    #[error("request to {peer} failed: {reason}")]
    Request { peer: PeerId, reason: String },
    #[error("the control plane has stopped")]
    Stopped,
    #[error("cannot sign with the node key: {0}")]
    Sign(String),
}

/// Requests to the swarm task.
#[derive(Debug)]
pub(crate) enum Command {
    Publish {
        data: Vec<u8>,
        reply: oneshot::Sender<Result<(), P2pError>>,
    },
    Request {
        service: Service,
        peer: PeerId,
        payload: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, P2pError>>,
    },
    /// The peers the mesh denies, all of them: cut off and refused from now on.
    Deny { peers: HashSet<PeerId> },
    /// Dial this member if not connected: it is soon needed.
    Connect { peer: PeerId },
    /// The live members of this node's cluster, all of them ([`links`]).
    Members { peers: HashSet<PeerId> },
    /// Something other than a request used the connection to `peer` (a raft stream): it is
    /// not idle ([`links`]).
    Used { peer: PeerId },
}

/// The services that exchange requests with opaque payloads between admitted peers; each has its
/// own protocol name and inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// The ledger's raft RPCs.
    Raft,
    /// The data plane's session handshakes.
    Dataplane,
}

impl Service {
    const ALL: [Service; 2] = [Service::Raft, Service::Dataplane];

    pub(crate) fn slot(self) -> usize {
        self as usize
    }
}

/// A request from an admitted peer to one [`Service`]; answer it through `reply`.
#[derive(Debug)]
pub struct InboundRpc {
    pub peer: PeerId,
    /// The peer proved only the token before this node's current one: during a rotation's
    /// grace window it is still admitted, but it may be a denied machine holding the old token.
    pub behind: bool,
    pub payload: Vec<u8>,
    pub reply: oneshot::Sender<Vec<u8>>,
}

/// State the swarm task publishes for readers.
#[derive(Debug)]
pub(crate) struct Shared {
    pub peers: ArcSwap<Vec<Arc<PeerView>>>,
    pub listen: ArcSwap<Vec<Multiaddr>>,
    pub reachability: ArcSwap<String>,
    /// Whether this node serves as a relay: `off`, `serving` or `standby` (`auto` mode while
    /// AutoNAT has not found it public).
    pub relay: ArcSwap<String>,
    /// IPs admitted peers observed this node at, newest first.
    pub observed: ArcSwap<Vec<std::net::IpAddr>>,
    /// Admitted peers that proved only the token before this node's current one.
    pub behind: ArcSwap<HashSet<PeerId>>,
    /// The peers heard of since start, found or connected ([`heard`]).
    pub heard: ArcSwap<heard::Heard>,
    /// Where inbound requests wait for their service, until it takes the receiver (one per
    /// [`Service`], in [`Service::ALL`] order).
    pub inboxes: [std::sync::Mutex<Option<mpsc::Receiver<InboundRpc>>>; 2],
}

impl Shared {
    fn new(inboxes: [mpsc::Receiver<InboundRpc>; 2]) -> Self {
        Shared {
            peers: ArcSwap::default(),
            listen: ArcSwap::default(),
            reachability: ArcSwap::from_pointee("unknown".to_string()),
            relay: ArcSwap::from_pointee("off".to_string()),
            observed: ArcSwap::default(),
            behind: ArcSwap::default(),
            heard: ArcSwap::default(),
            inboxes: inboxes.map(|inbox| std::sync::Mutex::new(Some(inbox))),
        }
    }
}

/// A handle on the running control plane.
#[derive(Clone)]
pub struct P2pHandle {
    peer_id: PeerId,
    /// `peer_id` as text, the ledger's key for this node: kept, since the ledger looks itself
    /// up every tick and base58 encoding is not free.
    peer_key: Arc<str>,
    /// This node's identity key, for what it signs in its own name above libp2p's own
    /// handshakes (a request another member forwards, [`crate::ledger::forward`]).
    identity: Keypair,
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    gossip: broadcast::Sender<GossipMessage>,
    streams: libp2p_stream::Control,
    frames: libp2p::StreamProtocol,
    /// The protocol of raft's long-lived streams; none when no swarm serves this handle (the
    /// ledger's simulation), whose raft RPCs all go as requests.
    raft_stream: Option<libp2p::StreamProtocol>,
    /// The tokens the swarm admits with; none without a swarm.
    keyring: Option<Keyring>,
}

impl std::fmt::Debug for P2pHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("P2pHandle")
            .field("peer_id", &self.peer_id)
            .finish_non_exhaustive()
    }
}

impl P2pHandle {
    /// This node's PeerId.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// This node's PeerId as text: its key in the ledger.
    pub fn peer_key(&self) -> &str {
        &self.peer_key
    }

    /// Signs `message` with this node's identity key.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, P2pError> {
        self.identity
            .sign(message)
            .map_err(|e| P2pError::Sign(e.to_string()))
    }

    /// The network ids (hex) of the tokens this node holds: the current one and, after a
    /// rotation, the one before it, within its grace window or past it. None without a swarm
    /// (the ledger's simulation).
    pub fn networks(&self) -> Vec<String> {
        let Some(keyring) = &self.keyring else {
            return Vec::new();
        };
        let held = keyring.held();
        std::iter::once(&held.current)
            .chain(held.previous.as_ref().map(|(generation, _)| generation))
            .map(|generation| generation.id().to_string())
            .collect()
    }

    /// This node's public identity key (its PeerId derives from it).
    pub fn public_key(&self) -> libp2p::identity::PublicKey {
        self.identity.public()
    }

    /// The admitted peers.
    pub fn peers(&self) -> Arc<Vec<Arc<PeerView>>> {
        self.shared.peers.load_full()
    }

    /// The addresses the swarm listens on (with OS-chosen ports resolved).
    pub fn listen_addrs(&self) -> Arc<Vec<Multiaddr>> {
        self.shared.listen.load_full()
    }

    /// The IPs admitted peers observed this node at (identify), newest first: behind a NAT, the
    /// public address.
    pub fn observed_ips(&self) -> Arc<Vec<std::net::IpAddr>> {
        self.shared.observed.load_full()
    }

    /// AutoNAT's verdict on this node's reachability (`unknown`, `public`, `private`).
    pub fn reachability(&self) -> Arc<String> {
        self.shared.reachability.load_full()
    }

    /// Whether this node serves as a circuit relay: `off`, `serving` or `standby`.
    pub fn relay(&self) -> Arc<String> {
        self.shared.relay.load_full()
    }

    /// Publishes `data`, sealed, on the network's gossip topic.
    pub async fn publish(&self, data: Vec<u8>) -> Result<(), P2pError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Publish { data, reply })
            .await
            .map_err(|_| P2pError::Stopped)?;
        answer.await.map_err(|_| P2pError::Stopped)?
    }

    /// Receives every gossip message from an admitted peer: opened when it opens under a token
    /// this node holds, else unopened ([`GossipMessage::data`] is `None`).
    pub fn gossip(&self) -> broadcast::Receiver<GossipMessage> {
        self.gossip.subscribe()
    }

    /// Sends a request to `service` on a member and waits for its answer. A member this node
    /// is not connected to is dialled first, and the request waits for its admission (at most
    /// [`ondemand::WAIT`]); one that cannot be reached fails it with
    /// [`P2pError::NotAdmitted`] ([`ondemand`]).
    pub async fn request(
        &self,
        service: Service,
        peer: PeerId,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, P2pError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Request {
                service,
                peer,
                payload,
                reply,
            })
            .await
            .map_err(|_| P2pError::Stopped)?;
        answer.await.map_err(|_| P2pError::Stopped)?
    }

    /// Dials `peer` unless connected: a member this node will soon send requests to. Nothing
    /// waits for the connection.
    pub async fn connect(&self, peer: PeerId) {
        let _ = self.commands.send(Command::Connect { peer }).await;
    }

    /// Raw streams to and from peers, and the protocol name data-plane frames use on them.
    /// Inbound streams come from any connected peer: check admission before reading.
    pub fn frame_streams(&self) -> (libp2p_stream::Control, libp2p::StreamProtocol) {
        (self.streams.clone(), self.frames.clone())
    }

    /// Raw streams to and from peers, and the protocol name raft's long-lived streams use
    /// ([`crate::ledger::raft::stream`]); `None` when no swarm serves this handle. Inbound
    /// streams come from any connected peer: check admission before reading.
    pub fn raft_streams(&self) -> Option<(libp2p_stream::Control, libp2p::StreamProtocol)> {
        Some((self.streams.clone(), self.raft_stream.clone()?))
    }

    /// Tells the control plane that something other than a request (a raft stream) used the
    /// connection to `peer`, so that it does not close as idle. Dropped when the swarm task is
    /// busy: the next use says it again.
    pub fn used(&self, peer: PeerId) {
        let _ = self.commands.try_send(Command::Used { peer });
    }

    /// Cuts off `peers` (the ledger's whole deny list): their connections close, and they are
    /// refused until a later call leaves them out.
    pub async fn set_denied(&self, peers: HashSet<PeerId>) -> Result<(), P2pError> {
        self.commands
            .send(Command::Deny { peers })
            .await
            .map_err(|_| P2pError::Stopped)
    }

    /// Tells the control plane the live members of this node's cluster, all of them: it keeps
    /// connections to a few of those, and dials and holds anyone else it hears of.
    pub async fn set_members(&self, peers: HashSet<PeerId>) -> Result<(), P2pError> {
        self.commands
            .send(Command::Members { peers })
            .await
            .map_err(|_| P2pError::Stopped)
    }

    /// How many peers this node has heard of since it started (found or connected, admitted or
    /// not), and the lowest PeerId among them.
    pub fn heard(&self) -> Arc<heard::Heard> {
        self.shared.heard.load_full()
    }

    /// Whether admitted `peer` proved only the token before this node's current one, during a
    /// rotation's grace window: it may be a denied machine, and its word decides nothing.
    /// Refreshed every second and whenever a proof arrives.
    pub fn is_behind(&self, peer: &PeerId) -> bool {
        self.shared.behind.load().contains(peer)
    }

    /// Whether `peer` is admitted now.
    pub fn is_admitted(&self, peer: &PeerId) -> bool {
        let text = peer.to_string();
        self.shared.peers.load().iter().any(|p| p.peer_id == text)
    }

    /// The requests admitted peers send to `service` on this node; the first caller gets them,
    /// later ones `None`.
    pub fn take_inbox(&self, service: Service) -> Option<mpsc::Receiver<InboundRpc>> {
        self.shared.inboxes[service.slot()].lock().ok()?.take()
    }
}

/// The channels between a [`P2pHandle`] and whatever serves it (the swarm task, or the ledger
/// simulation's network).
struct Wiring {
    shared: Arc<Shared>,
    /// The sending side of each service's inbox, in [`Service::ALL`] order.
    inboxes: [mpsc::Sender<InboundRpc>; 2],
    commands_tx: mpsc::Sender<Command>,
    commands_rx: mpsc::Receiver<Command>,
    gossip_tx: broadcast::Sender<GossipMessage>,
}

impl Wiring {
    fn new() -> Wiring {
        let (senders, receivers): (Vec<_>, Vec<_>) =
            Service::ALL.iter().map(|_| mpsc::channel(256)).unzip();
        let inboxes = receivers.try_into().expect("one inbox per service");
        let (commands_tx, commands_rx) = mpsc::channel(64);
        let (gossip_tx, _) = broadcast::channel(256);
        Wiring {
            shared: Arc::new(Shared::new(inboxes)),
            inboxes: senders.try_into().expect("one inbox per service"),
            commands_tx,
            commands_rx,
            gossip_tx,
        }
    }
}

/// The far side of a [`P2pHandle`] that no swarm serves: the ledger's simulation
/// ([`crate::ledger::sim`]) routes its commands, feeds its inboxes and gossip, and sets its
/// peers itself.
#[cfg(test)]
pub(crate) struct Detached {
    pub commands: mpsc::Receiver<Command>,
    /// In [`Service::ALL`] order.
    pub inboxes: [mpsc::Sender<InboundRpc>; 2],
    pub gossip: broadcast::Sender<GossipMessage>,
    pub shared: Arc<Shared>,
}

#[cfg(test)]
impl P2pHandle {
    /// A handle for the node of `identity` with no swarm behind it, and its far side.
    pub(crate) fn detached(identity: Keypair) -> (P2pHandle, Detached) {
        let Wiring {
            shared,
            inboxes,
            commands_tx,
            commands_rx,
            gossip_tx,
        } = Wiring::new();
        let handle = P2pHandle {
            peer_id: identity.public().to_peer_id(),
            peer_key: identity.public().to_peer_id().to_string().into(),
            identity,
            commands: commands_tx,
            shared: shared.clone(),
            gossip: gossip_tx.clone(),
            streams: libp2p_stream::Behaviour::new().new_control(),
            frames: protocol::Protocols::new().frames,
            raft_stream: None,
            keyring: None,
        };
        let far = Detached {
            commands: commands_rx,
            inboxes,
            gossip: gossip_tx,
            shared,
        };
        (handle, far)
    }

    /// This detached handle holding `keyring`'s tokens, so that the ledger knows its network
    /// ([`P2pHandle::networks`]), which the operator's trusts are signed for.
    #[cfg(test)]
    pub(crate) fn in_network(mut self, keyring: Keyring) -> P2pHandle {
        self.keyring = Some(keyring);
        self
    }
}

/// Builds the swarm, starts listening, and spawns the task that runs it until `shutdown`.
pub fn start(
    config: P2pConfig,
    keypair: &Keypair,
    keyring: Keyring,
    registry: &mut Registry,
    shutdown: CancellationToken,
) -> Result<(P2pHandle, JoinHandle<()>), P2pError> {
    let Wiring {
        shared,
        inboxes,
        commands_tx,
        commands_rx,
        gossip_tx,
    } = Wiring::new();
    let protocols = protocol::Protocols::new();
    let node = node::Node::new(
        config,
        keypair,
        keyring.clone(),
        registry,
        shared.clone(),
        node::Channels {
            commands: commands_rx,
            gossip_tx: gossip_tx.clone(),
            inboxes,
        },
    )?;
    let handle = P2pHandle {
        peer_id: keypair.public().to_peer_id(),
        peer_key: keypair.public().to_peer_id().to_string().into(),
        identity: keypair.clone(),
        commands: commands_tx,
        shared,
        gossip: gossip_tx,
        streams: node.stream_control(),
        frames: protocols.frames,
        raft_stream: Some(protocols.raft_stream),
        keyring: Some(keyring),
    };
    let task = tokio::spawn(crate::fault::guard("swarm", false, node.run(shutdown)));
    Ok((handle, task))
}
