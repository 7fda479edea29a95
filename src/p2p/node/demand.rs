//! Requests to members this node is not connected to ([`super::super::ondemand`]): dialled at
//! the addresses they were last known at and those the DHT's routing table holds, then once
//! more through relays, looked up in the private DHT when there are none, and sent once
//! admitted. And the connections a node keeps ([`super::super::links`]): the top-up dials of a
//! node left with too few, and the closing of those nothing used and of second connections to
//! one peer.

use super::*;

impl Node {
    /// Sends a request to an admitted peer; the answer goes to `reply`.
    pub(super) fn send_request(
        &mut self,
        service: Service,
        peer: PeerId,
        payload: Vec<u8>,
        reply: Reply,
    ) {
        self.links.used(peer, Instant::now());
        let id = self.opaque(service).send_request(&peer, Opaque { payload });
        self.pending.insert((service, id), (peer, reply));
    }

    /// A request to a peer that is not admitted: it waits while the peer is dialled and
    /// admitted, unless the peer is this node, blocked, denied or was unreachable a moment ago.
    pub(super) fn request_on_demand(
        &mut self,
        service: Service,
        peer: PeerId,
        payload: Vec<u8>,
        reply: Reply,
    ) {
        if peer == *self.swarm.local_peer_id()
            || self.blocked_until.contains_key(&peer)
            || self.denied.contains_key(&peer)
        {
            let _ = reply.send(Err(P2pError::NotAdmitted(peer)));
            return;
        }
        match self
            .on_demand
            .wait(peer, (service, payload, reply), Instant::now())
        {
            Queued::Refused((_, _, reply)) => {
                let _ = reply.send(Err(P2pError::NotAdmitted(peer)));
            }
            Queued::Waiting => {}
            Queued::Dial => {
                tracing::debug!(%peer, ?service, "a request waits for a member to be dialled");
                self.dial_on_demand(peer);
            }
        }
    }

    /// Dials `peer` for the requests waiting for it; with no address to dial, asks the private
    /// DHT where it is (the answer is dialled in `on_kad`).
    fn dial_on_demand(&mut self, peer: PeerId) {
        match self.dial_known(peer) {
            Ok(()) | Err(libp2p::swarm::DialError::DialPeerConditionFalse(_)) => {}
            Err(libp2p::swarm::DialError::NoAddresses) if self.config.dht => self.look_up(peer),
            Err(e) => {
                tracing::debug!(%peer, error = %e, "cannot dial a member a request needs");
                self.unreachable(peer);
            }
        }
    }

    /// Asks the private DHT where `peer` is (the answer is dialled in `on_kad`). Meanwhile the
    /// DHT may dial it, member or not ([`super::super::gated`]): the walk reaches it by the
    /// addresses the members that know it give, and its answer is what names it.
    pub(super) fn look_up(&mut self, peer: PeerId) {
        if let Some(kad) = self.swarm.behaviour_mut().private_dht() {
            kad.get_closest_peers(peer);
            self.address_lookups.insert(peer);
            if let Ok(mut members) = self.members.write() {
                members.remove(&peer);
            }
        }
    }

    /// The address lookup of `peer` ended, or named it; true when one was out.
    pub(super) fn looked_up(&mut self, peer: &PeerId) -> bool {
        let was = self.address_lookups.remove(peer);
        if was
            && self.links.is_member(peer)
            && let Ok(mut members) = self.members.write()
        {
            members.insert(*peer);
        }
        was
    }

    /// Dials `peer`, soon needed (the leader this node sends its requests to), unless it is
    /// connected, this node, blocked or denied. Nothing waits for it: a failure is let be.
    pub(super) fn connect(&mut self, peer: PeerId) {
        if peer == *self.swarm.local_peer_id()
            || self.blocked_until.contains_key(&peer)
            || self.denied.contains_key(&peer)
        {
            return;
        }
        tracing::debug!(%peer, "dialling a member soon needed");
        if let Err(e) = self.dial_known(peer) {
            tracing::debug!(%peer, error = %e, "cannot dial a member soon needed");
        }
    }

    /// Dials `peer` at the addresses it was last known at, its circuits among them (the first
    /// connection made wins), and those the behaviours know (the DHT's routing table). Nothing
    /// happens while it is connected or being dialled.
    fn dial_known(&mut self, peer: PeerId) -> Result<(), libp2p::swarm::DialError> {
        if self.peers.is_connected(&peer) {
            // Connected and not admitted yet: its admission sends what waits.
            return Ok(());
        }
        let overlay = self.config.overlay;
        let mut known = self.links.addrs(&peer);
        known.retain(|a| !in_overlay(a, overlay));
        let opts = DialOpts::peer_id(peer)
            .addresses(known)
            .extend_addresses_through_behaviour()
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        self.swarm.dial(opts)
    }

