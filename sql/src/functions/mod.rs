//! Scalar functions: ksqlDB's built-ins, with ksqlDB's semantics, and the [`FunctionRegistry`]
//! of user-defined ones.
//!
//! This module owns the registry, the signature of every built-in (`Signature`: arity,
//! parameter kinds, result type, NULL handling), [`check_call`] (type-checking a call at
//! compile time) and [`call`] (evaluating one on `serde_json::Value`s). The built-ins live in
//! one submodule per family, each with its signatures and its evaluation: `strings`, `masks`,
//! `regexes`, `encodings`, `numbers`, `arrays`, `maps`, `json` (over `json_tree`, a
//! Jackson-like JSON reader and writer), `url`, `timestamps` and `nulls`, each listing its
//! functions in its doc; `values` holds the Java-like comparisons and printing they share.
//!
//! Aggregates (`COUNT`, `SUM`, …) are not here: see `aggregate.rs`; only their names are, so
//! that the checker can refuse them outside GROUP BY.
//!
//! Invariants:
//! - a built-in is a pure function of its arguments: no clock (`UNIX_TIMESTAMP()` is refused
//!   at compile time), no randomness, no locale, no time zone database (UTC and fixed
//!   offsets only);
//! - a *strict* built-in (most of them) gives NULL when any argument is NULL, before it runs;
//!   the others give NULL a meaning of their own, as ksqlDB's do (`CONCAT` skips it,
//!   `ARRAY_CONTAINS` answers false, `TO_JSON_STRING` writes `null`, …);
//! - a failure is an [`EvalError`] naming the function, never a panic; the caller
//!   (`expr.rs`) turns it into NULL for the row, as ksqlDB does;
//! - NaN and infinities, which JSON cannot hold, are NULL ([`num`]);
//! - string positions and lengths count Unicode scalar values (Java counts UTF-16 units: they
//!   differ only for characters above U+FFFF).
//!
//! Below expression evaluation (`expr` calls in here, not the reverse): the value helpers
//! both share ([`num`], [`text`]) live here.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde_json::{Number, Value};

use crate::ast::{Expr, ExprKind, SqlType, mismatch};
use crate::error::{EvalError, Pos, SqlError};

mod arrays;
mod encodings;
mod json;
mod json_tree;
mod maps;
mod masks;
mod nulls;
mod numbers;
mod regexes;
mod strings;
mod timestamps;
mod url;
mod values;

pub use numbers::geo_distance_km;
pub(crate) use values::java_double;

/// A user-defined scalar function: arguments in, a value or a reason out.
pub type ScalarFn = Arc<dyn Fn(&[Value]) -> Result<Value, String> + Send + Sync>;

#[derive(Clone)]
struct UserFunction {
    /// `None`: any arguments, checked by the function itself.
    params: Option<Vec<SqlType>>,
    returns: SqlType,
    f: ScalarFn,
}

/// User-defined scalar functions, registered from Rust before statements are compiled.
///
/// ```
/// use eddy_sql::{FunctionRegistry, SqlType};
/// let mut fns = FunctionRegistry::new();
/// fns.register("DOUBLE_IT", Some(vec![SqlType::Bigint]), SqlType::Bigint, |args| {
///     Ok(args[0].as_i64().map(|n| (n * 2).into()).unwrap_or(serde_json::Value::Null))
/// });
/// assert!(fns.contains("double_it"));
/// ```
#[derive(Clone, Default)]
pub struct FunctionRegistry {
    fns: BTreeMap<String, UserFunction>,
}

impl fmt::Debug for FunctionRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FunctionRegistry").field("functions", &self.fns.keys()).finish()
    }
}

impl FunctionRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `name` (case-insensitive). With `params`, calls are type-checked at compile
    /// time against them (`SqlType::Any` accepts anything); the function is called only when
    /// the arguments were evaluated (NULLs included: it decides what NULL means).
    pub fn register(
        &mut self,
        name: &str,
        params: Option<Vec<SqlType>>,
        returns: SqlType,
        f: impl Fn(&[Value]) -> Result<Value, String> + Send + Sync + 'static,
    ) -> &mut Self {
        let function = UserFunction { params, returns, f: Arc::new(f) };
        self.fns.insert(name.to_ascii_uppercase(), function);
        self
    }

    pub fn contains(&self, name: &str) -> bool {
        self.fns.contains_key(&name.to_ascii_uppercase())
    }
}

/// Names of the aggregate functions (compiled by `aggregate.rs`).
pub const AGGREGATES: [&str; 13] = [
    "COUNT",
    "SUM",
    "AVG",
    "MIN",
    "MAX",
    "LATEST_BY_OFFSET",
    "EARLIEST_BY_OFFSET",
    "COUNT_DISTINCT",
    "TOPK",
    "TOPKDISTINCT",
    "COLLECT_LIST",
    "COLLECT_SET",
    "HISTOGRAM",
];

