//! The JSON built-ins, over JSON text in VARCHARs: `EXTRACTJSONFIELD(json, '$.a.b[0]')`,
//! `JSON_KEYS`, `JSON_RECORDS` (→ `MAP<VARCHAR, VARCHAR>`), `JSON_ITEMS` (→ `ARRAY<VARCHAR>`),
//! `JSON_CONCAT(json, ...)`, `JSON_ARRAY_LENGTH`, `JSON_ARRAY_CONTAINS(json, value)`,
//! `IS_JSON_STRING` and `TO_JSON_STRING(any value)`.
//!
//! Invariants: the text is read by [`json_tree`](super::json_tree) as ksqlDB's Jackson reads
//! it (key order and number digits kept, text after the first value ignored); a function
//! whose text is not JSON fails (NULL), except `IS_JSON_STRING` and `JSON_ARRAY_CONTAINS`,
//! which answer false. A JSON string comes out as its text, any other JSON value as compact
//! JSON. `TO_JSON_STRING` writes a TIMESTAMP as its milliseconds (a function sees values, not
//! their SQL types; ksqlDB writes an ISO date).

use serde_json::{Map, Value};

use super::P::{Any, Str};
use super::json_tree::{self, Json, Parser};
use super::{Signature, ret, text};

pub(super) fn signature(name: &str) -> Option<Signature> {
    Some(match name {
        "EXTRACTJSONFIELD" => Signature::new(2, 2, &[Str, Str], ret::string),
        "JSON_KEYS" | "JSON_ITEMS" => Signature::new(1, 1, &[Str], ret::strings),
        "JSON_RECORDS" => Signature::new(1, 1, &[Str], ret::string_map),
        "JSON_CONCAT" => Signature::new(1, usize::MAX, &[Str], ret::string),
        "JSON_ARRAY_LENGTH" => Signature::new(1, 1, &[Str], ret::int),
        "JSON_ARRAY_CONTAINS" => Signature::new(2, 2, &[Str, Any], ret::boolean).lenient(),
        "IS_JSON_STRING" => Signature::new(1, 1, &[Str], ret::boolean).lenient(),
        "TO_JSON_STRING" => Signature::new(1, 1, &[Any], ret::string).lenient(),
        _ => return None,
    })
}

pub(super) fn eval(name: &str, args: &[Value]) -> Result<Value, String> {
    let arg = |i: usize| args.get(i).unwrap_or(&Value::Null);
    let s = |i: usize| text(arg(i));
    let strings = |items: Vec<String>| Value::Array(items.into_iter().map(Value::String).collect());
    Ok(match name {
        "TO_JSON_STRING" => {
            let mut out = String::new();
            json_tree::write_value(arg(0), &mut out);
            Value::String(out)
        }
        "IS_JSON_STRING" => {
            Value::Bool(!arg(0).is_null() && matches!(json_tree::parse(&s(0)), Ok(Some(_))))
        }
        _ if arg(0).is_null() => Value::Null,
        "JSON_ARRAY_CONTAINS" => Value::Bool(array_contains(&s(0), arg(1))),
        "EXTRACTJSONFIELD" => extract(&s(0), &s(1))?,
        "JSON_CONCAT" => concat(args)?.map_or(Value::Null, |j| Value::String(j.to_text())),
        _ => match (name, json_tree::parse(&s(0))?) {
            ("JSON_KEYS", Some(Json::Object(members))) => {
                strings(members.into_iter().map(|(k, _)| k).collect())
            }
            ("JSON_RECORDS", Some(Json::Object(members))) => {
                let records = members.into_iter().map(|(k, v)| (k, Value::String(as_text(v))));
                Value::Object(records.collect::<Map<String, Value>>())
            }
            ("JSON_ITEMS", Some(Json::Array(items))) => {
                strings(items.iter().map(Json::to_text).collect())
            }
            ("JSON_ITEMS", _) => return Err("JSON_ITEMS needs a JSON array".into()),
            ("JSON_ARRAY_LENGTH", Some(Json::Array(items))) => Value::from(items.len()),
            _ => Value::Null,
        },
    })
}

