//! One peer, the packet path and the network around a [`PathControl`], in simulated time: the
//! peer answers much of what reaches it over UDP, sends data of its own, and moves now and then, handshakes (over libp2p, so
//! whatever UDP does) end after a while or fail, the peer starts handshakes of its own, the
//! ledger routes and unroutes the peer, the UDP path comes and goes, traffic comes in bursts.
//! Every poll is checked against the rules, and what the packet path sees (handshakes started,
//! packets sent) is checked to come in time. Seeds run in order, so a failure names the seed
//! that replays it exactly; counts across all seeds show that every rule was exercised.

use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::super::control::TICK as CONTROL_TICK;
use super::super::peer::DEAD_AFTER;
use super::super::session::REJECT_AFTER;
use super::*;

/// The longest gap between two polls: the control task's tick.
const TICK: u64 = ms(CONTROL_TICK);
const IDLE: u64 = ms(demand::IDLE_AFTER);

macro_rules! ensure {
    ($cond:expr, $($why:tt)+) => {
        if !$cond {
            return Err(format!($($why)+));
        }
    };
}

fn addr(last: u8) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, last], 51820))
}

/// How often each rule was exercised, over all seeds.
#[derive(Debug, Default)]
struct Counts {
    first_handshakes: u64,
    rekeys_by_the_lower: u64,
    rekeys_by_the_higher: u64,
    worn_rekeys: u64,
    peer_handshakes: u64,
    writers: u64,
    probes: u64,
    idle_keepalives: u64,
    replies: u64,
    echoes_let_be: u64,
    dead_paths: u64,
    forgotten: u64,
}

struct World {
    rng: StdRng,
    now: u64,
    path: PathControl,
    lower: bool,
    seen: Seen,
    /// When the sending session was made.
    session_at: Option<u64>,
    /// Since when data went out unanswered (0: answered).
    unanswered_since: u64,
    /// Where the peer really is.
    peer_at: SocketAddr,
    /// The peer's candidates in its last handshake.
    candidates: Vec<SocketAddr>,
    /// Whether UDP packets between the two get through.
    reachable: bool,
    /// When the handshake in flight ends, and whether it makes a session.
    handshake: Option<(u64, bool)>,
    /// When the peer's packets reach this node, and whether each carries data.
    arriving: Vec<(u64, bool)>,
    /// How likely traffic for the peer appears in a step (bursts come and go).
    load: f64,
    // What the checks remember.
    last_attempt: Option<u64>,
    last_probe: Option<u64>,
    writer_started: Option<u64>,
    /// The last packet sent while the session and its endpoint stay live.
    last_live_send: Option<u64>,
    /// Since when a handshake has been wanted and allowed.
    handshake_wanted_since: Option<u64>,
    /// When each address was last probed since the last new session.
    probed: BTreeMap<SocketAddr, u64>,
}

impl World {
    fn new(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let lower = rng.gen_bool(0.5);
        World {
            now: rng.gen_range(1..5_000),
            path: PathControl::new(lower),
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
            handshake_wanted_since: None,
            probed: BTreeMap::new(),
            rng,
        }
    }

    fn dead(&self) -> bool {
        self.unanswered_since != 0 && self.now - self.unanswered_since >= ms(DEAD_AFTER)
    }

    fn live_endpoint(&self) -> Option<SocketAddr> {
        self.seen.endpoint.filter(|_| !self.seen.dead)
    }

    fn rekey_after(&self) -> Duration {
        if self.lower {
            REKEY_AFTER
        } else {
            REKEY_AFTER + REKEY_GRACE
        }
    }

    /// Notes a UDP packet sent to `target` now. The peer answers much of what reaches it
    /// (its own controller replies to what it hears), data with data now and then.
    fn send(&mut self, target: SocketAddr, data: bool) {
        self.seen.last_tx = self.now;
        if data && self.unanswered_since == 0 {
            self.unanswered_since = self.now;
        }
        let answered = if data { 0.5 } else { 0.6 };
        if self.reachable && target == self.peer_at && self.rng.gen_bool(answered) {
            let delay = self.rng.gen_range(1..1_500);
            self.arriving.push((self.now + delay, data));
        }
    }

    /// A new session, from either side's handshake.
    fn install(&mut self) {
        self.session_at = Some(self.now);
        self.seen.worn = false;
        self.candidates = (1..5)
            .map(addr)
            .filter(|_| self.rng.gen_bool(0.6))
            .collect();
        self.path.installed(self.candidates.clone());
        self.last_probe = None;
        self.probed.clear();
    }

