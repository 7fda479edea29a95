//! A simulation of the ledger layer under faults (issue 16). Each seed runs three to five nodes'
//! ledgers (raft, autopilot, feed and RPC service, each over its own redb storage) joined by an
//! in-memory network ([`net`]) in place of libp2p, on tokio's paused clock, so a minute of cluster
//! life takes a fraction of a second. The seed draws the node identities and the schedule:
//! partitions, single links cut (so that a node may reach two that do not reach each other),
//! message loss and delay, nodes stopped and restarted from the same storage, each node's wall
//! clock set off (up to a day either way, or at 1970), and writes through random nodes. The
//! safety invariants ([`check`]) must hold after every step, on every seed; once the network
//! heals, every node must converge within [`CONVERGENCE`], on every seed too. Each seed runs
//! with lease and voter timeouts of 10 s and a stale-learner timeout of 30 s ([`SHORT`]: leases
//! expire, voters are replaced and lagging learners lose their seats within the run) or with
//! the daemon's ([`DAEMON`]: records outlive the run, as they outlive a partition in a real
//! mesh), or with the short ones and an operator who trusts some of the machines with raft
//! seats as the faults begin ([`TRUSTED`]: seats move to trusted machines under the faults,
//! and once those hold most voter seats only they may lead; convergence then asks for a
//! trusted leader). A test (a part of the seeds of one timing) stops at the first seed that
//! breaks a safety invariant; seeds that do not converge are reported as they end, and the
//! test fails once its seeds have run, naming each with the command that replays it.
//!
//! A seed replays its whole run: the schedule of faults and writes, each message's fate and
//! delay, and every interleaving. Everything that steers a run comes from the seed: the
//! ledger's randomness (raft's election timeouts, new raft and cluster ids, whom to ask first:
//! [`crate::chance`]), tokio's (the order `select!` polls its branches in, which `watch`
//! receiver wakes first: its runtime is seeded, which needs `--cfg tokio_unstable`, set in
//! `.cargo/config.toml`), and the clocks (tokio's paused clock, and wall clocks that move with
//! it from a fixed date). A catch-up's encoding, which the daemon hands to a blocking thread,
//! runs inline. Left as they are: the nonces and MACs of forwarded requests (from the OS; they
//! steer nothing), and raft's snapshot files, which go through tokio's blocking pool and would
//! reorder events, but which no run reaches (a snapshot is taken every 5,000 entries).
//! [`a_seed_replays_its_run_exactly`] runs seeds twice and compares what every node showed at
//! every check.
//!
//! CI runs [`CI_SEEDS`] seeds with the short timeouts, [`CI_DAEMON_SEEDS`] with the
//! daemon's and [`CI_TRUSTED_SEEDS`] with a trusting operator. More (that many of each
//! timing), or one seed again:
//! `WEFT_SIM_SEEDS=20000 WEFT_SIM_FIRST=0 cargo test --release --lib ledger::sim -- --nocapture`;
//! `WEFT_SIM_MORE_NODES=<n>` runs each seed with `n` nodes more than it draws (larger
//! clusters: more voters to replace, more learners, larger merges; a seed's schedule then
//! differs, as its faults name other nodes);
//! with `WEFT_SIM_LOG=weft::ledger=info,openraft=info` the nodes' logs show, on simulated time.

mod check;
mod idle;
mod net;
mod stranded;
mod superseded;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libp2p::PeerId;
use libp2p::identity::Keypair;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::clock::Wall;
use crate::keyring::Keyring;
use crate::ledger::autopilot::MemberFacts;
use crate::ledger::state::{Command, Outcome};
use crate::ledger::{Ledger, LedgerConfig};
use crate::operator::{OperatorKey, OperatorSecret};
use crate::p2p::P2pHandle;
use check::Checker;
use net::Net;

