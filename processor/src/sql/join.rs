//! `JOIN ... ON` in a persistent query.
//!
//! - **Stream–table** (no `WITHIN`): compiled onto [`Stream::join_table`] /
//!   [`Stream::left_join_table`]. `ON` must equate an expression over the stream with the
//!   table's key (its `KEY` column, its `key` property column, or `ROWKEY`). The stream is
//!   re-keyed by its side and, when the table has more than one partition, repartitioned to the
//!   table's partition count so that both are co-partitioned. INNER or LEFT only, as in ksqlDB.
//! - **Stream–stream** (`WITHIN`): compiled onto the windowed join ([`Stream::join`] and its
//!   outer forms). `ON` equates an expression over each stream, in either order; an
//!   unqualified column belongs to the one stream that has it. Both streams are re-keyed by
//!   their side and, when either has more than one partition, both are repartitioned to the
//!   larger partition count, so that equal join keys meet in one task. A record whose join key
//!   is NULL matches nothing and is dropped. `WITHIN n` matches `|tl - tr| <= n`,
//!   `WITHIN (before, after)` matches `tl - before <= tr <= tl + after`, `GRACE PERIOD g`
//!   (default 0, as for windows) is how far behind the largest event time seen a record may
//!   arrive and still join. INNER emits each pair when its second record arrives; LEFT, RIGHT
//!   and FULL OUTER also emit each record of the kept side(s) that matched nothing — the other
//!   side's columns NULL — once its window has closed (ksqlDB's behaviour with a GRACE PERIOD).
//!
//! Invariant, for both kinds: the joined row holds the left source's columns, then the right's
//! (a right column whose name is taken is renamed `<RIGHT>_<COL>`, RIGHT being the alias or the
//! name); a side without a record is all NULL. Its key is the join key.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::ast::{BinOp, Expr, ExprKind, Join, JoinKind, SourceKind, Within};
use super::catalog::{Catalog, SourceInfo};
use super::codec::{KeyDecoder, RowDecoder};
use super::compile::{Scope, children, decoded_stream};
use super::error::SqlError;
use super::functions::FunctionRegistry;
use super::types::{Checker, Schema, SqlType, mismatch};
use crate::builder::{ProcessorBuilder, Stream};
use crate::graph::Rec;
use crate::ops::join::{JoinWindow, Outer};

/// A compiled join: the joined stream, its scope, and the number of tasks it runs in.
pub(crate) type Joined = (Stream<Value, Value>, Scope, u32);

/// Compiles `stream` (decoded rows of `left`) `JOIN` the source `join` names.
pub(crate) fn compile(
    b: &ProcessorBuilder,
    stream: Stream<Value, Value>,
    left_scope: Scope,
    left: &SourceInfo,
    join: &Join,
    catalog: &Catalog,
    registry: &Arc<FunctionRegistry>,
) -> Result<Joined, SqlError> {
    let right = catalog.lookup(join.right.pos, &join.right.name)?.clone();
    match (right.kind, &join.within) {
        (SourceKind::Table, Some(w)) => Err(SqlError::Invalid {
            pos: w.pos,
            message: format!(
                "WITHIN belongs to stream–stream joins, and {} is a table: a stream–table join \
                 looks up the table's current row, without a window",
                right.name
            ),
        }),
        (SourceKind::Table, None) => {
            stream_table(b, stream, left_scope, left, &right, join, registry)
        }
        (SourceKind::Stream, None) => Err(SqlError::Invalid {
            pos: join.right.pos,
            message: format!(
                "a join of two streams needs a window: {} JOIN {} WITHIN n unit ON ...",
                left.name, right.name
            ),
        }),
        (SourceKind::Stream, Some(w)) => {
            stream_stream(b, stream, left_scope, left, &right, join, w, registry)
        }
    }
}

