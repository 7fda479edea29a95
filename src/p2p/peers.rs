//! The peer table: what this node knows of every connected peer (connections, addresses,
//! round-trip time) and, for admitted peers, the view the API shows. Pure bookkeeping; the
//! swarm task feeds it events and publishes [`PeerView`] snapshots.
//!
//! A snapshot is published after every change (a connection, an admission, identify, each
//! ping), and the ledger reads it too, so it must stay cheap as the mesh grows. Each peer's
//! view is built once and kept until that peer's entry changes: a snapshot then costs a
//! pointer per peer and a sort, where formatting every address of every peer after each event took 41 %
//! of a node's CPU while 100 nodes formed on two cores.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};

/// How traffic to a peer travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionKind {
    /// At least one connection goes straight to the peer.
    Direct,
    /// Every connection goes through a relay.
    Relayed,
}

/// An admitted peer, as `GET /v1/peers` and `weft peers` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerView {
    pub peer_id: String,
    pub hostname: String,
    /// Addresses the peer listens on (from identify) and those we are connected to.
    pub addresses: Vec<String>,
    pub connection: ConnectionKind,
    /// Round-trip time of the last ping, in milliseconds.
    pub rtt_ms: Option<f64>,
    /// When the peer was admitted, seconds since the UNIX epoch: last, when it challenged this
    /// node again since ([`PeerTable::admitted_again`]).
    pub admitted_since: u64,
    /// Whether the peer offers to relay (advertises the relay protocol): it serves.
    pub relay: bool,
}

/// One open connection: the peer's address, and whether we dialed it (then the address is one
/// the peer listens on, not an ephemeral source port).
#[derive(Debug, Clone)]
struct Link {
    remote: Multiaddr,
    dialed: bool,
    relayed: bool,
    /// When it was established.
    opened: Instant,
    /// Being closed as a second connection ([`PeerTable::closing`]).
    closing: bool,
}

#[derive(Debug, Default)]
struct Entry {
    admitted: Option<(String, SystemTime)>,
    listen_addrs: Vec<Multiaddr>,
    connections: HashMap<ConnectionId, Link>,
    rtt: Option<Duration>,
    relay: bool,
    /// The view last built, dropped by every change to the fields it shows.
    view: Option<Arc<PeerView>>,
}

impl Entry {
    /// The API's view of this peer when it is admitted, built when the entry changed since.
    fn view(&mut self, peer: &PeerId) -> Option<Arc<PeerView>> {
        let (hostname, since) = self.admitted.as_ref()?;
        if let Some(view) = &self.view {
            return Some(view.clone());
        }
        let direct = self.connections.values().any(|l| !l.relayed);
        let mut addresses: Vec<String> = self
            .listen_addrs
            .iter()
            .chain(self.connections.values().map(|l| &l.remote))
            .map(ToString::to_string)
            .collect();
        addresses.sort();
        addresses.dedup();
        let view = Arc::new(PeerView {
            peer_id: peer.to_string(),
            hostname: hostname.clone(),
            addresses,
            connection: if direct {
                ConnectionKind::Direct
            } else {
                ConnectionKind::Relayed
            },
            rtt_ms: self.rtt.map(|d| d.as_secs_f64() * 1000.0),
            admitted_since: since
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            relay: self.relay,
        });
        self.view = Some(view.clone());
        Some(view)
    }
}

/// How long a second direct connection to a peer stays open at least
/// ([`PeerTable::duplicates`]).
const DUPLICATE_GRACE: Duration = Duration::from_secs(10);

/// Every connected peer.
#[derive(Debug, Default)]
pub struct PeerTable {
    peers: HashMap<PeerId, Entry>,
}

impl PeerTable {
    /// A connection to `peer` at `remote` was established at `now`; `dialed` when we opened it,
    /// `relayed` when it runs through a circuit relay (an inbound circuit's remote address does
    /// not say so).
    pub fn connected(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        remote: Multiaddr,
        dialed: bool,
        relayed: bool,
        now: Instant,
    ) {
        let entry = self.peers.entry(peer).or_default();
        entry.connections.insert(
            id,
            Link {
                remote,
                dialed,
                relayed,
                opened: now,
                closing: false,
            },
        );
        entry.view = None;
    }

    /// A connection closed; returns true when it was the peer's last, and forgets the peer.
    pub fn disconnected(&mut self, peer: &PeerId, id: ConnectionId) -> bool {
        let Some(entry) = self.peers.get_mut(peer) else {
            return true;
        };
        entry.connections.remove(&id);
        entry.view = None;
        if entry.connections.is_empty() {
            self.peers.remove(peer);
            return true;
        }
        false
    }

