//! Raft's appends and votes on one long-lived libp2p stream per raft peer, in postcard, where
//! each was a request-response exchange of its own in JSON.
//!
//! An idle leader sends each voter a heartbeat (an empty append) every 500 to 750 ms. As a
//! request, each one opened a stream, negotiated its protocol in a round trip, sent about 375
//! bytes of JSON and closed the stream both ways: about 1 kB from the leader and 600 bytes back
//! in 13 TCP segments per heartbeat (a capture of a 5-node mesh), over half of an idle mesh's
//! bytes. On a stream kept open, a heartbeat is one frame of about 70 bytes from the leader
//! and one of 6 bytes back (its length and `Ok(Success)`).
//!
//! Only raft's own fields travel in postcard ([`Call`]): terms, node ids, log ids, and the
//! answers' plain types. An append's entries, and any error an answer carries, travel as the
//! JSON a request carries them in: postcard has no depth limit, and a `Command` nests (an
//! audited command holds a command), so a member could send one nested deep enough to overflow
//! the callee's stack; serde_json stops at 128 levels. And JSON reads the fields that older or
//! newer nodes leave out.
//!
//! A stream is opened only to a peer this node is admitted with, and accepted only from one.
//! Calls on a stream go one at a time, a frame each way ([`crate::p2p::protocol::read_frame`]);
//! a call that fails, times out or is cancelled (openraft gives an append one heartbeat
//! interval) drops the stream, and the next call opens another. The RPC goes as a request
//! instead ([`super::network::call`]) when the stream fails, and for [`RETRY_OPEN`] after a
//! stream could not be opened or failed before its first answer (a cancelled call is no
//! failure: a request raft gave up on goes on sending, and on a slow link such requests
//! crowded out every later append); so do
//! snapshot chunks, raft RPCs to a peer not admitted (the request path dials it and waits for
//! its admission) and every RPC of the ledger's simulation, which has no streams.
//!
//! Each inbound stream is served by a task of its own, which answers its frames in order and
//! checks each against the sender as a request is checked ([`service::answer_raft`]); a peer
//! has at most [`PER_PEER`] streams open, all peers [`MAX_STREAMS`] (when they are taken,
//! raft RPCs go as requests). Both ends tell the control plane that the connection is in use,
//! so that it does not close as idle ([`crate::p2p::links`]).

use std::time::{Duration, Instant};

use libp2p::PeerId;
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::{LogId, Vote};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::network::RaftRpc;
use crate::ledger::state::ClusterId;
use crate::ledger::{Ledger, service};
use crate::p2p::P2pHandle;
use crate::p2p::protocol::{read_frame, write_frame};
use crate::p2p::slots::{StreamSlot, StreamSlots, serve_admitted};

/// Inbound raft streams one peer may hold open: a leader's replication stream, a candidate's
/// vote, and room for each to replace a broken one.
const PER_PEER: usize = 4;
/// Inbound raft streams all peers may hold open together: raft peers are the voters and the
/// learners, a handful.
const MAX_STREAMS: usize = 64;
/// How long an inbound stream may stay silent before it is closed: a leader heartbeats every
/// 500 ms, and one that stopped leading drops its streams.
const IDLE: Duration = Duration::from_secs(60);
/// How long opening a stream may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the callee may take to answer a frame and write the answer; a sender that does
/// not read its answers loses its stream.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long after a stream could not be opened the next call goes as a request rather than
/// trying again.
const RETRY_OPEN: Duration = Duration::from_secs(10);
/// How often each end tells the control plane that a stream's connection is in use, at most.
const MARK_USED: Duration = Duration::from_secs(1);

/// A raft RPC on a stream.
#[derive(Debug, Serialize, Deserialize)]
enum Call {
    Append {
        to: u64,
        cluster: Option<ClusterId>,
        vote: Vote<u64>,
        prev_log_id: Option<LogId<u64>>,
        leader_commit: Option<LogId<u64>>,
        /// The JSON of the entries.
        entries: Vec<u8>,
    },
    Vote {
        to: u64,
        cluster: Option<ClusterId>,
        vote: Vote<u64>,
        last_log_id: Option<LogId<u64>>,
    },
}

