//! Stream–table `JOIN ... ON`: compiled onto [`Stream::join_table`] /
//! [`Stream::left_join_table`].
//!
//! `ON` must equate an expression over the stream with the table's key (its `KEY` column, its
//! `key` property column, or `ROWKEY`). The stream is re-keyed by its side and, when the table
//! has more than one partition, repartitioned to the table's partition count so that both are
//! co-partitioned. Stream–stream joins (`WITHIN`) come later.

use serde_json::{Map, Value};

use super::ast::{BinOp, ExprKind, Join, JoinKind, SourceKind};
use super::catalog::{Catalog, SourceInfo};
use super::codec::{KeyDecoder, RowDecoder};
use super::compile::Scope;
use super::error::SqlError;
use super::types::Schema;
use crate::builder::{ProcessorBuilder, Stream};
use crate::graph::Rec;

#[allow(clippy::too_many_arguments)]
pub(crate) fn stream_table(
    b: &ProcessorBuilder,
    stream: Stream<Value, Value>,
    left_scope: Scope,
    left: &SourceInfo,
    join: &Join,
    catalog: &Catalog,
    registry: &std::sync::Arc<super::functions::FunctionRegistry>,
) -> Result<(Stream<Value, Value>, Scope), SqlError> {
    let right = catalog.lookup(join.right.pos, &join.right.name)?.clone();
    if right.kind != SourceKind::Table || join.within_ms.is_some() {
        return Err(SqlError::Unsupported {
            pos: join.pos,
            what: "stream–stream JOIN ... WITHIN".into(),
            why: "only stream–table joins are compiled so far".into(),
        });
    }
    let right_names: Vec<String> =
        [Some(right.name.clone()), join.right.alias.clone()].into_iter().flatten().collect();
    let right_key = right.key_name().map(str::to_owned);
    let is_right_key = |e: &super::ast::Expr| match &e.kind {
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
    let checker =
        super::types::Checker { schema: &left_scope.schema, registry, aggs: &[], keys: &[] };
    if let Err(e @ SqlError::UnknownColumn { .. }) = checker.infer(&by) {
        return Err(e);
    }

    // The joined row: stream columns, then table columns (renamed when taken).
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
    scope.add_qualified(&right_names, &renames);

    let table = b
        .table::<Value, Value>(
            &right.name,
            &right.topic,
            KeyDecoder(right.key_type().cloned()),
            RowDecoder(std::sync::Arc::new(right.clone())),
        )
        .map_err(|e| SqlError::Build(e.to_string()))?;
    let registry = registry.clone();
    let rekeyed = stream.then(move |rec: Rec<Value, Value>, cx, down| {
        let empty = Map::new();
        let row = super::expr::Row::new(rec.value.as_object().unwrap_or(&empty), rec.ts, &rec.key);
        match super::expr::eval(&by, &row, &registry) {
            Ok(key) => down.push(Rec { key, value: rec.value.clone(), ts: rec.ts }, cx),
            Err(e) => cx.set_aside(&crate::error::RecordError::Value(format!("sql: {e}"))),
        }
    });
    let rekeyed = if right.partitions > 1 || left.partitions > 1 {
        rekeyed.repartition("join", right.partitions)
    } else {
        rekeyed
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
        JoinKind::Inner => rekeyed.join_table(&table, move |k, v, t| merge(k, v, Some(t))),
        JoinKind::Left => rekeyed.left_join_table(&table, merge),
    };
    Ok((joined, scope))
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
