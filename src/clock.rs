//! The clocks the daemon reads: tokio's monotonic clock for timed decisions, and the wall
//! clock for what is stamped or derived from the date.
//!
//! The decision cores take `now` as an argument; their adapters read it here rather than from
//! `Instant::now()`, so that a test on a runtime with paused time (the ledger's simulation)
//! moves every timer, raft's and the autopilot's alike, on one virtual clock. In the daemon
//! tokio's clock is the system's monotonic clock.
//!
//! The wall clock ([`unix_now`]: rendezvous epochs, which tokens are accepted, stamps in the
//! ledger) is read here alone, so that a debug build can run with its clock set off by
//! `WEFT_CLOCK_OFFSET=<seconds>` (negative for behind): the namespace test of clock trouble
//! runs real daemons whose dates disagree. Release builds never read the variable.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Now, on tokio's clock.
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// How long ago `then` was, on tokio's clock.
pub fn since(then: Instant) -> Duration {
    now().saturating_duration_since(then)
}

/// The wall clock as one part of the daemon reads it: the node's own ([`Wall::default`]), or
/// that clock set off by a number of seconds, which the ledger simulation gives each of its
/// nodes (the daemon's whole clock is set off by `WEFT_CLOCK_OFFSET` instead).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wall {
    offset: i64,
    /// In the simulation, the date the clock read at an instant of tokio's clock, from which
    /// it moves with tokio's (simulated) time rather than the machine's.
    simulated: Option<(tokio::time::Instant, u64)>,
}

impl Wall {
    /// This node's wall clock set off by `seconds` (negative for behind).
    pub fn off_by(seconds: i64) -> Wall {
        Wall {
            offset: seconds,
            simulated: None,
        }
    }

    /// This clock, read as `date` (seconds since the UNIX epoch, before its offset) at `at`
    /// and moving with tokio's clock from then: a simulated node's, so that a seed's run
    /// reads the same dates whenever it runs.
    #[cfg(test)]
    pub fn simulated(self, at: tokio::time::Instant, date: u64) -> Wall {
        Wall {
            simulated: Some((at, date)),
            ..self
        }
    }

    /// Now, in seconds since the UNIX epoch, on this clock (0 before 1970).
    pub fn now(self) -> u64 {
        let date = match self.simulated {
            Some((at, date)) => date.saturating_add(at.elapsed().as_secs()),
            None => unix_now(),
        };
        date.saturating_add_signed(self.offset)
    }
}

/// Now, in seconds since the UNIX epoch, on this node's wall clock (0 before 1970).
pub fn unix_now() -> u64 {
    let real = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    real.saturating_add_signed(offset())
}

/// The wall clock's offset in seconds: `WEFT_CLOCK_OFFSET` in debug builds, else 0.
fn offset() -> i64 {
    static OFFSET: OnceLock<i64> = OnceLock::new();
    *OFFSET.get_or_init(|| {
        if !cfg!(debug_assertions) {
            return 0;
        }
        let Ok(text) = std::env::var("WEFT_CLOCK_OFFSET") else {
            return 0;
        };
        text.trim().parse().unwrap_or_else(|_| {
            tracing::warn!(value = %text, "WEFT_CLOCK_OFFSET is not a whole number of seconds; ignored");
            0
        })
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_wall_clock_is_the_systems_without_an_offset() {
        let system = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let ours = super::unix_now();
        assert!(ours.abs_diff(system) <= 1, "{ours} vs {system}");
    }

    #[test]
    fn a_wall_clock_set_off_reads_that_far_from_the_nodes_and_never_before_1970() {
        let ours = super::unix_now();
        assert!(super::Wall::default().now().abs_diff(ours) <= 1);
        assert!(super::Wall::off_by(600).now().abs_diff(ours + 600) <= 1);
        assert!(super::Wall::off_by(-600).now().abs_diff(ours - 600) <= 1);
        assert_eq!(super::Wall::off_by(i64::MIN).now(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_simulated_wall_clock_moves_with_tokios_clock_alone() {
        let wall = super::Wall::off_by(-5).simulated(tokio::time::Instant::now(), 1000);
        assert_eq!(wall.now(), 995);
        tokio::time::sleep(std::time::Duration::from_secs(10)).await;
        assert_eq!(wall.now(), 1005);
    }
}
