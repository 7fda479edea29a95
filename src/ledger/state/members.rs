//! Membership and leases: a member joins (and rejoins) with its facts, renews its lease, is
//! expired by the leader when unreachable too long, leaves, or is denied. An expired member
//! frees its address and role, unless it deployed its role or was installing it: such a
//! member's role and address stay bound to it (Kubernetes knows the node by that address)
//! until an operator removes it.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::bounds::{self, PLATFORM_FIELD_LIMIT};
use super::roles::{BootstrapReport, FixedRole, Phase, Role, RolePolicy};
use super::{LedgerState, MemberSet, Outcome, PeerKey};

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
    /// The member's X25519 public key: what is for this member alone (a rotated network
    /// token) is sealed to it. All zeros when the member gave none.
    #[serde(alias = "dataplane_key")]
    pub sealing_key: [u8; 32],
    /// UDP endpoints the member advertises for the data plane.
    pub endpoints: Vec<String>,
    /// The overlay address it holds (none when the pool was exhausted or its lease expired).
    pub address: Option<Ipv4Addr>,
    pub lease: LeaseState,
    /// Time (UNIX seconds, from the proposer) of the last join or renewal.
    pub renewed_at: u64,
    /// The role the ledger assigns it (see `roles.rs`).
    pub role: Option<Role>,
    /// A role fixed by the member's `--role` or an operator; `None` is automatic.
    pub fixed_role: Option<FixedRole>,
    /// The role its bootstrapper reported deployed: bound to it until an operator says
    /// otherwise.
    #[serde(default)]
    pub deployed: Option<Role>,
    /// Its bootstrapper's last report.
    #[serde(default)]
    pub bootstrap: Option<BootstrapReport>,
    /// Log index of its first join, which orders members for control-plane seats.
    #[serde(default)]
    pub joined: u64,
    /// Whether it runs a bootstrapper (else it gets a role only when one is fixed for it).
    #[serde(default = "yes")]
    pub bootstraps: bool,
    /// What it runs on and which weft, as edgevpn's `/api/machines` shows them (`linux`,
    /// `amd64`, the version).
    #[serde(default)]
    pub platform: Platform,
}

/// A member's operating system, architecture (Go's names, as edgevpn reports them) and weft
/// version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub version: String,
    /// The newest form of the ledger's commands and feed messages its weft reads
    /// ([`COMMAND_FORM`]); 0 from a weft before this field.
    #[serde(default)]
    pub commands: u32,
}

/// Renewals name their members as a [`MemberSet`].
pub const SET_FORM: u32 = 1;
/// The leader's routine feed messages (heartbeats, renewals) are a
/// [`Beat`](crate::ledger::follower::Beat).
pub const BEAT_FORM: u32 = 2;
/// The leader gives up the install of a member away too long
/// ([`Command::AbandonInstall`](super::Command::AbandonInstall)).
pub const ABANDON_FORM: u32 = 3;
/// A token rotation may carry its members' copies in pages
/// ([`Command::RotationKeys`](super::Command::RotationKeys)).
pub const PAGES_FORM: u32 = 4;
/// The newest form of the ledger's commands and feed messages this weft reads. The leader
/// writes a form only once every live member records that it reads it
/// ([`LedgerState::reads_form`]), or, for the rules, every raft node
/// ([`super::RULES_FORM`]).
pub const COMMAND_FORM: u32 = super::RULES_FORM;

impl Platform {
    /// This process's platform.
    pub fn here() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            other => other,
        };
        Platform {
            os: std::env::consts::OS.to_string(),
            arch: arch.to_string(),
            version: crate::VERSION.to_string(),
            commands: COMMAND_FORM,
        }
    }

    /// Whether every field fits the ledger's bounds.
    fn is_bounded(&self) -> bool {
        [&self.os, &self.arch, &self.version]
            .iter()
            .all(|field| field.len() <= PLATFORM_FIELD_LIMIT)
    }
}

pub(super) fn yes() -> bool {
    true
}

