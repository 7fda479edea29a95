//! The composed libp2p behaviour of a weft node and how each part is configured.
//!
//! Gates that must see a connection first come first (limits, block list). weft's own
//! protocols (auth, control, raft, data-plane handshakes, the private Kademlia) have the same
//! names in every network, so they say nothing about which network a node is in; admission
//! tells members apart. The relay server (present unless `--relay off`) reserves slots and
//! opens circuits only for admitted members, and only while this node serves ([`Serving`]); the
//! private Kademlia answers only members ([`super::gated`]). Both consult state the swarm task
//! maintains.

use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    PeerId, StreamProtocol, allow_block_list, autonat, connection_limits, dcutr, gossipsub,
    identify, kad, mdns, memory_connection_limits, ping, relay, request_response,
};

use super::P2pConfig;
use super::boxed::Boxed;
use super::contained::Contained;
use super::gated::Gated;
use super::protocol::{ProstCodec, Protocols};
use crate::proto::p2p::v1::{AuthChallenge, AuthProof, ControlRequest, ControlResponse, Opaque};

/// The admission protocol's codec.
pub type AuthCodec = ProstCodec<AuthChallenge, AuthProof>;
/// The control protocol's codec.
pub type ControlCodec = ProstCodec<ControlRequest, ControlResponse>;
/// The codec of the services whose payload is opaque here (raft, data-plane handshakes).
pub type OpaqueCodec = ProstCodec<Opaque, Opaque>;

/// How long a raft RPC may take (a snapshot chunk on a slow relayed link included).
const RAFT_RPC_TIMEOUT: Duration = Duration::from_secs(30);

/// The set of admitted peers, shared with the relay server's access check.
pub type AdmittedSet = Arc<RwLock<HashSet<PeerId>>>;

/// The live members of this node's cluster, as its ledger last said; the private DHT dials none
/// of them ([`Gated`]).
pub type MemberSet = Arc<RwLock<HashSet<PeerId>>>;
/// Whether the relay server grants slots and circuits now, set by the swarm task from the relay
/// mode and AutoNAT's verdict.
pub type Serving = Arc<AtomicBool>;

/// Well-known bootstrap nodes of the public IPFS DHT, used only with `--public-dht`.
const IPFS_BOOTSTRAP: &[&str] = &[
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN",
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmQCU2EcMqAqQPR2i9bChDtGNJchTbq5TbXJJ16u19uLTa",
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmbLHAnMoJPWSCR5Zhtx6BHJX9KiKNN6tpvbUcqanj75Nb",
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmcZf59bWwK5XFi76CZX8cbJ4BhTzzA3gU1ZjYZcYW3dwt",
];

/// Every libp2p behaviour of a weft node.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// First, so a connection over its address's share is refused before anything counts it.
    pub per_ip: super::per_ip::Behaviour,
    pub limits: connection_limits::Behaviour,
    pub memory: memory_connection_limits::Behaviour,
    pub blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    pub identify: Boxed<identify::Behaviour>,
    pub ping: Boxed<ping::Behaviour>,
    pub auth: Boxed<request_response::Behaviour<AuthCodec>>,
    pub control: Boxed<request_response::Behaviour<ControlCodec>>,
    pub raft: Boxed<request_response::Behaviour<OpaqueCodec>>,
    pub dataplane: Boxed<request_response::Behaviour<OpaqueCodec>>,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    pub kad: Toggle<Boxed<Gated<kad::Behaviour<kad::store::MemoryStore>>>>,
    pub public_kad: Toggle<Boxed<kad::Behaviour<kad::store::MemoryStore>>>,
    pub relay_client: Boxed<Contained<relay::client::Behaviour>>,
    pub relay_server: Toggle<Boxed<super::relay_server::RelayServer>>,
    pub dcutr: Boxed<dcutr::Behaviour>,
    pub autonat: Boxed<autonat::Behaviour>,
    pub gossipsub: Boxed<gossipsub::Behaviour>,
    /// Raw streams: the data plane's fallback path.
    pub streams: Boxed<libp2p_stream::Behaviour>,
}

/// Why the behaviour could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("mDNS: {0}")]
    Mdns(std::io::Error),
    #[error("gossipsub: {0}")]
    Gossipsub(String),
}

impl Behaviour {
    /// The private Kademlia among members, unless `--no-dht`.
    pub fn private_dht(&mut self) -> Option<&mut kad::Behaviour<kad::store::MemoryStore>> {
        self.kad.as_mut().map(|kad| kad.inner_mut())
    }

