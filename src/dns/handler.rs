//! The DNS request handler: one standard query in, one answer out. The mesh snapshot answers
//! first (authoritatively for the mesh domain and the pool's reverse names); anything it does not
//! know goes to the forwarder, or is REFUSED when forwarding is off. Requests that are not one
//! IN-class standard query get FORMERR, NOTIMP or REFUSED.
//!
//! Answering is split where it may wait: [`Handler::answer_at_once`] answers from the snapshot
//! and the forwarder's cache without waiting (the UDP loop of [`super::udp`] sends that answer
//! before it reads the next query), and only a question that must go upstream is left to
//! [`Handler::answer_upstream`]. TCP goes through hickory-server, which calls the same steps.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable as _, BinEncoder};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

use super::cache::Cached;
use super::forward::{Forwarded, Forwarder};
use super::limit::Limiter;
use super::metrics::{DnsMetrics, Source};
use super::zone::{Answer, Zone};

/// The largest UDP answer sent, whatever buffer a client offers.
const MAX_UDP_PAYLOAD: u16 = 4096;
/// The largest UDP answer to a client that offers no EDNS buffer (RFC 1035 §4.2.1).
const PLAIN_UDP_PAYLOAD: u16 = 512;

/// Answers queries from the mesh snapshot and the forwarder.
#[derive(Debug)]
pub struct Handler {
    zone: Arc<ArcSwap<Zone>>,
    forwarder: Option<Arc<Forwarder>>,
    metrics: DnsMetrics,
    /// The networks clients may ask from.
    clients: Vec<ipnet::IpNet>,
    /// Each client's budget of answers.
    limiter: std::sync::Mutex<Limiter>,
}

/// An answer before encoding.
#[derive(Debug, Default)]
struct Reply {
    source: Source,
    code: ResponseCode,
    authoritative: bool,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    additionals: Vec<Record>,
}

impl Reply {
    fn code(source: Source, code: ResponseCode) -> Reply {
        Reply {
            source,
            code,
            ..Reply::default()
        }
    }

    fn forwarded(forwarded: Forwarded) -> Reply {
        let cached: Cached = forwarded.answer;
        Reply {
            source: if forwarded.cached {
                Source::Cache
            } else {
                Source::Upstream
            },
            code: cached.response_code,
            authoritative: false,
            answers: cached.answers,
            authorities: cached.authorities,
            additionals: cached.additionals,
        }
    }
}

/// A query the snapshot and the cache could not answer: what is left to ask upstream.
#[derive(Debug)]
pub struct Upstream(Box<Wait>);

#[derive(Debug)]
enum Wait {
    /// The question itself.
    Forward { name: Name, qtype: RecordType },
    /// The target of the CNAME chain the snapshot answered with.
    Chase {
        reply: Reply,
        target: Name,
        qtype: RecordType,
    },
}

impl Handler {
    /// A handler over the live snapshot `zone` for clients in `clients`; without a forwarder,
    /// other names are refused.
    pub fn new(
        zone: Arc<ArcSwap<Zone>>,
        forwarder: Option<Arc<Forwarder>>,
        metrics: DnsMetrics,
        clients: Vec<ipnet::IpNet>,
    ) -> Handler {
        Handler {
            zone,
            forwarder,
            metrics,
            clients,
            limiter: std::sync::Mutex::default(),
        }
    }

    /// Whether `ip` (canonical: an IPv4-mapped IPv6 address as its IPv4 address) may ask.
    fn admits(&self, ip: std::net::IpAddr) -> bool {
        self.clients.iter().any(|net| net.contains(&ip))
    }

    /// The answer to `request` encoded for UDP when the snapshot or the cache holds it, or what
    /// is left to ask upstream. Never waits.
    pub fn answer_at_once(&self, request: &Request, started: Instant) -> Result<Vec<u8>, Upstream> {
        let reply = self.reply_at_once(request)?;
        Ok(self.encode_udp(request, &reply, started))
    }

    /// The answer to `request` encoded for UDP, once `upstream` has answered what was left.
    pub async fn answer_upstream(
        &self,
        request: &Request,
        upstream: Upstream,
        started: Instant,
    ) -> Vec<u8> {
        let reply = self.reply_upstream(upstream).await;
        self.encode_udp(request, &reply, started)
    }

