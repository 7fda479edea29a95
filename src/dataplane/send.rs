//! Outbound packets, run to completion: TUN read (super-packets split into one slab) → route
//! lookup in the snapshot → seal in place → UDP send, a run of equal frames to one peer as one
//! GSO `sendmsg`. No channel, no allocation per packet: the slab, its slots and the scratch
//! buffer live as long as the packet thread ([`super::packets`]). Only a packet for a peer with
//! no session or path yet is copied out, to wait for the handshake its arrival asks for
//! ([`super::demand`]). The send never waits for the socket: a full send buffer drops the run.

use std::io::ErrorKind;
use std::ops::ControlFlow;
use std::sync::Arc;

use tun_rs::VIRTIO_NET_HDR_LEN;

use super::frame::{self, HEADER_LEN, TAG_LEN};
use super::peer::{DEAD_AFTER, DropReason, Peer};
use super::router::{icmp_unreachable, ipv4_destination};
use super::tun::{MAX_SUPER_PACKET, Read, WRITE_HEADROOM, fatal};
use super::{Shared, fallback};

/// Packets one TUN read may yield: a 64 KiB super-packet is 47 at MTU 1420 and 123 at the
/// smallest MTU weft accepts (576); tun-rs refuses a super-packet with more segments than slots.
const BATCH: usize = 128;
/// The most bytes one GSO send may carry (a UDP datagram's payload limit, with margin).
const MAX_GSO_BYTES: usize = 64_000;
const DEAD_AFTER_MS: u64 = DEAD_AFTER.as_millis() as u64;

/// The send direction's buffers, kept for the thread's life: no allocation per packet.
pub(super) struct Outbound {
    stride: usize,
    slab: Vec<u8>,
    scratch: Vec<u8>,
    sizes: [usize; BATCH],
    lens: [usize; BATCH],
    icmp: [u8; WRITE_HEADROOM + 128],
}

impl Outbound {
    pub(super) fn new(shared: &Shared) -> Outbound {
        let stride = HEADER_LEN + shared.mtu + TAG_LEN;
        Outbound {
            stride,
            slab: vec![0u8; stride * BATCH],
            scratch: vec![0u8; VIRTIO_NET_HDR_LEN + MAX_SUPER_PACKET],
            sizes: [0; BATCH],
            lens: [0; BATCH],
            icmp: [0; WRITE_HEADROOM + 128],
        }
    }

