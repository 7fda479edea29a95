//! Kubernetes roles, decided by the log so that every replica agrees (DESIGN §8, §12).
//!
//! The policy asks for N control planes: N = 1 gives one `master`; N > 1 gives one
//! `master/clusterinit` (k3s `--cluster-init`, embedded etcd) and up to N-1 `master/ha`; every
//! other member is a `worker`. A member may fix its role (`--role master|worker|none`, or an
//! operator's `weft role set`); a fixed `master` takes a control-plane seat before automatic
//! members do, but never one that is deployed.
//!
//! Roles are sticky. Once a member's bootstrapper reports a role *deployed*, that role (and the
//! member's overlay address, see `members.rs`) stays bound to the member across restarts, lease
//! expiry and merges, until an operator removes the member or forces another role: a second
//! `master` would be a second Kubernetes cluster. Deployed roles are facts the assignment works
//! around; only seats that no deployed member holds are offered, to live members, in a
//! deterministic order ([`LedgerState::assign_roles`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::bounds::truncate;
use super::{LeaseState, LedgerState, Outcome, PeerKey};

/// A Kubernetes role, as Kairos names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
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

    /// Whether the role founds the Kubernetes cluster (`master` or `master/clusterinit`).
    pub fn founds_cluster(self) -> bool {
        matches!(self, Role::Master | Role::MasterClusterInit)
    }

    /// Kairos' name of the role.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::MasterClusterInit => "master/clusterinit",
            Role::MasterHa => "master/ha",
            Role::Worker => "worker",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role fixed for a member by its own `--role` or by an operator. No fixed role means
/// automatic assignment by the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FixedRole {
    /// A control plane: whichever seat kind the policy has free.
    Master,
    Worker,
    /// A member of the mesh that runs no Kubernetes.
    None,
}

impl FixedRole {
    /// Whether a member with this fixed role may hold `role`.
    pub fn admits(self, role: Role) -> bool {
        match self {
            FixedRole::Master => role.is_control_plane(),
            FixedRole::Worker => role == Role::Worker,
            FixedRole::None => false,
        }
    }

    /// The name `--role` and `weft role set` use.
    pub fn as_str(self) -> &'static str {
        match self {
            FixedRole::Master => "master",
            FixedRole::Worker => "worker",
            FixedRole::None => "none",
        }
    }
}

/// Reads `auto` (no fixed role), `master`, `worker` or `none`.
pub fn parse_role_choice(text: &str) -> Result<Option<FixedRole>, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "auto" | "" => Ok(None),
        "master" => Ok(Some(FixedRole::Master)),
        "worker" => Ok(Some(FixedRole::Worker)),
        "none" => Ok(Some(FixedRole::None)),
        _ => Err(format!(
            "unknown role {text:?}: expected auto, master, worker or none"
        )),
    }
}

/// The most control planes a policy may ask for (an etcd cluster larger than this gains
/// nothing and costs every write).
pub const MAX_CONTROL_PLANES: u32 = 9;

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

impl RolePolicy {
    fn is_valid(self) -> bool {
        (1..=MAX_CONTROL_PLANES).contains(&self.control_planes)
    }
}

/// Where a member's bootstrapper is with its role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Waiting for something it needs (an address, members, the join token...).
    Waiting,
    /// Writing configuration.
    Installing,
    /// Starting the service and waiting for it.
    Starting,
    Deployed,
    /// The last attempt failed; it is retried.
    Failed,
}

impl Phase {
    /// The phase's name in status output.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Waiting => "waiting",
            Phase::Installing => "installing",
            Phase::Starting => "starting",
            Phase::Deployed => "deployed",
            Phase::Failed => "failed",
        }
    }
}

/// Longest detail (reason or error) a report keeps; longer ones are cut.
pub const REPORT_DETAIL_LIMIT: usize = 1024;

/// What a member's bootstrapper last reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootstrapReport {
    /// The role it is working on (none while it waits for one).
    pub role: Option<Role>,
    pub phase: Phase,
    /// Why it waits, or the error of a failed attempt.
    pub detail: String,
    /// When (UNIX seconds, the member's clock).
    pub at: u64,
}

