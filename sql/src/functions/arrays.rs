//! The array built-ins: `ARRAY_LENGTH`, `ARRAY_CONTAINS`, `ARRAY_CONCAT`, `ARRAY_DISTINCT`,
//! `ARRAY_UNION`, `ARRAY_INTERSECT`, `ARRAY_EXCEPT`, `ARRAY_REMOVE`, `ARRAY_SORT(a [, 'ASC' |
//! 'DESC'])`, `ARRAY_MIN`, `ARRAY_MAX`, `ARRAY_JOIN(a [, delimiter])`, `SLICE(a, from, to)`
//! and `GENERATE_SERIES(start, end [, step])`.
//!
//! Invariants: elements are equal as Java's `equals` has it ([`values::same`]) and ordered as
//! its `compareTo` ([`values::compare`]), so sorting, min and max take arrays of a primitive
//! type only; set operations keep first occurrences in order (Java's `LinkedHashSet`); the
//! result type is the argument's array type (`ARRAY_MAX` of `ARRAY<INT>` is INT); a series longer
//! than [`MAX_SERIES`] elements fails rather than exhaust memory.

use std::cmp::Ordering;

use serde_json::Value;

use super::P::{Any, Array, Int, Str};
use super::values::{self, compare, distinct, int, same};
use super::{Args, CheckError, Signature, SqlType, ret, text};

/// The longest array `GENERATE_SERIES` builds.
const MAX_SERIES: i128 = 1 << 24;

pub(super) fn signature(name: &str) -> Option<Signature> {
    Some(match name {
        "ARRAY_LENGTH" => Signature::new(1, 1, &[Array], ret::int),
        "ARRAY_CONTAINS" => Signature::new(2, 2, &[Array, Any], contains_type).lenient(),
        "ARRAY_REMOVE" => Signature::new(2, 2, &[Array, Any], remove_type).lenient(),
        "ARRAY_CONCAT" => Signature::new(2, 2, &[Array, Array], two_arrays).lenient(),
        "ARRAY_UNION" | "ARRAY_INTERSECT" | "ARRAY_EXCEPT" => {
            Signature::new(2, 2, &[Array, Array], two_arrays)
        }
        "ARRAY_DISTINCT" => Signature::new(1, 1, &[Array], ret::first),
        "ARRAY_SORT" => {
            Signature::new(1, 2, &[Array, Str], |a| primitive(a).map(|_| a.ty(0).clone()))
        }
        "ARRAY_MIN" | "ARRAY_MAX" => Signature::new(1, 1, &[Array], primitive),
        "ARRAY_JOIN" => Signature::new(1, 2, &[Array, Str], ret::string).lenient(),
        "SLICE" => Signature::new(3, 3, &[Array, Int, Int], ret::first).lenient(),
        "GENERATE_SERIES" => Signature::new(2, 3, &[Int, Int, Int], series_type),
        _ => return None,
    })
}

/// The element type of an array type (ANY for ANY).
fn element(t: &SqlType) -> SqlType {
    match t {
        SqlType::Array(e) => (**e).clone(),
        _ => SqlType::Any,
    }
}

/// Whether argument 1 can be an element of argument 0.
fn element_fits(args: &Args<'_>) -> Result<(), CheckError> {
    let e = element(args.ty(0));
    if e.comparable(args.ty(1)) {
        Ok(())
    } else {
        Err(CheckError::Arg { index: 1, expected: format!("a {e} (an element of the array)") })
    }
}

fn contains_type(args: &Args<'_>) -> Result<SqlType, CheckError> {
    element_fits(args).map(|()| SqlType::Boolean)
}

fn remove_type(args: &Args<'_>) -> Result<SqlType, CheckError> {
    element_fits(args).map(|()| args.ty(0).clone())
}

/// Two arrays of comparable elements: the first's type (the second's when the first's
/// elements are unknown, `ARRAY[]` say).
fn two_arrays(args: &Args<'_>) -> Result<SqlType, CheckError> {
    let (a, b) = (element(args.ty(0)), element(args.ty(1)));
    if !a.comparable(&b) {
        return Err(CheckError::Arg { index: 1, expected: format!("an ARRAY<{a}>") });
    }
    Ok(if a == SqlType::Any { args.ty(1).clone() } else { args.ty(0).clone() })
}

/// The element type of an array of a primitive type (what Java can compare).
fn primitive(args: &Args<'_>) -> Result<SqlType, CheckError> {
    use SqlType::*;
    match element(args.ty(0)) {
        e @ (Int | Bigint | Double | String | Boolean | Timestamp | Any) => Ok(e),
        e => Err(CheckError::Arg {
            index: 0,
            expected: format!("an ARRAY of a primitive type (not {e}): its elements are compared"),
        }),
    }
}

