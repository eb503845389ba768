//! The numeric built-ins: `ABS`, `FLOOR`, `CEIL`, `ROUND(x [, places])`,
//! `TRUNC(x [, places])`, `SIGN`, `EXP`, `LN`, `LOG([base,] x)`, `SQRT`, `CBRT`,
//! `POWER(base, exp)`, `PI()`, `RADIANS`, `DEGREES`, the trigonometric and hyperbolic
//! functions (`SIN` … `ATAN2`, `COT`, `SINH`, `COSH`, `TANH`), `LEAST` / `GREATEST` and
//! `GEO_DISTANCE(lat1, lon1, lat2, lon2 [, unit])`.
//!
//! Invariants: integers stay integers where ksqlDB's do (`ABS`, `FLOOR`, `CEIL` of an INT;
//! `ROUND` and `TRUNC` without places give a BIGINT, like Java's `Math.round` and `(long)`);
//! everything else is a DOUBLE; a result JSON cannot hold (NaN, ±infinity: `LN(0)`,
//! `SQRT(-1)`) is NULL. `ROUND` / `TRUNC` with places round the shortest decimal form of the
//! double, as ksqlDB's `BigDecimal.valueOf(x).setScale(places, …)` does: `ROUND` ties toward
//! +infinity (1.5 → 2, -1.5 → -1), `TRUNC` toward zero.

use std::cmp::Ordering;

use serde_json::Value;

use super::P::{Any, Int, Num, Str};
use super::values::compare;
use super::{Args, CheckError, Signature, SqlType, num, ret, text};

pub(super) fn signature(name: &str) -> Option<Signature> {
    Some(match name {
        "ABS" | "FLOOR" | "CEIL" => Signature::new(1, 1, &[Num], ret::first),
        "ROUND" | "TRUNC" => Signature::new(1, 2, &[Num, Int], |args| {
            Ok(if args.len() == 1 { SqlType::Bigint } else { SqlType::Double })
        }),
        "SIGN" => Signature::new(1, 1, &[Num], ret::int),
        "LOG" => Signature::new(1, 2, &[Num, Num], ret::double),
        "POWER" | "ATAN2" => Signature::new(2, 2, &[Num, Num], ret::double),
        "PI" => Signature::new(0, 0, &[], ret::double),
        "GEO_DISTANCE" => {
            // The unit may be NULL (kilometres); any other NULL gives NULL.
            Signature::new(4, 5, &[Num, Num, Num, Num, Str], ret::double).lenient()
        }
        "LEAST" | "GREATEST" => Signature::new(1, usize::MAX, &[Any], extreme_type).lenient(),
        _ if unary(name).is_some() => Signature::new(1, 1, &[Num], ret::double),
        _ => return None,
    })
}

/// The DOUBLE → DOUBLE functions.
fn unary(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "EXP" => f64::exp,
        "LN" => f64::ln,
        "SQRT" => f64::sqrt,
        "CBRT" => f64::cbrt,
        "RADIANS" => f64::to_radians,
        "DEGREES" => f64::to_degrees,
        "SIN" => f64::sin,
        "COS" => f64::cos,
        "TAN" => f64::tan,
        "COT" => |x| 1.0 / x.tan(),
        "ASIN" => f64::asin,
        "ACOS" => f64::acos,
        "ATAN" => f64::atan,
        "SINH" => f64::sinh,
        "COSH" => f64::cosh,
        "TANH" => f64::tanh,
        _ => return None,
    })
}

