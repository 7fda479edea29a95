//! Pacing of discovery work that matters only while there is something to find.
//!
//! The autopilot paces its joins through a leader heard of the same way: at once, then ever
//! more rarely while the node stays outside a cluster.
//!
//! Rendezvous lookups and peer exchanges ask other members who they know; in a settled mesh the
//! answer never changes, and asking on a fixed timer costs every member traffic that grows with
//! the mesh. A [`Pacer`] runs such work at its base interval, doubles the gap after each round
//! that found nothing new, up to a maximum, and returns to the base interval when a round finds
//! someone new or when asked to ([`Pacer::reset`]). Pure and time-injected.

use std::time::{Duration, Instant};

/// When a piece of discovery work is next due.
#[derive(Debug, Clone)]
pub struct Pacer {
    base: Duration,
    max: Duration,
    /// The gap after the next round.
    gap: Duration,
    next: Instant,
}

impl Pacer {
    /// Work due at `now`, then every `base` while it finds something, up to every `max`.
    pub fn new(base: Duration, max: Duration, now: Instant) -> Self {
        Pacer {
            base,
            max: max.max(base),
            gap: base,
            next: now,
        }
    }

    /// Whether a round is due at `now`; if so, the next is scheduled after the current gap,
    /// and the gap after that doubles (the round is assumed to find nothing until
    /// [`Pacer::found`] says otherwise).
    pub fn due(&mut self, now: Instant) -> bool {
        if now < self.next {
            return false;
        }
        self.next = now + self.gap;
        self.gap = (self.gap * 2).min(self.max);
        true
    }

    /// A round found someone new: the next comes within the base interval, and the gaps start
    /// again from it.
    pub fn found(&mut self, now: Instant) {
        self.gap = self.base;
        self.next = self.next.min(now + self.base);
    }

    /// Makes a round due at once, with the gaps starting again from the base interval.
    pub fn reset(&mut self, now: Instant) {
        self.gap = self.base;
        self.next = now;
    }

    /// Keeps the gaps at the base interval (while this node has nobody to ask but the DHT, say).
    pub fn stay_eager(&mut self) {
        self.gap = self.base;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    /// The times at which a pacer fires between `start` and `start + span`, polled every second.
    fn rounds(pacer: &mut Pacer, start: Instant, span: Duration) -> Vec<u64> {
        (0..=span.as_secs())
            .filter(|&s| pacer.due(start + Duration::from_secs(s)))
            .collect()
    }

    #[test]
    fn rounds_that_find_nothing_grow_rarer_up_to_the_maximum() {
        let start = Instant::now();
        let mut pacer = Pacer::new(MINUTE, 8 * MINUTE, start);
        let minutes: Vec<u64> = rounds(&mut pacer, start, 40 * MINUTE)
            .into_iter()
            .map(|s| s / 60)
            .collect();
        assert_eq!(minutes, [0, 1, 3, 7, 15, 23, 31, 39]);
    }

    #[test]
    fn finding_someone_brings_the_base_interval_back() {
        let start = Instant::now();
        let mut pacer = Pacer::new(MINUTE, 16 * MINUTE, start);
        rounds(&mut pacer, start, 10 * MINUTE);
        // Rounds at 0, 1, 3 and 7 minutes; the next is due at 15.
        let now = start + 10 * MINUTE;
        pacer.found(now);
        assert!(!pacer.due(now + MINUTE - Duration::from_secs(1)));
        assert!(pacer.due(now + MINUTE));
        assert!(
            pacer.due(now + 2 * MINUTE),
            "the gap starts again from the base"
        );
    }

    #[test]
    fn a_reset_is_due_at_once_and_eager_pacing_never_backs_off() {
        let start = Instant::now();
        let mut pacer = Pacer::new(MINUTE, 16 * MINUTE, start);
        rounds(&mut pacer, start, 10 * MINUTE);
        let now = start + 10 * MINUTE;
        pacer.reset(now);
        assert!(pacer.due(now));
        let mut eager = Pacer::new(MINUTE, 16 * MINUTE, start);
        let fired: Vec<u64> = (0..=300)
            .filter(|&s| {
                eager.stay_eager();
                eager.due(start + Duration::from_secs(s))
            })
            .collect();
        assert_eq!(fired, [0, 60, 120, 180, 240, 300]);
    }
}
