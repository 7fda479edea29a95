//! Admission: the proof that a connected peer holds the network token, and the per-peer state
//! of the exchange. Pure: no I/O, the caller passes the time.
//!
//! Right after a connection to a new peer opens, each side sends a challenge with a fresh
//! 32-byte nonce; each answers with its own nonce and
//! `HMAC-SHA256(admission key, label || prover || verifier || verifier nonce || prover nonce)`.
//! The PeerIds were authenticated by the transport (Noise/TLS), so the proof binds the token to
//! this very pair of identities; the verifier's fresh nonce makes a recorded proof worthless on
//! any other connection; prover and verifier are ordered in the MAC so a proof cannot be
//! reflected back. A peer is admitted only when its proof verifies.
//!
//! The answer also carries the prover's hostname, for the peer table, sealed under a key drawn
//! the same way (a distinct label): the challenger may be an outsider, and an outsider learns
//! nothing from an answer, neither the proof's meaning nor the machine's name.
//!
//! During a token rotation's grace window a node holds two tokens ([`crate::keyring`]): it
//! answers with a proof (and sealed hostname) under each, and admits a peer whose proof verifies
//! under either, so members that rotated and members that have not yet still admit each other.
//! It remembers which token each peer proved. A peer that proved only a token older than this
//! node's current one is *behind*: it may read the ledger but not change it (the ledger service
//! asks [`Admission::behind`]), since a denied machine holds the old token too. A behind peer is
//! challenged again every [`RECHECK`]: once it has moved to the new token its answer brings it
//! level, and once the window has closed its answer fails and it is refused, so a connection
//! admitted under the old token does not outlive the window.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use chacha20poly1305::aead::Aead as _;
use hmac::{Hmac, Mac as _};
use libp2p::PeerId;
use rand::RngCore as _;
use sha2::Sha256;

use crate::proto::p2p::v1::AuthProof;
use crate::token::DerivedKey;

/// Domain separation for the admission MAC.
const LABEL: &[u8] = b"weft/auth/v1";
/// Domain separation for the key that seals the prover's hostname.
const HOSTNAME_LABEL: &[u8] = b"weft/auth/hostname/v1";
/// The longest hostname taken from a peer (a DNS name's limit).
pub const MAX_HOSTNAME: usize = 253;
/// Length of a nonce and of a proof.
pub const NONCE_LEN: usize = 32;

/// A random challenge nonce.
pub type Nonce = [u8; NONCE_LEN];

/// Why a peer was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("its proof does not verify (another network's token?)")]
    BadProof,
    #[error("its proof is malformed")]
    Malformed,
    #[error("it answered with the challenger's own nonce")]
    ReflectedNonce,
    #[error("it sent a proof for no challenge this node has out")]
    Unsolicited,
    #[error("it did not prove membership in time")]
    Timeout,
    #[error("it does not speak weft's admission protocol")]
    Unsupported,
}

impl Rejection {
    /// Whether the rejection is evidence against the peer (it holds another token, or no weft
    /// at all), which earns it a block. A missed deadline or a late answer to a challenge
    /// already given up on is what load and races produce between honest members.
    pub fn is_evidence(self) -> bool {
        !matches!(self, Rejection::Timeout | Rejection::Unsolicited)
    }

    /// A short label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Rejection::BadProof => "bad_proof",
            Rejection::Malformed => "malformed",
            Rejection::ReflectedNonce => "reflected_nonce",
            Rejection::Unsolicited => "unsolicited",
            Rejection::Timeout => "timeout",
            Rejection::Unsupported => "unsupported",
        }
    }
}

/// The MAC a prover sends.
pub fn prove(
    key: &DerivedKey,
    prover: &PeerId,
    verifier: &PeerId,
    verifier_nonce: &Nonce,
    prover_nonce: &Nonce,
) -> [u8; 32] {
    mac(key, prover, verifier, verifier_nonce, prover_nonce)
        .finalize()
        .into_bytes()
        .into()
}

/// The proofs an answer carries, each with its sealed hostname: the current token's, and the
/// previous one's when given (at most [`MAX_PROOFS`]).
fn proofs_of(answer: &AuthProof) -> Vec<(&[u8], &[u8])> {
    [
        (&answer.proof[..], &answer.sealed_hostname[..]),
        (
            &answer.previous_proof[..],
            &answer.previous_sealed_hostname[..],
        ),
    ]
    .into_iter()
    .filter(|(proof, _)| !proof.is_empty())
    .collect()
}

