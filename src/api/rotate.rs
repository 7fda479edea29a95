//! `POST /v1/token/rotate`: moves the network to a new token (`weft token rotate`). The node
//! makes the rotation ([`crate::rotation::make`]), commits it, and answers with the new token
//! for the operator's new machines and cloud-config; every member, this node included, follows
//! it from the ledger ([`crate::rotation::follow`]). The last rotation committed is the one the
//! network follows, so the answer is a success only once this node's ledger holds this one as
//! the last: when another committed right after it, the operator hears so, not a token nobody
//! moves to. A rotation of more members than one write carries copies for is followed by its
//! pages of copies, which the node proposes until they commit ([`crate::rotation::pages`]);
//! the answer waits a few seconds for them and says how many are still to come.
//!
//! In a mesh with an operator key the rotation needs the operator's grant. So that a grant is
//! good for one rotation alone (not for another a member makes with it on the way to the
//! leader), the CLI first asks `POST /v1/token/rotate/prepare`: the node makes the rotation,
//! keeps it, and answers with its digest, which the operator signs into the grant; the
//! rotation then committed is the one kept.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::routes::ApiState;
use crate::clock::unix_now;
use crate::ledger::LedgerError;
use crate::ledger::state::{Command, Outcome, rotation_digest};
use crate::operator::Signed;
use crate::rotation::make::{Made, make};

pub use crate::rotation::MAX_GRACE_SECS;

/// How long this node waits for its ledger to hold the rotation it committed as the last one:
/// a node applies its own committed entry within a heartbeat or two, and the CLI waits 10 s for
/// the whole answer, the commit included.
const CONFIRM_WITHIN: Duration = Duration::from_secs(2);

/// How long the answer waits for the pages of copies once the rotation is the last one: each
/// commits in a few milliseconds when the leader answers.
const PAGES_WITHIN: Duration = Duration::from_secs(4);

/// When the answer is given at the latest, pages pending or not: the CLI waits 10 s in all.
const ANSWER_WITHIN: Duration = Duration::from_secs(8);

/// The request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RotateRequest {
    /// Seconds the token before stays accepted.
    pub grace_secs: u64,
    /// In a mesh with an operator key: the operator's signed `AllowRotation` naming the
    /// current network id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<Signed>,
    /// Send the members' copies in pages even when live members say their weft cannot read
    /// them (those stop taking the ledger until upgraded).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
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
    /// Pages of members' copies not committed yet when the answer was given; the node keeps
    /// proposing them, and the members they hold copies for move once they commit.
    #[serde(default)]
    pub pages_pending: usize,
}

/// What the operator signs for one rotation (`POST /v1/token/rotate/prepare`): the grant
/// `{"AllowRotation":{"cluster":..,"previous":..,"rotation":..}}` with these values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToSign {
    pub cluster: String,
    pub previous_network_id: String,
    pub network_id: String,
    /// The rotation's digest ([`rotation_digest`]).
    pub rotation: String,
}

/// How long a prepared rotation waits for the operator's grant.
const PREPARED_FOR: Duration = Duration::from_secs(600);

/// The rotation this node prepared last, until it is committed, replaced or
/// [`PREPARED_FOR`] has passed.
#[derive(Debug, Default)]
pub struct Prepared(Mutex<Option<(String, Made, Instant)>>);

impl Prepared {
    fn keep(&self, digest: String, made: Made) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some((digest, made, Instant::now()));
    }

    /// The prepared rotation whose digest is `digest`, taken.
    fn take(&self, digest: &str) -> Option<Made> {
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match kept.take() {
            Some((d, made, at)) if d == digest && at.elapsed() < PREPARED_FOR => Some(made),
            other => {
                *kept = other;
                None
            }
        }
    }
}

/// The rotation `request` asks for, made now.
fn make_now(state: &ApiState, request: &RotateRequest) -> Result<Made, ApiError> {
    if request.grace_secs > MAX_GRACE_SECS {
        return Err(ApiError::BadRequest(format!(
            "grace_secs {} is over the limit of {MAX_GRACE_SECS} (30 days)",
            request.grace_secs
        )));
    }
    let status = state.ledger.status();
    let raft = [status.voters, status.learners].concat();
    make(
        &state.keyring,
        &state.ledger.state(),
        &state.sealer,
        request.grace_secs,
        unix_now(),
        request.force,
        &raft,
    )
    .map_err(|e| ApiError::Conflict(e.to_string()))
}

