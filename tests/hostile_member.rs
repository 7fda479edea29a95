//! A token holder that misbehaves: a real libp2p node with the mesh's token (so it is admitted)
//! that speaks the ledger protocol directly, sending what an honest weft never sends. Today it
//! tries to speak for other members; each attack must be refused by the leader and leave the
//! victim's record as it was. Runs in one process on loopback, no root.

mod support;

use libp2p::PeerId;
use support::ledger::{Replica, group, settled_cluster};
use support::mesh::{address, admitted, network, start, wait_for};
use weft::ledger::raft::network::{LedgerRpc, call};
use weft::ledger::state::{Command, LeaseState, Member, Outcome, Platform};

/// What the leader answers a proposal from the hostile node.
async fn propose(
    hostile: &support::mesh::Member,
    leader: PeerId,
    command: Command,
) -> Result<Outcome, String> {
    call::<Result<Outcome, String>>(&hostile.handle, leader, &LedgerRpc::Propose(command))
        .await
        .expect("the leader answers")
}

fn join(peer: &str, hostname: &str, requested: Option<std::net::Ipv4Addr>) -> Command {
    Command::Join {
        peer: peer.to_string(),
        hostname: hostname.to_string(),
        dataplane_key: [7; 32],
        endpoints: vec!["192.0.2.66:51820".into()],
        requested,
        now: 1,
        fixed_role: None,
        policy: None,
        bootstraps: false,
        platform: Platform::default(),
    }
}

fn record(replica: &Replica, peer: &str) -> Member {
    replica.ledger.state().members()[peer].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cannot_speak_for_another_member() {
    let token = network();
    let replicas = group(&token, &["m0", "m1", "m2"]).await;
    settled_cluster(&replicas).await;
    let entry = address(&replicas[0].member).await;
    let hostile = start(&token, "mallory", vec![entry]).await;

    let leader_id = replicas[0].ledger.status().leader.expect("a leader");
    let leader: PeerId = leader_id.parse().unwrap();
    wait_for("the leader to admit the hostile node", || {
        admitted(&hostile).contains(&leader_id).then_some(())
    })
    .await;
    let victim = replicas
        .iter()
        .map(|r| r.member.handle.peer_id().to_string())
        .find(|p| *p != leader_id)
        .unwrap();
    let observer = &replicas[0];
    let before = record(observer, &victim);
    let mine = hostile.handle.peer_id().to_string();

    // Expire frees a member's address: only the leader decides it.
    let refused = propose(
        &hostile,
        leader,
        Command::Expire {
            peer: victim.clone(),
        },
    )
    .await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("decided by the leader alone")),
        "{refused:?}"
    );
    // A Join in the victim's name would rewrite its hostname, key and endpoints.
    let refused = propose(&hostile, leader, join(&victim, "mallory", None)).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("only for itself")),
        "{refused:?}"
    );
    let refused = propose(
        &hostile,
        leader,
        Command::Renew {
            peer: victim.clone(),
            now: u64::MAX / 2,
        },
    )
    .await;
    assert!(refused.is_err(), "{refused:?}");

    // Speaking for itself is what members do: it joins like any member.
    let joined = propose(&hostile, leader, join(&mine, "mallory", None)).await;
    assert!(joined.is_ok(), "{joined:?}");
    wait_for("the hostile node's own record", || {
        observer.ledger.state().members().get(&mine).map(|_| ())
    })
    .await;
    let after = record(observer, &victim);
    assert_eq!(after.hostname, before.hostname);
    assert_eq!(after.address, before.address);
    assert_eq!(after.lease, LeaseState::Live);
    assert_ne!(
        after.renewed_at,
        u64::MAX / 2,
        "the forged renewal did not land"
    );
    assert_eq!(after.endpoints, before.endpoints);
}
