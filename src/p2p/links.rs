//! Which members this node holds connections to: a few, not the whole mesh.
//!
//! A connection to every member costs each node keep-alives, pings and gossip control that
//! grow with the mesh. So a node dials a live member of its own cluster (the ledger tells which
//! they are) when discovery names it only while it holds fewer than [`ENOUGH`] admitted
//! connections to members, and then only as many as it lacks ([`Links::wanted`]; a rendezvous
//! lookup also probes one, see `node/discovery.rs`), and
//! closes a connection to one that nothing used for the idle timeout ([`IDLE`] by default),
//! beyond the [`ENOUGH`] it keeps, unless the caller says it is held: a gossip mesh link, a
//! relay slot or circuit, a request in flight. Anyone else (a node not in the cluster yet, of a
//! cluster formed apart, or back after its lease expired) is dialled and kept as before:
//! formation and merges need those connections. Requests mark a connection used: raft's heartbeats keep the voters'
//! links to their leader, lease renewals (every 200 s) a member's link to the leader,
//! data-plane rekeys (every 2 minutes while traffic flows) a session's. libp2p's own idle
//! timeout cannot do this alone: gossipsub holds a stream open on every connection. Whatever
//! needs a member this node is not connected to (a raft RPC, a data-plane handshake) dials it
//! on demand ([`super::ondemand`]), at the addresses it was last known at, kept here. Pure and
//! time-injected.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};

/// Admitted connections a node holds before it stops dialling members it has met: enough for
/// a gossip mesh of degree 4 (kept between 3 and 5).
pub const ENOUGH: usize = 4;
/// How long a connection nothing uses stays open. Longer than the lease renewal interval
/// (200 s by default), so a member's connection to the leader it renews with stays.
pub const IDLE: Duration = Duration::from_secs(300);
/// Members remembered as met, with their addresses: past this, others count as strangers.
pub const MAX_MET: usize = 4096;
/// Addresses remembered per member.
pub const MAX_ADDRS: usize = 8;
/// How often a node short of [`ENOUGH`] connections dials one more member it has met.
pub const TOP_UP_EVERY: Duration = Duration::from_secs(10);
/// How long a member discovery dialled counts towards [`ENOUGH`] before it is admitted.
pub const DIAL_WAIT: Duration = Duration::from_secs(10);

/// The members this node has been admitted with, and where they were last known to listen.
#[derive(Debug)]
pub struct Links {
    met: HashMap<PeerId, Vec<Multiaddr>>,
    /// The live members of this node's cluster, as its ledger last said.
    members: HashSet<PeerId>,
    next_top_up: Instant,
    /// When each admitted connection was last used.
    last_used: HashMap<PeerId, Instant>,
    /// Peers holding a slot on this node, as a relay, and the circuits it relays for each.
    relayed: HashMap<PeerId, Relayed>,
    /// Members discovery dialled to make up [`ENOUGH`], not admitted yet, and when.
    dialled: HashMap<PeerId, Instant>,
}

#[derive(Debug, Default)]
struct Relayed {
    slot: bool,
    circuits: u32,
}

impl Links {
    pub fn new(now: Instant) -> Self {
        Links {
            met: HashMap::new(),
            members: HashSet::new(),
            next_top_up: now + TOP_UP_EVERY,
            last_used: HashMap::new(),
            relayed: HashMap::new(),
            dialled: HashMap::new(),
        }
    }

    /// `peer` was admitted, or told where it listens: it is met, at `addrs` when there are any
    /// (earlier ones are kept otherwise).
    pub fn met(&mut self, peer: PeerId, addrs: &[Multiaddr]) {
        if self.met.len() >= MAX_MET && !self.met.contains_key(&peer) {
            // Full: one that is no live member (gone, or never one) makes room, if any.
            let Some(gone) = self.met.keys().find(|p| !self.members.contains(p)).copied() else {
                return;
            };
            self.met.remove(&gone);
        }
        let known = self.met.entry(peer).or_default();
        if !addrs.is_empty() {
            *known = addrs.iter().take(MAX_ADDRS).cloned().collect();
        }
    }

    pub fn has_met(&self, peer: &PeerId) -> bool {
        self.met.contains_key(peer)
    }

