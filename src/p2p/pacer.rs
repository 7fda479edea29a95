//! Pacing of discovery work that matters only while there is something to find.
//!
//! The autopilot paces its joins through a leader heard of the same way: at once, then ever
//! more rarely while the node stays outside a cluster.
//!
//! Rendezvous lookups and peer exchanges ask other members who they know; in a settled mesh the
//! answer never changes, and asking on a fixed timer costs every member traffic that grows with
//! the mesh. A [`Pacer`] runs such work at its base interval, doubles the gap after each round
//! that found nothing new, up to a maximum, and returns to the base interval when a round finds
//! someone new or when asked to ([`Pacer::reset`]). While there is nothing to find as far as
//! the caller can tell, it keeps to the maximum ([`Pacer::settle`]). Pure and time-injected.

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

    /// Keeps to the longest gap (while everyone this node has heard of is reached, say): the
    /// round already due still comes when it is due (one asked for by [`Pacer::reset`] or
    /// [`Pacer::found`] included), and the next comes the maximum after it.
    pub fn settle(&mut self) {
        self.gap = self.max;
    }
}

/// How a node's rendezvous lookups are paced, by what it holds ([`lookup_pace`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupPace {
    /// At the base interval: nobody is admitted, so only the DHT can name members.
    Eager,
    /// At the longest gap: there is nothing to find as far as the node can tell.
    Settled,
    /// As the rounds find: someone heard of is still being dialled.
    AsFound,
}

/// The pace of the rendezvous lookups of a node that holds `admitted` admitted connections,
/// `member_links` of them to members of its cluster, keeps `enough` member connections, and
/// still redials someone it heard of unless `reaches_all`. A node that holds as many members as
/// it keeps dials no more members for what a lookup names (strangers still, and one probe), so
/// a lookup would mostly cost: the answers of the members it asks, each listing members with
/// their addresses, and the member it probes (a new connection, some 10 kB each way). What only
/// its lookup would find is a member of a cluster formed apart, which the longest gap still
/// finds.
pub fn lookup_pace(
    admitted: usize,
    member_links: usize,
    enough: usize,
    reaches_all: bool,
) -> LookupPace {
    if admitted == 0 {
        LookupPace::Eager
    } else if reaches_all || member_links >= enough {
        LookupPace::Settled
    } else {
        LookupPace::AsFound
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_settle_once_the_node_holds_the_members_it_keeps() {
        assert_eq!(lookup_pace(0, 0, 4, true), LookupPace::Eager);
        assert_eq!(lookup_pace(2, 1, 4, false), LookupPace::AsFound);
        assert_eq!(lookup_pace(2, 1, 4, true), LookupPace::Settled);
        // Members heard of and not reached (discovery names more than it dials) do not hold
        // a node with enough members at the quick rounds.
        assert_eq!(lookup_pace(5, 4, 4, false), LookupPace::Settled);
        // Peers outside the cluster do not count as members.
        assert_eq!(lookup_pace(6, 3, 4, false), LookupPace::AsFound);
    }

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
    fn a_settled_pacer_keeps_to_the_longest_gap_until_something_is_found() {
        let start = Instant::now();
        let mut pacer = Pacer::new(MINUTE, 16 * MINUTE, start);
        let settled = |pacer: &mut Pacer, s: u64| {
            pacer.settle();
            pacer.due(start + Duration::from_secs(s))
        };
        let minutes: Vec<u64> = (0..=40 * 60)
            .filter(|&s| settled(&mut pacer, s))
            .map(|s| s / 60)
            .collect();
        assert_eq!(minutes, [0, 16, 32]);
        // A round asked for is not put off by settling, but the one after it is.
        let now = start + 40 * MINUTE;
        pacer.found(now);
        assert!(
            settled(&mut pacer, 41 * 60),
            "found: due within the base interval"
        );
        pacer.reset(start + 42 * MINUTE);
        assert!(settled(&mut pacer, 42 * 60), "reset: due at once");
        assert!(!settled(&mut pacer, 57 * 60));
        assert!(settled(&mut pacer, 58 * 60));
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
