//! DNS records in the ledger: user record sets by name (exact and `*.` wildcards) and
//! edgevpn-style regex records, with the limits that keep any member from filling the ledger:
//! counts and lengths of their own, and every value counted in the shared data with the
//! ledger's keys and secrets ([`super::SHARED_DATA_LIMIT`]).
//! The DNS server reads them; the API checks names and values before proposing them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::kv::text_cost;
use super::{LedgerState, Outcome};

/// A DNS record type the ledger stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RecordType {
    A,
    Aaaa,
    Cname,
    Txt,
    Srv,
}

impl RecordType {
    /// Every type, in the order listings show them.
    pub const ALL: [RecordType; 5] = [
        RecordType::A,
        RecordType::Aaaa,
        RecordType::Cname,
        RecordType::Txt,
        RecordType::Srv,
    ];

    /// The type's mnemonic (`A`, `AAAA`, `CNAME`, `TXT`, `SRV`).
    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::A => "A",
            RecordType::Aaaa => "AAAA",
            RecordType::Cname => "CNAME",
            RecordType::Txt => "TXT",
            RecordType::Srv => "SRV",
        }
    }
}

impl std::fmt::Display for RecordType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RecordType {
    type Err = String;

    /// A mnemonic in any case.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        RecordType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(text))
            .ok_or_else(|| format!("unsupported record type {text:?} (A, AAAA, CNAME, TXT or SRV)"))
    }
}

/// One value of a user DNS record set, in its presentation form (`10.1.0.9`, `host.example`,
/// `10 5 6443 host.example`, free text for TXT). The API validates values; the DNS server skips
/// any it cannot read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsRecord {
    pub value: String,
    pub ttl: u32,
}

/// User DNS records of one name or pattern: type → values.
pub type RecordSets = BTreeMap<RecordType, Vec<DnsRecord>>;

/// Bounds on DNS data, which any member can write: names (and wildcards), values per record
/// set, patterns, and the length of a name, value or pattern.
pub const DNS_LIMITS: DnsLimits = DnsLimits {
    names: 10_000,
    values: 64,
    patterns: 256,
    text: 4096,
};

/// See [`DNS_LIMITS`].
#[derive(Debug, Clone, Copy)]
pub struct DnsLimits {
    pub names: usize,
    pub values: usize,
    pub patterns: usize,
    pub text: usize,
}

/// The JSON around one DNS value (its type, TTL, quotes and brackets).
const VALUE_OVERHEAD: usize = 40;

/// What one DNS value costs against the shared data limit, its name counted with each value
/// (more than it encodes to).
fn value_cost(name: &str, value: &str) -> usize {
    text_cost(name) + text_cost(value) + VALUE_OVERHEAD
}

/// What a regex record costs: each of its values with the pattern.
fn pattern_cost(pattern: &str, records: &BTreeMap<RecordType, DnsRecord>) -> usize {
    records
        .values()
        .map(|r| value_cost(pattern, &r.value))
        .sum()
}

impl LedgerState {
    pub(super) fn put_dns(&mut self, name: &str, rtype: RecordType, record: &DnsRecord) -> Outcome {
        let name = name.to_ascii_lowercase();
        let new_name = !self.dns.contains_key(&name);
        let held = self.dns.get(&name).and_then(|sets| sets.get(&rtype));
        let full_set = held.is_some_and(|v| {
            v.len() >= DNS_LIMITS.values && !v.iter().any(|r| r.value == record.value)
        });
        if name.len() > DNS_LIMITS.text
            || record.value.len() > DNS_LIMITS.text
            || (new_name && self.dns.len() >= DNS_LIMITS.names)
            || full_set
        {
            return Outcome::DnsLimit;
        }
        let cname = rtype == RecordType::Cname;
        let conflict = self
            .dns
            .get(&name)
            .is_some_and(|sets| sets.keys().any(|t| (*t == RecordType::Cname) != cname));
        if conflict {
            return Outcome::DnsConflict;
        }
        // A CNAME replaces the name's CNAME; another type's value is added, or has its TTL set.
        let replaced = held.map_or(0, |values| {
            values
                .iter()
                .filter(|r| cname || r.value == record.value)
                .map(|r| value_cost(&name, &r.value))
                .sum()
        });
        if !self.make_room(replaced, value_cost(&name, &record.value)) {
            return Outcome::LedgerFull;
        }
        let values = self.dns.entry(name).or_default().entry(rtype).or_default();
        if cname {
            values.clear();
        }
        match values.iter_mut().find(|r| r.value == record.value) {
            Some(existing) => existing.ttl = record.ttl,
            None => {
                values.push(record.clone());
                values.sort_by(|a, b| a.value.cmp(&b.value));
            }
        }
        Outcome::Done
    }

    pub(super) fn delete_dns(
        &mut self,
        name: &str,
        rtype: Option<RecordType>,
        value: Option<&str>,
    ) -> Outcome {
        let name = name.to_ascii_lowercase();
        let mut freed = 0;
        if let Some(sets) = self.dns.get_mut(&name) {
            sets.retain(|t, values| {
                if rtype.is_some_and(|r| r != *t) {
                    return true;
                }
                values.retain(|r| {
                    let keep = value.is_some_and(|v| v != r.value);
                    if !keep {
                        freed += value_cost(&name, &r.value);
                    }
                    keep
                });
                !values.is_empty()
            });
            if sets.is_empty() {
                self.dns.remove(&name);
            }
        }
        self.make_room(freed, 0);
        Outcome::Done
    }

