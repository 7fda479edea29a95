//! The autopilot's decisions, pure and time-injected (quinn-proto's shape): which of its duties
//! are due at a tick, and what to do with what its questions found. The autopilot
//! ([`super::autopilot`]) reads the node's state into [`Seen`] at each tick, calls
//! [`Pilot::tick`], carries out the [`Duty`]s in order (asking peers, proposing, joining), and
//! hands back what it learnt ([`Pilot::doubt`], [`Pilot::fallback`], [`Pilot::searched`]).
//! Nothing here touches the network, the ledger or a clock, so the timing rules are tested over
//! thousands of random event orders in simulated time.
//!
//! Outside a cluster, at every tick: a recovery seed forms a cluster at once; a leader whose
//! feed reached this node is asked to take it in (at once, then ever more rarely up to every
//! [`JOIN_RETRY_MAX`]); otherwise, once the node has listened long enough
//! ([`super::formation`]) or carries a left cluster's state, it asks its peers for a cluster
//! every [`SEARCH_INTERVAL`], and joins what they name, waits, or forms one ([`Search`]).
//!
//! In a cluster, a round runs every [`ROUND`]: the leader's duties (a new leadership starts its
//! timers fresh); a question to a leader whose feed went quiet (every [`PROBE_INTERVAL`] at
//! most); a merge check every [`MERGE_CHECK`]; the member record, proposed every
//! [`RECORD_RETRY`] while the state lacks it, and the lease, renewed a third of the lease
//! timeout after the node last saw its renewal stamp change; then the configured role, and the
//! re-proposal of what merges carried.
//!
//! Doubt: a node whose own record has not changed for a lease timeout and a renewal interval
//! (it is "frozen": the leader it names does not serve it) asks that leader, at most once per
//! such patience while it confirms, whether it still leads. A cluster that has had no working
//! leader for [`LEADERLESS_GRACE`] is abandoned: a voter then asks whether it was removed, a
//! frozen learner or follower leaves it ([`Fallback`]).

use std::time::{Duration, Instant};

use super::formation::Listening;
use super::lease::Leases;
use super::state::PeerKey;
use crate::p2p::pacer::Pacer;

/// How often a node re-proposes its member record while the ledger lacks it.
pub const RECORD_RETRY: Duration = Duration::from_secs(3);
/// How often a member asks admitted peers outside its ledger (or silent in it) which cluster
/// they belong to.
pub const MERGE_CHECK: Duration = Duration::from_secs(5);
/// How long a cluster may be without a leader before its members count it as lost (quorum
/// gone) and join any cluster with a leader: longer than any election.
pub const LEADERLESS_GRACE: Duration = Duration::from_secs(15);
/// How often a follower asks a quiet leader whether it still leads, at most.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(10);
/// How often the autopilot runs while this node is outside a cluster: a formation or a join
/// waits for it.
pub const LISTEN_TICK: Duration = Duration::from_millis(250);
/// The longest gap between joins tried through a leader heard of but not reachable.
pub const JOIN_RETRY_MAX: Duration = Duration::from_secs(4);
/// How often a member runs its round (record, lease, leadership, merge checks): on the first
/// tick at least this long after the last, less half a tick, so that a tick handled late does
/// not push the round to the next one.
pub const ROUND: Duration = Duration::from_secs(1);
/// How often a node outside any cluster asks its peers for one (a leader's feed, when it
/// arrives, answers sooner).
pub const SEARCH_INTERVAL: Duration = Duration::from_secs(3);

/// How often a member renews its lease: a third of the lease timeout (at least a second), so a
/// lease goes stale only after three missed renewals.
pub fn renew_interval(lease_timeout: Duration) -> Duration {
    (lease_timeout / 3).max(Duration::from_secs(1))
}

/// How long a live member may go unseen renewing before a merge check counts it silent: a lease
/// timeout, a renewal interval and a merge check's gap between two looks.
pub fn silence(lease_timeout: Duration) -> Duration {
    lease_timeout + renew_interval(lease_timeout) + MERGE_CHECK
}

/// What the autopilot sees of this node at a tick.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    /// Whether this node is in a cluster (a raft member or a follower).
    pub in_cluster: bool,
    /// How many peers it has heard of (discovered, admitted or not).
    pub heard: usize,
    /// Whether a recovery seed waits in its state directory.
    pub seed: bool,
    /// Whether a leader's feed reached it while outside a cluster.
    pub heard_leader: bool,
    /// Whether it carries the state of clusters it left, not yet re-proposed.
    pub carrying: bool,
    /// Whether raft says this node leads.
    pub leads: bool,
    /// Whether the leader it follows has been quiet long enough to be asked.
    pub quiet_leader: bool,
    /// Whether its state holds a cluster (the first entry applied).
    pub clustered: bool,
    /// Its own live record's renewal stamp as the state shows it; `None` without a live record
    /// under its hostname and platform.
    pub record: Option<u64>,
}