/// The key-value bucket the simulated writes go to.
const BUCKET: &str = "sim";
/// Seeds CI runs with the [`SHORT`] timeouts, over [`PARTS`] tests.
const CI_SEEDS: u64 = 1000;
const PARTS: u64 = 4;
/// Seeds CI runs with the [`DAEMON`]'s timeouts, over [`DAEMON_PARTS`] tests.
const CI_DAEMON_SEEDS: u64 = 500;
const DAEMON_PARTS: u64 = 2;
/// Seeds CI runs in which the operator trusts some machines ([`TRUSTED`]), over
/// [`TRUSTED_PARTS`] tests.
const CI_TRUSTED_SEEDS: u64 = 200;
const TRUSTED_PARTS: u64 = 2;
/// How long the faults go on.
const CHAOS: Duration = Duration::from_secs(40);
/// How long after the network heals every node must have converged.
const CONVERGENCE: Duration = Duration::from_secs(120);
/// Mixed into a seed for the generator that draws the links to cut.
const CUTS_SEED: u64 = 0x6375_7473;
/// Mixed into a seed for the generator that draws the nodes' wall clocks.
const CLOCKS_SEED: u64 = 0x636c_6f63;
/// Mixed into a seed for the generator that draws the operator's key, the network and the
/// machines it trusts ([`TRUSTED`]).
const TRUST_SEED: u64 = 0x7472_7573;
/// Mixed into a seed for the ledger's own randomness ([`crate::chance`]): seeded as the
/// schedule is, it would draw the same numbers, and a raft id drawn anew would be one the
/// simulation gave another node.
const CHANCE_SEED: u64 = 0x6368_616e;
/// The longest one message takes.
const MAX_DELAY: Duration = Duration::from_millis(20);
/// The date every simulated wall clock reads as the run starts, before its offset: 2026-12-01.
const DATE: u64 = 1_796_083_200;

fn hostname(index: usize) -> String {
    format!("n{index}")
}

/// The lease and voter timeouts of a run, and whether its operator trusts machines.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    lease: Duration,
    voter: Duration,
    stale_learner: Duration,
    /// The tests that run with them, for the command that replays a seed.
    tests: &'static str,
    /// Whether the nodes run with an operator key, and the operator trusts some of them with
    /// raft seats as the faults begin ([`Operator`]).
    trust: bool,
}

/// Timeouts of 10 s (30 s for a lagging learner): leases expire, voters are replaced and
/// learners cut off while the log moves lose their seats within a seed's run, so those paths
/// run on every seed.
const SHORT: Timeouts = Timeouts {
    lease: Duration::from_secs(10),
    voter: Duration::from_secs(10),
    stale_learner: Duration::from_secs(30),
    tests: "ledger::sim::seeds_part",
    trust: false,
};

/// The daemon's timeouts (a lease of ten minutes, a voter replaced after one): a member's
/// record outlives the whole run, as it outlives a partition in a real mesh. The short ones
/// alone hid that two clusters apart stayed so until the records of members that had left
/// expired.
const DAEMON: Timeouts = Timeouts {
    lease: crate::config::DEFAULT_LEASE_TIMEOUT,
    voter: crate::daemon::VOTER_TIMEOUT,
    stale_learner: crate::daemon::STALE_LEARNER_TIMEOUT,
    tests: "ledger::sim::daemon_timeouts_part",
    trust: false,
};

/// The [`SHORT`] timeouts, with an operator who trusts from one to all of the machines with
/// raft seats: the seat rules then move seats to trusted machines under the faults, and once
/// those hold most voter seats only they may lead (`ledger/authority.rs`, `may_lead`), which
/// must not keep a cluster from electing a leader.
const TRUSTED: Timeouts = Timeouts {
    tests: "ledger::sim::trusted_seeds_part",
    trust: true,
    ..SHORT
};

/// The ledger's configuration in the simulation: the tests' short formation wait, `timeouts`,
/// the node's wall clock and the operator's key, if any.
fn config(timeouts: Timeouts, wall: Wall, operator: Option<OperatorKey>) -> LedgerConfig {
    LedgerConfig {
        pool: "10.1.0.0/24".parse().expect("a pool"),
        formation_wait: Duration::from_secs(3),
        formation_quiet: None,
        target_voters: 3,
        lease_timeout: timeouts.lease,
        voter_timeout: timeouts.voter,
        stale_learner_timeout: timeouts.stale_learner,
        // Nothing installs in the simulation.
        install_timeout: crate::daemon::INSTALL_TIMEOUT,
        operator,
        wall,
    }
}

/// A node's wall clock: most within ten minutes of the others either way, one in ten up to a
/// day off, and one in ten at 1970 (a board whose clock battery is flat), each moving with
/// simulated time from [`DATE`] at `started`. Stamps, cluster ids and a signed removal's age
/// read it (the simulation signs nothing): leases and every timer run on the monotonic clock.
fn wall(rng: &mut StdRng, started: Instant) -> Wall {
    let wall = match rng.gen_range(0..10) {
        0 => Wall::off_by(i64::MIN),
        1 => Wall::off_by(rng.gen_range(-86_400..=86_400)),
        _ => Wall::off_by(rng.gen_range(-600..=600)),
    };
    wall.simulated(started, DATE)
}

