//! Requests to members this node is not admitted with: they wait while the member is dialled
//! and admitted, then go out; a member that cannot be reached fails them at once and, for a
//! short while, the requests after them.
//!
//! A node holds connections to a few members only ([`super::links`]), so a raft RPC, a
//! data-plane handshake or a `Hello` often names a member it is not connected to. Such a
//! request waits at most [`WAIT`]; at most [`MAX_PER_PEER`] wait for one member and
//! members are waited for [`MAX_PEERS`] at a time, so what the ledger or the data plane asks
//! for cannot make the node hold requests or dial without bound. After a member could not be
//! reached, requests to it fail at once for [`BACKOFF`]: raft sends a heartbeat every 500 ms,
//! and each would otherwise dial an unreachable voter again. Pure and time-injected.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// How long a request waits for its member's connection and admission.
pub const WAIT: Duration = Duration::from_secs(10);
/// Requests waiting for one member, at most.
pub const MAX_PER_PEER: usize = 16;
/// Members waited for at once, at most.
pub const MAX_PEERS: usize = 64;
/// How long requests to a member that could not be reached fail at once.
pub const BACKOFF: Duration = Duration::from_secs(5);

/// What became of a request to a member that is not admitted.
#[derive(Debug, PartialEq, Eq)]
pub enum Queued<R> {
    /// The first for its member: dial it.
    Dial,
    /// Waits with others for the same member.
    Waiting,
    /// Refused: the member could not be reached a moment ago, or too many wait.
    Refused(R),
}

#[derive(Debug)]
struct Waiting<R> {
    requests: Vec<R>,
    since: Instant,
    /// The member was dialled a second way (through relays) after the first failed.
    retried: bool,
}

/// The requests waiting for members to be reached.
#[derive(Debug)]
pub struct OnDemand<R> {
    waiting: HashMap<PeerId, Waiting<R>>,
    unreachable_until: HashMap<PeerId, Instant>,
}

impl<R> Default for OnDemand<R> {
    fn default() -> Self {
        OnDemand {
            waiting: HashMap::new(),
            unreachable_until: HashMap::new(),
        }
    }
}

impl<R> OnDemand<R> {
    /// A request to `peer`, not admitted, at `now`.
    pub fn wait(&mut self, peer: PeerId, request: R, now: Instant) -> Queued<R> {
        if self.unreachable_until.get(&peer).is_some_and(|t| now < *t) {
            return Queued::Refused(request);
        }
        let full = self.waiting.len() >= MAX_PEERS;
        match self.waiting.get_mut(&peer) {
            Some(waiting) if waiting.requests.len() >= MAX_PER_PEER => Queued::Refused(request),
            Some(waiting) => {
                waiting.requests.push(request);
                Queued::Waiting
            }
            None if full => Queued::Refused(request),
            None => {
                self.waiting.insert(
                    peer,
                    Waiting {
                        requests: vec![request],
                        since: now,
                        retried: false,
                    },
                );
                Queued::Dial
            }
        }
    }

    /// Whether requests wait for `peer`.
    pub fn is_waiting(&self, peer: &PeerId) -> bool {
        self.waiting.contains_key(peer)
    }

    /// Whether `peer`, whose dial failed, should be dialled once more another way before its
    /// requests fail: true the first time only, while requests wait for it.
    pub fn retry(&mut self, peer: &PeerId) -> bool {
        match self.waiting.get_mut(peer) {
            Some(waiting) if !waiting.retried => {
                waiting.retried = true;
                true
            }
            _ => false,
        }
    }

    /// `peer` was admitted: its requests go out.
    pub fn admitted(&mut self, peer: &PeerId) -> Vec<R> {
        self.unreachable_until.remove(peer);
        self.waiting
            .remove(peer)
            .map(|w| w.requests)
            .unwrap_or_default()
    }

