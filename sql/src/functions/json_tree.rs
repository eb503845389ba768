//! JSON text read and written as ksqlDB's JSON functions do with Jackson: an object keeps its
//! keys in the order of the text (a repeated key keeps its first place and its last value), a
//! number keeps its digits (`1.50` stays `1.50`; an exponent is written out: `1e2` is `100`),
//! text after the first value is ignored, and the writer is compact (`{"a":1,"b":[2]}`).
//!
//! Invariants: the reader accepts only standard JSON (no comments, no single quotes, no
//! leading zeros, no NaN), nests at most [`MAX_DEPTH`] deep, and never panics; text that is
//! empty or blank is no value at all (Jackson's "missing node"), not an error.

use serde_json::Value;

use super::values::{cmp_java_strings, java_double};

/// How deep arrays and objects may nest (Jackson's default limit).
const MAX_DEPTH: usize = 1000;

/// A JSON value as read from text.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Json {
    Null,
    Bool(bool),
    /// The number as written in the text (valid JSON number syntax).
    Number(String),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    /// The member `key` of an object.
    pub(super) fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Compact JSON text, numbers as Jackson writes its exact decimals.
    pub(super) fn to_text(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Number(n) => out.push_str(&plain_number(n)),
            Json::String(s) => write_string(s, out),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Json::Object(members) => {
                out.push('{');
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_string(k, out);
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }
}

