//! Running connectors: each is one thread with its own single-threaded tokio runtime (so it
//! runs the same in `eddy serve` and in a program embedding the broker), restarted after a
//! failure with a growing delay, with a [`Status`] the broker answers `eddy connector status`
//! and `DESCRIBE CONNECTOR` from.
//!
//! Invariants: a connector's position is only ever written by its own thread, after the
//! records it covers are durable (sources) or applied (sinks); [`Running::stop`] returns only
//! once the thread has ended, so a dropped connector writes nothing afterwards. A definition
//! error (options, URL) is not retried: the status stays FAILED with its reason.

use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use eddy_processor::LogAccess;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;

use crate::config::{Class, ConnectorDef};
use crate::error::ConnectError;

/// Where connectors keep their positions (the broker: the compacted topic `__connectors`).
pub trait Positions: Send + Sync {
    /// The connector's last stored position.
    fn load(&self, connector: &str) -> Option<Value>;
    /// Stores the position durably (fsynced) before returning.
    fn store(&self, connector: &str, position: &Value) -> Result<(), String>;
}

/// What a connector is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    Starting,
    Running,
    /// Stopped by an error: `reason` says which; retried unless the definition is at fault.
    Failed,
    Paused,
    Stopped,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "STARTING",
            State::Running => "RUNNING",
            State::Failed => "FAILED",
            State::Paused => "PAUSED",
            State::Stopped => "STOPPED",
        }
    }
}

/// A connector's status.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    pub state: State,
    /// Why it failed (the last error, kept while a retry is pending).
    pub reason: Option<String>,
    /// Failures so far (each followed by a retry, unless not retryable).
    pub failures: u32,
    /// Records written (sources) or applied (sinks) since the broker started it.
    pub records: u64,
    /// The position, as the connector describes it (an LSN, offsets, a column's value).
    pub position: Option<String>,
}

/// What a running connector reaches: topics, positions, its status, the stop signal.
#[derive(Clone)]
pub struct Ctx {
    pub name: String,
    pub logs: Arc<dyn LogAccess>,
    positions: Arc<dyn Positions>,
    status: Arc<Mutex<Status>>,
    stop: watch::Receiver<bool>,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx").field("name", &self.name).finish_non_exhaustive()
    }
}

fn lock(status: &Mutex<Status>) -> MutexGuard<'_, Status> {
    status.lock().unwrap_or_else(|p| p.into_inner())
}

impl Ctx {
    pub fn load_position(&self) -> Option<Value> {
        self.positions.load(&self.name)
    }

    /// Stores the position (durably) and shows `shown` as the status's position.
    pub fn store_position(&self, position: &Value, shown: String) -> Result<(), ConnectError> {
        self.positions.store(&self.name, position).map_err(ConnectError::Position)?;
        lock(&self.status).position = Some(shown);
        Ok(())
    }

    /// The connector is working (after a connect or a recovery).
    pub fn running(&self) {
        let mut s = lock(&self.status);
        s.state = State::Running;
        s.reason = None;
    }

    pub fn add_records(&self, n: u64) {
        lock(&self.status).records += n;
    }

    pub fn is_stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Sleeps `d`, or fails with [`ConnectError::Stopped`] when stopped first.
    pub async fn sleep(&self, d: Duration) -> Result<(), ConnectError> {
        let mut stop = self.stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(d) => Ok(()),
            _ = stop.wait_for(|s| *s) => Err(ConnectError::Stopped),
        }
    }
}

/// A connector's thread.
#[derive(Debug)]
pub struct Running {
    status: Arc<Mutex<Status>>,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    /// Starts `def` (a paused one only shows PAUSED).
    pub fn start(
        def: ConnectorDef,
        logs: Arc<dyn LogAccess>,
        positions: Arc<dyn Positions>,
    ) -> Running {
        let state = if def.paused { State::Paused } else { State::Starting };
        let status = Arc::new(Mutex::new(Status {
            state,
            reason: None,
            failures: 0,
            records: 0,
            position: None,
        }));
        let (stop, stop_rx) = watch::channel(false);
        let ctx =
            Ctx { name: def.name.clone(), logs, positions, status: status.clone(), stop: stop_rx };
        let thread = if def.paused {
            None
        } else {
            std::thread::Builder::new()
                .name(format!("connector-{}", def.name))
                .spawn(move || supervise(def, ctx))
                .map_err(|e| {
                    let mut s = lock(&status);
                    s.state = State::Failed;
                    s.reason = Some(format!("could not start its thread: {e}"));
                })
                .ok()
        };
        Running { status, stop, thread }
    }

    pub fn status(&self) -> Status {
        lock(&self.status).clone()
    }

    /// Stops the connector and waits for its thread.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("a connector thread panicked");
        }
        let mut s = lock(&self.status);
        if s.state != State::Paused {
            s.state = State::Stopped;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Delay before retry number `failures` (0.5 s doubling, at most 30 s).
fn backoff(failures: u32) -> Duration {
    Duration::from_millis(500u64.saturating_mul(1 << failures.min(6)).min(30_000))
}

fn supervise(def: ConnectorDef, ctx: Ctx) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(&ctx, &format!("could not build its runtime: {e}")),
    };
    rt.block_on(async {
        let class = match def.class() {
            Ok(c) => c,
            Err(e) => return fail(&ctx, &e.to_string()),
        };
        let mut consecutive = 0;
        loop {
            let mut stop = ctx.stop.clone();
            let outcome = tokio::select! {
                r = run(&class, &ctx) => r,
                _ = stop.wait_for(|s| *s) => Err(ConnectError::Stopped),
            };
            let e = match outcome {
                Ok(()) | Err(ConnectError::Stopped) => return,
                Err(e) => e,
            };
            let (failures, was_running) = {
                let mut s = lock(&ctx.status);
                let was_running = s.state == State::Running;
                s.state = State::Failed;
                s.reason = Some(e.to_string());
                s.failures += 1;
                (s.failures, was_running)
            };
            // The delay grows with failures in a row; one after running starts again at 0.5 s.
            consecutive = if was_running { 0 } else { consecutive + 1 };
            tracing::warn!(connector = %ctx.name, error = %e, failures, "connector failed");
            if !e.is_retryable() {
                let _ = ctx.stop.clone().wait_for(|s| *s).await;
                return;
            }
            if ctx.sleep(backoff(consecutive)).await.is_err() {
                return;
            }
        }
    });
}

fn fail(ctx: &Ctx, reason: &str) {
    tracing::warn!(connector = %ctx.name, %reason, "connector cannot run");
    let mut s = lock(&ctx.status);
    s.state = State::Failed;
    s.reason = Some(reason.to_string());
    s.failures += 1;
}

async fn run(class: &Class, ctx: &Ctx) -> Result<(), ConnectError> {
    match class {
        Class::QuerySource(c) => crate::pg::query::run(c, ctx).await,
        Class::Cdc(c) => crate::pg::cdc::run(c, ctx).await,
        Class::PgSink(c) => crate::pg::sink::run(c, ctx).await,
        Class::FileSink(c) => crate::file_sink::run(c, ctx).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_thirty_seconds() {
        assert_eq!(backoff(0), Duration::from_millis(500));
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(40), Duration::from_secs(30));
    }
}