/// The number environment variable `name` holds, else `default`.
fn number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse::<u64>()
                .unwrap_or_else(|_| panic!("{name} is not a number: {v}"))
        })
        .unwrap_or(default)
}

/// The operator of a run that trusts machines ([`TRUSTED`]).
struct Operator {
    secret: OperatorSecret,
    /// The network's token, which the nodes hold and the trusts are signed for.
    keyring: Keyring,
    /// The nodes it trusts with raft seats.
    trusted: Vec<usize>,
}

struct Node {
    peer: PeerId,
    identity: Keypair,
    /// Its wall clock, the same across restarts.
    wall: Wall,
    dir: tempfile::TempDir,
    running: Option<(Ledger, CancellationToken)>,
}

struct World {
    rng: StdRng,
    /// Draws the links to cut: a generator of its own, so that adding cuts left the faults and
    /// writes the main one draws as they were for every seed, those in [`ONCE_FAILED`]
    /// included; the cuts come on top.
    cuts: StdRng,
    timeouts: Timeouts,
    net: Net,
    nodes: Vec<Node>,
    operator: Option<Operator>,
    checker: Checker,
    acknowledged: Arc<Mutex<BTreeSet<String>>>,
    writes: JoinSet<()>,
    written: u64,
    started: Instant,
    /// What happened, for the report of a failing seed.
    log: Vec<String>,
    /// What each node showed at each check, and the verdict, for
    /// [`a_seed_replays_its_run_exactly`].
    trace: Vec<String>,
}

/// Where the nodes keep their state: in memory when the machine has a tmpfs, so that raft's
/// durable writes cost no disk flush.
fn state_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).expect("a directory in /dev/shm")
    } else {
        tempfile::tempdir().expect("a temporary directory")
    }
}

impl World {
    fn new(seed: u64, timeouts: Timeouts) -> World {
        let mut rng = StdRng::seed_from_u64(seed);
        let count = rng.gen_range(3..=5);
        let count = count + number("WEFT_SIM_MORE_NODES", 0) as usize;
        World::of(rng, seed, timeouts, count)
    }

