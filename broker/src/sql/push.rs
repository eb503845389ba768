//! Push queries over the wire (`SELECT ... FROM table|stream [WHERE ...] EMIT CHANGES`),
//! served by polling a topic: for a table made by `CREATE TABLE ... AS SELECT`, the topic its
//! changes go to (the same topic across versions, so a redeploy's switch-over does not break a
//! follower); for a stream (declared over a topic, or made by `CREATE STREAM ... AS SELECT`),
//! the stream's topic. The first request answers the topic's current end, so a push query sees
//! what is appended after it started (ksqlDB's `auto.offset.reset=latest`); each later one
//! passes those positions back, reads the records after them (waiting up to `max_wait_ms` for
//! some, woken by appends), evaluates each — `TableQuery::row` for a table's changes,
//! `StreamQuery::row` (the stream's own decoding, WHERE, projection) for a stream's records —
//! and answers the rows and the next positions. Nothing is kept in the broker between polls.
//!
//! Keys in a table's topic are text for a string group value and JSON for other values
//! (numbers, several GROUP BY columns, windows), so a string key that reads as a JSON number is
//! taken as that number — a `ROWKEY = '123'` filter on such a table does not match in a push
//! query. A stream's keys are decoded as its declaration says.

use std::time::Duration;

use eddy_protocol::v1::{self, sql_result::Result as R};
use eddy_sql::{FunctionRegistry, Outcome, Statement, StreamQuery, TableQuery, parse_script};
use eddy_storage::Batches;
use serde_json::Value;
use tokio::time::Instant;

use super::SqlService;
use crate::error::BrokerError;
use crate::security::acls::Access;
use crate::topics::MAX_FETCH_WAIT;

/// Bytes read per partition per poll.
const READ_BYTES: usize = 1 << 20;

/// Whether `sql` is exactly one push query.
pub fn is_push(sql: &str) -> bool {
    match parse_script(sql) {
        Ok(statements) => {
            statements.len() == 1
                && matches!(&statements[0].0, Statement::Select(s) if s.emit.is_some())
        }
        Err(_) => false,
    }
}

/// What a push query follows.
enum Follow {
    Table(TableQuery),
    Stream(StreamQuery),
}

impl Follow {
    fn columns(&self) -> Vec<String> {
        match self {
            Follow::Table(q) => q.columns(),
            Follow::Stream(q) => q.columns(),
        }
    }

    /// One record of the followed topic as a row, if it yields one.
    fn row(
        &self,
        record: &eddy_storage::RecordView<'_>,
        functions: &FunctionRegistry,
    ) -> Option<serde_json::Map<String, Value>> {
        match self {
            Follow::Table(q) => {
                let value = q.decode_value(record.value);
                q.row(&key_value(record.key), &value, record.timestamp, functions)
            }
            Follow::Stream(q) => q.row(record.key, record.value, record.timestamp, functions),
        }
    }
}

fn key_value(bytes: Option<&[u8]>) -> Value {
    let Some(bytes) = bytes else { return Value::Null };
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) if !v.is_string() => v,
        _ => Value::String(String::from_utf8_lossy(bytes).into_owned()),
    }
}

