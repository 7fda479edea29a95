//! Cluster life, run by every node once a second (four times a second while it is outside a
//! cluster): form or join a cluster, and, on the leader, write the cluster's first entry and
//! promote learners to voters. Every member makes sure the ledger holds its own member record
//! (and so an overlay address) and renews its lease.
//!
//! Formation: a node outside any cluster listens (`formation_wait`, or less when it discovers
//! only on its LAN: [`formation`](super::formation)), then asks every admitted peer for its
//! cluster. If one has a cluster with a known leader, it asks the leader of the cluster most
//! peers answer from (the oldest of those as large) to add it; if none has, the node with the
//! lowest PeerId among itself and its admitted peers (and, for up to six formation waits,
//! every peer it has heard of and the lowest member each peer asked has admitted) initialises
//! a one-voter cluster and the others join it. A lone node thus
//! forms its own cluster. A node holding a recovery seed forms at once ([`recover`]).
//!
//! Merge: every few seconds a member asks admitted peers that are not live members of its
//! ledger, and live members it has not seen renew (they may have left), which cluster they are
//! in, and leaves for a larger one, or one as large and older ([`merge`]). While another
//! cluster's feed reaches it, it asks its live members too, and counts none that answers from
//! elsewhere as its own.
//!
//! Return: a voter whose cluster has had no leader for longer than an election, or a raft node
//! whose own membership does not register it (its seat never committed, or was taken while it
//! was away) and whose log has stood still as long, asks the leader its peers name whether it
//! still counts this node; a node that lost its seat while away resets its raft state and
//! rejoins, as a learner or a follower ([`merge::removed`]). A raft member whose leader has
//! sent it nothing for 45 s asks the same, then whether that leader still leads; past 75 s its
//! cluster counts as leaderless for it ([`super::contact`]). A learner that never applied its
//! cluster's first entry has no cluster to ask about: at those points it resets its raft
//! state and searches as a new node does. A member whose own renewals
//! stopped reaching its state asks the leader it names whether it still leads; one that does
//! not counts as no leader. A learner or follower of a cluster with no working leader and no
//! other cluster in reach leaves it, carrying its state, and forms or joins another
//! (`Autopilot::leave_abandoned`).
//!
//! Voters: the leader replaces a voter that no admitted connection has reached for
//! `voter_timeout`, or at once a denied one or one whose node joined again under a new raft id
//! (it wiped its raft state), with a live learner, keeping the voter count odd, and brings a
//! follower in as a learner when voters are short; what to change is decided by [`Seats`]
//! ([`super::seats`], pure and time-injected). A voter or learner whose record says it runs a
//! weft older than the ledger's rules, or that answers without the leader's operator key
//! ([`super::keyed`], asked at each admission and every 5 minutes), loses its seat the same
//! way.
//!
//! Record: a member whose record is missing, expired or under another hostname proposes it
//! again (a live member keeps its address).
//!
//! Leases: a member asks the leader to renew its lease every third of `lease_timeout` (rarely:
//! minutes on a real mesh); the leader commits the renewals it gathered as one log entry per
//! window ([`super::renewals`]). The leader expires the lease of a member it has neither seen
//! renew nor reached over an admitted connection for `lease_timeout`, by its own monotonic
//! clock ([`super::lease`]); expiry frees the member's address, unless the member's role
//! binds it: deployed, or in the middle of installing or starting its control-plane seat. The
//! same timers give such an install up once the member has been away (neither reporting again
//! nor reachable) for `install_timeout`, so a machine that died mid-install does not hold the
//! seat for good.
//!
//! When each duty is due, and what to make of the answers, is decided by the [`Pilot`]
//! ([`super::pilot`], pure and time-injected); this module reads the node's state into it at
//! every tick, asks, proposes and joins as it says.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use openraft::ChangeMembers;
use rand::seq::SliceRandom as _;

use rand::RngCore as _;
use tokio_util::sync::CancellationToken;

use super::lease::Leases;
use super::metrics::RenewalForm;
use super::pilot::{
    Duty, Fallback, Found, Keep, LEADERLESS_GRACE, LISTEN_TICK, Pilot, Search, Seen,
};
use super::raft::network::{Joined, LedgerRpc};
use super::seats::{self, Seats};
use super::state::{
    ABANDON_FORM, ClusterId, Command, FixedRole, LeaseState, LedgerState, Outcome, Platform,
    RolePolicy,
};
use super::{Ledger, LedgerConfig, follower, forward, merge, recover, service};

/// File holding this node's raft id, made with the raft directory.
const NODE_ID_FILE: &str = "node-id";
/// How long a join this node asks for may take (the leader waits for the learner to catch up),
/// and how long one of the leader's own membership changes may take to commit.
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);

/// What this node asks the ledger to record about itself.
#[derive(Debug, Clone, Default)]
pub struct MemberFacts {
    pub hostname: String,
    /// An overlay address to ask for.
    pub requested: Option<Ipv4Addr>,
    /// The role this node was configured to hold (`--role`); `None` is automatic.
    pub fixed_role: Option<FixedRole>,
    /// The role policy this node was configured with (`--control-planes`), if it was.
    pub policy: Option<RolePolicy>,
    /// Whether this node runs a bootstrapper (`--bootstrapper` other than none).
    pub bootstraps: bool,
    /// Its X25519 public key for what is sealed to it alone (a rotated network token);
    /// all zeros for none.
    pub sealing_key: [u8; 32],
}

/// The raft id a raft database without one starts with: the one an earlier weft kept in the
/// raft directory's `node-id` file, or a new one (a re-imaged machine is a new raft node).
pub fn first_node_id(dir: &Path) -> io::Result<u64> {
    let path = dir.join(NODE_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} does not hold a raft node id", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(draw_node_id()),
        Err(e) => Err(e),
    }
}

