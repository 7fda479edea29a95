//! The DNS server's UDP side: reader threads of weft's own (one per core, at most [`READERS`]),
//! each blocked in `recvfrom`, that answer every query the mesh snapshot or the forwarder's
//! cache holds on the spot and send the answer before reading the next, as dnsmasq does.
//! hickory-server's UDP loop spawned a task per query and passed each answer back to the
//! socket's task through a channel; an async loop of weft's own without that hop was no faster,
//! since the runtime's thread slept in `epoll_wait` and woke again about every third query
//! (BENCHMARKS.md, DNS). A question that must go upstream gets a task on the runtime, at most
//! [`UPSTREAM_TASKS`] at once (SERVFAIL past that; the forwarder itself asks at most 256
//! upstream at once). TCP stays with hickory-server.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use hickory_proto::op::{Header, MessageType};
use hickory_proto::serialize::binary::{BinDecodable as _, BinDecoder};
use hickory_server::net::xfer::Protocol;
use hickory_server::server::Request;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::handler::Handler;

/// The largest query read; a longer datagram is cut there and fails to parse, as with
/// hickory-server's reader.
const RECEIVE_BUFFER: usize = 4096;
/// Questions waiting for upstream in tasks of their own at once.
const UPSTREAM_TASKS: usize = 512;
/// Receive errors in a row after which the socket counts as broken and the server stops.
const ERRORS_IN_A_ROW: u32 = 1000;
/// Threads reading the socket, at most (one per core up to this): on the 2-core machine a
/// second one raised the answers a second by a tenth and halved the slowest 1 % of answers'
/// latency against one (BENCHMARKS.md, DNS).
const READERS: usize = 2;

/// What the readers share.
struct Readers {
    socket: Arc<UdpSocket>,
    handler: Arc<Handler>,
    runtime: tokio::runtime::Handle,
    /// Permits of the tasks waiting for upstream; each task holds one, and its copy of the
    /// socket, until it has ended.
    upstream: Arc<Semaphore>,
    shutdown: CancellationToken,
}

/// Answers UDP queries on `socket` until `shutdown`, blocking the calling thread until the
/// readers and the tasks waiting for upstream have ended (so the socket is closed when it
/// returns); upstream questions go to tasks on `runtime`. Ends with an error when the socket
/// breaks or a reader fails. Stopping needs only `shutdown`, not the runtime.
pub fn serve(
    socket: UdpSocket,
    handler: Arc<Handler>,
    runtime: tokio::runtime::Handle,
    shutdown: CancellationToken,
) -> io::Result<()> {
    socket.set_nonblocking(false)?;
    let readers = Readers {
        socket: Arc::new(socket),
        handler,
        runtime,
        upstream: Arc::new(Semaphore::new(UPSTREAM_TASKS)),
        shutdown,
    };
    let count = std::thread::available_parallelism().map_or(1, |n| n.get().min(READERS));
    let ended = std::thread::scope(|scope| {
        let spawned: Vec<_> = (0..count)
            .map(|_| {
                std::thread::Builder::new()
                    .name("weft-dns-udp".into())
                    .spawn_scoped(scope, || {
                        // A reader that ends, with an error or a panic, ends the server.
                        let _stop = readers.shutdown.clone().drop_guard();
                        readers.read()
                    })
            })
            .collect();
        if spawned.iter().any(Result::is_err) {
            readers.shutdown.cancel();
        }
        // Readers blocked in recvfrom wake when the socket's reading side is shut down: the
        // call returns at once from then on. Linux answers ENOTCONN for an unconnected UDP
        // socket but shuts it down and wakes the readers all the same.
        futures::executor::block_on(readers.shutdown.cancelled());
        let _ = socket2::SockRef::from(&*readers.socket).shutdown(std::net::Shutdown::Read);
        let mut ended = Ok(());
        for reader in spawned {
            let reader_ended = match reader {
                Ok(reader) => reader
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("a DNS reader panicked"))),
                Err(e) => Err(e),
            };
            ended = ended.and(reader_ended);
        }
        ended
    });
    // The tasks still waiting for upstream stop at the cancellation (or went with the runtime);
    // each gives its permit back after its copy of the socket.
    let all = u32::try_from(UPSTREAM_TASKS).unwrap_or(u32::MAX);
    let _ = futures::executor::block_on(readers.upstream.acquire_many(all));
    ended
}

