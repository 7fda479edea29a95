//! The leader's decisions about raft seats, pure and time-injected: which voters to replace
//! by which learners, and whether to bring a follower in as a learner. The autopilot reads the
//! raft membership, the admitted peers and the deny list into [`Node`]s, asks, and carries out
//! the change; the rules live here, where a property test can drive them through any order of
//! events (`seats/world.rs`).
//!
//! Voters: a voter that no admitted connection has reached for the voter timeout, a denied
//! voter and a superseded one (its node joined again under a new raft id) at once, is replaced
//! by a reachable learner that has caught up with the leader's log ([`caught_up`]), one for
//! one, so the count of voters stays odd; denied voters give up their seats first. Without a
//! reachable learner a dead voter keeps its seat (the others still form a quorum), except a
//! denied one: it loses its seat outright, leaving an even count for a while. Dropping it costs
//! no fault tolerance (every member has cut it off, so the others already form the quorum
//! alone, and a quorum of the smaller set is as many of them) and ends its vote. Nothing
//! changes while the leader reaches no more than half of its voters: it is on the small side of
//! a partition, and the change could not commit.
//!
//! Unfit nodes: once the ledger adopted rules, a raft node whose member record says its weft
//! does not read them (one taken back to an older weft) would apply later entries by older
//! rules, and could lead; a raft node that runs without the operator key of a leader that has
//! one (restarted without it) would take operator commands unchecked were it to lead
//! (`ledger/keyed.rs`); and, once the operator trusts some members with seats, any other, the
//! leader included (`ledger/state/trust.rs`). As a voter an unfit node is replaced at once by
//! a live learner, as a superseded one is (it still answers, so it is not dropped outright,
//! which would cost a voter's worth of fault tolerance); as a learner it loses its seat at
//! once; it is never live.
//!
//! Learners: when fewer voters than the target are live, and too few learners live or still
//! catching up to fill the target with them, and the leader reaches a majority of its voters,
//! it brings in the live follower with the lowest PeerId among a few that say they are in its
//! cluster ([`pick_recruit`]). A learner counts as live only once ready: caught up with the
//! log and, in a mesh with an operator key, known to run with it (`ledger/keyed.rs`). One that
//! takes no appends (a token holder that joined and answers nothing), or never answers which
//! key it runs with, never gets a vote, nor keeps the leader from recruiting another for longer
//! than the grace it is given to catch up. A learner that is not ready at any round for the
//! stale-learner timeout loses its seat ([`Seats::stale_learners`]).
//!
//! Denials: a denial that would leave no majority of the voters undenied (a sole voter, or one of
//! two) would leave the cluster headless, since the members cut the denied node off as they apply
//! it and the learners left can elect no one. The leader hands such seats to ready learners, one
//! for one, before it commits the denial ([`room_for_denial`]).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// A raft node as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub id: u64,
    /// The PeerId it is registered as.
    pub peer: String,
    pub voter: bool,
    /// Whether an admitted connection reaches its PeerId now.
    pub connected: bool,
    /// Whether the mesh denies its PeerId.
    pub denied: bool,
    /// For a learner, whether it is ready for a vote: its log has caught up with the leader's
    /// ([`caught_up`]) and, when the leader has an operator key, it answered that it runs with
    /// it since it was admitted (`ledger/keyed.rs`).
    pub ready: bool,
    /// Whether it may not hold a seat: its member record says its weft does not read the rules
    /// the ledger adopted (`LedgerState::outdated`), it runs without the leader's operator
    /// key (`ledger/keyed.rs`), or the operator trusts other members with seats and not it
    /// (`LedgerState::may_hold_seat`; the leader itself included).
    pub unfit: bool,
}

/// How many entries a learner's log may lag the leader's and still count as caught up: a few
/// append batches in flight.
pub const CAUGHT_UP_LAG: u64 = 64;

/// Whether a learner whose log matches the leader's up to index `matched` (none yet: `None`)
/// has caught up with the leader's log, which ends at `last`.
pub fn caught_up(matched: Option<u64>, last: Option<u64>) -> bool {
    let next = |index: Option<u64>| index.map_or(0, |i| i + 1);
    next(last).saturating_sub(next(matched)) <= CAUGHT_UP_LAG
        && (matched.is_some() || last.is_none())
}

