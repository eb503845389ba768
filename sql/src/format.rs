//! Value formats at topic boundaries, as ksqlDB defines them: `JSON` (an object of named
//! columns), `DELIMITED` (one CSV line, the columns in declaration order), `KAFKA` (one
//! primitive column in Kafka's serializer encoding: big-endian INT and BIGINT, IEEE DOUBLE,
//! UTF-8 VARCHAR), and eddy's `RAW` (one VARCHAR column holding the whole value as text).
//!
//! This module owns the byte-level rules of DELIMITED and KAFKA — splitting and quoting a CSV
//! line, reading and writing primitives — and which column types each format can hold. How
//! rows are laid out (which column goes where) is the row reader's and the codecs' business.
//!
//! Invariants: writing a row and reading it back gives the row (DELIMITED: NULL is an empty
//! field, and an empty string is written quoted so that it stays one); a value a format cannot
//! hold is an error naming the column, never a silently wrong value.

use serde_json::Value;

use crate::ast::SqlType;
use crate::functions::java_double;

/// How a source's record values are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ValueFormat {
    Json,
    /// JSON with `WRAP_SINGLE_VALUE=false`: the one value column is the whole value (`10`,
    /// not `{"V": 10}`).
    JsonValue,
    Raw,
    /// CSV with this delimiter.
    Delimited(char),
    Kafka,
}

impl ValueFormat {
    /// Parses a `VALUE_FORMAT`/`FORMAT` name (any case) with an optional `VALUE_DELIMITER`
    /// (`'TAB'`, `'SPACE'` or one character); `Err` says what is accepted.
    pub fn parse(name: &str, delimiter: Option<&str>) -> Result<Self, String> {
        let format = match name.to_ascii_uppercase().as_str() {
            "JSON" => ValueFormat::Json,
            "RAW" | "DELIMITED_LINE" => ValueFormat::Raw,
            "KAFKA" => ValueFormat::Kafka,
            "DELIMITED" => ValueFormat::Delimited(parse_delimiter(delimiter.unwrap_or(","))?),
            other => {
                return Err(format!(
                    "VALUE_FORMAT '{other}' is not supported; use 'JSON', 'DELIMITED', 'KAFKA' \
                     or 'RAW' (AVRO and PROTOBUF need a schema registry, which eddy has not)"
                ));
            }
        };
        if delimiter.is_some() && !matches!(format, ValueFormat::Delimited(_)) {
            return Err("VALUE_DELIMITER is only for VALUE_FORMAT='DELIMITED'".into());
        }
        Ok(format)
    }

    /// The name `SHOW STREAMS` prints.
    pub fn name(&self) -> &'static str {
        match self {
            ValueFormat::Json | ValueFormat::JsonValue => "JSON",
            ValueFormat::Raw => "RAW",
            ValueFormat::Delimited(_) => "DELIMITED",
            ValueFormat::Kafka => "KAFKA",
        }
    }

    /// This format with `WRAP_SINGLE_VALUE` (if given) applied, for a value of `columns`
    /// columns: ksqlDB's rules (only one column can be unwrapped; DELIMITED and KAFKA values
    /// are never wrapped).
    pub fn wrapped(self, wrap: Option<bool>, columns: usize) -> Result<Self, String> {
        let Some(wrap) = wrap else { return Ok(self) };
        if columns != 1 {
            return Err("'WRAP_SINGLE_VALUE' is only valid for single-field value schemas".into());
        }
        match (self, wrap) {
            (ValueFormat::Json | ValueFormat::JsonValue, true) => Ok(ValueFormat::Json),
            (ValueFormat::Json | ValueFormat::JsonValue, false) => Ok(ValueFormat::JsonValue),
            (other, true) => Err(format!(
                "format '{}' does not support 'WRAP_SINGLE_VALUE' set to 'true'",
                other.name()
            )),
            (other, false) => Ok(other),
        }
    }

    /// Whether the format can hold value columns of these types (`Err`: why not).
    pub fn check_columns(&self, columns: &[(String, SqlType)]) -> Result<(), String> {
        match self {
            ValueFormat::Json | ValueFormat::Raw => Ok(()),
            ValueFormat::JsonValue if columns.len() == 1 => Ok(()),
            ValueFormat::JsonValue => {
                Err("'WRAP_SINGLE_VALUE' is only valid for single-field value schemas".into())
            }
            ValueFormat::Delimited(_) => match columns.iter().find(|(_, t)| !primitive(t)) {
                Some((name, t)) => {
                    Err(format!("the 'DELIMITED' format does not support type {t} (column {name})"))
                }
                None => Ok(()),
            },
            ValueFormat::Kafka => match columns {
                [(name, t)] if !kafka_type(t) => {
                    Err(format!("the 'KAFKA' format does not support type {t} (column {name})"))
                }
                [_] => Ok(()),
                _ => {
                    let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
                    Err(format!(
                        "the 'KAFKA' format only supports a single field, got: {}",
                        names.join(", ")
                    ))
                }
            },
        }
    }
}