    /// The Kademlia instances running: the private one and, with `--public-dht`, the public
    /// one.
    pub fn kads(&mut self) -> impl Iterator<Item = &mut kad::Behaviour<kad::store::MemoryStore>> {
        [
            self.kad.as_mut().map(|kad| kad.inner_mut()),
            self.public_kad.as_mut().map(|kad| &mut **kad),
        ]
        .into_iter()
        .flatten()
    }

    /// Builds the behaviour for `config`.
    pub fn new(
        key: &Keypair,
        relay_client: relay::client::Behaviour,
        config: &P2pConfig,
        protocols: &Protocols,
        admitted: AdmittedSet,
        members: MemberSet,
        serving: Serving,
    ) -> Result<Self, BuildError> {
        let local = key.public().to_peer_id();
        let rr_config =
            request_response::Config::default().with_request_timeout(config.auth_timeout);
        let mdns = if config.mdns {
            Some(
                mdns::tokio::Behaviour::new(mdns::Config::default(), local)
                    .map_err(BuildError::Mdns)?,
            )
        } else {
            None
        };
        let kad = config.dht.then(|| {
            Boxed::new(Gated::new(
                private_kad(local, protocols.kad.clone()),
                admitted.clone(),
                members,
            ))
        });
        let public_kad = config.public_dht.then(|| Boxed::new(public_kad(local)));
        let relay_server = (config.relay != super::RelayMode::Off)
            .then(|| relay::Behaviour::new(local, relay_config(admitted, serving)))
            .map(|server| Boxed::new(super::relay_server::RelayServer::new(server)));
        Ok(Behaviour {
            per_ip: super::per_ip::Behaviour::new(config.max_per_ip),
            limits: connection_limits::Behaviour::new(
                connection_limits::ConnectionLimits::default()
                    .with_max_established(Some(config.max_connections))
                    .with_max_pending_incoming(Some(config.max_connections))
                    .with_max_established_per_peer(Some(8)),
            ),
            memory: memory_connection_limits::Behaviour::with_max_percentage(0.9),
            blocked: allow_block_list::Behaviour::default(),
            identify: Boxed::new(identify::Behaviour::new(
                identify::Config::new("/weft/1".to_string(), key.public())
                    // Anyone that connects reads it, admitted or not: no version to pick
                    // exploits by. Members read each other's from the ledger.
                    .with_agent_version("weft".to_string())
                    .with_interval(IDENTIFY_INTERVAL)
                    .with_push_listen_addr_updates(true)
                    // Its cache would add every listen address a peer told to each dial of that
                    // peer, those in the overlay pool among them (the node's own tables leave
                    // them out): a member dialled on demand was reached through the data plane.
                    .with_cache_size(0),
            )),
            ping: Boxed::new(ping::Behaviour::new(
                ping::Config::new().with_interval(PING_INTERVAL),
            )),
            auth: Boxed::new(request_response::Behaviour::new(
                [(
                    protocols.auth.clone(),
                    request_response::ProtocolSupport::Full,
                )],
                rr_config.clone(),
            )),
            control: Boxed::new(request_response::Behaviour::new(
                [(
                    protocols.control.clone(),
                    request_response::ProtocolSupport::Full,
                )],
                rr_config.clone(),
            )),
            dataplane: Boxed::new(request_response::Behaviour::new(
                [(
                    protocols.dataplane.clone(),
                    request_response::ProtocolSupport::Full,
                )],
                rr_config,
            )),
            raft: Boxed::new(request_response::Behaviour::new(
                [(
                    protocols.raft.clone(),
                    request_response::ProtocolSupport::Full,
                )],
                request_response::Config::default().with_request_timeout(RAFT_RPC_TIMEOUT),
            )),
            mdns: mdns.into(),
            kad: kad.into(),
            public_kad: public_kad.into(),
            relay_client: Boxed::new(Contained::new(relay_client, "relay client")),
            relay_server: relay_server.into(),
            dcutr: Boxed::new(dcutr::Behaviour::new(local)),
            autonat: Boxed::new(autonat::Behaviour::new(local, autonat_config(config.relay))),
            gossipsub: Boxed::new(gossipsub_behaviour(key)?),
            streams: Boxed::new(libp2p_stream::Behaviour::new()),
        })
    }
}

