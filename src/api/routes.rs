//! The API's routes and the JSON shapes they return.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

/// Facts about the running node that the API reports.
#[derive(Debug)]
pub struct NodeInfo {
    pub peer_id: String,
    pub hostname: String,
    pub network_id: String,
    pub interface: String,
    pub cidr: String,
    pub started: Instant,
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
}

/// The API's routes over the node's shared facts.
pub fn router(node: Arc<NodeInfo>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/status", get(status))
        .with_state(node)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn status(State(node): State<Arc<NodeInfo>>) -> Json<StatusView> {
    Json(StatusView {
        peer_id: node.peer_id.clone(),
        hostname: node.hostname.clone(),
        version: crate::VERSION.to_string(),
        network_id: node.network_id.clone(),
        interface: node.interface.clone(),
        cidr: node.cidr.clone(),
        uptime_secs: node.started.elapsed().as_secs(),
    })
}
