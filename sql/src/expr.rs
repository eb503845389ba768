//! Evaluating expressions over a row: one value per column, in the order of the schema the
//! expression was bound to ([`bind`] turns column names into slots once, at compile time), plus
//! the record's pseudo columns.
//!
//! SQL's three-valued logic is kept: an operator or function given a NULL returns NULL (except
//! `IS [NOT] NULL`, `AND`/`OR` where the other side decides, `CASE`, and `CONCAT`, which skips
//! NULLs as ksqlDB does); a WHERE or HAVING that is NULL drops the row. Integers stay integers
//! (`7 / 2 = 3`) unless a double is involved. Errors that only a row can show (a bad CAST, a
//! division by zero, a failing user function) are [`EvalError`]s; the compiled query sets the
//! record aside.
//!
//! Invariant: evaluation is a pure function of the expression, the row and the registry — no
//! clock, no state between rows — so replaying a record gives the same value.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use crate::ast::{self, BinOp, Expr, ExprKind, SqlType};
use crate::error::EvalError;
use crate::functions::{self, FunctionRegistry, num};
use crate::types::Schema;

/// What an expression sees: the row's columns and the record around it.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    /// The columns' values, addressed by [`ExprKind::Slot`].
    pub columns: &'a [Value],
    /// Event time in ms (`ROWTIME`).
    pub rowtime: i64,
    /// The record's key (`ROWKEY`).
    pub rowkey: &'a Value,
    /// `(WINDOWSTART, WINDOWEND)` for windowed rows.
    pub window: Option<(i64, i64)>,
    /// Aggregate results and GROUP BY values, for post-aggregation expressions.
    pub aggs: &'a [Value],
    pub keys: &'a [Value],
}

static NULL: Value = Value::Null;

impl<'a> Row<'a> {
    pub fn new(columns: &'a [Value], rowtime: i64, rowkey: &'a Value) -> Self {
        Self { columns, rowtime, rowkey, window: None, aggs: &[], keys: &[] }
    }

    /// A column left unbound: a pseudo column, else NULL.
    fn column(&self, name: &str) -> Value {
        match name {
            "ROWTIME" => Value::from(self.rowtime),
            "ROWKEY" => self.rowkey.clone(),
            "WINDOWSTART" => self.window.map_or(Value::Null, |w| Value::from(w.0)),
            "WINDOWEND" => self.window.map_or(Value::Null, |w| Value::from(w.1)),
            _ => Value::Null,
        }
    }
}

