//! The aggregate functions themselves: what each call keeps (its [`State`]), how a value is
//! added, how two states merge (session windows merging), and the result.
//!
//! ksqlDB's semantics: `COUNT(*)` and `COUNT()` count rows, `COUNT(x)` non-NULL values; `SUM`
//! is an integer while every input is one; `AVG` is a DOUBLE; `MIN`/`MAX` order numbers and
//! strings; `LATEST_BY_OFFSET(x [, n] [, ignoreNulls])` / `EARLIEST_BY_OFFSET(...)` keep the
//! last / first value (or `n` values, oldest first, as an array) in processing order, NULLs
//! skipped unless `ignoreNulls` is false (a session merge orders by event time);
//! `COUNT_DISTINCT` counts distinct non-NULL values; `TOPK(x, k)` keeps the k largest values and
//! `TOPKDISTINCT(x, k)` the k largest distinct ones, largest first; `COLLECT_LIST` keeps every
//! value, `COLLECT_SET` each distinct value once (both in arrival order, NULL included) and
//! `HISTOGRAM` counts each non-NULL value — the three up to 1000 entries (ksqlDB's default
//! limit), later values past it are not kept.
//!
//! Invariants: a state is plain data (serde), snapshotted with its accumulator; adding the same
//! values in the same order gives the same state; the JSON `write_result` writes is byte for
//! byte what serializing `result` would.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ast::{Expr, ExprKind, SqlType};
use crate::error::{Pos, SqlError};
use crate::expr::compare;
use crate::functions::num;

/// How many entries `COLLECT_LIST`, `COLLECT_SET` and `HISTOGRAM` keep (ksqlDB's default).
const COLLECT_LIMIT: usize = 1000;

/// One aggregate call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggFn {
    /// `COUNT(*)` or `COUNT()`: rows, without an argument to evaluate.
    CountAll,
    Count,
    Sum,
    Avg,
    Min,
    Max,
    /// `LATEST_BY_OFFSET(x)` / `EARLIEST_BY_OFFSET(x)`: one value, NULLs skipped.
    Latest,
    Earliest,
    /// The other forms: `n` values as an array (or one, `None`), NULLs kept when `nulls`.
    ByOffset {
        latest: bool,
        n: Option<usize>,
        nulls: bool,
    },
    CountDistinct,
    TopK(usize),
    TopKDistinct(usize),
    CollectList,
    CollectSet,
    Histogram,
}

impl AggFn {
    pub fn from_name(pos: Pos, name: &str, args: &[Expr]) -> Result<AggFn, SqlError> {
        let arity = |lo: usize, hi: usize| {
            if (lo..=hi).contains(&args.len()) {
                Ok(())
            } else {
                let expected = if lo == hi { lo.to_string() } else { format!("{lo} to {hi}") };
                Err(SqlError::Arity { pos, name: name.to_owned(), expected, got: args.len() })
            }
        };
        Ok(match name {
            "COUNT" => {
                arity(0, 1)?;
                AggFn::Count
            }
            "LATEST_BY_OFFSET" | "EARLIEST_BY_OFFSET" => {
                arity(1, 3)?;
                by_offset(name == "LATEST_BY_OFFSET", &args[1..])?
            }
            "TOPK" | "TOPKDISTINCT" => {
                arity(2, 2)?;
                let k = whole(&args[1], 1, 1000).ok_or(SqlError::Invalid {
                    pos: args[1].pos,
                    message: format!(
                        "{name}'s second argument must be a whole number from 1 to 1000"
                    ),
                })?;
                if name == "TOPK" { AggFn::TopK(k) } else { AggFn::TopKDistinct(k) }
            }
            _ => {
                arity(1, 1)?;
                match name {
                    "SUM" => AggFn::Sum,
                    "AVG" => AggFn::Avg,
                    "MIN" => AggFn::Min,
                    "MAX" => AggFn::Max,
                    "COUNT_DISTINCT" => AggFn::CountDistinct,
                    "COLLECT_LIST" => AggFn::CollectList,
                    "COLLECT_SET" => AggFn::CollectSet,
                    "HISTOGRAM" => AggFn::Histogram,
                    _ => return Err(SqlError::UnknownFunction { pos, name: name.to_owned() }),
                }
            }
        })
    }