impl Call {
    /// `rpc` for raft node `to` from a sender in `cluster`; `None` for a snapshot chunk, which
    /// goes as a request.
    fn new(
        to: u64,
        cluster: Option<ClusterId>,
        rpc: &RaftRpc,
    ) -> Option<Result<Call, StreamError>> {
        Some(Ok(match rpc {
            RaftRpc::Append(append) => Call::Append {
                to,
                cluster,
                vote: append.vote,
                prev_log_id: append.prev_log_id,
                leader_commit: append.leader_commit,
                entries: match serde_json::to_vec(&append.entries) {
                    Ok(entries) => entries,
                    Err(e) => return Some(Err(StreamError::Json(e))),
                },
            },
            RaftRpc::Vote(vote) => Call::Vote {
                to,
                cluster,
                vote: vote.vote,
                last_log_id: vote.last_log_id,
            },
            RaftRpc::Snapshot(_) => return None,
        }))
    }

    /// The RPC as the ledger's service takes it: raft node, cluster, and raft's own request.
    fn into_rpc(self) -> Result<(u64, Option<ClusterId>, RaftRpc), serde_json::Error> {
        Ok(match self {
            Call::Append {
                to,
                cluster,
                vote,
                prev_log_id,
                leader_commit,
                entries,
            } => (
                to,
                cluster,
                RaftRpc::Append(AppendEntriesRequest {
                    vote,
                    prev_log_id,
                    leader_commit,
                    entries: serde_json::from_slice(&entries)?,
                }),
            ),
            Call::Vote {
                to,
                cluster,
                vote,
                last_log_id,
            } => (
                to,
                cluster,
                RaftRpc::Vote(VoteRequest { vote, last_log_id }),
            ),
        })
    }
}

/// An answer as a stream carries it: raft's answer in postcard, or the JSON of raft's error.
pub(crate) fn compact<T: Serialize, E: Serialize>(
    result: &Result<T, E>,
) -> Result<Vec<u8>, StreamError> {
    Ok(match result {
        Ok(answer) => postcard::to_allocvec(&Ok::<&T, Vec<u8>>(answer))?,
        Err(e) => postcard::to_allocvec(&Err::<(), Vec<u8>>(serde_json::to_vec(e)?))?,
    })
}

/// Reads what [`compact`] wrote.
fn expand<T: DeserializeOwned, E: DeserializeOwned>(
    bytes: &[u8],
) -> Result<Result<T, E>, StreamError> {
    Ok(match postcard::from_bytes::<Result<T, Vec<u8>>>(bytes)? {
        Ok(answer) => Ok(answer),
        Err(e) => Err(serde_json::from_slice(&e)?),
    })
}