/// Evaluates `e` over `row`; `registry` supplies user-defined functions.
pub fn eval(e: &Expr, row: &Row<'_>, registry: &FunctionRegistry) -> Result<Value, EvalError> {
    let ev = |x: &Expr| eval(x, row, registry);
    Ok(match &e.kind {
        ExprKind::Literal(v) => v.clone(),
        ExprKind::Slot { index, .. } => row.columns.get(*index).unwrap_or(&NULL).clone(),
        ExprKind::Column { name, .. } => row.column(name),
        ExprKind::Star => Value::Bool(true),
        ExprKind::AggRef(i) => row.aggs.get(*i).unwrap_or(&NULL).clone(),
        ExprKind::KeyRef(i) => row.keys.get(*i).unwrap_or(&NULL).clone(),
        ExprKind::Binary { op: op @ (BinOp::And | BinOp::Or), left, right } => {
            logic(*op, truth(&ev(left)?), truth(&ev(right)?))
        }
        ExprKind::Binary { op: op @ (BinOp::Distinct | BinOp::NotDistinct), left, right } => {
            let (l, r) = (ev(left)?, ev(right)?);
            let same = match (&l, &r) {
                (Value::Null, Value::Null) => true,
                (Value::Null, _) | (_, Value::Null) => false,
                _ => compare(&l, &r).map_or(l == r, Ordering::is_eq),
            };
            Value::Bool(same == (*op == BinOp::NotDistinct))
        }
        ExprKind::Binary { op, left, right } => binary(*op, ev(left)?, ev(right)?, e)?,
        ExprKind::Not(x) => truth(&ev(x)?).map_or(Value::Null, |b| Value::Bool(!b)),
        ExprKind::Neg(x) => match ev(x)? {
            Value::Number(n) => match n.as_i64() {
                Some(i) => Value::from(i.wrapping_neg()),
                None => num(-n.as_f64().unwrap_or(0.0)),
            },
            _ => Value::Null,
        },
        ExprKind::IsNull { expr, negated } => Value::Bool(ev(expr)?.is_null() != *negated),
        ExprKind::Like { expr, pattern, negated, escape } => match (ev(expr)?, ev(pattern)?) {
            (Value::String(s), Value::String(p)) => Value::Bool(like(&s, &p, *escape) != *negated),
            _ => Value::Null,
        },
        ExprKind::Between { expr, low, high, negated } => {
            let v = ev(expr)?;
            match (compare(&v, &ev(low)?), compare(&v, &ev(high)?)) {
                (Some(a), Some(b)) => Value::Bool((a.is_ge() && b.is_le()) != *negated),
                _ => Value::Null,
            }
        }
        ExprKind::InList { expr, list, negated } => {
            let v = ev(expr)?;
            if v.is_null() {
                return Ok(Value::Null);
            }
            let mut found = false;
            for x in list {
                found |= compare(&v, &ev(x)?) == Some(Ordering::Equal);
            }
            Value::Bool(found != *negated)
        }
        ExprKind::Case { operand, whens, otherwise } => {
            let subject = operand.as_ref().map(|o| ev(o)).transpose()?;
            case(subject.as_ref(), whens, otherwise.as_deref(), ev)?
        }
        ExprKind::Cast { expr, ty } => cast(ev(expr)?, ty)?,
        ExprKind::Index { base, index } => element(ev(base)?, ev(index)?),
        ExprKind::Field { base, field } => match ev(base)? {
            Value::Object(map) => field_of(&map, field),
            _ => Value::Null,
        },
        ExprKind::Struct(fields) => {
            let mut out = Map::new();
            for (name, x) in fields {
                out.insert(name.clone(), ev(x)?);
            }
            Value::Object(out)
        }
        ExprKind::Map(entries) => {
            let mut out = Map::new();
            for (k, v) in entries {
                match ev(k)? {
                    Value::Null => {}
                    key => {
                        out.insert(functions::text(&key), ev(v)?);
                    }
                }
            }
            Value::Object(out)
        }
        ExprKind::Array(items) => {
            Value::Array(items.iter().map(ev).collect::<Result<Vec<_>, _>>()?)
        }
        // Unsubstituted, a lambda or its parameter means nothing (TRANSFORM, FILTER and REDUCE
        // apply lambdas, below).
        ExprKind::Lambda { .. } | ExprKind::Var(_) => Value::Null,
        ExprKind::Call { name, args, .. } if is_higher_order(name, args) => {
            higher_order(name, args, row, registry)?
        }
        ExprKind::Call { name, args, .. } => {
            let values = args.iter().map(ev).collect::<Result<Vec<_>, _>>()?;
            // As in ksqlDB, a function that fails on its arguments gives NULL (so IFNULL and
            // COALESCE around it can supply a default); the failure is logged.
            functions::call(registry, name, &values).unwrap_or_else(|error| {
                tracing::debug!(%error, "a function failed; its result is NULL");
                Value::Null
            })
        }
    })
}

/// Whether a call is TRANSFORM, FILTER or REDUCE with a lambda.
fn is_higher_order(name: &str, args: &[Expr]) -> bool {
    matches!(name, "TRANSFORM" | "FILTER" | "REDUCE")
        && args.last().is_some_and(|a| matches!(a.kind, ExprKind::Lambda { .. }))
}

