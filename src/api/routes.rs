//! The API's routes and the JSON shapes they return.

use std::sync::Arc;
use std::time::Instant;

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::guard::{self, Access};
use super::{dashboard, dns, edgevpn, exposition, operator, roles, rotate};
use crate::bootstrap::{BootstrapHandle, BootstrapStatus};
use crate::dataplane::peer::PeerStats;
use crate::dataplane::{Dataplane, DataplaneStats};
use crate::dns::{DnsServer, names};
use crate::ledger::recover::Recovery;
use crate::ledger::sealed::Sealer;
use crate::ledger::state::{AuditEntry, Command, LeaseState, LedgerState, Outcome, PeerKey};
use crate::ledger::{Ledger, LedgerStatus};
use crate::p2p::{P2pHandle, PeerView};

/// Facts about the running node that the API reports.
#[derive(Debug)]
pub struct NodeInfo {
    pub hostname: String,
    pub interface: String,
    pub cidr: String,
    /// The mesh's DNS domain.
    pub dns_domain: String,
    pub started: Instant,
    /// The control planes this node was started with (`--control-planes`), if given.
    pub configured_control_planes: Option<u32>,
}

/// What the API serves from.
#[derive(Debug)]
pub struct ApiState {
    pub node: NodeInfo,
    pub p2p: P2pHandle,
    pub ledger: Ledger,
    /// The data plane; `None` where the node runs without one (in-process tests).
    pub dataplane: Option<Dataplane>,
    /// The DNS server; `None` where the node runs none.
    pub dns: Option<DnsServer>,
    /// The bootstrapper; `None` when it is `none`.
    pub bootstrap: Option<BootstrapHandle>,
    /// Opens the ledger's sealed secrets (the kubeconfig).
    pub sealer: Sealer,
    /// The network tokens the node holds (its network id, token rotation).
    pub keyring: crate::keyring::Keyring,
    /// The token rotation prepared for the operator's grant.
    pub prepared: rotate::Prepared,
    /// The pages of copies of the last rotation made here, until they commit.
    pub outbox: crate::rotation::pages::Outbox,
    pub registry: Arc<Registry>,
}

/// `GET /v1/peers`: an admitted peer, with its data-plane figures once it has a session.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeerEntry {
    #[serde(flatten)]
    pub control: PeerView,
    pub dataplane: Option<PeerStats>,
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
    /// Whether this node serves as a circuit relay: `off`, `serving`, or `standby` (`--relay
    /// auto` while AutoNAT has not found it public).
    pub relay: String,
    /// libp2p addresses this node listens on.
    pub listen_addrs: Vec<String>,
    /// This node's overlay address, once the ledger has allocated one.
    pub overlay_ip: Option<String>,
    /// This node's role (`master`, `master/clusterinit`, `master/ha`, `worker`).
    pub role: Option<String>,
    /// Whether this node's role is deployed (bound to it).
    pub role_deployed: bool,
    /// This node's bootstrapper; `None` when it is `none`.
    pub bootstrap: Option<BootstrapStatus>,
    /// What the operator should know: a policy other than the one this node was started
    /// with, empty control-plane seats, conflicts.
    pub notes: Vec<String>,
    pub ledger: LedgerStatus,
}

/// `GET /v1/members`: one member of the ledger.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MemberView {
    pub peer_id: String,
    pub hostname: String,
    /// The member's name in the mesh's DNS (`<hostname>.<domain>`, made unique); `None` while
    /// it holds no address.
    pub dns_name: Option<String>,
    pub overlay_ip: Option<String>,
    pub role: Option<String>,
    /// `live` or `expired`.
    pub lease: String,
    /// Its raft seat as this node knows it: `voter`, `learner`, or `None` (a follower of the
    /// leader's feed). A feed follower knows the voters only, so it shows no learner.
    #[serde(default)]
    pub raft: Option<String>,
}

