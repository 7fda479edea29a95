//! Recent key-value deletions, kept so that a merge can carry them: when two clusters that
//! formed apart meet, a key one side deleted must not come back from the other side's copy, and
//! the other side's copy of a key this side deleted must go (see [`crate::ledger::merge`]).
//!
//! Only the last [`MAX_TOMBSTONES`] deletions are kept, holding at most [`MAX_TOMBSTONE_BYTES`]
//! of bucket names and keys, oldest dropped first, so deletions never grow the state without
//! bound. Writing a key again forgets its deletion.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Deletions kept at most.
pub const MAX_TOMBSTONES: usize = 1024;

/// Bytes of bucket names and keys the kept deletions hold at most.
pub const MAX_TOMBSTONE_BYTES: usize = 64 * 1024;

/// One deleted key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    pub bucket: String,
    pub key: String,
}

impl Tombstone {
    fn bytes(&self) -> usize {
        self.bucket.len() + self.key.len()
    }

    fn is(&self, bucket: &str, key: &str) -> bool {
        self.bucket == bucket && self.key == key
    }
}

/// The recent deletions, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Tombstones(VecDeque<Tombstone>);

impl Tombstones {
    /// Records that `key` of `bucket` was deleted, dropping the oldest deletions past the
    /// bounds. A key too long for the bound on its own is not kept.
    pub fn record(&mut self, bucket: &str, key: &str) {
        self.forget(bucket, key);
        let tombstone = Tombstone {
            bucket: bucket.to_string(),
            key: key.to_string(),
        };
        if tombstone.bytes() > MAX_TOMBSTONE_BYTES {
            return;
        }
        self.0.push_back(tombstone);
        let mut bytes: usize = self.0.iter().map(Tombstone::bytes).sum();
        while self.0.len() > MAX_TOMBSTONES || bytes > MAX_TOMBSTONE_BYTES {
            let Some(oldest) = self.0.pop_front() else {
                break;
            };
            bytes -= oldest.bytes();
        }
    }

    /// Forgets the deletion of `key` of `bucket`, written again.
    pub fn forget(&mut self, bucket: &str, key: &str) {
        self.0.retain(|t| !t.is(bucket, key));
    }

    /// Whether a deletion of `key` of `bucket` is kept.
    pub fn contains(&self, bucket: &str, key: &str) -> bool {
        self.0.iter().any(|t| t.is(bucket, key))
    }

    /// The kept deletions, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Tombstone> {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deletion_is_kept_until_written_again_or_pushed_out_by_newer_ones() {
        let mut tombstones = Tombstones::default();
        tombstones.record("b", "k");
        tombstones.record("b", "k");
        assert!(tombstones.contains("b", "k"));
        assert_eq!(tombstones.iter().count(), 1, "one entry per key");
        tombstones.forget("b", "k");
        assert!(!tombstones.contains("b", "k"));

        for i in 0..MAX_TOMBSTONES + 10 {
            tombstones.record("b", &i.to_string());
        }
        assert_eq!(tombstones.iter().count(), MAX_TOMBSTONES);
        assert!(!tombstones.contains("b", "0"), "the oldest went first");
        assert!(tombstones.contains("b", &(MAX_TOMBSTONES + 9).to_string()));
    }

    #[test]
    fn long_keys_are_bounded_by_bytes() {
        let mut tombstones = Tombstones::default();
        let long = "x".repeat(MAX_TOMBSTONE_BYTES / 4);
        for i in 0..8 {
            tombstones.record("b", &format!("{i}{long}"));
        }
        let bytes: usize = tombstones.iter().map(Tombstone::bytes).sum();
        assert!(bytes <= MAX_TOMBSTONE_BYTES);
        assert!(tombstones.contains("b", &format!("7{long}")));
        assert!(!tombstones.contains("b", &format!("0{long}")));
        let kept = tombstones.iter().count();
        tombstones.record("b", &"y".repeat(MAX_TOMBSTONE_BYTES + 1));
        assert_eq!(
            tombstones.iter().count(),
            kept,
            "a key longer than the bound is not kept and pushes nothing out"
        );
    }
}
