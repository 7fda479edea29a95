//! Joins, proposals and lease renewals forwarded through a member to a leader this node does
//! not reach.
//!
//! A node on a segment that reaches only some members (A reaches R, R reaches the leader B, A
//! does not) asks a member it reaches to pass its join, proposal or lease renewal on. The member passes it
//! straight to the leader it knows, once: a forwarded request is never forwarded again, so a
//! request takes at most one hop and cannot loop. The leader must still know whom the request
//! is from, since a member speaks only for itself ([`super::authority`]), and the member in the
//! middle, like any token holder, may be hostile. So the origin signs the request with its
//! identity key over a challenge the leader issued for it (fetched through the same member):
//! the member can neither forge a request in the origin's name nor replay one, since each
//! challenge is taken once and lives [`CHALLENGE_TTL`].
//!
//! A node taken in this way is a follower, never a raft member: raft's appends would not reach
//! it. The member in the middle says whether it delivered a request ([`Passed`]), so the origin
//! never sends again what may have committed. Once it has taken the request's challenge, the
//! leader signs its answer with its identity key over the whole envelope ([`Vouched`]), so the
//! member carries it back but cannot change it; an answer that does not open as the leader's
//! (a refusal before the challenge was taken is not signed) counts as "may have committed". A
//! hostile member can still say it did not deliver a request it did (`docs/security.md`). A
//! member passes on a few requests at a time per origin ([`Passing`]), so one identity cannot
//! use up a member's budget (many identities can, for seconds: `docs/security.md`). A leader
//! keeps no table of the challenges it issued: each carries its time and a MAC of the leader's
//! ([`Challenges`]), so asking for challenges uses up nothing. Pure parts: the [`Envelope`]
//! and its check, the challenges and the budget; [`call_or_forward`] is the origin's side.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use libp2p::identity::PublicKey;
use rand::seq::SliceRandom as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::raft::network::{CallError, LedgerRpc, call};
use crate::p2p::{P2pError, P2pHandle};

/// The length of a challenge.
pub const NONCE_LEN: usize = 32;
/// How long a challenge the leader issued may be used: long enough for the origin to sign and
/// the member to deliver, short enough that a member holding a signed request cannot deliver
/// it after the origin stopped waiting for it (within the 9 s a proposal waits), so a request
/// never lands after a later one from the same origin.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(5);
/// The most challenges a leader holds as taken within [`CHALLENGE_TTL`], in all and delivered
/// by one member: each is a forwarded request it carried out, so this caps those at about 800
/// a second, and about 50 a second through one member.
pub const MAX_TAKEN: usize = 4096;
pub const MAX_TAKEN_PER_MEMBER: usize = 256;
/// The most requests a member passes on at once, in all and for one origin.
pub const MAX_PASSING: usize = 8;
pub const MAX_PASSING_PER_ORIGIN: usize = 2;
/// What every signature of a forwarded request starts with, so it is never valid for anything
/// else the identity key signs.
const DOMAIN: &[u8] = b"weft/forwarded-request/1";
/// What every signature of the leader's answer to a forwarded request starts with.
const ANSWER_DOMAIN: &[u8] = b"weft/forwarded-answer/2";

/// The most members a node asks, one after the other, to pass a request on.
const MAX_FORWARDERS: usize = 3;
/// How long a member may take to bring back the leader's challenge.
pub(crate) const CHALLENGE_TIMEOUT: Duration = Duration::from_secs(3);

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

/// What a member says of a step it was asked to pass on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Passed {
    /// The leader's answer, as the leader encoded it.
    Answer(Vec<u8>),
    /// The member did not deliver it: nothing reached the leader.
    Undelivered(String),
    /// The member delivered it and got no answer: it may have been applied.
    NoAnswer(String),
}

