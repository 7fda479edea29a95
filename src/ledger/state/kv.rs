//! Key-value buckets (edgevpn's open semantics: any member may write; the compatibility API
//! stores there) and sealed secrets (ciphertext only: the state machine never sees a secret in
//! clear, see [`crate::ledger::sealed`]).

use std::collections::BTreeMap;

use super::{LedgerState, Outcome};

impl LedgerState {
    pub(super) fn kv_put(&mut self, bucket: &str, key: &str, value: &str) -> Outcome {
        self.kv
            .entry(bucket.to_string())
            .or_default()
            .insert(key.to_string(), value.to_string());
        Outcome::Done
    }

    /// Deletes one key, or the whole bucket when `key` is `None`.
    pub(super) fn kv_delete(&mut self, bucket: &str, key: Option<&str>) -> Outcome {
        match key {
            Some(key) => {
                if let Some(entries) = self.kv.get_mut(bucket) {
                    entries.remove(key);
                    if entries.is_empty() {
                        self.kv.remove(bucket);
                    }
                }
            }
            None => {
                self.kv.remove(bucket);
            }
        }
        Outcome::Done
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
    use super::super::Command;
    use super::super::tests::{pool, run};
    use super::*;

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
