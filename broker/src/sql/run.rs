//! Running statements against the broker's session: each statement runs on a clone of the
//! session; its record goes to `__sql` (fsynced) before the clone replaces the session and
//! before its processor is deployed or dropped. A deploy that fails afterwards writes the
//! previous record back, so the catalog and the registry agree again.
//!
//! Errors: SQL errors carry their line and column in the request's text (statements are
//! parsed from the whole text); a broker error (a deploy refused, a topic that cannot be
//! created) points at the statement's first character.

use eddy_protocol::v1::{self, sql_result::Result as R};
use eddy_sql::{
    InsertRecord, Outcome, Session, ShowWhat, SourceKind, Statement, TableQuery, parse_script,
};
use eddy_storage::{BatchBuilder, Record};
use serde_json::Value;

use super::{SqlService, State, Stored, access};
use crate::clock::now_ms;
use crate::error::BrokerError;
use crate::processors::definition::SqlDef;
use crate::security::acls::Access;
use crate::topics::Topics;

/// The order of SHOW / DESCRIBE columns (their rows are JSON objects).
const COLUMN_ORDER: [&str; 13] = [
    "id",
    "name",
    "column",
    "target",
    "topic",
    "type",
    "format",
    "partitions",
    "key",
    "version",
    "building",
    "partition",
    "offset",
];

/// Why a statement failed.
enum Failure {
    Sql(eddy_sql::SqlError),
    Broker(Box<BrokerError>),
}

impl From<BrokerError> for Failure {
    fn from(e: BrokerError) -> Self {
        Failure::Broker(Box::new(e))
    }
}

impl From<eddy_sql::SqlError> for Failure {
    fn from(e: eddy_sql::SqlError) -> Self {
        Failure::Sql(e)
    }
}

/// The 1-based line and column of byte `offset` in `text`.
fn position(text: &str, offset: usize) -> (u32, u32) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() as u32 + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u32 + 1;
    (line, col)
}

fn failure(f: Failure, script: &str, at: usize) -> v1::SqlFailure {
    match f {
        Failure::Sql(e) => {
            let (line, column) = e.pos().map_or((0, 0), |p| (p.line, p.col));
            v1::SqlFailure { message: e.to_string(), line, column }
        }
        Failure::Broker(e) => {
            let (line, column) = position(script, at);
            v1::SqlFailure {
                message: format!("{e} (statement at line {line}, column {column})"),
                line,
                column,
            }
        }
    }
}

fn rows_of(columns: Vec<String>, rows: &[serde_json::Map<String, Value>]) -> Vec<String> {
    rows.iter()
        .map(|r| {
            Value::Array(columns.iter().map(|c| r.get(c).cloned().unwrap_or(Value::Null)).collect())
                .to_string()
        })
        .collect()
}

impl SqlService {
    /// Runs every statement of `sql` in order as `access`'s, stopping at the first failure (a
    /// statement `access` may not run is one, with the refusal as its error). Blocking (it
    /// starts and stops processors and fsyncs records).
    pub fn execute(&self, sql: &str, access: &Access) -> v1::SqlResponse {
        let statements = match parse_script(sql) {
            Ok(s) => s,
            Err(e) => {
                let error = failure(Failure::Sql(e), sql, 0);
                let result =
                    v1::SqlResult { statement: sql.to_string(), result: Some(R::Error(error)) };
                return v1::SqlResponse { results: vec![result] };
            }
        };
        let mut state = self.lock();
        let mut results = Vec::new();
        let mut cursor = 0;
        for (stmt, text) in &statements {
            let at = sql
                .get(cursor..)
                .and_then(|rest| rest.find(text.as_str()))
                .map_or(cursor, |i| cursor + i);
            cursor = at + text.len();
            let outcome = self.statement(&mut state, stmt, text, access);
            let failed = outcome.is_err();
            let result = outcome.unwrap_or_else(|f| R::Error(failure(f, sql, at)));
            results.push(v1::SqlResult { statement: text.clone(), result: Some(result) });
            if failed {
                break;
            }
        }
        v1::SqlResponse { results }
    }