/// Why a request to the leader has no answer.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// It never reached the leader, and may be sent again.
    #[error("{0}")]
    NotSent(String),
    /// It may have reached the leader, and may have been applied.
    #[error("{0}")]
    Sent(String),
    /// It was sent, and no answer came in time.
    #[error("no answer in time")]
    TimedOut,
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
    #[error("the leader carried out too many forwarded requests in the last few seconds")]
    Busy,
    #[error("the answer the member brought back is not signed by the leader")]
    NotTheLeaders,
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

    /// The PeerId the request says it is from, its signature not checked: cheap, to refuse
    /// a request whose challenge was not issued for that node before checking the signature.
    pub fn signer(&self) -> Result<PeerId, Refusal> {
        PublicKey::try_decode_protobuf(&self.key)
            .map(|key| key.to_peer_id())
            .map_err(|_| Refusal::BadKey)
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

/// The leader's answer to a forwarded request, signed by the leader over a digest of the whole
/// envelope it answers, so that the member that carries it back can neither change it nor
/// bring back the answer to another envelope (its own request over a nonce it hands the origin,
/// or a tampered copy of the origin's that the leader refused).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vouched {
    /// The leader's public key, protobuf-encoded; the leader's PeerId derives from it.
    pub key: Vec<u8>,
    pub answer: Vec<u8>,
    pub signature: Vec<u8>,
}

/// The digest of `envelope` as its origin sealed it: key, challenge, request and signature,
/// each with its length.
fn digest(envelope: &Envelope) -> [u8; 32] {
    use sha2::Digest as _;
    let mut hash = sha2::Sha256::new();
    let nonce: &[u8] = &envelope.nonce;
    for part in [
        &envelope.key[..],
        nonce,
        &envelope.request,
        &envelope.signature,
    ] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    hash.finalize().into()
}

fn answer_signed(envelope: &Envelope, answer: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(ANSWER_DOMAIN.len() + 32 + answer.len());
    bytes.extend_from_slice(ANSWER_DOMAIN);
    bytes.extend_from_slice(&digest(envelope));
    bytes.extend_from_slice(answer);
    bytes
}

impl Vouched {
    /// `answer` to `envelope`, signed with `sign` (the leader's identity key, whose public half
    /// is `key`).
    pub fn seal<E>(
        key: &PublicKey,
        envelope: &Envelope,
        answer: Vec<u8>,
        sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, E>,
    ) -> Result<Vouched, E> {
        let signature = sign(&answer_signed(envelope, &answer))?;
        Ok(Vouched {
            key: key.encode_protobuf(),
            answer,
            signature,
        })
    }

    /// The answer, when `leader` signed it for `envelope`.
    pub fn open(&self, leader: &PeerId, envelope: &Envelope) -> Result<&[u8], Refusal> {
        let key = PublicKey::try_decode_protobuf(&self.key).map_err(|_| Refusal::BadKey)?;
        if key.to_peer_id() != *leader
            || !key.verify(&answer_signed(envelope, &self.answer), &self.signature)
        {
            return Err(Refusal::NotTheLeaders);
        }
        Ok(&self.answer)
    }
}

/// The challenges a leader issues for forwarded requests, kept by what they say rather than in
/// a table of open ones: a challenge is the time it was issued (milliseconds since this
/// node's first challenge), 8 random bytes, and a 16-byte MAC, under a key drawn at random at
/// that first challenge, of those, the member it was issued to (only that member may deliver
/// it) and the origin it is for (only that node's signature goes with it). Issuing one holds
/// nothing, so no number of identities asking can use up the challenges of others. What is
/// held is the challenges taken, until they expire, so that each is taken once: a request
/// delivered with a valid MAC and its origin's signature, which the leader then carries out,
/// adds one. At most [`MAX_TAKEN`] are held, [`MAX_TAKEN_PER_MEMBER`] delivered by one member;
/// past those a member is given no challenge, so that its origins try another member.
#[derive(Default)]
pub struct Challenges {
    key: Option<ChallengeKey>,
    /// Each challenge taken, with the member that delivered it and when, oldest first.
    taken: VecDeque<(Nonce, PeerId, Instant)>,
    /// The latest time this was asked at: a request checked with an earlier reading of the
    /// clock (it waited on the lock) is judged at this one, so that no challenge expires from
    /// `taken` while still valid for it.
    latest: Option<Instant>,
}

/// The key and the start of a leader's challenges' clock.
struct ChallengeKey {
    mac: [u8; 32],
    epoch: Instant,
}

impl std::fmt::Debug for Challenges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Challenges")
            .field("taken", &self.taken.len())
            .finish_non_exhaustive()
    }
}