    /// Reads one batch from the TUN and sends it: `Continue(false)` when there was nothing to
    /// read, `Break` when the device is gone.
    pub(super) async fn turn(&mut self, shared: &Shared, read: Read) -> ControlFlow<(), bool> {
        // Each read spends a unit of the task's budget, as one through the reactor did: once it
        // is spent the thread yields to its reactor, so a device that never runs dry (a flood
        // of datagrams that open to nothing) cannot keep the other's readiness unseen.
        tokio::task::coop::consume_budget().await;
        let stride = self.stride;
        let read = {
            let mut slots = self.slab.chunks_exact_mut(stride);
            let mut bufs: [&mut [u8]; BATCH] =
                std::array::from_fn(|_| slots.next().expect("the slab has BATCH slots"));
            let (scratch, sizes) = (&mut self.scratch, &mut self.sizes);
            shared
                .tun
                .read_batch(read, scratch, &mut bufs, sizes, HEADER_LEN)
        };
        let n = match read {
            Ok(n) => n.min(BATCH),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return ControlFlow::Continue(false),
            Err(e) if fatal(&e) => {
                tracing::error!(error = %e, "TUN read failed; the data plane stops sending");
                return ControlFlow::Break(());
            }
            Err(e) => {
                tracing::debug!(error = %e, "TUN read");
                shared.drops.count(DropReason::Io);
                return ControlFlow::Continue(true);
            }
        };
        let table = shared.table.load();
        let now = shared.clock.now();
        let mut dest: [Option<&Arc<Peer>>; BATCH] = [None; BATCH];
        for (i, to) in dest.iter_mut().enumerate().take(n) {
            let slot = &mut self.slab[i * stride..(i + 1) * stride];
            let size = self.sizes[i];
            let packet = &slot[HEADER_LEN..HEADER_LEN + size];
            let destination = ipv4_destination(packet);
            let Some(peer) = destination.and_then(|d| table.routes.get(&d)) else {
                let reply = match (destination, table.network) {
                    (Some(d), Some(net)) if net.contains(&d) => {
                        icmp_unreachable(packet, d, &mut self.icmp[WRITE_HEADROOM..])
                    }
                    _ => None,
                };
                shared.drops.count(DropReason::NoRoute);
                if let Some(len) = reply {
                    let written = shared
                        .tun
                        .write_one(&mut self.icmp[..WRITE_HEADROOM + len])
                        .await;
                    if let Err(e) = written {
                        tracing::debug!(error = %e, "cannot write an ICMP unreachable");
                    }
                }
                continue;
            };
            peer.note_data(now);
            let sending = peer.send.load();
            let Some((session, header)) = sending
                .as_deref()
                .filter(|_| peer.has_path())
                .and_then(|s| Some((s, s.next_header()?)))
            else {
                // The first packets to a peer wait for its session and path (`demand`).
                let frame = || slot[..HEADER_LEN + size + TAG_LEN].to_vec();
                if !peer.wait(now, frame) {
                    peer.drops.count(DropReason::NoSession);
                }
                shared.wake.notify_one();
                continue;
            };
            match frame::seal(&session.keys.send, header, slot, size) {
                Ok(len) => {
                    self.lens[i] = len;
                    *to = Some(peer);
                }
                Err(_) => peer.drops.count(DropReason::Io),
            }
        }
        send_runs(shared, &mut self.slab, stride, &dest[..n], &self.lens, now);
        ControlFlow::Continue(true)
    }
}

/// Sends the sealed frames, grouping each run of frames to one peer whose lengths are equal
/// (the last may be shorter) into one GSO send; frames shorter than a slot are moved up to make
/// the run contiguous. Never waits: a send the socket's full buffer refuses is dropped and
/// counted (`io`), as a saturated link drops, so that the thread goes on receiving.
fn send_runs(
    shared: &Shared,
    slab: &mut [u8],
    stride: usize,
    dest: &[Option<&Arc<Peer>>],
    lens: &[usize],
    now: u64,
) {
    let max_segments = shared.udp.max_segments().max(1);
    let mut i = 0;
    while i < dest.len() {
        let Some(peer) = dest[i] else {
            i += 1;
            continue;
        };
        let segment = lens[i];
        let start = i * stride;
        let mut total = segment;
        let mut last = segment;
        let mut j = i + 1;
        while j < dest.len()
            && j - i < max_segments
            && last == segment
            && lens[j] <= segment
            && total + lens[j] <= MAX_GSO_BYTES
            && dest[j].is_some_and(|p| Arc::ptr_eq(p, peer))
        {
            let at = start + total;
            if at != j * stride {
                slab.copy_within(j * stride..j * stride + lens[j], at);
            }
            total += lens[j];
            last = lens[j];
            j += 1;
        }
        let count = (j - i) as u64;
        let frames = &slab[start..start + total];
        if let Some(addr) = peer.udp_path(now, DEAD_AFTER_MS) {
            let segments = (count > 1).then_some(segment);
            match shared.udp.try_send(addr, frames, segments) {
                Ok(()) => peer.sent(count, total as u64, now),
                Err(e) => {
                    tracing::debug!(peer = %peer.id, error = %e, "UDP send");
                    for _ in 0..count {
                        peer.drops.count(DropReason::Io);
                    }
                }
            }
        } else if let Some(queue) = peer.stream.load().as_deref() {
            for frame in frames.chunks(segment) {
                match queue.try_send(fallback::framed(frame)) {
                    Ok(()) => peer.sent_stream(1, frame.len() as u64),
                    Err(_) => peer.drops.count(DropReason::NoPath),
                }
            }
        } else {
            for _ in 0..count {
                peer.drops.count(DropReason::NoPath);
            }
            shared.wake.notify_one();
        }
        i = j;
    }
}