/// The API's routes over the node's shared state, behind `access`'s guard.
pub fn router(state: Arc<ApiState>, access: Access) -> Router {
    Router::new()
        .route("/", get(dashboard::page))
        .route("/ui", get(dashboard::page))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/status", get(status))
        .route("/v1/peers", get(peers))
        .route("/v1/members", get(members))
        .route("/v1/members/{peer}", delete(remove_member))
        .route("/v1/denied", get(denied))
        .route("/v1/trusted", get(trusted))
        .route("/v1/audit", get(audit))
        .route("/v1/denied/{peer}", put(deny).delete(allow))
        .route("/v1/token/rotate", post(rotate::rotate))
        .route("/v1/token/rotate/prepare", post(rotate::prepare))
        .route("/v1/operator", post(operator::propose))
        .route("/v1/roles", get(roles::list))
        .route("/v1/roles/{member}", put(roles::set))
        .route("/v1/policy", get(roles::policy).put(roles::set_policy))
        .route("/v1/kubeconfig", get(roles::kubeconfig))
        .route("/v1/dns", get(dns::list).post(dns::add))
        .route("/v1/dns/name/{name}", delete(dns::remove_name))
        .route("/v1/dns/name/{name}/{type}", delete(dns::remove_type))
        .route(
            "/v1/dns/name/{name}/{type}/{value}",
            delete(dns::remove_value),
        )
        .route("/v1/dns/regex/{regex}", delete(dns::remove_pattern))
        .route("/api/dns", get(dns::edgevpn_list).post(dns::edgevpn_add))
        .route("/api/ledger", get(edgevpn::ledger_all))
        .route(
            "/api/ledger/{bucket}",
            get(edgevpn::ledger_bucket).delete(edgevpn::ledger_delete_bucket),
        )
        .route(
            "/api/ledger/{bucket}/{key}",
            get(edgevpn::ledger_get).delete(edgevpn::ledger_delete),
        )
        .route(
            "/api/ledger/{bucket}/{key}/{value}",
            put(edgevpn::ledger_put),
        )
        .route("/api/machines", get(edgevpn::machines))
        .route("/api/summary", get(edgevpn::summary))
        .route("/api/nodes", get(edgevpn::nodes))
        .route("/api/peerstore", get(edgevpn::peerstore))
        .route("/api/users", get(edgevpn::none))
        .route("/api/services", get(edgevpn::none))
        .route("/v1/dataplane", get(dataplane))
        .route("/v1/ledger", get(ledger_all))
        .route(
            "/v1/ledger/{bucket}",
            get(ledger_bucket).delete(ledger_delete_bucket),
        )
        .route(
            "/v1/ledger/{bucket}/{key}",
            get(ledger_get).put(ledger_put).delete(ledger_delete),
        )
        .route("/v1/recover", post(recover))
        .route("/metrics", get(metrics))
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method)
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(access),
            guard::guard,
        ))
}

async fn unknown_route(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("route {}", uri.path()))
}

async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} is not served on {}", uri.path()))
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: 200 once this node is admitted to a cluster, holds an address (set on its TUN
/// when it runs a data plane) and, when the ledger lists other live members, is connected to
/// at least one; else 503 naming what is missing.
async fn readyz(State(state): State<Arc<ApiState>>) -> Result<Json<Readiness>, ApiError> {
    let me = state.p2p.peer_key().to_string();
    let ledger = state.ledger.state();
    let member = ledger.members().get(&me);
    let address = member.and_then(|m| m.address);
    let mut missing = Vec::new();
    if !state.ledger.is_running() {
        missing.push("the ledger has stopped".to_string());
    }
    if ledger.is_denied(&me) {
        missing.push("the mesh denies this node".into());
    } else if ledger.cluster().is_none() || member.is_none() {
        missing.push("not admitted to a cluster yet (no ledger record of this node)".into());
    } else if address.is_none() {
        missing.push("no overlay address assigned yet".into());
    }
    let others_live = ledger
        .members()
        .iter()
        .filter(|(peer, m)| **peer != me && m.lease == LeaseState::Live)
        .count();
    if others_live > 0 && state.p2p.peers().is_empty() {
        missing.push(format!(
            "no peer admits this node, though the ledger lists {others_live} other live \
             members (cut off from the mesh, or denied)"
        ));
    }
    if let Some(dataplane) = &state.dataplane
        && address.is_some()
        && dataplane.address() != address
    {
        missing.push(format!(
            "the TUN interface {} does not carry the overlay address yet",
            state.node.interface
        ));
    }
    if missing.is_empty() {
        Ok(Json(Readiness {
            ready: true,
            overlay_ip: address.map(|a| a.to_string()),
        }))
    } else {
        Err(ApiError::NotReady(format!(
            "not ready: {}",
            missing.join("; ")
        )))
    }
}

/// `GET /readyz` when ready.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    pub overlay_ip: Option<String>,
}