impl LedgerState {
    /// The policy in force: the ledger's, or the default (one control plane) until a member
    /// sets one.
    pub fn policy(&self) -> RolePolicy {
        self.policy.unwrap_or_default()
    }

    /// Whether any member has set the policy yet.
    pub fn policy_is_set(&self) -> bool {
        self.policy.is_some()
    }

    pub(super) fn set_policy(&mut self, policy: RolePolicy, only_if_unset: bool) -> Outcome {
        if !policy.is_valid() {
            return Outcome::InvalidPolicy;
        }
        if only_if_unset && self.policy.is_some() {
            return Outcome::Done;
        }
        self.policy = Some(policy);
        self.assign_roles();
        Outcome::Done
    }

    /// Fixes (or with `None`, unfixes) a member's role. A member that deployed a role the new
    /// one does not admit keeps it unless `force`; forcing drops the deployed binding.
    pub(super) fn set_fixed_role(
        &mut self,
        peer: &PeerKey,
        role: Option<FixedRole>,
        force: bool,
    ) -> Outcome {
        let Some(member) = self.members.get_mut(peer) else {
            return Outcome::UnknownMember;
        };
        if let Some(deployed) = member.deployed
            && role.is_some_and(|fixed| !fixed.admits(deployed))
        {
            if !force {
                return Outcome::RoleDeployed;
            }
            member.deployed = None;
        }
        member.fixed_role = role;
        self.assign_roles();
        Outcome::Done
    }

    /// Records a bootstrapper's report. A `deployed` report binds the role to the member when
    /// the ledger assigns it that role (or, `restored`, the member deployed it earlier) and no
    /// deployed member's seat conflicts with it; otherwise it is recorded as a conflict.
    pub(super) fn report_bootstrap(
        &mut self,
        peer: &PeerKey,
        report: &BootstrapReport,
        restored: bool,
    ) -> Outcome {
        if !self.members.contains_key(peer) {
            return Outcome::UnknownMember;
        }
        let mut report = report.clone();
        truncate(&mut report.detail, REPORT_DETAIL_LIMIT);
        let mut outcome = Outcome::Done;
        if report.phase == Phase::Deployed
            && let Some(role) = report.role
        {
            match self.deploy_conflict(peer, role, restored) {
                None => {
                    if let Some(member) = self.members.get_mut(peer) {
                        member.deployed = Some(role);
                    }
                }
                Some(why) => {
                    report.phase = Phase::Failed;
                    report.detail = why;
                    truncate(&mut report.detail, REPORT_DETAIL_LIMIT);
                    outcome = Outcome::RoleConflict;
                }
            }
        }
        if let Some(member) = self.members.get_mut(peer) {
            member.bootstrap = Some(report);
        }
        self.assign_roles();
        outcome
    }

    /// Gives up the install of an expired member still acting on its seat: its report becomes
    /// a failure saying so, which unbinds the seat and, the member being expired, its address.
    /// A member that renewed or moved on since the leader decided is left as it is.
    pub(super) fn abandon_install(&mut self, peer: &PeerKey) -> Outcome {
        let Some(member) = self.members.get_mut(peer) else {
            return Outcome::UnknownMember;
        };
        let Some(role) = member.acting_on() else {
            return Outcome::Done;
        };
        if member.lease != LeaseState::Expired {
            return Outcome::Done;
        }
        if let Some(report) = member.bootstrap.as_mut() {
            report.phase = Phase::Failed;
            report.detail = format!(
                "given up: away for the install timeout while installing {role}; the seat is \
                 free for another member"
            );
        }
        self.assign_roles();
        Outcome::Done
    }

