//! eddy-processor: stateful stream processing over eddy's log — the Kappa part.
//!
//! A [`Processor`] is a named, versioned dataflow built with [`ProcessorBuilder`]: sources
//! (topics) → stateless operators ([`Stream::filter`], [`Stream::map`], [`Stream::flat_map`],
//! [`Stream::select_key`]) → stateful operators (aggregates, windows, joins, dedupe) → sinks
//! (topics, and [`Table`]s readable while it runs). It reads and writes the log only through
//! [`LogAccess`]; [`LocalLogs`] implements it over a directory of `eddy_storage::Log`s.
//!
//! Guarantees (the mechanism is in `docs/processors.md`):
//! - *Deterministic*: time is the records' event time, never the wall clock; the same log gives
//!   the same outputs and tables, byte for byte.
//! - *Effectively-once*: a task killed at any instant and restarted leaves each output partition
//!   holding each result once, and each table equal to a replay from zero.
//!
//! Modules:
//! - `builder`, `operators`: the typed definition API; `definition`: the built definition;
//!   `processor`: the handle on it.
//! - `graph`: the per-task instantiation of a definition; `ops/`: the operator nodes.
//! - `task`, `input`, `context`: running one task; `runtime`: tasks on a thread pool.
//! - `state`, `snapshot`, `recovery`, `position`: state, snapshots and effectively-once.
//! - `table`: live tables (get, range scan, subscribe); `codec`: formats at topic boundaries.
//! - `log_access`, `local`: the log as the processor sees it.
//! - [`operator_api`]: what operators written outside this crate build on (eddy-sql's do).
//! - [`calendar`]: days since the epoch ↔ dates, shared by everything that formats or parses
//!   timestamps.
//! - [`sample`]: sample data (an nginx access-log generator) for examples, tests and benchmarks;
//!   no production code depends on it.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use eddy_processor::{Count, LocalLogs, LogAccess, ProcessorBuilder, RuntimeConfig, Utf8};
//! use eddy_storage::{BatchBuilder, LogConfig, Record};
//!
//! let dir = tempfile::tempdir()?;
//! let logs = Arc::new(LocalLogs::open(dir.path().join("logs"), LogConfig::default())?);
//! logs.create_topic("pageviews", 1, false)?;
//! let mut batch = BatchBuilder::new();
//! for (user, page) in [("alice", "/"), ("bob", "/about"), ("alice", "/pricing")] {
//!     batch.push(Record { timestamp: 0, key: Some(user.as_bytes()), value: Some(page.as_bytes()), headers: &[] });
//! }
//! logs.append("pageviews", 0, &batch.build_valid()?)?;
//!
//! let b = ProcessorBuilder::new("views-per-user", 1);
//! b.stream::<String, String>("pageviews", Utf8, Utf8).aggregate("views", Count)?;
//! let running = b.build()?.start(logs, RuntimeConfig::new(dir.path().join("state")))?;
//! running.wait_caught_up(Duration::from_secs(10))?;
//! let views = running.table::<String, u64>("views")?;
//! assert_eq!(views.get(&"alice".to_owned())?, Some(2));
//! running.stop()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! It does not spread tasks over machines. Streaming SQL compiled to this builder is the
//! eddy-sql crate; serving it is the broker's part.

mod aggregator;
mod builder;
pub mod calendar;
mod codec;
mod context;
mod definition;
mod error;
mod graph;
mod input;
mod local;
mod log_access;
pub mod operator_api;
mod operators;
mod ops;
mod position;
mod processor;
mod rank;
mod recovery;
mod runtime;
pub mod sample;
mod snapshot;
mod state;
mod table;
mod task;

pub use aggregator::{Aggregator, Avg, Count, Fold, Latest, Max, Min, Number, StateData, Sum};
pub use builder::{Data, ProcessorBuilder, Stream, Table};
pub use codec::{Codec, Ignore, Json, Raw, Utf8};
pub use context::TaskMetrics;
pub use definition::TaskId;
pub use error::{Error, LogError, RecordError, Result, TableError};
pub use graph::Rec;
pub use local::LocalLogs;
pub use log_access::{Appended, LogAccess, WaitFor};
pub use operators::WindowedStream;
pub use ops::join::JoinWindow;
pub use ops::raw_aggregate::Extract;
pub use ops::window::{Emit, WindowKind, Windowed, Windows};
pub use position::{POSITION_HEADER, Position, fnv1a64, murmur2, partition_for_key};
pub use processor::Processor;
pub use runtime::{RunningProcessor, RuntimeConfig, TaskStatus};
pub use table::{Change, RawChange, Subscription, SubscriptionError, TableReader, TableRegistry};
pub use task::{StateSize, Task, TaskConfig};