async fn status(State(state): State<Arc<ApiState>>) -> Json<StatusView> {
    let node = &state.node;
    let me = state.p2p.peer_key().to_string();
    let ledger_state = state.ledger.state();
    let ledger = state.ledger.status();
    let member = ledger_state.members().get(&me);
    Json(StatusView {
        peer_id: state.p2p.peer_key().to_string(),
        hostname: node.hostname.clone(),
        version: crate::VERSION.to_string(),
        network_id: state.keyring.current().network_id().to_string(),
        interface: node.interface.clone(),
        cidr: node.cidr.clone(),
        uptime_secs: node.started.elapsed().as_secs(),
        admitted_peers: state.p2p.peers().len(),
        reachability: state.p2p.reachability().to_string(),
        relay: state.p2p.relay().to_string(),
        listen_addrs: state
            .p2p
            .listen_addrs()
            .iter()
            .map(ToString::to_string)
            .collect(),
        overlay_ip: member.and_then(|m| m.address).map(|a| a.to_string()),
        role: member.and_then(|m| m.role).map(|r| r.to_string()),
        role_deployed: member.is_some_and(|m| m.deployed.is_some()),
        bootstrap: state.bootstrap.as_ref().map(BootstrapHandle::status),
        notes: status_notes(&ledger_state, node.configured_control_planes, &ledger),
        ledger,
    })
}

/// The notes `weft status` shows: this node's `--control-planes` against the mesh's policy,
/// the roles' own notes, then the raft nodes that hold the ledger's rules back.
fn status_notes(
    state: &LedgerState,
    configured: Option<u32>,
    ledger: &crate::ledger::LedgerStatus,
) -> Vec<String> {
    let mut notes = Vec::new();
    let policy = state.policy().control_planes;
    if let Some(configured) = configured
        && state.policy_is_set()
        && configured != policy
    {
        notes.push(format!(
            "this node was started with --control-planes {configured}, but the mesh's policy is \
             {policy} (the first member to join set it); change it with `weft role policy \
             --control-planes {configured}`"
        ));
    }
    notes.extend(state.role_notes());
    notes.extend(state.rules_note(ledger.voters.iter().chain(&ledger.learners)));
    notes
}

/// The member `who` names (a PeerId or a hostname).
pub(super) fn find_member(state: &LedgerState, who: &str) -> Result<PeerKey, ApiError> {
    let matches: Vec<&String> = state
        .members()
        .iter()
        .filter(|(peer, m)| **peer == who || m.hostname == who)
        .map(|(peer, _)| peer)
        .collect();
    match matches[..] {
        [peer] => Ok(peer.clone()),
        [] => Err(ApiError::NotFound(format!("member {who:?}"))),
        _ => Err(ApiError::Conflict(format!(
            "{} members are named {who:?}; give the PeerId",
            matches.len()
        ))),
    }
}