impl Member {
    /// The control-plane seat this member's bootstrapper is acting on right now (its last
    /// report: installing or starting the role it holds).
    pub fn acting_on(&self) -> Option<Role> {
        let report = self.bootstrap.as_ref()?;
        let acting = matches!(report.phase, Phase::Installing | Phase::Starting);
        self.role
            .filter(|role| acting && report.role == Some(*role) && role.is_control_plane())
    }

    /// Whether the member's role and address stay with it while it is away.
    pub fn is_bound(&self) -> bool {
        self.deployed.is_some() || self.acting_on().is_some()
    }
}

/// What a joining member says about itself.
pub(super) struct JoinFacts<'a> {
    pub hostname: &'a str,
    pub sealing_key: [u8; 32],
    pub endpoints: &'a [String],
    pub requested: Option<Ipv4Addr>,
    pub now: u64,
    pub fixed_role: Option<FixedRole>,
    pub policy: Option<RolePolicy>,
    pub bootstraps: bool,
    pub platform: &'a Platform,
}

impl LedgerState {
    pub(super) fn join(&mut self, peer: &PeerKey, facts: JoinFacts<'_>) -> Outcome {
        if self.deny.contains(peer) {
            return Outcome::Denied;
        }
        if !bounds::plausible_peer(peer) {
            return Outcome::UnknownMember;
        }
        if !self.room_for_member(peer) {
            return Outcome::MembersFull;
        }
        if let Some(policy) = facts.policy {
            // Only the first writer sets the policy; an invalid one is ignored, not the join.
            let _ = self.set_policy(policy, true);
        }
        let existing = self.members.get(peer).cloned();
        // A live member keeps its address; so does a bound one whose lease expired.
        let kept = existing
            .as_ref()
            .filter(|m| m.lease == LeaseState::Live || m.is_bound())
            .and_then(|m| m.address);
        let address = kept.or_else(|| self.choose_address(peer, facts.requested));
        if let Some(address) = address {
            self.hold(peer, address);
        }
        let deployed = existing.as_ref().and_then(|m| m.deployed);
        // The role the operator signed for the member, when it did, stands for what it declares.
        let declared = self
            .signed_role(peer)
            .unwrap_or(facts.fixed_role)
            .filter(|fixed| deployed.is_none_or(|role| fixed.admits(role)));
        let member = Member {
            hostname: bounds::hostname(facts.hostname),
            sealing_key: facts.sealing_key,
            endpoints: bounds::endpoints(facts.endpoints),
            address,
            lease: LeaseState::Live,
            renewed_at: facts.now,
            role: existing.as_ref().and_then(|m| m.role),
            fixed_role: declared.or(existing.as_ref().and_then(|m| m.fixed_role)),
            deployed,
            bootstrap: existing.as_ref().and_then(|m| m.bootstrap.clone()),
            joined: existing.as_ref().map_or(self.applied, |m| m.joined),
            bootstraps: facts.bootstraps,
            platform: if facts.platform.is_bounded() {
                facts.platform.clone()
            } else {
                Platform::default()
            },
        };
        self.members.insert(peer.clone(), member);
        self.forget_remembered();
        self.assign_roles();
        match address {
            Some(address) => Outcome::Joined {
                address: Some(address),
                role: self.members[peer].role,
            },
            None => Outcome::PoolExhausted,
        }
    }

    pub(super) fn renew(&mut self, peer: &PeerKey, now: u64) -> Outcome {
        match self.members.get_mut(peer) {
            Some(member) if member.lease == LeaseState::Live => {
                // Every renewal moves the stamp, even from a clock that stepped back: the leader
                // counts a changed stamp as a renewal ([`crate::ledger::lease`]).
                member.renewed_at = now.max(member.renewed_at.saturating_add(1));
                Outcome::Done
            }
            _ => Outcome::UnknownMember,
        }
    }

