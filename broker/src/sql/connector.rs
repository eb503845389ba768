//! Connector statements in SQL (ksqlDB's): `CREATE SOURCE|SINK CONNECTOR name WITH (...)`,
//! `SHOW [SOURCE|SINK] CONNECTORS`, `DESCRIBE CONNECTOR name`, `DROP CONNECTOR [IF EXISTS]
//! name`, run on the broker's [`Connectors`](crate::connectors::Connectors). They touch neither
//! the catalog nor `__sql`: connectors are kept in `__connectors`.

use eddy_protocol::v1::{self, sql_result::Result as R};
use eddy_sql::ConnectorStatement;
use serde_json::Value;

use super::SqlService;
use crate::error::BrokerError;
use crate::security::acl::{Operation, ResourceType};
use crate::security::acls::Access;

/// The columns of SHOW CONNECTORS; DESCRIBE CONNECTOR adds [`DESCRIBE_MORE`].
const SHOW_COLUMNS: [&str; 5] = ["name", "kind", "class", "state", "reason"];
const DESCRIBE_MORE: [&str; 4] = ["failures", "records", "position", "config"];

fn row(info: &v1::ConnectorInfo, describe: bool) -> String {
    let mut cells = vec![
        Value::from(info.name.clone()),
        Value::from(info.kind.clone()),
        Value::from(info.class.clone()),
        Value::from(info.state.clone()),
        if info.reason.is_empty() { Value::Null } else { Value::from(info.reason.clone()) },
    ];
    if describe {
        let config: std::collections::BTreeMap<_, _> = info.config.iter().collect();
        cells.push(Value::from(info.failures));
        cells.push(Value::from(info.records));
        cells.push(Value::from(info.position.clone()));
        cells.push(serde_json::to_value(config).unwrap_or(Value::Null));
    }
    Value::Array(cells).to_string()
}

fn rows(infos: &[v1::ConnectorInfo], describe: bool) -> R {
    let mut columns: Vec<String> = SHOW_COLUMNS.map(String::from).to_vec();
    if describe {
        columns.extend(DESCRIBE_MORE.map(String::from));
    }
    R::Rows(v1::SqlRows {
        columns,
        rows: infos.iter().map(|i| row(i, describe)).collect(),
        ..Default::default()
    })
}

impl SqlService {
    /// Runs one connector statement as `access`'s (blocking: it starts and stops connector
    /// threads); a connector it creates runs with that principal's rights.
    pub(super) fn connector(
        &self,
        c: &ConnectorStatement,
        access: &Access,
    ) -> Result<R, BrokerError> {
        let connectors = &self.connectors;
        Ok(match c {
            ConnectorStatement::Create { name, source, if_not_exists, properties, .. } => {
                if *if_not_exists && connectors.status(name).is_ok() {
                    return Ok(R::Unchanged(true));
                }
                let kind = if *source { "source" } else { "sink" };
                let config = properties.iter().cloned().collect();
                rows(&[connectors.create(name, kind, config, access.principal())?], false)
            }
            ConnectorStatement::Show { source, .. } => {
                let wanted = |i: &v1::ConnectorInfo| {
                    source.is_none_or(|s| i.kind == if s { "source" } else { "sink" })
                        && access.allows(Operation::Describe, ResourceType::Connector, &i.name)
                };
                let all: Vec<v1::ConnectorInfo> =
                    connectors.list().into_iter().filter(wanted).collect();
                rows(&all, false)
            }
            ConnectorStatement::Describe { name, .. } => rows(&[connectors.status(name)?], true),
            ConnectorStatement::Drop { name, if_exists, .. } => {
                if *if_exists && connectors.status(name).is_err() {
                    return Ok(R::Unchanged(true));
                }
                connectors.drop_connector(name)?;
                R::Dropped(name.clone())
            }
        })
    }
}
