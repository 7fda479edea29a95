//! What the bootstrapper should do now, decided from the ledger and this node's facts alone:
//! wait (and why), deploy a role (with what it needs), or keep a deployed role (report it,
//! publish the cluster's secrets again). Pure: the driver feeds it and carries the decision out.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::ledger::state::{FixedRole, LeaseState, LedgerState, Member, PeerKey, Role};

/// What the cluster's founder publishes for the others, sealed in the ledger as one secret
/// ([`crate::ledger::sealed::CLUSTER`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSecret {
    /// The member that published it (it must be the control plane of record to count).
    pub publisher: PeerKey,
    /// Where control planes and agents join (`https://<ip>:6443`); `None` for a script.
    pub server_url: Option<String>,
    /// The join token.
    pub join_token: String,
    /// The admin kubeconfig, its server the published URL; `None` for a script.
    pub kubeconfig: Option<String>,
}

impl std::fmt::Display for ClusterSecret {
    /// Never the token or the kubeconfig.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cluster secret published by {}", self.publisher)
    }
}

/// What a deploy needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub role: Role,
    pub overlay_ip: Ipv4Addr,
    /// The control plane this node joins (none for the founder).
    pub join: Option<JoinFacts>,
}

/// The control plane a `master/ha` or `worker` joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinFacts {
    /// Its overlay address.
    pub ip: Ipv4Addr,
    /// Its published server URL, when it published one.
    pub server_url: Option<String>,
    pub token: String,
}

/// The bootstrapper's next step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to run yet, for this reason.
    Wait(String),
    Deploy(Job),
    /// The role is deployed (the sentinel says so): make sure the ledger knows it, and publish
    /// the cluster's secrets again when this node is the control plane of record and the
    /// ledger lacks them.
    Keep {
        role: Option<Role>,
        report: bool,
        republish: bool,
    },
}

/// Everything a decision reads.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    pub state: &'a LedgerState,
    pub me: &'a str,
    /// The role this node was started with (`--role`), if fixed.
    pub configured_role: Option<FixedRole>,
    /// Whether this node has declared its configured role to the ledger since it started
    /// (after that, the ledger's fixed role is the one to follow: an operator may change it).
    pub declared: bool,
    pub minimum_nodes: u32,
    /// The role a sentinel records, when the sentinel exists (`Some(None)`: it exists but names
    /// no role, as Kairos' own sentinel).
    pub sentinel: Option<Option<Role>>,
    /// The cluster secret of the ledger, opened.
    pub secret: Option<&'a ClusterSecret>,
    /// Whether the overlay address must be on the TUN before k3s starts, and whether it is.
    pub needs_tun_address: bool,
    pub tun_address: Option<Ipv4Addr>,
    /// What keeps this node's cluster from being the one it stays in, as its merge checks
    /// found it ([`crate::ledger::settle`]), or `None` once it is: a founder deploys only then.
    pub unsettled: Option<String>,
}

/// The bootstrapper's next step.
pub fn decide(inputs: &Inputs<'_>) -> Decision {
    let state = inputs.state;
    let member = state.members().get(inputs.me);
    let of_record = control_plane_of_record(state);
    if let Some(sentinel) = inputs.sentinel {
        let role = sentinel.or_else(|| member.and_then(|m| m.deployed.or(m.role)));
        let report = member.is_some_and(|m| role.is_some() && m.deployed != role);
        let republish = of_record.as_deref() == Some(inputs.me)
            && inputs.secret.is_none_or(|s| s.publisher != inputs.me);
        return Decision::Keep {
            role,
            report,
            republish,
        };
    }
    let Some(member) = member.filter(|m| m.lease == LeaseState::Live) else {
        return Decision::Wait("waiting for this node's record in the ledger".into());
    };
    if let Some(fixed) = inputs.configured_role
        && !inputs.declared
        && member.fixed_role != Some(fixed)
        && member.deployed.is_none()
    {
        return Decision::Wait(format!(
            "waiting for the ledger to record this node's role {}",
            fixed.as_str()
        ));
    }
    let Some(role) = member.role else {
        return Decision::Wait(no_role_reason(state, member));
    };
    let Some(overlay_ip) = member.address else {
        return Decision::Wait("waiting for an overlay address (is the pool exhausted?)".into());
    };
    if inputs.needs_tun_address && inputs.tun_address != Some(overlay_ip) {
        return Decision::Wait(format!(
            "waiting for the overlay address {overlay_ip} on the TUN interface"
        ));
    }
    let live = state
        .members()
        .values()
        .filter(|m| m.lease == LeaseState::Live)
        .count() as u32;
    if live < inputs.minimum_nodes {
        let missing = inputs.minimum_nodes - live;
        return Decision::Wait(format!(
            "waiting for {missing} more member{} ({live} of the {} required are live)",
            if missing == 1 { "" } else { "s" },
            inputs.minimum_nodes
        ));
    }
    if role.founds_cluster() {
        if let Some(holding) = &inputs.unsettled {
            return Decision::Wait(format!(
                "waiting for this cluster to settle: {holding} (a control plane deployed in a \
                 cluster that merges away would be a second Kubernetes cluster)"
            ));
        }
        return Decision::Deploy(Job {
            role,
            overlay_ip,
            join: None,
        });
    }
    let Some(holder) = of_record else {
        return Decision::Wait(waiting_for_founder(state));
    };
    let secret = inputs.secret.filter(|s| s.publisher == holder);
    let (Some(secret), Some(ip)) = (secret, state.members().get(&holder).and_then(|m| m.address))
    else {
        return Decision::Wait(format!(
            "waiting for the control plane {} to publish its join token",
            hostname(state, &holder)
        ));
    };
    Decision::Deploy(Job {
        role,
        overlay_ip,
        join: Some(JoinFacts {
            ip,
            server_url: secret.server_url.clone(),
            token: secret.join_token.clone(),
        }),
    })
}

