//! Key-value buckets (edgevpn's open semantics: any member may write; the compatibility API
//! stores there) and sealed secrets (ciphertext only: the state machine never sees a secret in
//! clear, see [`crate::ledger::sealed`]).
//!
//! Together with the DNS records ([`super::dns`]) they hold at most [`SHARED_DATA_LIMIT`]
//! bytes as the state encodes them (JSON: a control character takes six bytes, a sealed byte
//! up to four), so the whole state stays within what a raft snapshot and a follower's paged
//! catch-up take ([`super::bounds`] sums it). A write that would pass
//! the limit is refused ([`Outcome::LedgerFull`]); deletions and writes that do not grow the
//! data always apply. The cluster's own sealed secret (the k3s
//! join token and kubeconfig) is outside the count, so members filling the ledger cannot keep
//! a control plane from publishing it; the per-write limit bounds it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ClusterId, LedgerState, Outcome};

/// What a merge carries of one key-value entry from the cluster it left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Carried {
    /// The entry's value there.
    Value(String),
    /// The entry was deleted there.
    Deleted,
}

/// The bucket a merge keeps the values it displaces from `bucket` in, for values written in
/// `cluster`: `merged/<cluster>/<bucket>`, each under its own key. The cluster id is fixed-width
/// hex, so no two (cluster, bucket) pairs share a bucket.
pub fn merged_bucket(cluster: Option<ClusterId>, bucket: &str) -> String {
    match cluster {
        Some(cluster) => format!("merged/{cluster}/{bucket}"),
        None => format!("merged/unknown/{bucket}"),
    }
}

/// Encoded bytes of bucket names, keys, values, secret names, sealed secrets and DNS records
/// the ledger holds at most: room for what Kairos and operators keep there, with the rest of the state,
/// well within the largest snapshot or catch-up a node takes (256 MiB).
pub const SHARED_DATA_LIMIT: usize = 64 * 1024 * 1024;

/// What a text costs encoded in the state's JSON.
pub(super) fn text_cost(text: &str) -> usize {
    text.chars()
        .map(|c| match c {
            '\u{0}'..='\u{1f}' => 6,
            '"' | '\\' => 2,
            c => c.len_utf8(),
        })
        .sum()
}

/// The JSON around each entry or secret (quotes, colon, comma, brackets), so that many tiny
/// entries count as what they encode to.
const ENTRY_OVERHEAD: usize = 8;

/// What a key-value entry costs (its bucket's name counted with each entry, more than it
/// encodes to).
fn entry_cost(bucket: &str, key: &str, value: &str) -> usize {
    text_cost(bucket) + text_cost(key) + text_cost(value) + ENTRY_OVERHEAD
}

/// What a secret costs (its bytes are JSON numbers: up to three digits and a comma each); the
/// cluster's own secret costs nothing.
fn secret_cost(name: &str, sealed: &[u8]) -> usize {
    if name == crate::ledger::sealed::CLUSTER {
        0
    } else {
        text_cost(name) + 4 * sealed.len() + ENTRY_OVERHEAD
    }
}

/// The count [`LedgerState::shared_bytes`] makes, kept up to date as writes apply so that a
/// write does not scan the whole ledger. It is not serialized (a restored state counts once,
/// at its first write) and takes no part in comparisons.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct SharedCount(Option<usize>);

impl PartialEq for SharedCount {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for SharedCount {}

impl LedgerState {
    /// [`LedgerState::shared_bytes`], counted once and then kept.
    pub(super) fn shared_total(&mut self) -> usize {
        match self.shared.0 {
            Some(total) => total,
            None => {
                let total = self.shared_bytes();
                self.shared.0 = Some(total);
                total
            }
        }
    }

    /// Whether a write that replaces `old` bytes with `new` fits; if it does, the count is
    /// moved to what the ledger holds after it.
    pub(super) fn make_room(&mut self, old: usize, new: usize) -> bool {
        let after = self.shared_total() - old + new;
        if new > old && after > SHARED_DATA_LIMIT {
            return false;
        }
        self.shared.0 = Some(after);
        true
    }

