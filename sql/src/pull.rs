//! Pull queries (`SELECT ... FROM table WHERE ... [LIMIT n]`) evaluated against a live table
//! read through a [`TableReader`], and the same row evaluation for push queries over a table's
//! changes.
//!
//! A table made by `CREATE TABLE ... AS SELECT` holds projected rows keyed by the GROUP BY value
//! (or, windowed, by `{"key", "start", "end"}`). In a pull query `ROWKEY` is that value (the
//! group value for windowed tables), `WINDOWSTART` / `WINDOWEND` are the window's bounds. A
//! `WHERE` whose top-level `AND` holds `ROWKEY = literal` or `<key column> = literal` on an
//! unwindowed table is a point lookup; anything else scans the table (every partition, in key
//! order) and filters.
//!
//! Invariants: a query is checked once ([`TableQuery::prepare`]) and then only reads — it
//! never writes a table; a row that fails to evaluate is left out, not an error; `LIMIT`
//! counts rows returned.

use std::sync::Arc;

use serde_json::{Map, Value};

use eddy_processor::{Codec, TableReader};

use crate::ast::{BinOp, EmitMode, Expr, ExprKind, Select, SelectItem};
use crate::catalog::Catalog;
use crate::codec::ObjectDecoder;
use crate::error::SqlError;
use crate::expr::{Row, bind, filter_project};
use crate::functions::FunctionRegistry;
use crate::plan::{Scope, output_names};
use crate::row_reader::{RowReader, coerce};
use crate::source::SourceInfo;
use crate::types::Checker;

/// A checked pull (or push) query over one materialized table.
#[derive(Debug, Clone)]
pub struct TableQuery {
    /// The table's name: read it with `RunningProcessor::table::<Value, Value>(&table)`.
    pub table: String,
    /// The processor that holds the table.
    pub processor: String,
    windowed: bool,
    /// The table's columns, in the order bound expressions read them: a stored row's fields,
    /// or for a key column its place in the key (`Some(i)`: the i-th group value).
    columns: Vec<(String, Option<usize>)>,
    /// How many group values the key holds (several are a JSON array).
    key_width: usize,
    /// How the table's topic holds its rows: its value columns, read as a source's are.
    values: ObjectDecoder,
    filter: Option<Expr>,
    items: Vec<(String, Expr)>,
    /// The key of a point lookup.
    lookup: Option<Value>,
    limit: Option<u64>,
    /// `EMIT CHANGES`: a push query.
    pub push: bool,
}

impl TableQuery {
    /// Checks `select` against the catalog.
    pub fn prepare(
        select: &Select,
        catalog: &Catalog,
        registry: &FunctionRegistry,
    ) -> Result<TableQuery, SqlError> {
        let info = catalog.lookup(select.from.pos, &select.from.name)?;
        let Some(m) = &info.materialized else {
            return Err(SqlError::Unsupported {
                pos: select.from.pos,
                what: format!("a pull query on {}", info.name),
                why: "pull queries read tables made by CREATE TABLE ... AS SELECT".into(),
            });
        };
        if select.join.is_some() || !select.group_by.is_empty() || select.window.is_some() {
            return Err(SqlError::Unsupported {
                pos: select.pos,
                what: "JOIN, WINDOW or GROUP BY in a pull query".into(),
                why: "pull queries read one table's rows".into(),
            });
        }
        if select.emit == Some(EmitMode::Final) {
            return Err(SqlError::Invalid {
                pos: select.pos,
                message: "EMIT FINAL belongs to CREATE TABLE ... AS SELECT".into(),
            });
        }
        let scope = Scope::of(info, None);
        let mut schema = scope.schema.clone();
        schema.windowed = m.windowed;
        let checker = Checker { schema: &schema, registry, aggs: &[], keys: &[] };
        let filter = match &select.filter {
            Some(f) => {
                let f = scope.resolve(f)?;
                checker.expect_bool(&f, "WHERE")?;
                Some(f)
            }
            None => None,
        };
        let mut items = Vec::new();
        let names = output_names(&select.items, &scope.schema.names());
        for (item, name) in select.items.iter().zip(names) {
            match item {
                SelectItem::Wildcard(_, qualifier) => {
                    if let Some(q) = qualifier
                        && *q != info.name
                        && select.from.alias.as_deref() != Some(q.as_str())
                    {
                        return Err(SqlError::UnknownSource { pos: select.pos, name: q.clone() });
                    }
                    // ksqlDB's order: the key columns, the window bounds, then the values.
                    let is_key = |c: &String| m.key_columns.contains(c);
                    let keys = info.columns.iter().filter(|(c, _)| is_key(c));
                    for (c, _) in keys {
                        items.push((c.clone(), column(c)));
                    }
                    if m.windowed {
                        items.push(("WINDOWSTART".into(), column("WINDOWSTART")));
                        items.push(("WINDOWEND".into(), column("WINDOWEND")));
                    }
                    for (c, _) in info.columns.iter().filter(|(c, _)| !is_key(c)) {
                        items.push((c.clone(), column(c)));
                    }
                }
                SelectItem::Expr { expr, .. } => {
                    let e = scope.resolve(expr)?;
                    checker.infer(&e)?;
                    items.push((name, e));
                }
            }
        }
        let lookup = if m.windowed { None } else { filter.as_ref().and_then(|f| key_of(f, info)) };
        Ok(TableQuery {
            table: info.name.clone(),
            processor: m.processor.clone(),
            windowed: m.windowed,
            columns: schema
                .names()
                .into_iter()
                .map(|c| {
                    let slot = m.key_columns.iter().position(|k| *k == c);
                    (c, slot)
                })
                .collect(),
            key_width: m.key_columns.len(),
            values: value_decoder(info, &m.key_columns),
            filter: filter.map(|f| bind(&f, &schema)),
            items: items.into_iter().map(|(n, e)| (n, bind(&e, &schema))).collect(),
            lookup,
            limit: select.limit,
            push: select.emit == Some(EmitMode::Changes),
        })
    }