/// The member whose published join token counts: the deployed founder (`master` or
/// `master/clusterinit`), else, when an operator removed it, the earliest deployed `master/ha`.
pub fn control_plane_of_record(state: &LedgerState) -> Option<PeerKey> {
    let deployed = |founds: bool| {
        state
            .members()
            .iter()
            .filter(|(_, m)| {
                m.deployed
                    .is_some_and(|r| r.is_control_plane() && r.founds_cluster() == founds)
            })
            .min_by_key(|(peer, m)| (m.joined, *peer))
            .map(|(peer, _)| peer.clone())
    };
    deployed(true).or_else(|| deployed(false))
}

/// Why a joining role waits while no control plane is deployed: who holds the founding seat.
fn waiting_for_founder(state: &LedgerState) -> String {
    let founder = state
        .members()
        .values()
        .find(|m| m.role.is_some_and(Role::founds_cluster));
    match founder {
        Some(m) => format!(
            "waiting for {} ({}) to deploy the control plane",
            m.hostname,
            m.role.map(|r| r.to_string()).unwrap_or_default()
        ),
        None => "waiting for a control plane: no member that runs a bootstrapper holds the \
                 founding seat"
            .into(),
    }
}

fn no_role_reason(state: &LedgerState, member: &Member) -> String {
    match member.fixed_role {
        Some(FixedRole::None) => "this node's role is none: it runs no Kubernetes".into(),
        Some(FixedRole::Master) => format!(
            "this node is fixed to master, but none of the {} control-plane seats is free",
            state.policy().control_planes
        ),
        None if !member.bootstraps => {
            "this node runs no bootstrapper, so it takes no Kubernetes role unless one is fixed"
                .into()
        }
        _ => "waiting for the ledger to assign a role".into(),
    }
}

