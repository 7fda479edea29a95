//! Properties of the ledger state machine over arbitrary command sequences: whatever the order
//! of joins, leaves, expiries, reservations and rejoins, no two members hold one address and
//! every address is a usable host of the pool; the same log always yields the same state; a
//! snapshot restores to an equal state. Roles: for any order of joins, leaves, expiries,
//! restarts, fixed roles and bootstrap reports and any number N of control planes, there is at
//! most one cluster founder (`master` or `master/clusterinit`), never more than N control
//! planes, fixed roles are respected, and a deployed role stays with its member (expiry alone
//! never hands a deployed control plane's seat to another).

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use proptest::prelude::*;
use weft::ledger::state::{
    BootstrapReport, Command, FixedRole, LeaseState, LedgerState, Member, MemberSet, Outcome,
    Phase, Role, RolePolicy,
};

/// A /28: 14 usable addresses for up to 8 peers, so exhaustion happens too.
fn pool() -> Ipv4Net {
    "10.1.0.0/28".parse().unwrap()
}

fn peer(n: u8) -> String {
    format!("peer-{n}")
}

/// An address around the pool: offsets 0 and 15 are network and broadcast, 16.. are outside.
fn addr(offset: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 1, 0, offset)
}

fn fixed_role() -> impl Strategy<Value = Option<FixedRole>> {
    prop_oneof![
        3 => Just(None),
        1 => Just(Some(FixedRole::Master)),
        1 => Just(Some(FixedRole::Worker)),
        1 => Just(Some(FixedRole::None)),
    ]
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![
        Just(Role::Master),
        Just(Role::MasterClusterInit),
        Just(Role::MasterHa),
        Just(Role::Worker),
    ]
}

fn phase() -> impl Strategy<Value = Phase> {
    prop_oneof![
        1 => Just(Phase::Waiting),
        1 => Just(Phase::Installing),
        1 => Just(Phase::Starting),
        1 => Just(Phase::Failed),
        3 => Just(Phase::Deployed),
    ]
}

/// A join (or a restart's rejoin) of peer `n`; now and then of a node without a bootstrapper.
fn join() -> impl Strategy<Value = Command> {
    (
        0u8..8,
        proptest::option::of(0u8..20),
        0u64..1000,
        fixed_role(),
        prop::bool::weighted(0.8),
    )
        .prop_map(|(n, req, now, fixed_role, bootstraps)| Command::Join {
            peer: peer(n),
            hostname: format!("h{n}"),
            sealing_key: [n; 32],
            endpoints: vec![],
            requested: req.map(addr),
            now,
            fixed_role,
            policy: None,
            bootstraps,
            platform: Default::default(),
        })
}

/// What members and operators do to roles: fix them (sometimes by force) and report progress,
/// truthfully (the role the ledger assigns) or not (any role).
fn role_command() -> impl Strategy<Value = Command> {
    let p = 0u8..8;
    prop_oneof![
        (p.clone(), fixed_role(), any::<bool>()).prop_map(|(n, role, force)| {
            Command::SetFixedRole {
                peer: peer(n),
                role,
                force,
            }
        }),
        (p, proptest::option::of(role()), phase(), any::<bool>()).prop_map(
            |(n, role, phase, restored)| Command::ReportBootstrap {
                peer: peer(n),
                report: BootstrapReport {
                    role,
                    phase,
                    detail: String::new(),
                    at: 1,
                },
                restored,
            }
        ),
    ]
}

