//! Scalar functions: the built-ins and the [`FunctionRegistry`] of user-defined ones.
//!
//! Built-ins (all return NULL for a NULL argument unless noted):
//! - strings: `CONCAT(a, ...)` (skips NULLs), `SUBSTRING(s, pos [, len])` (1-based),
//!   `SPLIT(s, delim)` → ARRAY, `REGEXP_EXTRACT(pattern, s [, group])`, `TRIM`, `UCASE`,
//!   `LCASE`, `LEN`, `REPLACE(s, old, new)`, `INSTR(s, sub)`;
//! - JSON: `EXTRACTJSONFIELD(json_text, '$.a.b[0]')` → VARCHAR (a string as is, else JSON);
//! - time: `FORMAT_TIMESTAMP(ms, pattern)` / `TIMESTAMPTOSTRING`, `PARSE_TIMESTAMP(text,
//!   pattern)` / `STRINGTOTIMESTAMP` (see `time.rs` for the patterns; UTC only);
//! - numbers: `ABS`, `ROUND(x [, digits])`, `FLOOR`, `CEIL`, `GEO_DISTANCE(lat1, lon1, lat2,
//!   lon2)` in km (haversine, Earth radius 6371 km), `COALESCE(a, ...)`, `IFNULL(a, b)`.
//!
//! Aggregates (`COUNT`, `SUM`, …) are not here: see `aggregate.rs`; only their names are, so
//! that the checker can refuse them outside GROUP BY.
//!
//! Invariants: a built-in is a pure function of its arguments (no clock, no locale: time is
//! UTC); a failure is an [`EvalError`] naming the function, never a panic. Below expression
//! evaluation (`expr` calls in here, not the reverse): the value helpers both share ([`num`],
//! [`text`]) live here.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use serde_json::{Number, Value};

use crate::ast::{Expr, SqlType, mismatch};
use crate::error::{EvalError, Pos, SqlError};
use crate::time;

/// A user-defined scalar function: arguments in, a value or a reason out.
pub type ScalarFn = Arc<dyn Fn(&[Value]) -> Result<Value, String> + Send + Sync>;

#[derive(Clone)]
struct UserFunction {
    /// `None`: any arguments, checked by the function itself.
    params: Option<Vec<SqlType>>,
    returns: SqlType,
    f: ScalarFn,
}

/// User-defined scalar functions, registered from Rust before statements are compiled.
///
/// ```
/// use eddy_sql::{FunctionRegistry, SqlType};
/// let mut fns = FunctionRegistry::new();
/// fns.register("DOUBLE_IT", Some(vec![SqlType::Bigint]), SqlType::Bigint, |args| {
///     Ok(args[0].as_i64().map(|n| (n * 2).into()).unwrap_or(serde_json::Value::Null))
/// });
/// assert!(fns.contains("double_it"));
/// ```
#[derive(Clone, Default)]
pub struct FunctionRegistry {
    fns: BTreeMap<String, UserFunction>,
}

impl fmt::Debug for FunctionRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FunctionRegistry").field("functions", &self.fns.keys()).finish()
    }
}

impl FunctionRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `name` (case-insensitive). With `params`, calls are type-checked at compile
    /// time against them (`SqlType::Any` accepts anything); the function is called only when
    /// the arguments were evaluated (NULLs included: it decides what NULL means).
    pub fn register(
        &mut self,
        name: &str,
        params: Option<Vec<SqlType>>,
        returns: SqlType,
        f: impl Fn(&[Value]) -> Result<Value, String> + Send + Sync + 'static,
    ) -> &mut Self {
        let function = UserFunction { params, returns, f: Arc::new(f) };
        self.fns.insert(name.to_ascii_uppercase(), function);
        self
    }

    pub fn contains(&self, name: &str) -> bool {
        self.fns.contains_key(&name.to_ascii_uppercase())
    }
}

