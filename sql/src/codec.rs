//! Codecs where SQL rows meet topics and tables: record keys as text, source values decoded
//! into rows (one value per column, in the schema's order), output rows written as JSON objects
//! of their named columns, windowed keys as JSON, and NULL rows as tombstones.
//!
//! Inside a query a row is a `Vec<Value>` whose layout its schema fixes; names appear only
//! where a row leaves the query: [`RowCodec`] writes a stream's rows under their column names;
//! an unwindowed aggregate's result is a [`JsonRow`], the object already written from its
//! accumulator, and a windowed one's a [`NamedRow`], which serializes as an object — so that
//! the table store, its changelog and pull queries hold `{"COLUMN": value, ...}`. Sinks own
//! their records, so bytes a value already holds (a `JsonRow`, a text key) are handed over,
//! not copied.
//!
//! Invariants: every value written is one JSON value (an object for a row, `null` nowhere —
//! a NULL row is a tombstone); decoding what was encoded gives the row back; a column's name
//! is escaped once per writer, not per row.

use std::sync::Arc;

use serde::de::{Deserialize, Deserializer};
use serde::ser::{Error as _, Serialize, SerializeMap, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use eddy_processor::{Codec, Windowed};

use crate::ast::SqlType;
use crate::format::{ValueFormat, write_delimited, write_kafka};
use crate::row_reader::{RowReader, decode_key, json_columns};

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

/// Record values of a declared table, as the objects of its value columns a materialized
/// table stores (`materialize.rs`); the key column, which lives in the record key, is left
/// out.
#[derive(Debug, Clone)]
pub(crate) struct ObjectDecoder(pub Arc<RowReader>);

impl Codec<Value> for ObjectDecoder {
    fn encode(&self, value: &Value) -> Result<Option<Vec<u8>>, String> {
        serde_json::to_vec(value).map(Some).map_err(|e| e.to_string())
    }
    fn decode(&self, bytes: Option<&[u8]>) -> Result<Value, String> {
        let row = self.0.decode(bytes)?;
        let key = self.0.key_column;
        let fields = self.0.names.iter().zip(row).enumerate().filter(|(i, _)| Some(*i) != key);
        Ok(Value::Object(fields.map(|(_, (n, v))| (n.clone(), v)).collect()))
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
    fn encode_owned(&self, value: Value) -> Result<Option<Vec<u8>>, String> {
        match value {
            Value::String(s) => Ok(Some(s.into_bytes())),
            other => self.encode(&other),
        }
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

    /// The columns, in order.
    pub fn names(&self) -> &Arc<[String]> {
        &self.names
    }

    /// An object of the columns, column `i`'s value written by `value(i, out)`. A value that
    /// fails to write (none of a `Value` can: JSON holds them all) is written as `null`.
    pub fn object(
        &self,
        mut value: impl FnMut(usize, &mut Vec<u8>) -> serde_json::Result<()>,
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.push(b'{');
        for (i, prefix) in self.prefixes.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(prefix);
            let at = out.len();
            if let Err(error) = value(i, &mut out) {
                tracing::debug!(%error, column = %self.names[i], "a column failed to write; it is null");
                out.truncate(at);
                out.extend_from_slice(b"null");
            }
        }
        out.push(b'}');
        out
    }

    /// An object of `values`, one per column (NULL for any missing).
    pub fn write(&self, values: &[Value]) -> Vec<u8> {
        self.object(|i, out| serde_json::to_writer(out, values.get(i).unwrap_or(&Value::Null)))
    }
}

/// Writes output rows of fixed columns in a topic's value format: JSON objects (through an
/// [`ObjectWriter`]), DELIMITED lines, a KAFKA primitive, or RAW text (`format.rs`).
#[derive(Debug, Clone)]
pub(crate) struct ValueWriter {
    pub objects: ObjectWriter,
    format: ValueFormat,
    types: Arc<[SqlType]>,
}

impl ValueWriter {
    /// Rows of the columns `objects` writes, of `types`, in `format`.
    pub fn new(objects: ObjectWriter, types: Vec<SqlType>, format: ValueFormat) -> Self {
        Self { objects, format, types: types.into() }
    }

    /// JSON rows of the writer's columns.
    #[cfg(test)]
    pub fn json(objects: ObjectWriter) -> Self {
        let types = objects.names.iter().map(|_| SqlType::Any).collect();
        Self { objects, format: ValueFormat::Json, types }
    }

    pub fn is_json(&self) -> bool {
        self.format == ValueFormat::Json
    }

    /// A row of the columns' values as a record value (`None`: no value, a KAFKA-format NULL).
    pub fn write(&self, values: &[Value]) -> Result<Option<Vec<u8>>, String> {
        let first = values.first().unwrap_or(&Value::Null);
        match self.format {
            ValueFormat::Json => Ok(Some(self.objects.write(values))),
            ValueFormat::JsonValue if first.is_null() => Ok(None),
            ValueFormat::JsonValue => {
                serde_json::to_vec(first).map(Some).map_err(|e| e.to_string())
            }
            ValueFormat::Delimited(d) => Ok(Some(write_delimited(values, d))),
            ValueFormat::Kafka => write_kafka(first, self.types.first().unwrap_or(&SqlType::Any)),
            ValueFormat::Raw => Ok(Some(crate::functions::text(first).into_bytes())),
        }
    }

    /// A row stored as a JSON object, written in the format (the object's fields in the
    /// writer's column order).
    pub fn rewrite(&self, object: &[u8]) -> Result<Option<Vec<u8>>, String> {
        let values = json_columns(object, &self.objects.names)?;
        self.write(&values)
    }
}

/// Rows of the named columns in the target's value format (a stream query's output).
#[derive(Debug, Clone)]
pub(crate) struct RowCodec(pub ValueWriter);

impl Codec<Vec<Value>> for RowCodec {
    /// The empty row (a tombstone passed on) is no value.
    fn encode(&self, value: &Vec<Value>) -> Result<Option<Vec<u8>>, String> {
        if value.is_empty() {
            return Ok(None);
        }
        self.0.write(value)
    }
    /// Reads JSON rows back (the only format a query reads its own output in is JSON).
    fn decode(&self, bytes: Option<&[u8]>) -> Result<Vec<Value>, String> {
        match bytes {
            Some(b) => json_columns(b, &self.0.objects.names),
            None => Ok(vec![Value::Null; self.0.objects.names.len()]),
        }
    }
}

/// A windowed aggregate's output rows in the target's value format; a NULL row (a group
/// HAVING rejects) is a tombstone. Rows of the writer's columns (the query's projection) are
/// written by it.
#[derive(Debug, Clone)]
pub(crate) struct TableRowCodec(pub ValueWriter);

impl Codec<Option<NamedRow>> for TableRowCodec {
    fn encode(&self, value: &Option<NamedRow>) -> Result<Option<Vec<u8>>, String> {
        match value {
            None => Ok(None),
            Some(row) if Arc::ptr_eq(&row.names, &self.0.objects.names) => {
                self.0.write(&row.values)
            }
            Some(row) if self.0.is_json() => {
                serde_json::to_vec(row).map(Some).map_err(|e| e.to_string())
            }
            Some(row) => self.0.rewrite(&serde_json::to_vec(row).map_err(|e| e.to_string())?),
        }
    }
    fn decode(&self, bytes: Option<&[u8]>) -> Result<Option<NamedRow>, String> {
        serde_json::from_slice(bytes.unwrap_or(b"null")).map_err(|e| e.to_string())
    }
}

/// A row written as a JSON object: what an unwindowed `CREATE TABLE ... AS SELECT` emits and
/// its table holds. It is written from the accumulator ([`ObjectWriter::object`]) and moved
/// into the output record as it is. Serializes as the object itself (raw JSON), so the table's
/// bytes are the row's; a table flush writes the row again from the accumulator, and checks
/// it is JSON on the way in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonRow(Vec<u8>);

impl JsonRow {
    /// A group HAVING has never let through: stored as `false` (pull queries skip rows that
    /// are not objects), never written to the output topic.
    pub(crate) fn hidden() -> Self {
        Self(b"false".to_vec())
    }

    pub(crate) fn is_hidden(&self) -> bool {
        self.0 == b"false"
    }

    /// Bytes [`ObjectWriter::object`] wrote (a JSON object).
    pub(crate) fn written(bytes: Vec<u8>) -> Self {
        debug_assert!(
            serde_json::from_slice::<&RawValue>(&bytes).is_ok(),
            "a row that is not JSON"
        );
        Self(bytes)
    }
}

impl Serialize for JsonRow {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let raw: &RawValue = serde_json::from_slice(&self.0).map_err(S::Error::custom)?;
        raw.serialize(s)
    }
}

impl<'de> Deserialize<'de> for JsonRow {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        Ok(JsonRow(Box::<str>::from(raw).into_string().into_bytes()))
    }
}