    pub(super) fn put_dns_pattern(
        &mut self,
        pattern: &str,
        records: &BTreeMap<RecordType, DnsRecord>,
        merge: bool,
    ) -> Outcome {
        let too_long = pattern.len() > DNS_LIMITS.text
            || records.values().any(|r| r.value.len() > DNS_LIMITS.text);
        let held = self.dns_patterns.get(pattern);
        let full = held.is_none() && self.dns_patterns.len() >= DNS_LIMITS.patterns;
        if too_long || full {
            return Outcome::DnsLimit;
        }
        let mut entry = held.filter(|_| merge).cloned().unwrap_or_default();
        entry.extend(records.iter().map(|(t, r)| (*t, r.clone())));
        let old = held.map_or(0, |held| pattern_cost(pattern, held));
        if !self.make_room(old, pattern_cost(pattern, &entry)) {
            return Outcome::LedgerFull;
        }
        if entry.is_empty() {
            self.dns_patterns.remove(pattern);
        } else {
            self.dns_patterns.insert(pattern.to_string(), entry);
        }
        Outcome::Done
    }

    pub(super) fn delete_dns_pattern(&mut self, pattern: &str) -> Outcome {
        if let Some(records) = self.dns_patterns.remove(pattern) {
            self.make_room(pattern_cost(pattern, &records), 0);
        }
        Outcome::Done
    }

    /// Encoded bytes the DNS records and patterns hold, as counted against
    /// [`super::SHARED_DATA_LIMIT`].
    pub(super) fn dns_bytes(&self) -> usize {
        let records: usize = self
            .dns
            .iter()
            .flat_map(|(name, sets)| {
                sets.values()
                    .flatten()
                    .map(move |r| value_cost(name, &r.value))
            })
            .sum();
        let patterns: usize = self
            .dns_patterns
            .iter()
            .map(|(pattern, records)| pattern_cost(pattern, records))
            .sum();
        records + patterns
    }

    /// User DNS records: name → type → values.
    pub fn dns(&self) -> &BTreeMap<String, RecordSets> {
        &self.dns
    }

    /// edgevpn-style regex records: pattern → type → value.
    pub fn dns_patterns(&self) -> &BTreeMap<String, BTreeMap<RecordType, DnsRecord>> {
        &self.dns_patterns
    }
}

#[cfg(test)]
mod tests {
    use super::super::Command;
    use super::super::tests::{pool, put_dns, run};
    use super::*;

    #[test]
    fn dns_record_sets_collect_values_and_keep_a_cname_alone() {
        let mut state = LedgerState::new(pool());
        let outcomes = run(
            &mut state,
            &[
                put_dns("Svc.Example", RecordType::A, "10.9.0.2"),
                put_dns("svc.example", RecordType::A, "10.9.0.1"),
                put_dns("svc.example", RecordType::A, "10.9.0.1"),
                put_dns("svc.example", RecordType::Cname, "other.example"),
                put_dns("alias.example", RecordType::Cname, "a.example"),
                put_dns("alias.example", RecordType::Cname, "b.example"),
                put_dns("alias.example", RecordType::Txt, "x"),
            ],
        );
        assert_eq!(outcomes[3], Outcome::DnsConflict);
        assert_eq!(outcomes[6], Outcome::DnsConflict);
        let values = |state: &LedgerState, name: &str, t| -> Vec<String> {
            state.dns()[name][&t]
                .iter()
                .map(|r| r.value.clone())
                .collect()
        };
        assert_eq!(
            values(&state, "svc.example", RecordType::A),
            ["10.9.0.1", "10.9.0.2"]
        );
        assert_eq!(
            values(&state, "alias.example", RecordType::Cname),
            ["b.example"]
        );
        run(
            &mut state,
            &[
                Command::DeleteDns {
                    name: "svc.example".into(),
                    rtype: Some(RecordType::A),
                    value: Some("10.9.0.2".into()),
                },
                Command::DeleteDns {
                    name: "alias.example".into(),
                    rtype: None,
                    value: None,
                },
            ],
        );
        assert_eq!(values(&state, "svc.example", RecordType::A), ["10.9.0.1"]);
        assert!(!state.dns().contains_key("alias.example"));
    }

    #[test]
    fn dns_data_is_bounded() {
        let mut state = LedgerState::new(pool());
        let values: Vec<Command> = (0..=DNS_LIMITS.values)
            .map(|i| put_dns("many.example", RecordType::Txt, &i.to_string()))
            .collect();
        let outcomes = run(&mut state, &values);
        assert_eq!(outcomes[DNS_LIMITS.values], Outcome::DnsLimit);
        assert_eq!(
            run(&mut state, &[put_dns("many.example", RecordType::Txt, "0")]),
            [Outcome::Done],
            "an existing value may still have its TTL changed"
        );
        let long = "x".repeat(DNS_LIMITS.text + 1);
        assert_eq!(
            run(
                &mut state,
                &[put_dns("long.example", RecordType::Txt, &long)]
            ),
            [Outcome::DnsLimit]
        );
        let patterns: Vec<Command> = (0..=DNS_LIMITS.patterns)
            .map(|i| Command::PutDnsPattern {
                pattern: format!("p{i}"),
                records: [(
                    RecordType::A,
                    DnsRecord {
                        value: "10.0.0.1".into(),
                        ttl: 1,
                    },
                )]
                .into(),
                merge: false,
            })
            .collect();
        let outcomes = run(&mut state, &patterns);
        assert_eq!(outcomes[DNS_LIMITS.patterns], Outcome::DnsLimit);
        assert_eq!(state.dns_patterns().len(), DNS_LIMITS.patterns);
    }
}
