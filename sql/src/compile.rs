//! `CREATE STREAM|TABLE ... AS SELECT` → a [`Processor`] built with [`ProcessorBuilder`].
//!
//! - Streams (no GROUP BY): source → decode → WHERE + projection (one node) → topic.
//! - A table from a table (no GROUP BY): each change of the source table → WHERE + projection
//!   → table `name` (a rejected row or a deletion deletes the key, if there) → its changes.
//!   With GROUP BY, each change becomes the key's old row taken out (kept in
//!   `<name>-source`) and its new row added, through the same aggregation as a stream's.
//! - Tables (GROUP BY, `group.rs`): source → decode → WHERE + `[group values, aggregate
//!   arguments]` → re-key by the group values → repartition (when the source has more than
//!   one partition) → aggregate (or window + aggregate) into table `name` → its changes to
//!   topic `name`. A windowed query aggregates into `<name>-windows` and projects each
//!   change, with its window, into table `name`.
//! - Joins (`join.rs`): stream–table (a lookup) and stream–stream (`WITHIN`, windowed); each
//!   input is re-keyed by its side of `ON` and repartitioned when needed; the joined row holds
//!   both sides' columns, named in output as ksqlDB names them. The target's partition count
//!   is the number of tasks the joined stream runs in.
//! - Keys (ksqlDB's rules): the key column — the source's, the PARTITION BY expression, the
//!   first projected `ON` column of a join, the group values — is projected once and written
//!   to the record key only; the output's value format is the source's unless `WITH` says.
//!
//! This module wires plans (`plan.rs`) into the builder; it checks nothing the planner has not.
//! Invariant: the builder calls are made in the same order for the same statement, so a
//! query's operator ids, internal topics and table names are the same at every compilation
//! (what lets a restarted processor find its snapshots and changelogs).

use std::sync::Arc;

use eddy_processor::operator_api::{Cx, Down, Node, TableStore};
use eddy_processor::{Processor, ProcessorBuilder, Rec, RecordError};
use serde_json::Value;

use crate::aggregate::AggFn;
use crate::ast::{CreateAs, Expr, ExprKind, Select, SelectItem, SourceKind, SqlType};
use crate::catalog::Catalog;
use crate::codec::{NamedRow, ObjectWriter, RowCodec, SqlKey, TableRowCodec, ValueWriter};
use crate::error::SqlError;
use crate::expr::{Row, bind, eval, truth};
use crate::functions::FunctionRegistry;
use crate::group::{GroupInputs, group};
use crate::join::{self, Joined, Left};
use crate::plan::{GroupPlan, Scope, key_items, projection, read_columns, where_clause};
use crate::properties::Props;
use crate::row_reader::RowReader;
use crate::source::{Materialized, SourceInfo, ValueFormat};
use crate::stream::{Rows, decoded_stream, is_tombstone, project_stream, rekey};
use crate::types::Checker;

/// A compiled persistent query.
#[derive(Debug, Clone)]
pub struct CompiledQuery {
    pub processor: Processor,
    /// The stream or table it creates (for the catalog).
    pub target: SourceInfo,
}

