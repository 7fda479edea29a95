//! Joins and proposals forwarded through a member to a leader this node does not reach.
//!
//! A node on a segment that reaches only some members (A reaches R, R reaches the leader B, A
//! does not) asks a member it reaches to pass its join or proposal on. The member passes it
//! straight to the leader it knows, once: a forwarded request is never forwarded again, so a
//! request takes at most one hop and cannot loop. The leader must still know whom the request
//! is from, since a member speaks only for itself ([`super::authority`]), and the member in the
//! middle, like any token holder, may be hostile. So the origin signs the request with its
//! identity key over a challenge the leader issued for it (fetched through the same member):
//! the member can neither forge a request in the origin's name nor replay one, since each
//! challenge is taken once and lives [`CHALLENGE_TTL`].
//!
//! A node taken in this way is a follower, never a raft member: raft's appends would not reach
//! it. The member in the middle still carries the leader's answer back, so a hostile one can
//! lie about it; the origin sees the truth in its state once the feed reaches it. Pure parts:
//! the [`Envelope`] and its check, and the leader's [`Challenges`]; [`send`] is the origin's
//! side.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use libp2p::identity::PublicKey;
use rand::seq::SliceRandom as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::raft::network::{CallError, LedgerRpc, call};
use crate::p2p::P2pHandle;

/// The length of a challenge.
pub const NONCE_LEN: usize = 32;
/// How long a challenge the leader issued may be used.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(30);
/// The most challenges a leader keeps open; the oldest is dropped for a new one.
pub const MAX_CHALLENGES: usize = 1024;
/// What every signature of a forwarded request starts with, so it is never valid for anything
/// else the identity key signs.
const DOMAIN: &[u8] = b"weft/forwarded-request/1";

/// The most members a node asks, one after the other, to pass a request on.
const MAX_FORWARDERS: usize = 3;
/// How long a member may take to bring back the leader's challenge.
const CHALLENGE_TIMEOUT: Duration = Duration::from_secs(3);

/// A challenge the leader issued.
pub type Nonce = [u8; NONCE_LEN];

/// What a node asks a member to pass on to the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    /// Fetch a challenge.
    Challenge,
    /// Deliver the signed request.
    Request(Envelope),
}

/// Why a forwarded request has no answer.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No member took it: it never reached the leader, and may be sent again.
    #[error("no member reachable from here passed the request on to the leader")]
    NotSent,
    /// It was handed to a member, which may have delivered it.
    #[error("the request was handed to a member for the leader, without an answer: {0}")]
    Sent(CallError),
}

/// A request (a [`super::raft::network::LedgerRpc`] `Join` or `Propose`, as JSON) signed by
/// the node it is from, for one leader and one of its challenges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The origin's public key, protobuf-encoded; the origin's PeerId derives from it.
    pub key: Vec<u8>,
    pub nonce: Nonce,
    pub request: Vec<u8>,
    pub signature: Vec<u8>,
}

/// Why an envelope is not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the forwarded request's key is not a public key")]
    BadKey,
    #[error("the forwarded request's signature does not hold for this leader")]
    BadSignature,
    #[error("the forwarded request's challenge is unknown, used or expired")]
    UnknownChallenge,
}

/// The bytes the origin signs: the domain, the leader it is meant for, the challenge and the
/// request.
fn signed(leader: &PeerId, nonce: &Nonce, request: &[u8]) -> Vec<u8> {
    let leader = leader.to_bytes();
    let mut bytes = Vec::with_capacity(DOMAIN.len() + 2 + leader.len() + NONCE_LEN + request.len());
    bytes.extend_from_slice(DOMAIN);
    bytes.extend_from_slice(&(leader.len() as u16).to_be_bytes());
    bytes.extend_from_slice(&leader);
    bytes.extend_from_slice(nonce);
    bytes.extend_from_slice(request);
    bytes
}

impl Envelope {
    /// `request` from the node of `key`, for `leader` and its challenge `nonce`, signed with
    /// `sign` (the node's identity key).
    pub fn seal<E>(
        key: &PublicKey,
        leader: &PeerId,
        nonce: Nonce,
        request: Vec<u8>,
        sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, E>,
    ) -> Result<Envelope, E> {
        let signature = sign(&signed(leader, &nonce, &request))?;
        Ok(Envelope {
            key: key.encode_protobuf(),
            nonce,
            request,
            signature,
        })
    }

    /// The PeerId of the node the request is from, when its signature holds for `leader`.
    pub fn origin(&self, leader: &PeerId) -> Result<PeerId, Refusal> {
        let key = PublicKey::try_decode_protobuf(&self.key).map_err(|_| Refusal::BadKey)?;
        if !key.verify(&signed(leader, &self.nonce, &self.request), &self.signature) {
            return Err(Refusal::BadSignature);
        }
        Ok(key.to_peer_id())
    }
}

/// The challenges a leader issued and not yet taken, oldest first.
#[derive(Debug, Default)]
pub struct Challenges {
    open: VecDeque<(Nonce, Instant)>,
}

impl Challenges {
    /// Notes `nonce` (fresh randomness) as issued at `now`.
    pub fn issue(&mut self, nonce: Nonce, now: Instant) {
        self.expire(now);
        if self.open.len() >= MAX_CHALLENGES {
            self.open.pop_front();
        }
        self.open.push_back((nonce, now));
    }

    /// Takes `nonce` at `now`: true once for a challenge issued within [`CHALLENGE_TTL`].
    pub fn take(&mut self, nonce: &Nonce, now: Instant) -> bool {
        self.expire(now);
        match self.open.iter().position(|(open, _)| open == nonce) {
            Some(at) => {
                self.open.remove(at);
                true
            }
            None => false,
        }
    }