    /// The live members of this node's cluster, all of them (the ledger bounds how many).
    pub fn set_members(&mut self, members: HashSet<PeerId>) {
        self.members = members;
    }

    /// Whether `peer` is a live member of this node's cluster.
    pub fn is_member(&self, peer: &PeerId) -> bool {
        self.members.contains(peer)
    }

    /// Where `peer` was last known to listen (empty when never told).
    pub fn addrs(&self, peer: &PeerId) -> Vec<Multiaddr> {
        self.met.get(peer).cloned().unwrap_or_default()
    }

    /// How many more members discovery dials at `now` for a node that holds `admitted`
    /// admitted connections to members: those it lacks of [`ENOUGH`], less the members it
    /// dialled in the last [`DIAL_WAIT`] that are not admitted yet (a lookup's answers, and
    /// mDNS's, come one after another, each asking again).
    pub fn wanted(&mut self, admitted: usize, now: Instant) -> usize {
        self.dialled
            .retain(|_, at| now.saturating_duration_since(*at) < DIAL_WAIT);
        ENOUGH.saturating_sub(admitted + self.dialled.len())
    }

    /// Whether discovery should dial `peer`, heard of at `now` (and `connected` already, or
    /// not), while this node still wants `wanted` members ([`Links::wanted`]): anyone outside
    /// the cluster yes, a member only while some are wanted, each member not connected taking
    /// one until it is admitted; a member dialled already and not admitted yet is not dialled
    /// again (its dial still counts, and a second dial would fail and give its place back).
    /// Without the count, a node one connection short that heard of the whole mesh at once (a
    /// rendezvous lookup's answer, mDNS, a peer list) dialled every member in it.
    pub fn dial_heard(
        &mut self,
        peer: &PeerId,
        connected: bool,
        wanted: &mut usize,
        now: Instant,
    ) -> bool {
        if !self.is_member(peer) {
            return true;
        }
        if *wanted == 0 || self.dialled.contains_key(peer) {
            return false;
        }
        if !connected {
            *wanted -= 1;
            self.dialled.insert(*peer, now);
        }
        true
    }

    /// A member [`Links::dial_heard`] took one for was not dialled after all: it gives it back.
    pub fn not_dialled(&mut self, peer: &PeerId, wanted: &mut usize) {
        if self.dialled.remove(peer).is_some() {
            *wanted += 1;
        }
    }

    /// The connection to `peer` carried a request, or was admitted, at `now`.
    pub fn used(&mut self, peer: PeerId, now: Instant) {
        self.dialled.remove(&peer);
        self.last_used.insert(peer, now);
    }

    /// `peer`'s last connection closed.
    pub fn gone(&mut self, peer: &PeerId) {
        self.last_used.remove(peer);
        self.relayed.remove(peer);
    }

    /// `peer` holds a slot on this node as a relay (`held`), or no longer does.
    pub fn slot(&mut self, peer: PeerId, held: bool) {
        self.relayed.entry(peer).or_default().slot = held;
        self.forget_unrelayed(&peer);
    }

    /// A circuit this node relays for `peer` opened (`opened`) or closed.
    pub fn circuit(&mut self, peer: PeerId, opened: bool) {
        let relayed = self.relayed.entry(peer).or_default();
        relayed.circuits = if opened {
            relayed.circuits.saturating_add(1)
        } else {
            relayed.circuits.saturating_sub(1)
        };
        self.forget_unrelayed(&peer);
    }

    fn forget_unrelayed(&mut self, peer: &PeerId) {
        if self
            .relayed
            .get(peer)
            .is_some_and(|r| !r.slot && r.circuits == 0)
        {
            self.relayed.remove(peer);
        }
    }

    /// Whether `peer` holds a slot on this node or a circuit through it: its connection stays.
    pub fn relays_for(&self, peer: &PeerId) -> bool {
        self.relayed.contains_key(peer)
    }