/// The rotation inside `made`'s command.
fn rotation_of(made: &Made) -> Result<(&crate::ledger::state::TokenRotation, String), ApiError> {
    match &made.command {
        Command::RotateToken {
            rotation, secrets, ..
        } => Ok((rotation, rotation_digest(rotation, secrets))),
        other => Err(ApiError::Internal(format!("a rotation made as {other:?}"))),
    }
}

/// `POST /v1/token/rotate/prepare`: makes the rotation `request` asks for and keeps it for
/// the operator's grant; the grant is then sent to `POST /v1/token/rotate`.
pub async fn prepare(
    State(state): State<Arc<ApiState>>,
    Json(request): Json<RotateRequest>,
) -> Result<Json<ToSign>, ApiError> {
    let cluster = state.ledger.status().cluster_id.ok_or_else(|| {
        ApiError::Conflict("this node is in no cluster yet; try again once it is".into())
    })?;
    let made = make_now(&state, &request)?;
    let (rotation, digest) = rotation_of(&made)?;
    let to_sign = ToSign {
        cluster,
        previous_network_id: rotation.previous.clone(),
        network_id: rotation.network.clone(),
        rotation: digest.clone(),
    };
    state.prepared.keep(digest, made);
    Ok(Json(to_sign))
}

/// `POST /v1/token/rotate`.
pub async fn rotate(
    State(state): State<Arc<ApiState>>,
    Json(request): Json<RotateRequest>,
) -> Result<Json<Rotated>, ApiError> {
    let started = tokio::time::Instant::now();
    let bound = request
        .grant
        .as_ref()
        .and_then(|grant| match grant.command() {
            Ok(Command::AllowRotation {
                rotation: Some(digest),
                ..
            }) => Some(digest),
            _ => None,
        });
    let made = match bound {
        Some(digest) => state.prepared.take(&digest).ok_or_else(|| {
            ApiError::Conflict(
                "the operator's grant names a rotation this node has not prepared, or prepared \
                 more than 10 minutes ago or before another: run weft token rotate again"
                    .into(),
            )
        })?,
        None => make_now(&state, &request)?,
    };
    let previous_network_id = rotation_of(&made)?.0.previous.clone();
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
    // Held before the proposal: the rotation may commit though its proposal seems to fail, or
    // the caller gives up waiting, and its members' copies must follow it all the same.
    // On disk too before the proposal, so that a restart after the commit still sends them.
    state.outbox.hold(network_id.clone(), made.pages);
    state.outbox.persist().await;
    // Applied unless its grant is stale: the last rotation committed is the one members follow.
    let proposed = state.ledger.propose_patiently(command).await;
    let refused = match &proposed {
        Ok(outcome) => *outcome != Outcome::Done,
        Err(e) => !may_have_committed(e),
    };
    if refused {
        state.outbox.release(&network_id);
        state.outbox.persist().await;
    }
    let outcome = proposed?;
    if outcome == Outcome::OperatorStale {
        return Err(ApiError::Conflict(
            "the operator's grant was used already (a rotation numbered as high or higher was \
             applied); sign a new one"
                .into(),
        ));
    }
    let last = || {
        let ledger = state.ledger.state();
        ledger.token_rotation().map(|r| r.network.clone())
    };
    confirm_last(last, &network_id, &previous_network_id).await?;
    let pending = || {
        let ledger = state.ledger.state();
        ledger
            .token_rotation()
            .filter(|r| r.network == network_id)
            .map_or(0, |r| r.pages.len())
    };
    let deadline = (tokio::time::Instant::now() + PAGES_WITHIN).min(started + ANSWER_WITHIN);
    while pending() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pages_pending = pending();
    // Another rotation committed while the pages were awaited: the network follows that one.
    if let Some(other) = last().filter(|other| *other != network_id) {
        return Err(replaced(&network_id, &other));
    }
    Ok(Json(Rotated {
        token: made.token.encode(),
        network_id,
        previous_network_id,
        grace_until: made.grace_until,
        members: made.recipients,
        unopened_secrets: made.unopened,
        pages_pending,
    }))
}