/// Removes the `node-id` file an earlier weft kept, once its id is in the raft database: the
/// file must never give the old id to a blank database again.
pub fn forget_node_id_file(dir: &Path) -> io::Result<()> {
    match std::fs::remove_file(dir.join(NODE_ID_FILE)) {
        Ok(()) => std::fs::File::open(dir)?.sync_all(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// A new random raft id (never 0).
pub fn draw_node_id() -> u64 {
    loop {
        let id = crate::chance::Chance.next_u64();
        if id != 0 {
            return id;
        }
    }
}

/// The autopilot's I/O: what it reads, asks and proposes for its [`Pilot`].
struct Autopilot {
    ledger: Ledger,
    config: LedgerConfig,
    facts: MemberFacts,
    /// When each duty is due, and what to make of the answers.
    pilot: Pilot,
    /// The leases as this node, while it leads, has seen them.
    leases: Leases,
    /// The expired members acting on their seats, as this node, while it leads, has seen them
    /// away: the same timers, run for the install timeout.
    installs: Leases,
    /// The voters as this node, while it leads, has seen them.
    seats: Seats,
    /// The questions of operator keys in flight ([`check_keys`]), ended with the autopilot.
    asking: tokio::task::JoinSet<()>,
    /// The states of the clusters this node left in merges, oldest first, until what they hold
    /// is re-proposed.
    carried: Vec<LedgerState>,
}

/// Runs until `shutdown`.
pub async fn run(
    ledger: Ledger,
    config: LedgerConfig,
    facts: MemberFacts,
    shutdown: CancellationToken,
) {
    let carried = merge::load_carried(ledger.dir());
    let pilot = Pilot::new(
        crate::clock::now(),
        config.lease_timeout,
        config.formation_wait,
        config.formation_quiet,
    );
    let mut autopilot = Autopilot {
        leases: Leases::new(config.lease_timeout),
        installs: Leases::new(config.install_timeout),
        ledger,
        config,
        facts,
        pilot,
        seats: Seats::default(),
        asking: tokio::task::JoinSet::new(),
        carried,
    };
    let mut tick = tokio::time::interval(LISTEN_TICK);
    // A tick that took longer than the interval (a merge, a join) is not made up for by a burst.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => autopilot.tick().await,
        }
    }
}

impl Autopilot {
    async fn tick(&mut self) {
        let ledger = self.ledger.clone();
        let now = crate::clock::now();
        let seen = self.seen(now);
        if !seen.leads {
            // What raft nodes answered of their operator keys holds for one leadership: a node
            // that leads again later asks afresh, and reads nothing of this one meanwhile.
            ledger.keyed().clear();
        }
        for duty in self.pilot.tick(now, &seen) {
            match duty {
                Duty::FormFromSeed => {
                    form_alone(&ledger, "recovering: forming a new cluster from the seed").await
                }
                Duty::JoinHeard => {
                    let heard = ledger.replica().heard().cloned();
                    if let Some(leader) = heard {
                        join(&ledger, leader).await;
                    }
                }
                Duty::Search => self.form_or_join().await,
                Duty::Lead { fresh } => {
                    if fresh {
                        // A new leader starts counting afresh: it may see members the old one
                        // did not.
                        self.leases = Leases::new(self.config.lease_timeout);
                        self.installs = Leases::new(self.config.install_timeout);
                        self.seats.clear();
                        ledger.renewals().clear();
                        ledger.keyed().clear();
                    }
                    check_keys(&ledger, &mut self.asking);
                    lead(&ledger, &self.config).await;
                    commit_renewals(&ledger, &self.config).await;
                    recruit(&ledger, &self.config, &self.seats).await;
                    replace_voters(&ledger, &self.config, &mut self.seats).await;
                    expire_leases(&ledger, &mut self.leases).await;
                    abandon_installs(&ledger, &mut self.installs).await;
                    adopt_rules(&ledger).await;
                }
                Duty::ProbeLeader => {
                    if self.probe_quiet_leader().await {
                        return;
                    }
                }
                Duty::CheckMerge { ask_leader } => {
                    if self.merge(ask_leader).await {
                        return;
                    }
                }
                Duty::KeepRecord => self.keep_record().await,
                Duty::Declare => self.declare().await,
                Duty::Readopt => self.readopt().await,
            }
        }
    }

    /// What the [`Pilot`] decides from at `now`.
    fn seen(&self, now: Instant) -> Seen {
        let ledger = &self.ledger;
        let in_cluster = service::hello(ledger).in_cluster;
        let record = self.own_record().1;
        let (heard_leader, quiet_leader) = {
            let replica = ledger.replica();
            (
                replica.heard().is_some(),
                replica.quiet_leader(now).is_some(),
            )
        };
        let quiet_leader = quiet_leader || ledger.quiet_raft_leader(now).is_some();
        Seen {
            in_cluster,
            heard: ledger.p2p().heard().count,
            seed: !in_cluster && recover::load_seed(ledger.dir()).is_some(),
            heard_leader,
            carrying: !self.carried.is_empty(),
            // Raft's own view: a leader cut off from its quorum names no leader when asked,
            // yet keeps its timers (replacing voters and expiring leases wait for a quorum
            // anyway); one that handed its seat over does not lead ([`service::leads_in_raft`]).
            leads: service::leads_in_raft(ledger),
            quiet_leader,
            record,
        }
    }

    /// Whether this node's state holds a cluster, and its own live record's renewal stamp
    /// there. A record with another hostname (the node was renamed) or platform (weft was
    /// upgraded) counts as none, so it is proposed again. A raft member that never applied its
    /// cluster's genesis has no record either, and doubts its leader as one whose record
    /// stopped changing does.
    fn own_record(&self) -> (bool, Option<u64>) {
        let state = self.ledger.state();
        let record = state
            .members()
            .get(self.ledger.p2p().peer_key())
            .and_then(|member| {
                (member.lease == LeaseState::Live
                    && member.hostname == self.facts.hostname
                    && member.platform == Platform::here())
                .then_some(member.renewed_at)
            });
        (state.cluster().is_some(), record)
    }

    /// Whether this node's cluster has no working leader as this node sees it: none is known,
    /// or this node leads but is cut off from its quorum ([`Ledger::cut_off`]). An openraft
    /// leader does not step down by itself: cut off from its voters, or back from a long
    /// absence after it was replaced (it restarts as the leader its stored vote names, and
    /// members refuse its appends), it would lead nobody for ever.
    /// A raft member whose leader has sent it nothing for a long while names no leader either
    /// ([`Ledger::raft_leader_silent`]): a learner never stands for election, so it would name
    /// a leader that left the cluster for ever.
    fn leaderless(&self) -> bool {
        let metrics = self.ledger.raft().metrics().borrow().clone();
        if metrics.current_leader != Some(self.ledger.node_id()) {
            return self.ledger.status().leader.is_none()
                || self.ledger.raft_leader_silent(crate::clock::now());
        }
        self.ledger.cut_off()
    }

    /// A follower whose leader's feed has been quiet for a while asks that leader whether it
    /// still leads its cluster: gossip may lose heartbeats while the leader is well. A leader
    /// that says so is heard from; one that is gone, cut off from its quorum or leads another
    /// cluster says nothing of the kind, and the follower soon knows no leader. A raft member
    /// whose leader has sent it no append for as long asks it the same
    /// ([`Ledger::quiet_raft_leader`]), after asking whether that leader still counts it: a
    /// learner removed while it was away hears nothing from a leader that still leads. True
    /// when this node reset its raft state to rejoin.
    async fn probe_quiet_leader(&mut self) -> bool {
        let now = crate::clock::now();
        // The raft node asking: a reset while the question is out makes the answer stale.
        let asking = self.ledger.node_id();
        // A node its own raft membership registers goes by raft's leader, even when it follows
        // a feed too (a follower being recruited as a learner).
        let (leader, raft) = match self.ledger.quiet_raft_leader(now) {
            Some(leader) => (leader, true),
            None => match self.ledger.replica().quiet_leader(now).cloned() {
                Some(leader) => (leader, false),
                None => return false,
            },
        };
        if raft {
            tracing::info!(
                leader = %leader.1.peer_id,
                "the raft leader has sent this node nothing for a while; asking whether it \
                 still leads and still counts this node"
            );
            if self.rejoin_if_removed().await {
                return true;
            }
        }
        let Ok(peer) = leader.1.peer_id.parse::<libp2p::PeerId>() else {
            return false;
        };
        let ours = self.ledger.state().cluster();
        let leads = service::ask(&self.ledger, [peer])
            .await
            .first()
            .is_some_and(|hello| {
                hello.cluster == ours
                    && hello.node_id == leader.0
                    && hello.leader.as_ref() == Some(&leader)
            });
        if leads && raft {
            self.ledger.heard_from_leader(asking);
        } else if leads {
            self.ledger
                .replica()
                .confirmed(&leader, crate::clock::now());
        }
        false
    }

    /// Whether the leader this node names, asked, says it leads this node's cluster.
    async fn leader_confirms(&self) -> bool {
        let Some(ours) = self.ledger.state().cluster() else {
            return false;
        };
        let Some(leader) = self
            .ledger
            .status()
            .leader
            .and_then(|peer| peer.parse::<libp2p::PeerId>().ok())
        else {
            return false;
        };
        if leader == self.ledger.p2p().peer_id() {
            return true;
        }
        service::ask(&self.ledger, [leader])
            .await
            .first()
            .is_some_and(|hello| {
                hello.cluster == Some(ours)
                    && hello.leader.as_ref().map(|(id, _)| *id) == Some(hello.node_id)
            })
    }

    /// Leaves this cluster for a better one admitted peers belong to, or an abandoned one
    /// ([`Pilot::fallback`]); true when it did. `ask_leader`: this node is frozen and asks its
    /// leader first.
    async fn merge(&mut self, ask_leader: bool) -> bool {
        // A frozen raft member first asks whether the leader still counts it: a learner
        // removed while it was away still names a leader that confirms it leads, and nothing
        // else would ever tell it.
        if ask_leader && self.ledger.is_raft_member() && self.rejoin_if_removed().await {
            return true;
        }
        // A raft node its own membership does not register, whose log stands still, asks the
        // same ([`Pilot::stranded`]); the leader it names may well confirm it leads. When the
        // leader still counts it, or none answers, it goes on as any member.
        let seatless = self.ledger.is_seatless().then(|| {
            self.ledger
                .raft()
                .metrics()
                .borrow()
                .last_log_index
                .unwrap_or(0)
        });
        if self.pilot.stranded(crate::clock::now(), seatless) && self.rejoin_if_removed().await {
            return true;
        }
        let confirms = if ask_leader {
            Some(self.leader_confirms().await)
        } else {
            None
        };
        let abandoned = self
            .pilot
            .doubt(crate::clock::now(), self.leaderless(), confirms);
        let live = live_stamps(&self.ledger.state());
        let me = self.ledger.p2p().peer_key().to_string();
        let leader = self.ledger.status().leader;
        let silent = self
            .pilot
            .silent(crate::clock::now(), &live, &me, leader.as_deref());
        let Some(winner) = merge::better_cluster_reachable(&self.ledger, abandoned, &silent).await
        else {
            return match self
                .pilot
                .fallback(crate::clock::now(), abandoned, self.ledger.is_voter())
            {
                Fallback::Stay => false,
                Fallback::RejoinIfRemoved => self.rejoin_if_removed().await,
                Fallback::LeaveAbandoned => self.leave_abandoned().await,
            };
        };
        tracing::warn!(
            ours = ?self.ledger.state().cluster().map(|c| c.to_string()),
            winner = %winner,
            "a larger (or as large and older) cluster is reachable; leaving this one to merge into it"
        );
        self.leave_carrying().await
    }

    /// Leaves this node's cluster, carrying what it holds ([`merge::leave`]); true when it did.
    async fn leave_carrying(&mut self) -> bool {
        match merge::leave(&self.ledger).await {
            Ok(carried) => {
                self.carried = carried;
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot leave the cluster");
                false
            }
        }
    }

    /// Leaves a cluster that has had no working leader for [`LEADERLESS_GRACE`] when no other
    /// cluster is reachable and this node holds no vote in it (a learner or a follower): its
    /// voters may be gone for good (they left for another cluster and wiped their raft state),
    /// and waiting would keep this node out of any working cluster for ever. What it holds is
    /// carried as in a merge; outside any cluster it forms or joins one, and the leader left
    /// behind merges into it once that one has a leader.
    async fn leave_abandoned(&mut self) -> bool {
        tracing::warn!(
            cluster = ?self.ledger.state().cluster().map(|c| c.to_string()),
            "this node's cluster has had no working leader for {} s and no other cluster is \
             reachable; leaving it, carrying what it holds, to form or join a working one",
            LEADERLESS_GRACE.as_secs()
        );
        self.leave_carrying().await
    }

    /// Rejoins this node's own cluster when its leader's membership no longer holds it
    /// ([`merge::removed`]); true when it did. Nothing is carried: what this node holds of its
    /// cluster was written there, and the leader's log has all of it that committed. Its
    /// member record stays in the ledger, so it keeps its address (or gets it back when its
    /// lease expired meanwhile and the address is still free). A learner that never applied
    /// its cluster's first entry starts over instead, and searches as a new node does.
    async fn rejoin_if_removed(&mut self) -> bool {
        // A learner that never applied its cluster's first entry (cut off right after its
        // seat, its cluster since gone or merged away) has no cluster to ask about, and holds
        // nothing a voter's log does not: it starts over. Not a voter, whose log may hold
        // committed entries it has not applied yet, and whose seat a wipe would leave dead.
        if self.ledger.state().cluster().is_none() && !self.ledger.is_voter() {
            tracing::warn!(
                "this learner never applied its cluster's first entry and its leader is quiet \
                 or gone; resetting its raft state to search for a cluster again"
            );
            if let Err(e) = self.ledger.reset().await {
                tracing::error!(error = %e, "cannot reset the raft state to search again");
                return false;
            }
            self.pilot.forget_cluster();
            return true;
        }
        let Some(leader) = merge::removed(&self.ledger).await else {
            return false;
        };
        tracing::warn!(
            leader = %leader.1.peer_id,
            seatless = self.ledger.is_seatless(),
            "the cluster's leader no longer counts this node in its raft membership (it was \
             replaced while away, restored from an older backup, or cut off before its seat \
             committed); resetting its raft state and rejoining"
        );
        if let Err(e) = self.ledger.reset().await {
            tracing::error!(error = %e, "cannot reset the raft state to rejoin");
            return false;
        }
        self.pilot.forget_cluster();
        join(&self.ledger, leader).await;
        true
    }

    /// Renews this node's lease, or proposes its record, when the [`Pilot`] says it is due,
    /// from the state as it is now: the leader's duties may have just committed its first
    /// entry, and the record follows in the same round.
    async fn keep_record(&mut self) {
        let (clustered, record) = self.own_record();
        match self
            .pilot
            .keep_record(crate::clock::now(), clustered, record)
        {
            Some(Keep::Renew) => self.renew().await,
            Some(Keep::Record) => self.record().await,
            None => {}
        }
    }

    /// Asks the leader to renew this node's lease in its next renewals entry.
    async fn renew(&self) {
        if let Err(e) = self.ledger.renew_lease().await {
            tracing::debug!(error = %e, "lease renewal not taken");
        }
    }

    /// Proposes this node's member record, asking for the address it held last in the cluster
    /// it left last, when it was not configured with one.
    async fn record(&self) {
        let me = self.ledger.p2p().peer_key().to_string();
        let previous = self
            .carried
            .iter()
            .rev()
            .find_map(|c| c.members().get(&me).and_then(|m| m.address));
        record_self(&self.ledger, &self.facts, previous).await;
    }

    /// Outside any cluster: asks the admitted peers for their clusters, and joins the one the
    /// most answer from (the oldest of those as large, [`merge::cluster_to_join`]; only among
    /// those a machine the operator trusts leads when any is seen, [`merge::trusted_first`])
    /// through the leader they name (unless that leader, asked too, disowns the lead), or
    /// forms one when the [`Pilot`] says so ([`Pilot::searched`]: nobody has a cluster, or the
    /// clusters seen have named no usable leader for [`LEADERLESS_GRACE`]; no peer is behind
    /// the rotation; and this node is the lowest PeerId of its admitted peers not in a cluster
    /// and, for up to six formation waits, of every peer heard of and every member the peers
    /// asked name).
    async fn form_or_join(&mut self) {
        let ledger = &self.ledger;
        let p2p = ledger.p2p();
        let me = p2p.peer_id();
        let peers = p2p.peers();
        let (behind, vouching): (Vec<libp2p::PeerId>, Vec<libp2p::PeerId>) = peers
            .iter()
            .filter_map(|view| view.peer_id.parse().ok())
            .partition(|peer| p2p.is_behind(peer));
        let answers = service::ask_each(ledger, vouching).await;
        tracing::debug!(
            peers = peers.len(),
            answered = answers.len(),
            in_cluster = answers.iter().filter(|(_, h)| h.in_cluster).count(),
            with_leader = answers.iter().filter(|(_, h)| h.leader.is_some()).count(),
            "looking for a cluster"
        );
        let trusted = match ledger.operator() {
            Some(key) => {
                let shows = |peer: &libp2p::PeerId, hello: &super::raft::network::Hello| {
                    merge::shows_trust(key, peer, hello)
                };
                merge::trusted_led(&answers, &[], shows)
            }
            None => BTreeSet::new(),
        };
        let named = merge::trusted_first(usable_leaders(&answers, &me), &trusted);
        let chosen = merge::cluster_to_join(named);
        let in_cluster: Vec<String> = answers
            .iter()
            .filter(|(_, hello)| hello.in_cluster)
            .map(|(peer, _)| peer.to_string())
            .collect();
        let now = crate::clock::now();
        // The peers admitted now, not when the asking began: asking takes seconds on a busy
        // machine, and a lower peer admitted meanwhile may have formed a cluster already (two
        // clusters formed 2 s apart in a 50-node start, the second by a node that admitted the
        // first's founder while it asked the others).
        let admitted = p2p.peers();
        let me_text = me.to_string();
        // The peers asked may have admitted a lower member than this node has heard of: under
        // load its own mDNS answers come late, and a node that settled on the few it had heard
        // of formed a cluster beside the lowest's (four of nine clusters in a 100-node start).
        let heard = p2p.heard();
        let lowest_heard = answers
            .iter()
            .filter_map(|(_, hello)| hello.lowest_admitted.as_deref())
            .filter(|peer| peer.parse::<libp2p::PeerId>().is_ok())
            .chain(heard.lowest.as_deref())
            .filter(|peer| *peer != me_text)
            .min();
        let may_form = self.pilot.may_form(
            &me_text,
            admitted
                .iter()
                .map(|v| v.peer_id.as_str())
                .filter(|peer| !in_cluster.iter().any(|c| c == peer)),
            lowest_heard,
            now,
        );
        let found = Found {
            leader: chosen.is_some(),
            in_cluster: !in_cluster.is_empty(),
            behind: !behind.is_empty(),
            may_form,
        };
        match (self.pilot.searched(now, found), chosen) {
            (Search::Join, Some(leader)) => join(ledger, leader).await,
            (Search::Form, _) => form_alone(ledger, "no cluster found; forming one").await,
            _ => {}
        }
    }

    /// Once the member record is live: makes the ledger hold the role this node was started
    /// with and, when none is set yet, its role policy. A join declares both already; this
    /// covers a restart with changed settings.
    async fn declare(&mut self) {
        let me = self.ledger.p2p().peer_key().to_string();
        // Read and let go before proposing.
        let (fixed_role, deployed, policy_set) = {
            let state = self.ledger.state();
            let Some(member) = state
                .members()
                .get(&me)
                .filter(|m| m.lease == LeaseState::Live)
            else {
                return;
            };
            (member.fixed_role, member.deployed, state.policy_is_set())
        };
        if let Some(fixed) = self.facts.fixed_role
            && fixed_role != Some(fixed)
        {
            let command = Command::SetFixedRole {
                peer: me.clone(),
                role: Some(fixed),
                force: false,
            };
            match self.ledger.propose(command).await {
                Ok(Outcome::RoleDeployed) => tracing::warn!(
                    role = fixed.as_str(),
                    deployed = ?deployed.map(|r| r.as_str()),
                    "this node was started with another role than the one it deployed; it keeps \
                     the deployed role (change it with weft role set NODE ROLE --force)"
                ),
                Ok(Outcome::OperatorRole) => tracing::warn!(
                    role = fixed.as_str(),
                    "this node was started with another role than the one the operator signed \
                     for it; it keeps the operator's"
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "configured role not committed yet");
                    return;
                }
            }
        }
        if let Some(policy) = self.facts.policy
            && !policy_set
        {
            match self.ledger.propose(Command::InitRolePolicy(policy)).await {
                Ok(_) => {}
                // A mesh with an operator key: only the operator sets the policy.
                Err(e @ super::LedgerError::Operator(_)) => {
                    tracing::warn!(error = %e, "the configured role policy is not applied");
                }
                Err(e) => {
                    tracing::debug!(error = %e, "configured role policy not committed yet");
                    return;
                }
            }
        }
        self.pilot.mark_declared();
        self.ledger.mark_declared();
    }

    /// After a merge: re-proposes what the left clusters held and this one lacks, the oldest
    /// first, each by the rules of [`merge::readoption`].
    async fn readopt(&mut self) {
        if self.carried.is_empty() {
            return;
        }
        let me = self.ledger.p2p().peer_key().to_string();
        let mut total = 0;
        for carried in &self.carried {
            let state = self.ledger.state();
            let recorded = state
                .members()
                .get(&me)
                .is_some_and(|m| m.lease == LeaseState::Live);
            if state.cluster().is_none() || !recorded {
                return;
            }
            // A stale copy of this very cluster (left while its leader was lost, rejoined
            // since) holds nothing its log lacks, and would undo its deletions.
            if carried.cluster() == state.cluster() {
                continue;
            }
            let commands = merge::readoption(carried, &state, &me);
            drop(state);
            total += commands.len();
            if !readopt_all(&self.ledger, commands).await {
                return;
            }
        }
        tracing::info!(
            entries = total,
            "merge finished: the left clusters' entries are re-proposed"
        );
        merge::clear_carried(self.ledger.dir());
        self.carried.clear();
    }
}

