//! A UPnP port mapping of the data port, when the LAN has an Internet Gateway Device: the
//! gateway's external address and the mapped port become one more UDP candidate, so a peer
//! outside the NAT can reach this node directly.
//!
//! The task searches for a gateway (SSDP on the LAN, 3 s), maps the data port (the same external
//! port when free, else one the gateway picks) for [`LEASE`], renews it at half-life asking for
//! the same external port, and removes it on shutdown. Without a gateway it searches again every [`SEARCH_EVERY`].

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use igd_next::PortMappingProtocol;
use igd_next::aio::Gateway;
use igd_next::aio::tokio::{Tokio, search_gateway};
use tokio_util::sync::CancellationToken;

use super::Shared;

/// How long a mapping lasts unless renewed.
const LEASE: Duration = Duration::from_secs(3600);
/// How long to wait before searching again for a gateway.
const SEARCH_EVERY: Duration = Duration::from_secs(300);
/// How long one search listens for answers.
const SEARCH_TIMEOUT: Duration = Duration::from_secs(3);
const DESCRIPTION: &str = "weft data plane";

/// Keeps the data port mapped while a gateway answers; `shared.upnp` holds the external address.
pub(super) async fn run(shared: Arc<Shared>, shutdown: CancellationToken) {
    let port = shared.udp.port();
    let mapped = &shared.upnp;
    // The external port of the current mapping: a renewal asks for the same one.
    let mut external_port = port;
    loop {
        let wait = match map_once(port, external_port).await {
            Ok((gateway, external)) => {
                if mapped.load().as_deref() != Some(&external) {
                    tracing::info!(%external, gateway = %gateway.addr, "UPnP mapped the data port");
                }
                mapped.store(Some(Arc::new(external)));
                external_port = external.port();
                tokio::select! {
                    _ = shutdown.cancelled() => {
                        let _ = gateway.remove_port(PortMappingProtocol::UDP, external.port()).await;
                        mapped.store(None);
                        return;
                    }
                    _ = tokio::time::sleep(LEASE / 2) => continue,
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "no UPnP mapping of the data port");
                mapped.store(None);
                SEARCH_EVERY
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Finds a gateway and maps `port` on it, as external port `wanted` if that is free; returns the
/// gateway and the external address.
async fn map_once(port: u16, wanted: u16) -> Result<(Gateway<Tokio>, SocketAddr), String> {
    let gateway = search_gateway(igd_next::SearchOptions {
        timeout: Some(SEARCH_TIMEOUT),
        ..Default::default()
    })
    .await
    .map_err(|e| format!("gateway search: {e}"))?;
    let local = local_ip_towards(gateway.addr).map_err(|e| format!("local address: {e}"))?;
    let internal = SocketAddr::new(local, port);
    let lease = LEASE.as_secs() as u32;
    let external_port = match gateway
        .add_port(
            PortMappingProtocol::UDP,
            wanted,
            internal,
            lease,
            DESCRIPTION,
        )
        .await
    {
        Ok(()) => wanted,
        Err(_) => gateway
            .add_any_port(PortMappingProtocol::UDP, internal, lease, DESCRIPTION)
            .await
            .map_err(|e| format!("mapping: {e}"))?,
    };
    let external_ip = gateway
        .get_external_ip()
        .await
        .map_err(|e| format!("external address: {e}"))?;
    Ok((gateway, SocketAddr::new(external_ip, external_port)))
}

/// The local address the kernel would use to reach `target` (no packet is sent).
fn local_ip_towards(target: SocketAddr) -> std::io::Result<IpAddr> {
    let probe = std::net::UdpSocket::bind((std::net::Ipv4Addr::UNSPECIFIED, 0))?;
    probe.connect(target)?;
    Ok(probe.local_addr()?.ip())
}