pub fn is_aggregate(name: &str) -> bool {
    AGGREGATES.contains(&name)
}

/// The kind of value a built-in's parameter takes (the last kind repeats for variadic ones).
#[derive(Clone, Copy, Debug, PartialEq)]
enum P {
    /// VARCHAR.
    Str,
    /// INT, BIGINT or DOUBLE.
    Num,
    /// INT or BIGINT (or TIMESTAMP, which eddy keeps as integer milliseconds).
    Int,
    Bool,
    /// TIMESTAMP.
    Ts,
    /// Any ARRAY.
    Array,
    /// Any MAP.
    Map,
    Any,
}

impl P {
    /// Whether an argument of type `t` fits, and what the error says is needed.
    fn accepts(self, t: &SqlType) -> (bool, &'static str) {
        let any = *t == SqlType::Any;
        match self {
            P::Str => (any || *t == SqlType::String, "VARCHAR"),
            P::Num => (t.is_numeric(), "a number (INT, BIGINT or DOUBLE)"),
            P::Int => (
                any || matches!(t, SqlType::Int | SqlType::Bigint | SqlType::Timestamp),
                "an integer (INT, BIGINT or TIMESTAMP)",
            ),
            P::Bool => (any || *t == SqlType::Boolean, "BOOLEAN"),
            P::Ts => (any || *t == SqlType::Timestamp, "a TIMESTAMP"),
            P::Array => (any || matches!(t, SqlType::Array(_)), "an ARRAY"),
            P::Map => (any || matches!(t, SqlType::Map(..)), "a MAP"),
            P::Any => (true, ""),
        }
    }
}

/// A call's arguments as the checker sees them.
struct Args<'a> {
    /// The function's name, upper case.
    name: &'a str,
    exprs: &'a [Expr],
    types: &'a [SqlType],
}

impl Args<'_> {
    fn len(&self) -> usize {
        self.types.len()
    }

    /// The type of argument `i` (ANY past the end).
    fn ty(&self, i: usize) -> &SqlType {
        self.types.get(i).unwrap_or(&SqlType::Any)
    }

    /// Whether argument `i` is the literal NULL.
    fn is_null_literal(&self, i: usize) -> bool {
        self.exprs.get(i).is_some_and(|e| matches!(e.kind, ExprKind::Literal(Value::Null)))
    }
}

/// Why a call's arguments do not fit a built-in beyond the per-parameter kinds.
#[derive(Debug)]
enum CheckError {
    /// Argument `index` should be `expected`.
    Arg {
        index: usize,
        expected: String,
    },
    /// The number of arguments (the text says what is allowed).
    Arity(String),
    Invalid(String),
    Unsupported(String),
}