/// Proposes each of `commands` (one carried state's re-proposals); false when one did not
/// commit and the rest waits for the next round.
async fn readopt_all(ledger: &Ledger, commands: Vec<Command>) -> bool {
    for command in commands {
        let place = match &command {
            Command::CarryKv { bucket, key, .. } => format!("{bucket}/{key}"),
            _ => String::new(),
        };
        let unsigned = match &command {
            Command::Operator(signed) => signed.command().ok(),
            _ => None,
        };
        match ledger.propose(command).await {
            Ok(Outcome::LedgerFull) => {
                tracing::warn!(
                    entry = %place,
                    "the ledger is full: a carried entry (or the value its deletion would \
                     displace) has no room and is left as it is"
                );
            }
            Ok(_) => {}
            // Written before the per-write limit existed: it can never commit now.
            Err(e @ super::LedgerError::TooLarge(_)) => {
                tracing::warn!(error = %e, "a carried entry is too large to re-propose; dropped");
            }
            // Unsigned where this mesh's leader needs the operator's signature, or signed where
            // it has no operator key (or another one): a signed command is tried once unsigned.
            Err(e @ super::LedgerError::Operator(_)) => {
                if let Some(inner) = unsigned {
                    match ledger.propose(inner).await {
                        Ok(_) => continue,
                        Err(super::LedgerError::Operator(_)) => {}
                        Err(e) => {
                            tracing::debug!(error = %e, "re-proposal after the merge not committed; retrying");
                            return false;
                        }
                    }
                }
                tracing::warn!(
                    error = %e,
                    "a carried operator command (a denial, a reservation, a role, the policy) \
                     is refused by this mesh's operator key, signed or not; dropped: make it \
                     again here"
                );
            }
            Err(e) => {
                tracing::debug!(error = %e, "re-proposal after the merge not committed; retrying");
                return false;
            }
        }
    }
    true
}

