//! The forwarding cache: whole upstream answers by question, each kept exactly as long as its
//! records may be (RFC 1035 §7.3), negative answers as long as their SOA allows (RFC 2308 §5).
//! A hit comes back with every TTL lowered by the time it spent here, so clients never keep a
//! record past its owner's TTL either. SERVFAIL, REFUSED and answers with a zero TTL are never
//! stored. When full, the entry closest to expiry makes room. Time is passed in, so the policy
//! is tested without a clock.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, Record};

/// The longest time anything is cached, whatever its TTL says.
const MAX_TTL: u32 = 24 * 3600;

/// A question: lower-cased name without the trailing dot, type and class.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
}

/// An upstream answer, as cached and as served.
#[derive(Debug, Clone, PartialEq)]
pub struct Cached {
    pub response_code: ResponseCode,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
}

impl Cached {
    /// The parts of `message` worth passing on.
    pub fn from_message(message: Message) -> Cached {
        Cached {
            response_code: message.metadata.response_code,
            answers: message.answers,
            authorities: message.authorities,
            additionals: message.additionals,
        }
    }

    /// How long the answer may be cached, if at all.
    pub fn ttl(&self) -> Option<u32> {
        let ttl = match self.response_code {
            ResponseCode::NoError if !self.answers.is_empty() => self
                .answers
                .iter()
                .chain(&self.authorities)
                .map(|r| r.ttl)
                .min()?,
            // Negative answers (NXDOMAIN, or NOERROR without answers): the SOA's TTL, capped by
            // its minimum field.
            ResponseCode::NoError | ResponseCode::NXDomain => {
                self.authorities.iter().find_map(|r| match &r.data {
                    RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
                    _ => None,
                })?
            }
            _ => return None,
        };
        (ttl > 0).then_some(ttl.min(MAX_TTL))
    }

    fn aged(&self, secs: u32) -> Cached {
        let age = |records: &[Record]| -> Vec<Record> {
            records
                .iter()
                .cloned()
                .map(|mut r| {
                    r.decrement_ttl(secs);
                    r
                })
                .collect()
        };
        Cached {
            response_code: self.response_code,
            answers: age(&self.answers),
            authorities: age(&self.authorities),
            additionals: age(&self.additionals),
        }
    }
}

#[derive(Debug)]
struct Entry {
    answer: Cached,
    stored: Instant,
    expires: Instant,
    seq: u64,
}

/// A bounded cache of upstream answers.
#[derive(Debug)]
pub struct Cache {
    capacity: usize,
    entries: HashMap<Key, Entry>,
    /// (expiry, insertion sequence) → key: the eviction order.
    by_expiry: BTreeMap<(Instant, u64), Key>,
    seq: u64,
}

impl Cache {
    /// A cache of at most `capacity` answers (0 turns caching off).
    pub fn new(capacity: usize) -> Cache {
        Cache {
            capacity,
            entries: HashMap::new(),
            by_expiry: BTreeMap::new(),
            seq: 0,
        }
    }

    /// The answer to `key` at time `now`, with its TTLs lowered by its age.
    pub fn get(&mut self, key: &Key, now: Instant) -> Option<Cached> {
        let entry = self.entries.get(key)?;
        if now >= entry.expires {
            self.remove(key);
            return None;
        }
        let age = now.duration_since(entry.stored).as_secs();
        Some(entry.answer.aged(u32::try_from(age).unwrap_or(u32::MAX)))
    }

