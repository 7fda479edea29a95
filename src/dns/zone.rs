//! The mesh's DNS data as one immutable snapshot, built from the ledger and swapped in whole
//! whenever the ledger changes, so queries read it without locks.
//!
//! What it answers, in order: `<member>.<domain>` A records (and their PTR records in the
//! overlay pool's reverse zone), user records by exact name, the closest `*.` wildcard, then the
//! first edgevpn-style pattern that matches the whole name. A member's own name keeps its A
//! record: user A or CNAME records on it are ignored. A CNAME is followed through the snapshot
//! (eight steps at most); a target outside it is left for the forwarder to chase. The snapshot is
//! authoritative for the mesh domain and for pool addresses: a name there that does not exist is
//! NXDOMAIN with the zone's SOA, and a name that exists without the asked type is NODATA.
//! Anything else is not ours.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;

use hickory_proto::rr::rdata::{A, PTR, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType as WireType};
use ipnet::Ipv4Net;
use regex::Regex;

use super::{names, records};
use crate::ledger::state::{DnsRecord, LedgerState, RecordType};

/// The default mesh domain.
pub const DEFAULT_DOMAIN: &str = "weft.internal";
/// TTL of members' host and PTR records: short, since members come and go.
pub const HOST_TTL: u32 = 15;
/// How long resolvers may cache "no such name" from the zone (the SOA minimum).
const NEGATIVE_TTL: u32 = 5;
/// How many CNAMEs a lookup follows.
const MAX_CHAIN: usize = 8;

/// Record sets of one owner: type → (TTL, values).
type Sets = BTreeMap<RecordType, (u32, Vec<RData>)>;

/// The result of a lookup in the snapshot.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Records for the question. `chase` is a CNAME target outside the snapshot whose records
    /// of the asked type still have to be fetched.
    Found {
        records: Vec<Record>,
        chase: Option<Name>,
    },
    /// The name exists without records of the asked type.
    NoData { soa: Option<Record> },
    /// The name does not exist in a zone the snapshot is authoritative for.
    NxDomain { soa: Record },
    /// The snapshot knows nothing of the name: forward it.
    NotOurs,
}

/// One snapshot of the mesh's DNS data.
#[derive(Debug)]
pub struct Zone {
    /// The mesh domain, canonical (`weft.internal`).
    domain: String,
    soa: Record,
    /// The SOA of the overlay pool's reverse zone.
    reverse_soa: Record,
    pool: Ipv4Net,
    /// Exact names (canonical) with records: members' and users'.
    names: HashMap<String, Sets>,
    /// Names in the mesh domain that exist only because names below them do.
    interior: HashSet<String>,
    /// Wildcards by their parent: `*.apps.example` is under `apps.example`.
    wildcards: HashMap<String, Sets>,
    patterns: Vec<(Regex, Sets)>,
    /// Overlay address → the member's name.
    reverse: HashMap<Ipv4Addr, Name>,
    /// The fully-qualified name of each member, by PeerId.
    member_names: BTreeMap<String, String>,
}

