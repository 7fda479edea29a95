//! The one place where internal errors become HTTP status codes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::ledger::LedgerError;

/// An API failure with its status.
#[derive(Debug)]
pub enum ApiError {
    NotFound(String),
    Ledger(LedgerError),
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> Self {
        ApiError::Ledger(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ApiError::NotFound(what) => (StatusCode::NOT_FOUND, format!("{what} not found")),
            ApiError::Ledger(e @ LedgerError::NoLeader) => {
                (StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            ApiError::Ledger(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        };
        (status, format!("{message}\n")).into_response()
    }
}