/// `TRANSFORM(array, x => e)`, `TRANSFORM(map, (k, v) => key, (k, v) => value)`,
/// `FILTER(array, x => cond)`, `FILTER(map, (k, v) => cond)`, `REDUCE(array, init, (s, x) =>
/// e)`, `REDUCE(map, init, (s, k, v) => e)`, as ksqlDB defines them; a NULL collection gives
/// NULL (REDUCE: its initial value).
fn higher_order(
    name: &str,
    args: &[Expr],
    row: &Row<'_>,
    registry: &FunctionRegistry,
) -> Result<Value, EvalError> {
    let apply = |f: &Expr, values: &[Value]| apply_lambda(f, values, row, registry);
    let collection = match args.first() {
        Some(c) => eval(c, row, registry)?,
        None => return Ok(Value::Null),
    };
    Ok(match (name, collection, &args[1..]) {
        ("TRANSFORM", Value::Array(items), [f]) => {
            Value::Array(items.into_iter().map(|x| apply(f, &[x])).collect::<Result<_, _>>()?)
        }
        ("TRANSFORM", Value::Object(m), [kf, vf]) => {
            let mut out = Map::new();
            for (k, v) in m {
                let key = Value::String(k);
                let new_key = functions::text(&apply(kf, &[key.clone(), v.clone()])?);
                out.insert(new_key, apply(vf, &[key, v])?);
            }
            Value::Object(out)
        }
        ("FILTER", Value::Array(items), [f]) => {
            let mut out = Vec::new();
            for x in items {
                if truth(&apply(f, std::slice::from_ref(&x))?) == Some(true) {
                    out.push(x);
                }
            }
            Value::Array(out)
        }
        ("FILTER", Value::Object(m), [f]) => {
            let mut out = Map::new();
            for (k, v) in m {
                if truth(&apply(f, &[Value::String(k.clone()), v.clone()])?) == Some(true) {
                    out.insert(k, v);
                }
            }
            Value::Object(out)
        }
        ("REDUCE", collection, [init, f]) => {
            let mut acc = eval(init, row, registry)?;
            match collection {
                Value::Array(items) => {
                    for x in items {
                        acc = apply(f, &[acc, x])?;
                    }
                }
                Value::Object(m) => {
                    for (k, v) in m {
                        acc = apply(f, &[acc, Value::String(k), v])?;
                    }
                }
                _ => {}
            }
            acc
        }
        _ => Value::Null,
    })
}

/// A lambda applied to `values`: its body with each parameter replaced by its value.
fn apply_lambda(
    f: &Expr,
    values: &[Value],
    row: &Row<'_>,
    registry: &FunctionRegistry,
) -> Result<Value, EvalError> {
    let ExprKind::Lambda { params, body } = &f.kind else { return eval(f, row, registry) };
    let mut body = (**body).clone();
    substitute(&mut body, params, values);
    eval(&body, row, registry)
}

/// Replaces each [`ExprKind::Var`] of `names` by its value (not inside a nested lambda that
/// binds the name again).
fn substitute(e: &mut Expr, names: &[String], values: &[Value]) {
    match &mut e.kind {
        ExprKind::Var(n) => {
            if let Some(i) = names.iter().position(|x| x == n) {
                e.kind = ExprKind::Literal(values.get(i).cloned().unwrap_or(Value::Null));
            }
        }
        ExprKind::Lambda { params, body } => {
            let free: Vec<(String, Value)> = names
                .iter()
                .zip(values)
                .filter(|(n, _)| !params.contains(n))
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect();
            let (n, v): (Vec<String>, Vec<Value>) = free.into_iter().unzip();
            substitute(body, &n, &v);
        }
        _ => {
            for child in ast::children(e) {
                substitute(child, names, values);
            }
        }
    }
}

/// `AND` / `OR` in three-valued logic: a side that decides wins over a NULL.
fn logic(op: BinOp, l: Option<bool>, r: Option<bool>) -> Value {
    match (op, l, r) {
        (BinOp::And, Some(false), _) | (BinOp::And, _, Some(false)) => Value::Bool(false),
        (BinOp::And, Some(true), Some(true)) => Value::Bool(true),
        (BinOp::Or, Some(true), _) | (BinOp::Or, _, Some(true)) => Value::Bool(true),
        (BinOp::Or, Some(false), Some(false)) => Value::Bool(false),
        _ => Value::Null,
    }
}