/// Leader duties: the first entry (a genesis, or the seed of a recovery), then voters up to
/// the target.
async fn lead(ledger: &Ledger, config: &LedgerConfig) {
    if ledger.state().cluster().is_none() {
        let first = match recover::load_seed(ledger.dir()) {
            Some(seed) => Command::Recover {
                cluster: seed.cluster,
                state: Box::new(seed.state),
            },
            None => Command::Genesis(ClusterId {
                created_at: ledger.wall_now(),
                id: crate::chance::Chance.next_u64(),
            }),
        };
        if let Err(e) = ledger.propose(first).await {
            tracing::debug!(error = %e, "first entry not committed yet");
        }
    }
    // A committed recovery's one entry holds the whole state, too large for an append: its seed
    // is kept until the log is folded into a snapshot (after a restart too).
    if recover::has_seed(ledger.dir()) && ledger.state().cluster().is_some() {
        match ledger.compact().await {
            Ok(()) => recover::clear_seed(ledger.dir()),
            Err(e) => {
                tracing::warn!(error = %e, "the recovered state is not in a snapshot yet; retrying")
            }
        }
    }
    if let Err(e) = service::promote(ledger, config.target_voters).await {
        tracing::debug!(error = %e, "voter promotion failed");
    }
}

/// Followers a leader short of voters asks per round whether they are in its cluster.
const RECRUIT_ASKED: usize = 3;

