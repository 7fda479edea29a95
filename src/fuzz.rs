//! The fuzz targets: one function per decoder of input weft takes from the network, the
//! operator or Kairos, each taking arbitrary bytes. Each feeds the bytes to the real decoder
//! and to the code that acts on what it decodes, and checks the promises that code makes
//! (nothing panics; no two members share an address; a sealed frame opens to what was sealed
//! and a changed one does not open; a peer list cannot grow the redial map past its cap).
//!
//! They live in the library so that both engines run the same code: `fuzz/` (cargo-fuzz,
//! libFuzzer, nightly) explores with coverage guidance, and `tests/fuzz_corpus.rs` replays the
//! committed corpus of each target on stable in CI. [`TARGETS`] names them for both.
//!
//! Inputs that carry several messages put one per line. Where the wire format is sealed (data
//! frames, gossip) a target also seals the fuzzed bytes itself with a fixed key, so that the
//! code behind the seal is reached: a forger without the key cannot get there, a member with it
//! can.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use libp2p::PeerId;
use libp2p::identity::Keypair;
use prost::Message as _;

use crate::api::dns::{EdgevpnDns, NewRecord};
use crate::api::roles::{PolicyChange, RoleChange};
use crate::api::rotate::RotateRequest;
use crate::config::{Inputs, Origin, RawSetting, RawValue};
use crate::dataplane::frame::{self, Cipher, HEADER_LEN, Header, Key, MAX_MTU, TAG_LEN};
use crate::dataplane::replay::ReplayWindow;
use crate::dataplane::{router, session};
use crate::ledger::authority::may_propose;
use crate::ledger::catchup::{Assembly, Next, Page};
use crate::ledger::feed::Gossip;
use crate::ledger::follower::{Catchup, Replica};
use crate::ledger::limits::check_size;
use crate::ledger::raft::LedgerNode;
use crate::ledger::raft::network::LedgerRpc;
use crate::ledger::state::operator::subject;
use crate::ledger::state::{ClusterId, Command, LedgerState, Platform, RolePolicy, attribute};
use crate::operator::{OperatorKey, OperatorSecret, Scope, Signed};
use crate::p2p::admission::{self, Admission, Verdict};
use crate::p2p::redial::{self, Redial};
use crate::p2p::{gossip, records_of};
use crate::proto::p2p::v1::{AuthChallenge, AuthProof, ControlResponse, control_response};
use crate::token::{DerivedKey, Token};

/// A fuzz target: takes any bytes, panics only on a broken promise.
pub type Target = fn(&[u8]);

/// Every target by name: the name of its directory under `fuzz/corpus/` and of its cargo-fuzz
/// binary.
pub const TARGETS: &[(&str, Target)] = &[
    ("frame", frame),
    ("handshake", handshake),
    ("admission", admission),
    ("peer_exchange", peer_exchange),
    ("gossip", gossip),
    ("ledger_rpc", ledger_rpc),
    ("feed", feed),
    ("catchup", catchup),
    ("token", token),
    ("config", config),
    ("api", api),
];

/// The identities the targets play: two honest members and one that is not a member.
static ALICE: LazyLock<Keypair> = LazyLock::new(|| identity(1));
static BOB: LazyLock<Keypair> = LazyLock::new(|| identity(2));
static MALLORY: LazyLock<Keypair> = LazyLock::new(|| identity(3));
/// The network key of the targets that seal or prove.
const KEY: [u8; 32] = [7; 32];
/// How long a challenged peer has to answer.
const PROOF_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// The clock of the targets (UNIX seconds).
const NOW: u64 = 1_000;

fn identity(seed: u8) -> Keypair {
    Keypair::ed25519_from_bytes([seed; 32]).expect("32 bytes are an ed25519 secret")
}

fn peer(keys: &Keypair) -> PeerId {
    keys.public().to_peer_id()
}

fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|b| *b == b'\n')
}