    /// The result type for an argument of type `arg`.
    pub fn result_type(self, arg: &SqlType) -> SqlType {
        let array = || SqlType::Array(Box::new(arg.clone()));
        match self {
            AggFn::CountAll | AggFn::Count | AggFn::CountDistinct => SqlType::Bigint,
            AggFn::Avg => SqlType::Double,
            AggFn::Sum if *arg == SqlType::Int => SqlType::Bigint,
            AggFn::TopK(_) | AggFn::TopKDistinct(_) | AggFn::CollectList | AggFn::CollectSet => {
                array()
            }
            AggFn::ByOffset { n: Some(_), .. } => array(),
            AggFn::Histogram => SqlType::Map(Box::new(SqlType::String), Box::new(SqlType::Bigint)),
            _ => arg.clone(),
        }
    }

    /// Whether a value added can be taken back out (what aggregating a table needs: a change
    /// of a row retracts its old values). ksqlDB's table aggregates: COUNT, SUM, AVG,
    /// COLLECT_LIST, COLLECT_SET, HISTOGRAM.
    pub fn undoable(self) -> bool {
        matches!(
            self,
            AggFn::CountAll
                | AggFn::Count
                | AggFn::Sum
                | AggFn::Avg
                | AggFn::CollectList
                | AggFn::CollectSet
                | AggFn::Histogram
        )
    }

    pub(super) fn init(self) -> State {
        match self {
            AggFn::CountAll | AggFn::Count => State::Count(0),
            AggFn::Sum | AggFn::Avg => State::Sum { int: 0, float: 0.0, floats: false, n: 0 },
            AggFn::Min | AggFn::Max => State::Best(None),
            AggFn::Latest | AggFn::Earliest => State::Stamped(None),
            AggFn::ByOffset { .. } => State::Offsets(Vec::new()),
            AggFn::CountDistinct => State::Distinct(BTreeSet::new()),
            AggFn::TopK(_) | AggFn::TopKDistinct(_) => State::Top(Vec::new()),
            AggFn::CollectList | AggFn::CollectSet => State::List(Vec::new()),
            AggFn::Histogram => State::Counts(BTreeMap::new()),
        }
    }
}

/// `LATEST_BY_OFFSET(x, ...)`'s further arguments: `[n] [, ignoreNulls]`, literals.
fn by_offset(latest: bool, rest: &[Expr]) -> Result<AggFn, SqlError> {
    let bad = |e: &Expr, what: &str| SqlError::Invalid {
        pos: e.pos,
        message: format!("the {what} argument of a *_BY_OFFSET aggregate must be a literal"),
    };
    let (n, ignore) = match rest {
        [] => (None, true),
        [e] => match &e.kind {
            ExprKind::Literal(Value::Bool(b)) => (None, *b),
            _ => (Some(whole(e, 1, 1000).ok_or_else(|| bad(e, "count (1 to 1000)"))?), true),
        },
        [count, nulls] => {
            let n = whole(count, 1, 1000).ok_or_else(|| bad(count, "count (1 to 1000)"))?;
            match &nulls.kind {
                ExprKind::Literal(Value::Bool(b)) => (Some(n), *b),
                _ => return Err(bad(nulls, "ignoreNulls (TRUE or FALSE)")),
            }
        }
        _ => return Err(bad(&rest[0], "count")),
    };
    Ok(match (n, ignore) {
        (None, true) if latest => AggFn::Latest,
        (None, true) => AggFn::Earliest,
        (n, ignore) => AggFn::ByOffset { latest, n, nulls: !ignore },
    })
}

/// A whole-number literal in `lo..=hi`.
fn whole(e: &Expr, lo: u64, hi: u64) -> Option<usize> {
    match &e.kind {
        ExprKind::Literal(Value::Number(n)) => {
            n.as_u64().filter(|k| (lo..=hi).contains(k)).map(|k| k as usize)
        }
        _ => None,
    }
}