    /// The answer, from its header alone, to a message whose body could not be read, encoded
    /// for UDP: FORMERR to a client that may ask, REFUSED to anyone else.
    pub fn answer_unreadable(&self, header: &Header, client: std::net::IpAddr) -> Vec<u8> {
        let (source, code) = if self.admits(client.to_canonical()) {
            (Source::Rejected, ResponseCode::FormErr)
        } else {
            (Source::Refused, ResponseCode::Refused)
        };
        self.metrics.answered(source, std::time::Duration::ZERO);
        header_only(&header.metadata, code)
    }

    /// SERVFAIL to `request`, for a server with too many questions upstream to take another.
    pub fn answer_busy(&self, request: &Request, started: Instant) -> Vec<u8> {
        let reply = Reply::code(Source::Failed, ResponseCode::ServFail);
        self.encode_udp(request, &reply, started)
    }

    async fn reply(&self, request: &Request) -> Reply {
        match self.reply_at_once(request) {
            Ok(reply) => reply,
            Err(upstream) => self.reply_upstream(upstream).await,
        }
    }

    /// The reply from the snapshot and the cache, or what is left to ask upstream.
    fn reply_at_once(&self, request: &Request) -> Result<Reply, Upstream> {
        // One form for the allow-list, the loopback exemption and the budget: a dual-stack
        // listener sees IPv4 clients as IPv4-mapped IPv6 addresses.
        let client = request.src().ip().to_canonical();
        if !self.admits(client) {
            return Ok(Reply::code(Source::Refused, ResponseCode::Refused));
        }
        // Loopback is exempt, before the lock: the host's own lookups are the hot path.
        let allowed = client.is_loopback()
            || self
                .limiter
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .allow(client, Instant::now());
        if !allowed {
            return Ok(Reply::code(Source::Limited, ResponseCode::Refused));
        }
        if request.metadata.op_code != OpCode::Query {
            return Ok(Reply::code(Source::Rejected, ResponseCode::NotImp));
        }
        let Ok(info) = request.request_info() else {
            return Ok(Reply::code(Source::Rejected, ResponseCode::FormErr));
        };
        let query = info.query.original();
        if query.query_class() != DNSClass::IN {
            return Ok(Reply::code(Source::Refused, ResponseCode::Refused));
        }
        let (name, qtype) = (query.name(), query.query_type());
        let (answer, authoritative) = {
            let zone = self.zone.load();
            (zone.lookup(name, qtype), zone.is_authoritative(name))
        };
        match answer {
            Answer::Found { records, chase } => {
                let mut reply = Reply {
                    authoritative,
                    answers: records,
                    ..Reply::default()
                };
                let (Some(target), Some(forwarder)) = (chase, &self.forwarder) else {
                    return Ok(reply);
                };
                match forwarder.cached(&target, qtype, DNSClass::IN) {
                    Some(hit) => {
                        chased(&mut reply, hit);
                        Ok(reply)
                    }
                    None => Err(Upstream(Box::new(Wait::Chase {
                        reply,
                        target,
                        qtype,
                    }))),
                }
            }
            Answer::NoData { soa } => Ok(Reply {
                authoritative,
                authorities: soa.into_iter().collect(),
                ..Reply::default()
            }),
            Answer::NxDomain { records, soa } => Ok(Reply {
                code: ResponseCode::NXDomain,
                authoritative,
                answers: records,
                authorities: vec![soa],
                ..Reply::default()
            }),
            Answer::NotOurs => match &self.forwarder {
                None => Ok(Reply::code(Source::Refused, ResponseCode::Refused)),
                Some(forwarder) => match forwarder.cached(name, qtype, DNSClass::IN) {
                    Some(hit) => Ok(Reply::forwarded(hit)),
                    None => Err(Upstream(Box::new(Wait::Forward {
                        name: name.clone(),
                        qtype,
                    }))),
                },
            },
        }
    }

