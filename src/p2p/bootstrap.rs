//! Static bootstrap peers: dialled at start and, while not connected, re-dialled with
//! exponential backoff (1 s doubling to 60 s; back to 1 s after a connection drops). Pure: the
//! swarm task asks which addresses are due and reports connections.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};

const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Entry {
    addr: Multiaddr,
    peer: Option<PeerId>,
    connected: bool,
    next_attempt: Instant,
    backoff: Duration,
}

/// The bootstrap addresses and their redial schedule.
#[derive(Debug, Default)]
pub struct Bootstrap {
    entries: Vec<Entry>,
    dials: HashMap<ConnectionId, usize>,
}

impl Bootstrap {
    /// Every address is due at `now`.
    pub fn new(addrs: &[Multiaddr], now: Instant) -> Self {
        Bootstrap {
            entries: addrs
                .iter()
                .map(|addr| Entry {
                    addr: addr.clone(),
                    peer: None,
                    connected: false,
                    next_attempt: now,
                    backoff: MIN_BACKOFF,
                })
                .collect(),
            dials: HashMap::new(),
        }
    }

    /// Addresses to dial now; each is rescheduled with a doubled backoff.
    pub fn due(&mut self, now: Instant) -> Vec<(usize, Multiaddr)> {
        let mut due = Vec::new();
        for (i, entry) in self.entries.iter_mut().enumerate() {
            if !entry.connected && entry.next_attempt <= now {
                due.push((i, entry.addr.clone()));
                entry.next_attempt = now + entry.backoff;
                entry.backoff = (entry.backoff * 2).min(MAX_BACKOFF);
            }
        }
        due
    }

    /// The dial of entry `index` got connection id `id`.
    pub fn dialing(&mut self, index: usize, id: ConnectionId) {
        self.dials.insert(id, index);
    }

    /// A connection was established; if it was a bootstrap dial, that entry is connected.
    pub fn established(&mut self, id: ConnectionId, peer: PeerId) {
        if let Some(index) = self.dials.remove(&id) {
            let entry = &mut self.entries[index];
            entry.peer = Some(peer);
            entry.connected = true;
            entry.backoff = MIN_BACKOFF;
        }
    }

    /// A dial failed.
    pub fn failed(&mut self, id: ConnectionId) {
        self.dials.remove(&id);
    }

    /// The last connection to `peer` closed: its entries are due again after the minimum backoff.
    pub fn peer_gone(&mut self, peer: &PeerId, now: Instant) {
        for entry in &mut self.entries {
            if entry.peer.as_ref() == Some(peer) && entry.connected {
                entry.connected = false;
                entry.backoff = MIN_BACKOFF;
                entry.next_attempt = now + MIN_BACKOFF;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs() -> Vec<Multiaddr> {
        vec!["/ip4/10.0.0.1/tcp/4001".parse().unwrap()]
    }

    #[test]
    fn an_unreachable_peer_is_retried_with_growing_backoff_up_to_a_minute() {
        let t0 = Instant::now();
        let mut b = Bootstrap::new(&addrs(), t0);
        let mut attempts = vec![];
        let mut t = t0;
        while t < t0 + Duration::from_secs(300) {
            if !b.due(t).is_empty() {
                attempts.push(t.duration_since(t0).as_secs());
            }
            t += Duration::from_secs(1);
        }
        assert_eq!(&attempts[..7], &[0, 1, 3, 7, 15, 31, 63]);
        assert_eq!(attempts[8] - attempts[7], 60);
    }

    #[test]
    fn a_connected_peer_is_not_redialled_until_it_goes_away() {
        let t0 = Instant::now();
        let mut b = Bootstrap::new(&addrs(), t0);
        let id = ConnectionId::new_unchecked(7);
        let (index, _) = b.due(t0)[0].clone();
        b.dialing(index, id);
        let peer = PeerId::random();
        b.established(id, peer);
        assert!(b.due(t0 + Duration::from_secs(100)).is_empty());
        b.peer_gone(&peer, t0 + Duration::from_secs(100));
        assert!(b.due(t0 + Duration::from_millis(100_500)).is_empty());
        assert_eq!(b.due(t0 + Duration::from_secs(101)).len(), 1);
    }
}
