//! The ledger: replicated state that the mesh decides by consensus (overlay addresses, roles,
//! DNS records, key-value buckets, the deny list, sealed secrets).
//!
//! [`state`] is the pure state machine every replica applies in log order; [`raft`] runs it
//! under openraft with redb storage and RPCs over libp2p; [`service`] answers peers' ledger
//! requests; [`autopilot`] forms or joins a cluster and manages voters. [`Ledger`] is the handle
//! the daemon, the API and later the data plane and DNS use: propose a command, read the state,
//! subscribe to its changes.

pub mod authority;
pub mod autopilot;
pub mod catchup;
mod contact;
mod deny;
pub mod feed;
pub mod follower;
pub mod formation;
pub mod forward;
mod keyed;
pub mod lease;
pub mod limits;
pub mod merge;
mod metrics;
pub mod pending;
pub mod pilot;
pub mod raft;
pub mod recover;
pub mod renewals;
pub mod sealed;
mod seats;
pub mod service;
pub mod settle;
#[cfg(test)]
mod sim;
pub mod state;
mod vouch;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use ipnet::Ipv4Net;
use libp2p::PeerId;
use openraft::Raft;
use redb::Database;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::p2p::P2pHandle;
use follower::{Feed, Leader, Replica};
use raft::network::{LedgerRpc, Network};
use raft::store::{LogStore, StateMachineStore, Taps};
use raft::{LedgerNode, LedgerTypes};
use state::{ClusterId, Command, LedgerState, Outcome};

/// Applied entries the feed publisher may lag behind before it skips (followers catch up).
const APPLIED_BACKLOG: usize = 1024;
/// How long a proposal waits for a reachable leader: shorter than the CLI's 10 s, and longer
/// than a leader's replacement. A follower that heard the leader votes only after openraft's
/// leader lease (`election_timeout_max`, 3 s) plus its own election timeout (1.5 to 3 s),
/// checked every 750 ms, so a stopped leader is replaced 4.5 to 6.75 s after its last
/// heartbeat; a proposal made meanwhile waits for the next leader, and has until
/// [`ANSWER_WITHIN`] to commit there
/// (`tests/ledger_raft.rs::a_write_made_while_the_leader_is_replaced_waits_for_the_next_one_and_commits`).
const PROPOSE_PATIENCE: Duration = Duration::from_secs(8);
/// How long a proposal may take in all, retries included, before the caller hears why it did
/// not commit: within the CLI's 10 s.
const ANSWER_WITHIN: Duration = Duration::from_secs(9);
/// How often it looks again meanwhile.
const PROPOSE_RETRY: Duration = Duration::from_millis(250);
/// How long a leader of several voters may go without an answer from a majority of them
/// before it counts as cut off from its quorum (several heartbeats, less than an election).
const QUORUM_SILENCE: Duration = Duration::from_secs(3);
/// The raft database, in the raft directory of the state dir.
pub(crate) const DATABASE_FILE: &str = "ledger.redb";
/// How long [`Ledger::compact`] waits for its snapshot.
const COMPACT_TIMEOUT: Duration = Duration::from_secs(60);

/// Why the ledger could not start or a proposal failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("cannot open the raft directory {path}: {reason}")]
    Storage { path: String, reason: String },
    #[error(
        "the ledger database {path} cannot be read ({reason}); if it is damaged, move the raft \
         directory aside and start again: this node then rejoins its cluster as a new raft node \
         and fetches the ledger from it (on a node that was the last of its cluster, keep the \
         copy: it is the only one)"
    )]
    Damaged { path: String, reason: String },
    #[error("raft: {0}")]
    Raft(String),
    #[error("no leader is known yet; the cluster is still forming or has lost its quorum")]
    NoLeader,
    #[error(
        "no leader could be reached, so nothing was proposed ({0}); the cluster may have lost \
         its quorum"
    )]
    LeaderUnreachable(String),
    #[error("the leader refused the proposal: {0}")]
    Refused(String),
    #[error(
        "not committed within {0} s: this node leads but may be cut off from its quorum (a \
         partition, voters down); the write may still commit once they are back"
    )]
    NotCommitted(u64),
    #[error(
        "the leader did not answer within {0} s: it may be down (a new leader is then elected \
         within seconds while a quorum is left), and the write may still commit if it is not"
    )]
    LeaderSilent(u64),
    #[error("{0}")]
    TooLarge(String),
    /// The command needs the operator's signature, or its signature is wrong.
    #[error("{0}")]
    Operator(String),
}

/// What `weft status` shows of the ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerStatus {
    pub node_id: u64,
    pub cluster_id: Option<String>,
    /// PeerId of the leader.
    pub leader: Option<String>,
    /// PeerIds of the voters.
    pub voters: Vec<String>,
    /// PeerIds of the learners: raft nodes that take the log without a vote (new members
    /// catching up before a promotion). Empty on a feed follower, which does not know them.
    #[serde(default)]
    pub learners: Vec<String>,
    /// Whether a voter change is in flight (raft joint consensus: both the old and the new
    /// voter sets must agree until it completes).
    pub changing_voters: bool,
    /// Index of the last applied entry.
    pub applied_index: u64,
    /// Whether this node follows the leader's feed rather than being a raft voter or learner.
    pub follower: bool,
    /// The version of the ledger's rules this node's state applies entries by
    /// ([`state::RULES`]).
    #[serde(default)]
    pub rules: u32,
}

/// One raft instance over the node's storage, with its state machine. Leaving a cluster for
/// another (a merge) replaces it with a blank one over the wiped storage, under a new raft id.
struct Engine {
    /// This node's raft id in this instance. A wiped node forgets its votes and log, so it must
    /// never answer as the raft node it was: peers still counting that node as a voter would
    /// take its fresh vote or acknowledgement for one it had given (two leaders in a term, a
    /// committed entry on too few nodes).
    node_id: u64,
    raft: Raft<LedgerTypes>,
    machine: StateMachineStore,
    /// The leader this raft takes appends from although its membership does not register it.
    vouch: vouch::Vouch,
    /// Encodings of the state served to followers catching up; they go with the engine, so a
    /// new cluster never serves the old one's.
    encodings: catchup::Encodings,
    /// When this raft instance last heard from its leader.
    contact: contact::Contact,
}

