//! Windowed aggregation on event time: tumbling, hopping and session windows.
//!
//! Each window is identified by `(key, start, end)` with `end` exclusive (a session's `end` is
//! its last event time + 1). A window *closes* at `close_at` — `end` for time windows,
//! `end + gap` for sessions — once the operator's watermark (max event time seen − grace)
//! reaches it: `close_at <= watermark`. A record joins the windows of its event time that are
//! still open; if none is open it is too late (counted, dead-lettered). With [`Emit::Final`] a
//! window's result goes downstream once, when it closes (timestamp `end - 1`); with
//! [`Emit::Changes`] every update goes downstream. The table always holds every window's latest
//! value, closed windows included.
//!
//! State: the clock, the accumulators of open windows, the open windows ordered by `close_at`,
//! and for sessions the open sessions of each key.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::aggregator::{Aggregator, StateData};
use crate::codec::state_bytes;
use crate::context::Cx;
use crate::error::RecordError;
use crate::graph::{Down, Node, Rec};
use crate::state::{Clock, StateOp, load_value, save_value};
use crate::table::TableStore;

/// A key and the window it was aggregated in; `[start, end)` in event-time ms.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Windowed<K> {
    pub key: K,
    pub start: i64,
    pub end: i64,
}

/// The shape of the windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// `[k * size, (k + 1) * size)`.
    Tumbling { size_ms: i64 },
    /// `[k * advance, k * advance + size)`: a record falls into `size / advance` windows.
    Hopping { size_ms: i64, advance_ms: i64 },
    /// Records of a key less than or equal to `gap` apart share a session.
    Session { gap_ms: i64 },
}

/// Windows plus how long past a window's end records are still accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    pub kind: WindowKind,
    pub grace_ms: i64,
}

impl Windows {
    pub fn tumbling(size_ms: i64) -> Self {
        Self { kind: WindowKind::Tumbling { size_ms: size_ms.max(1) }, grace_ms: 0 }
    }

    pub fn hopping(size_ms: i64, advance_ms: i64) -> Self {
        let advance_ms = advance_ms.max(1);
        Self {
            kind: WindowKind::Hopping { size_ms: size_ms.max(advance_ms), advance_ms },
            grace_ms: 0,
        }
    }

    pub fn session(gap_ms: i64) -> Self {
        Self { kind: WindowKind::Session { gap_ms: gap_ms.max(0) }, grace_ms: 0 }
    }

    /// Accept records up to `grace_ms` behind the largest event time seen.
    pub fn grace(mut self, grace_ms: i64) -> Self {
        self.grace_ms = grace_ms.max(0);
        self
    }

    /// The time windows `[start, end)` holding `ts`, by ascending start (not for sessions).
    /// As in Kafka Streams, no window starts before 0 for a non-negative `ts` (the first
    /// hopping windows are not partial windows reaching back before the epoch).
    pub fn windows_of(&self, ts: i64) -> Vec<(i64, i64)> {
        let (size, advance) = match self.kind {
            WindowKind::Tumbling { size_ms } => (size_ms, size_ms),
            WindowKind::Hopping { size_ms, advance_ms } => (size_ms, advance_ms),
            WindowKind::Session { .. } => return Vec::new(),
        };
        let mut out = Vec::new();
        let mut start = ts.div_euclid(advance) * advance;
        while start.saturating_add(size) > ts {
            if start < 0 && ts >= 0 {
                break;
            }
            out.push((start, start.saturating_add(size)));
            start -= advance;
        }
        out.reverse();
        out
    }
}

/// When a windowed aggregate sends results downstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    /// Every update of a window.
    Changes,
    /// A window's result once, when it closes.
    Final,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Open<K, A> {
    window: Windowed<K>,
    acc: A,
}

#[derive(Serialize, Deserialize)]
struct Saved<K, A> {
    clock: Clock,
    open: Vec<Open<K, A>>,
}

/// Open sessions of one key: (start, end) -> the window's state key.
type SessionsOfKey = BTreeMap<(i64, i64), Vec<u8>>;

/// A windowed aggregate in one task.
pub(crate) struct WindowAggregate<K, V, A: Aggregator<V>> {
    pub windows: Windows,
    pub emit: Emit,
    pub agg: Arc<A>,
    pub store: Arc<TableStore>,
    pub down: Down<Windowed<K>, A::Out>,
    pub clock: Clock,
    /// Accumulators of open windows, by the window's state key.
    accs: BTreeMap<Vec<u8>, Open<K, A::Acc>>,
    /// Open windows by (close_at, state key).
    closing: BTreeSet<(i64, Vec<u8>)>,
    /// Open sessions of each key: (start, end) -> state key.
    sessions: BTreeMap<Vec<u8>, SessionsOfKey>,
    /// The sources (indices) that feed this operator, and the origins they carry in this
    /// task (resolved at the first record).
    sources: Vec<usize>,
    expected: Option<Vec<u64>>,
    _v: PhantomData<fn(V)>,
}