/// The result type of a built-in, from its arguments (called after the per-parameter checks).
type Returns = fn(&Args<'_>) -> Result<SqlType, CheckError>;

/// A built-in's signature.
struct Signature {
    min: usize,
    /// `usize::MAX`: variadic.
    max: usize,
    params: &'static [P],
    returns: Returns,
    /// NULL in → NULL out, decided before the function runs.
    strict: bool,
}

impl Signature {
    fn new(min: usize, max: usize, params: &'static [P], returns: Returns) -> Self {
        Signature { min, max, params, returns, strict: true }
    }

    /// For a function that gives NULL arguments a meaning of its own.
    fn lenient(self) -> Self {
        Signature { strict: false, ..self }
    }
}

/// Result types most signatures use.
mod ret {
    use super::{Args, CheckError, SqlType};

    pub(super) fn string(_: &Args<'_>) -> Result<SqlType, CheckError> {
        Ok(SqlType::String)
    }
    pub(super) fn int(_: &Args<'_>) -> Result<SqlType, CheckError> {
        Ok(SqlType::Int)
    }
    pub(super) fn bigint(_: &Args<'_>) -> Result<SqlType, CheckError> {
        Ok(SqlType::Bigint)
    }
    pub(super) fn double(_: &Args<'_>) -> Result<SqlType, CheckError> {
        Ok(SqlType::Double)
    }
    pub(super) fn boolean(_: &Args<'_>) -> Result<SqlType, CheckError> {
        Ok(SqlType::Boolean)
    }
    pub(super) fn strings(_: &Args<'_>) -> Result<SqlType, CheckError> {
        Ok(SqlType::Array(Box::new(SqlType::String)))
    }
    pub(super) fn string_map(_: &Args<'_>) -> Result<SqlType, CheckError> {
        Ok(SqlType::Map(Box::new(SqlType::String), Box::new(SqlType::String)))
    }
    /// The type of the first argument.
    pub(super) fn first(args: &Args<'_>) -> Result<SqlType, CheckError> {
        Ok(args.ty(0).clone())
    }
}

/// A family of built-ins (one module): the signature of each of its names, and how it
/// evaluates a call of one (after the NULL rule).
struct Family {
    signature: fn(&str) -> Option<Signature>,
    eval: fn(&str, &[Value]) -> Result<Value, String>,
}

const FAMILIES: [Family; 11] = [
    Family { signature: strings::signature, eval: strings::eval },
    Family { signature: masks::signature, eval: masks::eval },
    Family { signature: regexes::signature, eval: regexes::eval },
    Family { signature: encodings::signature, eval: encodings::eval },
    Family { signature: numbers::signature, eval: numbers::eval },
    Family { signature: arrays::signature, eval: arrays::eval },
    Family { signature: maps::signature, eval: maps::eval },
    Family { signature: json::signature, eval: json::eval },
    Family { signature: url::signature, eval: url::eval },
    Family { signature: timestamps::signature, eval: timestamps::eval },
    Family { signature: nulls::signature, eval: nulls::eval },
];

/// The signature of built-in `name` (upper case).
fn signature(name: &str) -> Option<Signature> {
    FAMILIES.iter().find_map(|f| (f.signature)(name))
}

/// Evaluates built-in `name` (its NULL rule already applied); `None` for an unknown name.
fn evaluate(name: &str, args: &[Value]) -> Option<Result<Value, String>> {
    let family = FAMILIES.iter().find(|f| (f.signature)(name).is_some())?;
    Some((family.eval)(name, args))
}

/// Checks a call's arguments; returns its type.
pub fn check_call(
    registry: &FunctionRegistry,
    pos: Pos,
    name: &str,
    args: &[Expr],
    types: &[SqlType],
) -> Result<SqlType, SqlError> {
    if let Some(user) = registry.fns.get(name) {
        return check_user_call(user, pos, name, args, types);
    }
    let Some(sig) = signature(name) else {
        return Err(SqlError::UnknownFunction { pos, name: name.to_owned() });
    };
    let arity = |expected: String| SqlError::Arity {
        pos,
        name: name.to_owned(),
        expected,
        got: args.len(),
    };
    if args.len() < sig.min || args.len() > sig.max {
        let expected = match (sig.min, sig.max) {
            (a, b) if a == b => a.to_string(),
            (a, usize::MAX) => format!("at least {a}"),
            (a, b) => format!("{a} to {b}"),
        };
        return Err(arity(expected));
    }
    let context = format!("function {name}");
    for (i, (arg, t)) in args.iter().zip(types).enumerate() {
        let p = sig.params.get(i).or(sig.params.last()).copied().unwrap_or(P::Any);
        let (ok, want) = p.accepts(t);
        if !ok {
            return Err(mismatch(arg, t, want, &context));
        }
    }
    (sig.returns)(&Args { name, exprs: args, types }).map_err(|e| match e {
        CheckError::Arg { index, expected } => match (args.get(index), types.get(index)) {
            (Some(arg), Some(t)) => mismatch(arg, t, &expected, &context),
            _ => arity(expected),
        },
        CheckError::Arity(expected) => arity(expected),
        CheckError::Invalid(message) => SqlError::Invalid { pos, message },
        CheckError::Unsupported(why) => {
            SqlError::Unsupported { pos, what: format!("{name}(...)"), why }
        }
    })
}

fn check_user_call(
    user: &UserFunction,
    pos: Pos,
    name: &str,
    args: &[Expr],
    types: &[SqlType],
) -> Result<SqlType, SqlError> {
    let Some(params) = &user.params else { return Ok(user.returns.clone()) };
    if params.len() != args.len() {
        return Err(SqlError::Arity {
            pos,
            name: name.to_owned(),
            expected: params.len().to_string(),
            got: args.len(),
        });
    }
    for ((arg, t), want) in args.iter().zip(types).zip(params) {
        let ok = *want == SqlType::Any
            || *t == SqlType::Any
            || t == want
            || (want.is_numeric() && t.is_numeric());
        if !ok {
            return Err(mismatch(arg, t, &want.to_string(), &format!("function {name}")));
        }
    }
    Ok(user.returns.clone())
}

/// Calls a function on evaluated arguments.
pub fn call(registry: &FunctionRegistry, name: &str, args: &[Value]) -> Result<Value, EvalError> {
    if let Some(user) = registry.fns.get(name) {
        return (user.f)(args)
            .map_err(|message| EvalError::Function { function: name.to_owned(), message });
    }
    let fail = |message: String| EvalError::Function { function: name.to_owned(), message };
    let strict = signature(name).is_none_or(|sig| sig.strict);
    if strict && args.iter().any(Value::is_null) {
        return Ok(Value::Null);
    }
    match evaluate(name, args) {
        Some(result) => result.map_err(fail),
        None => Err(fail("not a scalar function".into())),
    }
}

/// A double as a JSON number (NaN and infinities, which JSON cannot hold, are NULL).
pub fn num(x: f64) -> Value {
    Number::from_f64(x).map_or(Value::Null, Value::Number)
}

/// A value as text: strings as they are, other values as JSON.
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;
