//! The ledger's state machine: every decision the mesh takes by consensus, as a pure function
//! from (state, command) to (state, outcome). No I/O and no clock: commands carry the time the
//! proposer chose, so every replica that applies the same log reaches the same state.
//!
//! This module owns the command set and dispatch; each job has its own file:
//! - `members.rs`: membership and leases (join, renew, expire, leave, deny);
//! - `member_set.rs`: members named by their places in the member table, one bit each, as
//!   the leader commits renewals;
//! - `allocation.rs`: overlay addresses (lowest free address of the pool, static reservations,
//!   a returning member's previous address, exhaustion as an explicit outcome, never a
//!   duplicate);
//! - `roles.rs`: the role policy, fixed roles, bootstrap reports and sticky role assignment;
//! - `dns.rs`: user DNS records and edgevpn regex records, bounded;
//! - `kv.rs`: key-value buckets (edgevpn's open semantics: any member may write) and sealed
//!   secrets;
//! - `tombstones.rs`: the recent key-value deletions, bounded, which merges carry;
//! - `bounds.rs`: caps on member records, the deny list, reservations and remembered
//!   addresses, so that the whole state stays within a snapshot;
//! - `rotation.rs`: the network token's last rotation, sealed for the members;
//! - `operator.rs`: which commands are the operator's, and the last one it signed per subject;
//! - `trust.rs`: the members the operator trusts with a raft seat;
//! - `rules.rs`: the version of these rules, moved forward by a log entry, so that a rule that
//!   changes how an entry applies never changes how entries already in a log apply.

mod allocation;
mod audit;
mod bounds;
mod dns;
mod kv;
mod member_set;
mod members;
pub mod operator;
mod roles;
mod rotation;
mod rules;
mod tombstones;
mod trust;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

pub use audit::{AUDIT_LIMIT, AuditEntry, attribute, is_audited};
pub use bounds::{HOSTNAME_LIMIT, MAX_DENIED, MAX_MEMBERS, MAX_RESERVATIONS};
pub use dns::{DNS_LIMITS, DnsLimits, DnsRecord, RecordSets, RecordType};
pub use kv::{Carried, SHARED_DATA_LIMIT, merged_bucket};
pub use member_set::{MemberSet, digest as keys_digest};
pub use members::{
    ABANDON_FORM, BEAT_FORM, COMMAND_FORM, LeaseState, Member, PAGES_FORM, Platform, SET_FORM,
};
pub use roles::{
    BootstrapReport, FixedRole, MAX_CONTROL_PLANES, Phase, REPORT_DETAIL_LIMIT, Role, RolePolicy,
    parse_role_choice,
};
pub use rotation::{
    MAX_ROTATION_PAGES, ROTATION_PAGE, SealedToken, TokenRotation, page_digest, rotation_digest,
};
pub use rules::{
    NETWORK_BOUND, ROLES_AHEAD, RULES, RULES_FORM, SIGNED_ROLES, TRUSTED_LEAD, TRUSTED_SEATS,
};
pub use tombstones::{MAX_TOMBSTONE_BYTES, MAX_TOMBSTONES, Tombstone, Tombstones};
pub use trust::MAX_TRUSTED;

use members::JoinFacts;