impl SqlService {
    /// One poll of a push query, as `access`'s: READ on the table's processor, or on the
    /// stream and its topic (`access.rs`); refused as a statement error.
    pub async fn push(
        &self,
        r: &v1::SqlRequest,
        access: &Access,
    ) -> Result<v1::SqlResponse, BrokerError> {
        let topics = self.processors.topics().clone();
        let (query, topic, functions) = {
            let state = self.lock();
            let mut session = state.session.clone();
            drop(state);
            let query = match session.execute(&r.sql, 1) {
                Ok(mut o) => {
                    let outcome = o.pop();
                    if let Some(outcome) = &outcome
                        && let Err(e) = self.authorize_push(access, &session, &r.sql, outcome)
                    {
                        return Ok(refused(r, &e));
                    }
                    match outcome {
                        Some(Outcome::Select(q)) if q.push => Follow::Table(q),
                        Some(Outcome::Push(q)) => Follow::Stream(q),
                        _ => return Err(BrokerError::Malformed("not a push query")),
                    }
                }
                Err(e) => {
                    let (line, column) = e.pos().map_or((0, 0), |p| (p.line, p.col));
                    let error = v1::SqlFailure { message: e.to_string(), line, column };
                    let result =
                        v1::SqlResult { statement: r.sql.clone(), result: Some(R::Error(error)) };
                    return Ok(v1::SqlResponse { results: vec![result] });
                }
            };
            let topic = match &query {
                Follow::Table(q) => session
                    .catalog
                    .get(&q.table)
                    .map(|s| s.topic.clone())
                    .ok_or_else(|| BrokerError::UnknownTable(q.table.clone()))?,
                Follow::Stream(q) => q.topic.clone(),
            };
            (query, topic, session.functions.clone())
        };
        let t = topics.get(&topic)?;
        let mut positions: Vec<u64> = t.partitions.iter().map(|l| l.next_offset()).collect();
        let first = r.from.is_empty();
        for p in &r.from {
            if let Some(slot) = positions.get_mut(p.partition as usize) {
                *slot = p.offset;
            }
        }
        let wait = Duration::from_millis(u64::from(r.max_wait_ms)).min(MAX_FETCH_WAIT);
        let deadline = Instant::now() + wait;
        let mut rows = Vec::new();
        loop {
            let appended = topics.notified();
            tokio::pin!(appended);
            appended.as_mut().enable();
            if !first {
                for (p, log) in t.partitions.iter().enumerate() {
                    positions[p] = read_changes(log, positions[p], &query, &functions, &mut rows)
                        .map_err(|source| BrokerError::Storage {
                        topic: topic.clone(),
                        partition: p as u32,
                        source,
                    })?;
                }
            }
            if first || !rows.is_empty() || Instant::now() >= deadline || topics.is_shutting_down()
            {
                break;
            }
            if tokio::time::timeout_at(deadline, appended).await.is_err() {
                break;
            }
        }
        let push = v1::SqlPush {
            topic,
            columns: query.columns(),
            rows,
            next: positions
                .iter()
                .enumerate()
                .map(|(p, &offset)| v1::SqlPosition { partition: p as u32, offset })
                .collect(),
        };
        let result = v1::SqlResult { statement: r.sql.clone(), result: Some(R::Push(push)) };
        Ok(v1::SqlResponse { results: vec![result] })
    }
}

impl SqlService {
    fn authorize_push(
        &self,
        access: &Access,
        session: &eddy_sql::Session,
        sql: &str,
        outcome: &Outcome,
    ) -> Result<(), BrokerError> {
        let statements =
            parse_script(sql).map_err(|_| BrokerError::Malformed("not a push query"))?;
        let Some((stmt, _)) = statements.first() else {
            return Err(BrokerError::Malformed("not a push query"));
        };
        super::access::authorize(access, self.processors.topics(), session, stmt, outcome)
    }
}

/// A push query refused by the ACLs: a statement error, as any refused statement is.
fn refused(r: &v1::SqlRequest, e: &BrokerError) -> v1::SqlResponse {
    let error = v1::SqlFailure { message: e.to_string(), line: 1, column: 1 };
    let result = v1::SqlResult { statement: r.sql.clone(), result: Some(R::Error(error)) };
    v1::SqlResponse { results: vec![result] }
}

/// Reads `log` from `from`, appending each record that yields a row of `query` as a JSON
/// array; returns the next offset.
fn read_changes(
    log: &eddy_storage::Log,
    from: u64,
    query: &Follow,
    functions: &FunctionRegistry,
    rows: &mut Vec<String>,
) -> Result<u64, eddy_storage::Error> {
    let from = from.max(log.start_offset());
    if from >= log.next_offset() {
        return Ok(from);
    }
    let bytes = log.read(from, READ_BYTES)?;
    let mut next = from;
    let columns = query.columns();
    for batch in Batches::new(&bytes) {
        let batch = batch?;
        for record in batch.records()?.iter() {
            let record = record?;
            if record.offset < from {
                continue;
            }
            if let Some(row) = query.row(&record, functions) {
                let values = columns.iter().map(|c| row.get(c).cloned().unwrap_or(Value::Null));
                rows.push(Value::Array(values.collect()).to_string());
            }
        }
        next = next.max(batch.last_offset() + 1);
    }
    Ok(next)
}
