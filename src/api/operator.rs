//! `POST /v1/operator`: an operator command signed with the operator's key (`weft members
//! deny --operator-key-file`, ...; [`crate::operator`]). The daemon checks that it is an
//! operator command and proposes it as signed; the leader checks the signature against the
//! mesh's operator key, and the ledger applies it only when newer than the last one signed
//! for its subject. Each refusal is the API's error shape, naming why.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;

use super::error::ApiError;
use super::routes::ApiState;
use crate::ledger::state::operator::subject;
use crate::ledger::state::{Command, Outcome};
use crate::operator::Signed;

pub(super) async fn propose(
    State(api): State<Arc<ApiState>>,
    Json(signed): Json<Signed>,
) -> Result<Json<Outcome>, ApiError> {
    let command = signed.command().map_err(ApiError::BadRequest)?;
    if subject(&command).is_none() {
        return Err(ApiError::BadRequest(
            "only operator commands (a removal, denial, allowance, reservation, role or role \
             policy) are signed"
                .into(),
        ));
    }
    let outcome = api
        .ledger
        .propose_patiently(Command::Operator(Box::new(signed)))
        .await?;
    match ApiError::stored(outcome)? {
        Outcome::OperatorStale => Err(ApiError::Conflict(
            "the ledger holds a later operator command for this subject (its number, the \
             signing machine's clock in microseconds, is higher): this one is a replay or was \
             signed on a machine whose clock is behind"
                .into(),
        )),
        Outcome::UnknownMember => Err(ApiError::NotFound("the member".into())),
        Outcome::RoleDeployed => Err(ApiError::Conflict(
            "the member deployed a role the new one does not admit; sign the change with \
             --force to make it anyway (weft role set --help says what it breaks)"
                .into(),
        )),
        Outcome::InvalidPolicy => Err(ApiError::BadRequest(format!(
            "control_planes must be from 1 to {}",
            crate::ledger::state::MAX_CONTROL_PLANES
        ))),
        outcome => Ok(Json(outcome)),
    }
}
