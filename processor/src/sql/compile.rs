//! `CREATE STREAM|TABLE ... AS SELECT` → a [`Processor`] built with [`ProcessorBuilder`].
//!
//! - Streams (no GROUP BY): source → decode → WHERE + projection (one node) → topic.
//! - Tables (GROUP BY): source → decode → WHERE + `[group values, aggregate arguments]` →
//!   re-key by the group values → repartition (when the source has more than one partition)
//!   → aggregate (or window + aggregate) into table `name` → its changes to topic `name`.
//!   A windowed query aggregates into `<name>-windows` and projects each change, with its
//!   window, into table `name`.
//! - Joins (`join.rs`): stream–table (a lookup) and stream–stream (`WITHIN`, windowed); each
//!   input is re-keyed by its side of `ON` and repartitioned when needed; the joined row holds
//!   both sides' columns (a right column whose name is taken is renamed `<RIGHT>_<COL>`). The
//!   target's partition count is the number of tasks the joined stream runs in.
//!
//! A row that fails to evaluate (a bad CAST, a failing function) is set aside like a record
//! that does not decode: counted, and dead-lettered when the processor has a dead-letter topic.

use std::sync::Arc;

use serde_json::Value;

use super::aggregate::{AggFn, Projection, SqlAgg, SqlWindowAgg, WindowResult, output_names};
use super::ast::*;
use super::catalog::{Catalog, Materialized, Props, RowReader, SourceInfo, ValueFormat};
use super::codec::{
    JsonRowCodec, KeyDecoder, NamedRow, ObjectWriter, RowCodec, RowDecoder, SqlKey, TableRowCodec,
    WindowedKey,
};
use super::error::SqlError;
use super::expr::{Row, bind, eval, truth};
use super::functions::{FunctionRegistry, is_aggregate};
use super::types::{Checker, Schema, SqlType, mismatch};
use crate::builder::{ProcessorBuilder, Stream};
use crate::error::RecordError;
use crate::graph::Rec;
use crate::ops::window::{Emit, Windowed, Windows};
use crate::processor::Processor;

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
    let select = &stmt.select;
    if select.emit.is_none() {
        return Err(SqlError::Invalid {
            pos: select.pos,
            message: "a persistent query needs EMIT CHANGES (or EMIT FINAL for windowed tables)"
                .into(),
        });
    }
    let from = catalog.lookup(select.from.pos, &select.from.name)?.clone();
    if from.kind == SourceKind::Table {
        return Err(SqlError::Unsupported {
            pos: select.from.pos,
            what: format!("reading table {} in a persistent query", from.name),
            why: "only streams are read (tables are joined); table aggregations come later".into(),
        });
    }
    let b = ProcessorBuilder::new(&stmt.name, version);
    let (stream, scope, tasks) = source(&b, &from, select, catalog, registry)?;
    let props = Props::new(&stmt.with)?;
    let mut target = props.source(stmt.pos, &stmt.name, stmt.kind, Vec::new())?;
    if stmt.with.iter().all(|p| p.name != "KAFKA_TOPIC" && p.name != "TOPIC") {
        target.topic = stmt.name.clone();
    }
    target.partitions = tasks;
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
            let items = projection(select, &scope, &checker)?;
            target.columns = items.iter().map(|(n, _, t)| (n.clone(), t.clone())).collect();
            let names: Arc<[String]> = items.iter().map(|(n, _, _)| n.clone()).collect();
            let exprs = items.iter().map(|(_, e, _)| bind(e, scope.layout())).collect();
            let filter = filter.map(|f| bind(&f, scope.layout()));
            let out = project_stream(&stream, filter, exprs, registry.clone());
            out.to(&target.topic, SqlKey, RowCodec(ObjectWriter::new(names)));
        }
        (SourceKind::Table, false) => {
            group(&stream, select, &scope, &checker, filter, registry, &mut target)?;
        }
        (SourceKind::Stream, false) => {
            return Err(SqlError::Invalid {
                pos: stmt.pos,
                message: "GROUP BY makes a table: use CREATE TABLE ... AS SELECT".into(),
            });
        }
        (SourceKind::Table, true) => {
            return Err(SqlError::Invalid {
                pos: stmt.pos,
                message: "CREATE TABLE ... AS SELECT needs GROUP BY (or use CREATE STREAM)".into(),
            });
        }
    }
    if let Some(ts) = &target.timestamp
        && !target.columns.iter().any(|(n, _)| n == ts)
    {
        return Err(SqlError::UnknownColumn {
            pos: stmt.pos,
            name: ts.clone(),
            known: target.columns.iter().map(|(n, _)| n.clone()).collect(),
        });
    }
    target.format = ValueFormat::Json;
    let processor = b.build().map_err(|e| SqlError::Build(e.to_string()))?;
    Ok(CompiledQuery { processor, target })
}

