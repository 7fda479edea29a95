//! Raft RPCs over libp2p: openraft's network traits on top of the control plane's
//! `/weft/<netid>/raft/1` request-response protocol, which only admitted peers can use.
//!
//! A request is the JSON of [`RaftRpc`]; the answer is the JSON of the callee's `Result`, so a
//! remote raft error reaches the caller as such, distinct from an unreachable peer. [`serve`]
//! answers the RPCs the control plane hands over, each in its own task so a slow snapshot
//! chunk never holds up a vote.

use libp2p::PeerId;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{AnyError, Raft};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{LedgerNode, LedgerTypes};
use crate::p2p::{InboundRpc, P2pHandle};

type NodeId = u64;

/// One raft RPC on the wire.
#[derive(Debug, Serialize, Deserialize)]
enum RaftRpc {
    Append(AppendEntriesRequest<LedgerTypes>),
    Vote(VoteRequest<NodeId>),
    Snapshot(InstallSnapshotRequest<LedgerTypes>),
}

/// Creates a [`Connection`] per raft peer.
#[derive(Debug, Clone)]
pub struct Network {
    p2p: P2pHandle,
}

impl Network {
    pub fn new(p2p: P2pHandle) -> Self {
        Network { p2p }
    }
}

/// The raft client side towards one peer.
#[derive(Debug)]
pub struct Connection {
    p2p: P2pHandle,
    target: NodeId,
    node: LedgerNode,
    peer: Option<PeerId>,
}

impl RaftNetworkFactory<LedgerTypes> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &LedgerNode) -> Connection {
        Connection {
            p2p: self.p2p.clone(),
            target,
            node: node.clone(),
            peer: node.peer_id.parse().ok(),
        }
    }
}

impl Connection {
    /// Sends `rpc` and decodes the callee's `Result<T, E>`.
    async fn call<T, E>(&self, rpc: RaftRpc) -> Result<T, RPCError<NodeId, LedgerNode, E>>
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
        let request =
            serde_json::to_vec(&rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let answer = self
            .p2p
            .raft_request(peer, request)
            .await
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let result: Result<T, E> = serde_json::from_slice(&answer)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
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
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<LedgerTypes>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, LedgerNode, RaftError<NodeId>>>
    {
        self.call(RaftRpc::Append(rpc)).await
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

/// Answers the raft RPCs of admitted peers until the inbox closes.
pub async fn serve(raft: Raft<LedgerTypes>, mut inbox: mpsc::Receiver<InboundRpc>) {
    while let Some(rpc) = inbox.recv().await {
        let raft = raft.clone();
        tokio::spawn(async move {
            let answer = match serde_json::from_slice::<RaftRpc>(&rpc.payload) {
                Ok(RaftRpc::Append(request)) => encode(&raft.append_entries(request).await),
                Ok(RaftRpc::Vote(request)) => encode(&raft.vote(request).await),
                Ok(RaftRpc::Snapshot(request)) => encode(&raft.install_snapshot(request).await),
                Err(e) => {
                    tracing::warn!(peer = %rpc.peer, error = %e, "malformed raft request");
                    return;
                }
            };
            let _ = rpc.reply.send(answer);
        });
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("raft messages serialize to JSON")
}