    /// The connection an AutoNAT dial-back to `peer` at `address` opened: the newest this node
    /// dialed there, while the peer has another direct one (the one it asked for the probe on;
    /// when that one closed meanwhile, the dial-back is kept as the direct path).
    pub fn dial_back(&self, peer: &PeerId, address: &Multiaddr) -> Option<ConnectionId> {
        let entry = self.peers.get(peer)?;
        let newest = entry
            .connections
            .iter()
            .filter(|(_, link)| link.dialed && !link.relayed && link.remote == *address)
            .map(|(id, _)| *id)
            .max()?;
        entry
            .connections
            .iter()
            .any(|(id, link)| *id != newest && !link.relayed)
            .then_some(newest)
    }

    /// The connections this node closes at `now` because their admitted peer has an older
    /// direct one, with that peer. Two nodes that dial each other at once (or over TCP and QUIC
    /// both) end up with two, and each costs both ends its keep-alives and gossip's control
    /// messages. Only the end with the lower PeerId closes, so that the two ends never close
    /// both; it keeps the one established first, and closes the others once they are
    /// [`DUPLICATE_GRACE`] old (requests, streams and relay reservations that both ends
    /// spread over a new pair of connections have settled by then). Relayed connections, and
    /// those already closing, are left alone.
    pub fn duplicates(&self, local: &PeerId, now: Instant) -> Vec<(PeerId, ConnectionId)> {
        let mut duplicates = Vec::new();
        for (peer, entry) in &self.peers {
            if local >= peer || entry.admitted.is_none() {
                continue;
            }
            let mut direct: Vec<(Instant, ConnectionId, bool)> = entry
                .connections
                .iter()
                .filter(|(_, link)| !link.relayed)
                .map(|(id, link)| (link.opened, *id, link.closing))
                .collect();
            direct.sort_unstable();
            duplicates.extend(
                direct
                    .into_iter()
                    .skip(1)
                    .filter(|(opened, _, closing)| {
                        !closing && now.saturating_duration_since(*opened) >= DUPLICATE_GRACE
                    })
                    .map(|(_, id, _)| (*peer, id)),
            );
        }
        duplicates
    }

    /// Connection `id` to `peer` is being closed as a second one: not to be closed again.
    pub fn closing(&mut self, peer: &PeerId, id: ConnectionId) {
        if let Some(link) = self
            .peers
            .get_mut(peer)
            .and_then(|entry| entry.connections.get_mut(&id))
        {
            link.closing = true;
        }
    }

    /// `peer` proved membership.
    pub fn admitted(&mut self, peer: PeerId, hostname: String, now: SystemTime) {
        let entry = self.peers.entry(peer).or_default();
        entry.admitted = Some((hostname, now));
        entry.view = None;
    }

    /// `peer`, admitted already, challenged this node again at `now`. Mostly it is a new
    /// process (a restart this node has not seen, the old connection still open), or one that
    /// lost its connections while this node kept one; either way it is admitted anew from then
    /// on, as what it said since its admission may no longer hold (the leader asks again which
    /// operator key it runs with: `ledger/keyed.rs`). A member that re-checks this node during a
    /// token rotation (every 5 s while this node is behind) challenges it too, and so counts as
    /// admitted anew each time: a question more. Answers whether the time changed (it is kept
    /// in whole seconds, so a peer that challenges again and again moves it once a second).
    pub fn admitted_again(&mut self, peer: PeerId, now: SystemTime) -> bool {
        let Some(entry) = self.peers.get_mut(&peer) else {
            return false;
        };
        let Some((_, since)) = &mut entry.admitted else {
            return false;
        };
        let secs = |t: SystemTime| {
            t.duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        };
        if secs(*since) == secs(now) {
            return false;
        }
        *since = now;
        entry.view = None;
        true
    }

    /// identify told us where `peer` listens and whether it relays; returns whether it
    /// relayed before.
    pub fn identified(&mut self, peer: PeerId, listen_addrs: Vec<Multiaddr>, relay: bool) -> bool {
        let entry = self.peers.entry(peer).or_default();
        entry.listen_addrs = listen_addrs;
        entry.view = None;
        std::mem::replace(&mut entry.relay, relay)
    }

