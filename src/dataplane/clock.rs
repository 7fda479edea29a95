//! The packet path's clock: milliseconds since the data plane started, in a `u64` that atomics
//! hold and the pure decision cores ([`super::demand`], [`super::paths`]) take as `now`.

use std::time::{Duration, Instant};

/// `d` in the packet path's clock units.
pub const fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// Milliseconds since the data plane started: the packet path's cheap, comparable clock.
#[derive(Debug, Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    pub fn new() -> Self {
        Clock(Instant::now())
    }

    /// Now, in milliseconds (never 0, which marks "never").
    pub fn now(&self) -> u64 {
        self.0.elapsed().as_millis() as u64 + 1
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}
