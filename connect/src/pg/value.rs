//! PostgreSQL values, as their text form (what the simple query protocol and `pgoutput` send),
//! turned into typed JSON: numbers stay numbers, booleans booleans, `json`/`jsonb` are
//! embedded, arrays become JSON arrays, timestamps become milliseconds since the epoch (the
//! type eddy's SQL calls TIMESTAMP). Every column type is checked once, when the table is first
//! seen; a type outside [`Mapping`] stops the connector with a status that names the column.

use eddy_processor::calendar::{civil_from_days, days_from_civil};
use serde_json::Value;

/// How a column's text becomes JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    Bool,
    Int,
    Float,
    /// `numeric`: a JSON number (a double: digits past 17 are lost).
    Numeric,
    Text,
    /// `timestamp`/`timestamptz`: ms since the epoch (a timestamp without zone is taken as UTC).
    Timestamp,
    Json,
    Array(Element),
}

/// The element type of an array column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Element {
    Bool,
    Int,
    Float,
    Numeric,
    Text,
    Timestamp,
    Json,
}

impl Mapping {
    /// The mapping of the type with `oid`, or `None` for types the connector refuses.
    pub fn of(oid: u32) -> Option<Mapping> {
        use Element as E;
        Some(match oid {
            16 => Mapping::Bool,
            20 | 21 | 23 | 26 => Mapping::Int,
            700 | 701 => Mapping::Float,
            1700 => Mapping::Numeric,
            // text, varchar, bpchar, char, name, uuid, date, time, timetz, interval
            25 | 1043 | 1042 | 18 | 19 | 2950 | 1082 | 1083 | 1266 | 1186 => Mapping::Text,
            1114 | 1184 => Mapping::Timestamp,
            114 | 3802 => Mapping::Json,
            1000 => Mapping::Array(E::Bool),
            1005 | 1007 | 1016 => Mapping::Array(E::Int),
            1021 | 1022 => Mapping::Array(E::Float),
            1231 => Mapping::Array(E::Numeric),
            1009 | 1015 | 1014 | 2951 | 1182 => Mapping::Array(E::Text),
            1115 | 1185 => Mapping::Array(E::Timestamp),
            199 | 3807 => Mapping::Array(E::Json),
            _ => return None,
        })
    }

    fn element(self) -> Option<Element> {
        Some(match self {
            Mapping::Bool => Element::Bool,
            Mapping::Int => Element::Int,
            Mapping::Float => Element::Float,
            Mapping::Numeric => Element::Numeric,
            Mapping::Text => Element::Text,
            Mapping::Timestamp => Element::Timestamp,
            Mapping::Json => Element::Json,
            Mapping::Array(_) => return None,
        })
    }
}

/// A value that does not read as its type (the caller adds the column).
#[derive(Debug, Clone, PartialEq)]
pub struct Unreadable;

/// The JSON of one value's text; `None` text is SQL NULL.
pub fn to_json(mapping: Mapping, text: Option<&str>) -> Result<Value, Unreadable> {
    let Some(text) = text else { return Ok(Value::Null) };
    match mapping {
        Mapping::Array(e) => parse_array(e, text),
        scalar => scalar.element().map_or(Err(Unreadable), |e| scalar_json(e, text)),
    }
}

fn scalar_json(e: Element, text: &str) -> Result<Value, Unreadable> {
    Ok(match e {
        Element::Bool => match text {
            "t" | "true" => Value::Bool(true),
            "f" | "false" => Value::Bool(false),
            _ => return Err(Unreadable),
        },
        Element::Int => Value::from(text.parse::<i64>().map_err(|_| Unreadable)?),
        Element::Float | Element::Numeric => match text.parse::<f64>() {
            Ok(x) if x.is_finite() => {
                serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
            }
            // NaN and ±Infinity have no JSON number: kept as their text.
            Ok(_) => Value::String(text.to_string()),
            Err(_) => return Err(Unreadable),
        },
        Element::Text => Value::String(text.to_string()),
        Element::Timestamp => Value::from(timestamp_ms(text).ok_or(Unreadable)?),
        Element::Json => serde_json::from_str(text).map_err(|_| Unreadable)?,
    })
}

fn num(s: Option<&str>) -> Option<i64> {
    let s = s?;
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `2024-05-01 12:00:00.25+02` (ISO DateStyle; zone optional) → ms since the epoch.
pub fn timestamp_ms(text: &str) -> Option<i64> {
    let (date, rest) = text.split_once(' ').or_else(|| text.split_once('T'))?;
    let mut d = date.split('-');
    let (y, m, day) = (num(d.next())?, num(d.next())?, num(d.next())?);
    if d.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    let zone_at = rest.find(['+', '-', 'Z']).unwrap_or(rest.len());
    let (time, zone) = rest.split_at(zone_at);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.split(':');
    let (h, mi, s) = (num(t.next())?, num(t.next())?, num(t.next())?);
    let ms = if frac.is_empty() { 0 } else { num(Some(&format!("{frac:0<3}")[..3]))? };
    let offset_s = match zone {
        "" | "Z" => 0,
        z => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let mut parts = z[1..].split(':');
            let oh = num(parts.next())?;
            let om = parts.next().map_or(Some(0), |p| num(Some(p)))?;
            let os = parts.next().map_or(Some(0), |p| num(Some(p)))?;
            sign * (oh * 3600 + om * 60 + os)
        }
    };
    let secs = days_from_civil(y, m, day) * 86_400 + h * 3600 + mi * 60 + s - offset_s;
    Some(secs * 1000 + ms)
}