/// `CASE`: the first `THEN` whose `WHEN` equals `subject` (or, without one, is true), else the
/// `ELSE`, else NULL. Later branches are not evaluated.
fn case(
    subject: Option<&Value>,
    whens: &[(Expr, Expr)],
    otherwise: Option<&Expr>,
    ev: impl Fn(&Expr) -> Result<Value, EvalError>,
) -> Result<Value, EvalError> {
    for (when, then) in whens {
        let w = ev(when)?;
        let hit = match subject {
            Some(s) => compare(s, &w) == Some(Ordering::Equal),
            None => truth(&w) == Some(true),
        };
        if hit {
            return ev(then);
        }
    }
    otherwise.map_or(Ok(Value::Null), ev)
}

/// `base[index]`: an array's element (1-based as in ksqlDB, negative counts from the end) or a
/// map's value; NULL when there is none.
fn element(base: Value, index: Value) -> Value {
    match (base, index) {
        (Value::Array(items), Value::Number(i)) => {
            let i = i.as_i64().unwrap_or(0);
            let at = if i > 0 { i - 1 } else { items.len() as i64 + i };
            usize::try_from(at).ok().and_then(|a| items.get(a).cloned()).unwrap_or(Value::Null)
        }
        (Value::Object(map), Value::String(k)) => map.get(&k).cloned().unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

/// `e` with every unqualified column of `schema` bound to its slot — its position in
/// `schema.columns`, which is where rows of that schema hold it. Pseudo columns (`ROWTIME`,
/// `ROWKEY`, `WINDOWSTART`, `WINDOWEND`) stay names unless the schema declares them.
pub(crate) fn bind(e: &Expr, schema: &Schema) -> Expr {
    let mut e = e.clone();
    bind_in(&mut e, schema);
    e
}

fn bind_in(e: &mut Expr, schema: &Schema) {
    if let ExprKind::Column { qualifier: None, name } = &e.kind {
        if let Some(index) = schema.columns.iter().position(|(n, _)| n == name) {
            e.kind = ExprKind::Slot { index, name: name.clone() };
        }
        return;
    }
    for child in ast::children(e) {
        bind_in(child, schema);
    }
}

/// A number or numeric text as an integer (a fraction truncated), as CAST and the JSON
/// coercion of declared columns read one.
pub(crate) fn integral(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|x| x.trunc() as i64)),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i64>().ok().or_else(|| s.parse::<f64>().ok().map(|x| x.trunc() as i64))
        }
        _ => None,
    }
}

/// A number or numeric text as a double.
pub(crate) fn double(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
}

/// A STRUCT field: exact name first, then case-insensitively (JSON producers rarely upper-case).
pub fn field_of(map: &Map<String, Value>, field: &str) -> Value {
    if let Some(v) = map.get(field) {
        return v.clone();
    }
    map.iter().find(|(k, _)| k.eq_ignore_ascii_case(field)).map_or(Value::Null, |(_, v)| v.clone())
}

/// SQL truth: `Some(b)` for a boolean, `None` for NULL or anything else.
pub fn truth(v: &Value) -> Option<bool> {
    v.as_bool()
}

/// Orders two values of compatible types; `None` when either is NULL or they do not compare.
pub fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => Some(x.cmp(&y)),
            _ => x.as_f64()?.partial_cmp(&y.as_f64()?),
        },
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Array(_), Value::Array(_)) | (Value::Object(_), Value::Object(_)) => {
            (a == b).then_some(Ordering::Equal)
        }
        _ => None,
    }
}

