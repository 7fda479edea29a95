//! The mesh's DNS data as one immutable snapshot, built from the ledger and swapped in whole
//! whenever the ledger changes, so queries read it without locks.
//!
//! What it answers, in order: `<member>.<domain>` A records (and their PTR records in the
//! overlay pool's reverse zone), user records by exact name, the wildcard of the closest
//! enclosing name (RFC 4592), then the first edgevpn-style pattern that matches the whole name.
//! A member's name is the member's alone: user records on it are ignored, and a bare name that
//! several members' hostnames collide on answers nothing (not a wildcard, not a pattern). A
//! CNAME is followed through the snapshot (eight steps at most); a target outside it is left for
//! the forwarder to chase. The snapshot is authoritative for the mesh domain and for the pool's
//! reverse zone: a name there that does not exist is NXDOMAIN with the zone's SOA (also at the
//! end of a CNAME chain, RFC 6604), and a name that exists without the asked type is NODATA.
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
    /// The name does not exist in a zone the snapshot is authoritative for; `records` is the
    /// CNAME chain that led there, if any.
    NxDomain { records: Vec<Record>, soa: Record },
    /// The snapshot knows nothing of the name: forward it.
    NotOurs,
}

/// One snapshot of the mesh's DNS data.
#[derive(Debug)]
pub struct Zone {
    /// The mesh domain, canonical (`weft.internal`).
    domain: String,
    soa: Record,
    /// The SOA of the overlay pool's reverse zone, and that zone's apex.
    reverse_soa: Record,
    reverse_apex: String,
    pool: Ipv4Net,
    /// Exact names (canonical) with records: members' and users'.
    names: HashMap<String, Sets>,
    /// Names in the mesh domain that exist only because names below them do.
    interior: HashSet<String>,
    /// Wildcards by their parent: `*.apps.example` is under `apps.example`.
    wildcards: HashMap<String, Sets>,
    /// Bare member names that several hostnames collide on: they answer nothing.
    reserved: HashSet<String>,
    patterns: Vec<(Regex, Sets)>,
    /// Overlay address → the member's name.
    reverse: HashMap<Ipv4Addr, Name>,
}

