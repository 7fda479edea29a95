//! The DNS server's UDP side: one thread of its own that blocks in `recvfrom` and answers each
//! query the mesh snapshot or the forwarder's cache holds at once, before it reads the next, as
//! dnsmasq does. hickory-server's UDP loop spawned a task per query and passed each answer back
//! to the socket's task through a channel; an async loop of weft's own without that hop was no
//! faster, since the runtime's thread slept in `epoll_wait` and woke again about every third
//! query (BENCHMARKS.md, DNS). A question that must go upstream gets a task on the runtime, at
//! most [`UPSTREAM_TASKS`] at once; past that it is answered SERVFAIL at once, as the forwarder
//! does past its own bound. TCP stays with hickory-server.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Instant;

use hickory_proto::op::{Header, MessageType};
use hickory_proto::serialize::binary::{BinDecodable as _, BinDecoder};
use hickory_server::net::xfer::Protocol;
use hickory_server::server::Request;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::handler::Handler;

/// The largest query read; a longer datagram is cut there and fails to parse (FORMERR), as with
/// hickory-server's reader.
const RECEIVE_BUFFER: usize = 4096;
/// Questions waiting for upstream in tasks of their own at once.
const UPSTREAM_TASKS: usize = 512;
/// Receive errors in a row after which the socket counts as broken and the loop ends.
const ERRORS_IN_A_ROW: u32 = 1000;
/// Threads reading the socket, at most (one per core up to this): on the 2-core machine a
/// second one raised the answers a second by a tenth and halved the slowest 1 % of answers'
/// latency against one (BENCHMARKS.md, DNS).
const READERS: usize = 2;

/// Answers UDP queries on `socket` until `shutdown` with [`READERS`] threads at most (one per
/// core), blocking the calling thread until they have ended; upstream questions go to tasks on
/// `runtime`. Ends with an error when the socket breaks. Nothing here needs the runtime to stop:
/// a runtime dropped first does not leave the readers blocked.
pub fn serve(
    socket: UdpSocket,
    handler: Arc<Handler>,
    runtime: tokio::runtime::Handle,
    shutdown: CancellationToken,
) -> io::Result<()> {
    socket.set_nonblocking(false)?;
    let socket = Arc::new(socket);
    let upstream = Arc::new(Semaphore::new(UPSTREAM_TASKS));
    let readers = std::thread::available_parallelism().map_or(1, |n| n.get().min(READERS));
    std::thread::scope(|scope| {
        let spawned: Vec<_> = (0..readers)
            .map(|_| {
                std::thread::Builder::new()
                    .name("weft-dns-udp".into())
                    .spawn_scoped(scope, || {
                        let ended = read(&socket, &handler, &runtime, &upstream, &shutdown);
                        // One reader's error (a broken socket) is the whole server's.
                        shutdown.cancel();
                        ended
                    })
            })
            .collect();
        if spawned.iter().any(Result::is_err) {
            shutdown.cancel();
        }
        // Readers blocked in recvfrom wake when the socket's reading side is shut down: the
        // call returns at once from then on. Linux answers ENOTCONN for an unconnected UDP
        // socket but shuts it down and wakes the readers all the same.
        futures::executor::block_on(shutdown.cancelled());
        let _ = socket2::SockRef::from(&*socket).shutdown(std::net::Shutdown::Read);
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
    })
}

/// One reader: takes queries and answers them until `shutdown`.
fn read(
    socket: &Arc<UdpSocket>,
    handler: &Arc<Handler>,
    runtime: &tokio::runtime::Handle,
    upstream: &Arc<Semaphore>,
    shutdown: &CancellationToken,
) -> io::Result<()> {
    let mut buffer = vec![0u8; RECEIVE_BUFFER];
    let mut errors = 0;
    loop {
        let received = socket.recv_from(&mut buffer);
        if shutdown.is_cancelled() {
            return Ok(());
        }
        let (len, client) = match received {
            Ok(received) => {
                errors = 0;
                received
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // ICMP errors from earlier answers surface here on Linux; they are not the socket's.
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
        let started = Instant::now();
        let datagram = &buffer[..len];
        let Some(request) = request(handler, datagram, client, socket) else {
            continue;
        };
        let answer = match handler.answer_at_once(&request, started) {
            Ok(answer) => answer,
            Err(wait) => match upstream.clone().try_acquire_owned() {
                Err(_) => handler.answer_busy(&request, started),
                Ok(permit) => {
                    let (handler, socket) = (handler.clone(), socket.clone());
                    runtime.spawn(async move {
                        let answer = handler.answer_upstream(&request, wait, started).await;
                        send(&socket, &answer, client);
                        drop(permit);
                    });
                    continue;
                }
            },
        };
        send(socket, &answer, client);
    }
}

/// The request in `datagram`, or `None` when it was answered from its header alone (or not at
/// all: too short to be a message, or an answer rather than a question).
fn request(
    handler: &Handler,
    datagram: &[u8],
    client: SocketAddr,
    socket: &UdpSocket,
) -> Option<Request> {
    let header = Header::read(&mut BinDecoder::new(datagram)).ok()?;
    if header.metadata.message_type == MessageType::Response {
        // Answers are never answered: no reflection between servers.
        return None;
    }
    match Request::from_bytes(datagram.to_vec(), client, Protocol::Udp) {
        Ok(request) => Some(request),
        Err(_) => {
            send(socket, &handler.answer_unreadable(&header), client);
            None
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