/// Checks a proof in constant time.
pub fn verify(
    key: &DerivedKey,
    prover: &PeerId,
    verifier: &PeerId,
    verifier_nonce: &Nonce,
    prover_nonce: &Nonce,
    proof: &[u8],
) -> Result<(), Rejection> {
    if verifier_nonce == prover_nonce {
        return Err(Rejection::ReflectedNonce);
    }
    mac(key, prover, verifier, verifier_nonce, prover_nonce)
        .verify_slice(proof)
        .map_err(|_| Rejection::BadProof)
}

/// The prover's hostname sealed for this one exchange (ChaCha20-Poly1305; the key is fresh
/// with every prover nonce, so a fixed nonce is safe).
fn seal_hostname(
    key: &DerivedKey,
    prover: &PeerId,
    verifier: &PeerId,
    verifier_nonce: &Nonce,
    prover_nonce: &Nonce,
    hostname: &str,
) -> Vec<u8> {
    // What the other side takes: control characters replaced, cut on a character boundary.
    let mut name: String = hostname
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    while name.len() > MAX_HOSTNAME {
        name.pop();
    }
    seal_name_bytes(
        key,
        prover,
        verifier,
        (verifier_nonce, prover_nonce),
        name.as_bytes(),
    )
}

/// Seals `name` as it is, for [`seal_hostname`] and for the fuzz target that gives the
/// verifier what a token holder could seal ([`crate::fuzz::admission`]).
pub(crate) fn seal_name_bytes(
    key: &DerivedKey,
    prover: &PeerId,
    verifier: &PeerId,
    (verifier_nonce, prover_nonce): (&Nonce, &Nonce),
    name: &[u8],
) -> Vec<u8> {
    hostname_cipher(key, prover, verifier, verifier_nonce, prover_nonce)
        .encrypt(&chacha20poly1305::Nonce::default(), name)
        .expect("ChaCha20-Poly1305 seals a hostname")
}

/// Opens a sealed hostname: at most [`MAX_HOSTNAME`] bytes of UTF-8 without control
/// characters, else the answer is malformed.
fn open_hostname(
    key: &DerivedKey,
    prover: &PeerId,
    verifier: &PeerId,
    verifier_nonce: &Nonce,
    prover_nonce: &Nonce,
    sealed: &[u8],
) -> Result<String, Rejection> {
    if sealed.len() > MAX_HOSTNAME + 16 {
        return Err(Rejection::Malformed);
    }
    let plain = hostname_cipher(key, prover, verifier, verifier_nonce, prover_nonce)
        .decrypt(&chacha20poly1305::Nonce::default(), sealed)
        .map_err(|_| Rejection::Malformed)?;
    String::from_utf8(plain)
        .ok()
        .filter(|name| !name.chars().any(char::is_control))
        .ok_or(Rejection::Malformed)
}

fn hostname_cipher(
    key: &DerivedKey,
    prover: &PeerId,
    verifier: &PeerId,
    verifier_nonce: &Nonce,
    prover_nonce: &Nonce,
) -> chacha20poly1305::ChaCha20Poly1305 {
    use chacha20poly1305::KeyInit as _;
    let mut mac = mac(key, prover, verifier, verifier_nonce, prover_nonce);
    mac.update(HOSTNAME_LABEL);
    let derived: [u8; 32] = mac.finalize().into_bytes().into();
    chacha20poly1305::ChaCha20Poly1305::new((&derived).into())
}

fn mac(
    key: &DerivedKey,
    prover: &PeerId,
    verifier: &PeerId,
    verifier_nonce: &Nonce,
    prover_nonce: &Nonce,
) -> Hmac<Sha256> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(&key.0).expect("HMAC-SHA256 accepts a key of any length");
    for part in [&prover.to_bytes(), &verifier.to_bytes()] {
        // PeerIds differ in length by key type: length-prefix them so boundaries are fixed.
        mac.update(&(part.len() as u16).to_be_bytes());
        mac.update(part);
    }
    mac.update(LABEL);
    mac.update(verifier_nonce);
    mac.update(prover_nonce);
    mac
}