    /// Renews each member `set` names ([`Command::Renewals`](super::Command::Renewals)).
    pub(super) fn renew_set(&mut self, set: &MemberSet, now: u64) -> Outcome {
        let table: Vec<&PeerKey> = self.members.keys().collect();
        let Some(named) = set.members(&table) else {
            return Outcome::UnknownMember;
        };
        let named: Vec<PeerKey> = named.into_iter().cloned().collect();
        for peer in &named {
            self.renew(peer, now);
        }
        Outcome::Done
    }

    /// Whether every live member reads `form` ([`SET_FORM`], [`BEAT_FORM`]).
    pub fn reads_form(&self, form: u32) -> bool {
        self.not_reading(form).next().is_none()
    }

    /// The live members whose weft does not read `form`.
    pub fn not_reading(&self, form: u32) -> impl Iterator<Item = (&PeerKey, &Member)> {
        self.members
            .iter()
            .filter(move |(_, m)| m.lease == LeaseState::Live && m.platform.commands < form)
    }

    /// The renewals of `peers` at `now` as one [`MemberSet`] of the member table, all in one
    /// command whatever their number; `None` while a live member does not read sets.
    pub fn renewal_set(&self, peers: &[PeerKey], now: u64) -> Option<super::Command> {
        if !self.reads_form(SET_FORM) {
            return None;
        }
        let named: std::collections::BTreeSet<&PeerKey> = peers.iter().collect();
        Some(super::Command::Renewals {
            peers: Vec::new(),
            set: Some(MemberSet::of(self.members.keys(), |k| named.contains(k))),
            now,
        })
    }

    pub(super) fn expire(&mut self, peer: &PeerKey) -> Outcome {
        let Some(member) = self.members.get(peer) else {
            return Outcome::UnknownMember;
        };
        if !member.is_bound() {
            self.release(peer);
        }
        if let Some(member) = self.members.get_mut(peer) {
            member.lease = LeaseState::Expired;
        }
        self.assign_roles();
        Outcome::Done
    }

    /// Removes a member for good: its address, name and seat are freed.
    pub(super) fn remove(&mut self, peer: &PeerKey) -> Outcome {
        if !self.members.contains_key(peer) {
            return Outcome::UnknownMember;
        }
        self.release(peer);
        self.members.remove(peer);
        self.forget_remembered();
        self.assign_roles();
        Outcome::Done
    }

    pub(super) fn deny(&mut self, peer: &PeerKey) -> Outcome {
        if !bounds::plausible_peer(peer) {
            return Outcome::UnknownMember;
        }
        if !self.room_to_deny(peer) {
            return Outcome::ListFull;
        }
        self.deny.insert(peer.clone());
        if self.members.contains_key(peer) {
            self.remove(peer);
        }
        Outcome::Done
    }

    /// Every member, by PeerId.
    pub fn members(&self) -> &std::collections::BTreeMap<PeerKey, Member> {
        &self.members
    }

    /// Whether a PeerId is on the deny list.
    pub fn is_denied(&self, peer: &str) -> bool {
        self.deny.contains(peer)
    }

    /// The deny list.
    pub fn denied(&self) -> &std::collections::BTreeSet<PeerKey> {
        &self.deny
    }
}

#[cfg(test)]
mod tests {
    use super::super::Command;
    use super::super::tests::{address, join, join_declaring, pool, run};
    use super::*;

    #[test]
    fn every_renewal_moves_the_stamp_whatever_the_members_clock_says() {
        let mut state = LedgerState::new(pool());
        run(&mut state, &[join("a", 1000)]);
        let stamp = |state: &LedgerState| state.members()["a"].renewed_at;
        let mut last = stamp(&state);
        for now in [2000, 5, 5, 0] {
            run(
                &mut state,
                &[Command::Renew {
                    peer: "a".into(),
                    now,
                }],
            );
            assert_ne!(stamp(&state), last, "a renewal at {now}");
            last = stamp(&state);
        }
    }