/// The columns in scope and how qualified names map to them.
pub(crate) struct Scope {
    pub schema: Schema,
    /// The columns the scope's rows hold, in order, when not all of `schema` (a source whose
    /// unread columns are not decoded): what expressions are bound to.
    pub(crate) layout: Option<Schema>,
    /// (qualifier, column) → column in the row.
    pub(crate) qualified: Vec<(String, String, String)>,
    pub(crate) qualifiers: Vec<String>,
}

impl Scope {
    pub(crate) fn of(info: &SourceInfo, alias: Option<&str>) -> Self {
        let mut qualifiers = vec![info.name.clone()];
        qualifiers.extend(alias.map(str::to_owned));
        let mut qualified = Vec::new();
        for q in &qualifiers {
            for (c, _) in &info.columns {
                qualified.push((q.clone(), c.clone(), c.clone()));
            }
        }
        Self { schema: info.schema(), layout: None, qualified, qualifiers }
    }

    /// The columns rows of this scope hold, in order.
    pub(crate) fn layout(&self) -> &Schema {
        self.layout.as_ref().unwrap_or(&self.schema)
    }

    /// Strips qualifiers (`g.col` → the row's column), checking them.
    pub fn resolve(&self, e: &Expr) -> Result<Expr, SqlError> {
        let mut e = e.clone();
        self.walk(&mut e)?;
        Ok(e)
    }

    fn walk(&self, e: &mut Expr) -> Result<(), SqlError> {
        if let ExprKind::Column { qualifier: Some(q), name } = &e.kind {
            if !self.qualifiers.contains(q) {
                return Err(SqlError::UnknownSource { pos: e.pos, name: q.clone() });
            }
            let found = self.qualified.iter().find(|(a, c, _)| a == q && c == name);
            let column = match found {
                Some((_, _, col)) => col.clone(),
                None if matches!(name.as_str(), "ROWTIME" | "ROWKEY") => name.clone(),
                None => {
                    return Err(SqlError::UnknownColumn {
                        pos: e.pos,
                        name: format!("{q}.{name}"),
                        known: self.schema.names(),
                    });
                }
            };
            e.kind = ExprKind::Column { qualifier: None, name: column };
            return Ok(());
        }
        for child in children(e) {
            self.walk(child)?;
        }
        Ok(())
    }
}

/// The direct sub-expressions of `e`.
pub(crate) fn children(e: &mut Expr) -> Vec<&mut Expr> {
    match &mut e.kind {
        ExprKind::Binary { left, right, .. } => vec![left, right],
        ExprKind::Not(x) | ExprKind::Neg(x) => vec![x],
        ExprKind::IsNull { expr, .. } | ExprKind::Cast { expr, .. } => vec![expr],
        ExprKind::Like { expr, pattern, .. } => vec![expr, pattern],
        ExprKind::Between { expr, low, high, .. } => vec![expr, low, high],
        ExprKind::InList { expr, list, .. } => {
            let mut v: Vec<&mut Expr> = vec![expr];
            v.extend(list.iter_mut());
            v
        }
        ExprKind::Case { operand, whens, otherwise } => {
            let mut v: Vec<&mut Expr> = Vec::new();
            if let Some(o) = operand {
                v.push(o);
            }
            for (w, t) in whens {
                v.push(w);
                v.push(t);
            }
            if let Some(o) = otherwise {
                v.push(o);
            }
            v
        }
        ExprKind::Index { base, index } => vec![base, index],
        ExprKind::Field { base, .. } => vec![base],
        ExprKind::Call { args, .. } | ExprKind::Array(args) => args.iter_mut().collect(),
        _ => Vec::new(),
    }
}