    /// Stores `answer` to `key` at time `now`, when it may be cached. A negative answer's SOA
    /// gets the negative TTL as its own, so that aging it tells clients the truth.
    pub fn insert(&mut self, key: Key, mut answer: Cached, now: Instant) {
        let Some(ttl) = answer.ttl() else {
            return;
        };
        if answer.answers.is_empty() {
            for record in &mut answer.authorities {
                if matches!(record.data, RData::SOA(_)) {
                    record.ttl = record.ttl.min(ttl);
                }
            }
        }
        if self.capacity == 0 {
            return;
        }
        self.remove(&key);
        while self.entries.len() >= self.capacity {
            let Some((_, oldest)) = self.by_expiry.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
        self.seq += 1;
        let expires = now + Duration::from_secs(ttl.into());
        self.by_expiry.insert((expires, self.seq), key.clone());
        self.entries.insert(
            key,
            Entry {
                answer,
                stored: now,
                expires,
                seq: self.seq,
            },
        );
    }

    /// How many answers are held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn remove(&mut self, key: &Key) {
        if let Some(entry) = self.entries.remove(key) {
            self.by_expiry.remove(&(entry.expires, entry.seq));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::Name;
    use hickory_proto::rr::rdata::{A, SOA};
    use std::str::FromStr as _;

    fn key(name: &str) -> Key {
        Key {
            name: name.into(),
            qtype: 1,
            qclass: 1,
        }
    }

    fn a(ttl: u32) -> Record {
        Record::from_rdata(
            Name::from_str("x.example.").unwrap(),
            ttl,
            RData::A(A(std::net::Ipv4Addr::new(10, 0, 0, 1))),
        )
    }

    fn soa(ttl: u32, minimum: u32) -> Record {
        let n = Name::from_str("example.").unwrap();
        Record::from_rdata(
            n.clone(),
            ttl,
            RData::SOA(SOA::new(n.clone(), n, 1, 1, 1, 1, minimum)),
        )
    }

    fn answer(code: ResponseCode, answers: Vec<Record>, authorities: Vec<Record>) -> Cached {
        Cached {
            response_code: code,
            answers,
            authorities,
            additionals: vec![],
        }
    }

    #[test]
    fn entries_live_exactly_as_long_as_their_lowest_ttl() {
        let t0 = Instant::now();
        let mut cache = Cache::new(10);
        cache.insert(
            key("x"),
            answer(ResponseCode::NoError, vec![a(2), a(30)], vec![]),
            t0,
        );
        let hit = cache
            .get(&key("x"), t0 + Duration::from_millis(1500))
            .unwrap();
        assert_eq!(hit.answers[0].ttl, 1, "aged by one whole second");
        assert_eq!(hit.answers[1].ttl, 29);
        assert!(cache.get(&key("x"), t0 + Duration::from_secs(2)).is_none());
        assert_eq!(cache.len(), 0, "an expired entry is dropped when seen");
    }

    #[test]
    fn negative_answers_follow_the_soa_and_failures_are_not_kept() {
        let nx = answer(ResponseCode::NXDomain, vec![], vec![soa(300, 30)]);
        assert_eq!(nx.ttl(), Some(30));
        let nodata = answer(ResponseCode::NoError, vec![], vec![soa(10, 60)]);
        assert_eq!(nodata.ttl(), Some(10));
        assert_eq!(answer(ResponseCode::NXDomain, vec![], vec![]).ttl(), None);
        assert_eq!(
            answer(ResponseCode::ServFail, vec![a(60)], vec![]).ttl(),
            None
        );
        assert_eq!(answer(ResponseCode::Refused, vec![], vec![]).ttl(), None);
        assert_eq!(
            answer(ResponseCode::NoError, vec![a(0)], vec![]).ttl(),
            None
        );
    }

    #[test]
    fn an_aged_negative_answer_expires_with_its_entry() {
        let t0 = Instant::now();
        let mut cache = Cache::new(10);
        cache.insert(
            key("nx"),
            answer(ResponseCode::NXDomain, vec![], vec![soa(300, 30)]),
            t0,
        );
        let hit = cache.get(&key("nx"), t0 + Duration::from_secs(29)).unwrap();
        assert_eq!(hit.authorities[0].ttl, 1, "30 s of negative TTL, 29 spent");
    }

    #[test]
    fn a_full_cache_evicts_what_expires_first() {
        let t0 = Instant::now();
        let mut cache = Cache::new(2);
        cache.insert(
            key("long"),
            answer(ResponseCode::NoError, vec![a(100)], vec![]),
            t0,
        );
        cache.insert(
            key("short"),
            answer(ResponseCode::NoError, vec![a(5)], vec![]),
            t0,
        );
        cache.insert(
            key("new"),
            answer(ResponseCode::NoError, vec![a(50)], vec![]),
            t0,
        );
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&key("short"), t0).is_none());
        assert!(cache.get(&key("long"), t0).is_some());
        assert!(cache.get(&key("new"), t0).is_some());
        let mut off = Cache::new(0);
        off.insert(
            key("x"),
            answer(ResponseCode::NoError, vec![a(100)], vec![]),
            t0,
        );
        assert_eq!(off.len(), 0);
    }
}
