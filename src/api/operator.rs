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
use crate::ledger::state::{Command, Outcome, TRUSTED_SEATS};
use crate::operator::Signed;

pub(super) async fn propose(
    State(api): State<Arc<ApiState>>,
    Json(signed): Json<Signed>,
) -> Result<Json<Outcome>, ApiError> {
    let command = signed.command().map_err(ApiError::BadRequest)?;
    if let Command::Deny { peer } = &command
        && *peer == api.p2p.peer_key()
    {
        return Err(ApiError::Conflict(
            "a node cannot deny itself; deny it from another member".into(),
        ));
    }
    let Some(subject) = subject(&command) else {
        return Err(ApiError::BadRequest(
            "only operator commands (a removal, denial, allowance, trust, reservation, role or \
             role policy) are signed"
                .into(),
        ));
    };
    if command.changes_trust() && api.ledger.state().rules() < TRUSTED_SEATS {
        return Err(ApiError::Conflict(format!(
            "the mesh applies a trust list once its ledger adopted the rules of version \
             {TRUSTED_SEATS} (now {}), which waits for every raft node to run this weft: \
             weft status names the ones that do not",
            api.ledger.state().rules()
        )));
    }
    // Applying it twice is applying it once (the second is stale): when the answer is lost
    // (a denied or removed leader is cut off as the entry applies), its mark shows it (the
    // mark is this command's, applied or failed).
    let mine = signed.clone();
    let applied = move |state: &crate::ledger::state::LedgerState| {
        state.operator_marks().last().get(&subject) == Some(&mine)
    };
    let outcome = api
        .ledger
        .propose_idempotent(Command::Operator(Box::new(signed)), applied.clone())
        .await?;
    // Stale because this very command was applied already (another member committed it
    // first, as it may: it read it on its way): done, not a replay.
    if outcome == Outcome::OperatorStale && applied(&api.ledger.state()) {
        return Ok(Json(Outcome::Done));
    }
    match ApiError::stored(outcome)? {
        Outcome::OperatorStale => Err(ApiError::Conflict(
            "the ledger applied an operator command for this subject numbered as high or \
             higher (the number is the signing machine's clock in microseconds): this one is a \
             replay, or was signed on a machine whose clock is behind"
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
        Outcome::AddressTaken => Err(ApiError::Conflict(
            "the address is reserved for, or held by, another member".into(),
        )),
        Outcome::OutsidePool => Err(ApiError::BadRequest(
            "the address is outside the overlay pool or not a host address".into(),
        )),
        Outcome::NotOperatorCommand => Err(ApiError::BadRequest(
            "the signed command is not an operator command, or is longer than the ledger takes"
                .into(),
        )),
        outcome => Ok(Json(outcome)),
    }
}
