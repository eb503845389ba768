//! Slowing down an address that keeps failing to authenticate: a flood of wrong passwords from
//! one source is made to wait before each new attempt is even looked at, so it costs the broker
//! (SCRAM's HMACs, PLAIN's PBKDF2, the connections themselves) a fraction of what it asks for,
//! and the broker's other clients keep their cores.
//!
//! - Each address has a count of recent failures that halves every second ([`HALF_LIFE`]).
//!   While it is at most [`FREE_FAILURES`], nothing waits: a person mistyping a password, or a
//!   client retrying, is never slowed.
//! - Past it, a new exchange from the address waits `failed_delay` × count / [`FREE_FAILURES`]
//!   (at most [`MAX_WAIT`]) before its handshake is answered. A steady flood from one address
//!   with N connections at once settles near N / (wait + delay) attempts per second: with 64
//!   connections and the default 100 ms delay, about 60 a second instead of 600.
//! - The table holds only addresses with recent failures, at most [`MAX_ADDRESSES`]: past that,
//!   addresses whose count has decayed are dropped, and if none has, the table starts over (an
//!   attacker with that many addresses is not slowed by address, but still pays the delay).
//! - Addresses are compared canonically (an IPv4-mapped IPv6 address is its IPv4 address).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Recent failures an address may have before its attempts wait.
pub const FREE_FAILURES: f64 = 10.0;
/// The time in which an address's count of recent failures halves.
pub const HALF_LIFE: Duration = Duration::from_secs(1);
/// Longest an attempt waits.
pub const MAX_WAIT: Duration = Duration::from_secs(2);
/// Most addresses remembered.
pub const MAX_ADDRESSES: usize = 16_384;

#[derive(Debug, Clone, Copy)]
struct Recent {
    count: f64,
    at: Instant,
}

impl Recent {
    fn decayed(self, now: Instant) -> f64 {
        let halves = now.saturating_duration_since(self.at).as_secs_f64() / HALF_LIFE.as_secs_f64();
        self.count * 0.5f64.powf(halves)
    }
}

/// Recent authentication failures by client address, shared by the listeners.
#[derive(Debug)]
pub struct FailureThrottle {
    failed_delay: Duration,
    recent: Mutex<HashMap<IpAddr, Recent>>,
}

impl FailureThrottle {
    /// A throttle whose waits are counted in units of `failed_delay` (`auth.failed_delay_ms`;
    /// zero: nothing ever waits).
    pub fn new(failed_delay: Duration) -> Self {
        Self { failed_delay, recent: Mutex::default() }
    }

    /// How long a new exchange from `ip` waits before it is looked at.
    pub fn wait_for(&self, ip: IpAddr) -> Duration {
        let recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(r) = recent.get(&ip.to_canonical()) else { return Duration::ZERO };
        let count = r.decayed(Instant::now());
        if count <= FREE_FAILURES {
            return Duration::ZERO;
        }
        self.failed_delay.mul_f64(count / FREE_FAILURES).min(MAX_WAIT)
    }

    /// An exchange from `ip` was refused.
    pub fn failed(&self, ip: IpAddr) {
        let now = Instant::now();
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if recent.len() >= MAX_ADDRESSES && !recent.contains_key(&ip.to_canonical()) {
            recent.retain(|_, r| r.decayed(now) > 1.0);
            if recent.len() >= MAX_ADDRESSES {
                recent.clear();
            }
        }
        let entry = recent.entry(ip.to_canonical()).or_insert(Recent { count: 0.0, at: now });
        *entry = Recent { count: entry.decayed(now) + 1.0, at: now };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_failures_cost_nothing_a_flood_waits_and_it_decays() {
        let throttle = FailureThrottle::new(Duration::from_millis(100));
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..5 {
            throttle.failed(a);
        }
        assert_eq!(throttle.wait_for(a), Duration::ZERO);
        for _ in 0..45 {
            throttle.failed(a);
        }
        let wait = throttle.wait_for(a);
        assert!(
            wait > Duration::from_millis(400) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        assert_eq!(throttle.wait_for(b), Duration::ZERO, "another address is not slowed");
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        // The same address (the count decays a little between the two reads).
        assert!(
            throttle.wait_for(mapped).abs_diff(throttle.wait_for(a)) < Duration::from_millis(5)
        );
        for _ in 0..10_000 {
            throttle.failed(a);
        }
        assert_eq!(throttle.wait_for(a), MAX_WAIT);
        // Decay: a count seen long ago weighs nothing.
        let long_ago = Recent { count: 1000.0, at: Instant::now() - Duration::from_secs(20) };
        assert!(long_ago.decayed(Instant::now()) < 0.001);
    }

    #[test]
    fn the_table_is_bounded() {
        let throttle = FailureThrottle::new(Duration::from_millis(100));
        for i in 0..(MAX_ADDRESSES as u32 + 10) {
            throttle.failed(IpAddr::from(i.to_be_bytes()));
        }
        assert!(throttle.recent.lock().unwrap().len() <= MAX_ADDRESSES);
    }
}
