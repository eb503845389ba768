//! The built-ins that turn text into other text by a code: `ENCODE(s, from, to)` between the
//! encodings hex, utf8, ascii and base64, `MD5(s)` (hex digest of the UTF-8 bytes) and
//! `CHR(code point | '\uXXXX')`.
//!
//! Invariants: decoding is as lenient as ksqlDB's (commons-codec): base64 skips characters
//! outside its alphabets and stops at `=`, hex takes `0x…` and `X'…'` forms; bytes that are not
//! valid in the target text encoding become U+FFFD, characters that ASCII cannot hold become
//! `?`. A lone UTF-16 surrogate, which Java strings can hold and Rust's cannot, makes `CHR`
//! NULL.

use serde_json::Value;

use super::P::{Any, Str};
use super::values::int;
use super::{Args, CheckError, Signature, SqlType, ret, text};

pub(super) fn signature(name: &str) -> Option<Signature> {
    Some(match name {
        "ENCODE" => Signature::new(3, 3, &[Str, Str, Str], ret::string),
        "MD5" => Signature::new(1, 1, &[Str], ret::string),
        "CHR" => Signature::new(1, 1, &[Any], chr_type),
        _ => return None,
    })
}

fn chr_type(args: &Args<'_>) -> Result<SqlType, CheckError> {
    match args.ty(0) {
        SqlType::Int | SqlType::Bigint | SqlType::String | SqlType::Any => Ok(SqlType::String),
        _ => Err(CheckError::Arg { index: 0, expected: "an INT or a VARCHAR".into() }),
    }
}

pub(super) fn eval(name: &str, args: &[Value]) -> Result<Value, String> {
    let s = |i: usize| args.get(i).map(text).unwrap_or_default();
    match name {
        "ENCODE" => encode(&s(0), &s(1), &s(2)).map(Value::String),
        "MD5" => Ok(Value::String(format!("{:x}", md5::compute(s(0).as_bytes())))),
        _ => chr(args.first().unwrap_or(&Value::Null)),
    }
}

/// `CHR(75)` and `CHR('\u004b')` are `K`; NULL for an invalid code point, or text that is not
/// a `\u` escape (then read as Java's `StringEscapeUtils.unescapeJava` reads it).
fn chr(arg: &Value) -> Result<Value, String> {
    let out = match arg {
        Value::String(s) if s.chars().count() >= 6 && s.starts_with("\\u") => unescape_java(s)?,
        Value::String(_) => None,
        v => int(v).and_then(|c| u32::try_from(c).ok()).and_then(char::from_u32).map(String::from),
    };
    Ok(out.map_or(Value::Null, Value::String))
}

/// Java's unescaping of `\uXXXX` (any number of `u`s), octal `\0`–`\377`, `\n` `\t` `\b`
/// `\f` `\r` `\\` `\"` `\'`; any other backslash is dropped. `None` when the result holds a
/// lone surrogate.
fn unescape_java(s: &str) -> Result<Option<String>, String> {
    let cs: Vec<char> = s.chars().collect();
    let mut out: Vec<u16> = Vec::with_capacity(cs.len());
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        let next = cs.get(i + 1).copied();
        if c != '\\' {
            let mut buf = [0u16; 2];
            out.extend_from_slice(c.encode_utf16(&mut buf));
            i += 1;
        } else if next.is_some_and(|d| d.is_digit(8)) {
            let mut end = i + 2;
            let max = if next.is_some_and(|d| d <= '3') { i + 4 } else { i + 3 };
            while end < max.min(cs.len()) && cs[end].is_digit(8) {
                end += 1;
            }
            let digits: String = cs[i + 1..end].iter().collect();
            out.push(u16::from_str_radix(&digits, 8).map_err(|e| e.to_string())?);
            i = end;
        } else if next == Some('u') {
            let mut j = i + 2;
            while cs.get(j) == Some(&'u') {
                j += 1;
            }
            if cs.get(j) == Some(&'+') {
                j += 1;
            }
            let hex: String =
                cs.get(j..j + 4).ok_or("Less than 4 hex digits in unicode value")?.iter().collect();
            out.push(
                u16::from_str_radix(&hex, 16)
                    .map_err(|_| format!("Unable to parse unicode value: {hex}"))?,
            );
            i = j + 4;
        } else {
            let escaped = match next {
                Some('b') => Some('\u{8}'),
                Some('n') => Some('\n'),
                Some('t') => Some('\t'),
                Some('f') => Some('\u{c}'),
                Some('r') => Some('\r'),
                Some(c @ ('\\' | '"' | '\'')) => Some(c),
                _ => None,
            };
            if let Some(e) = escaped {
                out.push(e as u16);
                i += 2;
            } else {
                i += 1;
            }
        }
    }
    Ok(String::from_utf16(&out).ok())
}

