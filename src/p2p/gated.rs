//! A behaviour wrapper that serves a protocol only to admitted peers: until a peer passes
//! admission, each stream it opens for the wrapped behaviour's protocol is refused at
//! negotiation, so the behaviour never answers it. The private Kademlia is wrapped so: its
//! `FIND_NODE` answers list admitted members and their addresses, which an outsider must not
//! learn in the seconds its admission takes to fail. The wrapped behaviour's own outbound
//! streams are not gated (it opens them only to peers it was given).
//!
//! The gate is read each time a peer opens a stream, from the admitted set the swarm task
//! keeps, so a peer admitted later is served from its next stream on, on the same connection.
//!
//! Nor does the wrapped behaviour dial a live member of this node's cluster: each such dial it
//! asks for fails at once (`Aborted`, which Kademlia takes as a peer to skip, keeping its
//! addresses). A node keeps connections to a few members ([`super::links`]), and a Kademlia
//! walk dials whoever its table lists: each dialled member refuses the walk's streams until it
//! has admitted the dialler, so every walk reopened connections that answered nothing, and a
//! table of fewer than 20 members started a walk of all of them each time a member came back
//! into it. Anyone else is dialled as before, and so is a member whose addresses the swarm task
//! is looking up: the walk reaches it by the addresses the members that know it give.
//!
//! Nor does it add circuits to a dial that brings a direct address of its own ([`offer`]):
//! raced against the direct path, each opened a connection to its relay.
//!
//! And its answers list at most [`CLOSER_MEMBERS`] members closer to the key ([`Trim`]), where
//! libp2p-kad lists 20, each with every address it holds: answers were most of an idle mesh's
//! bytes in a lookup round, most likely filled by those lists (not decoded).

use std::task::{Context, Poll};

use either::Either;
use libp2p::PeerId;
use libp2p::core::transport::PortUse;
use libp2p::core::upgrade::DeniedUpgrade;
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::kad;
use libp2p::swarm::handler::{
    ConnectionEvent, ConnectionHandler, ConnectionHandlerEvent, FullyNegotiatedInbound,
    ListenUpgradeError, SubstreamProtocol,
};
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, DialError, DialFailure, FromSwarm, NetworkBehaviour, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm,
};

use super::behaviour::{AdmittedSet, MemberSet};
use super::peers::is_relayed;

/// `inner`, serving inbound streams only to admitted peers.
pub struct Gated<B> {
    inner: B,
    admitted: AdmittedSet,
    members: MemberSet,
}

impl<B> Gated<B> {
    pub fn new(inner: B, admitted: AdmittedSet, members: MemberSet) -> Self {
        Gated {
            inner,
            admitted,
            members,
        }
    }

    /// Whether a dial the wrapped behaviour asks for is refused: one of a live member.
    fn refuses(&self, peer: Option<PeerId>) -> bool {
        peer.is_some_and(|peer| self.members.read().is_ok_and(|m| m.contains(&peer)))
    }

    pub fn inner_mut(&mut self) -> &mut B {
        &mut self.inner
    }

    fn handler<H>(&self, inner: H, peer: PeerId) -> GatedHandler<H> {
        GatedHandler {
            inner,
            peer,
            admitted: self.admitted.clone(),
        }
    }
}

/// The most members closer to a key that an answer of this node lists, closest first.
/// libp2p-kad 0.49 lists `K_VALUE` (20) from the routing table, whatever the replication
/// factor, each with every address it holds: in a mesh of 20 an answer came to about 9.7 kB
/// (most likely these lists; not decoded), and a node near a rendezvous key answers every
/// member that looks it up. A walk needs only the few closest to go on: a providers walk asks
/// for 8 results (the replication factor); a walk for a member's addresses asks for 20 and
/// goes on hearing of 8 per answer, and the member is the closest there is to its own key,
/// first in any answer of a node that knows it.
pub const CLOSER_MEMBERS: usize = 8;

/// A message of the wrapped behaviour to one of its connections, cut before it is sent.
pub trait Trim {
    fn trim(&mut self);
}