    pub(super) fn kv_put(&mut self, bucket: &str, key: &str, value: &str) -> Outcome {
        let old = self
            .kv
            .get(bucket)
            .and_then(|b| b.get(key))
            .map_or(0, |v| entry_cost(bucket, key, v));
        if !self.make_room(old, entry_cost(bucket, key, value)) {
            return Outcome::LedgerFull;
        }
        self.kv
            .entry(bucket.to_string())
            .or_default()
            .insert(key.to_string(), value.to_string());
        self.deleted.forget(bucket, key);
        Outcome::Done
    }

    pub(super) fn put_secret(&mut self, name: &str, sealed: &[u8]) -> Outcome {
        let old = self.secrets.get(name).map_or(0, |s| secret_cost(name, s));
        if !self.make_room(old, secret_cost(name, sealed)) {
            return Outcome::LedgerFull;
        }
        self.secrets.insert(name.to_string(), sealed.to_vec());
        Outcome::Done
    }

    pub(super) fn delete_secret(&mut self, name: &str) -> Outcome {
        if let Some(sealed) = self.secrets.remove(name) {
            self.make_room(secret_cost(name, &sealed), 0);
        }
        Outcome::Done
    }

    /// Encoded bytes the buckets, secrets and DNS records hold, as counted against
    /// [`SHARED_DATA_LIMIT`].
    pub fn shared_bytes(&self) -> usize {
        let kv: usize = self
            .kv
            .iter()
            .flat_map(|(bucket, entries)| {
                entries
                    .iter()
                    .map(move |(key, value)| entry_cost(bucket, key, value))
            })
            .sum();
        let secrets: usize = self
            .secrets
            .iter()
            .map(|(name, sealed)| secret_cost(name, sealed))
            .sum();
        kv + secrets + self.dns_bytes()
    }

    /// Deletes one key, or the whole bucket when `key` is `None`, recording each key deleted
    /// ([`super::tombstones`]).
    pub(super) fn kv_delete(&mut self, bucket: &str, key: Option<&str>) -> Outcome {
        match key {
            Some(key) => {
                if let Some(entries) = self.kv.get_mut(bucket)
                    && let Some(value) = entries.remove(key)
                {
                    if entries.is_empty() {
                        self.kv.remove(bucket);
                    }
                    self.make_room(entry_cost(bucket, key, &value), 0);
                    self.deleted.record(bucket, key);
                }
            }
            None => {
                let removed = self.kv.remove(bucket).unwrap_or_default();
                let cost = removed
                    .iter()
                    .map(|(key, value)| entry_cost(bucket, key, value))
                    .sum();
                self.make_room(cost, 0);
                // Only the last deletions are kept anyway: recording more would only cost time.
                let skip = removed.len().saturating_sub(super::MAX_TOMBSTONES);
                for key in removed.into_keys().skip(skip) {
                    self.deleted.record(bucket, &key);
                }
            }
        }
        Outcome::Done
    }

    /// Applies an entry a merge carries from the cluster `from`, against the state as it is
    /// now: a value this state lacks is put back, unless this state deleted the key; a value
    /// that differs from the one held, or whose key this state deleted, is kept under
    /// [`merged_bucket`] of `from`; a deletion removes the value held, which is kept under
    /// [`merged_bucket`] of this state's cluster first (when it cannot be kept for lack of room,
    /// nothing is deleted). A deletion of a key this state lacks is recorded, so a copy carried
    /// later by another member does not bring it back.
    pub(super) fn carry(
        &mut self,
        from: ClusterId,
        bucket: &str,
        key: &str,
        carried: &Carried,
    ) -> Outcome {
        let held = self.kv.get(bucket).and_then(|b| b.get(key)).cloned();
        match (carried, held) {
            (Carried::Value(value), Some(held)) if held == *value => Outcome::Done,
            (Carried::Value(value), None) if !self.deleted.contains(bucket, key) => {
                self.kv_put(bucket, key, value)
            }
            (Carried::Value(value), _) => self.keep(&merged_bucket(Some(from), bucket), key, value),
            (Carried::Deleted, Some(held)) => {
                let place = merged_bucket(self.cluster, bucket);
                match self.keep(&place, key, &held) {
                    Outcome::Done => self.kv_delete(bucket, Some(key)),
                    full => full,
                }
            }
            (Carried::Deleted, None) => {
                self.deleted.record(bucket, key);
                Outcome::Done
            }
        }
    }

