//! The DNS server in process, on loopback: mesh answers from a ledger snapshot, forwarding to
//! an upstream server this test runs itself (never a real resolver), TTL-honouring caching,
//! NXDOMAIN and SERVFAIL passed through, large answers over TCP, and malformed packets.
//! Queries are made with `dig`; without it the `dig` tests print why they are skipped.

mod support;

use std::net::SocketAddr;
use std::str::FromStr as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hickory_proto::op::{Edns, Message, Metadata, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;
use weft::dns::metrics::DnsMetrics;
use weft::dns::zone::Zone;
use weft::dns::{DnsConfig, DnsSockets, serve};
use weft::ledger::state::{Command, DnsRecord, LedgerState, RecordType as Rt};

use support::dig;

const DOMAIN: &str = "weft.internal";

/// Questions the upstream saw: (name, type, protocol).
type Log = Arc<Mutex<Vec<(String, RecordType, Protocol)>>>;

/// A tiny authoritative server for `example.`, standing in for the upstream resolver.
struct Upstream {
    log: Log,
}

impl Upstream {
    fn answer(name: &str, qtype: RecordType) -> (ResponseCode, Vec<Record>, Vec<Record>) {
        let owner = Name::from_str(name).unwrap();
        let a = |ttl, last| {
            Record::from_rdata(
                owner.clone(),
                ttl,
                RData::A(A(std::net::Ipv4Addr::new(192, 0, 2, last))),
            )
        };
        match (name, qtype) {
            ("ttl2.example.", RecordType::A) => (ResponseCode::NoError, vec![a(2, 2)], vec![]),
            ("long.example.", RecordType::A) => (ResponseCode::NoError, vec![a(300, 3)], vec![]),
            ("target.example.", RecordType::A) => (ResponseCode::NoError, vec![a(300, 9)], vec![]),
            ("fail.example.", _) => (ResponseCode::ServFail, vec![], vec![]),
            ("big.example.", RecordType::TXT) => {
                let records = (0..40)
                    .map(|i| {
                        let text = format!("{i:03}{}", "x".repeat(97));
                        Record::from_rdata(owner.clone(), 300, RData::TXT(TXT::new(vec![text])))
                    })
                    .collect();
                (ResponseCode::NoError, records, vec![])
            }
            _ => {
                let zone = Name::from_str("example.").unwrap();
                let soa = Record::from_rdata(
                    zone.clone(),
                    60,
                    RData::SOA(SOA::new(zone.clone(), zone, 7, 1, 1, 1, 60)),
                );
                (ResponseCode::NXDomain, vec![], vec![soa])
            }
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for Upstream {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut handle: R,
    ) -> ResponseInfo {
        let query = request
            .request_info()
            .expect("one question")
            .query
            .original()
            .clone();
        let name = query.name().to_string().to_ascii_lowercase();
        self.log
            .lock()
            .unwrap()
            .push((name.clone(), query.query_type(), request.protocol()));
        let (code, answers, authorities) = Upstream::answer(&name, query.query_type());
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.response_code = code;
        metadata.recursion_available = true;
        let edns = request.edns.as_ref().map(|_| {
            let mut edns = Edns::new();
            edns.set_max_payload(request.max_payload());
            edns
        });
        let response = MessageResponseBuilder::new(&request.queries, edns.as_ref()).build(
            metadata,
            answers.iter(),
            authorities.iter(),
            std::iter::empty(),
            std::iter::empty(),
        );
        handle
            .send_response(response)
            .await
            .expect("upstream answers")
    }
}

/// Starts the upstream on a free loopback port (UDP and TCP).
async fn upstream(shutdown: &CancellationToken) -> (SocketAddr, Log) {
    let log = Log::default();
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = udp.local_addr().unwrap();
    let tcp = TcpListener::bind(addr).await.unwrap();
    let mut server = Server::new(Upstream { log: log.clone() });
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(5), 16);
    let stop = server.shutdown_token().clone();
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        stop.cancel();
        let _ = server.block_until_done().await;
    });
    (addr, log)
}

