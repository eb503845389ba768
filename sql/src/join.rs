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
//!
//! [`Stream::join_table`]: eddy_processor::Stream::join_table
//! [`Stream::left_join_table`]: eddy_processor::Stream::left_join_table
//! [`Stream::join`]: eddy_processor::Stream::join

use std::sync::Arc;

use eddy_processor::operator_api::Outer;
use eddy_processor::{JoinWindow, ProcessorBuilder};
use serde_json::Value;

use crate::ast::mismatch;
use crate::ast::{self, BinOp, Expr, ExprKind, Join, JoinKind, SourceKind, SqlType, Within};
use crate::catalog::Catalog;
use crate::codec::{KeyDecoder, RowDecoder};
use crate::error::SqlError;
use crate::expr::bind;
use crate::functions::FunctionRegistry;
use crate::plan::Scope;
use crate::row_reader::RowReader;
use crate::source::SourceInfo;
use crate::stream::{Rows, decoded_stream, rekey};
use crate::types::{Checker, Schema};

/// A compiled join: the joined stream, its scope, and the number of tasks it runs in.
pub(crate) type Joined = (Rows, Scope, u32);

/// The left input of a join: the FROM source, its decoded rows and its scope.
pub(crate) struct Left<'a> {
    pub info: &'a SourceInfo,
    pub rows: Rows,
    pub scope: Scope,
}

/// Compiles `left` `JOIN` the source `join` names.
pub(crate) fn compile(
    b: &ProcessorBuilder,
    left: Left<'_>,
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
        (SourceKind::Table, None) => stream_table(b, left, &right, join, registry),
        (SourceKind::Stream, None) => Err(SqlError::Invalid {
            pos: join.right.pos,
            message: format!(
                "a join of two streams needs a window: {} JOIN {} WITHIN n unit ON ...",
                left.info.name, right.name
            ),
        }),
        (SourceKind::Stream, Some(w)) => stream_stream(b, left, &right, join, w, registry),
    }
}

fn stream_table(
    b: &ProcessorBuilder,
    left: Left<'_>,
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
    let by = lookup_key(&left.scope, right, join, registry)?;
    let scope = joined_scope(left.scope, left.info, right, join);

    let reader = RowReader::new(right);
    let right_key = reader.key_column;
    let table = b.table::<Value, Vec<Value>>(
        &right.name,
        &right.topic,
        KeyDecoder(right.key_type().cloned()),
        RowDecoder(Arc::new(reader)),
    )?;
    let rekeyed = rekey(&left.rows, by, registry.clone(), false);
    let (rekeyed, tasks) = if right.partitions > 1 || left.info.partitions > 1 {
        (rekeyed.repartition("join", right.partitions), right.partitions)
    } else {
        (rekeyed, 1)
    };
    let right_width = right.columns.len();
    // The stream's row, then the table's (its key column holds the key: a table's stored rows
    // leave it NULL).
    let merge = move |k: &Value, v: &Vec<Value>, t: Option<&Vec<Value>>| {
        let mut row = Vec::with_capacity(v.len() + right_width);
        row.extend_from_slice(v);
        match t {
            Some(t) => row.extend((0..right_width).map(|j| match t.get(j) {
                _ if Some(j) == right_key => k.clone(),
                Some(x) => x.clone(),
                None => Value::Null,
            })),
            None => row.resize(v.len() + right_width, Value::Null),
        }
        row
    };
    let joined = match join.kind {
        JoinKind::Left => rekeyed.left_join_table(&table, merge),
        _ => rekeyed.join_table(&table, move |k, v, t| merge(k, v, Some(t))),
    };
    Ok((joined, scope, tasks))
}

/// The stream's side of a stream–table `ON stream_expression = table_key`, resolved in the
/// stream's scope, checked and bound to its rows.
fn lookup_key(
    left_scope: &Scope,
    right: &SourceInfo,
    join: &Join,
    registry: &Arc<FunctionRegistry>,
) -> Result<Expr, SqlError> {
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
    Ok(bind(&by, &left_scope.schema))
}

