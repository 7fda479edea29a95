//! The ledger's state machine: every decision the mesh takes by consensus, as a pure function
//! from (state, command) to (state, outcome). No I/O and no clock: commands carry the time the
//! leader proposed them, so every replica that applies the same log reaches the same state.
//!
//! It owns membership (hostname, data-plane key, endpoints, lease), overlay address allocation
//! (lowest free address of the pool; static reservations honoured; an expired lease frees its
//! address; a member that comes back gets its previous address when still free; exhaustion is
//! an explicit outcome, never a duplicate), role assignment, DNS records, key-value buckets
//! (edgevpn's open semantics: any member may write), the deny list and sealed secrets.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// A member's PeerId in its text form (the map key everywhere in the ledger).
pub type PeerKey = String;

/// A Kubernetes role, as Kairos names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    /// The only control plane (no HA).
    #[serde(rename = "master")]
    Master,
    /// The first control plane of an HA cluster (k3s `--cluster-init`).
    #[serde(rename = "master/clusterinit")]
    MasterClusterInit,
    /// A further control plane of an HA cluster.
    #[serde(rename = "master/ha")]
    MasterHa,
    #[serde(rename = "worker")]
    Worker,
}

impl Role {
    /// Whether the role runs a control plane.
    pub fn is_control_plane(self) -> bool {
        !matches!(self, Role::Worker)
    }
}

/// How many control planes the cluster wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolePolicy {
    /// 1 for a single control plane; more for HA.
    pub control_planes: u32,
}

impl Default for RolePolicy {
    fn default() -> Self {
        RolePolicy { control_planes: 1 }
    }
}

/// Whether a member's lease is current.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaseState {
    Live,
    Expired,
}

/// One member of the mesh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub hostname: String,
    /// The member's data-plane public key (X25519).
    pub dataplane_key: [u8; 32],
    /// UDP endpoints the member advertises for the data plane.
    pub endpoints: Vec<String>,
    /// The overlay address it holds (none when the pool was exhausted or its lease expired).
    pub address: Option<Ipv4Addr>,
    pub lease: LeaseState,
    /// Time (UNIX seconds, from the proposer) of the last join or renewal.
    pub renewed_at: u64,
    pub role: Option<Role>,
    /// A role the operator fixed for this member; it wins over the policy.
    pub fixed_role: Option<Role>,
}

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

/// The identity of a raft cluster: chosen by the node that initialised it. When two clusters
/// meet, the older one wins (ties: the lower id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ClusterId {
    /// When the cluster was formed (UNIX seconds).
    pub created_at: u64,
    pub id: u64,
}

impl std::fmt::Display for ClusterId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.id)
    }
}

/// A change to the ledger. Times are UNIX seconds chosen by the proposer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// The first entry of a cluster; later ones are ignored.
    Genesis(ClusterId),
    /// The first entry of a cluster recovered from a node's applied state after its old cluster
    /// lost its quorum (`weft ledger recover`): the state is taken over whole under the new
    /// cluster id. Ignored once the ledger has a cluster, like [`Command::Genesis`].
    Recover {
        cluster: ClusterId,
        state: Box<LedgerState>,
    },
    /// A member joins or rejoins (and updates its facts); it asks for `requested` if given.
    Join {
        peer: PeerKey,
        hostname: String,
        dataplane_key: [u8; 32],
        endpoints: Vec<String>,
        requested: Option<Ipv4Addr>,
        now: u64,
    },
    /// The member is alive; its lease runs on.
    Renew {
        peer: PeerKey,
        now: u64,
    },
    /// The leader saw the member unreachable past the lease timeout: its address is freed.
    Expire {
        peer: PeerKey,
    },
    /// The member leaves for good.
    Leave {
        peer: PeerKey,
    },
    /// Reserve `address` for `peer` (honoured even while the peer is away).
    Reserve {
        peer: PeerKey,
        address: Ipv4Addr,
    },
    /// Drop the reservation of `address`.
    Unreserve {
        address: Ipv4Addr,
    },
    SetRolePolicy(RolePolicy),
    /// Fix (or with `None`, unfix) a member's role.
    SetFixedRole {
        peer: PeerKey,
        role: Option<Role>,
    },
    /// Adds a value to the record set of `name` (lower-cased; `*.` for a wildcard). A value
    /// already there gets the new TTL; a CNAME replaces the name's CNAME. A CNAME and other
    /// types never share a name ([`Outcome::DnsConflict`]).
    PutDns {
        name: String,
        rtype: RecordType,
        record: DnsRecord,
    },
    /// Deletes the records of `name`: all of them, those of one type, or one value.
    DeleteDns {
        name: String,
        rtype: Option<RecordType>,
        value: Option<String>,
    },
    /// Sets the records answered for names the (edgevpn-style) regex `pattern` matches,
    /// anchored: replaces what the pattern had, or with `merge`, only the types given.
    PutDnsPattern {
        pattern: String,
        records: BTreeMap<RecordType, DnsRecord>,
        #[serde(default)]
        merge: bool,
    },
    DeleteDnsPattern {
        pattern: String,
    },
    KvPut {
        bucket: String,
        key: String,
        value: String,
    },
    /// Delete one key, or the whole bucket when `key` is `None`.
    KvDelete {
        bucket: String,
        key: Option<String>,
    },
    /// Cut a PeerId off the mesh.
    Deny {
        peer: PeerKey,
    },
    Allow {
        peer: PeerKey,
    },
    /// Store a secret sealed with the ledger key (the state machine never sees it in clear).
    PutSecret {
        name: String,
        sealed: Vec<u8>,
    },
    DeleteSecret {
        name: String,
    },
}

