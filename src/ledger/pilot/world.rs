//! A node's life in simulated time around a [`Pilot`]: it forms, joins and leaves clusters,
//! leads and stops leading, its record expires and comes back, renewals commit or not, leaders
//! go quiet, searches and merge checks find this or that, and ticks come every quarter second
//! or up to [`MAX_STEP`] late. Every answer of the pilot is checked against the rules with the
//! checker's own memory, and what must happen is checked to happen in time. Seeds run in
//! order, so a failure names the seed that replays it exactly; counts across all seeds show
//! that every rule was exercised.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

/// The longest gap between two ticks (a tick whose work took long).
const MAX_STEP: Duration = Duration::from_secs(3);
/// How much later than its rule a duty may come: a round and the longest gap between ticks.
const SLACK: Duration = Duration::from_secs(4);

macro_rules! ensure {
    ($cond:expr, $($why:tt)+) => {
        if !$cond {
            return Err(format!($($why)+));
        }
    };
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// How often each rule was exercised, over all seeds.
#[derive(Debug, Default)]
struct Counts {
    formed_from_seed: u64,
    joins_heard: u64,
    searches: u64,
    formations: u64,
    fresh_leaderships: u64,
    probes: u64,
    questions_to_the_leader: u64,
    abandoned: u64,
    left_abandoned: u64,
    rejoins: u64,
    stranded: u64,
    records: u64,
    renewals: u64,
    declarations: u64,
    readoptions: u64,
}

struct World {
    rng: StdRng,
    start: Instant,
    now: Instant,
    pilot: Pilot,
    seen: Seen,
    lease_timeout: Duration,
    formation_wait: Duration,
    formation_quiet: Option<Duration>,
    /// Whether the state holds a cluster (its first entry applied).
    clustered: bool,
    /// The stamp the next committed renewal or record writes.
    next_stamp: u64,
    /// Whether the cluster has a working leader, as a merge check sees it.
    leaderless: bool,
    /// The end of the node's raft log while its own membership does not register it.
    seatless: Option<u64>,
    declared: bool,
    // What the checks remember.
    /// Whether the last tick was inside a cluster.
    was_inside: bool,
    /// When the node last entered a cluster.
    entered: Instant,
    last_round: Option<Instant>,
    /// Whether the node led at its last round.
    led: bool,
    /// The heard count last observed outside a cluster, and since when.
    heard_since: (usize, Instant),
    join_wanted_since: Option<Instant>,
    last_search: Option<Instant>,
    search_wanted_since: Option<Instant>,
    last_probe: Option<Instant>,
    last_merge_check: Option<Instant>,
    /// The record as the rounds saw it, and since when.
    record_since: Option<(Option<u64>, Instant)>,
    last_confirmed: Option<Instant>,
    leaderless_since: Option<Instant>,
    /// The seatless log end as the merge checks saw it, and since when.
    seatless_since: Option<(u64, Instant)>,
    blocked_since: Option<Instant>,
    last_record: Option<Instant>,
    record_wanted_since: Option<Instant>,
    last_renew: Option<Instant>,
    /// The stamp the node waits to renew, and since when.
    renew_wanted_since: Option<(u64, Instant)>,
}

impl World {
    fn new(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let start = Instant::now();
        let lease_timeout = secs([15, 60, 300][rng.gen_range(0..3)]);
        let formation_wait = secs(rng.gen_range(1..10));
        let formation_quiet = rng.gen_bool(0.5).then(|| secs(1));
        World {
            start,
            now: start,
            pilot: Pilot::new(start, lease_timeout, formation_wait, formation_quiet),
            seen: Seen::default(),
            lease_timeout,
            formation_wait,
            formation_quiet,
            clustered: false,
            next_stamp: 1,
            leaderless: false,
            seatless: None,
            declared: false,
            was_inside: false,
            entered: start,
            last_round: None,
            led: false,
            heard_since: (0, start),
            join_wanted_since: None,
            last_search: None,
            search_wanted_since: None,
            last_probe: None,
            last_merge_check: None,
            record_since: None,
            last_confirmed: None,
            leaderless_since: None,
            seatless_since: None,
            blocked_since: None,
            last_record: None,
            record_wanted_since: None,
            last_renew: None,
            renew_wanted_since: None,
            rng,
        }
    }

    fn since(&self, at: Instant) -> Duration {
        self.now.saturating_duration_since(at)
    }

    fn patience(&self) -> Duration {
        self.lease_timeout + renew_interval(self.lease_timeout)
    }

    fn frozen(&self) -> bool {
        self.record_since
            .is_some_and(|(_, at)| self.since(at) > self.patience())
    }

    fn settled(&self) -> bool {
        self.since(self.start) >= self.formation_wait
            || self
                .formation_quiet
                .is_some_and(|quiet| self.since(self.heard_since.1) >= quiet)
    }

    /// What the pilot forgets of a cluster the node left, the checker forgets too.
    fn forget_cluster(&mut self) {
        self.record_since = None;
        self.last_confirmed = None;
        self.leaderless_since = None;
        self.seatless_since = None;
        self.led = false;
    }

    /// The node enters (by its own duties) or leaves a cluster.
    fn set_inside(&mut self, inside: bool) {
        self.seen.in_cluster = inside;
        if !inside {
            self.seen.leads = false;
            self.seen.quiet_leader = false;
            self.seen.record = None;
            self.seatless = None;
            self.clustered = false;
        } else {
            self.clustered = self.rng.gen_bool(0.5);
            self.entered = self.now;
        }
        self.renew_wanted_since = None;
        self.record_wanted_since = None;
        self.join_wanted_since = None;
        self.search_wanted_since = None;
    }

    /// What changes between two ticks.
    fn step(&mut self) {
        self.now += if self.rng.gen_bool(0.02) {
            Duration::from_millis(self.rng.gen_range(250..=MAX_STEP.as_millis() as u64))
        } else {
            LISTEN_TICK
        };
        let rng = &mut self.rng;
        // A node enters a cluster only through its own duties; it may be put out of one at
        // any time, and its next tick then finds it outside.
        if self.seen.in_cluster && rng.gen_bool(0.003) {
            self.set_inside(false);
        }
        let rng = &mut self.rng;
        if rng.gen_bool(0.02) {
            self.seen.heard = rng.gen_range(0..20);
        }
        if rng.gen_bool(0.0005) {
            self.seen.seed = !self.seen.seed;
        }
        if rng.gen_bool(0.005) {
            self.seen.heard_leader = !self.seen.heard_leader;
        }
        if rng.gen_bool(0.002) {
            self.seen.carrying = !self.seen.carrying;
        }
        if self.seen.in_cluster {
            if rng.gen_bool(0.005) {
                self.seen.leads = !self.seen.leads;
            }
            if rng.gen_bool(0.005) {
                self.seen.quiet_leader = !self.seen.quiet_leader;
            }
            if rng.gen_bool(0.02) {
                self.clustered = true;
            }
            if rng.gen_bool(0.001) {
                self.seen.record = None;
            }
            if rng.gen_bool(0.003) {
                self.leaderless = !self.leaderless;
            }
            // Seated or not in its own membership; a seatless log that moves is catching up.
            if rng.gen_bool(0.003) {
                self.seatless = match self.seatless {
                    Some(_) => None,
                    None => Some(rng.gen_range(0..100)),
                };
            }
            if let Some(end) = self.seatless.as_mut()
                && rng.gen_bool(0.002)
            {
                *end += 1;
            }
        }
    }

    /// Ticks the pilot, checks its duties and carries them out.
    fn tick(&mut self, counts: &mut Counts) -> Result<(), String> {
        let now = self.now;
        let seen = self.seen.clone();
        let duties = self.pilot.tick(now, &seen);
        if seen.in_cluster {
            self.check_round(&seen, &duties, counts)?;
        } else {
            self.check_outside(&seen, &duties)?;
        }
        self.was_inside = seen.in_cluster;
        for duty in duties {
            if self.carry_out(duty, counts)? {
                break;
            }
        }
        self.check_in_time()
    }

    fn check_outside(&mut self, seen: &Seen, duties: &[Duty]) -> Result<(), String> {
        let now = self.now;
        self.forget_cluster();
        if seen.heard != self.heard_since.0 {
            self.heard_since = (seen.heard, now);
        }
        if seen.seed {
            ensure!(duties == [Duty::FormFromSeed], "with a seed: {duties:?}");
            self.join_wanted_since = None;
            self.search_wanted_since = None;
            return Ok(());
        }
        let may_search = !seen.heard_leader && (seen.carrying || self.settled());
        if seen.heard_leader {
            self.join_wanted_since.get_or_insert(now);
        } else {
            self.join_wanted_since = None;
        }
        if may_search {
            self.search_wanted_since.get_or_insert(now);
        } else {
            self.search_wanted_since = None;
        }
        if seen.heard_leader && self.was_inside {
            ensure!(
                duties == [Duty::JoinHeard],
                "no join at once through a leader heard of: {duties:?}"
            );
        }
        for duty in duties {
            match duty {
                Duty::JoinHeard => {
                    ensure!(seen.heard_leader, "a join through no leader heard of");
                    self.join_wanted_since = Some(now);
                }
                Duty::Search => {
                    ensure!(may_search, "a search before listening long enough");
                    if let Some(last) = self.last_search {
                        ensure!(self.since(last) >= SEARCH_INTERVAL, "searched too soon");
                    }
                    self.last_search = Some(now);
                    self.search_wanted_since = Some(now);
                }
                other => ensure!(false, "{other:?} outside a cluster"),
            }
        }
        Ok(())
    }

    fn check_round(
        &mut self,
        seen: &Seen,
        duties: &[Duty],
        counts: &mut Counts,
    ) -> Result<(), String> {
        let now = self.now;
        self.blocked_since = None;
        let round = self
            .last_round
            .is_none_or(|at| self.since(at) >= ROUND - LISTEN_TICK / 2);
        if !round {
            ensure!(duties.is_empty(), "duties between rounds: {duties:?}");
            return Ok(());
        }
        self.last_round = Some(now);
        if self.record_since.is_none_or(|(was, _)| was != seen.record) {
            self.record_since = Some((seen.record, now));
        }
        let probe = seen.quiet_leader
            && self
                .last_probe
                .is_none_or(|at| self.since(at) >= PROBE_INTERVAL);
        let merge = self
            .last_merge_check
            .is_none_or(|at| self.since(at) >= MERGE_CHECK);
        let ask_leader = self.frozen()
            && self
                .last_confirmed
                .is_none_or(|at| self.since(at) > self.patience());
        let mut want = Vec::new();
        if seen.leads {
            want.push(Duty::Lead { fresh: !self.led });
            counts.fresh_leaderships += u64::from(!self.led);
        }
        if probe {
            want.push(Duty::ProbeLeader);
            self.last_probe = Some(now);
            counts.probes += 1;
        }
        if merge {
            want.push(Duty::CheckMerge { ask_leader });
            counts.questions_to_the_leader += u64::from(ask_leader);
        }
        want.push(Duty::KeepRecord);
        if !self.declared {
            want.push(Duty::Declare);
        }
        if seen.carrying {
            want.push(Duty::Readopt);
            counts.readoptions += 1;
        }
        self.led = seen.leads;
        ensure!(duties == want, "at a round: {duties:?}, wanted {want:?}");
        Ok(())
    }

    /// Carries out one duty; true when it moved the node out of its cluster.
    fn carry_out(&mut self, duty: Duty, counts: &mut Counts) -> Result<bool, String> {
        match duty {
            Duty::FormFromSeed => {
                counts.formed_from_seed += 1;
                if self.rng.gen_bool(0.3) {
                    self.set_inside(true);
                }
            }
            Duty::JoinHeard => {
                counts.joins_heard += 1;
                if self.rng.gen_bool(0.3) {
                    self.set_inside(true);
                }
            }
            Duty::Search => {
                counts.searches += 1;
                self.search(counts)?;
            }
            Duty::Lead { .. } => {
                // The first entry of a new cluster commits now, and the record may follow in
                // this very round.
                if !self.clustered && self.rng.gen_bool(0.7) {
                    self.clustered = true;
                }
            }
            Duty::ProbeLeader => {}
            Duty::CheckMerge { ask_leader } => return self.check_merge(ask_leader, counts),
            Duty::KeepRecord => self.keep_record(counts)?,
            Duty::Declare => {
                counts.declarations += 1;
                if self.rng.gen_bool(0.5) {
                    self.declared = true;
                    self.pilot.mark_declared();
                }
            }
            Duty::Readopt => {}
        }
        Ok(false)
    }

    fn search(&mut self, counts: &mut Counts) -> Result<(), String> {
        let now = self.now;
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
        ensure!(
            search == want,
            "after {found:?}: {search:?}, wanted {want:?}"
        );
        counts.formations += u64::from(search == Search::Form);
        if search != Search::Wait && self.rng.gen_bool(0.5) {
            self.set_inside(true);
        }
        Ok(())
    }

    fn keep_record(&mut self, counts: &mut Counts) -> Result<(), String> {
        let now = self.now;
        let record = self.seen.record;
        let keep = self.pilot.keep_record(now, self.clustered, record);
        match keep {
            Some(Keep::Record) => {
                counts.records += 1;
                ensure!(
                    self.clustered && record.is_none(),
                    "a record proposed while {record:?}"
                );
                if let Some(last) = self.last_record {
                    ensure!(
                        self.since(last) >= RECORD_RETRY,
                        "a record proposed too soon"
                    );
                }
                self.last_record = Some(now);
                self.record_wanted_since = None;
                if self.rng.gen_bool(0.5) {
                    self.seen.record = Some(self.next_stamp);
                    self.next_stamp += 1;
                }
            }
            Some(Keep::Renew) => {
                counts.renewals += 1;
                ensure!(
                    self.clustered && record.is_some(),
                    "a renewal without a record"
                );
                if let Some(last) = self.last_renew {
                    ensure!(
                        self.since(last) >= renew_interval(self.lease_timeout),
                        "renewed too soon"
                    );
                }
                self.last_renew = Some(now);
                self.renew_wanted_since = record.map(|stamp| (stamp, now));
                if self.rng.gen_bool(0.7) {
                    self.seen.record = Some(self.next_stamp);
                    self.next_stamp += 1;
                }
            }
            None => {}
        }
        Ok(())
    }

    fn check_merge(&mut self, ask_leader: bool, counts: &mut Counts) -> Result<bool, String> {
        let now = self.now;
        self.last_merge_check = Some(now);
        let stranded = self.pilot.stranded(now, self.seatless);
        self.seatless_since = self.seatless.map(|end| match self.seatless_since {
            Some((was, since)) if was == end => (was, since),
            _ => (end, now),
        });
        let want = self
            .seatless_since
            .is_some_and(|(_, since)| self.since(since) >= LEADERLESS_GRACE);
        ensure!(stranded == want, "stranded: {stranded}, wanted {want}");
        if stranded {
            counts.stranded += 1;
            if self.rng.gen_bool(0.5) {
                // Its leader left it out: it resets and rejoins, at once or later.
                self.pilot.forget_cluster();
                self.forget_cluster();
                let inside = self.rng.gen_bool(0.5);
                self.set_inside(inside);
                return Ok(true);
            }
        }
        let confirms = ask_leader.then(|| self.rng.gen_bool(0.5));
        match confirms {
            Some(true) => self.last_confirmed = Some(now),
            Some(false) => self.last_confirmed = None,
            None => {}
        }
        let leaderless = self.leaderless || confirms == Some(false);
        self.leaderless_since = leaderless.then(|| self.leaderless_since.unwrap_or(now));
        let abandoned = self.pilot.doubt(now, self.leaderless, confirms);
        let want = self
            .leaderless_since
            .is_some_and(|at| self.since(at) >= LEADERLESS_GRACE);
        ensure!(abandoned == want, "abandoned: {abandoned}, wanted {want}");
        counts.abandoned += u64::from(abandoned);
        if self.rng.gen_bool(0.02) {
            // A better cluster: the node leaves for it.
            self.set_inside(false);
            return Ok(true);
        }
        let voter = self.seen.leads || self.rng.gen_bool(0.5);
        let fallback = self.pilot.fallback(now, abandoned, voter);
        let want = match (abandoned, voter, self.frozen()) {
            (false, _, _) => Fallback::Stay,
            (true, true, _) => Fallback::RejoinIfRemoved,
            (true, false, true) => Fallback::LeaveAbandoned,
            (true, false, false) => Fallback::Stay,
        };
        ensure!(fallback == want, "fallback {fallback:?}, wanted {want:?}");
        match fallback {
            Fallback::Stay => Ok(false),
            Fallback::RejoinIfRemoved if self.rng.gen_bool(0.5) => {
                // Removed: the node resets and rejoins its cluster, at once or later.
                counts.rejoins += 1;
                self.pilot.forget_cluster();
                self.forget_cluster();
                let inside = self.rng.gen_bool(0.5);
                self.set_inside(inside);
                Ok(true)
            }
            Fallback::RejoinIfRemoved => Ok(false),
            Fallback::LeaveAbandoned => {
                counts.left_abandoned += 1;
                self.set_inside(false);
                Ok(true)
            }
        }
    }

    /// What must have happened by now.
    fn check_in_time(&mut self) -> Result<(), String> {
        let now = self.now;
        if let Some(since) = self.join_wanted_since {
            ensure!(
                self.since(since) <= JOIN_RETRY_MAX + MAX_STEP,
                "no join through the leader heard of for {:?}",
                self.since(since)
            );
        }
        if let Some(since) = self.search_wanted_since {
            ensure!(
                self.since(since) <= SEARCH_INTERVAL + MAX_STEP,
                "no search for {:?} (last {:?} ago)",
                self.since(since),
                self.last_search.map(|at| self.since(at))
            );
        }
        if !self.seen.in_cluster {
            return Ok(());
        }
        let checked = self
            .last_merge_check
            .map_or(self.entered, |at| at.max(self.entered));
        ensure!(self.since(checked) <= MERGE_CHECK + SLACK, "no merge check");
        match self.seen.record.filter(|_| self.clustered) {
            None if self.clustered => {
                let since = *self.record_wanted_since.get_or_insert(now);
                ensure!(
                    self.since(since) <= RECORD_RETRY + SLACK,
                    "no record proposed for {:?}",
                    self.since(since)
                );
            }
            None => self.record_wanted_since = None,
            Some(stamp) => {
                self.record_wanted_since = None;
                let (was, since) = *self.renew_wanted_since.get_or_insert((stamp, now));
                if was != stamp {
                    self.renew_wanted_since = Some((stamp, now));
                } else {
                    ensure!(
                        self.since(since) <= renew_interval(self.lease_timeout) + SLACK * 2,
                        "no renewal for {:?}",
                        self.since(since)
                    );
                }
            }
        }
        Ok(())
    }
}

/// Runs `seeds` lives of `minutes` simulated minutes each; counts what happened.
fn run(seeds: std::ops::Range<u64>, minutes: u64) -> Counts {
    let mut counts = Counts::default();
    for seed in seeds {
        let mut world = World::new(seed);
        let end = world.start + secs(minutes * 60);
        while world.now < end {
            world.step();
            if let Err(why) = world.tick(&mut counts) {
                panic!(
                    "seed {seed}, at {:?}: {why}",
                    world.now.saturating_duration_since(world.start)
                );
            }
        }
    }
    counts
}

/// A thousand random lives of ten simulated minutes each: every duty comes only when its rule
/// allows, in the rule's order, and each comes in time; every rule was exercised.
#[test]
fn the_autopilot_keeps_its_rules_in_any_order_of_events() {
    let counts = run(0..1000, 10);
    let least = [
        ("formations from a seed", counts.formed_from_seed),
        ("joins through a leader heard of", counts.joins_heard),
        ("searches", counts.searches),
        ("formations after a search", counts.formations),
        ("fresh leaderships", counts.fresh_leaderships),
        ("probes of a quiet leader", counts.probes),
        (
            "questions to a frozen node's leader",
            counts.questions_to_the_leader,
        ),
        ("abandoned clusters", counts.abandoned),
        ("departures from abandoned clusters", counts.left_abandoned),
        ("rejoins of a removed voter", counts.rejoins),
        ("merge checks of a stranded seatless node", counts.stranded),
        ("records proposed", counts.records),
        ("renewals", counts.renewals),
        ("declarations", counts.declarations),
        ("re-proposals after merges", counts.readoptions),
    ];
    eprintln!("{counts:?}");
    for (what, count) in least {
        assert!(
            count >= 50,
            "only {count} {what}: the world does not exercise the rule"
        );
    }
}
