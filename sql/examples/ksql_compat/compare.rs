//! Comparing the records eddy wrote with the ones ksqlDB expects: keys, values, timestamps and
//! windows, the way ksqlDB's comparator does, and naming how they differ (the groups the
//! report counts failures under).

use serde_json::{Map, Number, Value};

use super::common::Out;
use super::qtt::Rec;

/// One output topic as eddy left it.
#[derive(Debug)]
pub struct Topic {
    /// `None` when eddy never created the topic.
    pub partitions: Option<u32>,
    /// The topic's values are text, not JSON (eddy's RAW format).
    pub text: bool,
    /// Names of key columns: of the stream or table eddy writes to the topic, and of the
    /// declared sources (to tell a key column copied into the value).
    pub key_columns: Vec<String>,
    /// Every record, partition by partition.
    pub records: Vec<Out>,
}

/// How one record (or topic) differs: a group to count it under, and the particulars.
#[derive(Debug, Clone)]
pub struct Aspect {
    pub group: String,
    pub detail: String,
}

fn aspect(group: impl Into<String>, detail: impl Into<String>) -> Aspect {
    Aspect { group: group.into(), detail: detail.into() }
}

/// The group of eddy's key columns written into the value as well.
pub const KEYS_IN_VALUE: &str =
    "value: key columns also in the value (ksqlDB keeps them in the key only)";

/// How to compare.
#[derive(Debug, Clone, Copy)]
pub struct Mode {
    /// ksqlDB's rule for tests fed by `INSERT ... VALUES`: an expected timestamp 0 is any.
    pub zero_ts_any: bool,
    /// A diagnostic, never a pass: drop key columns from eddy's values when ksqlDB's lack
    /// them, to see what else differs.
    pub drop_key_columns: bool,
}

/// Each topic's expected records against eddy's, as [`topic`] compares them.
pub fn outputs(
    topics: &[(&str, Vec<&Rec>, Topic)],
    mode: Mode,
) -> Result<bool, (Aspect, Vec<Aspect>)> {
    let mut lenient = false;
    for (name, expected, got) in topics {
        lenient |= topic(name, expected, got, mode)?;
    }
    Ok(lenient)
}

/// The first difference in `topic` named `name`, and the aspects of the first differing
/// record; or `Ok(lenient)` when everything matches (`lenient`: only numerically, like
/// `1` for `1.0`).
fn topic(
    name: &str,
    expected: &[&Rec],
    topic: &Topic,
    mode: Mode,
) -> Result<bool, (Aspect, Vec<Aspect>)> {
    let cmp = Cmp { text: topic.text, mode, key_columns: &topic.key_columns };
    let got = &topic.records;
    let count = || {
        let detail =
            format!("topic {name}: expected {} records, got {}", expected.len(), got.len());
        let group = match (topic.partitions, got.len()) {
            (None, _) => "output topic never created",
            (_, 0) => "record count: eddy wrote no records",
            (_, n) if n < expected.len() => "record count: eddy wrote fewer records",
            _ => "record count: eddy wrote more records",
        };
        aspect(group, detail)
    };
    let first = if topic.partitions.unwrap_or(1) > 1 {
        cmp.any_order(expected, got)
    } else {
        cmp.in_order(expected, got)
    };
    let counts_differ = got.len() != expected.len();
    match first {
        Ok(_) if counts_differ => {
            let c = count();
            let group = if got.is_empty() {
                c.group.clone()
            } else {
                format!("{}; the records both wrote match", c.group)
            };
            let primary = aspect(group, c.detail.clone());
            Err((primary, vec![c]))
        }
        Ok(lenient) => Ok(lenient),
        Err((i, mut aspects)) => {
            for a in &mut aspects {
                a.detail = format!("topic {name} record {i}: {}", a.detail);
            }
            let first = aspects.first().cloned();
            let primary = match first {
                Some(a) if !counts_differ => a,
                Some(a) => {
                    let c = count();
                    let group = format!("{}; first difference: {}", c.group, a.group);
                    aspect(group, format!("{}; first difference: {}", c.detail, a.detail))
                }
                None => count(),
            };
            if counts_differ {
                aspects.push(count());
            }
            Err((primary, aspects))
        }
    }
}

