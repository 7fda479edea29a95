//! The dashboard: one page, `assets/dashboard.html`, compiled into the binary and served at `/`
//! and `/ui`. It holds no data; its script reads the `/v1` routes with the bearer token the user
//! gives it (kept in the tab's session storage), so serving the page itself needs no token. The
//! headers keep it from being framed and from loading anything but this API.

use axum::http::header;
use axum::response::IntoResponse;

const PAGE: &str = include_str!("../../assets/dashboard.html");

/// What the page may do: its own inline script and style, requests to this origin only.
const POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                      connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
                      frame-ancestors 'none'";

/// `GET /` and `GET /ui`.
pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        PAGE,
    )
}
