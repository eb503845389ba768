//! The row decoder: how records of one source become rows (one value per column, in a fixed
//! layout), and how record keys become SQL values.
//!
//! Invariants: a row's layout is fixed when the reader is built — expressions are bound to
//! it, so a column is always at the same place; JSON fields are matched to columns by exact
//! name, else case-insensitively (the smallest such name wins), exactly as parsing the object
//! and looking each column up would; fields no column reads are skipped unparsed; a missing
//! field is NULL.

use std::borrow::Cow;
use std::sync::Arc;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

use crate::ast::SqlType;
use crate::expr::{double, integral};
use crate::format::{delimited_value, kafka_value, split_delimited};
use crate::source::{SourceInfo, ValueFormat};
use crate::types::Schema;

/// How records of one source become rows: one value per column of the row's layout — the
/// source's columns in declaration order, or only those a query reads ([`RowReader::reading`]),
/// the order its bound expressions use. Built once per query from the [`SourceInfo`], so
/// decoding a record allocates only the row.
#[derive(Debug, Clone)]
pub(crate) struct RowReader {
    format: ValueFormat,
    /// The row's columns, in order.
    pub layout: Schema,
    /// Their names (written as a JSON object's, when a row is encoded).
    pub names: Arc<[String]>,
    /// The columns read from the value (all but the key column) and where each sits.
    value_names: Vec<String>,
    value_slots: Vec<usize>,
    /// The declared type of each value column (values are coerced to it, as ksqlDB does).
    value_types: Vec<SqlType>,
    /// DELIMITED and KAFKA values are positional: per value column of the source, in
    /// declaration order, where it sits in the row and its type (`None`: not read).
    positions: Vec<Option<(usize, SqlType)>>,
    /// Where the pseudo columns `ROWPARTITION` and `ROWOFFSET` sit, when read: after the
    /// declared columns, filled from the record's place in its topic.
    pub rowpartition: Option<usize>,
    pub rowoffset: Option<usize>,
    /// Where the key column, the `key` property column and the `TIMESTAMP` column sit.
    pub key_column: Option<usize>,
    pub key_property: Option<usize>,
    pub timestamp: Option<usize>,
}

impl RowReader {
    /// Reads every declared column (rows exactly as wide as the source's columns, which
    /// joins rely on; no pseudo columns).
    pub fn new(info: &SourceInfo) -> Self {
        Self::reading(info, |c| !matches!(c, "ROWPARTITION" | "ROWOFFSET"))
    }

    /// Rows of the columns `read` names (and the `key` property and `TIMESTAMP` columns, which
    /// the record needs), in declaration order; other fields are skipped unparsed.
    pub fn reading(info: &SourceInfo, read: impl Fn(&str) -> bool) -> Self {
        let kept = |name: &String| {
            (info.format == ValueFormat::Raw && Some(name) != info.key_column.as_ref())
                || read(name)
                || Some(name) == info.key_property.as_ref()
                || Some(name) == info.timestamp.as_ref()
        };
        let mut columns: Vec<(String, SqlType)> =
            info.columns.iter().filter(|(n, _)| kept(n)).cloned().collect();
        // A layout is never empty, so that the empty row can stand for a tombstone.
        if columns.is_empty()
            && let Some(first) = info.columns.first()
        {
            columns.push(first.clone());
        }
        // Pseudo columns a query reads get slots of their own (a declared column of the same
        // name wins, as it does in expressions).
        let mut pseudo = |name: &str, ty: SqlType| {
            let declared = columns.iter().any(|(c, _)| c == name);
            (!declared && read(name)).then(|| {
                columns.push((name.to_owned(), ty));
                columns.len() - 1
            })
        };
        let rowpartition = pseudo("ROWPARTITION", SqlType::Int);
        let rowoffset = pseudo("ROWOFFSET", SqlType::Bigint);
        let layout = Schema::new(columns);
        let slot = |name: &Option<String>| {
            name.as_ref().and_then(|n| layout.columns.iter().position(|(c, _)| c == n))
        };
        let key_column = slot(&info.key_column);
        let not_value = [key_column, rowpartition, rowoffset];
        let value_columns: Vec<(usize, &(String, SqlType))> = layout
            .columns
            .iter()
            .enumerate()
            .filter(|(i, _)| !not_value.contains(&Some(*i)))
            .collect();
        let value_slots = value_columns.iter().map(|(i, _)| *i).collect();
        let value_names = value_columns.iter().map(|(_, (n, _))| n.clone()).collect();
        let value_types = value_columns.iter().map(|(_, (_, t))| t.clone()).collect();
        let positions = info
            .columns
            .iter()
            .filter(|(n, _)| Some(n) != info.key_column.as_ref())
            .map(|(n, t)| layout.columns.iter().position(|(c, _)| c == n).map(|i| (i, t.clone())))
            .collect();
        Self {
            format: info.format,
            names: layout.columns.iter().map(|(n, _)| n.clone()).collect(),
            key_property: slot(&info.key_property),
            timestamp: slot(&info.timestamp),
            layout,
            value_names,
            value_slots,
            value_types,
            positions,
            rowpartition,
            rowoffset,
            key_column,
        }
    }