    #[test]
    fn a_renewals_entry_renews_each_live_member_it_names_and_passes_over_the_others() {
        let mut state = LedgerState::new(pool());
        run(&mut state, &[join("a", 10), join("b", 10), join("c", 10)]);
        run(&mut state, &[Command::Expire { peer: "c".into() }]);
        let before = state.clone();
        run(
            &mut state,
            &[Command::Renewals {
                peers: vec!["a".into(), "c".into(), "stranger".into()],
                set: None,
                now: 50,
            }],
        );
        assert_eq!(state.members()["a"].renewed_at, 50);
        assert_eq!(state.members()["b"], before.members()["b"], "not named");
        assert_eq!(state.members()["c"], before.members()["c"], "not live");
        assert!(!state.members().contains_key("stranger"));
    }

    fn join_reading_sets(peer: &str, now: u64) -> Command {
        let mut command = join(peer, now);
        if let Command::Join { platform, .. } = &mut command {
            *platform = Platform::here();
        }
        command
    }

    #[test]
    fn renewals_name_members_by_place_only_once_every_live_member_reads_it() {
        let mut state = LedgerState::new(pool());
        run(
            &mut state,
            &[join_reading_sets("a", 10), join("b", 10), join("c", 10)],
        );
        assert_eq!(
            state.renewal_set(&["a".into(), "c".into()], 50),
            None,
            "b and c read no sets"
        );
        run(&mut state, &[Command::Expire { peer: "b".into() }]);
        run(&mut state, &[join_reading_sets("c", 20)]);
        let by_place = state
            .renewal_set(&["a".into(), "b".into(), "c".into()], 50)
            .expect("every live member reads sets");
        let Command::Renewals {
            peers,
            set: Some(set),
            ..
        } = &by_place
        else {
            panic!("a set: {by_place:?}");
        };
        assert!(peers.is_empty());
        let before = state.clone();
        assert_eq!(
            run(&mut state, std::slice::from_ref(&by_place)),
            vec![Outcome::Done]
        );
        assert_eq!(state.members()["a"].renewed_at, 50);
        assert_eq!(state.members()["c"].renewed_at, 50);
        assert_eq!(state.members()["b"], before.members()["b"], "not live");
        assert!(
            set.members(&state.members().keys().collect::<Vec<_>>())
                .is_some()
        );
    }

    #[test]
    fn a_form_is_written_only_while_every_live_member_reads_it() {
        let mut state = LedgerState::new(pool());
        let mut at_set_form = join("a", 10);
        if let Command::Join { platform, .. } = &mut at_set_form {
            *platform = Platform {
                commands: SET_FORM,
                ..Platform::here()
            };
        }
        run(&mut state, &[at_set_form, join_reading_sets("b", 10)]);
        assert!(state.reads_form(SET_FORM));
        assert!(!state.reads_form(BEAT_FORM), "a reads sets, not beats");
        run(&mut state, &[Command::Expire { peer: "a".into() }]);
        assert!(state.reads_form(BEAT_FORM), "only live members count");
    }

    #[test]
    fn a_renewal_set_drawn_before_the_member_table_changed_renews_nobody() {
        let mut state = LedgerState::new(pool());
        run(
            &mut state,
            &[join_reading_sets("a", 10), join_reading_sets("c", 10)],
        );
        let renewals = state.renewal_set(&["a".into(), "c".into()], 50).unwrap();
        run(&mut state, &[join_reading_sets("b", 30)]);
        let before = state.clone();
        assert_eq!(run(&mut state, &[renewals]), vec![Outcome::UnknownMember]);
        assert_eq!(
            state.members(),
            before.members(),
            "b's place is a's or c's old one: nobody is renewed"
        );
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
    fn a_join_declares_the_fixed_role_and_the_first_policy() {
        let mut state = LedgerState::new(pool());
        let declaring = |peer: &str, fixed, n| join_declaring(peer, fixed, Some(n), true);
        run(
            &mut state,
            &[
                declaring("a", Some(FixedRole::Worker), 3),
                declaring("b", None, 1),
            ],
        );
        assert_eq!(state.policy().control_planes, 3, "the first writer sets it");
        assert_eq!(state.members()["a"].role, Some(Role::Worker));
        assert_eq!(state.members()["b"].role, Some(Role::MasterClusterInit));
    }
}
