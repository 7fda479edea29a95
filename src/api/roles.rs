//! Roles over the API: `GET /v1/roles` (every member's role, fixed or automatic, deployed or
//! pending, its bootstrapper's phase and last error, and the policy), `PUT /v1/roles/{member}`
//! (`weft role set`), `GET|PUT /v1/policy` (`weft role policy`) and `GET /v1/kubeconfig`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::routes::{ApiState, find_member};
use crate::bootstrap::plan::ClusterSecret;
use crate::ledger::sealed::CLUSTER;
use crate::ledger::state::{
    Command, FixedRole, LeaseState, LedgerState, MAX_CONTROL_PLANES, Outcome, Role, RolePolicy,
    parse_role_choice,
};

/// `GET /v1/roles`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RolesView {
    pub policy: PolicyView,
    pub members: Vec<RoleEntry>,
}

/// `GET /v1/policy`: the role policy in force and what an operator should know about it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PolicyView {
    pub control_planes: u32,
    /// Whether a member or an operator set it (else it is the default of one).
    pub set: bool,
    pub notes: Vec<String>,
}

/// One member's role.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RoleEntry {
    pub peer_id: String,
    pub hostname: String,
    pub overlay_ip: Option<String>,
    /// `live` or `expired`.
    pub lease: String,
    /// The role the ledger assigns.
    pub role: Option<String>,
    /// `auto`, `master`, `worker` or `none`.
    pub fixed: String,
    /// Whether the role is deployed (bound to the member until an operator changes it).
    pub deployed: bool,
    /// The bootstrapper's last phase: waiting, installing, starting, deployed, failed.
    pub phase: Option<String>,
    /// Why it waits, or its last error.
    pub detail: Option<String>,
    /// When it reported (UNIX seconds, the member's clock).
    pub reported_at: Option<u64>,
}

/// `PUT /v1/roles/{member}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoleChange {
    /// `auto`, `master`, `worker` or `none`.
    pub role: String,
    /// Change a deployed member's role anyway.
    #[serde(default)]
    pub force: bool,
}

/// `PUT /v1/policy`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyChange {
    pub control_planes: u32,
}

/// The policy of `state`, with its notes.
pub fn policy_view(state: &LedgerState) -> PolicyView {
    PolicyView {
        control_planes: state.policy().control_planes,
        set: state.policy_is_set(),
        notes: state.role_notes(),
    }
}

pub(super) async fn list(State(api): State<Arc<ApiState>>) -> Json<RolesView> {
    let state = api.ledger.state();
    let members = state
        .members()
        .iter()
        .map(|(peer, m)| RoleEntry {
            peer_id: peer.clone(),
            hostname: m.hostname.clone(),
            overlay_ip: m.address.map(|a| a.to_string()),
            lease: match m.lease {
                LeaseState::Live => "live".into(),
                LeaseState::Expired => "expired".into(),
            },
            role: m.role.map(|r| r.to_string()),
            fixed: m.fixed_role.map_or("auto", FixedRole::as_str).to_string(),
            deployed: m.deployed.is_some(),
            phase: m.bootstrap.as_ref().map(|b| b.phase.as_str().to_string()),
            detail: m
                .bootstrap
                .as_ref()
                .map(|b| b.detail.clone())
                .filter(|d| !d.is_empty()),
            reported_at: m.bootstrap.as_ref().map(|b| b.at),
        })
        .collect();
    Json(RolesView {
        policy: policy_view(&state),
        members,
    })
}

/// `PUT /v1/roles/{member}`: fixes a member's role. A deployed member's role changes only with
/// `force`; without it the answer (409) says what forcing would break.
pub(super) async fn set(
    State(api): State<Arc<ApiState>>,
    Path(who): Path<String>,
    Json(change): Json<RoleChange>,
) -> Result<Json<Outcome>, ApiError> {
    let role = parse_role_choice(&change.role).map_err(ApiError::BadRequest)?;
    let (peer, deployed) = {
        let state = api.ledger.state();
        let peer = find_member(&state, &who)?;
        let deployed = state.members()[&peer].deployed;
        (peer, deployed)
    };
    let outcome = api
        .ledger
        .propose_patiently(Command::SetFixedRole {
            peer,
            role,
            force: change.force,
        })
        .await?;
    match (outcome, deployed) {
        (Outcome::RoleDeployed, Some(deployed)) => Err(ApiError::Conflict(format!(
            "{who} deployed {deployed}; changing it breaks things: {}. Force it (--force, or \
             \"force\": true) to do it anyway.",
            what_forcing_breaks(deployed)
        ))),
        (Outcome::UnknownMember, _) => Err(ApiError::NotFound(format!("member {who:?}"))),
        (Outcome::OperatorRole, _) => Err(ApiError::Conflict(format!(
            "the operator signed {who}'s role, so only a change signed with the operator's key \
             takes (weft role set --operator-key-file)"
        ))),
        (outcome, _) => Ok(Json(outcome)),
    }
}

/// What changing a deployed role does to the Kubernetes cluster.
pub fn what_forcing_breaks(deployed: Role) -> &'static str {
    match deployed {
        Role::Master | Role::MasterClusterInit => {
            "it founded the Kubernetes cluster, so its seat goes to another member, which starts a \
             new, empty cluster; the nodes already deployed keep pointing at this one, and this \
             node's k3s is not reconfigured until its sentinel is removed and weft restarted"
        }
        Role::MasterHa => {
            "its seat goes to another member while its etcd member stays in the cluster until \
             removed with kubectl, and this node's k3s is not reconfigured until its sentinel is \
             removed and weft restarted"
        }
        Role::Worker => {
            "its k3s agent keeps running as a worker until its sentinel is removed and weft \
             restarted"
        }
    }
}

pub(super) async fn policy(State(api): State<Arc<ApiState>>) -> Json<PolicyView> {
    Json(policy_view(&api.ledger.state()))
}

/// `PUT /v1/policy`: an operator's role policy. Deployed control planes keep their seats.
pub(super) async fn set_policy(
    State(api): State<Arc<ApiState>>,
    Json(change): Json<PolicyChange>,
) -> Result<Json<PolicyView>, ApiError> {
    if !(1..=MAX_CONTROL_PLANES).contains(&change.control_planes) {
        return Err(ApiError::BadRequest(format!(
            "control_planes must be from 1 to {MAX_CONTROL_PLANES}, got {}",
            change.control_planes
        )));
    }
    let policy = RolePolicy {
        control_planes: change.control_planes,
    };
    api.ledger
        .propose_patiently(Command::SetRolePolicy(policy))
        .await?;
    Ok(Json(policy_view(&api.ledger.state())))
}

/// `GET /v1/kubeconfig`: the cluster's admin kubeconfig, opened from the ledger's sealed
/// cluster secret. On TCP only with the bearer token: the guard never opens this route, not
/// even in edgevpn compatibility.
pub(super) async fn kubeconfig(State(api): State<Arc<ApiState>>) -> Result<String, ApiError> {
    let state = api.ledger.state();
    let text = api
        .sealer
        .open_text(&state, CLUSTER)
        .map_err(|e| ApiError::Internal(format!("the ledger's cluster secret: {e}")))?
        .ok_or_else(|| {
            ApiError::NotFound(
                "kubeconfig (the control plane publishes it once k3s runs there)".into(),
            )
        })?;
    let secret: ClusterSecret = serde_json::from_str(&text)
        .map_err(|e| ApiError::Internal(format!("the ledger's cluster secret: {e}")))?;
    secret.kubeconfig.ok_or_else(|| {
        ApiError::NotFound("kubeconfig (the cluster was bootstrapped by a script)".into())
    })
}