/// Asks the raft nodes that [`super::keyed`] says are due which operator key they run with.
/// When this leader has one, a node that runs without it, or with another, loses its seat
/// ([`seats`], unfit nodes). When it has none, it checks operator commands against the key
/// most of its voters answer with ([`Ledger::authority`]). The questions go out from a task of
/// their own in `asking`, so a node that does not answer holds up no duty; the answers land
/// in the ledger's table within [`service::HELLO_TIMEOUT`].
fn check_keys(ledger: &Ledger, asking: &mut tokio::task::JoinSet<()>) {
    while let Some(done) = asking.try_join_next() {
        if let Err(e) = done
            && e.is_panic()
        {
            tracing::error!(error = %e, "a question of operator keys panicked");
        }
    }
    let seated: Vec<String> = ledger
        .raft()
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .nodes()
        .map(|(_, node)| node.peer_id.clone())
        .collect();
    let raft: Vec<(String, u64)> = ledger
        .p2p()
        .peers()
        .iter()
        .filter(|peer| seated.contains(&peer.peer_id))
        .map(|peer| (peer.peer_id.clone(), peer.admitted_since))
        .collect();
    let due = {
        let mut keyed = ledger.keyed();
        keyed.keep_keys_of(&seated);
        keyed.due(crate::clock::now(), &raft)
    };
    let questions: Vec<(libp2p::PeerId, u64)> = due
        .iter()
        .filter_map(|(peer, question)| Some((peer.parse().ok()?, *question)))
        .collect();
    if questions.is_empty() {
        return;
    }
    let ledger = ledger.clone();
    asking.spawn(async move {
        let answers = service::ask_each(&ledger, questions.iter().map(|(peer, _)| *peer)).await;
        let now = crate::clock::now();
        // Read before the table is locked: a leader without a key of its own reads it there.
        let leader_key = ledger.authority();
        let mut keyed = ledger.keyed();
        for (peer, hello) in answers {
            let Some((_, question)) = questions.iter().find(|(p, _)| *p == peer) else {
                continue;
            };
            let key = hello.operator.as_deref();
            let differs = service::key_differs(leader_key.as_ref(), key);
            if differs && !keyed.keyless(&peer.to_string()) {
                tracing::warn!(
                    %peer,
                    "a raft node runs without this mesh's operator key, or with another: it \
                     loses its seat, a voter's once a ready learner can take it (start it with \
                     the same --operator-key)"
                );
            }
            keyed.answered(now, &peer.to_string(), *question, differs, key);
        }
        drop(keyed);
        if ledger.operator().is_some() {
            return;
        }
        let key = ledger.authority().map(|key| key.to_string());
        if ledger.keyed().adopted(key.as_deref()) {
            match key {
                Some(key) => tracing::warn!(
                    %key,
                    "this node runs without --operator-key, but most of its cluster's voters \
                     run with one: as their leader it checks operator commands, and seats, \
                     against that key (start it with the same --operator-key)"
                ),
                None => tracing::info!(
                    "no operator key is held by most of this leader's voters any more; it \
                     checks no operator command"
                ),
            }
        }
    });
}