/// Names of the aggregate functions (compiled by `aggregate.rs`).
pub const AGGREGATES: [&str; 13] = [
    "COUNT",
    "SUM",
    "AVG",
    "MIN",
    "MAX",
    "LATEST_BY_OFFSET",
    "EARLIEST_BY_OFFSET",
    "COUNT_DISTINCT",
    "TOPK",
    "TOPKDISTINCT",
    "COLLECT_LIST",
    "COLLECT_SET",
    "HISTOGRAM",
];

pub fn is_aggregate(name: &str) -> bool {
    AGGREGATES.contains(&name)
}

/// Parameter kinds of built-ins.
#[derive(Clone, Copy)]
enum P {
    Str,
    Num,
    Int,
    Any,
}

fn builtin(name: &str) -> Option<(usize, usize, &'static [P], SqlType)> {
    use P::*;
    let string = SqlType::String;
    Some(match name {
        "CONCAT" => (1, usize::MAX, &[Any], string),
        "SUBSTRING" => (2, 3, &[Str, Int, Int], string),
        "SPLIT" => (2, 2, &[Str, Str], SqlType::Array(Box::new(SqlType::String))),
        "REGEXP_EXTRACT" => (2, 3, &[Str, Str, Int], string),
        "TRIM" | "UCASE" | "LCASE" => (1, 1, &[Str], string),
        "LEN" => (1, 1, &[Str], SqlType::Int),
        "INSTR" => (2, 2, &[Str, Str], SqlType::Int),
        "REPLACE" => (3, 3, &[Str, Str, Str], string),
        "EXTRACTJSONFIELD" => (2, 2, &[Str, Str], string),
        "FORMAT_TIMESTAMP" | "TIMESTAMPTOSTRING" => (2, 3, &[Int, Str, Str], string),
        "PARSE_TIMESTAMP" | "STRINGTOTIMESTAMP" => (2, 3, &[Str, Str, Str], SqlType::Bigint),
        "GEO_DISTANCE" => (4, 5, &[Num, Num, Num, Num, Str], SqlType::Double),
        "ABS" | "FLOOR" | "CEIL" => (1, 1, &[Num], SqlType::Any),
        "ROUND" => (1, 2, &[Num, Int], SqlType::Any),
        "COALESCE" => (1, usize::MAX, &[Any], SqlType::Any),
        "AS_VALUE" => (1, 1, &[Any], SqlType::Any),
        "IFNULL" => (2, 2, &[Any, Any], SqlType::Any),
        _ => return None,
    })
}

/// Checks a call's arguments; returns its type.
pub fn check_call(
    registry: &FunctionRegistry,
    pos: Pos,
    name: &str,
    args: &[Expr],
    types: &[SqlType],
) -> Result<SqlType, SqlError> {
    if let Some(user) = registry.fns.get(name) {
        let Some(params) = &user.params else { return Ok(user.returns.clone()) };
        if params.len() != args.len() {
            return Err(SqlError::Arity {
                pos,
                name: name.to_owned(),
                expected: params.len().to_string(),
                got: args.len(),
            });
        }
        for ((arg, t), want) in args.iter().zip(types).zip(params) {
            let ok = *want == SqlType::Any
                || *t == SqlType::Any
                || t == want
                || (want.is_numeric() && t.is_numeric());
            if !ok {
                return Err(mismatch(arg, t, &want.to_string(), &format!("function {name}")));
            }
        }
        return Ok(user.returns.clone());
    }
    let Some((min, max, params, ret)) = builtin(name) else {
        return Err(SqlError::UnknownFunction { pos, name: name.to_owned() });
    };
    if args.len() < min || args.len() > max {
        let expected = match (min, max) {
            (a, b) if a == b => a.to_string(),
            (a, usize::MAX) => format!("at least {a}"),
            (a, b) => format!("{a} to {b}"),
        };
        return Err(SqlError::Arity { pos, name: name.to_owned(), expected, got: args.len() });
    }
    for (i, (arg, t)) in args.iter().zip(types).enumerate() {
        let p = params.get(i).or(params.last()).copied().unwrap_or(P::Any);
        let (ok, want) = match p {
            P::Str => (matches!(t, SqlType::String | SqlType::Any), "VARCHAR"),
            P::Num => (t.is_numeric() || *t == SqlType::Timestamp, "a number"),
            P::Int => (
                matches!(t, SqlType::Int | SqlType::Bigint | SqlType::Timestamp | SqlType::Any),
                "an integer (INT, BIGINT or TIMESTAMP)",
            ),
            P::Any => (true, ""),
        };
        if !ok {
            return Err(mismatch(arg, t, want, &format!("function {name}")));
        }
    }
    Ok(match name {
        "ABS" | "FLOOR" | "CEIL" | "ROUND" | "AS_VALUE" => {
            types.first().cloned().unwrap_or(SqlType::Any)
        }
        "COALESCE" | "IFNULL" => {
            types.iter().find(|t| **t != SqlType::Any).cloned().unwrap_or(SqlType::Any)
        }
        _ => ret,
    })
}