async fn members(State(state): State<Arc<ApiState>>) -> Json<Vec<MemberView>> {
    let status = state.ledger.status();
    let seat = |peer: &String| {
        if status.voters.contains(peer) {
            Some("voter".to_string())
        } else if status.learners.contains(peer) {
            Some("learner".to_string())
        } else {
            None
        }
    };
    let ledger_state = state.ledger.state();
    let labels = names::member_labels(&ledger_state);
    Json(
        ledger_state
            .members()
            .iter()
            .map(|(peer, m)| MemberView {
                peer_id: peer.clone(),
                hostname: m.hostname.clone(),
                dns_name: labels
                    .get(peer)
                    .map(|label| format!("{label}.{}", state.node.dns_domain)),
                overlay_ip: m.address.map(|a| a.to_string()),
                role: m.role.map(|r| r.to_string()),
                lease: match m.lease {
                    LeaseState::Live => "live".into(),
                    LeaseState::Expired => "expired".into(),
                },
                raft: seat(peer),
            })
            .collect(),
    )
}

/// `DELETE /v1/members/{peer}`: removes a member that left for good (by PeerId or hostname);
/// its address and names are freed. A node that is still running records itself again.
async fn remove_member(
    State(state): State<Arc<ApiState>>,
    Path(who): Path<String>,
) -> Result<Json<Outcome>, ApiError> {
    let peer = find_member(&state.ledger.state(), &who)?;
    let command = Command::Leave { peer: peer.clone() };
    let removed = |s: &LedgerState| !s.members().contains_key(&peer);
    Ok(Json(
        state.ledger.propose_idempotent(command, removed).await?,
    ))
}

/// `GET /v1/denied`: the PeerIds the mesh denies.
async fn denied(State(state): State<Arc<ApiState>>) -> Json<Vec<String>> {
    Json(state.ledger.state().denied().iter().cloned().collect())
}

/// `GET /v1/trusted`: the PeerIds the operator trusts with a raft seat; empty while it trusts
/// none (then any member may hold one).
async fn trusted(State(state): State<Arc<ApiState>>) -> Json<Vec<String>> {
    Json(state.ledger.state().trusted().iter().cloned().collect())
}

/// `GET /v1/audit`: the audit trail, oldest first: which node had each operator command and
/// shared-data write committed.
async fn audit(State(state): State<Arc<ApiState>>) -> Json<Vec<AuditEntry>> {
    Json(state.ledger.state().audit().cloned().collect())
}

/// `PUT /v1/denied/{peer}`: denies a member (by PeerId or hostname) or any PeerId: it is
/// removed from the members and every member cuts it off. A node cannot deny itself.
async fn deny(
    State(state): State<Arc<ApiState>>,
    Path(who): Path<String>,
) -> Result<Json<Outcome>, ApiError> {
    let peer = match find_member(&state.ledger.state(), &who) {
        Ok(peer) => peer,
        Err(ApiError::NotFound(_)) if who.parse::<libp2p::PeerId>().is_ok() => who,
        Err(e) => return Err(e),
    };
    if peer == state.p2p.peer_key() {
        return Err(ApiError::Conflict(
            "a node cannot deny itself; deny it from another member".into(),
        ));
    }
    let command = Command::Deny { peer: peer.clone() };
    let denied = |s: &LedgerState| s.is_denied(&peer);
    let outcome = state.ledger.propose_idempotent(command, denied).await?;
    Ok(Json(ApiError::stored(outcome)?))
}

/// `DELETE /v1/denied/{peer}`: takes a PeerId off the deny list; it may join again.
async fn allow(
    State(state): State<Arc<ApiState>>,
    Path(peer): Path<String>,
) -> Result<Json<Outcome>, ApiError> {
    if !state.ledger.state().denied().contains(&peer) {
        return Err(ApiError::NotFound(format!("denied PeerId {peer:?}")));
    }
    let command = Command::Allow { peer: peer.clone() };
    let allowed = |s: &LedgerState| !s.is_denied(&peer);
    Ok(Json(
        state.ledger.propose_idempotent(command, allowed).await?,
    ))
}