/// Data-plane frames: the header parser and the opener on the bytes as received; the bytes
/// sealed and opened again (equal, and no longer opening once any byte changes), under the
/// cipher one bit of them picks; the IPv4 parsing of a packet opened from a frame; the replay
/// window on the bytes as counters.
pub fn frame(data: &[u8]) {
    let _ = Header::parse(data);
    for cipher in [Cipher::ChaCha20Poly1305, Cipher::Aes256Gcm] {
        let _ = frame::open(&Key::new(cipher, &KEY), &mut data.to_vec());
    }

    let (head, plain) = data.split_at(data.len().min(12));
    let mut header_bytes = [0u8; 12];
    header_bytes[..head.len()].copy_from_slice(head);
    let header = Header {
        receiver: u32::from_le_bytes(header_bytes[..4].try_into().expect("4 bytes")),
        counter: u64::from_le_bytes(header_bytes[4..].try_into().expect("8 bytes")),
    };
    let cipher = if header_bytes[2] & 1 == 0 {
        Cipher::ChaCha20Poly1305
    } else {
        Cipher::Aes256Gcm
    };
    let key = Key::new(cipher, &KEY);
    let plain = &plain[..plain.len().min(MAX_MTU)];
    let mut buf = vec![0u8; HEADER_LEN + plain.len() + TAG_LEN];
    buf[HEADER_LEN..HEADER_LEN + plain.len()].copy_from_slice(plain);
    let len = frame::seal(&key, header, &mut buf, plain.len()).expect("room was made");
    let sealed = buf[..len].to_vec();
    let (opened, n) = frame::open(&key, &mut buf[..len]).expect("a sealed frame opens");
    assert_eq!(opened, header);
    assert_eq!(&buf[HEADER_LEN..HEADER_LEN + n], plain);
    let at = usize::from(header_bytes[0]) * 257 % sealed.len();
    let mut changed = sealed;
    changed[at] ^= 1 << (header_bytes[1] % 8);
    assert!(
        frame::open(&key, &mut changed).is_err(),
        "a frame changed at byte {at} opened"
    );

    let _ = router::ipv4_source(plain);
    let mut icmp = [0u8; 128];
    if let Some(n) = router::icmp_unreachable(plain, Ipv4Addr::new(10, 1, 0, 1), &mut icmp) {
        assert!(n <= icmp.len());
        assert_eq!(icmp[20], 3, "an unreachable is ICMP type 3");
    }

    let mut window = ReplayWindow::default();
    let mut accepted = std::collections::HashSet::new();
    for counter in data.chunks_exact(8) {
        let counter = u64::from_le_bytes(counter.try_into().expect("8 bytes"));
        if window.accept(counter) {
            assert!(accepted.insert(counter), "counter {counter} accepted twice");
        }
    }
}