impl Zone {
    /// The snapshot of `state` for the mesh `domain` (canonical, see
    /// [`records::canonical_name`]), and a description of each ledger record it skipped.
    /// `regexes` holds patterns compiled by earlier builds, reused (and refreshed) here.
    pub fn build(
        state: &LedgerState,
        domain: &str,
        regexes: &mut HashMap<String, Regex>,
    ) -> (Zone, Vec<String>) {
        let mut skipped = Vec::new();
        let serial = u32::try_from(state.applied() % (1 << 31)).unwrap_or_default();
        let pool = state.pool();
        let mut zone = Zone {
            domain: domain.to_string(),
            soa: soa(domain, domain, serial),
            reverse_soa: soa(&reverse_zone(pool), domain, serial),
            reverse_apex: reverse_zone(pool),
            pool,
            names: HashMap::new(),
            interior: HashSet::new(),
            wildcards: HashMap::new(),
            reserved: HashSet::new(),
            patterns: Vec::new(),
            reverse: HashMap::new(),
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
            let member = &state.members()[&peer];
            let Some(address) = member.address else {
                continue;
            };
            let bare = names::label(&member.hostname);
            if bare != label {
                zone.reserved.insert(format!("{bare}.{domain}"));
            }
            let fqdn = format!("{label}.{domain}");
            let Ok(wire) = records::wire_name(&fqdn) else {
                continue;
            };
            let host = Sets::from([(RecordType::A, (HOST_TTL, vec![RData::A(A(address))]))]);
            if zone.names.insert(fqdn.clone(), host).is_some() {
                skipped.push(format!("user records of {fqdn}: a member's name"));
            }
            zone.reverse.insert(address, wire);
        }
        for name in &zone.reserved {
            if zone.names.remove(name).is_some() {
                skipped.push(format!(
                    "user records of {name}: a name members' hostnames share"
                ));
            }
        }
        regexes.retain(|pattern, _| state.dns_patterns().contains_key(pattern));
        for (pattern, ledger_records) in state.dns_patterns() {
            let regex = match regexes.get(pattern) {
                Some(regex) => regex.clone(),
                None => match records::pattern(pattern) {
                    Ok(regex) => {
                        regexes.insert(pattern.clone(), regex.clone());
                        regex
                    }
                    Err(_) => {
                        skipped.push(format!("pattern {pattern:?}: not a valid regex"));
                        continue;
                    }
                },
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

    /// Whether the snapshot answers for `name` with authority (the mesh domain and the pool's
    /// reverse names).
    pub fn is_authoritative(&self, name: &Name) -> bool {
        let key = key(name);
        self.in_domain(&key) || self.in_reverse_zone(&key)
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
            let apex = if key == self.domain {
                Some(&self.soa)
            } else if key == self.reverse_apex() {
                Some(&self.reverse_soa)
            } else {
                None
            };
            if let Some(soa) = apex
                && matches!(qtype, WireType::SOA | WireType::ANY)
            {
                records.push(soa.clone());
                return found(records);
            }
            let Some(sets) = self.find(&key) else {
                return match (self.negative_soa(&key), records.is_empty()) {
                    (Some(soa), _) => Answer::NxDomain { records, soa },
                    (None, true) => Answer::NotOurs,
                    (None, false) => Answer::Found {
                        records,
                        chase: Some(owner),
                    },
                };
            };
            if qtype == WireType::ANY {
                for set in sets.values() {
                    push_set(&mut records, &owner, set);
                }
                if records.is_empty() {
                    return Answer::NoData {
                        soa: self.negative_soa(&key),
                    };
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
                        soa: self.negative_soa(&key),
                    };
                }
                _ => return found(records),
            }
        }
        found(records)
    }

    /// The SOA of the zone `key` is in, if the snapshot is authoritative for it.
    fn negative_soa(&self, key: &str) -> Option<Record> {
        if self.in_domain(key) {
            Some(self.soa.clone())
        } else if self.in_reverse_zone(key) {
            Some(self.reverse_soa.clone())
        } else {
            None
        }
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
                records,
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

    /// The record sets `key` owns: its own, else the wildcard of its closest enclosing name,
    /// else the first matching pattern's; an empty set for an interior name; nothing for a
    /// reserved name.
    fn find(&self, key: &str) -> Option<&Sets> {
        static EMPTY: Sets = BTreeMap::new();
        if self.reserved.contains(key) {
            return None;
        }
        if let Some(sets) = self.names.get(key) {
            return Some(sets);
        }
        if self.interior.contains(key) || key == self.domain || key == self.reverse_apex() {
            return Some(&EMPTY);
        }
        let mut rest = key;
        while let Some((_, parent)) = rest.split_once('.') {
            if let Some(sets) = self.wildcards.get(parent) {
                return Some(sets);
            }
            if self.exists(parent) {
                // The closest encloser has no wildcard: the name does not exist (RFC 4592).
                break;
            }
            rest = parent;
        }
        let dotted = format!("{key}.");
        self.patterns
            .iter()
            .find(|(regex, _)| regex.is_match(key) || regex.is_match(&dotted))
            .map(|(_, sets)| sets)
    }

    /// Whether `key` is a name of the snapshot (with records or above some).
    fn exists(&self, key: &str) -> bool {
        self.names.contains_key(key)
            || self.interior.contains(key)
            || key == self.domain
            || key == self.reverse_apex()
    }

    /// The apex of the pool's reverse zone (`0.1.10.in-addr.arpa`).
    fn reverse_apex(&self) -> &str {
        &self.reverse_apex
    }

    /// Whether the snapshot is authoritative for `key` in the reverse zone: its apex and the
    /// pool's addresses.
    fn in_reverse_zone(&self, key: &str) -> bool {
        key == self.reverse_apex || self.pool_address(key).is_some()
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
        // Only canonical octets: `1`, not `001` or `+1`.
        let parts: Vec<u8> = octets
            .split('.')
            .map(|p| p.parse::<u8>().ok().filter(|n| n.to_string() == p))
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
    use crate::ledger::state::tests::put_dns as put;
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

    fn build(state: &LedgerState) -> (Zone, Vec<String>) {
        Zone::build(state, DOMAIN, &mut HashMap::new())
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
            Answer::NxDomain { records, soa } => records
                .iter()
                .map(|r| format!("{} {}", r.record_type(), r.data))
                .chain([format!("NXDOMAIN {}", soa.name)])
                .collect(),
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
        let (zone, skipped) = build(&three_members());
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
        let (zone, _) = build(&state);
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
        let (zone, skipped) = build(&ledger(&commands));
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
            merge: false,
        }]);
        let (zone, _) = build(&state);
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
        let (zone, _) = build(&state);
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
        let (zone, skipped) = build(&state);
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
                    records: [(RecordType::A, DnsRecord { value: "10.0.0.1".into(), ttl: 1 })].into(), merge: false });
            }
            let (zone, _) = build(&ledger(&commands));
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
    fn a_members_name_is_its_own() {
        let mut commands = vec![join("peer-a", "alpha")];
        commands.extend([
            put("alpha.weft.internal", RecordType::Aaaa, "fd00::66"),
            put("alpha.weft.internal", RecordType::Txt, "x"),
        ]);
        let (zone, skipped) = build(&ledger(&commands));
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        assert_eq!(
            ask(&zone, "alpha.weft.internal.", WireType::AAAA),
            ["NODATA soa=true"]
        );
        assert_eq!(
            ask(&zone, "alpha.weft.internal.", WireType::TXT),
            ["NODATA soa=true"]
        );
    }

    #[test]
    fn a_name_hostnames_collide_on_answers_nothing() {
        let state = ledger(&[
            join("peer-a", "edge"),
            join("peer-b", "EDGE.lan"),
            put("*.weft.internal", RecordType::A, "10.9.9.9"),
            put("edge.weft.internal", RecordType::A, "10.9.9.8"),
            Command::PutDnsPattern {
                pattern: "edge.*".into(),
                records: [(
                    RecordType::A,
                    DnsRecord {
                        value: "10.9.9.7".into(),
                        ttl: 60,
                    },
                )]
                .into(),
                merge: false,
            },
        ]);
        let (zone, skipped) = build(&state);
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        assert_eq!(
            ask(&zone, "edge.weft.internal.", WireType::A),
            ["NXDOMAIN weft.internal."]
        );
        assert_eq!(
            ask(&zone, "edge-peer-a.weft.internal.", WireType::A),
            ["A 10.1.0.1"]
        );
        assert_eq!(
            ask(&zone, "other.weft.internal.", WireType::A),
            ["A 10.9.9.9"]
        );
    }

    #[test]
    fn a_wildcard_stops_at_the_closest_existing_name() {
        let state = ledger(&[
            put("*.d.example", RecordType::A, "10.9.0.1"),
            put("db.d.example", RecordType::A, "10.9.0.2"),
        ]);
        let (zone, _) = build(&state);
        assert_eq!(ask(&zone, "x.d.example.", WireType::A), ["A 10.9.0.1"]);
        assert_eq!(ask(&zone, "x.y.d.example.", WireType::A), ["A 10.9.0.1"]);
        assert_eq!(ask(&zone, "x.db.d.example.", WireType::A), ["NOT OURS"]);
    }

    #[test]
    fn negative_answers_carry_their_zones_soa() {
        let state = ledger(&[
            join("peer-a", "alpha"),
            put("x.deep.weft.internal", RecordType::Txt, "hello"),
            put(
                "dangling.weft.internal",
                RecordType::Cname,
                "gone.weft.internal",
            ),
        ]);
        let (zone, _) = build(&state);
        assert_eq!(
            ask(&zone, "deep.weft.internal.", WireType::ANY),
            ["NODATA soa=true"]
        );
        assert_eq!(
            ask(&zone, "dangling.weft.internal.", WireType::A),
            ["CNAME gone.weft.internal.", "NXDOMAIN weft.internal."]
        );
        assert!(ask(&zone, "0.1.10.in-addr.arpa.", WireType::SOA)[0].starts_with("SOA "));
        assert_eq!(
            ask(&zone, "0.1.10.in-addr.arpa.", WireType::A),
            ["NODATA soa=true"]
        );
        assert_eq!(
            ask(&zone, "01.0.1.10.in-addr.arpa.", WireType::PTR),
            ["NOT OURS"]
        );
        assert!(zone.is_authoritative(&name("0.1.10.in-addr.arpa.")));
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
