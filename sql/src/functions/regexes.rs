//! The regular-expression built-ins: `REGEXP_EXTRACT(pattern, s [, group])`,
//! `REGEXP_EXTRACT_ALL(pattern, s [, group])`, `REGEXP_REPLACE(s, pattern, replacement)` and
//! `REGEXP_SPLIT_TO_ARRAY(s, pattern)`.
//!
//! Invariants: patterns are the `regex` crate's (Java's syntax minus backreferences and
//! look-around: such a pattern fails the call, NULL); a replacement is read as Java's
//! `replaceAll` reads it (`$1`, `${name}`, `\$`); compiled patterns are cached per thread,
//! at most [`CACHED`] of them.

use std::cell::RefCell;
use std::collections::HashMap;

use regex::{Captures, Regex};
use serde_json::Value;

use super::P::{Int, Str};
use super::values::int;
use super::{Signature, ret, text};

/// How many compiled patterns a thread keeps (a query uses few; the cache is cleared when full).
const CACHED: usize = 64;

pub(super) fn signature(name: &str) -> Option<Signature> {
    Some(match name {
        "REGEXP_EXTRACT" => Signature::new(2, 3, &[Str, Str, Int], ret::string),
        "REGEXP_EXTRACT_ALL" => Signature::new(2, 3, &[Str, Str, Int], ret::strings),
        "REGEXP_REPLACE" => Signature::new(3, 3, &[Str, Str, Str], ret::string),
        "REGEXP_SPLIT_TO_ARRAY" => Signature::new(2, 2, &[Str, Str], ret::strings),
        _ => return None,
    })
}

pub(super) fn eval(name: &str, args: &[Value]) -> Result<Value, String> {
    let s = |i: usize| args.get(i).map(text).unwrap_or_default();
    // The group of the two EXTRACT functions (REGEXP_REPLACE's third argument is text).
    let group = || args.get(2).map_or(Some(0), int).ok_or("the group is not an integer");
    match name {
        "REGEXP_EXTRACT" => with_regex(&s(0), |re| Ok(extract(re, &s(1), group()?))),
        "REGEXP_EXTRACT_ALL" => with_regex(&s(0), |re| Ok(extract_all(re, &s(1), group()?))),
        "REGEXP_REPLACE" => with_regex(&s(1), |re| replace(re, &s(0), &s(2)).map(Value::String)),
        "REGEXP_SPLIT_TO_ARRAY" => with_regex(&s(1), |re| Ok(split(re, &s(0)))),
        _ => Err("not a regular-expression function".into()),
    }
}

thread_local! {
    /// Compiled patterns, by pattern text.
    static REGEXES: RefCell<HashMap<String, Regex>> = RefCell::new(HashMap::new());
}

/// Runs `f` on `pattern` compiled (from the cache when it was compiled before).
fn with_regex(
    pattern: &str,
    f: impl FnOnce(&Regex) -> Result<Value, String>,
) -> Result<Value, String> {
    REGEXES.with(|cache| {
        let mut cache = cache.borrow_mut();
        if !cache.contains_key(pattern) {
            let re = Regex::new(pattern)
                .map_err(|e| format!("Invalid regular expression pattern: {pattern}: {e}"))?;
            if cache.len() >= CACHED {
                cache.clear();
            }
            cache.insert(pattern.to_owned(), re);
        }
        match cache.get(pattern) {
            Some(re) => f(re),
            None => Ok(Value::Null),
        }
    })
}

/// Java's `groupCount()`: the capturing groups, not counting the whole match.
fn group_count(re: &Regex) -> usize {
    re.captures_len() - 1
}

/// The first match's `group` (0: the whole match); NULL when there is no match, no such
/// group, or the group took no part in the match.
fn extract(re: &Regex, s: &str, group: i64) -> Value {
    let Some(group) = usize::try_from(group).ok().filter(|g| *g <= group_count(re)) else {
        return Value::Null;
    };
    let found = re.captures(s).and_then(|c| c.get(group));
    found.map_or(Value::Null, |m| Value::String(m.as_str().to_owned()))
}

/// Every match's `group` (NULL for a group that took no part); NULL for no such group.
fn extract_all(re: &Regex, s: &str, group: i64) -> Value {
    let Some(group) = usize::try_from(group).ok().filter(|g| *g <= group_count(re)) else {
        return Value::Null;
    };
    let part = |c: &Captures<'_>| c.get(group).map_or(Value::Null, |m| m.as_str().into());
    Value::Array(java_finds(re, s).iter().map(part).collect())
}

