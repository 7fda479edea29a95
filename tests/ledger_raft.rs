//! The ledger's raft over the real control plane, in one process on loopback: three members
//! form a raft group, writes commit on every member, and after the leader dies the others elect
//! a new one and keep committing. Runs anywhere, no root.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use openraft::Raft;
use support::mesh::{DEADLINE, Member, address, network, start, wait_for};
use weft::ledger::raft::network::{Network, serve};
use weft::ledger::raft::store::{LogStore, StateMachineStore, open};
use weft::ledger::raft::{LedgerNode, LedgerTypes, config};
use weft::ledger::state::{Command, Outcome};

/// A member with a raft node on top of its control plane.
struct Replica {
    member: Member,
    raft: Raft<LedgerTypes>,
    machine: StateMachineStore,
    id: u64,
    _dir: tempfile::TempDir,
}

async fn replica(member: Member, id: u64) -> Replica {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir.path().join("ledger.redb")).unwrap();
    let machine = StateMachineStore::open(db.clone(), "10.1.0.0/24".parse().unwrap()).unwrap();
    let raft = Raft::new(
        id,
        Arc::new(config().validate().unwrap()),
        Network::new(member.handle.clone()),
        LogStore::new(db),
        machine.clone(),
    )
    .await
    .unwrap();
    tokio::spawn(serve(
        raft.clone(),
        member.handle.take_raft_inbox().unwrap(),
    ));
    Replica {
        member,
        raft,
        machine,
        id,
        _dir: dir,
    }
}

fn put(key: &str) -> Command {
    Command::KvPut {
        bucket: "test".into(),
        key: key.into(),
        value: "v".into(),
    }
}

fn has_key(replica: &Replica, key: &str) -> bool {
    replica
        .machine
        .state()
        .bucket("test")
        .is_some_and(|b| b.contains_key(key))
}

fn leader_of(replicas: &[&Replica]) -> Option<u64> {
    let leaders: Vec<Option<u64>> = replicas
        .iter()
        .map(|r| r.raft.metrics().borrow().current_leader)
        .collect();
    let first = leaders[0]?;
    leaders.iter().all(|l| *l == Some(first)).then_some(first)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_commit_writes_and_survive_losing_their_leader() {
    let token = network();
    let first = start(&token, "first", vec![]).await;
    let entry = address(&first).await;
    let second = start(&token, "second", vec![entry.clone()]).await;
    let third = start(&token, "third", vec![entry]).await;
    for member in [&first, &second, &third] {
        wait_for("a full mesh", || {
            (member.handle.peers().len() == 2).then_some(())
        })
        .await;
    }
    let mut replicas = Vec::new();
    for (i, member) in [first, second, third].into_iter().enumerate() {
        replicas.push(replica(member, 100 + i as u64).await);
    }
    let voters: BTreeMap<u64, LedgerNode> = replicas
        .iter()
        .map(|r| {
            let peer_id = r.member.handle.peer_id().to_string();
            (r.id, LedgerNode { peer_id })
        })
        .collect();
    replicas[0].raft.initialize(voters).await.unwrap();

    let all: Vec<&Replica> = replicas.iter().collect();
    let leader = wait_for("one leader agreed by all", || leader_of(&all)).await;
    let leading = replicas.iter().find(|r| r.id == leader).unwrap();
    let written = leading.raft.client_write(put("before")).await.unwrap();
    assert_eq!(written.data, Outcome::Done);
    for replica in &replicas {
        wait_for("the write on every member", || {
            has_key(replica, "before").then_some(())
        })
        .await;
    }

    // The leader dies: its raft stops and its control plane goes away.
    let index = replicas.iter().position(|r| r.id == leader).unwrap();
    let dead = replicas.remove(index);
    dead.raft.shutdown().await.unwrap();
    drop(dead);
    let survivors: Vec<&Replica> = replicas.iter().collect();
    let new_leader = wait_for("a new leader among the survivors", || {
        leader_of(&survivors).filter(|l| *l != leader)
    })
    .await;
    let leading = replicas.iter().find(|r| r.id == new_leader).unwrap();
    tokio::time::timeout(DEADLINE, leading.raft.client_write(put("after")))
        .await
        .expect("the write commits in time")
        .unwrap();
    for replica in &replicas {
        wait_for("the later write on every survivor", || {
            has_key(replica, "after").then_some(())
        })
        .await;
    }
}