fn parse_delimiter(text: &str) -> Result<char, String> {
    match text.to_ascii_uppercase().as_str() {
        "TAB" => Ok('\t'),
        "SPACE" => Ok(' '),
        _ => {
            let mut chars = text.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) if c != '"' && c != '\n' && c != '\r' => Ok(c),
                _ => Err(format!(
                    "VALUE_DELIMITER '{text}' must be one character (not a quote or a line \
                     break), 'TAB' or 'SPACE'"
                )),
            }
        }
    }
}

fn primitive(t: &SqlType) -> bool {
    matches!(
        t,
        SqlType::String
            | SqlType::Int
            | SqlType::Bigint
            | SqlType::Double
            | SqlType::Boolean
            | SqlType::Timestamp
            | SqlType::Any
    )
}

fn kafka_type(t: &SqlType) -> bool {
    matches!(t, SqlType::String | SqlType::Int | SqlType::Bigint | SqlType::Double | SqlType::Any)
}

/// Splits one CSV line into its fields: `"..."` quotes a field (`""` inside is a quote), an
/// unquoted empty field is `None` (NULL), a quoted one `Some("")`.
pub(crate) fn split_delimited(line: &[u8], delimiter: char) -> Result<Vec<Option<String>>, String> {
    let text = std::str::from_utf8(line).map_err(|e| format!("not UTF-8: {e}"))?;
    let text = text.strip_suffix("\r\n").or_else(|| text.strip_suffix('\n')).unwrap_or(text);
    let mut fields = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let mut field = String::new();
        let quoted = chars.peek() == Some(&'"');
        if quoted {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err("a quoted field is never closed".into()),
                }
            }
        }
        loop {
            match chars.peek() {
                Some(c) if *c == delimiter => break,
                None => break,
                Some('"') if quoted => return Err("text after a quoted field".into()),
                Some(_) if quoted => return Err("text after a quoted field".into()),
                Some(c) => {
                    field.push(*c);
                    chars.next();
                }
            }
        }
        fields.push(if field.is_empty() && !quoted { None } else { Some(field) });
        if chars.next().is_none() {
            return Ok(fields);
        }
    }
}

/// A DELIMITED field as a value of column type `ty` (`None`, an empty field, is NULL).
pub(crate) fn delimited_value(field: Option<String>, ty: &SqlType) -> Result<Value, String> {
    let Some(text) = field else { return Ok(Value::Null) };
    let bad = |what: &str| Err(format!("'{text}' is not {what}"));
    Ok(match ty {
        SqlType::String | SqlType::Any => Value::String(text),
        SqlType::Int => match text.trim().parse::<i32>() {
            Ok(i) => Value::from(i),
            Err(_) => return bad("an INT"),
        },
        SqlType::Bigint | SqlType::Timestamp => match text.trim().parse::<i64>() {
            Ok(i) => Value::from(i),
            Err(_) => return bad("a BIGINT"),
        },
        SqlType::Double => match text.trim().parse::<f64>() {
            Ok(x) => serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number),
            Err(_) => return bad("a DOUBLE"),
        },
        SqlType::Boolean => match text.trim().to_ascii_lowercase().as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return bad("a BOOLEAN"),
        },
        other => return Err(format!("the 'DELIMITED' format does not support type {other}")),
    })
}