    /// `peer` could not be reached (no address, every dial failed, or its connection closed
    /// before admission): its requests fail, and those of the next [`BACKOFF`] too.
    pub fn unreachable(&mut self, peer: &PeerId, now: Instant) -> Vec<R> {
        match self.waiting.remove(peer) {
            Some(waiting) => {
                self.unreachable_until.insert(*peer, now + BACKOFF);
                waiting.requests
            }
            None => Vec::new(),
        }
    }

    /// Requests that waited [`WAIT`] and fail now, with their members (each then backed off).
    pub fn expired(&mut self, now: Instant) -> Vec<(PeerId, R)> {
        self.unreachable_until.retain(|_, until| now < *until);
        let late: Vec<PeerId> = self
            .waiting
            .iter()
            .filter(|(_, w)| now.duration_since(w.since) >= WAIT)
            .map(|(peer, _)| *peer)
            .collect();
        late.into_iter()
            .flat_map(|peer| {
                self.unreachable(&peer, now)
                    .into_iter()
                    .map(move |r| (peer, r))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_wait_for_their_member_and_go_out_on_admission() {
        let t0 = Instant::now();
        let mut on = OnDemand::default();
        let peer = PeerId::random();
        assert_eq!(on.wait(peer, 1, t0), Queued::Dial);
        assert_eq!(on.wait(peer, 2, t0), Queued::Waiting);
        assert!(on.is_waiting(&peer));
        assert_eq!(on.admitted(&peer), vec![1, 2]);
        assert!(!on.is_waiting(&peer));
        assert_eq!(on.wait(peer, 3, t0), Queued::Dial, "a new wait dials again");
    }

    #[test]
    fn an_unreachable_member_fails_its_requests_and_the_next_for_a_while() {
        let t0 = Instant::now();
        let mut on = OnDemand::default();
        let peer = PeerId::random();
        on.wait(peer, 1, t0);
        assert_eq!(on.unreachable(&peer, t0), vec![1]);
        assert_eq!(on.wait(peer, 2, t0 + BACKOFF / 2), Queued::Refused(2));
        assert_eq!(on.wait(peer, 3, t0 + BACKOFF), Queued::Dial);
        assert!(
            on.unreachable(&PeerId::random(), t0).is_empty(),
            "nothing waited"
        );
    }

    #[test]
    fn a_failed_dial_is_retried_once_while_requests_wait() {
        let t0 = Instant::now();
        let mut on = OnDemand::default();
        let peer = PeerId::random();
        assert!(!on.retry(&peer), "nothing waits");
        on.wait(peer, 1, t0);
        assert!(on.retry(&peer));
        assert!(!on.retry(&peer), "once");
        assert_eq!(on.unreachable(&peer, t0), vec![1]);
    }

    #[test]
    fn requests_expire_after_the_wait() {
        let t0 = Instant::now();
        let mut on = OnDemand::default();
        let (a, b) = (PeerId::random(), PeerId::random());
        on.wait(a, 1, t0);
        on.wait(b, 2, t0 + WAIT / 2);
        on.wait(a, 3, t0 + WAIT / 2);
        assert!(on.expired(t0 + WAIT / 2).is_empty());
        let mut late = on.expired(t0 + WAIT);
        late.sort_by_key(|(_, r)| *r);
        assert_eq!(late, vec![(a, 1), (a, 3)]);
        assert!(on.is_waiting(&b));
        assert_eq!(on.wait(a, 4, t0 + WAIT), Queued::Refused(4), "backed off");
    }

    #[test]
    fn what_waits_is_bounded() {
        let t0 = Instant::now();
        let mut on = OnDemand::default();
        let peer = PeerId::random();
        for i in 0..MAX_PER_PEER {
            assert_ne!(on.wait(peer, i, t0), Queued::Refused(i));
        }
        assert_eq!(on.wait(peer, 99, t0), Queued::Refused(99));
        for i in 1..MAX_PEERS {
            assert_eq!(on.wait(PeerId::random(), i, t0), Queued::Dial);
        }
        assert_eq!(on.wait(PeerId::random(), 7, t0), Queued::Refused(7));
    }
}
