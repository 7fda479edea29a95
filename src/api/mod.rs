//! The local HTTP API (axum) that `weft status`, Kairos' provider and the dashboard talk to. It
//! listens on a unix socket or a TCP address ([`listen`], connections bounded by [`serve`]),
//! checks who may use it ([`guard`], with the token of [`bearer`] on TCP), serves the native
//! `/v1` JSON API (roles and the kubeconfig in [`roles`], token rotation in [`rotate`]),
//! edgevpn's `/api` (the ledger, machines, summary, peers in [`edgevpn`], its DNS records in
//! [`dns`]), `/healthz`, `/readyz`, `/metrics` (OpenMetrics or Prometheus text,
//! [`exposition`]) and the dashboard ([`dashboard`]), and stops when the daemon's shutdown
//! token is cancelled. Every error is JSON, made in [`error`]. [`client`] is the matching
//! client used by the CLI.

mod addr;
pub mod bearer;
pub mod client;
mod dashboard;
pub mod dns;
pub mod edgevpn;
mod error;
mod exposition;
mod guard;
mod listen;
mod operator;
pub mod roles;
pub mod rotate;
mod routes;
mod serve;

pub use addr::ApiAddr;
pub use error::ErrorBody;
pub use guard::{Access, ApiAuth, MAX_BODY};
pub use listen::{ApiListener, ListenError};
pub use routes::{ApiState, MemberView, NodeInfo, PeerEntry, StatusView, router};
pub use serve::{HEADER_TIMEOUT, MAX_CONNECTIONS, MAX_PER_CLIENT};