/// A fresh nonce from the OS CSPRNG.
pub fn fresh_nonce() -> Nonce {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    nonce
}

/// What the node knows about one peer's admission.
#[derive(Debug, Clone)]
enum PeerState {
    /// Our challenge is out (or about to be); `nonce` is ours for this peer.
    Pending { nonce: Nonce, since: Instant },
    /// The peer's proof verified under the admission key `under`.
    Admitted { under: DerivedKey, recheck: Recheck },
}

/// Where the re-challenge of an admitted peer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recheck {
    /// None out; the next one, if the peer is behind, not before `next`.
    Idle { next: Instant },
    /// Our re-challenge `nonce` went out at `since`.
    Asked { nonce: Nonce, since: Instant },
}

/// How often a behind peer is challenged again.
pub const RECHECK: Duration = Duration::from_secs(5);

/// The outcome of a proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Admitted {
        hostname: String,
    },
    /// An admitted peer answered a re-challenge (see [`Admission::rechecks`]).
    Reproved,
    Rejected(Rejection),
}

/// The most proofs an answer carries: one per token held during a rotation.
pub const MAX_PROOFS: usize = 2;

/// Admission state of every connected peer.
#[derive(Debug)]
pub struct Admission {
    local: PeerId,
    hostname: String,
    timeout: Duration,
    peers: HashMap<PeerId, PeerState>,
}

impl Admission {
    /// Admission for node `local`; proofs must arrive within `timeout` of the first connection.
    /// The admission keys of the tokens held (current first) are passed with each exchange.
    pub fn new(local: PeerId, hostname: String, timeout: Duration) -> Self {
        Admission {
            local,
            hostname,
            timeout,
            peers: HashMap::new(),
        }
    }

    /// A connection to `peer` opened: returns the challenge to send, unless one is already out
    /// or the peer is admitted.
    pub fn on_connected(&mut self, peer: PeerId, now: Instant) -> Option<Nonce> {
        if self.peers.contains_key(&peer) {
            return None;
        }
        let nonce = fresh_nonce();
        self.peers
            .insert(peer, PeerState::Pending { nonce, since: now });
        Some(nonce)
    }

    /// `peer` challenged us: our answer, with a proof under each of `keys` (the tokens held,
    /// at most [`MAX_PROOFS`] used), plus the challenge we must send if we had none out yet
    /// (its challenge can arrive before we saw the connection).
    pub fn answer(
        &mut self,
        peer: PeerId,
        their_nonce: &[u8],
        now: Instant,
        keys: &[DerivedKey],
    ) -> Result<(AnswerFields, Option<Nonce>), Rejection> {
        let their_nonce: Nonce = their_nonce.try_into().map_err(|_| Rejection::Malformed)?;
        let new_challenge = self.on_connected(peer, now);
        let our_nonce = match self.peers.get(&peer) {
            Some(PeerState::Pending { nonce, .. }) => *nonce,
            // Already admitted: a fresh nonce serves; the peer only checks its own nonce.
            _ => fresh_nonce(),
        };
        let proofs = keys
            .iter()
            .take(MAX_PROOFS)
            .map(|key| Proof {
                proof: prove(key, &self.local, &peer, &their_nonce, &our_nonce),
                sealed_hostname: seal_hostname(
                    key,
                    &self.local,
                    &peer,
                    &their_nonce,
                    &our_nonce,
                    &self.hostname,
                ),
            })
            .collect();
        Ok((
            AnswerFields {
                challenge: their_nonce,
                nonce: our_nonce,
                proofs,
            },
            new_challenge,
        ))
    }

