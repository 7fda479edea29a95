//! Admission as the swarm task runs it: challenges, proofs, and what admitting or refusing
//! a peer changes elsewhere (gossip blacklist, routing, relay ACL, block list, metrics).

use super::*;

impl Node {
    /// The admission keys of the tokens this node holds now, the current one first.
    fn admission_keys(&self) -> Vec<crate::token::DerivedKey> {
        self.keyring
            .held()
            .accepted(crate::clock::unix_now())
            .into_iter()
            .map(|generation| generation.keys.admission.clone())
            .collect()
    }

    /// Challenges again the peers that proved only the token before the current one (see
    /// [`crate::p2p::admission::RECHECK`]).
    pub(super) fn recheck(&mut self, now: Instant) {
        let Some(current) = self.admission_keys().into_iter().next() else {
            return;
        };
        for (peer, nonce) in self.admission.rechecks(now, &current) {
            self.challenge(peer, nonce.to_vec());
        }
    }

    /// Whether admitted `peer` proved only a token older than this node's current one.
    pub(super) fn behind(&self, peer: &PeerId) -> bool {
        let held = self.keyring.held();
        self.admission.behind(peer, &held.current.keys.admission)
    }

    /// Publishes the peers behind for [`crate::p2p::P2pHandle::is_behind`], when they changed.
    pub(super) fn publish_behind(&self) {
        let held = self.keyring.held();
        let behind = self.admission.behind_peers(&held.current.keys.admission);
        if *self.shared.behind.load_full() != behind {
            self.shared.behind.store(Arc::new(behind));
        }
    }

    pub(super) fn challenge(&mut self, peer: PeerId, nonce: Vec<u8>) {
        self.swarm
            .behaviour_mut()
            .auth
            .send_request(&peer, AuthChallenge { nonce });
    }

    pub(super) fn on_auth(&mut self, event: request_response::Event<AuthChallenge, AuthProof>) {
        use request_response::{Event, Message, OutboundFailure};
        match event {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => match self.admission.answer(
                peer,
                &request.nonce,
                Instant::now(),
                &self.admission_keys(),
            ) {
                Ok((answer, challenge_back)) => {
                    if self.admission.is_admitted(&peer) {
                        self.admitted_again(peer);
                    }
                    let proof = answer.to_proto();
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .auth
                        .send_response(channel, proof);
                    if let Some(nonce) = challenge_back {
                        self.challenge(peer, nonce.to_vec());
                    }
                }
                Err(rejection) => self.reject(peer, rejection),
            },
            Event::Message {
                peer,
                message: Message::Response { response, .. },
                ..
            } => match self.admission.on_proof(
                peer,
                &response,
                &self.admission_keys(),
                Instant::now(),
            ) {
                Verdict::Admitted { hostname } => {
                    self.on_admitted(peer, hostname);
                    self.publish_behind();
                }
                Verdict::Reproved => {
                    tracing::debug!(%peer, "answered a re-challenge");
                    self.publish_behind();
                }
                Verdict::Rejected(rejection) => self.reject(peer, rejection),
            },
            Event::OutboundFailure { peer, error, .. } => match error {
                OutboundFailure::UnsupportedProtocols => self.reject(peer, Rejection::Unsupported),
                OutboundFailure::Timeout => self.reject(peer, Rejection::Timeout),
                other => {
                    // Lost with its connection (two peers dialling each other at once close
                    // one): ask again on the connection that remains; the deadline stands.
                    tracing::debug!(%peer, error = %other, "admission request failed; retrying");
                    if self.peers.is_connected(&peer)
                        && let Some(nonce) = self.admission.pending_nonce(&peer)
                    {
                        self.challenge(peer, nonce.to_vec());
                    }
                }
            },
            _ => {}
        }
    }

    /// `peer`, admitted, challenged this node afresh: admitted anew
    /// ([`crate::p2p::peers::PeerTable::admitted_again`]).
    fn admitted_again(&mut self, peer: PeerId) {
        tracing::debug!(%peer, "an admitted peer challenged this node again: admitted anew");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(crate::clock::unix_now());
        if self.peers.admitted_again(peer, now) {
            self.publish_peers();
        }
    }

    pub(super) fn on_admitted(&mut self, peer: PeerId, hostname: String) {
        tracing::info!(%peer, %hostname, "admitted");
        self.admitted_after_all(peer);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(crate::clock::unix_now());
        self.peers.admitted(peer, hostname, now);
        self.set_admitted(&peer, true);
        let behaviour = self.swarm.behaviour_mut();
        behaviour.gossipsub.remove_blacklisted_peer(&peer);
        behaviour.autonat.add_server(peer, None);
        self.add_to_routing(peer);
        let first_meeting = !self.links.has_met(&peer);
        let addrs = self.dialable_listen_addrs(&peer);
        self.links.met(peer, &addrs);
        self.links.used(peer, Instant::now());
        self.send_waiting(peer);
        self.take_parked(peer);
        if self.peers.admitted_peers().count() == 1 {
            // The DHT was empty until now: provide and look up without waiting for the timer.
            self.provided = None;
            self.lookups.reset(Instant::now());
        }
        // A member met before (dialled on demand, or back after its connection idled out) has
        // told this node whom it knows already.
        if self.config.peer_exchange_interval.is_some()
            && (first_meeting || self.member_links() < super::super::links::ENOUGH)
        {
            self.ask_for_peers(peer);
        }
        self.publish_peers();
    }

    /// Refuses `peer`. On evidence against it (see [`Rejection::is_evidence`]) its connections
    /// close and it is blocked for `block_duration`. A missed deadline closes its connections
    /// only: members starting by the hundred, or a node under load, must not lock each other
    /// out; they are redialled with backoff. A late proof for a challenge already given up on
    /// is only counted.
    pub(super) fn reject(&mut self, peer: PeerId, why: Rejection) {
        self.metrics
            .rejections
            .get_or_create(&ReasonLabel {
                reason: why.label().to_string(),
            })
            .inc();
        if why == Rejection::Unsolicited {
            tracing::debug!(%peer, "ignoring a proof: {why}");
            return;
        }
        self.admission.forget(&peer);
        self.set_admitted(&peer, false);
        self.parked.remove(&peer);
        if !why.is_evidence() {
            tracing::info!(%peer, "disconnecting peer: {why}");
            let _ = self.swarm.disconnect_peer_id(peer);
            return;
        }
        tracing::warn!(%peer, reason = %why, "refusing peer: {why}; blocking it for {:?}", self.config.block_duration);
        self.refused(peer);
        self.blocked_until
            .insert(peer, Instant::now() + self.config.block_duration);
        self.swarm.behaviour_mut().blocked.block_peer(peer);
    }

    pub(super) fn set_admitted(&mut self, peer: &PeerId, admitted: bool) {
        if let Ok(mut set) = self.admitted.write() {
            if admitted {
                set.insert(*peer);
            } else {
                set.remove(peer);
            }
            self.metrics.admitted.set(set.len() as i64);
        }
    }
}