pub(super) fn eval(name: &str, args: &[Value]) -> Result<Value, String> {
    let x = |i: usize| {
        args.get(i)
            .and_then(Value::as_f64)
            .ok_or_else(|| format!("argument {} is not a number", i + 1))
    };
    let integer = args.first().filter(|v| v.is_i64() || v.is_u64());
    let places = args.get(1).and_then(Value::as_i64);
    if let Some(f) = unary(name) {
        return Ok(num(f(x(0)?)));
    }
    Ok(match name {
        "ABS" => match args.first().and_then(Value::as_i64) {
            Some(i) => Value::from(i.wrapping_abs()),
            None => num(x(0)?.abs()),
        },
        "FLOOR" | "CEIL" | "ROUND" | "TRUNC" if integer.is_some() && args.len() == 1 => {
            integer.cloned().unwrap_or(Value::Null)
        }
        "FLOOR" => num(x(0)?.floor()),
        "CEIL" => num(x(0)?.ceil()),
        "ROUND" => match places {
            Some(p) => num(round_decimal(x(0)?, p, Rounding::HalfUp)),
            None => Value::from(java_round(x(0)?)),
        },
        // Java's `(long) x`: toward zero, saturating, NaN → 0, as Rust's `as` is.
        "TRUNC" => match places {
            Some(p) => num(round_decimal(x(0)?, p, Rounding::Down)),
            None => Value::from(x(0)? as i64),
        },
        "SIGN" => match args.first().and_then(Value::as_i64) {
            Some(i) => Value::from(i.signum()),
            None => {
                let v = x(0)?;
                Value::from(if v == 0.0 || v.is_nan() { 0 } else { v.signum() as i64 })
            }
        },
        "LOG" if args.len() == 1 => num(x(0)?.ln()),
        "LOG" => {
            let (base, value) = (x(0)?, x(1)?);
            num(if base <= 0.0 || base == 1.0 { f64::NAN } else { value.ln() / base.ln() })
        }
        "POWER" => num(x(0)?.powf(x(1)?)),
        "ATAN2" => num(x(0)?.atan2(x(1)?)),
        "PI" => num(std::f64::consts::PI),
        "GEO_DISTANCE" if args.iter().take(4).any(Value::is_null) => Value::Null,
        "GEO_DISTANCE" => geo_distance(args)?,
        "LEAST" => extreme(args, Ordering::Less)?,
        "GREATEST" => extreme(args, Ordering::Greater)?,
        _ => return Err("not a numeric function".into()),
    })
}

/// Java's `Math.round`: the closest integer, ties toward +infinity (floor(x + 0.5) without
/// the addition's rounding error), saturating, NaN → 0.
fn java_round(x: f64) -> i64 {
    let floor = x.floor();
    (if x - floor >= 0.5 { floor + 1.0 } else { floor }) as i64
}

#[derive(Clone, Copy)]
enum Rounding {
    /// Half away from zero for positives, toward zero for negatives: ties toward +infinity
    /// (ksqlDB's HALF_UP / HALF_DOWN pair).
    HalfUp,
    /// Toward zero.
    Down,
}

/// `x` rounded to `places` decimal places (negative: to tens, hundreds, …), on the shortest
/// decimal digits that print `x`, as `BigDecimal.valueOf(x).setScale(places, mode)`.
fn round_decimal(x: f64, places: i64, mode: Rounding) -> f64 {
    if !x.is_finite() || x == 0.0 {
        return x;
    }
    // `{:e}` prints the shortest digits: d.ddd…e<exp>, so x = 0.dddd… × 10^(exp + 1).
    let sci = format!("{:e}", x.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let digits: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).map(|b| b - b'0').collect();
    let point = exp.parse::<i64>().unwrap_or(0) + 1;
    let keep = point.saturating_add(places);
    if keep >= digits.len() as i64 {
        return x;
    }
    let up = match (mode, usize::try_from(keep)) {
        (Rounding::Down, _) | (_, Err(_)) => false,
        (Rounding::HalfUp, Ok(k)) => {
            let rest = digits.get(k + 1..).unwrap_or_default();
            digits[k] > 5 || (digits[k] == 5 && (x > 0.0 || rest.iter().any(|d| *d != 0)))
        }
    };
    let kept = digits.get(..usize::try_from(keep).unwrap_or(0)).unwrap_or_default();
    let magnitude = kept.iter().fold(0u64, |m, d| m * 10 + u64::from(*d)) + u64::from(up);
    if magnitude == 0 {
        return 0.0;
    }
    let rounded: f64 = format!("{magnitude}e{}", places.saturating_neg()).parse().unwrap_or(x);
    if x < 0.0 { -rounded } else { rounded }
}

