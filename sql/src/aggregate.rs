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
//! `COUNT(*)` counts rows, `COUNT(x)` non-NULL values; `SUM` is an integer while every input is
//! one; `AVG` is a DOUBLE; `MIN`/`MAX` order numbers and strings; `LATEST_BY_OFFSET` /
//! `EARLIEST_BY_OFFSET` keep the last / first value in processing order (a session merge keeps
//! the one with the later / earlier event time); `COUNT_DISTINCT` counts distinct non-NULL
//! values; `TOPK(x, k)` keeps the k largest values, largest first.
//!
//! Invariants: an accumulator is plain data (serde), so the processor snapshots and
//! changelogs it like any other; an accumulator's GROUP BY values are set once, by its first
//! row (or its key), and never change; the JSON written straight from an accumulator is byte
//! for byte what serializing its results would write.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use eddy_processor::Aggregator;

use crate::ast::{Expr, ExprKind, SqlType};
use crate::codec::{JsonRow, NamedRow, ObjectWriter};
use crate::error::{Pos, SqlError};
use crate::expr::{Row, compare, eval, truth};
use crate::functions::{FunctionRegistry, num};

/// One aggregate call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggFn {
    /// `COUNT(*)`: rows, without an argument to evaluate.
    CountAll,
    Count,
    Sum,
    Avg,
    Min,
    Max,
    Latest,
    Earliest,
    CountDistinct,
    TopK(usize),
}

impl AggFn {
    pub fn from_name(pos: Pos, name: &str, args: &[Expr]) -> Result<AggFn, SqlError> {
        let arity = |n: usize| {
            if args.len() == n {
                Ok(())
            } else {
                Err(SqlError::Arity {
                    pos,
                    name: name.to_owned(),
                    expected: n.to_string(),
                    got: args.len(),
                })
            }
        };
        let f = match name {
            "COUNT" => AggFn::Count,
            "SUM" => AggFn::Sum,
            "AVG" => AggFn::Avg,
            "MIN" => AggFn::Min,
            "MAX" => AggFn::Max,
            "LATEST_BY_OFFSET" => AggFn::Latest,
            "EARLIEST_BY_OFFSET" => AggFn::Earliest,
            "COUNT_DISTINCT" => AggFn::CountDistinct,
            "TOPK" => {
                arity(2)?;
                let k = match &args[1].kind {
                    ExprKind::Literal(Value::Number(n)) => n.as_u64(),
                    _ => None,
                };
                let k = k.filter(|k| (1..=1000).contains(k)).ok_or(SqlError::Invalid {
                    pos: args[1].pos,
                    message: "TOPK's second argument must be a whole number from 1 to 1000".into(),
                })?;
                return Ok(AggFn::TopK(k as usize));
            }
            _ => return Err(SqlError::UnknownFunction { pos, name: name.to_owned() }),
        };
        arity(1)?;
        Ok(f)
    }

    /// The result type for an argument of type `arg`.
    pub fn result_type(self, arg: &SqlType) -> SqlType {
        match self {
            AggFn::CountAll | AggFn::Count | AggFn::CountDistinct => SqlType::Bigint,
            AggFn::Avg => SqlType::Double,
            AggFn::Sum if *arg == SqlType::Int => SqlType::Bigint,
            AggFn::TopK(_) => SqlType::Array(Box::new(arg.clone())),
            _ => arg.clone(),
        }
    }

    fn init(self) -> State {
        match self {
            AggFn::CountAll | AggFn::Count => State::Count(0),
            AggFn::Sum | AggFn::Avg => State::Sum { int: 0, float: 0.0, floats: false, n: 0 },
            AggFn::Min | AggFn::Max => State::Best(None),
            AggFn::Latest | AggFn::Earliest => State::Stamped(None),
            AggFn::CountDistinct => State::Distinct(BTreeSet::new()),
            AggFn::TopK(_) => State::Top(Vec::new()),
        }
    }
}

/// One aggregate's accumulator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum State {
    Count(u64),
    Sum { int: i64, float: f64, floats: bool, n: u64 },
    Best(Option<Value>),
    Stamped(Option<(i64, Value)>),
    Distinct(BTreeSet<String>),
    Top(Vec<Value>),
}

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
        add_row(&self.fns, acc, &[], value, ts);
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

fn add(f: AggFn, s: &mut State, v: &Value, ts: i64) {
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
        State::Top(top) => {
            let AggFn::TopK(k) = f else { return };
            if v.is_null() {
                return;
            }
            let at = top.partition_point(|x| compare(x, v).is_some_and(|o| o.is_ge()));
            top.insert(at, v.clone());
            top.truncate(k);
        }
    }
}

fn merge(f: AggFn, s: &mut State, other: State) {
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
        _ => {}
    }
}

fn result(f: AggFn, s: &State) -> Value {
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
        State::Top(top) => Value::Array(top.clone()),
    }
}

/// [`result`] written as JSON, without copying the values a state holds.
fn write_result(f: AggFn, s: &State, out: &mut Vec<u8>) -> serde_json::Result<()> {
    match s {
        State::Count(n) => serde_json::to_writer(out, n),
        State::Best(b) => serde_json::to_writer(out, b),
        State::Stamped(kept) => serde_json::to_writer(out, &kept.as_ref().map(|(_, v)| v)),
        State::Top(top) => serde_json::to_writer(out, top),
        State::Sum { .. } | State::Distinct(_) => serde_json::to_writer(out, &result(f, s)),
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
        let want = serde_json::json!([4, 3, 9.5, 9.5 / 3.0, 1.5, 5, 1.5, 3, 3, [5, 3]]);
        assert_eq!(Value::from(aggs), want);
        // Written straight from the state, each result is the JSON of its value.
        for (f, s) in fns.iter().zip(&a.states).chain([(&AggFn::Avg, &AggFn::Avg.init())]) {
            let mut out = Vec::new();
            write_result(*f, s, &mut out).unwrap();
            assert_eq!(out, serde_json::to_vec(&result(*f, s)).unwrap(), "{f:?}");
        }
    }
}