/// What the autopilot is to do now, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duty {
    /// Form a one-voter cluster from the recovery seed.
    FormFromSeed,
    /// Ask the leader whose feed reached this node to take it in.
    JoinHeard,
    /// Ask the admitted peers for their clusters; hand what they said to [`Pilot::searched`].
    Search,
    /// The leader's duties: the first entry, promotions, recruiting, voter replacement, lease
    /// expiry. `fresh`: this leadership just began, so its timers start afresh.
    Lead { fresh: bool },
    /// Ask the quiet leader whether it still leads.
    ProbeLeader,
    /// Look for a better cluster. `ask_leader`: this node is frozen, so it first asks whether
    /// its leader still counts it and still leads; hand the answers to [`Pilot::doubt`].
    CheckMerge { ask_leader: bool },
    /// Renew the lease.
    Renew,
    /// Propose the member record.
    Record,
    /// Make the ledger hold the configured role and policy; report success with
    /// [`Pilot::declared`].
    Declare,
    /// Re-propose what the clusters left in merges held.
    Readopt,
}

/// What a search of admitted peers found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// A cluster with a leader to join through was chosen.
    pub leader: bool,
    /// Some peer answered from a cluster.
    pub in_cluster: bool,
    /// Some peer is not yet on this node's token (a rotation).
    pub behind: bool,
    /// This node is the one to form a cluster ([`Listening::may_form`]).
    pub may_form: bool,
}

/// What to do after a search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Search {
    /// Join the chosen cluster through its leader.
    Join,
    /// Form a cluster.
    Form,
    /// Do nothing yet.
    Wait,
}

/// What a node does when its merge check found no better cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    Stay,
    /// Ask whether the cluster's leader still counts this voter, and rejoin if not.
    RejoinIfRemoved,
    /// Leave the abandoned cluster, carrying its state, to form or join another.
    LeaveAbandoned,
}

/// The autopilot's memory between ticks.
#[derive(Debug)]
pub struct Pilot {
    lease_timeout: Duration,
    /// What this node heard while outside a cluster: when it may look for one.
    listening: Listening,
    /// When to try again to join through a leader heard of: at once, then ever more rarely
    /// while this node stays outside (a leader heard through gossip may not be reachable).
    join_retry: Pacer,
    last_search: Option<Instant>,
    /// Since when, outside any cluster, this node sees a cluster that names no leader it can
    /// join through.
    blocked_since: Option<Instant>,
    last_round: Option<Instant>,
    /// Whether this node led at its last round.
    leading: bool,
    last_probe: Option<Instant>,
    last_merge_check: Option<Instant>,
    /// This node's own record as its state last showed it, and since when it shows that.
    record_seen: Option<(Option<u64>, Instant)>,
    /// This node's renewal stamp as it last saw it change, and when.
    renewal_seen: Option<(u64, Instant)>,
    last_renew_attempt: Option<Instant>,
    last_record_attempt: Option<Instant>,
    /// When the leader this node names last confirmed it leads, asked because this node was
    /// frozen.
    confirmed_at: Option<Instant>,
    /// Since when this node's cluster has had no working leader, as the merge checks saw it.
    leaderless_since: Option<Instant>,
    /// The members this node has seen renew (on any node, leading or not): a member recorded
    /// live that stopped renewing may have left for another cluster.
    renewing: Leases,
    /// Whether the configured role and policy are in the ledger (once per start: an
    /// operator's later `weft role set` is not undone).
    declared: bool,
}

impl Pilot {
    /// A node starting at `now`, listening for a cluster for `formation_wait` (or until quiet
    /// for `formation_quiet`), with leases of `lease_timeout`.
    pub fn new(
        now: Instant,
        lease_timeout: Duration,
        formation_wait: Duration,
        formation_quiet: Option<Duration>,
    ) -> Self {
        Pilot {
            lease_timeout,
            listening: Listening::new(now, formation_wait, formation_quiet),
            join_retry: Pacer::new(LISTEN_TICK, JOIN_RETRY_MAX, now),
            last_search: None,
            blocked_since: None,
            last_round: None,
            leading: false,
            last_probe: None,
            last_merge_check: None,
            record_seen: None,
            renewal_seen: None,
            last_renew_attempt: None,
            last_record_attempt: None,
            confirmed_at: None,
            leaderless_since: None,
            renewing: Leases::new(silence(lease_timeout)),
            declared: false,
        }
    }

