//! The packet thread: the send and receive loops ([`super::send`], [`super::recv`]) run
//! together, as two futures of one `block_on`, on one OS thread of their own, under a
//! single-threaded runtime whose reactor the TUN and the UDP socket are registered with. The
//! rest of the daemon (libp2p, raft, the data plane's control task) stays on the main runtime.
//!
//! Why: on the main runtime's work-stealing workers, a packet's readiness was seen by one
//! worker and its task often run by another, so every packet that turned around in the node (a
//! ping's echo, a TCP acknowledgement) crossed threads. Here the datagram is opened, written
//! to the TUN, and the answer the kernel queued is read and sent by the same thread, as one
//! thread of boringtun does. Measured in BENCHMARKS.md ("The packet thread"): about 20 % more
//! single-stream TCP throughput (the median of ten paired runs), the median ping level. The cost:
//! both directions share one core, so a node seals and opens on one core at most (one pipeline
//! per core needs a multi-queue TUN).
//!
//! The devices must be opened inside [`PacketThread::enter`] so that they register with this
//! runtime; other tasks may still use them (the control task's probes, fallback frames written
//! to the TUN), their readiness being driven by this thread.

use std::sync::Arc;

use tokio::runtime::{EnterGuard, Runtime};
use tokio_util::sync::CancellationToken;

use super::{Shared, recv, send};

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

    /// Starts the thread, which sends and receives until `shutdown` or until either direction
    /// ends (a broken TUN or socket), then stops the other. The future ends when the thread has
    /// ended; dropped before, it stops the thread.
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
                    self.runtime().block_on(both(shared, stop));
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

/// Runs both directions; the first to end stops the other.
async fn both(shared: Arc<Shared>, stop: CancellationToken) {
    let send = crate::fault::guard("packets", true, send::run(shared.clone(), stop.clone()));
    let recv = recv::run(shared, stop.clone());
    tokio::pin!(send, recv);
    tokio::select! {
        () = &mut send => {
            stop.cancel();
            recv.await;
        }
        () = &mut recv => {
            stop.cancel();
            send.await;
        }
    }
}
