//! `CREATE TABLE ... AS SELECT ... GROUP BY`, wired on the builder: rows → (group key, group
//! input) → repartition (when the target has more than one partition) → aggregate, or window
//! and aggregate, into table `name` → its changes to topic `name`, in the target's format.
//!
//! ksqlDB's rules kept here: a row whose GROUP BY value (any of several) is NULL joins no group;
//! a group or window HAVING never let through is never written, one that leaves it is deleted
//! downstream; a window without `GRACE PERIOD` has 24 hours; a session ends at its last event,
//! and a merged session deletes the sessions it swallowed (tombstones stamped with their end).
//! Invariant: the builder calls are made in the same order for the same statement (operator ids,
//! internal topics and table names stay the same at every compilation).

use std::sync::Arc;

use eddy_processor::operator_api::{Cx, Down, Node, TableStore};
use eddy_processor::{Emit, Rec, RecordError, Stream, Table, Windowed, Windows};
use serde_json::Value;

use crate::aggregate::{AggFn, Projection, SqlAgg, SqlWindowAgg, WindowResult};
use crate::ast::Expr;
use crate::ast::{ExprKind, SqlType, WindowShape, WindowSpec};
use crate::codec::{
    FormattedRowCodec, JsonRow, JsonRowCodec, NamedRow, SqlKey, TableRowCodec, ValueWriter,
    WindowedKey,
};
use crate::error::EvalError;
use crate::error::SqlError;
use crate::expr::{Row, bind, eval, truth};
use crate::functions::FunctionRegistry;
use crate::plan::GroupPlan;
use crate::source::{SourceInfo, ValueFormat};
use crate::stream::{Rows, set_aside};
use crate::types::Schema;

/// How a GROUP BY query's rows become (group key, group input): its WHERE, group values and
/// aggregate arguments, bound to the rows' layout.
pub(crate) struct GroupInputs {
    filter: Option<Expr>,
    keys: Vec<Expr>,
    /// The arguments of the aggregate calls but `COUNT(*)`'s, in order.
    args: Vec<Expr>,
    /// Per group value, the slot it is moved out of: a GROUP BY value that is a column by
    /// itself, and the only one reading that column, is moved out of the row (which is dropped
    /// after) instead of copied.
    moves: Vec<Option<usize>>,
    /// Window accumulators take the group values from each row; unwindowed ones from the key
    /// when they are made (`SqlAgg::init_keyed`).
    windowed: bool,
    /// Aggregating a table: each row ends with its sign (`true`: taken back out), which the
    /// group input leads with.
    pub(crate) signed: bool,
    registry: Arc<FunctionRegistry>,
}

impl GroupInputs {
    pub(crate) fn new(
        plan: &GroupPlan,
        filter: Option<Expr>,
        layout: &Schema,
        registry: Arc<FunctionRegistry>,
    ) -> Self {
        let keys: Vec<Expr> = plan.keys.iter().map(|k| bind(k, layout)).collect();
        let args = plan
            .aggs
            .iter()
            .filter(|(f, _, _)| *f != AggFn::CountAll)
            .map(|(_, a, _)| bind(a, layout))
            .collect();
        let slot_of = |e: &Expr| match e.kind {
            ExprKind::Slot { index, .. } => Some(index),
            _ => None,
        };
        let moves = keys
            .iter()
            .map(|k| {
                slot_of(k).filter(|i| keys.iter().filter(|o| slot_of(o) == Some(*i)).count() == 1)
            })
            .collect();
        let filter = filter.map(|f| bind(&f, layout));
        Self { filter, keys, args, moves, windowed: plan.window.is_some(), signed: false, registry }
    }

    /// The row's group values (those moved out of the row left NULL) and aggregate arguments;
    /// `None` when WHERE is not true.
    fn evaluate(
        &self,
        rec: &Rec<Value, Vec<Value>>,
    ) -> Result<Option<(GroupKey, Vec<Value>)>, EvalError> {
        let row = Row::new(&rec.value, rec.ts, &rec.key);
        if let Some(f) = &self.filter
            && truth(&eval(f, &row, &self.registry)?) != Some(true)
        {
            return Ok(None);
        }
        let mut args = Vec::with_capacity(self.args.len());
        for a in &self.args {
            args.push(eval(a, &row, &self.registry)?);
        }
        let key = |j: usize| match self.moves[j] {
            Some(_) => Ok(Value::Null),
            None => eval(&self.keys[j], &row, &self.registry),
        };
        let keys = match self.keys.len() {
            1 => GroupKey::One(key(0)?),
            n => GroupKey::Many((0..n).map(key).collect::<Result<_, _>>()?),
        };
        Ok(Some((keys, args)))
    }

