//! Session keys between two members, pure: the handshake that makes them and the keyring that
//! rotates them.
//!
//! The handshake is one request and one answer over the admitted libp2p connection. Each side
//! sends a [`Hello`]: a fresh X25519 public key, its UDP candidates, and an ed25519 signature by
//! its identity over both PeerIds and everything it sends (the answer also covers the offer).
//! Both sides then run HKDF-SHA256 over the X25519 secret, salted with the data-plane key of
//! the token the offer names (its network id: during a token rotation a member holds two, and
//! the answering side uses the one the offer was made with, or refuses). The output is two
//! directional keys and the two session indexes, so a stranger without the token cannot make
//! keys even with a member's identity. The keys are AES-256-GCM keys when both hellos offer it
//! (both machines run it in hardware), else ChaCha20-Poly1305 ([`Cipher::agreed`]). The offer
//! is outside the signature, so that a node of an earlier weft, which signs and checks the
//! transcript without it, still makes sessions with this one (in ChaCha20-Poly1305).
//! AES-256-GCM keys come from another HKDF label, so the two ciphers never share key bytes.
//! A flag changed on one side in transit would make the ends disagree and open nothing of
//! each other's; both stripped would fall back to ChaCha20-Poly1305, a loss of speed only. The
//! hellos travel over the admitted libp2p connection, which libp2p authenticates and encrypts,
//! so neither can happen without breaking it. A [`Keyring`] keeps the current
//! session, the one before it (accepted during a rekey) and, on the answering side, the next
//! one until the peer's first packet proves that the peer has it too.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hkdf::Hkdf;
use libp2p::PeerId;
use libp2p::identity::{Keypair, PublicKey};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use x25519_dalek::{X25519_BASEPOINT_BYTES, x25519};

use super::frame::{Cipher, Header, Key};
use super::replay::ReplayWindow;

/// A session is replaced after this long.
pub const REKEY_AFTER: Duration = Duration::from_secs(120);
/// A session is replaced after sending this many packets.
pub const REKEY_AFTER_PACKETS: u64 = 1 << 60;
/// An AES-256-GCM session is replaced after sending this many packets, half of what it may
/// send ([`REJECT_AFTER_PACKETS_AES_GCM`]). At the default MTU the [`REKEY_AFTER`] of two
/// minutes comes first below about 1.6 Gbit/s in each direction.
pub const REKEY_AFTER_PACKETS_AES_GCM: u64 = 1 << 24;
/// An AES-256-GCM session never sends more than this many packets: 2^25 frames of at most
/// 9,032 bytes are under 2^34.5 AES blocks, the most TLS 1.3 seals under one AES-GCM key (RFC
/// 8446, 5.5). ChaCha20-Poly1305 has no such data limit short of its counter's.
pub const REJECT_AFTER_PACKETS_AES_GCM: u64 = 1 << 25;
/// A session never sends more than this many packets (the nonce must not repeat).
pub const REJECT_AFTER_PACKETS: u64 = u64::MAX - (1 << 16);
/// A session older than this is not used any more, even when no rekey succeeded.
pub const REJECT_AFTER: Duration = Duration::from_secs(3 * 60);

const SIGN_LABEL: &[u8] = b"weft/dataplane/hello/1";
const KEYS_LABEL: &[u8] = b"weft/dataplane/keys/1";
/// Added to [`KEYS_LABEL`] for AES-256-GCM keys.
const AES_GCM_LABEL: &[u8] = b"/aes-256-gcm";

/// One side's handshake message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The sender's fresh X25519 public key.
    pub ephemeral: [u8; 32],
    /// The sender's identity public key (protobuf encoding); it must match its PeerId.
    pub identity: Vec<u8>,
    /// UDP addresses the sender's data plane may be reached at.
    pub candidates: Vec<SocketAddr>,
    /// The network id of the token whose data-plane key salts the session keys: the
    /// initiator's current token; the answer repeats the offer's.
    #[serde(default)]
    pub network: [u8; 8],
    /// Whether the sender offers AES-256-GCM (it runs it in hardware). Not signed: bound into
    /// the keys instead (see the module's notes). Left out when false, as earlier wefts send it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub aes_gcm: bool,
    /// The sender's signature over the transcript.
    pub signature: Vec<u8>,
}

