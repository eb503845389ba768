//! The masking built-ins: `MASK(s)`, `MASK_LEFT(s, n)`, `MASK_RIGHT(s, n)`,
//! `MASK_KEEP_LEFT(s, n)` and `MASK_KEEP_RIGHT(s, n)`, each optionally followed by the four
//! mask characters (upper case, lower case, digit, other; NULL leaves that class unmasked).
//!
//! Invariants: the default masks are ksqlDB's (`X`, `x`, `n`, `-`); a mask must be one
//! character and `n` must not be negative, else the call fails (NULL); a NULL string gives
//! NULL. Character classes are Unicode's: upper- and lower-case letters, decimal digits
//! (approximated by Rust's `is_numeric`, which also counts other numerals such as `²`).

use serde_json::Value;

use super::P::{Int, Str};
use super::values::{chars, int};
use super::{Args, CheckError, Signature, SqlType, text};

pub(super) fn signature(name: &str) -> Option<Signature> {
    Some(match name {
        "MASK" => Signature::new(1, 5, &[Str, Str, Str, Str, Str], one_or_five).lenient(),
        "MASK_LEFT" | "MASK_RIGHT" | "MASK_KEEP_LEFT" | "MASK_KEEP_RIGHT" => {
            Signature::new(2, 6, &[Str, Int, Str, Str, Str, Str], two_or_six).lenient()
        }
        _ => return None,
    })
}

fn one_or_five(args: &Args<'_>) -> Result<SqlType, CheckError> {
    if [1, 5].contains(&args.len()) {
        Ok(SqlType::String)
    } else {
        Err(CheckError::Arity("1 or 5 (the string, then all four masks)".into()))
    }
}

fn two_or_six(args: &Args<'_>) -> Result<SqlType, CheckError> {
    if [2, 6].contains(&args.len()) {
        Ok(SqlType::String)
    } else {
        Err(CheckError::Arity("2 or 6 (the string and a count, then all four masks)".into()))
    }
}

pub(super) fn eval(name: &str, args: &[Value]) -> Result<Value, String> {
    let masks_from = if name == "MASK" { 1 } else { 2 };
    let masker = Masker::new(args.get(masks_from..).unwrap_or_default())?;
    let n = if name == "MASK" {
        0
    } else {
        let n = args.get(1).and_then(int).ok_or("the number of characters is NULL")?;
        if n < 0 {
            return Err(format!(
                "function {name} requires a non-negative number of characters to mask or skip"
            ));
        }
        usize::try_from(n).unwrap_or(usize::MAX)
    };
    let Some(Value::String(s)) = args.first() else { return Ok(Value::Null) };
    let cs = chars(s);
    let len = cs.len();
    // Which characters are masked: [from, to).
    let (from, to) = match name {
        "MASK" => (0, len),
        "MASK_LEFT" => (0, n.min(len)),
        "MASK_RIGHT" => (len.saturating_sub(n), len),
        "MASK_KEEP_LEFT" => (n.min(len), len),
        _ => (0, len.saturating_sub(n)),
    };
    let out = cs
        .iter()
        .enumerate()
        .map(|(i, &c)| if (from..to).contains(&i) { masker.mask(c) } else { c });
    Ok(Value::String(out.collect()))
}

/// The replacement for each class of character (`None`: left as it is).
struct Masker {
    upper: Option<char>,
    lower: Option<char>,
    digit: Option<char>,
    other: Option<char>,
}

impl Masker {
    /// From the four optional mask arguments; the defaults when there are none.
    fn new(masks: &[Value]) -> Result<Self, String> {
        if masks.is_empty() {
            return Ok(Masker {
                upper: Some('X'),
                lower: Some('x'),
                digit: Some('n'),
                other: Some('-'),
            });
        }
        let mask = |i: usize| -> Result<Option<char>, String> {
            match masks.get(i) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => {
                    let s = text(v);
                    let mut cs = s.chars();
                    match (cs.next(), cs.next()) {
                        (Some(c), None) => Ok(Some(c)),
                        _ => Err(format!(
                            "Invalid mask character. Must be only single character, but was '{s}'"
                        )),
                    }
                }
            }
        };
        Ok(Masker { upper: mask(0)?, lower: mask(1)?, digit: mask(2)?, other: mask(3)? })
    }

    fn mask(&self, c: char) -> char {
        let rule = if c.is_uppercase() && c.is_alphabetic() {
            self.upper
        } else if c.is_lowercase() && c.is_alphabetic() {
            self.lower
        } else if c.is_numeric() {
            self.digit
        } else {
            self.other
        };
        rule.unwrap_or(c)
    }
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
    fn mask_uses_the_default_classes() {
        assert_eq!(f("MASK", &[json!("AbC-12 é")]), Ok(json!("XxX-nn-x")));
        assert_eq!(f("MASK", &[Value::Null]), Ok(Value::Null));
    }

    #[test]
    fn custom_masks_and_null_masks_keep_the_class() {
        let args = [json!("AbC-12"), json!("U"), Value::Null, json!("#"), json!("*")];
        assert_eq!(f("MASK", &args), Ok(json!("UbU*##")));
        let bad = [json!("ab"), json!("UU"), Value::Null, Value::Null, Value::Null];
        assert!(f("MASK", &bad).is_err());
    }

    #[test]
    fn left_right_and_keep_variants_mask_the_right_characters() {
        let s = json!("Abc-123");
        assert_eq!(f("MASK_LEFT", &[s.clone(), json!(3)]), Ok(json!("Xxx-123")));
        assert_eq!(f("MASK_LEFT", &[s.clone(), json!(99)]), Ok(json!("Xxx-nnn")));
        assert_eq!(f("MASK_RIGHT", &[s.clone(), json!(2)]), Ok(json!("Abc-1nn")));
        assert_eq!(f("MASK_KEEP_LEFT", &[s.clone(), json!(2)]), Ok(json!("Abx-nnn")));
        assert_eq!(f("MASK_KEEP_RIGHT", &[s.clone(), json!(2)]), Ok(json!("Xxx-n23")));
        assert_eq!(f("MASK_KEEP_RIGHT", &[s.clone(), json!(0)]), Ok(json!("Xxx-nnn")));
        let custom = [s.clone(), json!(4), json!("U"), json!("l"), json!("d"), json!("o")];
        assert_eq!(f("MASK_LEFT", &custom), Ok(json!("Ullo123")));
    }

    #[test]
    fn a_negative_or_null_count_fails() {
        assert!(f("MASK_LEFT", &[json!("a"), json!(-1)]).is_err());
        assert!(f("MASK_RIGHT", &[json!("a"), Value::Null]).is_err());
        assert_eq!(f("MASK_LEFT", &[Value::Null, json!(1)]), Ok(Value::Null));
    }
}