    /// Why `peer` cannot hold `role` as deployed, or `None` when it can.
    fn deploy_conflict(&self, peer: &PeerKey, role: Role, restored: bool) -> Option<String> {
        let member = &self.members[peer];
        if member.deployed == Some(role) {
            return None;
        }
        if !restored && member.role != Some(role) {
            return Some(format!(
                "deployed {role}, but the ledger now assigns {}: the deployment is not bound to \
                 this member",
                member.role.map_or("no role".to_string(), |r| r.to_string())
            ));
        }
        if let Some(fixed) = member.fixed_role
            && !fixed.admits(role)
        {
            return Some(format!(
                "deployed {role}, but the member's role is fixed to {}",
                fixed.as_str()
            ));
        }
        if !role.is_control_plane() {
            return None;
        }
        let seats = self.policy().control_planes as usize;
        if (role == Role::Master) != (seats == 1) {
            return Some(format!(
                "deployed {role}, but the policy asks for {seats} control plane(s)"
            ));
        }
        // The seats other members hold: deployed, and, against a deployment bound on the
        // member's word alone (restored, not assigned), those being installed or started right
        // now, so that no member can take a seat from under an install by saying it deployed.
        let on_its_word = member.role != Some(role);
        let others: Vec<(&PeerKey, Role, bool)> = self
            .members
            .iter()
            .filter(|(p, _)| *p != peer)
            .filter_map(|(p, m)| match (m.deployed, m.acting_on()) {
                (Some(r), _) => r.is_control_plane().then_some((p, r, true)),
                (None, Some(r)) if on_its_word => Some((p, r, false)),
                _ => None,
            })
            .collect();
        // A founding seat being installed clashes with any other control plane bound now: the
        // seats left free once one is deployed are all `master/ha` ([`free_seats`]).
        let clash = others.iter().find(|(_, other, deployed)| {
            *other == Role::Master
                || role == Role::Master
                || (role.founds_cluster() && other.founds_cluster())
                || (!deployed && other.founds_cluster())
        });
        if let Some((holder, other, deployed)) = clash {
            return Some(if *deployed {
                format!(
                    "deployed {role}, but {holder} already deployed {other}: two Kubernetes \
                     clusters exist; remove one (weft members rm) and reinstall it"
                )
            } else {
                format!(
                    "deployed {role}, but {holder} is installing {other}, the seat the ledger \
                     gave it: a deployment the ledger never assigned this member does not take \
                     it"
                )
            });
        }
        if others.len() >= seats {
            return Some(format!(
                "deployed {role}, but all {seats} control-plane seats are deployed or being \
                 installed"
            ));
        }
        None
    }

    /// Recomputes every member's role from the deployed facts, the fixed roles and the policy.
    /// Deterministic: it reads only the state.
    pub(super) fn assign_roles(&mut self) {
        let seats = self.policy().control_planes as usize;
        let deployed: Vec<Role> = self
            .members
            .values()
            .filter_map(|m| m.deployed.filter(|r| r.is_control_plane()))
            .collect();
        let mut free = free_seats(&deployed, seats);
        let mut offered: BTreeMap<PeerKey, Role> = BTreeMap::new();
        // Who may take a seat: undeployed members that are live (or away in the middle of
        // installing their seat), not fixed to worker or none, and running a bootstrapper
        // unless fixed to master.
        let candidates: Vec<&PeerKey> = self
            .members
            .iter()
            .filter(|(_, m)| {
                m.deployed.is_none()
                    && (m.lease == LeaseState::Live || m.acting_on().is_some())
                    && match m.fixed_role {
                        Some(FixedRole::Master) => true,
                        None => m.bootstraps,
                        Some(_) => false,
                    }
            })
            .map(|(peer, _)| peer)
            .collect();
        // A member acting on its seat right now keeps that very seat when it is still free.
        for peer in &candidates {
            if let Some(role) = self.members[*peer].acting_on()
                && let Some(i) = free.iter().position(|seat| *seat == role)
            {
                free.remove(i);
                offered.insert((*peer).clone(), role);
            }
        }
        // Then live fixed masters, then live members already holding a seat (the founding kind
        // first), then the earliest joined.
        let mut queue: Vec<(u8, u8, u64, &PeerKey)> = candidates
            .iter()
            .filter(|peer| {
                !offered.contains_key(**peer) && self.members[**peer].lease == LeaseState::Live
            })
            .map(|peer| {
                let member = &self.members[*peer];
                let fixed = u8::from(member.fixed_role != Some(FixedRole::Master));
                let holding = match member.role {
                    Some(r) if r.founds_cluster() => 0,
                    Some(Role::MasterHa) => 1,
                    _ => 2,
                };
                (fixed, holding, member.joined, *peer)
            })
            .collect();
        queue.sort();
        let mut free = free.into_iter();
        for (_, _, _, peer) in queue {
            if let Some(seat) = free.next() {
                offered.insert(peer.clone(), seat);
            }
        }
        for (peer, member) in self.members.iter_mut() {
            let seat = offered.get(peer).copied();
            member.role = match (member.deployed, member.lease, member.fixed_role) {
                (Some(role), _, _) => Some(role),
                (None, LeaseState::Expired, _) | (None, _, Some(FixedRole::None)) => seat,
                (None, LeaseState::Live, Some(FixedRole::Worker)) => Some(Role::Worker),
                (None, LeaseState::Live, Some(FixedRole::Master)) => seat,
                (None, LeaseState::Live, None) if member.bootstraps => {
                    Some(seat.unwrap_or(Role::Worker))
                }
                (None, LeaseState::Live, None) => None,
            };
        }
        // An expired member that is no longer bound (its install failed or moved on, its
        // deployment was forced away) gives its address back, as its expiry would have.
        let unbound: Vec<PeerKey> = self
            .members
            .iter()
            .filter(|(_, m)| m.lease == LeaseState::Expired && m.address.is_some())
            .filter(|(_, m)| !m.is_bound())
            .map(|(peer, _)| peer.clone())
            .collect();
        for peer in unbound {
            self.release(&peer);
        }
    }