/// Why a handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("the identity key does not belong to {0}")]
    WrongIdentity(PeerId),
    #[error("the identity key cannot be decoded")]
    BadIdentity,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("the ephemeral key is of low order")]
    LowOrder,
    #[error("the answer is salted with another token than the offer")]
    OtherNetwork,
    #[error("cannot sign: {0}")]
    Sign(String),
}

/// The initiator's state between its offer and the answer.
pub struct Pending {
    secret: [u8; 32],
    offer: Hello,
}

/// Which end of a handshake a session came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Initiator,
    Responder,
}

/// The keys and indexes one handshake made.
pub struct Keys {
    pub send: Key,
    pub recv: Key,
    /// The index this side's packets carry (the peer's receiving index).
    pub send_index: u32,
    /// The index the peer's packets carry.
    pub recv_index: u32,
    pub role: Role,
    pub cipher: Cipher,
}

fn transcript(
    role: Role,
    from: &PeerId,
    to: &PeerId,
    hello: &Hello,
    offer: Option<&Hello>,
) -> Vec<u8> {
    let mut out = SIGN_LABEL.to_vec();
    out.push(match role {
        Role::Initiator => 0,
        Role::Responder => 1,
    });
    for part in [from.to_bytes(), to.to_bytes()] {
        out.extend_from_slice(&(part.len() as u32).to_le_bytes());
        out.extend_from_slice(&part);
    }
    out.extend_from_slice(&hello.ephemeral);
    out.extend_from_slice(&hello.network);
    out.extend_from_slice(&(hello.identity.len() as u32).to_le_bytes());
    out.extend_from_slice(&hello.identity);
    out.extend_from_slice(&(hello.candidates.len() as u32).to_le_bytes());
    for candidate in &hello.candidates {
        let text = candidate.to_string();
        out.extend_from_slice(&(text.len() as u32).to_le_bytes());
        out.extend_from_slice(text.as_bytes());
    }
    if let Some(offer) = offer {
        out.extend_from_slice(&offer.ephemeral);
        out.extend_from_slice(&(offer.signature.len() as u32).to_le_bytes());
        out.extend_from_slice(&offer.signature);
    }
    out
}

fn hello(
    identity: &Keypair,
    role: Role,
    (me, peer): (&PeerId, &PeerId),
    network: [u8; 8],
    candidates: Vec<SocketAddr>,
    aes_gcm: bool,
    offer: Option<&Hello>,
) -> Result<([u8; 32], Hello), HandshakeError> {
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let mut hello = Hello {
        ephemeral: x25519(secret, X25519_BASEPOINT_BYTES),
        identity: identity.public().encode_protobuf(),
        candidates,
        network,
        aes_gcm,
        signature: Vec::new(),
    };
    hello.signature = identity
        .sign(&transcript(role, me, peer, &hello, offer))
        .map_err(|e| HandshakeError::Sign(e.to_string()))?;
    Ok((secret, hello))
}

fn verify(
    role: Role,
    from: &PeerId,
    to: &PeerId,
    hello: &Hello,
    offer: Option<&Hello>,
) -> Result<(), HandshakeError> {
    let key =
        PublicKey::try_decode_protobuf(&hello.identity).map_err(|_| HandshakeError::BadIdentity)?;
    if key.to_peer_id() != *from {
        return Err(HandshakeError::WrongIdentity(*from));
    }
    if !key.verify(&transcript(role, from, to, hello, offer), &hello.signature) {
        return Err(HandshakeError::BadSignature);
    }
    Ok(())
}