fn hostname(state: &LedgerState, peer: &str) -> String {
    state
        .members()
        .get(peer)
        .map_or_else(|| peer.to_string(), |m| m.hostname.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::state::{BootstrapReport, Command, Phase, RolePolicy, join_command};

    fn state(commands: &[Command]) -> LedgerState {
        let mut state = LedgerState::new("10.1.0.0/24".parse().unwrap());
        for command in commands {
            let index = state.applied() + 1;
            state.apply(index, command);
        }
        state
    }

    fn deployed(peer: &str, role: Role) -> Command {
        Command::ReportBootstrap {
            peer: peer.into(),
            report: BootstrapReport {
                role: Some(role),
                phase: Phase::Deployed,
                detail: String::new(),
                at: 1,
            },
            restored: false,
        }
    }

    fn inputs<'a>(state: &'a LedgerState, me: &'a str) -> Inputs<'a> {
        Inputs {
            state,
            me,
            configured_role: None,
            declared: false,
            minimum_nodes: 1,
            sentinel: None,
            secret: None,
            needs_tun_address: false,
            tun_address: None,
            unsettled: None,
        }
    }

    fn secret(publisher: &str) -> ClusterSecret {
        ClusterSecret {
            publisher: publisher.into(),
            server_url: Some("https://10.1.0.1:6443".into()),
            join_token: "K10token".into(),
            kubeconfig: None,
        }
    }

    #[test]
    fn the_founder_deploys_at_once_and_a_worker_waits_for_its_token() {
        let s = state(&[join_command("a"), join_command("b")]);
        assert_eq!(
            decide(&inputs(&s, "a")),
            Decision::Deploy(Job {
                role: Role::Master,
                overlay_ip: Ipv4Addr::new(10, 1, 0, 1),
                join: None
            })
        );
        let Decision::Wait(why) = decide(&inputs(&s, "b")) else {
            panic!("the worker must wait");
        };
        assert_eq!(why, "waiting for a (master) to deploy the control plane");
    }

    #[test]
    fn the_founder_waits_until_its_cluster_is_settled_and_a_sentinel_does_not() {
        let s = state(&[join_command("a")]);
        let mut i = inputs(&s, "a");
        i.unsettled = Some("3 peers unsettled".into());
        assert!(
            matches!(decide(&i), Decision::Wait(why) if why.contains("to settle: 3 peers unsettled"))
        );
        i.unsettled = None;
        assert!(matches!(decide(&i), Decision::Deploy(_)));
        // A deployed founder keeps its role whatever the merge checks found since.
        i.unsettled = Some("3 peers unsettled".into());
        i.sentinel = Some(Some(Role::Master));
        assert!(matches!(decide(&i), Decision::Keep { .. }));
    }

    #[test]
    fn a_worker_joins_the_deployed_founder_with_its_published_token_only() {
        let s = state(&[
            join_command("a"),
            join_command("b"),
            deployed("a", Role::Master),
        ]);
        let stale = secret("someone-else");
        let mut with_stale = inputs(&s, "b");
        with_stale.secret = Some(&stale);
        assert!(matches!(decide(&with_stale), Decision::Wait(why) if why.contains("publish")));
        let good = secret("a");
        let mut with_good = inputs(&s, "b");
        with_good.secret = Some(&good);
        let Decision::Deploy(job) = decide(&with_good) else {
            panic!("the worker must deploy");
        };
        assert_eq!(job.role, Role::Worker);
        assert_eq!(
            job.join,
            Some(JoinFacts {
                ip: Ipv4Addr::new(10, 1, 0, 1),
                server_url: Some("https://10.1.0.1:6443".into()),
                token: "K10token".into(),
            })
        );
    }

    #[test]
    fn too_few_members_hold_the_bootstrapper_and_say_how_many_are_missing() {
        let s = state(&[join_command("a")]);
        let mut i = inputs(&s, "a");
        i.minimum_nodes = 3;
        assert_eq!(
            decide(&i),
            Decision::Wait("waiting for 2 more members (1 of the 3 required are live)".into())
        );
    }

    #[test]
    fn a_sentinel_keeps_the_role_and_asks_for_what_the_ledger_lacks() {
        let s = state(&[join_command("a"), deployed("a", Role::Master)]);
        let mut i = inputs(&s, "a");
        i.sentinel = Some(Some(Role::Master));
        assert_eq!(
            decide(&i),
            Decision::Keep {
                role: Some(Role::Master),
                report: false,
                republish: true
            }
        );
        let mine = secret("a");
        i.secret = Some(&mine);
        assert_eq!(
            decide(&i),
            Decision::Keep {
                role: Some(Role::Master),
                report: false,
                republish: false
            }
        );
        let fresh = state(&[join_command("a")]);
        let mut i = inputs(&fresh, "a");
        i.sentinel = Some(Some(Role::Master));
        assert!(matches!(decide(&i), Decision::Keep { report: true, .. }));
    }

    #[test]
    fn the_overlay_address_must_be_on_the_tun_first() {
        let s = state(&[join_command("a")]);
        let mut i = inputs(&s, "a");
        i.needs_tun_address = true;
        assert!(matches!(decide(&i), Decision::Wait(why) if why.contains("TUN")));
        i.tun_address = Some(Ipv4Addr::new(10, 1, 0, 1));
        assert!(matches!(decide(&i), Decision::Deploy(_)));
    }

    #[test]
    fn a_configured_role_is_awaited_in_the_ledger_until_declared() {
        let s = state(&[join_command("a")]);
        let mut i = inputs(&s, "a");
        i.configured_role = Some(FixedRole::Worker);
        assert!(matches!(decide(&i), Decision::Wait(why) if why.contains("worker")));
        // Declared (and then changed by an operator, say): the ledger's role is followed.
        i.declared = true;
        assert!(matches!(decide(&i), Decision::Deploy(_)));
    }

    #[test]
    fn ha_members_join_the_clusterinit_and_the_record_passes_to_ha_when_it_is_removed() {
        let s = state(&[
            Command::SetRolePolicy(RolePolicy { control_planes: 2 }),
            join_command("a"),
            join_command("b"),
            deployed("a", Role::MasterClusterInit),
            deployed("b", Role::MasterHa),
        ]);
        assert_eq!(control_plane_of_record(&s).as_deref(), Some("a"));
        let removed = {
            let mut s = s.clone();
            let index = s.applied() + 1;
            s.apply(index, &Command::Leave { peer: "a".into() });
            s
        };
        assert_eq!(control_plane_of_record(&removed).as_deref(), Some("b"));
    }
}
