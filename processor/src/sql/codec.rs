//! Codecs where SQL rows meet topics and tables: record keys as text, source values decoded
//! into rows (one value per column, in the schema's order), output rows written as JSON objects
//! of their named columns, windowed keys as JSON, and NULL rows as tombstones.
//!
//! Inside a query a row is a `Vec<Value>` whose layout its schema fixes; names appear only
//! where a row leaves the query: [`RowCodec`] writes a stream's rows under their column names,
//! and an aggregate's result is a [`NamedRow`], which serializes as an object so that the table
//! store, its changelog and pull queries hold `{"COLUMN": value, ...}`.

use std::sync::Arc;

use serde::de::{Deserialize, Deserializer};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

use super::catalog::{RowReader, decode_key, json_columns};
use super::types::SqlType;
use crate::codec::Codec;
use crate::ops::window::Windowed;

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
pub(crate) struct RowDecoder(pub Arc<RowReader>);

impl Codec<Vec<Value>> for RowDecoder {
    fn encode(&self, value: &Vec<Value>) -> Result<Option<Vec<u8>>, String> {
        RowCodec(self.0.names.clone()).encode(value)
    }
    fn decode(&self, bytes: Option<&[u8]>) -> Result<Vec<Value>, String> {
        self.0.decode(bytes)
    }
}

/// Output keys: a string as its text, NULL as no key, anything else as JSON text.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SqlKey;

impl Codec<Value> for SqlKey {
    fn encode(&self, value: &Value) -> Result<Option<Vec<u8>>, String> {
        Ok(match value {
            Value::Null => None,
            Value::String(s) => Some(s.as_bytes().to_vec()),
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

/// Rows of the named columns as JSON objects (a stream query's output).
#[derive(Debug, Clone)]
pub(crate) struct RowCodec(pub Arc<[String]>);

impl Codec<Vec<Value>> for RowCodec {
    fn encode(&self, value: &Vec<Value>) -> Result<Option<Vec<u8>>, String> {
        serde_json::to_vec(&Named(&self.0, value)).map(Some).map_err(|e| e.to_string())
    }
    fn decode(&self, bytes: Option<&[u8]>) -> Result<Vec<Value>, String> {
        match bytes {
            Some(b) => json_columns(b, &self.0),
            None => Ok(vec![Value::Null; self.0.len()]),
        }
    }
}

/// An aggregate's output rows as JSON objects; a NULL row (a group HAVING rejects) is a
/// tombstone.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TableRowCodec;

impl Codec<Option<NamedRow>> for TableRowCodec {
    fn encode(&self, value: &Option<NamedRow>) -> Result<Option<Vec<u8>>, String> {
        match value {
            None => Ok(None),
            Some(row) => serde_json::to_vec(row).map(Some).map_err(|e| e.to_string()),
        }
    }
    fn decode(&self, bytes: Option<&[u8]>) -> Result<Option<NamedRow>, String> {
        serde_json::from_slice(bytes.unwrap_or(b"null")).map_err(|e| e.to_string())
    }
}

/// A row with its column names: what a table made by `CREATE TABLE ... AS SELECT` holds.
/// Serializes as a JSON object of the columns in order; deserializes from any object.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedRow {
    pub names: Arc<[String]>,
    pub values: Vec<Value>,
}

impl Serialize for NamedRow {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Named(&self.names, &self.values).serialize(s)
    }
}

impl<'de> Deserialize<'de> for NamedRow {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = Map::<String, Value>::deserialize(d)?;
        let (names, values): (Vec<String>, Vec<Value>) = map.into_iter().unzip();
        Ok(NamedRow { names: names.into(), values })
    }
}

/// Names and values serialized as one object, without building a map.
struct Named<'a>(&'a [String], &'a [Value]);

impl Serialize for Named<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (name, value) in self.0.iter().zip(self.1) {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_rows_are_objects_both_ways() {
        let names: Arc<[String]> = vec!["URL".to_owned(), "VIEWS".to_owned()].into();
        let row = NamedRow { names: names.clone(), values: vec![Value::from("/a"), 3.into()] };
        let bytes = TableRowCodec.encode(&Some(row.clone())).unwrap().unwrap();
        assert_eq!(bytes, br#"{"URL":"/a","VIEWS":3}"#);
        assert_eq!(TableRowCodec.decode(Some(&bytes)).unwrap(), Some(row));
        assert_eq!(TableRowCodec.encode(&None).unwrap(), None);
        let codec = RowCodec(names);
        let values = vec![Value::Null, Value::from(1.5)];
        let bytes = codec.encode(&values).unwrap().unwrap();
        assert_eq!(bytes, br#"{"URL":null,"VIEWS":1.5}"#);
        assert_eq!(codec.decode(Some(&bytes)).unwrap(), values);
    }
}
