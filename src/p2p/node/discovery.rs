//! Finding members: peer exchange over the control protocol, dialling members directly and
//! through relays, the private DHT rendezvous, and relay reservations.

use super::*;
use crate::p2p::pacer::{LookupPace, lookup_pace};

/// Relays a member is dialled through when its own addresses failed.
const GUESSED_RELAYS: usize = 4;

/// The members a peer list names, with their addresses. A member's list is taken only up to a
/// mesh's worth of records with a few addresses each, so a hostile member cannot make this node
/// dial without bound; records that do not decode are skipped.
pub(crate) fn records_of(list: PeerList) -> Vec<(PeerId, Vec<Multiaddr>)> {
    list.peers
        .into_iter()
        .take(super::super::redial::MAX_PEER_RECORDS)
        .filter_map(|record| {
            let peer = PeerId::from_bytes(&record.peer_id).ok()?;
            let addrs = record
                .addrs
                .into_iter()
                .take(super::super::redial::MAX_ADDRS)
                .filter_map(|a| Multiaddr::try_from(a).ok())
                .collect();
            Some((peer, addrs))
        })
        .collect()
}

impl Node {
    pub(super) fn ask_for_peers(&mut self, peer: PeerId) {
        let request = ControlRequest {
            kind: Some(control_request::Kind::Peers(PeerExchangeRequest {})),
        };
        self.swarm
            .behaviour_mut()
            .control
            .send_request(&peer, request);
    }

    /// Asks one admitted peer, chosen at random, which members it knows. Every newly admitted
    /// peer is asked once besides (`admit.rs`), so a member learns the mesh from whoever let it
    /// in; the rounds after that only repair what was missed, and are paced ([`Pacer`]).
    pub(super) fn exchange_peers(&mut self) {
        use rand::seq::IteratorRandom as _;
        let chosen = self
            .peers
            .admitted_peers()
            .map(|(p, ..)| *p)
            .choose(&mut rand::thread_rng());
        if let Some(peer) = chosen {
            self.ask_for_peers(peer);
        }
    }