    /// What happens between two polls.
    fn step(&mut self, counts: &mut Counts) {
        self.now += self.rng.gen_range(1..=TICK);
        let now = self.now;
        if self.rng.gen_bool(0.002) {
            self.load = [0.0, 0.01, 0.3, 1.0][self.rng.gen_range(0..4)];
        }
        if self.rng.gen_bool(0.001) {
            self.reachable = !self.reachable;
        }
        if self.rng.gen_bool(0.0005) {
            self.peer_at = addr(self.rng.gen_range(1..6));
        }
        if self.rng.gen_bool(0.0005) {
            self.seen.routed = !self.seen.routed;
            if !self.seen.routed {
                // A peer that is no live member loses its sessions at once.
                self.session_at = None;
            } else if self.handshake.is_none() {
                // The control task forgot the peer meanwhile: a new entry, a new peer.
                counts.forgotten += 1;
                self.path = PathControl::new(self.lower);
                self.seen = Seen {
                    routed: true,
                    ..Seen::default()
                };
                self.unanswered_since = 0;
                self.arriving.clear();
                self.candidates.clear();
                self.last_attempt = None;
                self.last_probe = None;
                self.writer_started = None;
                self.probed.clear();
            }
        }
        if self.seen.writer_running && self.rng.gen_bool(0.001) {
            self.seen.writer_running = false;
        }
        if self.session_at.is_some() && self.rng.gen_bool(0.0005) {
            self.seen.worn = true;
        }
        if let Some(at) = self.session_at
            && now - at >= ms(REJECT_AFTER)
        {
            self.session_at = None;
        }
        if let Some((at, made)) = self.handshake
            && now >= at
        {
            self.handshake = None;
            self.path.handshake_ended();
            if made && self.seen.routed {
                self.install();
            }
        }
        if self.seen.routed && self.rng.gen_bool(0.002) {
            // The peer's own handshake, answered here.
            counts.peer_handshakes += 1;
            self.install();
        }
        self.seen.session = self.session_at.map(|at| Duration::from_millis(now - at));
        if self.rng.gen_bool(self.load) {
            self.seen.last_data = now;
            if self.seen.session.is_some()
                && let Some(endpoint) = self.seen.endpoint.filter(|_| !self.dead())
            {
                self.send(endpoint, true);
            }
        }
        if self.session_at.is_some() && self.reachable && self.rng.gen_bool(self.load / 2.0) {
            // A flow from the peer, one way or both.
            let delay = self.rng.gen_range(1..500);
            self.arriving.push((now + delay, true));
        }
        let (arrived, later): (Vec<_>, Vec<_>) =
            self.arriving.iter().partition(|(at, _)| *at <= now);
        self.arriving = later;
        if !arrived.is_empty() && self.seen.session.is_some() && self.reachable {
            self.seen.endpoint = Some(self.peer_at);
            self.seen.last_rx = now;
            self.unanswered_since = 0;
            if arrived.iter().any(|(_, data)| *data) {
                self.seen.last_data = now;
            }
        }
        self.seen.dead = self.dead();
        counts.dead_paths += u64::from(self.seen.dead);
    }