    /// The connections of `admitted` to close at `now`: those to members unused for `idle`
    /// and not `held`, the longest unused first, as long as [`ENOUGH`] to members remain.
    pub fn idle(
        &self,
        admitted: &[PeerId],
        held: impl Fn(&PeerId) -> bool,
        idle: Duration,
        now: Instant,
    ) -> Vec<PeerId> {
        let mut unused: Vec<(Instant, PeerId)> = admitted
            .iter()
            .filter(|peer| self.is_member(peer) && !held(peer))
            .filter_map(|peer| {
                let at = *self.last_used.get(peer)?;
                (now.saturating_duration_since(at) >= idle).then_some((at, *peer))
            })
            .collect();
        unused.sort();
        let members = admitted.iter().filter(|peer| self.is_member(peer)).count();
        let spare = members.saturating_sub(ENOUGH);
        unused
            .into_iter()
            .take(spare)
            .map(|(_, peer)| peer)
            .collect()
    }

    /// A live member met before to dial now, when this node holds fewer than [`ENOUGH`]
    /// admitted connections: at most one per [`TOP_UP_EVERY`], drawn by `pick` from those
    /// `usable` says it may dial (not connected, not blocked).
    pub fn top_up(
        &mut self,
        admitted: usize,
        usable: impl Fn(&PeerId) -> bool,
        pick: impl FnOnce(Vec<PeerId>) -> Option<PeerId>,
        now: Instant,
    ) -> Option<PeerId> {
        if admitted >= ENOUGH || now < self.next_top_up {
            return None;
        }
        self.next_top_up = now + TOP_UP_EVERY;
        let candidates: Vec<PeerId> = self
            .met
            .keys()
            .filter(|p| self.is_member(p) && usable(p))
            .copied()
            .collect();
        pick(candidates)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> Multiaddr {
        format!("/ip4/10.0.0.1/tcp/{port}").parse().unwrap()
    }

    #[test]
    fn outsiders_are_dialled_and_members_only_while_connections_are_few() {
        let now = Instant::now();
        let mut links = Links::new(now);
        let peer = PeerId::random();
        links.met(peer, &[addr(1)]);
        let mut wanted = links.wanted(ENOUGH + 10, now);
        assert_eq!(wanted, 0);
        assert!(
            links.dial_heard(&peer, false, &mut wanted, now),
            "met, but not a member (yet, or of a cluster formed apart)"
        );
        links.set_members(HashSet::from([peer]));
        let mut wanted = links.wanted(ENOUGH, now);
        assert!(!links.dial_heard(&peer, false, &mut wanted, now));
        let mut wanted = links.wanted(ENOUGH - 1, now);
        assert!(links.dial_heard(&peer, false, &mut wanted, now));
    }

    #[test]
    fn a_node_short_of_members_dials_only_as_many_as_it_lacks() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut links = Links::new(t0);
        let members: Vec<PeerId> = (0..15).map(|_| PeerId::random()).collect();
        links.set_members(members.iter().copied().collect());
        let outsider = PeerId::random();
        let mut wanted = links.wanted(ENOUGH - 2, t0);
        assert!(
            links.dial_heard(&members[0], true, &mut wanted, t0),
            "a member connected already takes nothing"
        );
        let dialled: Vec<PeerId> = members[1..]
            .iter()
            .filter(|peer| links.dial_heard(peer, false, &mut wanted, t0))
            .copied()
            .collect();
        assert_eq!(
            dialled.len(),
            2,
            "two short, two dialled of fourteen heard of"
        );
        assert!(
            links.dial_heard(&outsider, false, &mut wanted, t0),
            "outsiders still"
        );

        // The next answer, a moment later, finds the two dials under way: nothing more, and
        // a member being dialled is not dialled again even with places free.
        assert_eq!(links.wanted(ENOUGH - 2, at(1)), 0);
        assert!(!links.dial_heard(&dialled[1], false, &mut 3, at(1)));
        // One that could not be dialled gives its place back.
        let mut wanted = 0;
        links.not_dialled(&dialled[0], &mut wanted);
        assert_eq!(wanted, 1);
        // Admitted, the other counts among the connections instead (one short again, the
        // given-back place); one that never connected counts no more once the dial's time is up.
        links.used(dialled[1], at(2));
        assert_eq!(links.wanted(ENOUGH - 1, at(2)), 1);
        assert!(links.dial_heard(&members[5], false, &mut 1, at(3)));
        assert_eq!(links.wanted(ENOUGH - 1, at(3)), 0);
        assert_eq!(links.wanted(ENOUGH - 1, at(3) + DIAL_WAIT), 1);
    }