    fn expire(&mut self, now: Instant) {
        while self
            .open
            .front()
            .is_some_and(|(_, at)| now.saturating_duration_since(*at) >= CHALLENGE_TTL)
        {
            self.open.pop_front();
        }
    }
}

/// Sends `request` (a `Join` or `Propose`) to `leader`, which this node does not reach,
/// through up to [`MAX_FORWARDERS`] of its admitted peers drawn at random: the first that
/// brings back the leader's challenge delivers the request, signed. Answers the leader's answer
/// and the member that carried it.
pub async fn send<T: DeserializeOwned>(
    p2p: &P2pHandle,
    leader: PeerId,
    request: &LedgerRpc,
) -> Result<(T, PeerId), SendError> {
    let request = serde_json::to_vec(request).map_err(|e| SendError::Sent(CallError::Decode(e)))?;
    let mut members: Vec<PeerId> = p2p
        .peers()
        .iter()
        .filter_map(|view| view.peer_id.parse().ok())
        .filter(|peer| *peer != leader)
        .collect();
    members.shuffle(&mut rand::thread_rng());
    members.truncate(MAX_FORWARDERS);
    for via in members {
        let ask = LedgerRpc::Forward {
            leader: leader.to_string(),
            step: Step::Challenge,
        };
        let nonce = match tokio::time::timeout(
            CHALLENGE_TIMEOUT,
            call::<Result<Nonce, String>>(p2p, via, &ask),
        )
        .await
        {
            Ok(Ok(Ok(nonce))) => nonce,
            Ok(Ok(Err(refusal))) => {
                tracing::debug!(%via, %refusal, "a member did not pass a challenge on");
                continue;
            }
            Ok(Err(e)) => {
                tracing::debug!(%via, error = %e, "a member did not pass a challenge on");
                continue;
            }
            Err(_) => {
                tracing::debug!(%via, "a member did not bring a challenge back in time");
                continue;
            }
        };
        let Ok(envelope) =
            Envelope::seal(&p2p.public_key(), &leader, nonce, request, |m| p2p.sign(m))
        else {
            return Err(SendError::NotSent);
        };
        tracing::debug!(%via, %leader, "forwarding a request through a member");
        let deliver = LedgerRpc::Forward {
            leader: leader.to_string(),
            step: Step::Request(envelope),
        };
        return call::<T>(p2p, via, &deliver)
            .await
            .map(|answer| (answer, via))
            .map_err(SendError::Sent);
    }
    Err(SendError::NotSent)
}

#[cfg(test)]
mod tests {
    use libp2p::identity::Keypair;

    use super::*;

    fn sealed(origin: &Keypair, leader: &PeerId, nonce: Nonce, request: &[u8]) -> Envelope {
        Envelope::seal(&origin.public(), leader, nonce, request.to_vec(), |m| {
            origin.sign(m)
        })
        .expect("an ed25519 key signs")
    }

    #[test]
    fn an_envelope_names_its_signer_for_the_leader_it_was_sealed_for_only() {
        let origin = Keypair::generate_ed25519();
        let leader = PeerId::random();
        let envelope = sealed(&origin, &leader, [7; NONCE_LEN], b"{\"Propose\":1}");
        assert_eq!(envelope.origin(&leader), Ok(origin.public().to_peer_id()));
        assert_eq!(
            envelope.origin(&PeerId::random()),
            Err(Refusal::BadSignature),
            "another leader"
        );
    }

    #[test]
    fn a_forwarder_cannot_change_the_request_the_challenge_or_the_signer() {
        let origin = Keypair::generate_ed25519();
        let forwarder = Keypair::generate_ed25519();
        let leader = PeerId::random();
        let envelope = sealed(&origin, &leader, [7; NONCE_LEN], b"renew me");
        let mut other = envelope.clone();
        other.request = b"remove someone".to_vec();
        assert_eq!(other.origin(&leader), Err(Refusal::BadSignature));
        let mut other = envelope.clone();
        other.nonce = [8; NONCE_LEN];
        assert_eq!(other.origin(&leader), Err(Refusal::BadSignature));
        let mut other = envelope.clone();
        other.key = forwarder.public().encode_protobuf();
        assert_eq!(other.origin(&leader), Err(Refusal::BadSignature));
        let mut other = envelope;
        other.key = vec![1, 2, 3];
        assert_eq!(other.origin(&leader), Err(Refusal::BadKey));
    }

    #[test]
    fn a_challenge_is_taken_once_within_its_lifetime_and_the_open_ones_are_bounded() {
        let start = Instant::now();
        let mut challenges = Challenges::default();
        challenges.issue([1; NONCE_LEN], start);
        assert!(!challenges.take(&[2; NONCE_LEN], start), "never issued");
        assert!(challenges.take(&[1; NONCE_LEN], start));
        assert!(!challenges.take(&[1; NONCE_LEN], start), "used");
        challenges.issue([3; NONCE_LEN], start);
        assert!(
            !challenges.take(&[3; NONCE_LEN], start + CHALLENGE_TTL),
            "expired"
        );
        for i in 0..=MAX_CHALLENGES {
            let mut nonce = [0; NONCE_LEN];
            nonce[..8].copy_from_slice(&(i as u64).to_be_bytes());
            challenges.issue(nonce, start);
        }
        assert_eq!(challenges.open.len(), MAX_CHALLENGES);
        assert!(
            !challenges.take(&[0; NONCE_LEN], start),
            "the oldest made room"
        );
    }
}
