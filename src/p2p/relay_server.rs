//! The circuit relay server, kept from messaging the connections it gave no handler of its own.
//!
//! libp2p-relay 0.22's server serves nothing over a relayed connection: it gives such a
//! connection a dummy handler, which takes no message. Yet whenever the relay protocol's
//! advertisement changes (this node starts or stops serving, [`super::relaying`], or a direct
//! external address is confirmed or expires while it serves), it sends the new status to every
//! connection it knows, relayed ones included. The dummy's side of libp2p-swarm's `Either`
//! handler then reaches `unreachable!()` in that connection's task: a member whose relay
//! service changed while another member reached it through a circuit panicked, and the
//! circuit's connection was lost (`tests/netns_partial.rs`, where A reaches the leader B only
//! through R's circuit and B starts serving once AutoNAT finds it public).
//!
//! So this wrapper notes which connections are relayed, by the same rule as the server (the
//! connection's address has a circuit in it), and drops every message for them: none could be
//! handled.

use std::collections::HashSet;
use std::task::{Context, Poll};

use libp2p::PeerId;
use libp2p::core::transport::PortUse;
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::relay;
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, NotifyHandler, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm,
};

/// libp2p's relay server, with no message sent to a relayed connection.
pub struct RelayServer {
    inner: relay::Behaviour,
    /// The open connections whose address goes through a circuit.
    relayed: HashSet<ConnectionId>,
}

impl RelayServer {
    pub fn new(inner: relay::Behaviour) -> Self {
        RelayServer {
            inner,
            relayed: HashSet::new(),
        }
    }

    /// Sets the relay protocol's advertisement ([`relay::Behaviour::set_status`]).
    pub fn set_status(&mut self, status: Option<relay::Status>) {
        self.inner.set_status(status);
    }
}

/// The server decides nothing about pending connections (libp2p's defaults), so neither does
/// the wrapper; the rest is handed to it.
impl NetworkBehaviour for RelayServer {
    type ConnectionHandler = THandler<relay::Behaviour>;
    type ToSwarm = relay::Event;

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner
            .handle_established_inbound_connection(id, peer, local, remote)
    }

    fn handle_established_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        address: &Multiaddr,
        role: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner
            .handle_established_outbound_connection(id, peer, address, role, port_use)
    }

    /// A connection is noted when the swarm says it is established, as the server notes it
    /// (a connection another behaviour then refuses is never established, and never noted),
    /// and forgotten when it closes.
    fn on_swarm_event(&mut self, event: FromSwarm) {
        match &event {
            FromSwarm::ConnectionEstablished(established) if established.endpoint.is_relayed() => {
                self.relayed.insert(established.connection_id);
            }
            FromSwarm::ConnectionClosed(closed) => {
                self.relayed.remove(&closed.connection_id);
            }
            _ => {}
        }
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
                Poll::Ready(ToSwarm::NotifyHandler {
                    handler: NotifyHandler::One(id),
                    ..
                }) if self.relayed.contains(&id) => {}
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use libp2p::core::ConnectedPoint;
    use libp2p::swarm::ConnectionClosed;
    use libp2p::swarm::behaviour::ConnectionEstablished;

    use super::*;

    /// The connections the server has a message for now, in order.
    fn messages(server: &mut RelayServer) -> Vec<ConnectionId> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut sent = Vec::new();
        while let Poll::Ready(event) = server.poll(&mut cx) {
            if let ToSwarm::NotifyHandler {
                handler: NotifyHandler::One(id),
                ..
            } = event
            {
                sent.push(id);
            }
        }
        sent.sort();
        sent
    }

    #[test]
    fn a_change_of_status_goes_to_direct_connections_only() {
        let local = libp2p::identity::Keypair::generate_ed25519();
        let inner = relay::Behaviour::new(local.public().to_peer_id(), relay::Config::default());
        let mut server = RelayServer::new(inner);
        let peer = PeerId::random();
        let relay_peer = PeerId::random();
        let direct: Multiaddr = "/ip4/10.0.0.2/tcp/4001".parse().unwrap();
        let circuit: Multiaddr = format!("/ip4/10.0.0.3/tcp/4001/p2p/{relay_peer}/p2p-circuit")
            .parse()
            .unwrap();
        let remote: Multiaddr = "/ip4/10.0.0.9/tcp/50000".parse().unwrap();
        let (by_circuit, outbound_circuit, straight) = (
            ConnectionId::new_unchecked(1),
            ConnectionId::new_unchecked(2),
            ConnectionId::new_unchecked(3),
        );

        // A connection that came in through a circuit, one dialled through a circuit, and a
        // direct one, each established as the swarm does it.
        let endpoints = [
            (
                by_circuit,
                ConnectedPoint::Listener {
                    local_addr: circuit.clone(),
                    send_back_addr: remote.clone(),
                },
            ),
            (
                outbound_circuit,
                ConnectedPoint::Dialer {
                    address: circuit.clone(),
                    role_override: Endpoint::Dialer,
                    port_use: PortUse::Reuse,
                },
            ),
            (
                straight,
                ConnectedPoint::Listener {
                    local_addr: direct.clone(),
                    send_back_addr: remote.clone(),
                },
            ),
        ];
        for (id, endpoint) in &endpoints {
            let handled = match endpoint {
                ConnectedPoint::Listener {
                    local_addr,
                    send_back_addr,
                } => server.handle_established_inbound_connection(
                    *id,
                    peer,
                    local_addr,
                    send_back_addr,
                ),
                ConnectedPoint::Dialer { address, .. } => server
                    .handle_established_outbound_connection(
                        *id,
                        peer,
                        address,
                        Endpoint::Dialer,
                        PortUse::Reuse,
                    ),
            };
            assert!(handled.is_ok());
            server.on_swarm_event(FromSwarm::ConnectionEstablished(ConnectionEstablished {
                peer_id: peer,
                connection_id: *id,
                endpoint,
                failed_addresses: &[],
                other_established: 0,
            }));
        }
        assert_eq!(messages(&mut server), vec![]);

        // The status changes (the node starts serving): only the direct connection hears it.
        // libp2p-relay alone sends it to all three, and the relayed ones' handlers panic.
        server.set_status(Some(relay::Status::Enable));
        assert_eq!(messages(&mut server), vec![straight]);

        // A closed relayed connection is forgotten; the others are not.
        let (_, endpoint) = &endpoints[0];
        server.on_swarm_event(FromSwarm::ConnectionClosed(ConnectionClosed {
            peer_id: peer,
            connection_id: by_circuit,
            endpoint,
            cause: None,
            remaining_established: 2,
        }));
        assert_eq!(server.relayed, HashSet::from([outbound_circuit]));
        server.set_status(Some(relay::Status::Disable));
        assert_eq!(messages(&mut server), vec![straight]);
    }
}