/// What a challenge's MAC covers before the time, member and origin.
const CHALLENGE_DOMAIN: &[u8] = b"weft/forward-challenge/1";
/// Bytes of a challenge before its MAC: the time it was issued and 8 random bytes.
const CHALLENGE_HEAD: usize = 16;

impl ChallengeKey {
    /// The MAC of a challenge whose head (its time and random bytes) is `head`.
    fn mac(&self, head: &[u8], member: &PeerId, origin: &PeerId) -> hmac::Hmac<sha2::Sha256> {
        use hmac::Mac as _;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.mac)
            .expect("HMAC takes a key of any length");
        mac.update(CHALLENGE_DOMAIN);
        mac.update(head);
        for peer in [member.to_bytes(), origin.to_bytes()] {
            mac.update(&(peer.len() as u16).to_le_bytes());
            mac.update(&peer);
        }
        mac
    }

    /// Milliseconds from this key's epoch to `now`.
    fn clock(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }
}

impl Challenges {
    /// A challenge issued at `now` to `member` for `origin`, or [`Refusal::Busy`] while as many
    /// challenges as may be held are taken, in all or delivered by that member.
    pub fn issue(
        &mut self,
        member: PeerId,
        origin: PeerId,
        now: Instant,
    ) -> Result<Nonce, Refusal> {
        use hmac::Mac as _;
        let now = self.advance(now);
        if self.is_full(&member) {
            return Err(Refusal::Busy);
        }
        let key = self.key.get_or_insert_with(|| {
            let mut mac = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut mac);
            ChallengeKey { mac, epoch: now }
        });
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..8].copy_from_slice(&key.clock(now).to_le_bytes());
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce[8..CHALLENGE_HEAD]);
        let mac = key
            .mac(&nonce[..CHALLENGE_HEAD], &member, &origin)
            .finalize()
            .into_bytes();
        nonce[CHALLENGE_HEAD..].copy_from_slice(&mac[..NONCE_LEN - CHALLENGE_HEAD]);
        Ok(nonce)
    }

    /// Whether `nonce` is a challenge this node issued to `member` for `origin` within
    /// [`CHALLENGE_TTL`] of `now`, and not yet taken.
    pub fn is_open(
        &mut self,
        nonce: &Nonce,
        member: &PeerId,
        origin: &PeerId,
        now: Instant,
    ) -> bool {
        use hmac::Mac as _;
        let now = self.advance(now);
        let Some(key) = &self.key else {
            return false;
        };
        let issued = u64::from_le_bytes(nonce[..8].try_into().expect("8 bytes"));
        let ttl = u64::try_from(CHALLENGE_TTL.as_millis()).unwrap_or(u64::MAX);
        let fresh = key
            .clock(now)
            .checked_sub(issued)
            .is_some_and(|age| age < ttl);
        // Checked in constant time: the MAC is a secret until the leader issues it.
        let genuine = key
            .mac(&nonce[..CHALLENGE_HEAD], member, origin)
            .verify_truncated_left(&nonce[CHALLENGE_HEAD..])
            .is_ok();
        genuine && fresh && !self.taken.iter().any(|(n, _, _)| n == nonce)
    }

    /// Takes `nonce` delivered by `member` for `origin` at `now`: `Ok` once for a challenge
    /// issued to that member for that origin within [`CHALLENGE_TTL`]; [`Refusal::Busy`] while
    /// as many are taken as may be held, in all or delivered by that member.
    pub fn take(
        &mut self,
        nonce: &Nonce,
        member: &PeerId,
        origin: &PeerId,
        now: Instant,
    ) -> Result<(), Refusal> {
        if !self.is_open(nonce, member, origin, now) {
            return Err(Refusal::UnknownChallenge);
        }
        if self.is_full(member) {
            return Err(Refusal::Busy);
        }
        let at = self.advance(now);
        self.taken.push_back((*nonce, *member, at));
        Ok(())
    }

    /// Whether as many challenges are taken as may be held, in all or delivered by `member`.
    fn is_full(&self, member: &PeerId) -> bool {
        self.taken.len() >= MAX_TAKEN
            || self.taken.iter().filter(|(_, m, _)| m == member).count() >= MAX_TAKEN_PER_MEMBER
    }

    /// Moves this clock to `now` when that is later than any time it was asked at, forgets the
    /// challenges taken [`CHALLENGE_TTL`] before it or earlier (each was issued before it was
    /// taken, so it has expired), and returns the time to judge at.
    fn advance(&mut self, now: Instant) -> Instant {
        let now = self.latest.map_or(now, |latest| latest.max(now));
        self.latest = Some(now);
        while self
            .taken
            .front()
            .is_some_and(|(_, _, at)| now.saturating_duration_since(*at) >= CHALLENGE_TTL)
        {
            self.taken.pop_front();
        }
        now
    }
}