    /// `count` nodes, drawn from `rng` (seeded with `seed`) as the seeds draw them.
    fn of(mut rng: StdRng, seed: u64, timeouts: Timeouts, count: usize) -> World {
        // A generator of its own, as for the cuts: the clocks come on top of each seed's
        // faults and writes.
        let mut clocks = StdRng::seed_from_u64(seed ^ CLOCKS_SEED);
        let started = Instant::now();
        let nodes: Vec<Node> = (0..count)
            .map(|_| {
                let mut secret: [u8; 32] = rng.r#gen();
                let keypair = Keypair::ed25519_from_bytes(&mut secret).expect("an ed25519 key");
                let dir = state_dir();
                let raft = dir.path().join("raft");
                std::fs::create_dir_all(&raft).expect("the raft directory");
                std::fs::write(raft.join("node-id"), rng.gen_range(1..u64::MAX).to_string())
                    .expect("the node id");
                Node {
                    peer: keypair.public().to_peer_id(),
                    identity: keypair,
                    wall: wall(&mut clocks, started),
                    dir,
                    running: None,
                }
            })
            .collect();
        let net = Net::new(
            nodes.iter().map(|n| n.peer).collect(),
            rng.r#gen(),
            MAX_DELAY,
        );
        // A generator of its own too, so that the key, the network and the machines trusted
        // do not move the other draws (the node the trusts go through is drawn from the
        // schedule's generator, in trusting runs only).
        let operator = timeouts.trust.then(|| {
            let mut trust = StdRng::seed_from_u64(seed ^ TRUST_SEED);
            let secret = OperatorSecret::from_secret(trust.r#gen());
            let token =
                crate::token::Token::Native(crate::token::NativeToken::from_secret(trust.r#gen()));
            let how_many = trust.gen_range(1..=count);
            let mut trusted = rand::seq::index::sample(&mut trust, count, how_many).into_vec();
            trusted.sort();
            Operator {
                secret,
                keyring: Keyring::new(token),
                trusted,
            }
        });
        World {
            rng,
            cuts: StdRng::seed_from_u64(seed ^ CUTS_SEED),
            timeouts,
            net,
            nodes,
            operator,
            checker: Checker::default(),
            acknowledged: Arc::default(),
            writes: JoinSet::new(),
            written: 0,
            started,
            log: Vec::new(),
            trace: Vec::new(),
        }
    }

    fn note(&mut self, what: String) {
        let at = self.started.elapsed().as_secs_f64();
        self.log.push(format!("{at:8.3} s  {what}"));
    }

    fn running(&self) -> Vec<(usize, &Ledger)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.running.as_ref().map(|(ledger, _)| (i, ledger)))
            .collect()
    }

    fn pick(&mut self, running: bool) -> Option<usize> {
        let candidates: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].running.is_some() == running)
            .collect();
        (!candidates.is_empty()).then(|| candidates[self.rng.gen_range(0..candidates.len())])
    }

    /// Starts node `index` over its storage; a stopped incarnation may still hold the database
    /// for a moment while its tasks wind down.
    async fn start(&mut self, index: usize) -> Result<(), String> {
        let node = &self.nodes[index];
        let (mut handle, far) = P2pHandle::detached(node.identity.clone());
        if let Some(operator) = &self.operator {
            handle = handle.in_network(operator.keyring.clone());
        }
        let key = self.operator.as_ref().map(|o| o.secret.public());
        let stop = CancellationToken::new();
        let facts = MemberFacts {
            hostname: hostname(index),
            ..MemberFacts::default()
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let ledger = loop {
            match Ledger::start(
                node.dir.path(),
                config(self.timeouts, node.wall, key.clone()),
                facts.clone(),
                handle.clone(),
                stop.clone(),
            )
            .await
            {
                Ok(ledger) => break ledger,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(format!("n{index} does not start: {e}")),
            }
        };
        self.net.attach(index, far);
        self.nodes[index].running = Some((ledger, stop));
        self.note(format!("n{index} starts"));
        Ok(())
    }

    fn stop(&mut self, index: usize) {
        if let Some((_, stop)) = self.nodes[index].running.take() {
            stop.cancel();
        }
        self.net.detach(index);
        self.note(format!("n{index} stops"));
    }

    /// A write of a new key through node `index`; its key is acknowledged once committed.
    fn write(&mut self, index: usize) {
        let Some((ledger, _)) = &self.nodes[index].running else {
            return;
        };
        let ledger = ledger.clone();
        self.written += 1;
        let key = format!("w{}", self.written);
        let acknowledged = self.acknowledged.clone();
        self.note(format!("n{index} writes {key}"));
        self.writes.spawn(async move {
            let command = Command::KvPut {
                bucket: BUCKET.to_string(),
                key: key.clone(),
                value: key.clone(),
            };
            if let Ok(Outcome::Done) = ledger.propose(command).await {
                acknowledged
                    .lock()
                    .expect("the acknowledged writes")
                    .insert(key);
            }
        });
    }

    /// The operator's signed trust of each machine it trusts, proposed through node `index`
    /// (each until it commits or the node gives up): the trusts then count as writes in
    /// flight. Signed with the same numbers each time, so proposing them again only repeats
    /// what applied.
    fn trust(&mut self, index: usize) {
        let (Some(operator), Some((ledger, stop))) = (&self.operator, &self.nodes[index].running)
        else {
            return;
        };
        let (ledger, stop) = (ledger.clone(), stop.clone());
        let trusts: Vec<Command> = operator
            .trusted
            .iter()
            .enumerate()
            .map(|(seq, node)| {
                let trust = Command::Trust {
                    peer: self.nodes[*node].peer.to_string(),
                };
                let scope = crate::operator::Scope {
                    cluster: None,
                    network: ledger.networks().first().cloned(),
                };
                Command::Operator(Box::new(operator.secret.sign_in(
                    seq as u64 + 1,
                    &trust,
                    scope,
                )))
            })
            .collect();
        let named: Vec<String> = operator.trusted.iter().map(|i| hostname(*i)).collect();
        self.note(format!("the operator trusts {named:?} through n{index}"));
        // Given up when the node stops, which must not wait for the task to let go of its
        // ledger (and so of its database).
        self.writes.spawn(async move {
            let proposals = async {
                for trust in trusts {
                    let _ = ledger.propose_patiently(trust).await;
                }
            };
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = proposals => {}
            }
        });
    }

    fn check(&mut self) -> Result<(), String> {
        let running: Vec<(usize, &Ledger)> = self
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.running.as_ref().map(|(ledger, _)| (i, ledger)))
            .collect();
        let result = self.checker.step(&running);
        let nodes: Vec<String> = running
            .iter()
            .map(|(index, ledger)| {
                let metrics = ledger.raft().metrics().borrow().clone();
                let voters: Vec<u64> = metrics.membership_config.membership().voter_ids().collect();
                let state = ledger.state();
                let digest = state
                    .cluster()
                    .and_then(|cluster| self.checker.digest(cluster, state.applied()))
                    .map(|d| {
                        d[..8]
                            .iter()
                            .map(|b| format!("{b:02x}"))
                            .collect::<String>()
                    });
                format!(
                    "n{index} raft {} term {} {:?} leader {:?} voters {voters:?} log {:?} \
                     applied {:?} cluster {:?} state {digest:?}",
                    ledger.node_id(),
                    metrics.current_term,
                    metrics.state,
                    metrics.current_leader,
                    metrics.last_log_index,
                    metrics.last_applied.map(|log| log.index),
                    state.cluster(),
                )
            })
            .collect();
        let at = self.started.elapsed().as_millis();
        let messages = self.net.messages();
        let acknowledged = self
            .acknowledged
            .lock()
            .expect("the acknowledged writes")
            .len();
        self.trace.push(format!(
            "{at} ms, {messages} messages, {acknowledged} writes acknowledged: {}",
            nodes.join("; ")
        ));
        result
    }

    /// One random fault, write or pause.
    async fn act(&mut self) -> Result<(), String> {
        match self.rng.gen_range(0..100) {
            0..30 => {
                if let Some(index) = self.pick(true) {
                    self.write(index);
                }
            }
            30..45 => {
                let sides: Vec<u8> = (0..self.nodes.len())
                    .map(|_| self.rng.gen_range(0..2))
                    .collect();
                self.note(format!("partition {sides:?}"));
                self.net.partition(sides);
            }
            45..55 => {
                self.note("heal".to_string());
                self.net.partition(vec![0; self.nodes.len()]);
            }
            55..65 => {
                if let Some(index) = self.pick(true) {
                    self.stop(index);
                }
            }
            65..80 => {
                if let Some(index) = self.pick(false) {
                    self.start(index).await?;
                }
            }
            80..90 => {
                let loss = self.rng.gen_range(0.0..0.2);
                self.note(format!("loss {loss:.2}"));
                self.net.set_loss(loss);
            }
            90..95 => {
                let n = self.nodes.len();
                let a = self.cuts.gen_range(0..n);
                let b = (a + self.cuts.gen_range(1..n)) % n;
                self.note(format!("cut n{a} - n{b}"));
                self.net.cut(a, b);
            }
            _ => {}
        }
        Ok(())
    }

    /// Waits, in simulated time, until `done` holds of the running nodes, checking the safety
    /// invariants at each look (every 250 ms): how long it took. Fails naming `what`, with the
    /// nodes, once `within` has passed. For the scripted scenarios.
    async fn until(
        &mut self,
        what: &str,
        within: Duration,
        done: impl Fn(&[(usize, &Ledger)]) -> bool,
    ) -> Duration {
        let start = Instant::now();
        loop {
            if let Err(violation) = self.check() {
                panic!("{violation}\n{}", self.describe());
            }
            if done(&self.running()) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < within,
                "not within {} s: {what}\n{}",
                within.as_secs(),
                self.describe()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The ledger of node `index`, which runs.
    fn ledger(&self, index: usize) -> Ledger {
        let (ledger, _) = self.nodes[index].running.as_ref().expect("the node runs");
        ledger.clone()
    }

    /// Heals everything, then waits for convergence: how long it took, or why the nodes had
    /// not converged in time. The outer error is a broken safety invariant.
    async fn converge(&mut self) -> Result<Result<Duration, String>, String> {
        self.note("heal all, loss 0, start every stopped node".to_string());
        self.net.partition(vec![0; self.nodes.len()]);
        self.net.set_loss(0.0);
        for index in 0..self.nodes.len() {
            if self.nodes[index].running.is_none() {
                self.start(index).await?;
            }
        }
        // Trusts proposed through a node that stopped may not have committed.
        self.trust(0);
        let healed = Instant::now();
        let peers: Vec<String> = self.nodes.iter().map(|n| n.peer.to_string()).collect();
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            self.check()?;
            while self.writes.try_join_next().is_some() {}
            let acknowledged = self
                .acknowledged
                .lock()
                .expect("the acknowledged writes")
                .clone();
            let reason = if self.writes.is_empty() {
                check::unconverged(&self.running(), &peers, &acknowledged)
            } else {
                Some(format!("{} writes still in flight", self.writes.len()))
            };
            match reason {
                None => return Ok(Ok(healed.elapsed())),
                Some(reason) if healed.elapsed() > CONVERGENCE => {
                    return Ok(Err(format!(
                        "not converged {} s after the heal: {reason}",
                        CONVERGENCE.as_secs()
                    )));
                }
                Some(_) => {}
            }
        }
    }

    /// Each node as it sees itself and its cluster, for the report of a failing seed.
    fn describe(&self) -> String {
        let mut lines = Vec::new();
        for (index, node) in self.nodes.iter().enumerate() {
            let Some((ledger, _)) = &node.running else {
                lines.push(format!("n{index} {}: stopped", node.peer));
                continue;
            };
            let status = ledger.status();
            let state = ledger.state();
            let members: Vec<String> = state
                .members()
                .iter()
                .map(|(peer, m)| {
                    let name = self
                        .nodes
                        .iter()
                        .position(|n| n.peer.to_string() == *peer)
                        .map_or_else(|| peer.clone(), hostname);
                    format!("{name}={:?}/{:?}", m.address, m.lease)
                })
                .collect();
            lines.push(format!(
                "n{index} {} clock {} raft {}: cluster {:?} leader {:?} voters {} follower {} applied {} members [{}]",
                node.peer,
                node.wall.now(),
                status.node_id,
                status.cluster_id,
                status.leader,
                status.voters.len(),
                status.follower,
                status.applied_index,
                members.join(", ")
            ));
        }
        lines.join("\n")
    }

    fn shut_down(&mut self) {
        for node in &mut self.nodes {
            if let Some((_, stop)) = node.running.take() {
                stop.cancel();
            }
        }
        self.writes.abort_all();
    }
}

