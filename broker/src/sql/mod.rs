//! Streaming SQL in the broker: one [`Session`] per broker, kept durable in the compacted
//! internal topic `__sql`, with persistent queries run as processors of the registry
//! (`crate::processors`).
//!
//! - `__sql` holds one record per catalog name (key = the upper-cased stream/table name,
//!   value = `{"sql": script, "version": n}`; a tombstone when dropped). The script is the
//!   declaration or the `CREATE ... AS SELECT` statement, followed by `TERMINATE id` once its
//!   query was terminated. Opening the broker replays the records, in offset order, into the
//!   session ([`replay`] retries until no more succeed, since compaction may move a replaced
//!   declaration after a query that reads it).
//! - A persistent query is the processor named after its target; its registry text is a
//!   self-contained [`SqlDef`](crate::processors::definition::SqlDef) (the statement plus the
//!   scripts it was compiled against), so serving, building and retired versions each compile
//!   from their own text, and `eddy processor list/status/replay/rollback` apply as to specs.
//! - `run.rs` executes statements, `push.rs` serves push queries by polling, `connector.rs`
//!   runs the connector statements on the broker's connectors (kept in `__connectors`),
//!   `access.rs` says what each statement needs of the ACLs (checked before it takes effect).
//! - A persistent query runs with the rights of the principal whose statement created it (its
//!   record keeps the owner, so a redeploy by `reconcile` keeps it too).
//!
//! Invariants:
//! - Every change of the catalog is one `__sql` record, written and fsynced before the session
//!   changes in memory and before its processor is deployed or dropped (statements run on a
//!   clone of the session, kept only once the record is stored).
//! - `__sql` is the truth for SQL: after a crash between the record and the processor change,
//!   [`SqlService::reconcile`] (run at open, after the registry started) deploys a query the
//!   registry lacks or holds at a lower version, and drops SQL processors no record owns (a
//!   record that fails to replay never causes a drop).
//! - Statements run one at a time (the session's lock is held for the whole request).

mod access;
mod connector;
mod push;
mod run;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use eddy_sql::Session;
use eddy_storage::Log;
use serde::{Deserialize, Serialize};

pub use push::is_push;

use crate::connectors::Connectors;
use crate::error::BrokerError;
use crate::processors::Processors;
use crate::processors::definition::{SqlDef, builtin_functions, replay};
use crate::security::Principal;
use crate::security::acls::Access;

/// The internal topic holding the SQL catalog.
pub const SQL_TOPIC: &str = "__sql";

/// What `__sql` holds per name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Stored {
    sql: String,
    #[serde(default = "one")]
    version: u32,
    /// The principal whose statement stored it (`User:NAME`; absent: the broker's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
}

fn one() -> u32 {
    1
}

struct State {
    session: Session,
    /// The live records by name, with the offset that wrote them.
    records: BTreeMap<String, (u64, Stored)>,
}

impl State {
    /// The live scripts in the order they were written, except `name`'s.
    fn context(&self, except: &str) -> Vec<String> {
        let mut live: Vec<&(u64, Stored)> =
            self.records.iter().filter(|(n, _)| n.as_str() != except).map(|(_, r)| r).collect();
        live.sort_by_key(|(offset, _)| *offset);
        live.into_iter().map(|(_, s)| s.sql.clone()).collect()
    }
}

/// The broker's SQL session and its log, deploying queries to the broker's processors.
pub struct SqlService {
    state: Mutex<State>,
    log: Arc<Log>,
    processors: Arc<Processors>,
    /// `CREATE SOURCE|SINK CONNECTOR` and the other connector statements act on these.
    connectors: Arc<Connectors>,
}

impl std::fmt::Debug for SqlService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlService").finish_non_exhaustive()
    }
}

