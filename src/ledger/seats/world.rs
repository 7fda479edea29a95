//! A leader's raft membership in simulated time around [`Seats`]: voters and learners lose and
//! regain their connections, are denied and allowed, become unfit for a seat (an
//! older weft, no operator key) and fit again, join again under new raft ids, learners
//! come and go, catch up with the log or lag (and lose their seats when they lag too long),
//! leadership is lost and regained, and changes commit or fail. Each round, every answer is
//! checked against the rules with the checker's own memory of when each voter was last seen
//! and each learner last caught up, and what must happen is checked to happen. Seeds run in
//! order, so a failure names the seed that replays it exactly; counts across all seeds show
//! every rule exercised.

use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

const TIMEOUT: Duration = Duration::from_secs(20);
/// How long a lagging learner counts as catching up.
const GRACE: Duration = Duration::from_secs(10);

macro_rules! ensure {
    ($cond:expr, $($why:tt)+) => {
        if !$cond {
            return Err(format!($($why)+));
        }
    };
}

/// How often each rule was exercised, over all seeds.
#[derive(Debug, Default)]
struct Counts {
    after_timeout: u64,
    denied: u64,
    denied_outright: u64,
    superseded: u64,
    unfit: u64,
    unfit_learners: u64,
    kept_without_majority: u64,
    kept_without_learner: u64,
    recruits: u64,
    stale_learners: u64,
    failed_commits: u64,
}

struct World {
    rng: StdRng,
    now: Instant,
    nodes: Vec<Node>,
    next_id: u64,
    seats: Seats,
    /// The checker's own memory: since when each voter has been seen down at every round.
    down_since: BTreeMap<u64, Instant>,
    /// And since when each learner has been seen lagging at every round.
    lagging_since: BTreeMap<u64, Instant>,
}

impl World {
    fn new(seed: u64) -> World {
        let mut rng = StdRng::seed_from_u64(seed);
        let voters = [1, 3, 5][rng.gen_range(0..3)];
        let learners = rng.gen_range(0..4);
        let nodes = (1..=(voters + learners) as u64)
            .map(|id| Node {
                id,
                peer: format!("p{id}"),
                voter: id <= voters as u64,
                connected: true,
                denied: false,
                ready: true,
                unfit: false,
            })
            .collect();
        World {
            rng,
            now: Instant::now(),
            nodes,
            next_id: (voters + learners) as u64 + 1,
            seats: Seats::default(),
            down_since: BTreeMap::new(),
            lagging_since: BTreeMap::new(),
        }
    }

    /// Something happens to the membership, and time passes.
    fn step(&mut self) {
        let rng = &mut self.rng;
        let pick = rng.gen_range(0..self.nodes.len());
        match rng.gen_range(0..100) {
            0..=34 => self.nodes[pick].connected = !self.nodes[pick].connected,
            35..=39 => self.nodes[pick].denied = !self.nodes[pick].denied,
            40..=44 => {
                let peer = self.nodes[pick].peer.clone();
                self.nodes.push(Node {
                    id: self.next_id,
                    peer,
                    voter: false,
                    connected: true,
                    denied: false,
                    ready: rng.gen_bool(0.5),
                    unfit: false,
                });
                self.next_id += 1;
            }
            45..=54 => {
                self.nodes.push(Node {
                    id: self.next_id,
                    peer: format!("p{}", self.next_id),
                    voter: false,
                    connected: rng.gen_bool(0.8),
                    denied: false,
                    ready: rng.gen_bool(0.7),
                    unfit: rng.gen_bool(0.05),
                });
                self.next_id += 1;
            }
            55..=64 if !self.nodes[pick].voter => {
                self.nodes.remove(pick);
            }
            65..=67 => {
                self.seats.clear();
                self.down_since.clear();
                self.lagging_since.clear();
            }
            68..=72 => self.nodes[pick].ready = true,
            73..=74 if !self.nodes[pick].voter => self.nodes[pick].ready = false,
            75..=76 => self.nodes[pick].unfit = !self.nodes[pick].unfit,
            _ => {}
        }
        self.now += Duration::from_millis(self.rng.gen_range(0..6000));
    }

