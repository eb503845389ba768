//! What a spec's records are made of: text keys, JSON values (or a text line as a JSON
//! string, or — when the first op is `fields` — the picked fields of a text line, split
//! straight from the record's bytes), and the functions ops apply to them: field splitting,
//! filters, event time, aggregates. Every table holds JSON.

use std::borrow::Cow;
use std::cell::Cell;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use eddy_processor::calendar::days_from_civil;
use eddy_processor::{Aggregator, Codec};

use super::row::{FieldsCodec, Pick, Row};
use super::{AggFn, Format, TimeFormat};

/// Keys as text; a null key reads as "".
#[derive(Debug, Clone, Copy)]
pub(super) struct TextKey;

impl Codec<String> for TextKey {
    fn encode(&self, value: &String) -> Result<Option<Vec<u8>>, String> {
        Ok(Some(value.clone().into_bytes()))
    }
    fn encode_owned(&self, value: String) -> Result<Option<Vec<u8>>, String> {
        Ok(Some(value.into_bytes()))
    }
    fn decode(&self, bytes: Option<&[u8]>) -> Result<String, String> {
        Ok(String::from_utf8_lossy(bytes.unwrap_or_default()).into_owned())
    }
}

/// Values: JSON, or a text line as a JSON string.
#[derive(Debug, Clone, Copy)]
pub(super) struct ValueCodec(pub Format);

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

/// A source's values: plain, or fused with a first `fields` op.
#[derive(Debug, Clone)]
pub(super) enum SourceCodec {
    Plain(ValueCodec),
    Fields(FieldsCodec),
}

impl Codec<Row> for SourceCodec {
    fn encode(&self, value: &Row) -> Result<Option<Vec<u8>>, String> {
        serde_json::to_vec(value).map(Some).map_err(|e| e.to_string())
    }
    fn decode(&self, bytes: Option<&[u8]>) -> Result<Row, String> {
        match self {
            SourceCodec::Plain(c) => c.decode(bytes).map(Row::Json),
            SourceCodec::Fields(c) => c.decode(bytes),
        }
    }
    fn decode_bytes(&self, bytes: Option<&bytes::Bytes>) -> Result<Row, String> {
        match self {
            SourceCodec::Plain(c) => c.decode(bytes.map(|b| &b[..])).map(Row::Json),
            SourceCodec::Fields(c) => c.decode_bytes(bytes),
        }
    }
}

/// A field's text: strings as they are, other values as JSON, missing as "".
pub(super) fn text_of(row: &Row, field: &str) -> String {
    row.text(field).map(Cow::into_owned).unwrap_or_default()
}