/// Compiles `stmt` against `catalog` as version `version` of processor `stmt.name`.
pub fn compile(
    stmt: &CreateAs,
    catalog: &Catalog,
    registry: &Arc<FunctionRegistry>,
    version: u32,
) -> Result<CompiledQuery, SqlError> {
    // As in ksqlDB, a persistent query without EMIT emits changes.
    let select = &stmt.select;
    let from = catalog.lookup(select.from.pos, &select.from.name)?.clone();
    if from.kind == SourceKind::Table {
        check_table_source(stmt, &from)?;
    }
    let b = ProcessorBuilder::new(&stmt.name, version);
    let (rows, scope, tasks) = source(&b, &from, select, catalog, registry)?;
    let mut target = target(stmt, tasks)?;
    let checker = Checker { schema: &scope.schema, registry, aggs: &[], keys: &[] };
    let filter = where_clause(select, &scope, &checker)?;
    match (stmt.kind, select.group_by.is_empty()) {
        (SourceKind::Stream, true) => {
            if select.window.is_some() || select.having.is_some() {
                return Err(SqlError::Invalid {
                    pos: select.pos,
                    message: "WINDOW and HAVING need GROUP BY (and CREATE TABLE)".into(),
                });
            }
            let input = StreamInput { from: &from, scope: &scope, checker: &checker, rows };
            stream_query(stmt, input, filter, registry, &mut target)?;
        }
        (SourceKind::Table, false) => {
            let mut plan = GroupPlan::new(select, &scope, &checker)?;
            if from.kind == SourceKind::Table {
                check_table_aggregates(&plan, select)?;
            }
            plan.describe(&mut target);
            // ksqlDB's rule: the group values are projected, and go to the record key only.
            let keys: Vec<String> = plan.keys.iter().map(key_label).collect();
            let is_key = |e: &Expr| match e.kind {
                ExprKind::KeyRef(j) => Some(j),
                _ => None,
            };
            let of = key_items(&stmt.name, stmt.pos, &plan.items, &keys, is_key)?;
            let mut of = of.into_iter();
            plan.items.retain(|_| of.next().flatten().is_none());
            let values: Vec<(String, SqlType)> = plan
                .columns
                .iter()
                .filter(|(n, _)| plan.items.iter().any(|(m, _)| m == n))
                .cloned()
                .collect();
            target.format = output_format(stmt, &from, &values)?;
            let mut inputs = GroupInputs::new(&plan, filter, scope.layout(), registry.clone());
            let rows = if from.kind == SourceKind::Table {
                // Each change of a table row takes the old row out of its group, then adds
                // the new one.
                inputs.signed = true;
                retractions(&rows, &target.name, scope.layout().columns.len())?
            } else {
                rows
            };
            group(&rows, inputs, plan, registry, &target)?;
        }
        (SourceKind::Stream, false) => {
            return Err(SqlError::Invalid {
                pos: stmt.pos,
                message: "GROUP BY makes a table: use CREATE TABLE ... AS SELECT".into(),
            });
        }
        (SourceKind::Table, true) if from.kind == SourceKind::Table => {
            let input = StreamInput { from: &from, scope: &scope, checker: &checker, rows };
            table_query(stmt, input, filter, registry, &mut target)?;
        }
        (SourceKind::Table, true) => {
            return Err(SqlError::Invalid {
                pos: stmt.pos,
                message: "CREATE TABLE ... AS SELECT needs GROUP BY (or use CREATE STREAM)".into(),
            });
        }
    }
    check_timestamp(stmt, &target)?;
    Ok(CompiledQuery { processor: b.build()?, target })
}

/// What reading a table in a persistent query allows: a table made from it by projection and
/// WHERE (`CREATE TABLE ... AS SELECT ... FROM table`); not yet its aggregation (which needs
/// the rows a change replaces) nor a join of it; a stream from it is refused as in ksqlDB.
fn check_table_source(stmt: &CreateAs, from: &SourceInfo) -> Result<(), SqlError> {
    let select = &stmt.select;
    if stmt.kind == SourceKind::Stream {
        return Err(SqlError::Invalid {
            pos: stmt.pos,
            message: format!(
                "invalid result type: a SELECT from table {} produces a TABLE; use CREATE TABLE \
                 ... AS SELECT",
                from.name
            ),
        });
    }
    if select.join.is_some() || select.window.is_some() {
        return Err(SqlError::Unsupported {
            pos: select.from.pos,
            what: format!("windowing or joining table {} in a persistent query", from.name),
            why: "a table is projected, filtered or aggregated (GROUP BY) here; windows and \
                  joins read streams"
                .into(),
        });
    }
    Ok(())
}

/// The aggregates of a table's GROUP BY must be able to take a value back out (ksqlDB's table
/// aggregates); a column neither grouped nor aggregated is refused, as ksqlDB does.
fn check_table_aggregates(plan: &GroupPlan, select: &Select) -> Result<(), SqlError> {
    if let Some((f, arg, _)) = plan.aggs.iter().find(|(f, _, _)| !f.undoable()) {
        let message = match (f, &arg.kind) {
            (AggFn::Latest, ExprKind::Column { name, .. }) => format!(
                "non-aggregate SELECT expression(s) not part of GROUP BY: {name} (aggregating a \
                 table, every column is grouped or aggregated)"
            ),
            _ => format!(
                "the aggregation function {f:?} cannot be applied to a table source, only to a \
                 stream source (COUNT, SUM, AVG, COLLECT_LIST, COLLECT_SET and HISTOGRAM can)"
            ),
        };
        let pos = if arg.pos.line > 0 { arg.pos } else { select.pos };
        return Err(SqlError::Invalid { pos, message });
    }
    Ok(())
}