/// What applying a command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Done,
    /// A join succeeded: the member's address and role.
    Joined {
        address: Option<Ipv4Addr>,
        role: Option<Role>,
    },
    /// No free address in the pool: the member is recorded without one.
    PoolExhausted,
    /// The command names a member the ledger does not know.
    UnknownMember,
    /// The PeerId is on the deny list.
    Denied,
    /// The address is outside the pool or not a usable host address.
    OutsidePool,
    /// The address is reserved for, or held by, another member.
    AddressTaken,
    /// A CNAME would share its name with other record types.
    DnsConflict,
    /// The DNS record would pass one of the ledger's DNS limits ([`DNS_LIMITS`]).
    DnsLimit,
}

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

/// The whole replicated state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerState {
    cluster: Option<ClusterId>,
    pool: Ipv4Net,
    members: BTreeMap<PeerKey, Member>,
    /// Address → member holding it (live members only).
    holders: BTreeMap<Ipv4Addr, PeerKey>,
    /// The address each member held last, offered back when it rejoins.
    previous: BTreeMap<PeerKey, Ipv4Addr>,
    reservations: BTreeMap<Ipv4Addr, PeerKey>,
    policy: RolePolicy,
    /// Name (lower case) → type → values.
    dns: BTreeMap<String, RecordSets>,
    /// edgevpn-style regex → type → value.
    #[serde(default)]
    dns_patterns: BTreeMap<String, BTreeMap<RecordType, DnsRecord>>,
    kv: BTreeMap<String, BTreeMap<String, String>>,
    deny: BTreeSet<PeerKey>,
    secrets: BTreeMap<String, Vec<u8>>,
    /// Index of the last applied log entry.
    applied: u64,
}

impl LedgerState {
    /// An empty ledger allocating from `pool`.
    pub fn new(pool: Ipv4Net) -> Self {
        LedgerState {
            cluster: None,
            pool: pool.trunc(),
            members: BTreeMap::new(),
            holders: BTreeMap::new(),
            previous: BTreeMap::new(),
            reservations: BTreeMap::new(),
            policy: RolePolicy::default(),
            dns: BTreeMap::new(),
            dns_patterns: BTreeMap::new(),
            kv: BTreeMap::new(),
            deny: BTreeSet::new(),
            secrets: BTreeMap::new(),
            applied: 0,
        }
    }