    /// A ping to `peer` took `rtt`.
    pub fn rtt(&mut self, peer: PeerId, rtt: Duration) {
        if let Some(entry) = self.peers.get_mut(&peer) {
            entry.rtt = Some(rtt);
            entry.view = None;
        }
    }

    /// Whether `peer` has any connection.
    pub fn is_connected(&self, peer: &PeerId) -> bool {
        self.peers.contains_key(peer)
    }

    /// Whether some connection to `peer` is direct (not through a circuit).
    pub fn is_direct(&self, peer: &PeerId) -> bool {
        self.peers
            .get(peer)
            .is_some_and(|e| e.connections.values().any(|l| !l.relayed))
    }

    /// The relays this node's outbound relayed connections go through (an inbound one's
    /// address names the peer, not the relay; it comes through a relay holding this node's
    /// slot).
    pub fn relays_in_use(&self) -> std::collections::HashSet<PeerId> {
        self.peers
            .values()
            .flat_map(|e| e.connections.values())
            .filter(|link| link.relayed && link.dialed)
            .filter_map(|link| {
                link.remote.iter().find_map(|p| match p {
                    Protocol::P2p(relay) => Some(relay),
                    _ => None,
                })
            })
            .collect()
    }

    /// Where `peer` says it listens.
    pub fn listen_addrs(&self, peer: &PeerId) -> &[Multiaddr] {
        self.peers
            .get(peer)
            .map(|e| e.listen_addrs.as_slice())
            .unwrap_or_default()
    }

    /// An address of `peer` that others can dial: one we dialed it on, else a listen address
    /// that is neither loopback nor a wildcard nor a circuit. Without a trailing `/p2p`.
    pub fn dialable_addr(&self, peer: &PeerId) -> Option<Multiaddr> {
        let entry = self.peers.get(peer)?;
        let dialed = entry
            .connections
            .values()
            .find(|l| l.dialed && !l.relayed)
            .map(|l| l.remote.clone());
        let listened = || {
            entry
                .listen_addrs
                .iter()
                .find(|a| !is_relayed(a) && is_routable(a))
                .cloned()
        };
        dialed.or_else(listened).map(without_peer_id)
    }

    /// Whether some connection to `peer` runs over loopback (both ends on this machine).
    pub fn over_loopback(&self, peer: &PeerId) -> bool {
        self.peers.get(peer).is_some_and(|e| {
            e.connections
                .values()
                .any(|l| !l.relayed && is_loopback(&l.remote))
        })
    }

    /// Admitted peers that run a relay server.
    pub fn relays(&self) -> impl Iterator<Item = &PeerId> {
        self.peers
            .iter()
            .filter(|(_, e)| e.relay && e.admitted.is_some())
            .map(|(p, _)| p)
    }

    /// Admitted peers with what can be shared about them.
    pub fn admitted_peers(&self) -> impl Iterator<Item = (&PeerId, &str, &[Multiaddr], bool)> {
        self.peers.iter().filter_map(|(peer, e)| {
            e.admitted
                .as_ref()
                .map(|(host, _)| (peer, host.as_str(), e.listen_addrs.as_slice(), e.relay))
        })
    }

    /// The API's view of every admitted peer, sorted by hostname then PeerId. Only the views
    /// of peers whose entry changed since the last call are built again.
    pub fn views(&mut self) -> Vec<Arc<PeerView>> {
        let mut views: Vec<Arc<PeerView>> = self
            .peers
            .iter_mut()
            .filter_map(|(peer, entry)| entry.view(peer))
            .collect();
        views.sort_by(|a, b| (&a.hostname, &a.peer_id).cmp(&(&b.hostname, &b.peer_id)));
        views
    }
}

/// Whether an address names a host other machines can reach: not loopback, not a wildcard, and
/// not IPv6 link-local, which libp2p's transports cannot dial (they drop an address's zone, so
/// no interface is named).
pub fn is_routable(addr: &Multiaddr) -> bool {
    addr.iter().all(|p| match p {
        Protocol::Ip4(ip) => !ip.is_loopback() && !ip.is_unspecified(),
        Protocol::Ip6(ip) => {
            !ip.is_loopback() && !ip.is_unspecified() && !ip.is_unicast_link_local()
        }
        _ => true,
    })
}

/// Whether an address is on this machine: every IP in it is loopback.
pub fn is_loopback(addr: &Multiaddr) -> bool {
    let mut ips = addr.iter().filter_map(|p| match p {
        Protocol::Ip4(ip) => Some(ip.is_loopback()),
        Protocol::Ip6(ip) => Some(ip.is_loopback()),
        _ => None,
    });
    ips.next().is_some_and(|first| first && ips.all(|l| l))
}