/// A table's changes as signed rows for its aggregation: per change, the key's old row (if
/// any) followed by `true` (to take out), then the new row (unless a deletion) followed by
/// `false`. The rows are kept in table `<name>-source`; a keyless record is dropped.
fn retractions(rows: &Rows, name: &str, width: usize) -> Result<Rows, SqlError> {
    let table = rows.materialize(&format!("{name}-source"), move |store, down| {
        Box::new(Retractions { store, down, width })
    })?;
    Ok(table.changes())
}

/// See [`retractions`].
struct Retractions {
    store: Arc<TableStore>,
    down: Down<Value, Vec<Value>>,
    width: usize,
}

impl Node<Value, Vec<Value>> for Retractions {
    fn push(&mut self, rec: Rec<Value, Vec<Value>>, cx: &mut Cx) {
        if rec.key.is_null() {
            return;
        }
        let Ok(kb) = serde_json::to_vec(&rec.key) else {
            return cx.set_aside(&RecordError::Key("a key JSON cannot hold".into()));
        };
        let old: Option<Vec<Value>> =
            self.store.get(&kb).and_then(|b| serde_json::from_slice(&b).ok());
        let new = (!is_tombstone(&rec.value, self.width)).then_some(rec.value);
        match new.as_ref().map(serde_json::to_vec) {
            Some(Ok(vb)) => self.store.put(kb, Some(vb), rec.ts, cx),
            Some(Err(e)) => return cx.set_aside(&RecordError::State(e.to_string())),
            None => self.store.put(kb, None, rec.ts, cx),
        }
        if let Some(mut row) = old {
            row.push(Value::Bool(true));
            self.down.push(Rec { key: rec.key.clone(), value: row, ts: rec.ts }, cx);
        }
        if let Some(mut row) = new {
            row.push(Value::Bool(false));
            self.down.push(Rec { key: rec.key, value: row, ts: rec.ts }, cx);
        }
    }
}

/// `CREATE TABLE ... AS SELECT ... FROM table [WHERE]`: each change of the source table (a row
/// or a deletion) projected into table `name` and its topic. A row WHERE rejects deletes its
/// key; a deletion of a key the new table does not hold writes nothing (ksqlDB's KTable filter);
/// a record without a key is dropped. The key column is projected once, in the record key only.
fn table_query(
    stmt: &CreateAs,
    input: StreamInput<'_>,
    filter: Option<Expr>,
    registry: &Arc<FunctionRegistry>,
    target: &mut SourceInfo,
) -> Result<(), SqlError> {
    let StreamInput { from, scope, checker, rows } = input;
    let mut items = projection(&stmt.select, scope, checker)?;
    target.columns = items.iter().map(|(n, _, t)| (n.clone(), t.clone())).collect();
    if let Some(key) = &from.key_column {
        let key_expr = Expr::new(stmt.pos, ExprKind::Column { qualifier: None, name: key.clone() });
        key_out_of_values(stmt, &mut items, key.clone(), &key_expr, target)?;
    }
    let writer = value_writer(stmt, from, &items, target)?;
    let names = writer.objects.names().clone();
    target.materialized = Some(Materialized {
        processor: target.name.clone(),
        windowed: false,
        key_columns: target.key_column.iter().cloned().collect(),
    });
    let layout = scope.layout();
    let width = layout.columns.len();
    let exprs: Vec<Expr> = items.iter().map(|(_, e, _)| bind(e, layout)).collect();
    let filter = filter.map(|f| bind(&f, layout));
    let (registry, changes) = (registry.clone(), Arc::new((filter, exprs)));
    let projected = rows.then(move |rec: Rec<Value, Vec<Value>>, cx, down| {
        if rec.key.is_null() {
            return;
        }
        let (filter, exprs) = &*changes;
        let row = (!is_tombstone(&rec.value, width))
            .then(|| filter_project(filter.as_ref(), exprs, &rec, &registry))
            .flatten()
            .map(|values| NamedRow { names: names.clone(), values });
        down.push(Rec { key: rec.key, value: row, ts: rec.ts }, cx);
    });
    let table =
        projected.materialize(&target.name, |store, down| Box::new(TableUpsert { store, down }))?;
    table.changes().to(&target.topic, SqlKey, TableRowCodec(writer));
    Ok(())
}

