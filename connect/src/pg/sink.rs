//! The PostgreSQL upsert sink (Confluent's JDBC sink with `insert.mode=upsert`,
//! `pk.mode=record_key`): each record of the topic is a row of the table keyed by the record
//! key — a JSON object value is upserted (`INSERT ... ON CONFLICT (pk) DO UPDATE`), a tombstone
//! deletes the row. Value fields match columns by name, exactly or else ignoring case (eddy's
//! SQL writes upper-cased names); a number going to a timestamp column is milliseconds since
//! the epoch. PostgreSQL converts the rest (`json_populate_recordset`).
//!
//! Invariant: a batch is applied in one PostgreSQL transaction, its last change per key only,
//! and the offsets are stored after it commits; replaying a batch after a crash writes the same
//! rows again, so the table ends the same.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use tokio_postgres::Client;

use super::url::{connect, ident, literal};
use super::value::timestamp_text;
use crate::config::PgSinkConfig;
use crate::consume::{Consumed, Consumer};
use crate::error::ConnectError;
use crate::runtime::Ctx;

/// The target table's columns: name and whether it is a timestamp.
#[derive(Debug)]
struct Target {
    name: String,
    columns: Vec<(String, bool)>,
    pk: String,
}

/// The target table: `table.name.format` exactly, else the one table of the schema whose name
/// matches ignoring case (eddy's SQL upper-cases topic names, PostgreSQL folds unquoted names
/// to lower case).
async fn target(client: &Client, c: &PgSinkConfig) -> Result<Target, ConnectError> {
    let (schema, table) = &c.table;
    let sql = format!(
        "SELECT table_name, column_name, data_type FROM information_schema.columns \
         WHERE table_schema = {} AND lower(table_name) = lower({}) ORDER BY table_name, ordinal_position",
        literal(schema),
        literal(table)
    );
    let found = client
        .simple_query(&sql)
        .await
        .map_err(|e| ConnectError::pg("reading the table's columns", &e))?;
    let rows: Vec<(String, String, bool)> = found
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some((
                r.get(0)?.to_string(),
                r.get(1)?.to_string(),
                r.get(2)?.starts_with("timestamp"),
            )),
            _ => None,
        })
        .collect();
    let mut names: Vec<&str> = rows.iter().map(|(t, _, _)| t.as_str()).collect();
    names.dedup();
    let id = format!("{schema}.{table}");
    let name = match names.as_slice() {
        _ if names.contains(&table.as_str()) => table.clone(),
        [one] => one.to_string(),
        [] => return Err(ConnectError::MissingTable { table: id }),
        several => {
            return Err(ConnectError::config(
                "table.name.format",
                format!(
                    "{id} is not a table, and several differ from it only in case: {several:?}"
                ),
            ));
        }
    };
    let columns: Vec<(String, bool)> =
        rows.into_iter().filter(|(t, _, _)| *t == name).map(|(_, c, ts)| (c, ts)).collect();
    let id = format!("{schema}.{name}");
    let pk = columns.iter().map(|(n, _)| n).find(|n| n.eq_ignore_ascii_case(&c.pk)).ok_or_else(
        || ConnectError::config("pk.fields", format!("table {id} has no column {}", c.pk)),
    )?;
    Ok(Target { name: format!("{}.{}", ident(schema), ident(&name)), pk: pk.clone(), columns })
}

impl Target {
    /// A value object as a row of the table's columns; `None` when it is not an object.
    fn row(&self, key: &str, value: &Value) -> Option<Map<String, Value>> {
        let fields = value.as_object()?;
        let mut row = Map::new();
        for (col, is_ts) in &self.columns {
            let v = fields.get(col).or_else(|| {
                fields.iter().find(|(k, _)| k.eq_ignore_ascii_case(col)).map(|(_, v)| v)
            });
            let v = match v {
                Some(Value::Number(n)) if *is_ts => {
                    n.as_i64().map_or(Value::Null, |ms| timestamp_text(ms).into())
                }
                Some(v) => v.clone(),
                None => continue,
            };
            row.insert(col.clone(), v);
        }
        row.insert(self.pk.clone(), Value::String(key.to_string()));
        Some(row)
    }

    /// The statements applying `rows` (upserts) and `deletes` (keys).
    fn statements(&self, rows: Vec<Value>, deletes: Vec<Value>) -> Vec<String> {
        let mut out = Vec::new();
        let pk = ident(&self.pk);
        if !deletes.is_empty() {
            out.push(format!(
                "DELETE FROM {t} USING json_populate_recordset(NULL::{t}, {j}::json) d WHERE {t}.{pk} = d.{pk}",
                t = self.name,
                j = literal(&Value::Array(deletes).to_string())
            ));
        }
        if !rows.is_empty() {
            let set: Vec<String> = self
                .columns
                .iter()
                .filter(|(n, _)| *n != self.pk)
                .map(|(n, _)| format!("{c} = EXCLUDED.{c}", c = ident(n)))
                .collect();
            let action = if set.is_empty() {
                "NOTHING".to_string()
            } else {
                format!("UPDATE SET {}", set.join(", "))
            };
            out.push(format!(
                "INSERT INTO {t} SELECT * FROM json_populate_recordset(NULL::{t}, {j}::json) ON CONFLICT ({pk}) DO {action}",
                t = self.name,
                j = literal(&Value::Array(rows).to_string())
            ));
        }
        out
    }
}

/// The last change of each key in `batch`: `Some(value)` to upsert, `None` to delete.
fn last_per_key(batch: &[Consumed]) -> BTreeMap<String, Option<Value>> {
    let mut last = BTreeMap::new();
    for c in batch {
        let Some(key) = &c.record.key else { continue };
        let key = String::from_utf8_lossy(key).into_owned();
        let value =
            c.record.value.as_ref().map(|v| serde_json::from_slice(v).unwrap_or(Value::Null));
        last.insert(key, value);
    }
    last
}

pub async fn run(c: &PgSinkConfig, ctx: &Ctx) -> Result<(), ConnectError> {
    let client = connect(&c.addr).await?;
    let target = target(&client, c).await?;
    let stored = ctx.load_position();
    let mut consumer = Consumer::open(
        ctx,
        std::slice::from_ref(&c.topic),
        stored.as_ref().and_then(|s| s.get("position")),
    )?;
    ctx.running();
    loop {
        let batch = consumer.poll(ctx).await?;
        let (mut rows, mut deletes) = (Vec::new(), Vec::new());
        for (key, value) in last_per_key(&batch) {
            match value {
                Some(v) => match target.row(&key, &v) {
                    Some(row) => rows.push(Value::Object(row)),
                    None => {
                        tracing::warn!(connector = %ctx.name, %key, "a value that is not a JSON object: skipped")
                    }
                },
                None if c.delete_enabled => deletes.push(json!({ target.pk.clone(): key })),
                None => {}
            }
        }
        let mut sql = String::from("BEGIN;");
        for s in target.statements(rows, deletes) {
            sql.push_str(&s);
            sql.push(';');
        }
        sql.push_str("COMMIT;");
        if let Err(e) = client.batch_execute(&sql).await {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(ConnectError::pg(format!("writing to {}", target.name), &e));
        }
        let offsets = consumer.advance(&batch);
        ctx.add_records(batch.len() as u64);
        ctx.store_position(&json!({"position": {"offsets": offsets}}), consumer.shown())?;
    }
}
