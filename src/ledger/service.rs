//! Answers the ledger RPCs that admitted peers send over `/weft/raft/1`: raft's own
//! (append, vote, snapshot) and the cluster-life requests (hello, join, propose, catch-up).
//! A proposal is first checked against its sender, a raft RPC against the raft node it is
//! addressed to (this node's current raft id, in this node's cluster) and the raft node its
//! sender is registered as, a join against the PeerId it asks to join as ([`super::authority`]); a
//! proposal is committed with its issuer recorded when it is audited. Each request
//! runs in its own task so a slow snapshot chunk or a join waiting for a learner to catch up
//! never holds up a vote.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use futures::future::join_all;
use libp2p::PeerId;
use openraft::error::{ClientWriteError, InstallSnapshotError, RaftError};
use openraft::raft::{AppendEntriesResponse, InstallSnapshotResponse, VoteResponse};
use openraft::{ChangeMembers, Raft};
use serde::Serialize;
use tokio::sync::mpsc;

use super::Ledger;
use super::authority::{
    BEHIND, RaftClaim, in_network, may_join, may_lead, may_propose, may_send_raft,
    without_configured_policy,
};
use super::forward::{self, Envelope, Nonce, Passed, Step};
use super::limits::{MAX_COMMAND_BYTES, check_size};
use super::raft::LedgerTypes;
use super::raft::network::{Hello, Joined, LedgerRpc, RaftRpc, call};
use super::raft::stream::{self, StreamError};
use super::seats;
use super::state::{ClusterId, Command, Outcome, TRUSTED_LEAD, attribute};
use super::vouch::{voter_sets, vouched};
use crate::p2p::InboundRpc;

/// How long one hello may take.
pub(crate) const HELLO_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a proposal may wait to commit, from another node or from this one (within the
/// 10 s the CLI waits for an answer).
pub(crate) const PROPOSAL_TIMEOUT: Duration = Duration::from_secs(8);
/// How long the leader waits for a joining learner to catch up (without the membership lock),
/// and for one membership change to commit (with it).
pub(crate) const LEARNER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long handing a denied voter's seat over may take before its denial ([`make_room`]):
/// within a proposal's wait, so the caller hears why.
const ROOM_TIMEOUT: Duration = Duration::from_secs(4);

/// How long a node whose own learner did not catch up within the learner timeout waits before
/// the leader takes another join from it: a token holder joining again and again under the
/// same PeerId with new raft ids. A join that only waited behind others for the lock is not
/// held against its node.
const JOIN_COOLDOWN: Duration = Duration::from_secs(60);

/// The joins in flight (`None`) and the nodes cooling down after their learner did not catch
/// up (until when), by PeerId.
#[derive(Debug, Default)]
pub(crate) struct Joins(std::sync::Mutex<HashMap<String, Option<Instant>>>);

impl Joins {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Option<Instant>>> {
        // Nothing panics while holding it.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Marks a join from `peer` as in flight until the ticket drops, or says why none is
    /// taken now.
    fn start<'a>(&'a self, peer: &str) -> Result<JoinTicket<'a>, String> {
        let now = crate::clock::now();
        let mut joins = self.lock();
        joins.retain(|_, until| until.is_none_or(|t| t > now));
        match joins.get(peer) {
            Some(None) => Err("a join from this node is already in flight".into()),
            Some(Some(_)) => Err(format!(
                "this node's last join failed: it did not catch up as a learner within {} s; \
                 the leader takes another after {} s",
                LEARNER_TIMEOUT.as_secs(),
                JOIN_COOLDOWN.as_secs()
            )),
            None => {
                joins.insert(peer.to_string(), None);
                Ok(JoinTicket {
                    joins: self,
                    peer: peer.to_string(),
                    too_slow: false,
                })
            }
        }
    }
}

/// A join in flight; dropped, it ends the join, and a join whose learner did not catch up in
/// time starts the sender's cooldown.
struct JoinTicket<'a> {
    joins: &'a Joins,
    peer: String,
    too_slow: bool,
}

impl Drop for JoinTicket<'_> {
    fn drop(&mut self) {
        let mut joins = self.joins.lock();
        if self.too_slow {
            joins.insert(
                std::mem::take(&mut self.peer),
                Some(crate::clock::now() + JOIN_COOLDOWN),
            );
        } else {
            joins.remove(&self.peer);
        }
    }
}

/// The answer to a proposal sent to a node that is no longer the leader: it was not applied,
/// so the proposer may send it again.
pub const NOT_LEADER: &str = "this node is not the leader (an election is under way)";

/// Serves until the inbox closes. Each request runs in a task of its own, owned here: they end
/// with the service.
pub async fn serve(ledger: Ledger, target_voters: usize, mut inbox: mpsc::Receiver<InboundRpc>) {
    let mut running = tokio::task::JoinSet::new();
    loop {
        let rpc = tokio::select! {
            rpc = inbox.recv() => match rpc {
                Some(rpc) => rpc,
                None => return,
            },
            Some(done) = running.join_next() => {
                if let Err(e) = done
                    && e.is_panic()
                {
                    tracing::error!(error = %e, "a ledger request's task panicked");
                }
                continue;
            }
        };
        let ledger = ledger.clone();
        running.spawn(async move {
            let request = match serde_json::from_slice::<LedgerRpc>(&rpc.payload) {
                Ok(request) => request,
                Err(e) => {
                    tracing::warn!(peer = %rpc.peer, error = %e, "malformed ledger request");
                    return;
                }
            };
            match answer(&ledger, target_voters, rpc.peer, rpc.behind, request).await {
                Ok(answer) => {
                    let _ = rpc.reply.send(answer);
                }
                // Dropping the reply closes the stream: the sender gets no answer.
                Err(refusal) => tracing::debug!(peer = %rpc.peer, %refusal, "refused a ledger RPC"),
            }
        });
    }
}