/// What every engine of one ledger is opened with: its first, and each after a reset.
struct Footing<'a> {
    db: &'a Arc<Database>,
    dir: &'a Path,
    pool: Ipv4Net,
    p2p: &'a P2pHandle,
    taps: &'a Taps,
    raft_rpcs: &'a metrics::RaftRpcMetrics,
}

impl Engine {
    async fn open(
        footing: Footing<'_>,
        node_id: u64,
        storage_error: impl Fn(String) -> LedgerError,
    ) -> Result<Engine, LedgerError> {
        let Footing {
            db,
            dir,
            pool,
            p2p,
            taps,
            raft_rpcs,
        } = footing;
        let machine = StateMachineStore::open(db.clone(), dir, pool, taps.clone())
            .map_err(|e| storage_error(e.to_string()))?;
        let raft_config = raft::config()
            .validate()
            .map_err(|e| LedgerError::Raft(e.to_string()))?;
        let raft = Raft::new(
            node_id,
            Arc::new(raft_config),
            Network::new(p2p.clone(), machine.clone(), raft_rpcs.clone()),
            LogStore::new(db.clone()),
            machine.clone(),
        )
        .await
        .map_err(|e| LedgerError::Raft(e.to_string()))?;
        Ok(Engine {
            node_id,
            raft,
            machine,
            vouch: vouch::Vouch::default(),
            encodings: catchup::Encodings::default(),
            contact: contact::Contact::new(node_id, crate::clock::now()),
        })
    }
}

/// The running ledger of this node.
#[derive(Clone)]
pub struct Ledger {
    engine: Arc<ArcSwap<Engine>>,
    db: Arc<Database>,
    dir: PathBuf,
    pool: Ipv4Net,
    p2p: P2pHandle,
    /// What the state machine applies (for the follower feed) and a change count.
    taps: Taps,
    /// The ledger as followed from the leader's feed, while this node is no raft member.
    replica: Arc<Mutex<Replica>>,
    /// Held by whoever changes the raft membership (joins, promotions, replacements), so each
    /// decides on the membership the previous one left.
    membership: Arc<tokio::sync::Mutex<()>>,
    /// Held while the raft state is wiped and a blank raft started ([`Ledger::reset`]).
    resetting: Arc<tokio::sync::Mutex<()>>,
    /// Joins this node takes as the leader, in flight or cooling down ([`service`]).
    joins: Arc<service::Joins>,
    /// The challenges this node issued as the leader for forwarded requests ([`forward`]).
    challenges: Arc<Mutex<forward::Challenges>>,
    /// The requests this node passes on to the leader for other nodes.
    passing: Arc<forward::Passing>,
    /// The lease renewals this node, as the leader, answered and has not committed yet.
    renewals: Arc<Mutex<renewals::Renewals>>,
    /// The raft nodes this node, as the leader, found without its operator key ([`keyed`]).
    keyed: Arc<Mutex<keyed::Keyed>>,
    /// Set once the autopilot has made the ledger hold this node's configured role and policy
    /// (see [`Ledger::declared`]).
    declared: Arc<std::sync::atomic::AtomicBool>,
    /// What the merge checks found of this node's cluster ([`Ledger::unsettled`]).
    settling: Arc<Mutex<settle::Settling>>,
    /// When a feed of another cluster than this node's was last heard ([`Ledger::rival_heard`]).
    rival: Arc<Mutex<Option<Instant>>>,
    proposals: metrics::ProposalMetrics,
    raft_rpcs: metrics::RaftRpcMetrics,
    renewal_entries: metrics::RenewalMetrics,
    pub(crate) feed_messages: metrics::FeedMetrics,
    /// The operator's key this mesh is configured with ([`crate::operator`]).
    operator: Option<Arc<crate::operator::OperatorKey>>,
    /// The wall clock this ledger reads ([`LedgerConfig::wall`]).
    wall: crate::clock::Wall,
    /// The first long-lived task that stopped while the node was not shutting down.
    stopped: Arc<watch::Sender<Option<&'static str>>>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ledger(node {})", self.node_id())
    }
}

/// How the ledger behaves; the daemon's values suit real meshes, tests shorten the waits.
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    pub pool: Ipv4Net,
    /// How long a new node listens for an existing cluster before one is formed, at most.
    pub formation_wait: Duration,
    /// With local discovery only: a new node looks for a cluster (or forms one) once it has
    /// heard of no new peer for this long ([`formation`]); `None` waits `formation_wait`.
    pub formation_quiet: Option<Duration>,
    /// How many voters the cluster aims for (odd).
    pub target_voters: usize,
    /// How long the leader lets a member stay unreachable before it expires the member's lease
    /// (freeing its address).
    pub lease_timeout: Duration,
    /// How long the leader lets a voter stay unreachable before replacing it with a live member.
    pub voter_timeout: Duration,
    /// How long the leader lets a learner lag its log without a break before it takes the
    /// learner's seat away (`seats.rs`, `Seats::stale_learners`).
    pub stale_learner_timeout: Duration,
    /// How long the leader lets a member whose lease expired while it was installing or
    /// starting its control-plane seat stay away before it gives the install up, freeing the
    /// seat and the address ([`state::Command::AbandonInstall`]).
    pub install_timeout: Duration,
    /// The operator's key: when set, operator commands need its signature
    /// ([`authority::as_operator`]).
    pub operator: Option<crate::operator::OperatorKey>,
    /// The wall clock the ledger stamps by (cluster ids, member records, the audit trail) and
    /// judges signed removals' age by: the node's own in the daemon.
    pub wall: crate::clock::Wall,
}