/// The requests a member is passing on, by origin.
#[derive(Debug, Default)]
pub struct Passing(Mutex<HashMap<PeerId, usize>>);

/// One request being passed on; dropped, it frees its place.
#[derive(Debug)]
pub struct PassTicket<'a> {
    passing: &'a Passing,
    origin: PeerId,
}

impl Passing {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PeerId, usize>> {
        // Nothing panics while holding it.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A place for one more request from `origin`, unless it or all origins hold as many as
    /// they may.
    pub fn start(&self, origin: PeerId) -> Option<PassTicket<'_>> {
        let mut passing = self.lock();
        let total: usize = passing.values().sum();
        let mine = passing.get(&origin).copied().unwrap_or(0);
        if total >= MAX_PASSING || mine >= MAX_PASSING_PER_ORIGIN {
            return None;
        }
        passing.insert(origin, mine + 1);
        Some(PassTicket {
            passing: self,
            origin,
        })
    }
}

impl Drop for PassTicket<'_> {
    fn drop(&mut self) {
        let mut passing = self.passing.lock();
        if let Some(count) = passing.get_mut(&self.origin) {
            *count -= 1;
            if *count == 0 {
                passing.remove(&self.origin);
            }
        }
    }
}

/// Sends `rpc` (a `Join`, `Propose` or `Renew`) to `leader`, answered by `until`: directly, or, when
/// this node is not connected to it, through a member ([`send`]), the `voters` this node knows
/// (PeerIds) tried first. Answers the leader's answer and the peer that carried it (the leader
/// itself, or the member).
pub async fn call_or_forward<T: DeserializeOwned>(
    p2p: &P2pHandle,
    leader: PeerId,
    rpc: &LedgerRpc,
    voters: &[String],
    until: tokio::time::Instant,
) -> Result<(T, PeerId), SendError> {
    if !p2p.is_admitted(&leader) {
        // Forwarded at once, as before this node dialled members on demand: a leader it cannot
        // reach directly would hold the request for the dial's whole wait. The dial is made
        // for the next request.
        p2p.connect(leader).await;
        return send(p2p, leader, rpc, voters, until).await;
    }
    match tokio::time::timeout_at(until, call::<T>(p2p, leader, rpc)).await {
        Err(_) => Err(SendError::TimedOut),
        Ok(Ok(answer)) => Ok((answer, leader)),
        Ok(Err(CallError::Unreachable(P2pError::NotAdmitted(_)))) => {
            send(p2p, leader, rpc, voters, until).await
        }
        Ok(Err(e)) => Err(SendError::Sent(e.to_string())),
    }
}

/// The admitted peers to send a request through, at most [`MAX_FORWARDERS`]: the voters first
/// (the leader sends them its appends, so it keeps a connection to each, where a member that
/// only follows is connected to the leader while it has something to send), then the others,
/// each group in random order.
fn forwarders(mut peers: Vec<PeerId>, voters: &[String], rng: &mut impl rand::Rng) -> Vec<PeerId> {
    peers.shuffle(rng);
    // A stable sort keeps each group's random order.
    peers.sort_by_key(|peer| !voters.contains(&peer.to_string()));
    peers.truncate(MAX_FORWARDERS);
    peers
}

/// The most raft nodes a node taken in through a member tries to fetch the state from and
/// dials, together.
const MAX_SOURCES: usize = 16;