/// The encoded answer to `request` from `peer`, or why it gets none: raft RPCs in another
/// node's name are refused ([`may_send_raft`]). A peer `behind` (it proved only the token
/// before this node's current one) reads but does not write: see [`BEHIND`].
async fn answer(
    ledger: &Ledger,
    target_voters: usize,
    peer: PeerId,
    behind: bool,
    request: LedgerRpc,
) -> Result<Vec<u8>, String> {
    Ok(match request {
        LedgerRpc::Raft { to, cluster, rpc } => answer_raft(ledger, peer, behind, to, cluster, rpc)
            .await?
            .json(),
        LedgerRpc::Hello => encode(&hello(ledger)),
        LedgerRpc::Join {
            node_id,
            node,
            operator,
            form,
            // Only a forwarded join is answered with the raft nodes ([`forwarded_join`]): a
            // node that reaches the leader follows the leader itself.
            follows: _,
        } => {
            let other_key = operator_differs(ledger, operator.as_deref());
            if other_key {
                tracing::warn!(
                    %peer,
                    "a node runs without this mesh's operator key, or with another: it joins \
                     as a follower, with no raft seat (start it with the same --operator-key)"
                );
            }
            // Its record counts too: the seat rules would take at once a seat its record
            // says an older weft holds ([`super::seats`], unfit nodes). Not for a node that
            // still holds a voter seat under an earlier raft id: only the learner it joins as
            // replaces that seat (superseded voters), and its record follows within seconds.
            let old_weft = {
                let state = ledger.state();
                !state.may_seat(form)
                    || (state.outdated(&peer.to_string())
                        && !holds_earlier_voter_seat(ledger, &peer.to_string(), node_id))
            };
            if old_weft {
                tracing::warn!(
                    %peer,
                    form,
                    "a node runs a weft older than the ledger's rules: it joins as a follower, \
                     with no raft seat (upgrade it)"
                );
            }
            let untrusted = !ledger.state().may_hold_seat(&peer.to_string());
            if untrusted {
                tracing::info!(
                    %peer,
                    "a node the operator does not trust with a raft seat joins as a follower \
                     (weft members trust)"
                );
            }
            let follower_only = behind || other_key || old_weft || untrusted;
            let joiner = Joiner {
                follower_only,
                key_differs: other_key,
                key: operator,
            };
            answer_join(ledger, target_voters, peer, joiner, node_id, node).await
        }
        LedgerRpc::CatchupPage {
            position,
            offset,
            after,
        } => encode(&ledger.catchup_page(position, after, offset).await),
        LedgerRpc::Propose(command) => answer_propose(ledger, peer, behind, command).await,
        LedgerRpc::Renew => answer_renew(ledger, peer, behind),
        // A peer behind the rotation writes nothing, forwarded or not, for itself or another.
        LedgerRpc::Challenge { .. } | LedgerRpc::Forwarded(_) if behind => {
            encode(&Err::<(), String>(BEHIND.to_string()))
        }
        LedgerRpc::Challenge { origin } => challenge(ledger, peer, origin),
        LedgerRpc::Forwarded(envelope) => answer_forwarded(ledger, peer, envelope).await,
        LedgerRpc::Forward { leader, step } => pass_on(ledger, peer, behind, leader, step).await,
    })
}

/// Raft's answer to one of its RPCs, before it is encoded for the way the RPC came: JSON for a
/// request, postcard around JSON on a raft stream ([`stream::compact`]).
pub(crate) enum RaftAnswer {
    Append(Result<AppendEntriesResponse<u64>, RaftError<u64>>),
    Vote(Result<VoteResponse<u64>, RaftError<u64>>),
    Snapshot(Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>),
}

impl RaftAnswer {
    /// The answer as a request's answer carries it: the JSON of raft's `Result`.
    fn json(&self) -> Vec<u8> {
        match self {
            RaftAnswer::Append(result) => encode(result),
            RaftAnswer::Vote(result) => encode(result),
            RaftAnswer::Snapshot(result) => encode(result),
        }
    }

    /// The answer as a raft stream carries it ([`stream::compact`]).
    pub(crate) fn compact(&self) -> Result<Vec<u8>, StreamError> {
        match self {
            RaftAnswer::Append(result) => stream::compact(result),
            RaftAnswer::Vote(result) => stream::compact(result),
            RaftAnswer::Snapshot(result) => stream::compact(result),
        }
    }
}

/// Raft's answer to `rpc` from `peer`, addressed to raft node `to` of `cluster`, or why it
/// gets none: the RPC goes to the raft instance it is addressed to, and is checked against
/// that instance's membership; raft RPCs in another node's name are refused
/// ([`may_send_raft`]), and a peer `behind` sends them only as the raft node it is registered
/// as ([`BEHIND`]).
pub(crate) async fn answer_raft(
    ledger: &Ledger,
    peer: PeerId,
    behind: bool,
    to: u64,
    cluster: Option<ClusterId>,
    rpc: RaftRpc,
) -> Result<RaftAnswer, String> {
    let raft = ledger.raft_for(to, cluster)?;
    let sender = peer.to_string();
    let registered = |node: u64| {
        raft.metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&node)
            .map(|n| n.peer_id.clone())
    };
    let knows_membership = raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .nodes()
        .next()
        .is_some();
    // The node the RPC's vote names. A peer behind sends raft RPCs only as the raft
    // node it is registered as: a follower, which knows no raft membership, would
    // otherwise take appends from it. A leader the membership does not register yet
    // may be vouched for by the voters it does ([`super::vouch`]).
    let (leads, vote) = match &rpc {
        RaftRpc::Append(r) => (true, &r.vote),
        RaftRpc::Vote(r) => (false, &r.vote),
        RaftRpc::Snapshot(r) => (true, &r.vote),
    };
    let node = vote.leader_id().voted_for().unwrap_or(0);
    let claim = if leads {
        RaftClaim::Lead(node)
    } else {
        RaftClaim::Candidate(node)
    };
    let registered = registered(node);
    if behind && registered.as_deref() != Some(sender.as_str()) {
        return Err(BEHIND.to_string());
    }
    if let Err(refusal) = may_send_raft(claim, &sender, registered.as_deref(), knows_membership)
        && !(leads && registered.is_none() && vouched(ledger, to, node, &sender).await)
    {
        return Err(refusal);
    }
    if let Some(refusal) = untrusted_lead(ledger, &raft, &sender)
        && ledger.heard_leader_within(TRUSTED_LEAD_PATIENCE)
    {
        return Err(refusal);
    }
    // What raft takes as from the current leader (a stale leader's vote is answered with a
    // higher one) is word from the leader ([`super::contact`]).
    Ok(match rpc {
        RaftRpc::Append(request) => {
            let answer = raft.append_entries(request).await;
            if matches!(&answer, Ok(a) if !matches!(a, AppendEntriesResponse::HigherVote(_))) {
                ledger.heard_from_leader(to);
            }
            RaftAnswer::Append(answer)
        }
        RaftRpc::Vote(request) => RaftAnswer::Vote(raft.vote(request).await),
        RaftRpc::Snapshot(request) => {
            let vote = request.vote;
            let answer = raft.install_snapshot(request).await;
            if matches!(&answer, Ok(a) if a.vote == vote) {
                ledger.heard_from_leader(to);
            }
            RaftAnswer::Snapshot(answer)
        }
    })
}