/// Data-plane handshakes: a hello as received, answered and finished by the real code, and its
/// candidates filtered as the path controller filters them (none loopback, unspecified or in
/// the overlay, however written); and a genuine exchange between two members, with candidates,
/// network id and each side's cipher offer from the bytes, whose keys must work across: both
/// sides agree on the cipher and each side's frame opens on the other.
pub fn handshake(data: &[u8]) {
    let (alice, bob) = (peer(&ALICE), peer(&BOB));
    if let Ok(hello) = serde_json::from_slice::<session::Hello>(data) {
        let _ = session::answer(&BOB, &KEY, &alice, &hello, vec![], true);
        if let Ok((pending, _)) = session::offer(&BOB, &alice, hello.network, vec![], true) {
            let _ = session::finish(&BOB, &KEY, &alice, pending, &hello);
        }
        let pool: ipnet::Ipv4Net = "10.1.0.0/24".parse().expect("a network");
        let usable = crate::dataplane::control::usable(hello.candidates, pool);
        assert!(usable.len() <= crate::dataplane::control::MAX_CANDIDATES);
        for candidate in usable {
            let ip = candidate.ip().to_canonical();
            assert!(
                candidate.port() != 0 && !ip.is_loopback() && !ip.is_unspecified(),
                "{candidate} would be probed"
            );
            if let std::net::IpAddr::V4(v4) = ip {
                assert!(
                    !pool.contains(&v4),
                    "{candidate} in the overlay would be probed"
                );
            }
        }
    }
    let candidates: Vec<SocketAddr> = data
        .chunks_exact(6)
        .take(32)
        .map(|c| {
            let ip = Ipv4Addr::new(c[0], c[1], c[2], c[3]);
            SocketAddr::from((ip, u16::from_be_bytes([c[4], c[5]])))
        })
        .collect();
    let network = data.get(..8).map_or([0; 8], |n| n.try_into().expect("8"));
    let offers = data.get(8).map_or(0, |b| *b);
    let (alice_aes, bob_aes) = (offers & 1 != 0, offers & 2 != 0);
    let (pending, offer) = session::offer(&ALICE, &bob, network, candidates, alice_aes)
        .expect("a member makes an offer");
    let (answer, bob_keys) = session::answer(&BOB, &KEY, &alice, &offer, vec![], bob_aes)
        .expect("a genuine offer is answered");
    let alice_keys =
        session::finish(&ALICE, &KEY, &bob, pending, &answer).expect("a genuine answer finishes");
    let cipher = Cipher::agreed(alice_aes, bob_aes);
    assert_eq!((alice_keys.cipher, bob_keys.cipher), (cipher, cipher));
    assert_eq!(alice_keys.send_index, bob_keys.recv_index);
    assert_eq!(alice_keys.recv_index, bob_keys.send_index);
    for (from, to) in [(&alice_keys, &bob_keys), (&bob_keys, &alice_keys)] {
        let mut buf = [0u8; HEADER_LEN + 4 + TAG_LEN];
        buf[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(b"ping");
        let header = Header {
            receiver: from.send_index,
            counter: 0,
        };
        frame::seal(&from.send, header, &mut buf, 4).expect("room was made");
        let (_, n) = frame::open(&to.recv, &mut buf).expect("one side's frame opens on the other");
        assert_eq!(&buf[HEADER_LEN..HEADER_LEN + n], b"ping");
    }
}

/// Admission: a challenge answered, and an answer to this node's challenge checked, by the
/// admission state machine; the answer as received (from a peer that holds nothing, refused),
/// and a genuine one whose sealed hostname holds the bytes (admitted with exactly that name
/// when it is one the verifier takes, else refused as malformed).
pub fn admission(data: &[u8]) {
    let keys = [DerivedKey(KEY)];
    let now = Instant::now();
    let (alice, mallory) = (peer(&ALICE), peer(&MALLORY));
    let mut verifier = Admission::new(alice, "alice".into(), PROOF_TIMEOUT);
    if let Ok(challenge) = AuthChallenge::decode(data) {
        let _ = verifier.answer(mallory, &challenge.nonce, now, &keys);
    }
    if let Ok(proof) = AuthProof::decode(data) {
        verifier.on_connected(mallory, now);
        let verdict = verifier.on_proof(mallory, &proof, &keys, now);
        assert!(
            matches!(verdict, Verdict::Rejected(_)),
            "an answer not made with the key admitted: {verdict:?}"
        );
    }

    // A genuine proof whose sealed hostname holds the bytes as they are, as a token holder
    // could seal them: taken only as UTF-8 of at most 253 bytes without control characters.
    let bob = peer(&BOB);
    let mut prover = Admission::new(bob, "bob".into(), PROOF_TIMEOUT);
    let mut verifier = Admission::new(alice, "alice".into(), PROOF_TIMEOUT);
    let nonce = verifier
        .on_connected(bob, now)
        .expect("a new peer is challenged");
    let (answer, _) = prover
        .answer(alice, &nonce, now, &keys)
        .expect("a challenge is answered");
    let mut proof = answer.to_proto();
    let theirs: admission::Nonce = proof.nonce[..].try_into().expect("a nonce");
    proof.sealed_hostname =
        admission::seal_name_bytes(&keys[0], &bob, &alice, (&nonce, &theirs), data);
    let verdict = verifier.on_proof(bob, &proof, &keys, now);
    let acceptable = std::str::from_utf8(data)
        .ok()
        .filter(|name| name.len() <= admission::MAX_HOSTNAME)
        .filter(|name| !name.chars().any(char::is_control));
    match (verdict, acceptable) {
        (Verdict::Admitted { hostname }, Some(name)) => assert_eq!(hostname, name),
        (Verdict::Rejected(admission::Rejection::Malformed), None) => {}
        (verdict, _) => panic!("hostname {:?}: {verdict:?}", String::from_utf8_lossy(data)),
    }
}

/// Peer exchange: a control response as received, its records taken as the swarm takes them
/// (at most 512, with at most 16 addresses each) into the redial map, which keeps at most 16
/// addresses per peer however often a record repeats.
pub fn peer_exchange(data: &[u8]) {
    let Ok(response) = ControlResponse::decode(data) else {
        return;
    };
    let Some(control_response::Kind::Peers(list)) = response.kind else {
        return;
    };
    let records = records_of(list);
    assert!(records.len() <= redial::MAX_PEER_RECORDS);
    assert!(records.iter().all(|(_, a)| a.len() <= redial::MAX_ADDRS));
    let mut redial = Redial::default();
    let now = Instant::now();
    for (peer, addrs) in records {
        redial.heard_of(peer, &addrs, now);
    }
    let due = redial.due(now + redial::MIN_BACKOFF, |_| false);
    assert!(due.iter().all(|(_, a, _)| a.len() <= redial::MAX_ADDRS));
}

/// Gossip: a message as received opened with the network key; the bytes sealed by a member and
/// opened (equal), and opened under another author (refused).
pub fn gossip(data: &[u8]) {
    let key = DerivedKey(KEY);
    let topic = "/weft/gossip/1";
    let (alice, bob) = (peer(&ALICE), peer(&BOB));
    let _ = gossip::open(&key, topic, &alice, data);
    let sealed = gossip::seal(&key, topic, &alice, data);
    assert_eq!(
        gossip::open(&key, topic, &alice, &sealed).as_deref(),
        Ok(data)
    );
    assert!(gossip::open(&key, topic, &bob, &sealed).is_err());
}

/// A ledger whose cluster exists and where Alice and Bob are members.
fn seeded_state() -> LedgerState {
    let mut state = LedgerState::new("10.1.0.0/28".parse().expect("a network"));
    state.apply(
        1,
        &Command::Genesis(ClusterId {
            created_at: NOW,
            id: 1,
        }),
    );
    for keys in [&*ALICE, &*BOB] {
        let peer = peer(keys).to_string();
        let index = state.applied() + 1;
        state.apply(
            index,
            &Command::Join {
                hostname: peer.clone(),
                peer,
                sealing_key: [0; 32],
                endpoints: vec![],
                requested: None,
                now: NOW,
                fixed_role: None,
                policy: None,
                bootstraps: true,
                platform: Platform::default(),
            },
        );
    }
    state
}

/// Applies `command` as the leader applies a proposal from `sender`, then checks the state.
fn propose(state: &mut LedgerState, command: Command, sender: &str) {
    propose_under(state, command, sender, None);
}

/// [`propose`] in a mesh whose nodes run with `operator`'s key.
fn propose_under(
    state: &mut LedgerState,
    command: Command,
    sender: &str,
    operator: Option<&OperatorKey>,
) {
    let cluster = state.cluster();
    if check_size(&command).is_err()
        || may_propose(&command, sender, operator, cluster, NOW).is_err()
    {
        return;
    }
    let index = state.applied() + 1;
    state.apply(index, &attribute(command, sender, NOW));
    if let Err(broken) = state.check_addresses() {
        panic!("{broken}");
    }
}

/// Ledger RPCs, one per line, the first byte naming the sender (Alice, Bob or Mallory): each
/// decoded as the ledger service decodes it, and a proposal applied as the leader would apply
/// it after its size and authority checks. Address allocation keeps its promises after every
/// command; a state snapshot restores to the same state.
pub fn ledger_rpc(data: &[u8]) {
    let mut state = seeded_state();
    let senders = [peer(&ALICE), peer(&BOB), peer(&MALLORY)].map(|p| p.to_string());
    for line in lines(data) {
        let Some((first, json)) = line.split_first() else {
            continue;
        };
        let sender = &senders[usize::from(*first) % senders.len()];
        if let Ok(LedgerRpc::Propose(command)) = serde_json::from_slice(json) {
            propose(&mut state, command, sender);
        }
    }
    let restored = LedgerState::restore(&state.snapshot()).expect("a snapshot restores");
    assert_eq!(restored, state);
}

/// Feed messages and heartbeats, one per line, written by the leader a follower follows: taken by the
/// follower's replica, whose state keeps the allocation promises.
pub fn feed(data: &[u8]) {
    let leader = peer(&ALICE).to_string();
    let cluster = ClusterId {
        created_at: NOW,
        id: 1,
    };
    let mut replica = Replica::default();
    replica.install(
        Catchup {
            cluster,
            leader: Some((
                1,
                LedgerNode {
                    peer_id: leader.clone(),
                },
            )),
            voters: vec![leader.clone()],
            position: 3,
            state: std::sync::Arc::new(seeded_state()),
        },
        std::time::Instant::now(),
    );
    let now = Instant::now();
    for line in lines(data) {
        if let Some(message) = crate::ledger::feed::decode(line) {
            match message {
                Gossip::LedgerFeed(feed) => replica.on_feed(feed, &leader, now),
                Gossip::LedgerBeat(beat) => replica.on_beat(beat, &leader, now),
            };
            let state = replica.state().expect("the replica follows");
            if let Err(broken) = state.check_addresses() {
                panic!("{broken}");
            }
        }
    }
}

/// Catch-up pages, one per line, taken by a follower's assembly in the order given; a whole
/// encoding is decoded as the state.
pub fn catchup(data: &[u8]) {
    let _ = LedgerState::restore(data);
    let mut assembly = Assembly::default();
    for line in lines(data) {
        let Ok(page) = serde_json::from_slice::<Page>(line) else {
            continue;
        };
        match assembly.take(page) {
            Ok(Next::Whole(whole)) => {
                let _ = whole.decode();
                return;
            }
            Ok(Next::Ask { .. }) => {}
            Err(_) => return,
        }
    }
}

/// Network tokens: a token as an operator or cloud-config gives it; one that parses encodes
/// to text that parses to the same token.
pub fn token(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(token) = Token::parse(text) else {
        return;
    };
    let _ = token.describe();
    let again = Token::parse(&token.encode()).expect("an encoded token parses");
    assert!(again == token, "a token changed through its encoding");
}

/// Configuration: the bytes as weft's `--config` file, as a Kairos cloud-config, and as
/// `NAME=value` lines of edgevpn's environment, each resolved as `weft up` resolves it.
pub fn config(data: &[u8]) {
    // A token file named in the input is read, and reading a device or a descriptor (a
    // terminal, stdin) may block: inputs that could name one, escaped too, are left out.
    let names = |pattern: &[u8]| data.windows(pattern.len()).any(|w| w == pattern);
    if names(b"/dev/") || names(b"/proc/") || names(b"/fd/") || data.contains(&b'\\') {
        return;
    }
    static FILES: AtomicU64 = AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "weft-fuzz-{}-{}.yaml",
        std::process::id(),
        FILES.fetch_add(1, Ordering::Relaxed)
    ));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let named = path.display().to_string();
    for key in ["config", "cloud_config"] {
        let inputs = Inputs {
            args: vec![RawSetting {
                key,
                origin: Origin::Flag(format!("--{key}")),
                value: RawValue::Text(named.clone()),
            }],
            system_hostname: "fuzz".into(),
            ..Inputs::default()
        };
        let _ = crate::config::resolve(&inputs);
    }
    let _ = std::fs::remove_file(&path);
    let env = String::from_utf8_lossy(data)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let inputs = Inputs {
        env,
        system_hostname: "fuzz".into(),
        ..Inputs::default()
    };
    let _ = crate::config::resolve(&inputs);
}

