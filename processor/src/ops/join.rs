//! Joins.
//!
//! Stream–table: each stream record looks its key up in the table *as it is when the record is
//! processed* (the task processes co-partitioned sources in event-time order, see `task.rs`), so
//! an order sees the customer record with the largest timestamp not after its own, ties going to
//! the source declared first. Inner (`join_table`) drops records with no match; left
//! (`left_join_table`) passes `None`.
//!
//! Stream–stream: a left record at `tl` and a right record at `tr` with the same key match when
//! `tl - before <= tr <= tl + after`. Both sides are buffered; each arriving record is matched
//! against the other side's buffer, so every matching pair is emitted exactly once, when its
//! second record arrives, with timestamp `max(tl, tr)`. A record is late when its event time is
//! below the watermark (max event time seen on either side − grace): it is set aside and matches
//! nothing. Buffered records are dropped once no record at or above the watermark could match
//! them. Matches of one arriving record are emitted in order of the other side's
//! (event time, arrival).
//!
//! Outer sides ([`Outer`]: left, right or both): a buffered record of an outer side that matched
//! nothing is emitted once, with `None` for the other side and its own timestamp, when it is
//! dropped — that is when its window has closed, so no pair can still come and nothing is
//! emitted early and then contradicted. Records dropped by one arrival are emitted in order of
//! (event time, arrival), after that arrival's own matches. Every buffered record's arrival
//! number is unique across both sides, so one set (`matched`) marks the outer records that met
//! a partner.

use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::aggregator::StateData;
use crate::codec::from_state_bytes;
use crate::context::Cx;
use crate::error::RecordError;
use crate::graph::{Down, Node, Rec};
use crate::state::{Clock, StateOp, load_value, save_value};
use crate::table::TableStore;

/// How far apart in event time two records may be to join, and how late they may arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinWindow {
    /// A right record may be this much earlier than the left one.
    pub before_ms: i64,
    /// A right record may be this much later than the left one.
    pub after_ms: i64,
    pub grace_ms: i64,
}

impl JoinWindow {
    /// `|tl - tr| <= ms`.
    pub fn within(ms: i64) -> Self {
        Self { before_ms: ms.max(0), after_ms: ms.max(0), grace_ms: 0 }
    }

    pub fn grace(mut self, grace_ms: i64) -> Self {
        self.grace_ms = grace_ms.max(0);
        self
    }
}

/// Which sides of a stream–stream join ([`Stream::join_with`](crate::Stream::join_with)) also
/// emit the records that matched nothing, once their window has closed. Part of the operator
/// API (`operator_api`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Outer {
    /// Unmatched records of the stream `join_with` is called on.
    pub left: bool,
    /// Unmatched records of the other stream.
    pub right: bool,
}

/// Stream–table lookup; `f` sees the table's value (if any) and returns `None` to drop the
/// record (which is how an inner join skips records without a match).
pub(crate) struct TableJoin<K, V, T, R, F> {
    pub store: Arc<TableStore>,
    pub f: Arc<F>,
    pub down: Down<K, R>,
    pub _types: PhantomData<fn(V, T)>,
}

impl<K, V, T, R, F> Node<K, V> for TableJoin<K, V, T, R, F>
where
    K: StateData,
    T: StateData,
    F: Fn(&K, &V, Option<&T>) -> Option<R>,
{
    fn push(&mut self, rec: Rec<K, V>, cx: &mut Cx) {
        let Some(kb) = super::key_bytes(&rec.key, cx) else { return };
        let found: Option<T> = match self.store.get(&kb) {
            None => None,
            Some(raw) => match from_state_bytes(&raw) {
                Ok(t) => Some(t),
                Err(e) => return cx.set_aside(&RecordError::State(e)),
            },
        };
        if let Some(value) = (self.f)(&rec.key, &rec.value, found.as_ref()) {
            self.down.push(Rec { key: rec.key, value, ts: rec.ts }, cx);
        }
    }
}

/// (key as JSON, event time, arrival sequence)
type Slot = (String, i64, u64);

#[derive(Serialize, Deserialize)]
struct Saved<L, R> {
    clock: Clock,
    seq: u64,
    left: Vec<(Slot, L)>,
    right: Vec<(Slot, R)>,
    /// Absent from snapshots written before outer joins existed (inner joins keep it empty).
    #[serde(default)]
    matched: Vec<Slot>,
}

