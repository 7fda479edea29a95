//! Raft RPCs over libp2p: openraft's network traits on top of the control plane's
//! `/weft/raft/1` request-response protocol, which only admitted peers can use.
//!
//! A request is the JSON of [`LedgerRpc`]; the answer is the JSON of the callee's `Result`, so
//! a remote raft error reaches the caller as such, distinct from an unreachable peer. Raft's
//! appends and votes to an admitted peer go on a long-lived stream instead, in postcard
//! ([`super::stream`]), and as requests only when no stream can be had. Besides
//! raft's own RPCs, the same protocol carries the ledger's cluster-life requests (who leads,
//! join, propose, and joins and proposals forwarded for nodes that do not reach the leader),
//! answered by [`crate::ledger::service`].

use libp2p::PeerId;
use openraft::AnyError;
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::store::StateMachineStore;
use super::stream::{self, StreamError};
use super::{LedgerNode, LedgerTypes};
use crate::ledger::forward::{Envelope, Step};
use crate::ledger::metrics::RaftRpcMetrics;
use crate::ledger::state::{ClusterId, Command};
use crate::p2p::{P2pError, P2pHandle};

type NodeId = u64;

/// One ledger RPC on the wire.
#[derive(Debug, Serialize, Deserialize)]
pub enum LedgerRpc {
    /// One of raft's own RPCs, for raft node `to` (a node's raft id changes whenever it wipes
    /// its raft state, so an RPC meant for the node it was is refused) from a sender in
    /// `cluster` (`None` until its raft has applied a genesis).
    Raft {
        to: NodeId,
        cluster: Option<ClusterId>,
        rpc: RaftRpc,
    },
    /// "Which cluster are you in, and who leads it?" Answered with a [`Hello`].
    Hello,
    /// Add this node to the cluster (to the leader). Answered with `Result<Joined, String>`.
    Join {
        node_id: NodeId,
        node: LedgerNode,
        /// The operator key the node runs with ([`crate::operator`]); a leader with another
        /// one takes it in only as a follower, so it never leads and drops the key's check.
        #[serde(default)]
        operator: Option<String>,
        /// The newest form of the ledger's commands the node's weft reads
        /// ([`crate::ledger::state::COMMAND_FORM`]); 0 from a weft before this field. Once the
        /// ledger adopted rules, a node that does not read them gets no raft seat.
        #[serde(default)]
        form: u32,
        /// Whether the node reads [`Joined::Follows`], the answer to a join forwarded through
        /// a member; `false` from a weft before it, which is answered [`Joined::Follower`].
        #[serde(default)]
        follows: bool,
    },
    /// Commit a command (to the leader). Answered with `Result<Outcome, String>`.
    Propose(Command),
    /// "Renew my lease" (to the leader): the sender's lease, renewed in the leader's next
    /// [`Command::Renewals`] entry ([`crate::ledger::renewals`]). Answered with
    /// `Result<(), String>` once queued, before it commits.
    Renew,
    /// "Send me a page of your state" (a follower to a raft member): from `offset` of the
    /// state's encoding at raft index `position` (`None`: the state as it is now, past index
    /// `after`, the one the follower holds). Answered with `Result<Page, String>`.
    ///
    /// [`Page`]: crate::ledger::catchup::Page
    CatchupPage {
        position: Option<u64>,
        offset: u64,
        /// Absent from older nodes' requests: 0, any state.
        #[serde(default)]
        after: u64,
    },
    /// To the leader: a single-use challenge for a request the sender delivers for `origin`
    /// (another node it passes requests on for, or itself) ([`crate::ledger::forward`]).
    /// Answered with `Result<Nonce, String>`.
    Challenge { origin: PeerId },
    /// To the leader: another node's `Join` or `Propose`, signed by that node over one of
    /// this leader's challenges. Answered as that request is.
    Forwarded(Envelope),
    /// To a member that reaches the leader `leader` (which must be the leader it knows): pass
    /// `step` on, once. Answered with a [`crate::ledger::forward::Passed`]: the leader's answer,
    /// or whether it was delivered.
    Forward { leader: PeerId, step: Step },
}

/// Raft's own RPCs.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftRpc {
    Append(AppendEntriesRequest<LedgerTypes>),
    Vote(VoteRequest<NodeId>),
    Snapshot(InstallSnapshotRequest<LedgerTypes>),
}

/// How the leader took a node in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Joined {
    /// As a raft learner, promoted to voter while voters are short.
    Member,
    /// As a follower of the feed: the voters are complete.
    Follower,
    /// As a follower, its join forwarded through a member: `raft` names the raft nodes
    /// (PeerIds, voters and learners) it may fetch the state from. The leader signs the answer
    /// ([`crate::ledger::forward::Vouched`]), so the member that carried it cannot add itself,
    /// and a member that is not a raft node is never asked for the state: its pages could be a
    /// state of its own making ([`crate::ledger::forward::sources`]).
    Follows { raft: Vec<String> },
}

