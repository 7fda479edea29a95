//! The data plane's UDP socket: one per node, on `--data-port`, IPv6 dual-stack (IPv4 peers
//! appear as mapped addresses on the socket and as plain IPv4 everywhere else).
//!
//! quinn-udp does the batching: a run of equal-sized frames to one peer goes out as one
//! `sendmsg` with UDP GSO, and a receive returns many datagrams at once (`recvmmsg`), each
//! possibly a GRO-coalesced train of equal segments. Where the kernel lacks GSO or GRO, quinn-udp
//! reports one segment and the same code sends and receives datagram by datagram.

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use quinn_udp::{RecvMeta, Transmit, UdpSockRef, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams one receive call may return.
pub const RECV_BATCH: usize = quinn_udp::BATCH_SIZE;

/// The data plane's socket.
#[derive(Debug)]
pub struct Udp {
    socket: UdpSocket,
    state: UdpSocketState,
    dual_stack: bool,
}

impl Udp {
    /// Binds `port` (0: any) on every address, IPv6 and IPv4 where possible, else IPv4 only.
    pub fn bind(port: u16) -> io::Result<Udp> {
        let (socket, dual_stack) = match dual_stack(port) {
            Ok(socket) => (socket, true),
            Err(e) => {
                tracing::debug!(error = %e, "no IPv6 data socket; using IPv4 only");
                (
                    std::net::UdpSocket::bind((std::net::Ipv4Addr::UNSPECIFIED, port))?,
                    false,
                )
            }
        };
        socket.set_nonblocking(true)?;
        let state = UdpSocketState::new(UdpSockRef::from(&socket))?;
        // quinn-udp asks for each datagram's traffic class (ECN), which weft does not read: a
        // control message less per datagram received.
        let sock = socket2::SockRef::from(&socket);
        let _ = sock.set_recv_tos_v4(false);
        if dual_stack {
            let _ = sock.set_recv_tclass_v6(false);
        }
        // Large buffers absorb bursts from GSO trains; the kernel caps them at its limits.
        let _ = state.set_send_buffer_size(UdpSockRef::from(&socket), 4 << 20);
        let _ = state.set_recv_buffer_size(UdpSockRef::from(&socket), 4 << 20);
        Ok(Udp {
            socket: UdpSocket::from_std(socket)?,
            state,
            dual_stack,
        })
    }

    /// The port the socket is bound to.
    pub fn port(&self) -> u16 {
        self.socket.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// How many equal segments one send may carry (1 without GSO).
    pub fn max_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    /// How many segments one received datagram may coalesce (1 without GRO).
    pub fn gro_segments(&self) -> usize {
        self.state.gro_segments()
    }

    /// Sends `contents` to `destination`, as segments of `segment` bytes when given (GSO).
    pub async fn send(
        &self,
        destination: SocketAddr,
        contents: &[u8],
        segment: Option<usize>,
    ) -> io::Result<()> {
        let transmit = self.transmit(destination, contents, segment);
        self.socket
            .async_io(Interest::WRITABLE, || self.send_now(&transmit))
            .await
    }

    /// Sends as [`Udp::send`] does, but without waiting: `WouldBlock` when the socket's send
    /// buffer is full (the link is saturated), and the datagrams are not sent.
    pub fn try_send(
        &self,
        destination: SocketAddr,
        contents: &[u8],
        segment: Option<usize>,
    ) -> io::Result<()> {
        let transmit = self.transmit(destination, contents, segment);
        self.socket
            .try_io(Interest::WRITABLE, || self.send_now(&transmit))
    }

    /// One `sendmsg` of `transmit`, whatever the reactor knows of the socket.
    fn send_now(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        self.state.send(UdpSockRef::from(&self.socket), transmit)
    }

    /// Waits until the reactor has seen the socket readable (a receive may still find nothing).
    pub async fn readable(&self) -> io::Result<()> {
        self.socket.readable().await
    }

    /// Receives up to `bufs.len()` datagrams without waiting; `meta[i]` describes `bufs[i]`,
    /// with the source address in plain form. `WouldBlock` when there is none.
    pub fn try_recv(
        &self,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> io::Result<usize> {
        let n = self.socket.try_io(Interest::READABLE, || {
            self.state.recv(UdpSockRef::from(&self.socket), bufs, meta)
        })?;
        for m in &mut meta[..n] {
            m.addr = SocketAddr::new(m.addr.ip().to_canonical(), m.addr.port());
        }
        Ok(n)
    }

    fn transmit<'a>(
        &self,
        destination: SocketAddr,
        contents: &'a [u8],
        segment: Option<usize>,
    ) -> Transmit<'a> {
        Transmit {
            destination: self.wire(destination),
            ecn: None,
            contents,
            segment_size: segment.filter(|&s| s < contents.len()),
            src_ip: None,
        }
    }

    fn wire(&self, destination: SocketAddr) -> SocketAddr {
        match destination.ip() {
            IpAddr::V4(v4) if self.dual_stack => {
                SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), destination.port())
            }
            _ => destination,
        }
    }
}

fn dual_stack(port: u16) -> io::Result<std::net::UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV6,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    socket.set_only_v6(false)?;
    socket.bind(&SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port).into())?;
    Ok(socket.into())
}