    /// Polls the path, checks what it asked for against the rules, and carries it out.
    fn poll(&mut self, counts: &mut Counts) -> Result<(), String> {
        let now = self.now;
        let seen = self.seen.clone();
        let in_flight = self.handshake.is_some();
        ensure!(
            self.path.handshaking() == in_flight,
            "in flight: {in_flight}"
        );
        let actions = self.path.poll(now, &seen);
        let handshake = actions.contains(&Action::Handshake);
        let writer = actions.contains(&Action::StartWriter);
        let keepalive = actions.iter().find_map(|a| match a {
            Action::Keepalive(targets) => Some(targets.clone()),
            _ => None,
        });

        let active = seen.last_data != 0 && now - seen.last_data < IDLE;
        let aged = seen.session.is_some_and(|age| age >= self.rekey_after());
        let wanted = seen.session.is_none() || aged || seen.worn;
        let may_try = seen.routed
            && !in_flight
            && self
                .last_attempt
                .is_none_or(|at| now - at >= ms(RETRY_AFTER));
        ensure!(
            handshake == (may_try && active && wanted),
            "handshake {handshake} at {now} ms, seen {seen:?}"
        );
        if seen.routed && !in_flight && active && wanted {
            let since = *self.handshake_wanted_since.get_or_insert(now);
            ensure!(
                handshake || now - since < ms(RETRY_AFTER) + TICK,
                "no handshake for {} ms though traffic waits",
                now - since
            );
        } else {
            self.handshake_wanted_since = None;
        }

        let may_write = seen.routed
            && seen.session.is_some()
            && !seen.writer_running
            && self
                .writer_started
                .is_none_or(|at| now - at >= ms(RETRY_AFTER));
        ensure!(writer == may_write, "writer {writer} at {now} ms");

        match (seen.session, self.live_endpoint()) {
            (None, _) => ensure!(keepalive.is_none(), "a keepalive with no session"),
            (Some(_), Some(endpoint)) => {
                let idle = now - seen.last_tx;
                let flowing = seen.last_data != 0 && now - seen.last_data < ms(FLOWING);
                let heard = seen.last_rx > seen.last_tx;
                let echo = seen.last_rx - seen.last_tx.min(seen.last_rx) < ms(ECHO_WINDOW);
                let reply = heard && idle >= ms(REPLY_AFTER) && (flowing || !echo);
                let due = idle >= ms(KEEPALIVE) || reply;
                ensure!(
                    keepalive == due.then(|| vec![endpoint]),
                    "keepalive {keepalive:?} at {now} ms, idle {idle} ms"
                );
                if due {
                    if reply {
                        counts.replies += 1;
                    } else {
                        counts.idle_keepalives += 1;
                    }
                } else if heard && echo && !flowing && idle >= ms(REPLY_AFTER) {
                    counts.echoes_let_be += 1;
                }
                ensure!(
                    !(heard && (flowing || !echo) && idle >= ms(REPLY_AFTER) + TICK) || due,
                    "a peer heard from got no reply for {idle} ms"
                );
            }
            (Some(_), None) => {
                let mut known: BTreeSet<SocketAddr> = self.candidates.iter().copied().collect();
                known.extend(seen.endpoint);
                let due = !known.is_empty()
                    && self.last_probe.is_none_or(|at| now - at >= ms(PROBE_EVERY));
                let want = due.then(|| known.into_iter().collect::<Vec<_>>());
                ensure!(keepalive == want, "probe {keepalive:?} at {now} ms");
                for target in keepalive.iter().flatten() {
                    if let Some(at) = self.probed.insert(*target, now) {
                        ensure!(
                            now - at >= ms(PROBE_EVERY),
                            "{target} probed again after {} ms",
                            now - at
                        );
                    }
                }
                counts.probes += u64::from(due);
            }
        }

        if handshake {
            match seen.session {
                None => counts.first_handshakes += 1,
                Some(_) if seen.worn && !aged => counts.worn_rekeys += 1,
                Some(_) if self.lower => counts.rekeys_by_the_lower += 1,
                Some(_) => counts.rekeys_by_the_higher += 1,
            }
            self.last_attempt = Some(now);
            self.handshake_wanted_since = None;
            let ends = now + self.rng.gen_range(5..3_000);
            let made = self.rng.gen_bool(0.8);
            self.handshake = Some((ends, made));
        }
        if writer {
            counts.writers += 1;
            self.writer_started = Some(now);
            self.seen.writer_running = true;
        }
        if let Some(targets) = keepalive {
            if self.live_endpoint().is_none() {
                self.last_probe = Some(now);
            }
            for target in targets {
                self.send(target, false);
            }
        }
        if seen.session.is_none() || self.live_endpoint().is_none() {
            self.last_live_send = None;
            return Ok(());
        }
        if let Some(before) = self.last_live_send {
            let gap = self.seen.last_tx - before;
            ensure!(
                gap <= ms(KEEPALIVE) + TICK,
                "a live path went {gap} ms without a packet"
            );
        }
        self.last_live_send = Some(self.seen.last_tx);
        Ok(())
    }
}

/// Two thousand random worlds of five simulated minutes each: every poll does what the rules
/// ask, no more; traffic that waits gets a handshake in time, a peer heard from a reply, a
/// live path a packet every keepalive interval, and no address is probed twice within a
/// second; every rule was exercised.
#[test]
fn the_path_controller_follows_its_rules_in_any_order_of_events() {
    let mut counts = Counts::default();
    for seed in 0..2000 {
        let mut world = World::new(seed);
        let end = world.now + 300_000;
        while world.now < end {
            world.step(&mut counts);
            if let Err(why) = world.poll(&mut counts) {
                panic!("seed {seed}: {why}");
            }
        }
    }
    eprintln!("{counts:?}");
    let least = [
        ("first handshakes", counts.first_handshakes, 50),
        ("rekeys by the lower peer", counts.rekeys_by_the_lower, 50),
        ("rekeys by the higher peer", counts.rekeys_by_the_higher, 50),
        ("rekeys of worn sessions", counts.worn_rekeys, 50),
        ("handshakes from the peer", counts.peer_handshakes, 50),
        ("writers started", counts.writers, 50),
        ("probes", counts.probes, 50),
        ("idle keepalives", counts.idle_keepalives, 50),
        ("replies", counts.replies, 50),
        ("answers not answered", counts.echoes_let_be, 50),
        ("polls on a dead path", counts.dead_paths, 50),
        ("peers forgotten", counts.forgotten, 50),
    ];
    for (what, count, enough) in least {
        assert!(
            count >= enough,
            "only {count} {what}: the world does not exercise the rule"
        );
    }
}