/// Calls a function on evaluated arguments.
pub fn call(registry: &FunctionRegistry, name: &str, args: &[Value]) -> Result<Value, EvalError> {
    if let Some(user) = registry.fns.get(name) {
        return (user.f)(args)
            .map_err(|message| EvalError::Function { function: name.to_owned(), message });
    }
    let fail = |message: String| EvalError::Function { function: name.to_owned(), message };
    match name {
        "CONCAT" => {
            return Ok(Value::String(args.iter().filter(|a| !a.is_null()).map(text).collect()));
        }
        "COALESCE" | "IFNULL" => {
            return Ok(args.iter().find(|a| !a.is_null()).cloned().unwrap_or(Value::Null));
        }
        // A copy of a key column into the value (the column itself stays in the key).
        "AS_VALUE" => return Ok(args.first().cloned().unwrap_or(Value::Null)),
        _ => {}
    }
    // GEO_DISTANCE's unit may be NULL (kilometres); every other NULL argument gives NULL.
    let checked = if name == "GEO_DISTANCE" { &args[..args.len().min(4)] } else { args };
    if checked.iter().any(Value::is_null) {
        return Ok(Value::Null);
    }
    match string_function(name, args).map_err(fail)? {
        Some(v) => Ok(v),
        None => number_function(name, args).map_err(fail),
    }
}

/// The string, JSON and time built-ins on non-NULL arguments; `None` for another name.
fn string_function(name: &str, args: &[Value]) -> Result<Option<Value>, String> {
    let s = |i: usize| args.get(i).map(text).unwrap_or_default();
    let int = |i: usize| args.get(i).and_then(Value::as_i64);
    Ok(Some(match name {
        "SUBSTRING" => {
            let chars: Vec<char> = s(0).chars().collect();
            let len = chars.len() as i64;
            let start = int(1).unwrap_or(1);
            // ksqlDB's rule: a negative position counts from the end, 0 and 1 both mean the
            // first character, and the length is clamped to what is left.
            let from = if start < 0 { (len + start).max(0) } else { (start - 1).clamp(0, len) };
            let to = int(2).map_or(len, |n| from.saturating_add(n).clamp(from, len));
            Value::String(chars[from as usize..to as usize].iter().collect())
        }
        "SPLIT" => {
            let (text, delim) = (s(0), s(1));
            let parts: Vec<Value> = if delim.is_empty() {
                text.chars().map(|c| Value::String(c.to_string())).collect()
            } else {
                text.split(delim.as_str()).map(|p| Value::String(p.to_owned())).collect()
            };
            Value::Array(parts)
        }
        "REGEXP_EXTRACT" => regexp_extract(&s(0), &s(1), int(2).unwrap_or(0))?,
        "TRIM" => Value::String(s(0).trim().to_owned()),
        "UCASE" => Value::String(s(0).to_uppercase()),
        "LCASE" => Value::String(s(0).to_lowercase()),
        "LEN" => Value::from(s(0).chars().count() as i64),
        "INSTR" => {
            let (hay, needle) = (s(0), s(1));
            Value::from(hay.find(&needle).map_or(0, |b| hay[..b].chars().count() as i64 + 1))
        }
        "REPLACE" => Value::String(s(0).replace(&s(1), &s(2))),
        "EXTRACTJSONFIELD" => extract_json_field(&s(0), &s(1)),
        "FORMAT_TIMESTAMP" | "TIMESTAMPTOSTRING" => {
            let ms = int(0).ok_or_else(|| "the timestamp is not an integer".to_owned())?;
            Value::String(time::format(ms, &s(1))?)
        }
        "PARSE_TIMESTAMP" | "STRINGTOTIMESTAMP" => Value::from(time::parse(&s(0), &s(1))?),
        _ => return Ok(None),
    }))
}