    /// The record's (key, value) for the aggregate: the group key, and the aggregate
    /// arguments (after the group values, windowed); `None` when WHERE is not true.
    fn group(
        &self,
        rec: &mut Rec<Value, Vec<Value>>,
    ) -> Result<Option<(Value, Vec<Value>)>, EvalError> {
        let retract = match self.signed {
            true => rec.value.pop() == Some(Value::Bool(true)),
            false => false,
        };
        let Some((keys, mut args)) = self.evaluate(rec)? else { return Ok(None) };
        if self.signed {
            args.insert(0, Value::Bool(retract));
        }
        let mut take = |j: usize, into: &mut Value| {
            if let Some(v) = self.moves[j].and_then(|i| rec.value.get_mut(i)) {
                *into = std::mem::take(v);
            }
        };
        Ok(Some(match keys {
            GroupKey::One(mut v) => {
                take(0, &mut v);
                if self.windowed { (v.clone(), with_keys(vec![v], args)) } else { (v, args) }
            }
            GroupKey::Many(mut keys) => {
                for (j, v) in keys.iter_mut().enumerate() {
                    take(j, v);
                }
                if self.windowed {
                    (Value::Array(keys.clone()), with_keys(keys, args))
                } else {
                    (Value::Array(keys), args)
                }
            }
        }))
    }
}

/// Wires a planned GROUP BY query: rows → (group key, group input) → repartition (when the
/// target has more than one partition) → aggregate, or window and aggregate, into table
/// `target.name` → its changes to `target.topic`.
pub(crate) fn group(
    rows: &Rows,
    inputs: GroupInputs,
    plan: GroupPlan,
    registry: &Arc<FunctionRegistry>,
    target: &SourceInfo,
) -> Result<(), SqlError> {
    let inputs_signed = inputs.signed;
    let inputs = Arc::new(inputs);
    // As in ksqlDB, a row whose GROUP BY value (any of several) is NULL joins no group.
    let null_key = |key: &Value, width: usize| match key {
        Value::Null => true,
        Value::Array(values) if width > 1 => values.iter().any(Value::is_null),
        _ => false,
    };
    let width = plan.keys.len();
    let keyed =
        rows.then(move |mut rec: Rec<Value, Vec<Value>>, cx, down| match inputs.group(&mut rec) {
            Ok(Some((key, _))) if null_key(&key, width) => {}
            Ok(Some((key, value))) => down.push(Rec { key, value, ts: rec.ts }, cx),
            Ok(None) => {}
            Err(e) => set_aside(cx, &e),
        });
    let keyed =
        if target.partitions > 1 { keyed.repartition("groupby", target.partitions) } else { keyed };
    let fns: Vec<AggFn> = plan.aggs.iter().map(|(f, _, _)| *f).collect();
    let group_width = plan.keys.len();
    let types = plan.items.iter().map(|(n, _)| plan.type_of(n)).collect::<Vec<SqlType>>();
    let projection = Projection::new(
        plan.items.iter().map(|(n, _)| n.clone()).collect(),
        plan.items.into_iter().map(|(_, e)| e).collect(),
        plan.having,
        registry.clone(),
    );
    let out_writer = ValueWriter::new(projection.writer().clone(), types, target.format);
    match &plan.window {
        None => {
            let agg = SqlAgg { fns, projection, group_width, signed: inputs_signed };
            let table = keyed.aggregate(&target.name, agg)?;
            let changes = table
                .changes()
                .filter(|_, row: &Option<JsonRow>| !row.as_ref().is_some_and(JsonRow::is_hidden));
            if target.format == ValueFormat::Json {
                changes.to(&target.topic, SqlKey, JsonRowCodec);
            } else {
                changes.to(&target.topic, SqlKey, FormattedRowCodec(out_writer));
            }
        }
        Some(w) => {
            let projection = Arc::new(projection);
            let having = projection.has_having().then(|| projection.clone());
            let agg = SqlWindowAgg { fns, group_width, having };
            windowed(&keyed, w, plan.emit_final, agg, projection, out_writer, target)?;
        }
    }
    Ok(())
}

/// The windowed half of [`group`]. The table holds every window's latest row (EMIT CHANGES
/// underneath); with EMIT FINAL the topic gets each window's row once, from a second window
/// operator.
fn windowed(
    keyed: &Rows,
    w: &WindowSpec,
    emit_final: bool,
    agg: SqlWindowAgg,
    projection: Arc<Projection>,
    out_writer: ValueWriter,
    target: &SourceInfo,
) -> Result<(), SqlError> {
    let windows = windows(w);
    let writes = TableRowCodec(out_writer);
    let inner = format!("{}-windows", target.name);
    let raw = keyed.window(windows).aggregate(&inner, agg.clone(), Emit::Changes);
    let sessions = matches!(w.shape, WindowShape::Session { .. });
    let projected = project_windows(&raw?.changes(), projection.clone(), sessions);
    let table = windows_table(&projected, &target.name, sessions)?;
    if emit_final {
        let finals = format!("{}-final", target.name);
        let raw = keyed.window(windows).aggregate(&finals, agg, Emit::Final);
        project_windows(&raw?.changes(), projection, sessions).to(
            &target.topic,
            WindowedKey,
            writes,
        );
    } else {
        table.changes().to(&target.topic, WindowedKey, writes);
    }
    Ok(())
}

