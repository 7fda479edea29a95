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
//! timers fresh); a question to a leader whose feed or raft appends went quiet (every
//! [`PROBE_INTERVAL`] at most); a merge check every [`MERGE_CHECK`]; the member record, proposed
//! every [`RECORD_RETRY`] while the state lacks it, and the lease, renewed a third of the lease
//! timeout after the node last saw its renewal stamp change; then the configured role, and the
//! re-proposal of what merges carried.
//!
//! Doubt: a node whose own record has not changed for a lease timeout and a renewal interval
//! (it is "frozen": the leader it names does not serve it) asks that leader, at most once per
//! such patience while it confirms, whether it still leads. A cluster that has had no working
//! leader for [`LEADERLESS_GRACE`] is abandoned: a voter then asks whether it was removed, a
//! frozen learner or follower leaves it ([`Fallback`]). A raft node that its own membership
//! does not register, and whose raft log has not moved for as long, is stranded: it asks
//! whether it was removed too ([`Pilot::stranded`]).

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
    /// Whether the leader it follows, or its raft leader, has been quiet long enough to be
    /// asked.
    pub quiet_leader: bool,
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
    /// Read the state afresh (the leader's duties may have just written its first entry) and
    /// ask [`Pilot::keep_record`] whether to renew the lease or propose the record.
    KeepRecord,
    /// Make the ledger hold the configured role and policy; report success with
    /// [`Pilot::mark_declared`].
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

/// What keeps this node's record in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Renew the lease.
    Renew,
    /// Propose the member record.
    Record,
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
    /// Nothing: the cluster is not abandoned, or this node is no voter and not frozen.
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
    /// The end of this node's raft log while its own raft membership does not register it,
    /// and since when the log ends there, as the merge checks saw it.
    seatless_since: Option<(u64, Instant)>,
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
            seatless_since: None,
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
        duties.push(Duty::KeepRecord);
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

    /// What keeps this node's record at `now`, when something is due: its state holds a
    /// cluster (`clustered`) and this node's live `record` (its renewal stamp) or none. The
    /// record is proposed every [`RECORD_RETRY`] while missing. The lease is renewed a
    /// renewal interval after this node last saw its stamp change (a join, a renewal), timed by
    /// its own monotonic clock, never by comparing wall clocks, and at once after a start (the
    /// node may have been away for long). The caller carries out what this answers.
    pub fn keep_record(
        &mut self,
        now: Instant,
        clustered: bool,
        record: Option<u64>,
    ) -> Option<Keep> {
        if !clustered {
            return None;
        }
        let Some(stamp) = record else {
            if !elapsed(self.last_record_attempt, now, RECORD_RETRY) {
                return None;
            }
            self.last_record_attempt = Some(now);
            return Some(Keep::Record);
        };
        let interval = renew_interval(self.lease_timeout);
        let old = match self.renewal_seen {
            Some((was, at)) if was == stamp => now.saturating_duration_since(at) >= interval,
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
        Some(Keep::Renew)
    }

    /// Notes that the configured role and policy are in the ledger: no more [`Duty::Declare`].
    pub fn mark_declared(&mut self) {
        self.declared = true;
    }

    /// Whether this node (`me`), finding no cluster among its `admitted` peers at `now`, is the
    /// one to form it ([`Listening::may_form`]).
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

    /// Takes a merge check's view of this node's seat at `now`: `seatless` holds the end of its
    /// raft log when its own raft membership does not register it. Answers whether it is
    /// stranded: seatless with its log where it was for [`LEADERLESS_GRACE`]. A follower
    /// recruited as a learner and cut off before the entry seating it committed is so: later
    /// leaders never had that entry and send it nothing, yet it names the leader its stored
    /// vote names, which still leads. A learner catching up is seatless until the entry that
    /// seats it arrives, but its log moves.
    pub fn stranded(&mut self, now: Instant, seatless: Option<u64>) -> bool {
        self.seatless_since = match (seatless, self.seatless_since) {
            (None, _) => None,
            (Some(end), Some((was, since))) if end == was => Some((was, since)),
            (Some(end), _) => Some((end, now)),
        };
        self.seatless_since
            .is_some_and(|(_, since)| now.saturating_duration_since(since) >= LEADERLESS_GRACE)
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
        self.seatless_since = None;
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
mod world;

#[cfg(test)]
mod tests {
    use super::*;

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
            ..Seen::default()
        };
        assert_eq!(
            pilot.tick(start, &member),
            vec![
                Duty::CheckMerge { ask_leader: false },
                Duty::KeepRecord,
                Duty::Declare
            ]
        );
        assert_eq!(
            pilot.keep_record(start, false, None),
            None,
            "no cluster yet"
        );
        assert_eq!(pilot.keep_record(start, true, None), Some(Keep::Record));
        assert_eq!(pilot.keep_record(start + secs(1), true, None), None);
        assert!(
            pilot.tick(start + LISTEN_TICK, &member).is_empty(),
            "one round a second"
        );
        pilot.mark_declared();
        let leader = Seen {
            leads: true,
            record: Some(7),
            ..member
        };
        assert_eq!(
            pilot.tick(start + ROUND, &leader),
            vec![Duty::Lead { fresh: true }, Duty::KeepRecord]
        );
        assert_eq!(
            pilot.keep_record(start + ROUND, true, Some(7)),
            Some(Keep::Renew),
            "at once after a start"
        );
        assert_eq!(
            pilot.tick(start + ROUND * 2, &leader),
            vec![Duty::Lead { fresh: false }, Duty::KeepRecord]
        );
        assert_eq!(pilot.keep_record(start + ROUND * 2, true, Some(8)), None);
        let renew = start + ROUND * 2 + renew_interval(secs(60));
        assert_eq!(pilot.keep_record(renew, true, Some(8)), Some(Keep::Renew));
    }

    #[test]
    fn a_cluster_is_abandoned_after_the_grace_without_a_leader_and_only_a_frozen_non_voter_leaves()
    {
        let start = Instant::now();
        let mut pilot = Pilot::new(start, secs(30), secs(5), None);
        let member = Seen {
            in_cluster: true,
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
    fn a_seatless_node_is_stranded_only_once_its_log_stood_still_for_the_grace() {
        let start = Instant::now();
        let mut pilot = Pilot::new(start, secs(600), secs(5), None);
        let grace = LEADERLESS_GRACE;
        assert!(!pilot.stranded(start, Some(11)));
        assert!(!pilot.stranded(start + grace - secs(1), Some(11)));
        assert!(
            pilot.stranded(start + grace, Some(11)),
            "its log stood still"
        );
        // A learner catching up: its log moves, so the grace starts again.
        let moved = start + grace + secs(5);
        assert!(!pilot.stranded(moved, Some(40)));
        assert!(!pilot.stranded(moved + grace - secs(1), Some(40)));
        assert!(pilot.stranded(moved + grace, Some(40)));
        // Seated (the entry arrived), then seatless again: a fresh grace.
        let seated = moved + grace + secs(5);
        assert!(!pilot.stranded(seated, None));
        assert!(!pilot.stranded(seated + secs(1), Some(40)));
        assert!(!pilot.stranded(seated + grace, Some(40)));
        assert!(pilot.stranded(seated + secs(1) + grace, Some(40)));
        pilot.forget_cluster();
        assert!(
            !pilot.stranded(seated + secs(2) + grace, Some(40)),
            "a node that left its cluster starts again"
        );
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
}