fn binary(op: BinOp, l: Value, r: Value, e: &Expr) -> Result<Value, EvalError> {
    if let BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge = op {
        let Some(ord) = compare(&l, &r) else {
            // Arrays and structs only compare for equality.
            return Ok(match (&l, &r, op) {
                (Value::Null, _, _) | (_, Value::Null, _) => Value::Null,
                (_, _, BinOp::Eq) => Value::Bool(l == r),
                (_, _, BinOp::Ne) => Value::Bool(l != r),
                _ => Value::Null,
            });
        };
        return Ok(Value::Bool(match op {
            BinOp::Eq => ord.is_eq(),
            BinOp::Ne => ord.is_ne(),
            BinOp::Lt => ord.is_lt(),
            BinOp::Le => ord.is_le(),
            BinOp::Gt => ord.is_gt(),
            _ => ord.is_ge(),
        }));
    }
    if op == BinOp::Concat {
        return Ok(match (&l, &r) {
            (Value::Null, _) | (_, Value::Null) => Value::Null,
            _ => Value::String(functions::text(&l) + &functions::text(&r)),
        });
    }
    let (x, y) = match (&l, &r) {
        (Value::String(a), Value::String(b)) if op == BinOp::Add => {
            return Ok(Value::String(format!("{a}{b}")));
        }
        (Value::Number(x), Value::Number(y)) => (x, y),
        _ => return Ok(Value::Null),
    };
    if let (Some(a), Some(b)) = (x.as_i64(), y.as_i64()) {
        let zero = || EvalError::DivisionByZero { pos: e.pos };
        return Ok(Value::from(match op {
            BinOp::Add => a.wrapping_add(b),
            BinOp::Sub => a.wrapping_sub(b),
            BinOp::Mul => a.wrapping_mul(b),
            BinOp::Div => a.checked_div(b).ok_or_else(zero)?,
            _ => a.checked_rem(b).ok_or_else(zero)?,
        }));
    }
    let (a, b) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
    Ok(num(match op {
        BinOp::Add => a + b,
        BinOp::Sub => a - b,
        BinOp::Mul => a * b,
        BinOp::Div => a / b,
        _ => a % b,
    }))
}

/// SQL LIKE: `%` any run, `_` one character; the whole string must match.
pub fn like(s: &str, pattern: &str, escape: Option<char>) -> bool {
    let s: Vec<char> = s.chars().collect();
    // The pattern as tokens: `None` for '%', `Some(None)` for '_', `Some(Some(c))` for c; an
    // escaped character is always itself.
    let mut p: Vec<Option<Option<char>>> = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        p.push(match c {
            c if Some(c) == escape => Some(Some(chars.next().unwrap_or(c))),
            '%' => None,
            '_' => Some(None),
            c => Some(Some(c)),
        });
    }
    // Greedy matching with backtracking to the last '%'.
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if j < p.len() && p[j].is_some_and(|t| t.is_none_or(|c| c == s[i])) {
            i += 1;
            j += 1;
        } else if j < p.len() && p[j].is_none() {
            star = Some((j, i));
            j += 1;
        } else if let Some((sj, si)) = star {
            j = sj + 1;
            i = si + 1;
            star = Some((sj, si + 1));
        } else {
            return false;
        }
    }
    p[j..].iter().all(Option::is_none)
}

/// `CAST(v AS ty)`. Strings parse, numbers convert, NULL stays NULL.
pub fn cast(v: Value, ty: &SqlType) -> Result<Value, EvalError> {
    let fail = |v: &Value| EvalError::Cast { value: v.to_string(), to: ty.to_string() };
    if v.is_null() {
        return Ok(v);
    }
    Ok(match ty {
        SqlType::String => Value::String(cast_text(&v)),
        SqlType::Int | SqlType::Bigint | SqlType::Timestamp => {
            let i = match &v {
                Value::Bool(b) => i64::from(*b),
                _ => integral(&v).ok_or_else(|| fail(&v))?,
            };
            // An INT is 32 bits: a wider value wraps, as Java's narrowing does in ksqlDB.
            if *ty == SqlType::Int { Value::from(i as i32) } else { Value::from(i) }
        }
        SqlType::Double => num(double(&v).ok_or_else(|| fail(&v))?),
        SqlType::Boolean => match &v {
            Value::Bool(_) => v,
            Value::String(s) if s.eq_ignore_ascii_case("true") => Value::Bool(true),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Value::Bool(false),
            _ => return Err(fail(&v)),
        },
        SqlType::Array(t) => match v {
            Value::Array(items) => {
                Value::Array(items.into_iter().map(|x| cast(x, t)).collect::<Result<_, _>>()?)
            }
            other => return Err(fail(&other)),
        },
        SqlType::Map(_, t) => match v {
            Value::Object(m) => Value::Object(
                m.into_iter().map(|(k, x)| Ok((k, cast(x, t)?))).collect::<Result<_, _>>()?,
            ),
            other => return Err(fail(&other)),
        },
        SqlType::Struct(fields) => match &v {
            Value::Object(m) => {
                let mut out = Map::new();
                for (name, t) in fields {
                    out.insert(name.clone(), cast(field_of(m, name), t)?);
                }
                Value::Object(out)
            }
            _ => return Err(fail(&v)),
        },
        SqlType::Any => v,
    })
}