/// A member's PeerId in its text form (the map key everywhere in the ledger).
pub type PeerKey = String;

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
    /// A member joins or rejoins (and updates its facts); it asks for `requested` if given,
    /// declares the role it fixed for itself (`None`: automatic, or keep what the ledger has)
    /// and the role policy it was configured with (applied only while none is set).
    Join {
        peer: PeerKey,
        hostname: String,
        /// Its X25519 public key ([`members::Member::sealing_key`]).
        #[serde(alias = "dataplane_key")]
        sealing_key: [u8; 32],
        endpoints: Vec<String>,
        requested: Option<Ipv4Addr>,
        now: u64,
        #[serde(default)]
        fixed_role: Option<FixedRole>,
        #[serde(default)]
        policy: Option<RolePolicy>,
        /// Whether the node runs a bootstrapper; one that does not gets a role only when one
        /// is fixed for it.
        #[serde(default = "members::yes")]
        bootstraps: bool,
        /// Its OS, architecture and weft version.
        #[serde(default)]
        platform: Platform,
    },
    /// The member is alive; its lease runs on.
    Renew {
        peer: PeerKey,
        now: u64,
    },
    /// The leader renews the leases of the members that asked it to since its last such entry
    /// ([`crate::ledger::renewals`]), each as [`Command::Renew`] does; members not live are
    /// passed over. They are named by PeerId in `peers`, or, once every live member reads it,
    /// by their places in the member table in `set` (`peers` then empty, which a node of a
    /// weft before `set` applies as renewing nobody). A set drawn against a table that has
    /// changed since renews nobody and applies as [`Outcome::UnknownMember`].
    Renewals {
        peers: Vec<PeerKey>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        set: Option<MemberSet>,
        now: u64,
    },
    /// The leader saw the member unreachable past the lease timeout: its address and role are
    /// freed, unless it deployed its role.
    Expire {
        peer: PeerKey,
    },
    /// The leader saw the member away, in the middle of installing or starting its
    /// control-plane seat, for the install timeout: the install is given up, so the seat goes
    /// to another member and, the member being expired, its address is freed. Applies only to
    /// an expired member still acting on its seat; a deployed role stays bound. Written only
    /// once every live member reads it ([`ABANDON_FORM`]).
    AbandonInstall {
        peer: PeerKey,
    },
    /// The leader moves the state to the rules of `version` ([`rules`]): entries after this
    /// one apply by them. Written only once every raft node reads it (its form, [`RULES_FORM`]
    /// for this weft's newest).
    AdoptRules {
        version: u32,
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
    /// An operator's role policy (`weft role policy`).
    SetRolePolicy(RolePolicy),
    /// A node's configured role policy: applied only while the ledger has none (the first
    /// writer sets it).
    InitRolePolicy(RolePolicy),
    /// Fix (or with `None`, unfix) a member's role. Refused for a member that deployed a role
    /// the new one does not admit, unless `force`.
    SetFixedRole {
        peer: PeerKey,
        role: Option<FixedRole>,
        #[serde(default)]
        force: bool,
    },
    /// A member's bootstrapper reports its progress; `deployed` binds the role to the member
    /// when the ledger assigns it that role, or when `restored` (a role deployed earlier: a
    /// sentinel after a restart, a merge) and no deployed member's seat conflicts.
    ReportBootstrap {
        peer: PeerKey,
        report: BootstrapReport,
        #[serde(default)]
        restored: bool,
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
    /// A key-value entry a merge carries from the cluster `from` its proposer left, with its
    /// value there or its deletion; applied by the merge rules against the state as it is
    /// when it applies ([`LedgerState::carry`]), so nothing written meanwhile is lost.
    CarryKv {
        from: ClusterId,
        bucket: String,
        key: String,
        carried: Carried,
    },
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
    /// Trust a PeerId with a raft seat: once the operator trusts any, only trusted members hold
    /// one ([`trust`]). Only ever inside [`Command::Operator`]; alone it does nothing.
    Trust {
        peer: PeerKey,
    },
    /// Take a PeerId off the trust list.
    Untrust {
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
    /// Move the network to a new token (`weft token rotate`): the rotation, and the ledger's
    /// secrets sealed again under the new token.
    RotateToken {
        rotation: Box<TokenRotation>,
        secrets: BTreeMap<String, Vec<u8>>,
        /// In a mesh with an operator key, the operator's signed [`Command::AllowRotation`]
        /// for this rotation ([`operator`]).
        #[serde(default)]
        grant: Option<Box<crate::operator::Signed>>,
    },
    /// A page of the copies of the last rotation's new token ([`rotation`]), taken only when
    /// that rotation, to `network`, awaits a page of its digest.
    RotationKeys {
        network: String,
        keys: BTreeMap<PeerKey, String>,
    },
    /// The operator's consent to one rotation, in the cluster `cluster` (its id as shown),
    /// away from the token whose network id is `previous`, and when `rotation` names one, to
    /// that rotation alone ([`rotation_digest`]): only ever the signed grant inside a
    /// [`Command::RotateToken`], never applied alone.
    AllowRotation {
        cluster: String,
        previous: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rotation: Option<String>,
    },
    /// An operator command with the operator's signature ([`crate::operator`]), applied when
    /// newer than the last one signed for its subject ([`operator`]).
    Operator(Box<crate::operator::Signed>),
    /// A command the leader accepted from `issuer` (the PeerId the proposal came from, or the
    /// leader's own for its local API), recorded in the audit trail as it is applied. Only the
    /// leader wraps commands so ([`attribute`]); a wrapper inside a wrapper does nothing.
    Audited {
        issuer: PeerKey,
        at: u64,
        command: Box<Command>,
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
    /// The member deployed a role the requested fixed role does not admit; it takes `force`.
    RoleDeployed,
    /// A reported deployment is of a role the ledger does not assign the member, or conflicts
    /// with another member's deployed seat or the member's fixed role; it is recorded as a
    /// failure.
    RoleConflict,
    /// The policy asks for no control plane or more than [`MAX_CONTROL_PLANES`].
    InvalidPolicy,
    /// The write would take the ledger's keys, secrets and DNS records past
    /// [`SHARED_DATA_LIMIT`].
    LedgerFull,
    /// A new member's join when the ledger holds [`MAX_MEMBERS`] records and none of them is
    /// an expired one it may drop.
    MembersFull,
    /// The deny list, the reservations or the trust list are full ([`MAX_DENIED`],
    /// [`MAX_RESERVATIONS`], [`MAX_TRUSTED`]).
    ListFull,
    /// A signed operator command numbered at or below the last one applied for its subject:
    /// a replay, or a command the operator signed before a later one.
    OperatorStale,
    /// A signed command that is not an operator command, or does not decode; or a command the
    /// operator may make only signed ([`Command::Trust`]) without a signature, or before the
    /// rules that apply it.
    NotOperatorCommand,
    /// A rotation awaiting more pages of copies than a ledger's members fill, or a page the
    /// last rotation does not await ([`rotation`]).
    RotationPages,
    /// A member's own role change, unsigned, after the operator signed its role: only the
    /// operator changes it now ([`SIGNED_ROLES`]).
    OperatorRole,
    /// Rules newer than this weft's ([`rules`]).
    RulesUnknown,
}

/// The whole replicated state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerState {
    cluster: Option<ClusterId>,
    pool: Ipv4Net,
    members: BTreeMap<PeerKey, Member>,
    /// Address → member holding it.
    holders: BTreeMap<Ipv4Addr, PeerKey>,
    /// The address each member held last, offered back when it rejoins.
    previous: BTreeMap<PeerKey, Ipv4Addr>,
    reservations: BTreeMap<Ipv4Addr, PeerKey>,
    /// The role policy; `None` until a member or an operator sets one.
    #[serde(default)]
    policy: Option<RolePolicy>,
    /// Name (lower case) → type → values.
    dns: BTreeMap<String, RecordSets>,
    /// edgevpn-style regex → type → value.
    #[serde(default)]
    dns_patterns: BTreeMap<String, BTreeMap<RecordType, DnsRecord>>,
    kv: BTreeMap<String, BTreeMap<String, String>>,
    /// The recent key-value deletions ([`tombstones`]).
    #[serde(default)]
    deleted: Tombstones,
    deny: BTreeSet<PeerKey>,
    /// The PeerIds the operator trusts with a raft seat ([`trust`]); written only when any is,
    /// so a state without one encodes as before.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    trusted: BTreeSet<PeerKey>,
    secrets: BTreeMap<String, Vec<u8>>,
    /// The network token's last rotation.
    #[serde(default)]
    rotation: Option<TokenRotation>,
    /// The last audited writes ([`audit`]).
    #[serde(default)]
    audit: std::collections::VecDeque<AuditEntry>,
    /// The operator's last signed command per subject ([`operator`]).
    #[serde(default)]
    operator: operator::Marks,
    /// The version of the rules entries apply by ([`rules`]); 0 in a state from before it.
    #[serde(default, deserialize_with = "rules::known")]
    rules: u32,
    /// Index of the last applied log entry.
    applied: u64,
    /// What [`LedgerState::shared_bytes`] counts, kept as writes apply.
    #[serde(skip)]
    shared: kv::SharedCount,
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
            policy: None,
            dns: BTreeMap::new(),
            dns_patterns: BTreeMap::new(),
            kv: BTreeMap::new(),
            deleted: Tombstones::default(),
            deny: BTreeSet::new(),
            trusted: BTreeSet::new(),
            secrets: BTreeMap::new(),
            rotation: None,
            audit: std::collections::VecDeque::new(),
            operator: operator::Marks::default(),
            rules: 0,
            applied: 0,
            shared: kv::SharedCount::default(),
        }
    }

    /// Applies log entry `index`. Entries at or below the applied index are ignored, so
    /// re-delivering an entry never changes the state twice.
    pub fn apply(&mut self, index: u64, command: &Command) -> Outcome {
        if index <= self.applied {
            return Outcome::Done;
        }
        self.applied = index;
        // Counted before anything changes: a deletion moves the count by what it frees, which
        // must be taken from the count of the state before it.
        self.shared_total();
        self.execute(command)
    }

    /// Applies one command at the current index.
    fn execute(&mut self, command: &Command) -> Outcome {
        match command {
            Command::Genesis(cluster) => {
                self.cluster.get_or_insert(*cluster);
                Outcome::Done
            }
            Command::Recover { cluster, state } => {
                if self.cluster.is_none() {
                    *self = LedgerState {
                        cluster: Some(*cluster),
                        applied: self.applied,
                        ..(**state).clone()
                    };
                }
                Outcome::Done
            }
            Command::Join {
                peer,
                hostname,
                sealing_key,
                endpoints,
                requested,
                now,
                fixed_role,
                policy,
                bootstraps,
                platform,
            } => self.join(
                peer,
                JoinFacts {
                    hostname,
                    sealing_key: *sealing_key,
                    endpoints,
                    requested: *requested,
                    now: *now,
                    fixed_role: *fixed_role,
                    policy: *policy,
                    bootstraps: *bootstraps,
                    platform,
                },
            ),
            Command::Renew { peer, now } => self.renew(peer, *now),
            Command::Renewals { peers, set, now } => {
                for peer in peers {
                    self.renew(peer, *now);
                }
                match set {
                    Some(set) => self.renew_set(set, *now),
                    None => Outcome::Done,
                }
            }
            Command::Expire { peer } => self.expire(peer),
            Command::AbandonInstall { peer } => self.abandon_install(peer),
            Command::AdoptRules { version } => self.adopt_rules(*version),
            Command::Leave { peer } => self.remove(peer),
            Command::Reserve { peer, address } => self.reserve(peer, *address),
            Command::Unreserve { address } => {
                self.reservations.remove(address);
                Outcome::Done
            }
            Command::SetRolePolicy(policy) => self.set_policy(*policy, false),
            Command::InitRolePolicy(policy) => self.set_policy(*policy, true),
            Command::SetFixedRole { peer, role, force } => self.own_fixed_role(peer, *role, *force),
            Command::ReportBootstrap {
                peer,
                report,
                restored,
            } => self.report_bootstrap(peer, report, *restored),
            Command::PutDns {
                name,
                rtype,
                record,
            } => self.put_dns(name, *rtype, record),
            Command::DeleteDns { name, rtype, value } => {
                self.delete_dns(name, *rtype, value.as_deref())
            }
            Command::PutDnsPattern {
                pattern,
                records,
                merge,
            } => self.put_dns_pattern(pattern, records, *merge),
            Command::DeleteDnsPattern { pattern } => self.delete_dns_pattern(pattern),
            Command::KvPut { bucket, key, value } => self.kv_put(bucket, key, value),
            Command::KvDelete { bucket, key } => self.kv_delete(bucket, key.as_deref()),
            Command::CarryKv {
                from,
                bucket,
                key,
                carried,
            } => self.carry(*from, bucket, key, carried),
            Command::Deny { peer } => self.deny(peer),
            Command::Allow { peer } => {
                self.deny.remove(peer);
                Outcome::Done
            }
            Command::Trust { .. } | Command::Untrust { .. } => Outcome::NotOperatorCommand,
            Command::PutSecret { name, sealed } => self.put_secret(name, sealed),
            Command::DeleteSecret { name } => self.delete_secret(name),
            Command::RotateToken {
                rotation,
                secrets,
                grant,
            } => match grant {
                Some(grant) => {
                    self.apply_grant(grant, |state| state.rotate_token(rotation, secrets))
                }
                None => self.rotate_token(rotation, secrets),
            },
            Command::RotationKeys { network, keys } => self.rotation_keys(network, keys),
            Command::AllowRotation { .. } => Outcome::NotOperatorCommand,
            Command::Operator(signed) => self.apply_signed(signed),
            Command::Audited {
                issuer,
                at,
                command,
            } => {
                if matches!(**command, Command::Audited { .. }) {
                    return Outcome::Done;
                }
                let outcome = self.execute(command);
                self.record_audit(issuer, *at, command, &outcome);
                outcome
            }
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

    /// Static reservations: address → member.
    pub fn reservations(&self) -> &BTreeMap<Ipv4Addr, PeerKey> {
        &self.reservations
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

/// A plain `Join` of `peer` (hostname = PeerId, no requested address, automatic role), for the
/// tests of the modules that read the state.
#[cfg(test)]
pub(crate) fn join_command(peer: &str) -> Command {
    Command::Join {
        peer: peer.to_string(),
        hostname: peer.to_string(),
        sealing_key: [0; 32],
        endpoints: vec![],
        requested: None,
        now: 1,
        fixed_role: None,
        policy: None,
        bootstraps: true,
        platform: Platform::default(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A /29: six usable addresses.
    pub fn pool() -> Ipv4Net {
        "10.1.0.0/29".parse().unwrap()
    }

    pub fn join(peer: &str, now: u64) -> Command {
        Command::Join {
            peer: peer.to_string(),
            hostname: format!("host-{peer}"),
            sealing_key: [0; 32],
            endpoints: vec![],
            requested: None,
            now,
            fixed_role: None,
            policy: None,
            bootstraps: true,
            platform: Platform::default(),
        }
    }

    /// A join of `peer` that declares what a node's settings declare: a fixed role, a role
    /// policy, whether it runs a bootstrapper.
    pub fn join_declaring(
        peer: &str,
        fixed_role: Option<FixedRole>,
        policy: Option<u32>,
        bootstraps: bool,
    ) -> Command {
        match join(peer, 1) {
            Command::Join {
                peer,
                hostname,
                sealing_key,
                endpoints,
                requested,
                now,
                platform,
                ..
            } => Command::Join {
                peer,
                hostname,
                sealing_key,
                endpoints,
                requested,
                now,
                fixed_role,
                policy: policy.map(|control_planes| RolePolicy { control_planes }),
                bootstraps,
                platform,
            },
            other => other,
        }
    }

    /// A join of `peer` whose weft reads commands up to `form`.
    pub fn join_reading(peer: &str, form: u32) -> Command {
        let mut command = join(peer, 1);
        if let Command::Join { platform, .. } = &mut command {
            platform.commands = form;
        }
        command
    }

    /// A `PutDns` of one value with a TTL of 60 s.
    pub fn put_dns(name: &str, rtype: RecordType, value: &str) -> Command {
        Command::PutDns {
            name: name.into(),
            rtype,
            record: DnsRecord {
                value: value.into(),
                ttl: 60,
            },
        }
    }

    /// Applies commands with consecutive indexes, returning the outcomes.
    pub fn run(state: &mut LedgerState, commands: &[Command]) -> Vec<Outcome> {
        commands
            .iter()
            .map(|c| {
                let index = state.applied() + 1;
                state.apply(index, c)
            })
            .collect()
    }

    pub fn address(state: &LedgerState, peer: &str) -> Option<Ipv4Addr> {
        state.members()[peer].address
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