/// An unwindowed aggregate's rows in a non-JSON value format (DELIMITED, KAFKA, RAW): each
/// stored object rewritten; a NULL row is a tombstone.
#[derive(Debug, Clone)]
pub(crate) struct FormattedRowCodec(pub ValueWriter);

impl Codec<Option<JsonRow>> for FormattedRowCodec {
    fn encode(&self, value: &Option<JsonRow>) -> Result<Option<Vec<u8>>, String> {
        match value {
            None => Ok(None),
            Some(row) => self.0.rewrite(&row.0),
        }
    }
    fn decode(&self, bytes: Option<&[u8]>) -> Result<Option<JsonRow>, String> {
        JsonRowCodec.decode(bytes)
    }
}

/// An unwindowed aggregate's rows as they are; a NULL row (a group HAVING rejects) is a
/// tombstone.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JsonRowCodec;

impl Codec<Option<JsonRow>> for JsonRowCodec {
    fn encode(&self, value: &Option<JsonRow>) -> Result<Option<Vec<u8>>, String> {
        Ok(value.as_ref().map(|row| row.0.clone()))
    }
    fn encode_owned(&self, value: Option<JsonRow>) -> Result<Option<Vec<u8>>, String> {
        Ok(value.map(|row| row.0))
    }
    fn decode(&self, bytes: Option<&[u8]>) -> Result<Option<JsonRow>, String> {
        serde_json::from_slice(bytes.unwrap_or(b"null")).map_err(|e| e.to_string())
    }
}