/// The raft nodes a node taken in through member `via` fetches the state from: of `raft`, the
/// PeerIds the leader's signed [`Joined::Follows`] names, those `admitted` holds, `via` first
/// when it is one of them; and those it is not connected to, to dial for a later attempt. At
/// most [`MAX_SOURCES`] in all, those it is connected to first. A member that is not among
/// them is never asked: the state it served could be one of its own making, voters included,
/// which the node would then check every feed against.
///
/// [`Joined::Follows`]: super::raft::network::Joined::Follows
pub fn sources(
    raft: &[String],
    via: PeerId,
    admitted: impl Fn(&PeerId) -> bool,
) -> (Vec<PeerId>, Vec<PeerId>) {
    let mut seen = std::collections::HashSet::new();
    let (mut reachable, mut unreached): (Vec<PeerId>, Vec<PeerId>) = raft
        .iter()
        .filter_map(|peer| peer.parse().ok())
        .filter(|peer| seen.insert(*peer))
        .partition(|peer| admitted(peer));
    // A stable sort keeps the leader's order among the others.
    reachable.sort_by_key(|peer| *peer != via);
    reachable.truncate(MAX_SOURCES);
    unreached.truncate(MAX_SOURCES - reachable.len());
    (reachable, unreached)
}

/// Sends `rpc` to `leader`, which this node is not connected to, through up to
/// [`MAX_FORWARDERS`] of its admitted peers ([`forwarders`]), answered by `until`: the first
/// that brings back the leader's challenge delivers the request, signed, and one that does not
/// deliver it leaves the next to try.
async fn send<T: DeserializeOwned>(
    p2p: &P2pHandle,
    leader: PeerId,
    rpc: &LedgerRpc,
    voters: &[String],
    until: tokio::time::Instant,
) -> Result<(T, PeerId), SendError> {
    let request = serde_json::to_vec(rpc).map_err(|e| SendError::NotSent(e.to_string()))?;
    let peers: Vec<PeerId> = p2p
        .peers()
        .iter()
        .filter_map(|view| view.peer_id.parse().ok())
        .filter(|peer| *peer != leader)
        .collect();
    let members = forwarders(peers, voters, &mut crate::chance::Chance);
    let mut why = format!("not connected to the leader {leader}, and no member passed it on");
    for via in members {
        let challenge_by = until.min(tokio::time::Instant::now() + CHALLENGE_TIMEOUT);
        let nonce = match fetch_challenge(p2p, via, leader, challenge_by).await {
            Ok(nonce) => nonce,
            Err(refusal) => {
                why = refusal;
                continue;
            }
        };
        let envelope = Envelope::seal(&p2p.public_key(), &leader, nonce, request.clone(), |m| {
            p2p.sign(m)
        })
        .map_err(|e| SendError::NotSent(e.to_string()))?;
        tracing::debug!(%via, %leader, "forwarding a request through a member");
        let deliver = LedgerRpc::Forward {
            leader,
            step: Step::Request(envelope.clone()),
        };
        match tokio::time::timeout_at(until, call::<Passed>(p2p, via, &deliver)).await {
            Err(_) => return Err(SendError::TimedOut),
            Ok(Ok(Passed::Answer(answer))) => {
                // Delivered: whatever the member says now, the request may have committed. A
                // refusal the leader gave before taking the challenge is not signed.
                let vouched: Vouched = serde_json::from_slice(&answer).map_err(|_| {
                    let unsigned =
                        serde_json::from_slice::<Result<serde_json::Value, String>>(&answer);
                    SendError::Sent(match unsigned {
                        Ok(Err(refusal)) => format!(
                            "{via} brought back an unsigned refusal (it may still have \
                             committed): {refusal}"
                        ),
                        _ => format!("{via} brought back an answer that is not the leader's"),
                    })
                })?;
                let answer = vouched
                    .open(&leader, &envelope)
                    .map_err(|e| SendError::Sent(format!("through {via}: {e}")))?;
                return serde_json::from_slice(answer)
                    .map(|answer| (answer, via))
                    .map_err(|e| SendError::Sent(format!("an undecodable answer: {e}")));
            }
            Ok(Ok(Passed::Undelivered(refusal))) => {
                why = format!("{via} did not pass the request on: {refusal}");
            }
            Ok(Ok(Passed::NoAnswer(reason))) => {
                return Err(SendError::Sent(format!(
                    "{via} passed the request on without an answer: {reason}"
                )));
            }
            Ok(Err(CallError::Unreachable(P2pError::NotAdmitted(_)))) => {
                why = format!("{via} is no longer connected");
            }
            Ok(Err(e)) => return Err(SendError::Sent(e.to_string())),
        }
    }
    Err(SendError::NotSent(why))
}