/// How long a raft node keeps refusing untrusted leaders and candidates ([`may_lead`]) without
/// word from any leader: then it answers them again, and refuses them once it hears a leader.
/// The trusted voters elect one of them within seconds, unless their logs are behind an
/// untrusted voter's and too few of them are live to win without its vote (raft gives a vote
/// only to a candidate whose log is as long): letting the untrusted one lead for an append
/// brings their logs level, and the rule takes the lead back. Longer than the longest a
/// follower waits before it stands, which an append it takes starts again (the ledger's
/// simulation found followers taking the untrusted leader's append every 10 s, just before
/// they would have stood): openraft's leader lease and election timeout (3 s each at most,
/// [`super::raft::config`]), 6 s more once it has seen a longer log than its own
/// (`smaller_log_timeout`, twice the longest election timeout), and a tick (750 ms): 12.75 s.
/// Shorter than the 15 s after which a cluster without a leader counts as lost
/// ([`super::pilot::LEADERLESS_GRACE`]), so trusted voters give way before they would give
/// their cluster up.
const TRUSTED_LEAD_PATIENCE: Duration = Duration::from_secs(14);

/// Why the raft RPCs of PeerId `sender` are refused by this node's raft instance `raft` under
/// its own state's trust list (not a replica's) and membership, when they are
/// ([`may_lead`]): only under the rules that make every raft node keep the rule
/// ([`TRUSTED_LEAD`]). The state is not held past the check, so raft's applies never copy it
/// for this.
fn untrusted_lead(ledger: &Ledger, raft: &Raft<LedgerTypes>, sender: &str) -> Option<String> {
    let state = ledger.engine.load().machine.state();
    let trusted = state.trusted();
    if state.rules() < TRUSTED_LEAD || trusted.is_empty() || trusted.contains(sender) {
        return None;
    }
    let voters = voter_sets(raft.metrics().borrow().membership_config.membership());
    may_lead(trusted, &voters, sender).err()
}

/// Whether this node leads with an operator key ([`Ledger::authority`]) and a joining node
/// declares another one, or none: such a node gets no raft seat, so it can never lead and take
/// commands unchecked.
pub(crate) fn operator_differs(ledger: &Ledger, declared: Option<&str>) -> bool {
    key_differs(ledger.authority().as_ref(), declared)
}

/// Whether `declared` is another operator key than a leader's `key`, or none (nothing differs
/// from no key).
pub(crate) fn key_differs(
    key: Option<&crate::operator::OperatorKey>,
    declared: Option<&str>,
) -> bool {
    key.is_some_and(|key| declared != Some(key.to_string().as_str()))
}

/// Counts the operator key a joiner declares (`key`: another than this leader's, or none, when
/// `differs`) as its answer to the leader's question ([`super::keyed`]) for the admission it
/// joins over: a joiner with the key may then be promoted as soon as it has caught up, not a
/// round or two later, and a leader without a key knows at once which one its new voter runs
/// with ([`Ledger::authority`]). Only a direct join comes here, over the joiner's admission (a
/// forwarded one follows, seatless).
fn record_declared_key(ledger: &Ledger, peer: &str, differs: bool, key: Option<&str>) {
    let admitted = ledger
        .p2p()
        .peers()
        .iter()
        .find(|view| view.peer_id == peer)
        .map(|view| view.admitted_since);
    if let Some(admitted) = admitted {
        ledger
            .keyed()
            .declared(crate::clock::now(), peer, admitted, differs, key);
    }
}

/// Whether `peer` holds a voter seat in this node's raft membership under another raft id than
/// `node_id`.
fn holds_earlier_voter_seat(ledger: &Ledger, peer: &str, node_id: u64) -> bool {
    let metrics = ledger.raft().metrics().borrow().clone();
    let membership = metrics.membership_config.membership();
    let voters: Vec<(u64, &str)> = membership
        .voter_ids()
        .filter_map(|id| membership.get_node(&id).map(|n| (id, n.peer_id.as_str())))
        .collect();
    seats::voter_seat_elsewhere(&voters, node_id, peer)
}

/// The PeerId raft node `node_id` is registered as in this node's raft membership, if any.
fn registered_as(ledger: &Ledger, node_id: u64) -> Option<String> {
    ledger
        .raft()
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .get_node(&node_id)
        .map(|n| n.peer_id.clone())
}

/// What the leader takes from a direct join besides the raft node.
#[derive(Debug, Clone)]
struct Joiner {
    /// Behind the rotation, without this leader's operator key or of an older weft: it joins
    /// as a follower unless it already holds a seat.
    follower_only: bool,
    /// It declared another operator key than this leader's, or none ([`operator_differs`]).
    key_differs: bool,
    /// The operator key it declared.
    key: Option<String>,
}

/// A join from `peer` as raft node `node_id`.
async fn answer_join(
    ledger: &Ledger,
    target_voters: usize,
    peer: PeerId,
    joiner: Joiner,
    node_id: u64,
    node: super::raft::LedgerNode,
) -> Vec<u8> {
    tracing::info!(node_id, %peer, "join request");
    let sender = peer.to_string();
    let registered = registered_as(ledger, node_id);
    let joined = may_join(node_id, &node.peer_id, &sender, registered.as_deref()).map(|()| node);
    match joined.and_then(|node| Ok((node, ledger.joins.start(&sender)?))) {
        Ok((node, mut ticket)) => {
            let joined = join(ledger, node_id, node, target_voters, joiner).await;
            ticket.too_slow = matches!(joined, Err(JoinError::CaughtUpTooSlowly));
            encode(&joined.map_err(|e| e.to_string()))
        }
        Err(refusal) => {
            tracing::warn!(%peer, %refusal, "refused a join");
            encode(&Err::<Joined, String>(refusal))
        }
    }
}

/// A proposal from `peer`, checked against it ([`may_propose`]) and recorded with it as its
/// issuer when audited.
async fn answer_propose(ledger: &Ledger, peer: PeerId, behind: bool, command: Command) -> Vec<u8> {
    let sender = peer.to_string();
    let operator = ledger.authority();
    let command = without_configured_policy(command, operator.as_ref());
    let checked = if behind {
        Err(BEHIND.to_string())
    } else {
        let cluster = ledger.state().cluster();
        may_propose(
            &command,
            &sender,
            operator.as_ref(),
            cluster,
            ledger.wall_now(),
        )
        .and_then(|()| in_network(&command, &ledger.networks()))
        .and_then(|()| check_size(&command))
    };
    if let Err(refusal) = checked {
        if behind {
            tracing::debug!(%peer, "refused a proposal from a peer behind the rotation");
        } else {
            tracing::warn!(%peer, %refusal, "refused a proposal");
        }
        return encode(&Err::<Outcome, String>(refusal));
    }
    let started = tokio::time::Instant::now();
    if let Err(refusal) = make_room(ledger, &command).await {
        tracing::warn!(%peer, %refusal, "refused a denial for now");
        return encode(&Err::<Outcome, String>(refusal));
    }
    let command = attribute(command, &sender, ledger.wall_now());
    let written = tokio::time::timeout_at(
        started + PROPOSAL_TIMEOUT,
        ledger.raft().client_write(command),
    )
    .await;
    encode(&match written {
        Ok(written) => written.map(|r| r.data).map_err(|e| match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => NOT_LEADER.to_string(),
            e => e.to_string(),
        }),
        Err(_) => Err(format!(
            "not committed within {} s; it may still commit",
            PROPOSAL_TIMEOUT.as_secs()
        )),
    })
}

