//! Circuit relaying: when this node serves as a relay ([`RelayMode`]), and which relays it holds
//! a slot on ([`Reservations`]).
//!
//! A member that reaches only some members (split LANs, firewalls, one-way NAT) is reached
//! through a circuit on a relay both sides reach, and only a member holding a slot on a relay
//! can be dialled through it. So every member serves by default once AutoNAT finds it public
//! (`--relay auto`), and every member keeps slots on a few relays whatever its own verdict:
//! AutoNAT answers from one member's vantage point, and a node one member dials may be out of
//! another's reach. A relay in `auto` mode that is not serving yet refuses slots; the member
//! asks it again after a backoff rather than every tick. Pure: the swarm task feeds it events
//! and the time.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use libp2p::core::transport::ListenerId;

/// When this node serves as a circuit relay for admitted members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RelayMode {
    /// Never.
    Off,
    /// Always, from start.
    On,
    /// While AutoNAT finds this node publicly reachable.
    #[default]
    Auto,
}

impl RelayMode {
    /// Whether a node in this mode serves, given AutoNAT's latest verdict.
    pub fn serves(self, public: bool) -> bool {
        match self {
            RelayMode::Off => false,
            RelayMode::On => true,
            RelayMode::Auto => public,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RelayMode::Off => "off",
            RelayMode::On => "on",
            RelayMode::Auto => "auto",
        }
    }
}

impl fmt::Display for RelayMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RelayMode {
    type Err = String;

    /// `auto`, `on` or `off`; the boolean spellings of earlier versions (`--relay` alone,
    /// `true`, `false`…) still mean `on` and `off`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(RelayMode::Auto),
            "on" | "true" | "yes" | "1" => Ok(RelayMode::On),
            "off" | "false" | "no" | "0" => Ok(RelayMode::Off),
            _ => Err("expected auto, on or off".into()),
        }
    }
}

/// Relays this node keeps a slot on.
pub const WANTED: usize = 2;
/// The first wait before asking a relay again after it refused a slot or the slot closed.
const FIRST_BACKOFF: Duration = Duration::from_secs(5);
/// The longest wait: a relay that keeps refusing (one in `auto` mode behind a NAT) is asked
/// about twice an hour.
const MAX_BACKOFF: Duration = Duration::from_secs(30 * 60);

#[derive(Debug)]
struct Backoff {
    until: Instant,
    wait: Duration,
}

/// The slots this node holds or asked for, and the relays it waits to ask again.
#[derive(Debug, Default)]
pub struct Reservations {
    held: HashMap<PeerId, ListenerId>,
    backoff: HashMap<PeerId, Backoff>,
}

impl Reservations {
    /// Whether fewer than [`WANTED`] slots are held or asked for.
    pub fn wants_more(&self) -> bool {
        self.held.len() < WANTED
    }

    /// Whether `relay` may be asked for a slot now: none held or asked for there, and no
    /// backoff running.
    pub fn may_ask(&self, relay: &PeerId, now: Instant) -> bool {
        !self.held.contains_key(relay) && self.backoff.get(relay).is_none_or(|b| b.until <= now)
    }

    /// Whether a slot is held or asked for on `relay`.
    pub fn holds(&self, relay: &PeerId) -> bool {
        self.held.contains_key(relay)
    }

    /// A slot was asked for on `relay`, as listener `id`.
    pub fn asked(&mut self, relay: PeerId, id: ListenerId) {
        self.held.insert(relay, id);
    }

    /// `relay` granted the slot: its backoff starts over.
    pub fn granted(&mut self, relay: &PeerId) {
        self.backoff.remove(relay);
    }

    /// Listener `id` closed: the relay refused the slot, or the slot ended. The relay is asked
    /// again after a backoff that doubles with each closing since its last grant. Returns the
    /// relay, when `id` was a slot.
    pub fn closed(&mut self, id: ListenerId, now: Instant) -> Option<PeerId> {
        let relay = self
            .held
            .iter()
            .find(|(_, held)| **held == id)
            .map(|(relay, _)| *relay)?;
        self.held.remove(&relay);
        let wait = self
            .backoff
            .get(&relay)
            .map_or(FIRST_BACKOFF, |b| (b.wait * 2).min(MAX_BACKOFF));
        self.backoff.insert(
            relay,
            Backoff {
                until: now + wait,
                wait,
            },
        );
        Some(relay)
    }