impl SqlService {
    /// Reads `__sql` and replays it into a new session; processors start later.
    pub fn open(
        log: Arc<Log>,
        processors: Arc<Processors>,
        connectors: Arc<Connectors>,
    ) -> Result<SqlService, BrokerError> {
        let mut records: BTreeMap<String, (u64, Stored)> = BTreeMap::new();
        crate::internal::for_each_record(&log, SQL_TOPIC, |offset, key, value| {
            let name = String::from_utf8_lossy(key.unwrap_or_default()).into_owned();
            match value.map(serde_json::from_slice::<Stored>) {
                None => {
                    records.remove(&name);
                }
                Some(Ok(s)) => {
                    records.insert(name, (offset, s));
                }
                Some(Err(e)) => {
                    tracing::warn!(%name, error = %e, "stored SQL does not parse; skipped")
                }
            }
        })?;
        let mut session = Session::new(builtin_functions());
        let mut ordered: Vec<&(u64, Stored)> = records.values().collect();
        ordered.sort_by_key(|(offset, _)| *offset);
        let failed = replay(&mut session, ordered.iter().map(|(_, s)| (s.sql.as_str(), s.version)));
        for (sql, error) in failed {
            tracing::error!(%sql, %error, "stored SQL statement does not run; skipped");
        }
        let state = State { session, records };
        Ok(SqlService { state: Mutex::new(state), log, processors, connectors })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the registry match the catalog: deploys queries it lacks (or holds at a lower
    /// version) and drops SQL processors no query owns. Errors are logged.
    pub fn reconcile(&self) {
        let state = self.lock();
        let processors = &self.processors;
        for q in state.session.catalog.queries() {
            let have = processors.highest_version(&q.target);
            if have.is_some_and(|v| v >= q.version) {
                continue;
            }
            let def = SqlDef {
                name: q.target.clone(),
                version: q.version,
                sql: q.sql.clone(),
                context: state.context(&q.target),
            };
            let owner = state.records.get(&q.target).and_then(|(_, s)| s.owner.as_deref());
            let owner = Principal::from_owner(owner);
            let deployed = def.to_text().and_then(|text| processors.deploy(&text, &owner));
            match deployed {
                Ok(_) => tracing::info!(query = %q.id, version = q.version, "SQL query deployed"),
                Err(e) => tracing::error!(query = %q.id, error = %e, "SQL query does not deploy"),
            }
        }
        for name in processors.sql_names() {
            // An orphan: no record at all (dropped, or a deploy whose record was undone), or a
            // record that ran and holds no query (terminated). A record that did not run keeps
            // its processor: nothing is removed because of a statement that failed to replay.
            let has_query = state.session.catalog.queries().any(|q| q.target == name);
            let ran = state.session.catalog.get(&name).is_some();
            if !has_query && (!state.records.contains_key(&name) || ran) {
                tracing::info!(processor = %name, "dropping a SQL processor no query owns");
                if let Err(e) = processors.drop_processor(&name) {
                    tracing::warn!(processor = %name, error = %e, "could not drop it");
                }
            }
        }
    }

    /// Appends and fsyncs one record; returns its offset.
    fn write(&self, name: &str, stored: Option<&Stored>) -> Result<u64, BrokerError> {
        // A record of two plain fields always encodes.
        let value = stored.map(|s| serde_json::to_vec(s).unwrap_or_default());
        crate::internal::append_durable(&self.log, SQL_TOPIC, name.as_bytes(), value.as_deref())
    }

    /// Stores `stored` (or a tombstone) under `name` and records it in `state`.
    fn store(
        &self,
        state: &mut State,
        name: &str,
        stored: Option<Stored>,
    ) -> Result<(), BrokerError> {
        let offset = self.write(name, stored.as_ref())?;
        match stored {
            Some(s) => state.records.insert(name.to_string(), (offset, s)),
            None => state.records.remove(name),
        };
        Ok(())
    }

    /// After `processor rollback` of a SQL query's processor: stores the version serving
    /// again as the query's record and rebuilds the session from the records, so SHOW, pull
    /// queries and the next open follow it. Nothing when SQL does not own `name`.
    pub fn adopt_serving(&self, name: &str) -> Result<(), BrokerError> {
        let mut state = self.lock();
        if !state.session.catalog.queries().any(|q| q.target == name) {
            return Ok(());
        }
        let Some(text) = self.processors.serving_text(name) else { return Ok(()) };
        let def: SqlDef = toml::from_str(&text).map_err(|e| {
            BrokerError::InvalidSpec(format!("{name}: the serving SQL does not parse: {e}"))
        })?;
        let owner = state.records.get(name).and_then(|(_, s)| s.owner.clone());
        let stored = Stored { sql: def.sql, version: def.version, owner };
        self.store(&mut state, name, Some(stored))?;
        let mut session = Session::new(builtin_functions());
        let mut ordered: Vec<&(u64, Stored)> = state.records.values().collect();
        ordered.sort_by_key(|(offset, _)| *offset);
        for (sql, error) in
            replay(&mut session, ordered.iter().map(|(_, s)| (s.sql.as_str(), s.version)))
        {
            tracing::warn!(%sql, %error, "a SQL statement does not run after the rollback");
        }
        state.session = session;
        Ok(())
    }

    /// The broker itself, for statements the broker runs on its own behalf.
    fn internal(&self) -> Access {
        self.processors.acls().access(Principal::Internal, None)
    }

    /// The target of the query whose processor is `name`, if SQL owns it.
    pub fn owns_processor(&self, name: &str) -> Option<String> {
        self.lock().session.catalog.queries().find(|q| q.target == name).map(|q| q.id.clone())
    }
}
