//! What the packet path knows about each peer, and the snapshot it reads.
//!
//! The control task owns the truth (keyrings, candidates) and publishes a [`Table`] through
//! `arc-swap` whenever routes or sessions change; the packet tasks load it once per batch and
//! never lock. Per-peer state the packet tasks write (counters, the endpoint last heard from, path
//! timestamps) lives in atomics on [`Peer`].

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwapOption;
use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::clock::Clock;
use super::demand::Waiting;
use super::session::Session;

/// How long data may go unanswered before the UDP path counts as lost.
pub const DEAD_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// Why a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Shorter than a header and a tag, an unknown type or nonzero reserved bytes.
    Malformed,
    /// A receiver index no session of this node has.
    UnknownIndex,
    /// The tag did not verify.
    BadTag,
    /// A counter already seen or older than the window.
    Replay,
    /// No session with the peer yet.
    NoSession,
    /// No working path to the peer yet.
    NoPath,
    /// Not an IPv4 packet, or for an address outside the overlay.
    NoRoute,
    /// From a peer, but not from its overlay address or not to this node's.
    BadAddress,
    /// The socket or the device refused it.
    Io,
}

impl DropReason {
    const COUNT: usize = 9;

    const ALL: [DropReason; DropReason::COUNT] = [
        DropReason::Malformed,
        DropReason::UnknownIndex,
        DropReason::BadTag,
        DropReason::Replay,
        DropReason::NoSession,
        DropReason::NoPath,
        DropReason::NoRoute,
        DropReason::BadAddress,
        DropReason::Io,
    ];

    /// The reason as shown in the API.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::UnknownIndex => "unknown_index",
            DropReason::BadTag => "bad_tag",
            DropReason::Replay => "replay",
            DropReason::NoSession => "no_session",
            DropReason::NoPath => "no_path",
            DropReason::NoRoute => "no_route",
            DropReason::BadAddress => "bad_address",
            DropReason::Io => "io",
        }
    }
}

/// Drop counters, one per reason.
#[derive(Debug, Default)]
pub struct Drops([AtomicU64; DropReason::COUNT]);

impl Drops {
    pub fn count(&self, reason: DropReason) {
        self.0[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The nonzero counters by name.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        DropReason::ALL
            .iter()
            .map(|&d| {
                (
                    d.name().to_string(),
                    self.0[d as usize].load(Ordering::Relaxed),
                )
            })
            .filter(|&(_, n)| n > 0)
            .collect()
    }
}

/// Traffic counters of one peer.
#[derive(Debug, Default)]
pub struct Traffic {
    pub tx_packets: AtomicU64,
    pub tx_bytes: AtomicU64,
    pub rx_packets: AtomicU64,
    pub rx_bytes: AtomicU64,
}

/// One peer as the packet path sees it.
#[derive(Debug)]
pub struct Peer {
    pub id: PeerId,
    /// The session packets to this peer are sealed with.
    pub send: ArcSwapOption<Session>,
    /// Where the peer's authenticated UDP packets last came from; packets go there.
    pub endpoint: ArcSwapOption<SocketAddr>,
    /// The queue of the fallback stream to the peer, while one is open.
    pub stream: ArcSwapOption<mpsc::Sender<Vec<u8>>>,
    pub traffic: Traffic,
    pub drops: Drops,
    /// [`Clock`] time of the last authenticated UDP packet from the peer (0: never).
    pub last_rx: AtomicU64,
    /// [`Clock`] time of the last UDP packet to the peer (0: never).
    pub last_tx: AtomicU64,
    /// [`Clock`] time of the first UDP data packet sent since the peer was last heard (0:
    /// none). Keepalives do not count: the peer need not answer them.
    pub unanswered_since: AtomicU64,
    /// Sessions made with the peer (handshakes that completed, either side starting).
    pub handshakes: AtomicU64,
    /// [`Clock`] time of the last data packet for or from the peer (0: never): the demand for a
    /// session ([`super::demand`]).
    pub last_data: AtomicU64,
    /// Packets read for the peer before its session or path existed.
    pub waiting: Mutex<Waiting>,
}

impl Peer {
    pub fn new(id: PeerId) -> Self {
        Peer {
            id,
            send: ArcSwapOption::empty(),
            endpoint: ArcSwapOption::empty(),
            stream: ArcSwapOption::empty(),
            traffic: Traffic::default(),
            drops: Drops::default(),
            last_rx: AtomicU64::new(0),
            last_tx: AtomicU64::new(0),
            unanswered_since: AtomicU64::new(0),
            handshakes: AtomicU64::new(0),
            last_data: AtomicU64::new(0),
            waiting: Mutex::new(Waiting::default()),
        }
    }

    /// Notes a data packet for or from the peer at `now`. Written at most once a second: both
    /// packet tasks call this for every packet, and a write per packet would move the cache
    /// line between their cores.
    pub fn note_data(&self, now: u64) {
        let last = self.last_data.load(Ordering::Relaxed);
        if last == 0 || now.saturating_sub(last) >= 1_000 {
            self.last_data.store(now, Ordering::Relaxed);
        }
    }

    /// Keeps the packet `frame` makes (in a frame's layout) until the peer's session and path
    /// exist; false when too many already wait, and then `frame` is not called (no copy is
    /// made only to be thrown away). A poisoned lock (a panic elsewhere) drops the packet.
    pub fn wait(&self, now: u64, frame: impl FnOnce() -> Vec<u8>) -> bool {
        self.waiting
            .lock()
            .is_ok_and(|mut waiting| !waiting.is_full() && waiting.push(now, frame()))
    }

    /// Whether packets wait for this peer's path.
    pub fn has_waiting(&self) -> bool {
        self.waiting.lock().is_ok_and(|w| !w.is_empty())
    }

