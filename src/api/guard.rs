//! Who may use the API, checked in front of every route.
//!
//! A unix socket is guarded by its file mode, so requests on it pass. On TCP a request's `Host`,
//! when it has one (browsers always send it), must be an IP address or `localhost` (a browser
//! led to the API by a rebound DNS name sends that name, and is refused), and the bearer token of `--api-token-file`; without it
//! the answer is 401. The one exception is edgevpn compatibility (`--api-auth edgevpn`, the
//! default when run as `edgevpn`) on a loopback listener: Kairos' provider sends no token, so
//! there unauthenticated callers may use edgevpn's `/api` and the read-only routes, never the
//! native mutating ones. `/healthz`, `/readyz` and the dashboard's page (which holds no data)
//! need no token anywhere.
//!
//! Bodies are read here too, whole and bounded: larger than [`MAX_BODY`] is 413, slower than
//! [`BODY_TIMEOUT`] is 408, so no handler ever waits on a client. On the way out, error answers
//! that axum's extractors made as text get the API's JSON error shape.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt as _, Limited};
use sha2::{Digest as _, Sha256};

use super::error::ApiError;

/// The largest request body the API reads.
pub const MAX_BODY: usize = 64 * 1024;
/// How long a client may take to send its body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Who may use a TCP listener without the bearer token (`--api-auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiAuth {
    /// Nobody.
    Token,
    /// On a loopback listener, anyone for edgevpn's `/api` and the read-only routes.
    Edgevpn,
}

impl ApiAuth {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiAuth::Token => "token",
            ApiAuth::Edgevpn => "edgevpn",
        }
    }
}

impl fmt::Display for ApiAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ApiAuth {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "token" => Ok(ApiAuth::Token),
            "edgevpn" => Ok(ApiAuth::Edgevpn),
            _ => Err(format!("{s:?} is neither `token` nor `edgevpn`")),
        }
    }
}

/// What the guard of one listener enforces.
#[derive(Clone)]
pub enum Access {
    /// A unix socket: its file mode decides who connects.
    Socket,
    Tcp {
        /// SHA-256 of the bearer token (comparing digests leaks nothing about the token).
        token: [u8; 32],
        /// Unauthenticated callers may use edgevpn's routes and read (loopback, edgevpn mode).
        open_compat: bool,
    },
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Access::Socket => f.write_str("Socket"),
            Access::Tcp { open_compat, .. } => f
                .debug_struct("Tcp")
                .field("open_compat", open_compat)
                .finish_non_exhaustive(),
        }
    }
}

impl Access {
    /// A TCP listener's guard: `token` required, except as `auth` allows on a loopback address.
    pub fn tcp(token: &str, auth: ApiAuth, listener: IpAddr) -> Access {
        Access::Tcp {
            token: Sha256::digest(token.as_bytes()).into(),
            open_compat: auth == ApiAuth::Edgevpn && listener.is_loopback(),
        }
    }

    fn check(&self, method: &Method, path: &str, headers: &HeaderMap) -> Result<(), ApiError> {
        let Access::Tcp { token, open_compat } = self else {
            return Ok(());
        };
        if let Some(host) = headers.get(header::HOST) {
            let host = host.to_str().unwrap_or("<not text>");
            if !is_local_host(host) {
                return Err(ApiError::BadHost(host.to_string()));
            }
        }
        if needs_no_token(path) || (*open_compat && compat_route(method, path)) {
            return Ok(());
        }
        match bearer(headers) {
            Some(given) if Sha256::digest(given.as_bytes()).as_slice() == token => Ok(()),
            Some(_) => Err(ApiError::Unauthorized(
                "wrong bearer token (it is in the daemon's --api-token-file)".into(),
            )),
            None => Err(ApiError::Unauthorized(
                "this API needs `Authorization: Bearer <token>`; the token is in the daemon's \
                 --api-token-file (default <state dir>/api.token)"
                    .into(),
            )),
        }
    }
}

/// Routes anyone who reaches the listener may use: probes and the dashboard's empty page.
fn needs_no_token(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/" | "/ui")
}

/// Routes open in edgevpn compatibility: edgevpn's own, and reading.
fn compat_route(method: &Method, path: &str) -> bool {
    path == "/api"
        || path.starts_with("/api/")
        || (matches!(*method, Method::GET | Method::HEAD) && path != "/v1/kubeconfig")
}

