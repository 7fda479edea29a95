//! Inbound packets, run to completion: UDP receive (many datagrams per call, each possibly a
//! GRO train of segments) → header check and session lookup in the snapshot → open in place →
//! replay check → TUN write after each datagram, consecutive segments of one flow coalesced
//! (GRO) when offloads are on. Anything malformed, unknown, forged or replayed is counted and
//! dropped; nothing from the network can make the packet thread panic.
//!
//! The one copy on this path: each frame moves from the receive slab into the buffer the TUN
//! write takes, because GRO coalescing appends segments to it. Decryption then runs in place
//! there.

use std::io::{ErrorKind, IoSliceMut};
use std::net::SocketAddr;
use std::ops::ControlFlow;

use quinn_udp::RecvMeta;
use tun_rs::GROTable;

use super::Shared;
use super::frame::{self, HEADER_LEN, Header, MAX_FRAME, OVERHEAD};
use super::peer::{DropReason, Table};
use super::router::{answered_in_write, ipv4_destination, ipv4_source};
use super::tun::{MAX_SUPER_PACKET, fatal};
use super::udp::RECV_BATCH;

/// Packets handed to one TUN write call.
const WRITE_BATCH: usize = 64;

// Opened frames keep their header's bytes in front of the packet: room for the virtio header.
const _: () = assert!(HEADER_LEN >= super::tun::WRITE_HEADROOM);

/// The receive direction's buffers, kept for the thread's life.
pub(super) struct Inbound {
    /// The room for one datagram: a whole GRO train when the socket coalesces.
    datagram: usize,
    storage: Vec<u8>,
    meta: [RecvMeta; RECV_BATCH],
    /// Made when the first datagram arrives.
    writes: Option<Writes>,
}

/// What opened packets go to the TUN from: [`WRITE_BATCH`] buffers with room for a whole
/// super-packet (GRO coalesces segments into them), and tun-rs's GRO tables. They are 6 MB
/// allocated in 320 blocks of 6 to 66 kB, mostly never written, yet the allocator writes a
/// header at the start of each block: made at start they kept 1.36 MiB resident in a node whose
/// data plane carried nothing (`BENCHMARKS.md`, "Large buffers mapped on their own").
struct Writes {
    out: Vec<Vec<u8>>,
    gro: GROTable,
}

impl Writes {
    fn new() -> Writes {
        Writes {
            out: (0..WRITE_BATCH)
                .map(|_| Vec::with_capacity(HEADER_LEN + MAX_SUPER_PACKET + OVERHEAD))
                .collect(),
            gro: GROTable::default(),
        }
    }
}

impl Inbound {
    pub(super) fn new(shared: &Shared) -> Inbound {
        let datagram = if shared.udp.gro_segments() > 1 {
            u16::MAX as usize
        } else {
            MAX_FRAME
        };
        Inbound {
            datagram,
            storage: vec![0u8; datagram * RECV_BATCH],
            meta: [RecvMeta::default(); RECV_BATCH],
            writes: None,
        }
    }