    /// What an operator should know about the roles: seats the policy wants but nobody fills,
    /// fixed masters without a seat, a plain master that keeps HA out.
    pub fn role_notes(&self) -> Vec<String> {
        let seats = self.policy().control_planes as usize;
        let mut notes = Vec::new();
        let name = |peer: &PeerKey| self.members[peer].hostname.clone();
        let plain_master = self
            .members
            .iter()
            .find(|(_, m)| m.deployed == Some(Role::Master));
        if let Some((peer, _)) = plain_master
            && seats > 1
        {
            notes.push(format!(
                "the policy asks for {seats} control planes, but {} deployed a plain master \
                 (k3s without --cluster-init, no etcd): no further control plane can join it",
                name(peer)
            ));
        }
        let filled = self
            .members
            .values()
            .filter(|m| m.role.is_some_and(Role::is_control_plane))
            .count();
        if filled < seats && plain_master.is_none() && !self.members.is_empty() {
            notes.push(format!(
                "{filled} of {seats} control-plane seats are filled: the mesh needs more members \
                 that may be control planes"
            ));
        }
        let unseated: BTreeSet<String> = self
            .members
            .iter()
            .filter(|(_, m)| {
                m.fixed_role == Some(FixedRole::Master)
                    && m.role.is_none()
                    && m.lease == LeaseState::Live
            })
            .map(|(peer, _)| name(peer))
            .collect();
        for host in unseated {
            notes.push(format!(
                "{host} is fixed to master, but no control-plane seat is free (raise the policy \
                 with weft role policy --control-planes N, or remove a control plane)"
            ));
        }
        notes
    }
}

/// The control-plane seats no deployed member holds, the founding kind first. A deployed plain
/// `master` runs k3s without etcd, so no further control plane can join it; a founding seat
/// left empty while `master/ha` members are deployed stays empty (they carry the etcd cluster
/// and new control planes join them).
fn free_seats(deployed: &[Role], seats: usize) -> Vec<Role> {
    if deployed.contains(&Role::Master) {
        return Vec::new();
    }
    let open = seats.saturating_sub(deployed.len());
    let mut free = Vec::with_capacity(open);
    if open > 0 && deployed.is_empty() {
        free.push(if seats > 1 {
            Role::MasterClusterInit
        } else {
            Role::Master
        });
    }
    while free.len() < open {
        free.push(Role::MasterHa);
    }
    free
}

/// Cuts `text` to at most `limit` bytes on a character boundary.
#[cfg(test)]
mod tests {
    use super::super::tests::{join, join_declaring, pool, run};
    use super::super::{Command, Member};
    use super::*;

    fn role(state: &LedgerState, peer: &str) -> Option<Role> {
        state.members()[peer].role
    }

    fn deployed(peer: &str, role: Role) -> Command {
        report(peer, role, Phase::Deployed)
    }

