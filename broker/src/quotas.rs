//! Client quotas: how many bytes per second a client may produce and fetch, as Kafka's
//! `producer_byte_rate` / `consumer_byte_rate` quotas work.
//!
//! - Who a quota applies to (its *entity*): an authenticated user with an override in
//!   `[quotas.users.NAME]` shares that user's budget across all its connections; else a client
//!   id with an override in `[quotas.clients.ID]` shares that client id's; else the defaults
//!   apply to each (principal, client id) pair on its own. So one principal cannot take
//!   another's bandwidth, and a default limit cannot be escaped by opening more connections
//!   under the same name.
//! - Rates are measured as Kafka measures them: bytes over `samples` windows of `window_ms`
//!   each, the oldest dropped as time goes on; while fewer than `samples - 1` whole windows
//!   have passed, the rate is taken over `samples - 1` windows anyway (a new client is not
//!   throttled for its first burst). A client over its quota is told to wait for
//!   `(rate - quota) / quota × window span` — the time after which its measured rate is back
//!   at the quota — capped at `samples × window_ms`.
//! - Enforcement (the listeners): the answer carries the wait as `throttle_time_ms` (Kafka's
//!   clients honour it, KIP-219), and the broker reads nothing more from that connection until
//!   the wait is over, so a client that ignores it is slowed all the same.
//!
//! Invariant: the map of entities holds only entities seen within the last `samples ×
//! window_ms` plus one sweep; it is swept as requests arrive, so it cannot grow without bound
//! from clients that come and go.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;

use crate::security::Principal;

/// One entity's byte rates; `None` takes the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rates {
    pub producer_byte_rate: Option<u64>,
    pub consumer_byte_rate: Option<u64>,
}

/// The `[quotas]` section of the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaSettings {
    /// Bytes per second one entity may produce (record batches); 0: no limit.
    pub producer_byte_rate: u64,
    /// Bytes per second of records one entity may fetch; 0: no limit.
    pub consumer_byte_rate: u64,
    /// Overrides for authenticated users, by user name.
    pub users: BTreeMap<String, Rates>,
    /// Overrides for client ids (Kafka's `client.id`, eddy's client name).
    pub clients: BTreeMap<String, Rates>,
    /// Length of one measurement window (Kafka's `quota.window.size.seconds`, in ms).
    pub window_ms: u32,
    /// Windows a rate is measured over (Kafka's `quota.window.num`).
    pub samples: u32,
}

impl Default for QuotaSettings {
    fn default() -> Self {
        Self {
            producer_byte_rate: 0,
            consumer_byte_rate: 0,
            users: BTreeMap::new(),
            clients: BTreeMap::new(),
            window_ms: 1_000,
            samples: 11,
        }
    }
}

impl QuotaSettings {
    /// Whether any quota is set: without one the listeners skip the bookkeeping entirely.
    pub fn any(&self) -> bool {
        let set = |r: &Rates| r.producer_byte_rate.is_some() || r.consumer_byte_rate.is_some();
        self.producer_byte_rate > 0
            || self.consumer_byte_rate > 0
            || self.users.values().any(set)
            || self.clients.values().any(set)
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.window_ms == 0 || self.samples < 2 {
            return Err("quotas: window_ms must be positive and samples at least 2".into());
        }
        Ok(())
    }
}

/// Which budget bytes count against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Produce,
    Fetch,
}

/// Who a budget belongs to (see the module docs for how one is chosen).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Entity {
    User(String),
    Client(String),
    Pair(Principal, String),
}

/// Measured bytes in windows, oldest first: (window start in ms, bytes).
#[derive(Debug, Default)]
struct Meter {
    windows: VecDeque<(u64, u64)>,
}

impl Meter {
    /// Adds `bytes` at `now_ms` and answers how long the entity must wait to be back at `quota`.
    fn record(&mut self, bytes: u64, now_ms: u64, quota: u64, window_ms: u64, samples: u64) -> u64 {
        match self.windows.back_mut() {
            Some((start, sum)) if now_ms < *start + window_ms => *sum += bytes,
            _ => self.windows.push_back((now_ms - now_ms % window_ms, bytes)),
        }
        while self.windows.front().is_some_and(|(start, _)| *start + samples * window_ms <= now_ms)
        {
            self.windows.pop_front();
        }
        let (Some(&(oldest, _)), Some(&(current, _))) = (self.windows.front(), self.windows.back())
        else {
            return 0;
        };
        // Kafka's Rate: the span is at least `samples - 1` whole windows plus the current one.
        let whole = (current - oldest) / window_ms;
        let span_ms = (now_ms - current) + window_ms * whole.max(samples - 1);
        let total: u64 = self.windows.iter().map(|(_, b)| b).sum();
        let span_ms = span_ms.max(1);
        // rate = total / span; wait = (rate - quota) / quota × span = total / quota - span.
        let needed_ms = total.saturating_mul(1000) / quota.max(1);
        needed_ms.saturating_sub(span_ms).min(samples * window_ms)
    }

    fn last_ms(&self) -> u64 {
        self.windows.back().map_or(0, |(start, _)| *start)
    }
}

/// The broker's quota bookkeeping, shared by every connection of every listener.
#[derive(Debug)]
pub struct Quotas {
    settings: QuotaSettings,
    enabled: bool,
    meters: Mutex<Meters>,
}

#[derive(Debug, Default)]
struct Meters {
    by_entity: HashMap<(Entity, Direction), Meter>,
    swept_ms: u64,
}