    /// One round of the leader: the answer checked against the rules, then carried out.
    fn round(&mut self, counts: &mut Counts) -> Result<(), String> {
        if self.stale(counts)? {
            return Ok(());
        }
        let nodes = self.nodes.clone();
        let voters: Vec<&Node> = nodes.iter().filter(|n| n.voter).collect();
        let superseded = |n: &Node| {
            nodes
                .iter()
                .any(|o| !o.voter && o.id != n.id && o.peer == n.peer)
        };
        let answering = |n: &Node| n.connected && !n.denied && !superseded(n);
        let live = |n: &Node| answering(n) && !n.unfit && (n.voter || n.ready);
        for voter in &voters {
            if voter.connected && !superseded(voter) {
                self.down_since.remove(&voter.id);
            } else {
                self.down_since.entry(voter.id).or_insert(self.now);
            }
        }
        self.down_since
            .retain(|id, _| voters.iter().any(|v| v.id == *id));
        let dead: Vec<u64> = voters
            .iter()
            .filter(|v| {
                v.denied
                    || v.unfit
                    || superseded(v)
                    || self
                        .down_since
                        .get(&v.id)
                        .is_some_and(|since| self.now.duration_since(*since) >= TIMEOUT)
            })
            .map(|v| v.id)
            .collect();
        let majority = voters.iter().filter(|v| answering(v)).count() > voters.len() / 2;
        let learners: Vec<u64> = nodes
            .iter()
            .filter(|n| !n.voter && live(n))
            .map(|n| n.id)
            .collect();

        let denied_dead = voters
            .iter()
            .filter(|v| v.denied && dead.contains(&v.id))
            .count();

        let answer = self.seats.replacement(self.now, &nodes, TIMEOUT);
        let Some(change) = answer else {
            ensure!(
                dead.is_empty() || !majority || (learners.is_empty() && denied_dead == 0),
                "no change although voters {dead:?} are dead ({denied_dead} denied), a majority \
                 is live and learners {learners:?} can step in"
            );
            if !dead.is_empty() {
                if !majority {
                    counts.kept_without_majority += 1;
                } else {
                    counts.kept_without_learner += 1;
                }
            }
            return self.recruit(counts);
        };
        ensure!(majority, "a change without a majority of live voters");
        let replaced = dead.len().min(learners.len());
        let outright = denied_dead.saturating_sub(replaced);
        ensure!(
            change.dropped.len() == replaced + outright,
            "dropped {:?} of dead {dead:?} ({denied_dead} denied) with learners {learners:?}",
            change.dropped
        );
        ensure!(
            change.dropped.iter().all(|id| dead.contains(id)),
            "dropped {:?}, not all dead ({dead:?})",
            change.dropped
        );
        let denied_dropped = voters
            .iter()
            .filter(|v| v.denied && change.dropped.contains(&v.id))
            .count();
        ensure!(
            denied_dropped == denied_dead,
            "denied voters keep their seats: {denied_dropped} of {denied_dead} dropped"
        );
        // Denied voters go first: a voter gone quiet loses its seat only to a learner
        // left over once every denied one is replaced. Counted, as `dropped` has no order.
        let others_dropped = change.dropped.len() - denied_dropped;
        ensure!(
            others_dropped == replaced.saturating_sub(denied_dead),
            "{others_dropped} voters not denied dropped with {denied_dead} denied and {replaced} \
             replaced: {:?}",
            change.dropped
        );
        ensure!(
            change.voters.len() == voters.len() - outright,
            "the count of voters moved from {} to {} with {outright} dropped outright",
            voters.len(),
            change.voters.len()
        );
        let kept: BTreeSet<u64> = voters
            .iter()
            .map(|v| v.id)
            .filter(|id| !change.dropped.contains(id))
            .collect();
        ensure!(
            kept.is_subset(&change.voters),
            "voters {:?} dropped without being dead",
            kept.difference(&change.voters).collect::<Vec<_>>()
        );
        let added: Vec<&u64> = change.voters.difference(&kept).collect();
        ensure!(
            added.len() == replaced && added.iter().all(|id| learners.contains(id)),
            "added {added:?}, not {replaced} of the live learners {learners:?}"
        );
        counts.denied_outright += outright as u64;
        for voter in &voters {
            if voter.denied {
                counts.denied += u64::from(change.dropped.contains(&voter.id));
            } else if superseded(voter) {
                counts.superseded += u64::from(change.dropped.contains(&voter.id));
            } else if voter.unfit {
                counts.unfit += u64::from(change.dropped.contains(&voter.id));
            } else {
                counts.after_timeout += u64::from(change.dropped.contains(&voter.id));
            }
        }
        if self.rng.gen_bool(0.15) {
            counts.failed_commits += 1;
            return Ok(());
        }
        for node in &mut self.nodes {
            node.voter = change.voters.contains(&node.id);
        }
        self.nodes
            .retain(|n| n.voter || !change.dropped.contains(&n.id));
        self.seats.replaced(&change.dropped);
        for id in &change.dropped {
            self.down_since.remove(id);
        }
        Ok(())
    }