/// `POST /v1/recover`: after quorum loss, seed a new cluster from this node's state.
async fn recover(State(state): State<Arc<ApiState>>) -> Result<Json<Recovery>, ApiError> {
    Ok(Json(crate::ledger::recover::recover(&state.ledger).await?))
}

async fn ledger_all(
    State(state): State<Arc<ApiState>>,
) -> Json<BTreeMap<String, BTreeMap<String, String>>> {
    Json(state.ledger.state().buckets().clone())
}

async fn ledger_bucket(
    State(state): State<Arc<ApiState>>,
    Path(bucket): Path<String>,
) -> Result<Json<BTreeMap<String, String>>, ApiError> {
    state
        .ledger
        .state()
        .bucket(&bucket)
        .cloned()
        .map(Json)
        .ok_or(ApiError::NotFound(format!("bucket {bucket:?}")))
}

async fn ledger_get(
    State(state): State<Arc<ApiState>>,
    Path((bucket, key)): Path<(String, String)>,
) -> Result<String, ApiError> {
    state
        .ledger
        .state()
        .bucket(&bucket)
        .and_then(|b| b.get(&key).cloned())
        .ok_or(ApiError::NotFound(format!(
            "key {key:?} in bucket {bucket:?}"
        )))
}

async fn ledger_put(
    State(state): State<Arc<ApiState>>,
    Path((bucket, key)): Path<(String, String)>,
    value: String,
) -> Result<Json<Outcome>, ApiError> {
    let outcome = state
        .ledger
        .propose_patiently(Command::KvPut { bucket, key, value })
        .await?;
    Ok(Json(ApiError::stored(outcome)?))
}

async fn ledger_delete(
    State(state): State<Arc<ApiState>>,
    Path((bucket, key)): Path<(String, String)>,
) -> Result<Json<Outcome>, ApiError> {
    Ok(Json(
        state
            .ledger
            .propose_patiently(Command::KvDelete {
                bucket,
                key: Some(key),
            })
            .await?,
    ))
}

async fn ledger_delete_bucket(
    State(state): State<Arc<ApiState>>,
    Path(bucket): Path<String>,
) -> Result<Json<Outcome>, ApiError> {
    Ok(Json(
        state
            .ledger
            .propose_patiently(Command::KvDelete { bucket, key: None })
            .await?,
    ))
}

async fn peers(State(state): State<Arc<ApiState>>) -> Json<Vec<PeerEntry>> {
    let mut stats: std::collections::HashMap<String, PeerStats> = state
        .dataplane
        .as_ref()
        .map(|d| {
            d.stats()
                .peers
                .into_iter()
                .map(|p| (p.peer_id.clone(), p))
                .collect()
        })
        .unwrap_or_default();
    Json(
        state
            .p2p
            .peers()
            .iter()
            .map(|view| PeerEntry {
                dataplane: stats.remove(&view.peer_id),
                control: PeerView::clone(view),
            })
            .collect(),
    )
}

async fn dataplane(State(state): State<Arc<ApiState>>) -> Result<Json<DataplaneStats>, ApiError> {
    state
        .dataplane
        .as_ref()
        .map(|d| Json(d.stats()))
        .ok_or_else(|| ApiError::NotFound("data plane".into()))
}

/// `GET /metrics`: OpenMetrics to scrapers that accept it, else Prometheus' text format.
async fn metrics(
    State(state): State<Arc<ApiState>>,
    headers: axum::http::HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &state.registry)
        .map_err(|e| ApiError::Internal(format!("cannot encode metrics: {e}")))?;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    Ok(if exposition::wants_openmetrics(accept) {
        ([(header::CONTENT_TYPE, exposition::OPENMETRICS)], text)
    } else {
        (
            [(header::CONTENT_TYPE, exposition::PROMETHEUS_TEXT)],
            exposition::to_prometheus_text(&text),
        )
    })
}