/// The private Kademlia's answers list at most [`CLOSER_MEMBERS`] closer members.
impl Trim for THandlerInEvent<kad::Behaviour<kad::store::MemoryStore>> {
    fn trim(&mut self) {
        match self {
            Self::FindNodeRes { closer_peers, .. }
            | Self::GetProvidersRes { closer_peers, .. }
            | Self::GetRecordRes { closer_peers, .. } => closer_peers.truncate(CLOSER_MEMBERS),
            _ => {}
        }
    }
}

impl<B: NetworkBehaviour> NetworkBehaviour for Gated<B>
where
    THandlerInEvent<B>: Trim,
{
    type ConnectionHandler = GatedHandler<THandler<B>>;
    type ToSwarm = B::ToSwarm;

    fn handle_pending_inbound_connection(
        &mut self,
        id: ConnectionId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.inner
            .handle_pending_inbound_connection(id, local, remote)
    }

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let inner = self
            .inner
            .handle_established_inbound_connection(id, peer, local, remote)?;
        Ok(self.handler(inner, peer))
    }

    fn handle_pending_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: Option<PeerId>,
        addresses: &[Multiaddr],
        role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        let offered = self
            .inner
            .handle_pending_outbound_connection(id, peer, addresses, role)?;
        Ok(offer(addresses, offered))
    }

    fn handle_established_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        address: &Multiaddr,
        role: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let inner = self
            .inner
            .handle_established_outbound_connection(id, peer, address, role, port_use)?;
        Ok(self.handler(inner, peer))
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        self.inner.on_swarm_event(event);
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        self.inner.on_connection_handler_event(peer, id, event);
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        loop {
            match self.inner.poll(cx) {
                Poll::Ready(ToSwarm::Dial { opts }) if self.refuses(opts.get_peer_id()) => {
                    let error = DialError::Aborted;
                    self.inner
                        .on_swarm_event(FromSwarm::DialFailure(DialFailure {
                            peer_id: opts.get_peer_id(),
                            error: &error,
                            connection_id: opts.connection_id(),
                        }));
                }
                Poll::Ready(ToSwarm::NotifyHandler {
                    peer_id,
                    handler,
                    mut event,
                }) => {
                    event.trim();
                    return Poll::Ready(ToSwarm::NotifyHandler {
                        peer_id,
                        handler,
                        event,
                    });
                }
                other => return other,
            }
        }
    }
}

/// What the DHT adds to a dial that brings `dialled` addresses of its own: when one of them is
/// direct (the relay client's dial of a relay, this node's dial of a member at the addresses it
/// was last known at), the DHT's direct addresses only, not its circuits. libp2p tries up to
/// eight addresses at once: each circuit among them opened a connection to its relay, whose
/// own dial was given that relay's circuits in turn, so one dial of a member opened connections
/// to six or more (each a handshake, an admission and an identify, then kept for the idle
/// timeout). A dial with no direct address of its own (a lookup's walk, which brings none) is
/// offered all the DHT knows, circuits included: the private addresses of a member behind a
/// NAT count as direct, and only its circuits reach it from another site. Answers to other
/// members list circuits as before.
fn offer(dialled: &[Multiaddr], mut offered: Vec<Multiaddr>) -> Vec<Multiaddr> {
    if dialled.iter().any(|a| !is_relayed(a)) {
        offered.retain(|a| !is_relayed(a));
    }
    offered
}

/// The wrapped handler of one connection: inbound streams go to `inner` only while `peer` is
/// admitted.
pub struct GatedHandler<H> {
    inner: H,
    peer: PeerId,
    admitted: AdmittedSet,
}

impl<H> GatedHandler<H> {
    fn is_admitted(&self) -> bool {
        self.admitted
            .read()
            .map(|set| set.contains(&self.peer))
            .unwrap_or(false)
    }
}

type Inbound<H> = Either<
    libp2p::swarm::handler::SendWrapper<<H as ConnectionHandler>::InboundProtocol>,
    libp2p::swarm::handler::SendWrapper<DeniedUpgrade>,
>;

