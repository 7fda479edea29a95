//! Serving HTTP/1 connections with bounds, so that no client can starve the others: at most
//! [`MAX_CONNECTIONS`] at once, at most [`MAX_PER_CLIENT`] from one IP address, and a client
//! that has not sent a request's headers within [`HEADER_TIMEOUT`] (a slow or idle one) is
//! disconnected, and every connection ends after [`CONNECTION_LIFETIME`] (one that stops
//! reading its answers would otherwise hold its place). A connection past a limit is closed at
//! once. On shutdown, connections get [`GRACE`] to finish what they are answering.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Connections served at once to one IP address.
pub const MAX_PER_CLIENT: usize = 16;
/// How long a connection may take to send a request's headers, or stay idle between requests.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one connection may live: a client that stops reading its answers frees its place
/// by then (a polling dashboard simply connects again).
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// How long shutdown waits for answers in progress.
const GRACE: Duration = Duration::from_secs(3);

/// Accepts connections: a TCP or unix listener, with the client's IP where there is one.
pub trait Accept {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    fn accept(
        &self,
    ) -> impl std::future::Future<Output = io::Result<(Self::Stream, Option<IpAddr>)>> + Send;
}

impl Accept for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;

    async fn accept(&self) -> io::Result<(Self::Stream, Option<IpAddr>)> {
        let (stream, peer) = tokio::net::TcpListener::accept(self).await?;
        Ok((stream, Some(peer.ip())))
    }
}

impl Accept for tokio::net::UnixListener {
    type Stream = tokio::net::UnixStream;

    async fn accept(&self) -> io::Result<(Self::Stream, Option<IpAddr>)> {
        let (stream, _) = tokio::net::UnixListener::accept(self).await?;
        Ok((stream, None))
    }
}

/// The connections in use, overall and per client.
#[derive(Debug, Default)]
struct Slots {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

/// One connection's place; dropping it frees the place.
struct Slot {
    slots: Arc<Mutex<Slots>>,
    client: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.total -= 1;
        if let Some(ip) = self.client
            && let Some(n) = slots.per_client.get_mut(&ip)
        {
            *n -= 1;
            if *n == 0 {
                slots.per_client.remove(&ip);
            }
        }
    }
}

/// A place for a connection from `client`, if the limits allow one.
fn take(slots: &Arc<Mutex<Slots>>, client: Option<IpAddr>) -> Option<Slot> {
    let mut held = slots.lock().unwrap_or_else(|e| e.into_inner());
    if held.total >= MAX_CONNECTIONS {
        return None;
    }
    if let Some(ip) = client {
        let n = held.per_client.entry(ip).or_default();
        if *n >= MAX_PER_CLIENT {
            return None;
        }
        *n += 1;
    }
    held.total += 1;
    Some(Slot {
        slots: slots.clone(),
        client,
    })
}

/// Serves `router` on `listener` until `shutdown` is cancelled.
pub async fn serve<L: Accept>(
    listener: L,
    router: Router,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let slots = Arc::new(Mutex::new(Slots::default()));
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let (stream, client) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if transient(&e) => {
                tracing::debug!(error = %e, "API accept failed; trying again");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let Some(slot) = take(&slots, client) else {
            tracing::debug!(?client, "API connection refused: too many open");
            continue;
        };
        connections.spawn(serve_one(stream, router.clone(), slot, shutdown.clone()));
    }
    let _ = tokio::time::timeout(GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}

/// Errors of `accept` that concern one connection (or a moment without file descriptors),
/// not the listener.
fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    ) || e
        .raw_os_error()
        .is_some_and(|n| n == libc::EMFILE || n == libc::ENFILE)
}

async fn serve_one<S>(stream: S, router: Router, slot: Slot, shutdown: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
    let mut connection = std::pin::pin!(connection);
    let served = tokio::select! {
        served = connection.as_mut() => served,
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            tokio::time::timeout(GRACE, connection).await.unwrap_or(Ok(()))
        }
        () = tokio::time::sleep(CONNECTION_LIFETIME) => {
            connection.as_mut().graceful_shutdown();
            tokio::time::timeout(GRACE, connection).await.unwrap_or(Ok(()))
        }
    };
    if let Err(e) = served {
        tracing::debug!(error = %e, "API connection ended");
    }
    drop(slot);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_client_cannot_take_every_place_and_places_come_back() {
        let slots = Arc::new(Mutex::new(Slots::default()));
        let greedy: IpAddr = "10.0.0.1".parse().unwrap();
        let held: Vec<Slot> = (0..MAX_PER_CLIENT)
            .map(|_| take(&slots, Some(greedy)).unwrap())
            .collect();
        assert!(take(&slots, Some(greedy)).is_none());
        assert!(take(&slots, Some("10.0.0.2".parse().unwrap())).is_some());
        drop(held);
        assert!(take(&slots, Some(greedy)).is_some());
        assert_eq!(slots.lock().unwrap().total, 0);
    }

    #[test]
    fn the_total_is_bounded_for_unix_clients_too() {
        let slots = Arc::new(Mutex::new(Slots::default()));
        let held: Vec<Slot> = (0..MAX_CONNECTIONS)
            .map(|_| take(&slots, None).unwrap())
            .collect();
        assert!(take(&slots, None).is_none());
        drop(held);
        assert!(take(&slots, None).is_some());
    }
}