fn stream_table(
    b: &ProcessorBuilder,
    stream: Stream<Value, Value>,
    left_scope: Scope,
    left: &SourceInfo,
    right: &SourceInfo,
    join: &Join,
    registry: &Arc<FunctionRegistry>,
) -> Result<Joined, SqlError> {
    if matches!(join.kind, JoinKind::Right | JoinKind::Full) {
        return Err(SqlError::Invalid {
            pos: join.pos,
            message: format!(
                "a stream–table join is INNER or LEFT; RIGHT and FULL OUTER joins need two \
                 streams (and WITHIN), and {} is a table",
                right.name
            ),
        });
    }
    let right_names = qualifiers(right, join);
    let right_key = right.key_name().map(str::to_owned);
    let is_right_key = |e: &Expr| match &e.kind {
        ExprKind::Column { qualifier, name } => {
            let mine = qualifier.as_ref().is_none_or(|q| right_names.contains(q));
            let qualified = qualifier.as_ref().is_some_and(|q| right_names.contains(q));
            (mine && (Some(name) == right_key.as_ref() || name == "ROWKEY"))
                && (qualified || left_scope.schema.get(name).is_none() || name != "ROWKEY")
        }
        _ => false,
    };
    let ExprKind::Binary { op: BinOp::Eq, left: l, right: r } = &join.on.kind else {
        return Err(SqlError::Invalid {
            pos: join.on.pos,
            message: "JOIN ... ON must be `stream_expression = table_key`".into(),
        });
    };
    let stream_side = if is_right_key(r) {
        l
    } else if is_right_key(l) {
        r
    } else {
        return Err(SqlError::Invalid {
            pos: join.on.pos,
            message: format!(
                "one side of ON must be the key of table {} ({}, or ROWKEY)",
                right.name,
                right_key.as_deref().unwrap_or("it has no key column")
            ),
        });
    };
    let by = left_scope.resolve(stream_side)?;
    let checker = Checker { schema: &left_scope.schema, registry, aggs: &[], keys: &[] };
    if let Err(e @ SqlError::UnknownColumn { .. }) = checker.infer(&by) {
        return Err(e);
    }
    let (scope, renames) = joined_scope(left_scope, left, right, join);

    let table = b
        .table::<Value, Value>(
            &right.name,
            &right.topic,
            KeyDecoder(right.key_type().cloned()),
            RowDecoder(Arc::new(right.clone())),
        )
        .map_err(|e| SqlError::Build(e.to_string()))?;
    let rekeyed = rekey(&stream, by, registry.clone(), false);
    let (rekeyed, tasks) = if right.partitions > 1 || left.partitions > 1 {
        (rekeyed.repartition("join", right.partitions), right.partitions)
    } else {
        (rekeyed, 1)
    };
    let key_column = right.key_column.clone();
    let merge = move |k: &Value, v: &Value, t: Option<&Value>| {
        let mut row = v.as_object().cloned().unwrap_or_default();
        for (from, to) in &renames {
            let value = match (t, &key_column) {
                (Some(_), Some(kc)) if kc == from => k.clone(),
                (Some(t), _) => t.get(from).cloned().unwrap_or(Value::Null),
                (None, _) => Value::Null,
            };
            row.insert(to.clone(), value);
        }
        Value::Object(row)
    };
    let joined = match join.kind {
        JoinKind::Left => rekeyed.left_join_table(&table, merge),
        _ => rekeyed.join_table(&table, move |k, v, t| merge(k, v, Some(t))),
    };
    Ok((joined, scope, tasks))
}