/// One aggregate's accumulator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum State {
    Count(u64),
    Sum {
        int: i64,
        float: f64,
        floats: bool,
        n: u64,
    },
    Best(Option<Value>),
    Stamped(Option<(i64, Value)>),
    Distinct(BTreeSet<String>),
    Top(Vec<Value>),
    /// `*_BY_OFFSET` with a count or NULLs kept: the values kept, with their event times.
    Offsets(Vec<(i64, Value)>),
    /// `COLLECT_LIST` / `COLLECT_SET`: the values, in arrival order.
    List(Vec<Value>),
    /// `HISTOGRAM`: each value's text and its count.
    Counts(BTreeMap<String, u64>),
}

pub(super) fn add(f: AggFn, s: &mut State, v: &Value, ts: i64) {
    match s {
        State::Count(n) => *n += u64::from(!v.is_null()),
        State::Sum { int, float, floats, n } => {
            let Value::Number(x) = v else { return };
            *n += 1;
            match x.as_i64() {
                Some(i) if !*floats => *int = int.wrapping_add(i),
                _ => {
                    if !*floats {
                        *floats = true;
                        *float = *int as f64;
                    }
                    *float += x.as_f64().unwrap_or(0.0);
                }
            }
        }
        State::Best(best) => {
            if v.is_null() {
                return;
            }
            let better = match best.as_ref().and_then(|b| compare(v, b)) {
                None => best.is_none(),
                Some(o) => (f == AggFn::Min && o.is_lt()) || (f == AggFn::Max && o.is_gt()),
            };
            if better {
                *best = Some(v.clone());
            }
        }
        State::Stamped(kept) => {
            // NULLs are skipped, as ksqlDB's LATEST_BY_OFFSET does by default.
            if !v.is_null() && (f == AggFn::Latest || kept.is_none()) {
                *kept = Some((ts, v.clone()));
            }
        }
        State::Distinct(set) => {
            if !v.is_null() {
                set.insert(v.to_string());
            }
        }
        State::Top(top) => add_top(f, top, v),
        State::Offsets(kept) => {
            let AggFn::ByOffset { latest, n, nulls } = f else { return };
            if v.is_null() && !nulls {
                return;
            }
            let n = n.unwrap_or(1);
            if latest {
                kept.push((ts, v.clone()));
                let over = kept.len().saturating_sub(n);
                kept.drain(..over);
            } else if kept.len() < n {
                kept.push((ts, v.clone()));
            }
        }
        State::List(list) => {
            let new = f == AggFn::CollectList || !list.contains(v);
            if new && list.len() < COLLECT_LIMIT {
                list.push(v.clone());
            }
        }
        State::Counts(counts) => {
            if v.is_null() {
                return;
            }
            let key = crate::functions::text(v);
            if let Some(c) = counts.get_mut(&key) {
                *c += 1;
            } else if counts.len() < COLLECT_LIMIT {
                counts.insert(key, 1);
            }
        }
    }
}

/// `TOPK` / `TOPKDISTINCT`: `v` into the largest-first list, which keeps k values.
fn add_top(f: AggFn, top: &mut Vec<Value>, v: &Value) {
    let (k, distinct) = match f {
        AggFn::TopK(k) => (k, false),
        AggFn::TopKDistinct(k) => (k, true),
        _ => return,
    };
    if v.is_null() || (distinct && top.iter().any(|x| compare(x, v).is_some_and(|o| o.is_eq()))) {
        return;
    }
    let at = top.partition_point(|x| compare(x, v).is_some_and(|o| o.is_ge()));
    top.insert(at, v.clone());
    top.truncate(k);
}

/// Takes a value [`add`] added back out (only for [`AggFn::undoable`] functions; the others
/// are left as they are).
pub(super) fn remove(s: &mut State, v: &Value) {
    match s {
        State::Count(n) => *n = n.saturating_sub(u64::from(!v.is_null())),
        State::Sum { int, float, floats, n } => {
            let Value::Number(x) = v else { return };
            *n = n.saturating_sub(1);
            match x.as_i64() {
                Some(i) if !*floats => *int = int.wrapping_sub(i),
                _ => {
                    if !*floats {
                        *floats = true;
                        *float = *int as f64;
                    }
                    *float -= x.as_f64().unwrap_or(0.0);
                }
            }
        }
        State::List(list) => {
            if let Some(at) = list.iter().position(|x| x == v) {
                list.remove(at);
            }
        }
        State::Counts(counts) => {
            if v.is_null() {
                return;
            }
            let key = crate::functions::text(v);
            if let Some(c) = counts.get_mut(&key) {
                *c = c.saturating_sub(1);
                if *c == 0 {
                    counts.remove(&key);
                }
            }
        }
        _ => {}
    }
}