    fn report(peer: &str, role: Role, phase: Phase) -> Command {
        Command::ReportBootstrap {
            peer: peer.into(),
            report: BootstrapReport {
                role: Some(role),
                phase,
                detail: String::new(),
                at: 1,
            },
            restored: false,
        }
    }

    /// A deployment found again (a sentinel, a merge), not one just made for the assignment.
    fn restored(peer: &str, role: Role) -> Command {
        match deployed(peer, role) {
            Command::ReportBootstrap { peer, report, .. } => Command::ReportBootstrap {
                peer,
                report,
                restored: true,
            },
            other => other,
        }
    }

    fn policy(n: u32) -> Command {
        Command::SetRolePolicy(RolePolicy { control_planes: n })
    }

    fn fix(peer: &str, role: Option<FixedRole>, force: bool) -> Command {
        Command::SetFixedRole {
            peer: peer.into(),
            role,
            force,
        }
    }

    #[test]
    fn roles_follow_the_policy_in_join_order() {
        let mut state = LedgerState::new(pool());
        run(
            &mut state,
            &[policy(2), join("a", 1), join("b", 1), join("c", 1)],
        );
        assert_eq!(role(&state, "a"), Some(Role::MasterClusterInit));
        assert_eq!(role(&state, "b"), Some(Role::MasterHa));
        assert_eq!(role(&state, "c"), Some(Role::Worker));

        let mut single = LedgerState::new(pool());
        run(&mut single, &[join("x", 1), join("y", 1)]);
        assert_eq!(role(&single, "x"), Some(Role::Master));
        assert_eq!(role(&single, "y"), Some(Role::Worker));
    }

    #[test]
    fn a_fixed_master_takes_a_pending_seat_but_never_a_deployed_one() {
        let mut state = LedgerState::new(pool());
        run(
            &mut state,
            &[
                join("a", 1),
                join("b", 1),
                fix("b", Some(FixedRole::Master), false),
            ],
        );
        assert_eq!(role(&state, "b"), Some(Role::Master));
        assert_eq!(role(&state, "a"), Some(Role::Worker));

        let mut state = LedgerState::new(pool());
        run(
            &mut state,
            &[
                join("a", 1),
                deployed("a", Role::Master),
                join("b", 1),
                fix("b", Some(FixedRole::Master), false),
            ],
        );
        assert_eq!(role(&state, "a"), Some(Role::Master));
        assert_eq!(role(&state, "b"), None, "no seat is free for b");
    }

    #[test]
    fn fixed_worker_and_none_are_respected() {
        let mut state = LedgerState::new(pool());
        run(
            &mut state,
            &[
                join("a", 1),
                fix("a", Some(FixedRole::None), false),
                join("b", 1),
                fix("b", Some(FixedRole::Worker), false),
                join("c", 1),
            ],
        );
        assert_eq!(role(&state, "a"), None);
        assert_eq!(role(&state, "b"), Some(Role::Worker));
        assert_eq!(role(&state, "c"), Some(Role::Master));
    }

    #[test]
    fn an_expired_deployed_master_keeps_its_seat_and_address() {
        let mut state = LedgerState::new(pool());
        run(
            &mut state,
            &[
                join("a", 1),
                join("b", 1),
                deployed("a", Role::Master),
                Command::Expire { peer: "a".into() },
                join("c", 5),
            ],
        );
        let a: &Member = &state.members()["a"];
        assert_eq!(a.role, Some(Role::Master));
        assert_eq!(a.lease, LeaseState::Expired);
        assert_eq!(a.address, Some(std::net::Ipv4Addr::new(10, 1, 0, 1)));
        assert_eq!(role(&state, "c"), Some(Role::Worker));
        run(&mut state, &[join("a", 9)]);
        assert_eq!(
            state.members()["a"].address,
            Some(std::net::Ipv4Addr::new(10, 1, 0, 1))
        );
    }

    #[test]
    fn an_expired_pending_master_frees_its_seat_for_a_waiting_worker() {
        let mut state = LedgerState::new(pool());
        run(
            &mut state,
            &[
                join("a", 1),
                join("b", 1),
                Command::Expire { peer: "a".into() },
            ],
        );
        assert_eq!(role(&state, "a"), None);
        assert_eq!(role(&state, "b"), Some(Role::Master));
    }