/// A renewal of `peer`'s lease, queued for the leader's next [`Command::Renewals`] entry and
/// answered at once. Only this node's live members are queued, and only while it leads; a peer
/// behind the rotation renews nothing (it proposes nothing either).
fn answer_renew(ledger: &Ledger, peer: PeerId, behind: bool) -> Vec<u8> {
    let sender = peer.to_string();
    let answer = if behind {
        Err(BEHIND.to_string())
    } else if !leads(ledger) {
        Err(NOT_LEADER.to_string())
    } else {
        ledger.queue_renewal(sender)
    };
    if let Err(refusal) = &answer {
        tracing::debug!(%peer, %refusal, "refused a lease renewal");
    }
    encode(&answer)
}

/// Whether this node leads its cluster, as raft says.
fn leads(ledger: &Ledger) -> bool {
    ledger.raft().metrics().borrow().current_leader == Some(ledger.node_id())
}

/// On the leader: a single-use challenge for a request `member` delivers for `origin` (another
/// node, or itself).
fn challenge(ledger: &Ledger, member: PeerId, origin: PeerId) -> Vec<u8> {
    if !leads(ledger) {
        return encode(&Err::<Nonce, String>(NOT_LEADER.to_string()));
    }
    let nonce = ledger
        .challenges()
        .issue(member, origin, crate::clock::now())
        .map_err(|refusal| refusal.to_string());
    encode(&nonce)
}

/// On the leader: the answer to a forwarded request ([`decide_forwarded`]). Once its challenge
/// is taken the answer is the request's only one, and it is signed over the envelope
/// ([`forward::Vouched`]) so that the member carrying it back cannot change it. A refusal
/// before that is not signed: the same envelope delivered again is refused so (its challenge
/// was used), and a signed refusal would let the member show it for a request that committed;
/// unsigned, the origin takes it as "may have committed".
async fn answer_forwarded(ledger: &Ledger, member: PeerId, envelope: Envelope) -> Vec<u8> {
    match decide_forwarded(ledger, member, &envelope).await {
        Err(before_taken) => before_taken,
        Ok(answer) => {
            let p2p = ledger.p2p();
            match forward::Vouched::seal(&p2p.public_key(), &envelope, answer, |m| p2p.sign(m)) {
                Ok(vouched) => encode(&vouched),
                // An ed25519 identity always signs; unsigned, the origin counts it as sent.
                Err(e) => encode(&Err::<(), String>(e.to_string())),
            }
        }
    }
}

/// A join or proposal another node signed over a challenge this leader issued to `member`,
/// which delivers it, answered as if that node had sent it, except that a join makes it a
/// follower: `Ok` once the challenge is taken, `Err` for a refusal before. Cheap checks come
/// before the signature's, and a denied node's request is refused, as its connections would be.
async fn decide_forwarded(
    ledger: &Ledger,
    member: PeerId,
    envelope: &Envelope,
) -> Result<Vec<u8>, Vec<u8>> {
    let refuse = |refusal: String| encode(&Err::<(), String>(refusal));
    if !leads(ledger) {
        return Err(refuse(NOT_LEADER.to_string()));
    }
    let now = crate::clock::now();
    let signer = envelope
        .signer()
        .map_err(|refusal| refuse(refusal.to_string()))?;
    if !ledger
        .challenges()
        .is_open(&envelope.nonce, &member, &signer, now)
    {
        return Err(refuse(forward::Refusal::UnknownChallenge.to_string()));
    }
    if envelope.request.len() > MAX_COMMAND_BYTES * 2 {
        return Err(refuse(format!(
            "a forwarded request of {} bytes is over the limit",
            envelope.request.len()
        )));
    }
    let origin = envelope
        .origin(&ledger.p2p().peer_id())
        .map_err(|refusal| refuse(refusal.to_string()))?;
    ledger
        .challenges()
        .take(&envelope.nonce, &member, &origin, now)
        .map_err(|refusal| refuse(refusal.to_string()))?;
    if ledger.state().is_denied(&origin.to_string()) {
        return Ok(refuse(format!("{origin} is denied")));
    }
    Ok(
        match serde_json::from_slice::<LedgerRpc>(&envelope.request) {
            Ok(LedgerRpc::Join {
                node_id,
                node,
                follows,
                ..
            }) => forwarded_join(ledger, origin, node_id, node, follows),
            Ok(LedgerRpc::Propose(command)) => answer_propose(ledger, origin, false, command).await,
            Ok(LedgerRpc::Renew) => answer_renew(ledger, origin, false),
            Ok(_) => refuse("only a join, a proposal or a renewal is forwarded".into()),
            Err(e) => refuse(format!("the forwarded request does not decode: {e}")),
        },
    )
}

/// A join forwarded for `origin`: it follows the cluster, since raft's appends would not reach
/// it. Decided at once, without the membership lock or any seat change; a raft node that holds
/// a seat rejoins only through a direct connection. An origin that `follows` (reads
/// [`Joined::Follows`]) is told the raft nodes to fetch the state from, in the answer this
/// leader signs, rather than taking it from the member that carried the join.
fn forwarded_join(
    ledger: &Ledger,
    origin: PeerId,
    node_id: u64,
    node: super::raft::LedgerNode,
    follows: bool,
) -> Vec<u8> {
    tracing::info!(node_id, %origin, "forwarded join request");
    let registered = registered_as(ledger, node_id);
    let joined = may_join(
        node_id,
        &node.peer_id,
        &origin.to_string(),
        registered.as_deref(),
    )
    .and_then(|()| match registered {
        Some(_) => Err(
            "this raft node holds a seat; it rejoins only through a direct \
                        connection to the leader"
                .to_string(),
        ),
        None if follows => {
            let status = ledger.status();
            Ok(Joined::Follows {
                raft: status.voters.into_iter().chain(status.learners).collect(),
            })
        }
        None => Ok(Joined::Follower),
    });
    encode(&joined)
}

/// How long a member waits for the leader's answer to a request it passes on: a proposal's
/// commit, or a join's.
const PASS_ON_TIMEOUT: Duration = Duration::from_secs(10);

