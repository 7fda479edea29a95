//! Token rotation (`weft token rotate`): moving the whole network to a new token without
//! downtime, so that a machine that was denied, and still holds the old token, is locked out
//! for good once the grace window closes.
//!
//! - [`make`]: the rotation one node proposes: a fresh token of the same kind and settings,
//!   sealed for every member the ledger holds (a denied member is not one), and the ledger's
//!   secrets sealed again under it.
//! - [`seal`]: the sealing itself, pure.
//! - [`follow`]: what every node does with the last rotation in its ledger: opens its copy,
//!   keeps it on disk and makes it current, accepting the token before until the window closes.
//! - [`file`]: the file that keeps a rotated token across restarts, and which token a starting
//!   node uses when its configuration still names an older one.
//! - [`pages`]: the pages of members' copies a large rotation made here still has to commit,
//!   proposed again until the ledger holds them.

pub mod file;
pub mod follow;
pub mod make;
pub mod pages;
pub mod seal;

use crate::token::NetworkId;

/// The longest grace window (30 days): asked for at the API, and the most a node grants
/// whatever a rotation in the ledger says, so that no member can keep a replaced token
/// accepted for ever (or keep every later rotation waiting for the window to close).
pub const MAX_GRACE_SECS: u64 = 30 * 24 * 3600;

/// A network id as the ledger and the API show it (16 hex digits).
pub fn hex(id: NetworkId) -> String {
    id.to_string()
}
