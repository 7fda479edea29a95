//! A behaviour wrapper that drops a connection handler's event when handing it to the wrapped
//! behaviour panics, instead of letting the panic end the swarm task (and with it the node's
//! control plane).
//!
//! It exists for one known fault of libp2p-relay 0.22's client: when this node gives up a relay
//! slot (`remove_listener`, because the relay stopped serving) while the relay's acceptance of a
//! reservation or of its renewal is on its way from the connection, the behaviour has already
//! forgotten the reservation and panics on the acceptance (`priv_client.rs`, "Relay connection
//! exist"). The panic comes from an `expect` before the behaviour changes any of its state, and
//! giving the slot up has queued a reset of the reservation for the connection's handler and
//! closed the slot's channel, so dropping the acceptance is what the behaviour would have done
//! had it checked. Rust's default panic hook still prints the panic; the warning logged here
//! follows it. Only the relay client is wrapped: a panic anywhere else still ends the task,
//! which the daemon's supervision reports.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::task::{Context, Poll};

use libp2p::PeerId;
use libp2p::core::transport::PortUse;
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};

/// `inner`, whose handler events are dropped when it panics on them.
pub struct Contained<B> {
    inner: B,
    name: &'static str,
}

impl<B> Contained<B> {
    /// Wraps `inner`; `name` says which behaviour in the log.
    pub fn new(inner: B, name: &'static str) -> Self {
        Contained { inner, name }
    }
}

impl<B: NetworkBehaviour> NetworkBehaviour for Contained<B> {
    type ConnectionHandler = THandler<B>;
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
        self.inner
            .handle_established_inbound_connection(id, peer, local, remote)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: Option<PeerId>,
        addresses: &[Multiaddr],
        role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.inner
            .handle_pending_outbound_connection(id, peer, addresses, role)
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

    fn on_swarm_event(&mut self, event: FromSwarm) {
        self.inner.on_swarm_event(event);
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        let inner = &mut self.inner;
        let handed = catch_unwind(AssertUnwindSafe(|| {
            inner.on_connection_handler_event(peer, id, event);
        }));
        if handed.is_err() {
            tracing::warn!(
                behaviour = self.name,
                %peer,
                connection = %id,
                "libp2p panicked on an event of this connection; the event is dropped"
            );
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        self.inner.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use libp2p::core::upgrade::DeniedUpgrade;
    use libp2p::swarm::handler::{
        ConnectionEvent, ConnectionHandler, ConnectionHandlerEvent, SubstreamProtocol,
    };

    use super::*;

    /// A connection handler whose events are `()`, so that a test can make one.
    struct Quiet;

    impl ConnectionHandler for Quiet {
        type FromBehaviour = Infallible;
        type ToBehaviour = ();
        type InboundProtocol = DeniedUpgrade;
        type OutboundProtocol = DeniedUpgrade;
        type InboundOpenInfo = ();
        type OutboundOpenInfo = Infallible;

        fn listen_protocol(&self) -> SubstreamProtocol<DeniedUpgrade, ()> {
            SubstreamProtocol::new(DeniedUpgrade, ())
        }

        fn poll(
            &mut self,
            _: &mut Context<'_>,
        ) -> Poll<ConnectionHandlerEvent<DeniedUpgrade, Infallible, ()>> {
            Poll::Pending
        }

        fn on_behaviour_event(&mut self, event: Infallible) {
            match event {}
        }

        fn on_connection_event(
            &mut self,
            _: ConnectionEvent<DeniedUpgrade, DeniedUpgrade, (), Infallible>,
        ) {
        }
    }

    /// A behaviour that panics on every handler event, as the relay client does on an
    /// acceptance it no longer expects, and counts the swarm events it is given.
    #[derive(Default)]
    struct Panicky {
        swarm_events: usize,
    }

    impl NetworkBehaviour for Panicky {
        type ConnectionHandler = Quiet;
        type ToSwarm = Infallible;

        fn handle_established_inbound_connection(
            &mut self,
            _: ConnectionId,
            _: PeerId,
            _: &Multiaddr,
            _: &Multiaddr,
        ) -> Result<Quiet, ConnectionDenied> {
            Ok(Quiet)
        }

        fn handle_established_outbound_connection(
            &mut self,
            _: ConnectionId,
            _: PeerId,
            _: &Multiaddr,
            _: Endpoint,
            _: PortUse,
        ) -> Result<Quiet, ConnectionDenied> {
            Ok(Quiet)
        }

        fn on_swarm_event(&mut self, _: FromSwarm) {
            self.swarm_events += 1;
        }

        fn on_connection_handler_event(&mut self, _: PeerId, _: ConnectionId, _: ()) {
            panic!("Relay connection exist");
        }

        fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Infallible, Infallible>> {
            Poll::Pending
        }
    }

    #[test]
    fn a_panic_on_a_handler_event_drops_the_event_and_the_behaviour_goes_on() {
        let mut contained = Contained::new(Panicky::default(), "test");
        contained.on_connection_handler_event(PeerId::random(), ConnectionId::new_unchecked(1), ());
        let addr: Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().expect("address");
        contained.on_swarm_event(FromSwarm::ExternalAddrConfirmed(
            libp2p::swarm::behaviour::ExternalAddrConfirmed { addr: &addr },
        ));
        assert_eq!(contained.inner.swarm_events, 1);
    }
}
