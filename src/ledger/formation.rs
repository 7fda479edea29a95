//! When a node that belongs to no cluster stops listening for one and looks: asks its admitted
//! peers for their cluster, joins the one they name, or forms one when none exists and it has the
//! lowest PeerId. Listening longer makes it less likely that two nodes form two clusters that must
//! merge later; listening less forms the mesh sooner.
//!
//! A node whose discovery is all local (mDNS on its LAN, no bootstrap peers, no public DHT) hears
//! of its neighbours within a second of their start, so it looks once it has heard of no new peer
//! for `quiet` (and at least `quiet` after its own start). A node that discovers through remote
//! rendezvous cannot tell when it has heard enough, so it waits the whole `wait`. Admission lags
//! discovery by seconds on a busy machine (50 nodes starting on two cores), so a node forms only
//! when it is the lowest of every peer it heard of, admitted or not (refused peers aside), and of
//! the lowest member each peer it asked has admitted (its own hearing lags under load too). A lower
//! peer that is neither admitted nor refused (one this node cannot reach) holds formation back for
//! [`HELD_WAITS`] formation waits; then the lowest of those it admitted may form. It was one wait:
//! 100 nodes starting on two cores formed nine clusters, four of them 7 to 10 s after their node
//! started, past that one wait. Pure and time-injected: [`Listening`] is fed the count of peers
//! heard of and the time.

use std::time::{Duration, Instant};

/// How many formation waits a lower peer heard of, neither admitted nor refused, holds
/// formation back (30 s at the daemon's wait of 5 s).
pub const HELD_WAITS: u32 = 6;

/// What a node outside any cluster has heard so far.
#[derive(Debug, Clone)]
pub struct Listening {
    started: Instant,
    wait: Duration,
    quiet: Option<Duration>,
    peers: usize,
    changed: Instant,
}

impl Listening {
    /// Starts listening at `now`: looks after `wait` at the latest, or after `quiet` without a
    /// new peer when that is `Some` (local discovery only).
    pub fn new(now: Instant, wait: Duration, quiet: Option<Duration>) -> Self {
        Listening {
            started: now,
            wait,
            quiet,
            peers: 0,
            changed: now,
        }
    }

    /// Notes how many peers this node has heard of at `now`.
    pub fn observe(&mut self, peers: usize, now: Instant) {
        if peers != self.peers {
            self.peers = peers;
            self.changed = now;
        }
    }

    /// Whether the node has listened enough at `now` to look for a cluster.
    pub fn settled(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.started) >= self.wait
            || self
                .quiet
                .is_some_and(|quiet| now.saturating_duration_since(self.changed) >= quiet)
    }

    /// Whether this node (`me`), finding no cluster among its peers at `now`, forms one: when
    /// it is the lowest of itself and its `admitted` peers, and, until [`HELD_WAITS`] waits
    /// have passed, also lower than `lowest_heard`, the lowest peer heard of that was not
    /// refused. A lower peer that is never admitted nor refused holds formation back that
    /// long.
    pub fn may_form<'a>(
        &self,
        me: &str,
        admitted: impl IntoIterator<Item = &'a str>,
        lowest_heard: Option<&str>,
        now: Instant,
    ) -> bool {
        let lowest_admitted = admitted.into_iter().all(|peer| me < peer);
        let held =
            now.saturating_duration_since(self.started) >= self.wait.saturating_mul(HELD_WAITS);
        lowest_admitted && (held || lowest_heard.is_none_or(|heard| me < heard))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(5);
    const QUIET: Duration = Duration::from_secs(1);
    const STEP: Duration = Duration::from_millis(250);

    /// When a node first settles, given the count of peers heard of at each step of `STEP`.
    fn settles_at(quiet: Option<Duration>, counts: impl Fn(u32) -> usize) -> Duration {
        let start = Instant::now();
        let mut listening = Listening::new(start, WAIT, quiet);
        (0..)
            .map(|step| {
                let now = start + STEP * step;
                listening.observe(counts(step), now);
                (now, listening.settled(now))
            })
            .find(|(_, settled)| *settled)
            .map(|(now, _)| now - start)
            .expect("every node settles")
    }

    #[test]
    fn a_lone_node_with_local_discovery_looks_after_quiet() {
        assert_eq!(settles_at(Some(QUIET), |_| 0), QUIET);
    }

    #[test]
    fn each_new_peer_restarts_the_quiet_but_wait_bounds_it() {
        // A peer a second, up to 3: settles a quiet second after the third.
        let steady = settles_at(Some(QUIET), |step| (step / 4).min(3) as usize);
        assert_eq!(steady, Duration::from_secs(3) + QUIET);
        // Peers that keep coming: settles at `wait` all the same.
        assert_eq!(settles_at(Some(QUIET), |step| step as usize), WAIT);
    }

    #[test]
    fn a_node_that_discovers_remotely_waits_the_whole_wait() {
        assert_eq!(settles_at(None, |_| 0), WAIT);
        assert_eq!(settles_at(None, |step| (step / 4).min(2) as usize), WAIT);
    }

    #[test]
    fn only_the_lowest_of_every_peer_heard_of_forms_until_the_hold_passes() {
        let start = Instant::now();
        let listening = Listening::new(start, WAIT, Some(QUIET));
        let early = start + QUIET;
        // "b" admitted nobody yet, but heard of "a", which may be forming: "b" waits.
        assert!(!listening.may_form("b", [], Some("a"), early));
        assert!(listening.may_form("a", ["b"], Some("b"), early));
        // A peer it admitted is lower: never.
        assert!(!listening.may_form("b", ["a"], Some("a"), early));
        assert!(!listening.may_form("b", ["a"], None, start + WAIT * HELD_WAITS));
        // "a" is still being admitted after a wait, as under load: "b" still waits.
        assert!(!listening.may_form("b", ["c"], Some("a"), start + WAIT));
        let held = start + WAIT * HELD_WAITS;
        assert!(!listening.may_form("b", ["c"], Some("a"), held - STEP));
        // "a" was never admitted nor refused (unreachable from here): after the hold, "b"
        // forms all the same.
        assert!(listening.may_form("b", ["c"], Some("a"), held));
    }

    #[test]
    fn a_clock_that_seems_to_go_back_settles_nothing_early() {
        let start = Instant::now() + Duration::from_secs(10);
        let mut listening = Listening::new(start, WAIT, Some(QUIET));
        let earlier = start - Duration::from_secs(5);
        listening.observe(3, start);
        assert!(!listening.settled(earlier));
    }
}