struct Cmp<'a> {
    text: bool,
    key_columns: &'a [String],
    mode: Mode,
}

impl Cmp<'_> {
    /// `Ok(lenient)`, or the index and aspects of the first record that differs.
    fn in_order(&self, expected: &[&Rec], got: &[Out]) -> Result<bool, (usize, Vec<Aspect>)> {
        let mut lenient = false;
        for (i, (e, g)) in expected.iter().zip(got).enumerate() {
            match self.record(e, g) {
                Ok(l) => lenient |= l,
                Err(aspects) => return Err((i, aspects)),
            }
        }
        Ok(lenient)
    }

    /// As [`Cmp::in_order`], each expected record matched with any unused one.
    fn any_order(&self, expected: &[&Rec], got: &[Out]) -> Result<bool, (usize, Vec<Aspect>)> {
        let mut used = vec![false; got.len()];
        let mut lenient = false;
        for (i, e) in expected.iter().enumerate() {
            let found = (0..got.len())
                .filter(|&j| !used[j])
                .find_map(|j| self.record(e, &got[j]).ok().map(|l| (j, l)));
            if let Some((j, l)) = found {
                used[j] = true;
                lenient |= l;
                continue;
            }
            // Nothing matches: show the difference from an unused record of the same key.
            let unused = || (0..got.len()).filter(|&j| !used[j]);
            let same_key = unused().find(|&j| self.key(e, got[j].key.as_deref()).is_ok());
            let Some(j) = same_key.or_else(|| unused().next()) else {
                return Ok(lenient); // fewer records than expected: the count says so
            };
            return Err((i, self.record(e, &got[j]).err().unwrap_or_default()));
        }
        Ok(lenient)
    }

    /// `Ok(lenient)` when `got` is `e`; else every aspect in which it differs.
    fn record(&self, e: &Rec, got: &Out) -> Result<bool, Vec<Aspect>> {
        let mut aspects = Vec::new();
        let mut lenient = false;
        match self.key(e, got.key.as_deref()) {
            Ok(l) => lenient |= l,
            Err(a) => aspects.push(a),
        }
        match self.value(e, got.value.as_deref()) {
            Ok(l) => lenient |= l,
            Err(a) => aspects.push(a),
        }
        if let Some(ts) = e.timestamp
            && ts != got.ts
            && !(self.mode.zero_ts_any && ts == 0)
        {
            aspects.push(aspect("timestamp differs", format!("expected ts {ts}, got {}", got.ts)));
        }
        if aspects.is_empty() { Ok(lenient) } else { Err(aspects) }
    }

    fn key(&self, e: &Rec, got: Option<&[u8]>) -> Result<bool, Aspect> {
        let text = got.map(|b| String::from_utf8_lossy(b).into_owned());
        let shown = text.as_deref().unwrap_or("(none)");
        let Some((start, end)) = e.window else {
            return key_matches(&e.key, text.as_deref()).ok_or_else(|| {
                let group = key_group(&e.key, text.as_deref());
                aspect(group, format!("expected key {}, got {shown}", e.key))
            });
        };
        let windowed = text.as_deref().and_then(|t| serde_json::from_str::<Value>(t).ok());
        let bounds = windowed.as_ref().and_then(|w| {
            Some((w.get("key")?, w.get("start")?.as_i64()?, w.get("end")?.as_i64()?))
        });
        let Some((inner, s, en)) = bounds else {
            return Err(aspect(
                "key: not windowed (ksqlDB expects a window)",
                format!("expected key {} in window [{start}, {end}), got {shown}", e.key),
            ));
        };
        if (s, en) != (start, end) {
            let detail = format!("expected window [{start}, {end}), got [{s}, {en})");
            let group = if s == start { "window end differs" } else { "window start differs" };
            return Err(aspect(group, detail));
        }
        match_json(inner, &e.key).ok_or_else(|| {
            aspect("key in window differs", format!("expected key {}, got {inner}", e.key))
        })
    }

    fn value(&self, rec: &Rec, got: Option<&[u8]>) -> Result<bool, Aspect> {
        let e = &rec.value;
        let Some(bytes) = got else {
            if e.is_null() {
                return Ok(false);
            }
            return Err(aspect("value: eddy wrote a tombstone", format!("expected value {e}")));
        };
        let text = String::from_utf8_lossy(bytes);
        if e.is_null() {
            let detail = format!("expected a tombstone, got {text}");
            return Err(aspect(
                "value: eddy wrote a value where ksqlDB writes a tombstone",
                detail,
            ));
        }
        let mut got = match e {
            Value::String(_) if self.text => Value::String(text.clone().into_owned()),
            _ => serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.clone().into())),
        };
        let is_key = |name: &str, v: &Value| {
            self.key_columns.iter().any(|k| k == name) || value_is_key(v, &rec.key)
        };
        if self.mode.drop_key_columns
            && let (Value::Object(g), Value::Object(eo)) = (&mut got, e)
        {
            g.retain(|name, v| expects(eo, name) || !is_key(name, v));
        }
        match_json(&got, e).ok_or_else(|| value_aspect(e, &got, &is_key))
    }
}