fn derive(
    data_key: &[u8; 32],
    secret: [u8; 32],
    initiator: (&PeerId, &Hello),
    responder: (&PeerId, &Hello),
    role: Role,
) -> Result<Keys, HandshakeError> {
    let theirs = match role {
        Role::Initiator => responder.1.ephemeral,
        Role::Responder => initiator.1.ephemeral,
    };
    let shared = x25519(secret, theirs);
    if shared == [0u8; 32] {
        return Err(HandshakeError::LowOrder);
    }
    let cipher = Cipher::agreed(initiator.1.aes_gcm, responder.1.aes_gcm);
    let mut info = KEYS_LABEL.to_vec();
    if cipher == Cipher::Aes256Gcm {
        info.extend_from_slice(AES_GCM_LABEL);
    }
    info.extend_from_slice(&initiator.0.to_bytes());
    info.extend_from_slice(&responder.0.to_bytes());
    info.extend_from_slice(&initiator.1.ephemeral);
    info.extend_from_slice(&responder.1.ephemeral);
    let mut okm = [0u8; 72];
    Hkdf::<Sha256>::new(Some(data_key), &shared)
        .expand(&info, &mut okm)
        .expect("72 bytes is a valid HKDF-SHA256 output length");
    let to_responder = Key::new(cipher, okm[..32].try_into().expect("32 bytes"));
    let to_initiator = Key::new(cipher, okm[32..64].try_into().expect("32 bytes"));
    let initiator_index = u32::from_le_bytes([okm[64], okm[65], okm[66], okm[67]]);
    let responder_index = u32::from_le_bytes([okm[68], okm[69], okm[70], okm[71]]);
    Ok(match role {
        Role::Initiator => Keys {
            send: to_responder,
            recv: to_initiator,
            send_index: responder_index,
            recv_index: initiator_index,
            role,
            cipher,
        },
        Role::Responder => Keys {
            send: to_initiator,
            recv: to_responder,
            send_index: initiator_index,
            recv_index: responder_index,
            role,
            cipher,
        },
    })
}

/// Starts a handshake with `peer`, salted with the data-plane key of the token whose network id
/// is `network`, offering AES-256-GCM when `aes_gcm`: the offer to send and the state to
/// finish it with.
pub fn offer(
    identity: &Keypair,
    peer: &PeerId,
    network: [u8; 8],
    candidates: Vec<SocketAddr>,
    aes_gcm: bool,
) -> Result<(Pending, Hello), HandshakeError> {
    let me = identity.public().to_peer_id();
    let (secret, offer) = hello(
        identity,
        Role::Initiator,
        (&me, peer),
        network,
        candidates,
        aes_gcm,
        None,
    )?;
    Ok((
        Pending {
            secret,
            offer: offer.clone(),
        },
        offer,
    ))
}

/// Answers `peer`'s offer, with `data_key` the data-plane key of the token the offer names,
/// offering AES-256-GCM when `aes_gcm`: the answer to send back and this side's keys.
pub fn answer(
    identity: &Keypair,
    data_key: &[u8; 32],
    peer: &PeerId,
    offer: &Hello,
    candidates: Vec<SocketAddr>,
    aes_gcm: bool,
) -> Result<(Hello, Keys), HandshakeError> {
    let me = identity.public().to_peer_id();
    verify(Role::Initiator, peer, &me, offer, None)?;
    let (secret, answer) = hello(
        identity,
        Role::Responder,
        (&me, peer),
        offer.network,
        candidates,
        aes_gcm,
        Some(offer),
    )?;
    let keys = derive(
        data_key,
        secret,
        (peer, offer),
        (&me, &answer),
        Role::Responder,
    )?;
    Ok((answer, keys))
}

/// Finishes a handshake this side started, with `peer`'s answer.
pub fn finish(
    identity: &Keypair,
    data_key: &[u8; 32],
    peer: &PeerId,
    pending: Pending,
    answer: &Hello,
) -> Result<Keys, HandshakeError> {
    let me = identity.public().to_peer_id();
    verify(Role::Responder, peer, &me, answer, Some(&pending.offer))?;
    if answer.network != pending.offer.network {
        return Err(HandshakeError::OtherNetwork);
    }
    derive(
        data_key,
        pending.secret,
        (&me, &pending.offer),
        (peer, answer),
        Role::Initiator,
    )
}

/// One session: keys, the send counter and the receive replay window.
pub struct Session {
    pub keys: Keys,
    pub established: Instant,
    next_counter: AtomicU64,
    replay: Mutex<ReplayWindow>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("send_index", &self.keys.send_index)
            .field("recv_index", &self.keys.recv_index)
            .field("established", &self.established)
            .finish_non_exhaustive()
    }
}

impl Session {
    pub fn new(keys: Keys, established: Instant) -> Self {
        Session {
            keys,
            established,
            next_counter: AtomicU64::new(0),
            replay: Mutex::new(ReplayWindow::default()),
        }
    }

