//! The catalog: every stream and table the SQL layer knows ([`SourceInfo`]), and the persistent
//! queries that feed the derived ones ([`QueryInfo`]).
//!
//! `CREATE STREAM|TABLE name (cols) WITH (...)` declares a source over an existing topic
//! ([`Catalog::declare`] checks it, `properties.rs` reads its `WITH`); `CREATE ... AS SELECT`
//! adds its target (and the query). Invariants: names are upper-cased unless quoted, and unique
//! per catalog; a source's columns are unique and its key, `key` property and `TIMESTAMP`
//! columns are among them; dropping a source drops the query writing it.

use std::collections::BTreeMap;

use crate::ast::{CreateSource, SourceKind, SqlType};
use crate::error::{Pos, SqlError};
use crate::properties::Props;
use crate::source::{SourceInfo, ValueFormat};
use crate::types::Schema;

/// A persistent query: `CREATE ... AS SELECT` running as a processor.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryInfo {
    pub id: String,
    pub target: String,
    pub sql: String,
    pub version: u32,
}

/// Streams, tables and queries by (upper-cased) name.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    sources: BTreeMap<String, SourceInfo>,
    queries: BTreeMap<String, QueryInfo>,
}

impl Catalog {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, name: &str) -> Option<&SourceInfo> {
        self.sources.get(name)
    }

    pub fn lookup(&self, pos: Pos, name: &str) -> Result<&SourceInfo, SqlError> {
        self.get(name).ok_or_else(|| SqlError::UnknownSource { pos, name: name.to_owned() })
    }

    pub fn sources(&self) -> impl Iterator<Item = &SourceInfo> {
        self.sources.values()
    }

    pub fn queries(&self) -> impl Iterator<Item = &QueryInfo> {
        self.queries.values()
    }

    /// Adds or (with `replace`) replaces a source.
    pub fn insert(&mut self, pos: Pos, info: SourceInfo, replace: bool) -> Result<(), SqlError> {
        if !replace && self.sources.contains_key(&info.name) {
            return Err(SqlError::AlreadyExists { pos, name: info.name });
        }
        self.sources.insert(info.name.clone(), info);
        Ok(())
    }

    pub fn add_query(&mut self, query: QueryInfo) {
        self.queries.insert(query.id.clone(), query);
    }

    /// Removes a source and the query writing it (queries reading it are not checked yet).
    pub fn drop_source(&mut self, pos: Pos, name: &str) -> Result<SourceInfo, SqlError> {
        let info = self.lookup(pos, name)?.clone();
        let inserting = format!("INSERTQUERY_{name}_");
        if let Some(q) = self.queries.values().find(|q| q.id.starts_with(&inserting)) {
            return Err(SqlError::Invalid {
                pos,
                message: format!(
                    "cannot drop {name}: query {} writes into it; TERMINATE it first",
                    q.id
                ),
            });
        }
        self.queries.retain(|_, q| q.target != name);
        self.sources.remove(name);
        Ok(info)
    }

    pub fn terminate(&mut self, pos: Pos, id: &str) -> Result<QueryInfo, SqlError> {
        self.queries.remove(id).ok_or_else(|| SqlError::Invalid {
            pos,
            message: format!("no running query {id}; SHOW QUERIES lists them"),
        })
    }

    /// Checks a `CREATE STREAM|TABLE (cols) WITH (...)` and returns the source it declares.
    pub fn declare(&self, stmt: &CreateSource) -> Result<SourceInfo, SqlError> {
        let props = Props::new(&stmt.with)?;
        let mut columns = Vec::new();
        let mut key_column = None;
        for c in &stmt.columns {
            if columns.iter().any(|(n, _): &(String, SqlType)| *n == c.name) {
                return Err(SqlError::Invalid {
                    pos: c.pos,
                    message: format!("column {} is declared twice", c.name),
                });
            }
            if c.key {
                if key_column.is_some() {
                    return Err(SqlError::Unsupported {
                        pos: c.pos,
                        what: "a second KEY column".into(),
                        why: "keys are one column".into(),
                    });
                }
                key_column = Some(c.name.clone());
            }
            columns.push((c.name.clone(), c.ty.clone()));
        }
        let schema = Schema::new(columns.clone());
        let mut info = props.source(stmt.pos, &stmt.name, stmt.kind, columns)?;
        info.key_column = key_column;
        info.read_only = stmt.source;
        let existing_source = self.get(&stmt.name).is_some_and(|s| s.read_only);
        if stmt.or_replace && (stmt.source || existing_source) {
            let kind = if stmt.kind == SourceKind::Stream { "stream" } else { "table" };
            return Err(SqlError::Invalid {
                pos: stmt.pos,
                message: format!(
                    "cannot add {kind} '{}': CREATE OR REPLACE is not supported on source {kind}s",
                    stmt.name
                ),
            });
        }
        for col in [&info.key_property, &info.timestamp].into_iter().flatten() {
            if schema.get(col).is_none() {
                return Err(SqlError::UnknownColumn {
                    pos: stmt.pos,
                    name: col.clone(),
                    known: schema.names(),
                });
            }
        }
        let values: Vec<(String, SqlType)> = info
            .columns
            .iter()
            .filter(|(n, _)| Some(n) != info.key_column.as_ref())
            .cloned()
            .collect();
        if info.format == ValueFormat::Raw && values.len() != 1 {
            return Err(SqlError::Invalid {
                pos: stmt.pos,
                message: "VALUE_FORMAT='RAW' takes exactly one (VARCHAR) value column".into(),
            });
        }
        let invalid = |message| SqlError::Invalid { pos: stmt.pos, message };
        info.format =
            info.format.wrapped(props.wrap_single_value()?, values.len()).map_err(invalid)?;
        info.format.check_columns(&values).map_err(invalid)?;
        Ok(info)
    }
}