/// A ledger with three members (n1..n3) and a CNAME that leaves the mesh.
fn ledger() -> LedgerState {
    let mut state = LedgerState::new("10.1.0.0/24".parse().unwrap());
    let mut commands: Vec<Command> = ["n1", "n2", "n3"]
        .iter()
        .map(|host| Command::Join {
            peer: format!("12D3KooW{host}"),
            hostname: host.to_string(),
            sealing_key: [0; 32],
            endpoints: vec![],
            requested: None,
            now: 1,
            fixed_role: None,
            policy: None,
            bootstraps: true,
            platform: Default::default(),
        })
        .collect();
    commands.push(Command::PutDns {
        name: "www.weft.internal".into(),
        rtype: Rt::Cname,
        record: DnsRecord {
            value: "target.example".into(),
            ttl: 60,
        },
    });
    for (i, c) in commands.iter().enumerate() {
        state.apply(i as u64 + 1, c);
    }
    state
}

/// Starts weft's DNS server on a free loopback port over [`ledger`].
async fn weft_dns(upstreams: Option<Vec<SocketAddr>>, shutdown: &CancellationToken) -> SocketAddr {
    weft_dns_counted(upstreams, DnsMetrics::default(), shutdown).await
}

/// [`weft_dns`] counting into `metrics`.
async fn weft_dns_counted(
    upstreams: Option<Vec<SocketAddr>>,
    metrics: DnsMetrics,
    shutdown: &CancellationToken,
) -> SocketAddr {
    weft_dns_task(upstreams, metrics, "127.0.0.0/8", shutdown)
        .await
        .0
}

/// [`weft_dns_counted`] answering the clients of `clients`, with the server's task, which ends
/// when the server has stopped.
async fn weft_dns_task(
    upstreams: Option<Vec<SocketAddr>>,
    metrics: DnsMetrics,
    clients: &str,
    shutdown: &CancellationToken,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let (zone, skipped) = Zone::build(&ledger(), DOMAIN, &mut Default::default());
    assert!(skipped.is_empty(), "{skipped:?}");
    let config = DnsConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        domain: DOMAIN.into(),
        upstreams,
        cache_size: 100,
        clients: vec![clients.parse().unwrap()],
    };
    let sockets = DnsSockets::bind(config.listen)
        .await
        .expect("the DNS sockets bind");
    let (server, task) = serve(
        sockets,
        &config,
        Arc::new(ArcSwap::from_pointee(zone)),
        metrics,
        shutdown.clone(),
    );
    (server.addr, task)
}

fn count(log: &Log, name: &str) -> usize {
    log.lock()
        .unwrap()
        .iter()
        .filter(|(n, _, _)| n == name)
        .count()
}