/// WHERE and the projection over one row: `None` when WHERE is not true; a failing column is
/// NULL (as for streams).
fn filter_project(
    filter: Option<&Expr>,
    exprs: &[Expr],
    rec: &Rec<Value, Vec<Value>>,
    registry: &FunctionRegistry,
) -> Option<Vec<Value>> {
    let row = Row::new(&rec.value, rec.ts, &rec.key);
    if let Some(f) = filter
        && truth(&eval(f, &row, registry).ok()?) != Some(true)
    {
        return None;
    }
    Some(exprs.iter().map(|e| eval(e, &row, registry).unwrap_or(Value::Null)).collect())
}

/// The node feeding a table made from a table: a row sets its key; a deletion deletes it, and
/// goes downstream only if the key was there.
struct TableUpsert {
    store: Arc<TableStore>,
    down: Down<Value, Option<NamedRow>>,
}

impl Node<Value, Option<NamedRow>> for TableUpsert {
    fn push(&mut self, rec: Rec<Value, Option<NamedRow>>, cx: &mut Cx) {
        let Ok(kb) = serde_json::to_vec(&rec.key) else {
            return cx.set_aside(&RecordError::Key("a key JSON cannot hold".into()));
        };
        match &rec.value {
            None if self.store.get(&kb).is_none() => return,
            None => self.store.put(kb, None, rec.ts, cx),
            Some(row) => match serde_json::to_vec(row) {
                Ok(vb) => self.store.put(kb, Some(vb), rec.ts, cx),
                Err(e) => return cx.set_aside(&RecordError::State(e.to_string())),
            },
        }
        self.down.push(rec, cx);
    }
}

/// A stream query's input: its source, scope, and decoded (or joined) rows.
struct StreamInput<'a> {
    from: &'a SourceInfo,
    scope: &'a Scope,
    checker: &'a Checker<'a>,
    rows: Rows,
}

/// `CREATE STREAM ... AS SELECT` without GROUP BY: (re-key by PARTITION BY) → WHERE +
/// projection → topic. By ksqlDB's rules the key column (the source's, or the PARTITION BY
/// expression) is projected once and goes to the record key only; with `SELECT *` and
/// PARTITION BY the source's key column becomes the last value column.
fn stream_query(
    stmt: &CreateAs,
    input: StreamInput<'_>,
    filter: Option<Expr>,
    registry: &Arc<FunctionRegistry>,
    target: &mut SourceInfo,
) -> Result<(), SqlError> {
    let StreamInput { from, scope, checker, rows } = input;
    let select = &stmt.select;
    let mut items = projection(select, scope, checker)?;
    let by = match &select.partition_by {
        Some(p) if select.join.is_some() => {
            return Err(SqlError::Unsupported {
                pos: p.pos,
                what: "PARTITION BY with a JOIN".into(),
                why: "a join's output is keyed by its join key; re-key it in a second query".into(),
            });
        }
        Some(p) => {
            Some(partition_key(stmt, from.key_column.clone(), scope, checker, p, &mut items)?)
        }
        None => None,
    };
    if let Some(j) = &select.join {
        join_key(stmt, scope, j, &mut items, target)?;
    }
    let key = match &by {
        Some(by) => by.key.clone(),
        None if select.join.is_none() => from.key_column.clone().map(|k| {
            let e = Expr::new(stmt.pos, ExprKind::Column { qualifier: None, name: k.clone() });
            (k, e)
        }),
        None => None,
    };
    if let Some((name, expr)) = key {
        target.columns = items.iter().map(|(n, _, t)| (n.clone(), t.clone())).collect();
        key_out_of_values(stmt, &mut items, name, &expr, target)?;
    } else if select.join.is_none() {
        target.columns = items.iter().map(|(n, _, t)| (n.clone(), t.clone())).collect();
    }
    let writer = value_writer(stmt, from, &items, target)?;
    let layout = scope.layout();
    let rows = match by {
        Some(by) => rekey(&rows, bind(&by.expr, layout), registry.clone(), false),
        None => rows,
    };
    let exprs = items.iter().map(|(_, e, _)| bind(e, layout)).collect();
    let filter = filter.map(|f| bind(&f, layout));
    let out = project_stream(&rows, layout.columns.len(), filter, exprs, registry.clone());
    out.to(&target.topic, SqlKey, RowCodec(writer));
    Ok(())
}

