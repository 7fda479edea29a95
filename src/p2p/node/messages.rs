//! The payload protocols of admitted peers: raft RPCs handed to the ledger and answered, and
//! sealed gossip checked and delivered.

use super::*;

impl Node {
    pub(super) fn on_raft(&mut self, event: request_response::Event<RaftMessage, RaftMessage>) {
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
                    // Dropping the channel closes the stream: the peer gets no answer.
                    self.metrics.refused_requests.inc();
                    return;
                }
                let (reply, answer) = tokio::sync::oneshot::channel();
                let inbound = InboundRpc {
                    peer,
                    payload: request.payload,
                    reply,
                };
                if self.raft_inbox.try_send(inbound).is_err() {
                    tracing::warn!(%peer, "raft inbox full or closed; dropping a raft request");
                    return;
                }
                self.raft_answers
                    .push(Box::pin(async move { (answer.await.ok(), channel) }));
            }
            Event::Message {
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(reply) = self.raft_pending.remove(&request_id) {
                    let _ = reply.send(Ok(response.payload));
                }
            }
            Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some(reply) = self.raft_pending.remove(&request_id) {
                    let _ = reply.send(Err(P2pError::Request {
                        peer,
                        reason: error.to_string(),
                    }));
                }
            }
            _ => {}
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
            .and_then(|author| {
                gossip::open(
                    &self.keys.ledger_seal,
                    &self.protocols.gossip_topic,
                    &author,
                    &message.data,
                )
                .ok()
                .map(|data| GossipMessage { author, data })
            });
        let acceptance = match opened {
            Some(message) => {
                let _ = self.gossip_tx.send(message);
                gossipsub::MessageAcceptance::Accept
            }
            None => gossipsub::MessageAcceptance::Reject,
        };
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&message_id, &propagation_source, acceptance);
    }
}
