//! ksqlDB's test files: reading them (comments and all), expanding each test into one case per
//! `format` × `config` variant, and telling the cases eddy can run from those it cannot
//! (schema-registry formats, disabled tests).

use std::path::Path;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};

use super::BoxResult;

/// Formats only a schema registry (or a protobuf schema) can serve: not runnable on eddy.
const SCHEMA_FORMATS: [&str; 4] = ["AVRO", "PROTOBUF", "PROTOBUF_NOSR", "JSON_SR"];

/// Fields of a `topics` entry that register a schema with the schema registry.
const SCHEMA_FIELDS: [&str; 6] =
    ["schema", "keySchema", "valueSchema", "keySchemaId", "valueSchemaId", "valueSchemaReferences"];

static FORMAT_PROPERTY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(?:VALUE_|KEY_)?FORMAT\s*=\s*'([^']*)'").expect("a valid pattern")
});

/// One input record, or one record a query must write.
#[derive(Debug, Clone)]
pub struct Rec {
    pub topic: String,
    /// JSON as QTT gives it: `null` for no key.
    pub key: Value,
    /// JSON as QTT gives it: `null` for a tombstone.
    pub value: Value,
    /// `None`: an input at 0, an output at any time.
    pub timestamp: Option<i64>,
    /// `(start, end)` of a windowed key.
    pub window: Option<(i64, i64)>,
}

/// A runnable test case.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub statements: Vec<String>,
    pub inputs: Vec<Rec>,
    pub outputs: Vec<Rec>,
    /// `type: message` of the error ksqlDB raises.
    pub expected_error: Option<String>,
    /// Topics that exist before the statements run: name, partitions.
    pub topics: Vec<(String, u32)>,
    /// What ksqlDB checks that this tool does not (post conditions, headers, properties).
    pub unchecked: Vec<&'static str>,
}

/// A test case, or why it cannot run on eddy.
#[derive(Debug)]
pub enum Planned {
    Run(Box<Case>),
    Skip { why: String },
}

/// Every case of the file at `path`.
pub fn load(path: &Path) -> BoxResult<Vec<Planned>> {
    let text = std::fs::read_to_string(path)?;
    let doc: Value = serde_json::from_str(&strip_comments(&text))?;
    let tests = doc.get("tests").and_then(Value::as_array).ok_or("no \"tests\" array")?;
    let mut planned = Vec::new();
    for test in tests {
        let test = test.as_object().ok_or("a test that is not an object")?;
        planned.extend(expand(test)?);
    }
    Ok(planned)
}

/// `text` without `//` and `/* */` comments outside strings (ksqlDB's reader allows them).
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if c == '\\' {
                out.extend(chars.next());
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                in_string = true;
                out.push(c);
            }
            ('/', Some('/')) => {
                while chars.peek().is_some_and(|&n| n != '\n') {
                    chars.next();
                }
            }
            ('/', Some('*')) => {
                chars.next();
                let mut last = ' ';
                for n in chars.by_ref() {
                    if last == '*' && n == '/' {
                        break;
                    }
                    last = n;
                }
            }
            _ => out.push(c),
        }
    }
    out
}

fn strings(test: &Map<String, Value>, field: &str) -> BoxResult<Vec<String>> {
    let Some(list) = test.get(field) else { return Ok(Vec::new()) };
    let list = list.as_array().ok_or_else(|| format!("\"{field}\" is not an array"))?;
    list.iter()
        .map(|v| {
            v.as_str().map(str::to_owned).ok_or_else(|| format!("a non-string in {field}").into())
        })
        .collect()
}

/// One case per `format` × `config` variant, as ksqlDB builds them.
fn expand(test: &Map<String, Value>) -> BoxResult<Vec<Planned>> {
    let name = test.get("name").and_then(Value::as_str).ok_or("a test without a name")?;
    let formats = strings(test, "format")?;
    let configs = strings(test, "config")?;
    let variants = |list: Vec<String>| -> Vec<Option<String>> {
        if list.is_empty() { vec![None] } else { list.into_iter().map(Some).collect() }
    };
    let mut planned = Vec::new();
    for format in variants(formats) {
        for config in variants(configs.clone()) {
            let mut full = name.to_owned();
            if let Some(f) = &format {
                full = format!("{full} - {f}");
            }
            if let Some(c) = &config {
                full = format!("{full} - {}={c}", config_property(test).unwrap_or_default());
            }
            planned.push(variant(test, full, format.as_deref())?);
        }
    }
    Ok(planned)
}