/// The token of an `Authorization: Bearer` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Whether a `Host` header names an IP address or localhost (with any port). A DNS rebinding
/// attack needs a name the attacker controls, so any address literal is safe to accept.
pub fn is_local_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((v6, port)) if port.is_empty() || valid_port(port) => {
                return v6.parse::<std::net::Ipv6Addr>().is_ok();
            }
            _ => return false,
        },
        None => match host.rsplit_once(':') {
            Some((name, port)) if valid_port(port) => name,
            Some(_) => return false,
            None => host,
        },
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::Ipv4Addr>().is_ok()
}

fn valid_port(text: &str) -> bool {
    text.strip_prefix(':')
        .unwrap_or(text)
        .parse::<u16>()
        .is_ok()
}

/// The middleware: access first, then the body, read whole within its bounds.
pub async fn guard(State(access): State<Arc<Access>>, request: Request, next: Next) -> Response {
    if let Err(e) = access.check(request.method(), request.uri().path(), request.headers()) {
        return e.into_response();
    }
    match read_body(request).await {
        Ok(request) => super::error::ensure_json(next.run(request).await).await,
        Err(e) => e.into_response(),
    }
}

async fn read_body(request: Request) -> Result<Request, ApiError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(ApiError::TooLarge { limit: MAX_BODY });
    }
    let (parts, body) = request.into_parts();
    let bytes = tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_BODY).collect())
        .await
        .map_err(|_| ApiError::Timeout)?
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                ApiError::TooLarge { limit: MAX_BODY }
            } else {
                ApiError::BadRequest(format!("cannot read the request body: {e}"))
            }
        })?
        .to_bytes();
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn code(result: Result<(), ApiError>) -> &'static str {
        match result {
            Ok(()) => "ok",
            Err(ApiError::Unauthorized(_)) => "401",
            Err(ApiError::BadHost(_)) => "bad host",
            Err(_) => "other",
        }
    }

    #[test]
    fn hosts_must_be_addresses_or_localhost() {
        for host in [
            "localhost",
            "LOCALHOST:8080",
            "127.0.0.1:8080",
            "10.1.0.4",
            "[::1]:8080",
            "[fe80::1]",
        ] {
            assert!(is_local_host(host), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "127.0.0.1.nip.io:8080",
            "127.0.0.1:http",
            "[::1",
            "[::1]x",
        ] {
            assert!(!is_local_host(host), "{host}");
        }
    }

    #[test]
    fn tcp_needs_the_token_except_for_probes() {
        let access = Access::tcp("s3cret", ApiAuth::Token, "127.0.0.1".parse().unwrap());
        let get = Method::GET;
        assert_eq!(code(access.check(&get, "/v1/status", &headers(&[]))), "401");
        let wrong = headers(&[(header::AUTHORIZATION, "Bearer nope")]);
        assert_eq!(code(access.check(&get, "/v1/status", &wrong)), "401");
        let right = headers(&[(header::AUTHORIZATION, "bearer s3cret")]);
        assert_eq!(code(access.check(&get, "/v1/status", &right)), "ok");
        assert_eq!(code(access.check(&get, "/healthz", &headers(&[]))), "ok");
        assert_eq!(
            code(access.check(&get, "/api/machines", &headers(&[]))),
            "401"
        );
        let rebound = headers(&[
            (header::HOST, "attacker.example"),
            (header::AUTHORIZATION, "Bearer s3cret"),
        ]);
        assert_eq!(code(access.check(&get, "/v1/status", &rebound)), "bad host");
    }

    #[test]
    fn edgevpn_mode_opens_only_its_routes_and_reads_and_only_on_loopback() {
        let open = Access::tcp("t", ApiAuth::Edgevpn, "127.0.0.1".parse().unwrap());
        let none = headers(&[]);
        assert_eq!(
            code(open.check(&Method::PUT, "/api/ledger/a/b/c", &none)),
            "ok"
        );
        assert_eq!(code(open.check(&Method::GET, "/v1/members", &none)), "ok");
        assert_eq!(code(open.check(&Method::POST, "/v1/recover", &none)), "401");
        assert_eq!(
            code(open.check(&Method::DELETE, "/v1/members/x", &none)),
            "401"
        );
        assert_eq!(
            code(open.check(&Method::GET, "/v1/kubeconfig", &none)),
            "401"
        );
        let wide = Access::tcp("t", ApiAuth::Edgevpn, "0.0.0.0".parse().unwrap());
        assert_eq!(code(wide.check(&Method::GET, "/api/ledger", &none)), "401");
    }

    #[test]
    fn a_unix_socket_lets_everything_through() {
        assert_eq!(
            code(Access::Socket.check(&Method::POST, "/v1/recover", &headers(&[]))),
            "ok"
        );
    }
}