    /// The duties due at `now`, in the order to carry them out. A merge check that moved this
    /// node ends the tick: what follows it is for the cluster it left.
    pub fn tick(&mut self, now: Instant, seen: &Seen) -> Vec<Duty> {
        if !seen.in_cluster {
            return self.outside(now, seen);
        }
        self.join_retry.reset(now);
        self.blocked_since = None;
        if self
            .last_round
            .is_some_and(|at| now.saturating_duration_since(at) < ROUND - LISTEN_TICK / 2)
        {
            return Vec::new();
        }
        self.last_round = Some(now);
        let mut duties = Vec::new();
        if seen.leads {
            duties.push(Duty::Lead {
                fresh: !self.leading,
            });
        }
        self.leading = seen.leads;
        if seen.quiet_leader && elapsed(self.last_probe, now, PROBE_INTERVAL) {
            self.last_probe = Some(now);
            duties.push(Duty::ProbeLeader);
        }
        if self.record_seen.is_none_or(|(was, _)| was != seen.record) {
            self.record_seen = Some((seen.record, now));
        }
        if elapsed(self.last_merge_check, now, MERGE_CHECK) {
            self.last_merge_check = Some(now);
            let ask_leader = self.frozen(now)
                && self
                    .confirmed_at
                    .is_none_or(|at| now.saturating_duration_since(at) > self.patience());
            duties.push(Duty::CheckMerge { ask_leader });
        }
        if seen.clustered {
            duties.extend(self.record_duty(now, seen.record));
        }
        if !self.declared {
            duties.push(Duty::Declare);
        }
        if seen.carrying {
            duties.push(Duty::Readopt);
        }
        duties
    }

    fn outside(&mut self, now: Instant, seen: &Seen) -> Vec<Duty> {
        // What was seen of a cluster this node is no longer in says nothing of the next.
        self.forget_cluster();
        self.listening.observe(seen.heard, now);
        if seen.seed {
            return vec![Duty::FormFromSeed];
        }
        if seen.heard_leader {
            // A leader's feed reached this node: there is a cluster to join, no need to ask.
            return if self.join_retry.due(now) {
                vec![Duty::JoinHeard]
            } else {
                Vec::new()
            };
        }
        if (seen.carrying || self.listening.settled(now))
            && elapsed(self.last_search, now, SEARCH_INTERVAL)
        {
            self.last_search = Some(now);
            return vec![Duty::Search];
        }
        Vec::new()
    }

    /// Renewing the lease or proposing the record, when due.
    fn record_duty(&mut self, now: Instant, record: Option<u64>) -> Option<Duty> {
        let Some(stamp) = record else {
            if !elapsed(self.last_record_attempt, now, RECORD_RETRY) {
                return None;
            }
            self.last_record_attempt = Some(now);
            return Some(Duty::Record);
        };
        // Timed by this node's monotonic clock from when it saw its stamp change (a join, a
        // renewal), never by comparing wall clocks.
        let interval = renew_interval(self.lease_timeout);
        let old = match self.renewal_seen {
            Some((was, at)) if was == stamp => now.saturating_duration_since(at) >= interval,
            // Just started: renew at once, the node may have been away for long.
            None => true,
            Some(_) => {
                self.renewal_seen = Some((stamp, now));
                false
            }
        };
        if !old || !elapsed(self.last_renew_attempt, now, interval) {
            return None;
        }
        self.last_renew_attempt = Some(now);
        self.renewal_seen = Some((stamp, now));
        Some(Duty::Renew)
    }

    /// Whether the configured role and policy are in the ledger now.
    pub fn declared(&mut self) {
        self.declared = true;
    }