impl Readers {
    /// One reader: takes queries and answers them until `shutdown`.
    fn read(&self) -> io::Result<()> {
        let mut buffer = vec![0u8; RECEIVE_BUFFER];
        let mut errors = 0;
        let mut failed_before = false;
        loop {
            let received = self.socket.recv_from(&mut buffer);
            if self.shutdown.is_cancelled() {
                return Ok(());
            }
            let (len, client) = match received {
                Ok(received) => {
                    errors = 0;
                    received
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // A read that fails once (no memory for the datagram, say) costs that query;
                // one that keeps failing is a broken socket.
                Err(e) => {
                    errors += 1;
                    if errors >= ERRORS_IN_A_ROW {
                        return Err(e);
                    }
                    tracing::debug!(error = %e, "DNS: cannot read a UDP query");
                    continue;
                }
            };
            if !answerable(client) {
                continue;
            }
            // A fault in decoding or answering one datagram costs that query, not the reader.
            let answered = std::panic::catch_unwind(AssertUnwindSafe(|| {
                self.answer(&buffer[..len], client, Instant::now());
            }));
            // Warned once per reader: a datagram that always fails must not flood the log.
            if answered.is_err() && !std::mem::replace(&mut failed_before, true) {
                tracing::warn!(%client, "DNS: answering a UDP query failed; the query is dropped");
            } else if answered.is_err() {
                tracing::debug!(%client, "DNS: answering a UDP query failed; the query is dropped");
            }
        }
    }

    /// Answers one datagram from `client`: at once, or through a task that waits for upstream.
    fn answer(&self, datagram: &[u8], client: SocketAddr, started: Instant) {
        let Some(request) = self.request(datagram, client) else {
            return;
        };
        let answer = match self.handler.answer_at_once(&request, started) {
            Ok(answer) => answer,
            Err(wait) => match self.upstream.clone().try_acquire_owned() {
                Err(_) => self.handler.answer_busy(&request, started),
                Ok(permit) => {
                    // One value, so that on every path (an answer, the cancellation, a panic,
                    // the runtime dropping the task) the socket goes before the permit.
                    let held = (self.socket.clone(), permit);
                    let (handler, shutdown) = (self.handler.clone(), self.shutdown.clone());
                    self.runtime.spawn(async move {
                        tokio::select! {
                            _ = shutdown.cancelled() => {}
                            answer = handler.answer_upstream(&request, wait, started) => {
                                send(&held.0, &answer, client);
                            }
                        }
                        drop(held);
                    });
                    return;
                }
            },
        };
        send(&self.socket, &answer, client);
    }

    /// The request in `datagram`, or `None` when it was answered from its header alone (or not
    /// at all: too short to be a message, or an answer rather than a question).
    fn request(&self, datagram: &[u8], client: SocketAddr) -> Option<Request> {
        let header = Header::read(&mut BinDecoder::new(datagram)).ok()?;
        if header.metadata.message_type == MessageType::Response {
            // Answers are never answered: no reflection between servers.
            return None;
        }
        match Request::from_bytes(datagram.to_vec(), client, Protocol::Udp) {
            Ok(request) => Some(request),
            Err(_) => {
                let answer = self.handler.answer_unreadable(&header, client.ip());
                send(&self.socket, &answer, client);
                None
            }
        }
    }
}

/// Sends one answer without waiting: a full send buffer drops it (the client asks again), and a
/// failure concerns that client only.
fn send(socket: &UdpSocket, answer: &[u8], client: SocketAddr) {
    if answer.is_empty() {
        return;
    }
    let sent = socket2::SockRef::from(socket).send_to_with_flags(
        answer,
        &client.into(),
        libc::MSG_DONTWAIT,
    );
    if let Err(e) = sent {
        tracing::debug!(%client, error = %e, "DNS: cannot send a UDP answer");
    }
}

/// Whether an answer to `client` can be sent at all: not to port 0, an unspecified address or
/// the broadcast address (hickory-server's rule).
fn answerable(client: SocketAddr) -> bool {
    let ip = client.ip().to_canonical();
    client.port() != 0
        && !ip.is_unspecified()
        && !matches!(ip, std::net::IpAddr::V4(v4) if v4.is_broadcast())
}
