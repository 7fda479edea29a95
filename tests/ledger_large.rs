//! A large ledger over the real control plane, in one process on loopback: 50 MB of keys and a
//! value at the per-write limit reach a member that joins as a follower (the paged catch-up)
//! and then, promoted when a voter leaves, as a voter (raft); a write over the limit is refused
//! naming the limit, and writes after it commit. A token rotation for a thousand members, more
//! than one write carries copies for, commits in pages (one held back at first) and reaches
//! every voter. Runs anywhere, no root.

mod support;

use std::time::{Duration, Instant};

use support::ledger::{Replica, commit, group, replica, settled_leader};
use support::mesh::{DEADLINE, address, network, start, wait_within};
use weft::clock::unix_now;
use weft::keyring::Keyring;
use weft::ledger::LedgerError;
use weft::ledger::limits::MAX_COMMAND_BYTES;
use weft::ledger::sealed::Sealer;
use weft::ledger::state::{Command, Platform};
use weft::rotation::make::make;
use weft::rotation::pages::{Outbox, deliver};
use weft::rotation::seal::open;

/// Bytes of values the ledger is filled with.
const FILL: usize = 50_000_000;
/// Bytes of each filling value.
const VALUE: usize = 60_000;
/// How long a large state may take to reach a new member.
const LARGE_DEADLINE: Duration = Duration::from_secs(180);

fn put(key: &str, value: String) -> Command {
    Command::KvPut {
        bucket: "large".into(),
        key: key.into(),
        value,
    }
}

/// The largest value one write can carry.
fn value_at_the_limit() -> String {
    let framing = serde_json::to_vec(&put("at-limit", String::new()))
        .unwrap()
        .len();
    "l".repeat(MAX_COMMAND_BYTES - framing)
}