impl Zone {
    /// The snapshot of `state` for the mesh `domain` (canonical, see
    /// [`records::canonical_name`]), and a description of each ledger record it skipped.
    pub fn build(state: &LedgerState, domain: &str) -> (Zone, Vec<String>) {
        let mut skipped = Vec::new();
        let serial = u32::try_from(state.applied() % (1 << 31)).unwrap_or_default();
        let pool = state.pool();
        let mut zone = Zone {
            domain: domain.to_string(),
            soa: soa(domain, domain, serial),
            reverse_soa: soa(&reverse_zone(pool), domain, serial),
            pool,
            names: HashMap::new(),
            interior: HashSet::new(),
            wildcards: HashMap::new(),
            patterns: Vec::new(),
            reverse: HashMap::new(),
            member_names: BTreeMap::new(),
        };
        for (name, ledger_sets) in state.dns() {
            let Ok(name) = records::canonical_name(name) else {
                skipped.push(format!("records of {name:?}: not a valid name"));
                continue;
            };
            let sets = read_sets(
                ledger_sets.iter().map(|(t, v)| (*t, v.as_slice())),
                &name,
                &mut skipped,
            );
            match name.strip_prefix("*.") {
                Some(parent) => {
                    zone.add_interior(&name);
                    zone.wildcards.insert(parent.to_string(), sets);
                }
                None => {
                    zone.add_interior(&name);
                    zone.names.insert(name, sets);
                }
            }
        }
        for (peer, label) in names::member_labels(state) {
            let Some(address) = state.members()[&peer].address else {
                continue;
            };
            let fqdn = format!("{label}.{domain}");
            let Ok(wire) = records::wire_name(&fqdn) else {
                continue;
            };
            let sets = zone.names.entry(fqdn.clone()).or_default();
            if sets.remove(&RecordType::Cname).is_some() || sets.contains_key(&RecordType::A) {
                skipped.push(format!("user A/CNAME records of {fqdn}: a member's name"));
            }
            sets.insert(RecordType::A, (HOST_TTL, vec![RData::A(A(address))]));
            zone.reverse.insert(address, wire);
            zone.member_names.insert(peer, fqdn);
        }
        for (pattern, ledger_records) in state.dns_patterns() {
            let Ok(regex) = records::pattern(pattern) else {
                skipped.push(format!("pattern {pattern:?}: not a valid regex"));
                continue;
            };
            let sets = read_sets(
                ledger_records
                    .iter()
                    .map(|(t, r)| (*t, std::slice::from_ref(r))),
                pattern,
                &mut skipped,
            );
            zone.patterns.push((regex, sets));
        }
        (zone, skipped)
    }

    /// The fully-qualified name of every member with an address, by PeerId.
    pub fn member_names(&self) -> &BTreeMap<String, String> {
        &self.member_names
    }

    /// Whether the snapshot answers for `name` with authority (the mesh domain and the pool's
    /// reverse names).
    pub fn is_authoritative(&self, name: &Name) -> bool {
        let key = key(name);
        self.in_domain(&key) || self.pool_address(&key).is_some()
    }

    /// Looks `name` up for records of type `qtype`.
    pub fn lookup(&self, name: &Name, qtype: WireType) -> Answer {
        let mut records = Vec::new();
        let mut owner = name.clone();
        for _ in 0..MAX_CHAIN {
            let key = key(&owner);
            if let Some(address) = self.pool_address(&key) {
                return self.reverse_lookup(&owner, address, qtype, records);
            }
            if key == self.domain && matches!(qtype, WireType::SOA | WireType::ANY) {
                records.push(self.soa.clone());
                return found(records);
            }
            let Some(sets) = self.find(&key) else {
                return match (records.is_empty(), self.in_domain(&key)) {
                    (true, true) => Answer::NxDomain {
                        soa: self.soa.clone(),
                    },
                    (true, false) => Answer::NotOurs,
                    (false, true) => found(records),
                    (false, false) => Answer::Found {
                        records,
                        chase: Some(owner),
                    },
                };
            };
            if qtype == WireType::ANY {
                for set in sets.values() {
                    push_set(&mut records, &owner, set);
                }
                return found(records);
            }
            if let Some(set) = ours(qtype).and_then(|t| sets.get(&t)) {
                push_set(&mut records, &owner, set);
                return found(records);
            }
            match sets.get(&RecordType::Cname) {
                Some(set @ (_, values)) if qtype != WireType::CNAME => {
                    push_set(&mut records, &owner, set);
                    let Some(RData::CNAME(target)) = values.first() else {
                        return found(records);
                    };
                    owner = target.0.clone();
                }
                _ if records.is_empty() => {
                    return Answer::NoData {
                        soa: self.in_domain(&key).then(|| self.soa.clone()),
                    };
                }
                _ => return found(records),
            }
        }
        found(records)
    }