/// `LEAST` / `GREATEST`: one type for all arguments (NULL literals aside), or numbers with a
/// DOUBLE among them, which make a DOUBLE; as in ksqlDB, INT and BIGINT alone do not mix, and
/// all-NULL literals have no type.
fn extreme_type(args: &Args<'_>) -> Result<SqlType, CheckError> {
    let name = args.name;
    if (0..args.len()).all(|i| args.is_null_literal(i)) {
        return Err(CheckError::Invalid(format!(
            "{name} of NULLs only has no type: CAST one argument to the type wanted"
        )));
    }
    let mut known = Vec::new();
    for (i, t) in args.types.iter().enumerate().filter(|(_, t)| **t != SqlType::Any) {
        use SqlType::*;
        if !matches!(t, Int | Bigint | Double | String | Timestamp) {
            let expected = "INT, BIGINT, DOUBLE, VARCHAR or TIMESTAMP".into();
            return Err(CheckError::Arg { index: i, expected });
        }
        if !known.contains(&t) {
            known.push(t);
        }
    }
    match known.as_slice() {
        [] => Ok(SqlType::Any),
        [one] => Ok((*one).clone()),
        many if many.iter().all(|t| t.is_numeric()) && many.contains(&&SqlType::Double) => {
            Ok(SqlType::Double)
        }
        many => {
            let list: Vec<String> = many.iter().map(|t| t.to_string()).collect();
            Err(CheckError::Invalid(format!(
                "{name} cannot choose between its argument types {} (ksqlDB's rule: one type, or \
                 numbers with a DOUBLE among them); CAST the arguments to one type",
                list.join(", ")
            )))
        }
    }
}

/// The least (`want` = Less) or greatest non-NULL argument; a DOUBLE when any is one.
fn extreme(args: &[Value], want: Ordering) -> Result<Value, String> {
    let mut present = args.iter().filter(|v| !v.is_null());
    let Some(mut best) = present.next() else { return Ok(Value::Null) };
    let mut doubles = best.is_f64();
    for v in present {
        doubles |= v.is_f64();
        match compare(v, best) {
            Some(o) if o == want => best = v,
            Some(_) => {}
            None => return Err(format!("cannot compare {best} and {v}")),
        }
    }
    Ok(match best.as_f64() {
        Some(x) if doubles && !best.is_f64() => num(x),
        _ => best.clone(),
    })
}

/// Great-circle distance by the haversine formula, Earth radius 6371 km.
pub fn geo_distance_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    haversine(lat1, lon1, lat2, lon2) * EARTH_RADIUS_KM
}

const EARTH_RADIUS_KM: f64 = 6371.0;
const EARTH_RADIUS_MILES: f64 = 3959.0;

fn geo_distance(args: &[Value]) -> Result<Value, String> {
    let float = |i: usize| args.get(i).and_then(Value::as_f64).unwrap_or(f64::NAN);
    let radius = earth_radius(args.get(4))?;
    let (lat1, lon1, lat2, lon2) = (float(0), float(1), float(2), float(3));
    if ![lat1, lat2].iter().all(|l| (-90.0..=90.0).contains(l)) {
        return Err("latitudes must be between -90 and 90 degrees".into());
    }
    if ![lon1, lon2].iter().all(|l| (-180.0..=180.0).contains(l)) {
        return Err("longitudes must be between -180 and 180 degrees".into());
    }
    Ok(num(haversine(lat1, lon1, lat2, lon2) * radius))
}

/// The central angle between two points, in radians.
fn haversine(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = (lat2 - lat1).to_radians();
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * a.sqrt().min(1.0).asin()
}