/// ksqlDB's rule for one key column (`name`, the expression `key`): it is projected exactly
/// once, becomes the target's key column, and leaves the value columns (`items`).
fn key_out_of_values(
    stmt: &CreateAs,
    items: &mut Vec<(String, Expr, SqlType)>,
    name: String,
    key: &Expr,
    target: &mut SourceInfo,
) -> Result<(), SqlError> {
    let named: Vec<(String, Expr)> = items.iter().map(|(n, e, _)| (n.clone(), e.clone())).collect();
    let of = key_items(&stmt.name, stmt.pos, &named, &[name], |e| e.same_as(key).then_some(0))?;
    let at = of.iter().position(Option::is_some);
    target.key_column = at.and_then(|i| items.get(i)).map(|(n, _, _)| n.clone());
    let mut of = of.into_iter();
    items.retain(|_| of.next().flatten().is_none());
    Ok(())
}

/// ksqlDB's rule for a join's key: the first projected column that is a side of `ON` is the key
/// column, in the record key only (the other side's column, if projected too, stays a value);
/// when `ON` equates two columns, one of them must be projected.
fn join_key(
    stmt: &CreateAs,
    scope: &Scope,
    join: &crate::ast::Join,
    items: &mut Vec<(String, Expr, SqlType)>,
    target: &mut SourceInfo,
) -> Result<(), SqlError> {
    let ExprKind::Binary { left, right, .. } = &join.on.kind else { return Ok(()) };
    let sides = [scope.resolve(left)?, scope.resolve(right)?];
    let at = items.iter().position(|(_, e, _)| sides.iter().any(|s| s.same_as(e)));
    target.columns = items.iter().map(|(n, _, t)| (n.clone(), t.clone())).collect();
    match at {
        Some(i) => {
            target.key_column = Some(items.remove(i).0);
            Ok(())
        }
        None if sides.iter().all(|s| matches!(s.kind, ExprKind::Column { .. })) => {
            let label = |e: &Expr| match &e.kind {
                ExprKind::Column { qualifier: Some(q), name } => format!("{q}.{name}"),
                ExprKind::Column { name, .. } => name.clone(),
                _ => "the join expression".into(),
            };
            let (l, r) = (label(left), label(right));
            Err(SqlError::Invalid {
                pos: join.on.pos,
                message: format!(
                    "the query used to build {} must include the join expression {l} or {r} in \
                     its projection (eg, SELECT {l}...)",
                    stmt.name
                ),
            })
        }
        None => Ok(()),
    }
}

/// A PARTITION BY planned: the expression records are re-keyed by, and the key column it
/// makes (`None` for `PARTITION BY NULL`, which leaves records without a key).
struct PartitionKey {
    expr: Expr,
    key: Option<(String, Expr)>,
}

/// Resolves `PARTITION BY p`. With `SELECT *` the key column is added when the projection
/// lacks it (named after the column or field, else `KSQL_COL_<n>`) and the source's key
/// column moves to the end of the values, as in ksqlDB.
fn partition_key(
    stmt: &CreateAs,
    source_key: Option<String>,
    scope: &Scope,
    checker: &Checker<'_>,
    p: &Expr,
    items: &mut Vec<(String, Expr, SqlType)>,
) -> Result<PartitionKey, SqlError> {
    let expr = scope.resolve(p)?;
    let ty = checker.infer(&expr)?;
    if matches!(expr.kind, ExprKind::Literal(Value::Null)) {
        return Ok(PartitionKey { expr, key: None });
    }
    let star = stmt.select.items.iter().any(|i| matches!(i, SelectItem::Wildcard(..)));
    let found = items.iter().find(|(_, e, _)| e.same_as(&expr)).map(|(n, _, _)| n.clone());
    let name = match found {
        Some(n) => n,
        None if star => {
            let mut n = expr.default_name().unwrap_or_else(|| "KSQL_COL_0".to_owned());
            let mut i = 0;
            while items.iter().any(|(m, _, _)| *m == n) && expr.default_name().is_none() {
                i += 1;
                n = format!("KSQL_COL_{i}");
            }
            items.insert(0, (n.clone(), expr.clone(), ty));
            n
        }
        None => {
            let label = expr.default_name().unwrap_or_else(|| {
                format!("the expression at line {}, column {}", p.pos.line, p.pos.col)
            });
            return Err(SqlError::Invalid {
                pos: p.pos,
                message: format!(
                    "the query used to build {} must include the partitioning expression {label} \
                     in its projection (eg, SELECT {label}...)",
                    stmt.name
                ),
            });
        }
    };
    if star
        && let Some(old) = &source_key
        && let Some(i) = items.iter().position(|(n, e, _)| n == old && !e.same_as(&expr))
    {
        let moved = items.remove(i);
        items.push(moved);
    }
    Ok(PartitionKey { key: Some((name, expr.clone())), expr })
}

