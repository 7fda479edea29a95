//! Inbound connections per remote IP address. The global limits of `connection_limits` let one
//! host take every slot: outsiders need no token to open connections, and a few hundred that
//! never finish their handshake (or reconnect as soon as they are refused) would keep members
//! out. This behaviour refuses an inbound connection while its IP already has
//! [`PerIpLimits::pending`] connections in their handshake or [`PerIpLimits::total`] in all, at
//! the first moment the swarm sees it, before any handshake work. Relayed connections are not
//! counted (their address is the relay's, shared by every peer it serves).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::task::{Context, Poll};

use libp2p::core::Endpoint;
use libp2p::core::transport::PortUse;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{
    ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, ListenFailure, NetworkBehaviour,
    THandler, THandlerInEvent, THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::{Multiaddr, PeerId};

/// The limits, per remote IP address.
#[derive(Debug, Clone, Copy)]
pub struct PerIpLimits {
    /// Inbound connections still in their handshake.
    pub pending: usize,
    /// Inbound connections in all, pending or established.
    pub total: usize,
}

impl PerIpLimits {
    /// The limits for a node that takes `max_connections` in all: an eighth of them from one
    /// address (32 of the default 256, room for a site of members behind one NAT), and a
    /// quarter of that still in their handshake.
    pub fn share_of(max_connections: u32) -> Self {
        let total = (max_connections as usize / 8).max(8);
        PerIpLimits {
            pending: (total / 4).max(4),
            total,
        }
    }
}

/// Why an inbound connection was refused.
#[derive(Debug, thiserror::Error)]
#[error("{ip} already has {count} inbound connections{kind}, the most one address may have")]
pub struct TooManyFromIp {
    ip: IpAddr,
    count: usize,
    kind: &'static str,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    pending: usize,
    total: usize,
}

/// The behaviour: counts inbound connections by IP and refuses those over the limits.
pub struct Behaviour {
    limits: PerIpLimits,
    by_ip: HashMap<IpAddr, Counts>,
    /// Each counted connection's IP, and whether it is still pending.
    connections: HashMap<ConnectionId, (IpAddr, bool)>,
}

impl Behaviour {
    pub fn new(limits: PerIpLimits) -> Self {
        Behaviour {
            limits,
            by_ip: HashMap::new(),
            connections: HashMap::new(),
        }
    }

    /// The counts of `ip`, for tests and logs.
    fn counts(&self, ip: &IpAddr) -> Counts {
        self.by_ip.get(ip).copied().unwrap_or_default()
    }

    fn opened(&mut self, id: ConnectionId, remote: &Multiaddr) -> Result<(), ConnectionDenied> {
        let Some(ip) = counted_ip(remote) else {
            return Ok(());
        };
        let counts = self.counts(&ip);
        let refusal = if counts.pending >= self.limits.pending {
            Some((counts.pending, " in their handshake"))
        } else if counts.total >= self.limits.total {
            Some((counts.total, ""))
        } else {
            None
        };
        if let Some((count, kind)) = refusal {
            return Err(ConnectionDenied::new(TooManyFromIp { ip, count, kind }));
        }
        let entry = self.by_ip.entry(ip).or_default();
        entry.pending += 1;
        entry.total += 1;
        self.connections.insert(id, (ip, true));
        Ok(())
    }

    fn established(&mut self, id: ConnectionId) {
        if let Some((ip, pending)) = self.connections.get_mut(&id)
            && *pending
        {
            *pending = false;
            if let Some(counts) = self.by_ip.get_mut(ip) {
                counts.pending = counts.pending.saturating_sub(1);
            }
        }
    }

    fn closed(&mut self, id: ConnectionId) {
        let Some((ip, pending)) = self.connections.remove(&id) else {
            return;
        };
        if let Some(counts) = self.by_ip.get_mut(&ip) {
            counts.total = counts.total.saturating_sub(1);
            if pending {
                counts.pending = counts.pending.saturating_sub(1);
            }
            if counts.total == 0 {
                self.by_ip.remove(&ip);
            }
        }
    }
}

/// The IP a connection is counted under: its first address component, unless it is relayed.
fn counted_ip(remote: &Multiaddr) -> Option<IpAddr> {
    if remote.iter().any(|p| matches!(p, Protocol::P2pCircuit)) {
        return None;
    }
    match remote.iter().next()? {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(ip.to_canonical()),
        _ => None,
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.opened(connection_id, remote_addr)
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.established(connection_id);
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. })
            | FromSwarm::ListenFailure(ListenFailure { connection_id, .. }) => {
                self.closed(connection_id)
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Infallible, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Behaviour {
        Behaviour::new(PerIpLimits {
            pending: 2,
            total: 3,
        })
    }

    fn addr(text: &str) -> Multiaddr {
        text.parse().unwrap()
    }

    #[test]
    fn one_address_gets_at_most_its_share_and_others_are_unaffected() {
        let mut b = limits();
        let a = addr("/ip4/192.0.2.1/tcp/4001");
        let (c0, c1, c2) = (
            ConnectionId::new_unchecked(1),
            ConnectionId::new_unchecked(2),
            ConnectionId::new_unchecked(3),
        );
        assert!(b.opened(c0, &a).is_ok());
        assert!(b.opened(c1, &a).is_ok());
        let refused = b.opened(c2, &a).unwrap_err();
        assert!(
            format!("{:?}", refused).contains("in their handshake"),
            "{refused:?}"
        );
        // Another address is counted apart.
        assert!(
            b.opened(
                ConnectionId::new_unchecked(9),
                &addr("/ip4/192.0.2.2/tcp/1")
            )
            .is_ok()
        );
        // Established connections free their handshake slot but count in the total.
        b.established(c0);
        b.established(c1);
        assert!(b.opened(c2, &a).is_ok());
        assert!(b.opened(ConnectionId::new_unchecked(4), &a).is_err());
        // Closing one makes room again.
        b.closed(c0);
        assert!(b.opened(ConnectionId::new_unchecked(5), &a).is_ok());
    }

    #[test]
    fn a_refused_handshake_frees_its_slot_and_relayed_connections_are_not_counted() {
        let mut b = limits();
        let a = addr("/ip4/192.0.2.1/tcp/4001");
        let c0 = ConnectionId::new_unchecked(1);
        assert!(b.opened(c0, &a).is_ok());
        b.closed(c0);
        assert_eq!(b.counts(&"192.0.2.1".parse().unwrap()).total, 0);
        assert!(b.by_ip.is_empty());
        let relayed = addr(
            "/ip4/192.0.2.1/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit",
        );
        for n in 0..10 {
            assert!(
                b.opened(ConnectionId::new_unchecked(10 + n), &relayed)
                    .is_ok()
            );
        }
    }

    #[test]
    fn ipv4_mapped_ipv6_counts_as_its_ipv4_address() {
        assert_eq!(
            counted_ip(&addr("/ip6/::ffff:192.0.2.1/tcp/1")),
            Some("192.0.2.1".parse().unwrap())
        );
    }
}
