//! The ledger over the real control plane, in one process on loopback: members started together
//! form exactly one cluster and get distinct overlay addresses; a lone node forms its own; the
//! cluster survives losing its leader. Runs anywhere, no root.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::ledger::{
    MERGE_DEADLINE, Replica, cluster, commit, group, group_configured, keyed_config, own_address,
    quick_config, replica, replica_configured, replica_in, settled_cluster, settled_leader,
    sole_voter,
};
use support::mesh::{
    DEADLINE, address, network, start, start_as, start_light, wait_for, wait_within,
};
use weft::ledger::LedgerConfig;
use weft::ledger::state::{BootstrapReport, Command, FixedRole, LeaseState, Phase, Role, SET_FORM};
use weft::token::Token;

fn has_key(replica: &Replica, key: &str) -> bool {
    value_in(replica, "test", key).is_some()
}

fn value_in(replica: &Replica, bucket: &str, key: &str) -> Option<String> {
    replica.ledger.state().bucket(bucket)?.get(key).cloned()
}

fn put(key: &str) -> Command {
    put_value(key, "v")
}

fn put_value(key: &str, value: &str) -> Command {
    Command::KvPut {
        bucket: "test".into(),
        key: key.into(),
        value: value.into(),
    }
}

fn delete(key: &str) -> Command {
    Command::KvDelete {
        bucket: "test".into(),
        key: Some(key.into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_node_forms_its_own_cluster_and_gets_an_address() {
    let lone = replica(start(&network(), "lone", vec![]).await, "lone").await;
    let address = wait_for("the lone node's address", || own_address(&lone)).await;
    assert_eq!(address, "10.1.0.1".parse::<std::net::Ipv4Addr>().unwrap());
    let status = lone.ledger.status();
    assert!(status.cluster_id.is_some());
    assert_eq!(
        status.voters,
        vec![lone.member.handle.peer_id().to_string()]
    );
}

/// What a founder's deployment waits for (`ledger/settle.rs`): a cluster is settled only once a
/// merge check made in it found nobody outside it, on a lone node and on every member of a
/// cluster all its peers joined, within a few merge checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_everyone_joined_reads_as_settled_on_every_member() {
    let lone = replica(start(&network(), "lone", vec![]).await, "lone").await;
    assert!(
        lone.ledger.unsettled().is_some(),
        "no cluster yet, so nothing settled"
    );
    let settled = Duration::from_secs(30);
    wait_within(settled, "the lone node's cluster settled", || {
        lone.ledger.unsettled().is_none().then_some(())
    })
    .await;
    let replicas = group(&network(), &["s0", "s1", "s2"]).await;
    settled_cluster(&replicas).await;
    wait_within(settled, "every member's cluster settled", || {
        replicas
            .iter()
            .all(|r| r.ledger.unsettled().is_none())
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_members_started_together_form_one_cluster_with_distinct_addresses_and_notify_writes()
{
    let replicas = cluster(5).await;
    let mut addresses = BTreeSet::new();
    for replica in &replicas {
        addresses.insert(wait_for("every member's address", || own_address(replica)).await);
    }
    assert_eq!(addresses.len(), 5, "addresses are distinct: {addresses:?}");
    let clusters: BTreeSet<Option<String>> = replicas
        .iter()
        .map(|r| r.ledger.status().cluster_id)
        .collect();
    assert_eq!(clusters.len(), 1, "one cluster: {clusters:?}");
    let voters = wait_for("three voters", || {
        let voters = replicas[0].ledger.status().voters;
        (voters.len() == 3).then_some(voters)
    })
    .await;
    assert_eq!(voters.len(), 3);

    // Subscribers, on voters and followers alike, are woken by a committed write.
    let mut subscriptions: Vec<_> = replicas.iter().map(|r| r.ledger.subscribe()).collect();
    commit(&replicas[4], put("watched")).await;
    for (replica, subscription) in replicas.iter().zip(&mut subscriptions) {
        while !has_key(replica, "watched") {
            tokio::time::timeout(DEADLINE, subscription.changed())
                .await
                .expect("a change is signalled")
                .expect("the ledger runs");
        }
    }

    // The leader's appends (heartbeats included) leave on its voters' raft streams, not as a
    // request each: the requests are raft's fallback, and the cluster would work on them alone.
    // Counted over every replica, so that a change of leader does not stall the count; a
    // voter's stream may fail once and send it to requests for 10 s (20 heartbeats), which the
    // margin allows.
    let appends = |path: &str| -> u64 { replicas.iter().map(|r| raft_appends(r, path)).sum() };
    let (streamed, requested) = (appends("stream"), appends("request"));
    wait_for("sixty appends on raft streams", || {
        (appends("stream") >= streamed + 60).then_some(())
    })
    .await;
    let (more_streamed, more_requested) =
        (appends("stream") - streamed, appends("request") - requested);
    assert!(
        more_requested * 2 < more_streamed,
        "{more_requested} appends went as requests beside {more_streamed} on streams"
    );
}

/// How many appends `replica` sent by `path` ("stream" or "request"), as its metrics say.
fn raft_appends(replica: &Replica, path: &str) -> u64 {
    metric(
        replica,
        &format!("weft_raft_rpcs_sent_total{{rpc=\"append\",path=\"{path}\"}} "),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_leader_dies_writes_still_commit_on_every_survivor() {
    let mut replicas = cluster(5).await;
    let leader = settled_leader(&replicas).await;
    commit(&replicas[1], put("before")).await;
    for replica in &replicas {
        wait_for("the first write everywhere", || {
            has_key(replica, "before").then_some(())
        })
        .await;
    }

    let index = replicas
        .iter()
        .position(|r| r.member.handle.peer_id().to_string() == leader)
        .unwrap();
    drop(replicas.remove(index));
    let new_leader = wait_for("a new leader", || {
        replicas[0].ledger.status().leader.filter(|l| *l != leader)
    })
    .await;
    assert_ne!(new_leader, leader);
    commit(&replicas[replicas.len() - 1], put("after")).await;
    for replica in &replicas {
        wait_for("the later write on every survivor", || {
            has_key(replica, "after").then_some(())
        })
        .await;
    }
}

/// An operator's write made while the stopped leader is being replaced waits for the next
/// leader rather than failing: the proposal's patience outlasts an election (a follower votes only once openraft's
/// 3 s lease and its own 1.5 to 3 s election timeout have passed). With 6 s of patience, the
/// constant before, the write failed "no leader could be reached" whenever the election took
/// longer than that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_made_while_the_leader_is_replaced_waits_for_the_next_one_and_commits() {
    let mut replicas = cluster(3).await;
    let leader = settled_leader(&replicas).await;
    commit(&replicas[0], put("before")).await;
    let index = replicas
        .iter()
        .position(|r| r.member.handle.peer_id().to_string() == leader)
        .unwrap();
    for replica in &replicas {
        wait_for("the leader known everywhere", || {
            (replica.ledger.status().leader.as_deref() == Some(leader.as_str())).then_some(())
        })
        .await;
    }
    drop(replicas.remove(index));
    // Once the stopped leader is gone from the survivors' peers: a request already on its way
    // when it stopped is answered "connection closed", and may have committed, so it is never
    // proposed again (the caller hears so at once).
    let gone: libp2p::PeerId = leader.parse().unwrap();
    for replica in &replicas {
        wait_for("the stopped leader gone from the peers", || {
            (!replica.member.handle.is_admitted(&gone)).then_some(())
        })
        .await;
    }
    // The write is made inside the window this test is about: no new leader yet.
    let known = replicas[0].ledger.status().leader;
    assert!(
        known.as_deref().is_none_or(|l| l == leader),
        "a new leader ({known:?}) was elected before the write: the window was missed"
    );
    let started = std::time::Instant::now();
    let written = replicas[0].ledger.propose_patiently(put("during")).await;
    eprintln!(
        "the write answered {:?} after {:?}",
        written.as_ref().map(|_| ()),
        started.elapsed()
    );
    written.expect("the write waits for the next leader and commits");
    for replica in &replicas {
        wait_for("the write on every survivor", || {
            has_key(replica, "during").then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_of_a_member_gone_past_the_timeout_expires_and_frees_its_address() {
    let mut replicas = cluster(3).await;
    for replica in &replicas {
        wait_for("every member's address", || own_address(replica)).await;
    }
    let leader = wait_for("a leader", || replicas[0].ledger.status().leader).await;
    let index = replicas
        .iter()
        .position(|r| r.member.handle.peer_id().to_string() != leader)
        .unwrap();
    let gone = replicas.remove(index);
    let gone_id = gone.member.handle.peer_id().to_string();
    drop(gone);
    wait_for("the gone member's lease to expire", || {
        let state = replicas[0].ledger.state();
        let member = state.members().get(&gone_id)?;
        (member.lease == LeaseState::Expired && member.address.is_none()).then_some(())
    })
    .await;
}

/// A member gone in the middle of installing its control-plane seat keeps the seat and its
/// address through its lease expiry, for the install timeout (5 s here); then the leader gives
/// the install up: the seat goes to the other member that may hold it and the address is freed.
/// Fails on the old code, which kept both for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_gone_in_the_middle_of_installing_its_seat_loses_it_after_the_install_timeout() {
    let mut replicas = cluster(3).await;
    settled_cluster(&replicas).await;
    let leader = wait_for("a leader", || replicas[0].ledger.status().leader).await;
    let peer = |r: &Replica| r.member.handle.peer_id().to_string();
    let index = replicas.iter().position(|r| peer(r) != leader).unwrap();
    let installer = replicas.remove(index);
    let installer_id = peer(&installer);
    let heir = replicas.iter().position(|r| peer(r) != leader).unwrap();
    let heir_id = peer(&replicas[heir]);
    let role_of = |state: &weft::ledger::state::LedgerState, p: &str| state.members()[p].role;
    let fix_master = |p: &str| Command::SetFixedRole {
        peer: p.to_string(),
        role: Some(FixedRole::Master),
        force: false,
    };
    commit(&installer, fix_master(&installer_id)).await;
    wait_for("the installer holding the seat", || {
        (role_of(&installer.ledger.state(), &installer_id) == Some(Role::Master)).then_some(())
    })
    .await;
    commit(&replicas[heir], fix_master(&heir_id)).await;
    let installing = Command::ReportBootstrap {
        peer: installer_id.clone(),
        report: BootstrapReport {
            role: Some(Role::Master),
            phase: Phase::Installing,
            detail: String::new(),
            at: 1,
        },
        restored: false,
    };
    commit(&installer, installing).await;
    let watcher = &replicas[1 - heir];
    let address = wait_for("the install on record", || {
        let state = watcher.ledger.state();
        let member = state.members().get(&installer_id)?;
        member.acting_on()?;
        member.address
    })
    .await;
    drop(installer);
    wait_for(
        "the installer's lease expired, its seat and address kept",
        || {
            let state = watcher.ledger.state();
            let member = &state.members()[&installer_id];
            (member.lease == LeaseState::Expired
                && member.role == Some(Role::Master)
                && member.address == Some(address))
            .then_some(())
        },
    )
    .await;
    wait_for("the install given up, the seat with the heir", || {
        let state = watcher.ledger.state();
        let member = &state.members()[&installer_id];
        (member.role.is_none()
            && member.address.is_none()
            && role_of(&state, &heir_id) == Some(Role::Master))
        .then_some(())
    })
    .await;
}

/// Renewals named by place in the member table reach voters by raft and the follower by the
/// feed, and move every member's stamp on every node, as sets the leader's metrics count.
/// Fails when a set renews nobody, or when every set meets a changed table (the leader then
/// renews by PeerId).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewals_named_by_place_move_every_members_stamp_on_every_node() {
    let replicas = cluster(4).await;
    let members: Vec<String> = replicas
        .iter()
        .map(|r| r.member.handle.peer_id().to_string())
        .collect();
    let stamps = |replica: &Replica| -> Option<Vec<u64>> {
        let state = replica.ledger.state();
        let live = members.iter().all(|m| {
            state
                .members()
                .get(m)
                .is_some_and(|r| r.lease == LeaseState::Live)
        });
        (live && state.reads_form(SET_FORM)).then(|| {
            members
                .iter()
                .map(|m| state.members()[m].renewed_at)
                .collect()
        })
    };
    let mut before = Vec::new();
    for replica in &replicas {
        before.push(wait_for("every member live, reading sets", || stamps(replica)).await);
    }
    for (replica, before) in replicas.iter().zip(&before) {
        wait_for("every member's stamp to move", || {
            let now = stamps(replica)?;
            now.iter()
                .zip(before)
                .all(|(now, then)| now > then)
                .then_some(())
        })
        .await;
    }
    let sets: u64 = replicas.iter().map(|r| renewal_entries(r, "set")).sum();
    assert!(sets > 0, "no renewal set committed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_takes_its_leaders_beats_and_names_the_leader_from_them() {
    // Leases of 30 s: renewals every 10 s leave the leader idle between them, so that its idle
    // heartbeats go out as beats beside its renewals (the tests' usual 3 s leases renew every
    // second).
    let config = LedgerConfig {
        lease_timeout: Duration::from_secs(30),
        ..quick_config()
    };
    let replicas =
        support::ledger::group_configured(&network(), &["b0", "b1", "b2", "b3"], config).await;
    // Formation can take longer than one wait's deadline on a loaded host (CI runs this beside
    // the fifty-megabyte test): wait for it apart, so that the wait for a follower measures
    // only the follower.
    support::ledger::settled_cluster(&replicas).await;
    let follower = wait_for("a follower naming a leader", || {
        replicas.iter().find(|r| {
            let status = r.ledger.status();
            status.follower && status.leader.is_some()
        })
    })
    .await;
    wait_within(
        Duration::from_secs(60),
        "the follower to take three beats",
        || (metric(follower, "weft_ledger_feed_taken_total{kind=\"beat\"} ") >= 3).then_some(()),
    )
    .await;
    let published: u64 = replicas
        .iter()
        .map(|r| metric(r, "weft_ledger_feed_published_total{kind=\"beat\"} "))
        .sum();
    assert!(published >= 3, "the beats taken were published");
    let leader = replicas
        .iter()
        .map(|r| r.ledger.status())
        .find(|status| !status.follower)
        .and_then(|status| status.leader);
    assert!(leader.is_some());
    assert_eq!(follower.ledger.status().leader, leader);
}

/// How many renewal entries of `form` `replica` committed as leader, as its metrics say.
fn renewal_entries(replica: &Replica, form: &str) -> u64 {
    metric(
        replica,
        &format!("weft_ledger_renewal_entries_total{{form=\"{form}\"}} "),
    )
}

/// The value of the series whose line starts with `series` in `replica`'s ledger metrics, 0
/// when it has none yet.
fn metric(replica: &Replica, series: &str) -> u64 {
    let mut registry = prometheus_client::registry::Registry::default();
    replica.ledger.register_metrics(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("metrics encode");
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .map_or(0, |v| v.trim().parse().expect("a counter's value"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_gone_past_the_voter_timeout_is_replaced_by_a_live_member() {
    let mut replicas = cluster(5).await;
    let (leader, voters) = wait_for("a leader with three settled voters", || {
        let status = replicas[0].ledger.status();
        (status.voters.len() == 3 && !status.changing_voters)
            .then_some(status.leader.map(|l| (l, status.voters)))
            .flatten()
    })
    .await;
    let gone_id = voters.iter().find(|v| **v != leader).unwrap().clone();
    let index = replicas
        .iter()
        .position(|r| r.member.handle.peer_id().to_string() == gone_id)
        .unwrap();
    drop(replicas.remove(index));
    let new_voters = wait_for("three live voters", || {
        let voters = replicas[0].ledger.status().voters;
        (voters.len() == 3 && !voters.contains(&gone_id)).then_some(voters)
    })
    .await;
    for voter in &new_voters {
        assert!(
            replicas
                .iter()
                .any(|r| r.member.handle.peer_id().to_string() == *voter),
            "{voter} is not a live member"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_replaced_while_away_rejoins_with_its_address_and_gets_later_writes() {
    replaced_while_away_rejoins(false).await;
}

/// A leader comes back as the leader its stored vote names, and members refuse its appends:
/// it must see that no majority answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_replaced_while_away_rejoins_with_its_address_and_gets_later_writes() {
    replaced_while_away_rejoins(true).await;
}

/// Five members v0..v4 started together, timed by `config` (each with its key, for restarts
/// under the same identity), once they settled into one cluster.
async fn five_members(
    token: &Token,
    config: &LedgerConfig,
) -> (Vec<libp2p::identity::Keypair>, Vec<Replica>) {
    let keys: Vec<libp2p::identity::Keypair> = (0..5)
        .map(|_| libp2p::identity::Keypair::generate_ed25519())
        .collect();
    let first = start_as(token, "v0", vec![], &keys[0]).await;
    let entry = address(&first).await;
    let dir = || tempfile::tempdir().expect("a state directory");
    let mut replicas = vec![replica_configured(first, "v0", dir(), config.clone()).await];
    for (i, keypair) in keys.iter().enumerate().skip(1) {
        let name = format!("v{i}");
        let member = start_as(token, &name, vec![entry.clone()], keypair).await;
        replicas.push(replica_configured(member, &name, dir(), config.clone()).await);
    }
    settled_cluster(&replicas).await;
    (keys, replicas)
}

/// The index of the leader (when `leader`) or of a voter that does not lead, once the cluster
/// has its three voters.
async fn settled_voter(replicas: &[Replica], leader: bool) -> usize {
    wait_for("the cluster's three voters", || {
        let status = replicas[0].ledger.status();
        let leading = status.leader?;
        (status.voters.len() == 3 && !status.changing_voters)
            .then(|| {
                (0..replicas.len()).find(|i| {
                    let peer = replicas[*i].member.handle.peer_id().to_string();
                    status.voters.contains(&peer) && (peer == leading) == leader
                })
            })
            .flatten()
    })
    .await
}

/// Stops a voter (the leader when `leader`), waits until it is replaced, writes, and restarts
/// it with its state: it must rejoin, keep its address and hold the write made meanwhile.
async fn replaced_while_away_rejoins(leader: bool) {
    let token = network();
    let (keys, mut replicas) = five_members(&token, &quick_config()).await;
    let index = settled_voter(&replicas, leader).await;
    let away = replicas.remove(index);
    let gone = away.member.handle.peer_id().to_string();
    let before = own_address(&away).expect("an address before it left");
    let old_id = away.ledger.node_id();
    let dir = away.stop();
    wait_for("three voters without the one away", || {
        let voters = replicas[0].ledger.status().voters;
        (voters.len() == 3 && !voters.contains(&gone)).then_some(())
    })
    .await;
    commit(&replicas[0], put("while-away")).await;

    let name = format!("v{index}");
    let entry = address(&replicas[0].member).await;
    let back = replica_in(
        start_as(&token, &name, vec![entry], &keys[index]).await,
        &name,
        dir,
    )
    .await;
    wait_within(
        MERGE_DEADLINE,
        "the returning voter to follow its cluster and hold the write made while it was away",
        || (back.ledger.status().leader.is_some() && has_key(&back, "while-away")).then_some(()),
    )
    .await;
    rejoined_as_a_new_node(&back, &replicas, old_id, before).await;
}

/// A node `back` that rejoined after being replaced: it wiped its raft state to rejoin, so it
/// is a new raft node (never `old_id`, the voter it was), its writes reach every one of
/// `replicas`, and it holds the address it held `before`.
async fn rejoined_as_a_new_node(
    back: &Replica,
    replicas: &[Replica],
    old_id: u64,
    before: std::net::Ipv4Addr,
) {
    assert_ne!(
        back.ledger.node_id(),
        old_id,
        "rejoined under its old raft id"
    );
    commit(back, put("after-return")).await;
    wait_for("the write made after its return everywhere", || {
        replicas
            .iter()
            .all(|r| has_key(r, "after-return"))
            .then_some(())
    })
    .await;
    wait_for("its address back", || {
        (own_address(back) == Some(before)).then_some(())
    })
    .await;
}

/// A voter whose machine is restored from a backup taken before later writes and before its
/// removal comes back with a raft log older than the one it acknowledged from: it must rejoin
/// as a new raft node, get its address back and hold every write, the ones its backup lacks
/// among them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_restored_from_a_backup_older_than_its_removal_rejoins_with_every_write() {
    let token = network();
    // Voters are replaced after 10 s away rather than 3: the restart that takes the write the
    // backup lacks must find the voter still in its seat.
    let config = LedgerConfig {
        voter_timeout: Duration::from_secs(10),
        ..quick_config()
    };
    let (keys, mut replicas) = five_members(&token, &config).await;
    let index = settled_voter(&replicas, false).await;
    let name = format!("v{index}");
    let gone = replicas[index].member.handle.peer_id().to_string();
    let before = own_address(&replicas[index]).expect("an address before the backup");
    let old_id = replicas[index].ledger.node_id();

    // The backup: the state directory copied while the node is stopped.
    let dir = replicas.remove(index).stop();
    let backup = copy_when_released(dir.path()).await;
    let entry = address(&replicas[0].member).await;
    let restarted = replica_configured(
        start_as(&token, &name, vec![entry], &keys[index]).await,
        &name,
        dir,
        config.clone(),
    )
    .await;
    commit(&replicas[0], put("after-backup")).await;
    wait_for("the voter to hold the write its backup lacks", || {
        has_key(&restarted, "after-backup").then_some(())
    })
    .await;
    assert_eq!(
        restarted.ledger.node_id(),
        old_id,
        "the voter lost its seat while it restarted"
    );
    assert!(
        replicas[0].ledger.status().voters.contains(&gone),
        "the voter lost its seat while it restarted"
    );

    // The machine goes away, is removed, and comes back from the backup.
    drop(restarted.stop());
    wait_for("three voters without the one away", || {
        let voters = replicas[0].ledger.status().voters;
        (voters.len() == 3 && !voters.contains(&gone)).then_some(())
    })
    .await;
    commit(&replicas[0], put("while-away")).await;
    let entry = address(&replicas[0].member).await;
    let back = replica_configured(
        start_as(&token, &name, vec![entry], &keys[index]).await,
        &name,
        backup,
        config,
    )
    .await;
    wait_within(
        MERGE_DEADLINE,
        "the restored voter to follow its cluster and hold every write",
        || {
            (back.ledger.status().leader.is_some()
                && has_key(&back, "after-backup")
                && has_key(&back, "while-away"))
            .then_some(())
        },
    )
    .await;
    rejoined_as_a_new_node(&back, &replicas, old_id, before).await;
}

/// A copy of the state directory `dir`, once the stopped node's ledger has let go of its
/// database (its tasks end shortly after the stop). The check opens the database and closes
/// it cleanly, so the copy is of a file closed cleanly, as a backup after a shutdown is.
async fn copy_when_released(dir: &std::path::Path) -> tempfile::TempDir {
    let db = dir.join("raft/ledger.redb");
    wait_for("the stopped node to release its database", || {
        redb::Database::open(&db).ok().map(drop)
    })
    .await;
    let copy = tempfile::tempdir().expect("a directory for the backup");
    copy_tree(dir, copy.path());
    copy
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).expect("read the state directory") {
        let entry = entry.expect("a directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a file type").is_dir() {
            std::fs::create_dir_all(&target).expect("create a directory of the backup");
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a file of the backup");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_formed_apart_merge_into_one_and_keep_every_write_and_deletion() {
    let token = network();
    let west = group(&token, &["w0", "w1", "w2"]).await;
    let east = group(&token, &["e0", "e1"]).await;
    let west_cluster = settled_cluster(&west).await;
    let east_cluster = settled_cluster(&east).await;
    assert_ne!(west_cluster, east_cluster, "the groups formed apart");
    commit(&west[1], put("from-west")).await;
    commit(&east[1], put("from-east")).await;
    // Both sides write one key; each deletes a key the other side holds.
    for (side, name) in [(&west, "west"), (&east, "east")] {
        commit(&side[1], put_value("conflict", name)).await;
        commit(&side[0], put_value("west-deletes", name)).await;
        commit(&side[0], put_value("east-deletes", name)).await;
    }
    commit(&west[2], delete("west-deletes")).await;
    commit(&east[0], delete("east-deletes")).await;

    // A node that knows one member of each group brings them together (peer exchange does the
    // rest).
    let bridge_member = start(
        &token,
        "bridge",
        vec![
            address(&west[0].member).await,
            address(&east[0].member).await,
        ],
    )
    .await;
    let bridge = replica(bridge_member, "bridge").await;
    let everyone: Vec<Replica> = west.into_iter().chain(east).chain([bridge]).collect();
    let merged = settled_cluster(&everyone).await;
    assert!(
        merged == west_cluster || merged == east_cluster,
        "one of the two clusters wins, not a third"
    );
    let addresses: BTreeSet<_> = everyone.iter().filter_map(own_address).collect();
    assert_eq!(
        addresses.len(),
        everyone.len(),
        "distinct addresses: {addresses:?}"
    );
    // Every acknowledged write is readable at its place or, displaced by the merge, under
    // merged/<the cluster it was written in>/<bucket>; both deletions hold.
    let (winner, loser) = if merged == west_cluster {
        ("west", "east")
    } else {
        ("east", "west")
    };
    let kept = |side: &str| {
        let cluster = if side == "west" {
            &west_cluster
        } else {
            &east_cluster
        };
        format!("merged/{cluster}/test")
    };
    for replica in &everyone {
        wait_within(MERGE_DEADLINE, "both groups' writes on every node", || {
            let at = |key: &str| value_in(replica, "test", key);
            let displaced = |side: &str, key: &str| value_in(replica, &kept(side), key);
            (has_key(replica, "from-west")
                && has_key(replica, "from-east")
                && at("conflict").as_deref() == Some(winner)
                && displaced(loser, "conflict").as_deref() == Some(loser)
                && at("west-deletes").is_none()
                && at("east-deletes").is_none()
                && displaced("east", "west-deletes").as_deref() == Some("east")
                && displaced("west", "east-deletes").as_deref() == Some("west"))
            .then_some(())
        })
        .await;
    }
}

/// A member off while its cluster merged into another comes back holding the old cluster's
/// raft state: it finds its peers in the winner, leaves the cluster that is gone, and joins the
/// winner with an address (its own when still free; here an east member holds it) and every
/// write of both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_cluster_merged_away_while_it_was_off_comes_back_into_the_winner() {
    let token = network();
    let keypair = libp2p::identity::Keypair::generate_ed25519();
    let w0 = start(&token, "w0", vec![]).await;
    let entry = address(&w0).await;
    let mut west = vec![
        replica(w0, "w0").await,
        replica(start(&token, "w1", vec![entry.clone()]).await, "w1").await,
        replica(
            start_as(&token, "w2", vec![entry.clone()], &keypair).await,
            "w2",
        )
        .await,
    ];
    let east = group(&token, &["e0", "e1", "e2", "e3"]).await;
    let west_cluster = settled_cluster(&west).await;
    let east_cluster = settled_cluster(&east).await;
    assert_ne!(west_cluster, east_cluster, "the groups formed apart");
    commit(&west[0], put("west-before")).await;
    wait_for("the west write on w2", || {
        has_key(&west[2], "west-before").then_some(())
    })
    .await;
    let away = west.pop().unwrap();
    let held = own_address(&away).unwrap();
    let dir = away.stop();

    // While w2 is off, a node that knows both groups brings them together: the larger east
    // wins, and w0 and w1 leave the west cluster for it.
    let bridge = replica(
        start(
            &token,
            "bridge",
            vec![
                address(&west[0].member).await,
                address(&east[0].member).await,
            ],
        )
        .await,
        "bridge",
    )
    .await;
    let mut everyone: Vec<Replica> = west.into_iter().chain(east).chain([bridge]).collect();
    assert_eq!(
        settled_cluster(&everyone).await,
        east_cluster,
        "the larger group wins"
    );
    commit(&everyone[0], put("after-merge")).await;

    let restarted = std::time::Instant::now();
    let back = replica_in(
        start_as(&token, "w2", vec![entry], &keypair).await,
        "w2",
        dir,
    )
    .await;
    everyone.push(back);
    assert_eq!(
        settled_cluster(&everyone).await,
        east_cluster,
        "w2 is back in the winner"
    );
    let back = everyone.last().unwrap();
    wait_within(MERGE_DEADLINE, "both writes on w2", || {
        (has_key(back, "west-before") && has_key(back, "after-merge")).then_some(())
    })
    .await;
    eprintln!(
        "w2 back in the winner with both writes {:.1} s after it started again",
        restarted.elapsed().as_secs_f64()
    );
    // Both groups gave out the lowest addresses, so the one w2 held is an east member's now.
    assert!(
        own_address(back).is_some_and(|a| a != held),
        "w2 has an address of its own"
    );
    let addresses: BTreeSet<_> = everyone.iter().filter_map(own_address).collect();
    assert_eq!(
        addresses.len(),
        everyone.len(),
        "distinct addresses: {addresses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_survivor_of_quorum_loss_recovers_the_ledger_into_a_new_cluster() {
    let token = network();
    let mut replicas = group(&token, &["m0", "m1", "m2"]).await;
    let old_cluster = settled_cluster(&replicas).await;
    wait_for("three settled voters", || {
        let status = replicas[0].ledger.status();
        (status.voters.len() == 3 && !status.changing_voters).then_some(())
    })
    .await;
    commit(&replicas[0], put("kept")).await;
    // Enough for a snapshot of two of raft's chunks (192 KiB each) later.
    let big = "x".repeat(60_000);
    for i in 0..4 {
        commit(&replicas[0], put_value(&format!("big{i}"), &big)).await;
    }
    for replica in &replicas {
        wait_for("the write everywhere", || {
            has_key(replica, "kept").then_some(())
        })
        .await;
    }
    assert!(
        matches!(
            weft::ledger::recover::recover(&replicas[0].ledger).await,
            Err(weft::ledger::recover::RecoverError::HasQuorum)
        ),
        "a cluster that still commits is not recovered"
    );

    let survivor = replicas.remove(0);
    let held = own_address(&survivor);
    drop(replicas);
    let recovery = weft::ledger::recover::recover(&survivor.ledger)
        .await
        .expect("a lone survivor recovers");
    assert_eq!(recovery.previous_cluster, old_cluster);
    let new_cluster = wait_for("the recovered cluster", || {
        survivor
            .ledger
            .status()
            .cluster_id
            .filter(|c| *c != old_cluster)
    })
    .await;
    assert_eq!(new_cluster, recovery.cluster);
    assert!(
        has_key(&survivor, "kept"),
        "the recovered ledger keeps the write"
    );
    assert_eq!(own_address(&survivor), held, "and the survivor's address");
    commit(&survivor, put("after")).await;

    // The recovery folded the log into a snapshot: a node that joins now takes the state from
    // raft as a learner, as snapshot chunks received into a file.
    let entry = address(&survivor.member).await;
    let newcomer = replica(start(&token, "m3", vec![entry]).await, "m3").await;
    wait_within(
        MERGE_DEADLINE,
        "the newcomer a raft member of the recovered cluster",
        || {
            let status = newcomer.ledger.status();
            (status.cluster_id.as_ref() == Some(&new_cluster) && !status.follower).then_some(())
        },
    )
    .await;
    wait_within(MERGE_DEADLINE, "the state on the newcomer", || {
        (has_key(&newcomer, "kept") && has_key(&newcomer, "after") && has_key(&newcomer, "big3"))
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_thirty_node_mesh_most_members_follow_and_every_write_reaches_everyone() {
    const NODES: usize = 30;
    // Thirty nodes share two cores here: a fleet joining a running cluster, first node first,
    // then the rest in batches, keeps connection set-up from starving everything else.
    const BATCH: usize = 10;
    let deadline = Duration::from_secs(120);
    let token = network();
    let first = start_light(&token, "m0", vec![]).await;
    let entry = address(&first).await;
    let mut replicas = vec![replica(first, "m0").await];
    wait_for("the first node's address", || own_address(&replicas[0])).await;
    while replicas.len() < NODES {
        let batch_start = replicas.len();
        for i in batch_start..(batch_start + BATCH).min(NODES) {
            let name = format!("m{i}");
            let member = start_light(&token, &name, vec![entry.clone()]).await;
            replicas.push(replica(member, &name).await);
        }
        for replica in &replicas[batch_start..] {
            wait_within(
                deadline,
                "every member of the batch with an address",
                || own_address(replica),
            )
            .await;
        }
    }
    let addresses: BTreeSet<_> = replicas.iter().filter_map(own_address).collect();
    assert_eq!(addresses.len(), NODES, "distinct addresses");
    let clusters: BTreeSet<_> = replicas
        .iter()
        .map(|r| r.ledger.status().cluster_id)
        .collect();
    assert_eq!(clusters.len(), 1, "one cluster: {clusters:?}");
    let voters = wait_within(deadline, "three settled voters", || {
        let status = replicas[0].ledger.status();
        (status.voters.len() == 3 && !status.changing_voters).then_some(status.voters)
    })
    .await;
    let followers = replicas
        .iter()
        .filter(|r| r.ledger.status().follower)
        .count();
    assert!(
        followers >= NODES - 5,
        "{followers} of {NODES} follow; voters {voters:?}"
    );

    // Writes through followers and voters alike.
    let writers = [1, 7, 15, 22, 29];
    for (n, writer) in writers.iter().enumerate() {
        commit(&replicas[*writer], put(&format!("key-{n}"))).await;
    }
    for replica in &replicas {
        wait_within(deadline, "every write on every node", || {
            (0..writers.len())
                .all(|n| has_key(replica, &format!("key-{n}")))
                .then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_member_keeps_its_peer_id_address_and_cluster() {
    let token = network();
    let keypair = libp2p::identity::Keypair::generate_ed25519();
    let mut replicas = group(&token, &["r0", "r1"]).await;
    let entry = address(&replicas[0].member).await;
    let restarting = replica(
        start_as(&token, "r2", vec![entry.clone()], &keypair).await,
        "r2",
    )
    .await;
    replicas.push(restarting);
    let cluster = settled_cluster(&replicas).await;
    let restarting = replicas.pop().unwrap();
    let peer_id = restarting.member.handle.peer_id();
    let before = own_address(&restarting).unwrap();
    let dir = restarting.stop();
    let again = replica_in(
        start_as(&token, "r2", vec![entry], &keypair).await,
        "r2",
        dir,
    )
    .await;
    assert_eq!(again.member.handle.peer_id(), peer_id);
    replicas.push(again);
    assert_eq!(
        settled_cluster(&replicas).await,
        cluster,
        "the same cluster"
    );
    assert_eq!(own_address(&replicas[2]), Some(before), "the same address");
}

/// `nodes` replicas in one settled cluster of three voters, with voter and lease timeouts too
/// long to matter.
async fn patient_cluster(prefix: &str, nodes: usize) -> Vec<Replica> {
    let token = network();
    let patient = LedgerConfig {
        voter_timeout: Duration::from_secs(600),
        lease_timeout: Duration::from_secs(600),
        ..quick_config()
    };
    let name = format!("{prefix}0");
    let first = start(&token, &name, vec![]).await;
    let entry = address(&first).await;
    let mut replicas =
        vec![replica_configured(first, &name, tempfile::tempdir().unwrap(), patient.clone()).await];
    for i in 1..nodes {
        let name = format!("{prefix}{i}");
        let member = start(&token, &name, vec![entry.clone()]).await;
        replicas.push(
            replica_configured(member, &name, tempfile::tempdir().unwrap(), patient.clone()).await,
        );
    }
    settled_cluster(&replicas).await;
    replicas
}

/// Denies a voter that does not lead, through another member; returns the denied PeerId and
/// the member that proposed the denial.
async fn deny_a_voter(replicas: &[Replica]) -> (String, &Replica) {
    let (leader, voters) = wait_for("three voters", || {
        let status = replicas[0].ledger.status();
        (status.voters.len() == 3).then(|| (status.leader.clone(), status.voters))
    })
    .await;
    let denied = voters
        .iter()
        .find(|v| Some(*v) != leader.as_ref())
        .unwrap()
        .clone();
    let proposer = replicas
        .iter()
        .find(|r| r.member.handle.peer_id().to_string() != denied)
        .unwrap();
    commit(
        proposer,
        Command::Deny {
            peer: denied.clone(),
        },
    )
    .await;
    (denied, proposer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_voter_is_replaced_without_waiting_for_the_voter_timeout() {
    let replicas = patient_cluster("d", 4).await;
    let (denied, proposer) = deny_a_voter(&replicas).await;
    wait_for("three voters without the denied one", || {
        let voters = proposer.ledger.status().voters;
        (voters.len() == 3 && !voters.contains(&denied)).then_some(())
    })
    .await;
}

/// In a cluster of three, nobody can take a denied voter's seat: it loses the seat anyway, so
/// its vote no longer counts, and the two voters left go on committing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_voter_nobody_can_replace_loses_its_seat_outright() {
    let replicas = patient_cluster("o", 3).await;
    let (denied, proposer) = deny_a_voter(&replicas).await;
    let voters = wait_for("two voters without the denied one", || {
        let voters = proposer.ledger.status().voters;
        (voters.len() == 2 && !voters.contains(&denied)).then_some(voters)
    })
    .await;
    commit(proposer, put("after-the-deny")).await;
    for replica in replicas
        .iter()
        .filter(|r| voters.contains(&r.member.handle.peer_id().to_string()))
    {
        wait_for("the write on both voters", || {
            has_key(replica, "after-the-deny").then_some(())
        })
        .await;
    }
}

/// The denial of the sole voter, here the leader of a mesh of two with an operator key. The
/// members cut the denied node off as they apply the denial, and a learner can elect no one: the
/// cluster was headless until the learner gave it up for a cluster of its own. The leader now
/// hands its seat to the learner before it commits the denial, so the learner leads the same
/// cluster, the denial applied, and writes commit. Fails without the hand-over: the learner
/// still names the denied leader at the deadline. The learner is ready for the seat because its
/// join declared the operator key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denying_the_sole_voter_hands_its_seat_to_a_learner_first() {
    let (secret, config) = keyed_config();
    let token = network();
    let replicas = group_configured(&token, &["s0", "s1"], config).await;
    let cluster = settled_cluster(&replicas).await;
    let id = |r: &Replica| r.member.handle.peer_id().to_string();
    let voter = sole_voter(&replicas).await;
    let learner = replicas.iter().find(|r| id(r) != voter).unwrap();
    let deny = secret.sign(
        1,
        &Command::Deny {
            peer: voter.clone(),
        },
    );
    learner
        .ledger
        .propose_idempotent(Command::Operator(Box::new(deny)), |state| {
            state.is_denied(&voter)
        })
        .await
        .expect("the denial commits");
    let leading = wait_within(
        Duration::from_secs(20),
        "the learner leading the same cluster as its sole voter",
        || {
            let status = learner.ledger.status();
            (status.leader == Some(id(learner)) && status.voters == [id(learner)])
                .then_some(status.cluster_id)
        },
    )
    .await;
    assert_eq!(leading, Some(cluster), "the same cluster");
    assert!(learner.ledger.state().is_denied(&voter));
    commit(learner, put("after-the-deny")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_ledger_database_stops_start_up_with_what_to_do() {
    let token = network();
    let member = start(&token, "damaged", vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let raft = dir.path().join("raft");
    std::fs::create_dir_all(&raft).unwrap();
    std::fs::write(raft.join("ledger.redb"), vec![0x5a; 10_000]).unwrap();
    let started = weft::ledger::Ledger::start(
        dir.path(),
        quick_config(),
        weft::ledger::autopilot::MemberFacts::default(),
        member.handle.clone(),
        member.stop.clone(),
    )
    .await;
    let Err(error) = started else {
        panic!("a ledger started over a damaged database");
    };
    let message = error.to_string();
    assert!(message.contains("ledger.redb"), "{message}");
    assert!(
        message.contains("move the raft directory aside"),
        "{message}"
    );
}
