//! `WITH (...)` properties of `CREATE STREAM|TABLE`: checked against the known names, and
//! turned into the [`SourceInfo`] they describe.
//!
//! Properties (case-insensitive): `KAFKA_TOPIC` or `TOPIC` (default: the name), `VALUE_FORMAT`
//! or `FORMAT` = `'JSON'` | `'DELIMITED'` (with `VALUE_DELIMITER`) | `'KAFKA'` | `'RAW'` (one
//! VARCHAR column holding the whole value as text; see `format.rs`), `KEY` (a value column
//! whose value is the key, ksqlDB's older form; `col TYPE KEY` reads the column from the
//! record key instead), `PARTITIONS` (default 1), `TIMESTAMP` (a BIGINT or TIMESTAMP column,
//! ms, used as event time). `KEY_FORMAT`, `REPLICAS` and `TIMESTAMP_FORMAT` are accepted and
//! ignored (keys are text, or JSON for several columns).
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
        const KNOWN: [&str; 12] = [
            "KAFKA_TOPIC",
            "TOPIC",
            "VALUE_FORMAT",
            "FORMAT",
            "VALUE_DELIMITER",
            "KEY",
            "PARTITIONS",
            "TIMESTAMP",
            "KEY_FORMAT",
            "REPLICAS",
            "TIMESTAMP_FORMAT",
            "WRAP_SINGLE_VALUE",
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

    /// The value format `VALUE_FORMAT` (or `FORMAT`, which names the key's too) gives, if any,
    /// with `VALUE_DELIMITER` for DELIMITED.
    pub fn value_format(&self, pos: Pos) -> Result<Option<ValueFormat>, SqlError> {
        let (name, at) = match (self.text("VALUE_FORMAT")?, self.text("FORMAT")?) {
            (Some(_), Some(_)) => {
                return Err(SqlError::Invalid {
                    pos: self.get("FORMAT").map_or(pos, |p| p.pos),
                    message: "give FORMAT or VALUE_FORMAT, not both".into(),
                });
            }
            (Some(v), None) => (v, "VALUE_FORMAT"),
            (None, Some(f)) => (f, "FORMAT"),
            (None, None) => {
                if let Some(p) = self.get("VALUE_DELIMITER") {
                    return Err(SqlError::Invalid {
                        pos: p.pos,
                        message: "VALUE_DELIMITER is only for VALUE_FORMAT='DELIMITED'".into(),
                    });
                }
                return Ok(None);
            }
        };
        let delimiter = self.text("VALUE_DELIMITER")?;
        let pos = self.get(at).map_or(pos, |p| p.pos);
        ValueFormat::parse(&name, delimiter.as_deref())
            .map(Some)
            .map_err(|message| SqlError::Invalid { pos, message })
    }

    /// `WRAP_SINGLE_VALUE`, if given (true or false).
    pub fn wrap_single_value(&self) -> Result<Option<bool>, SqlError> {
        match self.get("WRAP_SINGLE_VALUE") {
            None => Ok(None),
            Some(Property { value: Value::Bool(b), .. }) => Ok(Some(*b)),
            Some(Property { value: Value::String(s), pos, .. }) => {
                match s.to_ascii_lowercase().as_str() {
                    "true" => Ok(Some(true)),
                    "false" => Ok(Some(false)),
                    _ => Err(SqlError::Invalid {
                        pos: *pos,
                        message: "WRAP_SINGLE_VALUE is true or false".into(),
                    }),
                }
            }
            Some(p) => Err(SqlError::Invalid {
                pos: p.pos,
                message: "WRAP_SINGLE_VALUE is true or false".into(),
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
        let format = self.value_format(pos)?.unwrap_or(ValueFormat::Json);
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
            read_only: false,
        })
    }
}
