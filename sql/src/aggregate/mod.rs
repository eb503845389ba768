//! Aggregate functions over JSON, as one [`Aggregator`] per query: a `GROUP BY` query's
//! aggregates share one accumulator per key (or per key and window).
//!
//! Before grouping, each row is reduced to its key (the GROUP BY value, or their array) and a
//! [`GroupInput`]: for windowed queries the group values, then the aggregate calls' arguments
//! (none for `COUNT(*)`) — so a repartition carries only what the aggregates need. The
//! accumulator keeps the group values (an unwindowed one reads them from its key when it is
//! made) and one state per aggregate call. For unwindowed queries ([`SqlAgg`]) the result is
//! the projected output row written as JSON (none when HAVING rejects it); when every column
//! is a group value or an aggregate as it is, and there is no HAVING, the columns go from the
//! accumulator straight into the JSON, without a row of values in between. Windowed queries
//! ([`SqlWindowAgg`]) project afterwards, when the window is known.
//!
//! The functions themselves (their states, adding, merging, results) are `functions.rs`.
//!
//! Invariants: an accumulator is plain data (serde), so the processor snapshots and
//! changelogs it like any other; an accumulator's GROUP BY values are set once, by its first
//! row (or its key), and never change; the JSON written straight from an accumulator is byte
//! for byte what serializing its results would write.

mod functions;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use eddy_processor::Aggregator;

use crate::ast::{Expr, ExprKind};
use crate::codec::{JsonRow, NamedRow, ObjectWriter};
use crate::expr::{Row, eval, truth};
use crate::functions::FunctionRegistry;

pub use functions::{AggFn, State};
use functions::{add, merge, remove, result, write_result};

/// The accumulator of one group: its GROUP BY values and each aggregate's state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Acc {
    pub keys: Vec<Value>,
    pub states: Vec<State>,
    /// With HAVING: whether the group's row passed it after the latest row, and before it.
    /// A group that fails HAVING is deleted downstream (a tombstone) only if its row had
    /// passed before, as in ksqlDB; one that never passed is never written.
    #[serde(default)]
    pub passed: bool,
    #[serde(default)]
    pub passed_before: bool,
}

/// What an aggregate reads per row: the aggregate calls' arguments (but `COUNT(*)`'s), after
/// the GROUP BY values for a windowed query.
pub type GroupInput = Vec<Value>;

/// A window's result: its GROUP BY values, the aggregates' results, and (with HAVING) whether
/// the window's row had passed HAVING before this change (a row failing it now is deleted
/// downstream only then).
pub type WindowResult = (Vec<Value>, Vec<Value>, bool);

/// The projection applied to an aggregate's results.
#[derive(Debug, Clone)]
pub struct Projection {
    /// Output column names, in SELECT order, and how a row of them is written as JSON.
    writer: ObjectWriter,
    /// One expression per column, over `KeyRef`/`AggRef`/window columns.
    exprs: Vec<Expr>,
    having: Option<Expr>,
    registry: Arc<FunctionRegistry>,
    /// When every column is a group value or an aggregate's result as is, and there is no
    /// HAVING (`SELECT url, COUNT(*) ... GROUP BY url`): the columns, read straight from the
    /// accumulator.
    direct: Option<Vec<Direct>>,
}

/// A column read straight from the accumulator.
#[derive(Debug, Clone, Copy)]
enum Direct {
    Key(usize),
    Agg(usize),
}

impl Projection {
    pub fn new(
        names: Arc<[String]>,
        exprs: Vec<Expr>,
        having: Option<Expr>,
        registry: Arc<FunctionRegistry>,
    ) -> Self {
        let plain = |e: &Expr| match e.kind {
            ExprKind::KeyRef(i) => Some(Direct::Key(i)),
            ExprKind::AggRef(i) => Some(Direct::Agg(i)),
            _ => None,
        };
        let direct = having.is_none().then(|| exprs.iter().map(plain).collect()).flatten();
        Self { writer: ObjectWriter::new(names), exprs, having, registry, direct }
    }

    /// The output columns (every row this projection makes shares them).
    pub fn names(&self) -> &Arc<[String]> {
        self.writer.names()
    }

    /// Writes rows of the output columns as JSON objects.
    pub fn writer(&self) -> &ObjectWriter {
        &self.writer
    }

    /// The output row, or `None` when HAVING does not hold (or cannot be evaluated).
    pub fn has_having(&self) -> bool {
        self.having.is_some()
    }

    /// Whether a group's row passes HAVING (true without one).
    pub fn passes(&self, keys: &[Value], aggs: &[Value], window: Option<(i64, i64)>) -> bool {
        let Some(h) = &self.having else { return true };
        let row = Row { columns: &[], rowtime: 0, rowkey: &Value::Null, window, aggs, keys };
        match eval(h, &row, &self.registry) {
            Ok(v) => truth(&v) == Some(true),
            Err(error) => {
                tracing::debug!(%error, "HAVING failed to evaluate; the group is left out");
                false
            }
        }
    }