pub(super) fn number_of(v: Option<&Value>) -> Option<f64> {
    match v? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `name = N` (1-based field) or `name = "A-B"` (fields A to B joined by a space).
pub(super) fn field_picks(fields: &toml::Table) -> Result<Vec<Pick>, String> {
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
        picks.push(Pick { name: name.clone(), from, to });
    }
    Ok(picks)
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Cmp {
    Gt,
    Ge,
    Lt,
    Le,
}

pub(super) struct Filter {
    pub field: String,
    pub equals: Option<Value>,
    pub not_equals: Option<Value>,
    pub bounds: [(Option<f64>, Cmp); 4],
}

impl Filter {
    pub(super) fn keeps(&self, row: &Row) -> bool {
        let got = row.field(&self.field);
        let got = got.as_deref();
        let same = |want: &Value| match (got, want) {
            (Some(Value::String(s)), Value::String(w)) => s == w,
            // A number or boolean field equals the text of its JSON.
            (Some(g), Value::String(w)) => serde_json::to_string(g).is_ok_and(|t| t == *w),
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

pub(super) fn event_time(row: &Row, field: &str, format: TimeFormat) -> Option<i64> {
    match format {
        TimeFormat::Ms => number_of(row.field(field).as_deref()).map(|n| n as i64),
        TimeFormat::Clf => match row {
            Row::Json(v) => match v.get(field)? {
                Value::String(s) => parse_clf(s),
                _ => None,
            },
            Row::Line(_) => parse_clf(&row.text(field)?),
        },
    }
}

/// `[10/Oct/2000:13:55:36 -0700]` (brackets optional) as milliseconds since the epoch.
pub(super) fn parse_clf(text: &str) -> Option<i64> {
    clf_exact(text.as_bytes()).or_else(|| clf_loose(text))
}

/// [`parse_clf`] of the text of `bytes` (invalid UTF-8 read lossily), without decoding the
/// text first when it has the exact form (which is all ASCII).
pub(super) fn parse_clf_bytes(bytes: &[u8]) -> Option<i64> {
    clf_exact(bytes).or_else(|| clf_loose(&String::from_utf8_lossy(bytes)))
}

/// The month of a three-letter English abbreviation.
fn month_of(name: &[u8]) -> Option<i64> {
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    MONTHS.iter().position(|m| m.as_slice() == name).map(|i| i as i64 + 1)
}

/// The form servers write, byte for byte: `[dd/Mon/yyyy:hh:mm:ss ±hhmm]` — read by position,
/// because every access-log line carries one. Anything else goes to [`clf_loose`].
fn clf_exact(b: &[u8]) -> Option<i64> {
    let b = b.strip_prefix(b"[")?.strip_suffix(b"]")?;
    if b.len() != 26 || b[2] != b'/' || b[6] != b'/' || b[11] != b':' || b[20] != b' ' {
        return None;
    }
    if b[14] != b':' || b[17] != b':' {
        return None;
    }
    let num = |r| digits(b, r);
    let (h, m, s) = (num(12..14)?, num(15..17)?, num(18..20)?);
    let sign = match b[21] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (zh, zm) = (num(22..24)?, num(24..26)?);
    let local = clf_days(&b[..11])? * 86_400 + h * 3600 + m * 60 + s;
    Some((local - sign * (zh * 3600 + zm * 60)) * 1000)
}

/// The number written in `b[r]`, all ASCII digits.
fn digits(b: &[u8], r: std::ops::Range<usize>) -> Option<i64> {
    let bytes = b.get(r)?;
    bytes.iter().try_fold(0i64, |n, d| d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0')))
}

/// Days since 1970-01-01 of a CLF date `dd/Mon/yyyy` (slashes already checked). The lines of
/// a log share their date for hours on end, so each thread remembers the last date it read.
fn clf_days(date: &[u8]) -> Option<i64> {
    thread_local! {
        // No date is eleven zero bytes, so the first call computes.
        static LAST: Cell<([u8; 11], i64)> = const { Cell::new(([0; 11], 0)) };
    }
    let key = <[u8; 11]>::try_from(date).ok()?;
    let (last, days) = LAST.get();
    if last == key {
        return Some(days);
    }
    let (day, month, year) = (digits(date, 0..2)?, month_of(&date[3..6])?, digits(date, 7..11)?);
    let days = days_from_civil(year, month, day);
    LAST.set((key, days));
    Some(days)
}

/// Any spacing, brackets optional, zone optional (UTC).
fn clf_loose(text: &str) -> Option<i64> {
    let t = text.trim().trim_start_matches('[').trim_end_matches(']');
    let (stamp, zone) = t.split_once(' ').unwrap_or((t, "+0000"));
    let mut parts = stamp.splitn(4, [':', '/']);
    let day: i64 = parts.next()?.parse().ok()?;
    let month = month_of(parts.next()?.as_bytes())?;
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

/// Every aggregate function over JSON values, so every table holds JSON.
#[derive(Debug, Clone)]
pub(super) struct JsonAgg {
    pub function: AggFn,
    pub field: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Acc {
    n: u64,
    sum: f64,
    min: Option<f64>,
    max: Option<f64>,
    /// Boxed: only `latest` fills it, and the accumulator of every other function (a
    /// per-key table entry, touched once per record) stays 32 bytes smaller. Serialized as
    /// the pair itself.
    latest: Option<Box<(i64, Value)>>,
}

/// What the fused aggregate (`fused`) picks from a line for [`JsonAgg`]: the number of its
/// field, and the value `latest` keeps (only made for `latest`).
#[derive(Debug, Clone, Default)]
pub(super) struct Picked {
    pub num: Option<f64>,
    pub latest: Option<Value>,
}

impl JsonAgg {
    /// Folds one record: `x` is its field's number, `latest` makes the value `latest` keeps.
    fn fold(&self, acc: &mut Acc, x: Option<f64>, ts: i64, latest: impl FnOnce() -> Value) {
        acc.n += 1;
        if let Some(x) = x {
            acc.sum += x;
            acc.min = Some(acc.min.map_or(x, |m| m.min(x)));
            acc.max = Some(acc.max.map_or(x, |m| m.max(x)));
        }
        // Only `latest` reads it: the others would copy every value for nothing.
        if matches!(self.function, AggFn::Latest) {
            match &mut acc.latest {
                Some(kept) if ts >= kept.0 => **kept = (ts, latest()),
                Some(_) => {}
                None => acc.latest = Some(Box::new((ts, latest()))),
            }
        }
    }

    fn merge_accs(into: &mut Acc, other: Acc) {
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
        if let Some(theirs) = other.latest
            && into.latest.as_ref().is_none_or(|mine| theirs.0 >= mine.0)
        {
            into.latest = Some(theirs);
        }
    }

    fn result_of(&self, acc: &Acc) -> Value {
        let num = |x: f64| serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number);
        match self.function {
            AggFn::Count => Value::from(acc.n),
            AggFn::Sum => num(acc.sum),
            AggFn::Min => acc.min.map_or(Value::Null, num),
            AggFn::Max => acc.max.map_or(Value::Null, num),
            AggFn::Avg if acc.n > 0 => num(acc.sum / acc.n as f64),
            AggFn::Avg => Value::Null,
            AggFn::Latest => acc.latest.as_ref().map_or(Value::Null, |kept| kept.1.clone()),
        }
    }
}

/// The same aggregate over what the fused path picked: the same accumulators and results.
impl Aggregator<Picked> for JsonAgg {
    type Acc = Acc;
    type Out = Value;

    fn init(&self) -> Acc {
        Acc::default()
    }

    fn add(&self, acc: &mut Acc, value: &Picked, ts: i64) {
        self.fold(acc, value.num, ts, || value.latest.clone().unwrap_or(Value::Null));
    }

    fn merge(&self, into: &mut Acc, other: Acc) {
        Self::merge_accs(into, other)
    }

    fn result(&self, acc: &Acc) -> Value {
        self.result_of(acc)
    }
}

impl Aggregator<Row> for JsonAgg {
    type Acc = Acc;
    type Out = Value;

    fn init(&self) -> Acc {
        Acc::default()
    }

    fn add(&self, acc: &mut Acc, value: &Row, ts: i64) {
        let x = match &self.field {
            Some(f) => number_of(value.field(f).as_deref()),
            None => None,
        };
        self.fold(acc, x, ts, || match &self.field {
            Some(f) => value.field(f).map_or(Value::Null, Cow::into_owned),
            None => value.clone().into_value(),
        });
    }

    fn merge(&self, into: &mut Acc, other: Acc) {
        Self::merge_accs(into, other)
    }

    fn result(&self, acc: &Acc) -> Value {
        self.result_of(acc)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The remembered date serves only the same date: lines of one day, then the next day,
    /// then the first again, each read as the loose parser reads it.
    #[test]
    fn a_remembered_date_serves_only_its_own_lines() {
        for text in [
            "[10/Oct/2000:13:55:36 -0700]",
            "[10/Oct/2000:23:59:59 +0000]",
            "[11/Oct/2000:00:00:00 +0000]",
            "[10/Oct/2000:00:00:01 +0130]",
            "[10/Oct/2001:00:00:01 +0130]",
        ] {
            assert_eq!(clf_exact(text.as_bytes()), clf_loose(text), "{text}");
        }
        assert_eq!(clf_exact(b"[10/Oct/2000:00:00:00 +0000]"), Some(971_136_000_000));
    }

    proptest! {
        #[test]
        fn exact_and_loose_clf_parsers_agree(
            day in 1i64..29, month in 0usize..12, year in 1970i64..2100,
            h in 0i64..24, m in 0i64..60, s in 0i64..60,
            sign in prop::sample::select(vec!['+', '-']), zh in 0i64..15, zm in 0i64..60,
        ) {
            let names = ["Jan","Feb","Mar","Apr","May","Jun","Jul","Aug","Sep","Oct","Nov","Dec"];
            let text = format!(
                "[{day:02}/{}/{year}:{h:02}:{m:02}:{s:02} {sign}{zh:02}{zm:02}]", names[month]
            );
            let exact = clf_exact(text.as_bytes());
            prop_assert!(exact.is_some(), "{}", text);
            prop_assert_eq!(exact, clf_loose(&text));
        }
    }
}