    /// Puts `value` under `key` of `place` unless it is there already.
    fn keep(&mut self, place: &str, key: &str, value: &str) -> Outcome {
        if self
            .kv
            .get(place)
            .and_then(|b| b.get(key))
            .map(String::as_str)
            == Some(value)
        {
            return Outcome::Done;
        }
        self.kv_put(place, key, value)
    }

    /// The recent key-value deletions.
    pub fn deleted(&self) -> &super::Tombstones {
        &self.deleted
    }

    /// A key-value bucket.
    pub fn bucket(&self, bucket: &str) -> Option<&BTreeMap<String, String>> {
        self.kv.get(bucket)
    }

    /// Every key-value bucket.
    pub fn buckets(&self) -> &BTreeMap<String, BTreeMap<String, String>> {
        &self.kv
    }

    /// Every sealed secret, by name.
    pub fn secrets(&self) -> &BTreeMap<String, Vec<u8>> {
        &self.secrets
    }

    /// A sealed secret.
    pub fn secret(&self, name: &str) -> Option<&[u8]> {
        self.secrets.get(name).map(Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{pool, put_dns, run};
    use super::super::{Command, DnsRecord, RecordType};
    use super::*;

    fn put(key: &str, bytes: usize) -> Command {
        Command::KvPut {
            bucket: "b".into(),
            key: key.into(),
            value: "x".repeat(bytes),
        }
    }

    #[test]
    fn shared_data_is_bounded_and_deletions_always_apply() {
        let mut state = LedgerState::new(pool());
        let chunk = 60_000;
        let fits = SHARED_DATA_LIMIT / (chunk + 3 + ENTRY_OVERHEAD);
        let writes: Vec<Command> = (0..fits).map(|i| put(&format!("k{i}"), chunk)).collect();
        assert!(run(&mut state, &writes).iter().all(|o| *o == Outcome::Done));
        assert_eq!(
            run(&mut state, &[put("over", chunk)]),
            [Outcome::LedgerFull]
        );
        let secret = Command::PutSecret {
            name: "s".into(),
            sealed: vec![0; chunk / 4],
        };
        assert_eq!(
            run(&mut state, std::slice::from_ref(&secret)),
            [Outcome::LedgerFull]
        );
        assert!(state.bucket("b").unwrap().get("over").is_none());
        // Rewriting a key no larger, and deleting one, still apply; then there is room again.
        assert_eq!(run(&mut state, &[put("k0", 10)]), [Outcome::Done]);
        run(
            &mut state,
            &[Command::KvDelete {
                bucket: "b".into(),
                key: Some("k1".into()),
            }],
        );
        assert_eq!(run(&mut state, &[secret]), [Outcome::Done]);
        assert!(state.shared_bytes() <= SHARED_DATA_LIMIT);
        // The cluster's own secret is published whatever the others hold.
        let cluster = Command::PutSecret {
            name: crate::ledger::sealed::CLUSTER.into(),
            sealed: vec![0; chunk / 4],
        };
        assert_eq!(
            run(&mut state, &[put("big", 2 * chunk)]),
            [Outcome::LedgerFull]
        );
        assert_eq!(run(&mut state, &[cluster]), [Outcome::Done]);
    }

    #[test]
    fn carried_entries_are_decided_when_they_apply_and_nothing_written_is_lost() {
        let (left, here) = (
            ClusterId {
                created_at: 2,
                id: 2,
            },
            ClusterId {
                created_at: 1,
                id: 1,
            },
        );
        let carry = |key: &str, carried: Carried| Command::CarryKv {
            from: left,
            bucket: "b".into(),
            key: key.into(),
            carried,
        };
        let value = |v: &str| Carried::Value(v.into());
        let mut state = LedgerState::new(pool());
        run(
            &mut state,
            &[
                Command::Genesis(here),
                put("written-meanwhile", 1),
                carry("written-meanwhile", value("old")),
                // Two members of the left cluster carry different copies of one key.
                carry("two-copies", value("newer")),
                carry("two-copies", value("older")),
                // A deletion carried first, then a lagging member's copy of the key.
                carry("deleted-there", Carried::Deleted),
                carry("deleted-there", value("stale")),
            ],
        );
        let at = |bucket: &str, key: &str| state.bucket(bucket).and_then(|b| b.get(key)).cloned();
        let kept = merged_bucket(Some(left), "b");
        assert_eq!(at("b", "written-meanwhile").as_deref(), Some("x"));
        assert_eq!(at(&kept, "written-meanwhile").as_deref(), Some("old"));
        assert_eq!(at("b", "two-copies").as_deref(), Some("newer"));
        assert_eq!(at(&kept, "two-copies").as_deref(), Some("older"));
        assert_eq!(at("b", "deleted-there"), None, "the deletion holds");
        assert_eq!(at(&kept, "deleted-there").as_deref(), Some("stale"));

        // A deletion whose displaced value has no room deletes nothing.
        let mut full = LedgerState::new(pool());
        let chunk = 60_000;
        let mut i = 0;
        while run(&mut full, &[put(&format!("k{i}"), chunk)]) == [Outcome::Done] {
            i += 1;
        }
        assert_eq!(
            run(&mut full, &[carry("k0", Carried::Deleted)]),
            [Outcome::LedgerFull]
        );
        assert!(full.bucket("b").unwrap().contains_key("k0"));
    }

    fn pattern(pattern: &str, rtype: RecordType, value: &str, merge: bool) -> Command {
        Command::PutDnsPattern {
            pattern: pattern.into(),
            records: [(
                rtype,
                DnsRecord {
                    value: value.into(),
                    ttl: 60,
                },
            )]
            .into(),
            merge,
        }
    }

    #[test]
    fn dns_records_count_in_the_shared_data() {
        let mut state = LedgerState::new(pool());
        let chunk = 60_000;
        let writes: Vec<Command> = (0..SHARED_DATA_LIMIT / (chunk + 3 + ENTRY_OVERHEAD))
            .map(|i| put(&format!("k{i}"), chunk))
            .collect();
        run(&mut state, &writes);
        let room = SHARED_DATA_LIMIT - state.shared_bytes();
        let value = "v".repeat(3000);
        let fill: Vec<Command> = (0..room / 3000 + 1)
            .map(|i| put_dns(&format!("n{i}"), RecordType::Txt, &value))
            .collect();
        let outcomes = run(&mut state, &fill);
        assert_eq!(outcomes.last(), Some(&Outcome::LedgerFull));
        assert!(state.shared_bytes() <= SHARED_DATA_LIMIT);
        assert_eq!(
            run(
                &mut state,
                &[pattern("^x.*", RecordType::Txt, &value, false)]
            ),
            [Outcome::LedgerFull]
        );
        run(
            &mut state,
            &[Command::DeleteDns {
                name: "n0".into(),
                rtype: None,
                value: None,
            }],
        );
        assert_eq!(
            run(
                &mut state,
                &[pattern("^x.*", RecordType::Txt, &value, false)]
            ),
            [Outcome::Done],
            "a deleted record frees its room"
        );
    }

    #[test]
    fn the_kept_count_follows_every_write_and_a_restored_state_counts_again() {
        let mut state = LedgerState::new(pool());
        let secret = |name: &str, len| Command::PutSecret {
            name: name.into(),
            sealed: vec![7; len],
        };
        let delete = |bucket: &str, key: Option<&str>| Command::KvDelete {
            bucket: bucket.into(),
            key: key.map(Into::into),
        };
        let steps = [
            put("a", 10),
            put("b", 20),
            put("a", 5),
            secret("s", 9),
            secret("s", 3),
            delete("b", Some("b")),
            put("c", 1),
            Command::DeleteSecret { name: "s".into() },
            delete("b", None),
            put("d", 2),
            put_dns("svc", RecordType::A, "10.9.0.1"),
            put_dns("svc", RecordType::A, "10.9.0.2"),
            put_dns("svc", RecordType::A, "10.9.0.2"),
            put_dns("alias", RecordType::Cname, "a.example"),
            put_dns("alias", RecordType::Cname, "longer.example"),
            Command::DeleteDns {
                name: "SVC".into(),
                rtype: None,
                value: Some("10.9.0.1".into()),
            },
            pattern("^p.*", RecordType::A, "10.0.0.1", false),
            pattern("^p.*", RecordType::Txt, "text\n", true),
            pattern("^p.*", RecordType::A, "10.0.0.22", true),
            pattern("^p.*", RecordType::Srv, "1 1 1 x", false),
            Command::DeleteDns {
                name: "alias".into(),
                rtype: None,
                value: None,
            },
            Command::DeleteDnsPattern {
                pattern: "^p.*".into(),
            },
        ];
        for step in &steps {
            run(&mut state, std::slice::from_ref(step));
            assert_eq!(state.shared.0, Some(state.shared_bytes()), "after {step:?}");
        }
        for first in [
            put("e", 1),
            delete("c", Some("c")),
            Command::DeleteDns {
                name: "svc".into(),
                rtype: None,
                value: None,
            },
        ] {
            let mut restored = LedgerState::restore(&state.snapshot()).unwrap();
            assert_eq!(restored.shared.0, None);
            assert_eq!(restored, state);
            run(&mut restored, std::slice::from_ref(&first));
            assert_eq!(
                restored.shared.0,
                Some(restored.shared_bytes()),
                "after {first:?} first"
            );
        }
    }

    #[test]
    fn the_count_bounds_what_many_tiny_entries_encode_to() {
        let empty = serde_json::to_vec(&LedgerState::new(pool())).unwrap().len();
        let mut state = LedgerState::new(pool());
        let writes: Vec<Command> = (0..20_000u32)
            .map(|i| Command::KvPut {
                bucket: format!("b{}", i % 7),
                key: format!("{i:x}"),
                value: String::new(),
            })
            .chain((0..50u8).map(|i| Command::PutSecret {
                name: i.to_string(),
                sealed: vec![i; usize::from(i)],
            }))
            .collect();
        run(&mut state, &writes);
        let encoded = serde_json::to_vec(&state).unwrap().len();
        assert!(
            encoded <= empty + state.shared_bytes(),
            "{encoded} bytes encoded, {} counted",
            state.shared_bytes()
        );
    }

    #[test]
    fn the_count_is_of_encoded_bytes() {
        assert_eq!(text_cost("ab"), 2);
        assert_eq!(text_cost("\u{1}\"é"), 6 + 2 + 2);
        let mut state = LedgerState::new(pool());
        // A value of control characters encodes six times larger than it is.
        let sneaky = "\u{1}".repeat(SHARED_DATA_LIMIT / 5);
        assert_eq!(
            run(
                &mut state,
                &[Command::KvPut {
                    bucket: "b".into(),
                    key: "k".into(),
                    value: sneaky,
                }]
            ),
            [Outcome::LedgerFull]
        );
        let encoded = serde_json::to_vec(&state).unwrap().len();
        assert!(encoded < 4096, "{encoded}");
    }

    #[test]
    fn any_member_may_write_and_delete_buckets() {
        let mut state = LedgerState::new(pool());
        run(
            &mut state,
            &[
                Command::KvPut {
                    bucket: "kairos".into(),
                    key: "k".into(),
                    value: "v".into(),
                },
                Command::KvPut {
                    bucket: "kairos".into(),
                    key: "j".into(),
                    value: "w".into(),
                },
                Command::KvDelete {
                    bucket: "kairos".into(),
                    key: Some("k".into()),
                },
            ],
        );
        assert_eq!(state.bucket("kairos").unwrap().len(), 1);
        run(
            &mut state,
            &[Command::KvDelete {
                bucket: "kairos".into(),
                key: None,
            }],
        );
        assert!(state.bucket("kairos").is_none());
    }
}