fn stream_stream(
    b: &ProcessorBuilder,
    left: Left<'_>,
    right: &SourceInfo,
    join: &Join,
    within: &Within,
    registry: &Arc<FunctionRegistry>,
) -> Result<Joined, SqlError> {
    if right.topic == left.info.topic {
        return Err(SqlError::Unsupported {
            pos: join.right.pos,
            what: format!(
                "joining {} with {} (both read topic {})",
                left.info.name, right.name, left.info.topic
            ),
            why: "a stream cannot be joined with itself (ksqlDB refuses self-joins too)".into(),
        });
    }
    let right_scope = Scope::of(right, join.right.alias.as_deref());
    let (l_by, r_by) = join_keys(&left, right, &right_scope, join, registry)?;
    let (left_width, right_width) = (left.info.columns.len(), right.columns.len());
    let left_partitions = left.info.partitions;
    let scope = joined_scope(left.scope, left.info, right, join);

    let l = rekey(&left.rows, l_by, registry.clone(), true);
    let right_rows = decoded_stream(b, right, RowReader::new(right), false);
    let r = rekey(&right_rows, r_by, registry.clone(), true);
    let (l, r, tasks) = if left_partitions > 1 || right.partitions > 1 {
        let n = left_partitions.max(right.partitions);
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
    let merge = move |_: &Value, l: Option<&Vec<Value>>, r: Option<&Vec<Value>>| {
        let mut row = Vec::with_capacity(left_width + right_width);
        for (side, width) in [(l, left_width), (r, right_width)] {
            let start = row.len();
            if let Some(values) = side {
                row.extend(values.iter().take(width).cloned());
            }
            row.resize(start + width, Value::Null);
        }
        Some(row)
    };
    Ok((l.join_with(&r, window, outer, merge), scope, tasks))
}

/// The two sides of a stream–stream `ON left_expression = right_expression` (in either
/// order), each resolved in its stream's scope, checked to meet as the same kind of key and
/// bound to its stream's rows.
fn join_keys(
    left: &Left<'_>,
    right: &SourceInfo,
    right_scope: &Scope,
    join: &Join,
    registry: &Arc<FunctionRegistry>,
) -> Result<(Expr, Expr), SqlError> {
    let (left_name, left_scope) = (&left.info.name, &left.scope);
    let ExprKind::Binary { op: BinOp::Eq, left: a, right: c } = &join.on.kind else {
        return Err(SqlError::Invalid {
            pos: join.on.pos,
            message: format!(
                "JOIN ... ON must be `expression over {} = expression over {}`",
                left_name, right.name
            ),
        });
    };
    let sides = (side_of(a, left_scope, right_scope)?, side_of(c, left_scope, right_scope)?);
    let (l_expr, r_expr) = match sides {
        (Some(Side::Left), Some(Side::Right)) => (a, c),
        (Some(Side::Right), Some(Side::Left)) => (c, a),
        _ => {
            return Err(SqlError::Invalid {
                pos: join.on.pos,
                message: format!(
                    "each side of ON must read one stream: one {}'s columns, the other {}'s",
                    left_name, right.name
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
    Ok((bind(&l_by, &left_scope.schema), bind(&r_by, &right_scope.schema)))
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
        stack.extend(ast::children(&mut x).into_iter().map(|c| c.clone()));
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

/// The joined row's scope: left columns, then right columns (renamed when taken).
fn joined_scope(left_scope: Scope, left: &SourceInfo, right: &SourceInfo, join: &Join) -> Scope {
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
    let left_q = left_scope.qualifiers.last().cloned().unwrap_or_else(|| left.name.clone());
    let mut scope = left_scope;
    scope.display =
        left.columns.iter().map(|(c, _)| (c.clone(), format!("{left_q}_{c}"))).collect();
    scope
        .display
        .extend(renames.iter().map(|(c, row)| (row.clone(), format!("{right_alias}_{c}"))));
    scope.ambiguous = right
        .columns
        .iter()
        .filter(|(c, _)| left.columns.iter().any(|(l, _)| l == c))
        .map(|(c, _)| c.clone())
        .collect();
    scope.schema = Schema::new(columns);
    scope.add_qualified(&qualifiers(right, join), &renames);
    scope
}
