//! Recovery after quorum loss (`weft ledger recover --force`): when too many voters are gone for
//! good, the survivors can never commit again. Recovery makes this node leave its stuck cluster
//! and seed a new one from its own applied state; the autopilot forms it at once, with this node
//! as the only voter, and the seed becomes its first entry ([`Command::Recover`]).
//!
//! The new cluster ranks just older than the one it replaces, so the other survivors, whose
//! cluster has no leader, merge into it (see [`super::merge`]) as soon as they meet it. The risk
//! is what this node had not applied: entries the old cluster committed after this node's last
//! applied one are lost, except what the other members carry over when they merge.
//!
//! [`Command::Recover`]: super::state::Command::Recover

use std::io;
use std::path::Path;
use std::time::Duration;

use rand::RngCore as _;
use serde::{Deserialize, Serialize};

use super::pending::PendingFile;
use super::state::{ClusterId, Command, LedgerState};
use super::{Ledger, LedgerError};

/// The seed, in the raft directory, until the new cluster has committed it.
const SEED: PendingFile = PendingFile::new("recovered.json", "recovery seed");
/// How long the cluster gets to prove it still commits before recovery goes ahead.
const QUORUM_PROBE: Duration = Duration::from_secs(5);

/// What `weft ledger recover` without `--force` prints instead of acting.
pub const RISK: &str = "\
weft ledger recover makes this node leave its cluster and start a new one from its own copy of
the ledger, as the only voter. Use it only when the cluster has lost its quorum for good (most
voters destroyed): entries the old cluster committed that this node had not applied are lost,
and the members still in the old cluster drop it and rejoin the new one. The node refuses while
its cluster still commits writes. Run again with --force to proceed.";

/// The new cluster's first entry: its id and the state it starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seed {
    pub cluster: ClusterId,
    pub state: LedgerState,
}

/// What recovery did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recovery {
    pub previous_cluster: String,
    pub cluster: String,
    /// Members the seed holds.
    pub members: usize,
    /// The last entry of the old cluster this node had applied.
    pub applied_index: u64,
}

/// Why recovery refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error(
        "the cluster still commits writes; recovery is only for a cluster that lost its quorum"
    )]
    HasQuorum,
    #[error("this node belongs to no cluster yet; there is nothing to recover")]
    NoCluster,
    #[error("cannot write the seed {path}: {reason}")]
    Seed { path: String, reason: String },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// Leaves the stuck cluster and seeds a new one from this node's applied state.
pub async fn recover(ledger: &Ledger) -> Result<Recovery, RecoverError> {
    let state = ledger.state();
    let previous = state.cluster().ok_or(RecoverError::NoCluster)?;
    if still_commits(ledger).await {
        return Err(RecoverError::HasQuorum);
    }
    let seed = Seed {
        cluster: ClusterId {
            created_at: previous.created_at.saturating_sub(1),
            id: crate::chance::Chance.next_u64(),
        },
        state: std::sync::Arc::unwrap_or_clone(state),
    };
    save_seed(ledger.dir(), &seed).map_err(|e| RecoverError::Seed {
        path: SEED.path(ledger.dir()).display().to_string(),
        reason: e.to_string(),
    })?;
    ledger.reset().await?;
    tracing::warn!(previous = %previous, cluster = %seed.cluster, "ledger recovered: seeding a new cluster");
    Ok(Recovery {
        previous_cluster: previous.to_string(),
        cluster: seed.cluster.to_string(),
        members: seed.state.members().len(),
        applied_index: seed.state.applied(),
    })
}

/// Whether a write still commits within [`QUORUM_PROBE`]: the cluster has a leader backed by a
/// quorum. The probe renews this node's lease, which is harmless when it commits.
async fn still_commits(ledger: &Ledger) -> bool {
    let probe = Command::Renew {
        peer: ledger.p2p().peer_key().to_string(),
        now: ledger.wall_now(),
    };
    matches!(
        tokio::time::timeout(QUORUM_PROBE, ledger.propose(probe)).await,
        Ok(Ok(_))
    )
}

fn save_seed(dir: &Path, seed: &Seed) -> io::Result<()> {
    SEED.save(dir, seed)
}

/// The seed of a recovery not yet committed, if any.
pub fn load_seed(dir: &Path) -> Option<Seed> {
    SEED.load(dir)
}

/// Whether a seed is kept: a recovery not yet committed, or committed but not yet folded into
/// a snapshot.
pub fn has_seed(dir: &Path) -> bool {
    SEED.path(dir).exists()
}

/// Forgets the seed once the new cluster has committed it and holds it in a snapshot.
pub fn clear_seed(dir: &Path) {
    SEED.clear(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_survives_a_restart_until_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let seed = Seed {
            cluster: ClusterId {
                created_at: 9,
                id: 4,
            },
            state: LedgerState::new("10.1.0.0/24".parse().unwrap()),
        };
        save_seed(dir.path(), &seed).unwrap();
        assert_eq!(load_seed(dir.path()), Some(seed));
        clear_seed(dir.path());
        assert_eq!(load_seed(dir.path()), None);
    }

    #[test]
    fn a_recovered_state_replaces_an_empty_ledger_under_the_new_cluster_id() {
        let mut old = LedgerState::new("10.1.0.0/24".parse().unwrap());
        old.apply(
            1,
            &Command::KvPut {
                bucket: "b".into(),
                key: "k".into(),
                value: "v".into(),
            },
        );
        let cluster = ClusterId {
            created_at: 1,
            id: 2,
        };
        let mut fresh = LedgerState::new("10.1.0.0/24".parse().unwrap());
        fresh.apply(
            3,
            &Command::Recover {
                cluster,
                state: Box::new(old.clone()),
            },
        );
        assert_eq!(fresh.cluster(), Some(cluster));
        assert_eq!(fresh.bucket("b"), old.bucket("b"));
        assert_eq!(fresh.applied(), 3);
        fresh.apply(
            4,
            &Command::Genesis(ClusterId {
                created_at: 0,
                id: 0,
            }),
        );
        assert_eq!(
            fresh.cluster(),
            Some(cluster),
            "a later genesis changes nothing"
        );
    }
}