impl Ledger {
    /// Opens the raft directory under `state_dir` (creating it and this node's raft id on first
    /// start), starts raft, answers peers' ledger requests, and runs the autopilot.
    pub async fn start(
        state_dir: &Path,
        config: LedgerConfig,
        facts: autopilot::MemberFacts,
        p2p: P2pHandle,
        shutdown: CancellationToken,
    ) -> Result<Ledger, LedgerError> {
        let dir = state_dir.join("raft");
        let storage_error = |reason: String| LedgerError::Storage {
            path: dir.display().to_string(),
            reason,
        };
        std::fs::create_dir_all(&dir).map_err(|e| storage_error(e.to_string()))?;
        let database = dir.join(DATABASE_FILE);
        let damaged = |reason: String| LedgerError::Damaged {
            path: database.display().to_string(),
            reason,
        };
        let db = raft::store::open(&database).map_err(|e| damaged(e.to_string()))?;
        let node_id = match raft::store::node_id(&db).map_err(|e| damaged(e.to_string()))? {
            Some(id) => id,
            None => {
                let id =
                    autopilot::first_node_id(&dir).map_err(|e| storage_error(e.to_string()))?;
                raft::store::set_node_id(&db, id).map_err(|e| damaged(e.to_string()))?;
                id
            }
        };
        // Removed whichever way the id was found: a crash between storing the id and removing
        // the file must not leave an old id to come back if the database alone is lost later.
        autopilot::forget_node_id_file(&dir).map_err(|e| storage_error(e.to_string()))?;
        let taps = Taps::new(APPLIED_BACKLOG);
        let raft_rpcs = metrics::RaftRpcMetrics::default();
        let footing = Footing {
            db: &db,
            dir: &dir,
            pool: config.pool,
            p2p: &p2p,
            taps: &taps,
            raft_rpcs: &raft_rpcs,
        };
        let engine = Engine::open(footing, node_id, damaged).await?;
        let ledger = Ledger {
            engine: Arc::new(ArcSwap::from_pointee(engine)),
            db,
            dir: dir.clone(),
            pool: config.pool,
            p2p: p2p.clone(),
            taps: taps.clone(),
            replica: Arc::default(),
            membership: Arc::default(),
            resetting: Arc::default(),
            joins: Arc::default(),
            challenges: Arc::default(),
            passing: Arc::default(),
            renewals: Arc::default(),
            keyed: Arc::default(),
            declared: Arc::default(),
            settling: Arc::default(),
            rival: Arc::default(),
            proposals: metrics::ProposalMetrics::default(),
            raft_rpcs,
            renewal_entries: metrics::RenewalMetrics::default(),
            feed_messages: metrics::FeedMetrics::default(),
            operator: config.operator.clone().map(Arc::new),
            wall: config.wall,
            stopped: Arc::new(watch::Sender::new(None)),
        };
        if let Some(inbox) = p2p.take_inbox(crate::p2p::Service::Raft) {
            ledger.supervise(
                "the ledger's RPC service",
                &shutdown,
                service::serve(ledger.clone(), config.target_voters, inbox),
            );
        }
        ledger.supervise(
            "the ledger's raft streams",
            &shutdown,
            raft::stream::serve(ledger.clone(), shutdown.clone()),
        );
        ledger.supervise(
            "the ledger's feed",
            &shutdown,
            feed::publish(ledger.clone(), taps.applied.subscribe(), shutdown.clone()),
        );
        ledger.supervise(
            "the ledger's follower",
            &shutdown,
            feed::follow(ledger.clone(), p2p.gossip(), shutdown.clone()),
        );
        ledger.supervise(
            "the deny list",
            &shutdown,
            deny::enforce(ledger.clone(), shutdown.clone()),
        );
        ledger.supervise(
            "the ledger's autopilot",
            &shutdown,
            crate::fault::guard(
                "ledger",
                true,
                autopilot::run(ledger.clone(), config, facts, shutdown.clone()),
            ),
        );
        let stopping = ledger.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            let _ = stopping.raft().shutdown().await;
        });
        Ok(ledger)
    }

    /// Runs `task` for as long as the node runs: when it ends or panics before `shutdown`,
    /// [`Ledger::stopped_part`] names it, and the daemon stops.
    fn supervise(
        &self,
        part: &'static str,
        shutdown: &CancellationToken,
        task: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        /// Reports the task's end when dropped: after it returns, or while a panic unwinds.
        struct Watch {
            part: &'static str,
            stopped: Arc<watch::Sender<Option<&'static str>>>,
            shutdown: CancellationToken,
        }
        impl Drop for Watch {
            fn drop(&mut self) {
                if !self.shutdown.is_cancelled() {
                    self.stopped.send_if_modified(|first| {
                        first.is_none() && {
                            *first = Some(self.part);
                            true
                        }
                    });
                }
            }
        }
        let watch = Watch {
            part,
            stopped: self.stopped.clone(),
            shutdown: shutdown.clone(),
        };
        tokio::spawn(async move {
            let _watch = watch;
            task.await;
        });
    }

    /// The long-lived part of the ledger that stopped on its own, if any.
    pub fn stopped_part(&self) -> Option<&'static str> {
        *self.stopped.borrow()
    }

    /// The operator's key this node was started with, if any.
    pub fn operator(&self) -> Option<&crate::operator::OperatorKey> {
        self.operator.as_deref()
    }

    /// The operator key this node checks operator commands against, and judges raft nodes'
    /// fitness for a seat by, when it leads: its own; or, started without one (by mistake, in a
    /// mesh whose nodes run with one), the key more than half of its cluster's voters said in
    /// this leadership they run with, itself counted as keyless
    /// ([`keyed::Keyed::key_of_most`]). A node that founded its cluster without the key would
    /// otherwise lead it checking nothing. Until its voters have answered (a node that joins
    /// it directly declares its key in the join; the others are asked at the leadership's
    /// first round and at each admission), it checks nothing; nor does it while it does not
    /// lead.
    pub fn authority(&self) -> Option<crate::operator::OperatorKey> {
        if let Some(key) = self.operator() {
            return Some(key.clone());
        }
        let voters: BTreeSet<String> = {
            let raft = self.raft();
            let metrics = raft.metrics();
            let metrics = metrics.borrow();
            // The answers are those of this node's leadership: a former leader's are stale.
            if metrics.current_leader != Some(self.node_id()) {
                return None;
            }
            let membership = metrics.membership_config.membership();
            membership
                .voter_ids()
                .filter_map(|id| membership.get_node(&id))
                .map(|node| node.peer_id.clone())
                .collect()
        };
        let voters: Vec<&str> = voters.iter().map(String::as_str).collect();
        let keyed = self.keyed();
        let key = keyed.key_of_most(&voters, self.p2p().peer_key(), None)?;
        key.parse().ok()
    }

    /// The networks (ids in hex) an operator's command signed for one holds in here: those of
    /// the tokens this node holds, and both ends of the last rotation the ledger records (so a
    /// command signed before the rotation, carried by a merge after it, still holds).
    pub fn networks(&self) -> Vec<String> {
        let mut networks = self.p2p.networks();
        if let Some(rotation) = self.state().token_rotation() {
            networks.extend([rotation.network.clone(), rotation.previous.clone()]);
        }
        networks.sort();
        networks.dedup();
        networks
    }

    /// This node's raft id (a new one after each wipe of its raft state).
    pub fn node_id(&self) -> u64 {
        self.engine.load().node_id
    }

    /// This node as raft knows it.
    pub fn node(&self) -> LedgerNode {
        LedgerNode {
            peer_id: self.p2p.peer_key().to_string(),
        }
    }

    /// A copy of the applied state: raft's on a raft member, else the followed one.
    pub fn state(&self) -> Arc<LedgerState> {
        if !self.is_raft_member()
            && let Some(state) = self.replica().state()
        {
            return state.clone();
        }
        self.engine.load().machine.state()
    }

    /// A receiver that sees a new value whenever the readable state may have changed (an entry
    /// applied, a snapshot or catch-up installed, the cluster left); read [`Ledger::state`]
    /// then.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.taps.subscribe()
    }

    /// Tells subscribers the followed state changed.
    pub(crate) fn changed(&self) {
        self.taps.changed();
    }

    /// Whether this node has declared its configured role and policy to the ledger since it
    /// started. Until then its bootstrapper does not act on a role the ledger may be about to
    /// change; after, it follows the ledger (an operator may change the role later).
    pub fn declared(&self) -> bool {
        self.declared.load(std::sync::atomic::Ordering::Acquire)
    }

    /// What keeps this node's cluster from being the one it stays in, as its merge checks
    /// found it ([`settle`]), or `None` once it is: the founder deploys the control plane only
    /// then.
    pub fn unsettled(&self) -> Option<String> {
        let cluster = self.state().cluster();
        let now = crate::clock::now();
        let mut settling = self
            .settling
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        announce(settling.newly_settled(cluster, now));
        settling.holding(cluster, now)
    }

    /// Records what a merge check found ([`settle::Settling::checked`]).
    pub(crate) fn merge_checked(&self, check: settle::Check) {
        let now = crate::clock::now();
        let mut settling = self
            .settling
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        settling.checked(check, now);
        announce(settling.newly_settled(Some(check.cluster), now));
    }

    pub(crate) fn mark_declared(&self) {
        self.declared
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Whether raft still runs: false after a fatal storage error or a panic in its core. A
    /// raft stopped on purpose (the instant a merge replaces it) counts as running.
    pub fn is_running(&self) -> bool {
        !matches!(
            self.raft().metrics().borrow().running_state,
            Err(ref fatal) if !matches!(fatal, openraft::error::Fatal::Stopped)
        )
    }

    /// Whether this node is a voter or learner of its cluster.
    pub fn is_raft_member(&self) -> bool {
        self.seat().is_some()
    }

    /// Whether this node is a voter of its cluster.
    pub fn is_voter(&self) -> bool {
        self.seat() == Some(Seat::Voter)
    }

    /// Whether this node holds raft state of a cluster whose membership, as this node has it,
    /// does not register it: the entry that gave it a seat never committed and was dropped
    /// (it was cut off, and later leaders never had it), or its seat was taken while it was
    /// gone. Such a node is no feed follower either, so no leader sends it anything, yet
    /// it names the leader its stored vote names. A learner catching up is so too until the
    /// entry that seats it reaches it. So is a learner whose leader left its cluster before
    /// sending it the log, once that leader has sent nothing for [`follower::LEADER_SILENCE`]
    /// (a snapshot's chunks count): it holds no cluster, its membership names that leader and
    /// not itself, and raft names that leader. (Seen at 100 nodes forming: a founder took a
    /// learner in and merged into a larger cluster 30 s later; the learner, nothing applied,
    /// named the founder's old raft id and waited for good, since it counted neither as
    /// seatless nor as a member whose leader went quiet, which read its cluster and its own
    /// seat.)
    pub fn is_seatless(&self) -> bool {
        if self.seat().is_some() || self.replica().is_following() {
            return false;
        }
        if self.state().cluster().is_some() {
            return true;
        }
        let engine = self.engine.load();
        let names_a_leader = engine
            .raft
            .metrics()
            .borrow()
            .current_leader
            .is_some_and(|leader| leader != engine.node_id);
        names_a_leader && engine.contact.silent(crate::clock::now())
    }

    /// This node's seat in its raft membership, if any.
    fn seat(&self) -> Option<Seat> {
        let engine = self.engine.load();
        let metrics = engine.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        membership.get_node(&engine.node_id)?;
        Some(if membership.voter_ids().any(|id| id == engine.node_id) {
            Seat::Voter
        } else {
            Seat::Learner
        })
    }

    /// The follower's copy of the ledger.
    pub(crate) fn replica(&self) -> std::sync::MutexGuard<'_, Replica> {
        // Nothing panics while holding it; a poisoned lock still holds a consistent replica.
        self.replica
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The challenges this node issued for forwarded requests.
    pub(crate) fn challenges(&self) -> std::sync::MutexGuard<'_, forward::Challenges> {
        // Nothing panics while holding it.
        self.challenges
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The raft nodes this node, as the leader, asked for their operator key ([`keyed`]).
    pub(crate) fn keyed(&self) -> std::sync::MutexGuard<'_, keyed::Keyed> {
        // Nothing panics while holding it.
        self.keyed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The renewals this node queued as the leader ([`renewals`]).
    pub(crate) fn renewals(&self) -> std::sync::MutexGuard<'_, renewals::Renewals> {
        // Nothing panics while holding it.
        self.renewals
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues the renewal of `peer`'s lease for this leader's next [`Command::Renewals`]
    /// entry; refused when `peer` holds no live lease in this node's state.
    pub(crate) fn queue_renewal(&self, peer: String) -> Result<(), String> {
        let live = self
            .state()
            .members()
            .get(&peer)
            .is_some_and(|m| m.lease == state::LeaseState::Live);
        if !live {
            return Err(format!("{peer} holds no live lease in this cluster"));
        }
        if self.renewals().queue(peer) {
            Ok(())
        } else {
            Err("too many renewals are waiting; try again later".into())
        }
    }

    /// Asks the leader (this node or, over libp2p, another, through a member when not
    /// connected to it) to renew this node's lease. The leader answers once it has queued the
    /// renewal; the renewal shows in the state when the leader's next [`Command::Renewals`]
    /// entry commits, within a [`renewals::window`].
    pub async fn renew_lease(&self) -> Result<(), LedgerError> {
        let (leader, node) = self.leader().ok_or(LedgerError::NoLeader)?;
        let me = self.p2p.peer_key().to_string();
        if leader == self.node_id() {
            return self.queue_renewal(me).map_err(LedgerError::Refused);
        }
        let peer: PeerId = node.peer_id.parse().map_err(|_| LedgerError::NoLeader)?;
        let until = tokio::time::Instant::now() + ANSWER_WITHIN;
        let sent = tokio::time::Instant::now();
        match forward::call_or_forward::<Result<(), String>>(
            &self.p2p,
            peer,
            &LedgerRpc::Renew,
            &self.status().voters,
            until,
        )
        .await
        {
            Ok((answer, _)) => answer.map_err(LedgerError::Refused),
            Err(forward::SendError::TimedOut) => Err(LedgerError::LeaderSilent(
                sent.elapsed().as_secs_f64().round() as u64,
            )),
            Err(forward::SendError::NotSent(e) | forward::SendError::Sent(e)) => {
                Err(LedgerError::Refused(e))
            }
        }
    }

    /// Serialises changes of the raft membership.
    pub(crate) async fn membership_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.membership.lock().await
    }

    /// Folds the applied log into a snapshot and drops the log up to it. After a `Recover`,
    /// whose one entry holds a whole state and can be too large for any append, a node that
    /// joins later gets the snapshot instead, in chunks.
    pub(crate) async fn compact(&self) -> Result<(), LedgerError> {
        let raft = self.raft();
        let raft_error = |e: &dyn std::fmt::Display| LedgerError::Raft(e.to_string());
        let Some(upto) = raft.metrics().borrow().last_applied else {
            return Ok(());
        };
        raft.trigger()
            .snapshot()
            .await
            .map_err(|e| raft_error(&e))?;
        raft.wait(Some(COMPACT_TIMEOUT))
            .metrics(
                |m| m.snapshot.is_some_and(|s| s.index >= upto.index),
                "the applied log in a snapshot",
            )
            .await
            .map_err(|e| raft_error(&e))?;
        raft.trigger()
            .purge_log(upto.index)
            .await
            .map_err(|e| raft_error(&e))
    }

    /// Starts following the cluster `leader` leads, from its state.
    pub(crate) async fn follow(&self, leader: PeerId) -> Result<(), String> {
        feed::catch_up(self, leader).await
    }

    /// On the leader: a feed message carrying `entries`; `None` elsewhere.
    pub(crate) fn feed(&self, entries: Vec<(u64, Option<Command>)>) -> Option<Feed> {
        let engine = self.engine.load();
        let metrics = engine.raft.metrics().borrow().clone();
        if metrics.current_leader != Some(engine.node_id) {
            return None;
        }
        let cluster = engine.machine.state().cluster()?;
        let membership = metrics.membership_config.membership();
        Some(Feed {
            cluster,
            leader: (engine.node_id, self.node()),
            voters: membership
                .voter_ids()
                .filter_map(|id| membership.get_node(&id).map(|n| n.peer_id.clone()))
                .collect(),
            entries,
            last: metrics.last_applied.map_or(0, |id| id.index),
        })
    }

    /// On a raft member: a page of its state for a follower catching up, from `offset` of the
    /// encoding at `position` (`None`: the state as it is now, past index `after`, the one the
    /// follower holds).
    pub(crate) async fn catchup_page(
        &self,
        position: Option<u64>,
        after: u64,
        offset: u64,
    ) -> Result<catchup::Page, String> {
        if !self.is_raft_member() {
            return Err("this node is not a raft member of its cluster".into());
        }
        let engine = self.engine.load_full();
        let cluster = engine
            .machine
            .state()
            .cluster()
            .ok_or("this node has not applied its cluster's genesis yet")?;
        let (at, bytes) = engine
            .encodings
            .get(
                position,
                after,
                || engine.machine.state_at(),
                crate::clock::now(),
            )
            .await?;
        let status = self.status();
        let metrics = self.raft().metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let leader = metrics
            .current_leader
            .and_then(|id| membership.get_node(&id).map(|n| (id, n.clone())));
        catchup::page((cluster, leader, status.voters), at, &bytes, offset)
    }

    /// The leader: raft's if this node knows one, else the followed cluster's; the followed
    /// cluster's first on a feed follower its raft membership does not register.
    pub(crate) fn leader(&self) -> Option<Leader> {
        let (node_id, metrics) = {
            let engine = self.engine.load();
            let metrics = engine.raft.metrics().borrow().clone();
            (engine.node_id, metrics)
        };
        let membership = metrics.membership_config.membership();
        let raft = metrics
            .current_leader
            .and_then(|id| membership.get_node(&id).map(|n| (id, n.clone())));
        let replica = self.replica();
        // A feed follower may hold raft state of a recruitment that never committed: its raft
        // names the leader its stored vote names, which may lead no more. It follows the feed's
        // leader, as its status does.
        if membership.get_node(&node_id).is_none() && replica.is_following() {
            return replica.leader(crate::clock::now()).cloned().or(raft);
        }
        raft.or_else(|| replica.leader(crate::clock::now()).cloned())
    }

    /// Whether this node leads two or more voters but no majority of them has answered it for
    /// [`QUORUM_SILENCE`]: it cannot commit, and says it leads nobody ([`service::hello`]).
    pub(crate) fn cut_off(&self) -> bool {
        let engine = self.engine.load();
        let metrics = engine.raft.metrics().borrow().clone();
        metrics.current_leader == Some(engine.node_id)
            && metrics.membership_config.membership().voter_ids().count() > 1
            && metrics
                .millis_since_quorum_ack
                .is_none_or(|ms| u128::from(ms) >= QUORUM_SILENCE.as_millis())
    }

    /// A feed message of another cluster than this node's reached it at `now`: that cluster's
    /// leader publishes on the gossip topic all clusters of the mesh share.
    pub(crate) fn heard_rival(&self, now: Instant) {
        *self.rival.lock().unwrap_or_else(|p| p.into_inner()) = Some(now);
    }

    /// Whether a feed of another cluster reached this node within [`merge::RIVAL_RECENT`] of
    /// `now`: its merge checks then ask every peer, live members included, which cluster they
    /// are in ([`merge::better_cluster_reachable`]).
    pub(crate) fn rival_heard(&self, now: Instant) -> bool {
        self.rival
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|at| now.saturating_duration_since(at) <= merge::RIVAL_RECENT)
    }

    /// Raft node `node` took an append or a snapshot chunk from its leader, or the leader
    /// said, asked, that it still leads ([`contact`]); not counted when this node has wiped
    /// its raft state since and is another raft node now.
    pub(crate) fn heard_from_leader(&self, node: u64) {
        self.engine.load().contact.heard(node, crate::clock::now());
    }

    /// Whether this node's raft instance took word from a leader (or started) within `within`
    /// ([`contact`]).
    pub(crate) fn heard_leader_within(&self, within: std::time::Duration) -> bool {
        self.engine
            .load()
            .contact
            .heard_within(crate::clock::now(), within)
    }

    /// The leader raft names, when this node is a raft member that does not lead and has heard
    /// nothing from that leader for [`contact::PROBE_AFTER`] at `now`: the one to ask whether
    /// it still leads.
    pub(crate) fn quiet_raft_leader(&self, now: Instant) -> Option<Leader> {
        self.unheard_raft_leader(|contact| contact.quiet(now))
    }

    /// Whether this node is a raft member whose leader, another node, has sent it nothing for
    /// [`contact::LEADER_SILENCE`] at `now`: its cluster counts as leaderless for it
    /// ([`contact`]), though raft still names that leader.
    pub(crate) fn raft_leader_silent(&self, now: Instant) -> bool {
        self.unheard_raft_leader(|contact| contact.silent(now))
            .is_some()
    }

    /// The leader raft names, when this node and that leader, another node, are both registered
    /// by this node's raft membership and `unheard` holds of what this node heard from it.
    fn unheard_raft_leader(&self, unheard: impl Fn(&contact::Contact) -> bool) -> Option<Leader> {
        let engine = self.engine.load();
        if !unheard(&engine.contact) {
            return None;
        }
        let metrics = engine.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        membership.get_node(&engine.node_id)?;
        let leader = metrics.current_leader.filter(|id| *id != engine.node_id)?;
        Some((leader, membership.get_node(&leader)?.clone()))
    }

    /// Now on the wall clock this ledger reads ([`LedgerConfig::wall`]), in seconds since the
    /// UNIX epoch.
    pub(crate) fn wall_now(&self) -> u64 {
        self.wall.now()
    }

    /// The current raft instance (for the service and the autopilot).
    pub(crate) fn raft(&self) -> Raft<LedgerTypes> {
        self.engine.load().raft.clone()
    }

    /// Lets `leader` send this raft instance appends before its membership registers it: the
    /// leader this node asks to join ([`vouch`]), while it takes this node in as a raft member.
    pub(crate) fn vouch(&self, (node, leader): &Leader, taken_in: bool) {
        let engine = self.engine.load();
        if taken_in {
            engine.vouch.set(*node, &leader.peer_id);
        } else {
            engine.vouch.withdraw(*node, &leader.peer_id);
        }
    }

    /// The raft instance that takes a raft RPC sent to raft node `to` by a node of `cluster`,
    /// or why none does: the RPC was meant for the raft node this node was before it wiped
    /// its raft state, or comes from another cluster than this node's: the one its raft has
    /// applied the genesis of, or else the one it follows (either side without a cluster yet is
    /// taken: a blank node joining). A follower of one cluster whose raft is still blank is no
    /// learner for another cluster's leader to take.
    pub(crate) fn raft_for(
        &self,
        to: u64,
        cluster: Option<ClusterId>,
    ) -> Result<Raft<LedgerTypes>, String> {
        let engine = self.engine.load();
        if to != engine.node_id {
            return Err(format!(
                "addressed to raft node {to}; this node is raft node {} now (it wiped its raft \
                 state since)",
                engine.node_id
            ));
        }
        let ours = engine
            .machine
            .state()
            .cluster()
            .or_else(|| self.replica().state().and_then(|s| s.cluster()));
        match (cluster, ours) {
            (Some(theirs), Some(ours)) if theirs != ours => Err(format!(
                "sent from cluster {theirs}; this node is in cluster {ours}"
            )),
            _ => Ok(engine.raft.clone()),
        }
    }

    /// The raft directory (the autopilot keeps its carry-over files there).
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Leaves the current cluster: stops raft, wipes its storage and starts a blank raft node
    /// under a new raft id, which the autopilot then joins to a cluster (another one in a
    /// merge, the same one when this node lost its seat while away). The new id is stored in
    /// the wipe's own transaction ([`raft::store::wipe`]): never the old id over blank state.
    pub(crate) async fn reset(&self) -> Result<(), LedgerError> {
        // One reset at a time (a recovery and the autopilot may both ask).
        let _resetting = self.resetting.lock().await;
        let old = self.engine.load_full();
        old.raft
            .shutdown()
            .await
            .map_err(|e| LedgerError::Raft(e.to_string()))?;
        let storage_error = |reason: String| LedgerError::Storage {
            path: self.dir.display().to_string(),
            reason,
        };
        let node_id = autopilot::draw_node_id();
        raft::store::wipe(&self.db, node_id).map_err(|e| storage_error(e.to_string()))?;
        tracing::info!(
            old = old.node_id,
            new = node_id,
            "raft state wiped; this node is a new raft node"
        );
        let footing = Footing {
            db: &self.db,
            dir: &self.dir,
            pool: self.pool,
            p2p: &self.p2p,
            taps: &self.taps,
            raft_rpcs: &self.raft_rpcs,
        };
        let fresh = Engine::open(footing, node_id, storage_error).await?;
        self.engine.store(Arc::new(fresh));
        self.replica().reset();
        // A feed of the cluster this node joins next was another cluster's until now.
        *self.rival.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.taps.changed();
        Ok(())
    }

    pub(crate) fn p2p(&self) -> &P2pHandle {
        &self.p2p
    }

    /// The PeerIds this node reaches now: its admitted peers and itself.
    pub(crate) fn reachable_peers(&self) -> Vec<String> {
        let mut reachable: Vec<String> =
            self.p2p.peers().iter().map(|p| p.peer_id.clone()).collect();
        reachable.push(self.p2p.peer_key().to_string());
        reachable
    }

    /// Leader, voters, applied index: raft's on a raft member, else as followed.
    pub fn status(&self) -> LedgerStatus {
        let (node_id, metrics) = {
            let engine = self.engine.load();
            let metrics = engine.raft.metrics().borrow().clone();
            (engine.node_id, metrics)
        };
        let membership = metrics.membership_config.membership();
        let peer_of = |id: u64| membership.get_node(&id).map(|n| n.peer_id.clone());
        let (cluster_id, rules) = {
            let state = self.state();
            (state.cluster().map(|c| c.to_string()), state.rules())
        };
        if membership.get_node(&node_id).is_none() {
            let replica = self.replica();
            if replica.is_following() {
                return LedgerStatus {
                    node_id,
                    cluster_id,
                    leader: replica
                        .leader(crate::clock::now())
                        .map(|(_, node)| node.peer_id.clone()),
                    voters: replica.voters().to_vec(),
                    learners: Vec::new(),
                    changing_voters: false,
                    applied_index: replica.position(),
                    follower: true,
                    rules,
                };
            }
        }
        LedgerStatus {
            node_id,
            cluster_id,
            leader: metrics.current_leader.and_then(peer_of),
            voters: membership.voter_ids().filter_map(peer_of).collect(),
            learners: membership.learner_ids().filter_map(peer_of).collect(),
            changing_voters: membership.get_joint_config().len() > 1,
            applied_index: metrics.last_applied.map(|l| l.index).unwrap_or(0),
            follower: false,
            rules,
        }
    }

    /// Commits `command` through the leader (this node or, over libp2p, another) and returns
    /// its outcome once applied by the leader. One attempt: the autopilot calls this every
    /// second and must not stall.
    pub async fn propose(&self, command: Command) -> Result<Outcome, LedgerError> {
        let until = tokio::time::Instant::now() + ANSWER_WITHIN;
        self.propose_once(command, until)
            .await
            .map_err(|a| match a {
                Attempt::NotSent(e) | Attempt::Failed(e) => e,
            })
    }

    /// [`Ledger::propose_patiently`] for a command that applying twice leaves as applying once
    /// (a denial, a removal), whose `effect` shows in the state once applied. When the leader's
    /// answer is lost (the connection closed: a denied or removed leader is cut off as the
    /// members apply the entry, or the leader stopped), the command may have committed: this
    /// node waits for the effect to reach its own state, and proposes once more if it does not.
    pub async fn propose_idempotent(
        &self,
        command: Command,
        effect: impl Fn(&LedgerState) -> bool,
    ) -> Result<Outcome, LedgerError> {
        let mut last = None;
        for _ in 0..2 {
            match self.propose_patiently(command.clone()).await {
                Err(
                    e @ (LedgerError::Refused(_)
                    | LedgerError::NotCommitted(_)
                    | LedgerError::LeaderSilent(_)),
                ) => {
                    let deadline = tokio::time::Instant::now() + PROPOSE_PATIENCE;
                    let mut changes = self.subscribe();
                    while tokio::time::Instant::now() < deadline {
                        // A ledger being replaced (a merge) shows nothing of the change.
                        let seen = {
                            let state = self.state();
                            state.cluster().is_some() && effect(&state)
                        };
                        if seen {
                            return Ok(Outcome::Done);
                        }
                        let _ = tokio::time::timeout_at(deadline, changes.changed()).await;
                    }
                    tracing::debug!(error = %e, "the answer was lost and the effect is not seen; proposing again");
                    last = Some(e);
                }
                answer => return answer,
            }
        }
        Err(last.unwrap_or(LedgerError::NoLeader))
    }

    /// [`Ledger::propose`] for an operator's request: while no leader is known or reachable
    /// (an election after the leader left), it tries again for up to [`PROPOSE_PATIENCE`]. It
    /// never retries a proposal the leader may have received.
    pub async fn propose_patiently(&self, command: Command) -> Result<Outcome, LedgerError> {
        let started = tokio::time::Instant::now();
        let deadline = started + PROPOSE_PATIENCE;
        let until = started + ANSWER_WITHIN;
        loop {
            match self.propose_once(command.clone(), until).await {
                Err(Attempt::NotSent(e)) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "proposal not sent yet; waiting for a leader");
                    tokio::time::sleep(PROPOSE_RETRY).await;
                }
                Err(Attempt::NotSent(LedgerError::NoLeader)) => return Err(LedgerError::NoLeader),
                Err(Attempt::NotSent(e)) => {
                    return Err(LedgerError::LeaderUnreachable(e.to_string()));
                }
                Err(Attempt::Failed(e)) => return Err(e),
                Ok(outcome) => return Ok(outcome),
            }
        }
    }

    /// One attempt, answered by `until`, counted in the proposal metrics.
    async fn propose_once(
        &self,
        command: Command,
        until: tokio::time::Instant,
    ) -> Result<Outcome, Attempt> {
        let started = std::time::Instant::now();
        let attempt = self.attempt(command, until).await;
        let result = match &attempt {
            Ok(_) => metrics::ProposalResult::Committed,
            Err(Attempt::NotSent(_)) => metrics::ProposalResult::NotSent,
            Err(Attempt::Failed(_)) => metrics::ProposalResult::Failed,
        };
        self.proposals.record(result, started.elapsed());
        attempt
    }

    async fn attempt(
        &self,
        command: Command,
        until: tokio::time::Instant,
    ) -> Result<Outcome, Attempt> {
        limits::check_size(&command).map_err(|e| Attempt::Failed(LedgerError::TooLarge(e)))?;
        let (leader, node) = self
            .leader()
            .ok_or(Attempt::NotSent(LedgerError::NoLeader))?;
        if leader == self.node_id() {
            let operator = self.authority();
            let command = authority::without_configured_policy(command, operator.as_ref());
            let cluster = self.state().cluster();
            let now = self.wall_now();
            authority::as_operator(&command, &node.peer_id, operator.as_ref(), cluster, now)
                .and_then(|()| authority::in_network(&command, &self.networks()))
                .map_err(|e| Attempt::Failed(LedgerError::Operator(e)))?;
            service::make_room(self, &command).await.map_err(|e| {
                if e == service::NOT_LEADER {
                    Attempt::NotSent(LedgerError::Refused(e))
                } else {
                    Attempt::Failed(LedgerError::Refused(e))
                }
            })?;
            let command = state::attribute(command, &node.peer_id, self.wall_now());
            // A leader cut off from its quorum does not know it until a higher term reaches
            // it: its writes wait, and the caller hears so within the proposal timeout.
            let timeout = service::PROPOSAL_TIMEOUT
                .min(until.saturating_duration_since(tokio::time::Instant::now()));
            return tokio::time::timeout(timeout, self.raft().client_write(command))
                .await
                .map_err(|_| Attempt::Failed(LedgerError::NotCommitted(timeout.as_secs())))?
                .map(|r| r.data)
                .map_err(|e| {
                    let not_leader = matches!(
                        &e,
                        openraft::error::RaftError::APIError(
                            openraft::error::ClientWriteError::ForwardToLeader(_)
                        )
                    );
                    let error = LedgerError::Refused(e.to_string());
                    if not_leader {
                        Attempt::NotSent(error)
                    } else {
                        Attempt::Failed(error)
                    }
                });
        }
        let peer: PeerId = node
            .peer_id
            .parse()
            .map_err(|_| Attempt::NotSent(LedgerError::NoLeader))?;
        // A leader killed a moment ago may still look connected (a QUIC connection is dropped
        // only after 30 s of silence), and raft RPCs wait up to 30 s: the caller hears by
        // `until`, within the CLI's 10 s.
        let sent = tokio::time::Instant::now();
        // Not connected to the leader, this node sends through a member that is.
        let rpc = LedgerRpc::Propose(command);
        let answer: Result<Outcome, String> =
            match forward::call_or_forward(&self.p2p, peer, &rpc, &self.status().voters, until)
                .await
            {
                Ok((answer, _)) => answer,
                Err(forward::SendError::TimedOut) => {
                    let waited = sent.elapsed().as_secs_f64().round() as u64;
                    return Err(Attempt::Failed(LedgerError::LeaderSilent(waited)));
                }
                Err(forward::SendError::NotSent(e)) => {
                    return Err(Attempt::NotSent(LedgerError::Refused(e)));
                }
                Err(forward::SendError::Sent(e)) => {
                    return Err(Attempt::Failed(LedgerError::Refused(e)));
                }
            };
        answer.map_err(|e| {
            if e.starts_with(authority::OPERATOR) {
                Attempt::Failed(LedgerError::Operator(e))
            } else if e == service::NOT_LEADER {
                Attempt::NotSent(LedgerError::Refused(e))
            } else {
                Attempt::Failed(LedgerError::Refused(e))
            }
        })
    }
}

/// A raft member's seat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seat {
    Voter,
    Learner,
}

/// How one proposal attempt ended when it did not commit.
enum Attempt {
    /// The proposal never reached a leader: trying again cannot apply it twice.
    NotSent(LedgerError),
    Failed(LedgerError),
}

/// Logs the check that settled this node's cluster, by its counts or by a limit passing: a
/// founder deploys on it.
fn announce(settled: Option<(settle::Check, std::time::Duration)>) {
    if let Some((check, waited)) = settled {
        tracing::info!(
            own = check.own,
            rivals = check.rivals,
            largest_rival = check.largest_rival,
            unsettled = check.unsettled,
            waited_s = waited.as_secs(),
            "this node's cluster is settled"
        );
    }
}
