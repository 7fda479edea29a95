//! The API's routes and the JSON shapes they return.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use crate::p2p::{P2pHandle, PeerView};

/// Facts about the running node that the API reports.
#[derive(Debug)]
pub struct NodeInfo {
    pub hostname: String,
    pub network_id: String,
    pub interface: String,
    pub cidr: String,
    pub started: Instant,
}

/// What the API serves from.
#[derive(Debug)]
pub struct ApiState {
    pub node: NodeInfo,
    pub p2p: P2pHandle,
    pub registry: Arc<Registry>,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StatusView {
    pub peer_id: String,
    pub hostname: String,
    pub version: String,
    pub network_id: String,
    pub interface: String,
    pub cidr: String,
    pub uptime_secs: u64,
    /// Peers that proved membership.
    pub admitted_peers: usize,
    /// AutoNAT's verdict: `unknown`, `public` or `private`.
    pub reachability: String,
    /// libp2p addresses this node listens on.
    pub listen_addrs: Vec<String>,
}

/// The API's routes over the node's shared state.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/status", get(status))
        .route("/v1/peers", get(peers))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn status(State(state): State<Arc<ApiState>>) -> Json<StatusView> {
    let node = &state.node;
    Json(StatusView {
        peer_id: state.p2p.peer_id().to_string(),
        hostname: node.hostname.clone(),
        version: crate::VERSION.to_string(),
        network_id: node.network_id.clone(),
        interface: node.interface.clone(),
        cidr: node.cidr.clone(),
        uptime_secs: node.started.elapsed().as_secs(),
        admitted_peers: state.p2p.peers().len(),
        reachability: state.p2p.reachability().to_string(),
        listen_addrs: state
            .p2p
            .listen_addrs()
            .iter()
            .map(ToString::to_string)
            .collect(),
    })
}

async fn peers(State(state): State<Arc<ApiState>>) -> Json<Vec<PeerView>> {
    Json(state.p2p.peers().as_ref().clone())
}

async fn metrics(State(state): State<Arc<ApiState>>) -> impl IntoResponse {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &state.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("cannot encode metrics: {e}\n"),
        ),
    }
}
