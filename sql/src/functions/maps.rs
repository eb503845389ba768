//! The map built-ins: `MAP_KEYS`, `MAP_VALUES`, `MAP_UNION(m1, m2)`, `AS_MAP(keys, values)`
//! and `ENTRIES(map, sorted)` → `ARRAY<STRUCT<K VARCHAR, V …>>`.
//!
//! Invariants: a map is a JSON object, so its keys are text and come out in the object's
//! order (ksqlDB's come in hash order: its tests sort them); `ENTRIES(m, true)` sorts by
//! Java's string order. `MAP_UNION` takes a NULL side as empty (the second map wins on a
//! shared key); the others are strict.

use serde_json::{Map, Value};

use super::P::{Array, Bool, Map as MapP};
use super::values::cmp_java_strings;
use super::{Args, CheckError, Signature, SqlType, text};

pub(super) fn signature(name: &str) -> Option<Signature> {
    Some(match name {
        "MAP_KEYS" => Signature::new(1, 1, &[MapP], |_| Ok(array(SqlType::String))),
        "MAP_VALUES" => Signature::new(1, 1, &[MapP], |a| Ok(array(value_type(a.ty(0))))),
        "MAP_UNION" => Signature::new(2, 2, &[MapP, MapP], two_maps).lenient(),
        "AS_MAP" => Signature::new(2, 2, &[Array, Array], as_map_type),
        "ENTRIES" => Signature::new(2, 2, &[MapP, Bool], entries_type),
        _ => return None,
    })
}

fn array(t: SqlType) -> SqlType {
    SqlType::Array(Box::new(t))
}

/// The value type of a map type (ANY for ANY).
fn value_type(t: &SqlType) -> SqlType {
    match t {
        SqlType::Map(_, v) => (**v).clone(),
        _ => SqlType::Any,
    }
}

fn two_maps(args: &Args<'_>) -> Result<SqlType, CheckError> {
    let (a, b) = (value_type(args.ty(0)), value_type(args.ty(1)));
    if !a.comparable(&b) {
        return Err(CheckError::Arg { index: 1, expected: format!("a MAP<VARCHAR, {a}>") });
    }
    Ok(if a == SqlType::Any { args.ty(1).clone() } else { args.ty(0).clone() })
}

fn as_map_type(args: &Args<'_>) -> Result<SqlType, CheckError> {
    let element = |t: &SqlType| match t {
        SqlType::Array(e) => (**e).clone(),
        _ => SqlType::Any,
    };
    if !matches!(element(args.ty(0)), SqlType::String | SqlType::Any) {
        return Err(CheckError::Arg { index: 0, expected: "an ARRAY<VARCHAR> of keys".into() });
    }
    Ok(SqlType::Map(Box::new(SqlType::String), Box::new(element(args.ty(1)))))
}

/// ksqlDB has `ENTRIES` for maps of INT, BIGINT, DOUBLE, BOOLEAN and VARCHAR values only.
fn entries_type(args: &Args<'_>) -> Result<SqlType, CheckError> {
    use SqlType::*;
    match value_type(args.ty(0)) {
        v @ (Int | Bigint | Double | Boolean | String | Any) => {
            Ok(array(Struct(vec![("K".into(), String), ("V".into(), v)])))
        }
        v => Err(CheckError::Arg {
            index: 0,
            expected: format!("a MAP of INT, BIGINT, DOUBLE, BOOLEAN or VARCHAR values (not {v})"),
        }),
    }
}

pub(super) fn eval(name: &str, args: &[Value]) -> Result<Value, String> {
    let object = |i: usize| args.get(i).and_then(Value::as_object);
    let not_a_map = || "the argument is not a MAP".to_owned();
    Ok(match name {
        "MAP_KEYS" => {
            let m = object(0).ok_or_else(not_a_map)?;
            Value::Array(m.keys().map(|k| Value::String(k.clone())).collect())
        }
        "MAP_VALUES" => Value::Array(object(0).ok_or_else(not_a_map)?.values().cloned().collect()),
        "MAP_UNION" => match (object(0), object(1)) {
            (None, None) => Value::Null,
            (a, b) => {
                let mut out = a.cloned().unwrap_or_default();
                out.extend(b.cloned().unwrap_or_default());
                Value::Object(out)
            }
        },
        "AS_MAP" => as_map(args)?,
        "ENTRIES" => {
            let m = object(0).ok_or_else(not_a_map)?;
            entries(m, args.get(1) == Some(&Value::Bool(true)))
        }
        _ => return Err("not a map function".into()),
    })
}

/// Key i to value i (NULL past the end of the values); a later key wins; a NULL key, which a
/// JSON object cannot hold, is skipped.
fn as_map(args: &[Value]) -> Result<Value, String> {
    let (Some(keys), Some(values)) =
        (args.first().and_then(Value::as_array), args.get(1).and_then(Value::as_array))
    else {
        return Err("AS_MAP takes two ARRAYs".into());
    };
    let mut out = Map::new();
    for (i, key) in keys.iter().enumerate().filter(|(_, k)| !k.is_null()) {
        out.insert(text(key), values.get(i).cloned().unwrap_or(Value::Null));
    }
    Ok(Value::Object(out))
}

/// `[{K: key, V: value}, …]`, sorted by key when asked.
fn entries(m: &Map<String, Value>, sorted: bool) -> Value {
    let mut pairs: Vec<(&String, &Value)> = m.iter().collect();
    if sorted {
        pairs.sort_by(|a, b| cmp_java_strings(a.0, b.0));
    }
    let entry = |(k, v): (&String, &Value)| {
        let mut s = Map::new();
        s.insert("K".into(), Value::String(k.clone()));
        s.insert("V".into(), v.clone());
        Value::Object(s)
    };
    Value::Array(pairs.into_iter().map(entry).collect())
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
    fn keys_and_values() {
        let m = json!({"foo": 10, "bar": null});
        assert_eq!(f("MAP_KEYS", std::slice::from_ref(&m)), Ok(json!(["bar", "foo"])));
        assert_eq!(f("MAP_VALUES", &[m]), Ok(json!([null, 10])));
        assert_eq!(f("MAP_KEYS", &[json!({})]), Ok(json!([])));
    }

    #[test]
    fn union_lets_the_second_map_win() {
        let (a, b) = (json!({"foo": 10, "bar": 20}), json!({"foo": null, "x": 1}));
        assert_eq!(f("MAP_UNION", &[a.clone(), b]), Ok(json!({"foo": null, "bar": 20, "x": 1})));
        assert_eq!(f("MAP_UNION", &[Value::Null, a.clone()]), Ok(a));
        assert_eq!(f("MAP_UNION", &[Value::Null, Value::Null]), Ok(Value::Null));
    }

    #[test]
    fn as_map_pairs_keys_with_values() {
        let m = f("AS_MAP", &[json!(["a", "b", null, "a"]), json!([1, 2, 3])]);
        assert_eq!(m, Ok(json!({"a": null, "b": 2})));
    }

    #[test]
    fn entries_are_key_value_structs() {
        let m = json!({"K2": 2, "K1": 1});
        let want = json!([{"K": "K1", "V": 1}, {"K": "K2", "V": 2}]);
        assert_eq!(f("ENTRIES", &[m, json!(true)]), Ok(want));
        assert_eq!(entries(&Map::new(), true), json!([]));
    }
}