    /// The header of the next packet sent, `None` once the session may send no more.
    pub fn next_header(&self) -> Option<Header> {
        let counter = self.next_counter.fetch_add(1, Ordering::Relaxed);
        let limit = match self.keys.cipher {
            Cipher::ChaCha20Poly1305 => REJECT_AFTER_PACKETS,
            Cipher::Aes256Gcm => REJECT_AFTER_PACKETS_AES_GCM,
        };
        (counter < limit).then_some(Header {
            receiver: self.keys.send_index,
            counter,
        })
    }

    /// Packets sent so far.
    pub fn sent(&self) -> u64 {
        self.next_counter.load(Ordering::Relaxed)
    }

    /// Records an authenticated counter; `false` when it is a replay or too old.
    pub fn accept(&self, counter: u64) -> bool {
        self.replay
            .lock()
            .map(|mut window| window.accept(counter))
            .unwrap_or(false)
    }

    /// Whether this session has sealed so many packets that it must be replaced, whatever
    /// its age (its age is the path controller's rule, [`super::paths`]).
    pub fn worn(&self) -> bool {
        let limit = match self.keys.cipher {
            Cipher::ChaCha20Poly1305 => REKEY_AFTER_PACKETS,
            Cipher::Aes256Gcm => REKEY_AFTER_PACKETS_AES_GCM,
        };
        self.sent() >= limit
    }

    /// Whether this session is too old to carry traffic.
    pub fn expired(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.established) >= REJECT_AFTER
    }
}

/// The sessions with one peer.
#[derive(Debug, Default)]
pub struct Keyring {
    current: Option<Arc<Session>>,
    previous: Option<Arc<Session>>,
    /// Answered but not yet used by the peer.
    next: Option<Arc<Session>>,
}

impl Keyring {
    /// Installs a session; an initiator's is used at once, a responder's once the peer uses it
    /// (see [`Keyring::confirm`]) or at once when there is nothing else to send with.
    pub fn install(&mut self, session: Arc<Session>) {
        match session.keys.role {
            Role::Initiator => {
                // When both sides started a handshake at once, the peer may send on the one this
                // side answered: keep it receivable rather than the older current one.
                let old = self.current.replace(session);
                self.previous = self.next.take().or(old);
            }
            Role::Responder => {
                // An answered session the peer never used may still have frames in flight.
                if let Some(unconfirmed) = self.next.replace(session) {
                    self.previous = Some(unconfirmed);
                }
            }
        }
    }

    /// The peer sent on `recv_index`: if that is the next session, it becomes current.
    /// Returns whether the keyring changed.
    pub fn confirm(&mut self, recv_index: u32) -> bool {
        match &self.next {
            Some(next) if next.keys.recv_index == recv_index => {
                if let Some(old) = self.current.take() {
                    self.previous = Some(old);
                }
                self.current = self.next.take();
                true
            }
            _ => false,
        }
    }

    /// The receiving index of the answered session the peer has not used yet.
    pub fn pending_index(&self) -> Option<u32> {
        self.next.as_ref().map(|s| s.keys.recv_index)
    }

    /// The session to send with.
    pub fn sending(&self) -> Option<&Arc<Session>> {
        self.current.as_ref().or(self.next.as_ref())
    }

    /// The sessions whose packets are accepted.
    pub fn receiving(&self) -> impl Iterator<Item = &Arc<Session>> {
        [&self.current, &self.previous, &self.next]
            .into_iter()
            .flatten()
    }

    /// Drops sessions too old to use; returns whether any was dropped.
    pub fn expire(&mut self, now: Instant) -> bool {
        let mut changed = false;
        for slot in [&mut self.current, &mut self.previous, &mut self.next] {
            if slot.as_ref().is_some_and(|s| s.expired(now)) {
                *slot = None;
                changed = true;
            }
        }
        changed
    }