/// A change of voters: the voters after it, and the ones it drops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replacement {
    pub voters: BTreeSet<u64>,
    pub dropped: Vec<u64>,
}

/// When each voter was first seen unreachable, and each learner first seen lagging, across the
/// leader's rounds.
#[derive(Debug, Default)]
pub struct Seats {
    unreachable_since: HashMap<u64, Instant>,
    lagging_since: HashMap<u64, Instant>,
}

/// Whether `node` joined again under a new raft id: a learner of another id holds its PeerId.
/// Only the node itself can join under its PeerId, so no member can retire another's seat so.
fn superseded(nodes: &[Node], node: &Node) -> bool {
    nodes
        .iter()
        .any(|other| !other.voter && other.id != node.id && other.peer == node.peer)
}

/// Whether `node` answers for its seat: connected, neither superseded nor denied.
fn answering(nodes: &[Node], node: &Node) -> bool {
    node.connected && !node.denied && !superseded(nodes, node)
}

/// Whether `node` counts as live: answering, not unfit, and, a learner, ready.
fn live(nodes: &[Node], node: &Node) -> bool {
    answering(nodes, node) && !node.unfit && (node.voter || node.ready)
}

/// Whether the leader reaches more than half of its voters (unfit ones vote, so they count).
fn reaches_majority(nodes: &[Node]) -> bool {
    let voters = nodes.iter().filter(|n| n.voter).count();
    let answering = nodes
        .iter()
        .filter(|n| n.voter && answering(nodes, n))
        .count();
    answering > voters / 2
}

impl Seats {
    /// Forgets every timer (a new leadership starts them fresh).
    pub fn clear(&mut self) {
        self.unreachable_since.clear();
        self.lagging_since.clear();
    }

    /// The learners whose seats go at `now`: each has lagged the leader's log at every round
    /// for `timeout`, or is unfit. None while the leader reaches no more than half of its
    /// voters.
    pub fn stale_learners(&mut self, now: Instant, nodes: &[Node], timeout: Duration) -> Vec<u64> {
        let lagging = |n: &Node| !n.voter && !n.ready;
        self.lagging_since
            .retain(|id, _| nodes.iter().any(|n| n.id == *id && lagging(n)));
        let stale: Vec<u64> = nodes
            .iter()
            .filter(|n| {
                let lagged_out = lagging(n) && {
                    let since = *self.lagging_since.entry(n.id).or_insert(now);
                    now.duration_since(since) >= timeout
                };
                lagged_out || (!n.voter && n.unfit)
            })
            .map(|n| n.id)
            .collect();
        if reaches_majority(nodes) {
            stale
        } else {
            Vec::new()
        }
    }

    /// The voter change due at `now`, if any. Dead voters are replaced in the order of `nodes`
    /// (denied ones first).
    pub fn replacement(
        &mut self,
        now: Instant,
        nodes: &[Node],
        voter_timeout: Duration,
    ) -> Option<Replacement> {
        let voters: Vec<&Node> = nodes.iter().filter(|n| n.voter).collect();
        self.unreachable_since.retain(|id, _| {
            voters
                .iter()
                .any(|v| v.id == *id && (!v.connected || superseded(nodes, v)))
        });
        let mut dead: Vec<&Node> = Vec::new();
        for voter in &voters {
            let gone = superseded(nodes, voter);
            // Time unreachable counts while denied too: allowed again, it is not new.
            let down_since = (!voter.connected || gone)
                .then(|| *self.unreachable_since.entry(voter.id).or_insert(now));
            let timed_out =
                down_since.is_some_and(|since| now.duration_since(since) >= voter_timeout);
            if voter.denied || voter.unfit || gone || timed_out {
                dead.push(voter);
            }
        }
        if dead.is_empty() || !reaches_majority(nodes) {
            return None;
        }
        let learners: Vec<u64> = nodes
            .iter()
            .filter(|n| !n.voter && live(nodes, n))
            .map(|n| n.id)
            .collect();
        // Denied voters give up their seats first (a stable sort keeps the rest in order).
        dead.sort_by_key(|voter| !voter.denied);
        let replaced = dead.len().min(learners.len());
        // Denied voters no learner replaces go without a successor.
        let denied_left = dead[replaced..].iter().filter(|v| v.denied).count();
        if replaced + denied_left == 0 {
            return None;
        }
        let dropped: Vec<u64> = dead[..replaced + denied_left]
            .iter()
            .map(|v| v.id)
            .collect();
        let voters = voters
            .iter()
            .map(|v| v.id)
            .filter(|id| !dropped.contains(id))
            .chain(learners.into_iter().take(replaced))
            .collect();
        Some(Replacement { voters, dropped })
    }