/// On a member: passes `step` from `origin` on to `leader`, the leader this member knows, once
/// (as [`LedgerRpc::Challenge`] or [`LedgerRpc::Forwarded`], which the leader never passes on
/// again), a few at a time per origin ([`forward::Passing`]), and says whether it delivered it
/// ([`Passed`]). A peer behind the rotation writes nothing, forwarded or not.
async fn pass_on(
    ledger: &Ledger,
    origin: PeerId,
    behind: bool,
    leader: PeerId,
    step: Step,
) -> Vec<u8> {
    let undelivered = |refusal: String| encode(&Passed::Undelivered(refusal));
    if behind {
        return undelivered(BEHIND.to_string());
    }
    let known = ledger.leader().map(|(_, node)| node.peer_id);
    if known.as_deref() != Some(leader.to_string().as_str()) {
        return undelivered(format!(
            "this member knows {} as the leader, not {leader}",
            known.as_deref().unwrap_or("no node")
        ));
    }
    let Some(_place) = ledger.passing.start(origin) else {
        return undelivered("this member passes on no more requests from this node now".into());
    };
    tracing::debug!(%origin, %leader, "passing a forwarded request on to the leader");
    if leader == ledger.p2p().peer_id() {
        return encode(&Passed::Answer(match step {
            Step::Challenge => challenge(ledger, origin, origin),
            Step::Request(envelope) => answer_forwarded(ledger, origin, envelope).await,
        }));
    }
    let (rpc, wait) = match step {
        Step::Challenge => (LedgerRpc::Challenge { origin }, forward::CHALLENGE_TIMEOUT),
        Step::Request(envelope) => (LedgerRpc::Forwarded(envelope), PASS_ON_TIMEOUT),
    };
    if !ledger.p2p().is_admitted(&leader) {
        // Not dialled on demand: the sender asks another member rather than wait for a dial.
        return undelivered(format!("this member does not reach the leader {leader}"));
    }
    let request = encode(&rpc);
    let challenge = matches!(rpc, LedgerRpc::Challenge { .. });
    let answer = tokio::time::timeout(
        wait,
        ledger
            .p2p()
            .request(crate::p2p::Service::Raft, leader, request),
    )
    .await;
    encode(&match answer {
        Ok(Ok(answer)) => Passed::Answer(answer),
        Ok(Err(e @ crate::p2p::P2pError::NotAdmitted(_))) => {
            Passed::Undelivered(format!("this member does not reach the leader: {e}"))
        }
        // A challenge changes nothing: whatever became of it, nothing was applied.
        Ok(Err(e)) if challenge => Passed::Undelivered(e.to_string()),
        Err(_) if challenge => Passed::Undelivered("the leader did not answer in time".into()),
        Ok(Err(e)) => Passed::NoAnswer(e.to_string()),
        Err(_) => Passed::NoAnswer(format!(
            "the leader did not answer within {} s; the request may still commit",
            PASS_ON_TIMEOUT.as_secs()
        )),
    })
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("ledger messages serialize to JSON")
}

/// This node's view of its cluster.
pub fn hello(ledger: &Ledger) -> Hello {
    let metrics = ledger.raft().metrics().borrow().clone();
    let stored = &metrics.membership_config;
    let membership = stored.membership();
    let in_raft = membership.nodes().next().is_some();
    // Only a membership that is applied (so committed) and not changing is told: a node left
    // out of one resets itself ([`super::merge::removed`]).
    let settled =
        membership.get_joint_config().len() == 1 && *stored.log_id() <= metrics.last_applied;
    // A leader cut off from its quorum leads nobody: it cannot commit a join or a write, and
    // a cluster whose voters are gone for good must not draw others in.
    let leader = ledger.leader().filter(|_| !ledger.cut_off());
    Hello {
        node_id: ledger.node_id(),
        in_cluster: in_raft || ledger.replica().is_following(),
        cluster: ledger.state().cluster(),
        leader,
        members: if settled {
            membership.nodes().map(|(id, _)| *id).collect()
        } else {
            Vec::new()
        },
        operator: ledger.operator().map(ToString::to_string),
        lowest_admitted: ledger
            .p2p()
            .peers()
            .iter()
            .map(|view| &view.peer_id)
            .min()
            .cloned(),
        trust: ledger
            .state()
            .trust_of(ledger.p2p().peer_key())
            .map(|signed| Box::new(signed.clone())),
    }
}

/// Asks each of `peers` for its [`Hello`], all at once; peers that do not answer within
/// [`HELLO_TIMEOUT`] are left out. Callers leave out peers behind the rotation
/// ([`crate::p2p::P2pHandle::is_behind`]): what they say of clusters decides no join,
/// formation or merge.
pub async fn ask(ledger: &Ledger, peers: impl IntoIterator<Item = PeerId>) -> Vec<Hello> {
    ask_each(ledger, peers)
        .await
        .into_iter()
        .map(|(_, hello)| hello)
        .collect()
}

/// [`ask`], each answer with the peer that gave it.
pub async fn ask_each(
    ledger: &Ledger,
    peers: impl IntoIterator<Item = PeerId>,
) -> Vec<(PeerId, Hello)> {
    let p2p = ledger.p2p();
    join_all(peers.into_iter().map(|peer| async move {
        match tokio::time::timeout(HELLO_TIMEOUT, call::<Hello>(p2p, peer, &LedgerRpc::Hello)).await
        {
            Ok(Ok(hello)) => Some((peer, hello)),
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "hello failed");
                None
            }
            Err(_) => {
                tracing::debug!(%peer, "hello timed out");
                None
            }
        }
    }))
    .await
    .into_iter()
    .flatten()
    .collect()
}

/// Why a join failed.
#[derive(Debug)]
enum JoinError {
    /// The joiner's learner did not catch up within [`LEARNER_TIMEOUT`]: the one failure held
    /// against the joiner ([`JOIN_COOLDOWN`]).
    CaughtUpTooSlowly,
    Failed(String),
}

impl std::fmt::Display for JoinError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JoinError::CaughtUpTooSlowly => write!(
                f,
                "the new learner did not catch up within {} s; it stays a learner",
                LEARNER_TIMEOUT.as_secs()
            ),
            JoinError::Failed(why) => f.write_str(why),
        }
    }
}

/// What a join asks of the leader's raft membership.
#[derive(Debug, PartialEq, Eq)]
enum JoinPlan {
    /// The joiner follows the cluster: no seat changes.
    Follower,
    /// The joiner's earlier learner seats go (`stale_learners`), then it takes a seat unless
    /// it `follows`.
    Seat {
        stale_learners: BTreeSet<u64>,
        follows: bool,
    },
}

/// The plan for a join of raft node `node_id` as `peer`: a node new to raft joins a cluster of
/// `target_voters` raft nodes or more (or one behind the rotation, `follower_only`) as a
/// follower; otherwise, or when its PeerId still holds seats under earlier raft ids, the
/// membership changes.
fn plan_join(
    membership: &openraft::Membership<u64, super::raft::LedgerNode>,
    node_id: u64,
    peer: &str,
    target_voters: usize,
    follower_only: bool,
) -> JoinPlan {
    // Seats the joiner held under raft ids it had before it wiped its raft state: it answers
    // only as `node_id` now. They do not count; its learner seats go now, and a voter seat is
    // replaced once it sits as a learner again ([`super::seats`], superseded voters), so a
    // joiner that holds one takes a learner seat: as a follower its old voter seat, answering
    // nothing but held by a connected PeerId, would count as live and keep its vote for good.
    let stale: BTreeSet<u64> = membership
        .nodes()
        .filter(|(id, n)| **id != node_id && n.peer_id == peer)
        .map(|(id, _)| *id)
        .collect();
    let stale_learners: BTreeSet<u64> = stale
        .iter()
        .copied()
        .filter(|id| !membership.voter_ids().any(|voter| voter == *id))
        .collect();
    let members = membership.nodes().count() - stale.len();
    let stale_voter = stale.len() > stale_learners.len();
    let follows = membership.get_node(&node_id).is_none()
        && (follower_only || (members >= target_voters && !stale_voter));
    if follows && stale_learners.is_empty() {
        JoinPlan::Follower
    } else {
        JoinPlan::Seat {
            stale_learners,
            follows,
        }
    }
}

