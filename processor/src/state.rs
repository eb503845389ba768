//! Operator state: the [`StateOp`] trait every stateful operator implements for snapshots, the
//! event-time [`Clock`] with its watermark, and the binary framing of a state map.
//!
//! State is a pure function of the input records processed so far, in order: no wall clock, no
//! randomness, no iteration in a hash map's order (hash maps are sorted before they are written),
//! so the same input gives the same bytes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// A stateful operator instance in one task.
pub(crate) trait StateOp {
    /// Appends the operator's state to `out`.
    fn save(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error>;
    /// Replaces the operator's state with what [`save`](Self::save) wrote.
    fn load(&mut self, bytes: &[u8]) -> Result<(), &'static str>;
    /// Entries held (for the state size report).
    fn entries(&self) -> u64;
    /// Writes changes the operator held back (cached table changes) into `cx`'s outputs.
    /// The task calls it before it appends its outputs and before every snapshot.
    fn flush(&mut self, _cx: &mut crate::context::Cx) {}
}

/// Event time as one operator has seen it.
///
/// `max_ts` is the largest event time among the records the operator has processed; the
/// watermark is `max_ts - grace_ms`. A window `[start, end)` is closed once `end <= watermark`;
/// a join or dedupe record is late when `ts < watermark`. Both are functions of the input order
/// only, so they are the same on every replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Clock {
    pub max_ts: i64,
    pub grace_ms: i64,
}

impl Clock {
    pub fn new(grace_ms: i64) -> Self {
        Self { max_ts: i64::MIN, grace_ms }
    }

    pub fn observe(&mut self, ts: i64) {
        self.max_ts = self.max_ts.max(ts);
    }

    /// `i64::MIN` until a record was seen.
    pub fn watermark(&self) -> i64 {
        self.max_ts.saturating_sub(self.grace_ms)
    }
}

/// Reads a map of byte keys to serde values, advancing `bytes`: `count u64`, then `key_len
/// u32, key, value_len u32, value (JSON)` per entry, in key order.
pub(crate) fn load_map<T: DeserializeOwned>(
    bytes: &mut &[u8],
) -> Result<BTreeMap<Vec<u8>, T>, &'static str> {
    let count = take_u64(bytes)?;
    let mut map = BTreeMap::new();
    for _ in 0..count {
        let k = take_bytes(bytes)?.to_vec();
        let v = serde_json::from_slice(take_bytes(bytes)?).map_err(|_| "state value")?;
        map.insert(k, v);
    }
    Ok(map)
}

/// One serde value, length-prefixed.
pub(crate) fn save_value<T: Serialize>(
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), serde_json::Error> {
    put_bytes(out, &serde_json::to_vec(value)?);
    Ok(())
}

pub(crate) fn load_value<T: DeserializeOwned>(bytes: &mut &[u8]) -> Result<T, &'static str> {
    serde_json::from_slice(take_bytes(bytes)?).map_err(|_| "state value")
}

pub(crate) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

pub(crate) fn take_u64(bytes: &mut &[u8]) -> Result<u64, &'static str> {
    let (head, rest) = bytes.split_first_chunk::<8>().ok_or("truncated state")?;
    *bytes = rest;
    Ok(u64::from_le_bytes(*head))
}

pub(crate) fn take_u32(bytes: &mut &[u8]) -> Result<u32, &'static str> {
    let (head, rest) = bytes.split_first_chunk::<4>().ok_or("truncated state")?;
    *bytes = rest;
    Ok(u32::from_le_bytes(*head))
}

/// A length-prefixed slice; the length is checked against what remains before it is used.
pub(crate) fn take_bytes<'a>(bytes: &mut &'a [u8]) -> Result<&'a [u8], &'static str> {
    let len = take_u32(bytes)? as usize;
    if len > bytes.len() {
        return Err("truncated state");
    }
    let (head, rest) = bytes.split_at(len);
    *bytes = rest;
    Ok(head)
}
