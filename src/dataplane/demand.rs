//! Sessions made on demand: when a peer needs a session, and the packets that wait for one.
//!
//! A member makes no data-plane session with a peer until traffic for it appears, so an idle
//! mesh of any size makes no handshakes, keepalives or probes. The first packets to a peer wait
//! here, a few and briefly, while the handshake runs and the path is found, and then go out
//! oldest first (packets read once the path exists may pass them: a reordering, not a loss). A session that has carried no data either way for [`IDLE_AFTER`] is not rekeyed: it
//! ends when it expires, and with it its keepalives. Pure and time-injected: times are the
//! packet path's [`super::clock::Clock`] milliseconds, so the rules are tested without waiting.

use std::collections::VecDeque;
use std::time::Duration;

use super::clock::ms;

/// How long a session may carry no data, either way, and still be rekeyed.
pub const IDLE_AFTER: Duration = Duration::from_secs(60);
/// The most packets waiting for one peer's session; later ones are dropped (`no_session`).
pub const MAX_WAITING: usize = 16;
/// How long a packet may wait for a session before it is dropped.
pub const WAIT_AT_MOST: Duration = Duration::from_secs(5);

/// What the handshake decision knows about one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// Clock time of the last data packet for or from the peer (0: never).
    pub last_data: u64,
    /// The session packets to the peer are sealed with: whether one exists and whether it is
    /// due for a rekey by this side's timer.
    pub session: Session,
}

/// The sending session, as the decision sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Session {
    None,
    /// A session not yet due for a rekey.
    Fresh,
    /// A session this side should replace.
    RekeyDue,
}

/// Whether this node should start a handshake with the peer at `now`: for a first session
/// when traffic for the peer appeared within [`IDLE_AFTER`] (the send path notes it), for a
/// rekey only while the session carries data.
pub fn wants_handshake(facts: Facts, now: u64) -> bool {
    let active = facts.last_data != 0 && now.saturating_sub(facts.last_data) < ms(IDLE_AFTER);
    match facts.session {
        Session::None | Session::RekeyDue => active,
        Session::Fresh => false,
    }
}

/// Packets waiting for a peer's session, oldest first, each with the time it arrived. A packet
/// is stored in a frame's layout (header room, packet, tag room) so it is sealed where it lies.
#[derive(Debug, Default)]
pub struct Waiting {
    packets: VecDeque<(u64, Vec<u8>)>,
}

impl Waiting {
    /// Keeps `frame` (arrived at `now`); false when [`MAX_WAITING`] packets already wait.
    pub fn push(&mut self, now: u64, frame: Vec<u8>) -> bool {
        if self.packets.len() >= MAX_WAITING {
            return false;
        }
        self.packets.push_back((now, frame));
        true
    }

    /// Whether [`MAX_WAITING`] packets wait.
    pub fn is_full(&self) -> bool {
        self.packets.len() >= MAX_WAITING
    }

    /// Whether any packet waits.
    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// Drops packets that waited longer than [`WAIT_AT_MOST`] at `now`; returns how many.
    pub fn expire(&mut self, now: u64) -> usize {
        let before = self.packets.len();
        self.packets
            .retain(|(at, _)| now.saturating_sub(*at) < ms(WAIT_AT_MOST));
        before - self.packets.len()
    }

    /// Takes every waiting packet, oldest first.
    pub fn take(&mut self) -> Vec<Vec<u8>> {
        self.packets.drain(..).map(|(_, frame)| frame).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const IDLE: u64 = IDLE_AFTER.as_millis() as u64;

    #[test]
    fn a_peer_nobody_sends_to_gets_no_session() {
        let facts = Facts {
            last_data: 0,
            session: Session::None,
        };
        for now in [1, 1_000, 10 * IDLE] {
            assert!(!wants_handshake(facts, now));
        }
    }

    #[test]
    fn traffic_for_a_peer_starts_a_handshake_at_once() {
        let facts = Facts {
            last_data: 5_000,
            session: Session::None,
        };
        assert!(wants_handshake(facts, 5_000));
        assert!(wants_handshake(facts, 5_000 + IDLE - 1));
        assert!(!wants_handshake(facts, 5_000 + IDLE));
    }

    #[test]
    fn an_idle_session_is_not_rekeyed_and_a_busy_one_is() {
        let due = |last_data| Facts {
            last_data,
            session: Session::RekeyDue,
        };
        assert!(wants_handshake(due(100_000), 120_000));
        assert!(!wants_handshake(due(100_000), 100_000 + IDLE));
    }

    #[test]
    fn waiting_is_bounded_in_count_and_in_time() {
        let mut waiting = Waiting::default();
        for i in 0..MAX_WAITING as u64 {
            assert!(waiting.push(i, vec![i as u8]));
        }
        assert!(!waiting.push(100, vec![0xff]), "the queue is full");
        let wait = WAIT_AT_MOST.as_millis() as u64;
        assert_eq!(
            waiting.expire(wait + 1),
            2,
            "packets 0 and 1 waited too long"
        );
        let left = waiting.take();
        assert_eq!(left.len(), MAX_WAITING - 2);
        assert_eq!(left[0], vec![2], "oldest first");
        assert!(waiting.is_empty());
    }

    proptest! {
        /// Whatever the times, a fresh session never starts a handshake, and a handshake is
        /// wanted only within IDLE_AFTER of data.
        #[test]
        fn handshakes_follow_data(last_data in 0u64..1_000_000, now in 0u64..2_000_000,
                                  session in prop_oneof![
                                      Just(Session::None), Just(Session::Fresh), Just(Session::RekeyDue)
                                  ]) {
            let wanted = wants_handshake(Facts { last_data, session }, now);
            if wanted {
                prop_assert!(session != Session::Fresh);
                prop_assert!(last_data != 0 && now.saturating_sub(last_data) < IDLE);
            }
        }
    }
}