    fn reverse_lookup(
        &self,
        owner: &Name,
        address: Ipv4Addr,
        qtype: WireType,
        mut records: Vec<Record>,
    ) -> Answer {
        let Some(target) = self.reverse.get(&address) else {
            return Answer::NxDomain {
                soa: self.reverse_soa.clone(),
            };
        };
        if matches!(qtype, WireType::PTR | WireType::ANY) {
            records.push(Record::from_rdata(
                owner.clone(),
                HOST_TTL,
                RData::PTR(PTR(target.clone())),
            ));
            return found(records);
        }
        if records.is_empty() {
            Answer::NoData {
                soa: Some(self.reverse_soa.clone()),
            }
        } else {
            found(records)
        }
    }

    /// The record sets `key` owns: its own, else the closest wildcard's, else the first
    /// matching pattern's; an empty set for an interior name.
    fn find(&self, key: &str) -> Option<&Sets> {
        static EMPTY: Sets = BTreeMap::new();
        if let Some(sets) = self.names.get(key) {
            return Some(sets);
        }
        if self.interior.contains(key) || key == self.domain {
            return Some(&EMPTY);
        }
        let mut rest = key;
        while let Some((_, parent)) = rest.split_once('.') {
            if let Some(sets) = self.wildcards.get(parent) {
                return Some(sets);
            }
            rest = parent;
        }
        let dotted = format!("{key}.");
        self.patterns
            .iter()
            .find(|(regex, _)| regex.is_match(key) || regex.is_match(&dotted))
            .map(|(_, sets)| sets)
    }

    fn in_domain(&self, key: &str) -> bool {
        key == self.domain
            || key
                .strip_suffix(self.domain.as_str())
                .is_some_and(|head| head.ends_with('.'))
    }

    /// Marks the names between `name` and the mesh domain as existing.
    fn add_interior(&mut self, name: &str) {
        if !self.in_domain(name) {
            return;
        }
        let mut rest = name;
        while let Some((_, parent)) = rest.split_once('.') {
            if parent == self.domain || !self.in_domain(parent) {
                break;
            }
            self.interior.insert(parent.to_string());
            rest = parent;
        }
    }

    /// The pool address a reverse name (`4.3.2.1.in-addr.arpa`) stands for, if in the pool.
    fn pool_address(&self, key: &str) -> Option<Ipv4Addr> {
        let octets = key.strip_suffix(".in-addr.arpa")?;
        let parts: Vec<u8> = octets
            .split('.')
            .map(|p| p.parse::<u8>().ok())
            .collect::<Option<_>>()?;
        let [d, c, b, a] = parts[..] else {
            return None;
        };
        let address = Ipv4Addr::new(a, b, c, d);
        self.pool.contains(&address).then_some(address)
    }
}

/// The canonical key of a wire name: lower case, without the trailing dot.
fn key(name: &Name) -> String {
    let text = name.to_lowercase().to_ascii();
    text.strip_suffix('.').unwrap_or(&text).to_string()
}

fn found(records: Vec<Record>) -> Answer {
    Answer::Found {
        records,
        chase: None,
    }
}

fn push_set(records: &mut Vec<Record>, owner: &Name, (ttl, values): &(u32, Vec<RData>)) {
    records.extend(
        values
            .iter()
            .map(|data| Record::from_rdata(owner.clone(), *ttl, data.clone())),
    );
}

/// The ledger's type for a wire type it stores.
fn ours(qtype: WireType) -> Option<RecordType> {
    Some(match qtype {
        WireType::A => RecordType::A,
        WireType::AAAA => RecordType::Aaaa,
        WireType::CNAME => RecordType::Cname,
        WireType::TXT => RecordType::Txt,
        WireType::SRV => RecordType::Srv,
        _ => return None,
    })
}

