//! The path controller's decisions for one peer, pure and time-injected (quinn-proto's shape):
//! when to start a handshake, when to start the task writing the fallback stream, and where to
//! send keepalives and probes. The control task ([`super::control`]) reads what the packet path
//! and the keyring show of the peer into [`Seen`], calls [`PathControl::poll`] with the packet path's
//! clock ([`super::clock::Clock`] milliseconds), and carries out the [`Action`]s. Nothing here
//! touches a socket, a task or a clock, so the rules are tested over thousands of random event
//! orders in simulated time.
//!
//! Rules:
//! - a handshake starts when traffic wants one ([`demand::wants_handshake`]), never while one
//!   runs, and not within [`RETRY_AFTER`] of the last; the lower PeerId of a pair rekeys at
//!   [`REKEY_AFTER`], the higher one [`REKEY_GRACE`] later, so normally one side does; a side
//!   whose session sealed [`super::session::REKEY_AFTER_PACKETS`] (of AES-256-GCM,
//!   [`super::session::REKEY_AFTER_PACKETS_AES_GCM`]) rekeys at once;
//! - a live member with a session has a fallback-stream writer, started again
//!   [`RETRY_AFTER`] after the last start once it ended;
//! - a UDP endpoint is where the peer's last authenticated packet came from; with no endpoint,
//!   or when data went out for [`super::peer::DEAD_AFTER`] with nothing heard back, the
//!   peer's candidates (from its handshake) and the old endpoint are probed every
//!   [`PROBE_EVERY`], and at once after a new session;
//! - a peer heard from that has not been sent anything for [`REPLY_AFTER`] gets a keepalive,
//!   so data sent one way is answered and its path proven, and a probe or an idle keepalive is
//!   answered (unless it came within [`ECHO_WINDOW`] of this node's last packet, below: a peer
//!   probing every second gets an answer about every other second); an idle path gets one
//!   every [`KEEPALIVE`] (NAT mappings). What is heard within
//!   [`ECHO_WINDOW`] of this node's last packet may be the answer to it, and is answered only
//!   while data flows (data within [`FLOWING`]). Keepalives, answers and probes never make
//!   a path count as lost; only unanswered data does, as in WireGuard. Before, any unanswered
//!   packet did, and every packet heard was answered: two peers whose session outlived their
//!   traffic then traded a keepalive every second each way until it expired, since each answer
//!   needed an answer. Now an idle path costs about one keepalive and its answer every
//!   [`KEEPALIVE`]; a path that breaks while idle is found once data flows again, within
//!   [`super::peer::DEAD_AFTER`].

use std::net::SocketAddr;
use std::time::Duration;

use super::clock::ms;
use super::demand;
use super::session::REKEY_AFTER;

/// How often a peer without a working path is probed.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);
/// How soon a peer that sent something gets a keepalive back when nothing else went to it (and
/// what it sent is not taken for an answer, [`ECHO_WINDOW`]).
pub const REPLY_AFTER: Duration = Duration::from_secs(1);
/// How often an idle path is kept alive (NAT mappings last at least this long).
pub const KEEPALIVE: Duration = Duration::from_secs(25);
/// A packet heard within this long after this node's last one may be the peer's answer to it:
/// it is answered only while data flows.
pub const ECHO_WINDOW: Duration = Duration::from_secs(2);
/// Data moved within this long flows. The packet path notes data at most once a second
/// ([`super::peer::Peer::note_data`]), so this is [`ECHO_WINDOW`] and that second.
pub const FLOWING: Duration = Duration::from_secs(3);
/// How long to wait before trying a failed handshake, or an ended stream writer, again.
pub const RETRY_AFTER: Duration = Duration::from_secs(2);
/// How much later than the lower PeerId the higher one rekeys, so that normally one side does.
pub const REKEY_GRACE: Duration = Duration::from_secs(30);

/// What the packet path and the keyring show of one peer at one moment. Clock times are the
/// packet path's milliseconds; 0 means never.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    /// Whether the ledger routes an overlay address to the peer (it is a live member).
    pub routed: bool,
    /// The age of the session that seals packets to the peer, when there is one.
    pub session: Option<Duration>,
    /// Whether that session sealed so many packets that it must be replaced.
    pub worn: bool,
    /// The last data packet for or from the peer.
    pub last_data: u64,
    /// Where the peer's last authenticated UDP packet came from.
    pub endpoint: Option<SocketAddr>,
    /// Whether data went out to that endpoint for `DEAD_AFTER` with nothing heard back.
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
    /// Start a handshake; report its end with [`PathControl::handshake_ended`] (and
    /// [`PathControl::installed`] when it made a session).
    Handshake,
    /// Start the task that writes the fallback stream to the peer.
    StartWriter,
    /// Send one keepalive (an empty sealed frame) to each of these addresses.
    Keepalive(Vec<SocketAddr>),
}

