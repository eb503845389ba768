//! Processor spec files: a declarative pipeline for server users (until SQL), parsed from TOML
//! and compiled to the same builder the Rust API uses.
//!
//! ```toml
//! name = "url-counts"
//! version = 1
//! source = { topic = "access-log", format = "text" }   # text (one string) or json
//!
//! [[ops]]
//! op = "fields"                # split a text line on whitespace, as awk does
//! fields = { url = 7, status = 9, time = "4-5" }
//! [[ops]]
//! op = "event_time"
//! field = "time"
//! format = "clf"               # ms | clf ([10/Oct/2000:13:55:36 -0700])
//! [[ops]]
//! op = "key_by"
//! field = "url"
//! [[ops]]
//! op = "aggregate"
//! table = "requests-per-url"
//! fn = "count"                 # count | sum | min | max | avg | latest (sum..avg need `field`)
//! [[ops]]
//! op = "to"
//! topic = "url-counts"
//! ```
//!
//! Records flow as (key: text, value: JSON). Other ops: `filter` (`field` with `equals`,
//! `not_equals`, `gt`, `ge`, `lt` or `le`), `select` (keep `fields`), `window` (`kind` =
//! tumbling / hopping / session, `size_ms`, `advance_ms`, `gap_ms`, `grace_ms`, `emit` =
//! changes / final; the next op must be `aggregate`), `dedupe` (`window_ms`, `grace_ms`),
//! `join_table` (`table` from `[[tables]]`, the match stored under `as`).
//!
//! After an `aggregate`, the stream continues with the table's changes; a windowed
//! aggregate's values are `{"key", "start", "end", "value"}`. `key_by` on a source with
//! several partitions repartitions by the new key, so every key is counted in one task.
//!
//! Errors name the op (by its position) and the field at fault; nothing is deployed unless
//! the whole spec compiles.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use eddy_processor::{
    Aggregator, Codec, Emit, Json, Processor, ProcessorBuilder, Stream, Windowed, Windows,
};

use crate::error::BrokerError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub name: String,
    pub version: u32,
    pub source: Source,
    #[serde(default)]
    pub tables: Vec<TableSource>,
    #[serde(default)]
    pub ops: Vec<Op>,
    /// Worker threads for the processor's tasks (default 1).
    #[serde(default)]
    pub threads: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub topic: String,
    #[serde(default)]
    pub format: Format,
}

