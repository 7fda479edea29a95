//! The path controller's decisions for one peer, pure and time-injected (quinn-proto's shape):
//! when to start a handshake, when to start the task writing the fallback stream, and where to
//! send keepalives and probes. The control task ([`super::control`]) reads what the packet path
//! and the keyring show of the peer into [`Seen`], calls [`Path::poll`] with the packet path's
//! clock ([`super::peer::Clock`] milliseconds), and carries out the [`Action`]s. Nothing here
//! touches a socket, a task or a clock, so the rules are tested over thousands of random event
//! orders in simulated time.
//!
//! Rules:
//! - a handshake starts when traffic wants one ([`demand::wants_handshake`]), never while one
//!   runs, and not within [`RETRY_AFTER`] of the last; the lower PeerId of a pair rekeys at
//!   [`REKEY_AFTER`], the higher one [`REKEY_GRACE`] later, so normally one side does;
//! - a peer with a session has a fallback-stream writer, started again [`RETRY_AFTER`] after
//!   the last start once it ended;
//! - a UDP endpoint is where the peer's last authenticated packet came from; with no endpoint,
//!   or when packets went out for [`super::peer::DEAD_AFTER`] with nothing heard back, the
//!   peer's candidates (from its handshake) and the old endpoint are probed every
//!   [`PROBE_EVERY`], and at once after a new session;
//! - a peer heard from that has not been sent anything for [`REPLY_AFTER`] gets a keepalive, so
//!   a one-way flow still proves its path; an idle path gets one every [`KEEPALIVE`].

use std::net::SocketAddr;
use std::time::Duration;

use super::demand;
use super::session::REKEY_AFTER;

/// How often a peer without a working path is probed.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);
/// How soon a peer that sent something gets a keepalive back when nothing else went to it.
pub const REPLY_AFTER: Duration = Duration::from_secs(1);
/// How often an idle path is kept alive (NAT mappings last at least this long).
pub const KEEPALIVE: Duration = Duration::from_secs(25);
/// How long to wait before trying a failed handshake, or an ended stream writer, again.
pub const RETRY_AFTER: Duration = Duration::from_secs(2);
/// How much later than the lower PeerId the higher one rekeys, so that normally one side does.
pub const REKEY_GRACE: Duration = Duration::from_secs(30);

const fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// What the packet path and the keyring show of one peer at one moment. Clock times are the
/// packet path's milliseconds; 0 means never.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    /// Whether the ledger routes an overlay address to the peer (it is a live member).
    pub routed: bool,
    /// How old the session packets to the peer are sealed with is, when there is one.
    pub session: Option<Duration>,
    /// The last data packet for or from the peer.
    pub last_data: u64,
    /// Where the peer's last authenticated UDP packet came from.
    pub endpoint: Option<SocketAddr>,
    /// Whether packets went out to that endpoint for `DEAD_AFTER` with nothing heard back.
    pub dead: bool,
    /// The last UDP packet sent to the peer.
    pub last_tx: u64,
    /// The last UDP packet heard from the peer.
    pub last_rx: u64,
    /// Whether the task writing the fallback stream to the peer runs.
    pub writer_running: bool,
}

/// What the control task is to do for the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start a handshake; report its end with [`Path::handshake_ended`] (and
    /// [`Path::installed`] when it made a session).
    Handshake,
    /// Start the task that writes the fallback stream to the peer.
    StartWriter,
    /// Send one keepalive (an empty sealed frame) to each of these addresses.
    Keepalive(Vec<SocketAddr>),
}

/// The path controller's memory of one peer.
#[derive(Debug, Clone)]
pub struct Path {
    /// Whether this node's PeerId is the lower of the pair (it rekeys first).
    lower: bool,
    in_flight: bool,
    last_attempt: Option<u64>,
    last_probe: Option<u64>,
    writer_started: Option<u64>,
    /// UDP addresses from the peer's last handshake.
    candidates: Vec<SocketAddr>,
}

impl Path {
    /// A peer not yet handshaken with; `lower` when this node's PeerId is the lower of the pair.
    pub fn new(lower: bool) -> Self {
        Path {
            lower,
            in_flight: false,
            last_attempt: None,
            last_probe: None,
            writer_started: None,
            candidates: Vec::new(),
        }
    }

    /// Whether a handshake this node started has not ended yet.
    pub fn handshaking(&self) -> bool {
        self.in_flight
    }

    /// A handshake this node started ended, whatever its outcome.
    pub fn handshake_ended(&mut self) {
        self.in_flight = false;
    }