/// What one seed showed.
enum Verdict {
    /// Every node converged this long after the heal.
    Converged(Duration),
    /// Safety held, but the nodes had not converged [`CONVERGENCE`] after the heal: why, with
    /// the schedule and the nodes.
    Unconverged(String),
    /// A safety invariant broke: which, with the schedule and the nodes.
    Unsafe(String),
}

/// With `WEFT_SIM_LOG` set (a tracing filter such as `weft=debug,openraft=info`), the nodes'
/// log lines go to stderr, stamped with the simulated time in seconds.
fn log_if_asked() {
    struct Simulated;
    impl tracing_subscriber::fmt::time::FormatTime for Simulated {
        fn format_time(
            &self,
            w: &mut tracing_subscriber::fmt::format::Writer<'_>,
        ) -> std::fmt::Result {
            let start = *START.get_or_init(Instant::now);
            write!(
                w,
                "{:9.3}",
                Instant::now().duration_since(start).as_secs_f64()
            )
        }
    }
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    if let Ok(filter) = std::env::var("WEFT_SIM_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_timer(Simulated)
            .with_writer(std::io::stderr)
            .try_init();
    }
}

thread_local! {
    /// Panics on this thread so far: a seed's nodes all run on its test's thread.
    static PANICS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Counts panics per thread, then reports them as before. A task that panics in a node (raft's
/// own assertions in debug builds included) breaks that node, whatever the seed then shows.
fn count_panics() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.with(|p| p.set(p.get() + 1));
            report(info);
        }));
    });
}

