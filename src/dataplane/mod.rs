//! The data plane: members' IP packets, encrypted with per-pair session keys, over their own UDP
//! path (DESIGN §6).
//!
//! Pure parts: the wire frame ([`frame`]), the replay window ([`replay`]), the route table and
//! ICMP replies ([`router`]), the handshake and keyring ([`session`]), when a session is wanted
//! and the packets that wait for one ([`demand`]), when to handshake, probe and keep a path
//! alive ([`paths`]), on the packet path's millisecond [`clock`]. Devices: the TUN ([`tun`])
//! and the UDP socket ([`udp`]). The packet path: one loop sends (TUN → UDP, [`send`]), one
//! receives (UDP → TUN, [`recv`]), both on one thread of their own ([`packets`]); each runs to
//! completion per batch and reads the [`peer::Table`] snapshot the control task ([`control`])
//! publishes. The control task follows the ledger, makes sessions over libp2p when traffic
//! asks for them and keeps their paths alive. Without a working UDP path, frames travel on a
//! libp2p stream instead ([`fallback`]).

pub mod clock;
pub(crate) mod control;
pub mod demand;
mod fallback;
pub mod frame;
mod metrics;
mod packets;
pub mod paths;
pub mod peer;
mod recv;
pub mod replay;
pub mod router;
mod send;
pub mod session;
pub mod tun;
pub mod udp;
mod upnp;

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use libp2p::identity::Keypair;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::keyring::Keyring;
use crate::ledger::Ledger;
use crate::p2p::{P2pHandle, Service};
use clock::Clock;
use packets::PacketThread;
use peer::{Drops, PeerStats, Table};
use tun::{Tun, TunError};
use udp::Udp;

/// What the data plane needs to start.
#[derive(Debug, Clone)]
pub struct DataplaneConfig {
    pub interface: String,
    pub mtu: u16,
    /// Ask the kernel for TUN offloads (TSO/GRO); without them, one packet per call.
    pub offload: bool,
    pub port: u16,
    pub pool: ipnet::Ipv4Net,
}

/// Why the data plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error(transparent)]
    Tun(#[from] TunError),
    #[error("cannot bind the data-plane UDP port {port}: {source}")]
    Udp { port: u16, source: std::io::Error },
    #[error("cannot start the data plane's packet thread: {0}")]
    Thread(std::io::Error),
    #[error("the data-plane handshake inbox was already taken")]
    Inbox,
}

/// State the packet tasks and the control task share.
pub(crate) struct Shared {
    tun: Tun,
    udp: Udp,
    mtu: usize,
    table: ArcSwap<Table>,
    clock: Clock,
    /// Drops not attributable to a peer.
    drops: Drops,
    /// The packet path asks the control task to act (a session or a path is missing).
    wake: Notify,
    /// The packet path saw a peer use an answered session.
    confirm: mpsc::Sender<(libp2p::PeerId, u32)>,
    /// The data port's external address on the LAN's UPnP gateway, while mapped.
    upnp: arc_swap::ArcSwapOption<std::net::SocketAddr>,
    /// This node's overlay address, once it is set on the TUN.
    address: arc_swap::ArcSwapOption<std::net::Ipv4Addr>,
}

/// A handle on the running data plane.
#[derive(Clone)]
pub struct Dataplane {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Dataplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataplane")
            .field("tun", &self.shared.tun)
            .finish_non_exhaustive()
    }
}

/// The data plane's figures, as `/v1/dataplane` shows them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DataplaneStats {
    pub interface_offload: bool,
    pub udp_port: u16,
    pub udp_gso_segments: usize,
    pub udp_gro_segments: usize,
    /// The data port's external address on the LAN's UPnP gateway, while mapped.
    pub upnp: Option<String>,
    /// Drops not attributable to a peer (malformed frames, unknown indexes, no route).
    pub drops: std::collections::BTreeMap<String, u64>,
    pub peers: Vec<PeerStats>,
}

impl Dataplane {
    /// Opens the TUN and the UDP socket and spawns the data plane's tasks into `tasks`.
    pub fn start(
        config: &DataplaneConfig,
        identity: &Keypair,
        keyring: &Keyring,
        p2p: P2pHandle,
        ledger: Ledger,
        tasks: &mut JoinSet<()>,
        shutdown: CancellationToken,
    ) -> Result<Dataplane, DataplaneError> {
        let inbox = p2p
            .take_inbox(Service::Dataplane)
            .ok_or(DataplaneError::Inbox)?;
        let packets = PacketThread::new().map_err(DataplaneError::Thread)?;
        let (tun, udp) = {
            let _registered_with_the_packet_thread = packets.enter();
            let tun = Tun::open(&config.interface, config.mtu, config.offload)?;
            let udp = Udp::bind(config.port).map_err(|source| DataplaneError::Udp {
                port: config.port,
                source,
            })?;
            (tun, udp)
        };
        tracing::info!(
            port = udp.port(),
            gso = udp.max_segments(),
            gro = udp.gro_segments(),
            "data-plane UDP socket bound"
        );
        let (confirm_tx, confirm_rx) = mpsc::channel(256);
        let shared = Arc::new(Shared {
            tun,
            udp,
            mtu: config.mtu as usize,
            table: ArcSwap::default(),
            clock: Clock::new(),
            drops: Drops::default(),
            wake: Notify::new(),
            confirm: confirm_tx,
            upnp: arc_swap::ArcSwapOption::empty(),
            address: arc_swap::ArcSwapOption::empty(),
        });
        tasks.spawn(
            packets
                .run(shared.clone(), shutdown.clone())
                .map_err(DataplaneError::Thread)?,
        );
        tasks.spawn(upnp::run(shared.clone(), shutdown.clone()));
        let (streams, frames) = p2p.frame_streams();
        tasks.spawn(fallback::accept(
            shared.clone(),
            streams,
            frames,
            p2p.clone(),
            shutdown.clone(),
        ));
        let control = control::Control {
            shared: shared.clone(),
            identity: identity.clone(),
            keyring: keyring.clone(),
            p2p,
            ledger,
            pool: config.pool,
            inbox,
            confirm: confirm_rx,
        };
        tasks.spawn(control.run(shutdown));
        Ok(Dataplane { shared })
    }

    /// This node's overlay address, once the data plane has set it on the TUN.
    pub fn address(&self) -> Option<std::net::Ipv4Addr> {
        self.shared.address.load().as_deref().copied()
    }

    /// Figures for every peer the data plane knows.
    pub fn stats(&self) -> DataplaneStats {
        let shared = &self.shared;
        let table = shared.table.load();
        let mut peers: Vec<PeerStats> = table
            .receivers
            .values()
            .map(|r| &r.peer)
            .chain(table.routes.values())
            .map(|p| (p.id, p))
            .collect::<std::collections::HashMap<_, _>>()
            .values()
            .map(|p| {
                p.stats(
                    &shared.clock,
                    peer::DEAD_AFTER.as_millis() as u64,
                    Instant::now(),
                )
            })
            .collect();
        peers.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        DataplaneStats {
            interface_offload: shared.tun.offload(),
            udp_port: shared.udp.port(),
            udp_gso_segments: shared.udp.max_segments(),
            udp_gro_segments: shared.udp.gro_segments(),
            upnp: shared.upnp.load().as_deref().map(|a| a.to_string()),
            drops: shared.drops.snapshot(),
            peers,
        }
    }
}