    /// The reply once upstream has answered what the snapshot and the cache left.
    async fn reply_upstream(&self, Upstream(wait): Upstream) -> Reply {
        let Some(forwarder) = &self.forwarder else {
            // Only a handler with a forwarder leaves anything to ask upstream.
            return Reply::code(Source::Failed, ResponseCode::ServFail);
        };
        match *wait {
            Wait::Forward { name, qtype } => {
                match forwarder.resolve(&name, qtype, DNSClass::IN).await {
                    Ok(forwarded) => Reply::forwarded(forwarded),
                    Err(e) => {
                        tracing::debug!(%name, %qtype, error = %e, "forwarding failed");
                        Reply::code(Source::Failed, ResponseCode::ServFail)
                    }
                }
            }
            // Completes a CNAME chain that leaves the snapshot with the target's records.
            Wait::Chase {
                mut reply,
                target,
                qtype,
            } => {
                match forwarder.resolve(&target, qtype, DNSClass::IN).await {
                    Ok(forwarded) => chased(&mut reply, forwarded),
                    Err(e) => {
                        tracing::debug!(%target, error = %e, "cannot follow a CNAME upstream")
                    }
                }
                reply
            }
        }
    }

    /// The answer's header fields for `request`.
    fn metadata(&self, request: &Request, reply: &Reply) -> Metadata {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.response_code = reply.code;
        metadata.authoritative = reply.authoritative;
        metadata.recursion_available = self.forwarder.is_some();
        metadata
    }

    /// `reply` encoded for UDP, within the buffer the client offered (truncated, with TC set,
    /// past it), counted in the metrics.
    fn encode_udp(&self, request: &Request, reply: &Reply, started: Instant) -> Vec<u8> {
        self.metrics.answered(reply.source, started.elapsed());
        let edns = answer_edns(request);
        let response = MessageResponseBuilder::new(&request.queries, edns.as_ref()).build(
            self.metadata(request, reply),
            reply.answers.iter(),
            reply.authorities.iter(),
            std::iter::empty(),
            reply.additionals.iter(),
        );
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(edns.as_ref().map_or(PLAIN_UDP_PAYLOAD, Edns::max_payload));
        if let Err(e) = response.destructive_emit(&mut encoder) {
            tracing::debug!(error = %e, "cannot encode a DNS answer; answering SERVFAIL");
            return header_only(&request.metadata, ResponseCode::ServFail);
        }
        bytes
    }
}

/// An answer of a header alone, with `code`, to the question `asked` heads.
fn header_only(asked: &Metadata, code: ResponseCode) -> Vec<u8> {
    let mut metadata = Metadata::response_from_request(asked);
    metadata.response_code = code;
    let header = Header {
        metadata,
        counts: HeaderCounts::default(),
    };
    let mut bytes = Vec::with_capacity(12);
    if header.emit(&mut BinEncoder::new(&mut bytes)).is_err() {
        // Twelve bytes into a growable buffer: not expected to fail; send nothing then.
        bytes.clear();
    }
    bytes
}

/// Adds the records of a CNAME target's answer from upstream to `reply`.
fn chased(reply: &mut Reply, Forwarded { answer, .. }: Forwarded) {
    reply.code = answer.response_code;
    reply.answers.extend(answer.answers);
    reply.authorities = answer.authorities;
}

/// The answer offers EDNS when the question did, with the client's buffer size (RFC 6891
/// §6.2.5) within bounds; UDP answers are sized by it.
fn answer_edns(request: &Request) -> Option<Edns> {
    request.edns.as_ref().map(|_| {
        let mut edns = Edns::new();
        edns.set_max_payload(request.max_payload().min(MAX_UDP_PAYLOAD));
        edns
    })
}

/// The handler as hickory-server's TCP listener takes it, shared with the UDP loop.
#[derive(Debug, Clone)]
pub struct OverTcp(pub Arc<Handler>);

#[async_trait::async_trait]
impl RequestHandler for OverTcp {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let handler = &self.0;
        let started = Instant::now();
        let reply = handler.reply(request).await;
        handler.metrics.answered(reply.source, started.elapsed());
        let edns = answer_edns(request);
        let response = MessageResponseBuilder::new(&request.queries, edns.as_ref()).build(
            handler.metadata(request, &reply),
            reply.answers.iter(),
            reply.authorities.iter(),
            std::iter::empty(),
            reply.additionals.iter(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, "cannot send a DNS answer");
                let mut failed = Metadata::response_from_request(&request.metadata);
                failed.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata: failed,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}