pub(super) fn merge(f: AggFn, s: &mut State, other: State) {
    match (s, other) {
        (State::Count(a), State::Count(b)) => *a += b,
        (
            State::Sum { int, float, floats, n },
            State::Sum { int: i2, float: f2, floats: fl2, n: n2 },
        ) => {
            *n += n2;
            if *floats || fl2 {
                let mine = if *floats { *float } else { *int as f64 };
                *float = mine + if fl2 { f2 } else { i2 as f64 };
                *floats = true;
            } else {
                *int = int.wrapping_add(i2);
            }
        }
        (s @ State::Best(_), State::Best(Some(v))) => add(f, s, &v, 0),
        (State::Stamped(kept), State::Stamped(Some((t, v)))) => {
            let take = match kept {
                None => true,
                Some((mine, _)) => (f == AggFn::Latest) == (t >= *mine),
            };
            if take {
                *kept = Some((t, v));
            }
        }
        (State::Distinct(a), State::Distinct(b)) => a.extend(b),
        (s @ State::Top(_), State::Top(b)) => b.iter().for_each(|v| add(f, s, v, 0)),
        (State::Offsets(a), State::Offsets(b)) => {
            // Both sessions' values in event-time order, then the kept ones again.
            let mut all = std::mem::take(a);
            all.extend(b);
            all.sort_by_key(|(t, _)| *t);
            let mut merged = State::Offsets(Vec::new());
            for (t, v) in &all {
                add(f, &mut merged, v, *t);
            }
            if let State::Offsets(kept) = merged {
                *a = kept;
            }
        }
        (s @ State::List(_), State::List(b)) => b.iter().for_each(|v| add(f, s, v, 0)),
        (State::Counts(a), State::Counts(b)) => {
            for (k, c) in b {
                if let Some(mine) = a.get_mut(&k) {
                    *mine += c;
                } else if a.len() < COLLECT_LIMIT {
                    a.insert(k, c);
                }
            }
        }
        _ => {}
    }
}

pub(super) fn result(f: AggFn, s: &State) -> Value {
    match s {
        State::Count(n) => Value::from(*n),
        State::Sum { int, float, floats, n } => match f {
            AggFn::Avg if *n == 0 => Value::Null,
            AggFn::Avg => num(if *floats { *float } else { *int as f64 } / *n as f64),
            _ if *floats => num(*float),
            _ => Value::from(*int),
        },
        State::Best(b) => b.clone().unwrap_or(Value::Null),
        State::Stamped(kept) => kept.as_ref().map_or(Value::Null, |(_, v)| v.clone()),
        State::Distinct(set) => Value::from(set.len() as u64),
        State::Top(top) | State::List(top) => Value::Array(top.clone()),
        State::Offsets(kept) => match f {
            AggFn::ByOffset { n: Some(_), .. } => {
                Value::Array(kept.iter().map(|(_, v)| v.clone()).collect())
            }
            _ => kept.first().map_or(Value::Null, |(_, v)| v.clone()),
        },
        State::Counts(counts) => {
            Value::Object(counts.iter().map(|(k, c)| (k.clone(), Value::from(*c))).collect())
        }
    }
}

/// [`result`] written as JSON, without copying the values a state holds.
pub(super) fn write_result(f: AggFn, s: &State, out: &mut Vec<u8>) -> serde_json::Result<()> {
    match s {
        State::Count(n) => serde_json::to_writer(out, n),
        State::Best(b) => serde_json::to_writer(out, b),
        State::Stamped(kept) => serde_json::to_writer(out, &kept.as_ref().map(|(_, v)| v)),
        State::Top(top) | State::List(top) => serde_json::to_writer(out, top),
        State::Counts(counts) => serde_json::to_writer(out, counts),
        State::Sum { .. } | State::Distinct(_) | State::Offsets(_) => {
            serde_json::to_writer(out, &result(f, s))
        }
    }
}