/// A key's text as JSON: numbers, objects and such parsed, anything else a string.
fn key_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// Whether eddy's key text is `expected`: a string as the text itself, anything else as
/// JSON ([`key_json`]).
fn key_matches(expected: &Value, got: Option<&str>) -> Option<bool> {
    match (expected, got) {
        (Value::Null, None) => Some(false),
        (_, None) | (Value::Null, Some(_)) => None,
        (Value::String(e), Some(g)) => (e == g).then_some(false),
        (e, Some(g)) => match_json(&key_json(g), e),
    }
}

fn key_group(expected: &Value, got: Option<&str>) -> String {
    match (expected, got) {
        (Value::Null, Some(_)) => "key: eddy wrote a key where ksqlDB writes none".into(),
        (_, None) => "key: eddy wrote no key".into(),
        (_, Some(t)) if t.starts_with("{\"key\":") => "key: eddy wrote a windowed key".into(),
        (e, Some(t)) => {
            format!("key differs (expected {}, got {})", kind(e), kind(&key_json(t)))
        }
    }
}

/// ksqlDB's `ExpectedRecordComparator` on JSON, numbers compared numerically: `None` when
/// `got` is not `expected`, else whether it matched only numerically.
pub fn match_json(got: &Value, expected: &Value) -> Option<bool> {
    match (expected, got) {
        (Value::Object(e), Value::Object(g)) => {
            if e.len() != g.len() {
                return None;
            }
            let mut lenient = false;
            for (name, ev) in e {
                let gv = field(g, name).unwrap_or(&Value::Null);
                lenient |= match_json(gv, ev)?;
            }
            Some(lenient)
        }
        (Value::Array(e), Value::Array(g)) => {
            if e.len() != g.len() {
                return None;
            }
            e.iter().zip(g).try_fold(false, |l, (ev, gv)| Some(l | match_json(gv, ev)?))
        }
        (Value::Number(e), Value::Number(g)) => numbers_match(g, e),
        (Value::String(e), Value::String(g)) => (e == g).then_some(false),
        (Value::Bool(e), Value::Bool(g)) => (e == g).then_some(false),
        (Value::Null, Value::Null) => Some(false),
        _ => None,
    }
}

