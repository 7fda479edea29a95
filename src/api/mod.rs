//! The local HTTP API (axum) that `weft status` and, later, Kairos talk to. It listens on a
//! unix socket or a TCP address ([`listen`]), serves the native `/v1` JSON API (roles and the
//! kubeconfig in [`roles`]), edgevpn's `/api` (the ledger, machines, summary, peers in
//! [`edgevpn`], its DNS records in [`dns`]), `/healthz` and `/metrics` (Prometheus), and stops
//! when the daemon's shutdown token is cancelled. [`client`] is the matching client used by the
//! CLI.

mod addr;
pub mod client;
pub mod dns;
pub mod edgevpn;
mod error;
mod listen;
pub mod roles;
mod routes;

pub use addr::ApiAddr;
pub use listen::{ApiListener, ListenError};
pub use routes::{ApiState, MemberView, NodeInfo, PeerEntry, StatusView, router};