/// Java's `Matcher.find` loop: each search starts where the previous match ended, one
/// character further after an empty match, so an empty match right after a non-empty one is
/// found (Rust's own iterators skip it).
fn java_finds<'h>(re: &Regex, s: &'h str) -> Vec<Captures<'h>> {
    let mut found = Vec::new();
    let mut at = 0;
    while at <= s.len() {
        let Some(c) = re.captures_at(s, at) else { break };
        let (start, end) = c.get(0).map_or((at, at), |m| (m.start(), m.end()));
        at = if start == end {
            end + s[end..].chars().next().map_or(1, char::len_utf8)
        } else {
            end
        };
        found.push(c);
    }
    found
}

/// One piece of a parsed replacement.
enum Piece {
    Text(String),
    Group(usize),
    Named(String),
}

/// Reads a replacement as Java's `Matcher.appendReplacement` does: `\x` is `x`, `$n` the
/// group n (taking as many digits as still name a group), `${name}` a named group.
fn parse_replacement(re: &Regex, replacement: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut cs = replacement.chars().peekable();
    while let Some(c) = cs.next() {
        match c {
            '\\' => literal.push(cs.next().ok_or("character to be escaped is missing")?),
            '$' => {
                if !literal.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut literal)));
                }
                pieces.push(group_reference(re, &mut cs)?);
            }
            c => literal.push(c),
        }
    }
    if !literal.is_empty() {
        pieces.push(Piece::Text(literal));
    }
    Ok(pieces)
}

/// The group named after a `$`.
fn group_reference(
    re: &Regex,
    cs: &mut std::iter::Peekable<std::str::Chars<'_>>,
) -> Result<Piece, String> {
    if cs.next_if_eq(&'{').is_some() {
        let name: String = cs.by_ref().take_while(|c| *c != '}').collect();
        if !re.capture_names().flatten().any(|n| n == name) {
            return Err(format!("No group with name {{{name}}}"));
        }
        return Ok(Piece::Named(name));
    }
    let first = cs.next().and_then(|c| c.to_digit(10)).ok_or("Illegal group reference")?;
    let mut number = first as usize;
    if number > group_count(re) {
        return Err(format!("No group {number}"));
    }
    while let Some(d) = cs.peek().and_then(|c| c.to_digit(10)) {
        let longer = number * 10 + d as usize;
        if longer > group_count(re) {
            break;
        }
        number = longer;
        cs.next();
    }
    Ok(Piece::Group(number))
}

/// Java's `String.replaceAll`: a bad replacement fails only when something matches.
fn replace(re: &Regex, s: &str, replacement: &str) -> Result<String, String> {
    let finds = java_finds(re, s);
    if finds.is_empty() {
        return Ok(s.to_owned());
    }
    let pieces = parse_replacement(re, replacement)?;
    let (mut out, mut at) = (String::with_capacity(s.len()), 0);
    for c in &finds {
        let Some(m) = c.get(0) else { continue };
        out.push_str(&s[at..m.start()]);
        for piece in &pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Group(g) => out.push_str(c.get(*g).map_or("", |m| m.as_str())),
                Piece::Named(n) => out.push_str(c.name(n).map_or("", |m| m.as_str())),
            }
        }
        at = m.end();
    }
    out.push_str(&s[at..]);
    Ok(out)
}