    #[test]
    fn addresses_are_the_latest_told_and_bounded_and_the_set_is_bounded() {
        let t0 = Instant::now();
        let mut links = Links::new(t0);
        let peer = PeerId::random();
        links.met(peer, &[addr(1)]);
        links.met(peer, &[]);
        assert_eq!(links.addrs(&peer), vec![addr(1)], "nothing told keeps them");
        let many: Vec<Multiaddr> = (0..20).map(addr).collect();
        links.met(peer, &many);
        assert_eq!(links.addrs(&peer), many[..MAX_ADDRS].to_vec());
        let mut members = HashSet::from([peer]);
        for _ in 1..MAX_MET {
            let member = PeerId::random();
            links.met(member, &[]);
            members.insert(member);
        }
        links.set_members(members.clone());
        let late = PeerId::random();
        links.met(late, &[addr(2)]);
        assert!(
            !links.has_met(&late),
            "full of members: a newcomer is not remembered"
        );
        members.remove(&peer);
        links.set_members(members);
        links.met(late, &[addr(2)]);
        assert!(links.has_met(&late), "one no longer a member made room");
        assert!(!links.has_met(&peer));
    }

    #[test]
    fn connections_unused_for_the_timeout_close_longest_unused_first_keeping_enough() {
        let t0 = Instant::now();
        let idle = Duration::from_secs(300);
        let mut links = Links::new(t0);
        let peers: Vec<PeerId> = (0..ENOUGH + 3).map(|_| PeerId::random()).collect();
        for (i, peer) in peers.iter().enumerate() {
            links.used(*peer, t0 + Duration::from_secs(i as u64));
        }
        let never_marked = PeerId::random();
        let outsider = PeerId::random();
        links.used(outsider, t0);
        let mut admitted = peers.clone();
        admitted.push(never_marked);
        links.set_members(admitted.iter().copied().collect());
        admitted.push(outsider);
        assert!(
            links
                .idle(&admitted, |_| false, idle, t0 + idle / 2)
                .is_empty()
        );
        let later = t0 + idle + Duration::from_secs(60);
        let held = peers[0];
        let closed = links.idle(&admitted, |p| *p == held, idle, later);
        assert_eq!(
            closed,
            peers[1..5].to_vec(),
            "the longest unused first, not the held one nor the outsider, and ENOUGH stay"
        );
        links.used(peers[1], later);
        links.gone(&peers[2]);
        let closed = links.idle(&admitted, |p| *p == held, idle, later);
        assert_eq!(closed, peers[3..7].to_vec(), "used again, or gone, stays");
    }

    #[test]
    fn a_peer_is_relayed_for_while_it_holds_a_slot_or_a_circuit() {
        let mut links = Links::new(Instant::now());
        let peer = PeerId::random();
        links.slot(peer, true);
        links.circuit(peer, true);
        links.slot(peer, false);
        assert!(links.relays_for(&peer), "a circuit still open");
        links.circuit(peer, false);
        assert!(!links.relays_for(&peer));
        links.circuit(peer, false);
        assert!(!links.relays_for(&peer), "a stray closing changes nothing");
        links.slot(peer, true);
        links.gone(&peer);
        assert!(!links.relays_for(&peer), "its connection closed");
    }

    #[test]
    fn a_node_short_of_connections_tops_up_one_member_at_a_time() {
        let t0 = Instant::now();
        let mut links = Links::new(t0);
        let (a, b, outsider) = (PeerId::random(), PeerId::random(), PeerId::random());
        links.met(a, &[addr(1)]);
        links.met(b, &[addr(2)]);
        links.met(outsider, &[addr(3)]);
        links.set_members(HashSet::from([a, b]));
        let first = |c: Vec<PeerId>| c.into_iter().min();
        assert_eq!(links.top_up(0, |_| true, first, t0), None, "not yet due");
        let t1 = t0 + TOP_UP_EVERY;
        assert_eq!(links.top_up(ENOUGH, |_| true, first, t1), None, "enough");
        assert_eq!(
            links.top_up(1, |p| *p == b, first, t1),
            Some(b),
            "only a usable one"
        );
        assert_eq!(links.top_up(1, |_| true, first, t1), None, "one per period");
        let t2 = t1 + TOP_UP_EVERY;
        assert_eq!(links.top_up(1, |_| false, first, t2), None, "none usable");
    }
}