/// Writes `values` as one CSV line (no line break): NULL is an empty field; a text that is
/// empty or holds the delimiter, a quote or a line break is quoted.
pub(crate) fn write_delimited(values: &[Value], delimiter: char) -> Vec<u8> {
    let mut out = String::with_capacity(16 * values.len());
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(delimiter);
        }
        match v {
            Value::Null => {}
            Value::String(s) => {
                let quote = s.is_empty() || s.contains([delimiter, '"', '\n', '\r']);
                if quote {
                    out.push('"');
                    out.push_str(&s.replace('"', "\"\""));
                    out.push('"');
                } else {
                    out.push_str(s);
                }
            }
            Value::Number(n) if n.is_f64() => out.push_str(&java_double(n.as_f64().unwrap_or(0.0))),
            other => out.push_str(&other.to_string()),
        }
    }
    out.into_bytes()
}

/// A KAFKA-format value as a column of type `ty`.
pub(crate) fn kafka_value(bytes: &[u8], ty: &SqlType) -> Result<Value, String> {
    let wrong =
        |n: usize| Err(format!("a {ty} in the 'KAFKA' format is {n} bytes, got {}", bytes.len()));
    Ok(match ty {
        SqlType::String | SqlType::Any => Value::String(
            std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?.to_owned(),
        ),
        SqlType::Int => match <[u8; 4]>::try_from(bytes) {
            Ok(b) => Value::from(i32::from_be_bytes(b)),
            Err(_) => return wrong(4),
        },
        SqlType::Bigint | SqlType::Timestamp => match <[u8; 8]>::try_from(bytes) {
            Ok(b) => Value::from(i64::from_be_bytes(b)),
            Err(_) => return wrong(8),
        },
        SqlType::Double => match <[u8; 8]>::try_from(bytes) {
            Ok(b) => serde_json::Number::from_f64(f64::from_be_bytes(b))
                .map_or(Value::Null, Value::Number),
            Err(_) => return wrong(8),
        },
        other => return Err(format!("the 'KAFKA' format does not support type {other}")),
    })
}

/// A value written in the KAFKA format as a column of type `ty`; NULL is no value.
pub(crate) fn write_kafka(value: &Value, ty: &SqlType) -> Result<Option<Vec<u8>>, String> {
    let fail = || format!("{value} cannot be written as a {ty} in the 'KAFKA' format");
    Ok(Some(match (ty, value) {
        (_, Value::Null) => return Ok(None),
        (SqlType::Int, v) => (v.as_i64().ok_or_else(fail)? as i32).to_be_bytes().to_vec(),
        (SqlType::Bigint | SqlType::Timestamp, v) => {
            v.as_i64().ok_or_else(fail)?.to_be_bytes().to_vec()
        }
        (SqlType::Double, v) => v.as_f64().ok_or_else(fail)?.to_be_bytes().to_vec(),
        (_, Value::String(s)) => s.as_bytes().to_vec(),
        (_, other) => other.to_string().into_bytes(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_lines_split_and_write_back() {
        let fields = split_delimited(br#"1,,"a,b","say ""hi""","""#, ',').unwrap();
        assert_eq!(
            fields,
            [
                Some("1".into()),
                None,
                Some("a,b".into()),
                Some("say \"hi\"".into()),
                Some(String::new())
            ]
        );
        let values: Vec<Value> =
            vec![1.into(), Value::Null, "a,b".into(), "say \"hi\"".into(), "".into()];
        assert_eq!(write_delimited(&values, ','), br#"1,,"a,b","say ""hi""","""#);
        assert_eq!(split_delimited(b"a\tb", '\t').unwrap(), [Some("a".into()), Some("b".into())]);
        assert!(split_delimited(br#""open"#, ',').is_err());
        assert!(split_delimited(br#""a"b,c"#, ',').is_err());
    }

    #[test]
    fn kafka_primitives_are_big_endian() {
        assert_eq!(write_kafka(&Value::from(1), &SqlType::Int).unwrap().unwrap(), [0, 0, 0, 1]);
        assert_eq!(kafka_value(&[0, 0, 0, 1], &SqlType::Int).unwrap(), 1);
        assert_eq!(kafka_value(&(-5i64).to_be_bytes(), &SqlType::Bigint).unwrap(), -5);
        assert_eq!(kafka_value(&2.5f64.to_be_bytes(), &SqlType::Double).unwrap(), 2.5);
        assert!(kafka_value(&[1, 2], &SqlType::Int).unwrap_err().contains("4 bytes, got 2"));
    }
}
