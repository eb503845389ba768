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
        serde_json::to_vec(&Named(&self.0.names, value)).map(Some).map_err(|e| e.to_string())
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

/// Writes rows of fixed columns as JSON objects, each column's `"NAME":` escaped once.
#[derive(Debug, Clone)]
pub(crate) struct ObjectWriter {
    names: Arc<[String]>,
    prefixes: Arc<[Vec<u8>]>,
}

impl ObjectWriter {
    pub fn new(names: Arc<[String]>) -> Self {
        let prefix = |name: &String| {
            let mut p = serde_json::to_vec(name).unwrap_or_default();
            p.push(b':');
            p
        };
        let prefixes = names.iter().map(prefix).collect();
        Self { names, prefixes }
    }

    fn write(&self, values: &[Value]) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(128);
        out.push(b'{');
        for (i, (prefix, value)) in self.prefixes.iter().zip(values).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(prefix);
            serde_json::to_writer(&mut out, value).map_err(|e| e.to_string())?;
        }
        out.push(b'}');
        Ok(out)
    }
}

/// Rows of the named columns as JSON objects (a stream query's output).
#[derive(Debug, Clone)]
pub(crate) struct RowCodec(pub ObjectWriter);

impl Codec<Vec<Value>> for RowCodec {
    fn encode(&self, value: &Vec<Value>) -> Result<Option<Vec<u8>>, String> {
        self.0.write(value).map(Some)
    }
    fn decode(&self, bytes: Option<&[u8]>) -> Result<Vec<Value>, String> {
        match bytes {
            Some(b) => json_columns(b, &self.0.names),
            None => Ok(vec![Value::Null; self.0.names.len()]),
        }
    }
}

/// An aggregate's output rows as JSON objects; a NULL row (a group HAVING rejects) is a
/// tombstone. Rows of the writer's columns (the query's projection) are written by it.
#[derive(Debug, Clone)]
pub(crate) struct TableRowCodec(pub ObjectWriter);

impl Codec<Option<NamedRow>> for TableRowCodec {
    fn encode(&self, value: &Option<NamedRow>) -> Result<Option<Vec<u8>>, String> {
        match value {
            None => Ok(None),
            Some(row) if Arc::ptr_eq(&row.names, &self.0.names) => {
                self.0.write(&row.values).map(Some)
            }
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
        let writer = ObjectWriter::new(names.clone());
        let table = TableRowCodec(writer.clone());
        let bytes = table.encode(&Some(row.clone())).unwrap().unwrap();
        assert_eq!(bytes, br#"{"URL":"/a","VIEWS":3}"#);
        assert_eq!(table.decode(Some(&bytes)).unwrap(), Some(row));
        assert_eq!(table.encode(&None).unwrap(), None);
        // Rows of other columns (read back from a table) are written by serde.
        let other = NamedRow { names: vec!["A\"".to_owned()].into(), values: vec![1.into()] };
        assert_eq!(table.encode(&Some(other)).unwrap().unwrap(), br#"{"A\"":1}"#);
        let codec =
            RowCodec(ObjectWriter::new(vec!["U\"RL".to_owned(), "VIEWS".to_owned()].into()));
        let bytes = codec.encode(&vec![Value::from("é\n"), 2.into()]).unwrap().unwrap();
        assert_eq!(bytes, "{\"U\\\"RL\":\"é\\n\",\"VIEWS\":2}".as_bytes());
        let codec = RowCodec(writer);
        let values = vec![Value::Null, Value::from(1.5)];
        let bytes = codec.encode(&values).unwrap().unwrap();
        assert_eq!(bytes, br#"{"URL":null,"VIEWS":1.5}"#);
        assert_eq!(codec.decode(Some(&bytes)).unwrap(), values);
    }
}