/// The source stream (joined when there is a JOIN), decoded into rows, and its task count.
fn source(
    b: &ProcessorBuilder,
    from: &SourceInfo,
    select: &Select,
    catalog: &Catalog,
    registry: &Arc<FunctionRegistry>,
) -> Result<super::join::Joined, SqlError> {
    let mut scope = Scope::of(from, select.from.alias.as_deref());
    match &select.join {
        None => {
            // Only the columns the statement names are decoded, into rows of just those.
            let read = read_columns(select);
            let reader = RowReader::reading(from, |c| read.as_ref().is_none_or(|r| r.contains(c)));
            scope.layout = Some(reader.layout.clone());
            Ok((decoded_stream(b, from, reader), scope, from.partitions))
        }
        Some(join) => {
            let stream = decoded_stream(b, from, RowReader::new(from));
            super::join::compile(b, stream, scope, from, join, catalog, registry)
        }
    }
}

/// Every column name `select` mentions (under any qualifier); `None` when it selects `*`.
fn read_columns(select: &Select) -> Option<std::collections::BTreeSet<String>> {
    let mut stack: Vec<Expr> = Vec::new();
    for item in &select.items {
        match item {
            SelectItem::Wildcard(_) => return None,
            SelectItem::Expr { expr, .. } => stack.push(expr.clone()),
        }
    }
    stack.extend(select.filter.iter().chain(&select.group_by).chain(&select.having).cloned());
    let mut names = std::collections::BTreeSet::new();
    while let Some(mut e) = stack.pop() {
        if let ExprKind::Column { name, .. } = &e.kind {
            names.insert(name.clone());
        }
        stack.extend(children(&mut e).into_iter().map(|c| c.clone()));
    }
    Some(names)
}

/// Records of `info.topic` as (key, row) decoded by `reader`; the event time from `TIMESTAMP`
/// if declared.
pub(crate) fn decoded_stream(
    b: &ProcessorBuilder,
    info: &SourceInfo,
    reader: RowReader,
) -> Stream<Value, Vec<Value>> {
    let reader = Arc::new(reader);
    let key = KeyDecoder(info.key_type().cloned());
    let raw = b.stream::<Value, Vec<Value>>(&info.topic, key, RowDecoder(reader.clone()));
    if reader.key_column.is_none() && reader.key_property.is_none() && reader.timestamp.is_none() {
        return raw;
    }
    raw.then(move |mut rec: Rec<Value, Vec<Value>>, cx, down| {
        reader.complete(&mut rec.key, &mut rec.value, &mut rec.ts);
        down.push(rec, cx)
    })
}

/// The query's `WHERE`, resolved in `scope` and checked to be a boolean.
pub(crate) fn where_clause(
    select: &Select,
    scope: &Scope,
    checker: &Checker<'_>,
) -> Result<Option<Expr>, SqlError> {
    let Some(f) = &select.filter else { return Ok(None) };
    let f = scope.resolve(f)?;
    checker.expect_bool(&f, "WHERE")?;
    Ok(Some(f))
}

/// The select list of a stream query: (name, resolved expression, type); `*` expands.
pub(crate) fn projection(
    select: &Select,
    scope: &Scope,
    checker: &Checker<'_>,
) -> Result<Vec<(String, Expr, SqlType)>, SqlError> {
    let names = output_names(&select.items);
    let mut out: Vec<(String, Expr, SqlType)> = Vec::new();
    for (item, name) in select.items.iter().zip(names) {
        match item {
            SelectItem::Wildcard(pos) => {
                for (c, t) in &scope.schema.columns {
                    let e = Expr::new(*pos, ExprKind::Column { qualifier: None, name: c.clone() });
                    out.push((c.clone(), e, t.clone()));
                }
            }
            SelectItem::Expr { expr, .. } => {
                let e = scope.resolve(expr)?;
                let t = checker.infer(&e)?;
                out.push((name, e, t));
            }
        }
    }
    check_unique(&out)?;
    Ok(out)
}

fn check_unique(items: &[(String, Expr, SqlType)]) -> Result<(), SqlError> {
    for (i, (n, e, _)) in items.iter().enumerate() {
        if items[..i].iter().any(|(m, _, _)| m == n) {
            return Err(SqlError::Invalid {
                pos: e.pos,
                message: format!("output column {n} appears twice; give one an alias with AS"),
            });
        }
    }
    Ok(())
}

