//! Forwarding to upstream resolvers: one question at a time over UDP from a fresh random port
//! with a random id, then over TCP when the answer comes back truncated (2 s for each). Servers are tried in
//! order; a timeout, SERVFAIL or REFUSED moves on to the next, and the last answer is passed on
//! as it came (NXDOMAIN and its SOA included). Answers go through the TTL-honouring
//! [`Cache`]. The number of questions in flight upstream is bounded, so a flood of queries
//! for names outside the mesh cannot exhaust sockets.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Semaphore;

use super::cache::{Cache, Cached, Key};

/// How long one upstream server has to answer.
const TIMEOUT: Duration = Duration::from_secs(2);
/// The EDNS buffer size offered upstream (the DNS flag day 2020 value).
const UDP_PAYLOAD: u16 = 1232;
/// Questions in flight upstream at once.
const IN_FLIGHT: usize = 256;

/// Why a question got no upstream answer.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("no upstream DNS server is configured")]
    NoUpstream,
    #[error("too many questions in flight upstream")]
    Busy,
    #[error("no upstream DNS server answered: {0}")]
    Unanswered(io::Error),
}

/// An upstream answer and where it came from.
#[derive(Debug, Clone)]
pub struct Forwarded {
    pub answer: Cached,
    /// Served from the cache rather than asked upstream.
    pub cached: bool,
}

/// Forwards questions the mesh does not answer.
#[derive(Debug)]
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    cache: Mutex<Cache>,
    in_flight: Semaphore,
}

impl Forwarder {
    /// A forwarder to `upstreams` with a cache of `cache_size` answers.
    pub fn new(upstreams: Vec<SocketAddr>, cache_size: usize) -> Forwarder {
        Forwarder {
            upstreams,
            cache: Mutex::new(Cache::new(cache_size)),
            in_flight: Semaphore::new(IN_FLIGHT),
        }
    }

    /// The cached answer to one question, while it is fresh: what the server can answer without
    /// waiting.
    pub fn cached(&self, name: &Name, qtype: RecordType, qclass: DNSClass) -> Option<Forwarded> {
        self.cache()
            .get(&key(name, qtype, qclass), Instant::now())
            .map(|answer| Forwarded {
                answer,
                cached: true,
            })
    }

    /// The answer to one question: from the cache while fresh, else from upstream.
    pub async fn resolve(
        &self,
        name: &Name,
        qtype: RecordType,
        qclass: DNSClass,
    ) -> Result<Forwarded, ForwardError> {
        let key = key(name, qtype, qclass);
        if let Some(hit) = self.cache().get(&key, Instant::now()) {
            return Ok(Forwarded {
                answer: hit,
                cached: true,
            });
        }
        if self.upstreams.is_empty() {
            return Err(ForwardError::NoUpstream);
        }
        let _permit = self
            .in_flight
            .try_acquire()
            .map_err(|_| ForwardError::Busy)?;
        let query = Query::query(name.clone(), qtype)
            .set_query_class(qclass)
            .clone();
        let mut last = None;
        let mut error = io::Error::new(io::ErrorKind::TimedOut, "no server tried");
        for upstream in &self.upstreams {
            match exchange(*upstream, &query).await {
                Ok(message) => {
                    let code = message.metadata.response_code;
                    last = Some(message);
                    if !matches!(code, ResponseCode::ServFail | ResponseCode::Refused) {
                        break;
                    }
                }
                Err(e) => {
                    tracing::debug!(%upstream, error = %e, "upstream DNS server did not answer");
                    error = e;
                }
            }
        }
        let answer = Cached::from_message(last.ok_or(ForwardError::Unanswered(error))?);
        self.cache().insert(key, answer.clone(), Instant::now());
        Ok(Forwarded {
            answer,
            cached: false,
        })
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        // Nothing panics while holding the lock; a poisoned cache is still a valid cache.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The cache's key of a question: the name lowercased, without its final dot.
fn key(name: &Name, qtype: RecordType, qclass: DNSClass) -> Key {
    let text = name.to_lowercase().to_ascii();
    Key {
        name: text.strip_suffix('.').unwrap_or(&text).to_string(),
        qtype: qtype.into(),
        qclass: qclass.into(),
    }
}

/// Asks `upstream` one question: UDP first, TCP when the answer is truncated.
async fn exchange(upstream: SocketAddr, query: &Query) -> io::Result<Message> {
    let mut message = Message::query();
    message.metadata.recursion_desired = true;
    message.add_query(query.clone());
    let mut edns = Edns::new();
    edns.set_max_payload(UDP_PAYLOAD);
    message.set_edns(edns);
    let bytes = message.to_vec().map_err(io::Error::other)?;
    let id = message.metadata.id;
    let answer = tokio::time::timeout(TIMEOUT, udp_exchange(upstream, &bytes, id, query))
        .await
        .map_err(|_| timed_out(upstream, "UDP"))??;
    if !answer.metadata.truncation {
        return Ok(answer);
    }
    tokio::time::timeout(TIMEOUT, tcp_exchange(upstream, &bytes, id, query))
        .await
        .map_err(|_| timed_out(upstream, "TCP"))?
}

fn timed_out(upstream: SocketAddr, transport: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!(
            "{upstream} did not answer over {transport} within {} s",
            TIMEOUT.as_secs()
        ),
    )
}

async fn udp_exchange(
    upstream: SocketAddr,
    bytes: &[u8],
    id: u16,
    query: &Query,
) -> io::Result<Message> {
    let local: IpAddr = match upstream {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = UdpSocket::bind((local, 0)).await?;
    socket.connect(upstream).await?;
    socket.send(bytes).await?;
    let mut buf = vec![0u8; usize::from(u16::MAX)];
    loop {
        let n = socket.recv(&mut buf).await?;
        // Anything that is not the answer to this question (a late or forged datagram) is
        // ignored; the timeout bounds the wait.
        if let Some(answer) = answer_to(&buf[..n], id, query) {
            return Ok(answer);
        }
    }
}

async fn tcp_exchange(
    upstream: SocketAddr,
    bytes: &[u8],
    id: u16,
    query: &Query,
) -> io::Result<Message> {
    let mut stream = TcpStream::connect(upstream).await?;
    let len = u16::try_from(bytes.len()).map_err(io::Error::other)?;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).await?;
    let len = stream.read_u16().await?;
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await?;
    answer_to(&buf, id, query).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{upstream} sent a TCP answer that does not match the question"),
        )
    })
}