/// The numeric built-ins on non-NULL arguments.
fn number_function(name: &str, args: &[Value]) -> Result<Value, String> {
    let int = |i: usize| args.get(i).and_then(Value::as_i64);
    let float = |i: usize| args.get(i).and_then(Value::as_f64).unwrap_or(f64::NAN);
    Ok(match name {
        "GEO_DISTANCE" => {
            let radius = earth_radius(args.get(4))?;
            let (lat1, lon1, lat2, lon2) = (float(0), float(1), float(2), float(3));
            if ![lat1, lat2].iter().all(|l| (-90.0..=90.0).contains(l)) {
                return Err("latitudes must be between -90 and 90 degrees".into());
            }
            if ![lon1, lon2].iter().all(|l| (-180.0..=180.0).contains(l)) {
                return Err("longitudes must be between -180 and 180 degrees".into());
            }
            num(haversine(lat1, lon1, lat2, lon2) * radius)
        }
        "ABS" => match int(0) {
            Some(i) if args[0].is_i64() => Value::from(i.wrapping_abs()),
            _ => num(float(0).abs()),
        },
        "FLOOR" | "CEIL" if args[0].is_i64() => args[0].clone(),
        "FLOOR" => num(float(0).floor()),
        "CEIL" => num(float(0).ceil()),
        "ROUND" => {
            let digits = int(1).unwrap_or(0).clamp(-15, 15) as i32;
            if args[0].is_i64() && digits >= 0 {
                args[0].clone()
            } else {
                let scale = 10f64.powi(digits);
                let r = (float(0) * scale).round() / scale;
                if args.len() == 1 { Value::from(r as i64) } else { num(r) }
            }
        }
        _ => return Err("not a scalar function".into()),
    })
}

/// A double as a JSON number (NaN and infinities, which JSON cannot hold, are NULL).
pub fn num(x: f64) -> Value {
    Number::from_f64(x).map_or(Value::Null, Value::Number)
}

/// A value as text: strings as they are, other values as JSON.
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Great-circle distance by the haversine formula, Earth radius 6371 km.
pub fn geo_distance_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    haversine(lat1, lon1, lat2, lon2) * EARTH_RADIUS_KM
}

const EARTH_RADIUS_KM: f64 = 6371.0;
const EARTH_RADIUS_MILES: f64 = 3959.0;

/// The central angle between two points, in radians.
fn haversine(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = (lat2 - lat1).to_radians();
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * a.sqrt().min(1.0).asin()
}

/// GEO_DISTANCE's unit argument (ksqlDB's names, any case; NULL or blank is kilometres).
fn earth_radius(unit: Option<&Value>) -> Result<f64, String> {
    let unit = unit.map(text).unwrap_or_default().trim().to_ascii_lowercase();
    match unit.as_str() {
        "" | "km" | "kilometer" | "kilometers" | "kilometre" | "kilometres" => Ok(EARTH_RADIUS_KM),
        "mi" | "mile" | "miles" => Ok(EARTH_RADIUS_MILES),
        other => Err(format!(
            "unit {other:?}: use one of mi, mile, miles, km, kilometer, kilometers, kilometre, kilometres"
        )),
    }
}

thread_local! {
    /// Compiled patterns, by pattern text (a query uses few; bounded to stay small).
    static REGEXES: RefCell<HashMap<String, regex::Regex>> = RefCell::new(HashMap::new());
}

