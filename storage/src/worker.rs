//! The log's background thread: it seals rolled segments (see `seal`), runs the interval
//! flushes of [`Flush::Interval`], and moves the recovery point forward.
//!
//! One thread per open log, started by `Log::open` and stopped by `Log::close` or drop: it
//! finishes every queued seal, writes a last checkpoint if the durable offset has moved past the
//! one on disk, and exits. It holds the log's `Inner` only while the `Log` is alive (the `Log`
//! joins it before letting go).
//!
//! A periodic checkpoint is written every [`CHECKPOINT_INTERVAL`] if the durable offset has
//! moved. Under `Flush::Os` it never forces an fsync for that (it records only what something
//! else made durable); under the other policies it may share one fsync with the appenders,
//! which were going to pay for one anyway.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::Flush;
use crate::error::{Error, Result};
use crate::log::Inner;
use crate::seal::{Sealer, Work};

/// How often the recovery point is moved up to the durable offset (if it moved): the bound on
/// how much an open after a crash reads beyond the last seal.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);

pub fn spawn(inner: Arc<Inner>) -> Result<JoinHandle<()>> {
    let dir = inner.dir.clone();
    std::thread::Builder::new()
        .name("eddy-log".into())
        .spawn(move || run(&inner))
        .map_err(Error::io("start the background thread of", dir))
}

/// Tells waiters the thread is gone, however it ends.
struct Gone<'a>(&'a Sealer);

impl Drop for Gone<'_> {
    fn drop(&mut self) {
        self.0.worker_gone();
    }
}

fn run(inner: &Inner) {
    let _gone = Gone(&inner.sealer);
    let flush_every = match inner.config.flush {
        Flush::Interval(every) => Some(every),
        Flush::Always | Flush::Os => None,
    };
    let force_checkpoint = inner.config.flush != Flush::Os;
    let mut next_flush = flush_every.map(|every| Instant::now() + every);
    let mut next_checkpoint = Instant::now() + CHECKPOINT_INTERVAL;
    loop {
        let deadline = next_flush.map_or(next_checkpoint, |f| f.min(next_checkpoint));
        match inner.sealer.next(deadline) {
            Work::Seal(job) => {
                if let Err(e) = inner.seal(&job) {
                    tracing::error!(log = %inner.dir.display(), error = %e, "sealing a segment failed");
                }
                inner.sealer.finish();
            }
            Work::Stop => {
                if !inner.is_poisoned()
                    && let Err(e) = inner.checkpoint(false)
                {
                    tracing::warn!(log = %inner.dir.display(), error = %e, "could not write the recovery point at close");
                }
                return;
            }
            Work::Tick => {}
        }
        let now = Instant::now();
        if let (Some(due), Some(every)) = (next_flush, flush_every)
            && now >= due
        {
            next_flush = Some(now + every);
            let end = inner.next_offset.load(std::sync::atomic::Ordering::Acquire);
            if end > inner.commit.durable()
                && let Err(e) = inner.sync_through(end)
            {
                tracing::error!(log = %inner.dir.display(), error = %e, "interval flush failed; no more interval flushes");
                next_flush = None;
            }
        }
        if now >= next_checkpoint && !inner.is_poisoned() {
            next_checkpoint = now + CHECKPOINT_INTERVAL;
            if let Err(e) = inner.checkpoint(force_checkpoint) {
                tracing::warn!(log = %inner.dir.display(), error = %e, "could not write the recovery point");
            }
        }
    }
}
