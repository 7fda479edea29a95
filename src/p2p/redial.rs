//! Members this node has heard of (from mDNS, peer exchange or the DHT) but is not connected
//! to: they are re-dialled with backoff (2 s doubling to 60 s) until a connection opens, so a
//! member that was unreachable a moment ago (its relay reservation not made yet, a flapping
//! link) is not forgotten until the next round of discovery. At most [`MAX_WANTED`] members with
//! [`MAX_ADDRS`] addresses each are kept; others heard of while it is full wait for the next
//! round. Pure.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};

pub const MIN_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A member not reached for this long is dropped; discovery will bring it back if it returns.
const GIVE_UP_AFTER: Duration = Duration::from_secs(600);
/// Members waited for at most: peer lists come from members, any of which may be hostile, so
/// what one can make this node remember is bounded.
pub const MAX_WANTED: usize = 1024;
/// Addresses kept per member.
pub const MAX_ADDRS: usize = 16;
/// Records of one peer list taken, at most: more than a node keeps connections to.
pub const MAX_PEER_RECORDS: usize = 512;

#[derive(Debug)]
struct Wanted {
    addrs: Vec<Multiaddr>,
    first_seen: Instant,
    next_attempt: Instant,
    backoff: Duration,
    /// Its first dial was held back ([`Redial::hold_back`]): the first one due is that dial.
    held: bool,
}

/// Members to reach, with their redial schedule.
#[derive(Debug, Default)]
pub struct Redial {
    wanted: HashMap<PeerId, Wanted>,
}

impl Redial {
    /// `peer` was heard of at `addrs`; its first retry is due after the minimum backoff. True
    /// when it was not wanted already (heard of for the first time in the last
    /// [`GIVE_UP_AFTER`]).
    pub fn heard_of(&mut self, peer: PeerId, addrs: &[Multiaddr], now: Instant) -> bool {
        let new = !self.wanted.contains_key(&peer);
        if self.wanted.len() >= MAX_WANTED && new {
            return false;
        }
        let wanted = self.wanted.entry(peer).or_insert_with(|| Wanted {
            addrs: Vec::new(),
            first_seen: now,
            next_attempt: now + MIN_BACKOFF,
            backoff: MIN_BACKOFF,
            held: false,
        });
        for addr in addrs {
            if wanted.addrs.len() < MAX_ADDRS && !wanted.addrs.contains(addr) {
                wanted.addrs.push(addr.clone());
            }
        }
        new
    }

    /// Whether `peer` is being redialled.
    pub fn is_wanted(&self, peer: &PeerId) -> bool {
        self.wanted.contains_key(peer)
    }

    /// Whether every member heard of is reached (or was given up on).
    pub fn wants_nobody(&self) -> bool {
        self.wanted.is_empty()
    }

    /// The first dial of `peer`, just heard of, is left to this table: of two members that
    /// hear of each other at once (mDNS tells both), the lower PeerId dials, and the higher one
    /// dials [`MIN_BACKOFF`] later (at the next reading of [`Redial::due`]) unless a connection
    /// opened meanwhile. The dial it then gets is a first dial, not a redial (no circuits are
    /// guessed to race the addresses heard).
    pub fn hold_back(&mut self, peer: &PeerId) {
        if let Some(wanted) = self.wanted.get_mut(peer) {
            wanted.held = true;
        }
    }

    /// A connection to `peer` opened: no need to redial it.
    pub fn reached(&mut self, peer: &PeerId) {
        self.wanted.remove(peer);
    }