/// Whether this node hands `addr` on to another member: a routable address always, a loopback
/// one only when both the member it names and the one asking are on this machine (`local`).
pub fn is_shareable(addr: &Multiaddr, local: bool) -> bool {
    is_routable(addr) || (local && is_loopback(addr))
}

/// `addr` without a trailing `/p2p/<id>`.
pub fn without_peer_id(mut addr: Multiaddr) -> Multiaddr {
    if matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
        addr.pop();
    }
    addr
}

/// Whether an address goes through a circuit relay.
pub fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

/// Whether an address goes through a circuit on a relay that is itself reached through a
/// circuit: a relay that holds a slot elsewhere hands such addresses out, and nobody can dial
/// them.
pub fn is_nested_circuit(addr: &Multiaddr) -> bool {
    addr.iter()
        .filter(|p| matches!(p, Protocol::P2pCircuit))
        .count()
        > 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_lower_peer_id_closes_all_but_the_first_direct_connection_of_an_admitted_peer() {
        let mut ids = [PeerId::random(), PeerId::random(), PeerId::random()];
        ids.sort();
        let [low, middle, high] = ids;
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut table = PeerTable::default();
        let connect = |table: &mut PeerTable, peer, id, relayed, opened| {
            table.connected(
                peer,
                ConnectionId::new_unchecked(id),
                addr("/ip4/10.0.0.1/tcp/1"),
                id % 2 == 0,
                relayed,
                opened,
            );
        };
        // Established in this order: 7 first, then the relayed 3, then 5 and 9. The ids say
        // when a dial began, not when it connected.
        for (id, relayed, opened) in [(7, false, 0), (3, true, 1), (5, false, 2), (9, false, 8)] {
            connect(&mut table, high, id, relayed, at(opened));
        }
        connect(&mut table, low, 1, false, at(0));
        connect(&mut table, low, 2, false, at(0));
        for peer in [low, high] {
            table.admitted(peer, "peer".into(), SystemTime::now());
        }
        let closed = |table: &PeerTable, local, now| {
            let mut closed = table.duplicates(local, now);
            closed.sort();
            closed
        };
        let id = ConnectionId::new_unchecked;
        assert_eq!(
            closed(&table, &middle, at(12)),
            [(high, id(5))],
            "the first established (7) and the relayed one stay; 9 is not 10 s old yet"
        );
        assert_eq!(
            closed(&table, &middle, at(18)),
            [(high, id(5)), (high, id(9))]
        );
        table.closing(&high, id(5));
        assert_eq!(
            closed(&table, &middle, at(18)),
            [(high, id(9))],
            "one being closed is not closed again"
        );
        // The peer with the higher id leaves the closing to the lower one.
        assert!(table.duplicates(&high, at(18)).is_empty());
        // A peer still being admitted keeps its connections.
        let mut fresh = PeerTable::default();
        connect(&mut fresh, high, 1, false, at(0));
        connect(&mut fresh, high, 2, false, at(0));
        assert!(fresh.duplicates(&low, at(60)).is_empty());
    }

    #[test]
    fn only_admitted_peers_are_shown() {
        let mut table = PeerTable::default();
        let (a, b) = (PeerId::random(), PeerId::random());
        table.connected(
            a,
            ConnectionId::new_unchecked(1),
            addr("/ip4/10.0.0.1/tcp/1"),
            true,
            false,
            Instant::now(),
        );
        table.connected(
            b,
            ConnectionId::new_unchecked(2),
            addr("/ip4/10.0.0.2/tcp/1"),
            false,
            false,
            Instant::now(),
        );
        table.admitted(a, "alpha".into(), SystemTime::now());
        let views = table.views();
        assert_eq!(views.len(), 1);
        assert_eq!(views[0].hostname, "alpha");
        assert_eq!(views[0].connection, ConnectionKind::Direct);
    }

    /// A table of two peers, each with one direct connection, neither admitted yet.
    fn two_connected() -> (PeerTable, PeerId, PeerId) {
        let mut table = PeerTable::default();
        let (a, b) = (PeerId::random(), PeerId::random());
        for (peer, n) in [(a, 1), (b, 2)] {
            table.connected(
                peer,
                ConnectionId::new_unchecked(n),
                addr(&format!("/ip4/10.0.0.{n}/tcp/1")),
                true,
                false,
                Instant::now(),
            );
        }
        (table, a, b)
    }

    #[test]
    fn a_peer_admitted_again_keeps_its_name_with_the_new_time_and_an_unadmitted_one_stays_out() {
        let (mut table, a, b) = two_connected();
        let at = |secs| UNIX_EPOCH + Duration::from_secs(secs);
        table.admitted(a, "alpha".into(), at(100));
        assert_eq!(table.views()[0].admitted_since, 100);
        assert!(table.admitted_again(a, at(160)));
        assert!(!table.admitted_again(a, at(160)), "the same second");
        assert!(!table.admitted_again(b, at(160)));
        let views = table.views();
        assert_eq!(views.len(), 1, "b was never admitted");
        assert_eq!(
            (views[0].hostname.as_str(), views[0].admitted_since),
            ("alpha", 160)
        );
    }

    #[test]
    fn a_view_is_built_again_after_each_change_to_its_peer_and_only_then() {
        let (mut table, a, b) = two_connected();
        for (peer, n) in [(a, 1), (b, 2)] {
            table.admitted(peer, format!("host{n}"), SystemTime::now());
        }
        let view_of = |views: &[Arc<PeerView>], peer: &PeerId| {
            let text = peer.to_string();
            views.iter().find(|v| v.peer_id == text).cloned().unwrap()
        };
        let first = table.views();
        let again = table.views();
        for peer in [&a, &b] {
            assert!(Arc::ptr_eq(&view_of(&first, peer), &view_of(&again, peer)));
        }
        let changes: [&dyn Fn(&mut PeerTable); 4] = [
            &|t| t.rtt(a, Duration::from_millis(7)),
            &|t| {
                t.identified(a, vec![addr("/ip4/10.0.0.1/udp/2/quic-v1")], true);
            },
            &|t| {
                t.connected(
                    a,
                    ConnectionId::new_unchecked(3),
                    addr("/ip4/10.9.0.1/tcp/3"),
                    false,
                    false,
                    Instant::now(),
                );
            },
            &|t| {
                t.disconnected(&a, ConnectionId::new_unchecked(3));
            },
        ];
        for change in changes {
            let before = table.views();
            change(&mut table);
            let after = table.views();
            assert!(!Arc::ptr_eq(&view_of(&before, &a), &view_of(&after, &a)));
            assert!(Arc::ptr_eq(&view_of(&before, &b), &view_of(&after, &b)));
        }
        let shown = view_of(&table.views(), &a);
        assert_eq!(shown.rtt_ms, Some(7.0));
        assert!(shown.relay);
        assert_eq!(
            shown.addresses,
            ["/ip4/10.0.0.1/tcp/1", "/ip4/10.0.0.1/udp/2/quic-v1"]
        );
    }

    #[test]
    fn loopback_wildcard_and_link_local_addresses_are_not_routable() {
        for a in [
            "/ip4/127.0.0.1/tcp/1",
            "/ip4/0.0.0.0/udp/1/quic-v1",
            "/ip6/::1/tcp/1",
            "/ip6/fe80::905c:a4ff:feb5:2077/udp/1/quic-v1",
        ] {
            assert!(!is_routable(&addr(a)), "{a}");
        }
        for a in [
            "/ip4/10.99.0.1/tcp/1",
            "/ip6/fd00::1/tcp/1",
            "/ip6/2001:db8::1/udp/1/quic-v1",
        ] {
            assert!(is_routable(&addr(a)), "{a}");
        }
    }

    #[test]
    fn loopback_is_shared_only_on_this_machine_and_link_local_never() {
        let link_local = addr("/ip6/fe80::905c:a4ff:feb5:2077/tcp/1");
        for local in [false, true] {
            assert!(is_shareable(&addr("/ip4/10.99.0.1/tcp/1"), local));
            assert!(
                !is_shareable(&link_local, local),
                "link-local, local {local}"
            );
            assert!(!is_shareable(&addr("/ip4/0.0.0.0/tcp/1"), local));
        }
        for a in ["/ip4/127.0.0.1/tcp/1", "/ip6/::1/udp/1/quic-v1"] {
            assert!(is_shareable(&addr(a), true), "{a}");
            assert!(!is_shareable(&addr(a), false), "{a}");
        }
        assert!(!is_loopback(&link_local));
        assert!(!is_loopback(&addr("/dns4/localhost/tcp/1")));
    }

    #[test]
    fn only_a_circuit_through_a_circuit_is_nested() {
        let relay = PeerId::random();
        let other = PeerId::random();
        let direct = addr("/ip4/10.0.0.1/tcp/4001");
        let circuit = direct
            .clone()
            .with(Protocol::P2p(relay))
            .with(Protocol::P2pCircuit);
        let nested = circuit
            .clone()
            .with(Protocol::P2p(other))
            .with(Protocol::P2pCircuit);
        assert!(!is_nested_circuit(&direct));
        assert!(!is_nested_circuit(&circuit) && is_relayed(&circuit));
        assert!(is_nested_circuit(&nested));
    }

    #[test]
    fn a_peer_reached_only_through_a_circuit_is_relayed_until_a_direct_connection_opens() {
        // An inbound circuit's remote address is only `/p2p/<relay>`: the flag decides.
        let mut table = PeerTable::default();
        let a = PeerId::random();
        let circuit = addr(
            "/ip4/10.0.0.9/tcp/1/p2p/12D3KooWRBhwfeP2Y4TCx1SM6s9rUoHhR5STiGwxBhgFRcw3UERE/p2p-circuit",
        );
        table.connected(
            a,
            ConnectionId::new_unchecked(1),
            circuit,
            true,
            true,
            Instant::now(),
        );
        table.admitted(a, "alpha".into(), SystemTime::now());
        assert_eq!(table.views()[0].connection, ConnectionKind::Relayed);
        table.connected(
            a,
            ConnectionId::new_unchecked(2),
            addr("/ip4/10.0.0.1/udp/1/quic-v1"),
            false,
            false,
            Instant::now(),
        );
        assert_eq!(table.views()[0].connection, ConnectionKind::Direct);
        assert!(!table.disconnected(&a, ConnectionId::new_unchecked(2)));
        assert!(table.disconnected(&a, ConnectionId::new_unchecked(1)));
        assert!(table.views().is_empty());
    }

    #[test]
    fn the_dialable_address_prefers_the_one_we_dialed_and_never_loopback() {
        let mut table = PeerTable::default();
        let relay = PeerId::random();
        table.connected(
            relay,
            ConnectionId::new_unchecked(1),
            addr("/ip4/10.0.0.7/tcp/50123"),
            false,
            false,
            Instant::now(),
        );
        table.identified(
            relay,
            vec![
                addr("/ip4/127.0.0.1/tcp/4001"),
                addr("/ip4/10.0.0.7/tcp/4001"),
            ],
            true,
        );
        assert_eq!(
            table.dialable_addr(&relay),
            Some(addr("/ip4/10.0.0.7/tcp/4001"))
        );
        let dialed = format!("/ip4/10.1.0.7/tcp/4001/p2p/{relay}");
        table.connected(
            relay,
            ConnectionId::new_unchecked(2),
            addr(&dialed),
            true,
            false,
            Instant::now(),
        );
        assert_eq!(
            table.dialable_addr(&relay),
            Some(addr("/ip4/10.1.0.7/tcp/4001"))
        );
    }

    #[test]
    fn a_dial_back_is_the_newest_connection_dialed_at_the_probed_address_never_the_only_one() {
        let mut table = PeerTable::default();
        let peer = PeerId::random();
        let listen = addr("/ip4/10.0.0.7/tcp/4001");
        let id = ConnectionId::new_unchecked;
        table.connected(peer, id(1), listen.clone(), true, false, Instant::now());
        assert_eq!(table.dial_back(&peer, &listen), None, "its only connection");
        table.connected(
            peer,
            id(3),
            addr("/ip4/10.0.0.9/tcp/4001/p2p-circuit"),
            false,
            true,
            Instant::now(),
        );
        assert_eq!(
            table.dial_back(&peer, &listen),
            None,
            "its only direct connection"
        );
        table.connected(
            peer,
            id(2),
            addr("/ip4/10.0.0.7/tcp/50123"),
            false,
            false,
            Instant::now(),
        );
        table.connected(peer, id(5), listen.clone(), true, false, Instant::now());
        table.connected(
            peer,
            id(6),
            addr("/ip4/10.0.0.8/tcp/4001"),
            true,
            false,
            Instant::now(),
        );
        assert_eq!(table.dial_back(&peer, &listen), Some(id(5)));
        assert_eq!(
            table.dial_back(&peer, &addr("/ip4/10.0.0.9/tcp/4001")),
            None,
            "nothing was dialed there"
        );
        assert_eq!(table.dial_back(&PeerId::random(), &listen), None);
    }
}