    /// Whether frames to the peer have somewhere to go: a UDP endpoint (live or not) or the
    /// fallback stream.
    pub fn has_path(&self) -> bool {
        self.endpoint.load().is_some() || self.stream.load().is_some()
    }

    /// Notes `packets` UDP data packets of `bytes` sent at `now`: the peer answers data, so
    /// the path counts as lost when nothing is heard back for [`DEAD_AFTER`].
    pub fn sent(&self, packets: u64, bytes: u64, now: u64) {
        self.sent_keepalive(packets, bytes, now);
        if self.unanswered_since.load(Ordering::Relaxed) == 0 {
            self.unanswered_since.store(now, Ordering::Relaxed);
        }
    }

    /// Notes `packets` UDP keepalives (answers and probes among them) of `bytes` sent at
    /// `now`.
    pub fn sent_keepalive(&self, packets: u64, bytes: u64, now: u64) {
        self.traffic
            .tx_packets
            .fetch_add(packets, Ordering::Relaxed);
        self.traffic.tx_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.last_tx.store(now, Ordering::Relaxed);
    }

    /// Notes frames of `bytes` in all queued for the fallback stream.
    pub fn sent_stream(&self, packets: u64, bytes: u64) {
        self.traffic
            .tx_packets
            .fetch_add(packets, Ordering::Relaxed);
        self.traffic.tx_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Notes an authenticated frame of `bytes` (framed) from the fallback stream.
    pub fn heard_stream(&self, bytes: u64) {
        self.traffic.rx_packets.fetch_add(1, Ordering::Relaxed);
        self.traffic.rx_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Notes an authenticated UDP frame of `bytes` (framed) from `from` at `now`: the path
    /// works, and `from` is where the peer is. True when the peer had no endpoint before.
    pub fn heard_udp(&self, from: SocketAddr, bytes: u64, now: u64) -> bool {
        self.heard_stream(bytes);
        self.last_rx.store(now, Ordering::Relaxed);
        if self.unanswered_since.load(Ordering::Relaxed) != 0 {
            self.unanswered_since.store(0, Ordering::Relaxed);
        }
        let endpoint = self.endpoint.load();
        if endpoint.as_deref() != Some(&from) {
            let first = endpoint.is_none();
            self.endpoint.store(Some(Arc::new(from)));
            return first;
        }
        false
    }

    /// The UDP address to send to, while the path works.
    pub fn udp_path(&self, now: u64, dead_after: u64) -> Option<SocketAddr> {
        let endpoint = self.endpoint.load();
        endpoint
            .as_deref()
            .copied()
            .filter(|_| !self.path_dead(now, dead_after))
    }

    /// Whether the UDP path has gone quiet: data went out for `dead_after` ms with nothing
    /// heard back.
    pub fn path_dead(&self, now: u64, dead_after: u64) -> bool {
        let since = self.unanswered_since.load(Ordering::Relaxed);
        since != 0 && now.saturating_sub(since) >= dead_after
    }
}

/// A session packets may arrive on, with its peer.
#[derive(Debug, Clone)]
pub struct Receiver {
    pub peer: Arc<Peer>,
    pub session: Arc<Session>,
    /// The peer has not used this session yet; its first packet makes it current.
    pub unconfirmed: bool,
    /// The peer's overlay address: the only source its packets may carry.
    pub source: Option<Ipv4Addr>,
}

/// What the packet tasks read: routes by overlay address, sessions by receiver index.
#[derive(Debug, Default)]
pub struct Table {
    pub routes: HashMap<Ipv4Addr, Arc<Peer>>,
    pub receivers: HashMap<u32, Receiver>,
    /// This node's overlay address: the only destination packets from peers may carry.
    pub me: Option<Ipv4Addr>,
    /// The overlay network, once this node has an address in it.
    pub network: Option<ipnet::Ipv4Net>,
}

/// One peer's figures, as `/v1/peers` shows them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PeerStats {
    pub peer_id: String,
    /// `udp <address>`, `libp2p stream` (the fallback) or `none`.
    pub path: String,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub drops: BTreeMap<String, u64>,
    /// Sessions made with the peer since this node started.
    #[serde(default)]
    pub handshakes: u64,
    /// Seconds since the session in use was made, if there is one.
    pub handshake_age_secs: Option<u64>,
    /// The cipher of the session in use (`aes-256-gcm` or `chacha20-poly1305`), if there is
    /// one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cipher: Option<String>,
}

impl Peer {
    /// This peer's figures at `now`.
    pub fn stats(&self, clock: &Clock, dead_after: u64, now: Instant) -> PeerStats {
        let path = match self.udp_path(clock.now(), dead_after) {
            Some(addr) => format!("udp {addr}"),
            None if self.stream.load().is_some() => "libp2p stream".into(),
            None => "none".into(),
        };
        PeerStats {
            peer_id: self.id.to_string(),
            path,
            tx_packets: self.traffic.tx_packets.load(Ordering::Relaxed),
            tx_bytes: self.traffic.tx_bytes.load(Ordering::Relaxed),
            rx_packets: self.traffic.rx_packets.load(Ordering::Relaxed),
            rx_bytes: self.traffic.rx_bytes.load(Ordering::Relaxed),
            drops: self.drops.snapshot(),
            handshakes: self.handshakes.load(Ordering::Relaxed),
            handshake_age_secs: self
                .send
                .load()
                .as_ref()
                .map(|s| now.saturating_duration_since(s.established).as_secs()),
            cipher: self
                .send
                .load()
                .as_ref()
                .map(|s| s.keys.cipher.as_str().to_string()),
        }
    }
}