/// AutoNAT among members: the servers a probe picks from are the members this node holds a
/// connection to (added once admitted, removed when the last connection closes), so that a
/// probe asks over a connection it has. With every member ever admitted as a server, each
/// probe (every 15 minutes) picked one at random, most often one not connected, and dialled
/// it. In `--relay auto` a node serves
/// once found public, so it probes soon after start (5 s) and, while the verdict is unsure,
/// every 30 s; otherwise the verdict is only shown, and AutoNAT's own pace (15 s, then 90 s)
/// costs less. Once sure, every 15 minutes either way.
fn autonat_config(relay: super::RelayMode) -> autonat::Config {
    let mut config = autonat::Config {
        use_connected: false,
        only_global_ips: false,
        ..Default::default()
    };
    if relay == super::RelayMode::Auto {
        config.boot_delay = Duration::from_secs(5);
        config.retry_interval = Duration::from_secs(30);
    }
    config
}

/// How long members keep a copy of another's rendezvous record.
const PROVIDER_RECORD_TTL: Duration = Duration::from_secs(3 * 3600);

/// Copies of each provider record in the private DHT, and providers listed per answer. (The
/// closer members an answer lists are not set by this: libp2p-kad 0.49 takes `K_VALUE`, 20,
/// from the routing table, and [`super::gated`] cuts them to `CLOSER_MEMBERS`.)
const PRIVATE_DHT_REPLICATION: usize = 8;

/// Members a node's private routing table keeps at each distance (Kademlia's k): BitTorrent's
/// DHT runs on 8. libp2p-kad allocates room for this many in each of its 256 distances when the
/// behaviour is made, 320 bytes a member, and malloc writes a header at the start of each: at
/// libp2p's 20, 1.6 MB allocated and a page in every 6.4 kB resident (about 1 MiB) in every
/// node; at 8, 0.66 MB, all resident. A node of a mesh of N members fills about log2(N / k)
/// of the distances; with 8 a member of 1,000 knows about 60 others, enough for a lookup to
/// reach any key in a few hops. The farthest distance, half the mesh, is full from about 16
/// members on: a member admitted then gets no place there, unless one held there is
/// disconnected (then one member at a time waits a minute and takes that one's place, as
/// [`Gated`] fails the dial that would keep a live member); any member answers lookups as well
/// as another. And libp2p-kad starts a walk on each insertion while its table holds fewer than
/// 20 members: with 8 a distance, in meshes of up to about 30 rather than 20.
const PRIVATE_DHT_BUCKET: usize = 8;

/// How often each end pings a connection. A ping measures the round trip the peer table shows;
/// a failed one closes nothing. QUIC's keep-alive holds UDP NAT bindings and notices a dead
/// peer; on an idle TCP connection the ping is the only regular packet, which holds its NAT
/// binding (TCP bindings last minutes to hours). Every 15 s (libp2p's default), both ends'
/// pings cost each node a packet exchange per connection four times as often.
const PING_INTERVAL: Duration = Duration::from_secs(60);

/// How often a peer is asked to identify itself again after the first time: rarely, since
/// each node pushes its identify to every connected peer when its addresses change (listen
/// addresses by identify itself, external ones by `node/mod.rs`). libp2p's default of 5
/// minutes had every node answer every connected peer with its whole identify (each address and
/// protocol, about 1.5 kB) every 5 minutes: in a mesh of 20, about 30 kB per node at once.
const IDENTIFY_INTERVAL: Duration = Duration::from_secs(3600);

/// The gossip mesh's degree: the peers a node relays each gossip message to.
const MESH_N: usize = 4;
/// The peers outside its mesh a node announces a heartbeat's new messages to.
const GOSSIP_LAZY: usize = 3;

/// Kademlia among members: network-scoped protocol, only admitted peers in the routing table,
/// provider records stored only after the swarm task checks their author.
fn private_kad(local: PeerId, protocol: StreamProtocol) -> kad::Behaviour<kad::store::MemoryStore> {
    let mut config = kad::Config::new(protocol);
    config
        .set_kbucket_inserts(kad::BucketInserts::Manual)
        .set_record_filtering(kad::StoreInserts::FilterBoth)
        .set_periodic_bootstrap_interval(None)
        // Each answer lists this many providers of a key with all their addresses: the default
        // of 20 makes a rendezvous answer of a large mesh kilobytes long. Members are few hops
        // apart and each is also found by peer exchange, so fewer copies of a provider record
        // do. (The closer members listed beside them are cut in `gated.rs`.)
        .set_replication_factor(NonZeroUsize::new(PRIVATE_DHT_REPLICATION).expect("nonzero"))
        .set_kbucket_size(NonZeroUsize::new(PRIVATE_DHT_BUCKET).expect("nonzero"))
        .set_provider_record_ttl(Some(PROVIDER_RECORD_TTL))
        // Published again well within its lifetime: libp2p's default (12 h) let the copies of
        // a record of a long epoch (edgevpn's never-rotating one) lapse 9 hours in 12.
        .set_provider_publication_interval(Some(PROVIDER_RECORD_TTL / 3))
        .set_query_timeout(Duration::from_secs(30));
    let mut kad = kad::Behaviour::with_config(local, kad::store::MemoryStore::new(local), config);
    kad.set_mode(Some(kad::Mode::Server));
    kad
}