/// Splits `s` around the matches, keeping empty parts, except for a pattern that matches the
/// empty string: then as Java's `Pattern.split` (no leading empty part from a zero-width
/// match at the start, trailing empty parts dropped; the empty pattern splits characters).
fn split(re: &Regex, s: &str) -> Value {
    let part = |p: &str| Value::String(p.to_owned());
    if !re.is_match("") {
        return Value::Array(re.split(s).map(part).collect());
    }
    if s.is_empty() {
        return Value::Array(vec![part("")]);
    }
    let (mut parts, mut at) = (Vec::new(), 0);
    for c in java_finds(re, s) {
        let Some(m) = c.get(0) else { continue };
        if at == 0 && m.start() == 0 && m.end() == 0 {
            continue;
        }
        parts.push(&s[at..m.start()]);
        at = m.end();
    }
    if at == 0 {
        return Value::Array(vec![part(s)]);
    }
    parts.push(&s[at..]);
    while parts.last().is_some_and(|p| p.is_empty()) {
        parts.pop();
    }
    Value::Array(parts.into_iter().map(part).collect())
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

    fn re(p: &str) -> Regex {
        Regex::new(p).expect("valid")
    }

    #[test]
    fn extract_gives_the_first_match_or_null() {
        assert_eq!(
            f("REGEXP_EXTRACT", &[json!("test."), json!("some_test_string")]),
            Ok(json!("test_"))
        );
        assert_eq!(f("REGEXP_EXTRACT", &[json!("test."), json!("anothertest")]), Ok(Value::Null));
        let names = [json!("(.*) (.*)"), json!("steven zhang"), json!(2)];
        assert_eq!(f("REGEXP_EXTRACT", &names), Ok(json!("zhang")));
        assert_eq!(extract(&re("(a)|(b)"), "b", 1), Value::Null);
        assert_eq!(extract(&re("(a)"), "a", 2), Value::Null);
        assert_eq!(extract(&re("(a)"), "a", -1), Value::Null);
        assert!(f("REGEXP_EXTRACT", &[json!("("), json!("a")]).is_err());
    }

    #[test]
    fn extract_all_gives_every_match() {
        let all = |p: &str, s: &str, g: i64| extract_all(&re(p), s, g);
        assert_eq!(all("test.", "some_test_string_testabab", 0), json!(["test_", "testa"]));
        assert_eq!(all("test.", "nothing", 0), json!([]));
        assert_eq!(all(r"(\w+) (\w*)", "apurva mehta agavra ", 2), json!(["mehta", ""]));
        assert_eq!(all("(a)|(b)", "ab", 2), json!([null, "b"]));
        assert_eq!(all("(a)", "a", 2), Value::Null);
    }

    #[test]
    fn replace_reads_java_replacements() {
        let r = |s: &str, p: &str, with: &str| replace(&re(p), s, with);
        assert_eq!(r("baababaa", "(ab)+", "cat"), Ok("bacataa".into()));
        assert_eq!(r("baabbabaa", "(ab)+", "cat"), Ok("bacatbcataa".into()));
        assert_eq!(r("john smith", r"(\w+) (\w+)", "$2, $1"), Ok("smith, john".into()));
        assert_eq!(r("ab", "(?P<x>a)", "${x}${x}"), Ok("aab".into()));
        assert_eq!(r("a", "(a)", "$12"), Ok("a2".into()));
        assert_eq!(r("a", "a", r"\$1"), Ok("$1".into()));
        assert!(r("a", "a", "$1").is_err());
        assert_eq!(r("abc", "x*", "-"), Ok("-a-b-c-".into()));
        assert_eq!(r("baaa", "a*", "-"), Ok("-b--".into()));
        assert!(r("a", "a", "x\\").is_err());
        // A bad replacement is only noticed when something matches, as in Java.
        assert_eq!(r("b", "a", "$9"), Ok("b".into()));
    }

    #[test]
    fn the_functions_take_their_arguments_in_ksqldb_order() {
        let replaced = f("REGEXP_REPLACE", &[json!("baababaa"), json!("(ab)+"), json!("cat")]);
        assert_eq!(replaced, Ok(json!("bacataa")));
        let split = f("REGEXP_SPLIT_TO_ARRAY", &[json!("aabcda"), json!("(ab|cd)")]);
        assert_eq!(split, Ok(json!(["a", "", "a"])));
        let all = f("REGEXP_EXTRACT_ALL", &[json!("(a)(b)?"), json!("aab"), json!(2)]);
        assert_eq!(all, Ok(json!([null, "b"])));
    }

    #[test]
    fn split_keeps_empty_parts_unless_the_pattern_matches_empty() {
        let sp = |s: &str, p: &str| split(&re(p), s);
        assert_eq!(sp("aabcda", "(ab|cd)"), json!(["a", "", "a"]));
        assert_eq!(sp("zxy", "(ab|cd)"), json!(["zxy"]));
        assert_eq!(sp("", "(ab|cd)"), json!([""]));
        assert_eq!(sp(",a,", ","), json!(["", "a", ""]));
        assert_eq!(sp("abc", ""), json!(["a", "b", "c"]));
        // Java finds the empty match right after "1": its split has an empty part there.
        assert_eq!(sp("a1b22", "[0-9]*"), json!(["a", "", "b"]));
        assert_eq!(sp("", "x*"), json!([""]));
    }
}
