//! Cluster life, run by every node once a second: form or join a cluster, and, on the leader,
//! write the cluster's genesis and promote learners to voters. Every member also makes sure the
//! ledger holds its own member record (and so an overlay address).
//!
//! Voters: the leader replaces a voter that no admitted connection has reached for
//! `voter_timeout` with a live learner, keeping the voter count odd.
//!
//! Leases: the leader expires the lease of a member that no admitted connection has reached for
//! `lease_timeout`, which frees its address; liveness itself never goes through the log.
//!
//! Formation: a node outside any cluster waits `formation_wait`, then asks every admitted peer
//! for its cluster. If one has a cluster with a known leader, it asks that leader to add it;
//! if none has, the node with the lowest PeerId among itself and its admitted peers initialises
//! a one-voter cluster and the others join it. A lone node thus forms its own cluster.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::RngCore as _;
use tokio_util::sync::CancellationToken;

use super::raft::network::{Hello, LedgerRpc, call};
use super::state::{ClusterId, Command, LeaseState};
use super::{Ledger, LedgerConfig, service};

/// File holding this node's raft id, made with the raft directory.
const NODE_ID_FILE: &str = "node-id";
/// How long one hello may take.
const HELLO_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a join may take (the leader waits for the learner to catch up).
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a node re-proposes its member record while the ledger lacks it.
const RECORD_RETRY: Duration = Duration::from_secs(3);

/// What this node asks the ledger to record about itself.
#[derive(Debug, Clone)]
pub struct MemberFacts {
    pub hostname: String,
    /// An overlay address to ask for.
    pub requested: Option<Ipv4Addr>,
}

/// This node's raft id: read from the raft directory, or drawn at random and stored on first
/// start (a re-imaged machine is a new raft node).
pub fn node_id(dir: &Path) -> io::Result<u64> {
    let path = dir.join(NODE_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} does not hold a raft node id", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let id = loop {
                let id = rand::rngs::OsRng.next_u64();
                if id != 0 {
                    break id;
                }
            };
            std::fs::write(&path, format!("{id}\n"))?;
            Ok(id)
        }
        Err(e) => Err(e),
    }
}

/// Runs until `shutdown`.
pub async fn run(
    ledger: Ledger,
    config: LedgerConfig,
    facts: MemberFacts,
    shutdown: CancellationToken,
) {
    let started = Instant::now();
    let mut last_record_attempt: Option<Instant> = None;
    let mut unreachable_since: HashMap<String, Instant> = HashMap::new();
    let mut voter_unreachable_since: HashMap<u64, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let hello = service::hello(&ledger);
        if hello.in_cluster {
            if hello.leader.as_ref().map(|(id, _)| *id) == Some(ledger.node_id()) {
                lead(&ledger, &config).await;
                replace_unreachable_voters(&ledger, &config, &mut voter_unreachable_since).await;
                expire_unreachable(&ledger, config.lease_timeout, &mut unreachable_since).await;
            } else {
                // A new leader starts counting afresh: it may see members the old one did not.
                unreachable_since.clear();
                voter_unreachable_since.clear();
            }
            let due = last_record_attempt.is_none_or(|t| t.elapsed() >= RECORD_RETRY);
            if due && needs_record(&ledger) {
                last_record_attempt = Some(Instant::now());
                record_self(&ledger, &facts).await;
            }
        } else if started.elapsed() >= config.formation_wait {
            form_or_join(&ledger).await;
        }
    }
}

/// Leader duties: the genesis entry, then voters up to the target.
async fn lead(ledger: &Ledger, config: &LedgerConfig) {
    if ledger.state().cluster().is_none() {
        let cluster = ClusterId {
            created_at: unix_now(),
            id: rand::rngs::OsRng.next_u64(),
        };
        if let Err(e) = ledger.propose(Command::Genesis(cluster)).await {
            tracing::debug!(error = %e, "genesis not committed yet");
        }
    }
    if let Err(e) = service::promote(ledger, config.target_voters).await {
        tracing::debug!(error = %e, "voter promotion failed");
    }
}

/// The PeerIds this node reaches now: its admitted peers and itself.
fn reachable_peers(ledger: &Ledger) -> Vec<String> {
    let p2p = ledger.p2p();
    let mut reachable: Vec<String> = p2p.peers().iter().map(|p| p.peer_id.clone()).collect();
    reachable.push(p2p.peer_id().to_string());
    reachable
}

/// Replaces voters unreachable for `voter_timeout` with reachable learners, one for one.
async fn replace_unreachable_voters(
    ledger: &Ledger,
    config: &LedgerConfig,
    unreachable_since: &mut HashMap<u64, Instant>,
) {
    let reachable = reachable_peers(ledger);
    let metrics = ledger.raft().metrics().borrow().clone();
    let membership = metrics.membership_config.membership();
    let is_reachable = |id: &u64| {
        membership
            .get_node(id)
            .is_some_and(|n| reachable.contains(&n.peer_id))
    };
    let voters: Vec<u64> = membership.voter_ids().collect();
    let now = Instant::now();
    unreachable_since.retain(|id, _| voters.contains(id) && !is_reachable(id));
    let mut dead = Vec::new();
    for id in &voters {
        if is_reachable(id) {
            continue;
        }
        let since = *unreachable_since.entry(*id).or_insert(now);
        if now.duration_since(since) >= config.voter_timeout {
            dead.push(*id);
        }
    }
    if dead.is_empty() {
        return;
    }
    // Replace one for one, so the count stays odd; without a live learner to step in, a dead
    // voter stays (the others still form a quorum) rather than shrinking the group.
    let learners: Vec<u64> = membership
        .learner_ids()
        .filter(|id| is_reachable(id))
        .collect();
    let replaced = dead.len().min(learners.len());
    if replaced == 0 {
        return;
    }
    dead.truncate(replaced);
    let new_voters: std::collections::BTreeSet<u64> = voters
        .iter()
        .copied()
        .filter(|id| !dead.contains(id))
        .chain(learners.into_iter().take(replaced))
        .collect();
    tracing::info!(
        ?dead,
        ?new_voters,
        "replacing voters unreachable past the voter timeout"
    );
    match ledger.raft().change_membership(new_voters, false).await {
        Ok(_) => {
            for id in dead {
                unreachable_since.remove(&id);
            }
        }
        Err(e) => tracing::warn!(error = %e, "voter replacement failed"),
    }
}