/// A table fed by a topic (latest value per key), for `join_table`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSource {
    pub name: String,
    pub topic: String,
    #[serde(default)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Json,
    Text,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    Fields {
        fields: toml::Table,
    },
    Filter {
        field: String,
        equals: Option<Value>,
        not_equals: Option<Value>,
        gt: Option<f64>,
        ge: Option<f64>,
        lt: Option<f64>,
        le: Option<f64>,
    },
    Select {
        fields: Vec<String>,
    },
    EventTime {
        field: String,
        #[serde(default)]
        format: TimeFormat,
    },
    KeyBy {
        field: String,
    },
    Window {
        kind: WindowShape,
        size_ms: Option<i64>,
        advance_ms: Option<i64>,
        gap_ms: Option<i64>,
        #[serde(default)]
        grace_ms: i64,
        #[serde(default)]
        emit: EmitSpec,
    },
    Aggregate {
        table: String,
        #[serde(rename = "fn")]
        function: AggFn,
        field: Option<String>,
    },
    Dedupe {
        window_ms: i64,
        #[serde(default)]
        grace_ms: i64,
    },
    JoinTable {
        table: String,
        #[serde(rename = "as")]
        field: String,
    },
    To {
        topic: String,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeFormat {
    #[default]
    Ms,
    Clf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WindowShape {
    Tumbling,
    Hopping,
    Session,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmitSpec {
    #[default]
    Changes,
    Final,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AggFn {
    Count,
    Sum,
    Min,
    Max,
    Avg,
    Latest,
}

fn invalid(reason: impl Into<String>) -> BrokerError {
    BrokerError::InvalidSpec(reason.into())
}

impl Spec {
    pub fn parse(text: &str) -> Result<Spec, BrokerError> {
        let spec: Spec = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        crate::topic::validate_name(&spec.name).map_err(|_| {
            invalid(format!("name {:?}: use letters, digits, '.', '_', '-'", spec.name))
        })?;
        if spec.name.starts_with("__") {
            return Err(invalid("names starting with '__' are reserved"));
        }
        Ok(spec)
    }

    /// Compiles the spec; `partitions` tells how many partitions a topic has.
    pub fn compile(
        &self,
        partitions: &dyn Fn(&str) -> Option<u32>,
    ) -> Result<Processor, BrokerError> {
        let b = ProcessorBuilder::new(&self.name, self.version);
        let source_parts = partitions(&self.source.topic).ok_or_else(|| {
            invalid(format!("source topic {:?} does not exist", self.source.topic))
        })?;
        let mut tables = Vec::new();
        for t in &self.tables {
            if partitions(&t.topic).is_none() {
                return Err(invalid(format!(
                    "table {:?}: topic {:?} does not exist",
                    t.name, t.topic
                )));
            }
            let table = b
                .table::<String, Value>(&t.name, &t.topic, TextKey, ValueCodec(t.format))
                .map_err(|e| invalid(format!("table {:?}: {e}", t.name)))?;
            tables.push((t.name.clone(), table));
        }
        let mut stream: Stream<String, Value> =
            b.stream::<String, Value>(&self.source.topic, TextKey, ValueCodec(self.source.format));
        let mut window: Option<Windows> = None;
        let mut emit = Emit::Changes;
        for (i, op) in self.ops.iter().enumerate() {
            let at = |reason: String| invalid(format!("op {} ({}): {reason}", i + 1, op_name(op)));
            if window.is_some() && !matches!(op, Op::Aggregate { .. }) {
                return Err(at("a window must be followed by an aggregate".into()));
            }
            stream = match op {
                Op::Fields { fields } => {
                    let picks = field_picks(fields).map_err(at)?;
                    stream.map_values(move |_, v| split_fields(&v, &picks))
                }
                Op::Filter { field, equals, not_equals, gt, ge, lt, le } => {
                    let test = Filter {
                        field: field.clone(),
                        equals: equals.clone(),
                        not_equals: not_equals.clone(),
                        bounds: [(*gt, Cmp::Gt), (*ge, Cmp::Ge), (*lt, Cmp::Lt), (*le, Cmp::Le)],
                    };
                    stream.filter(move |_, v| test.keeps(v))
                }
                Op::Select { fields } => {
                    let fields = fields.clone();
                    stream.map_values(move |_, v| {
                        let mut out = serde_json::Map::new();
                        for f in &fields {
                            if let Some(x) = v.get(f) {
                                out.insert(f.clone(), x.clone());
                            }
                        }
                        Value::Object(out)
                    })
                }
                Op::EventTime { field, format } => {
                    let (field, format) = (field.clone(), *format);
                    stream
                        .event_time(move |_, v, ts| event_time(v.get(&field), format).unwrap_or(ts))
                }
                Op::KeyBy { field } => {
                    let by = field.clone();
                    let keyed = stream.select_key(move |_, v| text_of(v.get(&by)));
                    if source_parts > 1 {
                        keyed
                            .repartition(&format!("by-{}-{}", sanitize(field), i + 1), source_parts)
                    } else {
                        keyed
                    }
                }
                Op::Window { kind, size_ms, advance_ms, gap_ms, grace_ms, emit: e } => {
                    let need = |v: Option<i64>, name: &str| {
                        v.filter(|x| *x > 0)
                            .ok_or_else(|| at(format!("{name} must be a positive number")))
                    };
                    let w = match kind {
                        WindowShape::Tumbling => Windows::tumbling(need(*size_ms, "size_ms")?),
                        WindowShape::Hopping => Windows::hopping(
                            need(*size_ms, "size_ms")?,
                            need(*advance_ms, "advance_ms")?,
                        ),
                        WindowShape::Session => Windows::session(need(*gap_ms, "gap_ms")?),
                    };
                    window = Some(w.grace((*grace_ms).max(0)));
                    emit = match e {
                        EmitSpec::Changes => Emit::Changes,
                        EmitSpec::Final => Emit::Final,
                    };
                    continue;
                }
                Op::Aggregate { table, function, field } => {
                    if !matches!(function, AggFn::Count | AggFn::Latest) && field.is_none() {
                        return Err(at(format!("fn {function:?} needs a field")));
                    }
                    let agg = JsonAgg { function: *function, field: field.clone() };
                    match window.take() {
                        None => {
                            stream.aggregate(table, agg).map_err(|e| at(e.to_string()))?.changes()
                        }
                        Some(w) => stream
                            .window(w)
                            .aggregate(table, agg, emit)
                            .map_err(|e| at(e.to_string()))?
                            .changes()
                            .map(|k: Windowed<String>, v: Value| {
                                let value = serde_json::json!({
                                    "key": k.key, "start": k.start, "end": k.end, "value": v,
                                });
                                (k.key, value)
                            }),
                    }
                }
                Op::Dedupe { window_ms, grace_ms } => stream.dedupe(*window_ms, *grace_ms),
                Op::JoinTable { table, field } => {
                    let Some((_, t)) = tables.iter().find(|(n, _)| n == table) else {
                        return Err(at(format!("no table {table:?} in [[tables]]")));
                    };
                    let field = field.clone();
                    stream.join_table(t, move |_, v, right| {
                        let mut v = v.clone();
                        match &mut v {
                            Value::Object(map) => {
                                map.insert(field.clone(), right.clone());
                                v
                            }
                            other => serde_json::json!({ "value": other, field.clone(): right }),
                        }
                    })
                }
                Op::To { topic } => {
                    stream.to(topic, TextKey, Json);
                    stream
                }
            };
        }
        if window.is_some() {
            return Err(invalid("the last op is a window: an aggregate must follow it"));
        }
        b.build().map_err(|e| invalid(e.to_string()))
    }

    /// Topics the processor's sinks write to.
    pub fn outputs(&self) -> Vec<String> {
        self.ops
            .iter()
            .filter_map(|op| match op {
                Op::To { topic } => Some(topic.clone()),
                _ => None,
            })
            .collect()
    }
}

fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Fields { .. } => "fields",
        Op::Filter { .. } => "filter",
        Op::Select { .. } => "select",
        Op::EventTime { .. } => "event_time",
        Op::KeyBy { .. } => "key_by",
        Op::Window { .. } => "window",
        Op::Aggregate { .. } => "aggregate",
        Op::Dedupe { .. } => "dedupe",
        Op::JoinTable { .. } => "join_table",
        Op::To { .. } => "to",
    }
}

fn sanitize(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect()
}

/// Keys as text; a null key reads as "".
#[derive(Debug, Clone, Copy)]
struct TextKey;

impl Codec<String> for TextKey {
    fn encode(&self, value: &String) -> Result<Option<Vec<u8>>, String> {
        Ok(Some(value.clone().into_bytes()))
    }
    fn decode(&self, bytes: Option<&[u8]>) -> Result<String, String> {
        Ok(String::from_utf8_lossy(bytes.unwrap_or_default()).into_owned())
    }
}

/// Values: JSON, or a text line as a JSON string.
#[derive(Debug, Clone, Copy)]
struct ValueCodec(Format);

impl Codec<Value> for ValueCodec {
    fn encode(&self, value: &Value) -> Result<Option<Vec<u8>>, String> {
        serde_json::to_vec(value).map(Some).map_err(|e| e.to_string())
    }
    fn decode(&self, bytes: Option<&[u8]>) -> Result<Value, String> {
        match (self.0, bytes) {
            (_, None) => Ok(Value::Null),
            (Format::Json, Some(b)) => serde_json::from_slice(b).map_err(|e| e.to_string()),
            (Format::Text, Some(b)) => Ok(Value::String(String::from_utf8_lossy(b).into_owned())),
        }
    }
}

/// A field's text: strings as they are, other values as JSON, missing as "".
fn text_of(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

fn number_of(v: Option<&Value>) -> Option<f64> {
    match v? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `name = N` (1-based field) or `name = "A-B"` (fields A to B joined by a space).
fn field_picks(fields: &toml::Table) -> Result<Vec<(String, usize, usize)>, String> {
    let mut picks = Vec::new();
    for (name, v) in fields {
        let (from, to) = match v {
            toml::Value::Integer(n) if *n >= 1 => (*n as usize, *n as usize),
            toml::Value::String(s) => {
                let (a, b) =
                    s.split_once('-').ok_or_else(|| format!("field {name}: {s:?} is not A-B"))?;
                let parse = |x: &str| x.trim().parse::<usize>().ok().filter(|n| *n >= 1);
                match (parse(a), parse(b)) {
                    (Some(a), Some(b)) if a <= b => (a, b),
                    _ => return Err(format!("field {name}: {s:?} is not A-B with 1 <= A <= B")),
                }
            }
            other => return Err(format!("field {name}: expected a field number, got {other:?}")),
        };
        picks.push((name.clone(), from, to));
    }
    Ok(picks)
}

fn split_fields(v: &Value, picks: &[(String, usize, usize)]) -> Value {
    let line = match v {
        Value::String(s) => s.as_str(),
        _ => "",
    };
    let words: Vec<&str> = line.split_whitespace().collect();
    let mut out = serde_json::Map::new();
    for (name, from, to) in picks {
        let part = words.get(from - 1..(*to).min(words.len())).map(|w| w.join(" "));
        if let Some(part) = part.filter(|p| !p.is_empty()) {
            out.insert(name.clone(), Value::String(part));
        }
    }
    Value::Object(out)
}

#[derive(Debug, Clone, Copy)]
enum Cmp {
    Gt,
    Ge,
    Lt,
    Le,
}

struct Filter {
    field: String,
    equals: Option<Value>,
    not_equals: Option<Value>,
    bounds: [(Option<f64>, Cmp); 4],
}

impl Filter {
    fn keeps(&self, v: &Value) -> bool {
        let got = v.get(&self.field);
        let same = |want: &Value| match (got, want) {
            (Some(g), Value::String(w)) => text_of(Some(g)) == *w,
            (Some(g), w) => {
                g == w || number_of(Some(g)).zip(w.as_f64()).is_some_and(|(a, b)| a == b)
            }
            (None, _) => false,
        };
        if self.equals.as_ref().is_some_and(|w| !same(w)) {
            return false;
        }
        if self.not_equals.as_ref().is_some_and(same) {
            return false;
        }
        let n = number_of(got);
        self.bounds.iter().all(|(bound, cmp)| match bound {
            None => true,
            Some(b) => n.is_some_and(|n| match cmp {
                Cmp::Gt => n > *b,
                Cmp::Ge => n >= *b,
                Cmp::Lt => n < *b,
                Cmp::Le => n <= *b,
            }),
        })
    }
}

fn event_time(v: Option<&Value>, format: TimeFormat) -> Option<i64> {
    match format {
        TimeFormat::Ms => number_of(v).map(|n| n as i64),
        TimeFormat::Clf => match v? {
            Value::String(s) => parse_clf(s),
            _ => None,
        },
    }
}

/// `[10/Oct/2000:13:55:36 -0700]` (brackets optional) as milliseconds since the epoch.
pub fn parse_clf(text: &str) -> Option<i64> {
    let t = text.trim().trim_start_matches('[').trim_end_matches(']');
    let (stamp, zone) = t.split_once(' ').unwrap_or((t, "+0000"));
    let mut parts = stamp.splitn(4, [':', '/']);
    let day: i64 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let rest = parts.next()?;
    let (year, hms) = match parts.next() {
        Some(hms) => (rest, hms),
        None => return None,
    };
    let year: i64 = year.parse().ok()?;
    let mut hms = hms.split(':').map(|x| x.parse::<i64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    let zone = zone.trim();
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let digits = zone.trim_start_matches(['+', '-']);
    let (zh, zm) = (digits.get(0..2)?.parse::<i64>().ok()?, digits.get(2..4)?.parse::<i64>().ok()?);
    let days = days_from_civil(year, month, day);
    let local = days * 86_400 + h * 3600 + m * 60 + s;
    Some((local - sign * (zh * 3600 + zm * 60)) * 1000)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Every aggregate function over JSON values, so every table holds JSON.
#[derive(Debug, Clone)]
struct JsonAgg {
    function: AggFn,
    field: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Acc {
    n: u64,
    sum: f64,
    min: Option<f64>,
    max: Option<f64>,
    latest: Option<(i64, Value)>,
}

impl Aggregator<Value> for JsonAgg {
    type Acc = Acc;
    type Out = Value;

    fn init(&self) -> Acc {
        Acc::default()
    }

    fn add(&self, acc: &mut Acc, value: &Value, ts: i64) {
        acc.n += 1;
        let x = match &self.field {
            Some(f) => number_of(value.get(f)),
            None => None,
        };
        if let Some(x) = x {
            acc.sum += x;
            acc.min = Some(acc.min.map_or(x, |m| m.min(x)));
            acc.max = Some(acc.max.map_or(x, |m| m.max(x)));
        }
        if acc.latest.as_ref().is_none_or(|(t, _)| ts >= *t) {
            let v = match &self.field {
                Some(f) => value.get(f).cloned().unwrap_or(Value::Null),
                None => value.clone(),
            };
            acc.latest = Some((ts, v));
        }
    }

    fn merge(&self, into: &mut Acc, other: Acc) {
        into.n += other.n;
        into.sum += other.sum;
        into.min = match (into.min, other.min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        into.max = match (into.max, other.max) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        if let Some((t, v)) = other.latest
            && into.latest.as_ref().is_none_or(|(mine, _)| t >= *mine)
        {
            into.latest = Some((t, v));
        }
    }

    fn result(&self, acc: &Acc) -> Value {
        let num = |x: f64| serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number);
        match self.function {
            AggFn::Count => Value::from(acc.n),
            AggFn::Sum => num(acc.sum),
            AggFn::Min => acc.min.map_or(Value::Null, num),
            AggFn::Max => acc.max.map_or(Value::Null, num),
            AggFn::Avg if acc.n > 0 => num(acc.sum / acc.n as f64),
            AggFn::Avg => Value::Null,
            AggFn::Latest => acc.latest.as_ref().map_or(Value::Null, |(_, v)| v.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clf_times_parse_with_their_zone() {
        assert_eq!(parse_clf("[10/Oct/2000:13:55:36 -0700]"), Some(971_211_336_000));
        assert_eq!(parse_clf("01/Jan/1970:00:00:00 +0000"), Some(0));
        assert_eq!(parse_clf("[29/Feb/2024:23:59:59 +0100]"), Some(1_709_247_599_000));
        assert_eq!(parse_clf("[10/Foo/2000:13:55:36 -0700]"), None);
        assert_eq!(parse_clf("garbage"), None);
    }

    #[test]
    fn specs_are_checked_before_anything_runs() {
        let parts = |t: &str| (t == "in").then_some(2);
        let bad = [
            ("name = \"x\"\nversion = 1\nsource = { topic = \"nope\" }\n", "does not exist"),
            (
                "name = \"x\"\nversion = 1\nsource = { topic = \"in\" }\nbogus = 1\n",
                "unknown field",
            ),
            (
                "name = \"x\"\nversion = 1\nsource = { topic = \"in\" }\n[[ops]]\nop = \"aggregate\"\ntable = \"t\"\nfn = \"sum\"\n",
                "op 1 (aggregate): fn Sum needs a field",
            ),
            (
                "name = \"x\"\nversion = 1\nsource = { topic = \"in\" }\n[[ops]]\nop = \"window\"\nkind = \"tumbling\"\n",
                "op 1 (window): size_ms must be a positive number",
            ),
            ("name = \"__x\"\nversion = 1\nsource = { topic = \"in\" }\n", "reserved"),
        ];
        for (text, want) in bad {
            let e = Spec::parse(text).and_then(|s| s.compile(&parts).map(drop)).unwrap_err();
            assert!(e.to_string().contains(want), "{e} should say {want:?}");
        }
    }

    #[test]
    fn fields_split_like_awk() {
        let line = Value::String(
            "1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] \"GET /a.html HTTP/1.1\" 200 512".into(),
        );
        let picks = vec![("url".to_string(), 7, 7), ("time".to_string(), 4, 5)];
        let v = split_fields(&line, &picks);
        assert_eq!(v["url"], "/a.html");
        assert_eq!(v["time"], "[10/Oct/2000:13:55:36 -0700]");
    }
}
