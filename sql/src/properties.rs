//! `WITH (...)` properties of `CREATE STREAM|TABLE`: checked against the known names, and
//! turned into the [`SourceInfo`] they describe.
//!
//! Properties (case-insensitive): `KAFKA_TOPIC` or `TOPIC` (default: the name), `VALUE_FORMAT`
//! = `'JSON'` | `'RAW'` (one VARCHAR column holding the whole value as text; `'KAFKA'` is
//! accepted as a synonym), `KEY` (a value column whose value is the key, ksqlDB's older form;
//! `col TYPE KEY` reads the column from the record key instead), `PARTITIONS` (default 1),
//! `TIMESTAMP` (a BIGINT or TIMESTAMP column, ms, used as event time). `KEY_FORMAT` and
//! `REPLICAS` are accepted and ignored.
//!
//! Invariant: an unknown property is an error pointing at it, never silently dropped.

use serde_json::Value;

use crate::ast::{Property, SourceKind, SqlType};
use crate::error::{Pos, SqlError};
use crate::source::{SourceInfo, ValueFormat};

/// Parsed `WITH (...)` properties.
pub(crate) struct Props<'a> {
    props: &'a [Property],
}

impl<'a> Props<'a> {
    pub fn new(props: &'a [Property]) -> Result<Self, SqlError> {
        const KNOWN: [&str; 8] = [
            "KAFKA_TOPIC",
            "TOPIC",
            "VALUE_FORMAT",
            "KEY",
            "PARTITIONS",
            "TIMESTAMP",
            "KEY_FORMAT",
            "REPLICAS",
        ];
        for p in props {
            if !KNOWN.contains(&p.name.as_str()) {
                return Err(SqlError::Invalid {
                    pos: p.pos,
                    message: format!("unknown property {}; known: {}", p.name, KNOWN.join(", ")),
                });
            }
        }
        Ok(Self { props })
    }

    fn get(&self, name: &str) -> Option<&'a Property> {
        self.props.iter().find(|p| p.name == name)
    }

    pub fn text(&self, name: &str) -> Result<Option<String>, SqlError> {
        match self.get(name) {
            None => Ok(None),
            Some(Property { value: Value::String(s), .. }) => Ok(Some(s.clone())),
            Some(p) => Err(SqlError::Invalid {
                pos: p.pos,
                message: format!("{name} must be a quoted string, like {name}='...'"),
            }),
        }
    }

    /// The source these properties describe.
    pub fn source(
        &self,
        pos: Pos,
        name: &str,
        kind: SourceKind,
        columns: Vec<(String, SqlType)>,
    ) -> Result<SourceInfo, SqlError> {
        let topic = match self.text("KAFKA_TOPIC")? {
            Some(t) => t,
            None => self.text("TOPIC")?.unwrap_or_else(|| name.to_owned()),
        };
        let format = match self.text("VALUE_FORMAT")?.map(|f| f.to_ascii_uppercase()).as_deref() {
            None | Some("JSON") => ValueFormat::Json,
            Some("RAW" | "KAFKA" | "DELIMITED_LINE") => ValueFormat::Raw,
            Some(other) => {
                return Err(SqlError::Unsupported {
                    pos: self.get("VALUE_FORMAT").map_or(pos, |p| p.pos),
                    what: format!("VALUE_FORMAT '{other}'"),
                    why: "use 'JSON' or 'RAW'".into(),
                });
            }
        };
        let partitions = match self.get("PARTITIONS") {
            None => 1,
            Some(p) => {
                p.value.as_u64().and_then(|n| u32::try_from(n).ok()).filter(|n| *n > 0).ok_or(
                    SqlError::Invalid {
                        pos: p.pos,
                        message: "PARTITIONS must be a positive whole number".into(),
                    },
                )?
            }
        };
        let upper = |s: String| {
            if s.chars().any(|c| c.is_ascii_lowercase()) { s.to_ascii_uppercase() } else { s }
        };
        Ok(SourceInfo {
            name: name.to_owned(),
            kind,
            topic,
            columns,
            key_column: None,
            key_property: self.text("KEY")?.map(upper),
            format,
            partitions,
            timestamp: self.text("TIMESTAMP")?.map(upper),
            materialized: None,
        })
    }
}
