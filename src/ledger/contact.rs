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

use std::sync::Mutex;
use std::time::Instant;

use super::follower::{LEADER_SILENCE, PROBE_AFTER};

/// The last time this raft instance heard from a leader, or started.
#[derive(Debug)]
pub(crate) struct Contact(Mutex<Instant>);

impl Contact {
    /// A raft instance started at `now` has heard nobody yet: its stored leader is judged
    /// from then.
    pub(crate) fn new(now: Instant) -> Self {
        Contact(Mutex::new(now))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Instant> {
        // Nothing panics while holding it.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Raft took an append or a snapshot chunk from its leader at `now`, or the leader said,
    /// asked, that it still leads.
    pub(crate) fn heard(&self, now: Instant) {
        let mut last = self.lock();
        *last = (*last).max(now);
    }

    /// Whether the leader has been quiet for [`PROBE_AFTER`] at `now`: time to ask it.
    pub(crate) fn quiet(&self, now: Instant) -> bool {
        now.saturating_duration_since(*self.lock()) > PROBE_AFTER
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
        let contact = Contact::new(t0);
        assert!(!contact.quiet(t0 + PROBE_AFTER));
        assert!(contact.quiet(t0 + PROBE_AFTER + Duration::from_millis(1)));
        assert!(!contact.silent(t0 + LEADER_SILENCE));
        let later = t0 + LEADER_SILENCE + Duration::from_millis(1);
        assert!(contact.silent(later));
        contact.heard(later);
        assert!(!contact.quiet(later + PROBE_AFTER));
        // An append that was answered late is no newer word.
        contact.heard(t0);
        assert!(!contact.quiet(later + PROBE_AFTER));
        assert!(contact.silent(later + LEADER_SILENCE + Duration::from_millis(1)));
    }
}