/// A JSON string as its text, any other value as compact JSON.
fn as_text(v: Json) -> String {
    match v {
        Json::String(s) => s,
        other => other.to_text(),
    }
}

/// `EXTRACTJSONFIELD`: the value at `path`, NULL when there is none.
fn extract(json: &str, path: &str) -> Result<Value, String> {
    let tokens = path_tokens(path)?;
    let Some(root) = json_tree::parse(json)? else {
        // Jackson's missing node: no member, and empty text as a whole.
        return Ok(if tokens.is_empty() { Value::String(String::new()) } else { Value::Null });
    };
    let mut node = &root;
    for token in &tokens {
        let next = match node {
            Json::Array(items) => {
                let Ok(i) = token.parse::<i32>() else { return Ok(Value::Null) };
                usize::try_from(i).ok().and_then(|i| items.get(i))
            }
            other => other.get(token),
        };
        let Some(next) = next else { return Ok(Value::Null) };
        node = next;
    }
    Ok(Value::String(as_text(node.clone())))
}

/// The steps of a JSON path as ksqlDB reads it: `$`, then `.name` (letters, digits, `_`, `:`,
/// `@`), `[name]` / `[0]` (letters, digits, `_`) or `["any text"]` (with `\"` and `\\`).
fn path_tokens(path: &str) -> Result<Vec<String>, String> {
    let invalid = || format!("Invalid JSON path: '{path}'");
    let cs: Vec<char> = path.chars().collect();
    if cs.first() != Some(&'$') {
        return Err(invalid());
    }
    let word = |from: usize, extra: &[char]| {
        let n = cs[from..]
            .iter()
            .take_while(|c| c.is_alphanumeric() || **c == '_' || extra.contains(c))
            .count();
        (cs[from..from + n].iter().collect::<String>(), from + n)
    };
    let (mut tokens, mut i) = (Vec::new(), 1);
    while i < cs.len() {
        let (token, next) = match cs[i] {
            '.' => word(i + 1, &[':', '@']),
            '[' if cs.get(i + 1) == Some(&'"') => quoted(&cs, i + 2).ok_or_else(invalid)?,
            '[' => word(i + 1, &[]),
            _ => return Err(invalid()),
        };
        let bracket = cs[i] == '[';
        if token.is_empty() && !(bracket && cs.get(i + 1) == Some(&'"')) {
            return Err(invalid());
        }
        i = next;
        if bracket {
            if cs.get(i) != Some(&']') {
                return Err(invalid());
            }
            i += 1;
        }
        tokens.push(token);
    }
    Ok(tokens)
}

/// A quoted subscript's text from `from` (after the quote) to its closing quote, and where
/// that quote ends.
fn quoted(cs: &[char], mut i: usize) -> Option<(String, usize)> {
    let mut out = String::new();
    loop {
        match cs.get(i)? {
            '"' => return Some((out, i + 1)),
            '\\' => {
                let c = *cs.get(i + 1).filter(|c| matches!(c, '"' | '\\'))?;
                out.push(c);
                i += 2;
            }
            c => {
                out.push(*c);
                i += 1;
            }
        }
    }
}

/// `JSON_CONCAT`: objects merged (later keys win), anything else concatenated as arrays (a
/// value that is not an array counts as a one-element array); NULL when any text is blank.
fn concat(args: &[Value]) -> Result<Option<Json>, String> {
    let mut nodes = Vec::with_capacity(args.len());
    for a in args {
        match json_tree::parse(&text(a))? {
            Some(node) => nodes.push(node),
            None => return Ok(None),
        }
    }
    let objects = nodes.iter().all(|n| matches!(n, Json::Object(_)));
    let mut nodes = nodes.into_iter();
    let Some(first) = nodes.next() else { return Ok(None) };
    if objects {
        let Json::Object(mut merged) = first else { return Ok(None) };
        for node in nodes {
            let Json::Object(members) = node else { continue };
            for (k, v) in members {
                match merged.iter_mut().find(|(key, _)| *key == k) {
                    Some(slot) => slot.1 = v,
                    None => merged.push((k, v)),
                }
            }
        }
        return Ok(Some(Json::Object(merged)));
    }
    let items = |n: Json| match n {
        Json::Array(items) => items,
        other => vec![other],
    };
    let mut all = items(first);
    for node in nodes {
        all.extend(items(node));
    }
    Ok(Some(Json::Array(all)))
}