    /// Whether `peers` may form a cluster with this node (`me`) at `now` ([`Listening::may_form`]).
    pub fn may_form<'a>(
        &self,
        me: &str,
        admitted: impl IntoIterator<Item = &'a str>,
        lowest_heard: Option<&str>,
        now: Instant,
    ) -> bool {
        self.listening.may_form(me, admitted, lowest_heard, now)
    }

    /// What to do with what a search found at `now`. A cluster that names no leader to join
    /// through is electing one, so this node waits, though not for ever: a cluster whose voters
    /// all left never elects one again, and after [`LEADERLESS_GRACE`] the peers still looking
    /// form a new cluster, which that cluster's members merge into. Peers not yet on this
    /// node's token may well be in a cluster: their word is not taken, but forming a second
    /// cluster beside them would split the mesh, so it waits until they move.
    pub fn searched(&mut self, now: Instant, found: Found) -> Search {
        if found.leader {
            self.blocked_since = None;
            return Search::Join;
        }
        if !found.in_cluster {
            self.blocked_since = None;
        } else {
            let since = *self.blocked_since.get_or_insert(now);
            if now.saturating_duration_since(since) < LEADERLESS_GRACE {
                return Search::Wait;
            }
        }
        if found.behind || !found.may_form {
            return Search::Wait;
        }
        Search::Form
    }

    /// Takes a merge check's view of the leader at `now`: whether the cluster has no working
    /// leader, and, when the node asked ([`Duty::CheckMerge`]), whether its leader confirmed
    /// it leads. Answers whether the cluster is abandoned: without a working leader for
    /// [`LEADERLESS_GRACE`].
    pub fn doubt(&mut self, now: Instant, leaderless: bool, confirms: Option<bool>) -> bool {
        if let Some(confirms) = confirms {
            self.confirmed_at = confirms.then_some(now);
        }
        let leaderless = leaderless || confirms == Some(false);
        self.leaderless_since = leaderless.then(|| self.leaderless_since.unwrap_or(now));
        self.leaderless_since
            .is_some_and(|since| now.saturating_duration_since(since) >= LEADERLESS_GRACE)
    }

    /// The live members (PeerId and renewal stamp) not seen renewing for [`silence`] at `now`:
    /// they may have left for another cluster. This node (`me`) and the leader it names are
    /// not judged by what this node sees of them.
    pub fn silent(
        &mut self,
        now: Instant,
        live: &[(PeerKey, u64)],
        me: &str,
        leader: Option<&str>,
    ) -> Vec<PeerKey> {
        self.renewing
            .expired(live, |_| false, now)
            .into_iter()
            .filter(|peer| peer != me && Some(peer.as_str()) != leader)
            .collect()
    }

    /// What a node whose merge check found no better cluster does at `now`: nothing unless
    /// its cluster is `abandoned`; then a `voter` asks whether it was removed, and a frozen
    /// learner or follower leaves. A learner catching up, or a follower waiting for its
    /// leader's next word, is not frozen, and a partition shorter than the grace changes
    /// nothing.
    pub fn fallback(&self, now: Instant, abandoned: bool, voter: bool) -> Fallback {
        if !abandoned {
            Fallback::Stay
        } else if voter {
            Fallback::RejoinIfRemoved
        } else if self.frozen(now) {
            Fallback::LeaveAbandoned
        } else {
            Fallback::Stay
        }
    }

    /// Forgets the timers kept of this node's cluster: it left it (a merge, a reset).
    pub fn forget_cluster(&mut self) {
        self.leaderless_since = None;
        self.record_seen = None;
        self.confirmed_at = None;
        self.leading = false;
        self.renewing = Leases::new(silence(self.lease_timeout));
    }

    /// How long this node's own record may stay unchanged before it doubts its leader: a lease
    /// timeout and a renewal interval.
    fn patience(&self) -> Duration {
        self.lease_timeout + renew_interval(self.lease_timeout)
    }

    /// Whether this node's own record has not changed in its state for [`Pilot::patience`]: the
    /// leader it names does not serve it. A raft learner or a feed follower whose leader left
    /// the cluster (merged into another) keeps naming that leader, and no election tells it
    /// otherwise.
    fn frozen(&self, now: Instant) -> bool {
        self.record_seen
            .is_some_and(|(_, at)| now.saturating_duration_since(at) > self.patience())
    }
}