    fn statement(
        &self,
        state: &mut State,
        stmt: &Statement,
        text: &str,
        access: &Access,
    ) -> Result<R, Failure> {
        let processors = &self.processors;
        let given = match stmt {
            Statement::CreateAs(c) => processors.highest_version(&c.name).map_or(1, |v| v + 1),
            Statement::CreateSource(c) if c.kind == SourceKind::Table => {
                processors.highest_version(&c.name).map_or(1, |v| v + 1)
            }
            _ => 1,
        };
        let mut next: Session = state.session.clone();
        let Some(outcome) = next.execute_statement(stmt, text, given)? else {
            return Ok(R::Unchanged(true));
        };
        access::authorize(access, self.processors.topics(), &next, stmt, &outcome)?;
        let owner = access.principal().owner();
        Ok(match outcome {
            Outcome::Declared(info) => {
                ensure_topic(self.processors.topics(), &info.topic, info.partitions)?;
                let stored = Stored { sql: text.to_string(), version: 1, owner };
                self.store(state, &info.name, Some(stored))?;
                state.session = next;
                R::Declared(v1::SqlDeclared {
                    name: info.name.clone(),
                    kind: if info.kind == SourceKind::Stream { "STREAM" } else { "TABLE" }.into(),
                    topic: info.topic.clone(),
                    partitions: info.partitions,
                })
            }
            Outcome::Materialized { compiled, .. } => {
                let info = &compiled.target;
                // A declared table: its topic, then the processor that makes it queryable
                // (stored and deployed as a persistent query is).
                ensure_topic(self.processors.topics(), &info.topic, info.partitions)?;
                let version = compiled.processor.version();
                self.start_query(state, &info.name, version, text, access)?;
                state.session = next;
                R::Declared(v1::SqlDeclared {
                    name: info.name.clone(),
                    kind: "TABLE".into(),
                    topic: info.topic.clone(),
                    partitions: info.partitions,
                })
            }
            Outcome::Query { id, compiled, replaced } => {
                let name = compiled.processor.name().to_string();
                let version = compiled.processor.version();
                self.start_query(state, &name, version, text, access)?;
                state.session = next;
                R::Query(v1::SqlQueryStarted { id, target: name, version, replaced })
            }
            Outcome::Push(_) => return Err(push_alone()),
            Outcome::Select(q) if q.push => return Err(push_alone()),
            Outcome::Select(q) => self.pull(&q, &next)?,
            Outcome::Rows(rows) if matches!(stmt, Statement::Show { .. }) => {
                self.listing(stmt, access::visible(access, rows))
            }
            Outcome::Rows(rows) => self.listing(stmt, rows),
            Outcome::Dropped(info) => {
                let readers = processors.readers_of(&info.topic, &info.name);
                if !readers.is_empty() {
                    return Err(
                        BrokerError::SourceInUse { name: info.name.clone(), readers }.into()
                    );
                }
                self.store(state, &info.name, None)?;
                state.session = next;
                if processors.is_sql(&info.name) == Some(true) {
                    processors.drop_processor(&info.name)?;
                }
                R::Dropped(info.name)
            }
            Outcome::Connector(c) => self.connector(&c, access)?,
            Outcome::Inserted(record) => {
                let (partition, offset) = insert(self.processors.topics(), &record)?;
                let row = serde_json::json!({
                    "topic": record.topic, "partition": partition, "offset": offset,
                });
                self.listing(stmt, vec![row])
            }
            Outcome::Terminated(q) => {
                let sql = state
                    .records
                    .get(&q.target)
                    .map_or_else(|| q.sql.clone(), |(_, s)| s.sql.clone());
                let owner = state.records.get(&q.target).and_then(|(_, s)| s.owner.clone());
                let sql = format!("{sql};\nTERMINATE {}", q.id);
                let stored = Stored { sql, version: q.version, owner };
                self.store(state, &q.target, Some(stored))?;
                state.session = next;
                if processors.is_sql(&q.target) == Some(true) {
                    processors.drop_processor(&q.target)?;
                }
                R::Terminated(q.id)
            }
        })
    }

    /// Stores a persistent query's record, then deploys it as processor `name` at `version`,
    /// owned by `access`'s principal; a deploy that fails writes the previous record back.
    fn start_query(
        &self,
        state: &mut State,
        name: &str,
        version: u32,
        text: &str,
        access: &Access,
    ) -> Result<(), Failure> {
        if !self.processors.is_sql(name).unwrap_or(true) {
            return Err(BrokerError::NameTakenBySpec { name: name.to_string() }.into());
        }
        let def = SqlDef {
            name: name.to_string(),
            version,
            sql: text.to_string(),
            context: state.context(name),
        };
        let def_text = def.to_text()?;
        let previous = state.records.get(name).map(|(_, s)| s.clone());
        let owner = access.principal().owner();
        self.store(state, name, Some(Stored { sql: text.to_string(), version, owner }))?;
        if let Err(e) = self.processors.deploy(&def_text, access.principal()) {
            if let Err(undo) = self.store(state, name, previous) {
                tracing::error!(%name, error = %undo, "could not undo the SQL record; the next open retries the deploy");
            }
            return Err(e.into());
        }
        Ok(())
    }

