//! The invariants the simulation checks. After every step, safety: no part of a ledger has
//! stopped, at most one node leads under each leader id of a cluster, no address held by two
//! members, and one state per cluster and applied index (every node that applied a cluster's
//! log to index i holds the same state).
//!
//! A leader id is openraft's: a term and the raft node id that won it. In its default mode
//! (weft does not enable `single-term-leader`) a term may see several leaders, each under its
//! own id, ordered by node id, and log entries carry the whole leader id, so raft's log
//! matching holds as in one-leader-per-term raft. What must never happen is two nodes leading
//! under one id: a node that came back under a raft id it had before a wipe. Once the network
//! has healed, convergence: every node in one cluster under one leader, holding every
//! acknowledged write and every node as a member with an address, under this weft's rules.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use crate::ledger::Ledger;
use crate::ledger::state::{ClusterId, LedgerState, RULES};

use super::BUCKET;

/// What the checks remember across steps.
#[derive(Default)]
pub struct Checker {
    /// (cluster, term, raft node id) → the node (by index) that led under that leader id.
    leaders: BTreeMap<(ClusterId, u64, u64), usize>,
    /// (cluster, applied index) → digest of the state there.
    states: BTreeMap<(ClusterId, u64), [u8; 32]>,
    /// Each node's state as last checked: a state not replaced since passed its checks then,
    /// and encoding it again for its digest was a tenth of the simulation's time.
    checked: BTreeMap<usize, Arc<LedgerState>>,
}

impl Checker {
    /// Checks the safety invariants over the running nodes' ledgers.
    pub fn step(&mut self, ledgers: &[(usize, &Ledger)]) -> Result<(), String> {
        for &(index, ledger) in ledgers {
            // The daemon stops when a part of its ledger stops: that is a crash, not a fault
            // the mesh is meant to ride out.
            if let Some(part) = ledger.stopped_part() {
                return Err(format!("n{index}: {part} stopped"));
            }
            let state = ledger.state();
            let Some(cluster) = state.cluster() else {
                continue;
            };
            let metrics = ledger.raft().metrics().borrow().clone();
            if metrics.state.is_leader() {
                let id = (cluster, metrics.current_term, ledger.node_id());
                let leader = *self.leaders.entry(id).or_insert(index);
                if leader != index {
                    return Err(format!(
                        "two nodes led term {} in cluster {cluster} as raft node {}: n{leader} and \
                         n{index}",
                        metrics.current_term,
                        ledger.node_id()
                    ));
                }
            }
            if self
                .checked
                .get(&index)
                .is_some_and(|checked| Arc::ptr_eq(checked, &state))
            {
                continue;
            }
            let mut held = BTreeSet::new();
            for (peer, member) in state.members() {
                if let Some(address) = member.address
                    && !held.insert(address)
                {
                    return Err(format!(
                        "n{index} at index {}: {address} is held twice (once by {peer})",
                        state.applied()
                    ));
                }
            }
            let digest: [u8; 32] = Sha256::digest(state.snapshot()).into();
            let known = *self
                .states
                .entry((cluster, state.applied()))
                .or_insert(digest);
            if known != digest {
                return Err(format!(
                    "n{index} holds a state of cluster {cluster} at index {} unlike another node's at the same index",
                    state.applied()
                ));
            }
            self.checked.insert(index, state);
        }
        Ok(())
    }
}

impl Checker {
    /// The digest of the state of `cluster` at applied index `applied`, once a node showed it.
    pub fn digest(&self, cluster: ClusterId, applied: u64) -> Option<[u8; 32]> {
        self.states.get(&(cluster, applied)).copied()
    }
}

/// Why the nodes have not converged yet, or `None` once they have: `peers` are all the nodes'
/// PeerIds, `acknowledged` the keys of every write that was acknowledged.
pub fn unconverged(
    ledgers: &[(usize, &Ledger)],
    peers: &[String],
    acknowledged: &BTreeSet<String>,
) -> Option<String> {
    if ledgers.len() < peers.len() {
        return Some(format!("{} of {} nodes run", ledgers.len(), peers.len()));
    }
    let first = ledgers.first()?.1.status();
    if first.cluster_id.is_none() || first.leader.is_none() {
        return Some("n0 has no cluster or no leader".to_string());
    }
    for &(index, ledger) in ledgers {
        let status = ledger.status();
        if status.cluster_id != first.cluster_id || status.leader != first.leader {
            return Some(format!(
                "n{index} is in cluster {:?} under {:?}, n0 in {:?} under {:?}",
                status.cluster_id, status.leader, first.cluster_id, first.leader
            ));
        }
        let state = ledger.state();
        let written = state.bucket(BUCKET);
        if let Some(missing) = acknowledged
            .iter()
            .find(|key| written.is_none_or(|w| !w.contains_key(*key)))
        {
            return Some(format!("n{index} lacks the acknowledged write {missing}"));
        }
        if let Some(peer) = peers.iter().find(|peer| {
            state
                .members()
                .get(*peer)
                .is_none_or(|m| m.address.is_none())
        }) {
            return Some(format!("n{index} holds no address for {peer}"));
        }
        // Once trusted machines hold most voter seats, only a trusted one leads. A machine
        // holding two seats (its old raft id's too) holds one that votes.
        let trusted = state.trusted();
        let held = status
            .voters
            .iter()
            .filter(|v| trusted.contains(*v))
            .collect::<BTreeSet<_>>()
            .len();
        if held * 2 > status.voters.len()
            && status.leader.as_ref().is_some_and(|l| !trusted.contains(l))
        {
            return Some(format!(
                "n{index} follows an untrusted leader, though trusted machines hold {held} of \
                 its {} voter seats",
                status.voters.len()
            ));
        }
        // Every node runs this weft, so the leader adopts its rules once all hold a seat's record.
        if state.rules() != RULES {
            return Some(format!(
                "n{index} applies the ledger's rules of version {}, not {RULES}",
                state.rules()
            ));
        }
    }
    None
}
