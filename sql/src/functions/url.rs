//! The URL built-ins: `URL_EXTRACT_PROTOCOL`, `URL_EXTRACT_HOST`, `URL_EXTRACT_PORT` (→ INT),
//! `URL_EXTRACT_PATH`, `URL_EXTRACT_QUERY`, `URL_EXTRACT_FRAGMENT`,
//! `URL_EXTRACT_PARAMETER(url, name)`, `URL_ENCODE_PARAM` and `URL_DECODE_PARAM`.
//!
//! Invariants: a URL is read as Java's `java.net.URI` reads it (RFC 2396 with Java's own
//! allowances), because ksqlDB's functions are built on it: a URL it refuses (a space, a bad
//! `%` escape, `user@host:1` without a scheme) fails the call (NULL); an authority that is not
//! `[user@]host[:port]` with a proper host name has no host; a missing part is NULL (an
//! absent path is empty). Path, query and fragment come out percent-decoded (UTF-8), the host
//! as written. Parameters are encoded and decoded as HTML forms are (`+` for a space).

use serde_json::Value;

use super::P::Str;
use super::{Signature, ret, text};

pub(super) fn signature(name: &str) -> Option<Signature> {
    Some(match name {
        "URL_EXTRACT_PROTOCOL"
        | "URL_EXTRACT_HOST"
        | "URL_EXTRACT_PATH"
        | "URL_EXTRACT_QUERY"
        | "URL_EXTRACT_FRAGMENT"
        | "URL_ENCODE_PARAM"
        | "URL_DECODE_PARAM" => Signature::new(1, 1, &[Str], ret::string),
        "URL_EXTRACT_PORT" => Signature::new(1, 1, &[Str], ret::int),
        "URL_EXTRACT_PARAMETER" => Signature::new(2, 2, &[Str, Str], ret::string),
        _ => return None,
    })
}

pub(super) fn eval(name: &str, args: &[Value]) -> Result<Value, String> {
    let s = |i: usize| args.get(i).map(text).unwrap_or_default();
    let string = |x: Option<String>| x.map_or(Value::Null, Value::String);
    Ok(match name {
        "URL_ENCODE_PARAM" => Value::String(encode_param(&s(0))),
        "URL_DECODE_PARAM" => Value::String(decode_param(&s(0))?),
        _ => {
            let uri = Uri::parse(&s(0))?;
            match name {
                "URL_EXTRACT_PROTOCOL" => string(uri.scheme),
                "URL_EXTRACT_HOST" => string(uri.host),
                "URL_EXTRACT_PORT" => uri.port.map_or(Value::Null, Value::from),
                "URL_EXTRACT_PATH" => string(uri.path.as_deref().map(decode)),
                "URL_EXTRACT_QUERY" => string(uri.query.as_deref().map(decode)),
                "URL_EXTRACT_FRAGMENT" => string(uri.fragment.as_deref().map(decode)),
                _ => string(parameter(uri.query.as_deref().map(decode), &s(1))),
            }
        }
    })
}

/// The value of the first `name=value` (or bare `name`: empty) in the query.
fn parameter(query: Option<String>, name: &str) -> Option<String> {
    query?.split('&').find_map(|param| match param.split_once('=') {
        Some((k, v)) if k == name => Some(v.to_owned()),
        None if param == name => Some(String::new()),
        _ => None,
    })
}

/// Characters of the URI grammar's sets besides ASCII letters and digits (and `%` escapes and
/// visible non-ASCII characters, which every set here allows, as Java does).
const PATH: &str = "-_.!~*'():@&=+$,;/";
const URIC: &str = "-_.!~*'();/?:@&=+$,[]";
const USERINFO: &str = "-_.!~*'();:&=+$,";
const REG_NAME: &str = "-_.!~*'()$,;:@&=+";
const SERVER: &str = "-_.!~*'();:&=+$,@[]";