/// Whether ksqlDB's comparator looks up eddy's column `name` for a field of `expected`.
fn expects(expected: &Map<String, Value>, name: &str) -> bool {
    expected.keys().any(|n| n == name || n.to_uppercase() == name)
}

/// A field as ksqlDB's comparator finds it: by its name, else its upper-cased name.
fn field<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object.get(name).or_else(|| object.get(&name.to_uppercase()))
}

fn numbers_match(got: &Number, expected: &Number) -> Option<bool> {
    if let (Some(g), Some(e)) = (got.as_i64(), expected.as_i64()) {
        return (g == e).then_some(false);
    }
    let (g, e) = (got.as_f64()?, expected.as_f64()?);
    let same = g == e || (g - e).abs() <= 1e-9 * g.abs().max(e.abs());
    same.then(|| got.to_string() != expected.to_string())
}

/// `kind` with its article.
fn a(kind: &str) -> String {
    let vowel = kind.starts_with(['a', 'e', 'i', 'o', 'u']);
    format!("{} {kind}", if vowel { "an" } else { "a" })
}

/// The kind of a JSON value, for group names.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "decimal number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// How a value differs from the expected one (which it does not match).
fn value_aspect(e: &Value, got: &Value, is_key: &dyn Fn(&str, &Value) -> bool) -> Aspect {
    let shown = format!("expected value {e}, got {got}");
    match (e, got) {
        (Value::Object(e), Value::Object(g)) => object_aspect(e, g, is_key),
        (Value::String(_), Value::String(_)) => aspect("value: text differs", shown),
        (e, Value::Object(_)) if !e.is_object() => {
            aspect(format!("value: eddy wrote an object where ksqlDB writes {}", a(kind(e))), shown)
        }
        _ => aspect(format!("value differs (expected {}, got {})", kind(e), kind(got)), shown),
    }
}

/// Whether a column holding `v` holds the record's (non-null) key or a part of it.
fn value_is_key(v: &Value, key: &Value) -> bool {
    match key {
        Value::Object(k) => k.values().any(|kv| !kv.is_null() && match_json(v, kv).is_some()),
        Value::Null => false,
        k => match_json(v, k).is_some(),
    }
}

/// How an object differs: its columns, or the first column whose value differs.
/// `is_key(name, value)`: whether a column of eddy's is a key column.
fn object_aspect(
    e: &Map<String, Value>,
    g: &Map<String, Value>,
    is_key: &dyn Fn(&str, &Value) -> bool,
) -> Aspect {
    let missing: Vec<&String> = e.keys().filter(|k| field(g, k).is_none()).collect();
    let extra: Vec<&String> = g.keys().filter(|k| !expects(e, k)).collect();
    if !missing.is_empty() || !extra.is_empty() {
        let detail = format!("missing columns {missing:?}, extra columns {extra:?}");
        let case_only = missing.len() == extra.len()
            && missing.iter().all(|m| extra.iter().any(|x| x.eq_ignore_ascii_case(m)));
        let group = match (missing.is_empty(), extra.is_empty()) {
            _ if case_only => "value: column names differ in case",
            (true, false) if extra.iter().all(|x| is_key(x, &g[x.as_str()])) => KEYS_IN_VALUE,
            (true, false) => "value: extra columns",
            (false, true) => "value: missing columns",
            _ => "value: different columns",
        };
        return aspect(group, detail);
    }
    if e.len() != g.len() {
        let detail =
            format!("expected {} columns, got {} (names differ in case only)", e.len(), g.len());
        return aspect("value: column names differ in case", detail);
    }
    for (name, ev) in e {
        let gv = field(g, name).unwrap_or(&Value::Null);
        if match_json(gv, ev).is_none() {
            let group =
                format!("value: a column differs (expected {}, got {})", kind(ev), kind(gv));
            return aspect(group, format!("column {name}: expected {ev}, got {gv}"));
        }
    }
    aspect("value differs", "(no column differs?)")
}