impl Quotas {
    pub fn new(settings: &QuotaSettings) -> Self {
        Self { settings: settings.clone(), enabled: settings.any(), meters: Mutex::default() }
    }

    /// Whether any quota is configured.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Counts `bytes` produced or fetched by `principal` under `client_id` at `now_ms`, and
    /// answers how long that connection must now wait (zero when within its quota).
    pub fn record(
        &self,
        principal: &Principal,
        client_id: &str,
        direction: Direction,
        bytes: u64,
        now_ms: u64,
    ) -> Duration {
        if !self.enabled || bytes == 0 {
            return Duration::ZERO;
        }
        let Some((entity, quota)) = self.entity(principal, client_id, direction) else {
            return Duration::ZERO;
        };
        let (window, samples) =
            (u64::from(self.settings.window_ms), u64::from(self.settings.samples));
        let mut meters = self.meters.lock().unwrap_or_else(|p| p.into_inner());
        if now_ms >= meters.swept_ms + samples * window {
            // Entities silent for a whole measurement span hold nothing worth keeping.
            meters.by_entity.retain(|_, m| m.last_ms() + samples * window > now_ms);
            meters.swept_ms = now_ms;
        }
        let meter = meters.by_entity.entry((entity, direction)).or_default();
        Duration::from_millis(meter.record(bytes, now_ms, quota, window, samples))
    }

    /// The budget `principal` / `client_id` counts against for `direction`, and its rate;
    /// `None` when it has no limit.
    fn entity(
        &self,
        principal: &Principal,
        client_id: &str,
        direction: Direction,
    ) -> Option<(Entity, u64)> {
        let pick = |r: &Rates| match direction {
            Direction::Produce => r.producer_byte_rate,
            Direction::Fetch => r.consumer_byte_rate,
        };
        let user = principal.name().and_then(|n| Some((n, pick(self.settings.users.get(n)?)?)));
        let (entity, rate) = if let Some((name, rate)) = user {
            (Entity::User(name.to_owned()), rate)
        } else if let Some(rate) = self.settings.clients.get(client_id).and_then(pick) {
            (Entity::Client(client_id.to_owned()), rate)
        } else {
            let rate = match direction {
                Direction::Produce => self.settings.producer_byte_rate,
                Direction::Fetch => self.settings.consumer_byte_rate,
            };
            (Entity::Pair(principal.clone(), client_id.to_owned()), rate)
        };
        (rate > 0).then_some((entity, rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(rate: u64) -> QuotaSettings {
        QuotaSettings {
            producer_byte_rate: rate,
            window_ms: 1000,
            samples: 3,
            ..Default::default()
        }
    }

    #[test]
    fn within_the_quota_nothing_waits() {
        let q = Quotas::new(&settings(1000));
        let p = Principal::Anonymous;
        // 900 bytes a second, 90 every 100 ms, for ten seconds.
        for tick in 0..100 {
            let wait = q.record(&p, "a", Direction::Produce, 90, tick * 100);
            assert_eq!(wait, Duration::ZERO, "at {} ms", tick * 100);
        }
    }

    #[test]
    fn over_the_quota_the_wait_brings_the_rate_back() {
        let q = Quotas::new(&settings(1000));
        let p = Principal::Anonymous;
        // 4,000 bytes at once: the span counts as two windows (2 s) and 4 s are needed.
        let wait = q.record(&p, "a", Direction::Produce, 4000, 10_000);
        assert_eq!(wait, Duration::from_millis(2000));
        // 6,000: 4 s, capped at samples × window.
        let q = Quotas::new(&settings(1000));
        let wait = q.record(&p, "a", Direction::Produce, 6000, 10_000);
        assert_eq!(wait, Duration::from_millis(3000));
        // Once the burst's window has aged out, the quota's rate is accepted again.
        let wait = q.record(&p, "a", Direction::Produce, 900, 13_000);
        assert_eq!(wait, Duration::ZERO);
    }

    #[test]
    fn entities_are_separate_and_overrides_share_a_budget() {
        let mut s = settings(1000);
        s.users.insert(
            "big".into(),
            Rates { producer_byte_rate: Some(1_000_000), ..Default::default() },
        );
        let q = Quotas::new(&s);
        let (alice, bob) = (Principal::user("alice"), Principal::user("bob"));
        assert!(q.record(&alice, "c", Direction::Produce, 5000, 0) > Duration::ZERO);
        assert_eq!(q.record(&bob, "c", Direction::Produce, 900, 0), Duration::ZERO);
        assert_eq!(
            q.record(&alice, "c", Direction::Fetch, 1 << 30, 0),
            Duration::ZERO,
            "no fetch quota"
        );
        let big = Principal::user("big");
        assert_eq!(q.record(&big, "x", Direction::Produce, 900_000, 0), Duration::ZERO);
        assert!(
            q.record(&big, "y", Direction::Produce, 2_000_000, 0) > Duration::ZERO,
            "one budget"
        );
    }

    #[test]
    fn silent_entities_are_swept() {
        let q = Quotas::new(&settings(1000));
        for i in 0..100 {
            q.record(&Principal::Anonymous, &format!("c{i}"), Direction::Produce, 10, 0);
        }
        q.record(&Principal::Anonymous, "late", Direction::Produce, 10, 10_000);
        let meters = q.meters.lock().unwrap();
        assert_eq!(meters.by_entity.len(), 1);
    }
}
