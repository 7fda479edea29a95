//! The one place where internal errors become HTTP status codes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::ledger::LedgerError;
use crate::ledger::recover::RecoverError;

/// An API failure with its status.
#[derive(Debug)]
pub enum ApiError {
    /// The request names or holds something invalid.
    BadRequest(String),
    NotFound(String),
    /// The request conflicts with the node's current state.
    Conflict(String),
    /// Not served on this listener.
    Forbidden(String),
    /// The node failed at something it should manage.
    Internal(String),
    Ledger(LedgerError),
}

impl From<RecoverError> for ApiError {
    fn from(e: RecoverError) -> Self {
        match e {
            RecoverError::Ledger(e) => ApiError::Ledger(e),
            e @ (RecoverError::HasQuorum | RecoverError::NoCluster) => {
                ApiError::Conflict(e.to_string())
            }
            e @ RecoverError::Seed { .. } => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> Self {
        ApiError::Ledger(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ApiError::BadRequest(why) => (StatusCode::BAD_REQUEST, why),
            ApiError::NotFound(what) => (StatusCode::NOT_FOUND, format!("{what} not found")),
            ApiError::Conflict(why) => (StatusCode::CONFLICT, why),
            ApiError::Forbidden(why) => (StatusCode::FORBIDDEN, why),
            ApiError::Internal(why) => (StatusCode::INTERNAL_SERVER_ERROR, why),
            ApiError::Ledger(e @ LedgerError::NoLeader) => {
                (StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            ApiError::Ledger(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        };
        (status, format!("{message}\n")).into_response()
    }
}