impl<K: StateData, V, A: Aggregator<V>> WindowAggregate<K, V, A> {
    pub fn new(
        windows: Windows,
        emit: Emit,
        agg: Arc<A>,
        store: Arc<TableStore>,
        down: Down<Windowed<K>, A::Out>,
        sources: Vec<usize>,
    ) -> Self {
        Self {
            windows,
            emit,
            agg,
            store,
            down,
            clock: Clock::new(windows.grace_ms),
            accs: BTreeMap::new(),
            closing: BTreeSet::new(),
            sessions: BTreeMap::new(),
            sources,
            expected: None,
            _v: PhantomData,
        }
    }

    fn close_at(&self, w: &Windowed<K>) -> i64 {
        match self.windows.kind {
            WindowKind::Session { gap_ms } => w.end.saturating_add(gap_ms),
            _ => w.end,
        }
    }

    fn open_window(&mut self, window: Windowed<K>, acc: A::Acc, cx: &mut Cx) -> Option<Vec<u8>> {
        let wk = super::key_bytes(&window, cx)?;
        self.closing.insert((self.close_at(&window), wk.clone()));
        if matches!(self.windows.kind, WindowKind::Session { .. }) {
            let kb = super::key_bytes(&window.key, cx)?;
            self.sessions.entry(kb).or_default().insert((window.start, window.end), wk.clone());
        }
        self.accs.insert(wk.clone(), Open { window, acc });
        Some(wk)
    }

    /// Publishes the window's current result to the table (and downstream for `Changes`).
    fn publish(&mut self, wk: &[u8], ts: i64, cx: &mut Cx) {
        let Some(open) = self.accs.get(wk) else { return };
        let out = self.agg.result(&open.acc);
        let window = (self.emit == Emit::Changes).then(|| open.window.clone());
        self.publish_value(wk.to_vec(), out, window, ts, cx);
    }

    fn publish_value(
        &mut self,
        wk: Vec<u8>,
        out: A::Out,
        window: Option<Windowed<K>>,
        ts: i64,
        cx: &mut Cx,
    ) {
        match state_bytes(&out) {
            Ok(v) => self.store.put(wk, Some(v), ts, cx),
            Err(e) => return cx.set_aside(&RecordError::State(e.to_string())),
        }
        if let Some(window) = window {
            self.down.push(Rec { key: window, value: out, ts }, cx);
        }
    }