impl<H: ConnectionHandler> ConnectionHandler for GatedHandler<H> {
    type FromBehaviour = H::FromBehaviour;
    type ToBehaviour = H::ToBehaviour;
    type InboundProtocol = Inbound<H>;
    type OutboundProtocol = H::OutboundProtocol;
    type InboundOpenInfo = Either<H::InboundOpenInfo, ()>;
    type OutboundOpenInfo = H::OutboundOpenInfo;

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol, Self::InboundOpenInfo> {
        use libp2p::swarm::handler::SendWrapper;
        if self.is_admitted() {
            self.inner
                .listen_protocol()
                .map_upgrade(|upgrade| Either::Left(SendWrapper(upgrade)))
                .map_info(Either::Left)
        } else {
            SubstreamProtocol::new(Either::Right(SendWrapper(DeniedUpgrade)), Either::Right(()))
        }
    }

    fn on_behaviour_event(&mut self, event: Self::FromBehaviour) {
        self.inner.on_behaviour_event(event);
    }

    fn connection_keep_alive(&self) -> bool {
        self.inner.connection_keep_alive()
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<
        ConnectionHandlerEvent<Self::OutboundProtocol, Self::OutboundOpenInfo, Self::ToBehaviour>,
    > {
        self.inner.poll(cx)
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Option<Self::ToBehaviour>> {
        self.inner.poll_close(cx)
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<
            Self::InboundProtocol,
            Self::OutboundProtocol,
            Self::InboundOpenInfo,
            Self::OutboundOpenInfo,
        >,
    ) {
        let event = match event {
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound { protocol, info }) => {
                match (protocol, info) {
                    (futures::future::Either::Left(protocol), Either::Left(info)) => {
                        ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
                            protocol,
                            info,
                        })
                    }
                    // A refused stream never negotiates.
                    _ => return,
                }
            }
            ConnectionEvent::ListenUpgradeError(ListenUpgradeError { info, error }) => {
                match (info, error) {
                    (Either::Left(info), Either::Left(error)) => {
                        ConnectionEvent::ListenUpgradeError(ListenUpgradeError { info, error })
                    }
                    // A stream refused while the peer was not admitted: nothing to tell.
                    _ => return,
                }
            }
            ConnectionEvent::FullyNegotiatedOutbound(event) => {
                ConnectionEvent::FullyNegotiatedOutbound(event)
            }
            ConnectionEvent::DialUpgradeError(event) => ConnectionEvent::DialUpgradeError(event),
            ConnectionEvent::AddressChange(event) => ConnectionEvent::AddressChange(event),
            ConnectionEvent::LocalProtocolsChange(change) => {
                ConnectionEvent::LocalProtocolsChange(change)
            }
            ConnectionEvent::RemoteProtocolsChange(change) => {
                ConnectionEvent::RemoteProtocolsChange(change)
            }
            _ => return,
        };
        self.inner.on_connection_event(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> Multiaddr {
        text.parse().expect("valid multiaddr")
    }

    const RELAY: &str = "12D3KooWRsKLYnYUZqa7if2ng44VTAnMEuoJBTV6QAjv3YvF4Fgq";

    #[test]
    fn a_dial_with_a_direct_address_of_its_own_is_offered_no_circuit() {
        let circuit = addr(&format!("/ip4/10.0.0.5/tcp/4001/p2p/{RELAY}/p2p-circuit"));
        let tcp = addr("/ip4/10.0.0.7/tcp/4001");
        let quic = addr("/ip4/10.0.0.7/udp/4001/quic-v1");
        let offered = vec![circuit.clone(), tcp.clone(), quic.clone()];
        assert_eq!(
            offer(std::slice::from_ref(&tcp), offered.clone()),
            vec![tcp.clone(), quic]
        );
        // Only circuits offered, beside a direct address: nothing added.
        assert!(offer(std::slice::from_ref(&tcp), vec![circuit]).is_empty());
    }

    #[test]
    fn a_dial_with_no_direct_address_of_its_own_is_offered_every_address() {
        let circuit = addr(&format!("/ip4/10.0.0.5/tcp/4001/p2p/{RELAY}/p2p-circuit"));
        let private = addr("/ip4/192.168.1.7/tcp/4001");
        let offered = vec![private, circuit.clone()];
        // A lookup's walk brings no address; a dial may bring circuits only.
        assert_eq!(offer(&[], offered.clone()), offered);
        assert_eq!(offer(&[circuit], offered.clone()), offered);
    }

    /// A libp2p node on loopback TCP with `behaviour`.
    fn swarm<B: NetworkBehaviour>(
        behaviour: impl FnOnce(&libp2p::identity::Keypair) -> B,
    ) -> libp2p::Swarm<B> {
        libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(
                libp2p::tcp::Config::default(),
                libp2p::noise::Config::new,
                libp2p::yamux::Config::default,
            )
            .expect("tcp transport")
            .with_behaviour(behaviour)
            .expect("behaviour")
            .build()
    }

    /// A member that asks a node for the members closest to a key hears of the 8 closest, not
    /// of the 12 the node's table holds (libp2p-kad lists up to 20). The client's walk dials
    /// each member it hears of (their addresses are closed loopback ports, so each dial fails
    /// at once), which tells what the answer listed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_answer_lists_at_most_eight_closer_members() {
        use futures::StreamExt as _;
        use libp2p::swarm::SwarmEvent;

        let protocol = libp2p::StreamProtocol::new("/weft-test/kad/1.0.0");
        let admitted = AdmittedSet::default();
        let mut server = swarm(|key| {
            let local = key.public().to_peer_id();
            let mut config = kad::Config::new(protocol.clone());
            config.set_kbucket_inserts(kad::BucketInserts::Manual);
            let mut kad =
                kad::Behaviour::with_config(local, kad::store::MemoryStore::new(local), config);
            kad.set_mode(Some(kad::Mode::Server));
            Gated::new(kad, admitted.clone(), MemberSet::default())
        });
        let table: Vec<PeerId> = (0..12).map(|_| PeerId::random()).collect();
        for peer in &table {
            server
                .behaviour_mut()
                .inner_mut()
                .add_address(peer, addr("/ip4/127.0.0.1/tcp/1"));
        }
        server
            .listen_on(addr("/ip4/127.0.0.1/tcp/0"))
            .expect("listen");
        let listening = loop {
            if let SwarmEvent::NewListenAddr { address, .. } = server.select_next_some().await {
                break address;
            }
        };
        let server_id = *server.local_peer_id();
        let serving = tokio::spawn(async move {
            loop {
                server.select_next_some().await;
            }
        });

        let mut client = swarm(|key| {
            let local = key.public().to_peer_id();
            kad::Behaviour::with_config(
                local,
                kad::store::MemoryStore::new(local),
                kad::Config::new(protocol.clone()),
            )
        });
        admitted
            .write()
            .expect("admitted set")
            .insert(*client.local_peer_id());
        client.behaviour_mut().add_address(&server_id, listening);
        let target = PeerId::random();
        client.behaviour_mut().get_closest_peers(target);
        let mut heard = std::collections::BTreeSet::new();
        tokio::time::timeout(std::time::Duration::from_secs(30), async {
            loop {
                match client.select_next_some().await {
                    SwarmEvent::Dialing {
                        peer_id: Some(peer),
                        ..
                    } if peer != server_id => {
                        heard.insert(peer);
                    }
                    SwarmEvent::Behaviour(kad::Event::OutboundQueryProgressed {
                        result: kad::QueryResult::GetClosestPeers(_),
                        step,
                        ..
                    }) if step.last => break,
                    _ => {}
                }
            }
        })
        .await
        .expect("the walk ends");
        serving.abort();
        let mut closest = table.clone();
        let key = kad::KBucketKey::from(target);
        closest.sort_by_key(|peer| kad::KBucketKey::from(*peer).distance(&key));
        closest.truncate(CLOSER_MEMBERS);
        let closest: std::collections::BTreeSet<PeerId> = closest.into_iter().collect();
        assert_eq!(heard, closest, "heard of {} of 12", heard.len());
    }
}