    /// A new session with the peer, whose handshake gave these candidates: each is probed at
    /// once, from both sides, and a path that was lost stays lost until a probe is answered.
    pub fn installed(&mut self, candidates: Vec<SocketAddr>) {
        self.candidates = candidates;
        self.last_probe = None;
    }

    /// What to do for the peer at `now`, as it is `seen`.
    pub fn poll(&mut self, now: u64, seen: &Seen) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.handshake_due(now, seen) {
            self.in_flight = true;
            self.last_attempt = Some(now);
            actions.push(Action::Handshake);
        }
        if self.writer_due(now, seen) {
            self.writer_started = Some(now);
            actions.push(Action::StartWriter);
        }
        if let Some(targets) = self.keepalives_due(now, seen) {
            actions.push(Action::Keepalive(targets));
        }
        actions
    }

    /// The session's age past which this side replaces it.
    fn rekey_after(&self) -> Duration {
        if self.lower {
            REKEY_AFTER
        } else {
            REKEY_AFTER + REKEY_GRACE
        }
    }

    fn handshake_due(&self, now: u64, seen: &Seen) -> bool {
        if !seen.routed || self.in_flight {
            return false;
        }
        if self
            .last_attempt
            .is_some_and(|at| now.saturating_sub(at) < ms(RETRY_AFTER))
        {
            return false;
        }
        let session = match seen.session {
            None => demand::Session::None,
            Some(age) if age >= self.rekey_after() => demand::Session::RekeyDue,
            Some(_) => demand::Session::Fresh,
        };
        demand::wants_handshake(
            demand::Facts {
                last_data: seen.last_data,
                session,
            },
            now,
        )
    }

    fn writer_due(&self, now: u64, seen: &Seen) -> bool {
        seen.routed
            && seen.session.is_some()
            && !seen.writer_running
            && self
                .writer_started
                .is_none_or(|at| now.saturating_sub(at) >= ms(RETRY_AFTER))
    }

    fn keepalives_due(&mut self, now: u64, seen: &Seen) -> Option<Vec<SocketAddr>> {
        seen.session?;
        if let Some(endpoint) = seen.endpoint.filter(|_| !seen.dead) {
            let idle = now.saturating_sub(seen.last_tx);
            let reply = seen.last_rx > seen.last_tx && idle >= ms(REPLY_AFTER);
            return (idle >= ms(KEEPALIVE) || reply).then(|| vec![endpoint]);
        }
        if self
            .last_probe
            .is_some_and(|at| now.saturating_sub(at) < ms(PROBE_EVERY))
        {
            return None;
        }
        let mut targets = self.candidates.clone();
        targets.extend(seen.endpoint);
        targets.sort();
        targets.dedup();
        if targets.is_empty() {
            return None;
        }
        self.last_probe = Some(now);
        Some(targets)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::super::peer::DEAD_AFTER;
    use super::*;

    const TICK: u64 = 250;
    const IDLE: u64 = ms(demand::IDLE_AFTER);

    fn addr(last: u8) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, last], 51820))
    }

    fn busy(now: u64, session: Option<Duration>) -> Seen {
        Seen {
            routed: true,
            session,
            last_data: now,
            writer_running: true,
            ..Seen::default()
        }
    }

    #[test]
    fn a_peer_nobody_sends_to_costs_nothing() {
        let mut path = Path::new(true);
        let seen = Seen {
            routed: true,
            ..Seen::default()
        };
        for now in (1..3_600_000).step_by(TICK as usize) {
            assert!(path.poll(now, &seen).is_empty(), "at {now} ms");
        }
    }

    #[test]
    fn the_lower_peer_rekeys_first_and_the_higher_one_after_the_grace() {
        let age = |d: Duration| busy(1_000_000, Some(d));
        let mut lower = Path::new(true);
        let mut higher = Path::new(false);
        assert!(
            lower
                .poll(1_000_000, &age(REKEY_AFTER - Duration::from_millis(1)))
                .is_empty()
        );
        assert_eq!(
            lower.poll(1_000_000, &age(REKEY_AFTER)),
            vec![Action::Handshake]
        );
        assert!(higher.poll(1_000_000, &age(REKEY_AFTER)).is_empty());
        assert_eq!(
            higher.poll(1_000_000, &age(REKEY_AFTER + REKEY_GRACE)),
            vec![Action::Handshake]
        );
    }

    #[test]
    fn a_new_session_is_probed_at_once_even_when_the_clock_just_started() {
        let mut path = Path::new(true);
        assert_eq!(path.poll(1, &busy(1, None)), vec![Action::Handshake]);
        path.handshake_ended();
        path.installed(vec![addr(2), addr(1)]);
        let seen = busy(2, Some(Duration::ZERO));
        assert_eq!(
            path.poll(2, &seen),
            vec![Action::Keepalive(vec![addr(1), addr(2)])]
        );
        assert!(path.poll(3, &seen).is_empty(), "probed again too soon");
    }

    /// One peer, the packet path and the network around a [`Path`], in simulated time: the
    /// peer answers what reaches it, handshakes end after a while, the ledger routes and
    /// unroutes the peer, the network comes and goes.
    struct World {
        rng: StdRng,
        now: u64,
        path: Path,
        lower: bool,
        seen: Seen,
        /// When the sending session was made.
        session_at: Option<u64>,
        /// Since when packets went out unanswered (0: answered).
        unanswered_since: u64,
        /// Where the peer really is.
        peer_at: SocketAddr,
        /// The peer's candidates in its last handshake.
        candidates: Vec<SocketAddr>,
        /// Whether packets between the two get through.
        reachable: bool,
        /// When the handshake in flight ends, and whether it makes a session.
        handshake: Option<(u64, bool)>,
        /// When the peer's packets (answers, data) reach this node.
        arriving: Vec<u64>,
        /// How likely traffic for the peer appears in a step (bursts come and go).
        load: f64,
        // What the checks remember.
        last_attempt: Option<u64>,
        last_probe: Option<u64>,
        writer_started: Option<u64>,
        /// The last packet sent while the session and its endpoint stay live.
        last_live_send: Option<u64>,
    }

    impl World {
        fn new(seed: u64) -> Self {
            let mut rng = StdRng::seed_from_u64(seed);
            let lower = rng.gen_bool(0.5);
            World {
                now: rng.gen_range(1..5_000),
                path: Path::new(lower),
                lower,
                seen: Seen {
                    routed: rng.gen_bool(0.9),
                    ..Seen::default()
                },
                session_at: None,
                unanswered_since: 0,
                peer_at: addr(rng.gen_range(1..4)),
                candidates: Vec::new(),
                reachable: rng.gen_bool(0.8),
                handshake: None,
                arriving: Vec::new(),
                load: 0.0,
                last_attempt: None,
                last_probe: None,
                writer_started: None,
                last_live_send: None,
                rng,
            }
        }

        /// Notes a UDP packet sent to `target` now.
        fn send(&mut self, target: SocketAddr) {
            self.seen.last_tx = self.now;
            if self.unanswered_since == 0 {
                self.unanswered_since = self.now;
            }
            if self.reachable && target == self.peer_at && self.rng.gen_bool(0.9) {
                let delay = self.rng.gen_range(1..1_500);
                self.arriving.push(self.now + delay);
            }
        }

        /// What happens between two polls.
        fn step(&mut self) {
            self.now += self.rng.gen_range(1..=TICK);
            let now = self.now;
            if self.rng.gen_bool(0.002) {
                self.load = [0.0, 0.01, 0.3, 1.0][self.rng.gen_range(0..4)];
            }
            if self.rng.gen_bool(0.001) {
                self.reachable = !self.reachable;
            }
            if self.rng.gen_bool(0.0005) {
                self.seen.routed = !self.seen.routed;
                if !self.seen.routed {
                    // A peer that is no live member loses its sessions at once.
                    self.seen.session = None;
                    self.session_at = None;
                } else if self.handshake.is_none() {
                    // The control task forgot the peer (and stopped its writer) meanwhile.
                    self.path = Path::new(self.lower);
                    self.candidates.clear();
                    self.last_attempt = None;
                    self.last_probe = None;
                    self.writer_started = None;
                    self.seen.writer_running = false;
                }
            }
            if self.seen.writer_running && self.rng.gen_bool(0.001) {
                self.seen.writer_running = false;
            }
            if let Some(at) = self.session_at
                && now - at >= ms(super::super::session::REJECT_AFTER)
            {
                self.seen.session = None;
                self.session_at = None;
            }
            if let Some((at, made)) = self.handshake
                && now >= at
            {
                self.handshake = None;
                self.path.handshake_ended();
                if made && self.seen.routed {
                    self.session_at = Some(now);
                    self.candidates = (1..4)
                        .map(addr)
                        .filter(|_| self.rng.gen_bool(0.6))
                        .collect();
                    self.path.installed(self.candidates.clone());
                    self.last_probe = None;
                }
            }
            self.seen.session = self.session_at.map(|at| Duration::from_millis(now - at));
            if self.rng.gen_bool(self.load) {
                self.seen.last_data = now;
                if self.seen.session.is_some()
                    && let Some(endpoint) = self.seen.endpoint.filter(|_| !self.dead())
                {
                    self.send(endpoint);
                }
            }
            let before = self.arriving.len();
            self.arriving.retain(|at| *at > now);
            if self.arriving.len() < before && self.seen.session.is_some() && self.reachable {
                self.seen.endpoint = Some(self.peer_at);
                self.seen.last_rx = now;
                self.unanswered_since = 0;
            }
            self.seen.dead = self.dead();
        }

        fn dead(&self) -> bool {
            self.unanswered_since != 0 && self.now - self.unanswered_since >= ms(DEAD_AFTER)
        }

        fn live_endpoint(&self) -> Option<SocketAddr> {
            self.seen.endpoint.filter(|_| !self.seen.dead)
        }

        /// Polls the path, checks what it asked for against the rules, and carries it out.
        fn poll(&mut self) -> Result<(), TestCaseError> {
            let now = self.now;
            let seen = self.seen.clone();
            let in_flight = self.handshake.is_some();
            prop_assert_eq!(self.path.handshaking(), in_flight);
            let actions = self.path.poll(now, &seen);
            let handshake = actions.contains(&Action::Handshake);
            let writer = actions.contains(&Action::StartWriter);
            let keepalive = actions.iter().find_map(|a| match a {
                Action::Keepalive(targets) => Some(targets.clone()),
                _ => None,
            });

            let active = seen.last_data != 0 && now - seen.last_data < IDLE;
            let rekey_at = if self.lower {
                REKEY_AFTER
            } else {
                REKEY_AFTER + REKEY_GRACE
            };
            let wanted = seen.session.is_none_or(|age| age >= rekey_at);
            let may_try = seen.routed
                && !in_flight
                && self
                    .last_attempt
                    .is_none_or(|at| now - at >= ms(RETRY_AFTER));
            prop_assert_eq!(
                handshake,
                may_try && active && wanted,
                "handshake at {} ms, seen {:?}",
                now,
                seen
            );

            let may_write = seen.routed
                && seen.session.is_some()
                && !seen.writer_running
                && self
                    .writer_started
                    .is_none_or(|at| now - at >= ms(RETRY_AFTER));
            prop_assert_eq!(writer, may_write, "writer at {} ms", now);

            match (seen.session, self.live_endpoint()) {
                (None, _) => prop_assert!(keepalive.is_none(), "a keepalive with no session"),
                (Some(_), Some(endpoint)) => {
                    let idle = now - seen.last_tx;
                    let due = idle >= ms(KEEPALIVE)
                        || (seen.last_rx > seen.last_tx && idle >= ms(REPLY_AFTER));
                    prop_assert_eq!(keepalive.clone(), due.then(|| vec![endpoint]));
                }
                (Some(_), None) => {
                    let mut known: BTreeSet<SocketAddr> = self.candidates.iter().copied().collect();
                    known.extend(seen.endpoint);
                    let due = !known.is_empty()
                        && self.last_probe.is_none_or(|at| now - at >= ms(PROBE_EVERY));
                    let want = due.then(|| known.into_iter().collect::<Vec<_>>());
                    prop_assert_eq!(keepalive.clone(), want, "probe at {} ms", now);
                }
            }

            if handshake {
                self.last_attempt = Some(now);
                let ends = now + self.rng.gen_range(5..3_000);
                let made = self.reachable && self.rng.gen_bool(0.8);
                self.handshake = Some((ends, made));
            }
            if writer {
                self.writer_started = Some(now);
                self.seen.writer_running = true;
            }
            if let Some(targets) = keepalive {
                if self.live_endpoint().is_none() {
                    self.last_probe = Some(now);
                }
                for target in targets {
                    self.send(target);
                }
            }
            if seen.session.is_none() || self.live_endpoint().is_none() {
                self.last_live_send = None;
                return Ok(());
            }
            if let Some(before) = self.last_live_send {
                let gap = self.seen.last_tx - before;
                prop_assert!(
                    gap <= ms(KEEPALIVE) + TICK,
                    "a live path went {} ms without a packet",
                    gap
                );
            }
            self.last_live_send = Some(self.seen.last_tx);
            Ok(())
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// Thousands of random event orders, each five simulated minutes: every poll does what
        /// the rules above ask, no more, and a live path never goes a keepalive interval
        /// without a packet.
        #[test]
        fn the_path_controller_follows_its_rules_in_any_order_of_events(seed in any::<u64>()) {
            let mut world = World::new(seed);
            let end = world.now + 300_000;
            while world.now < end {
                world.step();
                world.poll()?;
            }
        }
    }
}