    /// Decodes a record value into a row; the key column's slot stays NULL (it comes from the
    /// key). JSON values are matched to columns by name, exactly or else case-insensitively,
    /// and coerced to the column's type (`"2"` in an INT column is 2; a value that cannot be
    /// is an error naming the column); a missing field is NULL. A record without a value (a
    /// tombstone) is the empty row, which no layout has: streams drop it (in a stream it is no
    /// event), tables never decode one (it deletes the key).
    pub fn decode(&self, value: Option<&[u8]>) -> Result<Vec<Value>, String> {
        let Some(v) = value else { return Ok(Vec::new()) };
        let mut row = vec![Value::Null; self.names.len()];
        match self.format {
            ValueFormat::Raw => {
                if let Some(slot) = self.value_slots.first().and_then(|i| row.get_mut(*i)) {
                    *slot = Value::String(String::from_utf8_lossy(v).into_owned());
                }
            }
            ValueFormat::Delimited(delimiter) => {
                let fields = split_delimited(v, delimiter)?;
                if fields.len() != self.positions.len() {
                    return Err(format!(
                        "a DELIMITED value of {} field(s), the source has {} value column(s)",
                        fields.len(),
                        self.positions.len()
                    ));
                }
                for (field, at) in fields.into_iter().zip(&self.positions) {
                    if let Some((slot, ty)) = at
                        && let Some(place) = row.get_mut(*slot)
                    {
                        *place = delimited_value(field, ty)?;
                    }
                }
            }
            ValueFormat::Kafka => {
                if let Some((slot, ty)) = self.positions.first().and_then(Option::as_ref)
                    && let Some(place) = row.get_mut(*slot)
                {
                    *place = kafka_value(v, ty)?;
                }
            }
            ValueFormat::JsonValue => {
                if let Some((slot, ty)) = self.positions.first().and_then(Option::as_ref)
                    && let Some(place) = row.get_mut(*slot)
                {
                    let value = serde_json::from_slice(v).map_err(|e| e.to_string())?;
                    *place = coerce(value, ty)?;
                }
            }
            ValueFormat::Json => {
                json_fields(v, &self.value_names, &mut row, Some(&self.value_slots))?;
                let typed = self.value_slots.iter().zip(&self.value_types).zip(&self.value_names);
                for ((slot, ty), name) in typed {
                    if let Some(place) = row.get_mut(*slot) {
                        let value = std::mem::take(place);
                        *place = coerce(value, ty).map_err(|e| format!("column {name}: {e}"))?;
                    }
                }
            }
        }
        Ok(row)
    }

    /// Completes a decoded row with its record: the key column (if declared) takes the key, a
    /// `key` property column (if any) becomes the key, a `TIMESTAMP` column holding a number
    /// becomes the event time.
    pub fn complete(&self, key: &mut Value, row: &mut [Value], ts: &mut i64) {
        if let Some(slot) = self.key_column.and_then(|i| row.get_mut(i)) {
            *slot = key.clone();
        }
        if let Some(i) = self.key_property {
            *key = row.get(i).cloned().unwrap_or(Value::Null);
        }
        if let Some(ms) = self.timestamp.and_then(|i| row.get(i)).and_then(Value::as_i64) {
            *ts = ms;
        }
    }
}

/// A record key as a SQL value: text, or for a numeric key column its number.
pub fn decode_key(key: Option<&[u8]>, ty: Option<&SqlType>) -> Value {
    let Some(bytes) = key else { return Value::Null };
    let text = String::from_utf8_lossy(bytes).into_owned();
    match ty {
        Some(SqlType::Int | SqlType::Bigint | SqlType::Timestamp) => {
            text.trim().parse::<i64>().map_or(Value::String(text), Value::from)
        }
        Some(SqlType::Double) => text.trim().parse::<f64>().map_or(Value::String(text), |x| {
            serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
        }),
        _ => Value::String(text),
    }
}