/// The leader's plan for a join ([`plan_join`]) from its raft membership now.
fn plan_now(
    ledger: &Ledger,
    node_id: u64,
    peer: &str,
    target_voters: usize,
    follower_only: bool,
) -> Result<JoinPlan, JoinError> {
    let metrics = ledger.raft().metrics().borrow().clone();
    if !leads_in_raft(ledger) {
        return Err(JoinError::Failed("this node is not the leader".into()));
    }
    Ok(plan_join(
        metrics.membership_config.membership(),
        node_id,
        peer,
        target_voters,
        follower_only,
    ))
}

/// On the leader: a join of raft node `node_id`. While voters and learners are fewer than the
/// target, adds the node as a learner, waits until it has caught up and promotes learners that
/// have, keeping the voter count odd; otherwise the node follows the feed. A node `behind` the
/// rotation follows, unless it already holds a seat: it may read the ledger, and so learn of
/// the rotation, but takes no seat. The membership lock is held only while the membership
/// changes, not while the learner catches up, so a learner that takes no appends (a token
/// holder that joins and answers nothing) holds up no other join. A join that changes no seat
/// is answered without the lock; one that does is planned again under it.
async fn join(
    ledger: &Ledger,
    node_id: u64,
    node: super::raft::LedgerNode,
    target_voters: usize,
    joiner: Joiner,
) -> Result<Joined, JoinError> {
    let follower_only = joiner.follower_only;
    let plan = || plan_now(ledger, node_id, &node.peer_id, target_voters, follower_only);
    if plan()? == JoinPlan::Follower {
        return Ok(Joined::Follower);
    }
    let membership = ledger.membership_lock().await;
    let JoinPlan::Seat {
        stale_learners,
        follows,
    } = plan()?
    else {
        return Ok(Joined::Follower);
    };
    let raft = ledger.raft();
    if !stale_learners.is_empty() {
        tracing::info!(?stale_learners, peer = %node.peer_id, "removing the learner seats a rejoining node held under earlier raft ids");
        let removed = tokio::time::timeout(
            LEARNER_TIMEOUT,
            raft.change_membership(ChangeMembers::RemoveNodes(stale_learners), false),
        )
        .await;
        // Seated beside a stale learner seat of its PeerId, the new raft node could count as
        // superseded by it once a voter ([`super::seats`]), and lose its seat to a seat that
        // never answers: it gets none until they are gone.
        if !matches!(removed, Ok(Ok(_))) {
            tracing::warn!(peer = %node.peer_id, "the joiner's earlier learner seats were not removed; they go at its next join");
            if !follows {
                return Err(JoinError::Failed(
                    "the joiner's earlier learner seats were not removed in time; join again"
                        .into(),
                ));
            }
        }
    }
    if follows {
        return Ok(Joined::Follower);
    }
    let peer = node.peer_id.clone();
    tokio::time::timeout(LEARNER_TIMEOUT, raft.add_learner(node_id, node, false))
        .await
        .map_err(|_| JoinError::Failed("the new learner's seat did not commit in time".into()))?
        .map_err(|e| JoinError::Failed(e.to_string()))?;
    // Recorded once seated: the leader's rounds forget what they hear of nodes without a seat.
    record_declared_key(ledger, &peer, joiner.key_differs, joiner.key.as_deref());
    drop(membership);
    caught_up_within(ledger, node_id, LEARNER_TIMEOUT)
        .await
        .map_err(|e| match e {
            Lagging::TooSlowly => JoinError::CaughtUpTooSlowly,
            other => JoinError::Failed(other.to_string()),
        })?;
    promote(ledger, target_voters)
        .await
        .map_err(JoinError::Failed)?;
    Ok(Joined::Member)
}

/// Why a new learner is not known to have caught up.
#[derive(Debug)]
enum Lagging {
    TooSlowly,
    NoLongerLeader,
    Removed,
    ShuttingDown,
}

impl std::fmt::Display for Lagging {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Lagging::TooSlowly => "the new learner did not catch up in time",
            Lagging::NoLongerLeader => "this node stopped leading while the new learner caught up",
            Lagging::Removed => "the new learner was removed while it caught up",
            Lagging::ShuttingDown => "the ledger is shutting down",
        })
    }
}

/// Waits, on the leader and without the membership lock, until learner `node_id` has caught up
/// with this node's log ([`seats::caught_up`]), for at most `within`.
async fn caught_up_within(ledger: &Ledger, node_id: u64, within: Duration) -> Result<(), Lagging> {
    let me = ledger.node_id();
    let leads = |m: &LedgerMetrics| m.current_leader == Some(me);
    let seated = |m: &LedgerMetrics| {
        m.membership_config
            .membership()
            .get_node(&node_id)
            .is_some()
    };
    let metrics = ledger
        .raft()
        .wait(Some(within))
        .metrics(
            |m| !leads(m) || !seated(m) || has_caught_up(m, node_id),
            "the new learner caught up",
        )
        .await
        .map_err(|e| match e {
            openraft::metrics::WaitError::Timeout(..) => Lagging::TooSlowly,
            openraft::metrics::WaitError::ShuttingDown => Lagging::ShuttingDown,
        })?;
    if !leads(&metrics) {
        Err(Lagging::NoLongerLeader)
    } else if !seated(&metrics) {
        Err(Lagging::Removed)
    } else {
        Ok(())
    }
}

type LedgerMetrics = openraft::RaftMetrics<u64, super::raft::LedgerNode>;

/// Whether raft node `id`'s log has caught up with this leader's ([`seats::caught_up`]); never
/// on a node that does not lead, which does not know.
pub(crate) fn has_caught_up(metrics: &LedgerMetrics, id: u64) -> bool {
    metrics
        .replication
        .as_ref()
        .and_then(|replication| replication.get(&id))
        .is_some_and(|matched| {
            seats::caught_up(matched.as_ref().map(|m| m.index), metrics.last_log_index)
        })
}