/// The property a `config` list stands in for (the one whose value is `{CONFIG}`).
fn config_property(test: &Map<String, Value>) -> Option<String> {
    let props = test.get("properties")?.as_object()?;
    props.iter().find(|(_, v)| v.as_str() == Some("{CONFIG}")).map(|(k, _)| k.clone())
}

fn variant(test: &Map<String, Value>, name: String, format: Option<&str>) -> BoxResult<Planned> {
    let mut statements = strings(test, "statements")?;
    if let Some(f) = format {
        for s in &mut statements {
            *s = s.replace("{FORMAT}", f);
        }
    }
    if let Some(why) = not_runnable(test, &statements) {
        return Ok(Planned::Skip { why });
    }
    let expected_error = test.get("expectedException").map(|e| {
        let field = |f: &str| e.get(f).and_then(Value::as_str).unwrap_or("").to_owned();
        format!("{}: {}", field("type"), field("message"))
    });
    let case = Case {
        name,
        statements,
        inputs: records(test, "inputs")?,
        outputs: records(test, "outputs")?,
        expected_error,
        topics: topics(test),
        unchecked: unchecked(test),
    };
    Ok(Planned::Run(Box::new(case)))
}

/// Why `test` cannot run on eddy, if it cannot.
fn not_runnable(test: &Map<String, Value>, statements: &[String]) -> Option<String> {
    if test.get("enabled") == Some(&Value::Bool(false)) {
        return Some("disabled in ksqlDB".into());
    }
    for s in statements {
        for m in FORMAT_PROPERTY.captures_iter(s) {
            let format = m[1].to_ascii_uppercase();
            if SCHEMA_FORMATS.contains(&format.as_str()) {
                return Some(format!("{format} format"));
            }
        }
    }
    let props = test.get("properties").and_then(Value::as_object);
    for (k, v) in props.into_iter().flatten() {
        let v = v.as_str().unwrap_or("").to_ascii_uppercase();
        if k.starts_with("ksql.persistence.default.format") && SCHEMA_FORMATS.contains(&&*v) {
            return Some(format!("{v} format"));
        }
    }
    let topics = test.get("topics").and_then(Value::as_array);
    for t in topics.into_iter().flatten() {
        if SCHEMA_FIELDS.iter().any(|f| t.get(f).is_some()) {
            return Some("schema-registry schema in topics".into());
        }
        for f in ["format", "keyFormat", "valueFormat"] {
            let format = t.get(f).and_then(Value::as_str).unwrap_or("").to_ascii_uppercase();
            if SCHEMA_FORMATS.contains(&format.as_str()) {
                return Some(format!("{format} format"));
            }
        }
    }
    None
}

fn topics(test: &Map<String, Value>) -> Vec<(String, u32)> {
    let topics = test.get("topics").and_then(Value::as_array);
    topics
        .into_iter()
        .flatten()
        .filter_map(|t| {
            let name = t.get("name")?.as_str()?.to_owned();
            let partitions = t.get("partitions").and_then(Value::as_u64).unwrap_or(1);
            Some((name, u32::try_from(partitions).unwrap_or(1)))
        })
        .collect()
}

fn unchecked(test: &Map<String, Value>) -> Vec<&'static str> {
    let mut unchecked = Vec::new();
    if test.contains_key("post") {
        unchecked.push("post conditions");
    }
    if test.contains_key("properties") {
        unchecked.push("properties");
    }
    let has_headers = ["inputs", "outputs"].iter().any(|f| {
        let list = test.get(*f).and_then(Value::as_array);
        list.into_iter().flatten().any(|r| r.get("headers").is_some())
    });
    if has_headers {
        unchecked.push("headers");
    }
    unchecked
}

fn records(test: &Map<String, Value>, field: &str) -> BoxResult<Vec<Rec>> {
    let Some(list) = test.get(field) else { return Ok(Vec::new()) };
    let list = list.as_array().ok_or_else(|| format!("\"{field}\" is not an array"))?;
    list.iter().map(record).collect()
}

fn record(r: &Value) -> BoxResult<Rec> {
    let topic = r.get("topic").and_then(Value::as_str).ok_or("a record without a topic")?;
    let number = |v: &Value| v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok()));
    let window = match r.get("window") {
        Some(w) => {
            let bound = |f: &str| w.get(f).and_then(number).ok_or("a window without bounds");
            Some((bound("start")?, bound("end")?))
        }
        None => None,
    };
    Ok(Rec {
        topic: topic.to_owned(),
        key: r.get("key").cloned().unwrap_or(Value::Null),
        value: r.get("value").cloned().unwrap_or(Value::Null),
        timestamp: r.get("timestamp").and_then(number),
        window,
    })
}