/// GEO_DISTANCE's unit argument (ksqlDB's names, any case; NULL or blank is kilometres).
fn earth_radius(unit: Option<&Value>) -> Result<f64, String> {
    let unit = unit.map(text).unwrap_or_default().trim().to_ascii_lowercase();
    match unit.as_str() {
        "" | "km" | "kilometer" | "kilometers" | "kilometre" | "kilometres" => Ok(EARTH_RADIUS_KM),
        "mi" | "mile" | "miles" => Ok(EARTH_RADIUS_MILES),
        other => Err(format!(
            "unit {other:?}: use one of mi, mile, miles, km, kilometer, kilometers, kilometre, \
             kilometres"
        )),
    }
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

    fn close(v: Value, want: f64) {
        let got = v.as_f64().unwrap_or(f64::NAN);
        assert!((got - want).abs() <= 1e-12 * want.abs().max(1.0), "{got} != {want}");
    }

    #[test]
    fn abs_floor_ceil_keep_integers() {
        assert_eq!(f("ABS", &[json!(-3)]), json!(3));
        assert_eq!(f("ABS", &[json!(-3.5)]), json!(3.5));
        assert_eq!(f("FLOOR", &[json!(7)]), json!(7));
        assert_eq!(f("FLOOR", &[json!(-1.5)]), json!(-2.0));
        assert_eq!(f("CEIL", &[json!(1.1)]), json!(2.0));
    }

    #[test]
    fn round_without_places_is_java_math_round() {
        let round = |x: f64| f("ROUND", &[json!(x)]);
        assert_eq!(round(1.5), json!(2));
        assert_eq!(round(-1.5), json!(-1));
        assert_eq!(round(-1.6), json!(-2));
        assert_eq!(round(0.49999999999999994), json!(0));
        assert_eq!(f("ROUND", &[json!(111)]), json!(111));
        assert_eq!(java_round(1e300), i64::MAX);
    }

    #[test]
    fn round_with_places_rounds_the_decimal_digits() {
        let round = |x: f64, p: i64| round_decimal(x, p, Rounding::HalfUp);
        assert_eq!(round(1.234567, 2), 1.23);
        assert_eq!(round(1.234567, 10), 1.234567);
        assert_eq!(round(1.005, 2), 1.01); // 1.005 prints as 1.005: a tie, rounded up
        assert_eq!(round(-1.005, 2), -1.0); // negative ties go toward zero
        assert_eq!(round(-1.006, 2), -1.01);
        assert_eq!(round(111.0, -1), 110.0);
        assert_eq!(round(111.0, -2), 100.0);
        assert_eq!(round(1.2, -1), 0.0);
        assert_eq!(round(5.0, -1), 10.0);
        assert_eq!(round(-5.0, -1), 0.0);
        assert_eq!(round(99.96, 1), 100.0);
        assert_eq!(f("ROUND", &[json!(1.25), json!(1)]), json!(1.3));
    }

    #[test]
    fn round_and_trunc_match_ksqldb_tables() {
        // From ksqlDB's query-validation tests: places 0, 1, 2, 10, -1, -2.
        let places = [0, 1, 2, 10, -1, -2];
        let round = [
            (1.5, [2.0, 1.5, 1.5, 1.5, 0.0, 0.0]),
            (1.234567, [1.0, 1.2, 1.23, 1.234567, 0.0, 0.0]),
            (111.0, [111.0, 111.0, 111.0, 111.0, 110.0, 100.0]),
        ];
        let trunc = [
            (1.7, [1.0, 1.7, 1.7, 1.7, 0.0, 0.0]),
            (-1.7, [-1.0, -1.7, -1.7, -1.7, 0.0, 0.0]),
            (12345.678, [12345.0, 12345.6, 12345.67, 12345.678, 12340.0, 12300.0]),
            (-12345.678, [-12345.0, -12345.6, -12345.67, -12345.678, -12340.0, -12300.0]),
        ];
        for (table, mode) in [(&round[..], Rounding::HalfUp), (&trunc[..], Rounding::Down)] {
            for (x, want) in table {
                for (p, w) in places.iter().zip(want) {
                    assert_eq!(round_decimal(*x, *p, mode), *w, "{x} to {p} places");
                }
            }
        }
    }

    #[test]
    fn trunc_goes_toward_zero() {
        assert_eq!(f("TRUNC", &[json!(-1.9)]), json!(-1));
        assert_eq!(f("TRUNC", &[json!(7)]), json!(7));
        assert_eq!(round_decimal(1.999, 2, Rounding::Down), 1.99);
        assert_eq!(round_decimal(-1.999, 2, Rounding::Down), -1.99);
        assert_eq!(round_decimal(199.0, -2, Rounding::Down), 100.0);
    }

    #[test]
    fn sign_is_an_int() {
        assert_eq!(f("SIGN", &[json!(-3)]), json!(-1));
        assert_eq!(f("SIGN", &[json!(0.0)]), json!(0));
        assert_eq!(f("SIGN", &[json!(-0.0)]), json!(0));
        assert_eq!(f("SIGN", &[json!(2.5)]), json!(1));
    }

    #[test]
    fn exponentials_and_logarithms() {
        close(f("EXP", &[json!(1)]), std::f64::consts::E);
        close(f("LN", &[json!(2)]), std::f64::consts::LN_2);
        close(f("LOG", &[json!(100)]), 100f64.ln());
        close(f("LOG", &[json!(2), json!(8)]), 3.0);
        assert_eq!(f("LOG", &[json!(1), json!(8)]), Value::Null);
        assert_eq!(f("LOG", &[json!(-2), json!(8)]), Value::Null);
        assert_eq!(f("LN", &[json!(0)]), Value::Null); // -Infinity
        assert_eq!(f("SQRT", &[json!(-1)]), Value::Null); // NaN
        close(f("SQRT", &[json!(2)]), std::f64::consts::SQRT_2);
        close(f("CBRT", &[json!(-27)]), -3.0);
        close(f("POWER", &[json!(2), json!(10)]), 1024.0);
        close(f("PI", &[]), std::f64::consts::PI);
    }

    #[test]
    fn trigonometry_in_radians() {
        close(f("DEGREES", &[json!(std::f64::consts::PI)]), 180.0);
        close(f("RADIANS", &[json!(180)]), std::f64::consts::PI);
        close(f("SIN", &[json!(-7)]), -0.6569865987187891);
        close(f("COS", &[json!(6)]), 0.9601702866503661);
        close(f("TAN", &[json!(0.43)]), 0.45862102348555944);
        close(f("COT", &[json!(7)]), 1.1475154224051356);
        assert_eq!(f("COT", &[json!(0)]), Value::Null);
        close(f("ASIN", &[json!(1)]), std::f64::consts::FRAC_PI_2);
        assert_eq!(f("ACOS", &[json!(2)]), Value::Null);
        close(f("ATAN", &[json!(-1)]), -std::f64::consts::FRAC_PI_4);
        close(f("ATAN2", &[json!(-2), json!(-3)]), -2.5535900500422257);
        close(f("SINH", &[json!(6)]), 201.71315737027922);
        close(f("COSH", &[json!(-0.43)]), 1.0938833091357872);
        close(f("TANH", &[json!(0.43)]), 0.40532130868949796);
    }

    #[test]
    fn least_and_greatest_skip_nulls() {
        let args = [json!(3), Value::Null, json!(-1), json!(5)];
        assert_eq!(f("LEAST", &args), json!(-1));
        assert_eq!(f("GREATEST", &args), json!(5));
        assert_eq!(f("LEAST", &[Value::Null, Value::Null]), Value::Null);
        assert_eq!(f("LEAST", &[json!(1), json!(-5.5)]), json!(-5.5));
        assert_eq!(f("GREATEST", &[json!(500_000), json!(-1.5)]), json!(500_000.0));
        assert_eq!(f("LEAST", &[json!("apple"), json!("Zebra"), json!("!")]), json!("!"));
        assert!(call("LEAST", &[json!("a"), json!(1)]).expect("known").is_err());
    }

    #[test]
    fn geo_distance_is_haversine_in_km_or_miles() {
        // Paris → London is about 343.5 km.
        let d = geo_distance_km(48.8566, 2.3522, 51.5074, -0.1278);
        assert!((d - 343.5).abs() < 1.0, "{d}");
        assert_eq!(geo_distance_km(1.0, 2.0, 1.0, 2.0), 0.0);
        let paris_london = [json!(48.8566), json!(2.3522), json!(51.5074), json!(-0.1278)];
        let miles = [&paris_london[..], &[json!("miles")]].concat();
        close(f("GEO_DISTANCE", &miles), d / EARTH_RADIUS_KM * EARTH_RADIUS_MILES);
        let unit_null = [&paris_london[..], &[Value::Null]].concat();
        close(f("GEO_DISTANCE", &unit_null), d);
        assert_eq!(f("GEO_DISTANCE", &[Value::Null, json!(0), json!(0), json!(0)]), Value::Null);
        assert!(
            call("GEO_DISTANCE", &[json!(91), json!(0), json!(0), json!(0)])
                .expect("known")
                .is_err()
        );
    }
}