fn regexp_extract(pattern: &str, s: &str, group: i64) -> Result<Value, String> {
    REGEXES.with(|cache| {
        let mut cache = cache.borrow_mut();
        if !cache.contains_key(pattern) {
            let re = regex::Regex::new(pattern).map_err(|e| e.to_string())?;
            if cache.len() >= 64 {
                cache.clear();
            }
            cache.insert(pattern.to_owned(), re);
        }
        let Some(re) = cache.get(pattern) else { return Ok(Value::Null) };
        let group = usize::try_from(group).map_err(|_| "a negative group".to_owned())?;
        Ok(re
            .captures(s)
            .and_then(|c| c.get(group))
            .map_or(Value::Null, |m| Value::String(m.as_str().to_owned())))
    })
}

/// `$.a.b[0]` / `$['a']` paths over JSON text. Strings come back as they are, other values as
/// JSON text; a missing path or bad JSON is NULL.
fn extract_json_field(json: &str, path: &str) -> Value {
    let Ok(mut v) = serde_json::from_str::<Value>(json) else { return Value::Null };
    let Some(mut rest) = path.trim().strip_prefix('$') else { return Value::Null };
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            v = v.get(&r[..end]).cloned().unwrap_or(Value::Null);
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let Some(end) = r.find(']') else { return Value::Null };
            let inner = r[..end].trim();
            v = match inner.parse::<usize>() {
                Ok(i) => v.get(i).cloned().unwrap_or(Value::Null),
                Err(_) => v.get(inner.trim_matches(['\'', '"'])).cloned().unwrap_or(Value::Null),
            };
            rest = &r[end + 1..];
        } else {
            return Value::Null;
        }
    }
    match v {
        Value::Null => Value::Null,
        Value::String(s) => Value::String(s),
        other => Value::String(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, args: &[Value]) -> Value {
        call(&FunctionRegistry::new(), name, args).unwrap()
    }

    #[test]
    fn string_functions() {
        let s = |x: &str| Value::String(x.into());
        assert_eq!(f("CONCAT", &[s("a"), Value::Null, Value::from(1)]), "a1");
        assert_eq!(f("SUBSTRING", &[s("hello"), Value::from(2), Value::from(3)]), "ell");
        assert_eq!(f("SUBSTRING", &[s("hello"), Value::from(-3)]), "llo");
        assert_eq!(f("SPLIT", &[s("a,b"), s(",")]), serde_json::json!(["a", "b"]));
        assert_eq!(f("REGEXP_EXTRACT", &[s("(\\d+)-x"), s("ab 12-x"), Value::from(1)]), "12");
        assert_eq!(f("TRIM", &[s("  a ")]), "a");
        assert_eq!(f("UCASE", &[s("ab")]), "AB");
        assert_eq!(f("LCASE", &[s("AB")]), "ab");
        assert_eq!(f("LEN", &[s("héllo")]), 5);
        assert_eq!(f("REPLACE", &[s("a-b-c"), s("-"), s("+")]), "a+b+c");
        assert_eq!(f("UCASE", &[Value::Null]), Value::Null);
        let json = s(r#"{"a": {"b": [1, "two"]}}"#);
        assert_eq!(f("EXTRACTJSONFIELD", &[json.clone(), s("$.a.b[1]")]), "two");
        assert_eq!(f("EXTRACTJSONFIELD", &[json.clone(), s("$.a.b")]), "[1,\"two\"]");
        assert_eq!(f("EXTRACTJSONFIELD", &[json, s("$.zz")]), Value::Null);
    }

    #[test]
    fn geo_distance_is_haversine_in_km() {
        // Paris → London is about 343.5 km.
        let d = geo_distance_km(48.8566, 2.3522, 51.5074, -0.1278);
        assert!((d - 343.5).abs() < 1.0, "{d}");
        assert_eq!(geo_distance_km(1.0, 2.0, 1.0, 2.0), 0.0);
    }
}