    /// `peer` was admitted: the requests that waited for it go out.
    pub(super) fn send_waiting(&mut self, peer: PeerId) {
        for (service, payload, reply) in self.on_demand.admitted(&peer) {
            // A caller that gave up waiting may have sent its request another way.
            if !reply.is_closed() {
                self.send_request(service, peer, payload, reply);
            }
        }
    }

    /// `peer` could not be reached: the requests that waited for it fail. Not while its
    /// addresses are being looked up (the answer is dialled), and not after a first failed
    /// dial: it is dialled once more, through up to four relays this node reaches besides the
    /// addresses known (a member whose slot moved to another relay).
    pub(super) fn unreachable(&mut self, peer: PeerId) {
        if self.address_lookups.contains(&peer) {
            return;
        }
        if self.on_demand.retry(&peer) {
            let mut addrs = self.links.addrs(&peer);
            for addr in self.peers.listen_addrs(&peer) {
                if !addrs.contains(addr) {
                    addrs.push(addr.clone());
                }
            }
            tracing::debug!(%peer, "dialling a member a request needs through relays");
            if self.dial_member(peer, addrs, true, "a request needs it, through relays") {
                return;
            }
        }
        for (_, _, reply) in self.on_demand.unreachable(&peer, Instant::now()) {
            let _ = reply.send(Err(P2pError::NotAdmitted(peer)));
        }
    }

    /// Closes the connections to members nothing used for the idle timeout, beyond the few
    /// this node keeps ([`super::super::links::Links::idle`]). Held open regardless: gossip
    /// mesh links, relay slots and circuits either way, requests in flight either way, and
    /// members that requests wait for.
    pub(super) fn close_idle(&mut self, now: Instant) {
        if self.member_links() <= super::super::links::ENOUGH {
            return;
        }
        let admitted: Vec<PeerId> = self.peers.admitted_peers().map(|(p, ..)| *p).collect();
        let topic = self.topic.hash();
        let mesh: HashSet<PeerId> = self
            .swarm
            .behaviour()
            .gossipsub
            .mesh_peers(&topic)
            .copied()
            .collect();
        let relays = self.peers.relays_in_use();
        let asked: HashSet<PeerId> = self.pending.values().map(|(peer, _)| *peer).collect();
        let idle = self.links.idle(
            &admitted,
            |peer| {
                mesh.contains(peer)
                    || relays.contains(peer)
                    || self.reservations.holds(peer)
                    || self.links.relays_for(peer)
                    || self.inflight.contains_key(peer)
                    || asked.contains(peer)
                    || self.on_demand.is_waiting(peer)
            },
            self.config.idle_timeout,
            now,
        );
        for peer in idle {
            tracing::debug!(%peer, "closing a connection nothing used");
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    /// Closes this node's share of second connections to a peer
    /// ([`super::super::peers::PeerTable::duplicates`]), except to peers with requests in
    /// flight either way and relays either way (a relay's slot and circuits live on one
    /// connection, not necessarily the one kept).
    pub(super) fn close_duplicates(&mut self, now: Instant) {
        let local = *self.swarm.local_peer_id();
        let asked: HashSet<PeerId> = self.pending.values().map(|(peer, _)| *peer).collect();
        let relays = self.peers.relays_in_use();
        for (peer, connection) in self.peers.duplicates(&local, now) {
            if self.inflight.contains_key(&peer)
                || asked.contains(&peer)
                || relays.contains(&peer)
                || self.reservations.holds(&peer)
                || self.links.relays_for(&peer)
            {
                continue;
            }
            tracing::debug!(%peer, ?connection, "closing a second connection to a peer");
            self.peers.closing(&peer, connection);
            self.swarm.close_connection(connection);
        }
    }

    /// How many admitted connections this node holds to live members of its cluster: the
    /// count [`super::super::links::ENOUGH`] is measured against (connections to anyone else
    /// are kept regardless).
    pub(super) fn member_links(&self) -> usize {
        self.peers
            .admitted_peers()
            .filter(|(peer, ..)| self.links.is_member(peer))
            .count()
    }

    /// Dials one member met before when this node holds fewer admitted connections than
    /// [`super::super::links::ENOUGH`] (its gossip mesh would be too thin).
    pub(super) fn top_up(&mut self, admitted: usize, now: Instant) {
        use rand::seq::SliceRandom as _;
        let local = *self.swarm.local_peer_id();
        let peers = &self.peers;
        let blocked = &self.blocked_until;
        let denied = &self.denied;
        let chosen = self.links.top_up(
            admitted,
            |peer| {
                *peer != local
                    && !peers.is_connected(peer)
                    && !blocked.contains_key(peer)
                    && !denied.contains_key(peer)
            },
            |candidates| candidates.choose(&mut rand::thread_rng()).copied(),
            now,
        );
        if let Some(peer) = chosen {
            tracing::debug!(%peer, admitted, "too few connections; dialling a member met before");
            let addrs = self.links.addrs(&peer);
            self.dial_member(peer, addrs, false, "too few connections");
        }
    }
}