/// The encodings `ENCODE` knows.
#[derive(Clone, Copy, PartialEq)]
enum Encoding {
    Hex,
    Utf8,
    Ascii,
    Base64,
}

impl Encoding {
    fn named(name: &str) -> Option<Self> {
        Some(match name.to_lowercase().as_str() {
            "hex" => Encoding::Hex,
            "utf8" => Encoding::Utf8,
            "ascii" => Encoding::Ascii,
            "base64" => Encoding::Base64,
            _ => return None,
        })
    }
}

/// `s`, read as `from`, written as `to` (two different encodings).
fn encode(s: &str, from: &str, to: &str) -> Result<String, String> {
    let unsupported = || "Supported input and output encodings are: hex, utf8, ascii and base64";
    let (from, to) = match (Encoding::named(from), Encoding::named(to)) {
        (Some(f), Some(t)) if f != t => (f, t),
        _ => return Err(unsupported().into()),
    };
    let bytes = match from {
        Encoding::Hex => decode_hex(strip_hex(s))?,
        Encoding::Utf8 => s.as_bytes().to_vec(),
        Encoding::Ascii => s.chars().map(|c| if c.is_ascii() { c as u8 } else { b'?' }).collect(),
        Encoding::Base64 => decode_base64(s),
    };
    Ok(match to {
        Encoding::Hex => bytes.iter().map(|b| format!("{b:02x}")).collect(),
        Encoding::Utf8 => String::from_utf8_lossy(&bytes).into_owned(),
        Encoding::Ascii => {
            bytes.iter().map(|&b| if b.is_ascii() { b as char } else { '\u{FFFD}' }).collect()
        }
        Encoding::Base64 => encode_base64(&bytes),
    })
}

/// `0xAB` → `AB` (an odd length gets a leading 0), `X'AB'` → `AB`; other text as it is.
fn strip_hex(s: &str) -> std::borrow::Cow<'_, str> {
    if let Some(rest) = s.strip_prefix("0x") {
        if s.len().is_multiple_of(2) { rest.into() } else { format!("0{rest}").into() }
    } else if s.len() >= 3
        && s.starts_with(['x', 'X'])
        && s[1..].starts_with('\'')
        && s.ends_with('\'')
    {
        s[2..s.len() - 1].to_owned().into()
    } else {
        s.into()
    }
}