    pub fn apply(
        &self,
        keys: &[Value],
        aggs: &[Value],
        window: Option<(i64, i64)>,
    ) -> Option<NamedRow> {
        if !self.passes(keys, aggs, window) {
            return None;
        }
        let row = Row { columns: &[], rowtime: 0, rowkey: &Value::Null, window, aggs, keys };
        let values = self
            .names()
            .iter()
            .zip(&self.exprs)
            .map(|(name, e)| {
                eval(e, &row, &self.registry).unwrap_or_else(|error| {
                    tracing::debug!(%error, column = %name, "a column failed to evaluate; it is NULL");
                    Value::Null
                })
            })
            .collect();
        Some(NamedRow { names: self.names().clone(), values })
    }
}

/// The aggregator of an unwindowed GROUP BY query: its result is the projected row, written
/// as JSON.
#[derive(Debug, Clone)]
pub struct SqlAgg {
    pub fns: Vec<AggFn>,
    pub projection: Projection,
    /// The number of GROUP BY values (more than one make the key an array of them).
    pub group_width: usize,
    /// Aggregating a table: each input leads with `true` (its values are taken back out: the
    /// old row of a change) or `false` (added).
    pub signed: bool,
}

/// The aggregator of a windowed GROUP BY query: its result is `(group values, aggregate
/// results)`, projected once the window is known.
#[derive(Debug, Clone)]
pub struct SqlWindowAgg {
    pub fns: Vec<AggFn>,
    /// The number of GROUP BY values leading each row.
    pub group_width: usize,
    /// The projection, when it has a HAVING, to follow whether each window passes it.
    pub having: Option<Arc<Projection>>,
}

/// The aggregates' results.
fn results(fns: &[AggFn], acc: &Acc) -> Vec<Value> {
    fns.iter().zip(&acc.states).map(|(f, s)| result(*f, s)).collect()
}

fn init_acc(fns: &[AggFn]) -> Acc {
    Acc {
        keys: Vec::new(),
        states: fns.iter().map(|f| f.init()).collect(),
        passed: false,
        passed_before: false,
    }
}

/// Adds one row: `args` holds the arguments of the calls other than `COUNT(*)`, in order.
fn add_row(fns: &[AggFn], acc: &mut Acc, keys: &[Value], args: &[Value], ts: i64) {
    // Every row of one accumulator has the same group values (they make its key).
    if acc.keys.is_empty() {
        acc.keys = keys.to_vec();
    }
    let mut args = args.iter();
    for (f, s) in fns.iter().zip(&mut acc.states) {
        match (f, s) {
            (AggFn::CountAll, State::Count(n)) => *n += 1,
            (AggFn::CountAll, _) => {}
            (f, s) => {
                if let Some(arg) = args.next() {
                    add(*f, s, arg, ts);
                }
            }
        }
    }
}

/// Takes a row's values back out of the accumulator (the old row of a table's change).
fn remove_row(fns: &[AggFn], acc: &mut Acc, args: &[Value]) {
    let mut args = args.iter();
    for (f, s) in fns.iter().zip(&mut acc.states) {
        match (f, s) {
            (AggFn::CountAll, State::Count(n)) => *n = n.saturating_sub(1),
            (AggFn::CountAll, _) => {}
            (_, s) => {
                if let Some(arg) = args.next() {
                    remove(s, arg);
                }
            }
        }
    }
}

fn merge_acc(fns: &[AggFn], into: &mut Acc, other: Acc) {
    if into.keys.is_empty() {
        into.keys = other.keys;
    }
    for ((f, s), o) in fns.iter().zip(&mut into.states).zip(other.states) {
        merge(*f, s, o);
    }
    // A merged session's row may have been shown under either part: deleting it is safe.
    into.passed_before |= into.passed || other.passed;
}

impl Aggregator<GroupInput> for SqlAgg {
    type Acc = Acc;
    type Out = Option<JsonRow>;