    #[test]
    fn a_lost_ha_seat_is_offered_again_only_after_the_member_is_removed() {
        let mut state = LedgerState::new(pool());
        run(
            &mut state,
            &[
                policy(2),
                join("a", 1),
                join("b", 1),
                deployed("a", Role::MasterClusterInit),
                deployed("b", Role::MasterHa),
                Command::Expire { peer: "b".into() },
                join("c", 2),
            ],
        );
        assert_eq!(role(&state, "c"), Some(Role::Worker));
        run(&mut state, &[Command::Leave { peer: "b".into() }]);
        assert_eq!(role(&state, "c"), Some(Role::MasterHa));
    }

    #[test]
    fn changing_a_deployed_role_needs_force() {
        let mut state = LedgerState::new(pool());
        let outcomes = run(
            &mut state,
            &[
                join("a", 1),
                deployed("a", Role::Master),
                fix("a", Some(FixedRole::Worker), false),
            ],
        );
        assert_eq!(outcomes[2], Outcome::RoleDeployed);
        assert_eq!(role(&state, "a"), Some(Role::Master));
        run(&mut state, &[fix("a", Some(FixedRole::Worker), true)]);
        assert_eq!(role(&state, "a"), Some(Role::Worker));
        assert_eq!(state.members()["a"].deployed, None);
    }

    #[test]
    fn a_second_founding_deployment_is_a_conflict() {
        let mut state = LedgerState::new(pool());
        let outcomes = run(
            &mut state,
            &[
                join("a", 1),
                join("b", 1),
                deployed("a", Role::Master),
                restored("b", Role::Master),
            ],
        );
        assert_eq!(outcomes[3], Outcome::RoleConflict);
        assert_eq!(role(&state, "b"), Some(Role::Worker));
        let report = state.members()["b"].bootstrap.clone().unwrap();
        assert_eq!(report.phase, Phase::Failed);
        assert!(report.detail.contains("two Kubernetes clusters"));
    }

    #[test]
    fn a_deployment_of_a_role_no_longer_assigned_is_refused_unless_restored() {
        let mut state = LedgerState::new(pool());
        let outcomes = run(
            &mut state,
            &[join("a", 1), join("b", 1), deployed("b", Role::Master)],
        );
        assert_eq!(outcomes[2], Outcome::RoleConflict);
        assert_eq!(role(&state, "a"), Some(Role::Master));
        assert!(
            state.members()["b"]
                .bootstrap
                .as_ref()
                .unwrap()
                .detail
                .contains("now assigns worker")
        );
        let mut found_again = LedgerState::new(pool());
        let outcomes = run(
            &mut found_again,
            &[join("a", 1), join("b", 1), restored("b", Role::Master)],
        );
        assert_eq!(
            outcomes[2],
            Outcome::Done,
            "a restored deployment takes a pending seat"
        );
        assert_eq!(role(&found_again, "b"), Some(Role::Master));
        assert_eq!(role(&found_again, "a"), Some(Role::Worker));
    }

