//! The clock the daemon's timed decisions read: tokio's, as a `std::time::Instant`.
//!
//! The decision cores take `now` as an argument; their adapters read it here rather than from
//! `Instant::now()`, so that a test on a runtime with paused time (the ledger's simulation)
//! moves every timer, raft's and the autopilot's alike, on one virtual clock. In the daemon
//! tokio's clock is the system's monotonic clock.

use std::time::{Duration, Instant};

/// Now, on tokio's clock.
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// How long ago `then` was, on tokio's clock.
pub fn since(then: Instant) -> Duration {
    now().saturating_duration_since(then)
}