/// What a node says of its cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    pub node_id: NodeId,
    /// Whether this node belongs to a cluster (as voter, learner or follower).
    pub in_cluster: bool,
    pub cluster: Option<ClusterId>,
    /// The leader it knows, with its node id.
    pub leader: Option<(NodeId, LedgerNode)>,
    /// The raft nodes (voters and learners) its raft membership holds. A leader's answer says
    /// whether a node returning from a long absence still holds a seat
    /// ([`crate::ledger::merge::removed`]).
    #[serde(default)]
    pub members: Vec<NodeId>,
    /// The operator key the node runs with: a leader with another one does not recruit it
    /// into raft ([`crate::ledger::service::operator_differs`]).
    #[serde(default)]
    pub operator: Option<String>,
    /// The lowest PeerId among the peers the node has admitted, members all: a node outside
    /// any cluster forms one only when it is lower than every such peer its peers name
    /// ([`crate::ledger::formation`]). Admitted, not heard of: a peer of another network that
    /// refused this node first was never refused here, and would hold formation back.
    #[serde(default)]
    pub lowest_admitted: Option<String>,
    /// The operator's signed trust of this node with a raft seat, as its ledger applied it
    /// ([`crate::ledger::state::LedgerState::trust_of`]): a leader that shows it, checked with
    /// the operator's key, makes its cluster rank above any a machine the operator does not
    /// trust leads ([`crate::ledger::merge`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<Box<crate::operator::Signed>>,
}

/// Why a ledger RPC failed in transit.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("{0}")]
    Unreachable(P2pError),
    #[error("undecodable answer: {0}")]
    Decode(serde_json::Error),
}

/// Sends `rpc` to `peer` and decodes the answer as `T`.
pub async fn call<T: DeserializeOwned>(
    p2p: &P2pHandle,
    peer: PeerId,
    rpc: &LedgerRpc,
) -> Result<T, CallError> {
    let request = serde_json::to_vec(rpc).map_err(CallError::Decode)?;
    let answer = p2p
        .request(crate::p2p::Service::Raft, peer, request)
        .await
        .map_err(CallError::Unreachable)?;
    serde_json::from_slice(&answer).map_err(CallError::Decode)
}

/// Creates a [`Connection`] per raft peer.
#[derive(Debug, Clone)]
pub struct Network {
    p2p: P2pHandle,
    /// This raft's state machine, which names the cluster its RPCs come from.
    machine: StateMachineStore,
    sent: RaftRpcMetrics,
}

impl Network {
    pub(crate) fn new(p2p: P2pHandle, machine: StateMachineStore, sent: RaftRpcMetrics) -> Self {
        Network { p2p, machine, sent }
    }
}

/// The raft client side towards one peer.
#[derive(Debug)]
pub struct Connection {
    p2p: P2pHandle,
    machine: StateMachineStore,
    target: NodeId,
    node: LedgerNode,
    peer: Option<PeerId>,
    stream: stream::Client,
    sent: RaftRpcMetrics,
}

impl RaftNetworkFactory<LedgerTypes> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &LedgerNode) -> Connection {
        Connection {
            p2p: self.p2p.clone(),
            machine: self.machine.clone(),
            target,
            node: node.clone(),
            peer: node.peer_id.parse().ok(),
            stream: stream::Client::default(),
            sent: self.sent.clone(),
        }
    }
}

impl Connection {
    /// Sends `rpc`, addressed to the target, and decodes the callee's `Result<T, E>`: on the
    /// target's raft stream when it is an append or a vote and a stream can be had, else as a
    /// request.
    async fn call<T, E>(&mut self, rpc: RaftRpc) -> Result<T, RPCError<NodeId, LedgerNode, E>>
    where
        T: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let peer = self.peer.ok_or_else(|| {
            RPCError::Network(NetworkError::new(&AnyError::error(format!(
                "raft node {} has no valid PeerId ({:?})",
                self.target, self.node.peer_id
            ))))
        })?;
        let cluster = self.machine.state().cluster();
        let streamed = self
            .stream
            .call(&self.p2p, peer, self.target, cluster, &rpc)
            .await;
        self.sent.record(&rpc, streamed.is_ok());
        let result: Result<T, E> = match streamed {
            Ok(result) => result,
            Err(e) => {
                if !matches!(e, StreamError::Unavailable) {
                    tracing::debug!(%peer, error = %e, "raft stream failed; sent as a request");
                }
                let rpc = LedgerRpc::Raft {
                    to: self.target,
                    cluster,
                    rpc,
                };
                call(&self.p2p, peer, &rpc).await.map_err(|e| match e {
                    CallError::Unreachable(e) => RPCError::Unreachable(Unreachable::new(&e)),
                    CallError::Decode(e) => RPCError::Network(NetworkError::new(&e)),
                })?
            }
        };
        result.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }
}

impl RaftNetwork<LedgerTypes> for Connection {
    /// An append of several entries that outlasts the soft deadline is cut short and answered
    /// "too large" with half as many entries: openraft then sends at most that many for its
    /// next ten appends. Raft gives an append one heartbeat interval (500 ms) and sends the
    /// same batch again after a timeout, so without this a batch too large for the link to
    /// carry in that time (twelve 64 kB entries need 13 Mbit/s) never gets through, and no
    /// write after it commits. A single entry goes whole.
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<LedgerTypes>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, LedgerNode, RaftError<NodeId>>>
    {
        let entries = rpc.entries.len() as u64;
        if entries < 2 {
            return self.call(RaftRpc::Append(rpc)).await;
        }
        match tokio::time::timeout(option.soft_ttl(), self.call(RaftRpc::Append(rpc))).await {
            Ok(answer) => answer,
            Err(_) => {
                self.sent.record_shrunk();
                Err(RPCError::PayloadTooLarge(
                    PayloadTooLarge::new_entries_hint(entries / 2),
                ))
            }
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<LedgerTypes>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, LedgerNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(RaftRpc::Snapshot(rpc)).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, LedgerNode, RaftError<NodeId>>> {
        self.call(RaftRpc::Vote(rpc)).await
    }
}
