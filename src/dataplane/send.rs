//! Outbound packets, run to completion: TUN read (super-packets split into one slab) → route
//! lookup in the snapshot → seal in place → UDP send, a run of equal frames to one peer as one
//! GSO `sendmsg`. No channel, no allocation per packet: the slab, its slots and the scratch
//! buffer live as long as the task. Only a packet for a peer with no session or path yet is
//! copied out, to wait for the handshake its arrival asks for ([`super::demand`]).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tun_rs::VIRTIO_NET_HDR_LEN;

use super::frame::{self, HEADER_LEN, TAG_LEN};
use super::peer::{DEAD_AFTER, DropReason, Peer};
use super::router::{icmp_unreachable, ipv4_destination};
use super::tun::{MAX_SUPER_PACKET, WRITE_HEADROOM, fatal};
use super::{Shared, fallback};

/// Packets one TUN read may yield: a 64 KiB super-packet is 47 at MTU 1420 and 123 at the
/// smallest MTU weft accepts (576); tun-rs refuses a super-packet with more segments than slots.
const BATCH: usize = 128;
/// The most bytes one GSO send may carry (a UDP datagram's payload limit, with margin).
const MAX_GSO_BYTES: usize = 64_000;
const DEAD_AFTER_MS: u64 = DEAD_AFTER.as_millis() as u64;

/// Reads the TUN until `shutdown`, sending what it reads.
pub(super) async fn run(shared: Arc<Shared>, shutdown: CancellationToken) {
    let stride = HEADER_LEN + shared.mtu + TAG_LEN;
    let mut slab = vec![0u8; stride * BATCH];
    let mut scratch = vec![0u8; VIRTIO_NET_HDR_LEN + MAX_SUPER_PACKET];
    let mut sizes = [0usize; BATCH];
    let mut lens = [0usize; BATCH];
    let mut icmp = [0u8; WRITE_HEADROOM + 128];
    // One wait for the stop, polled by every select: made afresh in each, it joined and left
    // the token's waiter list (a lock each way) once per batch.
    let stopped = shutdown.cancelled();
    tokio::pin!(stopped);
    loop {
        let read = {
            let mut slots = slab.chunks_exact_mut(stride);
            let mut bufs: [&mut [u8]; BATCH] =
                std::array::from_fn(|_| slots.next().expect("the slab has BATCH slots"));
            tokio::select! {
                biased;
                () = &mut stopped => return,
                read = shared.tun.read_batch(&mut scratch, &mut bufs, &mut sizes, HEADER_LEN) => read,
            }
        };
        let n = match read {
            Ok(n) => n.min(BATCH),
            Err(e) if fatal(&e) => {
                tracing::error!(error = %e, "TUN read failed; the data plane stops sending");
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "TUN read");
                shared.drops.count(DropReason::Io);
                continue;
            }
        };
        let table = shared.table.load();
        let now = shared.clock.now();
        let mut dest: [Option<&Arc<Peer>>; BATCH] = [None; BATCH];
        for i in 0..n {
            let slot = &mut slab[i * stride..(i + 1) * stride];
            let packet = &slot[HEADER_LEN..HEADER_LEN + sizes[i]];
            let destination = ipv4_destination(packet);
            let Some(peer) = destination.and_then(|d| table.routes.get(&d)) else {
                let reply = match (destination, table.network) {
                    (Some(d), Some(net)) if net.contains(&d) => {
                        icmp_unreachable(packet, d, &mut icmp[WRITE_HEADROOM..])
                    }
                    _ => None,
                };
                shared.drops.count(DropReason::NoRoute);
                if let Some(len) = reply {
                    let written = shared
                        .tun
                        .write_one(&mut icmp[..WRITE_HEADROOM + len])
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
                let frame = || slot[..HEADER_LEN + sizes[i] + TAG_LEN].to_vec();
                if !peer.wait(now, frame) {
                    peer.drops.count(DropReason::NoSession);
                }
                shared.wake.notify_one();
                continue;
            };
            match frame::seal(&session.keys.send, header, slot, sizes[i]) {
                Ok(len) => {
                    lens[i] = len;
                    dest[i] = Some(peer);
                }
                Err(_) => peer.drops.count(DropReason::Io),
            }
        }
        send_runs(&shared, &mut slab, stride, &dest[..n], &lens, now).await;
    }
}

/// Sends the sealed frames, grouping each run of frames to one peer whose lengths are equal
/// (the last may be shorter) into one GSO send; frames shorter than a slot are moved up to make
/// the run contiguous.
async fn send_runs(
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
            match shared.udp.send(addr, frames, segments).await {
                Ok(()) => peer.sent(count, total as u64, now),
                Err(e) => {
                    tracing::debug!(peer = %peer.id, error = %e, "UDP send");
                    peer.drops.count(DropReason::Io);
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