/// A row with its column names: what a windowed `CREATE TABLE ... AS SELECT` holds.
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
        let table = TableRowCodec(ValueWriter::json(writer.clone()));
        let bytes = table.encode(&Some(row.clone())).unwrap().unwrap();
        assert_eq!(bytes, br#"{"URL":"/a","VIEWS":3}"#);
        assert_eq!(table.decode(Some(&bytes)).unwrap(), Some(row));
        assert_eq!(table.encode(&None).unwrap(), None);
        // Rows of other columns (read back from a table) are written by serde.
        let other = NamedRow { names: vec!["A\"".to_owned()].into(), values: vec![1.into()] };
        assert_eq!(table.encode(&Some(other)).unwrap().unwrap(), br#"{"A\"":1}"#);
        let codec = RowCodec(ValueWriter::json(ObjectWriter::new(
            vec!["U\"RL".to_owned(), "VIEWS".to_owned()].into(),
        )));
        let bytes = codec.encode(&vec![Value::from("é\n"), 2.into()]).unwrap().unwrap();
        assert_eq!(bytes, "{\"U\\\"RL\":\"é\\n\",\"VIEWS\":2}".as_bytes());
        let codec = RowCodec(ValueWriter::json(writer));
        let values = vec![Value::Null, Value::from(1.5)];
        let bytes = codec.encode(&values).unwrap().unwrap();
        assert_eq!(bytes, br#"{"URL":null,"VIEWS":1.5}"#);
        assert_eq!(codec.decode(Some(&bytes)).unwrap(), values);
    }

    #[test]
    fn written_rows_travel_as_their_bytes() {
        let writer = ObjectWriter::new(vec!["URL".to_owned(), "VIEWS".to_owned()].into());
        let values = [Value::from("/a\\"), Value::from(7)];
        let bytes = writer.object(|i, out| serde_json::to_writer(out, &values[i]));
        assert_eq!(bytes, br#"{"URL":"/a\\","VIEWS":7}"#);
        let row = JsonRow::written(bytes.clone());
        // In the table and its changelog: the object itself, and back.
        let stored = serde_json::to_vec(&Some(row.clone())).unwrap();
        assert_eq!(stored, bytes);
        assert_eq!(serde_json::from_slice::<Option<JsonRow>>(&stored).unwrap(), Some(row.clone()));
        assert_eq!(serde_json::to_vec(&None::<JsonRow>).unwrap(), b"null");
        // To a topic: the bytes handed over, not copied; a rejected group is a tombstone.
        assert_eq!(JsonRowCodec.encode(&Some(row.clone())).unwrap(), Some(bytes.clone()));
        assert_eq!(JsonRowCodec.decode(Some(&bytes)).unwrap(), Some(row.clone()));
        let at = row.0.as_ptr();
        let sent = JsonRowCodec.encode_owned(Some(row)).unwrap().unwrap();
        assert_eq!((sent.as_ptr(), &sent), (at, &bytes));
        assert_eq!(JsonRowCodec.encode_owned(None).unwrap(), None);
        assert_eq!(JsonRowCodec.decode(None).unwrap(), None);
        let err = JsonRowCodec.decode(Some(b"{\"URL\":")).unwrap_err();
        assert!(err.contains("EOF"), "{err}");
        // A column that fails to write, after writing part of itself, is null: the object stays
        // whole.
        let bytes = writer.object(|i, out| {
            out.extend_from_slice(b"\"partial");
            if i == 0 {
                Err(serde_json::Error::io(std::io::ErrorKind::Other.into()))
            } else {
                out.push(b'"');
                Ok(())
            }
        });
        assert_eq!(bytes, br#"{"URL":null,"VIEWS":"partial"}"#);
        let parsed: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(parsed, serde_json::json!({"URL": null, "VIEWS": "partial"}));
    }
}
