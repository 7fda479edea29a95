//! In-process ledger replicas over the real control plane: a member with its ledger in a
//! temporary directory, a cluster of them bootstrapping to the first, and the wait until they
//! agree on one cluster. Shared by the ledger's cluster tests and the hostile-member tests.

#![allow(dead_code)] // each test binary uses a different part of the helpers

use std::collections::BTreeSet;
use std::time::Duration;

use super::mesh::{DEADLINE, Member, address, network, start, wait_within};
use weft::ledger::autopilot::MemberFacts;
use weft::ledger::{Ledger, LedgerConfig};

/// A member with its ledger.
pub struct Replica {
    pub member: Member,
    pub ledger: Ledger,
    /// The state directory, kept for as long as the replica runs.
    pub dir: tempfile::TempDir,
}

impl Replica {
    /// Stops the member (its control plane and ledger) and hands back its state directory,
    /// for a restart over it.
    pub fn stop(self) -> tempfile::TempDir {
        self.member.stop.cancel();
        let Replica {
            member,
            ledger,
            dir,
        } = self;
        drop((member, ledger));
        dir
    }
}

pub async fn replica(member: Member, hostname: &str) -> Replica {
    replica_in(member, hostname, tempfile::tempdir().unwrap()).await
}

/// The tests' ledger timing: everything within seconds.
pub fn quick_config() -> LedgerConfig {
    LedgerConfig {
        pool: "10.1.0.0/24".parse().unwrap(),
        formation_wait: Duration::from_secs(3),
        formation_quiet: None,
        target_voters: 3,
        lease_timeout: Duration::from_secs(3),
        voter_timeout: Duration::from_secs(3),
        stale_learner_timeout: Duration::from_secs(120),
        install_timeout: Duration::from_secs(5),
        operator: None,
        wall: weft::clock::Wall::default(),
    }
}

/// A member with its ledger in `dir` (a restarted node keeps its state directory).
pub async fn replica_in(member: Member, hostname: &str, dir: tempfile::TempDir) -> Replica {
    replica_configured(member, hostname, dir, quick_config()).await
}

/// A member with its ledger in `dir`, timed by `config`.
pub async fn replica_configured(
    member: Member,
    hostname: &str,
    dir: tempfile::TempDir,
    config: LedgerConfig,
) -> Replica {
    let facts = MemberFacts {
        hostname: hostname.to_string(),
        ..MemberFacts::default()
    };
    // A node restarted in this process waits for its previous incarnation to close the raft
    // database (its tasks wind down after their stop token).
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let ledger = loop {
        match Ledger::start(
            dir.path(),
            config.clone(),
            facts.clone(),
            member.handle.clone(),
            member.stop.clone(),
        )
        .await
        {
            Ok(ledger) => break ledger,
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("ledger not started yet: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the ledger does not start: {e}"),
        }
    };
    Replica {
        member,
        ledger,
        dir,
    }
}

/// Starts `n` members bootstrapping to the first, each with its ledger, all at once.
pub async fn cluster(n: usize) -> Vec<Replica> {
    let token = network();
    let first = start(&token, "m0", vec![]).await;
    let entry = address(&first).await;
    let mut members = vec![first];
    for i in 1..n {
        members.push(start(&token, &format!("m{i}"), vec![entry.clone()]).await);
    }
    let mut replicas = Vec::new();
    for (i, member) in members.into_iter().enumerate() {
        replicas.push(replica(member, &format!("m{i}")).await);
    }
    replicas
}

/// The overlay address the ledger of `replica` records for it.
pub fn own_address(replica: &Replica) -> Option<std::net::Ipv4Addr> {
    let me = replica.member.handle.peer_id().to_string();
    replica.ledger.state().members().get(&me)?.address
}

/// Starts members bootstrapping to the first of them, with their ledgers.
pub async fn group(token: &weft::token::Token, names: &[&str]) -> Vec<Replica> {
    group_configured(token, names, quick_config()).await
}

/// [`group`] with the ledgers configured by `config`.
pub async fn group_configured(
    token: &weft::token::Token,
    names: &[&str],
    config: LedgerConfig,
) -> Vec<Replica> {
    let first = start(token, names[0], vec![]).await;
    let entry = address(&first).await;
    let dir = || tempfile::tempdir().unwrap();
    let mut replicas = vec![replica_configured(first, names[0], dir(), config.clone()).await];
    for name in &names[1..] {
        let member = start(token, name, vec![entry.clone()]).await;
        replicas.push(replica_configured(member, name, dir(), config.clone()).await);
    }
    replicas
}

/// The cluster every replica of `replicas` is in, once they agree and all hold an address.
pub async fn settled_cluster(replicas: &[Replica]) -> String {
    wait_within(
        MERGE_DEADLINE,
        "one cluster with an address for all",
        || {
            let clusters: BTreeSet<Option<String>> = replicas
                .iter()
                .map(|r| r.ledger.status().cluster_id)
                .collect();
            let addressed = replicas.iter().all(|r| own_address(r).is_some());
            match (clusters.len(), clusters.into_iter().next()) {
                (1, Some(Some(cluster))) if addressed => Some(cluster),
                _ => None,
            }
        },
    )
    .await
}

pub const MERGE_DEADLINE: Duration = Duration::from_secs(90);

/// The leader's PeerId, once three voters are settled (no change of voters under way), as the
/// first replica sees it.
pub async fn settled_leader(replicas: &[Replica]) -> String {
    wait_within(DEADLINE, "a leader with three settled voters", || {
        let status = replicas[0].ledger.status();
        (status.voters.len() == 3 && !status.changing_voters)
            .then_some(status.leader)
            .flatten()
    })
    .await
}

/// A fresh operator key and [`quick_config`] with its public half, as a mesh started with
/// `--operator-key` runs.
pub fn keyed_config() -> (weft::operator::OperatorSecret, LedgerConfig) {
    let secret = weft::operator::OperatorSecret::generate();
    let config = LedgerConfig {
        operator: Some(secret.public()),
        ..quick_config()
    };
    (secret, config)
}

/// The PeerId of the one voter, once `replicas` (two) hold one voter and one learner and no
/// change of voters is under way.
pub async fn sole_voter(replicas: &[Replica]) -> String {
    wait_within(DEADLINE, "one voter and one learner", || {
        let status = replicas[0].ledger.status();
        (status.voters.len() == 1 && status.learners.len() == 1 && !status.changing_voters)
            .then(|| status.voters[0].clone())
    })
    .await
}

/// Proposes `command` through `replica` until it commits (a member that just joined may not
/// know the leader yet; after a leader dies there is none for an election's length).
pub async fn commit(replica: &Replica, command: weft::ledger::state::Command) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while let Err(e) = replica.ledger.propose(command.clone()).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never committed: {e}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
