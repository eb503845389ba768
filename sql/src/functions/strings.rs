//! The string built-ins: `CONCAT`, `CONCAT_WS`, `SUBSTRING`, `SPLIT`, `SPLIT_TO_MAP`, `TRIM`,
//! `UCASE`, `LCASE`, `INITCAP`, `LEN`, `INSTR`, `REPLACE`, `LPAD`, `RPAD`, `ELT` and `FIELD`.
//!
//! Invariants: positions are 1-based and count characters (Unicode scalar values); the
//! functions that are not strict (`CONCAT`, `CONCAT_WS`, `INSTR`, `ELT`, `FIELD`) give NULL
//! arguments ksqlDB's meaning; padding refuses to build a string longer than [`MAX_PAD`]
//! characters rather than exhaust memory.

use serde_json::{Map, Value};

use super::P::{Any, Int, Str};
use super::values::{chars, int, java_trim};
use super::{Signature, ret, text};

/// The longest string `LPAD` / `RPAD` build (ksqlDB would try up to 2^31 characters).
const MAX_PAD: i64 = 1 << 24;

pub(super) fn signature(name: &str) -> Option<Signature> {
    Some(match name {
        "CONCAT" => Signature::new(1, usize::MAX, &[Any], ret::string).lenient(),
        "CONCAT_WS" => Signature::new(2, usize::MAX, &[Str], ret::string).lenient(),
        "SUBSTRING" => Signature::new(2, 3, &[Str, Int, Int], ret::string),
        "SPLIT" => Signature::new(2, 2, &[Str, Str], ret::strings),
        "SPLIT_TO_MAP" => Signature::new(3, 3, &[Str, Str, Str], ret::string_map),
        "TRIM" | "UCASE" | "LCASE" | "INITCAP" => Signature::new(1, 1, &[Str], ret::string),
        "LEN" => Signature::new(1, 1, &[Str], ret::int),
        "INSTR" => Signature::new(2, 4, &[Str, Str, Int, Int], ret::int).lenient(),
        "REPLACE" => Signature::new(3, 3, &[Str, Str, Str], ret::string),
        "LPAD" | "RPAD" => Signature::new(3, 3, &[Str, Int, Str], ret::string),
        "ELT" => Signature::new(1, usize::MAX, &[Int, Str], ret::string).lenient(),
        "FIELD" => Signature::new(1, usize::MAX, &[Str], ret::int).lenient(),
        _ => return None,
    })
}

pub(super) fn eval(name: &str, args: &[Value]) -> Result<Value, String> {
    let s = |i: usize| args.get(i).map(text).unwrap_or_default();
    let string = |x: String| Ok(Value::String(x));
    match name {
        "CONCAT" => string(args.iter().filter(|a| !a.is_null()).map(text).collect()),
        "CONCAT_WS" => Ok(concat_ws(args)),
        "SUBSTRING" => {
            string(substring(&s(0), args.get(1).and_then(int), args.get(2).and_then(int)))
        }
        "SPLIT" => Ok(split(&s(0), &s(1))),
        "SPLIT_TO_MAP" => Ok(split_to_map(&s(0), &s(1), &s(2))),
        "TRIM" => string(java_trim(&s(0)).to_owned()),
        "UCASE" => string(s(0).to_uppercase()),
        "LCASE" => string(s(0).to_lowercase()),
        "INITCAP" => string(initcap(&s(0))),
        "LEN" => Ok(Value::from(s(0).chars().count())),
        "INSTR" => instr(args),
        "REPLACE" => string(s(0).replace(&s(1), &s(2))),
        "LPAD" | "RPAD" => pad(name == "LPAD", &s(0), args.get(1).and_then(int), &s(2)),
        "ELT" => elt(args),
        "FIELD" => Ok(field(args)),
        _ => Err("not a string function".into()),
    }
}

/// ksqlDB's rule: a negative position counts from the end, 0 and 1 both mean the first
/// character, and the length is clamped to what is left.
fn substring(s: &str, pos: Option<i64>, len: Option<i64>) -> String {
    let chars = chars(s);
    let n = chars.len() as i64;
    let start = pos.unwrap_or(1);
    let from = if start < 0 { (n + start).max(0) } else { (start - 1).clamp(0, n) };
    let to = len.map_or(n, |l| from.saturating_add(l).clamp(from, n));
    chars[from as usize..to as usize].iter().collect()
}

