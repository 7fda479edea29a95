//! The ledger's deny list, enforced below it: whenever the ledger changes, the PeerIds it denies
//! go to the control plane, which closes their connections and refuses them from then on. With
//! no connection a denied node gets no raft RPCs, gossip or feed; the state machine has already
//! removed it from the members, so no address, route or data-plane session is left for it.
//! While the ledger has no cluster (it is being replaced by a merge or a recovery) the last
//! enforced set stands.

use std::collections::HashSet;

use libp2p::PeerId;
use tokio_util::sync::CancellationToken;

use super::Ledger;

/// Keeps the control plane's deny set equal to the ledger's until `shutdown`.
pub async fn enforce(ledger: Ledger, shutdown: CancellationToken) {
    let mut changes = ledger.subscribe();
    let mut enforced: HashSet<PeerId> = HashSet::new();
    loop {
        // Read and let go: the state held while waiting would be copied on every entry applied.
        let (denied, in_cluster) = {
            let state = ledger.state();
            let denied: HashSet<PeerId> = state
                .denied()
                .iter()
                .filter_map(|peer| peer.parse().ok())
                .collect();
            (denied, state.cluster().is_some())
        };
        // A ledger without a cluster is one being replaced (a merge, a recovery) before its
        // state is back: lifting every denial meanwhile would let the denied back in.
        if in_cluster && denied != enforced {
            if ledger.p2p.set_denied(denied.clone()).await.is_err() {
                return;
            }
            enforced = denied;
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = changes.changed() => if changed.is_err() { return },
        }
    }
}