/// The operator's key of the `api` target's keyed mesh (drawn once per process: what is
/// checked is that only its signature passes, whichever key it is).
static OPERATOR: LazyLock<OperatorSecret> = LazyLock::new(OperatorSecret::generate);

/// API request bodies, one per line: a DNS record (weft's and edgevpn's form), a role change, a
/// role policy, a token rotation's request, and an operator's signed command, each decoded as
/// the API decodes it; and a ledger write (`bucket/key/value`, edgevpn's and weft's KV routes).
/// Each is turned into the command the API proposes and applied to a ledger. A signed command
/// goes to a mesh run with the operator's key twice: as given, which never verifies, and signed
/// with the key, which passes the leader's checks as far as its cluster and age allow.
pub fn api(data: &[u8]) {
    let _ = api_states(data);
}

/// [`api`]'s work, returning the mesh without and the mesh with the operator's key.
fn api_states(data: &[u8]) -> (LedgerState, LedgerState) {
    let mut state = seeded_state();
    let mut keyed = seeded_state();
    let key = OPERATOR.public();
    let sender = peer(&ALICE).to_string();
    for line in lines(data) {
        if let Ok(change) = serde_json::from_slice::<PolicyChange>(line) {
            let policy = RolePolicy {
                control_planes: change.control_planes,
            };
            propose(&mut state, Command::SetRolePolicy(policy), &sender);
        }
        if let Ok(request) = serde_json::from_slice::<RotateRequest>(line)
            && let Some(grant) = request.grant
        {
            let _ = grant.command();
        }
        if let Ok(signed) = serde_json::from_slice::<Signed>(line)
            && let Ok(command) = signed.command()
            && subject(&command).is_some()
        {
            let forged = Command::Operator(Box::new(signed.clone()));
            assert!(
                may_propose(&forged, &sender, Some(&key), keyed.cluster(), NOW).is_err(),
                "a command not signed with the operator's key passed the leader's check"
            );
            let scope = Scope {
                cluster: signed.cluster,
                network: signed.network,
            };
            let genuine = OPERATOR.sign_in(signed.seq, &command, scope);
            propose_under(
                &mut keyed,
                Command::Operator(Box::new(genuine)),
                &sender,
                Some(&key),
            );
        }
        if let Ok(text) = std::str::from_utf8(line) {
            let mut parts = text.splitn(3, '/');
            if let (Some(bucket), Some(key), Some(value)) =
                (parts.next(), parts.next(), parts.next())
            {
                let (bucket, key) = (bucket.to_string(), key.to_string());
                let put = Command::KvPut {
                    bucket: bucket.clone(),
                    key: key.clone(),
                    value: value.to_string(),
                };
                propose(&mut state, put, &sender);
                if value.is_empty() {
                    propose(
                        &mut state,
                        Command::KvDelete {
                            bucket,
                            key: Some(key),
                        },
                        &sender,
                    );
                }
            }
        }
        if let Ok(record) = serde_json::from_slice::<NewRecord>(line)
            && let Ok(command) = record.command()
        {
            propose(&mut state, command, &sender);
        }
        if let Ok(entry) = serde_json::from_slice::<EdgevpnDns>(line)
            && let Ok(command) = entry.command()
        {
            propose(&mut state, command, &sender);
        }
        if let Ok(change) = serde_json::from_slice::<RoleChange>(line)
            && let Ok(role) = crate::ledger::state::parse_role_choice(&change.role)
        {
            let command = Command::SetFixedRole {
                peer: peer(&BOB).to_string(),
                role,
                force: change.force,
            };
            propose(&mut state, command, &sender);
        }
    }
    (state, keyed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `api` target reaches what it feeds: a body it decodes is applied, and an operator's
    /// command applies in the keyed mesh only as signed with the key.
    #[test]
    fn the_api_target_applies_what_it_decodes_and_only_genuine_operator_commands() {
        let bob = peer(&BOB).to_string();
        let deny = serde_json::to_string(&Command::Deny { peer: bob.clone() }).unwrap();
        let forged = Signed {
            seq: 7,
            command: deny,
            signature: "AAAA".into(),
            cluster: None,
            network: None,
        };
        let input = format!(
            "{}\n{{\"control_planes\":3}}\nweb/home/hello",
            serde_json::to_string(&forged).unwrap()
        );
        let (state, keyed) = api_states(input.as_bytes());
        assert!(
            keyed.is_denied(&bob),
            "signed with the key, the denial applies"
        );
        assert!(
            !state.is_denied(&bob),
            "the unkeyed mesh takes no signed command"
        );
        assert_eq!(state.policy().control_planes, 3);
        assert_eq!(
            state
                .bucket("web")
                .and_then(|b| b.get("home"))
                .map(String::as_str),
            Some("hello")
        );
    }

    #[test]
    fn every_target_takes_empty_and_arbitrary_input() {
        for (name, target) in TARGETS {
            for input in [&b""[..], b"\n\n", b"\x00\xff{}[]", b"{\"Propose\":null}"] {
                let outcome = std::panic::catch_unwind(|| target(input));
                assert!(outcome.is_ok(), "{name} panicked on {input:?}");
            }
        }
    }
}
