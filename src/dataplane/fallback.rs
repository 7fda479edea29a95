//! The fallback path: the same sealed frames, each prefixed with its length (u16, big-endian),
//! on a libp2p stream to the peer, used while no direct UDP path works. The stream rides the
//! admitted libp2p connection, so it works wherever that does, through a circuit relay
//! included; probing goes on meanwhile, and packets move back to UDP once a probe is answered.
//!
//! Each side opens one outbound stream per peer and writes to it from a queue the send task
//! fills; inbound streams are read by one task each, which opens frames exactly as the UDP
//! receive path does (the stream's origin proves nothing: the frame's tag and counter do). A
//! peer may have at most [`MAX_STREAMS_PER_PEER`] inbound streams open; more are closed.

use std::sync::Arc;

use futures::{AsyncReadExt as _, AsyncWriteExt as _};
use libp2p::StreamProtocol;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::frame::{HEADER_LEN, MAX_FRAME};
use super::peer::{DropReason, Peer};
use super::recv::{Via, open};
use super::tun::WRITE_HEADROOM;
use crate::p2p::P2pHandle;
use crate::p2p::slots::{StreamSlot, StreamSlots, serve_admitted};

/// Frames queued for one peer's stream before new ones are dropped.
const QUEUE: usize = 1024;

/// Opens a frame stream to `peer`, then writes what the send task queues until the stream
/// fails or `shutdown`.
pub(super) async fn write(
    mut control: libp2p_stream::Control,
    protocol: StreamProtocol,
    peer: Arc<Peer>,
    shutdown: CancellationToken,
) {
    let mut stream = tokio::select! {
        _ = shutdown.cancelled() => return,
        opened = control.open_stream(peer.id, protocol) => match opened {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(peer = %peer.id, error = %e, "cannot open a frame stream");
                return;
            }
        },
    };
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(QUEUE);
    let tx = Arc::new(tx);
    peer.stream.store(Some(tx.clone()));
    let ended: std::io::Result<()> = async {
        loop {
            let frame = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                frame = rx.recv() => frame,
            };
            let Some(frame) = frame else { return Ok(()) };
            stream.write_all(&frame).await?;
            while let Ok(frame) = rx.try_recv() {
                stream.write_all(&frame).await?;
            }
            stream.flush().await?;
        }
    }
    .await;
    if let Err(e) = ended {
        tracing::debug!(peer = %peer.id, error = %e, "frame stream closed");
    }
    // Only clear the queue this task served; a newer writer may have replaced it.
    peer.stream
        .compare_and_swap(&Some(tx), None::<Arc<mpsc::Sender<Vec<u8>>>>);
}

/// A frame ready for a stream: its length, then the frame.
pub(super) fn framed(frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + frame.len());
    out.extend_from_slice(&(frame.len() as u16).to_be_bytes());
    out.extend_from_slice(frame);
    out
}

/// Accepts frame streams from admitted peers until `shutdown`, one reading task each.
pub(super) async fn accept(
    shared: Arc<Shared>,
    mut control: libp2p_stream::Control,
    protocol: StreamProtocol,
    p2p: P2pHandle,
    shutdown: CancellationToken,
) {
    let incoming = match control.accept(protocol) {
        Ok(incoming) => incoming,
        Err(e) => {
            tracing::error!(error = %e, "cannot accept frame streams; no fallback path");
            return;
        }
    };
    // Only admitted peers hold slots, and the connection limit bounds those.
    let slots = StreamSlots::new(MAX_STREAMS_PER_PEER, usize::MAX);
    let what = "frame stream";
    serve_admitted(
        &p2p,
        incoming,
        slots,
        what,
        shutdown.clone(),
        |slot, stream| read(shared.clone(), slot, stream, shutdown.clone()),
    )
    .await;
}

/// Inbound frame streams one peer may have open: it opens one, and a second while it replaces
/// a broken one.
const MAX_STREAMS_PER_PEER: usize = 2;

async fn read(
    shared: Arc<Shared>,
    slot: StreamSlot,
    mut stream: libp2p::Stream,
    shutdown: CancellationToken,
) {
    let peer = slot.peer();
    let max = MAX_FRAME;
    let mut frame = vec![0u8; max];
    let mut out = Vec::with_capacity(max);
    let ended: std::io::Result<()> = async {
        loop {
            let mut len = [0u8; 2];
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                read = stream.read_exact(&mut len) => read?,
            }
            let len = usize::from(u16::from_be_bytes(len));
            if len > max {
                shared.drops.count(DropReason::Malformed);
                return Err(std::io::Error::other(format!(
                    "a {len}-byte frame exceeds the {max}-byte limit"
                )));
            }
            stream.read_exact(&mut frame[..len]).await?;
            let table = shared.table.load();
            if open(&shared, &table, &frame[..len], Via::Stream, &mut out) {
                let packet = &mut out[HEADER_LEN - WRITE_HEADROOM..];
                if let Err(e) = shared.tun.write_one(packet).await {
                    tracing::debug!(error = %e, "TUN write");
                    shared.drops.count(DropReason::Io);
                }
            }
        }
    }
    .await;
    if let Err(e) = ended {
        tracing::debug!(%peer, error = %e, "inbound frame stream ended");
    }
}
