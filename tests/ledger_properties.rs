//! Properties of the ledger state machine over arbitrary command sequences: whatever the order
//! of joins, leaves, expiries, reservations and rejoins, no two live members hold one address
//! and every address is a usable host of the pool; the same log always yields the same state;
//! a snapshot restores to an equal state.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use proptest::prelude::*;
use weft::ledger::state::{Command, LeaseState, LedgerState, RolePolicy};

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

fn command() -> impl Strategy<Value = Command> {
    let p = 0u8..8;
    prop_oneof![
        4 => (p.clone(), proptest::option::of(0u8..20), 0u64..1000).prop_map(|(n, req, now)| Command::Join {
            peer: peer(n),
            hostname: format!("h{n}"),
            dataplane_key: [n; 32],
            endpoints: vec![],
            requested: req.map(addr),
            now,
        }),
        1 => (p.clone(), 0u64..1000).prop_map(|(n, now)| Command::Renew { peer: peer(n), now }),
        2 => p.clone().prop_map(|n| Command::Expire { peer: peer(n) }),
        1 => p.clone().prop_map(|n| Command::Leave { peer: peer(n) }),
        1 => (p.clone(), 0u8..20).prop_map(|(n, a)| Command::Reserve { peer: peer(n), address: addr(a) }),
        1 => (0u8..20).prop_map(|a| Command::Unreserve { address: addr(a) }),
        1 => p.clone().prop_map(|n| Command::Deny { peer: peer(n) }),
        1 => p.prop_map(|n| Command::Allow { peer: peer(n) }),
        1 => (1u32..4).prop_map(|n| Command::SetRolePolicy(RolePolicy { control_planes: n })),
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

fn assert_addresses_are_sound(state: &LedgerState) {
    let pool = state.pool();
    let mut holders: BTreeMap<Ipv4Addr, &str> = BTreeMap::new();
    for (peer, member) in state.members() {
        if member.lease == LeaseState::Expired {
            assert_eq!(
                member.address, None,
                "{peer} keeps an address after its lease expired"
            );
        }
        if let Some(address) = member.address {
            assert!(pool.contains(&address), "{address} is outside {pool}");
            assert_ne!(address, pool.network(), "{peer} holds the network address");
            assert_ne!(
                address,
                pool.broadcast(),
                "{peer} holds the broadcast address"
            );
            if let Some(other) = holders.insert(address, peer) {
                panic!("{address} is held by both {other} and {peer}");
            }
        }
    }
    for (address, owner) in state.reservations() {
        if let Some(holder) = holders.get(address) {
            assert_eq!(
                holder, owner,
                "{address} is reserved for {owner} but held by {holder}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn no_two_live_members_ever_share_an_address(commands in prop::collection::vec(command(), 0..80)) {
        let mut state = LedgerState::new(pool());
        for (i, command) in commands.iter().enumerate() {
            state.apply(i as u64 + 1, command);
            assert_addresses_are_sound(&state);
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
    fn a_snapshot_restores_to_the_same_state(commands in prop::collection::vec(command(), 0..80)) {
        let state = apply_all(&commands);
        let restored = LedgerState::restore(&state.snapshot()).unwrap();
        prop_assert_eq!(state, restored);
    }
}