/// Whether `every` has passed at `now` since `last` (or it never happened).
fn elapsed(last: Option<Instant>, now: Instant, every: Duration) -> bool {
    last.is_none_or(|at| now.saturating_duration_since(at) >= every)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// The longest gap between two ticks in the simulation (a tick whose work took long).
    const MAX_STEP: Duration = Duration::from_secs(3);

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_node_outside_a_cluster_listens_then_searches_every_interval() {
        let start = Instant::now();
        let mut pilot = Pilot::new(start, secs(60), secs(5), None);
        let outside = Seen::default();
        assert!(pilot.tick(start, &outside).is_empty(), "still listening");
        assert_eq!(pilot.tick(start + secs(5), &outside), vec![Duty::Search]);
        assert!(pilot.tick(start + secs(7), &outside).is_empty());
        assert_eq!(pilot.tick(start + secs(8), &outside), vec![Duty::Search]);
        let seed = Seen {
            seed: true,
            ..Seen::default()
        };
        assert_eq!(pilot.tick(start + secs(9), &seed), vec![Duty::FormFromSeed]);
    }

    #[test]
    fn a_new_member_records_itself_declares_and_checks_for_merges_at_its_first_round() {
        let start = Instant::now();
        let mut pilot = Pilot::new(start, secs(60), secs(5), None);
        let member = Seen {
            in_cluster: true,
            clustered: true,
            ..Seen::default()
        };
        assert_eq!(
            pilot.tick(start, &member),
            vec![
                Duty::CheckMerge { ask_leader: false },
                Duty::Record,
                Duty::Declare
            ]
        );
        assert!(
            pilot.tick(start + LISTEN_TICK, &member).is_empty(),
            "one round a second"
        );
        pilot.declared();
        let leader = Seen {
            leads: true,
            record: Some(7),
            ..member
        };
        assert_eq!(
            pilot.tick(start + ROUND, &leader),
            vec![Duty::Lead { fresh: true }, Duty::Renew]
        );
        assert_eq!(
            pilot.tick(start + ROUND * 2, &leader),
            vec![Duty::Lead { fresh: false }]
        );
    }

    #[test]
    fn a_cluster_is_abandoned_after_the_grace_without_a_leader_and_only_a_frozen_non_voter_leaves()
    {
        let start = Instant::now();
        let mut pilot = Pilot::new(start, secs(30), secs(5), None);
        let member = Seen {
            in_cluster: true,
            clustered: true,
            record: Some(1),
            ..Seen::default()
        };
        pilot.tick(start, &member);
        assert!(!pilot.doubt(start, true, None));
        assert!(!pilot.doubt(start + LEADERLESS_GRACE - secs(1), true, None));
        assert!(pilot.doubt(start + LEADERLESS_GRACE, true, None));
        let late = start + LEADERLESS_GRACE;
        assert_eq!(pilot.fallback(late, true, true), Fallback::RejoinIfRemoved);
        assert_eq!(
            pilot.fallback(late, true, false),
            Fallback::Stay,
            "not frozen"
        );
        let frozen = start + secs(30) + renew_interval(secs(30)) + secs(1);
        assert_eq!(
            pilot.fallback(frozen, true, false),
            Fallback::LeaveAbandoned
        );
        assert!(!pilot.doubt(frozen, false, Some(true)), "a leader again");
    }

    #[test]
    fn a_search_waits_out_a_leaderless_cluster_and_never_forms_beside_peers_behind() {
        let start = Instant::now();
        let mut pilot = Pilot::new(start, secs(60), secs(5), None);
        let blocked = Found {
            leader: false,
            in_cluster: true,
            behind: false,
            may_form: true,
        };
        assert_eq!(pilot.searched(start, blocked), Search::Wait);
        assert_eq!(
            pilot.searched(start + LEADERLESS_GRACE - secs(1), blocked),
            Search::Wait
        );
        assert_eq!(
            pilot.searched(start + LEADERLESS_GRACE, blocked),
            Search::Form
        );
        let behind = Found {
            behind: true,
            ..blocked
        };
        assert_eq!(
            pilot.searched(start + LEADERLESS_GRACE, behind),
            Search::Wait
        );
        let leader = Found {
            leader: true,
            ..behind
        };
        assert_eq!(pilot.searched(start, leader), Search::Join);
    }

    /// A node's life in simulated time around a [`Pilot`]: it joins and leaves clusters, leads
    /// and stops leading, its record comes and goes, renewals commit or not, leaders go quiet,
    /// searches and merge checks find this or that; ticks come every quarter second or late.
    /// Every answer is checked against the rules, with the checker's own memory.
    struct World {
        rng: StdRng,
        start: Instant,
        now: Instant,
        pilot: Pilot,
        seen: Seen,
        lease_timeout: Duration,
        formation_wait: Duration,
        /// The stamp the next committed renewal writes.
        next_stamp: u64,
        /// Whether the cluster has a working leader, as a merge check sees it.
        leaderless: bool,
        declared: bool,
        // What the checks remember.
        /// Since when the node has been inside (or outside) a cluster without a break.
        stretch_since: Instant,
        last_round: Option<Instant>,
        /// Whether the node led at its last round.
        led: bool,
        last_join_heard: Option<Instant>,
        join_wanted_since: Option<Instant>,
        last_search: Option<Instant>,
        search_wanted_since: Option<Instant>,
        last_probe: Option<Instant>,
        last_merge_check: Option<Instant>,
        /// Since when the record has been what it is, as the ticks inside a cluster saw it.
        record_since: Option<(Option<u64>, Instant)>,
        last_confirmed: Option<Instant>,
        last_renew: Option<Instant>,
        /// The record's stamp and since when this node has waited to renew it.
        renew_wanted_since: Option<(u64, Instant)>,
        last_record: Option<Instant>,
        record_wanted_since: Option<Instant>,
        blocked_since: Option<Instant>,
        leaderless_since: Option<Instant>,
    }

    impl World {
        fn new(seed: u64) -> Self {
            let mut rng = StdRng::seed_from_u64(seed);
            let start = Instant::now();
            let lease_timeout = secs([15, 60, 300][rng.gen_range(0..3)]);
            let formation_wait = secs(rng.gen_range(1..10));
            let quiet = rng.gen_bool(0.5).then(|| secs(1));
            World {
                start,
                now: start,
                pilot: Pilot::new(start, lease_timeout, formation_wait, quiet),
                seen: Seen::default(),
                lease_timeout,
                formation_wait,
                next_stamp: 1,
                leaderless: false,
                declared: false,
                stretch_since: start,
                last_round: None,
                led: false,
                last_join_heard: None,
                join_wanted_since: None,
                last_search: None,
                search_wanted_since: None,
                last_probe: None,
                last_merge_check: None,
                record_since: None,
                last_confirmed: None,
                last_renew: None,
                renew_wanted_since: None,
                last_record: None,
                record_wanted_since: None,
                blocked_since: None,
                leaderless_since: None,
                rng,
            }
        }

        fn patience(&self) -> Duration {
            self.lease_timeout + renew_interval(self.lease_timeout)
        }

        fn since(&self, at: Instant) -> Duration {
            self.now.saturating_duration_since(at)
        }

        fn frozen(&self) -> bool {
            self.record_since
                .is_some_and(|(_, at)| self.since(at) > self.patience())
        }

        /// The node enters or leaves a cluster.
        fn set_in_cluster(&mut self, inside: bool) {
            if self.seen.in_cluster == inside {
                return;
            }
            self.seen.in_cluster = inside;
            self.stretch_since = self.now;
            self.join_wanted_since = None;
            self.search_wanted_since = None;
            self.renew_wanted_since = None;
            self.record_wanted_since = None;
            self.record_since = None;
            self.last_confirmed = None;
            self.leaderless_since = None;
            if !inside {
                self.seen.leads = false;
                self.seen.quiet_leader = false;
                self.seen.clustered = false;
                self.seen.record = None;
            }
        }

        /// What changes between two ticks.
        fn step(&mut self) {
            let late = self.rng.gen_bool(0.02);
            self.now += if late {
                Duration::from_millis(self.rng.gen_range(250..=MAX_STEP.as_millis() as u64))
            } else {
                LISTEN_TICK
            };
            let flip = |rng: &mut StdRng, p: f64| rng.gen_bool(p);
            // A node enters a cluster only through its own duties (a join, a formation); it
            // may be put out of one at any time, and its next tick then finds it outside.
            if self.seen.in_cluster && flip(&mut self.rng, 0.003) {
                self.set_in_cluster(false);
            }
            if flip(&mut self.rng, 0.02) {
                self.seen.heard = self.rng.gen_range(0..20);
            }
            if flip(&mut self.rng, 0.0005) {
                self.seen.seed = !self.seen.seed;
            }
            if flip(&mut self.rng, 0.005) {
                self.seen.heard_leader = !self.seen.heard_leader;
            }
            if flip(&mut self.rng, 0.002) {
                self.seen.carrying = !self.seen.carrying;
            }
            if self.seen.in_cluster {
                if flip(&mut self.rng, 0.005) {
                    self.seen.leads = !self.seen.leads;
                }
                if flip(&mut self.rng, 0.005) {
                    self.seen.quiet_leader = !self.seen.quiet_leader;
                }
                if flip(&mut self.rng, 0.02) {
                    self.seen.clustered = true;
                }
                if flip(&mut self.rng, 0.001) {
                    self.seen.record = None;
                }
                if flip(&mut self.rng, 0.003) {
                    self.leaderless = !self.leaderless;
                }
            }
        }

        /// Ticks the pilot, checks each duty and carries it out.
        fn tick(&mut self) -> Result<(), TestCaseError> {
            let now = self.now;
            let seen = self.seen.clone();
            let round = seen.in_cluster
                && self
                    .last_round
                    .is_none_or(|at| self.since(at) >= ROUND - LISTEN_TICK / 2);
            let led = self.led;
            if round {
                self.last_round = Some(now);
                if self.record_since.is_none_or(|(was, _)| was != seen.record) {
                    self.record_since = Some((seen.record, now));
                }
                self.led = seen.leads;
            }
            if seen.in_cluster {
                self.blocked_since = None;
            } else {
                self.led = false;
            }
            let duties = self.pilot.tick(now, &seen);
            if seen.in_cluster {
                prop_assert!(
                    round || duties.is_empty(),
                    "duties between rounds: {:?}",
                    duties
                );
                let lead = duties.iter().find_map(|d| match d {
                    Duty::Lead { fresh } => Some(*fresh),
                    _ => None,
                });
                prop_assert_eq!(lead, (round && seen.leads).then_some(!led), "lead");
            } else {
                self.check_outside(&duties)?;
            }
            for duty in duties {
                if self.carry_out(duty)? {
                    break;
                }
            }
            self.check_liveness()
        }

        fn check_outside(&mut self, duties: &[Duty]) -> Result<(), TestCaseError> {
            let now = self.now;
            let seen = &self.seen;
            if seen.seed {
                prop_assert_eq!(duties, &[Duty::FormFromSeed][..]);
                self.join_wanted_since = None;
                self.search_wanted_since = None;
                return Ok(());
            }
            if seen.heard_leader {
                self.join_wanted_since.get_or_insert(now);
            } else {
                self.join_wanted_since = None;
            }
            let settled = self.since(self.start) >= self.formation_wait;
            if !seen.heard_leader && (seen.carrying || settled) {
                self.search_wanted_since.get_or_insert(now);
            } else {
                self.search_wanted_since = None;
            }
            for duty in duties {
                match duty {
                    Duty::JoinHeard => {
                        prop_assert!(seen.heard_leader);
                        if let Some(last) = self.last_join_heard {
                            prop_assert!(self.since(last) >= LISTEN_TICK);
                        }
                        self.last_join_heard = Some(now);
                        self.join_wanted_since = Some(now);
                    }
                    Duty::Search => {
                        prop_assert!(!seen.heard_leader);
                        if let Some(last) = self.last_search {
                            prop_assert!(self.since(last) >= SEARCH_INTERVAL, "searched too soon");
                        }
                        self.last_search = Some(now);
                        self.search_wanted_since = Some(now);
                    }
                    other => prop_assert!(false, "{:?} outside a cluster", other),
                }
            }
            Ok(())
        }

        /// Carries out one duty; true when it moved the node out of its cluster.
        fn carry_out(&mut self, duty: Duty) -> Result<bool, TestCaseError> {
            let now = self.now;
            let seen = self.seen.clone();
            match duty {
                Duty::FormFromSeed | Duty::JoinHeard => {
                    if self.rng.gen_bool(0.3) {
                        self.set_in_cluster(true);
                    }
                }
                Duty::Search => {
                    let found = Found {
                        leader: self.rng.gen_bool(0.3),
                        in_cluster: self.rng.gen_bool(0.5),
                        behind: self.rng.gen_bool(0.1),
                        may_form: self.rng.gen_bool(0.5),
                    };
                    let search = self.pilot.searched(now, found);
                    if found.leader || !found.in_cluster {
                        self.blocked_since = None;
                    } else {
                        self.blocked_since.get_or_insert(now);
                    }
                    let waited = self
                        .blocked_since
                        .is_none_or(|at| self.since(at) >= LEADERLESS_GRACE);
                    let want = if found.leader {
                        Search::Join
                    } else if waited && !found.behind && found.may_form {
                        Search::Form
                    } else {
                        Search::Wait
                    };
                    prop_assert_eq!(search, want, "after {:?}", found);
                    if search != Search::Wait && self.rng.gen_bool(0.5) {
                        self.set_in_cluster(true);
                    }
                }
                Duty::Lead { .. } => {}
                Duty::ProbeLeader => {
                    prop_assert!(seen.quiet_leader);
                    if let Some(last) = self.last_probe {
                        prop_assert!(self.since(last) >= PROBE_INTERVAL, "probed too soon");
                    }
                    self.last_probe = Some(now);
                }
                Duty::CheckMerge { ask_leader } => return self.check_merge(ask_leader),
                Duty::Renew => {
                    prop_assert!(seen.clustered && seen.record.is_some());
                    if let Some(last) = self.last_renew {
                        prop_assert!(self.since(last) >= renew_interval(self.lease_timeout));
                    }
                    self.last_renew = Some(now);
                    self.renew_wanted_since = seen.record.map(|stamp| (stamp, now));
                    if self.rng.gen_bool(0.7) {
                        self.seen.record = Some(self.next_stamp);
                        self.next_stamp += 1;
                    }
                }
                Duty::Record => {
                    prop_assert!(seen.clustered && seen.record.is_none());
                    if let Some(last) = self.last_record {
                        prop_assert!(self.since(last) >= RECORD_RETRY);
                    }
                    self.last_record = Some(now);
                    self.record_wanted_since = None;
                    if self.rng.gen_bool(0.5) {
                        self.seen.record = Some(self.next_stamp);
                        self.next_stamp += 1;
                    }
                }
                Duty::Declare => {
                    prop_assert!(!self.declared, "declared twice");
                    if self.rng.gen_bool(0.5) {
                        self.declared = true;
                        self.pilot.declared();
                    }
                }
                Duty::Readopt => prop_assert!(seen.carrying),
            }
            Ok(false)
        }

        fn check_merge(&mut self, ask_leader: bool) -> Result<bool, TestCaseError> {
            let now = self.now;
            if let Some(last) = self.last_merge_check {
                prop_assert!(self.since(last) >= MERGE_CHECK, "merge check too soon");
            }
            self.last_merge_check = Some(now);
            if ask_leader {
                prop_assert!(self.frozen(), "asked the leader while the record moves");
                prop_assert!(
                    self.last_confirmed
                        .is_none_or(|at| self.since(at) > self.patience()),
                    "asked again though the leader confirmed"
                );
            }
            let confirms = ask_leader.then(|| self.rng.gen_bool(0.5));
            if confirms == Some(true) {
                self.last_confirmed = Some(now);
            } else if confirms == Some(false) {
                self.last_confirmed = None;
            }
            let leaderless = self.leaderless || confirms == Some(false);
            self.leaderless_since = if leaderless {
                Some(self.leaderless_since.unwrap_or(now))
            } else {
                None
            };
            let abandoned = self.pilot.doubt(now, self.leaderless, confirms);
            let want = self
                .leaderless_since
                .is_some_and(|at| self.since(at) >= LEADERLESS_GRACE);
            prop_assert_eq!(abandoned, want, "abandoned");
            if self.rng.gen_bool(0.02) {
                // A better cluster: the node leaves for it.
                self.set_in_cluster(false);
                return Ok(true);
            }
            let voter = self.rng.gen_bool(0.5);
            match self.pilot.fallback(now, abandoned, voter) {
                Fallback::Stay => {
                    prop_assert!(!abandoned || (!voter && !self.frozen()));
                    Ok(false)
                }
                Fallback::RejoinIfRemoved => {
                    prop_assert!(abandoned && voter);
                    if self.rng.gen_bool(0.5) {
                        self.pilot.forget_cluster();
                        self.set_in_cluster(false);
                        return Ok(true);
                    }
                    Ok(false)
                }
                Fallback::LeaveAbandoned => {
                    prop_assert!(abandoned && !voter && self.frozen());
                    self.set_in_cluster(false);
                    Ok(true)
                }
            }
        }

        /// What must have happened by now.
        fn check_liveness(&mut self) -> Result<(), TestCaseError> {
            let now = self.now;
            let slack = ROUND + MAX_STEP;
            if let Some(since) = self.join_wanted_since {
                prop_assert!(
                    self.since(since) <= JOIN_RETRY_MAX + MAX_STEP,
                    "no join through the leader heard of"
                );
            }
            if let Some(since) = self.search_wanted_since {
                prop_assert!(self.since(since) <= SEARCH_INTERVAL + MAX_STEP, "no search");
            }
            if !self.seen.in_cluster {
                return Ok(());
            }
            let stretch = self.stretch_since;
            let checked = self
                .last_merge_check
                .filter(|at| *at >= stretch)
                .unwrap_or(stretch);
            prop_assert!(
                now.saturating_duration_since(checked) <= MERGE_CHECK + slack,
                "no merge check"
            );
            if self.seen.clustered && self.seen.record.is_none() {
                let since = *self.record_wanted_since.get_or_insert(now);
                prop_assert!(
                    self.since(since) <= RECORD_RETRY + slack,
                    "no record proposed"
                );
            } else {
                self.record_wanted_since = None;
            }
            // A renewal is due a renewal interval after the stamp last changed (a committed
            // renewal or record), or after the last attempt.
            match self.seen.record.filter(|_| self.seen.clustered) {
                Some(stamp) => {
                    let (was, since) = *self.renew_wanted_since.get_or_insert((stamp, now));
                    if was != stamp {
                        self.renew_wanted_since = Some((stamp, now));
                    } else {
                        prop_assert!(
                            self.since(since) <= renew_interval(self.lease_timeout) + slack * 2,
                            "no renewal"
                        );
                    }
                }
                None => self.renew_wanted_since = None,
            }
            Ok(())
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1_000))]

        /// A thousand random lives of ten simulated minutes each: every duty comes only when
        /// its rule allows it, and each comes in time.
        #[test]
        fn the_autopilot_keeps_its_rules_in_any_order_of_events(seed in any::<u64>()) {
            let mut world = World::new(seed);
            let end = world.start + secs(10 * 60);
            while world.now < end {
                world.step();
                world.tick()?;
            }
        }
    }
}