fn series_type(args: &Args<'_>) -> Result<SqlType, CheckError> {
    let ints = args.types[..2].iter().all(|t| matches!(t, SqlType::Int | SqlType::Any));
    Ok(SqlType::Array(Box::new(if ints { SqlType::Int } else { SqlType::Bigint })))
}

pub(super) fn eval(name: &str, args: &[Value]) -> Result<Value, String> {
    let arg = |i: usize| args.get(i).unwrap_or(&Value::Null);
    let (a, b) = (arg(0).as_array(), arg(1).as_array());
    let list = |v: Vec<Value>| Ok(Value::Array(v));
    let both = |a: &[Value], b: &[Value]| [a, b].concat();
    match (name, a, b) {
        ("ARRAY_CONTAINS", a, _) => {
            Ok(Value::Bool(a.is_some_and(|a| a.iter().any(|e| same(e, arg(1))))))
        }
        ("ARRAY_CONCAT", None, None) | ("SLICE" | "ARRAY_JOIN" | "ARRAY_REMOVE", None, _) => {
            Ok(Value::Null)
        }
        ("ARRAY_CONCAT", a, b) => list(both(a.map_or(&[], |a| a), b.map_or(&[], |b| b))),
        ("GENERATE_SERIES", ..) => series(args),
        (_, None, _) => Err("the argument is not an ARRAY".into()),
        ("ARRAY_LENGTH", Some(a), _) => Ok(Value::from(a.len())),
        ("ARRAY_REMOVE", Some(a), _) => {
            list(a.iter().filter(|e| !same(e, arg(1))).cloned().collect())
        }
        ("ARRAY_DISTINCT", Some(a), _) => list(distinct(a.iter().cloned())),
        ("ARRAY_SORT", Some(a), _) => sort(a.clone(), args.get(1)),
        ("ARRAY_MIN", Some(a), _) => extreme(a, Ordering::Less),
        ("ARRAY_MAX", Some(a), _) => extreme(a, Ordering::Greater),
        ("ARRAY_JOIN", Some(a), _) => join(a, args.get(1)),
        ("SLICE", Some(a), _) => Ok(slice(a, arg(1), arg(2))),
        (_, _, None) => Err("the argument is not an ARRAY".into()),
        ("ARRAY_UNION", Some(a), Some(b)) => list(distinct(both(a, b))),
        ("ARRAY_INTERSECT" | "ARRAY_EXCEPT", Some(a), Some(b)) => {
            let keep = name == "ARRAY_INTERSECT";
            let left = distinct(a.iter().cloned());
            list(left.into_iter().filter(|e| b.iter().any(|x| same(e, x)) == keep).collect())
        }
        _ => Err("not an array function".into()),
    }
}

/// Java's `compareTo`, or why the two cannot be compared.
fn order(a: &Value, b: &Value) -> Result<Ordering, String> {
    compare(a, b).ok_or_else(|| format!("cannot compare {a} and {b}"))
}

/// Sorted ascending (`ASC`, `ASCENDING`, the default) or descending (`DESC`, `DESCENDING`),
/// NULLs last either way; NULL for another direction. The sort is stable.
fn sort(mut a: Vec<Value>, direction: Option<&Value>) -> Result<Value, String> {
    let direction = direction.map_or("ASC".to_owned(), |d| text(d).to_uppercase());
    let descending = match direction.as_str() {
        "ASC" | "ASCENDING" => false,
        "DESC" | "DESCENDING" => true,
        _ => return Ok(Value::Null),
    };
    let mut failure = None;
    a.sort_by(|x, y| match (x.is_null(), y.is_null()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => {
            let o = order(x, y).unwrap_or_else(|e| {
                failure = Some(e);
                Ordering::Equal
            });
            if descending { o.reverse() } else { o }
        }
    });
    failure.map_or(Ok(Value::Array(a)), Err)
}

/// The least (`want` = Less) or greatest non-NULL element; NULL when there is none.
fn extreme(a: &[Value], want: Ordering) -> Result<Value, String> {
    let mut best: Option<&Value> = None;
    for v in a.iter().filter(|v| !v.is_null()) {
        match best {
            Some(b) if order(v, b)? != want => {}
            _ => best = Some(v),
        }
    }
    Ok(best.cloned().unwrap_or(Value::Null))
}

/// The elements as text (`null` for NULL, doubles as Java prints them) between `delimiter`s
/// (`,` by default, nothing when NULL); an element that is an array, map or struct fails.
fn join(a: &[Value], delimiter: Option<&Value>) -> Result<Value, String> {
    let delimiter = delimiter.map_or(",".to_owned(), text);
    let mut parts = Vec::with_capacity(a.len());
    for e in a {
        parts.push(match e {
            Value::Null => "null".to_owned(),
            Value::Array(_) | Value::Object(_) => {
                return Err(format!("error: hit element {e} of a type which is not supported"));
            }
            scalar => values::java_text(scalar),
        });
    }
    Ok(Value::String(parts.join(&delimiter)))
}