/// A JSON value as a column of type `ty` holds it, by ksqlDB's JSON rules: numbers convert
/// between integer and double (an integer column truncates, and wraps to 32 bits for INT),
/// text holding a number or boolean parses, any scalar becomes text in a VARCHAR column;
/// arrays, maps and structs convert element by element, a struct's fields matched to the
/// declared ones by name (exactly, else ignoring case; others dropped). NULL stays NULL.
pub(crate) fn coerce(v: Value, ty: &SqlType) -> Result<Value, String> {
    let fail = |v: &Value| Err(format!("{v} is not a valid {ty}"));
    Ok(match (ty, v) {
        (_, Value::Null) => Value::Null,
        (SqlType::Any, v) => v,
        (SqlType::String, Value::String(s)) => Value::String(s),
        (SqlType::String, v) => Value::String(v.to_string()),
        (SqlType::Int, v) => match integral(&v) {
            Some(i) => Value::from(i as i32),
            None => return fail(&v),
        },
        (SqlType::Bigint | SqlType::Timestamp, v) => match integral(&v) {
            Some(i) => Value::from(i),
            None => return fail(&v),
        },
        (SqlType::Double, Value::Number(n)) if n.is_f64() => Value::Number(n),
        (SqlType::Double, v) => match double(&v) {
            Some(x) => serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number),
            None => return fail(&v),
        },
        (SqlType::Boolean, Value::Bool(b)) => Value::Bool(b),
        (SqlType::Boolean, Value::String(s)) if s.eq_ignore_ascii_case("true") => true.into(),
        (SqlType::Boolean, Value::String(s)) if s.eq_ignore_ascii_case("false") => false.into(),
        (SqlType::Array(t), Value::Array(items)) => {
            Value::Array(items.into_iter().map(|x| coerce(x, t)).collect::<Result<_, _>>()?)
        }
        (SqlType::Map(_, t), Value::Object(m)) => Value::Object(
            m.into_iter().map(|(k, x)| Ok((k, coerce(x, t)?))).collect::<Result<_, String>>()?,
        ),
        (SqlType::Struct(fields), Value::Object(mut m)) => {
            let mut out = serde_json::Map::new();
            for (name, t) in fields {
                let found = match m.remove(name) {
                    Some(x) => Some(x),
                    None => {
                        let folded = m.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned();
                        folded.and_then(|k| m.remove(&k))
                    }
                };
                out.insert(name.clone(), coerce(found.unwrap_or(Value::Null), t)?);
            }
            Value::Object(out)
        }
        (_, v) => return fail(&v),
    })
}

/// The values of `columns` in a JSON object: each column takes the field of its exact name,
/// else the first field (in name order) equal to it ignoring ASCII case, else NULL. The object
/// is read once, keeping only those fields (the others are skipped unparsed). JSON `null` reads
/// as all NULL; another non-object is an error.
pub(crate) fn json_columns(bytes: &[u8], columns: &[String]) -> Result<Vec<Value>, String> {
    let mut row = vec![Value::Null; columns.len()];
    json_fields(bytes, columns, &mut row, None)?;
    Ok(row)
}

/// [`json_columns`] written into `row`: column `i` at `slots[i]` (or at `i`), the other places
/// left as they are.
fn json_fields(
    bytes: &[u8],
    columns: &[String],
    row: &mut [Value],
    slots: Option<&[usize]>,
) -> Result<(), String> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return match serde_json::from_slice::<Value>(bytes).map_err(|e| e.to_string())? {
            Value::Null => Ok(()),
            other => Err(format!("expected a JSON object, got {other}")),
        };
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    ColumnsSeed { columns, row, slots }.deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())
}

/// How a column's value was found so far.
#[derive(Clone, Copy)]
enum Match<'de> {
    Missing,
    /// By its exact name: only a later exact duplicate replaces it.
    Exact,
    /// Ignoring case, from this field (a field of smaller name, or a later duplicate, replaces
    /// it).
    Folded(&'de str),
    /// Ignoring case, from a field whose name had escapes: `unescaped[i]`.
    FoldedOwned(usize),
}

/// Columns this wide or narrower keep their matches on the stack.
const STACK_COLUMNS: usize = 8;

struct ColumnsSeed<'a> {
    columns: &'a [String],
    row: &'a mut [Value],
    slots: Option<&'a [usize]>,
}