/// WHERE + projection as one node (expressions bound to the input's schema).
fn project_stream(
    stream: &Stream<Value, Vec<Value>>,
    filter: Option<Expr>,
    exprs: Vec<Expr>,
    registry: Arc<FunctionRegistry>,
) -> Stream<Value, Vec<Value>> {
    let (filter, exprs) = (Arc::new(filter), Arc::new(exprs));
    stream.then(move |rec: Rec<Value, Vec<Value>>, cx, down| {
        let row = Row::new(&rec.value, rec.ts, &rec.key);
        let out = (|| {
            if let Some(f) = filter.as_ref()
                && truth(&eval(f, &row, &registry)?) != Some(true)
            {
                return Ok(None);
            }
            let values =
                exprs.iter().map(|e| eval(e, &row, &registry)).collect::<Result<_, _>>()?;
            Ok::<_, super::error::EvalError>(Some(values))
        })();
        match out {
            Ok(Some(value)) => down.push(Rec { key: rec.key, value, ts: rec.ts }, cx),
            Ok(None) => {}
            Err(e) => cx.set_aside(&RecordError::Value(format!("sql: {e}"))),
        }
    })
}

/// A GROUP BY query's parts after rewriting the select list.
struct Grouping {
    keys: Vec<Expr>,
    key_types: Vec<SqlType>,
    /// (function, argument) per aggregate call.
    aggs: Vec<(AggFn, Expr, SqlType)>,
}

