//! Fault injection for the supervision tests, in debug builds only: `WEFT_FAULT=<part>` (a
//! comma-separated list) makes that part of the daemon stop on its own [`DELAY`] after it
//! starts, as a crash would, so that a test can show the daemon notices and exits. `swarm`
//! ends the control plane's task; `ledger` panics in the ledger's autopilot task; `packets`
//! panics on the data plane's packet thread. Release builds never read the variable.

use std::time::Duration;

/// How long after its start an injected fault fires.
pub const DELAY: Duration = Duration::from_secs(3);

/// Whether a fault is injected into `part`.
pub fn injected(part: &str) -> bool {
    cfg!(debug_assertions)
        && std::env::var("WEFT_FAULT").is_ok_and(|parts| parts.split(',').any(|p| p == part))
}

/// Runs `task`, or, with a fault injected into `part`, runs it only until [`DELAY`] has passed
/// and then ends (`panic` false) or panics.
pub async fn guard(part: &str, panic: bool, task: impl std::future::Future<Output = ()>) {
    if !injected(part) {
        return task.await;
    }
    tokio::select! {
        () = task => {}
        () = tokio::time::sleep(DELAY) => {
            tracing::error!(part, "fault injected: this part stops");
            assert!(!panic, "fault injected: {part} panics");
        }
    }
}