/// A number as Jackson writes it: an integer in its canonical form, a decimal as
/// `BigDecimal.toPlainString` (digits kept, exponent written out, no negative zero).
fn plain_number(n: &str) -> String {
    let (negative, n) = n.strip_prefix('-').map_or((false, n), |rest| (true, rest));
    let (mantissa, exponent) = match n.find(['e', 'E']) {
        Some(i) => (&n[..i], n[i + 1..].parse::<i64>().unwrap_or(0)),
        None => (n, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: String = format!("{int}{frac}");
    let scale = frac.len() as i64 - exponent;
    let digits = digits.trim_start_matches('0');
    let body = if scale <= 0 {
        let zeros = if digits.is_empty() { 0 } else { (-scale) as usize };
        format!("{}{}", if digits.is_empty() { "0" } else { digits }, "0".repeat(zeros))
    } else {
        let scale = scale as usize;
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (whole, fraction) = padded.split_at(padded.len() - scale);
        format!("{whole}.{fraction}")
    };
    let zero = body.bytes().all(|b| b == b'0' || b == b'.');
    if negative && !zero { format!("-{body}") } else { body }
}

/// A string in double quotes, escaped as Jackson escapes: `"`, `\`, and control characters
/// (`\n` `\t` `\r` `\b` `\f` short, the others as `\u00XX`).
pub(super) fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c < ' ' => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A ksqlDB value as Jackson writes it for `TO_JSON_STRING`: maps and structs with their keys
/// sorted (ksqlDB puts them in a `TreeMap`), doubles as Java prints them.
pub(super) fn write_value(v: &Value, out: &mut String) {
    match v {
        Value::Number(n) if n.is_f64() => out.push_str(&java_double(n.as_f64().unwrap_or(0.0))),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out);
            }
            out.push(']');
        }
        Value::Object(members) => {
            let mut members: Vec<_> = members.iter().collect();
            members.sort_by(|a, b| cmp_java_strings(a.0, b.0));
            out.push('{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                write_value(v, out);
            }
            out.push('}');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The first JSON value of `text`; `None` when there is only whitespace. What follows the
/// value is ignored, except that a number at the top must end in whitespace (Jackson).
pub(super) fn parse(text: &str) -> Result<Option<Json>, String> {
    let mut p = Parser { s: text.as_bytes(), at: 0, depth: 0 };
    p.skip_space();
    if p.at == p.s.len() {
        return Ok(None);
    }
    let top_number = matches!(p.peek(), Some(b'-' | b'0'..=b'9'));
    let v = p.value()?;
    if top_number && p.peek().is_some_and(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r')) {
        return Err(p.error("expected space separating root-level values"));
    }
    Ok(Some(v))
}

/// A recursive-descent reader over the bytes of the text.
pub(super) struct Parser<'a> {
    s: &'a [u8],
    at: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        Parser { s: text.as_bytes(), at: 0, depth: 0 }
    }

    fn error(&self, what: &str) -> String {
        format!("Invalid JSON format: {what} at character {}", self.at)
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    pub(super) fn skip_space(&mut self) {
        while self.peek().is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// Consumes `b` (after whitespace) when it is next.
    pub(super) fn eat(&mut self, b: u8) -> bool {
        self.skip_space();
        let found = self.peek() == Some(b);
        if found {
            self.at += 1;
        }
        found
    }

    /// One value (after whitespace).
    pub(super) fn value(&mut self) -> Result<Json, String> {
        self.skip_space();
        match self.peek() {
            Some(b'{') => self.nested(|p| p.object()),
            Some(b'[') => self.nested(|p| p.array()),
            Some(b'"') => self.string().map(Json::String),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => {
                for (word, v) in
                    [("true", Json::Bool(true)), ("false", Json::Bool(false)), ("null", Json::Null)]
                {
                    if self.s[self.at..].starts_with(word.as_bytes()) {
                        self.at += word.len();
                        return Ok(v);
                    }
                }
                Err(self.error("unrecognized token"))
            }
            None => Err(self.error("unexpected end of input")),
        }
    }

    fn nested(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<Json, String>,
    ) -> Result<Json, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error("nesting too deep"));
        }
        self.at += 1; // the opening bracket
        let v = f(self);
        self.depth -= 1;
        v
    }

    fn array(&mut self) -> Result<Json, String> {
        let mut items = Vec::new();
        if self.eat(b']') {
            return Ok(Json::Array(items));
        }
        loop {
            items.push(self.value()?);
            if self.eat(b']') {
                return Ok(Json::Array(items));
            }
            if !self.eat(b',') {
                return Err(self.error("expected ',' or ']'"));
            }
        }
    }

    fn object(&mut self) -> Result<Json, String> {
        let mut members: Vec<(String, Json)> = Vec::new();
        if self.eat(b'}') {
            return Ok(Json::Object(members));
        }
        loop {
            self.skip_space();
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a field name"));
            }
            let key = self.string()?;
            if !self.eat(b':') {
                return Err(self.error("expected ':'"));
            }
            let v = self.value()?;
            match members.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = v,
                None => members.push((key, v)),
            }
            if self.eat(b'}') {
                return Ok(Json::Object(members));
            }
            if !self.eat(b',') {
                return Err(self.error("expected ',' or '}'"));
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
        self.at - start
    }

    fn number(&mut self) -> Result<Json, String> {
        let start = self.at;
        self.eat(b'-');
        let int_start = self.at;
        if self.digits() == 0 {
            return Err(self.error("expected a digit"));
        }
        if self.s[int_start] == b'0' && self.at - int_start > 1 {
            return Err(self.error("leading zeroes not allowed"));
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            if self.digits() == 0 {
                return Err(self.error("expected a digit after the decimal point"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if self.digits() == 0 {
                return Err(self.error("expected a digit in the exponent"));
            }
        }
        let text = std::str::from_utf8(&self.s[start..self.at]).map_err(|e| e.to_string())?;
        Ok(Json::Number(text.to_owned()))
    }

    /// A string (at its opening quote), escapes resolved; a lone surrogate becomes U+FFFD.
    fn string(&mut self) -> Result<String, String> {
        self.at += 1;
        let mut units: Vec<u16> = Vec::new();
        let mut out = String::new();
        loop {
            let run = self.at;
            while self.peek().is_some_and(|b| b != b'"' && b != b'\\' && b >= 0x20) {
                self.at += 1;
            }
            if self.at > run {
                flush(&mut units, &mut out);
                out.push_str(
                    std::str::from_utf8(&self.s[run..self.at]).map_err(|e| e.to_string())?,
                );
            }
            match self.peek() {
                Some(b'"') => {
                    self.at += 1;
                    flush(&mut units, &mut out);
                    return Ok(out);
                }
                Some(b'\\') => {
                    let escaped = self.s.get(self.at + 1).copied();
                    self.at += 2;
                    let unit = match escaped {
                        Some(b'u') => {
                            let hex = self
                                .s
                                .get(self.at..self.at + 4)
                                .and_then(|h| std::str::from_utf8(h).ok());
                            let unit = hex.and_then(|h| u16::from_str_radix(h, 16).ok());
                            self.at += 4;
                            unit.ok_or_else(|| self.error("bad \\u escape"))?
                        }
                        Some(b'"') => u16::from(b'"'),
                        Some(b'\\') => u16::from(b'\\'),
                        Some(b'/') => u16::from(b'/'),
                        Some(b'b') => 8,
                        Some(b'f') => 12,
                        Some(b'n') => u16::from(b'\n'),
                        Some(b'r') => u16::from(b'\r'),
                        Some(b't') => u16::from(b'\t'),
                        _ => return Err(self.error("unrecognized character escape")),
                    };
                    units.push(unit);
                }
                Some(_) => return Err(self.error("illegal unquoted control character")),
                None => return Err(self.error("unexpected end of input in a string")),
            }
        }
    }
}

/// Appends escaped UTF-16 units, pairing surrogates.
fn flush(units: &mut Vec<u16>, out: &mut String) {
    out.extend(char::decode_utf16(units.drain(..)).map(|c| c.unwrap_or('\u{FFFD}')));
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn round_trip(text: &str) -> String {
        parse(text).expect("valid").expect("a value").to_text()
    }

    #[test]
    fn keeps_key_order_and_number_digits() {
        assert_eq!(
            round_trip(r#"{"b": 1, "a": [1.50, -0, 1e2, 2.5E-3, -0.0]}"#),
            r#"{"b":1,"a":[1.50,0,100,0.0025,0.0]}"#
        );
        assert_eq!(round_trip(r#"{"a": 1, "b": 2, "a": 3}"#), r#"{"a":3,"b":2}"#);
        assert_eq!(round_trip(r#""tab\t\u00e9\ud83d\ude00 \"q\"""#), "\"tab\\té😀 \\\"q\\\"\"");
    }

    #[test]
    fn ignores_what_follows_the_first_value() {
        assert_eq!(round_trip(r#"{"a": 1}} trailing"#), r#"{"a":1}"#);
        assert_eq!(round_trip("1 2"), "1");
        assert!(parse("1x").is_err());
        assert_eq!(parse("  \n"), Ok(None));
        assert_eq!(parse(""), Ok(None));
    }

    #[test]
    fn refuses_what_jackson_refuses() {
        for bad in
            ["abc", "01", "1.", ".5", "+1", "[1,]", "{'a': 1}", "[1", "\"a\nb\"", "\"\\q\"", "NaN"]
        {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse(&"[".repeat(MAX_DEPTH + 1)).is_err());
    }

    #[test]
    fn plain_numbers_write_out_exponents() {
        assert_eq!(plain_number("1E+3"), "1000");
        assert_eq!(plain_number("1.5e1"), "15");
        assert_eq!(plain_number("-12.5e-4"), "-0.00125");
        assert_eq!(plain_number("0e5"), "0");
        assert_eq!(plain_number("123"), "123");
    }

    #[test]
    fn values_are_written_with_sorted_keys_and_java_doubles() {
        let mut out = String::new();
        write_value(&json!({"b": [1, 2.0, 1e10], "a": "x\u{1}", "c": null}), &mut out);
        assert_eq!(out, r#"{"a":"x\u0001","b":[1,2.0,1.0E10],"c":null}"#);
    }
}