/// Brings a follower into raft as a learner when [`Seats::wants_recruit`] says so; the
/// promotion in [`lead`] or the voter replacement then makes it a voter once it has caught up.
/// Nothing waits for that: while the learner catches up (for up to the learner timeout) the
/// rule counts it as coming. The candidate is the live, reachable follower with the lowest
/// PeerId among up to [`RECRUIT_ASKED`], drawn at random each round, that say they are in this
/// cluster.
async fn recruit(ledger: &Ledger, config: &LedgerConfig, seats: &Seats) {
    let _membership = ledger.membership_lock().await;
    // Asked again under the lock: the holder before may have handed this leader's seat over.
    if !service::leads_in_raft(ledger) {
        return;
    }
    let nodes = service::seat_nodes(ledger);
    let now = crate::clock::now();
    if !seats.wants_recruit(now, &nodes, config.target_voters, service::LEARNER_TIMEOUT) {
        return;
    }
    let reachable = ledger.reachable_peers();
    // Once the ledger adopted rules, a weft that does not read them would apply entries by
    // older ones: it gets no seat. Nor does a member the operator's trust list leaves out.
    let mut candidates: Vec<libp2p::PeerId> = {
        let state = ledger.state();
        state
            .members()
            .iter()
            .filter(|(peer, m)| {
                m.lease == LeaseState::Live
                    && reachable.contains(peer)
                    && !nodes.iter().any(|n| n.peer == **peer)
                    && state.may_seat(m.platform.commands)
                    && state.may_hold_seat(peer)
            })
            .filter_map(|(peer, _)| peer.parse::<libp2p::PeerId>().ok())
            .filter(|peer| !ledger.p2p().is_behind(peer))
            .collect()
    };
    // A few at random each round: the lowest PeerIds may stay in another cluster for a while.
    candidates.shuffle(&mut crate::chance::Chance);
    candidates.truncate(RECRUIT_ASKED);
    // A member of this state may follow another cluster: after a recovery, the survivors of
    // the old cluster are members here until they merge in. It must not become a learner of
    // this one while it follows that one.
    let ours = ledger.state().cluster();
    let answers = service::ask_each(ledger, candidates).await;
    // Nor a node without this mesh's operator key, which would take commands unchecked were
    // it to lead.
    let recruitable = |hello: &super::raft::network::Hello| {
        hello.cluster == ours && !service::operator_differs(ledger, hello.operator.as_deref())
    };
    let Some((candidate, hello)) = seats::pick_recruit(answers, recruitable) else {
        return;
    };
    let connected_voters = nodes.iter().filter(|n| n.voter && n.connected).count();
    tracing::info!(
        peer = %candidate,
        connected_voters,
        "voters are short; adding a follower as learner"
    );
    let node = super::raft::LedgerNode {
        peer_id: candidate.to_string(),
    };
    match tokio::time::timeout(
        JOIN_TIMEOUT,
        ledger.raft().add_learner(hello.node_id, node, false),
    )
    .await
    {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot add the follower as learner"),
        Err(_) => {
            tracing::warn!(peer = %candidate, "the new learner's seat did not commit in time")
        }
    }
}

/// Removes the learners not ready for `stale_learner_timeout`, and unfit ones
/// ([`Seats::stale_learners`]); in a round that removes none, replaces voters as
/// [`Seats::replacement`] says: unreachable for `voter_timeout`, denied, superseded or unfit
/// ones, by reachable learners, one for one; a denied voter no learner replaces loses its seat
/// outright.
async fn replace_voters(ledger: &Ledger, config: &LedgerConfig, seats: &mut Seats) {
    let _membership = ledger.membership_lock().await;
    // Asked again under the lock: the holder before may have handed this leader's seat over.
    if !service::leads_in_raft(ledger) {
        return;
    }
    // A voter change a leader left half done (it lost the lead between the two steps of
    // raft's joint consensus) is finished first: nothing else would move it, since the seat
    // rules read both voter sets as one, and while it stands no node is told a settled
    // membership, so none left out of it learns that it was (`merge::removed`). The ledger's
    // simulation found a cluster held so for good.
    let joint = ledger
        .raft()
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .get_joint_config()
        .clone();
    if let [_, .., last] = joint.as_slice() {
        tracing::info!(voters = ?last, "finishing a voter change a leader left half done");
        let by = tokio::time::Instant::now() + JOIN_TIMEOUT;
        match service::change_voters(ledger, last.clone(), by).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "finishing the voter change failed"),
            Err(_) => tracing::warn!("finishing the voter change not committed in time"),
        }
        return;
    }
    let nodes = service::seat_nodes(ledger);
    let now = crate::clock::now();
    let stale = seats.stale_learners(now, &nodes, config.stale_learner_timeout);
    if !stale.is_empty() {
        tracing::info!(
            ?stale,
            "removing learners not ready past the stale-learner timeout, or unfit"
        );
        let removed = tokio::time::timeout(
            JOIN_TIMEOUT,
            ledger.raft().change_membership(
                ChangeMembers::RemoveNodes(stale.into_iter().collect()),
                false,
            ),
        )
        .await;
        match removed {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "removing lagging learners failed"),
            Err(_) => tracing::warn!("removing lagging learners not committed in time"),
        }
        return;
    }
    let Some(change) = seats.replacement(now, &nodes, config.voter_timeout) else {
        return;
    };
    tracing::info!(
        dead = ?change.dropped,
        new_voters = ?change.voters,
        "replacing voters unreachable past the voter timeout, denied, superseded or unfit"
    );
    let by = tokio::time::Instant::now() + JOIN_TIMEOUT;
    match service::change_voters(ledger, change.voters, by).await {
        Ok(Ok(_)) => seats.replaced(&change.dropped),
        Ok(Err(e)) => tracing::warn!(error = %e, "voter replacement failed"),
        Err(_) => tracing::warn!("voter replacement not committed in time"),
    }
}

/// The live members and their renewal stamps, as [`Leases::expired`] takes them.
fn live_stamps(state: &LedgerState) -> Vec<(String, u64)> {
    state
        .members()
        .iter()
        .filter(|(_, m)| m.lease == LeaseState::Live)
        .map(|(peer, m)| (peer.clone(), m.renewed_at))
        .collect()
}