    /// Applies log entry `index`. Entries at or below the applied index are ignored, so
    /// re-delivering an entry never changes the state twice.
    pub fn apply(&mut self, index: u64, command: &Command) -> Outcome {
        if index <= self.applied {
            return Outcome::Done;
        }
        self.applied = index;
        match command {
            Command::Genesis(cluster) => {
                self.cluster.get_or_insert(*cluster);
                Outcome::Done
            }
            Command::Recover { cluster, state } => {
                if self.cluster.is_none() {
                    *self = LedgerState {
                        cluster: Some(*cluster),
                        applied: index,
                        ..(**state).clone()
                    };
                }
                Outcome::Done
            }
            Command::Join {
                peer,
                hostname,
                dataplane_key,
                endpoints,
                requested,
                now,
            } => self.join(peer, hostname, *dataplane_key, endpoints, *requested, *now),
            Command::Renew { peer, now } => match self.members.get_mut(peer) {
                Some(member) if member.lease == LeaseState::Live => {
                    member.renewed_at = (*now).max(member.renewed_at);
                    Outcome::Done
                }
                _ => Outcome::UnknownMember,
            },
            Command::Expire { peer } => {
                if !self.members.contains_key(peer) {
                    return Outcome::UnknownMember;
                }
                self.release(peer);
                if let Some(member) = self.members.get_mut(peer) {
                    member.lease = LeaseState::Expired;
                    member.role = None;
                }
                Outcome::Done
            }
            Command::Leave { peer } => {
                if !self.members.contains_key(peer) {
                    return Outcome::UnknownMember;
                }
                self.release(peer);
                self.members.remove(peer);
                Outcome::Done
            }
            Command::Reserve { peer, address } => self.reserve(peer, *address),
            Command::Unreserve { address } => {
                self.reservations.remove(address);
                Outcome::Done
            }
            Command::SetRolePolicy(policy) => {
                self.policy = RolePolicy {
                    control_planes: policy.control_planes.max(1),
                };
                Outcome::Done
            }
            Command::SetFixedRole { peer, role } => match self.members.get_mut(peer) {
                Some(member) => {
                    member.fixed_role = *role;
                    if let Some(role) = role
                        && member.lease == LeaseState::Live
                    {
                        member.role = Some(*role);
                    }
                    Outcome::Done
                }
                None => Outcome::UnknownMember,
            },
            Command::PutDns {
                name,
                rtype,
                record,
            } => self.put_dns(name, *rtype, record),
            Command::DeleteDns { name, rtype, value } => {
                let name = name.to_ascii_lowercase();
                if let Some(sets) = self.dns.get_mut(&name) {
                    sets.retain(|t, values| {
                        if rtype.is_some_and(|r| r != *t) {
                            return true;
                        }
                        values.retain(|r| value.as_ref().is_some_and(|v| *v != r.value));
                        !values.is_empty()
                    });
                    if sets.is_empty() {
                        self.dns.remove(&name);
                    }
                }
                Outcome::Done
            }
            Command::PutDnsPattern {
                pattern,
                records,
                merge,
            } => self.put_dns_pattern(pattern, records, *merge),
            Command::DeleteDnsPattern { pattern } => {
                self.dns_patterns.remove(pattern);
                Outcome::Done
            }
            Command::KvPut { bucket, key, value } => {
                self.kv
                    .entry(bucket.clone())
                    .or_default()
                    .insert(key.clone(), value.clone());
                Outcome::Done
            }
            Command::KvDelete { bucket, key } => {
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
            Command::Deny { peer } => {
                self.deny.insert(peer.clone());
                if self.members.contains_key(peer) {
                    self.release(peer);
                    self.members.remove(peer);
                }
                Outcome::Done
            }
            Command::Allow { peer } => {
                self.deny.remove(peer);
                Outcome::Done
            }
            Command::PutSecret { name, sealed } => {
                self.secrets.insert(name.clone(), sealed.clone());
                Outcome::Done
            }
            Command::DeleteSecret { name } => {
                self.secrets.remove(name);
                Outcome::Done
            }
        }
    }

    fn put_dns(&mut self, name: &str, rtype: RecordType, record: &DnsRecord) -> Outcome {
        let name = name.to_ascii_lowercase();
        let new_name = !self.dns.contains_key(&name);
        let full_set = self
            .dns
            .get(&name)
            .and_then(|sets| sets.get(&rtype))
            .is_some_and(|v| {
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

    fn put_dns_pattern(
        &mut self,
        pattern: &str,
        records: &BTreeMap<RecordType, DnsRecord>,
        merge: bool,
    ) -> Outcome {
        let too_long = pattern.len() > DNS_LIMITS.text
            || records.values().any(|r| r.value.len() > DNS_LIMITS.text);
        let full = !self.dns_patterns.contains_key(pattern)
            && self.dns_patterns.len() >= DNS_LIMITS.patterns;
        if too_long || full {
            return Outcome::DnsLimit;
        }
        let entry = self.dns_patterns.entry(pattern.to_string()).or_default();
        if !merge {
            entry.clear();
        }
        entry.extend(records.iter().map(|(t, r)| (*t, r.clone())));
        if entry.is_empty() {
            self.dns_patterns.remove(pattern);
        }
        Outcome::Done
    }

    fn join(
        &mut self,
        peer: &PeerKey,
        hostname: &str,
        dataplane_key: [u8; 32],
        endpoints: &[String],
        requested: Option<Ipv4Addr>,
        now: u64,
    ) -> Outcome {
        if self.deny.contains(peer) {
            return Outcome::Denied;
        }
        let current = self
            .members
            .get(peer)
            .filter(|m| m.lease == LeaseState::Live)
            .and_then(|m| m.address);
        let address = current.or_else(|| self.choose_address(peer, requested));
        if let Some(address) = address {
            self.holders.insert(address, peer.clone());
            self.previous.insert(peer.clone(), address);
        }
        let fixed_role = self.members.get(peer).and_then(|m| m.fixed_role);
        let kept_role = self
            .members
            .get(peer)
            .filter(|m| m.lease == LeaseState::Live)
            .and_then(|m| m.role);
        let role = fixed_role.or(kept_role).or_else(|| Some(self.next_role()));
        self.members.insert(
            peer.clone(),
            Member {
                hostname: hostname.to_string(),
                dataplane_key,
                endpoints: endpoints.to_vec(),
                address,
                lease: LeaseState::Live,
                renewed_at: now,
                role,
                fixed_role,
            },
        );
        match address {
            Some(address) => Outcome::Joined {
                address: Some(address),
                role,
            },
            None => Outcome::PoolExhausted,
        }
    }

    /// The address a (re)joining member gets: the one it asked for, else its reservation, else
    /// its previous one, else the lowest free one. `None` when the pool is exhausted.
    fn choose_address(&self, peer: &PeerKey, requested: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
        let reserved = self
            .reservations
            .iter()
            .find(|(_, owner)| *owner == peer)
            .map(|(address, _)| *address);
        [requested, reserved, self.previous.get(peer).copied()]
            .into_iter()
            .flatten()
            .find(|address| self.is_free_for(*address, peer))
            .or_else(|| self.usable().find(|a| self.is_free_for(*a, peer)))
    }

    fn is_free_for(&self, address: Ipv4Addr, peer: &PeerKey) -> bool {
        self.is_usable(address)
            && !self.holders.contains_key(&address)
            && self
                .reservations
                .get(&address)
                .is_none_or(|owner| owner == peer)
    }

    /// Host addresses of the pool (network and broadcast excluded for pools of /30 and wider).
    fn usable(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.pool.hosts()
    }

    fn is_usable(&self, address: Ipv4Addr) -> bool {
        self.pool.contains(&address)
            && (self.pool.prefix_len() >= 31
                || (address != self.pool.network() && address != self.pool.broadcast()))
    }

    fn reserve(&mut self, peer: &PeerKey, address: Ipv4Addr) -> Outcome {
        if !self.is_usable(address) {
            return Outcome::OutsidePool;
        }
        let held_by_other = self.holders.get(&address).is_some_and(|h| h != peer);
        let reserved_by_other = self.reservations.get(&address).is_some_and(|o| o != peer);
        if held_by_other || reserved_by_other {
            return Outcome::AddressTaken;
        }
        self.reservations.insert(address, peer.clone());
        Outcome::Done
    }

    /// Frees the member's address (remembering it for a rejoin).
    fn release(&mut self, peer: &PeerKey) {
        if let Some(address) = self.members.get_mut(peer).and_then(|m| m.address.take()) {
            self.holders.remove(&address);
            self.previous.insert(peer.clone(), address);
        }
    }

    /// The role the policy gives the next member (DESIGN §8).
    fn next_role(&self) -> Role {
        let control_planes = self
            .members
            .values()
            .filter(|m| m.lease == LeaseState::Live)
            .filter(|m| m.role.is_some_and(Role::is_control_plane))
            .count() as u32;
        let ha = self.policy.control_planes > 1;
        match control_planes {
            0 if ha => Role::MasterClusterInit,
            0 => Role::Master,
            n if n < self.policy.control_planes => Role::MasterHa,
            _ => Role::Worker,
        }
    }

    /// The cluster this state belongs to, once its genesis entry is applied.
    pub fn cluster(&self) -> Option<ClusterId> {
        self.cluster
    }

    /// The pool addresses are allocated from.
    pub fn pool(&self) -> Ipv4Net {
        self.pool
    }

    /// Index of the last applied entry.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Every member, by PeerId.
    pub fn members(&self) -> &BTreeMap<PeerKey, Member> {
        &self.members
    }

    /// Static reservations: address → member.
    pub fn reservations(&self) -> &BTreeMap<Ipv4Addr, PeerKey> {
        &self.reservations
    }

    /// A key-value bucket.
    pub fn bucket(&self, bucket: &str) -> Option<&BTreeMap<String, String>> {
        self.kv.get(bucket)
    }

    /// Every key-value bucket.
    pub fn buckets(&self) -> &BTreeMap<String, BTreeMap<String, String>> {
        &self.kv
    }

    /// User DNS records: name → type → values.
    pub fn dns(&self) -> &BTreeMap<String, RecordSets> {
        &self.dns
    }

    /// edgevpn-style regex records: pattern → type → value.
    pub fn dns_patterns(&self) -> &BTreeMap<String, BTreeMap<RecordType, DnsRecord>> {
        &self.dns_patterns
    }

    /// Whether a PeerId is on the deny list.
    pub fn is_denied(&self, peer: &str) -> bool {
        self.deny.contains(peer)
    }

    /// The deny list.
    pub fn denied(&self) -> &BTreeSet<PeerKey> {
        &self.deny
    }

    /// Every sealed secret, by name.
    pub fn secrets(&self) -> &BTreeMap<String, Vec<u8>> {
        &self.secrets
    }

    /// A sealed secret.
    pub fn secret(&self, name: &str) -> Option<&[u8]> {
        self.secrets.get(name).map(Vec::as_slice)
    }

    /// The whole state, serialized for a snapshot.
    pub fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("the ledger state serializes to JSON")
    }

    /// Restores a snapshot made by [`LedgerState::snapshot`].
    pub fn restore(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// A plain `Join` of `peer` (hostname = PeerId, no requested address), for the tests of the
/// modules that read the state.
#[cfg(test)]
pub(crate) fn join_command(peer: &str) -> Command {
    Command::Join {
        peer: peer.to_string(),
        hostname: peer.to_string(),
        dataplane_key: [0; 32],
        endpoints: vec![],
        requested: None,
        now: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> Ipv4Net {
        "10.1.0.0/29".parse().unwrap()
    }

    fn join(peer: &str, now: u64) -> Command {
        Command::Join {
            peer: peer.to_string(),
            hostname: format!("host-{peer}"),
            dataplane_key: [0; 32],
            endpoints: vec![],
            requested: None,
            now,
        }
    }

    /// Applies commands with consecutive indexes, returning the outcomes.
    fn run(state: &mut LedgerState, commands: &[Command]) -> Vec<Outcome> {
        commands
            .iter()
            .map(|c| {
                let index = state.applied() + 1;
                state.apply(index, c)
            })
            .collect()
    }

    fn address(state: &LedgerState, peer: &str) -> Option<Ipv4Addr> {
        state.members()[peer].address
    }

    fn put_dns(name: &str, rtype: RecordType, value: &str) -> Command {
        Command::PutDns {
            name: name.into(),
            rtype,
            record: DnsRecord {
                value: value.into(),
                ttl: 60,
            },
        }
    }

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

    #[test]
    fn members_get_the_lowest_free_addresses_in_order() {
        let mut state = LedgerState::new(pool());
        run(&mut state, &[join("a", 1), join("b", 1)]);
        assert_eq!(address(&state, "a"), Some(Ipv4Addr::new(10, 1, 0, 1)));
        assert_eq!(address(&state, "b"), Some(Ipv4Addr::new(10, 1, 0, 2)));
    }

    #[test]
    fn an_exhausted_pool_is_an_explicit_outcome_never_a_duplicate() {
        let mut state = LedgerState::new("10.1.0.0/30".parse().unwrap());
        let outcomes = run(&mut state, &[join("a", 1), join("b", 1), join("c", 1)]);
        assert_eq!(outcomes[2], Outcome::PoolExhausted);
        assert_eq!(address(&state, "c"), None);
    }

    #[test]
    fn an_expired_lease_frees_its_address_and_a_rejoin_gets_it_back_when_free() {
        let mut state = LedgerState::new(pool());
        run(&mut state, &[join("a", 1), join("b", 1)]);
        let a_addr = address(&state, "a");
        run(&mut state, &[Command::Expire { peer: "a".into() }]);
        assert_eq!(address(&state, "a"), None);
        run(&mut state, &[join("a", 5)]);
        assert_eq!(address(&state, "a"), a_addr);
    }

    #[test]
    fn a_freed_address_is_reused_by_the_next_newcomer() {
        let mut state = LedgerState::new(pool());
        run(
            &mut state,
            &[
                join("a", 1),
                join("b", 1),
                Command::Leave { peer: "a".into() },
                join("c", 2),
            ],
        );
        assert_eq!(address(&state, "c"), Some(Ipv4Addr::new(10, 1, 0, 1)));
    }

    #[test]
    fn reservations_are_honoured_and_kept_from_others() {
        let mut state = LedgerState::new(pool());
        let reserved = Ipv4Addr::new(10, 1, 0, 1);
        let outcomes = run(
            &mut state,
            &[
                Command::Reserve {
                    peer: "b".into(),
                    address: reserved,
                },
                join("a", 1),
                join("b", 1),
            ],
        );
        assert_eq!(outcomes[0], Outcome::Done);
        assert_eq!(address(&state, "a"), Some(Ipv4Addr::new(10, 1, 0, 2)));
        assert_eq!(address(&state, "b"), Some(reserved));
        let outside = run(
            &mut state,
            &[Command::Reserve {
                peer: "c".into(),
                address: Ipv4Addr::new(10, 2, 0, 1),
            }],
        );
        assert_eq!(outside[0], Outcome::OutsidePool);
    }

    #[test]
    fn roles_follow_the_policy_and_a_fixed_role_wins() {
        let mut state = LedgerState::new(pool());
        run(
            &mut state,
            &[Command::SetRolePolicy(RolePolicy { control_planes: 2 })],
        );
        run(&mut state, &[join("a", 1), join("b", 1), join("c", 1)]);
        let role = |s: &LedgerState, p: &str| s.members()[p].role;
        assert_eq!(role(&state, "a"), Some(Role::MasterClusterInit));
        assert_eq!(role(&state, "b"), Some(Role::MasterHa));
        assert_eq!(role(&state, "c"), Some(Role::Worker));
        run(
            &mut state,
            &[Command::SetFixedRole {
                peer: "c".into(),
                role: Some(Role::MasterHa),
            }],
        );
        assert_eq!(role(&state, "c"), Some(Role::MasterHa));

        let mut single = LedgerState::new(pool());
        run(&mut single, &[join("x", 1), join("y", 1)]);
        assert_eq!(role(&single, "x"), Some(Role::Master));
        assert_eq!(role(&single, "y"), Some(Role::Worker));
    }

    #[test]
    fn a_denied_peer_is_removed_and_cannot_rejoin() {
        let mut state = LedgerState::new(pool());
        let outcomes = run(
            &mut state,
            &[
                join("a", 1),
                Command::Deny { peer: "a".into() },
                join("a", 2),
            ],
        );
        assert_eq!(outcomes[2], Outcome::Denied);
        assert!(!state.members().contains_key("a"));
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

    #[test]
    fn an_entry_applied_twice_changes_nothing_the_second_time() {
        let mut state = LedgerState::new(pool());
        state.apply(1, &join("a", 1));
        let before = state.clone();
        assert_eq!(state.apply(1, &join("b", 1)), Outcome::Done);
        assert_eq!(state, before);
    }
}
