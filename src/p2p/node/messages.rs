//! The payload protocols of admitted peers: requests to a [`Service`] (raft, data-plane
//! handshakes) handed to it and answered, at most [`MAX_INFLIGHT_PER_PEER`] of one peer at a
//! time so no member's flood crowds out the others, and sealed gossip checked and delivered. A
//! small request of a peer whose admission is under way waits for it ([`MAX_PARKED`]).

use super::*;

impl Node {
    /// The request-response behaviour of `service`.
    pub(super) fn opaque(
        &mut self,
        service: Service,
    ) -> &mut request_response::Behaviour<OpaqueCodec> {
        match service {
            Service::Raft => &mut self.swarm.behaviour_mut().raft,
            Service::Dataplane => &mut self.swarm.behaviour_mut().dataplane,
        }
    }

    pub(super) fn on_opaque(
        &mut self,
        service: Service,
        event: request_response::Event<Opaque, Opaque>,
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
                if !self.admission.is_admitted(&peer) {
                    self.park(service, peer, request, channel);
                    return;
                }
                self.take_request(service, peer, request, channel);
            }
            Event::Message {
                peer,
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                self.links.used(peer, Instant::now());
                if let Some((_, reply)) = self.pending.remove(&(service, request_id)) {
                    let _ = reply.send(Ok(response.payload));
                }
            }
            Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some((_, reply)) = self.pending.remove(&(service, request_id)) {
                    let _ = reply.send(Err(P2pError::Request {
                        peer,
                        reason: error.to_string(),
                    }));
                }
            }
            _ => {}
        }
    }

    /// A request of a peer whose admission is under way waits for it, a few per peer: a peer
    /// that dialled this node for a request sends it once it has admitted this node, which
    /// may be a moment before this node admits it. Any other is refused (dropping the channel
    /// closes the stream: the peer gets no answer).
    fn park(&mut self, service: Service, peer: PeerId, request: Opaque, channel: OpaqueChannel) {
        let parked_in_all: usize = self.parked.values().map(Vec::len).sum();
        if self.admission.pending_nonce(&peer).is_some()
            && request.payload.len() <= MAX_PARKED_BYTES
            && parked_in_all < MAX_PARKED
        {
            let parked = self.parked.entry(peer).or_default();
            if parked.len() < MAX_PARKED_PER_PEER {
                parked.push((service, request, channel));
                return;
            }
        }
        self.metrics.refused_requests.inc();
    }

    /// `peer` was admitted: the requests it sent meanwhile are taken.
    pub(super) fn take_parked(&mut self, peer: PeerId) {
        for (service, request, channel) in self.parked.remove(&peer).unwrap_or_default() {
            self.take_request(service, peer, request, channel);
        }
    }

    /// Hands a request of an admitted peer to its service, unless the peer or all peers have
    /// too many in flight.
    fn take_request(
        &mut self,
        service: Service,
        peer: PeerId,
        request: Opaque,
        channel: OpaqueChannel,
    ) {
        self.links.used(peer, Instant::now());
        let busy = self.inflight.get(&peer).copied().unwrap_or(0);
        if busy >= MAX_INFLIGHT_PER_PEER || self.answers.len() >= MAX_INFLIGHT {
            self.metrics.busy_requests.inc();
            tracing::debug!(%peer, ?service, busy, "too many requests in flight");
            return;
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        let inbound = InboundRpc {
            peer,
            behind: self.behind(&peer),
            payload: request.payload,
            reply,
        };
        if self.inboxes[service.slot()].try_send(inbound).is_err() {
            tracing::warn!(%peer, ?service, "inbox full or closed; dropping a request");
            return;
        }
        *self.inflight.entry(peer).or_default() += 1;
        self.answers.push(Box::pin(async move {
            (service, peer, answer.await.ok(), channel)
        }));
    }

    /// An inbound request of `peer` was answered or dropped.
    pub(super) fn finished(&mut self, peer: PeerId) {
        if let std::collections::hash_map::Entry::Occupied(mut count) = self.inflight.entry(peer) {
            *count.get_mut() -= 1;
            if *count.get() == 0 {
                count.remove();
            }
        }
    }

    pub(super) fn on_gossip(&mut self, event: gossipsub::Event) {
        self.metrics.libp2p.record(&event);
        let gossipsub::Event::Message {
            propagation_source,
            message_id,
            message,
        } = event
        else {
            return;
        };
        let opened = message
            .source
            .filter(|_| self.admission.is_admitted(&propagation_source))
            .map(|author| {
                let held = self.keyring.held();
                let accepted = held.accepted(crate::clock::unix_now());
                let data = accepted.into_iter().find_map(|generation| {
                    gossip::open(
                        &generation.keys.ledger_seal,
                        &self.protocols.gossip_topic,
                        &author,
                        &message.data,
                    )
                    .ok()
                });
                GossipMessage { author, data }
            });
        let acceptance = match opened {
            Some(message) => {
                let acceptance = if message.data.is_some() {
                    gossipsub::MessageAcceptance::Accept
                } else {
                    // Not forwarded: this node cannot tell a newer token's message from junk.
                    gossipsub::MessageAcceptance::Ignore
                };
                let _ = self.gossip_tx.send(message);
                acceptance
            }
            None => gossipsub::MessageAcceptance::Reject,
        };
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&message_id, &propagation_source, acceptance);
    }
}