fn decode_hex(s: impl AsRef<str>) -> Result<Vec<u8>, String> {
    let s = s.as_ref();
    if s.len() % 2 != 0 {
        return Err("Odd number of characters.".into());
    }
    let digit = |c: u8| {
        (c as char)
            .to_digit(16)
            .ok_or_else(|| format!("Illegal hexadecimal character {}", c as char))
    };
    s.as_bytes().chunks(2).map(|p| Ok((digit(p[0])? << 4 | digit(p[1])?) as u8)).collect()
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with `=` padding.
fn encode_base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(BASE64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// commons-codec's lenient decoding: the standard and URL-safe alphabets, other characters
/// skipped, `=` ends the data, a final incomplete group gives the bytes it holds.
fn decode_base64(s: &str) -> Vec<u8> {
    let (mut out, mut acc, mut n) = (Vec::with_capacity(s.len() / 4 * 3), 0u32, 0);
    for b in s.bytes() {
        let v = match b {
            b'=' => break,
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => continue,
        };
        acc = acc << 6 | u32::from(v);
        n += 1;
        if n == 4 {
            out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
            (acc, n) = (0, 0);
        }
    }
    match n {
        2 => out.push((acc >> 4) as u8),
        3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
        _ => {}
    }
    out
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
    fn encode_converts_between_the_four_encodings() {
        assert_eq!(encode("4578616d706C6521", "hex", "ascii"), Ok("Example!".into()));
        assert_eq!(encode("4578616d706C6521", "HEX", "base64"), Ok("RXhhbXBsZSE=".into()));
        assert_eq!(encode("c39c6265726d656e736368", "hex", "utf8"), Ok("Übermensch".into()));
        assert_eq!(encode("c39c62", "hex", "ascii"), Ok("\u{FFFD}\u{FFFD}b".into()));
        assert_eq!(encode("Example!", "ascii", "hex"), Ok("4578616d706c6521".into()));
        assert_eq!(encode("Ελ", "ascii", "utf8"), Ok("??".into()));
        assert_eq!(encode("zpXOuw==", "base64", "utf8"), Ok("Ελ".into()));
        assert_eq!(encode("Ελ", "utf8", "base64"), Ok("zpXOuw==".into()));
        assert!(encode("x", "base64", "null").is_err());
        assert!(encode("x", "hex", "hex").is_err());
    }

    #[test]
    fn hex_input_takes_prefixes_and_refuses_odd_lengths() {
        let hex = |s: &str| encode(s, "hex", "utf8");
        assert_eq!(hex("0x4578"), Ok("Ex".into()));
        assert_eq!(hex("X'4578'"), Ok("Ex".into()));
        assert_eq!(hex("x''"), Ok("".into()));
        assert_eq!(hex("0x578"), Ok("\u{5}x".into()));
        assert!(hex("578").is_err());
        assert!(hex("X'").is_err());
        assert!(hex("0x0x").is_err());
        assert!(hex("zz").is_err());
    }

    #[test]
    fn base64_round_trips_and_decodes_leniently() {
        for s in ["", "f", "fo", "foo", "foob", "fooba", "foobar"] {
            assert_eq!(decode_base64(&encode_base64(s.as_bytes())), s.as_bytes());
        }
        assert_eq!(encode_base64(b"foob"), "Zm9vYg==");
        assert_eq!(decode_base64("Zm9v\nYg"), b"foob");
        assert_eq!(decode_base64("Zm9v=YmFy"), b"foo");
        assert_eq!(decode_base64("-_-_"), decode_base64("+/+/"));
    }

    #[test]
    fn md5_is_the_hex_digest_of_the_utf8_bytes() {
        assert_eq!(f("MD5", &[json!("")]), Ok(json!("d41d8cd98f00b204e9800998ecf8427e")));
        assert_eq!(f("MD5", &[json!("r1")]), Ok(json!("7c92cf1eee8d99cc85f8355a3d6e4b86")));
        assert_eq!(f("MD5", &[json!(" ")]), Ok(json!("7215ee9c7d9dc229d2921a40e899ec5f")));
    }

    #[test]
    fn chr_reads_code_points_and_escapes() {
        assert_eq!(f("CHR", &[json!(75)]), Ok(json!("K")));
        assert_eq!(f("CHR", &[json!(99_000)]), Ok(json!("\u{182B8}")));
        assert_eq!(f("CHR", &[json!(-1)]), Ok(Value::Null));
        assert_eq!(f("CHR", &[json!(0xD800)]), Ok(Value::Null));
        assert_eq!(f("CHR", &[json!("\\u004b")]), Ok(json!("K")));
        assert_eq!(f("CHR", &[json!("\\ud820\\udeb8")]), Ok(json!("\u{182B8}")));
        assert_eq!(f("CHR", &[json!("\\u004b\\n\\101\\q")]), Ok(json!("K\nAq")));
        for no in ["75", "004b", "bogus", "", "\\u4b"] {
            assert_eq!(f("CHR", &[json!(no)]), Ok(Value::Null), "{no}");
        }
        assert!(f("CHR", &[json!("\\u004bxx\\uzzzz")]).is_err());
    }
}
