//! openraft glue for the ledger: the type configuration, ([`store`]) the redb-backed log
//! storage and the state machine that applies committed entries to [`LedgerState`], and
//! ([`network`], [`stream`]) raft's RPCs over libp2p.
//!
//! [`LedgerState`]: crate::ledger::state::LedgerState

pub mod network;
pub mod runtime;
pub mod snapshot;
pub mod store;
pub mod stream;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ledger::state::{Command, Outcome};

/// What openraft knows of a raft node: the libp2p PeerId it is reached at.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerNode {
    pub peer_id: String,
}

impl std::fmt::Display for LedgerNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.peer_id)
    }
}

openraft::declare_raft_types!(
    /// The ledger's raft types: commands and outcomes of [`crate::ledger::state`], random u64
    /// node ids, nodes addressed by PeerId, tokio with the ledger's randomness.
    pub LedgerTypes:
        D = Command,
        R = Outcome,
        NodeId = u64,
        Node = LedgerNode,
        SnapshotData = snapshot::SnapshotFile,
        AsyncRuntime = runtime::LedgerRuntime,
);

/// How long one snapshot chunk may take to reach its receiver, and the last one to be installed
/// there: libp2p's own limit for a raft request. A chunk of 192 KiB is about 600 kB as JSON;
/// openraft's default of 200 ms would need 25 Mbit/s, and a chunk past it is sent again from
/// the first, so a new raft node behind a slower link never got a snapshot.
const SNAPSHOT_CHUNK_TIMEOUT: Duration = Duration::from_secs(30);

/// Raft timing for a mesh whose links may be relayed across the internet: heartbeats every
/// 500 ms, elections after 1.5–3 s of silence, a snapshot every 5,000 entries; appends and
/// snapshot chunks sized to fit one message ([`crate::ledger::limits`]), a chunk given
/// [`SNAPSHOT_CHUNK_TIMEOUT`].
pub fn config() -> openraft::Config {
    openraft::Config {
        cluster_name: "weft-ledger".to_string(),
        heartbeat_interval: Duration::from_millis(500).as_millis() as u64,
        election_timeout_min: Duration::from_millis(1500).as_millis() as u64,
        election_timeout_max: Duration::from_millis(3000).as_millis() as u64,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(5000),
        max_payload_entries: crate::ledger::limits::APPEND_BATCH,
        snapshot_max_chunk_size: crate::ledger::limits::SNAPSHOT_CHUNK as u64,
        install_snapshot_timeout: SNAPSHOT_CHUNK_TIMEOUT.as_millis() as u64,
        ..Default::default()
    }
}