/// Whether `replica` holds every filling key, the value at the limit and the write after it.
fn holds_everything(replica: &Replica, keys: usize) -> bool {
    let state = replica.ledger.state();
    state.bucket("large").is_some_and(|bucket| {
        bucket.len() == keys + 2
            && bucket.get("at-limit").map(String::len) == Some(value_at_the_limit().len())
            && bucket.contains_key("after")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_megabytes_reach_a_new_follower_and_a_new_voter_and_writes_over_the_limit_are_refused()
 {
    let token = network();
    let mut replicas = group(&token, &["m0", "m1", "m2"]).await;
    let leader = settled_leader(&replicas).await;

    let keys = FILL.div_ceil(VALUE);
    let started = Instant::now();
    let batches: Vec<Vec<usize>> = (0..keys)
        .collect::<Vec<_>>()
        .chunks(16)
        .map(<[usize]>::to_vec)
        .collect();
    for batch in batches {
        futures::future::join_all(batch.into_iter().map(|i| {
            let value = format!("{i:08}").repeat(VALUE / 8);
            commit(&replicas[0], put(&format!("k{i:04}"), value))
        }))
        .await;
    }
    commit(&replicas[0], put("at-limit", value_at_the_limit())).await;
    let over = replicas[0]
        .ledger
        .propose(put("over", "o".repeat(MAX_COMMAND_BYTES)))
        .await;
    match over {
        Err(LedgerError::TooLarge(message)) => assert!(
            message.contains(&MAX_COMMAND_BYTES.to_string()),
            "the refusal names the limit: {message}"
        ),
        other => panic!("a write over the limit was not refused as such: {other:?}"),
    }
    commit(&replicas[0], put("after", "a".into())).await;
    eprintln!(
        "{keys} writes of {VALUE} bytes committed in {:?}",
        started.elapsed()
    );
    for replica in &replicas {
        wait_within(LARGE_DEADLINE, "every write on every voter", || {
            holds_everything(replica, keys).then_some(())
        })
        .await;
    }

    // A new member joins: the voters are complete, so it follows, from a paged catch-up.
    let entry = address(&replicas[0].member).await;
    let started = Instant::now();
    let newcomer = replica(start(&token, "newcomer", vec![entry]).await, "newcomer").await;
    wait_within(
        LARGE_DEADLINE,
        "the whole ledger on the new follower",
        || holds_everything(&newcomer, keys).then_some(()),
    )
    .await;
    assert!(!newcomer.ledger.is_raft_member(), "it joined as a follower");
    eprintln!("the new follower caught up in {:?}", started.elapsed());

    // A voter other than the leader leaves; the newcomer takes its seat and holds the ledger as
    // a raft member.
    let gone = replicas
        .iter()
        .position(|r| r.member.handle.peer_id().to_string() != leader)
        .unwrap();
    drop(replicas.remove(gone));
    let newcomer_id = newcomer.member.handle.peer_id().to_string();
    let started = Instant::now();
    wait_within(LARGE_DEADLINE, "the newcomer as a voter", || {
        (replicas[0].ledger.status().voters.contains(&newcomer_id)
            && newcomer.ledger.is_raft_member())
        .then_some(())
    })
    .await;
    wait_within(LARGE_DEADLINE, "the whole ledger on the new voter", || {
        holds_everything(&newcomer, keys).then_some(())
    })
    .await;
    eprintln!(
        "the new voter holds the ledger after {:?}",
        started.elapsed()
    );
    commit(&newcomer, put("later", "still commits".into())).await;
}

/// The sealing secret of synthetic member `i`.
fn sealing_secret(i: usize) -> [u8; 32] {
    let mut secret = [9; 32];
    secret[..8].copy_from_slice(&(i as u64).to_le_bytes());
    secret
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_for_a_thousand_members_commits_in_pages_and_reaches_every_voter() {
    use x25519_dalek::{X25519_BASEPOINT_BYTES, x25519};

    let token = network();
    let replicas = group(&token, &["r0", "r1", "r2"]).await;
    let leader_id = settled_leader(&replicas).await;
    let leader = replicas
        .iter()
        .find(|r| r.member.handle.peer_id().to_string() == leader_id)
        .unwrap();
    // A thousand member records besides the three replicas, as if each had joined (the leader
    // takes joins in any name from its own node; the pool holds 253, so most get no address,
    // and their leases expire: away members get a copy too).
    let peer = |i: usize| format!("12D3KooWsynthetic{i:0>35}");
    for chunk in (0..1000).collect::<Vec<_>>().chunks(50) {
        futures::future::join_all(chunk.iter().map(|&i| {
            commit(
                leader,
                Command::Join {
                    peer: peer(i),
                    hostname: format!("m{i}"),
                    sealing_key: x25519(sealing_secret(i), X25519_BASEPOINT_BYTES),
                    endpoints: vec![],
                    requested: None,
                    now: 1,
                    fixed_role: None,
                    policy: None,
                    bootstraps: false,
                    platform: Platform::here(),
                },
            )
        }))
        .await;
    }
    let keyring = Keyring::new(token.clone());
    let status = leader.ledger.status();
    let raft = [status.voters, status.learners].concat();
    let made = make(
        &keyring,
        &leader.ledger.state(),
        &Sealer::new(keyring.clone()),
        3600,
        unix_now(),
        false,
        &raft,
    )
    .unwrap();
    // The synthetic members, and the replicas that gave a sealing key.
    let recipients = made.recipients;
    assert!(recipients >= 1000, "{recipients} recipients");
    assert!(made.pages.len() >= 4, "{} pages", made.pages.len());
    let network_id = made.token.keys().network_id().to_string();
    // The pages wait in the outbox of the node that made the rotation, which proposes them
    // once its ledger holds the rotation, as the daemon does; the first is held back once,
    // as a forwarding member might, and still commits.
    let outbox = Outbox::default();
    let mut pages = made.pages.clone();
    pages.remove(0);
    outbox.hold(network_id.clone(), pages);
    let stop = tokio_util::sync::CancellationToken::new();
    let delivering = tokio::spawn(deliver(
        outbox.clone(),
        replicas[0].ledger.clone(),
        stop.clone(),
    ));
    commit(&replicas[0], made.command).await;
    wait_within(DEADLINE, "every page but the one held back", || {
        let state = replicas[0].ledger.state();
        let rotation = state.token_rotation()?;
        (rotation.network == network_id && rotation.pages.len() == 1).then_some(())
    })
    .await;
    outbox.hold(network_id.clone(), made.pages);
    let encoded = made.token.encode();
    for replica in &replicas {
        let rotation = wait_within(DEADLINE, "the rotation with every page on a voter", || {
            replica
                .ledger
                .state()
                .token_rotation()
                .filter(|r| r.network == network_id && r.pages.is_empty())
                .cloned()
        })
        .await;
        assert_eq!(rotation.sealed.keys.len(), recipients);
        for i in [0, 499, 999] {
            assert_eq!(
                open(&rotation.sealed, &peer(i), sealing_secret(i)).unwrap(),
                encoded
            );
        }
    }
    assert!(
        outbox.due(&replicas[0].ledger.state()).is_empty(),
        "every page let go"
    );
    stop.cancel();
    delivering.await.unwrap();
}
