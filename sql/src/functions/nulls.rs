//! The NULL-handling built-ins: `COALESCE(a, ...)`, `IFNULL(a, b)`, `NULLIF(a, b)` and
//! `AS_VALUE(key column)`.
//!
//! Invariants: none of them is strict (they exist to handle NULLs); they never fail.

use serde_json::Value;

use super::P::Any;
use super::{Args, CheckError, Signature, SqlType, ret, values};

pub(super) fn signature(name: &str) -> Option<Signature> {
    Some(match name {
        "COALESCE" => Signature::new(1, usize::MAX, &[Any], first_known).lenient(),
        "IFNULL" => Signature::new(2, 2, &[Any, Any], first_known).lenient(),
        "NULLIF" => Signature::new(2, 2, &[Any, Any], ret::first).lenient(),
        // A copy of a key column into the value (the column itself stays in the key).
        "AS_VALUE" => Signature::new(1, 1, &[Any], ret::first).lenient(),
        _ => return None,
    })
}

/// The first argument type known at compile time (a NULL literal is not).
fn first_known(args: &Args<'_>) -> Result<SqlType, CheckError> {
    Ok(args.types.iter().find(|t| **t != SqlType::Any).cloned().unwrap_or(SqlType::Any))
}

pub(super) fn eval(name: &str, args: &[Value]) -> Result<Value, String> {
    let arg = |i: usize| args.get(i).cloned().unwrap_or(Value::Null);
    Ok(match name {
        "COALESCE" | "IFNULL" => args.iter().find(|a| !a.is_null()).cloned().unwrap_or(Value::Null),
        // ksqlDB: NULL when the first is NULL or equals the second.
        "NULLIF" if values::same(&arg(0), &arg(1)) => Value::Null,
        "NULLIF" | "AS_VALUE" => arg(0),
        _ => return Err(format!("{name} is not a NULL-handling function")),
    })
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
    fn coalesce_and_ifnull_give_the_first_non_null() {
        assert_eq!(f("COALESCE", &[Value::Null, json!(2), json!(3)]), json!(2));
        assert_eq!(f("COALESCE", &[Value::Null, Value::Null]), Value::Null);
        assert_eq!(f("IFNULL", &[json!("a"), json!("b")]), json!("a"));
        assert_eq!(f("IFNULL", &[Value::Null, json!("b")]), json!("b"));
    }

    #[test]
    fn nullif_is_null_when_equal_or_first_null() {
        assert_eq!(f("NULLIF", &[json!(1), json!(1)]), Value::Null);
        assert_eq!(f("NULLIF", &[json!(1), json!(2)]), json!(1));
        assert_eq!(f("NULLIF", &[json!(1), Value::Null]), json!(1));
        assert_eq!(f("NULLIF", &[Value::Null, json!(1)]), Value::Null);
        assert_eq!(f("NULLIF", &[json!([1, 2]), json!([1, 2])]), Value::Null);
    }

    #[test]
    fn as_value_copies_its_argument() {
        assert_eq!(f("AS_VALUE", &[json!("k")]), json!("k"));
    }
}