/// `bytes` decoded, if it is the answer to question `query` with id `id`.
fn answer_to(bytes: &[u8], id: u16, query: &Query) -> Option<Message> {
    let message = Message::from_vec(bytes).ok()?;
    let matches = message.metadata.id == id
        && message.metadata.message_type == MessageType::Response
        && message.queries.len() == 1
        && message.queries[0].name().eq_ignore_root(query.name())
        && message.queries[0].query_type() == query.query_type()
        && message.queries[0].query_class() == query.query_class();
    matches.then_some(message)
}

/// The resolvers named in resolv.conf text (`nameserver` lines, port 53), in order.
pub fn resolv_conf_servers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            let address = words.next()?;
            // A zone index (`fe80::1%eth0`) is not kept: std cannot parse it.
            let address = address.split('%').next()?;
            address
                .parse::<IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, 53))
        })
        .collect()
}

/// Whether `ip` is systemd-resolved's local stub (127.0.0.53, or 127.0.0.54 in proxy mode).
pub fn is_resolved_stub(ip: IpAddr) -> bool {
    ip == IpAddr::V4(Ipv4Addr::new(127, 0, 0, 53)) || ip == IpAddr::V4(Ipv4Addr::new(127, 0, 0, 54))
}

/// `servers` without the DNS server's own address `listen`, which would loop queries back to
/// weft: the same address, or any loopback or unspecified address on the same port when weft
/// listens on an unspecified one.
pub fn without_self(servers: Vec<SocketAddr>, listen: SocketAddr) -> Vec<SocketAddr> {
    servers
        .into_iter()
        .filter(|s| {
            let same = *s == listen
                || (s.port() == listen.port()
                    && (listen.ip().is_unspecified()
                        && (s.ip().is_loopback() || s.ip().is_unspecified())));
            !same
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameservers_are_read_from_resolv_conf() {
        let text = "# generated\nsearch lan\nnameserver 192.168.1.1\nnameserver  fd00::53 \n\
                    nameserver fe80::1%eth0\nnameserver bogus\noptions ndots:2\n";
        assert_eq!(
            resolv_conf_servers(text),
            [
                "192.168.1.1:53".parse::<SocketAddr>().unwrap(),
                "[fd00::53]:53".parse().unwrap(),
                "[fe80::1]:53".parse().unwrap(),
            ]
        );
    }

    #[test]
    fn the_server_never_forwards_to_itself() {
        let servers: Vec<SocketAddr> = [
            "127.0.0.1:53",
            "127.0.0.53:53",
            "10.0.0.1:53",
            "127.0.0.1:5353",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        assert_eq!(
            without_self(servers.clone(), "127.0.0.1:53".parse().unwrap()),
            servers[1..].to_vec()
        );
        assert_eq!(
            without_self(servers.clone(), "0.0.0.0:53".parse().unwrap()),
            servers[2..].to_vec()
        );
    }
}