    /// Whether learners lose their seats, against the rule: each that lagged at every round
    /// for the timeout, and each unfit one, while a majority of voters answers. Whether any
    /// did.
    fn stale(&mut self, counts: &mut Counts) -> Result<bool, String> {
        let nodes = self.nodes.clone();
        for node in &nodes {
            if !node.voter && !node.ready {
                self.lagging_since.entry(node.id).or_insert(self.now);
            } else {
                self.lagging_since.remove(&node.id);
            }
        }
        self.lagging_since
            .retain(|id, _| nodes.iter().any(|n| n.id == *id));
        let superseded = |n: &Node| {
            nodes
                .iter()
                .any(|o| !o.voter && o.id != n.id && o.peer == n.peer)
        };
        let voters = nodes.iter().filter(|n| n.voter).count();
        let answering_voters = nodes
            .iter()
            .filter(|n| n.voter && n.connected && !n.denied && !superseded(n))
            .count();
        let expected: Vec<u64> = if answering_voters > voters / 2 {
            nodes
                .iter()
                .filter(|n| {
                    (!n.voter && n.unfit)
                        || self
                            .lagging_since
                            .get(&n.id)
                            .is_some_and(|since| self.now.duration_since(*since) >= TIMEOUT)
                })
                .map(|n| n.id)
                .collect()
        } else {
            Vec::new()
        };
        let stale = self.seats.stale_learners(self.now, &nodes, TIMEOUT);
        ensure!(
            stale == expected,
            "learners {stale:?} lose their seats where {expected:?} should"
        );
        if stale.is_empty() {
            return Ok(false);
        }
        counts.stale_learners += stale.len() as u64;
        counts.unfit_learners += nodes
            .iter()
            .filter(|n| n.unfit && stale.contains(&n.id))
            .count() as u64;
        if self.rng.gen_bool(0.15) {
            counts.failed_commits += 1;
        } else {
            self.nodes.retain(|n| !stale.contains(&n.id));
        }
        Ok(true)
    }

    /// Whether a follower is brought in, against the rule; one sometimes is.
    fn recruit(&mut self, counts: &mut Counts) -> Result<(), String> {
        let answering = |n: &Node| {
            n.connected
                && !n.denied
                && !self
                    .nodes
                    .iter()
                    .any(|o| !o.voter && o.id != n.id && o.peer == n.peer)
        };
        let live = |n: &Node| answering(n) && !n.unfit && (n.voter || n.ready);
        let catching_up = |n: &Node| {
            answering(n)
                && !n.unfit
                && self
                    .lagging_since
                    .get(&n.id)
                    .is_none_or(|since| self.now.duration_since(*since) < GRACE)
        };
        let voters = self.nodes.iter().filter(|n| n.voter).count();
        let live_voters = self.nodes.iter().filter(|n| n.voter && live(n)).count();
        let answering_voters = self
            .nodes
            .iter()
            .filter(|n| n.voter && answering(n))
            .count();
        let coming = self
            .nodes
            .iter()
            .filter(|n| !n.voter && (live(n) || catching_up(n)))
            .count();
        let target = 3;
        let expected =
            live_voters < target && live_voters + coming < target && answering_voters > voters / 2;
        let wants = self
            .seats
            .wants_recruit(self.now, &self.nodes, target, GRACE);
        ensure!(
            wants == expected,
            "recruit {wants} with {live_voters} live of {voters} voters and {coming} learners \
             live or catching up"
        );
        if wants && self.rng.gen_bool(0.5) {
            counts.recruits += 1;
            self.nodes.push(Node {
                id: self.next_id,
                peer: format!("p{}", self.next_id),
                voter: false,
                connected: true,
                denied: false,
                ready: self.rng.gen_bool(0.5),
                unfit: false,
            });
            self.next_id += 1;
        }
        Ok(())
    }
}

/// Two thousand random lives of 300 rounds each: every voter change follows the rules, and
/// none that the rules call for is missed.
#[test]
fn the_leader_replaces_and_recruits_by_its_rules_in_any_order_of_events() {
    let mut counts = Counts::default();
    for seed in 0..2000 {
        let mut world = World::new(seed);
        for round in 0..300 {
            world.step();
            if let Err(why) = world.round(&mut counts) {
                panic!("seed {seed}, round {round}: {why}");
            }
        }
    }
    eprintln!("{counts:?}");
    let least = [
        ("replacements after the timeout", counts.after_timeout),
        ("denied voters dropping out", counts.denied),
        (
            "denied voters dropped without a successor",
            counts.denied_outright,
        ),
        ("replacements of superseded voters", counts.superseded),
        ("replacements of unfit voters", counts.unfit),
        ("unfit learners losing their seats", counts.unfit_learners),
        (
            "dead voters kept without a majority",
            counts.kept_without_majority,
        ),
        (
            "dead voters kept without a learner",
            counts.kept_without_learner,
        ),
        ("recruits", counts.recruits),
        ("learners losing their seats", counts.stale_learners),
        ("changes that did not commit", counts.failed_commits),
    ];
    for (what, count) in least {
        assert!(
            count >= 50,
            "only {count} {what}: the world does not exercise the rule"
        );
    }
}