    /// When the session in use was made, if there is one.
    pub fn established(&self) -> Option<Instant> {
        self.sending().map(|s| s.established)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::frame::{self, HEADER_LEN, OVERHEAD};
    use super::*;

    const DATA_KEY: [u8; 32] = [7; 32];

    fn handshake(a: &Keypair, b: &Keypair, now: Instant) -> (Session, Session) {
        handshake_offering(a, b, now, (true, true))
    }

    /// A handshake where `a` and `b` offer AES-256-GCM or not.
    fn handshake_offering(
        a: &Keypair,
        b: &Keypair,
        now: Instant,
        (a_aes, b_aes): (bool, bool),
    ) -> (Session, Session) {
        let (pa, pb) = (a.public().to_peer_id(), b.public().to_peer_id());
        let (pending, offer) = offer(
            a,
            &pb,
            [0; 8],
            vec!["192.0.2.1:5000".parse().unwrap()],
            a_aes,
        )
        .unwrap();
        let (reply, responder) = answer(b, &DATA_KEY, &pa, &offer, vec![], b_aes).unwrap();
        let initiator = finish(a, &DATA_KEY, &pb, pending, &reply).unwrap();
        (Session::new(initiator, now), Session::new(responder, now))
    }

    fn send(from: &Session, payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; payload.len() + OVERHEAD];
        buf[HEADER_LEN..HEADER_LEN + payload.len()].copy_from_slice(payload);
        let header = from.next_header().unwrap();
        frame::seal(&from.keys.send, header, &mut buf, payload.len()).unwrap();
        buf
    }

    /// What a receiver holding `ring` does with a frame: the payload, or `None` when dropped.
    fn receive(ring: &mut Keyring, mut frame: Vec<u8>) -> Option<Vec<u8>> {
        let header = frame::Header::parse(&frame).ok()?;
        let session = ring
            .receiving()
            .find(|s| s.keys.recv_index == header.receiver)?
            .clone();
        let (_, len) = frame::open(&session.keys.recv, &mut frame).ok()?;
        if !session.accept(header.counter) {
            return None;
        }
        ring.confirm(header.receiver);
        Some(frame[HEADER_LEN..HEADER_LEN + len].to_vec())
    }

    #[test]
    fn both_sides_derive_matching_keys_and_indexes() {
        let (a, b) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let (ia, rb) = handshake(&a, &b, Instant::now());
        assert_eq!(ia.keys.send_index, rb.keys.recv_index);
        assert_eq!(ia.keys.recv_index, rb.keys.send_index);
        let mut ring = Keyring::default();
        ring.install(Arc::new(rb));
        assert_eq!(
            receive(&mut ring, send(&ia, b"hello")),
            Some(b"hello".to_vec())
        );
    }

    #[test]
    fn both_ends_agree_on_the_cipher_whatever_each_offers_and_frames_cross_both_ways() {
        let (a, b) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        for offers in [(true, true), (true, false), (false, true), (false, false)] {
            let (ia, rb) = handshake_offering(&a, &b, Instant::now(), offers);
            let cipher = Cipher::agreed(offers.0, offers.1);
            assert_eq!(
                (ia.keys.cipher, rb.keys.cipher),
                (cipher, cipher),
                "{offers:?}"
            );
            let mut b_ring = Keyring::default();
            b_ring.install(Arc::new(rb));
            assert_eq!(
                receive(&mut b_ring, send(&ia, b"to b")),
                Some(b"to b".to_vec()),
                "{offers:?}"
            );
            let rb = b_ring.sending().unwrap().clone();
            let mut a_ring = Keyring::default();
            a_ring.install(Arc::new(ia));
            assert_eq!(
                receive(&mut a_ring, send(&rb, b"to a")),
                Some(b"to a".to_vec()),
                "{offers:?}"
            );
        }
    }

    #[test]
    fn a_hello_of_an_earlier_weft_is_taken_and_makes_a_chacha_session() {
        let (a, b) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let (pa, pb) = (a.public().to_peer_id(), b.public().to_peer_id());
        let (pending, offer) = offer(&a, &pb, [0; 8], vec![], false).unwrap();
        let text = serde_json::to_string(&offer).unwrap();
        assert!(!text.contains("aes_gcm"), "sent as earlier wefts send it");
        let (reply, responder) = answer(
            &b,
            &DATA_KEY,
            &pa,
            &serde_json::from_str(&text).unwrap(),
            vec![],
            true,
        )
        .unwrap();
        assert!(reply.aes_gcm);
        let initiator = finish(&a, &DATA_KEY, &pb, pending, &reply).unwrap();
        assert_eq!(initiator.cipher, Cipher::ChaCha20Poly1305);
        assert_eq!(responder.cipher, Cipher::ChaCha20Poly1305);
    }