/// Splits on every occurrence of `delim`, keeping empty parts; an empty delimiter splits
/// between characters (and the empty string into one empty part, as Java's `split` does).
fn split(s: &str, delim: &str) -> Value {
    let part = |p: &str| Value::String(p.to_owned());
    Value::Array(if delim.is_empty() {
        if s.is_empty() {
            vec![part("")]
        } else {
            s.chars().map(|c| Value::String(c.to_string())).collect()
        }
    } else {
        s.split(delim).map(part).collect()
    })
}

/// `a=1;b=2` → `{a: "1", b: "2"}`: empty entries and entries without `kv` are skipped, a
/// value ends at the next `kv`, a repeated key keeps its last value. NULL when a delimiter is
/// empty or both are the same.
fn split_to_map(s: &str, entry: &str, kv: &str) -> Value {
    if entry.is_empty() || kv.is_empty() || entry == kv {
        return Value::Null;
    }
    let mut map = Map::new();
    for pair in s.split(entry).filter(|p| p.contains(kv)) {
        let mut parts = pair.split(kv);
        let (key, value) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
        map.insert(key.to_owned(), Value::String(value.to_owned()));
    }
    Value::Object(map)
}

/// The separator (NULL gives NULL) between the non-NULL arguments.
fn concat_ws(args: &[Value]) -> Value {
    let Some((sep, rest)) = args.split_first().filter(|(sep, _)| !sep.is_null()) else {
        return Value::Null;
    };
    let parts: Vec<String> = rest.iter().filter(|a| !a.is_null()).map(text).collect();
    Value::String(parts.join(&text(sep)))
}