    /// `relay` started or stopped offering to relay. A relay that started is asked without
    /// waiting out its backoff; the slot held on one that stopped is returned, for the caller to
    /// give up (its closing starts a backoff).
    pub fn relay_changed(&mut self, relay: &PeerId, serves: bool) -> Option<ListenerId> {
        if serves {
            self.backoff.remove(relay);
            None
        } else {
            self.held.get(relay).copied()
        }
    }

    /// The relays whose backoff ran out long ago are forgotten, so that the map stays as small
    /// as the set of relays recently asked.
    pub fn forget_stale(&mut self, now: Instant) {
        self.backoff
            .retain(|_, b| now.saturating_duration_since(b.until) < MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_their_names_and_the_old_boolean_spellings() {
        for (text, mode) in [
            ("auto", RelayMode::Auto),
            ("AUTO", RelayMode::Auto),
            ("on", RelayMode::On),
            ("true", RelayMode::On),
            ("1", RelayMode::On),
            ("off", RelayMode::Off),
            ("false", RelayMode::Off),
            (" no ", RelayMode::Off),
        ] {
            assert_eq!(text.parse::<RelayMode>(), Ok(mode), "{text}");
        }
        assert!("sometimes".parse::<RelayMode>().is_err());
        assert_eq!(RelayMode::default(), RelayMode::Auto);
        assert!(RelayMode::On.serves(false));
        assert!(!RelayMode::Off.serves(true));
        assert!(RelayMode::Auto.serves(true) && !RelayMode::Auto.serves(false));
    }

    #[test]
    fn a_refusing_relay_is_asked_again_after_a_doubling_backoff_and_a_grant_resets_it() {
        let relay = PeerId::random();
        let t0 = Instant::now();
        let mut slots = Reservations::default();
        assert!(slots.wants_more() && slots.may_ask(&relay, t0));

        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..12 {
            let id = ListenerId::next();
            slots.asked(relay, id);
            assert!(!slots.may_ask(&relay, now), "asked already");
            assert_eq!(slots.closed(id, now), Some(relay));
            let mut wait = Duration::ZERO;
            while !slots.may_ask(&relay, now + wait) {
                wait += Duration::from_secs(1);
            }
            waits.push(wait);
            now += wait;
        }
        assert_eq!(waits[0], FIRST_BACKOFF);
        assert_eq!(waits[1], FIRST_BACKOFF * 2);
        assert_eq!(*waits.last().unwrap(), MAX_BACKOFF);
        assert!(waits.windows(2).all(|w| w[0] <= w[1]));

        let id = ListenerId::next();
        slots.asked(relay, id);
        slots.granted(&relay);
        slots.closed(id, now);
        assert!(slots.may_ask(&relay, now + FIRST_BACKOFF));
    }

    #[test]
    fn at_most_the_wanted_number_of_slots_is_held_and_an_unknown_listener_is_no_slot() {
        let now = Instant::now();
        let mut slots = Reservations::default();
        for _ in 0..WANTED {
            assert!(slots.wants_more());
            slots.asked(PeerId::random(), ListenerId::next());
        }
        assert!(!slots.wants_more());
        assert_eq!(slots.closed(ListenerId::next(), now), None);
        assert!(!slots.wants_more());
    }

    #[test]
    fn a_relay_that_stops_serving_gives_up_its_slot_and_one_that_starts_is_asked_at_once() {
        let relay = PeerId::random();
        let now = Instant::now();
        let mut slots = Reservations::default();
        let id = ListenerId::next();
        slots.asked(relay, id);
        assert_eq!(slots.relay_changed(&relay, false), Some(id));
        slots.closed(id, now);
        assert!(!slots.may_ask(&relay, now));
        assert_eq!(slots.relay_changed(&relay, true), None);
        assert!(slots.may_ask(&relay, now));
        assert_eq!(slots.relay_changed(&PeerId::random(), false), None);
    }

    #[test]
    fn backoffs_long_run_out_are_forgotten() {
        let relay = PeerId::random();
        let now = Instant::now();
        let mut slots = Reservations::default();
        let id = ListenerId::next();
        slots.asked(relay, id);
        slots.closed(id, now);
        slots.forget_stale(now + FIRST_BACKOFF);
        assert_eq!(slots.backoff.len(), 1);
        slots.forget_stale(now + FIRST_BACKOFF + MAX_BACKOFF);
        assert!(slots.backoff.is_empty());
    }
}