    /// Receives one batch of datagrams and writes what opens into the TUN, datagram by
    /// datagram (a GRO train's segments coalesced), calling `answered` after each write that
    /// held a packet the kernel may answer inside the write ([`answered_in_write`]), so that
    /// the answer leaves before the next datagram is opened. `Continue(false)` when there was
    /// nothing to receive, `Break` when the socket is gone or `answered` broke.
    pub(super) async fn turn(
        &mut self,
        shared: &Shared,
        mut answered: impl AsyncFnMut() -> ControlFlow<()>,
    ) -> ControlFlow<(), bool> {
        // A unit of the task's budget per receive, as in `Outbound::turn`: a flood of datagrams
        // that open to nothing still lets the reactor see the TUN.
        tokio::task::coop::consume_budget().await;
        let Inbound {
            datagram,
            storage,
            meta,
            writes,
        } = self;
        let datagram = *datagram;
        let received = {
            let mut slots = storage.chunks_exact_mut(datagram);
            let mut bufs: [IoSliceMut<'_>; RECV_BATCH] = std::array::from_fn(|_| {
                IoSliceMut::new(slots.next().expect("the storage has RECV_BATCH slots"))
            });
            shared.udp.try_recv(&mut bufs, meta)
        };
        let n = match received {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return ControlFlow::Continue(false),
            Err(e) if fatal(&e) => {
                tracing::error!(error = %e, "UDP receive failed; the data plane stops receiving");
                return ControlFlow::Break(());
            }
            Err(e) => {
                tracing::debug!(error = %e, "UDP receive");
                return ControlFlow::Continue(true);
            }
        };
        let Writes { out, gro } = writes.get_or_insert_with(Writes::new);
        let table = shared.table.load();
        let now = shared.clock.now();
        for (k, m) in meta[..n].iter().enumerate() {
            let received = &storage[k * datagram..k * datagram + m.len];
            let stride = if m.stride == 0 { m.len } else { m.stride };
            let mut segments = received.chunks(stride.max(1)).peekable();
            let mut used = 0;
            let mut answerable = false;
            while let Some(segment) = segments.next() {
                let buf = &mut out[used];
                if open(shared, &table, segment, Via::Udp(m.addr, now), buf) {
                    answerable |= answered_in_write(&buf[HEADER_LEN..]);
                    used += 1;
                }
                if used > 0 && (used == out.len() || segments.peek().is_none()) {
                    flush(shared, gro, &mut out[..used]).await;
                    used = 0;
                    if answerable {
                        answered().await?;
                        answerable = false;
                    }
                }
            }
        }
        ControlFlow::Continue(true)
    }
}

/// Where a frame arrived.
#[derive(Debug, Clone, Copy)]
pub(super) enum Via {
    /// On the UDP socket from this address, at this [`super::clock::Clock`] time.
    Udp(SocketAddr, u64),
    /// On a fallback stream.
    Stream,
}

/// Checks and opens one frame into `buf`; true when `buf` now holds a packet for the TUN at
/// `buf[HEADER_LEN..]`.
pub(super) fn open(
    shared: &Shared,
    table: &Table,
    segment: &[u8],
    via: Via,
    buf: &mut Vec<u8>,
) -> bool {
    let Ok(header) = Header::parse(segment) else {
        shared.drops.count(DropReason::Malformed);
        return false;
    };
    let Some(receiver) = table.receivers.get(&header.receiver) else {
        shared.drops.count(DropReason::UnknownIndex);
        return false;
    };
    let peer = &receiver.peer;
    buf.clear();
    buf.extend_from_slice(segment);
    let Ok((_, len)) = frame::open(&receiver.session.keys.recv, buf) else {
        peer.drops.count(DropReason::BadTag);
        return false;
    };
    if !receiver.session.accept(header.counter) {
        peer.drops.count(DropReason::Replay);
        return false;
    }
    // Bytes are counted as framed, like those sent, so both directions compare.
    let now = match via {
        Via::Udp(from, now) => {
            // A first endpoint releases the packets that waited for a path.
            if peer.heard_udp(from, segment.len() as u64, now) && peer.has_waiting() {
                shared.wake.notify_one();
            }
            now
        }
        Via::Stream => {
            peer.heard_stream(segment.len() as u64);
            shared.clock.now()
        }
    };
    if receiver.unconfirmed {
        let _ = shared.confirm.try_send((peer.id, header.receiver));
    }
    if len == 0 {
        // A keepalive or probe: it proved the path, and carries nothing.
        return false;
    }
    buf.truncate(HEADER_LEN + len);
    // A member may only speak for its own overlay address, and only to this node's.
    let packet = &buf[HEADER_LEN..];
    if ipv4_source(packet).is_none_or(|s| Some(s) != receiver.source)
        || ipv4_destination(packet).is_none_or(|d| Some(d) != table.me)
    {
        peer.drops.count(DropReason::BadAddress);
        return false;
    }
    peer.note_data(now);
    true
}

async fn flush(shared: &Shared, gro: &mut GROTable, bufs: &mut [Vec<u8>]) {
    if let Err(e) = shared.tun.write_batch(gro, bufs, HEADER_LEN).await {
        tracing::debug!(error = %e, "TUN write");
        shared.drops.count(DropReason::Io);
    }
}