    /// The change committed: its dropped voters' timers go.
    pub fn replaced(&mut self, dropped: &[u64]) {
        for id in dropped {
            self.unreachable_since.remove(id);
        }
    }

    /// Whether a leader with `nodes` should bring a follower in as a learner at `now`: fewer
    /// than `target` voters are live, the live learners and those still catching up (connected,
    /// lagging for less than `grace`) cannot fill the target with them, and it reaches a
    /// majority of its voters (on the small side of a partition the change would leave the
    /// follower a learner of a membership that never commits). A learner not yet seen lagging
    /// (just added) is still catching up. Reads the lagging timers [`Seats::stale_learners`]
    /// keeps.
    pub fn wants_recruit(
        &self,
        now: Instant,
        nodes: &[Node],
        target: usize,
        grace: Duration,
    ) -> bool {
        let live_voters = nodes.iter().filter(|n| n.voter && live(nodes, n)).count();
        let coming = nodes
            .iter()
            .filter(|n| !n.voter)
            .filter(|n| {
                live(nodes, n)
                    || (answering(nodes, n)
                        && !n.unfit
                        && self
                            .lagging_since
                            .get(&n.id)
                            .is_none_or(|since| now.duration_since(*since) < grace))
            })
            .count();
        live_voters < target && live_voters + coming < target && reaches_majority(nodes)
    }
}

/// The follower to bring in: the lowest PeerId among `answers` (each asked follower's PeerId
/// and its answer) whose answer says it is in this cluster.
pub fn pick_recruit<P: Ord, A>(
    answers: Vec<(P, A)>,
    in_ours: impl Fn(&A) -> bool,
) -> Option<(P, A)> {
    answers
        .into_iter()
        .filter(|(_, answer)| in_ours(answer))
        .min_by(|a, b| a.0.cmp(&b.0))
}

/// Whether `peer` holds a voter seat of `voters` (each raft id with its PeerId) under another
/// raft id than `id`: a node that wiped its raft state and joined again as `id` while its
/// earlier seat stands.
pub fn voter_seat_elsewhere(voters: &[(u64, &str)], id: u64, peer: &str) -> bool {
    voters.iter().any(|(voter, p)| *voter != id && *p == peer)
}

/// The learners fit for a vote now: live (connected, ready, neither denied, superseded nor
/// unfit), and not holding a voter seat under an earlier raft id as well, a seat that the rules
/// replace by it ([`Seats::replacement`], superseded voters) rather than that it joins. What a
/// leader promotes and hands a denied voter's seat to.
pub fn ready_learners(nodes: &[Node]) -> Vec<u64> {
    nodes
        .iter()
        .filter(|n| !n.voter && live(nodes, n))
        .filter(|n| !nodes.iter().any(|o| o.voter && o.peer == n.peer))
        .map(|n| n.id)
        .collect()
}

/// What a leader does before it commits a denial ([`room_for_denial`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Room {
    /// The voters left after it hold a majority: nothing.
    Enough,
    /// Change the voters to these first.
    Reseat(BTreeSet<u64>),
    /// No voter would be left, and no learner is ready to take a seat.
    NoneReady,
}

/// Before a denial: `voters`, each with whether it is gone once the denial applies (the node
/// denied, or one denied already), and the learners `ready` for a vote. When the voters left
/// are no majority, so could elect no one once the members cut the others off, the gone ones
/// are replaced by ready learners one for one, and without enough of them leave their seats
/// anyway: the voters left then answer for the cluster on their own.
pub fn room_for_denial(voters: &[(u64, bool)], ready: &[u64]) -> Room {
    let left: BTreeSet<u64> = voters
        .iter()
        .filter(|(_, gone)| !gone)
        .map(|(id, _)| *id)
        .collect();
    let gone = voters.len() - left.len();
    if gone == 0 || 2 * left.len() > voters.len() {
        return Room::Enough;
    }
    let mut seated = left;
    seated.extend(ready.iter().take(gone));
    if seated.is_empty() {
        Room::NoneReady
    } else {
        Room::Reseat(seated)
    }
}