impl Grouping {
    /// Replaces group expressions by `KeyRef`, aggregate calls by `AggRef`, and a column that
    /// is neither by `AggRef` of an implicit `LATEST_BY_OFFSET` (an eddy extension).
    fn rewrite(&mut self, e: &mut Expr, checker: &Checker<'_>) -> Result<(), SqlError> {
        if let Some(j) = self.keys.iter().position(|k| k.same_as(e)) {
            e.kind = ExprKind::KeyRef(j);
            return Ok(());
        }
        let (f, arg) = match &e.kind {
            ExprKind::Call { name, args, .. } if is_aggregate(name) => {
                let f = AggFn::from_name(e.pos, name, args)?;
                let arg = args.first().cloned().unwrap_or(Expr::new(e.pos, ExprKind::Star));
                match (f, &arg.kind) {
                    (AggFn::Count, ExprKind::Star) => (AggFn::CountAll, arg),
                    _ => (f, arg),
                }
            }
            ExprKind::Column { name, .. }
                if matches!(name.as_str(), "WINDOWSTART" | "WINDOWEND") =>
            {
                return Ok(());
            }
            ExprKind::Column { .. } => (AggFn::Latest, e.clone()),
            _ => {
                for child in children(e) {
                    self.rewrite(child, checker)?;
                }
                return Ok(());
            }
        };
        if let ExprKind::Call { name, .. } = &arg.kind
            && is_aggregate(name)
        {
            return Err(SqlError::Invalid {
                pos: arg.pos,
                message: "aggregates cannot be nested".into(),
            });
        }
        let arg_type = checker.infer(&arg)?;
        if matches!(f, AggFn::Sum | AggFn::Avg) && !arg_type.is_numeric() {
            return Err(mismatch(&arg, &arg_type, "a number", &format!("{f:?}").to_uppercase()));
        }
        let i = match self.aggs.iter().position(|(g, a, _)| *g == f && a.same_as(&arg)) {
            Some(i) => i,
            None => {
                self.aggs.push((f, arg, f.result_type(&arg_type)));
                self.aggs.len() - 1
            }
        };
        e.kind = ExprKind::AggRef(i);
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
fn group(
    stream: &Stream<Value, Vec<Value>>,
    select: &Select,
    scope: &Scope,
    checker: &Checker<'_>,
    filter: Option<Expr>,
    registry: &Arc<FunctionRegistry>,
    target: &mut SourceInfo,
) -> Result<(), SqlError> {
    let keys = select.group_by.iter().map(|k| scope.resolve(k)).collect::<Result<Vec<_>, _>>()?;
    let key_types = keys.iter().map(|k| checker.infer(k)).collect::<Result<Vec<_>, _>>()?;
    let mut g = Grouping { keys, key_types, aggs: Vec::new() };
    let names = output_names(&select.items);
    let mut items = Vec::new();
    for (item, name) in select.items.iter().zip(names) {
        let SelectItem::Expr { expr, .. } = item else {
            return Err(SqlError::Invalid {
                pos: select.pos,
                message: "SELECT * cannot be used with GROUP BY; list the columns".into(),
            });
        };
        let mut e = scope.resolve(expr)?;
        g.rewrite(&mut e, checker)?;
        items.push((name, e));
    }
    let having = match &select.having {
        Some(h) => {
            let mut h = scope.resolve(h)?;
            g.rewrite(&mut h, checker)?;
            Some(h)
        }
        None => None,
    };
    // Types of the output columns.
    let mut schema = checker.schema.clone();
    schema.windowed = select.window.is_some();
    let agg_types: Vec<SqlType> = g.aggs.iter().map(|(_, _, t)| t.clone()).collect();
    let post = Checker { schema: &schema, registry, aggs: &agg_types, keys: &g.key_types };
    let mut columns = Vec::new();
    for (name, e) in &items {
        columns.push((name.clone(), post.infer(e)?));
    }
    let typed: Vec<(String, Expr, SqlType)> = items
        .iter()
        .zip(&columns)
        .map(|((n, e), (_, t))| (n.clone(), e.clone(), t.clone()))
        .collect();
    check_unique(&typed)?;
    if let Some(h) = &having {
        post.expect_bool(h, "HAVING")?;
    }
    let key_columns: Vec<String> = (0..g.keys.len())
        .filter_map(|j| {
            items.iter().find(|(_, e)| e.kind == ExprKind::KeyRef(j)).map(|(n, _)| n.clone())
        })
        .collect();
    target.columns = columns;
    target.key_property = key_columns.first().cloned().filter(|_| g.keys.len() == 1);
    target.materialized = Some(Materialized {
        processor: target.name.clone(),
        windowed: select.window.is_some(),
        key_columns,
    });

    // Rows → (group key, group input).
    let schema = scope.layout();
    let (key_exprs, arg_exprs) = (
        Arc::new(g.keys.iter().map(|k| bind(k, schema)).collect::<Vec<_>>()),
        Arc::new(
            g.aggs
                .iter()
                .filter(|(f, _, _)| *f != AggFn::CountAll)
                .map(|(_, a, _)| bind(a, schema))
                .collect::<Vec<_>>(),
        ),
    );
    let filter = Arc::new(filter.map(|f| bind(&f, schema)));
    // A GROUP BY value that is a column by itself, and the only one reading that column, is
    // moved out of the row (which is dropped after) instead of copied.
    let slot_of = |e: &Expr| match e.kind {
        ExprKind::Slot { index, .. } => Some(index),
        _ => None,
    };
    let moves: Arc<Vec<Option<usize>>> = Arc::new(
        key_exprs
            .iter()
            .map(|k| {
                slot_of(k)
                    .filter(|i| key_exprs.iter().filter(|o| slot_of(o) == Some(*i)).count() == 1)
            })
            .collect(),
    );
    let reg = registry.clone();
    let windowed = select.window.is_some();
    let keyed = stream.then(move |mut rec: Rec<Value, Vec<Value>>, cx, down| {
        let row = Row::new(&rec.value, rec.ts, &rec.key);
        let out = (|| {
            if let Some(f) = filter.as_ref()
                && truth(&eval(f, &row, &reg)?) != Some(true)
            {
                return Ok(None);
            }
            let mut args = Vec::with_capacity(arg_exprs.len());
            for a in arg_exprs.iter() {
                args.push(eval(a, &row, &reg)?);
            }
            let key = |j: usize| match moves[j] {
                Some(_) => Ok(Value::Null),
                None => eval(&key_exprs[j], &row, &reg),
            };
            let keys = match key_exprs.len() {
                1 => GroupKey::One(key(0)?),
                n => GroupKey::Many((0..n).map(key).collect::<Result<_, _>>()?),
            };
            Ok::<_, super::error::EvalError>(Some((keys, args)))
        })();
        let take = |values: &mut Vec<Value>, j: usize, into: &mut Value| {
            if let Some(v) = moves[j].and_then(|i| values.get_mut(i)) {
                *into = std::mem::take(v);
            }
        };
        // Unwindowed accumulators take the group values from the key when they are made
        // (`SqlAgg::init_keyed`); window accumulators from each row.
        let (key, value) = match out {
            Ok(None) => return,
            Err(e) => return cx.set_aside(&RecordError::Value(format!("sql: {e}"))),
            Ok(Some((GroupKey::One(mut v), args))) => {
                take(&mut rec.value, 0, &mut v);
                if windowed { (v.clone(), with_keys(vec![v], args)) } else { (v, args) }
            }
            Ok(Some((GroupKey::Many(mut keys), args))) => {
                for (j, v) in keys.iter_mut().enumerate() {
                    take(&mut rec.value, j, v);
                }
                if windowed {
                    (Value::Array(keys.clone()), with_keys(keys, args))
                } else {
                    (Value::Array(keys), args)
                }
            }
        };
        down.push(Rec { key, value, ts: rec.ts }, cx)
    });
    let keyed =
        if target.partitions > 1 { keyed.repartition("groupby", target.partitions) } else { keyed };
    let fns: Vec<AggFn> = g.aggs.iter().map(|(f, _, _)| *f).collect();
    let projection = Projection::new(
        items.iter().map(|(n, _)| n.clone()).collect(),
        items.into_iter().map(|(_, e)| e).collect(),
        having,
        registry.clone(),
    );
    let build = |e: crate::Error| SqlError::Build(e.to_string());
    match &select.window {
        None => {
            let agg = SqlAgg { fns, projection, group_width: g.keys.len() };
            let table = keyed.aggregate(&target.name, agg).map_err(build)?;
            table.changes().to(&target.topic, SqlKey, JsonRowCodec);
        }
        Some(w) => {
            // The table holds every window's latest row (EMIT CHANGES underneath); with EMIT
            // FINAL the topic gets each window's row once, from a second window operator.
            let windows = windows(w);
            let writes = TableRowCodec(projection.writer().clone());
            let agg = SqlWindowAgg { fns, group_width: g.keys.len() };
            let projection = Arc::new(projection);
            let inner = format!("{}-windows", target.name);
            let raw = keyed.window(windows).aggregate(&inner, agg.clone(), Emit::Changes);
            let sessions = matches!(w.shape, WindowShape::Session { .. });
            let projected = project_windows(&raw.map_err(build)?.changes(), projection.clone());
            let table = windows_table(&projected, &target.name, sessions).map_err(build)?;
            if select.emit == Some(EmitMode::Final) {
                let finals = format!("{}-final", target.name);
                let raw = keyed.window(windows).aggregate(&finals, agg, Emit::Final);
                project_windows(&raw.map_err(build)?.changes(), projection).to(
                    &target.topic,
                    WindowedKey,
                    writes,
                );
            } else {
                table.changes().to(&target.topic, WindowedKey, writes);
            }
        }
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

/// `(keys, aggs)` per window → the projected row, with the window known.
fn project_windows(
    raw: &Stream<Windowed<Value>, WindowResult>,
    projection: Arc<Projection>,
) -> Stream<Windowed<Value>, Option<NamedRow>> {
    raw.map(move |k: Windowed<Value>, (keys, aggs): WindowResult| {
        let row = projection.apply(&keys, &aggs, Some((k.start, k.end)));
        (k, row)
    })
}

fn windows(w: &WindowSpec) -> Windows {
    let base = match w.shape {
        WindowShape::Tumbling { size_ms } => Windows::tumbling(size_ms),
        WindowShape::Hopping { size_ms, advance_ms } => Windows::hopping(size_ms, advance_ms),
        WindowShape::Session { gap_ms } => Windows::session(gap_ms),
    };
    base.grace(w.grace_ms.unwrap_or(0))
}

/// Projected windows into table `name`. For session windows a merged session replaces the
/// sessions it swallowed: stored sessions of the same key inside the new one are deleted (the
/// window operator's own deletions do not travel downstream).
fn windows_table(
    projected: &Stream<Windowed<Value>, Option<NamedRow>>,
    name: &str,
    sessions: bool,
) -> crate::Result<crate::builder::Table<Windowed<Value>, Option<NamedRow>>> {
    if !sessions {
        return projected.to_table(name);
    }
    projected.materialize(name, |store, down| Box::new(SessionUpsert { store, down }))
}

struct SessionUpsert {
    store: Arc<crate::table::TableStore>,
    down: crate::graph::Down<Windowed<Value>, Option<NamedRow>>,
}

impl crate::graph::Node<Windowed<Value>, Option<NamedRow>> for SessionUpsert {
    fn push(&mut self, rec: Rec<Windowed<Value>, Option<NamedRow>>, cx: &mut crate::context::Cx) {
        let (Ok(kb), Ok(vb)) = (serde_json::to_vec(&rec.key), serde_json::to_vec(&rec.value))
        else {
            return cx.set_aside(&RecordError::State("a session row cannot be encoded".into()));
        };
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
                }
            }
        }
        self.store.put(kb, Some(vb), rec.ts, cx);
        self.down.push(rec, cx);
    }
}
