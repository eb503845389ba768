//! Operator instances: the nodes a task's graph is made of.
//!
//! - `stateless`: decode a source, filter/map/flat-map/re-key, encode into a sink.
//! - `aggregate`: aggregate by key into a table; a table fed from a topic or a stream.
//! - `raw_aggregate`: the same aggregate fused with its source, a chunk of log records at a time.
//! - `window`: tumbling, hopping and session windows with a watermark.
//! - `join`: stream–table lookup and windowed stream–stream join.
//! - `dedupe`: drop repeats of a key within a window of event time.
//!
//! Stateful operators implement `StateOp` and are snapshotted by operator id; their maps are
//! `BTreeMap`s, or (the aggregate's accumulators) a hash map that is sorted whenever it is
//! iterated, so output order and snapshot bytes are deterministic.

pub(crate) mod aggregate;
pub(crate) mod dedupe;
pub(crate) mod join;
pub(crate) mod raw_aggregate;
pub(crate) mod stateless;
pub(crate) mod window;

use serde::Serialize;

use crate::context::Cx;
use crate::error::RecordError;

/// The state encoding of a key, or `None` after setting the record aside (a key type whose
/// serialisation fails, such as a map with non-string keys).
pub(crate) fn key_bytes<K: Serialize>(key: &K, cx: &mut Cx) -> Option<Vec<u8>> {
    match crate::codec::state_bytes(key) {
        Ok(b) => Some(b),
        Err(e) => {
            cx.set_aside(&RecordError::State(e.to_string()));
            None
        }
    }
}

/// Like [`key_bytes`], as text (JSON is UTF-8), for operators whose snapshots keep keys in JSON.
pub(crate) fn key_text<K: Serialize>(key: &K, cx: &mut Cx) -> Option<String> {
    match serde_json::to_string(key) {
        Ok(s) => Some(s),
        Err(e) => {
            cx.set_aside(&RecordError::State(e.to_string()));
            None
        }
    }
}