/// Commits the renewals this leader has queued, once a window has passed since it last did
/// ([`renewals`](super::renewals)), before the duties that may wait for the membership lock:
/// as one set of the member table when every live member reads sets, else (or when the table
/// changed before the set applied) by PeerId. A leader cut off from its quorum keeps them
/// queued; renewals that do not commit are not queued again (their members renew again a
/// renewal interval later).
async fn commit_renewals(ledger: &Ledger, config: &LedgerConfig) {
    if ledger.cut_off() {
        return;
    }
    let window = super::renewals::window(config.lease_timeout);
    let due = ledger.renewals().due(crate::clock::now(), window);
    if due.is_empty() {
        return;
    }
    let now = ledger.wall_now();
    let set = ledger.state().renewal_set(&due.concat(), now);
    if let Some(set) = set {
        match ledger.propose(set).await {
            // A member joined or was dropped between drawing the set and applying it: the
            // set renewed nobody, and a churn of members must not hold renewals back.
            Ok(Outcome::UnknownMember) => {
                ledger.renewal_entries.record(RenewalForm::VoidedSet);
                tracing::debug!("the member table changed under a renewal set; renewing by PeerId");
            }
            Ok(_) => {
                ledger.renewal_entries.record(RenewalForm::Set);
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "lease renewals not committed");
                return;
            }
        }
    }
    for peers in due {
        let renewals = Command::Renewals {
            peers,
            set: None,
            now,
        };
        match ledger.propose(renewals).await {
            Ok(_) => ledger.renewal_entries.record(RenewalForm::Peers),
            Err(e) => {
                tracing::debug!(error = %e, "lease renewals not committed");
                return;
            }
        }
    }
}

/// Expires the leases of live members this leader has neither seen renew nor reached for the
/// lease timeout ([`Leases`]).
async fn expire_leases(ledger: &Ledger, leases: &mut Leases) {
    let reachable = ledger.reachable_peers();
    // Read and let go of before proposing.
    let live = live_stamps(&ledger.state());
    let expired = leases.expired(
        &live,
        |peer| reachable.iter().any(|r| r == peer),
        crate::clock::now(),
    );
    for peer in expired {
        tracing::info!(%peer, "member neither renewed nor reachable for the lease timeout; expiring its lease");
        if let Err(e) = ledger.propose(Command::Expire { peer: peer.clone() }).await {
            tracing::debug!(%peer, error = %e, "lease expiry not committed");
        }
    }
}

/// Gives up the installs of expired members acting on their control-plane seats that this
/// leader has neither seen report again nor reached for the install timeout ([`Leases`], the
/// report's stamp as the renewal): their seats go to other members and their addresses are
/// freed. Only once every live member reads the command ([`ABANDON_FORM`]).
async fn abandon_installs(ledger: &Ledger, installs: &mut Leases) {
    let reachable = ledger.reachable_peers();
    let away = {
        let state = ledger.state();
        if !state.reads_form(ABANDON_FORM) {
            return;
        }
        away_while_acting(&state)
    };
    let abandoned = installs.expired(
        &away,
        |peer| reachable.iter().any(|r| r == peer),
        crate::clock::now(),
    );
    for peer in abandoned {
        tracing::warn!(
            %peer,
            "member away for the install timeout while installing its control-plane seat; \
             giving the install up, and the seat to another member"
        );
        let command = Command::AbandonInstall { peer: peer.clone() };
        if let Err(e) = ledger.propose(command).await {
            tracing::debug!(%peer, error = %e, "giving up an install not committed");
        }
    }
}

/// Moves the ledger to the newest rules of this weft that every raft node reads
/// ([`Command::AdoptRules`], `ledger/state/rules.rs`).
async fn adopt_rules(ledger: &Ledger) {
    let status = ledger.status();
    let raft = status.voters.iter().chain(&status.learners);
    let Some(command) = ledger.state().rules_to_adopt(raft) else {
        return;
    };
    tracing::info!(
        ?command,
        "every raft node reads the ledger's newer rules; adopting them"
    );
    if let Err(e) = ledger.propose(command).await {
        tracing::debug!(error = %e, "adopting the ledger's rules not committed");
    }
}

/// The expired members still acting on their seats, each with its report's stamp.
fn away_while_acting(state: &LedgerState) -> Vec<(String, u64)> {
    state
        .members()
        .iter()
        .filter(|(_, m)| m.lease == LeaseState::Expired && m.acting_on().is_some())
        .filter_map(|(peer, m)| Some((peer.clone(), m.bootstrap.as_ref()?.at)))
        .collect()
}

/// Proposes this node's member record, asking for the configured address, else `previous`
/// (the one it held in a cluster it left in a merge).
async fn record_self(ledger: &Ledger, facts: &MemberFacts, previous: Option<Ipv4Addr>) {
    let command = Command::Join {
        peer: ledger.p2p().peer_key().to_string(),
        hostname: facts.hostname.clone(),
        sealing_key: facts.sealing_key,
        endpoints: Vec::new(),
        requested: facts.requested.or(previous),
        now: ledger.wall_now(),
        fixed_role: facts.fixed_role,
        policy: facts.policy,
        bootstraps: facts.bootstraps,
        platform: Platform::here(),
    };
    match ledger.propose(command).await {
        Ok(Outcome::MembersFull) => tracing::warn!(
            limit = super::state::MAX_MEMBERS,
            "the ledger holds as many member records as it may and none has expired: this node \
             is not recorded; remove members that left for good (`weft members rm`)"
        ),
        Ok(outcome) => tracing::info!(?outcome, "member record committed"),
        Err(e) => tracing::debug!(error = %e, "member record not committed yet"),
    }
}

/// The clusters and leaders that answering peers name, as [`merge::cluster_to_join`] takes
/// them, less the leaders named from a stale view (a learner whose leader left its cluster):
/// this node itself, which leads no cluster, and a leader whose own answer, from its own
/// PeerId, does not claim the lead. Only the leader's own answer disowns it, so no peer can
/// steer joiners away from a leader by answering in its name.
fn usable_leaders(
    answers: &[(libp2p::PeerId, crate::ledger::raft::network::Hello)],
    me: &libp2p::PeerId,
) -> Vec<(Option<ClusterId>, follower::Leader)> {
    answers
        .iter()
        .filter(|(_, hello)| hello.in_cluster)
        .filter_map(|(_, hello)| Some((hello.cluster, hello.leader.clone()?)))
        .filter(|(_, (_, leader))| {
            leader.peer_id != me.to_string() && !disowned(answers, &leader.peer_id)
        })
        .collect()
}

/// Whether peer `leader` answered among `answers` without naming itself as a leader: it leads
/// nobody (it lost its voters, or an election moved on), whatever others say of it.
fn disowned(
    answers: &[(libp2p::PeerId, crate::ledger::raft::network::Hello)],
    leader: &str,
) -> bool {
    answers.iter().any(|(peer, hello)| {
        peer.to_string() == leader
            && hello
                .leader
                .as_ref()
                .is_none_or(|(_, named)| named.peer_id != leader)
    })
}