/// Whether raft has this node lead, as a membership change needs: it names this node leader,
/// its state is Leader, and this node is a voter of its own membership. A leader that a change
/// left out of the voters still names itself, and stays in state Leader until its next tick,
/// but openraft takes no membership change from it (a debug assertion, which aborts the task;
/// the ledger simulation's trusted seed 4390 met it).
pub(crate) fn leads_in_raft(ledger: &Ledger) -> bool {
    let me = ledger.node_id();
    let metrics = ledger.raft().metrics().borrow().clone();
    metrics.current_leader == Some(me)
        && metrics.state == openraft::ServerState::Leader
        && metrics
            .membership_config
            .membership()
            .voter_ids()
            .any(|id| id == me)
}

/// Waits, still holding the membership lock, until raft's state shows that this leader,
/// which a change just left out of the voters, no longer leads (at most 5 s). Raft's metrics
/// follow its state a moment later, and a join waiting for the lock would otherwise read this
/// node as leader and ask it for a membership change, which openraft takes from no leader left
/// out of the voters (a debug assertion; the ledger simulation's trusted seed 4390 met it).
async fn stepped_down(ledger: &Ledger) {
    let waited = ledger
        .raft()
        .wait(Some(Duration::from_secs(5)))
        .metrics(
            |m| m.state != openraft::ServerState::Leader,
            "a leader out of the voters",
        )
        .await;
    if waited.is_err() {
        tracing::debug!("still leading 5 s after leaving the voters");
    }
}

/// What a voter change came to: raft's answer, or the deadline passed first.
pub(crate) type VoterChange = Result<
    Result<
        openraft::raft::ClientWriteResponse<LedgerTypes>,
        RaftError<u64, ClientWriteError<u64, super::raft::LedgerNode>>,
    >,
    tokio::time::error::Elapsed,
>;

/// Sets raft's voters to `voters` by the deadline `by`. A change that leaves this leader out of
/// them waits besides until it has stepped down ([`stepped_down`]), unless raft refused it: one
/// that timed out may still commit.
pub(crate) async fn change_voters(
    ledger: &Ledger,
    voters: BTreeSet<u64>,
    by: tokio::time::Instant,
) -> VoterChange {
    let hands_over = !voters.contains(&ledger.node_id());
    let changed = tokio::time::timeout_at(by, ledger.raft().change_membership(voters, false)).await;
    if hands_over && !matches!(changed, Ok(Err(_))) {
        stepped_down(ledger).await;
    }
    changed
}

/// Promotes learners that have caught up to voters up to `target_voters`, only ever to an odd
/// count.
pub async fn promote(ledger: &Ledger, target_voters: usize) -> Result<(), String> {
    let _membership = ledger.membership_lock().await;
    let raft = ledger.raft();
    let metrics = raft.metrics().borrow().clone();
    if !leads_in_raft(ledger) {
        return Ok(());
    }
    let voters: BTreeSet<u64> = metrics.membership_config.membership().voter_ids().collect();
    let learners = ready_learners(ledger);
    let wanted = next_voter_count(voters.len(), learners.len(), target_voters);
    if wanted <= voters.len() {
        return Ok(());
    }
    let mut new_voters = voters;
    new_voters.extend(learners.into_iter().take(wanted - new_voters.len()));
    tokio::time::timeout(LEARNER_TIMEOUT, raft.change_membership(new_voters, true))
        .await
        .map_err(|_| "the promotion was not committed in time".to_string())?
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The raft nodes of this leader's membership as [`seats`] judges them, this node last: the
/// seat rules replace dead voters in the order given, so a leader the operator does not trust
/// gives up its own seat after the others', each of which would otherwise cost an election.
pub(crate) fn seat_nodes(ledger: &Ledger) -> Vec<seats::Node> {
    let own = ledger.p2p().peer_key();
    let reachable = ledger.reachable_peers();
    // Before the table of keys is locked: the leader's key is read from it.
    let keyless_mesh = ledger.authority().is_none();
    let state = ledger.state();
    let keyed = ledger.keyed();
    let metrics = ledger.raft().metrics().borrow().clone();
    let membership = metrics.membership_config.membership();
    let voters: Vec<u64> = membership.voter_ids().collect();
    let voter_peers: Vec<(u64, &str)> = voters
        .iter()
        .filter_map(|id| membership.get_node(id).map(|n| (*id, n.peer_id.as_str())))
        .collect();
    let mut nodes = membership
        .nodes()
        .map(|(id, node)| {
            let voter = voters.contains(id);
            // A learner rejoining in place of its earlier voter seat is not held to a record
            // that lags its join ([`seats`], superseded voters).
            let rejoined = !voter && seats::voter_seat_elsewhere(&voter_peers, *id, &node.peer_id);
            seats::Node {
                id: *id,
                peer: node.peer_id.clone(),
                voter,
                connected: reachable.contains(&node.peer_id),
                denied: state.is_denied(&node.peer_id),
                ready: has_caught_up(&metrics, *id) && (keyless_mesh || keyed.keyed(&node.peer_id)),
                // This node runs this weft and key, whatever its record says until it commits
                // again; but the operator's trust list holds for it too, so a leader it does
                // not trust hands its seat over.
                unfit: !state.may_hold_seat(&node.peer_id)
                    || (node.peer_id != own
                        && ((state.outdated(&node.peer_id) && !rejoined)
                            || keyed.keyless(&node.peer_id))),
            }
        })
        .collect::<Vec<_>>();
    nodes.sort_by_key(|node| node.peer == own);
    nodes
}

/// The learners of this leader's membership fit for a vote now ([`seats::ready_learners`]).
fn ready_learners(ledger: &Ledger) -> Vec<u64> {
    seats::ready_learners(&seat_nodes(ledger))
}

/// On the leader, before it commits `command`: when the command denies a voter and the voters
/// left (neither it nor denied already) would be no majority of the voters, so could elect no
/// leader once the members cut it off, their seats go first to ready learners, one for one
/// ([`seats::room_for_denial`]). A denied sole voter, or one of two, would otherwise leave the
/// cluster headless: the members cut it off as they apply the denial, and the learners left can
/// elect no one. A leader that gives up its own seat steps down once the change commits; the
/// command then goes to the next leader (the caller hears that this node no longer leads, and
/// tries again). Refused when no voter would be left and no learner is ready. Nothing moves
/// for a denial that would change nothing: of a peer denied already, or a signed one not newer
/// than the last the ledger applied for that peer (a replay). The membership lock is waited
/// for only when seats move, and that and the change together within [`ROOM_TIMEOUT`]; a
/// leader that gave its own seat up waits besides until it has stepped down
/// ([`stepped_down`], at most 5 s more).
pub(crate) async fn make_room(ledger: &Ledger, command: &Command) -> Result<(), String> {
    let Some(peer) = new_denial(ledger, command) else {
        return Ok(());
    };
    if room_for(ledger, &peer) == seats::Room::Enough {
        return Ok(());
    }
    let by = tokio::time::Instant::now() + ROOM_TIMEOUT;
    let _membership = tokio::time::timeout_at(by, ledger.membership_lock())
        .await
        .map_err(|_| {
            format!(
                "denying {peer} needs its seat handed over first, and the leader is busy \
                 changing its voters; try again"
            )
        })?;
    let new_voters = match room_for(ledger, &peer) {
        seats::Room::Enough => return Ok(()),
        seats::Room::NoneReady => {
            return Err(format!(
                "denying {peer} now would leave this cluster without a voter that can elect a \
                 leader, and no other raft node is ready to take its seat yet; try again in a \
                 few seconds"
            ));
        }
        seats::Room::Reseat(new_voters) => new_voters,
    };
    tracing::info!(%peer, ?new_voters, "handing a denied voter's seat over before the denial");
    let handed = change_voters(ledger, new_voters, by)
        .await
        .map_err(|_| format!("{peer}'s seat was not handed over in time; try again"))?;
    handed.map(|_| ()).map_err(|e| match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => NOT_LEADER.to_string(),
        e => format!("{peer}'s seat was not handed over: {e}"),
    })
}

