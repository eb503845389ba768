//! The operator API: what an operator written outside this crate may build on (eddy-sql's
//! compiled queries are the user). Everything else about tasks, positions and snapshots stays
//! private to the crate.
//!
//! The typed builder covers operators made of closures over values ([`Stream::map`],
//! [`Stream::filter`], [`Stream::aggregate`] with an [`Aggregator`], ...). An operator that needs
//! more uses these, and only these:
//!
//! - [`Stream::then`]: a [`Node`] from a closure `(record, cx, downstream)`, which may push any
//!   number of records downstream ([`Down`]) or set the record aside ([`Cx::set_aside`]).
//! - [`Stream::materialize`]: a table fed by your own [`Node`], given each task's
//!   [`TableStore`] to read ([`TableStore::get`], [`TableStore::range`]) and write
//!   ([`TableStore::put`]).
//! - [`Stream::join_with`]: the windowed stream–stream join with the unmatched records of the
//!   [`Outer`] sides.
//!
//! What such an operator may rely on, and must keep:
//! - A node runs on its task's thread, one record at a time, in the task's processing order;
//!   nothing else touches it meanwhile (nodes need not be `Send`).
//! - Everything a node pushes downstream and every [`TableStore::put`] it makes while handling
//!   a record takes that record's position, so after a crash the replayed outputs are dropped
//!   where they were already written (effectively-once) — provided the node is
//!   deterministic: no clock, no randomness, the same outputs for the same inputs in the same
//!   order.
//! - A [`TableStore`] is changelogged and snapshotted with the task; state a node keeps
//!   anywhere else is lost on restart.
//!
//! [`Aggregator`]: crate::Aggregator
//! [`Stream`]: crate::Stream
//! [`Stream::map`]: crate::Stream::map
//! [`Stream::filter`]: crate::Stream::filter
//! [`Stream::aggregate`]: crate::Stream::aggregate
//! [`Stream::then`]: crate::Stream::then
//! [`Stream::materialize`]: crate::Stream::materialize
//! [`Stream::join_with`]: crate::Stream::join_with

pub use crate::context::Cx;
pub use crate::graph::{Down, Node};
pub use crate::ops::join::Outer;
pub use crate::table::TableStore;
