//! The query-mode PostgreSQL source (Confluent's JDBC source as the course uses it): every
//! `poll.interval.ms` it selects each table's new rows by `mode` and writes each row as a JSON
//! object of typed fields to topic `<topic.prefix><table>`, keyed by the `key` column's text.
//!
//! Invariants: a table's position (the last incrementing value and/or timestamp written) is
//! stored only after its rows are fsynced, and the next poll selects strictly past it, so a
//! restart neither repeats nor skips rows that were visible in order. What the mode cannot
//! see is documented in docs/connectors.md (an incrementing id committed after a larger one;
//! a timestamp set in the past).

use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio_postgres::{Client, SimpleQueryMessage};

use super::url::{connect, ident, literal};
use super::value::{Mapping, to_json};
use crate::config::{Mode, QuerySourceConfig};
use crate::error::ConnectError;
use crate::runtime::Ctx;
use crate::topics::{OutRecord, Output};

/// A column of a source table.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub mapping: Mapping,
}

/// One table being polled.
#[derive(Debug)]
struct Polled {
    /// `schema.table`, the position's key.
    id: String,
    from: String,
    topic: String,
    columns: Vec<Column>,
    key: Option<usize>,
    /// Index of the incrementing and timestamp columns, by mode.
    inc: Option<usize>,
    ts: Option<usize>,
    /// The last values written, as PostgreSQL printed them.
    last_inc: Option<String>,
    last_ts: Option<String>,
}

/// The columns of `schema.table` (as `SELECT *` lists them), each checked to be mappable.
pub async fn describe(
    client: &Client,
    schema: &str,
    table: &str,
) -> Result<Vec<Column>, ConnectError> {
    let id = format!("{schema}.{table}");
    let sql = format!("SELECT * FROM {}.{} LIMIT 0", ident(schema), ident(table));
    let stmt = client.prepare(&sql).await.map_err(|e| match e.code() {
        Some(c) if *c == tokio_postgres::error::SqlState::UNDEFINED_TABLE => {
            ConnectError::MissingTable { table: id.clone() }
        }
        _ => ConnectError::pg(format!("reading the columns of {id}"), &e),
    })?;
    stmt.columns()
        .iter()
        .map(|c| {
            let mapping = Mapping::of(c.type_().oid()).ok_or_else(|| ConnectError::Unmappable {
                table: id.clone(),
                column: c.name().to_string(),
                type_name: c.type_().name().to_string(),
            })?;
            Ok(Column { name: c.name().to_string(), mapping })
        })
        .collect()
}

fn index_of(
    columns: &[Column],
    option: &str,
    name: &str,
    table: &str,
) -> Result<usize, ConnectError> {
    columns
        .iter()
        .position(|c| c.name == name)
        .ok_or_else(|| ConnectError::config(option, format!("table {table} has no column {name}")))
}

async fn prepare(
    client: &Client,
    c: &QuerySourceConfig,
    (schema, table): &(String, String),
    stored: &Value,
) -> Result<Polled, ConnectError> {
    let id = format!("{schema}.{table}");
    let columns = describe(client, schema, table).await?;
    let key = c.key.as_deref().map(|k| index_of(&columns, "key", k, &id)).transpose()?;
    let (inc, ts) = match &c.mode {
        Mode::Bulk => (None, None),
        Mode::Incrementing { column } => {
            (Some(index_of(&columns, "incrementing.column.name", column, &id)?), None)
        }
        Mode::Timestamp { column } => {
            (None, Some(index_of(&columns, "timestamp.column.name", column, &id)?))
        }
        Mode::TimestampIncrementing { ts, inc } => (
            Some(index_of(&columns, "incrementing.column.name", inc, &id)?),
            Some(index_of(&columns, "timestamp.column.name", ts, &id)?),
        ),
    };
    let text = |k: &str| {
        stored.get(&id).and_then(|p| p.get(k)).and_then(Value::as_str).map(str::to_string)
    };
    Ok(Polled {
        from: format!("{}.{}", ident(schema), ident(table)),
        topic: format!("{}{}", c.topic_prefix, table),
        last_inc: text("inc"),
        last_ts: text("ts"),
        id,
        columns,
        key,
        inc,
        ts,
    })
}

