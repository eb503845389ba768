//! eddy-storage: one partition's log on disk.
//!
//! A [`Log`] is a directory of segments, each a `.log` file of record batches with a sparse
//! offset index and a time index beside it. It assigns offsets on append, serves reads as whole
//! batches without copying them (sealed segments are memory-mapped), finds offsets by timestamp,
//! enforces retention and compaction, remembers idempotent producers, and recovers from a crash
//! by checking only what follows its recovery point.
//!
//! Modules:
//! - [`batch`]: the record batch format (builder, zero-copy decoder, validation).
//! - `segment`, `index`, `active_index` (the appended segment's index, in its files), `mmap`:
//!   one segment's files.
//! - `log` (appends, reads), `seal` (rolls, and sealing in the background), `worker` (the
//!   log's background thread), `commit` and `sync` (shared fsyncs and what they covered),
//!   `checkpoint` (the recovery point), `recovery` and `scan` (checking what follows it at
//!   open): the partition log.
//! - `retention`, `compaction`, `producer`: policies over sealed segments and producer state.
//! - [`txn`]: transactions in a partition — markers, the last stable offset, the aborted
//!   transactions (`aborted.txnindex`) that `read_committed` readers skip.
//! - `config`, `error`, `files` (atomic metadata writes), `lock` (the directory lock), `stats`.
//! - [`vfs`]: the I/O seam every file operation goes through — the operating system's file
//!   system, or [`vfs::sim`], a simulated one that can lose power, for crash testing;
//!   [`crashcheck`]: seeded workloads crashed on it at random points and checked on reopen.
//!
//! It is not a database: records are never updated in place, and the only deletes are retention
//! (whole segments) and compaction (superseded keys). It knows nothing of networking or async;
//! the broker drives it from its own threads, and each open log runs one thread of its own
//! (`worker`: sealing rolled segments, interval flushes, recovery-point checkpoints).

pub mod batch;

pub use batch::{
    BatchBuilder, BatchError, BatchView, Batches, Header, Record, RecordView, ValidBatch,
};

mod active_index;
mod checkpoint;
mod commit;
mod compaction;
mod config;
pub mod crashcheck;
mod error;
mod files;
mod index;
mod lock;
mod log;
mod mmap;
mod producer;
mod recovery;
mod retention;
mod scan;
mod seal;
mod segment;
mod stats;
mod sync;
pub mod txn;
pub mod vfs;
mod worker;

pub use compaction::CompactionReport;
pub use config::{Cleanup, Flush, LogConfig};
pub use error::{Error, Result};
pub use files::{create_dir_durable, create_dir_durable_on, write_atomic, write_atomic_on};
pub use lock::DirLock;
pub use log::{AppendInfo, Log, TimestampOffset};
pub use retention::RetentionReport;
pub use stats::{
    FSYNC_BOUNDS_US, GROUP_COMMIT_BOUNDS, Histogram, HistogramSnapshot, StatsSnapshot,
};
pub use txn::{AbortedTxn, ControlType, Marker};
pub use worker::CHECKPOINT_INTERVAL;