macro_rules! require_dig {
    () => {
        if let Some(reason) = dig::unavailable() {
            support::netns::report_skip(&reason);
            return;
        }
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_names_answer_with_authority() {
    require_dig!();
    let shutdown = CancellationToken::new();
    let dns = weft_dns(None, &shutdown).await;
    let port = dns.port();
    for (i, host) in ["n1", "n2", "n3"].iter().enumerate() {
        for transport in ["+notcp", "+tcp"] {
            let reply = dig::query("127.0.0.1", port, &[&format!("{host}.{DOMAIN}"), transport]);
            assert_eq!(reply.status, "NOERROR", "{}", reply.text);
            assert!(reply.has_flag("aa"), "{}", reply.text);
            assert_eq!(
                reply.data("A"),
                [format!("10.1.0.{}", i + 1)],
                "{}",
                reply.text
            );
        }
    }
    // EDNS is answered in kind; a client without it still gets its answer.
    let reply = dig::query("127.0.0.1", port, &["n1.weft.internal", "+bufsize=1232"]);
    assert!(reply.text.contains("; EDNS: version: 0"), "{}", reply.text);
    let reply = dig::query("127.0.0.1", port, &["n1.weft.internal", "+noedns"]);
    assert_eq!(reply.data("A"), ["10.1.0.1"], "{}", reply.text);
    assert!(!reply.text.contains("EDNS"), "{}", reply.text);
    let reply = dig::query("127.0.0.1", port, &["-x", "10.1.0.2"]);
    assert_eq!(reply.data("PTR"), ["n2.weft.internal."], "{}", reply.text);
    let reply = dig::query("127.0.0.1", port, &[&format!("nobody.{DOMAIN}")]);
    assert_eq!(reply.status, "NXDOMAIN", "{}", reply.text);
    assert_eq!(reply.authority[0].rtype, "SOA", "{}", reply.text);
    assert_eq!(reply.authority[0].name, "weft.internal.", "{}", reply.text);
    // Forwarding is off: a name outside the mesh is refused, not invented.
    let reply = dig::query("127.0.0.1", port, &["long.example"]);
    assert_eq!(reply.status, "REFUSED", "{}", reply.text);
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_honours_ttls_and_passes_errors_through() {
    require_dig!();
    let shutdown = CancellationToken::new();
    let (up, log) = upstream(&shutdown).await;
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = DnsMetrics::new(&mut registry);
    let dns = weft_dns_counted(Some(vec![up]), metrics, &shutdown).await;
    let port = dns.port();

    // A TTL-2 record: served from the cache until it expires, then fetched again.
    let first = Instant::now();
    let reply = dig::query("127.0.0.1", port, &["ttl2.example"]);
    assert_eq!(reply.data("A"), ["192.0.2.2"], "{}", reply.text);
    assert!(
        !reply.has_flag("aa") && reply.has_flag("ra"),
        "{}",
        reply.text
    );
    assert_eq!(count(&log, "ttl2.example."), 1);
    while first.elapsed() < Duration::from_millis(1500) {
        let reply = dig::query("127.0.0.1", port, &["ttl2.example"]);
        assert_eq!(reply.data("A"), ["192.0.2.2"], "{}", reply.text);
        assert!(reply.answers[0].ttl <= 2, "{}", reply.text);
        assert_eq!(count(&log, "ttl2.example."), 1, "answered from the cache");
        std::thread::sleep(Duration::from_millis(100));
    }
    support::netns::wait_until(Duration::from_secs(10), "ttl2.example refetched", || {
        let reply = dig::query("127.0.0.1", port, &["ttl2.example"]);
        assert_eq!(reply.data("A"), ["192.0.2.2"], "{}", reply.text);
        (count(&log, "ttl2.example.") == 2).then_some(())
    });
    assert!(
        first.elapsed() >= Duration::from_secs(2),
        "refetched after {:?}, before the TTL ran out",
        first.elapsed()
    );

    // NXDOMAIN comes through with the upstream's SOA, and is cached by that SOA.
    for _ in 0..2 {
        let reply = dig::query("127.0.0.1", port, &["missing.example"]);
        assert_eq!(reply.status, "NXDOMAIN", "{}", reply.text);
        assert_eq!(reply.authority.len(), 1, "{}", reply.text);
        assert_eq!(reply.authority[0].rtype, "SOA", "{}", reply.text);
        assert_eq!(reply.authority[0].name, "example.", "{}", reply.text);
    }
    assert_eq!(count(&log, "missing.example."), 1);

    // SERVFAIL comes through, and is not cached.
    for _ in 0..2 {
        let reply = dig::query("127.0.0.1", port, &["fail.example"]);
        assert_eq!(reply.status, "SERVFAIL", "{}", reply.text);
    }
    assert_eq!(count(&log, "fail.example."), 2);

    // A large answer: truncated over UDP upstream, so weft asks again over TCP, and serves it
    // whole over TCP (and truncated over UDP, where dig then retries over TCP by itself).
    let reply = dig::query("127.0.0.1", port, &["big.example", "TXT", "+tcp"]);
    assert_eq!(reply.status, "NOERROR", "{}", reply.text);
    assert_eq!(reply.data("TXT").len(), 40, "{}", reply.text);
    let transports: Vec<Protocol> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|(n, _, _)| n == "big.example.")
        .map(|(_, _, p)| *p)
        .collect();
    assert_eq!(transports, [Protocol::Udp, Protocol::Tcp]);
    let reply = dig::query(
        "127.0.0.1",
        port,
        &["big.example", "TXT", "+ignore", "+bufsize=1232"],
    );
    assert!(reply.has_flag("tc"), "{}", reply.text);

    // A mesh CNAME that leaves the mesh is followed upstream.
    let reply = dig::query("127.0.0.1", port, &["www.weft.internal"]);
    assert_eq!(reply.data("CNAME"), ["target.example."], "{}", reply.text);
    assert_eq!(reply.data("A"), ["192.0.2.9"], "{}", reply.text);

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    for source in ["cache", "upstream", "mesh"] {
        assert!(
            text.contains(&format!("weft_dns_answers_total{{source=\"{source}\"}}")),
            "{text}"
        );
    }
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_upstream_gives_servfail() {
    require_dig!();
    let shutdown = CancellationToken::new();
    // A bound socket that never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let dns = weft_dns(Some(vec![silent.local_addr().unwrap()]), &shutdown).await;
    let mut command = std::process::Command::new("dig");
    command.args([
        "@127.0.0.1",
        "-p",
        &dns.port().to_string(),
        "long.example",
        "+time=6",
    ]);
    let reply = dig::run(command);
    assert_eq!(reply.status, "SERVFAIL", "{}", reply.text);
    shutdown.cancel();
}

/// A valid question for `n1.weft.internal` with id `id`.
fn probe(id: u16) -> Vec<u8> {
    let mut message = Message::query();
    message.metadata.id = id;
    message.add_query(Query::query(
        Name::from_str("n1.weft.internal.").unwrap(),
        RecordType::A,
    ));
    message.to_vec().unwrap()
}

/// Malformed messages: each is answered FORMERR or not at all.
fn corpus() -> Vec<Vec<u8>> {
    let header = |id: u16, qd: u16| -> Vec<u8> {
        let mut h = id.to_be_bytes().to_vec();
        h.extend_from_slice(&[0x01, 0x00]);
        h.extend_from_slice(&qd.to_be_bytes());
        h.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        h
    };
    let with = |id, qd, body: &[u8]| {
        let mut m = header(id, qd);
        m.extend_from_slice(body);
        m
    };
    let valid = probe(0x7000);
    vec![
        vec![],
        vec![0x12],
        valid[..11].to_vec(),
        // A question promised and missing.
        header(0x7001, 1),
        // No question at all.
        header(0x7002, 0),
        // Two questions.
        with(0x7003, 2, &[1, b'a', 0, 0, 1, 0, 1, 1, b'b', 0, 0, 1, 0, 1]),
        // A compression pointer to itself.
        with(0x7004, 1, &[0xc0, 0x0c, 0, 1, 0, 1]),
        // A pointer past the end.
        with(0x7005, 1, &[0xc0, 0xff, 0, 1, 0, 1]),
        // The message of hickory-dns issue 2210.
        with(
            0x7006,
            1,
            &[0xc0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ),
        // A label longer than 63 bytes.
        with(
            0x7007,
            1,
            &[&[64][..], &[b'a'; 64], &[0, 0, 1, 0, 1]].concat(),
        ),
        // A label running past the end.
        with(0x7008, 1, &[20, b'a', b'b']),
        // A name without its terminating zero.
        with(0x7009, 1, &[1, b'a']),
        // A question without type and class.
        with(0x700a, 1, &[1, b'a', 0]),
        // 65535 questions announced, one given.
        with(0x700b, 65535, &[1, b'a', 0, 0, 1, 0, 1]),
        // A valid question followed by records announced and missing.
        {
            let mut m = valid.clone();
            m[0] = 0x70;
            m[1] = 0x0c;
            m[7] = 5;
            m
        },
    ]
}

/// Random bytes and bit-flipped valid questions, from a fixed seed.
fn fuzz_corpus() -> Vec<Vec<u8>> {
    use rand::{Rng as _, SeedableRng as _};
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x00d5_f00d);
    let valid = probe(0x7100);
    (0..400)
        .map(|i| {
            if i % 2 == 0 {
                let len = rng.gen_range(0..600);
                (0..len).map(|_| rng.r#gen::<u8>()).collect()
            } else {
                let mut m = valid.clone();
                for _ in 0..rng.gen_range(1..6) {
                    let at = rng.gen_range(0..m.len());
                    m[at] ^= 1 << rng.gen_range(0..8);
                }
                m.truncate(rng.gen_range(1..=m.len()));
                m
            }
        })
        .collect()
}

/// Sends `packet`, then a probe, and reads until the probe's answer: every other answer must be
/// FORMERR (when `strict`) or at least a well-formed response.
async fn send_and_probe(socket: &UdpSocket, packet: &[u8], probe_id: u16, strict: bool) {
    socket.send(packet).await.unwrap();
    socket.send(&probe(probe_id)).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, socket.recv(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no answer to the probe after {packet:02x?}"))
            .unwrap();
        let answer = Message::from_vec(&buf[..n]).expect("answers are well-formed");
        let is_probe = answer.metadata.id == probe_id
            && answer.metadata.response_code == ResponseCode::NoError
            && answer.answers.len() == 1;
        if is_probe {
            return;
        }
        if strict {
            assert_eq!(
                answer.metadata.response_code,
                ResponseCode::FormErr,
                "answer to {packet:02x?}: {answer:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packets_get_formerr_or_nothing_and_the_server_keeps_answering() {
    let shutdown = CancellationToken::new();
    let dns = weft_dns(None, &shutdown).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(dns).await.unwrap();
    // Probe ids have the high bit set; the corpus's own ids do not.
    let mut probes = 0x8000u16;
    for packet in corpus() {
        send_and_probe(&socket, &packet, probes, true).await;
        probes += 1;
    }
    for packet in fuzz_corpus() {
        send_and_probe(&socket, &packet, probes, false).await;
        probes += 1;
    }
    // Over TCP: a malformed message, a lying length prefix, then a valid question on a new
    // connection.
    let mut formerr = 0;
    for packet in corpus().into_iter().filter(|p| p.len() >= 12) {
        let mut stream = TcpStream::connect(dns).await.unwrap();
        let mut framed = (packet.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&packet);
        stream.write_all(&framed).await.unwrap();
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_u16()).await;
        if let Ok(Ok(len)) = read {
            let mut buf = vec![0u8; len.into()];
            stream.read_exact(&mut buf).await.unwrap();
            let answer = Message::from_vec(&buf).expect("answers are well-formed");
            assert_eq!(answer.metadata.response_code, ResponseCode::FormErr);
            formerr += 1;
        }
    }
    assert!(
        formerr > 0,
        "malformed TCP messages with a header get FORMERR"
    );
    let mut lying = TcpStream::connect(dns).await.unwrap();
    lying.write_all(&[0xff, 0xff, 1, 2, 3]).await.unwrap();
    let mut stream = TcpStream::connect(dns).await.unwrap();
    let question = probe(0x4242);
    let mut framed = (question.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&question);
    stream.write_all(&framed).await.unwrap();
    let len = stream.read_u16().await.unwrap();
    let mut buf = vec![0u8; len.into()];
    stream.read_exact(&mut buf).await.unwrap();
    let answer = Message::from_vec(&buf).unwrap();
    assert_eq!(answer.metadata.id, 0x4242);
    assert_eq!(answer.answers.len(), 1);
    shutdown.cancel();
}

/// UDP is read by threads blocked in `recvfrom`; the server still stops when asked, with a
/// question waiting for a silent upstream, at once rather than when that question times out,
/// and its port is free again when its task has ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_stops_when_asked_and_frees_its_port() {
    let shutdown = CancellationToken::new();
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let upstreams = Some(vec![silent.local_addr().unwrap()]);
    let (dns, task) =
        weft_dns_task(upstreams, DnsMetrics::default(), "127.0.0.0/8", &shutdown).await;
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.connect(dns).await.unwrap();
    send_and_probe(&client, &probe(1), 2, false).await;
    // A name outside the mesh goes upstream, where nobody answers (for 2 s, the forwarder's
    // timeout): the server stops while it waits.
    let mut question = Message::query();
    question.add_query(Query::query(
        Name::from_str("long.example.").unwrap(),
        RecordType::A,
    ));
    client.send(&question.to_vec().unwrap()).await.unwrap();
    let mut buf = vec![0u8; 512];
    tokio::time::timeout(Duration::from_secs(5), silent.recv(&mut buf))
        .await
        .expect("the question reaches the upstream within 5 s")
        .unwrap();
    let asked = Instant::now();
    shutdown.cancel();
    // Stopping must not wait for the upstream: the 1.5 s checked below is under the
    // forwarder's 2 s per upstream server (`TIMEOUT` in `src/dns/forward.rs`).
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the DNS server stops within 5 s of being asked")
        .expect("the DNS server's task ends cleanly");
    assert!(
        asked.elapsed() < Duration::from_millis(1500),
        "the server waited {:?} for the upstream question it was asked to give up",
        asked.elapsed()
    );
    DnsSockets::bind(dns)
        .await
        .expect("the stopped server's port can be bound again");
}

/// A client outside the allowed networks gets REFUSED, for a question the server could read and
/// for one it could not (FORMERR is for clients that may ask).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_may_not_ask_is_refused_whatever_it_sends() {
    let shutdown = CancellationToken::new();
    let (dns, _task) = weft_dns_task(None, DnsMetrics::default(), "10.0.0.0/8", &shutdown).await;
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.connect(dns).await.unwrap();
    let mut unreadable = probe(7);
    // Says it holds one question, then ends inside the name.
    unreadable.truncate(16);
    for packet in [probe(7), unreadable] {
        client.send(&packet).await.unwrap();
        let mut buf = vec![0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(5), client.recv(&mut buf))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        let answer = Message::from_vec(&buf[..n]).expect("answers are well-formed");
        assert_eq!(answer.metadata.id, 7);
        assert_eq!(
            answer.metadata.response_code,
            ResponseCode::Refused,
            "answer to {packet:02x?}"
        );
    }
    shutdown.cancel();
}
