//! The ledger: replicated state that the mesh decides by consensus (overlay addresses, roles,
//! DNS records, key-value buckets, the deny list, sealed secrets).
//!
//! [`state`] is the pure state machine every replica applies in log order. The raft glue
//! (openraft over libp2p, redb storage), cluster formation and the followers that receive
//! committed entries by gossip build on it.

pub mod raft;
pub mod state;