    /// `peer` answered our challenge (or re-challenge) at `now` with `answer`; it is admitted
    /// when one of its proofs verifies under one of `keys`, the current first.
    ///
    /// An answer that names another challenge than the one out is late, not wrong: this node
    /// gave up on that challenge (its deadline passed under load) and challenged again when the
    /// peer challenged it meanwhile, and the answer was already on its way. It is ignored as
    /// unsolicited, which is no evidence against the peer; checked against the new challenge it
    /// would fail and block an honest member for the block duration.
    pub fn on_proof(
        &mut self,
        peer: PeerId,
        answer: &AuthProof,
        keys: &[DerivedKey],
        now: Instant,
    ) -> Verdict {
        let (ours, rechecked) = match self.peers.get(&peer) {
            Some(PeerState::Pending { nonce, .. }) => (*nonce, false),
            Some(PeerState::Admitted {
                recheck: Recheck::Asked { nonce, .. },
                ..
            }) => (*nonce, true),
            _ => return Verdict::Rejected(Rejection::Unsolicited),
        };
        if !answer.challenge.is_empty() && answer.challenge[..] != ours[..] {
            return Verdict::Rejected(Rejection::Unsolicited);
        }
        let Ok(theirs) = <Nonce>::try_from(&answer.nonce[..]) else {
            return Verdict::Rejected(Rejection::Malformed);
        };
        let proofs = proofs_of(answer);
        if proofs.is_empty() {
            return Verdict::Rejected(Rejection::Malformed);
        }
        let mut outcome = Err(Rejection::BadProof);
        'search: for key in keys {
            for &(proof, sealed_hostname) in &proofs {
                match verify(key, &peer, &self.local, &ours, &theirs, proof) {
                    Ok(()) => {
                        outcome =
                            open_hostname(key, &peer, &self.local, &ours, &theirs, sealed_hostname)
                                .map(|hostname| (hostname, key.clone()));
                        break 'search;
                    }
                    Err(Rejection::BadProof) => {}
                    Err(other) => {
                        outcome = Err(other);
                        break 'search;
                    }
                }
            }
        }
        match outcome {
            Ok((hostname, under)) => {
                let recheck = Recheck::Idle {
                    next: now + RECHECK,
                };
                self.peers
                    .insert(peer, PeerState::Admitted { under, recheck });
                if rechecked {
                    Verdict::Reproved
                } else {
                    Verdict::Admitted { hostname }
                }
            }
            Err(rejection) => Verdict::Rejected(rejection),
        }
    }

    /// Our outstanding challenge (or re-challenge) nonce for `peer`, to send again when the
    /// first attempt was lost with its connection (the deadline is unchanged).
    pub fn pending_nonce(&self, peer: &PeerId) -> Option<Nonce> {
        match self.peers.get(peer) {
            Some(PeerState::Pending { nonce, .. })
            | Some(PeerState::Admitted {
                recheck: Recheck::Asked { nonce, .. },
                ..
            }) => Some(*nonce),
            _ => None,
        }
    }

    /// Peers whose proof, or answer to a re-challenge, is overdue at `now`.
    pub fn overdue(&self, now: Instant) -> Vec<PeerId> {
        self.peers
            .iter()
            .filter_map(|(peer, state)| match state {
                PeerState::Pending { since, .. }
                | PeerState::Admitted {
                    recheck: Recheck::Asked { since, .. },
                    ..
                } if now.duration_since(*since) > self.timeout => Some(*peer),
                _ => None,
            })
            .collect()
    }

    /// Whether admitted `peer` proved only a token other than `current` (this node's current
    /// admission key): one it still accepts during a rotation's window, the one before.
    pub fn behind(&self, peer: &PeerId, current: &DerivedKey) -> bool {
        matches!(self.peers.get(peer), Some(PeerState::Admitted { under, .. }) if under != current)
    }

    /// Every admitted peer behind `current` (see [`Admission::behind`]).
    pub fn behind_peers(&self, current: &DerivedKey) -> HashSet<PeerId> {
        self.peers
            .iter()
            .filter(
                |(_, state)| matches!(state, PeerState::Admitted { under, .. } if under != current),
            )
            .map(|(peer, _)| *peer)
            .collect()
    }

    /// The re-challenges to send at `now`: one to each behind peer (see [`Admission::behind`])
    /// with none out, at most every [`RECHECK`]. Its answer is taken by [`Admission::on_proof`].
    pub fn rechecks(&mut self, now: Instant, current: &DerivedKey) -> Vec<(PeerId, Nonce)> {
        let mut due = Vec::new();
        for (peer, state) in &mut self.peers {
            if let PeerState::Admitted { under, recheck } = state
                && under != current
                && matches!(recheck, Recheck::Idle { next } if *next <= now)
            {
                let nonce = fresh_nonce();
                *recheck = Recheck::Asked { nonce, since: now };
                due.push((*peer, nonce));
            }
        }
        due
    }

    /// The last connection to `peer` closed: it must prove itself again next time.
    pub fn forget(&mut self, peer: &PeerId) {
        self.peers.remove(peer);
    }

    /// Whether `peer` is admitted.
    pub fn is_admitted(&self, peer: &PeerId) -> bool {
        matches!(self.peers.get(peer), Some(PeerState::Admitted { .. }))
    }
}

