//! Group commit: appenders that need durability share fsyncs.
//!
//! The first appender to find no fsync in progress becomes the leader: it notes how far the log
//! has been written, fsyncs, and publishes that point as durable. Appenders that arrive while
//! it works wait; when it finishes, they are either covered (their batch was written before the
//! leader looked) or one of them leads the next round for all of them. N concurrent appenders
//! thus cost about two fsyncs per round rather than N.
//!
//! A failed fsync is final: the page cache may have dropped the dirty pages, and a retry could
//! report success for data that is gone, so every waiter gets the error and the log is poisoned.

use std::sync::{Condvar, Mutex, MutexGuard};

#[derive(Debug)]
struct State {
    /// Every offset below this is on stable storage.
    durable: u64,
    leader: bool,
    failed: bool,
}

#[derive(Debug)]
pub struct GroupCommit {
    state: Mutex<State>,
    cond: Condvar,
}

/// Why [`GroupCommit::wait`] could not return success.
#[derive(Debug)]
pub enum WaitError<E> {
    /// This caller's own fsync failed.
    Sync(E),
    /// Another caller's fsync failed earlier.
    Failed,
}

impl GroupCommit {
    pub fn new(durable: u64) -> Self {
        Self {
            state: Mutex::new(State { durable, leader: false, failed: false }),
            cond: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn durable(&self) -> u64 {
        self.lock().durable
    }

    /// Blocks until every offset below `target` is durable. `sync` forces the log to disk and
    /// returns the offset it covered (read *before* forcing).
    pub fn wait<E>(
        &self,
        target: u64,
        sync: impl Fn() -> Result<u64, E>,
    ) -> Result<(), WaitError<E>> {
        let mut state = self.lock();
        loop {
            if state.failed {
                return Err(WaitError::Failed);
            }
            if state.durable >= target {
                return Ok(());
            }
            if !state.leader {
                state.leader = true;
                drop(state);
                let outcome = sync();
                state = self.lock();
                state.leader = false;
                match outcome {
                    // A failure elsewhere (the sealer's fsync of an older segment) while this
                    // one ran: its success proves nothing about the bytes that failed.
                    Ok(_) if state.failed => {
                        self.cond.notify_all();
                        return Err(WaitError::Failed);
                    }
                    Ok(covered) => state.durable = state.durable.max(covered),
                    Err(e) => {
                        state.failed = true;
                        self.cond.notify_all();
                        return Err(WaitError::Sync(e));
                    }
                }
                self.cond.notify_all();
                continue;
            }
            state = self.cond.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Waits until offsets below `target` are durable without leading an fsync; `false` on
    /// timeout or after a failed fsync.
    pub fn wait_passive(&self, target: u64, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut state = self.lock();
        while state.durable < target && !state.failed {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self.cond.wait_timeout(state, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        !state.failed
    }

    /// Marks offsets below `offset` durable: the caller fsynced every segment holding them
    /// (the sealer, having finished a segment). Ignored once an fsync has failed.
    pub fn mark_durable(&self, offset: u64) {
        let mut state = self.lock();
        if !state.failed {
            state.durable = state.durable.max(offset);
        }
        self.cond.notify_all();
    }

    /// Records an fsync failure found outside [`GroupCommit::wait`] (by the sealer): the durable
    /// offset never moves again, and every waiter, present and future, fails.
    pub fn fail(&self) {
        let mut state = self.lock();
        state.failed = true;
        self.cond.notify_all();
    }
}
