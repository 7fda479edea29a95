//! When this raft node last heard from its leader. A voter that hears nothing from its leader
//! stands for election within seconds, so it soon names none or a new one; a learner never
//! stands, so it names the leader it last heard for ever, even one that has left the cluster
//! (merged into another and wiped its raft state). Until a learner's own record froze (a lease
//! timeout and a renewal interval, about 13 minutes by default) nothing told it.
//!
//! So the raft service records each append and snapshot chunk raft takes as from the current
//! leader ([`super::service::answer_raft`]), and the autopilot treats a raft leader that has
//! sent nothing for a while as a follower treats a quiet feed ([`super::follower`]): past
//! [`PROBE_AFTER`] it asks the leader whether it still leads this cluster, and a leader that
//! says so counts as heard; past [`LEADER_SILENCE`] without a word, this node's cluster counts
//! as leaderless for it. An idle leader sends every raft member a heartbeat each 500 ms, and a
//! snapshot chunk is given 30 s, so a working leader is never quiet that long.
//!
//! Word is counted only for the raft node it was meant for. An append taken, or a leader's
//! answer asked for, just before this node wiped its raft state speaks of the raft instance
//! that is gone: counted for the new one, it would keep that one from asking its own leader
//! for up to [`PROBE_AFTER`].

use std::sync::Mutex;
use std::time::Instant;

use super::follower::{LEADER_SILENCE, PROBE_AFTER};

/// The last time this raft instance heard from a leader, or started.
#[derive(Debug)]
pub(crate) struct Contact {
    /// The raft node this instance is: word meant for another one is not counted.
    node: u64,
    last: Mutex<Instant>,
}

impl Contact {
    /// Raft node `node`, started at `now`, has heard nobody yet: its stored leader is judged
    /// from then.
    pub(crate) fn new(node: u64, now: Instant) -> Self {
        Contact {
            node,
            last: Mutex::new(now),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Instant> {
        // Nothing panics while holding it.
        self.last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Raft node `node` took an append or a snapshot chunk from its leader at `now`, or the
    /// leader said, asked, that it still leads. Nothing moves when `node` is not this raft
    /// node (the instance it was meant for was wiped since).
    pub(crate) fn heard(&self, node: u64, now: Instant) {
        if node != self.node {
            return;
        }
        let mut last = self.lock();
        *last = (*last).max(now);
    }

    /// Whether the leader has been quiet for [`PROBE_AFTER`] at `now`: time to ask it.
    pub(crate) fn quiet(&self, now: Instant) -> bool {
        now.saturating_duration_since(*self.lock()) > PROBE_AFTER
    }

    /// Whether this raft instance took word from a leader (or started) within `within` of
    /// `now`.
    pub(crate) fn heard_within(&self, now: Instant, within: std::time::Duration) -> bool {
        now.saturating_duration_since(*self.lock()) <= within
    }

    /// Whether the leader has been silent for [`LEADER_SILENCE`] at `now`: the cluster counts as
    /// leaderless for this node.
    pub(crate) fn silent(&self, now: Instant) -> bool {
        now.saturating_duration_since(*self.lock()) > LEADER_SILENCE
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_leader_is_quiet_then_silent_unless_heard_and_an_earlier_word_moves_nothing() {
        let t0 = Instant::now();
        let contact = Contact::new(7, t0);
        assert!(!contact.quiet(t0 + PROBE_AFTER));
        assert!(contact.quiet(t0 + PROBE_AFTER + Duration::from_millis(1)));
        assert!(!contact.silent(t0 + LEADER_SILENCE));
        let later = t0 + LEADER_SILENCE + Duration::from_millis(1);
        assert!(contact.silent(later));
        contact.heard(7, later);
        assert!(!contact.quiet(later + PROBE_AFTER));
        // An append that was answered late is no newer word.
        contact.heard(7, t0);
        assert!(!contact.quiet(later + PROBE_AFTER));
        assert!(contact.silent(later + LEADER_SILENCE + Duration::from_millis(1)));
    }

    #[test]
    fn word_meant_for_the_raft_node_this_node_was_before_a_wipe_moves_nothing() {
        let t0 = Instant::now();
        // The instance drawn at the wipe is raft node 9; an append to node 7 was in flight.
        let contact = Contact::new(9, t0);
        let late = t0 + Duration::from_secs(5);
        contact.heard(7, late);
        let probe = t0 + PROBE_AFTER + Duration::from_millis(1);
        assert!(
            contact.quiet(probe),
            "the new instance asks its leader on time"
        );
        contact.heard(9, late);
        assert!(!contact.quiet(probe));
    }
}