    /// The output columns, in SELECT order.
    pub fn columns(&self) -> Vec<String> {
        self.items.iter().map(|(name, _)| name.clone()).collect()
    }

    /// Whether the table is windowed (its keys are `{"key", "start", "end"}`).
    pub fn windowed(&self) -> bool {
        self.windowed
    }

    /// Runs the pull query.
    pub fn run(
        &self,
        reader: &TableReader<Value, Value>,
        registry: &FunctionRegistry,
    ) -> Result<Vec<Map<String, Value>>, SqlError> {
        let entries: Vec<(Value, Value, i64)> = match &self.lookup {
            Some(key) => match reader.get_stamped(key) {
                Ok(found) => found.map(|(v, ts)| (key.clone(), v, ts)).into_iter().collect(),
                Err(source) => {
                    return Err(SqlError::TableRead { table: self.table.clone(), source });
                }
            },
            None => reader.scan_stamped(),
        };
        let mut out = Vec::new();
        for (k, v, ts) in &entries {
            if self.limit.is_some_and(|n| out.len() as u64 >= n) {
                break;
            }
            if let Some(row) = self.row(k, v, *ts, registry) {
                out.push(row);
            }
        }
        Ok(out)
    }

    /// A record value of the table's topic as the row object [`row`](Self::row) takes (JSON
    /// as it is; DELIMITED and KAFKA values by the table's columns); NULL when it does not
    /// decode or is a tombstone.
    pub fn decode_value(&self, bytes: Option<&[u8]>) -> Value {
        match bytes {
            Some(_) => self.values.decode(bytes).unwrap_or(Value::Null),
            None => Value::Null,
        }
    }

    /// One table entry evaluated: `None` when it is a deletion/NULL row, fails the WHERE or
    /// cannot be evaluated. `ts` is the entry's timestamp (`ROWTIME`). Push queries apply this
    /// to each change.
    pub fn row(
        &self,
        key: &Value,
        value: &Value,
        ts: i64,
        registry: &FunctionRegistry,
    ) -> Option<Map<String, Value>> {
        let object = value.as_object()?;
        let (rowkey, window) = if self.windowed {
            let w = (key.get("start")?.as_i64()?, key.get("end")?.as_i64()?);
            (key.get("key")?.clone(), Some(w))
        } else {
            (key.clone(), None)
        };
        // Key columns live in the key only (ksqlDB's layout); the rest in the stored row.
        let columns: Vec<Value> = self
            .columns
            .iter()
            .map(|(c, slot)| match slot {
                Some(_) if self.key_width == 1 => rowkey.clone(),
                Some(i) => rowkey.get(i).cloned().unwrap_or(Value::Null),
                None => object.get(c).cloned().unwrap_or(Value::Null),
            })
            .collect();
        let mut row = Row::new(&columns, ts, &rowkey);
        row.window = window;
        filter_project(self.filter.as_ref(), &self.items, &row, registry)
    }
}

fn column(name: &str) -> Expr {
    Expr::new(Default::default(), ExprKind::Column { qualifier: None, name: name.to_owned() })
}

/// `ROWKEY = lit` or `keycol = lit` among the top-level ANDs of `f`.
fn key_of(f: &Expr, info: &SourceInfo) -> Option<Value> {
    match &f.kind {
        ExprKind::Binary { op: BinOp::And, left, right } => {
            key_of(left, info).or_else(|| key_of(right, info))
        }
        ExprKind::Binary { op: BinOp::Eq, left, right } => {
            let is_key = |e: &Expr| match &e.kind {
                ExprKind::Column { name, .. } => {
                    name == "ROWKEY" || Some(name.as_str()) == info.key_name()
                }
                _ => false,
            };
            let literal = match (&left.kind, &right.kind) {
                (_, ExprKind::Literal(v)) if is_key(left) => v.clone(),
                (ExprKind::Literal(v), _) if is_key(right) => v.clone(),
                _ => return None,
            };
            // The key as the table stores it: `ID = 10` finds the DOUBLE key 10.0. A literal
            // the key's type cannot hold is no lookup (the scan's filter answers it).
            match info.key_name().and_then(|k| info.columns.iter().find(|(n, _)| n == k)) {
                Some((_, ty)) => coerce(literal, ty).ok(),
                None => Some(literal),
            }
        }
        _ => None,
    }
}

/// Reads a table topic's values as the rows of the table's value columns (every column but
/// the key columns, which live in the record key).
fn value_decoder(info: &SourceInfo, key_columns: &[String]) -> ObjectDecoder {
    let mut values = info.clone();
    values.columns.retain(|(c, _)| !key_columns.contains(c));
    values.key_column = None;
    values.key_property = None;
    values.timestamp = None;
    ObjectDecoder(Arc::new(RowReader::new(&values)))
}
