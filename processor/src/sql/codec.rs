//! Codecs where SQL rows meet topics: record keys as text, values as JSON rows of declared
//! columns, windowed keys as JSON, and NULL rows as tombstones; and [`source_row`], what a
//! decoded source record means as a row (queries and push queries over streams share it).

use std::sync::Arc;

use serde_json::Value;

use super::catalog::{SourceInfo, decode_key};
use super::types::SqlType;
use crate::codec::Codec;
use crate::ops::window::Windowed;

/// Completes a decoded record of `info` as a row: the key column (if declared) takes the key,
/// a `key` property column (if any) becomes the key, a `TIMESTAMP` column holding a number
/// becomes the event time.
pub(crate) fn source_row(info: &SourceInfo, key: &mut Value, row: &mut Value, ts: &mut i64) {
    let Value::Object(row) = row else { return };
    if let Some(k) = &info.key_column {
        row.insert(k.clone(), key.clone());
    }
    if let Some(p) = &info.key_property {
        *key = row.get(p).cloned().unwrap_or(Value::Null);
    }
    if let Some(t) = &info.timestamp
        && let Some(ms) = row.get(t).and_then(Value::as_i64)
    {
        *ts = ms;
    }
}

/// Record keys of SQL sources: text (numbers parsed for numeric key columns).
#[derive(Debug, Clone)]
pub(crate) struct KeyDecoder(pub Option<SqlType>);

impl Codec<Value> for KeyDecoder {
    fn encode(&self, value: &Value) -> Result<Option<Vec<u8>>, String> {
        SqlKey.encode(value)
    }
    fn decode(&self, bytes: Option<&[u8]>) -> Result<Value, String> {
        Ok(decode_key(bytes, self.0.as_ref()))
    }
}

/// Record values of a declared source, as rows.
#[derive(Debug, Clone)]
pub(crate) struct RowDecoder(pub Arc<SourceInfo>);

impl Codec<Value> for RowDecoder {
    fn encode(&self, value: &Value) -> Result<Option<Vec<u8>>, String> {
        RowCodec.encode(value)
    }
    fn decode(&self, bytes: Option<&[u8]>) -> Result<Value, String> {
        self.0.decode_value(bytes)
    }
}

/// Output keys: a string as its text, NULL as no key, anything else as JSON text.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SqlKey;

impl Codec<Value> for SqlKey {
    fn encode(&self, value: &Value) -> Result<Option<Vec<u8>>, String> {
        Ok(match value {
            Value::Null => None,
            Value::String(s) => Some(s.clone().into_bytes()),
            other => Some(other.to_string().into_bytes()),
        })
    }
    fn decode(&self, bytes: Option<&[u8]>) -> Result<Value, String> {
        Ok(decode_key(bytes, None))
    }
}

/// Windowed output keys: `{"key", "start", "end"}` as JSON.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WindowedKey;

impl Codec<Windowed<Value>> for WindowedKey {
    fn encode(&self, value: &Windowed<Value>) -> Result<Option<Vec<u8>>, String> {
        serde_json::to_vec(value).map(Some).map_err(|e| e.to_string())
    }
    fn decode(&self, bytes: Option<&[u8]>) -> Result<Windowed<Value>, String> {
        serde_json::from_slice(bytes.unwrap_or(b"null")).map_err(|e| e.to_string())
    }
}

/// Output rows as JSON; a NULL row (a group HAVING rejects) is a tombstone.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowCodec;

impl Codec<Value> for RowCodec {
    fn encode(&self, value: &Value) -> Result<Option<Vec<u8>>, String> {
        match value {
            Value::Null => Ok(None),
            v => serde_json::to_vec(v).map(Some).map_err(|e| e.to_string()),
        }
    }
    fn decode(&self, bytes: Option<&[u8]>) -> Result<Value, String> {
        serde_json::from_slice(bytes.unwrap_or(b"null")).map_err(|e| e.to_string())
    }
}