    #[test]
    fn a_restored_deployment_takes_no_seat_another_member_is_installing() {
        let mut state = LedgerState::new(pool());
        let outcomes = run(
            &mut state,
            &[
                join("a", 1),
                report("a", Role::Master, Phase::Installing),
                join("b", 1),
                restored("b", Role::Master),
            ],
        );
        assert_eq!(outcomes[3], Outcome::RoleConflict);
        assert_eq!(role(&state, "a"), Some(Role::Master));
        assert_eq!(role(&state, "b"), Some(Role::Worker));
        let detail = &state.members()["b"].bootstrap.as_ref().unwrap().detail;
        assert!(detail.contains("is installing"), "{detail}");
        assert_eq!(
            run(&mut state, &[deployed("a", Role::Master)]),
            [Outcome::Done]
        );
        // Under HA, neither the founding seat being started nor a seat that would leave it out.
        let mut ha = LedgerState::new(pool());
        let outcomes = run(
            &mut ha,
            &[
                policy(3),
                join("a", 1),
                report("a", Role::MasterClusterInit, Phase::Starting),
                join("b", 1),
                join("c", 1),
                join("d", 1),
                restored("d", Role::MasterClusterInit),
                restored("d", Role::MasterHa),
            ],
        );
        assert_eq!(role(&ha, "d"), Some(Role::Worker));
        assert_eq!(
            outcomes[6..],
            [Outcome::RoleConflict, Outcome::RoleConflict]
        );
        assert_eq!(role(&ha, "a"), Some(Role::MasterClusterInit));
        // Once the founder deployed, a restored `master/ha` takes a seat nobody installs.
        let outcomes = run(
            &mut ha,
            &[
                deployed("a", Role::MasterClusterInit),
                report("b", Role::MasterHa, Phase::Installing),
                restored("d", Role::MasterHa),
            ],
        );
        assert!(outcomes.iter().all(|o| *o == Outcome::Done), "{outcomes:?}");
        assert_eq!(ha.members()["d"].deployed, Some(Role::MasterHa));
        assert_eq!(role(&ha, "b"), Some(Role::MasterHa));
        assert_eq!(role(&ha, "c"), Some(Role::Worker));
    }

    #[test]
    fn a_member_away_while_installing_keeps_its_seat_and_address() {
        let mut state = LedgerState::new(pool());
        run(
            &mut state,
            &[
                join("a", 1),
                report("a", Role::Master, Phase::Installing),
                join("b", 1),
                Command::Expire { peer: "a".into() },
                join("c", 2),
            ],
        );
        assert_eq!(role(&state, "a"), Some(Role::Master));
        assert_eq!(
            state.members()["a"].address,
            Some(std::net::Ipv4Addr::new(10, 1, 0, 1))
        );
        assert_eq!(role(&state, "b"), Some(Role::Worker));
        assert_eq!(role(&state, "c"), Some(Role::Worker));
        run(&mut state, &[deployed("a", Role::Master)]);
        assert_eq!(state.members()["a"].deployed, Some(Role::Master));
    }

    #[test]
    fn an_away_member_whose_install_ends_gives_its_seat_and_address_back() {
        let mut state = LedgerState::new(pool());
        run(
            &mut state,
            &[
                join("a", 1),
                report("a", Role::Master, Phase::Installing),
                Command::Expire { peer: "a".into() },
                Command::ReportBootstrap {
                    peer: "a".into(),
                    report: BootstrapReport {
                        role: None,
                        phase: Phase::Waiting,
                        detail: String::new(),
                        at: 2,
                    },
                    restored: false,
                },
            ],
        );
        assert_eq!(role(&state, "a"), None);
        assert_eq!(state.members()["a"].address, None);
    }

    #[test]
    fn an_install_given_up_frees_the_seat_and_address_of_an_away_member_only() {
        let mut state = LedgerState::new(pool());
        let abandon = |peer: &str| Command::AbandonInstall { peer: peer.into() };
        run(
            &mut state,
            &[
                join("a", 1),
                report("a", Role::Master, Phase::Installing),
                join("b", 1),
                abandon("a"),
            ],
        );
        assert_eq!(
            role(&state, "a"),
            Some(Role::Master),
            "a live member keeps it"
        );
        run(
            &mut state,
            &[Command::Expire { peer: "a".into() }, abandon("a")],
        );
        assert_eq!(role(&state, "a"), None);
        assert_eq!(state.members()["a"].address, None);
        assert_eq!(
            state.members()["a"].bootstrap.as_ref().unwrap().phase,
            Phase::Failed
        );
        assert_eq!(role(&state, "b"), Some(Role::Master));
        // A deployed role stays bound, away or not.
        run(
            &mut state,
            &[
                deployed("b", Role::Master),
                Command::Expire { peer: "b".into() },
                abandon("b"),
            ],
        );
        assert_eq!(state.members()["b"].deployed, Some(Role::Master));
        assert!(state.members()["b"].address.is_some());
        assert_eq!(run(&mut state, &[abandon("z")]), [Outcome::UnknownMember]);
    }