/// Why a call on a stream failed; the caller sends the RPC as a request instead.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("no raft stream to this peer now")]
    Unavailable,
    #[error("raft stream: {0}")]
    Io(#[from] std::io::Error),
    #[error("raft stream: {0}")]
    Encoding(#[from] postcard::Error),
    #[error("raft stream: {0}")]
    Json(#[from] serde_json::Error),
}

/// The calling end of a raft peer's stream, held by one raft connection.
#[derive(Default)]
pub struct Client {
    /// In a mutex only because openraft wants its connections `Sync` and a stream is not; it
    /// is reached through `&mut self`, never locked.
    stream: std::sync::Mutex<Option<libp2p::Stream>>,
    /// When a stream this connection opened last failed before its first answer: it could not
    /// be opened, or its first exchange failed (the peer refused it).
    open_failed_at: Option<Instant>,
    marked_at: Option<Instant>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("open_failed_at", &self.open_failed_at)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Sends `rpc` for raft node `to` (from a sender in `cluster`) to `peer` on its stream,
    /// opened first if none is, and decodes raft's answer. [`StreamError::Unavailable`] for a
    /// snapshot chunk, when this node has no streams or is not admitted with `peer`, and for
    /// [`RETRY_OPEN`] after a stream being opened failed. Cancel-safe: the stream is held only
    /// between complete exchanges, and a cancelled call (raft's deadline on a slow link) counts
    /// as no failure: the next call opens another stream rather than sending as a request,
    /// which would go on sending after raft gave up on it and crowd the link further.
    pub async fn call<T: DeserializeOwned, E: DeserializeOwned>(
        &mut self,
        p2p: &P2pHandle,
        peer: PeerId,
        to: u64,
        cluster: Option<ClusterId>,
        rpc: &RaftRpc,
    ) -> Result<Result<T, E>, StreamError> {
        let Some((mut control, protocol)) = p2p.raft_streams() else {
            return Err(StreamError::Unavailable);
        };
        let Some(call) = Call::new(to, cluster, rpc) else {
            return Err(StreamError::Unavailable);
        };
        let held = self.stream.get_mut().unwrap_or_else(|e| e.into_inner());
        if !p2p.is_admitted(&peer) {
            *held = None;
            return Err(StreamError::Unavailable);
        }
        let request = postcard::to_allocvec(&call?)?;
        let (mut stream, fresh) = match held.take() {
            Some(stream) => (stream, false),
            None => {
                let now = crate::clock::now();
                if self
                    .open_failed_at
                    .is_some_and(|at| now.saturating_duration_since(at) < RETRY_OPEN)
                {
                    return Err(StreamError::Unavailable);
                }
                match tokio::time::timeout(OPEN_TIMEOUT, control.open_stream(peer, protocol)).await
                {
                    Ok(Ok(stream)) => (stream, true),
                    failed => {
                        if let Ok(Err(e)) = failed {
                            tracing::debug!(%peer, error = %e, "cannot open a raft stream");
                        }
                        self.open_failed_at = Some(now);
                        return Err(StreamError::Unavailable);
                    }
                }
            }
        };
        let exchange = async {
            write_frame(&mut stream, &request).await?;
            expand(&read_frame(&mut stream).await?)
        };
        let answer = match exchange.await {
            Ok(answer) => answer,
            Err(e) => {
                if fresh {
                    self.open_failed_at = Some(crate::clock::now());
                }
                return Err(e);
            }
        };
        *self.stream.get_mut().unwrap_or_else(|e| e.into_inner()) = Some(stream);
        self.open_failed_at = None;
        mark_used(p2p, peer, &mut self.marked_at);
        Ok(answer)
    }
}

/// Tells the control plane the connection to `peer` is in use, at most every [`MARK_USED`].
fn mark_used(p2p: &P2pHandle, peer: PeerId, marked_at: &mut Option<Instant>) {
    let now = crate::clock::now();
    if marked_at.is_none_or(|at| now.saturating_duration_since(at) >= MARK_USED) {
        *marked_at = Some(now);
        p2p.used(peer);
    }
}

/// Accepts raft streams from admitted peers until `shutdown`, and serves each in a task of its
/// own, owned here. Only waits for `shutdown` when this node has no streams (the ledger's
/// simulation).
pub async fn serve(ledger: Ledger, shutdown: CancellationToken) {
    let p2p = ledger.p2p().clone();
    let Some((mut control, protocol)) = p2p.raft_streams() else {
        return shutdown.cancelled().await;
    };
    let incoming = match control.accept(protocol) {
        Ok(incoming) => incoming,
        Err(e) => {
            // Only a second accept for the same protocol fails; raft RPCs still go as requests.
            tracing::error!(error = %e, "cannot accept raft streams");
            return shutdown.cancelled().await;
        }
    };
    let slots = StreamSlots::new(PER_PEER, MAX_STREAMS);
    serve_admitted(
        &p2p,
        incoming,
        slots,
        "raft stream",
        shutdown.clone(),
        |slot, stream| answer(ledger.clone(), slot, stream, shutdown.clone()),
    )
    .await;
}

/// Answers one inbound stream's frames in order, until it closes, stays silent for [`IDLE`],
/// sends what does not decode, its sender is refused or no longer admitted, or an answer takes
/// longer than [`ANSWER_TIMEOUT`].
async fn answer(
    ledger: Ledger,
    slot: StreamSlot,
    mut stream: libp2p::Stream,
    shutdown: CancellationToken,
) {
    let peer = slot.peer();
    let p2p = ledger.p2p().clone();
    let mut marked_at = None;
    let ended: Result<(), String> = async {
        loop {
            let frame = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                frame = tokio::time::timeout(IDLE, read_frame(&mut stream)) => match frame {
                    Ok(frame) => frame.map_err(|e| e.to_string())?,
                    Err(_) => return Err("silent".into()),
                },
            };
            if !p2p.is_admitted(&peer) {
                return Err("its sender is no longer admitted".into());
            }
            let (to, cluster, rpc) = postcard::from_bytes::<Call>(&frame)
                .map_err(|e| e.to_string())
                .and_then(|call| call.into_rpc().map_err(|e| e.to_string()))
                .map_err(|e| format!("undecodable: {e}"))?;
            mark_used(&p2p, peer, &mut marked_at);
            let behind = p2p.is_behind(&peer);
            let answered = async {
                let answer = service::answer_raft(&ledger, peer, behind, to, cluster, rpc).await?;
                let answer = answer.compact().map_err(|e| e.to_string())?;
                write_frame(&mut stream, &answer)
                    .await
                    .map_err(|e| e.to_string())
            };
            tokio::time::timeout(ANSWER_TIMEOUT, answered)
                .await
                .map_err(|_| "not answered in time".to_string())??;
        }
    }
    .await;
    if let Err(why) = ended {
        tracing::debug!(%peer, %why, "raft stream closed");
    }
}

#[cfg(test)]
mod tests {
    use openraft::error::{Fatal, RaftError};
    use openraft::raft::{AppendEntriesResponse, VoteResponse};
    use openraft::{CommittedLeaderId, Entry, EntryPayload};

    use super::*;
    use crate::ledger::raft::LedgerTypes;
    use crate::ledger::state::Command;

    const LEADER: u64 = 0xfeed_beef_0123_4567;

    fn log_id(term: u64, node: u64, index: u64) -> LogId<u64> {
        LogId::new(CommittedLeaderId::new(term, node), index)
    }

    fn append(entries: Vec<Entry<LedgerTypes>>) -> RaftRpc {
        RaftRpc::Append(AppendEntriesRequest {
            vote: Vote::new_committed(7, LEADER),
            prev_log_id: Some(log_id(7, LEADER, 1_234)),
            entries,
            leader_commit: Some(log_id(7, LEADER, 1_234)),
        })
    }

    const TO: u64 = 0x8f3a_91c2_77d0_4e15;
    const CLUSTER: ClusterId = ClusterId {
        created_at: 1_764_000_000,
        id: 0x1234_5678_9abc_def0,
    };

    /// `rpc` as a stream carries it, and as the callee reads it back.
    fn through(rpc: &RaftRpc) -> (Vec<u8>, (u64, Option<ClusterId>, RaftRpc)) {
        let call = Call::new(TO, Some(CLUSTER), rpc)
            .expect("an append or a vote")
            .unwrap();
        let bytes = postcard::to_allocvec(&call).unwrap();
        let back = postcard::from_bytes::<Call>(&bytes)
            .unwrap()
            .into_rpc()
            .unwrap();
        (bytes, back)
    }

    #[test]
    fn a_heartbeat_is_a_few_dozen_bytes_where_its_json_was_hundreds() {
        let heartbeat = append(Vec::new());
        let (streamed, _) = through(&heartbeat);
        let json = serde_json::to_vec(&crate::ledger::raft::network::LedgerRpc::Raft {
            to: TO,
            cluster: Some(CLUSTER),
            rpc: heartbeat,
        })
        .unwrap();
        assert!(streamed.len() < 80, "{} bytes", streamed.len());
        assert!(
            json.len() > 4 * streamed.len(),
            "{} bytes of JSON",
            json.len()
        );
        let answer: Result<AppendEntriesResponse<u64>, RaftError<u64>> =
            Ok(AppendEntriesResponse::Success);
        assert!(compact(&answer).unwrap().len() <= 2);
    }

    #[test]
    fn appends_and_votes_come_back_as_they_went() {
        let entry = |index, command| Entry::<LedgerTypes> {
            log_id: log_id(7, 3, index),
            payload: EntryPayload::Normal(command),
        };
        let nested = Command::Audited {
            issuer: "op".into(),
            at: 9,
            command: Box::new(Command::Expire { peer: "p".into() }),
        };
        let rpc = append(vec![
            entry(
                1_235,
                Command::KvPut {
                    bucket: "b".into(),
                    key: "k".into(),
                    value: "v".into(),
                },
            ),
            entry(1_236, nested),
            Entry {
                log_id: log_id(7, 3, 1_237),
                payload: EntryPayload::Blank,
            },
        ]);
        let (_, (to, cluster, back)) = through(&rpc);
        assert_eq!((to, cluster), (TO, Some(CLUSTER)));
        assert_eq!(format!("{back:?}"), format!("{rpc:?}"));
        let vote = RaftRpc::Vote(VoteRequest::new(Vote::new(8, 3), Some(log_id(7, 3, 1_237))));
        let (_, (_, _, back)) = through(&vote);
        assert_eq!(format!("{back:?}"), format!("{vote:?}"));
        let snapshot = RaftRpc::Snapshot(openraft::raft::InstallSnapshotRequest {
            vote: Vote::new_committed(7, LEADER),
            meta: Default::default(),
            offset: 0,
            data: Vec::new(),
            done: true,
        });
        assert!(
            Call::new(TO, None, &snapshot).is_none(),
            "chunks go as requests"
        );
    }

    #[test]
    fn answers_and_raft_errors_come_back_as_they_went() {
        let granted: Result<VoteResponse<u64>, RaftError<u64>> = Ok(VoteResponse::new(
            Vote::new(8, 3),
            Some(log_id(7, 3, 9)),
            true,
        ));
        let back: Result<VoteResponse<u64>, RaftError<u64>> =
            expand(&compact(&granted).unwrap()).unwrap();
        assert_eq!(format!("{back:?}"), format!("{granted:?}"));
        let failed: Result<VoteResponse<u64>, RaftError<u64>> =
            Err(RaftError::Fatal(Fatal::Panicked));
        let back: Result<VoteResponse<u64>, RaftError<u64>> =
            expand(&compact(&failed).unwrap()).unwrap();
        assert_eq!(format!("{back:?}"), format!("{failed:?}"));
    }

    #[test]
    fn entries_nested_past_the_json_limit_are_refused_not_followed() {
        // Written as text: building and dropping such a command would itself recurse.
        let leaf = serde_json::to_string(&Command::Expire { peer: "p".into() }).unwrap();
        let depth = 10_000;
        let nested = format!(
            "{}{leaf}{}",
            r#"{"Audited":{"issuer":"","at":0,"command":"#.repeat(depth),
            "}}".repeat(depth)
        );
        let shallow = serde_json::to_string(&vec![Entry::<LedgerTypes> {
            log_id: log_id(7, 3, 1),
            payload: EntryPayload::Normal(Command::Expire { peer: "p".into() }),
        }])
        .unwrap();
        assert!(shallow.contains(&leaf));
        let deep = shallow.replace(&leaf, &nested).into_bytes();
        let call = Call::Append {
            to: TO,
            cluster: None,
            vote: Vote::new_committed(7, 3),
            prev_log_id: None,
            leader_commit: None,
            entries: deep,
        };
        let bytes = postcard::to_allocvec(&call).unwrap();
        let decoded = postcard::from_bytes::<Call>(&bytes).unwrap();
        assert!(
            decoded.into_rpc().is_err(),
            "serde_json stops at its depth limit"
        );
    }

    #[tokio::test]
    async fn frames_carry_each_message_whole_and_refuse_what_claims_too_much() {
        let mut wire = futures::io::Cursor::new(Vec::new());
        write_frame(&mut wire, b"one").await.unwrap();
        write_frame(&mut wire, b"").await.unwrap();
        wire.set_position(0);
        assert_eq!(read_frame(&mut wire).await.unwrap(), b"one");
        assert_eq!(read_frame(&mut wire).await.unwrap(), b"");
        let claims = ((crate::p2p::protocol::MAX_MESSAGE + 1) as u32).to_be_bytes();
        let mut wire = futures::io::Cursor::new(claims.to_vec());
        assert!(read_frame(&mut wire).await.is_err());
        let mut wire = futures::io::Cursor::new([&5u32.to_be_bytes()[..], b"ab"].concat());
        assert!(read_frame(&mut wire).await.is_err(), "a frame cut short");
    }
}