fn command() -> impl Strategy<Value = Command> {
    let p = 0u8..8;
    prop_oneof![
        4 => join(),
        1 => (p.clone(), 0u64..1000).prop_map(|(n, now)| Command::Renew { peer: peer(n), now }),
        1 => (proptest::collection::vec(p.clone(), 0..4), 0u64..1000).prop_map(|(ns, now)| {
            Command::Renewals { peers: ns.into_iter().map(peer).collect(), set: None, now }
        }),
        // Drawn over a table of some of the peers: it applies only when that is the state's
        // member table, and renews nobody otherwise.
        1 => (
            proptest::collection::btree_set(p.clone(), 0..8),
            proptest::collection::btree_set(p.clone(), 0..8),
            0u64..1000,
        )
            .prop_map(|(table, chosen, now)| {
                let table: Vec<String> = table.into_iter().map(peer).collect();
                let chosen: Vec<String> = chosen.into_iter().map(peer).collect();
                let set = MemberSet::of(&table, |k| chosen.contains(k));
                Command::Renewals { peers: Vec::new(), set: Some(set), now }
            }),
        2 => p.clone().prop_map(|n| Command::Expire { peer: peer(n) }),
        1 => p.clone().prop_map(|n| Command::AbandonInstall { peer: peer(n) }),
        1 => p.clone().prop_map(|n| Command::Leave { peer: peer(n) }),
        1 => (p.clone(), 0u8..20).prop_map(|(n, a)| Command::Reserve { peer: peer(n), address: addr(a) }),
        1 => (0u8..20).prop_map(|a| Command::Unreserve { address: addr(a) }),
        1 => p.clone().prop_map(|n| Command::Deny { peer: peer(n) }),
        1 => p.prop_map(|n| Command::Allow { peer: peer(n) }),
        1 => (0u32..11).prop_map(|n| Command::SetRolePolicy(RolePolicy { control_planes: n })),
        2 => role_command(),
        1 => (0u8..3, 0u8..3).prop_map(|(b, k)| Command::KvPut {
            bucket: format!("b{b}"),
            key: format!("k{k}"),
            value: "v".into(),
        }),
    ]
}

fn apply_all(commands: &[Command]) -> LedgerState {
    let mut state = LedgerState::new(pool());
    for (i, command) in commands.iter().enumerate() {
        state.apply(i as u64 + 1, command);
    }
    state
}

/// Commands that move roles around under a fixed policy: joins and restarts, leaves,
/// expiries, denials, fixed roles and reports, with the truthful report of a member's assigned
/// role (what an honest bootstrapper sends) drawn often.
fn role_story() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        4 => join().prop_map(|c| Step::Command(Box::new(c))),
        2 => (0u8..8).prop_map(|n| Step::Command(Box::new(Command::Expire { peer: peer(n) }))),
        1 => (0u8..8).prop_map(|n| {
            Step::Command(Box::new(Command::AbandonInstall { peer: peer(n) }))
        }),
        1 => (0u8..8).prop_map(|n| Step::Command(Box::new(Command::Leave { peer: peer(n) }))),
        1 => (0u8..8).prop_map(|n| Step::Command(Box::new(Command::Deny { peer: peer(n) }))),
        2 => role_command().prop_map(|c| Step::Command(Box::new(c))),
        3 => (0u8..8).prop_map(Step::DeployAssigned),
    ];
    prop::collection::vec(step, 0..80)
}

#[derive(Debug, Clone)]
enum Step {
    Command(Box<Command>),
    /// Peer `n` reports its assigned role deployed, if it has one.
    DeployAssigned(u8),
}