/// Windowed stream–stream join; `f` sees the pair, or one side and `None` for an unmatched
/// record of an outer side, and returns `None` to emit nothing.
pub(crate) struct StreamJoin<K, L, R, O, F> {
    pub window: JoinWindow,
    pub outer: Outer,
    pub f: Arc<F>,
    pub down: Down<K, O>,
    clock: Clock,
    seq: u64,
    left: BTreeMap<Slot, L>,
    right: BTreeMap<Slot, R>,
    /// (event time, slot) of each side, for dropping what can no longer match.
    left_by_time: BTreeSet<(i64, Slot)>,
    right_by_time: BTreeSet<(i64, Slot)>,
    /// Buffered records of an outer side that matched at least once.
    matched: BTreeSet<Slot>,
    /// The sources (indices) of both sides; their origins, resolved at first use.
    sources: Vec<usize>,
    expected: Option<Vec<u64>>,
}

impl<K, L, R, O, F> StreamJoin<K, L, R, O, F>
where
    K: StateData,
    L: StateData,
    R: StateData,
    F: Fn(&K, Option<&L>, Option<&R>) -> Option<O>,
{
    pub fn new(
        window: JoinWindow,
        outer: Outer,
        f: Arc<F>,
        down: Down<K, O>,
        sources: Vec<usize>,
    ) -> Self {
        Self {
            window,
            outer,
            f,
            down,
            clock: Clock::new(window.grace_ms),
            sources,
            expected: None,
            seq: 0,
            left: BTreeMap::new(),
            right: BTreeMap::new(),
            left_by_time: BTreeSet::new(),
            right_by_time: BTreeSet::new(),
            matched: BTreeSet::new(),
        }
    }

    /// Checks lateness (by the record's own origin); returns the key text if it is on time.
    fn admit<V>(&mut self, rec: &Rec<K, V>, cx: &mut Cx) -> Option<String> {
        if let Err(late) = self.clock.admit(cx.origin, rec.ts, &cx.hints) {
            cx.set_aside(&late);
            return None;
        }
        super::key_text(&rec.key, cx)
    }

    pub fn push_left(&mut self, rec: Rec<K, L>, cx: &mut Cx) {
        let Some(kt) = self.admit(&rec, cx) else { return };
        let lo = (kt.clone(), rec.ts.saturating_sub(self.window.before_ms), 0);
        let hi = (kt.clone(), rec.ts.saturating_add(self.window.after_ms), u64::MAX);
        let mut found = false;
        for (slot, r) in self.right.range(lo..=hi) {
            found = true;
            if self.outer.right {
                self.matched.insert(slot.clone());
            }
            if let Some(value) = (self.f)(&rec.key, Some(&rec.value), Some(r)) {
                self.down.push(Rec { key: rec.key.clone(), value, ts: rec.ts.max(slot.1) }, cx);
            }
        }
        let slot = (kt, rec.ts, self.next_seq());
        if found && self.outer.left {
            self.matched.insert(slot.clone());
        }
        self.left_by_time.insert((rec.ts, slot.clone()));
        self.left.insert(slot, rec.value);
        self.expire(cx);
    }

    pub fn push_right(&mut self, rec: Rec<K, R>, cx: &mut Cx) {
        let Some(kt) = self.admit(&rec, cx) else { return };
        let lo = (kt.clone(), rec.ts.saturating_sub(self.window.after_ms), 0);
        let hi = (kt.clone(), rec.ts.saturating_add(self.window.before_ms), u64::MAX);
        let mut found = false;
        for (slot, l) in self.left.range(lo..=hi) {
            found = true;
            if self.outer.left {
                self.matched.insert(slot.clone());
            }
            if let Some(value) = (self.f)(&rec.key, Some(l), Some(&rec.value)) {
                self.down.push(Rec { key: rec.key.clone(), value, ts: rec.ts.max(slot.1) }, cx);
            }
        }
        let slot = (kt, rec.ts, self.next_seq());
        if found && self.outer.right {
            self.matched.insert(slot.clone());
        }
        self.right_by_time.insert((rec.ts, slot.clone()));
        self.right.insert(slot, rec.value);
        self.expire(cx);
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// A future on-time record has `t >= watermark`; it can match a left record at `tl` only if
    /// `tl >= t - after`, and a right record at `tr` only if `tr >= t - before`. Unmatched records
    /// of an outer side are emitted as they go.
    fn expire(&mut self, cx: &mut Cx) {
        let expected = self.expected.get_or_insert_with(|| cx.expected(&self.sources));
        let watermark = self.clock.watermark(expected, &cx.hints, &|o| cx.is_idle(o));
        let mut unmatched: Vec<(Slot, Option<L>, Option<R>)> = Vec::new();
        let left_min = watermark.saturating_sub(self.window.after_ms);
        while let Some((t, slot)) = self.left_by_time.first().cloned() {
            if t >= left_min {
                break;
            }
            self.left_by_time.pop_first();
            let value = self.left.remove(&slot);
            let matched = self.matched.remove(&slot);
            if let (Some(l), true, false) = (value, self.outer.left, matched) {
                unmatched.push((slot, Some(l), None));
            }
        }
        let right_min = watermark.saturating_sub(self.window.before_ms);
        while let Some((t, slot)) = self.right_by_time.first().cloned() {
            if t >= right_min {
                break;
            }
            self.right_by_time.pop_first();
            let value = self.right.remove(&slot);
            let matched = self.matched.remove(&slot);
            if let (Some(r), true, false) = (value, self.outer.right, matched) {
                unmatched.push((slot, None, Some(r)));
            }
        }
        unmatched.sort_by_key(|((_, t, seq), ..)| (*t, *seq));
        for ((key_text, ts, _), l, r) in unmatched {
            let key: K = match serde_json::from_str(&key_text) {
                Ok(k) => k,
                Err(e) => {
                    cx.set_aside(&RecordError::State(e.to_string()));
                    continue;
                }
            };
            if let Some(value) = (self.f)(&key, l.as_ref(), r.as_ref()) {
                self.down.push(Rec { key, value, ts }, cx);
            }
        }
    }
}

impl<K, L, R, O, F> StateOp for StreamJoin<K, L, R, O, F>
where
    K: StateData,
    L: StateData,
    R: StateData,
    F: Fn(&K, Option<&L>, Option<&R>) -> Option<O>,
{
    fn save(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        let saved = Saved {
            clock: self.clock.clone(),
            seq: self.seq,
            left: self.left.iter().map(|(s, v)| (s.clone(), v.clone())).collect(),
            right: self.right.iter().map(|(s, v)| (s.clone(), v.clone())).collect(),
            matched: self.matched.iter().cloned().collect(),
        };
        save_value(&saved, out)
    }

    fn load(&mut self, mut bytes: &[u8]) -> Result<(), &'static str> {
        let saved: Saved<L, R> = load_value(&mut bytes)?;
        self.clock = saved.clock;
        self.seq = saved.seq;
        self.left_by_time = saved.left.iter().map(|(s, _)| (s.1, s.clone())).collect();
        self.right_by_time = saved.right.iter().map(|(s, _)| (s.1, s.clone())).collect();
        self.left = saved.left.into_iter().collect();
        self.right = saved.right.into_iter().collect();
        self.matched = saved.matched.into_iter().collect();
        Ok(())
    }

    fn entries(&self) -> u64 {
        (self.left.len() + self.right.len()) as u64
    }
}

/// The left input of a stream–stream join.
pub(crate) struct JoinLeft<T>(pub std::rc::Rc<std::cell::RefCell<T>>);
/// The right input of a stream–stream join.
pub(crate) struct JoinRight<T>(pub std::rc::Rc<std::cell::RefCell<T>>);

impl<K, L, R, O, F> Node<K, L> for JoinLeft<StreamJoin<K, L, R, O, F>>
where
    K: StateData,
    L: StateData,
    R: StateData,
    F: Fn(&K, Option<&L>, Option<&R>) -> Option<O>,
{
    fn push(&mut self, rec: Rec<K, L>, cx: &mut Cx) {
        self.0.borrow_mut().push_left(rec, cx);
    }
}

impl<K, L, R, O, F> Node<K, R> for JoinRight<StreamJoin<K, L, R, O, F>>
where
    K: StateData,
    L: StateData,
    R: StateData,
    F: Fn(&K, Option<&L>, Option<&R>) -> Option<O>,
{
    fn push(&mut self, rec: Rec<K, R>, cx: &mut Cx) {
        self.0.borrow_mut().push_right(rec, cx);
    }
}
