//! The ledger's deny list, enforced below it: whenever the ledger changes, the PeerIds it denies
//! go to the control plane, which closes their connections and refuses them from then on. With
//! no connection a denied node gets no raft RPCs, gossip or feed; the state machine has already
//! removed it from the members, so no address, route or data-plane session is left for it.
//! While the ledger has no cluster (it is being replaced by a merge or a recovery) the last
//! enforced set stands.
//!
//! The live members go down too: the control plane keeps connections to a few of them only,
//! and dials anyone else it hears of, and holds that connection, as before
//! ([`crate::p2p::links`]): a node not among this ledger's live members may be new, of a
//! cluster formed apart, or back after its lease expired, and formation and merges need
//! connections to such nodes. Outside a cluster the set is empty.

use std::collections::HashSet;

use libp2p::PeerId;
use tokio_util::sync::CancellationToken;

use super::Ledger;
use super::state::LeaseState;

/// Keeps the control plane's deny set and member set equal to the ledger's until `shutdown`.
pub async fn enforce(ledger: Ledger, shutdown: CancellationToken) {
    let mut changes = ledger.subscribe();
    let mut enforced: HashSet<PeerId> = HashSet::new();
    let mut told: HashSet<PeerId> = HashSet::new();
    loop {
        // Read and let go: the state held while waiting would be copied on every entry applied.
        let (denied, members, in_cluster) = {
            let state = ledger.state();
            let denied: HashSet<PeerId> = state
                .denied()
                .iter()
                .filter_map(|peer| peer.parse().ok())
                .collect();
            // Outside a cluster (forming, or being replaced by a merge or a recovery) nobody is
            // a member: every node heard of is dialled and kept.
            let members: HashSet<PeerId> = state
                .members()
                .iter()
                .filter(|(_, member)| member.lease == LeaseState::Live)
                .filter_map(|(peer, _)| peer.parse().ok())
                .filter(|_| state.cluster().is_some())
                .collect();
            (denied, members, state.cluster().is_some())
        };
        if members != told {
            if ledger.p2p.set_members(members.clone()).await.is_err() {
                return;
            }
            told = members;
        }
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