/// The path controller's memory of one peer.
#[derive(Debug, Clone)]
pub struct PathControl {
    /// Whether this node's PeerId is the lower of the pair (it rekeys first).
    lower: bool,
    in_flight: bool,
    last_attempt: Option<u64>,
    last_probe: Option<u64>,
    writer_started: Option<u64>,
    /// UDP addresses from the peer's last handshake.
    candidates: Vec<SocketAddr>,
}

impl PathControl {
    /// A peer not yet handshaken with; `lower` when this node's PeerId is the lower of the pair.
    pub fn new(lower: bool) -> Self {
        PathControl {
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
            Some(age) if age >= self.rekey_after() || seen.worn => demand::Session::RekeyDue,
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
            return (idle >= ms(KEEPALIVE) || replies(now, seen)).then(|| vec![endpoint]);
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

/// Whether the peer gets a keepalive back for what was heard from it: something was heard
/// since this node last sent, nothing went to the peer for [`REPLY_AFTER`], and either data
/// flows or what was heard came too late to be the answer to this node's last packet.
fn replies(now: u64, seen: &Seen) -> bool {
    let flowing = seen.last_data != 0 && now.saturating_sub(seen.last_data) < ms(FLOWING);
    seen.last_rx > seen.last_tx
        && now.saturating_sub(seen.last_tx) >= ms(REPLY_AFTER)
        && (flowing || seen.last_rx - seen.last_tx >= ms(ECHO_WINDOW))
}

#[cfg(test)]
mod world;

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: u64 = 250;

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
        let mut path = PathControl::new(true);
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
        let mut lower = PathControl::new(true);
        let mut higher = PathControl::new(false);
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
        let mut path = PathControl::new(true);
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

    /// Two controllers of one pair, each packet reaching the other side one tick after it was
    /// sent, a minute after their last data: one sends a keepalive every [`KEEPALIVE`] and the
    /// other answers it, rather than one a second each way.
    #[test]
    fn an_idle_pair_trades_one_keepalive_and_its_answer_per_interval() {
        let (a_at, b_at) = (addr(1), addr(2));
        let mut a = (PathControl::new(true), Seen::default());
        let mut b = (PathControl::new(false), Seen::default());
        for (_, seen) in [&mut a, &mut b] {
            *seen = Seen {
                routed: true,
                session: Some(Duration::ZERO),
                last_data: 1,
                last_tx: 1,
                last_rx: 1,
                writer_running: true,
                ..Seen::default()
            };
        }
        a.1.endpoint = Some(b_at);
        b.1.endpoint = Some(a_at);
        // B sent last, so A's idle keepalive comes first and B answers it.
        b.1.last_tx = 10_000;
        let start = 60_000;
        let minutes = 10;
        let mut sent = [0u64; 2];
        for now in (start..start + minutes * 60_000).step_by(TICK as usize) {
            let a_sent = exchange(now, &mut a);
            let b_sent = exchange(now, &mut b);
            // Delivered at the next tick.
            if a_sent > 0 {
                b.1.last_rx = now + TICK;
            }
            if b_sent > 0 {
                a.1.last_rx = now + TICK;
            }
            sent[0] += a_sent;
            sent[1] += b_sent;
        }
        let per_interval = minutes * 60 / KEEPALIVE.as_secs() + 1;
        assert!(
            sent.iter().sum::<u64>() <= 2 * per_interval,
            "{sent:?} keepalives in {minutes} idle minutes"
        );
        // A keeps the path alive and B only answers: B's answers keep its own timer from
        // running out.
        assert_eq!(sent[0], sent[1], "{sent:?}");
        assert!(
            sent[1] >= per_interval - 1,
            "B answered too little: {sent:?}"
        );
    }

    /// Polls one side of a pair at `now`; how many keepalives it sent.
    fn exchange(now: u64, (path, seen): &mut (PathControl, Seen)) -> u64 {
        seen.session = Some(Duration::from_millis(now));
        let mut sent = 0;
        for action in path.poll(now, seen) {
            assert!(matches!(action, Action::Keepalive(_)), "{action:?}");
            seen.last_tx = now;
            sent += 1;
        }
        sent
    }

    #[test]
    fn a_worn_session_is_replaced_at_once_by_either_side() {
        let mut higher = PathControl::new(false);
        let worn = Seen {
            worn: true,
            ..busy(1_000, Some(Duration::from_secs(1)))
        };
        assert_eq!(higher.poll(1_000, &worn), vec![Action::Handshake]);
    }
}