    fn init(&self) -> Acc {
        init_acc(&self.fns)
    }
    /// Rows arrive without their group values (the key has them): they are read back from
    /// the key once, here.
    fn init_keyed(&self, key: &[u8]) -> Acc {
        let mut acc = init_acc(&self.fns);
        match serde_json::from_slice::<Value>(key) {
            Ok(Value::Array(values)) if self.group_width > 1 => acc.keys = values,
            Ok(value) => acc.keys = vec![value],
            Err(error) => {
                tracing::warn!(%error, "a group key that is not JSON; its values are NULL")
            }
        }
        acc
    }
    fn add(&self, acc: &mut Acc, value: &GroupInput, ts: i64) {
        if !self.signed {
            add_row(&self.fns, acc, &[], value, ts);
        } else if let Some((sign, args)) = value.split_first() {
            match sign {
                Value::Bool(true) => remove_row(&self.fns, acc, args),
                _ => add_row(&self.fns, acc, &[], args, ts),
            }
        }
        if self.projection.having.is_some() {
            acc.passed_before = acc.passed;
            acc.passed = self.projection.passes(&acc.keys, &results(&self.fns, acc), None);
        }
    }
    fn merge(&self, into: &mut Acc, other: Acc) {
        merge_acc(&self.fns, into, other);
    }
    /// When every column is a group value or an aggregate as is (and there is no HAVING), the
    /// columns are written straight from the accumulator; otherwise the projection is
    /// evaluated into a row first.
    fn result(&self, acc: &Acc) -> Option<JsonRow> {
        let p = &self.projection;
        if p.having.is_some() && !acc.passed {
            return if acc.passed_before { None } else { Some(JsonRow::hidden()) };
        }
        let Some(direct) = &p.direct else {
            let row = p.apply(&acc.keys, &results(&self.fns, acc), None)?;
            return Some(JsonRow::written(p.writer.write(&row.values)));
        };
        Some(JsonRow::written(p.writer.object(|i, out| match direct.get(i) {
            Some(Direct::Key(k)) => {
                serde_json::to_writer(out, acc.keys.get(*k).unwrap_or(&Value::Null))
            }
            Some(Direct::Agg(a)) => match (self.fns.get(*a), acc.states.get(*a)) {
                (Some(f), Some(s)) => write_result(*f, s, out),
                _ => serde_json::to_writer(out, &Value::Null),
            },
            None => serde_json::to_writer(out, &Value::Null),
        })))
    }
}

impl Aggregator<GroupInput> for SqlWindowAgg {
    type Acc = Acc;
    type Out = WindowResult;

    fn init(&self) -> Acc {
        init_acc(&self.fns)
    }
    fn add(&self, acc: &mut Acc, value: &GroupInput, ts: i64) {
        let (keys, args) = value.split_at(self.group_width.min(value.len()));
        add_row(&self.fns, acc, keys, args, ts);
        if let Some(p) = &self.having {
            acc.passed_before = acc.passed;
            acc.passed = p.passes(&acc.keys, &results(&self.fns, acc), None);
        }
    }
    fn merge(&self, into: &mut Acc, other: Acc) {
        merge_acc(&self.fns, into, other);
    }
    fn result(&self, acc: &Acc) -> WindowResult {
        (acc.keys.clone(), results(&self.fns, acc), acc.passed_before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_fold_and_merge() {
        let fns = vec![
            AggFn::CountAll,
            AggFn::Count,
            AggFn::Sum,
            AggFn::Avg,
            AggFn::Min,
            AggFn::Max,
            AggFn::Latest,
            AggFn::Earliest,
            AggFn::CountDistinct,
            AggFn::TopK(2),
            AggFn::ByOffset { latest: true, n: Some(2), nulls: true },
            AggFn::CollectList,
            AggFn::CollectSet,
            AggFn::Histogram,
            AggFn::TopKDistinct(2),
        ];
        let agg = SqlWindowAgg { fns: fns.clone(), group_width: 1, having: None };
        let row = |x: Value| [vec![Value::from("k")], vec![x; fns.len() - 1]].concat();
        let mut a = agg.init();
        agg.add(&mut a, &row(Value::from(3)), 1);
        agg.add(&mut a, &row(Value::from(5)), 2);
        let mut b = agg.init();
        agg.add(&mut b, &row(Value::from(1.5)), 3);
        agg.add(&mut b, &row(Value::Null), 4);
        agg.merge(&mut a, b);
        let (keys, aggs, _) = agg.result(&a);
        assert_eq!(keys, vec![Value::from("k")]);
        let want = serde_json::json!([4, 3, 9.5, 9.5 / 3.0, 1.5, 5, 1.5, 3, 3, [5, 3],
            [1.5, null], [3, 5, 1.5, null], [3, 5, 1.5, null], {"1.5": 1, "3": 1, "5": 1}, [5, 3]]);
        assert_eq!(Value::from(aggs), want);
        // Written straight from the state, each result is the JSON of its value.
        for (f, s) in fns.iter().zip(&a.states).chain([(&AggFn::Avg, &AggFn::Avg.init())]) {
            let mut out = Vec::new();
            write_result(*f, s, &mut out).unwrap();
            assert_eq!(out, serde_json::to_vec(&result(*f, s)).unwrap(), "{f:?}");
        }
    }
}
