//! The one place where failures become HTTP answers. Every error the API gives, from a handler
//! or from the guards in front of them, is `{"error": "<what went wrong>", "code": "<code>"}`
//! with the status its code implies; `docs/api.md` lists the codes.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::ledger::LedgerError;
use crate::ledger::recover::RecoverError;

/// An API failure with its status.
#[derive(Debug)]
pub enum ApiError {
    /// The request names or holds something invalid.
    BadRequest(String),
    NotFound(String),
    /// The route exists, not with this method.
    MethodNotAllowed(String),
    /// The request conflicts with the node's current state.
    Conflict(String),
    /// No bearer token, or a wrong one, on a listener that requires it.
    Unauthorized(String),
    /// The `Host` header is a name other than localhost (DNS rebinding).
    BadHost(String),
    /// The body is larger than the API accepts.
    TooLarge {
        limit: usize,
    },
    /// The client took too long to send its request.
    Timeout,
    /// The ledger has no room for the write.
    LedgerFull,
    /// The deny list or the reservations are full.
    ListFull,
    /// The node is not ready for this yet (readiness probe).
    NotReady(String),
    /// The node failed at something it should manage.
    Internal(String),
    Ledger(LedgerError),
}

/// The JSON body of every error answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    pub error: String,
    pub code: String,
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

impl ApiError {
    /// A committed write's outcome, or the error it means for a key or secret write.
    pub fn stored(
        outcome: crate::ledger::state::Outcome,
    ) -> Result<crate::ledger::state::Outcome, ApiError> {
        match outcome {
            crate::ledger::state::Outcome::LedgerFull => Err(ApiError::LedgerFull),
            crate::ledger::state::Outcome::ListFull => Err(ApiError::ListFull),
            outcome => Ok(outcome),
        }
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> Self {
        ApiError::Ledger(e)
    }
}

impl ApiError {
    /// The status, the stable code and the message.
    fn parts(self) -> (StatusCode, &'static str, String) {
        match self {
            ApiError::BadRequest(why) => (StatusCode::BAD_REQUEST, "bad_request", why),
            ApiError::NotFound(what) => (
                StatusCode::NOT_FOUND,
                "not_found",
                format!("{what} not found"),
            ),
            ApiError::MethodNotAllowed(why) => {
                (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", why)
            }
            ApiError::Conflict(why) => (StatusCode::CONFLICT, "conflict", why),
            ApiError::Unauthorized(why) => (StatusCode::UNAUTHORIZED, "unauthorized", why),
            ApiError::BadHost(host) => (
                StatusCode::FORBIDDEN,
                "bad_host",
                format!(
                    "Host {host:?} is neither an IP address nor localhost; refused (DNS rebinding)"
                ),
            ),
            ApiError::TooLarge { limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the request body is larger than {limit} bytes"),
            ),
            ApiError::LedgerFull => (
                StatusCode::INSUFFICIENT_STORAGE,
                "ledger_full",
                format!(
                    "the ledger holds at most {} bytes of keys, values, secrets and DNS \
                     records, and this write would pass that; delete what is no longer needed",
                    crate::ledger::state::SHARED_DATA_LIMIT
                ),
            ),
            ApiError::ListFull => (
                StatusCode::INSUFFICIENT_STORAGE,
                "list_full",
                format!(
                    "the ledger holds at most {} denied PeerIds, {} reservations and {} trusted \
                     PeerIds, and this would pass that; remove entries that are no longer needed",
                    crate::ledger::state::MAX_DENIED,
                    crate::ledger::state::MAX_RESERVATIONS,
                    crate::ledger::state::MAX_TRUSTED
                ),
            ),
            ApiError::Timeout => (
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                "the request was not received in time".into(),
            ),
            ApiError::NotReady(why) => (StatusCode::SERVICE_UNAVAILABLE, "not_ready", why),
            ApiError::Internal(why) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", why),
            ApiError::Ledger(e @ (LedgerError::NoLeader | LedgerError::LeaderUnreachable(_))) => {
                (StatusCode::SERVICE_UNAVAILABLE, "no_leader", e.to_string())
            }
            ApiError::Ledger(
                e @ (LedgerError::Refused(_)
                | LedgerError::NotCommitted(_)
                | LedgerError::LeaderSilent(_)),
            ) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "not_committed",
                e.to_string(),
            ),
            ApiError::Ledger(LedgerError::Operator(why)) => {
                (StatusCode::FORBIDDEN, "operator_required", why)
            }
            ApiError::Ledger(e @ LedgerError::TooLarge(_)) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                e.to_string(),
            ),
            ApiError::Ledger(e) => (StatusCode::INTERNAL_SERVER_ERROR, "ledger", e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let unauthorized = matches!(self, ApiError::Unauthorized(_));
        let (status, code, error) = self.parts();
        let mut response = (
            status,
            Json(ErrorBody {
                error,
                code: code.into(),
            }),
        )
            .into_response();
        if unauthorized {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"weft\""),
            );
        }
        response
    }
}

/// Gives the API's error shape to error answers that lack it: those axum's extractors make
/// themselves (a body that is not JSON, a wrong media type, a bad path segment), as text.
pub async fn ensure_json(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let text = match axum::body::to_bytes(response.into_body(), 64 * 1024).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_string(),
        Err(_) => String::new(),
    };
    let code = match status.as_u16() {
        400 => "bad_request",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "timeout",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        422 => "invalid_body",
        _ if status.is_server_error() => "internal",
        _ => "error",
    };
    let error = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    (
        status,
        Json(ErrorBody {
            error,
            code: code.into(),
        }),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    async fn answer(error: ApiError) -> (StatusCode, ErrorBody) {
        let response = error.into_response();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn errors_answer_json_with_a_code_and_their_status() {
        let (status, body) = answer(ApiError::NotFound("member \"n9\"".into())).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            body,
            ErrorBody {
                error: "member \"n9\" not found".into(),
                code: "not_found".into()
            }
        );
        let (status, body) = answer(ApiError::Ledger(LedgerError::NoLeader)).await;
        assert_eq!(
            (status, body.code.as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, "no_leader")
        );
        let (status, body) = answer(ApiError::TooLarge { limit: 10 }).await;
        assert_eq!(
            (status, body.code.as_str()),
            (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
        );
        let full = ApiError::stored(crate::ledger::state::Outcome::LedgerFull).unwrap_err();
        let (status, body) = answer(full).await;
        assert_eq!(
            (status, body.code.as_str()),
            (StatusCode::INSUFFICIENT_STORAGE, "ledger_full")
        );
        assert!(
            body.error.contains(&format!(
                "at most {} bytes",
                crate::ledger::state::SHARED_DATA_LIMIT
            )),
            "{}",
            body.error
        );
    }

    #[tokio::test]
    async fn axums_text_rejections_get_the_error_shape() {
        let text = (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Expected request with `Content-Type: application/json`",
        )
            .into_response();
        let response = ensure_json(text).await;
        assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body: ErrorBody = serde_json::from_slice(&body).unwrap();
        assert_eq!(body.code, "unsupported_media_type");
        assert!(body.error.contains("Content-Type"), "{}", body.error);
        let fine = ensure_json((StatusCode::OK, "ok\n").into_response()).await;
        assert_eq!(fine.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn unauthorized_names_the_scheme() {
        let response = ApiError::Unauthorized("no token".into()).into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"weft\""
        );
    }
}