/// Asks `leader` to take this node into its cluster, as a raft member or a follower. On
/// failure the leader heard of is forgotten: it may be gone, and the next feed names the
/// current one.
async fn join(ledger: &Ledger, chosen: follower::Leader) {
    let Ok(peer) = chosen.1.peer_id.parse() else {
        ledger.replica().reset();
        return;
    };
    // As a learner this node replays memberships older than the leader's seat: it takes the
    // chosen leader's appends while that leader takes it in, unless it is taken in as a
    // follower.
    ledger.vouch(&chosen, true);
    let leader = chosen.1.clone();
    let request = LedgerRpc::Join {
        node_id: ledger.node_id(),
        node: ledger.node(),
        operator: ledger.operator().map(ToString::to_string),
        form: super::state::COMMAND_FORM,
        follows: true,
    };
    tracing::info!(leader = %leader.peer_id, "joining the cluster");
    // Not connected to the leader, this node sends its join through a member that is, and then
    // fetches the state from a raft node the leader names ([`Joined::Follows`]); from a leader
    // of an earlier weft, which names none, from the member.
    let until = tokio::time::Instant::now() + JOIN_TIMEOUT;
    // Through the voters this node knows, if any (none from outside every cluster).
    let answer = forward::call_or_forward::<Result<Joined, String>>(
        ledger.p2p(),
        peer,
        &request,
        &ledger.status().voters,
        until,
    )
    .await;
    match answer {
        Ok((Ok(Joined::Member), _)) => {
            tracing::info!("joined the cluster as a raft member");
            return;
        }
        Ok((Ok(Joined::Follower), source)) => {
            // No raft seat to replay memberships in. Any other answer may come after the
            // leader made this node a learner (a catch-up that outlasted the wait), so the
            // vouch stays for this raft instance then.
            ledger.vouch(&chosen, false);
            match ledger.follow(source).await {
                Ok(()) if source == peer => {
                    tracing::info!("joined the cluster as a follower");
                    return;
                }
                Ok(()) => {
                    tracing::info!(via = %source, "joined the cluster as a follower, through a member that reaches the leader");
                    return;
                }
                Err(e) => tracing::info!(error = %e, "cannot follow the cluster yet; retrying"),
            }
        }
        Ok((Ok(Joined::Follows { raft }), via)) => {
            ledger.vouch(&chosen, false);
            match follow_raft(ledger, &raft, via).await {
                Ok(from) => {
                    tracing::info!(%via, %from, "joined the cluster as a follower, through a member that reaches the leader");
                    return;
                }
                Err(e) => tracing::info!(error = %e, "cannot follow the cluster yet; retrying"),
            }
        }
        Ok((Err(e), _)) => tracing::info!(error = %e, "the leader refused the join; retrying"),
        Err(e) => tracing::debug!(error = %e, "join request failed; retrying"),
    }
    ledger.replica().reset();
}

/// Fetches the state for a node taken in through member `via` from one of the raft nodes
/// `raft` the leader named ([`forward::sources`]), answering the one it fetched it from; dials
/// those it is not connected to that `sources` keeps, for the next attempt.
async fn follow_raft(
    ledger: &Ledger,
    raft: &[String],
    via: libp2p::PeerId,
) -> Result<libp2p::PeerId, String> {
    let p2p = ledger.p2p();
    let (reachable, unreached) = forward::sources(raft, via, |peer| p2p.is_admitted(peer));
    for peer in &unreached {
        p2p.connect(*peer).await;
    }
    let mut why = format!(
        "none of the {} raft nodes the leader named is connected; dialling {}",
        raft.len(),
        unreached.len()
    );
    for peer in reachable {
        match ledger.follow(peer).await {
            Ok(()) => return Ok(peer),
            Err(e) => why = format!("fetching the state from raft node {peer}: {e}"),
        }
    }
    Err(why)
}

/// Initialises a cluster with this node as its only voter.
async fn form_alone(ledger: &Ledger, why: &str) {
    tracing::info!("{why}");
    let voters = BTreeMap::from([(ledger.node_id(), ledger.node())]);
    if let Err(e) = ledger.raft().initialize(voters).await {
        tracing::warn!(error = %e, "cannot initialise the cluster");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_is_skipped_only_on_its_own_word_or_when_it_is_this_node() {
        use crate::ledger::raft::LedgerNode;
        use crate::ledger::raft::network::Hello;
        let [me, leader, other] = [(); 3].map(|_| libp2p::PeerId::random());
        let names = |leader: &libp2p::PeerId, id: u64| {
            Some((
                id,
                LedgerNode {
                    peer_id: leader.to_string(),
                },
            ))
        };
        let hello = |node_id: u64, leader: Option<(u64, LedgerNode)>| Hello {
            node_id,
            in_cluster: true,
            cluster: None,
            leader,
            members: Vec::new(),
            operator: None,
            lowest_admitted: None,
            trust: None,
        };
        let named = |answers: &[(libp2p::PeerId, Hello)]| {
            usable_leaders(answers, &me)
                .into_iter()
                .map(|(_, (_, node))| node.peer_id)
                .collect::<Vec<_>>()
        };
        // A peer naming the leader, and another answering under the leader's node id without
        // claiming the lead: the leader stays usable.
        let forged = [
            (other, hello(2, names(&leader, 1))),
            (other, hello(1, None)),
        ];
        assert_eq!(named(&forged), vec![leader.to_string()]);
        // The leader's own answer, from its PeerId, names no leader: it is not joined through.
        let disowned = [
            (other, hello(2, names(&leader, 1))),
            (leader, hello(1, None)),
        ];
        assert!(named(&disowned).is_empty());
        // The leader confirms itself: usable.
        let confirmed = [(leader, hello(1, names(&leader, 1)))];
        assert_eq!(named(&confirmed), vec![leader.to_string()]);
        // A peer naming this node as its leader has a stale view.
        assert!(named(&[(other, hello(2, names(&me, 9)))]).is_empty());
    }

    #[test]
    fn a_first_node_id_is_new_or_the_one_an_earlier_weft_kept() {
        let dir = tempfile::tempdir().unwrap();
        let drawn = first_node_id(dir.path()).unwrap();
        assert_ne!(drawn, 0);
        assert_ne!(first_node_id(dir.path()).unwrap(), drawn, "drawn anew");
        std::fs::write(dir.path().join(NODE_ID_FILE), "42\n").unwrap();
        assert_eq!(first_node_id(dir.path()).unwrap(), 42);
        // Once the database holds it, the file goes, and only once.
        forget_node_id_file(dir.path()).unwrap();
        assert!(!dir.path().join(NODE_ID_FILE).exists());
        forget_node_id_file(dir.path()).unwrap();
    }

    #[test]
    fn a_corrupt_node_id_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(NODE_ID_FILE), "banana").unwrap();
        assert!(first_node_id(dir.path()).is_err());
    }
}