/// ms since the epoch → `2024-05-01T10:00:00.250Z`, which PostgreSQL reads as a timestamp.
pub fn timestamp_text(ms: i64) -> String {
    let (days, in_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = civil_from_days(days);
    let (h, rest) = (in_day / 3_600_000, in_day % 3_600_000);
    let (mi, rest) = (rest / 60_000, rest % 60_000);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{:02}.{:03}Z", rest / 1000, rest % 1000)
}

/// PostgreSQL's array text: `{1,2,NULL}`, `{"a b","c\"d"}`, `{{1,2},{3,4}}`.
fn parse_array(e: Element, text: &str) -> Result<Value, Unreadable> {
    // A leading `[1:2]=` gives explicit bounds; the elements are what matters.
    let body = match text.find("={") {
        Some(i) if text.starts_with('[') => &text[i + 1..],
        _ => text,
    };
    let chars: Vec<char> = body.chars().collect();
    let mut at = 0;
    let v = array_at(e, &chars, &mut at, 0)?;
    if at != chars.len() { Err(Unreadable) } else { Ok(v) }
}

fn array_at(e: Element, c: &[char], at: &mut usize, depth: usize) -> Result<Value, Unreadable> {
    if depth > 6 || c.get(*at) != Some(&'{') {
        return Err(Unreadable);
    }
    *at += 1;
    let mut out = Vec::new();
    if c.get(*at) == Some(&'}') {
        *at += 1;
        return Ok(Value::Array(out));
    }
    loop {
        match c.get(*at) {
            Some('{') => out.push(array_at(e, c, at, depth + 1)?),
            Some('"') => {
                *at += 1;
                let mut s = String::new();
                loop {
                    match c.get(*at) {
                        Some('\\') => {
                            s.push(*c.get(*at + 1).ok_or(Unreadable)?);
                            *at += 2;
                        }
                        Some('"') => break,
                        Some(ch) => {
                            s.push(*ch);
                            *at += 1;
                        }
                        None => return Err(Unreadable),
                    }
                }
                *at += 1;
                out.push(scalar_json(e, &s)?);
            }
            Some(_) => {
                let start = *at;
                while c.get(*at).is_some_and(|ch| *ch != ',' && *ch != '}') {
                    *at += 1;
                }
                let s: String = c[start..*at].iter().collect();
                out.push(if s == "NULL" { Value::Null } else { scalar_json(e, &s)? });
            }
            None => return Err(Unreadable),
        }
        match c.get(*at) {
            Some(',') => *at += 1,
            Some('}') => {
                *at += 1;
                return Ok(Value::Array(out));
            }
            _ => return Err(Unreadable),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn scalars_arrays_and_timestamps_read_as_typed_json() {
        assert_eq!(to_json(Mapping::Int, Some("-42")), Ok(json!(-42)));
        assert_eq!(to_json(Mapping::Numeric, Some("12.50")), Ok(json!(12.5)));
        assert_eq!(to_json(Mapping::Bool, Some("t")), Ok(json!(true)));
        assert_eq!(to_json(Mapping::Json, Some(r#"{"a":[1]}"#)), Ok(json!({"a": [1]})));
        assert_eq!(to_json(Mapping::Text, None), Ok(Value::Null));
        assert_eq!(
            to_json(Mapping::Array(Element::Int), Some("{1,NULL,3}")),
            Ok(json!([1, null, 3]))
        );
        assert_eq!(
            to_json(Mapping::Array(Element::Text), Some(r#"{"a,b","c\"d",e}"#)),
            Ok(json!(["a,b", "c\"d", "e"]))
        );
        assert_eq!(
            to_json(Mapping::Array(Element::Int), Some("{{1,2},{3,4}}")),
            Ok(json!([[1, 2], [3, 4]]))
        );
        assert_eq!(
            to_json(Mapping::Timestamp, Some("1970-01-02 00:00:01.5+00")),
            Ok(json!(86_401_500))
        );
        assert_eq!(timestamp_ms("2024-05-01 12:00:00+02"), Some(1_714_557_600_000));
        assert_eq!(timestamp_ms("2024-05-01 10:00:00"), Some(1_714_557_600_000));
        assert_eq!(timestamp_ms("2024-05-01 05:30:00-04:30"), Some(1_714_557_600_000));
        assert!(to_json(Mapping::Int, Some("x")).is_err());
        assert!(to_json(Mapping::Array(Element::Int), Some("{1,2")).is_err());
        assert_eq!(Mapping::of(600), None, "point is refused");
    }

    proptest! {
        #[test]
        fn timestamp_text_reads_back(ms in -62_000_000_000_000i64..250_000_000_000_000) {
            prop_assert_eq!(timestamp_ms(&timestamp_text(ms)), Some(ms));
        }
    }
}