/// Expires the leases of live members that no admitted connection has reached for
/// `lease_timeout`.
async fn expire_unreachable(
    ledger: &Ledger,
    lease_timeout: Duration,
    unreachable_since: &mut HashMap<String, Instant>,
) {
    let reachable = reachable_peers(ledger);
    let state = ledger.state();
    let live: Vec<&String> = state
        .members()
        .iter()
        .filter(|(_, m)| m.lease == LeaseState::Live)
        .map(|(peer, _)| peer)
        .collect();
    unreachable_since.retain(|peer, _| live.contains(&peer) && !reachable.contains(peer));
    let now = Instant::now();
    for peer in live {
        if reachable.contains(peer) {
            continue;
        }
        let since = *unreachable_since.entry(peer.clone()).or_insert(now);
        if now.duration_since(since) < lease_timeout {
            continue;
        }
        tracing::info!(%peer, "member unreachable past the lease timeout; expiring its lease");
        match ledger.propose(Command::Expire { peer: peer.clone() }).await {
            Ok(_) => {
                unreachable_since.remove(peer);
            }
            Err(e) => tracing::debug!(%peer, error = %e, "lease expiry not committed"),
        }
    }
}

fn needs_record(ledger: &Ledger) -> bool {
    let me = ledger.p2p().peer_id().to_string();
    let state = ledger.state();
    state.cluster().is_some()
        && state
            .members()
            .get(&me)
            .is_none_or(|m| m.lease == LeaseState::Expired)
}

async fn record_self(ledger: &Ledger, facts: &MemberFacts) {
    let command = Command::Join {
        peer: ledger.p2p().peer_id().to_string(),
        hostname: facts.hostname.clone(),
        dataplane_key: [0; 32],
        endpoints: Vec::new(),
        requested: facts.requested,
        now: unix_now(),
    };
    match ledger.propose(command).await {
        Ok(outcome) => tracing::info!(?outcome, "member record committed"),
        Err(e) => tracing::debug!(error = %e, "member record not committed yet"),
    }
}

/// Outside any cluster: join one an admitted peer knows, or form one if this node has the
/// lowest PeerId and nobody has a cluster.
async fn form_or_join(ledger: &Ledger) {
    let p2p = ledger.p2p();
    let me = p2p.peer_id();
    let peers = p2p.peers();
    let mut hellos = Vec::new();
    for view in peers.iter() {
        let Ok(peer) = view.peer_id.parse() else {
            continue;
        };
        if let Ok(Ok(hello)) =
            tokio::time::timeout(HELLO_TIMEOUT, call::<Hello>(p2p, peer, &LedgerRpc::Hello)).await
        {
            hellos.push(hello);
        }
    }
    if let Some((_, leader)) = hellos
        .iter()
        .filter(|h| h.in_cluster)
        .find_map(|h| h.leader.clone())
    {
        let Ok(peer) = leader.peer_id.parse() else {
            return;
        };
        let join = LedgerRpc::Join {
            node_id: ledger.node_id(),
            node: ledger.node(),
        };
        tracing::info!(leader = %leader.peer_id, "joining the cluster");
        match tokio::time::timeout(JOIN_TIMEOUT, call::<Result<(), String>>(p2p, peer, &join)).await
        {
            Ok(Ok(Ok(()))) => tracing::info!("joined the cluster"),
            Ok(Ok(Err(e))) => tracing::info!(error = %e, "the leader refused the join; retrying"),
            Ok(Err(e)) => tracing::debug!(error = %e, "join request failed; retrying"),
            Err(_) => tracing::debug!("join request timed out; retrying"),
        }
        return;
    }
    if hellos.iter().any(|h| h.in_cluster) {
        // A cluster exists but is electing a leader: wait for it.
        return;
    }
    let lowest = peers
        .iter()
        .map(|v| v.peer_id.clone())
        .chain(std::iter::once(me.to_string()))
        .min();
    if lowest.as_deref() == Some(me.to_string().as_str()) {
        tracing::info!(peers = peers.len(), "no cluster found; forming one");
        let voters = BTreeMap::from([(ledger.node_id(), ledger.node())]);
        if let Err(e) = ledger.raft().initialize(voters).await {
            tracing::warn!(error = %e, "cannot initialise the cluster");
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_id_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = node_id(dir.path()).unwrap();
        assert_eq!(node_id(dir.path()).unwrap(), first);
        assert_ne!(first, 0);
    }

    #[test]
    fn a_corrupt_node_id_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(NODE_ID_FILE), "banana").unwrap();
        assert!(node_id(dir.path()).is_err());
    }
}