/// Whether every character of `s` is in the set (ASCII alphanumerics, `extra`, `%` escapes,
/// visible non-ASCII); a `%` not followed by two hex digits is an error.
fn chars_in(s: &str, extra: &str) -> Result<bool, String> {
    let b = s.as_bytes();
    for (i, c) in s.char_indices() {
        let ok = c.is_ascii_alphanumeric()
            || (c.is_ascii() && extra.contains(c))
            || (u32::from(c) > 128 && !c.is_whitespace() && !c.is_control());
        if c == '%' {
            if !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            {
                return Err(format!("Malformed escape pair at index {i}: {s}"));
            }
        } else if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn check(s: &str, extra: &str, what: &str) -> Result<(), String> {
    if chars_in(s, extra)? { Ok(()) } else { Err(format!("Illegal character in {what}: {s}")) }
}

/// The parts of a URI, as written (not decoded).
#[derive(Debug, Default, PartialEq)]
struct Uri {
    scheme: Option<String>,
    host: Option<String>,
    port: Option<i64>,
    path: Option<String>,
    query: Option<String>,
    fragment: Option<String>,
}

impl Uri {
    /// Reads `s` as `new java.net.URI(s)` does.
    fn parse(s: &str) -> Result<Uri, String> {
        let mut uri = Uri::default();
        let first = s.find([':', '/', '?', '#']).filter(|&i| s.as_bytes()[i] == b':');
        let mut p = match first {
            Some(0) => return Err(format!("Expected scheme name at index 0: {s}")),
            Some(colon) => {
                let scheme = &s[..colon];
                let scheme_char = |c: char| c.is_ascii_alphanumeric() || "+-.".contains(c);
                if !scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                    || !scheme.chars().all(scheme_char)
                {
                    return Err(format!("Illegal character in scheme name: {s}"));
                }
                uri.scheme = Some(scheme.to_owned());
                if s[colon + 1..].starts_with('/') {
                    uri.hierarchical(s, colon + 1)?
                } else {
                    // An opaque URI (`mailto:x`): no host, path or query.
                    let end = s[colon + 1..].find('#').map_or(s.len(), |i| colon + 1 + i);
                    if end == colon + 1 {
                        return Err(format!("Expected scheme-specific part: {s}"));
                    }
                    check(&s[colon + 1..end], URIC, "opaque part")?;
                    end
                }
            }
            None => uri.hierarchical(s, 0)?,
        };
        if let Some(fragment) = s[p..].strip_prefix('#') {
            check(fragment, URIC, "fragment")?;
            uri.fragment = Some(fragment.to_owned());
            p = s.len();
        }
        if p < s.len() {
            return Err(format!("Expected end of URI at index {p}: {s}"));
        }
        Ok(uri)
    }

    /// `[//authority]path[?query]` from `p`; returns where it ends.
    fn hierarchical(&mut self, s: &str, mut p: usize) -> Result<usize, String> {
        let end_of = |from: usize, set: &[char]| s[from..].find(set).map_or(s.len(), |i| from + i);
        if s[p..].starts_with("//") {
            p += 2;
            let q = end_of(p, &['/', '?', '#']);
            if q > p {
                self.authority(&s[p..q])?;
            } else if q == s.len() {
                return Err(format!("Expected authority at index {p}: {s}"));
            }
            p = q;
        }
        let q = end_of(p, &['?', '#']);
        check(&s[p..q], PATH, "path")?;
        self.path = Some(s[p..q].to_owned());
        p = q;
        if s[p..].starts_with('?') {
            let q = end_of(p + 1, &['#']);
            check(&s[p + 1..q], URIC, "query")?;
            self.query = Some(s[p + 1..q].to_owned());
            p = q;
        }
        Ok(p)
    }

    /// A server authority (`[user@]host[:port]`) sets the host and port; anything else
    /// made of registry-name characters is an authority without a host.
    fn authority(&mut self, a: &str) -> Result<(), String> {
        let (server_chars, reg_chars) = (chars_in(a, SERVER)?, chars_in(a, REG_NAME)?);
        if server_chars {
            match server(a) {
                Ok((host, port)) => {
                    (self.host, self.port) = (Some(host), port);
                    return Ok(());
                }
                Err(e) if !reg_chars => return Err(e),
                Err(_) => {}
            }
        }
        if reg_chars { Ok(()) } else { Err(format!("Illegal character in authority: {a}")) }
    }
}

/// `[userinfo@]host[:port]` → (host, port).
fn server(a: &str) -> Result<(String, Option<i64>), String> {
    let mut p = 0;
    if let Some(at) = a.find('@') {
        check(&a[..at], USERINFO, "user info")?;
        p = at + 1;
    }
    let start = p;
    p = if a[p..].starts_with('[') {
        let close = a[p..].find(']').ok_or_else(|| format!("Expected closing bracket: {a}"))?;
        let inside = &a[p + 1..p + close];
        if inside.is_empty() || !inside.chars().all(|c| c.is_ascii_hexdigit() || ".:".contains(c)) {
            return Err(format!("Malformed IPv6 address: {a}"));
        }
        p + close + 1
    } else {
        match ipv4_end(a, p) {
            Some(end) => end,
            None => hostname_end(a, p)?,
        }
    };
    let host = a[start..p].to_owned();
    let mut port = None;
    if let Some(rest) = a[p..].strip_prefix(':') {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 {
            let n: i32 =
                rest[..digits].parse().map_err(|_| format!("Malformed port number: {a}"))?;
            port = Some(i64::from(n));
        }
        p += 1 + digits;
    }
    if p < a.len() {
        return Err(format!("Expected port number at index {p}: {a}"));
    }
    Ok((host, port))
}

/// The end of a dotted IPv4 address at `start` (four numbers up to 255, then the end or `:`).
fn ipv4_end(a: &str, start: usize) -> Option<usize> {
    let b = a.as_bytes();
    let mut p = start;
    for i in 0..4 {
        if i > 0 {
            (b.get(p) == Some(&b'.')).then_some(())?;
            p += 1;
        }
        let n = b[p..].iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 || n > 3 || a[p..p + n].parse::<u16>().ok()? > 255 {
            return None;
        }
        p += n;
    }
    (p == b.len() || b[p] == b':').then_some(p)
}

/// The end of a host name at `start`: labels of letters, digits and inner dashes, separated
/// by dots, the last one (when there are several) starting with a letter.
fn hostname_end(a: &str, start: usize) -> Result<usize, String> {
    let b = a.as_bytes();
    let illegal = |at: usize| format!("Illegal character in hostname at index {at}: {a}");
    let run = |from: usize, dash: bool| {
        from + b[from..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || (dash && **c == b'-'))
            .count()
    };
    let (mut p, mut last_label) = (start, None);
    while p < b.len() {
        let q = run(p, false);
        if q == p {
            break;
        }
        last_label = Some(p);
        p = run(q, true);
        if b[p - 1] == b'-' {
            return Err(illegal(p - 1));
        }
        if b.get(p) != Some(&b'.') {
            break;
        }
        p += 1;
    }
    if p < b.len() && b[p] != b':' {
        return Err(illegal(p));
    }
    match last_label {
        None => Err(format!("Expected hostname at index {start}: {a}")),
        Some(l) if l > start && !b[l].is_ascii_alphabetic() => Err(illegal(l)),
        Some(_) => Ok(p),
    }
}

/// `%XX` escapes decoded as UTF-8 (invalid bytes become U+FFFD); `+` stays `+`.
fn decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_owned();
    }
    let (b, mut out, mut i) = (s.as_bytes(), Vec::with_capacity(s.len()), 0);
    while i < b.len() {
        let hex = b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()).filter(|_| b[i] == b'%') {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An HTML form parameter: letters, digits and `-_.*` as they are, a space as `+`, every other
/// character as its UTF-8 bytes `%XX` (upper-case hex).
fn encode_param(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || "-_.*".contains(c) {
            out.push(c);
        } else if c == ' ' {
            out.push('+');
        } else {
            let mut buf = [0u8; 4];
            for byte in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{byte:02X}"));
            }
        }
    }
    out
}