/// `JSON_ARRAY_CONTAINS`: whether the array in `json` has an element equal to `wanted` of the
/// same JSON kind (an integer for an integer, a double for a double, …). The array is read
/// element by element, as Jackson streams it: an answer found before a syntax error stands;
/// text that is not an array, or breaks before a match, answers false.
fn array_contains(json: &str, wanted: &Value) -> bool {
    let mut p = Parser::new(json);
    if !p.eat(b'[') || p.eat(b']') {
        return false;
    }
    loop {
        let Ok(item) = p.value() else { return false };
        match element_matches(&item, wanted) {
            Some(true) => return true,
            Some(false) => {}
            None => return false,
        }
        if p.eat(b']') || !p.eat(b',') {
            return false;
        }
    }
}

/// Whether a JSON element equals `wanted`; `None` when reading the element as `wanted`'s
/// type fails (an integer too large), which ends the search in ksqlDB.
fn element_matches(item: &Json, wanted: &Value) -> Option<bool> {
    Some(match (item, wanted) {
        (Json::Null, Value::Null) => true,
        (Json::Bool(a), Value::Bool(b)) => a == b,
        (Json::String(a), Value::String(b)) => a == b,
        (Json::Number(n), Value::Number(w)) => {
            let integral = !n.contains(['.', 'e', 'E']);
            if integral && !w.is_f64() {
                n.parse::<i64>().ok()? == w.as_i64()?
            } else if !integral && w.is_f64() {
                n.parse::<f64>().ok().map(f64::to_bits) == w.as_f64().map(f64::to_bits)
            } else {
                false
            }
        }
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    // The shared dispatch: what a query's call reaches.
    use crate::functions::evaluate as call;
    use serde_json::json;

    use super::*;

    fn f(name: &str, args: &[Value]) -> Result<Value, String> {
        call(name, args).expect("known")
    }

    #[test]
    fn extract_follows_the_path() {
        let doc = r#"{"a": {"b": [1, "two", null, 1.23450]}, "@type": "x"}"#;
        let at = |path: &str| extract(doc, path);
        assert_eq!(at("$.a.b[1]"), Ok(json!("two")));
        assert_eq!(at("$.a.b"), Ok(json!(r#"[1,"two",null,1.23450]"#)));
        assert_eq!(at("$.a.b[2]"), Ok(json!("null")));
        assert_eq!(at("$.a.b[3]"), Ok(json!("1.23450")));
        assert_eq!(at("$['a'].b"), Err("Invalid JSON path: '$['a'].b'".into()));
        assert_eq!(at(r#"$["a"]["b"][0]"#), Ok(json!("1")));
        assert_eq!(at("$.@type"), Ok(json!("x")));
        assert_eq!(at("$.zz"), Ok(Value::Null));
        assert_eq!(at("$.a.b.c"), Ok(Value::Null));
        assert!(at("$.a.b[-1]").is_err());
        assert!(at("a.b").is_err());
        assert_eq!(extract(r#"{"name": "cdd"}}"#, "$.name"), Ok(json!("cdd")));
        assert!(extract("{", "$.a").is_err());
        assert_eq!(extract("", "$.a"), Ok(Value::Null));
    }

    #[test]
    fn keys_records_and_items_keep_the_text_order() {
        let doc = json!(r#"{"Red": 3, "Green": {"x": [1]}, "Blue": "b"}"#);
        assert_eq!(f("JSON_KEYS", std::slice::from_ref(&doc)), Ok(json!(["Red", "Green", "Blue"])));
        let records = json!({"Red": "3", "Green": "{\"x\":[1]}", "Blue": "b"});
        assert_eq!(f("JSON_RECORDS", &[doc]), Ok(records));
        assert_eq!(f("JSON_KEYS", &[json!("[1]")]), Ok(Value::Null));
        assert_eq!(f("JSON_KEYS", &[json!("")]), Ok(Value::Null));
        let items = f("JSON_ITEMS", &[json!(r#"[{"type": "A"}, "s", 2]"#)]);
        assert_eq!(items, Ok(json!([r#"{"type":"A"}"#, r#""s""#, "2"])));
        assert!(f("JSON_ITEMS", &[json!("{}")]).is_err());
    }

    #[test]
    fn concat_merges_objects_or_appends_arrays() {
        let c = |a: &str, b: &str| f("JSON_CONCAT", &[json!(a), json!(b)]);
        assert_eq!(c(r#"{"a": 1}"#, r#"{"b": 2}"#), Ok(json!(r#"{"a":1,"b":2}"#)));
        assert_eq!(c(r#"{"a": {"5": 6}}"#, r#"{"a": {"3": 4}}"#), Ok(json!(r#"{"a":{"3":4}}"#)));
        assert_eq!(c("[1, [2]]", "[[[3]], [[[4]]]]"), Ok(json!("[1,[2],[[3]],[[[4]]]]")));
        assert_eq!(c("null", "null"), Ok(json!("[null,null]")));
        assert_eq!(c("[1, 2]", r#"{"a": 1}"#), Ok(json!(r#"[1,2,{"a":1}]"#)));
        assert_eq!(c("1", ""), Ok(Value::Null));
        assert_eq!(f("JSON_CONCAT", &[Value::Null, json!("1")]), Ok(Value::Null));
    }

    #[test]
    fn array_length_of_arrays_only() {
        assert_eq!(f("JSON_ARRAY_LENGTH", &[json!("[1, [2, 3]]")]), Ok(json!(2)));
        assert_eq!(f("JSON_ARRAY_LENGTH", &[json!("{}")]), Ok(Value::Null));
        assert_eq!(f("JSON_ARRAY_LENGTH", &[json!("")]), Ok(Value::Null));
        assert!(f("JSON_ARRAY_LENGTH", &[json!("[1,")]).is_err());
    }

    #[test]
    fn array_contains_matches_kind_and_value() {
        let has = |doc: &str, v: Value| array_contains(doc, &v);
        assert!(has(r#"["Pink", null]"#, json!("Pink")));
        assert!(has("[1, null]", Value::Null));
        assert!(has("[true]", json!(true)));
        assert!(has("[1, 2]", json!(2)));
        assert!(!has("[1.0]", json!(1)));
        assert!(has("[1.5]", json!(1.5)));
        assert!(!has("[[1], {\"a\": 1}]", json!(1)));
        assert!(has(r#"["a", oops"#, json!("a")));
        assert!(!has(r#"[oops, "a"]"#, json!("a")));
        assert!(!has("", json!("a")));
        assert!(!has("[99999999999999999999, 1]", json!(1)));
        assert_eq!(f("JSON_ARRAY_CONTAINS", &[Value::Null, json!(1)]), Ok(Value::Null));
    }

    #[test]
    fn is_json_string_and_to_json_string() {
        for (doc, ok) in
            [("1", true), ("[1, 2]", true), ("\"abc\"", true), ("abc", false), ("", false)]
        {
            assert_eq!(f("IS_JSON_STRING", &[json!(doc)]), Ok(json!(ok)), "{doc}");
        }
        assert_eq!(f("IS_JSON_STRING", &[Value::Null]), Ok(json!(false)));
        assert_eq!(f("TO_JSON_STRING", &[Value::Null]), Ok(json!("null")));
        assert_eq!(f("TO_JSON_STRING", &[json!("abc")]), Ok(json!("\"abc\"")));
        assert_eq!(f("TO_JSON_STRING", &[json!(123.456)]), Ok(json!("123.456")));
        let nested = json!({"NAME": "Alice", "ID": 1, "T": [1, 2]});
        assert_eq!(
            f("TO_JSON_STRING", &[nested]),
            Ok(json!(r#"{"ID":1,"NAME":"Alice","T":[1,2]}"#))
        );
    }
}