/// The fields of an answer to a challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerFields {
    /// The challenge answered.
    pub challenge: Nonce,
    pub nonce: Nonce,
    /// One per token held, the current one first.
    pub proofs: Vec<Proof>,
}

impl AnswerFields {
    /// The answer as it goes on the wire: the current token's proof, and the previous one's
    /// when the prover holds one.
    pub fn to_proto(self) -> AuthProof {
        let mut proofs = self.proofs.into_iter();
        let (current, previous) = (proofs.next(), proofs.next());
        let parts = |proof: Option<Proof>| {
            proof
                .map(|p| (p.proof.to_vec(), p.sealed_hostname))
                .unwrap_or_default()
        };
        let (proof, sealed_hostname) = parts(current);
        let (previous_proof, previous_sealed_hostname) = parts(previous);
        AuthProof {
            challenge: self.challenge.to_vec(),
            nonce: self.nonce.to_vec(),
            proof,
            sealed_hostname,
            previous_proof,
            previous_sealed_hostname,
        }
    }
}

/// A proof of holding one token, and the prover's hostname sealed under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    pub proof: [u8; 32],
    pub sealed_hostname: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> DerivedKey {
        DerivedKey([byte; 32])
    }

    fn node(byte: u8) -> (PeerId, Admission) {
        let peer = PeerId::random();
        (
            peer,
            Admission::new(peer, format!("host{byte}"), Duration::from_secs(10)),
        )
    }

    /// Runs the exchange in which `b`, holding `b_keys`, proves itself to `a`, holding `a_keys`.
    fn proves_with(
        (a, a_id, a_keys): (&mut Admission, PeerId, &[DerivedKey]),
        (b, b_id, b_keys): (&mut Admission, PeerId, &[DerivedKey]),
    ) -> Verdict {
        let now = Instant::now();
        let challenge = a.on_connected(b_id, now).expect("a challenges b");
        let (answer, _) = b.answer(a_id, &challenge, now, b_keys).unwrap();
        a.on_proof(b_id, &answer.to_proto(), a_keys, now)
    }

    /// Runs the exchange in which `b` proves itself to `a`, each holding one token.
    fn b_proves_to_a(a: &mut Admission, a_id: PeerId, b: &mut Admission, b_id: PeerId) -> Verdict {
        proves_with((a, a_id, &[key(1)]), (b, b_id, &[key(1)]))
    }

    #[test]
    fn a_valid_proof_admits_the_peer_with_its_hostname() {
        let (a_id, mut a) = node(1);
        let (b_id, mut b) = node(1);
        assert_eq!(
            b_proves_to_a(&mut a, a_id, &mut b, b_id),
            Verdict::Admitted {
                hostname: "host1".into()
            }
        );
        assert!(a.is_admitted(&b_id));
        assert!(
            !b.is_admitted(&a_id),
            "admission is one-way until a proves itself too"
        );
    }

    #[test]
    fn a_proof_made_with_another_token_is_rejected() {
        let (a_id, mut a) = node(1);
        let (b_id, mut b) = node(2);
        assert_eq!(
            proves_with((&mut a, a_id, &[key(1)]), (&mut b, b_id, &[key(2)])),
            Verdict::Rejected(Rejection::BadProof)
        );
        assert!(!a.is_admitted(&b_id));
    }

    #[test]
    fn during_a_rotation_members_on_either_token_admit_each_other_and_after_it_only_the_new() {
        let (old, new) = (key(1), key(2));
        let rotated = [new.clone(), old.clone()];
        for (a_keys, b_keys) in [
            (&rotated[..], &[old.clone()][..]),
            (&[old.clone()][..], &rotated[..]),
            (&rotated[..], &rotated[..]),
            (&[new.clone()][..], &rotated[..]),
        ] {
            let (a_id, mut a) = node(1);
            let (b_id, mut b) = node(1);
            assert_eq!(
                proves_with((&mut a, a_id, a_keys), (&mut b, b_id, b_keys)),
                Verdict::Admitted {
                    hostname: "host1".into()
                }
            );
        }
        let (a_id, mut a) = node(1);
        let (b_id, mut b) = node(1);
        assert_eq!(
            proves_with((&mut a, a_id, &[new]), (&mut b, b_id, &[old])),
            Verdict::Rejected(Rejection::BadProof),
            "the window closed"
        );
    }

    /// `b`, holding `b_keys`, answers `a`'s re-challenge `nonce`, `a` holding `a_keys`.
    fn answers_recheck(
        (a, a_id, a_keys): (&mut Admission, PeerId, &[DerivedKey]),
        (b, b_id, b_keys): (&mut Admission, PeerId, &[DerivedKey]),
        nonce: &Nonce,
        now: Instant,
    ) -> Verdict {
        let (answer, _) = b.answer(a_id, nonce, now, b_keys).unwrap();
        a.on_proof(b_id, &answer.to_proto(), a_keys, now)
    }

    #[test]
    fn a_peer_that_proved_only_the_token_before_is_behind_until_it_proves_the_new_one() {
        let (old, new) = (key(1), key(2));
        let rotated = [new.clone(), old.clone()];
        let only_old = [old.clone()];
        let (a_id, mut a) = node(1);
        let (b_id, mut b) = node(2);
        let (c_id, mut c) = node(3);
        let start = Instant::now();
        assert!(matches!(
            proves_with((&mut a, a_id, &rotated), (&mut b, b_id, &only_old)),
            Verdict::Admitted { .. }
        ));
        assert!(matches!(
            proves_with((&mut a, a_id, &rotated), (&mut c, c_id, &rotated)),
            Verdict::Admitted { .. }
        ));
        assert!(a.behind(&b_id, &new), "b proved only the old token");
        assert!(!a.behind(&c_id, &new), "c proved the new one");
        assert!(
            !a.behind(&PeerId::random(), &new),
            "a stranger is not admitted at all"
        );

        assert!(a.rechecks(start, &new).is_empty(), "not before RECHECK");
        let due = a.rechecks(start + RECHECK + Duration::from_secs(1), &new);
        assert_eq!(due.len(), 1, "only the behind peer is asked again");
        assert_eq!(due[0].0, b_id);
        assert_eq!(a.behind_peers(&new), HashSet::from([b_id]));
        assert_eq!(
            a.pending_nonce(&b_id),
            Some(due[0].1),
            "a re-challenge lost with its connection can be sent again"
        );
        let later = start + RECHECK + Duration::from_secs(2);
        assert!(
            a.rechecks(later, &new).is_empty(),
            "one re-challenge out at a time"
        );
        // b has moved: its answer brings it level, and it is asked no more.
        assert_eq!(
            answers_recheck(
                (&mut a, a_id, &rotated),
                (&mut b, b_id, &rotated),
                &due[0].1,
                later
            ),
            Verdict::Reproved
        );
        assert!(!a.behind(&b_id, &new));
        assert!(a.rechecks(later + RECHECK * 3, &new).is_empty());
    }

    #[test]
    fn a_peer_behind_is_refused_once_the_window_closes_or_if_it_stops_answering() {
        let (old, new) = (key(1), key(2));
        let rotated = [new.clone(), old.clone()];
        let (only_old, only_new) = ([old.clone()], [new.clone()]);
        let (a_id, mut a) = node(1);
        let (b_id, mut b) = node(2);
        let start = Instant::now();
        proves_with((&mut a, a_id, &rotated), (&mut b, b_id, &only_old));
        let at = start + RECHECK + Duration::from_secs(1);
        let (peer, nonce) = a.rechecks(at, &new)[0];
        assert_eq!(peer, b_id);
        // Still in the window: it stays admitted, and behind.
        assert_eq!(
            answers_recheck(
                (&mut a, a_id, &rotated),
                (&mut b, b_id, &only_old),
                &nonce,
                at
            ),
            Verdict::Reproved
        );
        assert!(a.behind(&b_id, &new));
        // The window closed: only the new token is held, and its proof fails.
        let at = at + RECHECK;
        let (_, nonce) = a.rechecks(at, &new)[0];
        assert_eq!(
            answers_recheck(
                (&mut a, a_id, &only_new),
                (&mut b, b_id, &only_old),
                &nonce,
                at
            ),
            Verdict::Rejected(Rejection::BadProof)
        );
        a.forget(&b_id);
        // A behind peer that does not answer its re-challenge is overdue.
        let (c_id, mut c) = node(3);
        proves_with((&mut a, a_id, &rotated), (&mut c, c_id, &only_old));
        let asked = Instant::now() + RECHECK;
        assert_eq!(a.rechecks(asked, &new).len(), 1);
        assert!(a.overdue(asked + Duration::from_secs(5)).is_empty());
        assert!(a.overdue(asked + Duration::from_secs(11)).contains(&c_id));
    }

    #[test]
    fn a_proof_with_swapped_peer_ids_is_rejected() {
        let (a_id, b_id) = (PeerId::random(), PeerId::random());
        let (na, nb) = (fresh_nonce(), fresh_nonce());
        let proof = prove(&key(1), &b_id, &a_id, &na, &nb);
        assert_eq!(verify(&key(1), &b_id, &a_id, &na, &nb, &proof), Ok(()));
        assert_eq!(
            verify(&key(1), &a_id, &b_id, &na, &nb, &proof),
            Err(Rejection::BadProof)
        );
    }

    #[test]
    fn a_proof_for_another_challenge_nonce_is_rejected() {
        let (a_id, b_id) = (PeerId::random(), PeerId::random());
        let (na, nb) = (fresh_nonce(), fresh_nonce());
        let proof = prove(&key(1), &b_id, &a_id, &na, &nb);
        assert_eq!(
            verify(&key(1), &b_id, &a_id, &fresh_nonce(), &nb, &proof),
            Err(Rejection::BadProof)
        );
    }

    #[test]
    fn the_challengers_own_nonce_cannot_be_echoed_back() {
        let (a_id, b_id) = (PeerId::random(), PeerId::random());
        let na = fresh_nonce();
        let proof = prove(&key(1), &b_id, &a_id, &na, &na);
        assert_eq!(
            verify(&key(1), &b_id, &a_id, &na, &na, &proof),
            Err(Rejection::ReflectedNonce)
        );
    }

    #[test]
    fn a_recorded_transcript_replayed_on_a_new_connection_is_rejected() {
        let (a_id, mut a) = node(1);
        let (b_id, mut b) = node(1);
        let now = Instant::now();
        let challenge = a.on_connected(b_id, now).unwrap();
        let (recorded, _) = b.answer(a_id, &challenge, now, &[key(1)]).unwrap();
        let recorded = recorded.to_proto();
        assert!(matches!(
            a.on_proof(b_id, &recorded, &[key(1)], now),
            Verdict::Admitted { .. }
        ));
        // The connection closes; on the next one a challenges afresh and the old answer is
        // not taken, whichever challenge it names.
        a.forget(&b_id);
        let fresh = a.on_connected(b_id, now).unwrap();
        assert_eq!(
            a.on_proof(b_id, &recorded, &[key(1)], now),
            Verdict::Rejected(Rejection::Unsolicited)
        );
        let relabelled = AuthProof {
            challenge: fresh.to_vec(),
            ..recorded.clone()
        };
        let unlabelled = AuthProof {
            challenge: Vec::new(),
            ..recorded
        };
        for replay in [relabelled, unlabelled] {
            assert_eq!(
                a.on_proof(b_id, &replay, &[key(1)], now),
                Verdict::Rejected(Rejection::BadProof)
            );
        }
        assert!(!a.is_admitted(&b_id));
    }

    #[test]
    fn a_late_answer_to_a_challenge_given_up_on_is_ignored_and_the_next_admits() {
        let (a_id, mut a) = node(1);
        let (b_id, mut b) = node(1);
        let start = Instant::now();
        let first = a.on_connected(b_id, start).unwrap();
        let (late, _) = b.answer(a_id, &first, start, &[key(1)]).unwrap();
        // a gives up on b under load, then b's own challenge reaches a before b's answer does:
        // a answers and challenges b again.
        let overdue = start + Duration::from_secs(11);
        assert_eq!(a.overdue(overdue), vec![b_id]);
        a.forget(&b_id);
        let (_, again) = a.answer(b_id, &fresh_nonce(), overdue, &[key(1)]).unwrap();
        let again = again.expect("a challenges b again");
        let verdict = a.on_proof(b_id, &late.to_proto(), &[key(1)], overdue);
        assert_eq!(verdict, Verdict::Rejected(Rejection::Unsolicited));
        assert!(
            !Rejection::Unsolicited.is_evidence(),
            "a late answer blocks no one"
        );
        let (answer, _) = b.answer(a_id, &again, overdue, &[key(1)]).unwrap();
        assert!(matches!(
            a.on_proof(b_id, &answer.to_proto(), &[key(1)], overdue),
            Verdict::Admitted { .. }
        ));
    }

    #[test]
    fn proofs_nobody_asked_for_and_malformed_nonces_are_rejected() {
        let (_, mut a) = node(1);
        let stranger = PeerId::random();
        let junk = AuthProof {
            nonce: vec![0; 32],
            proof: vec![0; 32],
            sealed_hostname: b"x".to_vec(),
            ..AuthProof::default()
        };
        assert_eq!(
            a.on_proof(stranger, &junk, &[key(1)], Instant::now()),
            Verdict::Rejected(Rejection::Unsolicited)
        );
        a.on_connected(stranger, Instant::now());
        let short_nonce = AuthProof {
            nonce: vec![0; 5],
            ..junk.clone()
        };
        let no_proof = AuthProof {
            proof: Vec::new(),
            sealed_hostname: Vec::new(),
            ..junk.clone()
        };
        for malformed in [short_nonce, no_proof] {
            assert_eq!(
                a.on_proof(stranger, &malformed, &[key(1)], Instant::now()),
                Verdict::Rejected(Rejection::Malformed)
            );
        }
        assert_eq!(
            a.answer(stranger, &[1; 3], Instant::now(), &[key(1)]),
            Err(Rejection::Malformed)
        );
    }

    #[test]
    fn the_hostname_opens_only_for_the_verifier_of_this_exchange() {
        let (a_id, mut a) = node(1);
        let (b_id, mut b) = node(1);
        let now = Instant::now();
        let challenge = a.on_connected(b_id, now).unwrap();
        let (answer, _) = b.answer(a_id, &challenge, now, &[key(1)]).unwrap();
        let sealed = &answer.proofs[0].sealed_hostname;
        assert!(
            !sealed.windows(5).any(|w| w == b"host1"),
            "the hostname travels in clear"
        );
        // An outsider holding another token cannot open it.
        let outsider = key(2);
        let theirs: Nonce = answer.nonce;
        assert_eq!(
            open_hostname(&outsider, &b_id, &a_id, &challenge, &theirs, sealed),
            Err(Rejection::Malformed)
        );
        // A tampered one is refused even with a valid proof.
        let mut tampered = answer.clone().to_proto();
        tampered.sealed_hostname[0] ^= 1;
        assert_eq!(
            a.on_proof(b_id, &tampered, &[key(1)], now),
            Verdict::Rejected(Rejection::Malformed)
        );
        // An over-long name is cut, a control character replaced, before sealing.
        let long = seal_hostname(&key(1), &b_id, &a_id, &challenge, &theirs, &"x".repeat(300));
        assert_eq!(
            open_hostname(&key(1), &b_id, &a_id, &challenge, &theirs, &long).map(|n| n.len()),
            Ok(MAX_HOSTNAME)
        );
        let odd = seal_hostname(&key(1), &b_id, &a_id, &challenge, &theirs, "odd\nnamé");
        assert_eq!(
            open_hostname(&key(1), &b_id, &a_id, &challenge, &theirs, &odd),
            Ok("odd?namé".to_string())
        );
    }

    #[test]
    fn a_challenge_arriving_first_makes_us_challenge_back() {
        let (_, mut a) = node(1);
        let (_, challenge_back) = a
            .answer(PeerId::random(), &fresh_nonce(), Instant::now(), &[key(1)])
            .unwrap();
        assert!(challenge_back.is_some());
    }

    #[test]
    fn a_peer_that_stays_silent_is_overdue_after_the_timeout() {
        let (_, mut a) = node(1);
        let peer = PeerId::random();
        let start = Instant::now();
        a.on_connected(peer, start);
        assert!(a.overdue(start + Duration::from_secs(5)).is_empty());
        assert_eq!(a.overdue(start + Duration::from_secs(11)), vec![peer]);
    }
}
