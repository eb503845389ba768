//! What each SQL statement needs of the ACLs, decided from what it compiled to (so it names
//! the real inputs, outputs and catalog names) before it takes effect: nothing is stored,
//! deployed or appended for a refused statement. Catalog names (streams, tables, persistent
//! queries' targets) are PROCESSOR resources — a table's or query's processor has its name.
//!
//! | statement | needs |
//! |---|---|
//! | `CREATE STREAM s (...) WITH (kafka_topic='t')` | CREATE processor `s`, READ topic `t` (+ CREATE topic `t` when missing) |
//! | `CREATE TABLE s (...) WITH (kafka_topic='t')` | the same (its processor reads `t`) |
//! | `CREATE [OR REPLACE] STREAM|TABLE s AS SELECT`, `INSERT INTO s SELECT` | CREATE processor (the query's), READ every input topic, WRITE the output topic (+ CREATE it when missing) |
//! | `SELECT ... FROM table` (pull or push) | READ processor `table`'s |
//! | `SELECT ... FROM stream EMIT CHANGES` | READ processor `stream`, READ its topic |
//! | `INSERT INTO s VALUES (...)` | WRITE `s`'s topic |
//! | `DROP STREAM|TABLE s`, `TERMINATE q` | DELETE processor `s` (the query's target) |
//! | `SHOW STREAMS|TABLES|QUERIES` | lists only what DESCRIBE processor allows |
//! | `DESCRIBE s` | DESCRIBE processor `s` |
//! | `CREATE SOURCE|SINK CONNECTOR c`, `DROP CONNECTOR c`, `DESCRIBE CONNECTOR c` | CREATE, DELETE, DESCRIBE connector `c` |
//! | `SHOW CONNECTORS` | lists only what DESCRIBE connector allows |

use eddy_sql::{ConnectorStatement, Outcome, Session, Statement};
use serde_json::Value;

use crate::error::BrokerError;
use crate::processors::owned::check_rights;
use crate::security::acl::{Operation as O, ResourceType as T};
use crate::security::acls::Access;
use crate::topics::Topics;

/// READ on `topic`, and the right to create it when it does not exist.
fn read_or_create(access: &Access, topics: &Topics, topic: &str) -> Result<(), BrokerError> {
    access.check(O::Read, T::Topic, topic)?;
    if topics.get(topic).is_err() {
        access.check_create_topic(topic)?;
    }
    Ok(())
}

/// Whether `access` may run `stmt`, which compiled to `outcome` in `session`.
pub(super) fn authorize(
    access: &Access,
    topics: &Topics,
    session: &Session,
    stmt: &Statement,
    outcome: &Outcome,
) -> Result<(), BrokerError> {
    if !access.restricted() {
        return Ok(());
    }
    match outcome {
        Outcome::Declared(info) => {
            access.check(O::Create, T::Processor, &info.name)?;
            read_or_create(access, topics, &info.topic)
        }
        Outcome::Materialized { compiled, .. } => {
            access.check(O::Create, T::Processor, &compiled.target.name)?;
            read_or_create(access, topics, &compiled.target.topic)
        }
        Outcome::Query { compiled, .. } => {
            access.check(O::Create, T::Processor, compiled.processor.name())?;
            let inputs = compiled.processor.source_topics();
            check_rights(access, topics, &inputs, std::slice::from_ref(&compiled.target.topic))
        }
        Outcome::Select(q) => access.check(O::Read, T::Processor, &q.processor),
        Outcome::Push(q) => {
            access.check(O::Read, T::Processor, &q.stream)?;
            access.check(O::Read, T::Topic, &q.topic)
        }
        Outcome::Rows(_) => match stmt {
            Statement::Describe { name, .. } => {
                let name = session.catalog.get(name).map_or(name.as_str(), |s| s.name.as_str());
                access.check(O::Describe, T::Processor, name)
            }
            // SHOW lists what may be described (`visible`).
            _ => Ok(()),
        },
        Outcome::Dropped(info) => access.check(O::Delete, T::Processor, &info.name),
        Outcome::Terminated(q) => access.check(O::Delete, T::Processor, &q.target),
        Outcome::Inserted(record) => access.check(O::Write, T::Topic, &record.topic),
        Outcome::Connector(c) => match c {
            ConnectorStatement::Create { name, .. } => access.check(O::Create, T::Connector, name),
            ConnectorStatement::Describe { name, .. } => {
                access.check(O::Describe, T::Connector, name)
            }
            ConnectorStatement::Drop { name, .. } => access.check(O::Delete, T::Connector, name),
            // SHOW CONNECTORS lists what may be described.
            ConnectorStatement::Show { .. } => Ok(()),
        },
    }
}

/// The SHOW rows `access` may see: a stream's or table's (`name`) or query's (`target`)
/// processor it may DESCRIBE.
pub(super) fn visible(access: &Access, rows: Vec<Value>) -> Vec<Value> {
    rows.into_iter()
        .filter(|row| {
            let name = row.get("name").or_else(|| row.get("target")).and_then(Value::as_str);
            name.is_none_or(|n| access.allows(O::Describe, T::Processor, n))
        })
        .collect()
}