impl<'de> DeserializeSeed<'de> for ColumnsSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ColumnsSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let columns = self.columns;
        let mut stack = [Match::Missing; STACK_COLUMNS];
        let mut heap: Vec<Match<'de>> = Vec::new();
        let how: &mut [Match<'de>] = if columns.len() <= STACK_COLUMNS {
            &mut stack[..columns.len()]
        } else {
            heap.resize(columns.len(), Match::Missing);
            &mut heap
        };
        // Names of folded matches that were not borrowed from the input.
        let mut unescaped: Vec<String> = Vec::new();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            // Which column takes this field: an exact name always (a later duplicate wins, as
            // in a parsed object), a case-insensitive one unless an exact or smaller name has.
            let exact = columns.iter().position(|c| c.as_str() == key);
            let take = exact.or_else(|| {
                columns.iter().zip(how.iter()).position(|(c, m)| {
                    c.eq_ignore_ascii_case(&key)
                        && match *m {
                            Match::Missing => true,
                            Match::Exact => false,
                            Match::Folded(k) => *key <= *k,
                            Match::FoldedOwned(j) => unescaped.get(j).is_none_or(|k| *key <= **k),
                        }
                })
            });
            match take {
                Some(i) => {
                    let value = map.next_value()?;
                    let slot = self.slots.map_or(Some(i), |s| s.get(i).copied());
                    if let Some(place) = slot.and_then(|j| self.row.get_mut(j)) {
                        *place = value;
                    }
                    how[i] = match (exact, key) {
                        (Some(_), _) => Match::Exact,
                        (None, Cow::Borrowed(k)) => Match::Folded(k),
                        (None, Cow::Owned(k)) => {
                            unescaped.push(k);
                            Match::FoldedOwned(unescaped.len() - 1)
                        }
                    };
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A field name, borrowed from the input unless it has escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a field name")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::ast::SourceKind;
    use crate::expr::field_of;

    proptest! {
        /// The one-pass reader picks what parsing the whole object and looking each column up
        /// (`field_of`) picks, duplicates and case variants included.
        #[test]
        fn columns_are_read_as_a_parsed_object_would_give_them(
            fields in prop::collection::vec(
                (prop::sample::select(vec!["url", "URL", "Url", "views", "VIEWS", "other", "u\\u0072l"]),
                 prop::sample::select(vec!["1", "\"x\"", "null", "[1,2]", "{\"a\":true}"])),
                0..8),
        ) {
            let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            let text = format!("{{{}}}", body.join(","));
            let columns = ["URL".to_string(), "VIEWS".to_string(), "MISSING".to_string()];
            let got = json_columns(text.as_bytes(), &columns).unwrap();
            let parsed: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
            let want: Vec<Value> = columns.iter().map(|c| field_of(&parsed, c)).collect();
            prop_assert_eq!(got, want, "{}", text);
        }
    }

    #[test]
    fn wide_rows_match_past_the_stack_and_escaped_names_fold() {
        let columns: Vec<String> = (0..12).map(|i| format!("C{i}")).collect();
        let text = r#"{"c11": 11, "C3": 3, "c3": 33, "\u0063\u0030": 0, "c5": 5, "C5": 55}"#;
        let got = json_columns(text.as_bytes(), &columns).unwrap();
        let mut want = vec![Value::Null; 12];
        (want[0], want[3], want[5], want[11]) = (0.into(), 3.into(), 55.into(), 11.into());
        assert_eq!(got, want);
    }

    #[test]
    fn a_reader_decodes_only_what_it_reads_into_the_declared_layout() {
        let info = SourceInfo {
            name: "S".into(),
            kind: SourceKind::Stream,
            topic: "s".into(),
            columns: ["ID", "A", "B", "T", "K"]
                .iter()
                .map(|c| (c.to_string(), SqlType::Any))
                .collect(),
            key_column: Some("ID".into()),
            key_property: Some("K".into()),
            format: ValueFormat::Json,
            partitions: 1,
            timestamp: Some("T".into()),
            materialized: None,
            read_only: false,
        };
        // ID (the key column) and A are not read; the key property and the timestamp always are.
        let reader = RowReader::reading(&info, |c| c == "B");
        assert_eq!(reader.layout.names(), ["B", "T", "K"]);
        let value = br#"{"a": 1, "b": 2, "t": 99, "k": "x", "id": "ignored"}"#;
        let mut row = reader.decode(Some(value)).unwrap();
        assert_eq!(row, [Value::from(2), 99.into(), "x".into()]);
        let (mut key, mut ts) = (Value::from("id-1"), 0);
        reader.complete(&mut key, &mut row, &mut ts);
        assert_eq!((key, ts), (Value::from("x"), 99));
        assert!(reader.decode(None).unwrap().is_empty(), "a tombstone is the empty row");
        // Reading everything: the declared layout, the key column from the key.
        let all = RowReader::new(&info);
        let mut row = all.decode(Some(value)).unwrap();
        assert_eq!(row, vec![Value::Null, 1.into(), 2.into(), 99.into(), "x".into()]);
        let (mut key, mut ts) = (Value::from("id-1"), 0);
        all.complete(&mut key, &mut row, &mut ts);
        assert_eq!((&row[0], key, ts), (&Value::from("id-1"), Value::from("x"), 99));
    }

    #[test]
    fn non_objects_are_refused_and_null_is_all_null() {
        let names = ["A".to_string()];
        assert_eq!(json_columns(b" null ", &names).unwrap(), vec![Value::Null]);
        assert_eq!(json_columns(b"[1]", &names).unwrap_err(), "expected a JSON object, got [1]");
        assert!(json_columns(b"{\"a\":1} x", &names).unwrap_err().contains("trailing characters"));
        assert!(json_columns(b"{\"a\":", &names).unwrap_err().contains("EOF"));
    }
}