    /// Members due for another dial, with the addresses heard for them and whether it is the
    /// first dial, held back. A member `admitted` at `now` is reached: it is forgotten here,
    /// not dialled again once its connection closes. (Heard of while admitted already, by
    /// mDNS as a mesh forms, it was kept and dialled again, through guessed relays too, when
    /// formation's connections idled out.) One connected but not admitted yet stays, so a
    /// connection that fails its admission is dialled again.
    pub fn due(
        &mut self,
        now: Instant,
        admitted: impl Fn(&PeerId) -> bool,
    ) -> Vec<(PeerId, Vec<Multiaddr>, bool)> {
        self.wanted
            .retain(|peer, w| now.duration_since(w.first_seen) < GIVE_UP_AFTER && !admitted(peer));
        let mut due = Vec::new();
        for (peer, wanted) in &mut self.wanted {
            if wanted.next_attempt <= now {
                due.push((
                    *peer,
                    wanted.addrs.clone(),
                    std::mem::take(&mut wanted.held),
                ));
                wanted.backoff = (wanted.backoff * 2).min(MAX_BACKOFF);
                wanted.next_attempt = now + wanted.backoff;
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_is_retried_with_backoff_until_reached() {
        let t0 = Instant::now();
        let mut redial = Redial::default();
        let peer = PeerId::random();
        redial.heard_of(peer, &["/ip4/10.0.0.1/tcp/1".parse().unwrap()], t0);
        assert!(redial.due(t0, |_| false).is_empty());
        assert_eq!(redial.due(t0 + Duration::from_secs(2), |_| false).len(), 1);
        assert!(
            redial
                .due(t0 + Duration::from_secs(5), |_| false)
                .is_empty()
        );
        assert_eq!(redial.due(t0 + Duration::from_secs(6), |_| false).len(), 1);
        redial.reached(&peer);
        assert!(
            redial
                .due(t0 + Duration::from_secs(100), |_| false)
                .is_empty()
        );
    }

    #[test]
    fn a_first_dial_held_back_is_due_after_the_minimum_backoff_once() {
        let t0 = Instant::now();
        let mut redial = Redial::default();
        let peer = PeerId::random();
        redial.heard_of(peer, &[], t0);
        redial.hold_back(&peer);
        assert!(redial.due(t0 + MIN_BACKOFF / 2, |_| false).is_empty());
        assert_eq!(
            redial.due(t0 + MIN_BACKOFF, |_| false),
            vec![(peer, vec![], true)]
        );
        assert_eq!(
            redial.due(t0 + Duration::from_secs(60), |_| false),
            vec![(peer, vec![], false)]
        );
    }

    #[test]
    fn what_peers_can_make_it_remember_is_bounded() {
        let t0 = Instant::now();
        let mut redial = Redial::default();
        let addrs: Vec<Multiaddr> = (0..100)
            .map(|i| format!("/ip4/10.0.0.1/tcp/{i}").parse().unwrap())
            .collect();
        for _ in 0..MAX_WANTED + 50 {
            redial.heard_of(PeerId::random(), &addrs, t0);
        }
        let due = redial.due(t0 + MIN_BACKOFF, |_| false);
        assert_eq!(due.len(), MAX_WANTED);
        assert!(due.iter().all(|(_, a, _)| a.len() == MAX_ADDRS));
    }

    #[test]
    fn a_member_admitted_when_its_dial_falls_due_is_forgotten_not_dialled_later() {
        let t0 = Instant::now();
        let mut redial = Redial::default();
        let (heard_admitted, away) = (PeerId::random(), PeerId::random());
        redial.heard_of(heard_admitted, &[], t0);
        redial.heard_of(away, &[], t0);
        let due = redial.due(t0 + MIN_BACKOFF, |peer| *peer == heard_admitted);
        assert_eq!(due, vec![(away, vec![], false)]);
        assert!(!redial.is_wanted(&heard_admitted));
        // Its connection closed later (idled out): nothing dials it from here.
        let later = redial.due(t0 + Duration::from_secs(300), |_| false);
        assert_eq!(later, vec![(away, vec![], false)]);
    }

    #[test]
    fn a_member_never_reached_is_eventually_forgotten() {
        let t0 = Instant::now();
        let mut redial = Redial::default();
        redial.heard_of(PeerId::random(), &[], t0);
        assert!(redial.due(t0 + GIVE_UP_AFTER, |_| false).is_empty());
    }
}
