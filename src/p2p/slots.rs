//! The inbound raw streams of admitted peers (data-plane frames, raft streams): accepted only
//! from a peer admitted now, counted so that a peer cannot open them without bound (each
//! stream takes a slot, per peer and in all, and gives it back when its task drops it), and
//! each served by a task the accepting task owns.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use futures::StreamExt as _;
use libp2p::PeerId;
use tokio_util::sync::CancellationToken;

use super::P2pHandle;

/// Serves the streams `incoming` brings until `shutdown` (or the swarm ends): each from an
/// admitted peer with a slot free gets `serve(slot, stream)` as a task of its own, owned here;
/// others are closed. `what` names the streams in logs.
pub async fn serve_admitted<F, Fut>(
    p2p: &P2pHandle,
    mut incoming: libp2p_stream::IncomingStreams,
    slots: StreamSlots,
    what: &'static str,
    shutdown: CancellationToken,
    mut serve: F,
) where
    F: FnMut(StreamSlot, libp2p::Stream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut served = tokio::task::JoinSet::new();
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return,
            Some(done) = served.join_next() => {
                if let Err(e) = done
                    && e.is_panic()
                {
                    tracing::error!(error = %e, "a task serving a {what} panicked");
                }
                continue;
            }
            next = incoming.next() => next,
        };
        let Some((peer, stream)) = next else { return };
        if !p2p.is_admitted(&peer) {
            tracing::debug!(%peer, "{what} from a peer that is not admitted; closed");
            continue;
        }
        let Some(slot) = slots.take(peer) else {
            tracing::debug!(%peer, "too many {what}s; closed");
            continue;
        };
        served.spawn(serve(slot, stream));
    }
}

/// The slots of one kind of inbound stream.
#[derive(Debug, Clone)]
pub struct StreamSlots {
    open: Arc<Mutex<HashMap<PeerId, usize>>>,
    per_peer: usize,
    total: usize,
}

/// One inbound stream's slot, given back when dropped.
#[derive(Debug)]
pub struct StreamSlot {
    peer: PeerId,
    open: Arc<Mutex<HashMap<PeerId, usize>>>,
}

impl StreamSlot {
    /// The peer that holds this slot.
    pub fn peer(&self) -> PeerId {
        self.peer
    }
}

impl StreamSlots {
    /// Room for `per_peer` streams of each peer, `total` in all.
    pub fn new(per_peer: usize, total: usize) -> Self {
        StreamSlots {
            open: Arc::default(),
            per_peer,
            total,
        }
    }

    /// A slot for another stream of `peer`, unless it holds its share or every slot is taken.
    pub fn take(&self, peer: PeerId) -> Option<StreamSlot> {
        let mut counts = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let total: usize = counts.values().sum();
        let count = counts.entry(peer).or_default();
        if *count >= self.per_peer || total >= self.total {
            if *count == 0 {
                counts.remove(&peer);
            }
            return None;
        }
        *count += 1;
        Some(StreamSlot {
            peer,
            open: self.open.clone(),
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut counts = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_holds_at_most_its_share_of_inbound_streams() {
        let slots = StreamSlots::new(2, 16);
        let (peer, other) = (PeerId::random(), PeerId::random());
        let first = slots.take(peer).expect("a first stream");
        let _second = slots.take(peer).expect("a replacement");
        assert!(slots.take(peer).is_none());
        assert!(slots.take(other).is_some());
        drop(first);
        assert!(slots.take(peer).is_some());
    }

    #[test]
    fn all_peers_together_hold_at_most_the_total() {
        let slots = StreamSlots::new(2, 3);
        let held: Vec<StreamSlot> = (0..3)
            .map(|_| slots.take(PeerId::random()).expect("room"))
            .collect();
        assert!(
            slots.take(PeerId::random()).is_none(),
            "every slot is taken"
        );
        assert_eq!(
            slots.open.lock().unwrap().len(),
            3,
            "a refused peer leaves no entry"
        );
        drop(held);
        assert!(slots.take(PeerId::random()).is_some());
    }
}
