//! A captured table and the records one change becomes: the Debezium envelope
//! (`before`, `after`, `op` c/u/d/r/t, `ts_ms`, `source`), keyed by the primary key as a JSON
//! object (`{"id":1}`), a delete followed by a tombstone for the same key. Every record carries
//! header [`POS_HEADER`], `<commit end LSN>/<index in the transaction>` in fixed-width hex, so
//! positions compare as text and the source can tell what a partition already holds.

use serde_json::{Map, Value, json};

use super::pgoutput::{Datum, PG_EPOCH_US, format_lsn};
use super::query::Column;
use super::value::{Mapping, to_json};
use crate::error::ConnectError;
use crate::topics::OutRecord;

/// The header naming a CDC record's place in the change stream.
pub const POS_HEADER: &str = "eddy.cdc.pos";

/// What Debezium puts in place of a TOASTed value that did not change and was not sent.
pub const UNAVAILABLE: &str = "__debezium_unavailable_value";

/// A captured table.
#[derive(Debug, Clone)]
pub struct Captured {
    pub schema: String,
    pub table: String,
    pub topic: String,
    pub columns: Vec<Column>,
    /// Indexes of the primary-key columns (empty: records have no key).
    pub pk: Vec<usize>,
}

/// Where a change happened, for `source`.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub db: &'a str,
    pub prefix: &'a str,
    pub xid: Option<u32>,
    pub lsn: u64,
    pub commit_ms: i64,
    /// `"true"` in the snapshot, `"false"` streaming.
    pub snapshot: &'a str,
}

pub fn commit_ms(commit_us: i64) -> i64 {
    (commit_us + PG_EPOCH_US).div_euclid(1000)
}

pub fn pos(end_lsn: u64, seq: u32) -> String {
    format!("{end_lsn:016X}/{seq:08X}")
}

impl Captured {
    /// A row's values (text, `None` for NULL) as a JSON object; an unchanged TOASTed value
    /// takes its value from `before` when known.
    pub fn row(
        &self,
        values: &[Datum],
        before: Option<&Map<String, Value>>,
    ) -> Result<Map<String, Value>, ConnectError> {
        let mut m = Map::new();
        for (col, datum) in self.columns.iter().zip(values) {
            let v = match datum {
                Datum::Null => Value::Null,
                Datum::Unchanged => before
                    .and_then(|b| b.get(&col.name))
                    .cloned()
                    .unwrap_or_else(|| Value::String(UNAVAILABLE.into())),
                Datum::Text(t) => self.value(col, t)?,
            };
            m.insert(col.name.clone(), v);
        }
        Ok(m)
    }

    fn value(&self, col: &Column, text: &str) -> Result<Value, ConnectError> {
        to_json(col.mapping, Some(text)).map_err(|_| ConnectError::BadValue {
            column: format!("{}.{}.{}", self.schema, self.table, col.name),
            type_name: format!("{:?}", col.mapping),
            value: text.chars().take(100).collect(),
        })
    }

    /// The record key of a row: `{"pk": value, ...}`.
    pub fn key(&self, row: &Map<String, Value>) -> Option<Vec<u8>> {
        if self.pk.is_empty() {
            return None;
        }
        let key: Map<String, Value> = self
            .pk
            .iter()
            .filter_map(|i| self.columns.get(*i))
            .map(|c| (c.name.clone(), row.get(&c.name).cloned().unwrap_or(Value::Null)))
            .collect();
        Some(Value::Object(key).to_string().into_bytes())
    }

    /// Replaces the columns with a Relation message's (a table altered meanwhile).
    pub fn set_columns(&mut self, cols: &[super::pgoutput::RelColumn]) -> Result<(), ConnectError> {
        let mut columns = Vec::with_capacity(cols.len());
        for c in cols {
            let mapping = Mapping::of(c.type_oid).ok_or_else(|| ConnectError::Unmappable {
                table: format!("{}.{}", self.schema, self.table),
                column: c.name.clone(),
                type_name: format!("oid {}", c.type_oid),
            })?;
            columns.push(Column { name: c.name.clone(), mapping });
        }
        let names: Vec<String> =
            self.pk.iter().filter_map(|i| self.columns.get(*i)).map(|c| c.name.clone()).collect();
        self.pk = columns
            .iter()
            .enumerate()
            .filter(|(_, c)| names.contains(&c.name))
            .map(|(i, _)| i)
            .collect();
        if self.pk.is_empty() {
            self.pk = cols.iter().enumerate().filter(|(_, c)| c.key).map(|(i, _)| i).collect();
        }
        self.columns = columns;
        Ok(())
    }

    /// The envelope record of one change (and the tombstone after a delete).
    pub fn records(
        &self,
        op: char,
        before: Option<Map<String, Value>>,
        after: Option<Map<String, Value>>,
        o: Origin<'_>,
    ) -> Vec<OutRecord> {
        let key = match (&after, &before) {
            (Some(row), _) | (None, Some(row)) => self.key(row),
            (None, None) => None,
        };
        let envelope = json!({
            "before": before,
            "after": after,
            "op": op.to_string(),
            "ts_ms": crate::now_ms(),
            "source": {
                "version": env!("CARGO_PKG_VERSION"),
                "connector": "postgresql",
                "name": o.prefix,
                "ts_ms": o.commit_ms,
                "snapshot": o.snapshot,
                "db": o.db,
                "schema": self.schema,
                "table": self.table,
                "txId": o.xid,
                "lsn": o.lsn,
                "lsn_text": format_lsn(o.lsn),
            },
        });
        let mut out = vec![OutRecord {
            key: key.clone(),
            value: Some(envelope.to_string().into_bytes()),
            timestamp: o.commit_ms,
            headers: Vec::new(),
        }];
        if op == 'd' && key.is_some() {
            out.push(OutRecord { key, value: None, timestamp: o.commit_ms, headers: Vec::new() });
        }
        out
    }
}