/// Reads ledger record sets, skipping (and describing) values that do not parse. A set's TTL
/// is the lowest of its values'.
fn read_sets<'a>(
    ledger: impl Iterator<Item = (RecordType, &'a [DnsRecord])>,
    owner: &str,
    skipped: &mut Vec<String>,
) -> Sets {
    let mut sets = Sets::new();
    for (rtype, values) in ledger {
        let mut data = Vec::new();
        let mut ttl = u32::MAX;
        for record in values {
            match records::rdata(rtype, &record.value) {
                Ok(rdata) => {
                    data.push(rdata);
                    ttl = ttl.min(record.ttl.min(records::MAX_TTL));
                }
                Err(e) => skipped.push(format!("{owner}: {e}")),
            }
        }
        if !data.is_empty() {
            sets.insert(rtype, (ttl, data));
        }
    }
    sets
}

/// The SOA record of `zone` in the mesh `domain`.
fn soa(zone: &str, domain: &str, serial: u32) -> Record {
    let name = |text: &str| records::wire_name(text).unwrap_or_else(|_| Name::root());
    Record::from_rdata(
        name(zone),
        NEGATIVE_TTL,
        RData::SOA(SOA::new(
            name(&format!("ns.{domain}")),
            name(&format!("hostmaster.{domain}")),
            serial,
            3600,
            600,
            86400,
            NEGATIVE_TTL,
        )),
    )
}

