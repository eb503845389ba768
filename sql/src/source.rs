//! What a stream or table is: its topic, columns, key, format, partitions and event-time column
//! ([`SourceInfo`]), and how a table made by `CREATE TABLE ... AS SELECT` is keyed
//! ([`Materialized`]).
//!
//! Invariants: `columns` holds every column, key column included, in declaration order, and
//! the key column, `key` property column and `TIMESTAMP` column (when set) each name one of
//! them — `Catalog::declare` and `compile` check it before a `SourceInfo` reaches the catalog.

use crate::ast::{SourceKind, SqlType};
use crate::types::Schema;

pub use crate::format::ValueFormat;

/// How a materialized (CREATE TABLE AS) table is keyed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Materialized {
    /// The processor (= the statement's target name) holding the table.
    pub processor: String,
    /// Keys are `{"key", "start", "end"}` objects.
    pub windowed: bool,
    /// Output columns holding the GROUP BY values (the key), in GROUP BY order.
    pub key_columns: Vec<String>,
}

/// A stream or table.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SourceInfo {
    pub name: String,
    pub kind: SourceKind,
    pub topic: String,
    /// Every column, key column included, in declaration order.
    pub columns: Vec<(String, SqlType)>,
    /// A column read from the record key (`col TYPE KEY`).
    pub key_column: Option<String>,
    /// A value column equal to the key (`WITH (key='col')`).
    pub key_property: Option<String>,
    pub format: ValueFormat,
    pub partitions: u32,
    pub timestamp: Option<String>,
    pub materialized: Option<Materialized>,
    /// Declared with `CREATE SOURCE`: nothing may write into it.
    #[serde(default)]
    pub read_only: bool,
}

impl SourceInfo {
    pub fn schema(&self) -> Schema {
        Schema::new(self.columns.clone())
    }

    /// The column that holds the key, if any.
    pub fn key_name(&self) -> Option<&str> {
        self.key_column.as_deref().or(self.key_property.as_deref())
    }

    /// The type of the key column, if the key is a declared column.
    pub fn key_type(&self) -> Option<&SqlType> {
        self.key_column.as_ref().and_then(|k| self.type_of(k))
    }

    fn type_of(&self, name: &str) -> Option<&SqlType> {
        self.columns.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
}