/// A challenge of `leader`'s, fetched through `via` by `by`; or why none came.
async fn fetch_challenge(
    p2p: &P2pHandle,
    via: PeerId,
    leader: PeerId,
    by: tokio::time::Instant,
) -> Result<Nonce, String> {
    let ask = LedgerRpc::Forward {
        leader,
        step: Step::Challenge,
    };
    match tokio::time::timeout_at(by, call::<Passed>(p2p, via, &ask)).await {
        Err(_) => Err(format!("{via} did not bring a challenge back in time")),
        Ok(Err(e)) => Err(format!("{via} did not pass a challenge on: {e}")),
        Ok(Ok(Passed::Undelivered(refusal) | Passed::NoAnswer(refusal))) => {
            Err(format!("{via} did not pass a challenge on: {refusal}"))
        }
        Ok(Ok(Passed::Answer(answer))) => serde_json::from_slice::<Result<Nonce, String>>(&answer)
            .map_err(|e| format!("an undecodable challenge through {via}: {e}"))?
            .map_err(|refusal| format!("the leader refused a challenge: {refusal}")),
    }
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
    fn a_node_taken_in_through_a_member_fetches_the_state_only_from_raft_nodes_the_leader_named() {
        let peers: Vec<PeerId> = (0..4).map(|_| PeerId::random()).collect();
        let [a, b, c, member] = [peers[0], peers[1], peers[2], peers[3]];
        let raft = |named: &[PeerId]| named.iter().map(ToString::to_string).collect::<Vec<_>>();
        let connected = |to: &[PeerId]| {
            let to = to.to_vec();
            move |peer: &PeerId| to.contains(peer)
        };

        // The member that carried the join is asked first when it is a raft node.
        let (reachable, unreached) = sources(&raft(&[a, b, c]), b, connected(&[a, b, member]));
        assert_eq!((reachable, unreached), (vec![b, a], vec![c]));

        // One that is not is never asked, however connected.
        let (reachable, unreached) = sources(&raft(&[a, b]), member, connected(&[member]));
        assert_eq!((reachable, unreached), (vec![], vec![a, b]));

        // Names that are no PeerId, and repeats, are passed over; the list is bounded, and a
        // connected raft node named late is kept.
        let mut named = raft(&[b, b]);
        named.push("not a peer".into());
        named.extend((0..100).map(|_| PeerId::random().to_string()));
        named.push(a.to_string());
        let (reachable, unreached) = sources(&named, member, connected(&[a]));
        assert_eq!(reachable, vec![a]);
        assert_eq!(unreached[0], b);
        assert_eq!(reachable.len() + unreached.len(), MAX_SOURCES);
    }

    #[test]
    fn requests_go_through_the_voters_first_then_members_at_random() {
        use rand::SeedableRng as _;
        let peers: Vec<PeerId> = (0..10).map(|_| PeerId::random()).collect();
        let voters = vec![peers[3].to_string(), peers[7].to_string()];
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut thirds = std::collections::BTreeSet::new();
        for _ in 0..50 {
            let chosen = forwarders(peers.clone(), &voters, &mut rng);
            assert_eq!(chosen.len(), MAX_FORWARDERS);
            let first: std::collections::BTreeSet<String> =
                chosen[..2].iter().map(ToString::to_string).collect();
            assert_eq!(first, voters.iter().cloned().collect());
            thirds.insert(chosen[2]);
        }
        assert!(
            thirds.len() > 3,
            "the others are drawn at random: {thirds:?}"
        );
        let none = forwarders(peers.clone(), &[], &mut rng);
        assert_eq!(none.len(), MAX_FORWARDERS);
        assert!(forwarders(peers[..1].to_vec(), &voters, &mut rng) == peers[..1]);
    }

    #[test]
    fn the_leaders_answer_opens_only_unchanged_and_for_the_envelope_it_answers() {
        let leader = Keypair::generate_ed25519();
        let leader_id = leader.public().to_peer_id();
        let origin = Keypair::generate_ed25519();
        let envelope = sealed(&origin, &leader_id, [3; NONCE_LEN], b"request");
        let answer = |envelope: &Envelope, text: &[u8]| {
            Vouched::seal(&leader.public(), envelope, text.to_vec(), |m| {
                leader.sign(m)
            })
            .unwrap()
        };
        let vouched = answer(&envelope, b"done");
        assert_eq!(vouched.open(&leader_id, &envelope).unwrap(), b"done");
        // Changed by the member that carries it: refused.
        let changed = Vouched {
            answer: b"refused".to_vec(),
            ..vouched.clone()
        };
        assert_eq!(
            changed.open(&leader_id, &envelope),
            Err(Refusal::NotTheLeaders)
        );
        // The leader's answer to another envelope over the same challenge (the member's own
        // request, or a tampered copy of the origin's): refused.
        let members_own = sealed(
            &Keypair::generate_ed25519(),
            &leader_id,
            [3; NONCE_LEN],
            b"request",
        );
        let theirs = answer(&members_own, b"done");
        assert_eq!(
            theirs.open(&leader_id, &envelope),
            Err(Refusal::NotTheLeaders)
        );
        let mut tampered = envelope.clone();
        tampered.signature[0] ^= 1;
        let refusal = answer(&tampered, b"bad signature");
        assert_eq!(
            refusal.open(&leader_id, &envelope),
            Err(Refusal::NotTheLeaders)
        );
        // Signed by the member itself instead of the leader: refused.
        let member = Keypair::generate_ed25519();
        let own = Vouched::seal(&member.public(), &envelope, b"done".to_vec(), |m| {
            member.sign(m)
        })
        .unwrap();
        assert_eq!(own.open(&leader_id, &envelope), Err(Refusal::NotTheLeaders));
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
    fn a_challenge_is_taken_once_by_its_member_for_its_origin_within_its_lifetime() {
        let start = Instant::now();
        let (member, origin, other) = (PeerId::random(), PeerId::random(), PeerId::random());
        let mut challenges = Challenges::default();
        let nonce = challenges.issue(member, origin, start).unwrap();
        let mut forged = nonce;
        forged[NONCE_LEN - 1] ^= 1;
        assert_eq!(
            challenges.take(&forged, &member, &origin, start),
            Err(Refusal::UnknownChallenge),
            "never issued"
        );
        let mut later = nonce;
        later[0] ^= 1;
        assert_eq!(
            challenges.take(&later, &member, &origin, start),
            Err(Refusal::UnknownChallenge),
            "its time changed"
        );
        assert_eq!(
            challenges.take(&nonce, &other, &origin, start),
            Err(Refusal::UnknownChallenge),
            "issued to another member"
        );
        assert_eq!(
            challenges.take(&nonce, &member, &other, start),
            Err(Refusal::UnknownChallenge),
            "issued for another origin"
        );
        assert!(challenges.is_open(&nonce, &member, &origin, start));
        let soon = start + CHALLENGE_TTL / 2;
        assert_eq!(challenges.take(&nonce, &member, &origin, soon), Ok(()));
        assert!(!challenges.is_open(&nonce, &member, &origin, soon));
        assert_eq!(
            challenges.take(&nonce, &member, &origin, soon),
            Err(Refusal::UnknownChallenge),
            "used"
        );
        assert_eq!(
            challenges.take(&nonce, &member, &origin, start + CHALLENGE_TTL * 3),
            Err(Refusal::UnknownChallenge),
            "used, and expired since"
        );
        let fresh = challenges
            .issue(member, origin, start + CHALLENGE_TTL * 4)
            .unwrap();
        assert_eq!(
            challenges.take(&fresh, &member, &origin, start + CHALLENGE_TTL * 5),
            Err(Refusal::UnknownChallenge),
            "expired"
        );
        let mut another = Challenges::default();
        another.issue(member, origin, start).unwrap();
        // Issued at the latest time this leader was asked at, five lifetimes in.
        let fresh = challenges.issue(member, origin, start).unwrap();
        let then = start + CHALLENGE_TTL * 5;
        assert!(challenges.is_open(&fresh, &member, &origin, then));
        assert!(
            !another.is_open(&fresh, &member, &origin, then),
            "another leader's"
        );
        let (one, two) = (
            challenges.issue(member, origin, start).unwrap(),
            challenges.issue(member, origin, start).unwrap(),
        );
        assert_ne!(one, two, "two asked for at once");
        assert_eq!(challenges.take(&one, &member, &origin, start), Ok(()));
        assert_eq!(challenges.take(&two, &member, &origin, start), Ok(()));
    }

    #[test]
    fn asking_for_challenges_uses_up_nothing_and_taking_them_is_capped_per_member_and_in_all() {
        let start = Instant::now();
        let mut challenges = Challenges::default();
        let (member, honest) = (PeerId::random(), PeerId::random());
        let asked = (0..100_000)
            .filter(|_| {
                challenges
                    .issue(PeerId::random(), PeerId::random(), start)
                    .is_ok()
            })
            .count();
        assert_eq!(asked, 100_000, "issuing holds nothing");
        let nonce = challenges.issue(member, honest, start).unwrap();
        assert_eq!(challenges.take(&nonce, &member, &honest, start), Ok(()));

        // One member delivering requests of many origins fills its own share only.
        let greedy = PeerId::random();
        let taken = (0..MAX_TAKEN_PER_MEMBER * 2)
            .filter(|_| {
                let origin = PeerId::random();
                challenges
                    .issue(greedy, origin, start)
                    .is_ok_and(|nonce| challenges.take(&nonce, &greedy, &origin, start).is_ok())
            })
            .count();
        assert_eq!(taken, MAX_TAKEN_PER_MEMBER);
        assert_eq!(
            challenges.issue(greedy, PeerId::random(), start),
            Err(Refusal::Busy),
            "no challenge for a member whose share is taken"
        );
        let nonce = challenges.issue(member, honest, start).unwrap();
        assert_eq!(challenges.take(&nonce, &member, &honest, start), Ok(()));

        // Many members together fill the whole.
        while challenges.taken.len() < MAX_TAKEN {
            let (member, origin) = (PeerId::random(), PeerId::random());
            let nonce = challenges.issue(member, origin, start).unwrap();
            assert_eq!(challenges.take(&nonce, &member, &origin, start), Ok(()));
        }
        assert_eq!(
            challenges.issue(member, honest, start),
            Err(Refusal::Busy),
            "given no challenge, an origin asks another member"
        );
        let after = start + CHALLENGE_TTL;
        let nonce = challenges.issue(member, honest, after).unwrap();
        assert_eq!(
            challenges.take(&nonce, &member, &honest, after),
            Ok(()),
            "the taken ones expired"
        );
    }

    #[test]
    fn a_request_judged_at_an_earlier_reading_of_the_clock_cannot_take_a_challenge_twice() {
        let start = Instant::now();
        let mut challenges = Challenges::default();
        let (member, origin) = (PeerId::random(), PeerId::random());
        let nonce = challenges.issue(member, origin, start).unwrap();
        assert_eq!(challenges.take(&nonce, &member, &origin, start), Ok(()));
        // Another request, read at a later time, would forget the first take...
        let other = challenges
            .issue(member, origin, start + CHALLENGE_TTL)
            .unwrap();
        assert!(challenges.is_open(&other, &member, &origin, start + CHALLENGE_TTL));
        // ...and the replay, read before, is judged at that later time: expired.
        assert_eq!(
            challenges.take(&nonce, &member, &origin, start + CHALLENGE_TTL / 2),
            Err(Refusal::UnknownChallenge)
        );
    }

    #[test]
    fn a_member_passes_on_a_few_requests_per_origin_and_in_all() {
        let passing = Passing::default();
        let origin = PeerId::random();
        let first = passing.start(origin).expect("a place");
        let second = passing.start(origin).expect("a place");
        assert!(passing.start(origin).is_none(), "its share is used");
        drop(first);
        let third = passing.start(origin).expect("a place again");
        let others: Vec<_> = (0..MAX_PASSING)
            .filter_map(|_| passing.start(PeerId::random()))
            .collect();
        assert_eq!(others.len(), MAX_PASSING - 2);
        drop((second, third, others));
        assert!(passing.lock().is_empty());
    }
}