/// The reverse zone covering `pool`, cut at the octet boundary at or above its prefix.
fn reverse_zone(pool: Ipv4Net) -> String {
    let octets = pool.network().octets();
    let whole = usize::from(pool.prefix_len() / 8);
    let mut labels: Vec<String> = octets[..whole].iter().rev().map(u8::to_string).collect();
    labels.push("in-addr.arpa".into());
    labels.join(".")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::state::{Command, join_command};
    use hickory_proto::rr::rdata::CNAME;
    use std::str::FromStr as _;

    const DOMAIN: &str = "weft.internal";

    fn ledger(commands: &[Command]) -> LedgerState {
        let mut state = LedgerState::new("10.1.0.0/24".parse().unwrap());
        for (i, c) in commands.iter().enumerate() {
            state.apply(i as u64 + 1, c);
        }
        state
    }

    fn join(peer: &str, hostname: &str) -> Command {
        let mut command = join_command(peer);
        if let Command::Join { hostname: h, .. } = &mut command {
            *h = hostname.to_string();
        }
        command
    }

    fn put(name: &str, rtype: RecordType, value: &str) -> Command {
        Command::PutDns {
            name: name.into(),
            rtype,
            record: DnsRecord {
                value: value.into(),
                ttl: 60,
            },
        }
    }

    fn name(text: &str) -> Name {
        Name::from_str(text).unwrap()
    }

    /// The answer's record data in text form, or the kind of negative answer.
    fn ask(zone: &Zone, qname: &str, qtype: WireType) -> Vec<String> {
        match zone.lookup(&name(qname), qtype) {
            Answer::Found { records, chase } => records
                .iter()
                .map(|r| format!("{} {}", r.record_type(), r.data))
                .chain(chase.map(|c| format!("chase {c}")))
                .collect(),
            Answer::NoData { soa } => vec![format!("NODATA soa={}", soa.is_some())],
            Answer::NxDomain { soa } => vec![format!("NXDOMAIN {}", soa.name)],
            Answer::NotOurs => vec!["NOT OURS".into()],
        }
    }

    fn three_members() -> LedgerState {
        ledger(&[
            join("peer-a", "alpha"),
            join("peer-b", "Beta.lan"),
            join("peer-c", "gamma"),
        ])
    }

    #[test]
    fn every_member_has_a_host_record_and_a_ptr() {
        let (zone, skipped) = Zone::build(&three_members(), DOMAIN);
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!(
            ask(&zone, "alpha.weft.internal.", WireType::A),
            ["A 10.1.0.1"]
        );
        assert_eq!(
            ask(&zone, "BETA.weft.internal.", WireType::A),
            ["A 10.1.0.2"]
        );
        assert_eq!(
            ask(&zone, "3.0.1.10.in-addr.arpa.", WireType::PTR),
            ["PTR gamma.weft.internal."]
        );
        assert_eq!(
            ask(&zone, "9.0.1.10.in-addr.arpa.", WireType::PTR),
            ["NXDOMAIN 0.1.10.in-addr.arpa."]
        );
        assert_eq!(
            ask(&zone, "alpha.weft.internal.", WireType::AAAA),
            ["NODATA soa=true"]
        );
        assert_eq!(
            ask(&zone, "nobody.weft.internal.", WireType::A),
            ["NXDOMAIN weft.internal."]
        );
        assert_eq!(ask(&zone, "example.com.", WireType::A), ["NOT OURS"]);
        assert_eq!(
            ask(&zone, "9.9.9.9.in-addr.arpa.", WireType::PTR),
            ["NOT OURS"]
        );
        assert!(
            ask(&zone, "weft.internal.", WireType::SOA)[0].starts_with("SOA ns.weft.internal.")
        );
        assert_eq!(zone.member_names()["peer-b"], "beta.weft.internal");
    }

    #[test]
    fn expired_members_have_no_record() {
        let mut state = three_members();
        state.apply(
            10,
            &Command::Expire {
                peer: "peer-a".into(),
            },
        );
        let (zone, _) = Zone::build(&state, DOMAIN);
        assert_eq!(
            ask(&zone, "alpha.weft.internal.", WireType::A),
            ["NXDOMAIN weft.internal."]
        );
    }

    #[test]
    fn wildcards_cnames_and_interior_names() {
        let mut commands = vec![join("peer-a", "alpha")];
        commands.extend([
            put(
                "*.apps.weft.internal",
                RecordType::Cname,
                "alpha.weft.internal",
            ),
            put("db.weft.internal", RecordType::A, "10.9.0.1"),
            put("db.weft.internal", RecordType::A, "10.9.0.2"),
            put("x.deep.weft.internal", RecordType::Txt, "hello"),
            put("www.weft.internal", RecordType::Cname, "www.example.com"),
            put(
                "_k3s._tcp.weft.internal",
                RecordType::Srv,
                "0 5 6443 alpha.weft.internal",
            ),
            put("alpha.weft.internal", RecordType::A, "10.9.9.9"),
        ]);
        let (zone, skipped) = Zone::build(&ledger(&commands), DOMAIN);
        assert_eq!(skipped.len(), 1, "the member's name wins: {skipped:?}");
        assert_eq!(
            ask(&zone, "web.apps.weft.internal.", WireType::A),
            ["CNAME alpha.weft.internal.", "A 10.1.0.1",]
        );
        assert_eq!(
            ask(&zone, "a.b.apps.weft.internal.", WireType::CNAME),
            ["CNAME alpha.weft.internal."]
        );
        assert_eq!(
            ask(&zone, "apps.weft.internal.", WireType::A),
            ["NODATA soa=true"]
        );
        assert_eq!(
            ask(&zone, "deep.weft.internal.", WireType::TXT),
            ["NODATA soa=true"]
        );
        assert_eq!(
            ask(&zone, "db.weft.internal.", WireType::A),
            ["A 10.9.0.1", "A 10.9.0.2"]
        );
        assert_eq!(
            ask(&zone, "www.weft.internal.", WireType::A),
            ["CNAME www.example.com.", "chase www.example.com."]
        );
        assert_eq!(
            ask(&zone, "_k3s._tcp.weft.internal.", WireType::SRV),
            ["SRV 0 5 6443 alpha.weft.internal."]
        );
        assert_eq!(
            ask(&zone, "alpha.weft.internal.", WireType::A),
            ["A 10.1.0.1"]
        );
    }

    #[test]
    fn patterns_match_whole_names_only() {
        let state = ledger(&[Command::PutDnsPattern {
            pattern: "foo".into(),
            records: [(
                RecordType::A,
                DnsRecord {
                    value: "10.1.0.77".into(),
                    ttl: 60,
                },
            )]
            .into(),
        }]);
        let (zone, _) = Zone::build(&state, DOMAIN);
        assert_eq!(ask(&zone, "foo.", WireType::A), ["A 10.1.0.77"]);
        assert_eq!(ask(&zone, "xfoo.bar.", WireType::A), ["NOT OURS"]);
        assert_eq!(ask(&zone, "foo.bar.", WireType::A), ["NOT OURS"]);
        assert_eq!(ask(&zone, "foo.", WireType::TXT), ["NODATA soa=false"]);
    }

    #[test]
    fn a_cname_loop_ends() {
        let state = ledger(&[
            put("a.weft.internal", RecordType::Cname, "b.weft.internal"),
            put("b.weft.internal", RecordType::Cname, "a.weft.internal"),
        ]);
        let (zone, _) = Zone::build(&state, DOMAIN);
        let answer = ask(&zone, "a.weft.internal.", WireType::A);
        assert_eq!(answer.len(), MAX_CHAIN);
        assert!(matches!(
            zone.lookup(&name("a.weft.internal."), WireType::CNAME),
            Answer::Found { ref records, .. } if records[0].data == RData::CNAME(CNAME(name("b.weft.internal.")))
        ));
    }

    #[test]
    fn unreadable_ledger_values_are_skipped_and_named() {
        let state = ledger(&[
            put("bad.weft.internal", RecordType::A, "not-an-address"),
            put("bad name", RecordType::A, "10.0.0.1"),
        ]);
        let (zone, skipped) = Zone::build(&state, DOMAIN);
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert_eq!(
            ask(&zone, "bad.weft.internal.", WireType::A),
            ["NODATA soa=true"]
        );
    }

    proptest::proptest! {
        /// Whatever members wrote into the ledger (any member can), building the snapshot and
        /// looking names up never panics, and names in the domain get an authoritative answer.
        #[test]
        fn any_ledger_content_builds_and_answers(
            entries in proptest::collection::vec(
                ("[*a-z0-9._ -]{0,20}", 0usize..5, "[ -~]{0,30}"),
                0..12,
            ),
            patterns in proptest::collection::vec("[ -~]{0,12}", 0..4),
            queries in proptest::collection::vec("[a-z0-9.*-]{0,24}", 1..8),
        ) {
            let mut commands = vec![join("peer-a", "alpha")];
            for (name, t, value) in &entries {
                commands.push(put(name, RecordType::ALL[*t], value));
            }
            for pattern in &patterns {
                commands.push(Command::PutDnsPattern {
                    pattern: pattern.clone(),
                    records: [(RecordType::A, DnsRecord { value: "10.0.0.1".into(), ttl: 1 })].into(),
                });
            }
            let (zone, _) = Zone::build(&ledger(&commands), DOMAIN);
            for query in &queries {
                for domain in ["", ".weft.internal"] {
                    let Ok(qname) = Name::from_str(&format!("{query}{domain}.")) else {
                        continue;
                    };
                    for qtype in [WireType::A, WireType::CNAME, WireType::TXT, WireType::ANY, WireType::PTR] {
                        let answer = zone.lookup(&qname, qtype);
                        if !domain.is_empty() {
                            proptest::prop_assert!(!matches!(answer, Answer::NotOurs), "{qname}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_reverse_zone_follows_the_pool() {
        assert_eq!(
            reverse_zone("10.1.0.0/24".parse().unwrap()),
            "0.1.10.in-addr.arpa"
        );
        assert_eq!(
            reverse_zone("10.1.0.0/20".parse().unwrap()),
            "1.10.in-addr.arpa"
        );
        assert_eq!(
            reverse_zone("10.0.0.0/8".parse().unwrap()),
            "10.in-addr.arpa"
        );
    }
}
