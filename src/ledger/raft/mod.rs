//! openraft glue for the ledger: the type configuration, and ([`store`]) the redb-backed log
//! storage and the state machine that applies committed entries to [`LedgerState`].
//!
//! [`LedgerState`]: crate::ledger::state::LedgerState

pub mod store;

use std::io::Cursor;

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
    /// node ids, nodes addressed by PeerId.
    pub LedgerTypes:
        D = Command,
        R = Outcome,
        NodeId = u64,
        Node = LedgerNode,
        SnapshotData = Cursor<Vec<u8>>,
);