/// [`seats::room_for_denial`] of `peer` on this leader's membership now (nothing to do when
/// this node does not lead: the command is not committed here).
fn room_for(ledger: &Ledger, peer: &str) -> seats::Room {
    if !leads_in_raft(ledger) {
        return seats::Room::Enough;
    }
    let metrics = ledger.raft().metrics().borrow().clone();
    let membership = metrics.membership_config.membership();
    let voters: Vec<(u64, bool)> = {
        let state = ledger.state();
        membership
            .voter_ids()
            .map(|id| {
                let gone = membership
                    .get_node(&id)
                    .is_some_and(|n| n.peer_id == peer || state.is_denied(&n.peer_id));
                (id, gone)
            })
            .collect()
    };
    seats::room_for_denial(&voters, &ready_learners(ledger))
}

/// The PeerId `command` denies, signed by the operator or not, when applying it would deny
/// that peer anew: not when it is denied already, nor for a signed denial whose number is not
/// above the last the ledger applied for that peer (a replay commits as stale).
fn new_denial(ledger: &Ledger, command: &Command) -> Option<String> {
    let state = ledger.state();
    let peer = match command {
        Command::Deny { peer } => peer.clone(),
        Command::Operator(signed) => {
            let Ok(Command::Deny { peer }) = signed.command() else {
                return None;
            };
            let subject = super::state::operator::signed_subject(signed)?;
            if !state.operator_marks().fresh(&subject, signed.seq) {
                return None;
            }
            peer
        }
        _ => return None,
    };
    (!state.is_denied(&peer)).then_some(peer)
}

/// The voter count to aim for: as many as the target allows, always odd.
fn next_voter_count(voters: usize, learners: usize, target: usize) -> usize {
    let possible = (voters + learners).min(target.max(1));
    if possible.is_multiple_of(2) {
        possible - 1
    } else {
        possible
    }
    .max(voters)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::super::raft::LedgerNode;
    use super::{JOIN_COOLDOWN, JoinPlan, Joins, LEARNER_TIMEOUT, next_voter_count, plan_join};

    /// A raft membership of `voters` and `learners`, node `id` registered as PeerId `p<id>`
    /// unless `peers` names another.
    fn membership(
        voters: &[u64],
        learners: &[u64],
        peers: &[(u64, &str)],
    ) -> openraft::Membership<u64, LedgerNode> {
        let nodes: BTreeMap<u64, LedgerNode> = voters
            .iter()
            .chain(learners)
            .map(|id| {
                let peer = peers
                    .iter()
                    .find(|(p, _)| p == id)
                    .map_or(format!("p{id}"), |(_, peer)| peer.to_string());
                (*id, LedgerNode { peer_id: peer })
            })
            .collect();
        openraft::Membership::new(vec![voters.iter().copied().collect()], nodes)
    }

    #[test]
    fn only_joins_that_change_seats_wait_for_the_membership_lock() {
        let full = membership(&[1, 2, 3], &[], &[]);
        assert_eq!(plan_join(&full, 9, "p9", 3, false), JoinPlan::Follower);
        let short = membership(&[1], &[2], &[]);
        assert_eq!(
            plan_join(&short, 9, "p9", 3, false),
            JoinPlan::Seat {
                stale_learners: BTreeSet::new(),
                follows: false
            }
        );
        assert_eq!(
            plan_join(&short, 9, "p9", 3, true),
            JoinPlan::Follower,
            "behind the rotation: no seat"
        );
        let seated = membership(&[1, 2, 3], &[9], &[]);
        assert_eq!(
            plan_join(&seated, 9, "p9", 3, false),
            JoinPlan::Seat {
                stale_learners: BTreeSet::new(),
                follows: false
            },
            "a raft node that holds a seat catches up again"
        );
        let stale = membership(&[1, 2, 3], &[7], &[(7, "p9")]);
        assert_eq!(
            plan_join(&stale, 9, "p9", 3, false),
            JoinPlan::Seat {
                stale_learners: BTreeSet::from([7]),
                follows: true
            },
            "earlier learner seats go first"
        );
        let stale_voter = membership(&[1, 2, 3], &[4, 5], &[(3, "p9")]);
        assert_eq!(
            plan_join(&stale_voter, 9, "p9", 3, false),
            JoinPlan::Seat {
                stale_learners: BTreeSet::new(),
                follows: false
            },
            "a node that held a voter seat sits as a learner, so that its old seat is replaced"
        );
        assert_eq!(
            plan_join(&stale_voter, 9, "p9", 3, true),
            JoinPlan::Follower,
            "behind the rotation: still no seat"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn one_join_per_node_at_a_time_and_a_learner_too_slow_cools_down() {
        let joins = Joins::default();
        let ticket = joins.start("a").unwrap();
        assert!(joins.start("a").is_err(), "one in flight per node");
        assert!(joins.start("b").is_ok(), "others are not held up");
        drop(ticket);
        // Other failures, however long they waited for the lock, are not held against it.
        let ticket = joins.start("a").unwrap();
        tokio::time::advance(LEARNER_TIMEOUT * 2).await;
        drop(ticket);
        let mut ticket = joins.start("a").unwrap();
        ticket.too_slow = true;
        drop(ticket);
        let refusal = joins.start("a").err().unwrap();
        assert!(refusal.contains("after 60 s"), "{refusal}");
        tokio::time::advance(JOIN_COOLDOWN).await;
        assert!(joins.start("a").is_ok());
    }

    #[test]
    fn voters_grow_to_the_target_and_stay_odd() {
        assert_eq!(next_voter_count(1, 0, 3), 1);
        assert_eq!(next_voter_count(1, 1, 3), 1);
        assert_eq!(next_voter_count(1, 2, 3), 3);
        assert_eq!(next_voter_count(3, 4, 5), 5);
        assert_eq!(next_voter_count(3, 1, 5), 3);
        assert_eq!(next_voter_count(5, 9, 5), 5);
    }
}