/// The public IPFS DHT, for rendezvous across the internet when asked for.
fn public_kad(local: PeerId) -> kad::Behaviour<kad::store::MemoryStore> {
    let mut config = kad::Config::new(kad::PROTOCOL_NAME);
    config.set_replication_factor(NonZeroUsize::new(20).expect("nonzero"));
    let mut kad = kad::Behaviour::with_config(local, kad::store::MemoryStore::new(local), config);
    for entry in IPFS_BOOTSTRAP {
        let addr: libp2p::Multiaddr = entry.parse().expect("built-in multiaddrs are valid");
        if let Some(libp2p::multiaddr::Protocol::P2p(peer)) = addr.iter().last() {
            kad.add_address(&peer, addr);
        }
    }
    kad
}

/// Relay server limits sized for VPN traffic; reservations and circuits only for members, and
/// only while serving.
fn relay_config(admitted: AdmittedSet, serving: Serving) -> relay::Config {
    let acl = move |peer: PeerId, _: &libp2p::Multiaddr, _: std::time::Instant| {
        serving.load(Ordering::Relaxed)
            && admitted
                .read()
                .map(|set| set.contains(&peer))
                .unwrap_or(false)
    };
    relay::Config {
        max_reservations: 256,
        max_reservations_per_peer: 4,
        reservation_duration: Duration::from_secs(3600),
        reservation_rate_limiters: vec![Box::new(acl.clone())],
        max_circuits: 512,
        max_circuits_per_peer: 32,
        max_circuit_duration: Duration::from_secs(24 * 3600),
        // 0: no byte limit; a relayed VPN peer carries real traffic.
        max_circuit_bytes: 0,
        circuit_src_rate_limiters: vec![Box::new(acl)],
    }
}

fn gossipsub_behaviour(key: &Keypair) -> Result<gossipsub::Behaviour, BuildError> {
    let config = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .max_transmit_size(super::protocol::MAX_MESSAGE)
        // A publisher sends to its mesh (a bounded degree) rather than to every subscriber it
        // knows: the leader's feed must not cost it one copy per member.
        .flood_publish(false)
        // Lazy gossip, once and to three peers: each node announces the messages of its last
        // heartbeat (IHAVE) to three peers outside its mesh, where gossipsub's defaults
        // announced each message to six or more peers at each of three heartbeats (in an idle
        // mesh of 20, about a quarter of what a node sent). It stays because it is what carries
        // messages across two meshes that formed apart (a healed partition: a node adds mesh
        // peers only while it has too few, so nobody grafts across), and because a lost message
        // comes back whole rather than as a catch-up of the leader's whole state.
        .history_gossip(1)
        .gossip_lazy(GOSSIP_LAZY)
        .gossip_factor(0.0)
        // A smaller mesh: each node relays a message to three to five peers rather than five
        // to eleven. Every message still reaches a connected mesh in a few hops.
        .mesh_n(MESH_N)
        .mesh_n_low(MESH_N - 1)
        .mesh_n_high(MESH_N + 2)
        .mesh_outbound_min(MESH_N / 2)
        .build()
        .map_err(|e| BuildError::Gossipsub(e.to_string()))?;
    gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), config)
        .map_err(|e| BuildError::Gossipsub(e.to_string()))
}

#[cfg(test)]
mod tests {
    use libp2p::swarm::THandler;

    use super::*;

    /// The swarm moves a connection's handler through stack frames a worker keeps resident
    /// ([`super::super::boxed`]): each behaviour's is boxed, so the whole is a few pointers.
    /// A behaviour added unboxed with a large handler fails this.
    #[test]
    fn a_connection_handler_is_a_few_pointers() {
        let size = std::mem::size_of::<THandler<Behaviour>>();
        assert!(size <= 256, "a connection's handler is {size} bytes");
    }
}