/// Elements `from` to `to`, 1-based and inclusive (NULL bounds: the ends); NULL when the range
/// is not inside the array.
fn slice(a: &[Value], from: &Value, to: &Value) -> Value {
    let len = a.len() as i64;
    let start = if from.is_null() { Some(0) } else { int(from).map(|f| f.saturating_sub(1)) };
    let end = if to.is_null() { Some(len) } else { int(to) };
    match (start, end) {
        (Some(s), Some(e)) if 0 <= s && s <= e && e <= len => {
            Value::Array(a[s as usize..e as usize].to_vec())
        }
        _ => Value::Null,
    }
}

/// `start`, `start + step`, … up to `end` inclusive; the step defaults to 1 or -1 toward
/// `end`, must not be 0 and must point toward `end`.
fn series(args: &[Value]) -> Result<Value, String> {
    let n = |i: usize| args.get(i).and_then(int).map(i128::from);
    let (Some(start), Some(end)) = (n(0), n(1)) else { return Err("a bound is NULL".into()) };
    let diff = end - start;
    let step = match args.get(2) {
        None => {
            if diff > 0 {
                1
            } else {
                -1
            }
        }
        Some(_) => n(2).ok_or("the step is NULL")?,
    };
    if step == 0 {
        return Err("GENERATE_SERIES step cannot be zero".into());
    }
    if (diff > 0 && step < 0) || (diff < 0 && step > 0) {
        return Err("GENERATE_SERIES step has wrong sign".into());
    }
    let size = 1 + diff / step;
    if size > MAX_SERIES {
        return Err(format!("a series of {size} elements is over eddy's limit of {MAX_SERIES}"));
    }
    Ok(Value::Array((0..size).map(|i| Value::from((start + i * step) as i64)).collect()))
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
    fn length_contains_and_remove() {
        assert_eq!(f("ARRAY_LENGTH", &[json!([1, null, 3])]), Ok(json!(3)));
        assert_eq!(f("ARRAY_CONTAINS", &[json!(["Pink", null]), json!("Pink")]), Ok(json!(true)));
        assert_eq!(f("ARRAY_CONTAINS", &[json!(["a"]), Value::Null]), Ok(json!(false)));
        assert_eq!(f("ARRAY_CONTAINS", &[json!([1, null]), Value::Null]), Ok(json!(true)));
        assert_eq!(f("ARRAY_CONTAINS", &[Value::Null, json!("a")]), Ok(json!(false)));
        assert_eq!(f("ARRAY_CONTAINS", &[json!([1.0, 2.0]), json!(2)]), Ok(json!(true)));
        let remove = |a: Value, v: Value| f("ARRAY_REMOVE", &[a, v]);
        assert_eq!(remove(json!(["foo", "bar", "foo"]), json!("foo")), Ok(json!(["bar"])));
        assert_eq!(remove(json!([null, 1, null]), Value::Null), Ok(json!([1])));
        assert_eq!(remove(json!([[1], [2]]), json!([1])), Ok(json!([[2]])));
        assert_eq!(remove(Value::Null, json!(1)), Ok(Value::Null));
    }

    #[test]
    fn set_operations_keep_first_occurrences_in_order() {
        let (a, b) = (json!([0, 0, 1, 0, -1]), json!([1, -2, 0]));
        assert_eq!(f("ARRAY_DISTINCT", std::slice::from_ref(&a)), Ok(json!([0, 1, -1])));
        assert_eq!(f("ARRAY_UNION", &[a.clone(), b.clone()]), Ok(json!([0, 1, -1, -2])));
        assert_eq!(f("ARRAY_INTERSECT", &[a.clone(), b.clone()]), Ok(json!([0, 1])));
        assert_eq!(f("ARRAY_EXCEPT", &[a.clone(), json!([1, -2])]), Ok(json!([0, -1])));
        assert_eq!(
            f("ARRAY_DISTINCT", &[json!([{"a": 1}, {"a": 1}, null, null])]),
            Ok(json!([{"a": 1}, null]))
        );
    }

    #[test]
    fn concat_takes_a_null_side_as_empty() {
        assert_eq!(f("ARRAY_CONCAT", &[json!([1]), json!([2, 1])]), Ok(json!([1, 2, 1])));
        assert_eq!(f("ARRAY_CONCAT", &[Value::Null, json!([2])]), Ok(json!([2])));
        assert_eq!(f("ARRAY_CONCAT", &[json!([1]), Value::Null]), Ok(json!([1])));
        assert_eq!(f("ARRAY_CONCAT", &[Value::Null, Value::Null]), Ok(Value::Null));
    }

    #[test]
    fn sort_puts_nulls_last_both_ways() {
        let strings = json!(["foo", "fo", "Food", null, "F", "food"]);
        let asc = json!(["F", "Food", "fo", "foo", "food", null]);
        assert_eq!(f("ARRAY_SORT", std::slice::from_ref(&strings)), Ok(asc));
        let desc = json!(["food", "foo", "fo", "Food", "F", null]);
        assert_eq!(f("ARRAY_SORT", &[strings.clone(), json!("descending")]), Ok(desc));
        assert_eq!(f("ARRAY_SORT", &[strings, json!("up")]), Ok(Value::Null));
        assert_eq!(f("ARRAY_SORT", &[json!([true, null, false])]), Ok(json!([false, true, null])));
        assert_eq!(f("ARRAY_SORT", &[json!([1.5, -2, 0])]), Ok(json!([-2, 0, 1.5])));
        assert!(f("ARRAY_SORT", &[json!([[1], [0]])]).is_err());
    }

    #[test]
    fn min_and_max_skip_nulls() {
        let a = json!([0, null, 1, 0, -1]);
        assert_eq!(f("ARRAY_MIN", std::slice::from_ref(&a)), Ok(json!(-1)));
        assert_eq!(f("ARRAY_MAX", &[a]), Ok(json!(1)));
        assert_eq!(f("ARRAY_MAX", &[json!(["foo", "fo", "Food", "food"])]), Ok(json!("food")));
        assert_eq!(f("ARRAY_MIN", &[json!([null, false, true])]), Ok(json!(false)));
        assert_eq!(f("ARRAY_MAX", &[json!([])]), Ok(Value::Null));
        assert_eq!(f("ARRAY_MAX", &[json!([null])]), Ok(Value::Null));
    }

    #[test]
    fn join_prints_elements_like_java() {
        let a = json!([true, null, 1.23, -4294967297_i64, 0.0, "x"]);
        assert_eq!(
            f("ARRAY_JOIN", std::slice::from_ref(&a)),
            Ok(json!("true,null,1.23,-4294967297,0.0,x"))
        );
        assert_eq!(
            f("ARRAY_JOIN", &[a.clone(), json!("|")]),
            Ok(json!("true|null|1.23|-4294967297|0.0|x"))
        );
        assert_eq!(f("ARRAY_JOIN", &[json!(["a", "", "b"]), Value::Null]), Ok(json!("ab")));
        assert_eq!(f("ARRAY_JOIN", &[Value::Null, json!(",")]), Ok(Value::Null));
        assert!(f("ARRAY_JOIN", &[json!([[1]])]).is_err());
    }

    #[test]
    fn slice_is_one_based_inclusive() {
        let a = json!(["a", "b", "c", "d"]);
        assert_eq!(f("SLICE", &[a.clone(), json!(2), json!(3)]), Ok(json!(["b", "c"])));
        assert_eq!(f("SLICE", &[a.clone(), Value::Null, json!(2)]), Ok(json!(["a", "b"])));
        assert_eq!(f("SLICE", &[a.clone(), json!(3), Value::Null]), Ok(json!(["c", "d"])));
        assert_eq!(f("SLICE", &[a.clone(), json!(3), json!(2)]), Ok(json!([])));
        assert_eq!(f("SLICE", &[a.clone(), json!(0), json!(2)]), Ok(Value::Null));
        assert_eq!(f("SLICE", &[a.clone(), json!(2), json!(5)]), Ok(Value::Null));
        assert_eq!(f("SLICE", &[a.clone(), json!(4), json!(2)]), Ok(Value::Null));
        assert_eq!(f("SLICE", &[a, json!(i64::MIN), json!(i64::MAX)]), Ok(Value::Null));
        assert_eq!(f("SLICE", &[Value::Null, json!(1), json!(2)]), Ok(Value::Null));
    }

    #[test]
    fn series_steps_toward_the_end() {
        assert_eq!(f("GENERATE_SERIES", &[json!(0), json!(3)]), Ok(json!([0, 1, 2, 3])));
        assert_eq!(f("GENERATE_SERIES", &[json!(4), json!(3)]), Ok(json!([4, 3])));
        assert_eq!(f("GENERATE_SERIES", &[json!(2), json!(2)]), Ok(json!([2])));
        assert_eq!(f("GENERATE_SERIES", &[json!(-2), json!(1), json!(2)]), Ok(json!([-2, 0])));
        assert_eq!(f("GENERATE_SERIES", &[json!(9), json!(0), json!(-3)]), Ok(json!([9, 6, 3, 0])));
        assert!(f("GENERATE_SERIES", &[json!(0), json!(3), json!(0)]).is_err());
        assert!(f("GENERATE_SERIES", &[json!(0), json!(3), json!(-1)]).is_err());
        assert!(f("GENERATE_SERIES", &[json!(0), json!(i64::MAX)]).is_err());
    }
}