#[cfg(test)]
mod world;

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u64, voter: bool, connected: bool) -> Node {
        Node {
            id,
            peer: format!("p{id}"),
            voter,
            connected,
            denied: false,
            ready: true,
            unfit: false,
        }
    }

    const TIMEOUT: Duration = Duration::from_secs(30);

    #[test]
    fn an_unreachable_voter_is_replaced_after_the_timeout_by_a_live_learner() {
        let start = Instant::now();
        let mut seats = Seats::default();
        let nodes = [
            node(1, true, true),
            node(2, true, true),
            node(3, true, false),
            node(4, false, true),
        ];
        assert_eq!(seats.replacement(start, &nodes, TIMEOUT), None);
        assert_eq!(
            seats.replacement(start + TIMEOUT - Duration::from_millis(1), &nodes, TIMEOUT),
            None
        );
        let change = seats.replacement(start + TIMEOUT, &nodes, TIMEOUT).unwrap();
        assert_eq!(change.dropped, [3]);
        assert_eq!(change.voters, BTreeSet::from([1, 2, 4]));
    }

    #[test]
    fn a_denied_or_superseded_voter_goes_at_once_the_denied_first() {
        let now = Instant::now();
        let mut seats = Seats::default();
        let mut denied = node(2, true, true);
        denied.denied = true;
        let mut again = node(9, false, true);
        again.peer = "p3".into();
        let nodes = [
            node(1, true, true),
            denied,
            node(3, true, true),
            node(4, true, true),
            node(5, true, true),
            node(6, false, true),
            again,
        ];
        let change = seats.replacement(now, &nodes, TIMEOUT).unwrap();
        assert_eq!(change.dropped, [2, 3]);
        assert_eq!(change.voters, BTreeSet::from([1, 4, 5, 6, 9]));
    }

    #[test]
    fn a_denied_voter_no_learner_replaces_loses_its_seat_outright() {
        let now = Instant::now();
        let mut seats = Seats::default();
        let mut denied = node(3, true, true);
        denied.denied = true;
        let alone = [node(1, true, true), node(2, true, true), denied.clone()];
        let change = seats.replacement(now, &alone, TIMEOUT).unwrap();
        assert_eq!(change.dropped, [3]);
        assert_eq!(change.voters, BTreeSet::from([1, 2]));

        let mut also_denied = node(4, true, true);
        also_denied.denied = true;
        let one_learner = [
            node(1, true, true),
            node(2, true, true),
            denied,
            also_denied,
            node(5, true, true),
            node(6, false, true),
        ];
        let change = seats.replacement(now, &one_learner, TIMEOUT).unwrap();
        assert_eq!(change.dropped, [3, 4], "one replaced, the other dropped");
        assert_eq!(change.voters, BTreeSet::from([1, 2, 5, 6]));
    }

    #[test]
    fn an_unfit_voter_is_replaced_at_once_by_a_live_learner_and_keeps_its_seat_without_one() {
        let now = Instant::now();
        let mut seats = Seats::default();
        let mut unfit = node(2, true, true);
        unfit.unfit = true;
        let mut unfit_learner = node(5, false, true);
        unfit_learner.unfit = true;
        let alone = [node(1, true, true), unfit.clone(), node(3, true, true)];
        assert_eq!(
            seats.replacement(now, &alone, TIMEOUT),
            None,
            "it still votes: dropping it outright would cost fault tolerance"
        );
        assert!(
            seats.wants_recruit(now, &alone, 3, GRACE),
            "it is not live, so a follower is brought in to replace it"
        );
        let with_learners = [
            node(1, true, true),
            unfit,
            node(3, true, false),
            node(4, false, true),
            unfit_learner.clone(),
        ];
        let change = seats.replacement(now, &with_learners, TIMEOUT).unwrap();
        assert_eq!(change.dropped, [2], "an unfit learner steps in for nobody");
        assert_eq!(change.voters, BTreeSet::from([1, 3, 4]));
        assert!(
            !seats.wants_recruit(now, &[node(1, true, true), unfit_learner.clone()], 1, GRACE),
            "the leader alone fills a target of one"
        );
        assert!(
            seats.wants_recruit(now, &[node(1, true, true), unfit_learner.clone()], 3, GRACE),
            "an unfit learner is not coming"
        );
    }

    #[test]
    fn an_unfit_learner_loses_its_seat_at_once_while_the_leader_reaches_a_majority() {
        let now = Instant::now();
        let mut seats = Seats::default();
        let mut unfit = node(4, false, true);
        unfit.unfit = true;
        let mut nodes = vec![node(1, true, true), node(2, true, true), unfit];
        assert_eq!(seats.stale_learners(now, &nodes, TIMEOUT), [4]);
        nodes[1].connected = false;
        assert!(seats.stale_learners(now, &nodes, TIMEOUT).is_empty());
    }

    #[test]
    fn nothing_changes_without_a_majority_or_a_learner_to_step_in() {
        let start = Instant::now();
        let mut seats = Seats::default();
        let cut_off = [
            node(1, true, true),
            node(2, true, false),
            node(3, true, false),
            node(4, false, true),
        ];
        seats.replacement(start, &cut_off, TIMEOUT);
        assert_eq!(seats.replacement(start + TIMEOUT, &cut_off, TIMEOUT), None);
        let no_learner = [
            node(1, true, true),
            node(2, true, true),
            node(3, true, false),
        ];
        seats.replacement(start, &no_learner, TIMEOUT);
        assert_eq!(
            seats.replacement(start + TIMEOUT, &no_learner, TIMEOUT),
            None
        );
    }

    const GRACE: Duration = Duration::from_secs(10);

    #[test]
    fn a_follower_is_recruited_only_when_voters_are_short_and_learners_cannot_fill_the_target() {
        let now = Instant::now();
        let wants =
            |nodes: &[Node], target| Seats::default().wants_recruit(now, nodes, target, GRACE);
        let short = [node(1, true, true)];
        assert!(wants(&short, 3));
        assert!(!wants(&short, 1));
        assert!(!wants(
            &[
                node(1, true, true),
                node(2, true, true),
                node(3, false, true)
            ],
            3
        ));
        assert!(
            wants(&[node(1, true, true), node(2, false, true)], 3),
            "one live learner cannot fill three seats with the one voter"
        );
        assert!(
            wants(&[node(1, true, true), node(2, false, false)], 3),
            "a learner that is not live cannot step in"
        );
        assert!(
            !wants(
                &[
                    node(1, true, true),
                    node(2, true, false),
                    node(3, true, false)
                ],
                3
            ),
            "a leader cut off from its quorum recruits nobody"
        );
        assert_eq!(
            pick_recruit(vec![("c", 1), ("a", 2), ("b", 1)], |c| *c == 1),
            Some(("b", 1))
        );
        assert_eq!(pick_recruit(vec![("a", 2)], |c| *c == 1), None);
    }

    #[test]
    fn a_learner_that_has_not_caught_up_neither_replaces_a_voter_nor_stops_a_recruit_for_long() {
        let start = Instant::now();
        let mut seats = Seats::default();
        let mut lagging = node(4, false, true);
        lagging.ready = false;
        let nodes = [
            node(1, true, true),
            node(2, true, true),
            node(3, true, false),
            lagging,
        ];
        seats.replacement(start, &nodes, TIMEOUT);
        assert_eq!(seats.replacement(start + TIMEOUT, &nodes, TIMEOUT), None);
        assert!(
            !seats.wants_recruit(start, &nodes, 3, GRACE),
            "not seen lagging yet: it is catching up"
        );
        seats.stale_learners(start, &nodes, TIMEOUT);
        let almost = start + GRACE - Duration::from_millis(1);
        assert!(!seats.wants_recruit(almost, &nodes, 3, GRACE));
        assert!(seats.wants_recruit(start + GRACE, &nodes, 3, GRACE));
        let mut caught = nodes.clone();
        caught[3].ready = true;
        let change = seats
            .replacement(start + TIMEOUT, &caught, TIMEOUT)
            .unwrap();
        assert_eq!(change.voters, BTreeSet::from([1, 2, 4]));
        assert!(!seats.wants_recruit(start + TIMEOUT, &caught, 3, GRACE));
    }

    #[test]
    fn a_learner_is_caught_up_within_the_lag_and_only_once_it_holds_an_entry() {
        assert!(caught_up(None, None), "nothing to catch up with");
        assert!(!caught_up(None, Some(3)), "no entry matched yet");
        assert!(caught_up(Some(3), Some(3)));
        assert!(caught_up(Some(100), Some(100 + CAUGHT_UP_LAG)));
        assert!(!caught_up(Some(100), Some(101 + CAUGHT_UP_LAG)));
        assert!(caught_up(Some(9), Some(3)), "ahead of a stale reading");
    }

    #[test]
    fn a_learner_lagging_at_every_round_for_the_timeout_loses_its_seat() {
        let start = Instant::now();
        let mut seats = Seats::default();
        let mut lagging = node(4, false, true);
        lagging.ready = false;
        let mut nodes = vec![node(1, true, true), node(2, true, true), lagging];
        assert!(seats.stale_learners(start, &nodes, TIMEOUT).is_empty());
        let almost = start + TIMEOUT - Duration::from_millis(1);
        assert!(seats.stale_learners(almost, &nodes, TIMEOUT).is_empty());
        assert_eq!(seats.stale_learners(start + TIMEOUT, &nodes, TIMEOUT), [4]);

        nodes[2].ready = true;
        assert!(
            seats
                .stale_learners(start + TIMEOUT, &nodes, TIMEOUT)
                .is_empty()
        );
        nodes[2].ready = false;
        let again = start + 2 * TIMEOUT;
        assert!(
            seats.stale_learners(again, &nodes, TIMEOUT).is_empty(),
            "caught up once, its timer starts again"
        );
        nodes[1].connected = false;
        assert!(
            seats
                .stale_learners(again + TIMEOUT, &nodes, TIMEOUT)
                .is_empty(),
            "not while the leader reaches only half of its voters"
        );
    }

    #[test]
    fn only_live_learners_without_a_voter_seat_are_ready_for_a_vote() {
        let mut nodes = vec![node(1, true, true), node(2, false, true)];
        nodes[1].ready = true;
        assert_eq!(ready_learners(&nodes), vec![2]);
        for unready in [
            |n: &mut Node| n.connected = false,
            |n: &mut Node| n.ready = false,
            |n: &mut Node| n.denied = true,
            |n: &mut Node| n.unfit = true,
        ] {
            let mut nodes = nodes.clone();
            unready(&mut nodes[1]);
            assert!(ready_learners(&nodes).is_empty(), "{:?}", nodes[1]);
        }
        // Its PeerId holds a voter seat under an earlier raft id: that seat is replaced by it.
        let mut rejoined = nodes.clone();
        rejoined[1].peer = rejoined[0].peer.clone();
        assert!(ready_learners(&rejoined).is_empty());
        // Two learner seats of one PeerId: neither, until the join removes the earlier.
        let mut twice = nodes.clone();
        twice.push(Node {
            id: 3,
            ..nodes[1].clone()
        });
        assert!(ready_learners(&twice).is_empty());
    }

    #[test]
    fn a_denial_that_would_leave_no_majority_hands_the_seats_over_first() {
        let set = |ids: &[u64]| Room::Reseat(ids.iter().copied().collect());
        // Not a voter, or a majority left: nothing.
        assert_eq!(room_for_denial(&[(1, false)], &[2]), Room::Enough);
        assert_eq!(
            room_for_denial(&[(1, true), (2, false), (3, false)], &[]),
            Room::Enough
        );
        // The sole voter: a ready learner takes its seat, or the denial waits.
        assert_eq!(room_for_denial(&[(1, true)], &[2, 3]), set(&[2]));
        assert_eq!(room_for_denial(&[(1, true)], &[]), Room::NoneReady);
        // One of two, or two of three (one denied before): one for one.
        assert_eq!(
            room_for_denial(&[(1, true), (2, false)], &[3]),
            set(&[2, 3])
        );
        assert_eq!(
            room_for_denial(&[(1, true), (2, true), (3, false)], &[4, 5, 6]),
            set(&[3, 4, 5])
        );
        // Too few learners: the voters left answer alone.
        assert_eq!(
            room_for_denial(&[(1, true), (2, true), (3, false)], &[]),
            set(&[3])
        );
    }
}