fn assert_roles_are_sound(state: &LedgerState, seats: u32) {
    let roles: Vec<(&String, Role)> = state
        .members()
        .iter()
        .filter_map(|(p, m)| m.role.map(|r| (p, r)))
        .collect();
    let founders: Vec<_> = roles.iter().filter(|(_, r)| r.founds_cluster()).collect();
    assert!(founders.len() <= 1, "two cluster founders: {founders:?}");
    let control_planes = roles.iter().filter(|(_, r)| r.is_control_plane()).count();
    assert!(
        control_planes <= seats as usize,
        "{control_planes} control planes for a policy of {seats}: {roles:?}"
    );
    for (_, r) in &roles {
        match r {
            Role::Master => assert_eq!(seats, 1, "a plain master under HA: {roles:?}"),
            Role::MasterClusterInit | Role::MasterHa => {
                assert!(seats > 1, "an HA role without HA: {roles:?}")
            }
            Role::Worker => {}
        }
    }
    for (peer, member) in state.members() {
        if let Some(fixed) = member.fixed_role {
            assert!(
                member.role.is_none_or(|r| fixed.admits(r)),
                "{peer} holds {:?} against its fixed role {fixed:?}",
                member.role
            );
        }
        if let Some(deployed) = member.deployed {
            assert_eq!(member.role, Some(deployed), "{peer} lost its deployed role");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn roles_keep_one_founder_at_most_n_control_planes_and_deployed_seats(
        seats in 1u32..5,
        story in role_story(),
    ) {
        let mut state = LedgerState::new(pool());
        state.apply(1, &Command::SetRolePolicy(RolePolicy { control_planes: seats }));
        for step in story {
            let command = match step {
                Step::Command(command) => *command,
                Step::DeployAssigned(n) => match state.members().get(&peer(n)).and_then(|m| m.role) {
                    Some(role) => Command::ReportBootstrap {
                        peer: peer(n),
                        report: BootstrapReport {
                            role: Some(role),
                            phase: Phase::Deployed,
                            detail: String::new(),
                            at: 1,
                        },
                        restored: false,
                    },
                    None => continue,
                },
            };
            let deployed_before: Vec<(String, Role)> = state
                .members()
                .iter()
                .filter_map(|(p, m)| m.deployed.map(|r| (p.clone(), r)))
                .collect();
            let index = state.applied() + 1;
            state.apply(index, &command);
            assert_roles_are_sound(&state, seats);
            if let Command::Expire { .. }
            | Command::AbandonInstall { .. }
            | Command::Join { .. } = command
            {
                for (peer, role) in deployed_before {
                    prop_assert_eq!(
                        state.members()[&peer].role,
                        Some(role),
                        "{} lost its deployed role to {:?}", peer, command
                    );
                }
            }
        }
    }

    #[test]
    fn an_honest_cluster_always_gets_its_control_planes(
        seats in 1u32..5,
        members in 1u8..8,
    ) {
        let mut state = LedgerState::new(pool());
        state.apply(1, &Command::SetRolePolicy(RolePolicy { control_planes: seats }));
        for n in 0..members {
            let index = state.applied() + 1;
            state.apply(index, &Command::Join {
                peer: peer(n),
                hostname: format!("h{n}"),
                sealing_key: [0; 32],
                endpoints: vec![],
                requested: None,
                now: 1,
                fixed_role: None,
                policy: None,
                bootstraps: true,
                platform: Default::default(),
            });
        }
        let control_planes = state.members().values().filter(|m| m.role.is_some_and(Role::is_control_plane)).count();
        prop_assert_eq!(control_planes, (seats as usize).min(members as usize));
        let founders = state.members().values().filter(|m| m.role.is_some_and(Role::founds_cluster)).count();
        prop_assert_eq!(founders, 1);
    }

    #[test]
    fn no_two_live_members_ever_share_an_address(commands in prop::collection::vec(command(), 0..80)) {
        let mut state = LedgerState::new(pool());
        for (i, command) in commands.iter().enumerate() {
            state.apply(i as u64 + 1, command);
            if let Err(broken) = state.check_addresses() {
                panic!("{broken}");
            }
        }
    }

    #[test]
    fn the_same_log_gives_the_same_state(commands in prop::collection::vec(command(), 0..80)) {
        let once = apply_all(&commands);
        prop_assert_eq!(&once, &apply_all(&commands));
        // Re-delivering the whole log to a replica that applied it changes nothing.
        let mut again = once.clone();
        for (i, command) in commands.iter().enumerate() {
            again.apply(i as u64 + 1, command);
        }
        prop_assert_eq!(once, again);
    }

    #[test]
    fn a_renewal_set_of_the_member_table_renews_exactly_the_live_members_it_names(
        commands in prop::collection::vec(command(), 0..60),
        chosen in prop::collection::btree_set(0u8..8, 0..8),
        now in 0u64..2000,
    ) {
        let mut state = apply_all(&commands);
        let chosen: Vec<String> = chosen.into_iter().map(peer).collect();
        let set = MemberSet::of(state.members().keys(), |k| chosen.contains(k));
        let before = state.members().clone();
        let index = state.applied() + 1;
        let renewals = Command::Renewals { peers: Vec::new(), set: Some(set), now };
        prop_assert_eq!(state.apply(index, &renewals), Outcome::Done);
        prop_assert_eq!(state.members().len(), before.len());
        for (peer, member) in state.members() {
            let was = &before[peer];
            if chosen.contains(peer) && was.lease == LeaseState::Live {
                prop_assert_eq!(member.renewed_at, now.max(was.renewed_at.saturating_add(1)));
                prop_assert_eq!(
                    Member { renewed_at: was.renewed_at, ..member.clone() },
                    was.clone()
                );
            } else {
                prop_assert_eq!(member, was);
            }
        }
    }

    #[test]
    fn a_snapshot_restores_to_the_same_state(commands in prop::collection::vec(command(), 0..80)) {
        let state = apply_all(&commands);
        let restored = LedgerState::restore(&state.snapshot()).unwrap();
        prop_assert_eq!(state, restored);
    }
}
