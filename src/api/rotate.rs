//! `POST /v1/token/rotate`: moves the network to a new token (`weft token rotate`). The node
//! makes the rotation ([`crate::rotation::make`]), commits it, and answers with the new token
//! for the operator's new machines and cloud-config; every member, this node included, follows
//! it from the ledger ([`crate::rotation::follow`]).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::routes::ApiState;
use crate::clock::unix_now;
use crate::ledger::state::{Command, Outcome};
use crate::operator::Signed;
use crate::rotation::make::make;

pub use crate::rotation::MAX_GRACE_SECS;

/// The request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RotateRequest {
    /// Seconds the token before stays accepted.
    pub grace_secs: u64,
    /// In a mesh with an operator key: the operator's signed `AllowRotation` naming the
    /// current network id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<Signed>,
}

/// The answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rotated {
    /// The new token: put it in new machines' configuration.
    pub token: String,
    pub network_id: String,
    pub previous_network_id: String,
    /// UNIX second from which the token before is refused.
    pub grace_until: u64,
    /// Members it was sealed for.
    pub members: usize,
    /// Secrets this node could not open, left sealed under the token before.
    pub unopened_secrets: Vec<String>,
}

/// `POST /v1/token/rotate`.
pub async fn rotate(
    State(state): State<Arc<ApiState>>,
    Json(request): Json<RotateRequest>,
) -> Result<Json<Rotated>, ApiError> {
    if request.grace_secs > MAX_GRACE_SECS {
        return Err(ApiError::BadRequest(format!(
            "grace_secs {} is over the limit of {MAX_GRACE_SECS} (30 days)",
            request.grace_secs
        )));
    }
    let previous_network_id = state.keyring.current().network_id().to_string();
    let made = make(
        &state.keyring,
        &state.ledger.state(),
        &state.sealer,
        request.grace_secs,
        unix_now(),
    )
    .map_err(|e| ApiError::Conflict(e.to_string()))?;
    let network_id = made.token.keys().network_id().to_string();
    let command = match (made.command, request.grant) {
        (
            Command::RotateToken {
                rotation, secrets, ..
            },
            Some(grant),
        ) => Command::RotateToken {
            rotation,
            secrets,
            grant: Some(Box::new(grant)),
        },
        (command, _) => command,
    };
    // Applied unless its grant is stale: the last rotation committed is the one members follow.
    if state.ledger.propose_patiently(command).await? == Outcome::OperatorStale {
        return Err(ApiError::Conflict(
            "the operator's grant was used already (a rotation numbered as high or higher was \
             applied); sign a new one"
                .into(),
        ));
    }
    Ok(Json(Rotated {
        token: made.token.encode(),
        network_id,
        previous_network_id,
        grace_until: made.grace_until,
        members: made.recipients,
        unopened_secrets: made.unopened,
    }))
}