    #[test]
    fn a_node_without_a_bootstrapper_takes_no_seat_unless_fixed() {
        let mut state = LedgerState::new(pool());
        let laptop = |peer: &str| join_declaring(peer, None, None, false);
        run(&mut state, &[laptop("a"), join("b", 1)]);
        assert_eq!(role(&state, "a"), None);
        assert_eq!(role(&state, "b"), Some(Role::Master));
        run(&mut state, &[fix("a", Some(FixedRole::Worker), false)]);
        assert_eq!(role(&state, "a"), Some(Role::Worker));
    }

    #[test]
    fn a_member_installing_its_seat_keeps_it_against_a_fixed_master() {
        let mut state = LedgerState::new(pool());
        run(
            &mut state,
            &[
                join("a", 1),
                report("a", Role::Master, Phase::Installing),
                join("b", 1),
                fix("b", Some(FixedRole::Master), false),
            ],
        );
        assert_eq!(role(&state, "a"), Some(Role::Master));
        assert_eq!(role(&state, "b"), None);
    }

    #[test]
    fn the_policy_is_set_by_its_first_writer_and_bounded() {
        let mut state = LedgerState::new(pool());
        let init = |n| Command::InitRolePolicy(RolePolicy { control_planes: n });
        let outcomes = run(&mut state, &[init(0), init(3), init(1), policy(10)]);
        assert_eq!(outcomes[0], Outcome::InvalidPolicy);
        assert_eq!(outcomes[3], Outcome::InvalidPolicy);
        assert_eq!(state.policy().control_planes, 3);
        run(&mut state, &[policy(1)]);
        assert_eq!(state.policy().control_planes, 1);
    }

    #[test]
    fn raising_the_policy_turns_a_pending_master_into_the_cluster_founder() {
        let mut state = LedgerState::new(pool());
        run(&mut state, &[join("a", 1), join("b", 1), policy(3)]);
        assert_eq!(role(&state, "a"), Some(Role::MasterClusterInit));
        assert_eq!(role(&state, "b"), Some(Role::MasterHa));

        let mut deployed_first = LedgerState::new(pool());
        run(
            &mut deployed_first,
            &[
                join("a", 1),
                deployed("a", Role::Master),
                join("b", 1),
                policy(3),
            ],
        );
        assert_eq!(role(&deployed_first, "a"), Some(Role::Master));
        assert_eq!(
            role(&deployed_first, "b"),
            Some(Role::Worker),
            "a plain master runs without etcd: no control plane can join it"
        );
    }

    #[test]
    fn notes_name_empty_seats_unseated_masters_and_a_plain_master_under_ha() {
        let mut state = LedgerState::new(pool());
        run(&mut state, &[policy(3), join("a", 1)]);
        assert_eq!(state.role_notes().len(), 1);
        assert!(state.role_notes()[0].starts_with("1 of 3"));

        let mut plain = LedgerState::new(pool());
        run(
            &mut plain,
            &[
                join("a", 1),
                deployed("a", Role::Master),
                join("b", 1),
                fix("b", Some(FixedRole::Master), false),
                policy(3),
            ],
        );
        let notes = plain.role_notes();
        assert!(
            notes.iter().any(|n| n.contains("plain master")),
            "{notes:?}"
        );
        assert!(
            notes.iter().any(|n| n.starts_with("host-b is fixed")),
            "{notes:?}"
        );
    }

    #[test]
    fn long_report_details_are_cut() {
        let mut state = LedgerState::new(pool());
        let long = Command::ReportBootstrap {
            peer: "a".into(),
            report: BootstrapReport {
                role: None,
                phase: Phase::Failed,
                detail: "é".repeat(REPORT_DETAIL_LIMIT),
                at: 1,
            },
            restored: false,
        };
        run(&mut state, &[join("a", 1), long]);
        let detail = &state.members()["a"].bootstrap.as_ref().unwrap().detail;
        assert!(detail.len() <= REPORT_DETAIL_LIMIT);
    }

    #[test]
    fn role_choices_parse() {
        assert_eq!(parse_role_choice("auto"), Ok(None));
        assert_eq!(parse_role_choice("Master"), Ok(Some(FixedRole::Master)));
        assert_eq!(parse_role_choice("none"), Ok(Some(FixedRole::None)));
        assert!(parse_role_choice("boss").unwrap_err().contains("boss"));
    }
}