/// A windowed row's aggregate input: its GROUP BY values, then the aggregate arguments.
fn with_keys(mut keys: Vec<Value>, args: Vec<Value>) -> Vec<Value> {
    keys.extend(args);
    keys
}

/// A row's GROUP BY values: one (the key itself) or several (the key is their array).
enum GroupKey {
    One(Value),
    Many(Vec<Value>),
}

/// `(keys, aggs)` per window → the projected row, with the window known. A session's end is
/// its last event's time, as in ksqlDB (the window operator's sessions end just after it).
fn project_windows(
    raw: &Stream<Windowed<Value>, WindowResult>,
    projection: Arc<Projection>,
    sessions: bool,
) -> Stream<Windowed<Value>, Option<NamedRow>> {
    raw.flat_map(move |mut k: Windowed<Value>, (keys, aggs, shown): WindowResult| {
        if sessions {
            k.end = k.end.saturating_sub(1).max(k.start);
        }
        let row = projection.apply(&keys, &aggs, Some((k.start, k.end)));
        // A window HAVING never let through is not deleted downstream: it was never there.
        (row.is_some() || shown).then_some((k, row))
    })
}

/// The grace period of a window without `GRACE PERIOD`: 24 hours, ksqlDB's (and Kafka
/// Streams') default.
const DEFAULT_GRACE_MS: i64 = 24 * 3_600_000;

/// The window operator's windows for `WINDOW ...`.
fn windows(w: &WindowSpec) -> Windows {
    let base = match w.shape {
        WindowShape::Tumbling { size_ms } => Windows::tumbling(size_ms),
        WindowShape::Hopping { size_ms, advance_ms } => Windows::hopping(size_ms, advance_ms),
        WindowShape::Session { gap_ms } => Windows::session(gap_ms),
    };
    base.grace(w.grace_ms.unwrap_or(DEFAULT_GRACE_MS))
}

/// Projected windows into table `name`. For session windows a merged session replaces the
/// sessions it swallowed: stored sessions of the same key inside the new one are deleted (the
/// window operator's own deletions do not travel downstream).
fn windows_table(
    projected: &Stream<Windowed<Value>, Option<NamedRow>>,
    name: &str,
    sessions: bool,
) -> eddy_processor::Result<Table<Windowed<Value>, Option<NamedRow>>> {
    if !sessions {
        return projected.to_table(name);
    }
    projected.materialize(name, |store, down| Box::new(SessionUpsert { store, down }))
}

/// The node feeding a session-windowed table: each row replaces the sessions it swallowed.
struct SessionUpsert {
    store: Arc<TableStore>,
    down: Down<Windowed<Value>, Option<NamedRow>>,
}

impl Node<Windowed<Value>, Option<NamedRow>> for SessionUpsert {
    fn push(&mut self, rec: Rec<Windowed<Value>, Option<NamedRow>>, cx: &mut Cx) {
        let (Ok(kb), Ok(vb)) = (serde_json::to_vec(&rec.key), serde_json::to_vec(&rec.value))
        else {
            return cx.set_aside(&RecordError::State("a session row cannot be encoded".into()));
        };
        let mut swallowed = Vec::new();
        // Keys of one group share the prefix `{"key":<key>,"start":`.
        if let Ok(group) = serde_json::to_string(&rec.key.key) {
            let prefix = format!("{{\"key\":{group},\"start\":");
            let from = std::ops::Bound::Included(prefix.as_bytes());
            for (old, _) in self.store.range(from, std::ops::Bound::Unbounded) {
                if !old.starts_with(prefix.as_bytes()) {
                    break;
                }
                let Ok(w) = serde_json::from_slice::<Windowed<Value>>(&old) else { continue };
                let inside = w.start >= rec.key.start && w.end <= rec.key.end;
                if inside && old[..] != kb[..] {
                    self.store.put(old.to_vec(), None, rec.ts, cx);
                    swallowed.push(w);
                }
            }
        }
        self.store.put(kb, Some(vb), rec.ts, cx);
        // As in ksqlDB, each swallowed session's row is deleted downstream (a tombstone) before
        // the merged session's row.
        for w in swallowed {
            // Stamped with the swallowed session's end (its last event), as ksqlDB does.
            let ts = w.end;
            self.down.push(Rec { key: w, value: None, ts }, cx);
        }
        self.down.push(rec, cx);
    }
}
