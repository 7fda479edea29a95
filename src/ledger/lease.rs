//! Lease expiry as the leader decides it, from its own monotonic clock alone: a member's lease
//! expires once the leader has, for a whole lease timeout, neither seen it renew nor reached
//! it. A renewal is any change of the member's recorded renewal stamp, whatever clock wrote the
//! stamp (the leader's, in a `Renewals` entry; a member's, in a `Renew`): a clock that is off,
//! or steps back, renews like any other, and no wall clock decides an expiry. A reachable member (an admitted connection) is alive too. A new
//! leader starts every timer fresh. Pure and time-injected: [`Leases::expired`] takes the
//! members and `now`, the autopilot proposes what it returns. The autopilot runs a second set
//! of these timers, over the install timeout, for expired members in the middle of installing
//! their control-plane seats, with the stamp of their last report as the renewal.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::state::PeerKey;

/// The leader's view of the live members' leases.
#[derive(Debug)]
pub struct Leases {
    timeout: Duration,
    seen: HashMap<PeerKey, Seen>,
}

/// What the leader last saw of one member.
#[derive(Debug)]
struct Seen {
    /// Its renewal stamp as last read.
    stamp: u64,
    /// When it last renewed or was reachable, or when this leader started counting.
    alive_at: Instant,
}

impl Leases {
    /// A leader's fresh view: nobody has been seen yet, so every timer starts at the first
    /// look.
    pub fn new(timeout: Duration) -> Self {
        Leases {
            timeout,
            seen: HashMap::new(),
        }
    }

    /// Takes the live members (PeerId and renewal stamp) and whether each is reachable, at
    /// `now`; answers the members whose lease has expired.
    pub fn expired(
        &mut self,
        live: &[(PeerKey, u64)],
        reachable: impl Fn(&str) -> bool,
        now: Instant,
    ) -> Vec<PeerKey> {
        self.seen
            .retain(|peer, _| live.iter().any(|(p, _)| p == peer));
        let mut expired = Vec::new();
        for (peer, stamp) in live {
            let seen = self.seen.entry(peer.clone()).or_insert(Seen {
                stamp: *stamp,
                alive_at: now,
            });
            if seen.stamp != *stamp || reachable(peer) {
                seen.stamp = *stamp;
                seen.alive_at = now;
            }
            if now.saturating_duration_since(seen.alive_at) >= self.timeout {
                expired.push(peer.clone());
            }
        }
        expired
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(30);

    #[test]
    fn a_member_expires_only_when_neither_renewed_nor_reached_for_the_timeout() {
        let start = Instant::now();
        let mut leases = Leases::new(TIMEOUT);
        let at = |s: u64| start + Duration::from_secs(s);
        let nobody = |_: &str| false;
        let live = |stamp: u64| vec![("m".to_string(), stamp)];
        assert!(leases.expired(&live(100), nobody, at(0)).is_empty());
        // Its stamp goes back (its clock stepped): a renewal all the same.
        assert!(leases.expired(&live(5), nobody, at(29)).is_empty());
        assert!(leases.expired(&live(5), nobody, at(58)).is_empty());
        assert_eq!(
            leases.expired(&live(5), nobody, at(59)),
            vec!["m".to_string()]
        );
        // Reachable, it stays whatever its stamp.
        let mut leases = Leases::new(TIMEOUT);
        for s in (0..300).step_by(10) {
            assert!(leases.expired(&live(7), |_| true, at(s)).is_empty());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Over random renewal stamps (any clock, stepping anywhere), reachability and time
        /// steps, a member is expired exactly when the leader has neither seen its stamp change
        /// nor reached it for the whole timeout since it started counting.
        #[test]
        fn expiry_depends_on_the_leaders_clock_alone(
            steps in prop::collection::vec(
                (0u64..20_000, any::<bool>(), any::<bool>(), any::<u64>()),
                1..200,
            )
        ) {
            let start = Instant::now();
            let mut leases = Leases::new(TIMEOUT);
            let mut now = start;
            let mut stamp = 0u64;
            let mut alive_at = None;
            for (millis, renews, reachable, new_stamp) in steps {
                now += Duration::from_millis(millis);
                if renews && new_stamp != stamp {
                    stamp = new_stamp;
                    alive_at = Some(now);
                }
                if reachable || alive_at.is_none() {
                    alive_at = Some(now);
                }
                let alive_at = alive_at.unwrap();
                let expired = leases.expired(&[("m".into(), stamp)], |_| reachable, now);
                prop_assert_eq!(!expired.is_empty(), now - alive_at >= TIMEOUT);
            }
        }
    }
}