/// Runs `scenario` on a runtime of its own whose clock is paused (simulated time), with the
/// nodes' logs shown when `WEFT_SIM_LOG` asks. Tokio's randomness is seeded with `seed` for the
/// run, and the ledger's ([`crate::chance`]) with `seed` mixed with [`CHANCE_SEED`].
fn simulate<T>(seed: u64, scenario: impl std::future::Future<Output = T>) -> T {
    log_if_asked();
    let mut builder = tokio::runtime::Builder::new_current_thread();
    builder.enable_all().start_paused(true);
    #[cfg(tokio_unstable)]
    builder.rng_seed(tokio::runtime::RngSeed::from_bytes(&seed.to_le_bytes()));
    let runtime = builder.build().expect("a tokio runtime");
    crate::chance::seed_thread(Some(seed ^ CHANCE_SEED));
    let result = runtime.block_on(scenario);
    drop(runtime);
    crate::chance::seed_thread(None);
    result
}

/// Runs a scripted scenario on simulated time ([`simulate`], seeded with `seed`); fails, after
/// it, when a task in its nodes panicked (a panic in a node's task is printed, and ends only
/// that task).
fn scripted(seed: u64, scenario: impl std::future::Future<Output = ()>) {
    count_panics();
    let before = PANICS.with(|p| p.get());
    simulate(seed, scenario);
    let panicked = PANICS.with(|p| p.get()) - before;
    assert_eq!(panicked, 0, "task(s) panicked in the nodes (printed above)");
}

/// Runs one seed.
fn run_seed(seed: u64, timeouts: Timeouts) -> Verdict {
    run_traced(seed, timeouts).0
}

