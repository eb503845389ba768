//! [`App`]: what every handler shares — the broker once it is open, the listener's counters
//! and limits — and whether the broker is ready.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use eddy_broker::Broker;

use crate::server::{HttpLimits, HttpMeter};

/// What every handler shares: the broker once it is open, the listener's counters and limits.
#[derive(Debug, Clone)]
pub struct App {
    inner: Arc<AppInner>,
}

#[derive(Debug)]
struct AppInner {
    broker: OnceLock<Broker>,
    meter: Arc<HttpMeter>,
    limits: HttpLimits,
    started: SystemTime,
    /// The broker requires authentication (`auth.enabled`): so does everything but `/health`
    /// and `/ready` (`crate::auth`).
    auth_required: AtomicBool,
}

impl App {
    pub fn new(limits: HttpLimits) -> Self {
        let inner = AppInner {
            broker: OnceLock::new(),
            meter: Arc::default(),
            limits,
            started: SystemTime::now(),
            auth_required: AtomicBool::new(false),
        };
        Self { inner: Arc::new(inner) }
    }

    /// The broker is open: the API, metrics and readiness use it from now on.
    pub fn set_broker(&self, broker: Broker) {
        let _ = self.inner.broker.set(broker);
    }

    /// Requires HTTP Basic authentication against the broker's users (set before serving, from
    /// the broker's `auth.enabled`).
    pub fn set_auth_required(&self, required: bool) {
        self.inner.auth_required.store(required, Ordering::Release);
    }

    pub fn auth_required(&self) -> bool {
        self.inner.auth_required.load(Ordering::Acquire)
    }

    pub fn broker(&self) -> Option<&Broker> {
        self.inner.broker.get()
    }

    pub fn meter(&self) -> &Arc<HttpMeter> {
        &self.inner.meter
    }

    pub fn limits(&self) -> HttpLimits {
        self.inner.limits
    }

    /// When the listener was made (the process's start, near enough).
    pub fn started(&self) -> SystemTime {
        self.inner.started
    }
}

/// Why the broker is not ready (empty: ready).
pub fn not_ready(app: &App) -> Vec<String> {
    match app.broker() {
        None => vec!["the broker is opening (recovering its partitions)".into()],
        Some(broker) => broker.not_ready(),
    }
}
