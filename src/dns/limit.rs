//! A budget of DNS answers per client address, so that one member cannot flood the server
//! (each answer may cost an upstream query). A token bucket per IP: [`RATE`] answers a second,
//! [`BURST`] at once. The handler exempts loopback before asking (the host's own resolver
//! forwards every local lookup through it). The table is bounded: when it is full, buckets that have refilled are dropped,
//! and if none has, the new client is refused, so a flood of source addresses cannot grow
//! memory. Pure and time-injected.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// Answers a second one client may have, sustained.
pub const RATE: f64 = 200.0;
/// Answers one client may have at once.
pub const BURST: f64 = 400.0;
/// Clients tracked at most.
pub const CLIENTS: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets of the clients seen lately.
#[derive(Debug)]
pub struct Limiter {
    buckets: HashMap<IpAddr, Bucket>,
    rate: f64,
    burst: f64,
    capacity: usize,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter::new(RATE, BURST, CLIENTS)
    }
}

impl Limiter {
    pub fn new(rate: f64, burst: f64, capacity: usize) -> Limiter {
        Limiter {
            buckets: HashMap::new(),
            rate,
            burst,
            capacity,
        }
    }

    /// Whether `ip` may have an answer at `now` (and takes it from its budget).
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if !self.buckets.contains_key(&ip) && self.buckets.len() >= self.capacity {
            let (rate, burst) = (self.rate, self.burst);
            self.buckets
                .retain(|_, b| refilled(b, rate, burst, now) < burst);
            if self.buckets.len() >= self.capacity {
                return false;
            }
        }
        let burst = self.burst;
        let bucket = self.buckets.entry(ip).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        bucket.tokens = refilled(bucket, self.rate, burst, now);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The tokens `bucket` holds at `now`.
fn refilled(bucket: &Bucket, rate: f64, burst: f64, now: Instant) -> f64 {
    let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
    (bucket.tokens + elapsed * rate).min(burst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 1, 0, n])
    }

    #[test]
    fn a_client_gets_its_burst_then_its_rate() {
        let mut limiter = Limiter::new(10.0, 5.0, 16);
        let t0 = Instant::now();
        assert!((0..5).all(|_| limiter.allow(ip(1), t0)));
        assert!(!limiter.allow(ip(1), t0));
        assert!(limiter.allow(ip(2), t0), "others keep their own budget");
        assert!(limiter.allow(ip(1), t0 + Duration::from_millis(100)));
        assert!(!limiter.allow(ip(1), t0 + Duration::from_millis(100)));
    }

    #[test]
    fn the_table_stays_bounded_and_frees_refilled_clients() {
        let mut limiter = Limiter::new(10.0, 2.0, 2);
        let t0 = Instant::now();
        assert!(limiter.allow(ip(1), t0));
        assert!(limiter.allow(ip(2), t0));
        assert!(!limiter.allow(ip(3), t0), "full, and nobody has refilled");
        assert_eq!(limiter.buckets.len(), 2);
        let later = t0 + Duration::from_secs(1);
        assert!(limiter.allow(ip(3), later), "refilled clients make room");
        assert!(limiter.buckets.len() <= 2);
    }
}