/// Runs one seed: its verdict, and what each node showed at each check ([`World::trace`]).
fn run_traced(seed: u64, timeouts: Timeouts) -> (Verdict, Vec<String>) {
    count_panics();
    let panics = PANICS.with(|p| p.get());
    simulate(seed, async {
        let mut world = World::new(seed, timeouts);
        let result = scenario(&mut world).await;
        let report = |what: String| {
            let tail = world.log.len().saturating_sub(40);
            format!(
                "{what}\nschedule:\n{}\nnodes:\n{}",
                world.log[tail..].join("\n"),
                world.describe()
            )
        };
        let panicked = PANICS.with(|p| p.get()) - panics;
        let verdict = match result {
            _ if panicked > 0 => Verdict::Unsafe(report(format!(
                "{panicked} task(s) panicked in the nodes (the panic is printed above)"
            ))),
            Ok(Ok(took)) => Verdict::Converged(took),
            Ok(Err(why)) => Verdict::Unconverged(report(why)),
            Err(violation) => Verdict::Unsafe(report(violation)),
        };
        world.shut_down();
        let outcome = match &verdict {
            Verdict::Converged(took) => format!("converged after {took:?}"),
            Verdict::Unconverged(_) => "not converged".to_string(),
            Verdict::Unsafe(_) => "unsafe".to_string(),
        };
        world
            .trace
            .push(format!("{outcome}; schedule: {}", world.log.join(" | ")));
        (verdict, std::mem::take(&mut world.trace))
    })
}

async fn scenario(world: &mut World) -> Result<Result<Duration, String>, String> {
    for index in 0..world.nodes.len() {
        world.start(index).await?;
        let pause = Duration::from_millis(world.rng.gen_range(0..2000));
        tokio::time::sleep(pause).await;
    }
    // Only a run that trusts draws a node for it: the others' schedules stay as they were.
    if world.operator.is_some()
        && let Some(index) = world.pick(true)
    {
        world.trust(index);
    }
    let end = Instant::now() + CHAOS;
    while Instant::now() < end {
        let pause = Duration::from_millis(world.rng.gen_range(200..2000));
        tokio::time::sleep(pause).await;
        world.act().await?;
        world.check()?;
    }
    world.converge().await
}

/// Runs this part's share of the seeds (`WEFT_SIM_SEEDS` of them from `WEFT_SIM_FIRST`).
fn seeds(part: u64, parts: u64, ci_seeds: u64, timeouts: Timeouts) {
    let first = number("WEFT_SIM_FIRST", 0);
    let count = number("WEFT_SIM_SEEDS", ci_seeds);
    run((first..first + count)
        .filter(|s| s % parts == part)
        .map(|seed| (seed, timeouts)));
}

/// Runs each seed with its timeouts: a test fails at once on a safety violation, and after
/// its last seed when any did not converge.
fn run(seeds: impl Iterator<Item = (u64, Timeouts)>) {
    let more = match number("WEFT_SIM_MORE_NODES", 0) {
        0 => String::new(),
        more => format!("WEFT_SIM_MORE_NODES={more} "),
    };
    let replay = |seed: u64, timeouts: Timeouts| {
        format!(
            "replay: {more}WEFT_SIM_FIRST={seed} WEFT_SIM_SEEDS=1 cargo test --lib {}",
            timeouts.tests
        )
    };
    let mut slowest = (Duration::ZERO, 0);
    let mut ran = 0;
    let mut unconverged = Vec::new();
    for (seed, timeouts) in seeds {
        match run_seed(seed, timeouts) {
            Verdict::Converged(took) => slowest = slowest.max((took, seed)),
            Verdict::Unconverged(why) => {
                eprintln!("seed {seed}: {why}\n{}", replay(seed, timeouts));
                unconverged.push(seed);
            }
            Verdict::Unsafe(violation) => {
                panic!("seed {seed}: {violation}\n{}", replay(seed, timeouts))
            }
        }
        ran += 1;
    }
    if ran == 0 {
        return;
    }
    eprintln!(
        "{ran} seeds held every safety invariant; {} converged, the slowest {:.1} s after the \
         heal (seed {}); not converged: {unconverged:?}",
        ran - unconverged.len(),
        slowest.0.as_secs_f64(),
        slowest.1
    );
    assert!(
        unconverged.is_empty(),
        "{} of {ran} seeds did not converge within {} s of the heal: {unconverged:?}",
        unconverged.len(),
        CONVERGENCE.as_secs()
    );
}

#[test]
fn seeds_part_0() {
    seeds(0, PARTS, CI_SEEDS, SHORT);
}