#[allow(clippy::too_many_arguments)]
fn stream_stream(
    b: &ProcessorBuilder,
    stream: Stream<Value, Value>,
    left_scope: Scope,
    left: &SourceInfo,
    right: &SourceInfo,
    join: &Join,
    within: &Within,
    registry: &Arc<FunctionRegistry>,
) -> Result<Joined, SqlError> {
    if right.topic == left.topic {
        return Err(SqlError::Unsupported {
            pos: join.right.pos,
            what: format!(
                "joining {} with {} (both read topic {})",
                left.name, right.name, left.topic
            ),
            why: "a stream cannot be joined with itself (ksqlDB refuses self-joins too)".into(),
        });
    }
    let right_scope = Scope::of(right, join.right.alias.as_deref());
    let ExprKind::Binary { op: BinOp::Eq, left: a, right: c } = &join.on.kind else {
        return Err(SqlError::Invalid {
            pos: join.on.pos,
            message: format!(
                "JOIN ... ON must be `expression over {} = expression over {}`",
                left.name, right.name
            ),
        });
    };
    let sides = (side_of(a, &left_scope, &right_scope)?, side_of(c, &left_scope, &right_scope)?);
    let (l_expr, r_expr) = match sides {
        (Some(Side::Left), Some(Side::Right)) => (a, c),
        (Some(Side::Right), Some(Side::Left)) => (c, a),
        _ => {
            return Err(SqlError::Invalid {
                pos: join.on.pos,
                message: format!(
                    "each side of ON must read one stream: one {}'s columns, the other {}'s",
                    left.name, right.name
                ),
            });
        }
    };
    let l_by = left_scope.resolve(l_expr)?;
    let r_by = right_scope.resolve(r_expr)?;
    let lt = Checker { schema: &left_scope.schema, registry, aggs: &[], keys: &[] }.infer(&l_by)?;
    let rt =
        Checker { schema: &right_scope.schema, registry, aggs: &[], keys: &[] }.infer(&r_by)?;
    if !same_key_type(&lt, &rt) {
        return Err(mismatch(&r_by, &rt, &lt.to_string(), "JOIN ... ON"));
    }
    let (scope, renames) = joined_scope(left_scope, left, right, join);

    let l = rekey(&stream, l_by, registry.clone(), true);
    let r = rekey(&decoded_stream(b, right), r_by, registry.clone(), true);
    let (l, r, tasks) = if left.partitions > 1 || right.partitions > 1 {
        let n = left.partitions.max(right.partitions);
        (l.repartition("join-left", n), r.repartition("join-right", n), n)
    } else {
        (l, r, 1)
    };
    let window = JoinWindow {
        before_ms: within.before_ms,
        after_ms: within.after_ms,
        grace_ms: within.grace_ms.unwrap_or(0),
    };
    let outer = match join.kind {
        JoinKind::Inner => Outer { left: false, right: false },
        JoinKind::Left => Outer { left: true, right: false },
        JoinKind::Right => Outer { left: false, right: true },
        JoinKind::Full => Outer { left: true, right: true },
    };
    let left_columns: Vec<String> = left.columns.iter().map(|(n, _)| n.clone()).collect();
    let merge = move |_: &Value, l: Option<&Value>, r: Option<&Value>| {
        let mut row = match l.and_then(Value::as_object) {
            Some(l) => l.clone(),
            None => left_columns.iter().map(|c| (c.clone(), Value::Null)).collect(),
        };
        for (from, to) in &renames {
            let value = r.and_then(|r| r.get(from)).cloned().unwrap_or(Value::Null);
            row.insert(to.clone(), value);
        }
        Some(Value::Object(row))
    };
    Ok((l.join_with(&r, window, outer, merge), scope, tasks))
}

/// Which stream of a stream–stream join an expression reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Left,
    Right,
}

/// The one side whose columns `e` reads (`None`: no columns); an error for a column that is
/// unknown or could be either side's.
fn side_of(e: &Expr, left: &Scope, right: &Scope) -> Result<Option<Side>, SqlError> {
    let mut found: Option<Side> = None;
    let mut mixed = false;
    let mut stack = vec![e.clone()];
    while let Some(mut x) = stack.pop() {
        if let ExprKind::Column { qualifier, name } = &x.kind {
            let side = column_side(&x, qualifier.as_deref(), name, left, right)?;
            mixed |= found.is_some_and(|f| f != side);
            found = Some(side);
            continue;
        }
        stack.extend(children(&mut x).into_iter().map(|c| c.clone()));
    }
    if mixed {
        return Err(SqlError::Invalid {
            pos: e.pos,
            message: "this side of ON reads both streams; each side must read one".into(),
        });
    }
    Ok(found)
}