/// A value as CAST to VARCHAR writes it: text as it is, scalars as JSON, arrays and maps as
/// ksqlDB (Java) prints them: `[1, 3]`, `{k=1}`.
fn cast_text(v: &Value) -> String {
    match v {
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(cast_text).collect();
            format!("[{}]", inner.join(", "))
        }
        Value::Object(m) => {
            let inner: Vec<String> =
                m.iter().map(|(k, x)| format!("{k}={}", cast_text(x))).collect();
            format!("{{{}}}", inner.join(", "))
        }
        Value::Null => "null".to_owned(),
        other => functions::text(other),
    }
}

/// A row through `WHERE` and the `SELECT` items, as pull and push queries answer it: `None`
/// when the filter is not true or an expression fails.
pub(crate) fn filter_project(
    filter: Option<&Expr>,
    items: &[(String, Expr)],
    row: &Row<'_>,
    registry: &FunctionRegistry,
) -> Option<Map<String, Value>> {
    if let Some(f) = filter
        && truth(&eval(f, row, registry).ok()?) != Some(true)
    {
        return None;
    }
    let mut out = Map::new();
    for (name, e) in items {
        out.insert(name.clone(), eval(e, row, registry).ok()?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::parse_expr;

    fn run(text: &str, row: &Value) -> Value {
        let object = row.as_object().cloned().unwrap_or_default();
        let schema = Schema::new(object.keys().map(|k| (k.clone(), SqlType::Any)).collect());
        let e = bind(&parse_expr(text).unwrap(), &schema);
        let columns: Vec<Value> = object.into_iter().map(|(_, v)| v).collect();
        eval(&e, &Row::new(&columns, 0, &Value::Null), &FunctionRegistry::new()).unwrap()
    }

    #[test]
    fn operators_follow_sql() {
        let row = serde_json::json!({"A": 7, "B": 2, "X": 1.5, "S": "abc", "N": null,
            "ARR": [10, 20, 30], "M": {"k": "v"}, "ST": {"inner": {"deep": 5}}});
        assert_eq!(run("A / B", &row), 3);
        assert_eq!(run("A % B + X", &row), 2.5);
        assert_eq!(run("A > B AND NOT S = 'x'", &row), true);
        assert_eq!(run("N > 1", &row), Value::Null);
        assert_eq!(run("N > 1 OR A = 7", &row), true);
        assert_eq!(run("N IS NULL AND S IS NOT NULL", &row), true);
        assert_eq!(run("S LIKE 'a%' AND S LIKE '_b_' AND S NOT LIKE '%z'", &row), true);
        assert_eq!(run("ARR[1] + ARR[-1]", &row), 40);
        assert_eq!(run("ARR[9]", &row), Value::Null);
        assert_eq!(run("M['k']", &row), "v");
        assert_eq!(run("ST->inner->deep", &row), 5);
        assert_eq!(run("CASE WHEN A > 5 THEN 'big' ELSE 'small' END", &row), "big");
        assert_eq!(run("CASE B WHEN 1 THEN 'one' WHEN 2 THEN 'two' END", &row), "two");
        assert_eq!(run("CAST('42' AS INT) + CAST(A AS DOUBLE)", &row), 49.0);
        assert_eq!(run("CAST(A AS VARCHAR) || S", &row), "7abc");
        assert_eq!(run("A BETWEEN 1 AND 7 AND B IN (1, 2)", &row), true);
        assert_eq!(run("-A", &row), -7);
    }
}