/// Lower case, then an upper-case first letter for each word. A word is what Java's
/// `[^\s]+\s*` matches, so whitespace before the first word is dropped, as ksqlDB drops it.
fn initcap(s: &str) -> String {
    let space = |c: char| matches!(c, ' ' | '\t' | '\n' | '\u{b}' | '\u{c}' | '\r');
    let mut out = String::with_capacity(s.len());
    let mut word_start = true;
    for c in s.to_lowercase().chars() {
        if space(c) {
            if !out.is_empty() {
                out.push(c);
            }
            word_start = true;
        } else if word_start {
            out.extend(c.to_uppercase());
            word_start = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// `INSTR(s, sub [, position [, occurrence]])`: the 1-based position of the occurrence-th
/// `sub` searching from `position` (negative: backwards from that far from the end), 0 when
/// there is none or `s` or `sub` is NULL.
fn instr(args: &[Value]) -> Result<Value, String> {
    let (Some(Value::String(s)), Some(Value::String(sub))) = (args.first(), args.get(1)) else {
        return Ok(Value::from(0));
    };
    let number = |i: usize, what: &str| match args.get(i) {
        None => Ok(1),
        Some(v) => int(v).ok_or_else(|| format!("the {what} is NULL")),
    };
    let (position, occurrence) = (number(2, "position")?, number(3, "occurrence")?);
    let (mut hay, mut needle) = (chars(s), chars(sub));
    let n = hay.len() as i64;
    if position.unsigned_abs() > n.unsigned_abs() {
        return Ok(Value::from(0));
    }
    let backwards = position < 0;
    if backwards {
        hay.reverse();
        needle.reverse();
    }
    let position = position.abs();
    // StringUtils.substring(s, position - 1): a start of -1 (position 0) is the last character.
    let start = if position == 0 { n - 1 } else { position - 1 }.max(0) as usize;
    let Some(i) = nth_index_of(&hay[start.min(hay.len())..], &needle, occurrence) else {
        return Ok(Value::from(0));
    };
    let i = i as i64;
    let m = needle.len() as i64;
    Ok(Value::from(if backwards { n - position - i - m + 2 } else { i + position }))
}

/// Where the n-th (1-based) occurrence of `needle` starts, occurrences overlapping (each
/// search starts one past the previous match, as `StringUtils.ordinalIndexOf` does).
fn nth_index_of(hay: &[char], needle: &[char], n: i64) -> Option<usize> {
    if n <= 0 {
        return None;
    }
    if needle.is_empty() {
        return Some(0);
    }
    let mut from = 0;
    let mut found = None;
    for _ in 0..n {
        let at = hay.get(from..)?.windows(needle.len()).position(|w| w == needle)? + from;
        found = Some(at);
        from = at + 1;
    }
    found
}

/// `LPAD` / `RPAD`: pads with `padding` repeated (or truncates) to `len` characters; NULL
/// for an empty padding or a negative length.
fn pad(left: bool, s: &str, len: Option<i64>, padding: &str) -> Result<Value, String> {
    let Some(len) = len.filter(|l| *l >= 0 && !padding.is_empty()) else {
        return Ok(Value::Null);
    };
    if len > MAX_PAD {
        return Err(format!("a target length of {len} is over eddy's limit of {MAX_PAD}"));
    }
    let len = len as usize;
    let input = chars(s);
    let fill = padding.chars().cycle().take(len.saturating_sub(input.len()));
    let out: String = if left {
        fill.chain(input.iter().copied()).take(len).collect()
    } else {
        input.iter().copied().chain(fill).take(len).collect()
    };
    Ok(Value::String(out))
}

/// `ELT(n, a, b, ...)`: the n-th (1-based) string, NULL out of range.
fn elt(args: &[Value]) -> Result<Value, String> {
    let n = args.first().and_then(int).ok_or("the index is NULL")?;
    let picked = usize::try_from(n).ok().filter(|n| *n >= 1).and_then(|n| args.get(n));
    Ok(picked.cloned().unwrap_or(Value::Null))
}

/// `FIELD(s, a, b, ...)`: the 1-based position of the first argument equal to `s`, 0 when
/// none is (or `s` is NULL: NULL equals nothing).
fn field(args: &[Value]) -> Value {
    let Some((s, rest)) = args.split_first().filter(|(s, _)| !s.is_null()) else {
        return Value::from(0);
    };
    Value::from(rest.iter().position(|a| a == s).map_or(0, |i| i + 1))
}

#[cfg(test)]
mod tests {
    // The shared dispatch: what a query's call reaches.
    use crate::functions::evaluate as call;
    use serde_json::json;

    use super::*;

    fn f(name: &str, args: &[Value]) -> Value {
        call(name, args).expect("known").expect("no error")
    }

    #[test]
    fn concat_skips_nulls_and_concat_ws_needs_a_separator() {
        assert_eq!(f("CONCAT", &[json!("a"), Value::Null, json!(1)]), "a1");
        assert_eq!(f("CONCAT", &[Value::Null]), "");
        let ws = |sep: Value| f("CONCAT_WS", &[sep, json!("a"), Value::Null, json!("b")]);
        assert_eq!(ws(json!("-")), "a-b");
        assert_eq!(ws(Value::Null), Value::Null);
        assert_eq!(f("CONCAT_WS", &[json!("-"), Value::Null]), "");
    }

    #[test]
    fn substring_counts_from_one_and_from_the_end() {
        assert_eq!(substring("hello", Some(2), Some(3)), "ell");
        assert_eq!(substring("hello", Some(-3), None), "llo");
        assert_eq!(substring("hello", Some(0), Some(2)), "he");
        assert_eq!(substring("hello", Some(9), None), "");
        assert_eq!(substring("hello", Some(2), Some(-1)), "");
        assert_eq!(substring("héllo", Some(2), Some(1)), "é");
    }

    #[test]
    fn split_keeps_empty_parts() {
        assert_eq!(split("a,b", ","), json!(["a", "b"]));
        assert_eq!(split("..a..", "."), json!(["", "", "a", "", ""]));
        assert_eq!(split("", "."), json!([""]));
        assert_eq!(split("abc", ""), json!(["a", "b", "c"]));
        assert_eq!(split("", ""), json!([""]));
    }

    #[test]
    fn split_to_map_skips_empty_and_keyless_entries() {
        let m = split_to_map("apple:green//banana:yellow/x/", "/", ":");
        assert_eq!(m, json!({"apple": "green", "banana": "yellow"}));
        assert_eq!(split_to_map("a:1/b", "&&", ":"), json!({"a": "1/b"}));
        assert_eq!(split_to_map("a:1:2/a:3", "/", ":"), json!({"a": "3"}));
        assert_eq!(split_to_map("", "/", ":"), json!({}));
        assert_eq!(split_to_map("a:1", "", ":"), Value::Null);
        assert_eq!(split_to_map("a:1", ":", ":"), Value::Null);
    }

    #[test]
    fn case_trim_and_length() {
        assert_eq!(f("UCASE", &[json!("ab")]), "AB");
        assert_eq!(f("LCASE", &[json!("AB")]), "ab");
        assert_eq!(f("TRIM", &[json!(" \t a b \n")]), "a b");
        assert_eq!(f("LEN", &[json!("héllo")]), 5);
        assert_eq!(f("LEN", &[json!("")]), 0);
    }

    #[test]
    fn initcap_capitalises_words_and_drops_leading_space() {
        assert_eq!(initcap("the   Quick br0wn fOx"), "The   Quick Br0wn Fox");
        assert_eq!(initcap("some_string"), "Some_string");
        assert_eq!(initcap("  two words "), "Two Words ");
        assert_eq!(initcap(""), "");
    }

    #[test]
    fn instr_searches_from_a_position_for_an_occurrence() {
        let instr = |args: &[Value]| f("INSTR", args);
        let s = json!("corporate floor");
        assert_eq!(instr(&[s.clone(), json!("or")]), 2);
        assert_eq!(instr(&[s.clone(), json!("or"), json!(4)]), 5);
        assert_eq!(instr(&[s.clone(), json!("or"), json!(4), json!(2)]), 14);
        assert_eq!(instr(&[s.clone(), json!("or"), json!(-4)]), 5);
        assert_eq!(instr(&[s.clone(), json!("or"), json!(-4), json!(2)]), 2);
        assert_eq!(instr(&[s.clone(), json!("or"), json!(99)]), 0);
        assert_eq!(instr(&[s.clone(), json!("or"), json!(1), json!(0)]), 0);
        assert_eq!(instr(&[json!("short"), json!("or"), json!(4)]), 0);
        assert_eq!(instr(&[json!("aaa"), json!("aa"), json!(1), json!(2)]), 2);
        assert_eq!(instr(&[json!("abc"), json!("")]), 1);
        assert_eq!(instr(&[Value::Null, json!("a")]), 0);
        assert_eq!(instr(&[s.clone(), Value::Null]), 0);
        assert!(call("INSTR", &[s, json!("or"), Value::Null]).expect("known").is_err());
    }

    #[test]
    fn replace_replaces_every_occurrence() {
        assert_eq!(f("REPLACE", &[json!("anaconda"), json!("a"), json!("o")]), "onocondo");
        assert_eq!(f("REPLACE", &[json!("ab"), json!(""), json!("-")]), "-a-b-");
    }

    #[test]
    fn pads_repeat_the_padding_and_truncate() {
        let p = |left, s, len, padding| pad(left, s, Some(len), padding).expect("fits");
        assert_eq!(p(true, "foo", 7, "Bar"), "BarBfoo");
        assert_eq!(p(true, "foo", 2, "Bar"), "fo");
        assert_eq!(p(false, "foo", 7, "Bar"), "fooBarB");
        assert_eq!(p(false, "foo", 5, "Bar"), "fooBa");
        assert_eq!(p(false, "", 7, "Bar"), "BarBarB");
        assert_eq!(p(true, "foo", -1, "Bar"), Value::Null);
        assert_eq!(p(true, "foo", 5, ""), Value::Null);
        assert!(pad(true, "foo", Some(MAX_PAD + 1), "x").is_err());
    }

    #[test]
    fn elt_and_field_are_inverse() {
        let elt = |n: Value| f("ELT", &[n, json!("a"), Value::Null, json!("c")]);
        assert_eq!(elt(json!(1)), "a");
        assert_eq!(elt(json!(2)), Value::Null);
        assert_eq!(elt(json!(3)), "c");
        assert_eq!(elt(json!(0)), Value::Null);
        assert_eq!(elt(json!(4)), Value::Null);
        assert!(call("ELT", &[Value::Null, json!("a")]).expect("known").is_err());
        let field = |s: Value| f("FIELD", &[s, json!("a"), Value::Null, json!("c")]);
        assert_eq!(field(json!("c")), 3);
        assert_eq!(field(json!("z")), 0);
        assert_eq!(field(Value::Null), 0);
    }
}
