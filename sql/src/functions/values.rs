//! How the built-ins see values the way ksqlDB's Java does: ordering (`compareTo`), equality
//! (`equals`), `Double.toString`, `String.trim` and string order by UTF-16 code units.
//!
//! Invariants: these helpers never fail; an ordering between values of different kinds (a
//! string and a number, say) is `None`, and the caller turns it into a function error.

use std::cmp::Ordering;

use serde_json::Value;

/// Java's `String.compareTo`: by UTF-16 code unit, which differs from Rust's byte order only
/// for characters above U+FFFF against U+E000..U+FFFF.
pub(super) fn cmp_java_strings(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

/// Java's `compareTo` between two non-NULL values of one primitive kind: booleans (false
/// first), numbers (integers exactly; otherwise as doubles, -0.0 before 0.0 like
/// `Double.compareTo`) and strings. `None` for other kinds or a mix.
pub(super) fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::String(x), Value::String(y)) => Some(cmp_java_strings(x, y)),
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => Some(i.cmp(&j)),
            _ => Some(x.as_f64()?.total_cmp(&y.as_f64()?)),
        },
        _ => None,
    }
}

/// Java's `equals` on ksqlDB values: structural for arrays and maps; an integer equals a double
/// of the same value (eddy has one JSON number type where Java has several, and a literal `1`
/// against a DOUBLE column means 1.0); two doubles are equal when their bits are, as
/// `Double.equals` has it.
pub(super) fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ if x.is_f64() && y.is_f64() => {
                x.as_f64().map(f64::to_bits) == y.as_f64().map(f64::to_bits)
            }
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// `values` without repeats, first occurrences in order (a `LinkedHashSet`).
pub(super) fn distinct(values: impl IntoIterator<Item = Value>) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for v in values {
        if !out.iter().any(|seen| same(seen, &v)) {
            out.push(v);
        }
    }
    out
}

/// A double as Java's `Double.toString` prints it (what ksqlDB's functions write): `10.0`,
/// `0.001`, `1.0E7`, `1.0E-4`, `NaN`, `Infinity`.
pub(crate) fn java_double(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    let a = x.abs();
    if a == 0.0 || (1e-3..1e7).contains(&a) {
        let s = format!("{x}");
        if s.contains('.') { s } else { format!("{s}.0") }
    } else {
        // Rust's `{:e}` gives the shortest digits, as Java does: `1e7` → `1.0E7`.
        let s = format!("{x:e}");
        let (mantissa, exponent) = s.split_once('e').unwrap_or((&s, "0"));
        let mantissa =
            if mantissa.contains('.') { mantissa.to_owned() } else { format!("{mantissa}.0") };
        format!("{mantissa}E{exponent}")
    }
}

/// A scalar as Java's `toString` prints it: strings as they are, doubles as `Double.toString`.
pub(super) fn java_text(v: &Value) -> String {
    match v {
        Value::Number(n) if n.is_f64() => java_double(n.as_f64().unwrap_or(f64::NAN)),
        other => super::text(other),
    }
}

/// Java's `String.trim`: strips every character up to U+0020 (spaces and control characters)
/// from both ends, and nothing else.
pub(super) fn java_trim(s: &str) -> &str {
    s.trim_matches(|c: char| c <= ' ')
}

/// An integer argument (a double is not one: ksqlDB's INT parameters take no DOUBLE).
pub(super) fn int(v: &Value) -> Option<i64> {
    v.as_i64()
}

/// The characters of `s`: eddy's string positions count Unicode scalar values.
pub(super) fn chars(s: &str) -> Vec<char> {
    s.chars().collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn compare_orders_like_java_compare_to() {
        assert_eq!(compare(&json!(false), &json!(true)), Some(Ordering::Less));
        assert_eq!(compare(&json!(2), &json!(10)), Some(Ordering::Less));
        assert_eq!(compare(&json!(2.5), &json!(2)), Some(Ordering::Greater));
        assert_eq!(compare(&json!(-0.0), &json!(0.0)), Some(Ordering::Less));
        assert_eq!(compare(&json!("Zebra"), &json!("apple")), Some(Ordering::Less));
        assert_eq!(compare(&json!("a"), &json!(1)), None);
        assert_eq!(compare(&json!([1]), &json!([1])), None);
        // U+FFFD sorts after U+1F600 in UTF-16 (a surrogate), before it in UTF-8.
        assert_eq!(cmp_java_strings("\u{FFFD}", "\u{1F600}"), Ordering::Greater);
    }

    #[test]
    fn same_is_java_equals_with_one_number_type() {
        assert!(same(&json!(1), &json!(1.0)));
        assert!(!same(&json!(0.0), &json!(-0.0)));
        assert!(same(&json!({"a": [1, null]}), &json!({"a": [1.0, null]})));
        assert!(!same(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
        assert!(!same(&json!("1"), &json!(1)));
        assert_eq!(
            distinct(vec![json!(1), json!(2), json!(1.0), json!(null), json!(null)]),
            [json!(1), json!(2), json!(null)]
        );
    }

    #[test]
    fn java_double_prints_like_double_to_string() {
        assert_eq!(java_double(1.0), "1.0");
        assert_eq!(java_double(-23.42), "-23.42");
        assert_eq!(java_double(1e7), "1.0E7");
        assert_eq!(java_double(1.5e-4), "1.5E-4");
        assert_eq!(java_double(0.001), "0.001");
        assert_eq!(java_double(f64::NEG_INFINITY), "-Infinity");
    }

    #[test]
    fn java_trim_strips_control_characters_but_not_unicode_spaces() {
        assert_eq!(java_trim(" \t\u{1}a b\n"), "a b");
        assert_eq!(java_trim("\u{00A0}a\u{2003}"), "\u{00A0}a\u{2003}");
    }
}