/// Java's `URLDecoder.decode(s, UTF-8)`: `+` is a space, runs of `%XX` are UTF-8 bytes; a bad
/// or incomplete escape is an error.
fn decode_param(s: &str) -> Result<String, String> {
    let cs: Vec<char> = s.chars().collect();
    let (mut out, mut i) = (String::with_capacity(s.len()), 0);
    while i < cs.len() {
        match cs[i] {
            '+' => {
                out.push(' ');
                i += 1;
            }
            '%' => {
                let mut bytes = Vec::new();
                while i + 2 < cs.len() && cs[i] == '%' {
                    let hex: String = cs[i + 1..i + 3].iter().collect();
                    let v = i32::from_str_radix(&hex, 16)
                        .ok()
                        .and_then(|v| u8::try_from(v).ok())
                        .ok_or("URLDecoder: Illegal hex characters in escape (%) pattern")?;
                    bytes.push(v);
                    i += 3;
                }
                if cs.get(i) == Some(&'%') {
                    return Err("URLDecoder: Incomplete trailing escape (%) pattern".into());
                }
                out.push_str(&String::from_utf8_lossy(&bytes));
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    // The shared dispatch: what a query's call reaches.
    use crate::functions::evaluate as call;
    use serde_json::json;

    use super::*;

    fn f(name: &str, url: &str) -> Result<Value, String> {
        call(name, &[json!(url)]).expect("known")
    }

    #[test]
    fn extracts_the_parts_of_a_url() {
        let url = "https://user@confluent.io:8080/nested/pa%20th?q=%262&jobs#frag%21";
        assert_eq!(f("URL_EXTRACT_PROTOCOL", url), Ok(json!("https")));
        assert_eq!(f("URL_EXTRACT_HOST", url), Ok(json!("confluent.io")));
        assert_eq!(f("URL_EXTRACT_PORT", url), Ok(json!(8080)));
        assert_eq!(f("URL_EXTRACT_PATH", url), Ok(json!("/nested/pa th")));
        assert_eq!(f("URL_EXTRACT_QUERY", url), Ok(json!("q=&2&jobs")));
        assert_eq!(f("URL_EXTRACT_FRAGMENT", url), Ok(json!("frag!")));
    }

    #[test]
    fn missing_parts_are_null_and_an_absent_path_is_empty() {
        let url = "http://www.test.com";
        assert_eq!(f("URL_EXTRACT_PATH", url), Ok(json!("")));
        assert_eq!(f("URL_EXTRACT_PORT", url), Ok(Value::Null));
        assert_eq!(f("URL_EXTRACT_QUERY", url), Ok(Value::Null));
        assert_eq!(f("URL_EXTRACT_FRAGMENT", url), Ok(Value::Null));
        assert_eq!(f("URL_EXTRACT_PATH", "http://www.test.com?query#fragment"), Ok(json!("")));
        assert_eq!(
            f("URL_EXTRACT_QUERY", "http://www.test.com?query#fragment"),
            Ok(json!("query"))
        );
        assert_eq!(f("URL_EXTRACT_PROTOCOL", "www.confluent.io"), Ok(Value::Null));
        assert_eq!(f("URL_EXTRACT_PATH", "www.confluent.io"), Ok(json!("www.confluent.io")));
        assert_eq!(f("URL_EXTRACT_HOST", "mailto:a@b.c"), Ok(Value::Null));
        assert_eq!(f("URL_EXTRACT_PATH", "mailto:a@b.c"), Ok(Value::Null));
    }

    #[test]
    fn a_host_must_be_a_proper_name_or_address() {
        assert_eq!(f("URL_EXTRACT_HOST", "http://127.0.0.1:80/"), Ok(json!("127.0.0.1")));
        assert_eq!(f("URL_EXTRACT_HOST", "http://[::1]:80/"), Ok(json!("[::1]")));
        assert_eq!(f("URL_EXTRACT_HOST", "http://a-b.c./"), Ok(json!("a-b.c.")));
        assert_eq!(f("URL_EXTRACT_HOST", "http://my_host.com/"), Ok(Value::Null));
        assert_eq!(f("URL_EXTRACT_HOST", "http://www.123/"), Ok(Value::Null));
        assert_eq!(f("URL_EXTRACT_HOST", "http://host:port/"), Ok(Value::Null));
        assert_eq!(f("URL_EXTRACT_PORT", "http://host:/"), Ok(Value::Null));
    }

    #[test]
    fn urls_java_refuses_fail() {
        for bad in [
            "http://a.com/a b",
            "test@confluent.io:8080",
            "http://a.com/%zz",
            ":x",
            "http:",
            "http://",
            "a#b#c",
        ] {
            assert!(Uri::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parameters_are_found_by_name() {
        let url = json!("http://www.test.com/?one=a&two=url%20encoded&three");
        let param =
            |name: &str| call("URL_EXTRACT_PARAMETER", &[url.clone(), json!(name)]).expect("known");
        assert_eq!(param("one"), Ok(json!("a")));
        assert_eq!(param("two"), Ok(json!("url encoded")));
        assert_eq!(param("three"), Ok(json!("")));
        assert_eq!(param("four"), Ok(Value::Null));
    }

    #[test]
    fn params_encode_and_decode_as_forms() {
        assert_eq!(encode_param("?foo $bar"), "%3Ffoo+%24bar");
        assert_eq!(encode_param("a-_.*é"), "a-_.*%C3%A9");
        assert_eq!(decode_param("%3Ffoo+%24bar"), Ok("?foo $bar".into()));
        assert!(decode_param("%C3%A9%zz").is_err());
        assert_eq!(decode_param("%C3%A9"), Ok("é".into()));
        assert!(decode_param("a%4").is_err());
        assert!(decode_param("%-1").is_err());
        assert_eq!(decode_param("-_.!~*'()"), Ok("-_.!~*'()".into()));
    }
}