/// Waits until this node's ledger holds the rotation to `network_id` (away from `previous`) as
/// the last one; refuses, saying which, when within [`CONFIRM_WITHIN`] it holds another
/// rotation instead (one committed right after) or still none past `previous` (this node's
/// ledger is that far behind).
async fn confirm_last(
    last: impl Fn() -> Option<String>,
    network_id: &str,
    previous: &str,
) -> Result<(), ApiError> {
    let deadline = tokio::time::Instant::now() + CONFIRM_WITHIN;
    loop {
        let last = last();
        if last.as_deref() == Some(network_id) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            let within = CONFIRM_WITHIN.as_secs();
            return Err(match last {
                Some(other) if other != previous => replaced(network_id, &other),
                _ => ApiError::Conflict(format!(
                    "the rotation to network id {network_id} committed, but this node's ledger \
                     did not show it within {within} s: hand out this token only once `weft \
                     status` shows network id {network_id}"
                )),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The refusal of a rotation to `network_id` that committed, when `other` is the last.
fn replaced(network_id: &str, other: &str) -> ApiError {
    ApiError::Conflict(format!(
        "the rotation to network id {network_id} committed, but another, to network id {other}, \
         is the last this node's ledger holds: the network follows that one, so do not hand out \
         this token; this node keeps the one it follows in its state directory's token file"
    ))
}

/// Whether a proposal that failed with `error` may still have committed (it reached the
/// leader, whose answer was lost or late).
fn may_have_committed(error: &LedgerError) -> bool {
    matches!(
        error,
        LedgerError::NotCommitted(_) | LedgerError::LeaderSilent(_) | LedgerError::Raft(_)
    )
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[test]
    fn a_prepared_rotation_is_taken_once_and_only_by_its_digest() {
        use crate::keyring::Keyring;
        use crate::ledger::sealed::Sealer;
        use crate::token::{NativeToken, Token};
        let keyring = Keyring::new(Token::Native(NativeToken::generate(None, vec![], 3600)));
        let state = crate::ledger::state::LedgerState::new("10.1.0.0/24".parse().unwrap());
        let made = make(
            &keyring,
            &state,
            &Sealer::new(keyring.clone()),
            60,
            1,
            false,
            &[],
        )
        .unwrap();
        let digest = rotation_of(&made).unwrap().1;
        let network = made.token.encode();
        let prepared = Prepared::default();
        prepared.keep(digest.clone(), made);
        assert!(prepared.take("another rotation's digest").is_none());
        let taken = prepared
            .take(&digest)
            .expect("kept through the wrong digest");
        assert_eq!(taken.token.encode(), network);
        assert!(prepared.take(&digest).is_none(), "taken once");
    }

    #[tokio::test(start_paused = true)]
    async fn success_only_once_the_ledger_holds_this_rotation_as_the_last() {
        // Applied here a moment after the leader answered.
        let looks = AtomicU32::new(0);
        let applying =
            || (looks.fetch_add(1, Ordering::Relaxed) >= 3).then(|| "00000000000000aa".to_string());
        let (ours, before) = ("00000000000000aa", "0000000000000099");
        assert!(confirm_last(applying, ours, before).await.is_ok());
        // Another rotation committed right after: refused, naming it, once the wait is over.
        let started = tokio::time::Instant::now();
        let refused = confirm_last(|| Some("00000000000000bb".into()), ours, before).await;
        assert_eq!(started.elapsed(), CONFIRM_WITHIN);
        let Err(ApiError::Conflict(why)) = refused else {
            panic!("not a conflict: {refused:?}");
        };
        assert!(
            why.contains("another, to network id 00000000000000bb"),
            "{why}"
        );
        // Not applied here in time: said so, not taken for another rotation.
        for held in [None, Some(before.to_string())] {
            let refused = confirm_last(|| held.clone(), ours, before).await;
            let Err(ApiError::Conflict(why)) = refused else {
                panic!("not a conflict: {refused:?}");
            };
            assert!(why.contains("did not show it within 2 s"), "{why}");
        }
    }
}