    pub(super) fn on_control(
        &mut self,
        event: request_response::Event<ControlRequest, ControlResponse>,
    ) {
        use request_response::{Event, Message};
        match event {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let response = if !self.admission.is_admitted(&peer) {
                    self.metrics.refused_requests.inc();
                    tracing::debug!(%peer, "refusing a control request from a peer that is not admitted");
                    control_response::Kind::Refused(Refused {
                        reason: "not admitted".into(),
                    })
                } else {
                    match request.kind {
                        Some(control_request::Kind::Peers(_)) => {
                            control_response::Kind::Peers(self.peer_list(&peer))
                        }
                        None => control_response::Kind::Refused(Refused {
                            reason: "unknown request".into(),
                        }),
                    }
                };
                let _ = self.swarm.behaviour_mut().control.send_response(
                    channel,
                    ControlResponse {
                        kind: Some(response),
                    },
                );
            }
            Event::Message {
                peer,
                message: Message::Response { response, .. },
                ..
            } => match response.kind {
                Some(control_response::Kind::Peers(list)) => self.on_peer_list(peer, list),
                Some(control_response::Kind::Refused(refused)) => {
                    tracing::debug!(%peer, reason = refused.reason, "control request refused");
                }
                None => {}
            },
            _ => {}
        }
    }

    pub(super) fn peer_list(&self, asker: &PeerId) -> PeerList {
        // Loopback addresses mean something only to a peer on this same machine.
        let share_loopback = self.peers.over_loopback(asker);
        PeerList {
            peers: self
                .peers
                .admitted_peers()
                .filter(|(peer, ..)| *peer != asker)
                .map(|(peer, hostname, addrs, relay)| PeerRecord {
                    peer_id: peer.to_bytes(),
                    addrs: addrs
                        .iter()
                        .filter(|a| is_shareable(a, share_loopback))
                        .map(|a| a.to_vec())
                        .collect(),
                    hostname: hostname.to_string(),
                    relay,
                })
                .collect(),
        }
    }

    pub(super) fn on_peer_list(&mut self, from: PeerId, list: PeerList) {
        if !self.admission.is_admitted(&from) {
            return;
        }
        let now = Instant::now();
        let admitted = self.member_links();
        let mut wanted = self.links.wanted(admitted, now);
        for (peer, addrs) in records_of(list) {
            // This node itself is in the lists it is given: it takes no member's place.
            let connected = peer == *self.swarm.local_peer_id() || self.peers.is_connected(&peer);
            if !self.links.dial_heard(&peer, connected, &mut wanted, now) {
                // Met before: dialled again only when something needs it.
                continue;
            }
            if !connected && self.redial.heard_of(peer, &addrs, Instant::now()) {
                // A member this node neither reaches nor was already trying to reach.
                self.exchanges.found(Instant::now());
            }
            if !self.dial_member(peer, addrs, false, "a peer list named it") {
                self.links.not_dialled(&peer, &mut wanted);
            }
        }
    }

    /// Dials a peer learned from discovery at its addresses, the circuits it holds slots on
    /// among them once it has told. A redial (the direct addresses failed), or a peer with no
    /// direct address, is also dialled through up to [`GUESSED_RELAYS`] relays this node
    /// reaches directly, chosen at random: in `auto` mode most members relay, so not through
    /// every one, and a first dial does not race circuits against a direct path.
    ///
    /// True when a dial started, or the peer is connected already (its admission is under way
    /// or done). `why` says what asked for the dial, in the debug log.
    pub(super) fn dial_member(
        &mut self,
        peer: PeerId,
        mut addrs: Vec<Multiaddr>,
        redial: bool,
        why: &'static str,
    ) -> bool {
        use rand::seq::SliceRandom as _;
        if self.peers.is_connected(&peer) {
            return true;
        }
        if peer == *self.swarm.local_peer_id()
            || self.blocked_until.contains_key(&peer)
            || self.denied.contains_key(&peer)
        {
            return false;
        }
        // The overlay is reached through the data plane, never a way to a member's control plane.
        let overlay = self.config.overlay;
        addrs.retain(|a| !in_overlay(a, overlay));
        if redial || addrs.iter().all(is_relayed) {
            let mut guesses: Vec<Multiaddr> = self
                .peers
                .relays()
                .filter(|relay| **relay != peer && self.peers.is_direct(relay))
                .filter_map(|relay| {
                    let base = self.peers.dialable_addr(relay)?;
                    Some(base.with(Protocol::P2p(*relay)).with(Protocol::P2pCircuit))
                })
                .collect();
            guesses.shuffle(&mut rand::thread_rng());
            addrs.extend(guesses.into_iter().take(GUESSED_RELAYS));
        }
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        match self.swarm.dial(opts) {
            Ok(()) => {
                tracing::debug!(%peer, redial, why, "dialling");
                true
            }
            Err(e) => {
                tracing::debug!(%peer, error = %e, why, "dial failed");
                false
            }
        }
    }

    /// Puts an admitted peer in the private DHT with the addresses others could dial: every
    /// answer the DHT gives lists a few members with all the addresses it holds for them, so
    /// link-local addresses are left out, and loopback ones unless the member is on this
    /// machine (then they are handed to every asker: several daemons on one machine need them).
    pub(super) fn add_to_routing(&mut self, peer: PeerId) {
        let addrs = self.dialable_listen_addrs(&peer);
        if let Some(kad) = self.swarm.behaviour_mut().private_dht() {
            for addr in addrs {
                kad.add_address(&peer, addr);
            }
        }
    }

    /// Where an admitted peer says it listens, less what others could not dial: IPv6
    /// link-local addresses, and loopback ones unless the peer is on this machine.
    pub(super) fn dialable_listen_addrs(&self, peer: &PeerId) -> Vec<Multiaddr> {
        let local = self.peers.over_loopback(peer);
        self.peers
            .listen_addrs(peer)
            .iter()
            .filter(|a| is_shareable(a, local))
            .cloned()
            .collect()
    }

    /// Keeps a slot on up to [`relaying::WANTED`](super::super::relaying::WANTED) admitted
    /// relays, whatever this node's own reachability ([`super::super::relaying`]).
    pub(super) fn reserve_relays(&mut self) {
        let now = Instant::now();
        self.reservations.forget_stale(now);
        if !self.reservations.wants_more() {
            return;
        }
        let candidates: Vec<(PeerId, Multiaddr)> = self
            .peers
            .relays()
            .filter(|relay| self.peers.is_direct(relay) && self.reservations.may_ask(relay, now))
            .filter_map(|relay| Some((*relay, self.peers.dialable_addr(relay)?)))
            .collect();
        for (relay, base) in candidates {
            if !self.reservations.wants_more() {
                break;
            }
            let circuit = base.with(Protocol::P2p(relay)).with(Protocol::P2pCircuit);
            match self.swarm.listen_on(circuit.clone()) {
                Ok(id) => {
                    tracing::debug!(%relay, "asking a relay for a slot");
                    self.reservations.asked(relay, id);
                }
                Err(e) => tracing::debug!(%circuit, error = %e, "relay reservation failed"),
            }
        }
    }

    /// Provides this epoch's rendezvous record and looks up this epoch and the nearer neighbour
    /// (this epoch only once settled, [`lookup_pace`]).
    pub(super) fn rendezvous(&mut self, now: Instant) {
        if !self.config.dht && !self.config.public_dht {
            return;
        }
        let unix = crate::clock::unix_now();
        let held = self.keyring.held();
        let key_of = |keys: &crate::token::NetworkKeys, epoch: u64| {
            kad::RecordKey::new(&keys.rendezvous(epoch).0)
        };
        // Provided under the current token only; looked up under every token held, so that
        // during a rotation members on either token still meet.
        let current = key_of(&held.current.keys, held.current.keys.epoch_at(unix));
        if self.provided.as_ref() != Some(&current) {
            let old = self.provided.replace(current.clone());
            for kad in self.swarm.behaviour_mut().kads() {
                if let Some(old) = &old {
                    kad.stop_providing(old);
                }
                if let Err(e) = kad.start_providing(current.clone()) {
                    tracing::debug!(error = %e, "cannot provide the rendezvous record");
                }
            }
        }
        let pace = lookup_pace(
            self.peers.admitted_peers().count(),
            self.member_links(),
            super::super::links::ENOUGH,
            self.redial.wants_nobody(),
        );
        match pace {
            LookupPace::Eager => self.lookups.stay_eager(),
            LookupPace::Settled => self.lookups.settle(),
            LookupPace::AsFound => {}
        }
        if self.lookups.due(now) {
            let keys: Vec<kad::RecordKey> = held
                .accepted(unix)
                .into_iter()
                .map(|generation| &generation.keys)
                .flat_map(|keys| {
                    // A settled node looks up its own epoch only: the neighbour is for clocks
                    // on either side of a boundary, and each key is a walk of its own. A clock
                    // less than half an epoch off is in the same epoch for most of it, and a
                    // node that is not settled looks up both.
                    let epochs = if pace == LookupPace::Settled {
                        vec![keys.epoch_at(unix)]
                    } else {
                        keys.lookup_epochs(unix)
                    };
                    epochs.into_iter().map(|e| key_of(keys, e))
                })
                .collect();
            tracing::debug!(keys = keys.len(), "looking up the rendezvous providers");
            self.probe_due = true;
            for kad in self.swarm.behaviour_mut().kads() {
                for key in &keys {
                    kad.get_providers(key.clone());
                }
            }
        }
    }

    pub(super) fn on_kad(&mut self, event: kad::Event) {
        self.metrics.libp2p.record(&event);
        match event {
            kad::Event::InboundRequest {
                request:
                    kad::InboundRequest::AddProvider {
                        record: Some(mut record),
                    },
            } => {
                let overlay = self.config.overlay;
                record.addresses.retain(|a| !in_overlay(a, overlay));
                if self.admission.is_admitted(&record.provider)
                    && let Some(kad) = self.swarm.behaviour_mut().private_dht()
                    && let Err(e) = kad.store_mut().add_provider(record)
                {
                    tracing::debug!(error = %e, "cannot store a provider record");
                }
            }
            kad::Event::OutboundQueryProgressed {
                id,
                result: kad::QueryResult::GetProviders(Ok(found)),
                stats,
                ..
            } => {
                // The first answer of another member that names a provider besides this node
                // ends the walk: every member provides the same key, so the rest of the walk
                // would name the same members again, each answer listing its closest members
                // with all their addresses. (The first event can come from this node's own
                // store, which holds its own record: that one does not count.)
                let local = *self.swarm.local_peer_id();
                let named_others = matches!(&found, kad::GetProvidersOk::FoundProviders { providers, .. }
                    if providers.iter().any(|p| *p != local));
                if named_others
                    && stats.num_successes() > 0
                    && let Some(kad) = self.swarm.behaviour_mut().private_dht()
                    && let Some(mut query) = kad.query_mut(&id)
                {
                    query.finish();
                }
                self.on_providers(found);
            }
            kad::Event::OutboundQueryProgressed {
                result: kad::QueryResult::GetClosestPeers(result),
                step,
                ..
            } => {
                let (key, peers) = match result {
                    Ok(found) => (found.key, found.peers),
                    Err(kad::GetClosestPeersError::Timeout { key, peers }) => (key, peers),
                };
                for info in peers {
                    if self.looked_up(&info.peer_id) {
                        if !self.links.is_member(&info.peer_id) {
                            self.redial
                                .heard_of(info.peer_id, &info.addrs, Instant::now());
                        }
                        self.dial_member(info.peer_id, info.addrs, false, "the DHT found it");
                    }
                }
                // A lookup that ended without the peer it was for: what waited for it fails.
                if step.last
                    && let Ok(target) = PeerId::from_bytes(&key)
                    && self.looked_up(&target)
                {
                    self.unreachable(target);
                }
            }
            _ => {}
        }
    }

    /// Rendezvous providers are members: dial those we do not know. Provider records carry no
    /// usable addresses on a LAN, so the private DHT is asked for each one's addresses (members
    /// know each other's from identify) and the answer is dialled in [`Node::on_kad`].
    pub(super) fn on_providers(&mut self, found: kad::GetProvidersOk) {
        let kad::GetProvidersOk::FoundProviders { providers, .. } = found else {
            return;
        };
        use rand::seq::IteratorRandom as _;
        let local = *self.swarm.local_peer_id();
        let now = Instant::now();
        let admitted = self.member_links();
        let mut wanted = self.links.wanted(admitted, now);
        // Members of this cluster are not dialled for being providers, but for one per lookup
        // round, drawn at random: until their leases expire here, the members on the other side
        // of a healed partition are still listed as members, and may have formed a cluster
        // apart, which this node learns of only by a connection to one of them. A node that
        // wants members anyway probes with those it dials. (Each answer of a walk, this node's
        // own store's included, is an event of its own: one probe each made a round of two
        // walks dial about four members, each costing both ends some 10 kB.)
        let mut probe = providers
            .iter()
            .filter(|_| wanted == 0 && self.probe_due)
            .filter(|p| **p != local && self.links.is_member(p) && !self.peers.is_connected(p))
            .copied()
            .choose(&mut rand::thread_rng());
        for peer in providers {
            if peer == local || self.peers.is_connected(&peer) {
                continue;
            }
            if !self.links.dial_heard(&peer, false, &mut wanted, now) {
                if probe == Some(peer) {
                    probe = None;
                    let addrs = self.links.addrs(&peer);
                    self.probe_due =
                        !self.dial_member(peer, addrs, false, "a provider, as a probe");
                }
                continue;
            }
            let known = self.links.addrs(&peer);
            if self.links.is_member(&peer) && !known.is_empty() {
                // A member met before, wanted to top up this node's connections: where it was
                // last known to listen, without a lookup.
                if self.dial_member(peer, known, false, "a provider met before") {
                    self.probe_due = false;
                } else {
                    self.links.not_dialled(&peer, &mut wanted);
                }
                continue;
            }
            if !self.redial.is_wanted(&peer) && !self.address_lookups.contains(&peer) {
                // Someone new: look again soon, since there may be more.
                self.lookups.found(Instant::now());
            }
            self.look_up(peer);
            if self.dial_member(peer, Vec::new(), false, "a provider") {
                // A member dialled to make up the node's connections serves as the probe.
                if self.links.is_member(&peer) {
                    self.probe_due = false;
                }
            } else {
                self.links.not_dialled(&peer, &mut wanted);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::p2p::redial::{MAX_ADDRS, MAX_PEER_RECORDS};

    #[test]
    fn a_peer_list_is_taken_up_to_its_caps_and_undecodable_records_are_skipped() {
        let addr: Multiaddr = "/ip4/192.0.2.1/udp/4001/quic-v1".parse().unwrap();
        let record = |peer_id: Vec<u8>| PeerRecord {
            peer_id,
            addrs: vec![addr.to_vec(); MAX_ADDRS * 2],
            hostname: "m".into(),
            relay: false,
        };
        let mut peers = vec![record(b"not a peer id".to_vec())];
        peers.extend((0..MAX_PEER_RECORDS * 2).map(|_| record(PeerId::random().to_bytes())));
        let taken = records_of(PeerList { peers });
        // The cap counts records as sent, the undecodable first one included.
        assert_eq!(taken.len(), MAX_PEER_RECORDS - 1);
        assert!(taken.iter().all(|(_, addrs)| addrs.len() == MAX_ADDRS));
    }
}