    #[test]
    fn an_offer_changed_on_one_side_makes_the_ends_disagree_and_open_nothing() {
        let (a, b) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let (pa, pb) = (a.public().to_peer_id(), b.public().to_peer_id());
        let (pending, mut offer) = offer(&a, &pb, [0; 8], vec![], true).unwrap();
        offer.aes_gcm = false;
        let (reply, responder) = answer(&b, &DATA_KEY, &pa, &offer, vec![], true).unwrap();
        let initiator = finish(&a, &DATA_KEY, &pb, pending, &reply).unwrap();
        assert_ne!(initiator.cipher, responder.cipher);
        let mut ring = Keyring::default();
        ring.install(Arc::new(Session::new(responder, Instant::now())));
        let sent = send(&Session::new(initiator, Instant::now()), b"hello");
        assert_eq!(receive(&mut ring, sent), None);
    }

    #[test]
    fn a_forged_or_misdirected_hello_is_refused() {
        let (a, b, c) = (
            Keypair::generate_ed25519(),
            Keypair::generate_ed25519(),
            Keypair::generate_ed25519(),
        );
        let (pa, pb) = (a.public().to_peer_id(), b.public().to_peer_id());
        let (_, mut offer) = offer(&a, &pb, [0; 8], vec![], true).unwrap();
        // Signed by a but presented as c's.
        let pc = c.public().to_peer_id();
        assert!(matches!(
            answer(&b, &DATA_KEY, &pc, &offer, vec![], true),
            Err(HandshakeError::WrongIdentity(_))
        ));
        // A candidate added in flight breaks the signature.
        offer.candidates.push("203.0.113.9:1".parse().unwrap());
        assert_eq!(
            answer(&b, &DATA_KEY, &pa, &offer, vec![], true).err(),
            Some(HandshakeError::BadSignature)
        );
        // Nor does naming another token in flight.
        let (_, mut renamed) = super::offer(&a, &pb, [0; 8], vec![], true).unwrap();
        renamed.network = [1; 8];
        assert_eq!(
            answer(&b, &DATA_KEY, &pa, &renamed, vec![], true).err(),
            Some(HandshakeError::BadSignature)
        );
        // An offer meant for someone else does not verify at b.
        let (_, other) = super::offer(&a, &pc, [0; 8], vec![], true).unwrap();
        assert_eq!(
            answer(&b, &DATA_KEY, &pa, &other, vec![], true).err(),
            Some(HandshakeError::BadSignature)
        );
    }

    #[test]
    fn a_different_data_key_makes_useless_keys() {
        let (a, b) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let (pa, pb) = (a.public().to_peer_id(), b.public().to_peer_id());
        let (pending, offer) = offer(&a, &pb, [0; 8], vec![], true).unwrap();
        let (reply, responder) = answer(&b, &[8; 32], &pa, &offer, vec![], true).unwrap();
        let initiator = finish(&a, &DATA_KEY, &pb, pending, &reply).unwrap();
        let mut ring = Keyring::default();
        ring.install(Arc::new(Session::new(responder, Instant::now())));
        let frame = send(&Session::new(initiator, Instant::now()), b"x");
        assert_eq!(receive(&mut ring, frame), None);
    }

    #[test]
    fn a_responder_sends_with_a_new_session_only_once_the_peer_used_it() {
        let (a, b) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let now = Instant::now();
        let (i1, r1) = handshake(&a, &b, now);
        let mut ring_b = Keyring::default();
        ring_b.install(Arc::new(r1));
        assert!(ring_b.sending().is_some(), "nothing else to send with");
        receive(&mut ring_b, send(&i1, b"1")).unwrap();
        let (i2, r2) = handshake(&a, &b, now + REKEY_AFTER);
        let r2_index = r2.keys.recv_index;
        ring_b.install(Arc::new(r2));
        assert_ne!(ring_b.sending().unwrap().keys.recv_index, r2_index);
        receive(&mut ring_b, send(&i2, b"2")).unwrap();
        assert_eq!(ring_b.sending().unwrap().keys.recv_index, r2_index);
    }