    fn add_to_time_windows(&mut self, rec: &Rec<K, V>, watermark: i64, cx: &mut Cx) -> bool {
        let mut accepted = false;
        for (start, end) in self.windows.windows_of(rec.ts) {
            if end <= watermark {
                continue;
            }
            accepted = true;
            let window = Windowed { key: rec.key.clone(), start, end };
            let Some(wk) = super::key_bytes(&window, cx) else { return true };
            // One lookup of the (large, long-keyed) map per window and record.
            let open = match self.accs.entry(wk.clone()) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => {
                    self.closing.insert((end, wk.clone()));
                    e.insert(Open { window, acc: self.agg.init() })
                }
            };
            self.agg.add(&mut open.acc, &rec.value, rec.ts);
            let out = self.agg.result(&open.acc);
            let window = (self.emit == Emit::Changes).then(|| open.window.clone());
            self.publish_value(wk, out, window, rec.ts, cx);
        }
        accepted
    }

    /// `late_before` is the record's own origin's bound: a session counts as open for this
    /// record only if it would still be open by that bound (`end + gap > late_before`), so a
    /// session another, slower origin keeps open cannot take a record that is late in its own
    /// partition — its fate must not depend on how the origins interleave.
    fn add_to_session(&mut self, rec: &Rec<K, V>, gap: i64, late_before: i64, cx: &mut Cx) -> bool {
        let Some(kb) = super::key_bytes(&rec.key, cx) else { return true };
        let t = rec.ts;
        let watermark = late_before;
        let merging: Vec<((i64, i64), Vec<u8>)> = self
            .sessions
            .get(&kb)
            .map(|s| {
                s.iter()
                    .filter(|((start, end), _)| {
                        let close_at = end.saturating_add(gap);
                        start - gap <= t && t < close_at && close_at > late_before
                    })
                    .map(|(w, k)| (*w, k.clone()))
                    .collect()
            })
            .unwrap_or_default();
        if merging.is_empty() && t.saturating_add(1 + gap) <= watermark {
            return false;
        }
        let mut start = t;
        let mut end = t.saturating_add(1);
        let mut acc: Option<A::Acc> = None;
        for ((s, e), wk) in &merging {
            start = start.min(*s);
            end = end.max(*e);
            let Some(open) = self.remove_open(&kb, (*s, *e), wk) else { continue };
            match &mut acc {
                None => acc = Some(open.acc),
                Some(a) => self.agg.merge(a, open.acc),
            }
        }
        let mut acc = acc.unwrap_or_else(|| self.agg.init());
        self.agg.add(&mut acc, &rec.value, t);
        let window = Windowed { key: rec.key.clone(), start, end };
        let Some(wk) = self.open_window(window, acc, cx) else { return true };
        // Sessions merged into this one are gone from the table (a tombstone each); a session
        // that kept its key is simply updated.
        for (_, old) in merging.iter().filter(|(_, old)| *old != wk) {
            self.store.put(old.clone(), None, t, cx);
        }
        self.publish(&wk, t, cx);
        true
    }

    fn remove_open(&mut self, kb: &[u8], bounds: (i64, i64), wk: &[u8]) -> Option<Open<K, A::Acc>> {
        let open = self.accs.remove(wk)?;
        self.closing.remove(&(self.close_at(&open.window), wk.to_vec()));
        if let Some(s) = self.sessions.get_mut(kb) {
            s.remove(&bounds);
            if s.is_empty() {
                self.sessions.remove(kb);
            }
        }
        Some(open)
    }

    /// Closes every window whose `close_at` the watermark has reached.
    fn close(&mut self, watermark: i64, cx: &mut Cx) {
        while let Some((close_at, wk)) = self.closing.first().cloned() {
            if close_at > watermark {
                break;
            }
            let Some(open) = self.accs.get(&wk) else {
                self.closing.pop_first();
                continue;
            };
            let bounds = (open.window.start, open.window.end);
            let kb = match &self.windows.kind {
                WindowKind::Session { .. } => state_bytes(&open.window.key).unwrap_or_default(),
                _ => Vec::new(),
            };
            let Some(open) = self.remove_open(&kb, bounds, &wk) else { continue };
            if self.emit == Emit::Final {
                let out = self.agg.result(&open.acc);
                let ts = open.window.end - 1;
                self.down.push(Rec { key: open.window, value: out, ts }, cx);
            }
        }
    }
}

impl<K: StateData, V, A: Aggregator<V>> Node<K, V> for WindowAggregate<K, V, A> {
    fn push(&mut self, rec: Rec<K, V>, cx: &mut Cx) {
        self.clock.observe(cx.origin, rec.ts);
        // Lateness by the record's own origin; closing by the slowest origin.
        let late_before = self.clock.late_before(cx.origin, &cx.hints);
        let accepted = match self.windows.kind {
            WindowKind::Session { gap_ms } => self.add_to_session(&rec, gap_ms, late_before, cx),
            _ => self.add_to_time_windows(&rec, late_before, cx),
        };
        if !accepted {
            cx.set_aside(&RecordError::TooLate {
                event_time_ms: rec.ts,
                watermark_ms: late_before,
            });
        }
        let expected = self.expected.get_or_insert_with(|| cx.expected(&self.sources));
        let watermark = self.clock.watermark(expected, &cx.hints, &|o| cx.is_idle(o));
        self.close(watermark, cx);
    }
}

impl<K: StateData, V, A: Aggregator<V>> StateOp for WindowAggregate<K, V, A> {
    fn save(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        let saved =
            Saved { clock: self.clock.clone(), open: self.accs.values().cloned().collect() };
        save_value(&saved, out)
    }

    fn load(&mut self, mut bytes: &[u8]) -> Result<(), &'static str> {
        let saved: Saved<K, A::Acc> = load_value(&mut bytes)?;
        self.clock = saved.clock;
        self.accs.clear();
        self.closing.clear();
        self.sessions.clear();
        for open in saved.open {
            let wk = state_bytes(&open.window).map_err(|_| "window key")?;
            self.closing.insert((self.close_at(&open.window), wk.clone()));
            if matches!(self.windows.kind, WindowKind::Session { .. }) {
                let kb = state_bytes(&open.window.key).map_err(|_| "window key")?;
                let bounds = (open.window.start, open.window.end);
                self.sessions.entry(kb).or_default().insert(bounds, wk.clone());
            }
            self.accs.insert(wk, open);
        }
        Ok(())
    }

    fn entries(&self) -> u64 {
        self.accs.len() as u64
    }
}