impl Polled {
    /// The next poll's query and whether it is limited to `batch` rows.
    fn query(&self, batch: u32) -> (String, bool) {
        let col = |i: Option<usize>| i.map(|i| ident(&self.columns[i].name)).unwrap_or_default();
        let (inc, ts) = (col(self.inc), col(self.ts));
        let base = format!("SELECT * FROM {}", self.from);
        match (self.inc.is_some(), self.ts.is_some()) {
            (false, false) => (base, false),
            (true, false) => {
                let past = self.last_inc.as_ref().map(|v| format!(" WHERE {inc} > {}", literal(v)));
                (format!("{base}{} ORDER BY {inc} LIMIT {batch}", past.unwrap_or_default()), true)
            }
            (false, true) => {
                let past = self.last_ts.as_ref().map(|v| format!(" AND {ts} > {}", literal(v)));
                (
                    format!("{base} WHERE {ts} < now(){} ORDER BY {ts}", past.unwrap_or_default()),
                    false,
                )
            }
            (true, true) => {
                let past = match (&self.last_ts, &self.last_inc) {
                    (Some(t), Some(i)) => format!(
                        " AND ({ts} > {t} OR ({ts} = {t} AND {inc} > {i}))",
                        t = literal(t),
                        i = literal(i)
                    ),
                    _ => String::new(),
                };
                (
                    format!("{base} WHERE {ts} < now(){past} ORDER BY {ts}, {inc} LIMIT {batch}"),
                    true,
                )
            }
        }
    }

    fn record(&self, row: &tokio_postgres::SimpleQueryRow) -> Result<OutRecord, ConnectError> {
        let mut value = Map::new();
        for (i, col) in self.columns.iter().enumerate() {
            let text = row.get(i);
            let v = to_json(col.mapping, text).map_err(|_| ConnectError::BadValue {
                column: format!("{}.{}", self.id, col.name),
                type_name: format!("{:?}", col.mapping),
                value: text.unwrap_or_default().to_string(),
            })?;
            value.insert(col.name.clone(), v);
        }
        Ok(OutRecord {
            key: self.key.and_then(|k| row.get(k)).map(|k| k.as_bytes().to_vec()),
            value: Some(Value::Object(value).to_string().into_bytes()),
            timestamp: crate::now_ms(),
            headers: Vec::new(),
        })
    }

    fn position(&self) -> Value {
        json!({"inc": self.last_inc, "ts": self.last_ts})
    }
}

/// Runs the source until stopped or failed.
pub async fn run(c: &QuerySourceConfig, ctx: &Ctx) -> Result<(), ConnectError> {
    let client = connect(&c.addr).await?;
    let stored = ctx.load_position().unwrap_or(Value::Null);
    let mut out = Output::new(ctx.logs.clone());
    let mut tables = Vec::new();
    for t in &c.tables {
        let polled = prepare(&client, c, t, &stored).await?;
        out.ensure_topic(&polled.topic, c.topic_partitions)?;
        tables.push(polled);
    }
    ctx.running();
    loop {
        for i in 0..tables.len() {
            while poll(&client, c, &mut tables, i, &mut out, ctx).await? {}
        }
        ctx.sleep(Duration::from_millis(c.poll_interval_ms)).await?;
    }
}

/// Reads and writes one batch of table `i`; whether there may be more right away.
async fn poll(
    client: &Client,
    c: &QuerySourceConfig,
    tables: &mut [Polled],
    i: usize,
    out: &mut Output,
    ctx: &Ctx,
) -> Result<bool, ConnectError> {
    let t = &tables[i];
    let (sql, limited) = t.query(c.batch_max_rows);
    let messages = client
        .simple_query(&sql)
        .await
        .map_err(|e| ConnectError::pg(format!("polling {}", t.id), &e))?;
    let rows: Vec<_> = messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .collect();
    if rows.is_empty() {
        return Ok(false);
    }
    let records = rows.iter().map(|r| t.record(r)).collect::<Result<Vec<_>, _>>()?;
    out.append(&t.topic, &records)?;
    out.sync()?;
    ctx.add_records(records.len() as u64);
    let last = rows[rows.len() - 1];
    let t = &mut tables[i];
    if let Some(k) = t.inc {
        t.last_inc = last.get(k).map(str::to_string);
    }
    if let Some(k) = t.ts {
        t.last_ts = last.get(k).map(str::to_string);
    }
    if t.inc.is_some() || t.ts.is_some() {
        let position: Map<String, Value> =
            tables.iter().map(|t| (t.id.clone(), t.position())).collect();
        let shown = tables
            .iter()
            .filter(|t| t.last_inc.is_some() || t.last_ts.is_some())
            .map(|t| format!("{}: {}", t.id, t.position()))
            .collect::<Vec<_>>()
            .join("; ");
        ctx.store_position(&Value::Object(position), shown)?;
    }
    Ok(limited && rows.len() as u32 >= c.batch_max_rows)
}
