//! The packet thread: both directions ([`super::send`], [`super::recv`]) run in one loop on one
//! OS thread of their own, under a single-threaded runtime whose reactor the TUN and the UDP
//! socket are registered with. The rest of the daemon (libp2p, raft, the data plane's control
//! task) stays on the main runtime.
//!
//! Why: on the main runtime's work-stealing workers, a packet's readiness was seen by one
//! worker and its task often run by another, so every packet that turned around in the node (a
//! ping's echo, a TCP acknowledgement) crossed threads. Here the datagram is opened, written
//! to the TUN, and the answer the kernel queued is read and sent by the same thread, as one
//! thread of boringtun does, and at once: the read follows the write without a wait on the
//! reactor in between. Measured in BENCHMARKS.md ("The packet thread"): about 20 % more
//! single-stream TCP throughput (the median of ten paired runs), the median ping level. The cost:
//! both directions share one core, so a node seals and opens on one core at most (one pipeline
//! per core needs a multi-queue TUN).
//!
//! The devices must be opened inside [`PacketThread::enter`] so that they register with this
//! runtime; other tasks may still use them (the control task's probes, fallback frames written
//! to the TUN), their readiness being driven by this thread.

use std::ops::ControlFlow;
use std::sync::Arc;

use tokio::runtime::{EnterGuard, Runtime};
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::recv::Inbound;
use super::send::Outbound;
use super::tun::Read;

/// The runtime of the packet thread, before the thread runs it.
pub(super) struct PacketThread {
    /// Taken only by [`Drop`].
    runtime: Option<Runtime>,
}

impl Drop for PacketThread {
    /// A runtime dropped plainly inside another runtime's task panics; this may be dropped there
    /// (the data plane failing to start after it was built, or its thread failing to start).
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl PacketThread {
    /// Builds the runtime (I/O and timers, one thread: the one [`PacketThread::run`] starts).
    pub(super) fn new() -> std::io::Result<PacketThread> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(PacketThread {
            runtime: Some(runtime),
        })
    }

    /// Makes this runtime current, so that devices opened while the guard lives register with
    /// its reactor.
    pub(super) fn enter(&self) -> EnterGuard<'_> {
        self.runtime().enter()
    }

    fn runtime(&self) -> &Runtime {
        self.runtime
            .as_ref()
            .expect("the runtime is taken only when dropped")
    }

    /// Starts the thread, which sends and receives until `shutdown` or until the TUN or the
    /// socket breaks. The future ends when the thread has ended; dropped before, it stops the
    /// thread.
    pub(super) fn run(
        self,
        shared: Arc<Shared>,
        shutdown: CancellationToken,
    ) -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
        let stop = shutdown.child_token();
        let (ended_tx, ended) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("weft-packets".into())
            .spawn({
                let stop = stop.clone();
                move || {
                    self.runtime().block_on(crate::fault::guard(
                        "packets",
                        true,
                        run(shared, stop),
                    ));
                    drop(self);
                    let _ = ended_tx.send(());
                }
            })?;
        // Made before the future first runs, so that one dropped unpolled still stops the thread.
        let stop_on_drop = stop.drop_guard();
        Ok(async move {
            let _stop = stop_on_drop;
            if ended.await.is_err() {
                tracing::error!("the packet thread ended without a word (a panic)");
            }
        })
    }
}

/// Which device the reactor found ready.
enum Ready {
    Tun,
    Udp,
}

/// Batches one device yields in a row before the loop looks at the other, without a trip
/// through `select!` (and a waiter registered and dropped on the idle device) for every TUN
/// packet. Neither direction starves the other: each read spends a unit of the task's budget,
/// so the thread yields to its reactor at least every 128 reads (tokio's budget) and sees the
/// other device's readiness, and a send never waits for the socket (`send::send_runs`).
const TURN: usize = 32;

/// Runs both directions until `stop`, or until either device breaks: each turn takes up to
/// [`TURN`] batches from whichever device the reactor found ready, picked at random when both
/// are. After a datagram of TCP or ICMP written to the TUN it reads the TUN at once, without
/// the reactor: the kernel handles a written packet inside the write, so an echo's reply or a
/// TCP acknowledgement is often queued by the time the write returns, and it leaves sealed
/// before the next datagram is opened.
async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let mut outbound = Outbound::new(&shared);
    let mut inbound = Inbound::new(&shared);
    // One wait for the stop, polled by every select: made afresh in each, it joined and left
    // the token's waiter list (a lock each way) once per batch.
    let stopped = stop.cancelled();
    tokio::pin!(stopped);
    loop {
        let ready = tokio::select! {
            () = &mut stopped => return,
            ready = shared.tun.readable() => ready.map(|()| Ready::Tun),
            ready = shared.udp.readable() => ready.map(|()| Ready::Udp),
        };
        let flow = match ready {
            Ok(Ready::Tun) => send(&shared, &mut outbound).await,
            Ok(Ready::Udp) => receive(&shared, &mut inbound, &mut outbound).await,
            Err(e) => {
                tracing::error!(error = %e, "the packet thread's reactor failed; the data plane stops");
                return;
            }
        };
        if flow.is_break() {
            return;
        }
    }
}

/// Reads and sends up to [`TURN`] batches, until the TUN has no more.
async fn send(shared: &Shared, outbound: &mut Outbound) -> ControlFlow<()> {
    for _ in 0..TURN {
        if !outbound.turn(shared, Read::Ready).await? {
            break;
        }
    }
    ControlFlow::Continue(())
}

/// Receives up to [`TURN`] batches, until the socket has no more. After each datagram whose
/// write held a packet the kernel may answer at once (TCP, ICMP), it reads the TUN once, right
/// away, and sends what the kernel answered meanwhile: the answer leaves before the next
/// datagram is opened, as it would through a tunnel that handles one datagram at a time. One
/// read, not until the TUN is empty: anything more was reported to the reactor and is read in
/// a later turn. Not after UDP alone: nothing answers it inside the write, and the read would
/// only cost a system call.
async fn receive(
    shared: &Shared,
    inbound: &mut Inbound,
    outbound: &mut Outbound,
) -> ControlFlow<()> {
    for _ in 0..TURN {
        let answered = async || outbound.turn(shared, Read::Now).await.map_continue(|_| ());
        if !inbound.turn(shared, answered).await? {
            break;
        }
    }
    ControlFlow::Continue(())
}