/// How the target's value columns (`items`) are written: its format decided
/// ([`output_format`]) and set on `target`.
fn value_writer(
    stmt: &CreateAs,
    from: &SourceInfo,
    items: &[(String, Expr, SqlType)],
    target: &mut SourceInfo,
) -> Result<ValueWriter, SqlError> {
    let values: Vec<(String, SqlType)> =
        items.iter().map(|(n, _, t)| (n.clone(), t.clone())).collect();
    target.format = output_format(stmt, from, &values)?;
    let names: Arc<[String]> = values.iter().map(|(n, _)| n.clone()).collect();
    let types = values.into_iter().map(|(_, t)| t).collect();
    Ok(ValueWriter::new(ObjectWriter::new(names), types, target.format))
}

/// The target's value format: `VALUE_FORMAT`/`FORMAT` if given, else the source's (as in
/// ksqlDB; eddy's RAW, which holds one text, gives JSON), checked to hold the value columns.
fn output_format(
    stmt: &CreateAs,
    from: &SourceInfo,
    values: &[(String, SqlType)],
) -> Result<ValueFormat, SqlError> {
    let props = Props::new(&stmt.with)?;
    let explicit = props.value_format(stmt.pos)?;
    let format = explicit.unwrap_or(match from.format {
        // RAW holds one text, and wrapping is not inherited (as in ksqlDB).
        ValueFormat::Raw | ValueFormat::JsonValue => ValueFormat::Json,
        other => other,
    });
    let invalid = |message| SqlError::Invalid { pos: stmt.pos, message };
    let format = format.wrapped(props.wrap_single_value()?, values.len()).map_err(invalid)?;
    format.check_columns(values).map_err(invalid)?;
    Ok(format)
}

/// How a GROUP BY expression is named in errors: its column or field name, else where it is.
fn key_label(e: &Expr) -> String {
    e.default_name().unwrap_or_else(|| {
        format!("(the GROUP BY expression at line {}, column {})", e.pos.line, e.pos.col)
    })
}

/// The stream or table `stmt` creates, before its columns are known: its `WITH` properties,
/// its topic (the statement's name unless given), and one partition per task.
fn target(stmt: &CreateAs, tasks: u32) -> Result<SourceInfo, SqlError> {
    let props = Props::new(&stmt.with)?;
    let mut target = props.source(stmt.pos, &stmt.name, stmt.kind, Vec::new())?;
    if stmt.with.iter().all(|p| p.name != "KAFKA_TOPIC" && p.name != "TOPIC") {
        target.topic = stmt.name.clone();
    }
    target.partitions = tasks;
    Ok(target)
}

/// A `TIMESTAMP` property must name an output column.
fn check_timestamp(stmt: &CreateAs, target: &SourceInfo) -> Result<(), SqlError> {
    match &target.timestamp {
        Some(ts) if !target.columns.iter().any(|(n, _)| n == ts) => Err(SqlError::UnknownColumn {
            pos: stmt.pos,
            name: ts.clone(),
            known: target.columns.iter().map(|(n, _)| n.clone()).collect(),
        }),
        _ => Ok(()),
    }
}

/// The source stream (joined when there is a JOIN), decoded into rows, and its task count.
fn source(
    b: &ProcessorBuilder,
    from: &SourceInfo,
    select: &Select,
    catalog: &Catalog,
    registry: &Arc<FunctionRegistry>,
) -> Result<Joined, SqlError> {
    let mut scope = Scope::of(from, select.from.alias.as_deref());
    match &select.join {
        None => {
            // Only the columns the statement names are decoded, into rows of just those.
            let read = read_columns(select);
            let reader = RowReader::reading(from, |c| read.as_ref().is_none_or(|r| r.contains(c)));
            scope.layout = Some(reader.layout.clone());
            // A plain stream query passes tombstones on (ksqlDB's projection does); grouping
            // and joining skip them.
            let tombstones = select.group_by.is_empty() || from.kind == SourceKind::Table;
            Ok((decoded_stream(b, from, reader, tombstones), scope, from.partitions))
        }
        Some(j) => {
            let rows = decoded_stream(b, from, RowReader::new(from), false);
            join::compile(b, Left { info: from, rows, scope }, j, catalog, registry)
        }
    }
}