#[test]
fn seeds_part_1() {
    seeds(1, PARTS, CI_SEEDS, SHORT);
}

#[test]
fn seeds_part_2() {
    seeds(2, PARTS, CI_SEEDS, SHORT);
}

#[test]
fn seeds_part_3() {
    seeds(3, PARTS, CI_SEEDS, SHORT);
}

#[test]
fn trusted_seeds_part_0() {
    seeds(0, TRUSTED_PARTS, CI_TRUSTED_SEEDS, TRUSTED);
}

#[test]
fn trusted_seeds_part_1() {
    seeds(1, TRUSTED_PARTS, CI_TRUSTED_SEEDS, TRUSTED);
}

#[test]
fn daemon_timeouts_part_0() {
    seeds(0, DAEMON_PARTS, CI_DAEMON_SEEDS, DAEMON);
}

#[test]
fn daemon_timeouts_part_1() {
    seeds(1, DAEMON_PARTS, CI_DAEMON_SEEDS, DAEMON);
}

/// Seeds outside CI's ranges that once broke an invariant or did not converge, each with the
/// timeouts it failed under: CI runs them again. They failed before a seed fixed its whole
/// interleaving (2026-12-07); each now runs one interleaving, not the one it failed under, so
/// it guards its fault only if that interleaving reaches it. The faults are described in
/// `docs/reliability.md`.
const ONCE_FAILED: &[(u64, Timeouts)] = &[
    (1319, SHORT),
    (2453, SHORT),
    (2978, SHORT),
    (3275, SHORT),
    (3337, SHORT),
    (3864, SHORT),
    (3887, SHORT),
    (4824, SHORT),
    (5010, SHORT),
    (13044, SHORT),
    (13442, SHORT),
    (14676, SHORT),
    (15025, SHORT),
    (25060, SHORT),
    (829, DAEMON),
    (1094, DAEMON),
    (1129, DAEMON),
    (1220, DAEMON),
    (1268, DAEMON),
    (1311, DAEMON),
    (1499, DAEMON),
    (2079, DAEMON),
    (2122, DAEMON),
    (2125, DAEMON),
    (72550, DAEMON),
    (3957, TRUSTED),
    (4390, TRUSTED),
    (7910, TRUSTED),
];

#[test]
fn seeds_that_once_failed() {
    run(ONCE_FAILED.iter().copied());
}

/// A seed run twice shows the same thing at every check and ends the same way: every node's
/// raft id, term, role, leader, voters, log and applied index, cluster and state digest, the
/// messages sent and writes acknowledged so far, the verdict and the schedule. The first run
/// comes after another seed on the same thread, as in CI's batches; the second runs alone on a
/// new thread, whose hash keys and unseeded generators differ, as a replay in a new process
/// does. Six seeds; more with `WEFT_SIM_REPLAYS=<n>`: `n` seeds from `WEFT_SIM_FIRST` with
/// each timing.
#[test]
fn a_seed_replays_its_run_exactly() {
    if !cfg!(tokio_unstable) {
        panic!(
            "built without --cfg tokio_unstable (.cargo/config.toml sets it; a RUSTFLAGS \
             variable replaces it): tokio's scheduler cannot be seeded, so seeds do not replay"
        );
    }
    let seeds: Vec<(u64, Timeouts)> = match number("WEFT_SIM_REPLAYS", 0) {
        0 => vec![
            (3, SHORT),
            (41, SHORT),
            (7, SHORT),
            (8, DAEMON),
            (77, DAEMON),
            (15, TRUSTED),
        ],
        count => {
            let first = number("WEFT_SIM_FIRST", 0);
            (first..first + count)
                .flat_map(|seed| [(seed, SHORT), (seed, DAEMON), (seed, TRUSTED)])
                .collect()
        }
    };
    for (seed, timeouts) in seeds {
        run_traced(seed + 1, timeouts);
        let (_, first) = run_traced(seed, timeouts);
        let (_, again) = std::thread::spawn(move || run_traced(seed, timeouts))
            .join()
            .expect("the replay's thread");
        let differs = first.iter().zip(&again).position(|(a, b)| a != b);
        if let Some(step) =
            differs.or((first.len() != again.len()).then_some(first.len().min(again.len())))
        {
            panic!(
                "seed {seed} replayed differently from step {step} of {}:\nfirst:  {}\nreplay: {}",
                first.len(),
                first.get(step).map_or("(ended)", String::as_str),
                again.get(step).map_or("(ended)", String::as_str)
            );
        }
        assert!(
            first.len() > 10,
            "seed {seed} checked only {} steps",
            first.len()
        );
    }
}