    /// A SHOW or DESCRIBE listing as rows, columns in [`COLUMN_ORDER`]; SHOW QUERIES gains the
    /// registry's view (the serving version, and one building beside it).
    fn listing(&self, stmt: &Statement, mut rows: Vec<Value>) -> R {
        if matches!(stmt, Statement::Show { what: ShowWhat::Queries, .. }) {
            for row in rows.iter_mut().filter_map(Value::as_object_mut) {
                let target = row.get("target").and_then(Value::as_str).unwrap_or_default();
                let (serving, building) = match self.processors.versions(target) {
                    Some((s, b)) => (Value::from(s), b.map_or(Value::Null, Value::from)),
                    None => (Value::Null, Value::Null),
                };
                row.insert("version".into(), serving);
                row.insert("building".into(), building);
            }
        }
        let mut columns: Vec<String> = match (rows.first(), stmt) {
            (Some(Value::Object(m)), _) => m.keys().cloned().collect(),
            // An empty listing still has its columns.
            (_, Statement::Show { what: ShowWhat::Queries, .. }) => {
                ["id", "target", "version", "building"].map(String::from).to_vec()
            }
            (_, Statement::Show { .. }) => {
                ["name", "topic", "format", "partitions"].map(String::from).to_vec()
            }
            _ => Vec::new(),
        };
        let rank = |c: &String| COLUMN_ORDER.iter().position(|o| o == c);
        columns.sort_by_key(|c| rank(c).unwrap_or(usize::MAX));
        let maps: Vec<serde_json::Map<String, Value>> =
            rows.into_iter().filter_map(|r| r.as_object().cloned()).collect();
        let rows = rows_of(columns.clone(), &maps);
        R::Rows(v1::SqlRows { columns, rows, ..Default::default() })
    }

    fn pull(&self, q: &TableQuery, session: &Session) -> Result<R, Failure> {
        let (reader, version) = self.processors.serving_table(&q.processor, &q.table)?;
        let rows = q.run(&reader, &session.functions)?;
        Ok(R::Rows(v1::SqlRows {
            rows: rows_of(q.columns(), &rows),
            columns: q.columns(),
            processor: q.processor.clone(),
            version,
        }))
    }

    /// `eddy processor drop NAME` of a SQL query's processor: TERMINATE the query, so the
    /// catalog does not start it again. `None` when SQL does not own `name`.
    pub fn drop_processor(&self, name: &str) -> Option<Result<(), BrokerError>> {
        let id = self.owns_processor(name)?;
        // The caller was allowed to DELETE the processor; the TERMINATE is the broker's.
        let answer = self.execute(&format!("TERMINATE {id};"), &self.internal());
        Some(match answer.results.into_iter().last().and_then(|r| r.result) {
            Some(R::Error(e)) => Err(BrokerError::Terminate { query: id, message: e.message }),
            _ => Ok(()),
        })
    }
}

/// A push query arrived with other statements.
fn push_alone() -> Failure {
    BrokerError::PushNotAlone.into()
}

/// Creates a declared source's topic when it is missing; an existing one must have the
/// declared partition count (queries repartition by it).
/// `INSERT ... VALUES`: appends the record to the partition its key hashes to (Kafka's rule,
/// as every producer does), fsynced whatever the topic's flush policy; its (partition, offset).
fn insert(topics: &Topics, record: &InsertRecord) -> Result<(u32, u64), BrokerError> {
    let topic = topics.get(&record.topic)?;
    let count = topic.partitions.len() as u32;
    let partition =
        record.key.as_deref().map_or(0, |k| eddy_processor::partition_for_key(k, count));
    let storage = |source| BrokerError::Storage { topic: record.topic.clone(), partition, source };
    let Some(log) = topic.partitions.get(partition as usize) else {
        return Err(BrokerError::UnknownPartition { topic: record.topic.clone(), partition });
    };
    let mut b = BatchBuilder::new();
    b.push(Record {
        timestamp: record.timestamp.unwrap_or_else(now_ms),
        key: record.key.as_deref(),
        value: record.value.as_deref(),
        headers: &[],
    });
    let batch = b.build_valid().map_err(|e| storage(e.into()))?;
    let appended = log.append_valid(&batch).map_err(storage)?;
    log.sync_through(appended.last_offset + 1).map_err(storage)?;
    topics.appended();
    Ok((partition, appended.last_offset))
}

fn ensure_topic(topics: &Topics, topic: &str, partitions: u32) -> Result<(), BrokerError> {
    match topics.get(topic) {
        Ok(t) if t.partitions.len() as u32 == partitions => Ok(()),
        Ok(t) => Err(BrokerError::PartitionMismatch {
            topic: topic.to_string(),
            existing: t.partitions.len() as u32,
            declared: partitions,
        }),
        Err(_) => {
            let config = v1::TopicConfig { partitions: Some(partitions), ..Default::default() };
            topics.create(topic, Some(&config)).map(drop)
        }
    }
}
