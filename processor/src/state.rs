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

/// Event time as one operator has seen it, per *origin* — the source partition a record
/// came from (see `context::Origin`), carried through repartition topics.
///
/// An origin's *frontier* is the largest event time among its records this operator has
/// processed, raised by the frontier hints its upstream task broadcasts through repartition
/// topics (`Cx::hint`). A record is late when it is more than `grace_ms` behind its own
/// origin's frontier: `ts < frontier(origin) - grace_ms`. The operator's *watermark* — what
/// closes windows and expires join and dedupe state — is the minimum over every origin that
/// can reach the operator (`expected`) of `frontier - grace_ms`, and `i64::MIN` while one of
/// them has not been heard from. So a fast input never closes what a slow one still feeds,
/// and a record within its own origin's bound always finds its window open: the results are
/// a function of each origin's records, not of how the inputs interleave.
///
/// With one origin this is the single-input rule of before: the largest event time less grace.
///
/// Idle origins (`Cx::is_idle`, only with an idle timeout configured) are left out of the
/// minimum, so a silent partition does not hold every window open. That is the one place wall
/// time enters: a record of an origin that was idle and comes back is late if the watermark
/// passed it meanwhile (`closed`), as in Flink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Clock {
    pub grace_ms: i64,
    /// The frontier of each origin, from the records seen here.
    #[serde(default)]
    pub seen: BTreeMap<u64, i64>,
    /// The highest watermark this operator has closed things at: it never goes back.
    #[serde(default = "minus_infinity")]
    pub closed: i64,
}

fn minus_infinity() -> i64 {
    i64::MIN
}

impl Clock {
    pub fn new(grace_ms: i64) -> Self {
        Self { grace_ms, seen: BTreeMap::new(), closed: i64::MIN }
    }

    pub fn observe(&mut self, origin: u64, ts: i64) {
        let frontier = self.seen.entry(origin).or_insert(ts);
        *frontier = (*frontier).max(ts);
    }

    /// `origin`'s frontier: what this operator saw of it, or a hint from upstream.
    fn frontier(&self, origin: u64, hints: &BTreeMap<u64, i64>) -> Option<i64> {
        match (self.seen.get(&origin), hints.get(&origin)) {
            (Some(a), Some(b)) => Some((*a).max(*b)),
            (a, b) => a.or(b).copied(),
        }
    }

    /// Records of `origin` with an event time below this are late: more than grace behind
    /// their origin's frontier, or behind what the watermark already closed.
    pub fn late_before(&self, origin: u64, hints: &BTreeMap<u64, i64>) -> i64 {
        let own =
            self.frontier(origin, hints).map_or(i64::MIN, |f| f.saturating_sub(self.grace_ms));
        own.max(self.closed)
    }

    /// Observes a record of `origin` at `ts`; the error to set it aside with if it is late.
    pub fn admit(
        &mut self,
        origin: u64,
        ts: i64,
        hints: &BTreeMap<u64, i64>,
    ) -> Result<(), crate::error::RecordError> {
        self.observe(origin, ts);
        let late_before = self.late_before(origin, hints);
        if ts < late_before {
            return Err(crate::error::RecordError::TooLate {
                event_time_ms: ts,
                watermark_ms: late_before,
            });
        }
        Ok(())
    }

    /// The watermark over the `expected` origins that are not idle (`i64::MIN` until each was
    /// heard from), never below what it was. An empty `expected` (an operator fed by no
    /// source partition this task knows) falls back to the origins seen.
    pub fn watermark(
        &mut self,
        expected: &[u64],
        hints: &BTreeMap<u64, i64>,
        idle: &dyn Fn(u64) -> bool,
    ) -> i64 {
        let mut min = None::<i64>;
        // Both iterators live on the stack: no allocation per record.
        let (mut seen, mut given) = (self.seen.keys().copied(), expected.iter().copied());
        let origins: &mut dyn Iterator<Item = u64> =
            if expected.is_empty() { &mut seen } else { &mut given };
        for origin in origins.filter(|o| !idle(*o)) {
            let Some(f) = self.frontier(origin, hints) else { return self.closed };
            min = Some(min.map_or(f, |m| m.min(f)));
        }
        if let Some(m) = min {
            self.closed = self.closed.max(m.saturating_sub(self.grace_ms));
        }
        self.closed
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