    #[test]
    fn handshakes_started_by_both_sides_at_once_still_carry_traffic_both_ways() {
        let (a, b) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let now = Instant::now();
        // a's offer and b's offer cross; each answers the other's before its own answer lands.
        let (a_init, b_resp) = handshake(&a, &b, now);
        let (b_init, a_resp) = handshake(&b, &a, now);
        let (mut ring_a, mut ring_b) = (Keyring::default(), Keyring::default());
        ring_a.install(Arc::new(a_resp));
        ring_b.install(Arc::new(b_resp));
        ring_a.install(Arc::new(a_init));
        ring_b.install(Arc::new(b_init));
        let a_sends = ring_a.sending().unwrap().clone();
        let b_sends = ring_b.sending().unwrap().clone();
        assert_eq!(
            receive(&mut ring_b, send(&a_sends, b"to b")),
            Some(b"to b".to_vec())
        );
        assert_eq!(
            receive(&mut ring_a, send(&b_sends, b"to a")),
            Some(b"to a".to_vec())
        );
    }

    #[test]
    fn an_aes_gcm_session_wears_out_within_its_data_limit_and_a_chacha_one_later() {
        let (a, b) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        for (offers, limit) in [
            ((true, true), REKEY_AFTER_PACKETS_AES_GCM),
            ((false, true), REKEY_AFTER_PACKETS),
        ] {
            let (i, _) = handshake_offering(&a, &b, Instant::now(), offers);
            i.next_counter.store(limit - 1, Ordering::Relaxed);
            assert!(!i.worn(), "{offers:?}");
            i.next_header().unwrap();
            assert!(i.worn(), "{offers:?}");
        }
        let (i, _) = handshake_offering(&a, &b, Instant::now(), (true, true));
        i.next_counter
            .store(REJECT_AFTER_PACKETS_AES_GCM - 1, Ordering::Relaxed);
        assert!(i.next_header().is_some());
        assert!(
            i.next_header().is_none(),
            "an AES-256-GCM session seals no more than its data limit"
        );
    }

    #[test]
    fn sessions_expire_after_their_time() {
        let (a, b) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let now = Instant::now();
        let (i, _) = handshake(&a, &b, now);
        assert!(!i.worn());
        let mut ring = Keyring::default();
        ring.install(Arc::new(i));
        assert!(!ring.expire(now + REKEY_AFTER));
        assert!(ring.expire(now + REJECT_AFTER));
        assert!(ring.sending().is_none());
    }

    proptest! {
        /// Traffic keeps flowing across a rekey: frames of the old session that arrive late are
        /// still accepted once, and no frame, old or new, is ever accepted twice.
        #[test]
        fn rekey_keeps_traffic_and_never_accepts_a_replay(
            before in 1usize..40,
            after in 1usize..40,
            order in proptest::collection::vec(any::<prop::sample::Index>(), 0..120),
        ) {
            let (a, b) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
            let now = Instant::now();
            let (i1, r1) = handshake(&a, &b, now);
            let mut ring = Keyring::default();
            ring.install(Arc::new(r1));
            let mut frames: Vec<Vec<u8>> = (0..before).map(|n| send(&i1, &[n as u8])).collect();
            let (i2, r2) = handshake(&a, &b, now + REKEY_AFTER);
            ring.install(Arc::new(r2));
            frames.extend((0..after).map(|n| send(&i2, &[100 + n as u8])));
            // Deliver every frame once, in a shuffled order, then replay an arbitrary selection.
            let mut delivery: Vec<usize> = (0..frames.len()).collect();
            for (k, pick) in order.iter().enumerate() {
                let len = delivery.len();
                delivery.swap(k % len, pick.index(len));
            }
            let mut accepted = std::collections::HashSet::new();
            for &n in &delivery {
                let payload = receive(&mut ring, frames[n].clone());
                prop_assert!(payload.is_some(), "frame {} lost across the rekey", n);
                prop_assert!(accepted.insert(payload.unwrap()));
            }
            for pick in &order {
                let n = pick.index(frames.len());
                prop_assert_eq!(receive(&mut ring, frames[n].clone()), None);
            }
        }
    }
}
