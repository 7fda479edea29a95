//! The DNS request handler: one standard query in, one answer out. The mesh snapshot answers
//! first (authoritatively for the mesh domain and the pool's reverse names); anything it does not
//! know goes to the forwarder, or is REFUSED when forwarding is off. Requests that are not one
//! IN-class standard query get FORMERR, NOTIMP or REFUSED; hickory-server itself answers FORMERR
//! to messages it cannot parse and drops those too short to carry a header.

use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, Record, RecordType};
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

    async fn reply(&self, request: &Request) -> Reply {
        // One form for the allow-list, the loopback exemption and the budget: a dual-stack
        // listener sees IPv4 clients as IPv4-mapped IPv6 addresses.
        let client = request.src().ip().to_canonical();
        if !self.admits(client) {
            return Reply::code(Source::Refused, ResponseCode::Refused);
        }
        // Loopback is exempt, before the lock: the host's own lookups are the hot path.
        let allowed = client.is_loopback()
            || self
                .limiter
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .allow(client, std::time::Instant::now());
        if !allowed {
            return Reply::code(Source::Limited, ResponseCode::Refused);
        }
        if request.metadata.op_code != OpCode::Query {
            return Reply::code(Source::Rejected, ResponseCode::NotImp);
        }
        let Ok(info) = request.request_info() else {
            return Reply::code(Source::Rejected, ResponseCode::FormErr);
        };
        let query = info.query.original();
        if query.query_class() != DNSClass::IN {
            return Reply::code(Source::Refused, ResponseCode::Refused);
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
                if let Some(target) = chase {
                    self.chase(&mut reply, &target, qtype).await;
                }
                reply
            }
            Answer::NoData { soa } => Reply {
                authoritative,
                authorities: soa.into_iter().collect(),
                ..Reply::default()
            },
            Answer::NxDomain { records, soa } => Reply {
                code: ResponseCode::NXDomain,
                authoritative,
                answers: records,
                authorities: vec![soa],
                ..Reply::default()
            },
            Answer::NotOurs => match &self.forwarder {
                None => Reply::code(Source::Refused, ResponseCode::Refused),
                Some(forwarder) => match forwarder.resolve(name, qtype, DNSClass::IN).await {
                    Ok(forwarded) => Reply::forwarded(forwarded),
                    Err(e) => {
                        tracing::debug!(%name, %qtype, error = %e, "forwarding failed");
                        Reply::code(Source::Failed, ResponseCode::ServFail)
                    }
                },
            },
        }
    }

    /// Completes a CNAME chain that leaves the snapshot with the target's records from upstream.
    async fn chase(&self, reply: &mut Reply, target: &Name, qtype: RecordType) {
        let Some(forwarder) = &self.forwarder else {
            return;
        };
        match forwarder.resolve(target, qtype, DNSClass::IN).await {
            Ok(Forwarded { answer, .. }) => {
                reply.code = answer.response_code;
                reply.answers.extend(answer.answers);
                reply.authorities = answer.authorities;
            }
            Err(e) => tracing::debug!(%target, error = %e, "cannot follow a CNAME upstream"),
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let started = std::time::Instant::now();
        let reply = self.reply(request).await;
        self.metrics.answered(reply.source, started.elapsed());
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.response_code = reply.code;
        metadata.authoritative = reply.authoritative;
        metadata.recursion_available = self.forwarder.is_some();
        // The answer offers EDNS when the question did; hickory-server sizes UDP answers by the
        // answer's buffer size, so it is the client's (RFC 6891 §6.2.5), within bounds.
        let edns = request.edns.as_ref().map(|_| {
            let mut edns = Edns::new();
            edns.set_max_payload(request.max_payload().min(MAX_UDP_PAYLOAD));
            edns
        });
        let response = MessageResponseBuilder::new(&request.queries, edns.as_ref()).build(
            metadata,
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