fn column_side(
    e: &Expr,
    qualifier: Option<&str>,
    name: &str,
    left: &Scope,
    right: &Scope,
) -> Result<Side, SqlError> {
    let (in_left, in_right) = match qualifier {
        Some(q) => {
            let (l, r) =
                (left.qualifiers.iter().any(|x| x == q), right.qualifiers.iter().any(|x| x == q));
            if !l && !r {
                return Err(SqlError::UnknownSource { pos: e.pos, name: q.to_owned() });
            }
            (l, r)
        }
        None if matches!(name, "ROWKEY" | "ROWTIME") => (true, true),
        None => (left.schema.get(name).is_some(), right.schema.get(name).is_some()),
    };
    match (in_left, in_right) {
        (true, false) => Ok(Side::Left),
        (false, true) => Ok(Side::Right),
        (true, true) => Err(SqlError::Invalid {
            pos: e.pos,
            message: format!(
                "{} could be either stream's; qualify it (`{}.{name}` or `{}.{name}`)",
                qualifier.map_or_else(|| name.to_owned(), |q| format!("{q}.{name}")),
                left.qualifiers.last().map_or("", String::as_str),
                right.qualifiers.last().map_or("", String::as_str),
            ),
        }),
        (false, false) => {
            let mut known = left.schema.names();
            known.extend(right.schema.names());
            Err(SqlError::UnknownColumn { pos: e.pos, name: name.to_owned(), known })
        }
    }
}

/// Join keys meet as JSON text, so their values must be written alike: the same type, or
/// integers of any width (INT, BIGINT, TIMESTAMP).
fn same_key_type(a: &SqlType, b: &SqlType) -> bool {
    let integral = |t: &SqlType| matches!(t, SqlType::Int | SqlType::Bigint | SqlType::Timestamp);
    a == b || *a == SqlType::Any || *b == SqlType::Any || (integral(a) && integral(b))
}

/// The names that qualify the right source's columns: its name and its alias.
fn qualifiers(right: &SourceInfo, join: &Join) -> Vec<String> {
    [Some(right.name.clone()), join.right.alias.clone()].into_iter().flatten().collect()
}

/// The joined row's scope (left columns, then right columns renamed when taken) and the
/// renames (right column → joined column).
fn joined_scope(
    left_scope: Scope,
    left: &SourceInfo,
    right: &SourceInfo,
    join: &Join,
) -> (Scope, Vec<(String, String)>) {
    let mut columns = left.columns.clone();
    let mut renames = Vec::new();
    let right_alias = join.right.alias.clone().unwrap_or_else(|| right.name.clone());
    for (c, t) in &right.columns {
        let name = if columns.iter().any(|(n, _)| n == c) {
            format!("{right_alias}_{c}")
        } else {
            c.clone()
        };
        renames.push((c.clone(), name.clone()));
        columns.push((name, t.clone()));
    }
    let mut scope = left_scope;
    scope.schema = Schema::new(columns);
    scope.add_qualified(&qualifiers(right, join), &renames);
    (scope, renames)
}

/// Re-keys each row by `by`; with `skip_null`, a row whose key is NULL is dropped.
fn rekey(
    stream: &Stream<Value, Value>,
    by: Expr,
    registry: Arc<FunctionRegistry>,
    skip_null: bool,
) -> Stream<Value, Value> {
    stream.then(move |rec: Rec<Value, Value>, cx, down| {
        let empty = Map::new();
        let row = super::expr::Row::new(rec.value.as_object().unwrap_or(&empty), rec.ts, &rec.key);
        match super::expr::eval(&by, &row, &registry) {
            Ok(Value::Null) if skip_null => {}
            Ok(key) => down.push(Rec { key, value: rec.value.clone(), ts: rec.ts }, cx),
            Err(e) => cx.set_aside(&crate::error::RecordError::Value(format!("sql: {e}"))),
        }
    })
}

impl Scope {
    fn add_qualified(&mut self, qualifiers: &[String], renames: &[(String, String)]) {
        for q in qualifiers {
            for (from, to) in renames {
                self.qualified.push((q.clone(), from.clone(), to.clone()));
            }
            self.qualifiers.push(q.clone());
        }
    }
}
