//! SQL types, and type checking of expressions against a schema.
//!
//! Values are `serde_json::Value`s; a type says which JSON shapes a column holds: VARCHAR/STRING
//! → string, INT/BIGINT → integer, DOUBLE (and `DOUBLE(p, s)` / `DECIMAL(p, s)`, kept as a
//! double) → number, BOOLEAN → bool, TIMESTAMP → integer ms since the epoch, ARRAY<T> → array,
//! MAP<VARCHAR, T> → object, STRUCT<a T, ...> → object. `NULL` fits every type.
//!
//! The checker infers each expression's type and refuses what cannot work (`'a' + 1`, `NOT 3`,
//! `x LIKE 5`), naming the column or value and both types. Where a type is not known (a
//! function registered without a signature, an untyped JSON field) it is [`SqlType::Any`] and
//! the check is left to run time.

use std::fmt;

use super::ast::{BinOp, Expr, ExprKind};
use super::error::SqlError;
use super::functions::{self, FunctionRegistry};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum SqlType {
    String,
    Int,
    Bigint,
    Double,
    Boolean,
    Timestamp,
    Array(Box<SqlType>),
    Map(Box<SqlType>, Box<SqlType>),
    Struct(Vec<(String, SqlType)>),
    /// Unknown until run time.
    Any,
}

impl fmt::Display for SqlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SqlType::String => f.write_str("VARCHAR"),
            SqlType::Int => f.write_str("INT"),
            SqlType::Bigint => f.write_str("BIGINT"),
            SqlType::Double => f.write_str("DOUBLE"),
            SqlType::Boolean => f.write_str("BOOLEAN"),
            SqlType::Timestamp => f.write_str("TIMESTAMP"),
            SqlType::Array(t) => write!(f, "ARRAY<{t}>"),
            SqlType::Map(k, v) => write!(f, "MAP<{k}, {v}>"),
            SqlType::Struct(fields) => {
                f.write_str("STRUCT<")?;
                for (i, (n, t)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{n} {t}")?;
                }
                f.write_str(">")
            }
            SqlType::Any => f.write_str("ANY"),
        }
    }
}

impl SqlType {
    pub fn is_numeric(&self) -> bool {
        matches!(self, SqlType::Int | SqlType::Bigint | SqlType::Double | SqlType::Any)
    }

    /// Integers and timestamps (ms) mix in arithmetic and comparisons.
    fn is_integral(&self) -> bool {
        matches!(self, SqlType::Int | SqlType::Bigint | SqlType::Timestamp)
    }

    /// Whether values of the two types can be compared.
    pub fn comparable(&self, other: &SqlType) -> bool {
        let num = |t: &SqlType| t.is_numeric() || t.is_integral();
        *self == SqlType::Any
            || *other == SqlType::Any
            || (num(self) && num(other))
            || self == other
            || matches!((self, other), (SqlType::Array(_), SqlType::Array(_)))
    }

    /// The type of `a op b` for numbers: DOUBLE wins, then BIGINT.
    fn widen(a: &SqlType, b: &SqlType) -> SqlType {
        match (a, b) {
            (SqlType::Any, _) | (_, SqlType::Any) => SqlType::Any,
            (SqlType::Double, _) | (_, SqlType::Double) => SqlType::Double,
            (SqlType::Int, SqlType::Int) => SqlType::Int,
            _ => SqlType::Bigint,
        }
    }
}

/// Columns visible to an expression, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Schema {
    pub columns: Vec<(String, SqlType)>,
    /// Whether `WINDOWSTART` / `WINDOWEND` exist (windowed aggregates).
    pub windowed: bool,
}

impl Schema {
    pub fn new(columns: Vec<(String, SqlType)>) -> Self {
        Self { columns, windowed: false }
    }

    pub fn get(&self, name: &str) -> Option<&SqlType> {
        self.columns.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    pub fn names(&self) -> Vec<String> {
        self.columns.iter().map(|(n, _)| n.clone()).collect()
    }
}

/// The type of a pseudo column, if `name` is one (`ROWTIME`, `ROWKEY`, `WINDOWSTART`,
/// `WINDOWEND`).
pub fn pseudo_column(name: &str, schema: &Schema) -> Option<SqlType> {
    match name {
        "ROWTIME" => Some(SqlType::Bigint),
        "ROWKEY" => Some(SqlType::Any),
        "WINDOWSTART" | "WINDOWEND" if schema.windowed => Some(SqlType::Bigint),
        _ => None,
    }
}

/// How an expression reads in a type error: "column X", "value 'a'", or "the result of F(...)".
pub fn describe(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Column { name, .. } | ExprKind::Slot { name, .. } => format!("column {name}"),
        ExprKind::Literal(v) => format!("value {v}"),
        ExprKind::Call { name, .. } => format!("the result of {name}(...)"),
        ExprKind::Field { field, .. } => format!("field {field}"),
        _ => "the expression".to_owned(),
    }
}

pub(crate) fn mismatch(e: &Expr, found: &SqlType, expected: &str, context: &str) -> SqlError {
    SqlError::TypeMismatch {
        pos: e.pos,
        what: describe(e),
        found: found.to_string(),
        expected: expected.to_owned(),
        context: context.to_owned(),
    }
}

/// Infers expression types over a schema; aggregate calls are typed by `agg_type`.
pub struct Checker<'a> {
    pub schema: &'a Schema,
    pub registry: &'a FunctionRegistry,
    /// Types of `AggRef(i)` and `KeyRef(i)` in post-aggregation expressions.
    pub aggs: &'a [SqlType],
    pub keys: &'a [SqlType],
}

impl Checker<'_> {
    pub fn infer(&self, e: &Expr) -> Result<SqlType, SqlError> {
        match &e.kind {
            ExprKind::Literal(v) => Ok(literal_type(v)),
            ExprKind::Column { name, .. } => self
                .schema
                .get(name)
                .cloned()
                .or_else(|| pseudo_column(name, self.schema))
                .ok_or_else(|| SqlError::UnknownColumn {
                    pos: e.pos,
                    name: name.clone(),
                    known: self.schema.names(),
                }),
            ExprKind::Slot { index, .. } => {
                Ok(self.schema.columns.get(*index).map_or(SqlType::Any, |(_, t)| t.clone()))
            }
            ExprKind::Star => Ok(SqlType::Any),
            ExprKind::AggRef(i) => Ok(self.aggs.get(*i).cloned().unwrap_or(SqlType::Any)),
            ExprKind::KeyRef(i) => Ok(self.keys.get(*i).cloned().unwrap_or(SqlType::Any)),
            ExprKind::Binary { op, left, right } => self.binary(*op, left, right),
            ExprKind::Not(x) => {
                self.expect_bool(x, "NOT")?;
                Ok(SqlType::Boolean)
            }
            ExprKind::Neg(x) => {
                let t = self.infer(x)?;
                if !t.is_numeric() {
                    return Err(mismatch(x, &t, "a number", "unary -"));
                }
                Ok(t)
            }
            ExprKind::IsNull { expr, .. } => self.infer(expr).map(|_| SqlType::Boolean),
            ExprKind::Like { expr, pattern, .. } => {
                for x in [expr, pattern] {
                    let t = self.infer(x)?;
                    if !matches!(t, SqlType::String | SqlType::Any) {
                        return Err(mismatch(x, &t, "VARCHAR", "LIKE"));
                    }
                }
                Ok(SqlType::Boolean)
            }
            ExprKind::Between { expr, low, high, .. } => {
                let t = self.infer(expr)?;
                for x in [low, high] {
                    let u = self.infer(x)?;
                    if !t.comparable(&u) {
                        return Err(mismatch(x, &u, &t.to_string(), "BETWEEN"));
                    }
                }
                Ok(SqlType::Boolean)
            }
            ExprKind::InList { expr, list, .. } => {
                let t = self.infer(expr)?;
                for x in list {
                    let u = self.infer(x)?;
                    if !t.comparable(&u) {
                        return Err(mismatch(x, &u, &t.to_string(), "IN"));
                    }
                }
                Ok(SqlType::Boolean)
            }
            ExprKind::Case { operand, whens, otherwise } => self.case(operand, whens, otherwise),
            ExprKind::Cast { expr, ty } => self.infer(expr).map(|_| ty.clone()),
            ExprKind::Index { base, index } => {
                let b = self.infer(base)?;
                let i = self.infer(index)?;
                match b {
                    SqlType::Array(t) => {
                        if !matches!(i, SqlType::Int | SqlType::Bigint | SqlType::Any) {
                            return Err(mismatch(index, &i, "an INT index", "array access [ ]"));
                        }
                        Ok(*t)
                    }
                    SqlType::Map(_, v) => Ok(*v),
                    SqlType::Any => Ok(SqlType::Any),
                    other => Err(mismatch(base, &other, "an ARRAY or MAP", "[ ]")),
                }
            }
            ExprKind::Field { base, field } => match self.infer(base)? {
                SqlType::Struct(fields) => {
                    fields.iter().find(|(n, _)| n == field).map(|(_, t)| t.clone()).ok_or_else(
                        || SqlError::UnknownColumn {
                            pos: e.pos,
                            name: field.clone(),
                            known: fields.iter().map(|(n, _)| n.clone()).collect(),
                        },
                    )
                }
                SqlType::Any | SqlType::Map(..) => Ok(SqlType::Any),
                other => Err(mismatch(base, &other, "a STRUCT", "->")),
            },
            ExprKind::Array(items) => {
                let mut t = SqlType::Any;
                for x in items {
                    let u = self.infer(x)?;
                    if t == SqlType::Any {
                        t = u;
                    }
                }
                Ok(SqlType::Array(Box::new(t)))
            }
            ExprKind::Call { name, args, .. } => {
                if functions::is_aggregate(name) {
                    return Err(SqlError::Invalid {
                        pos: e.pos,
                        message: format!(
                            "aggregate {name} is only allowed in the select list or HAVING of a query with GROUP BY"
                        ),
                    });
                }
                let types = args.iter().map(|a| self.infer(a)).collect::<Result<Vec<_>, _>>()?;
                functions::check_call(self.registry, e.pos, name, args, &types)
            }
        }
    }

    pub fn expect_bool(&self, e: &Expr, context: &str) -> Result<(), SqlError> {
        let t = self.infer(e)?;
        if matches!(t, SqlType::Boolean | SqlType::Any) {
            Ok(())
        } else {
            Err(mismatch(e, &t, "BOOLEAN", context))
        }
    }

    fn binary(&self, op: BinOp, left: &Expr, right: &Expr) -> Result<SqlType, SqlError> {
        let context = format!("operator {}", op.symbol());
        match op {
            BinOp::And | BinOp::Or => {
                self.expect_bool(left, &context)?;
                self.expect_bool(right, &context)?;
                Ok(SqlType::Boolean)
            }
            BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                let (l, r) = (self.infer(left)?, self.infer(right)?);
                if !l.comparable(&r) {
                    return Err(mismatch(right, &r, &l.to_string(), &context));
                }
                Ok(SqlType::Boolean)
            }
            BinOp::Concat => Ok(SqlType::String),
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod => {
                let (l, r) = (self.infer(left)?, self.infer(right)?);
                if op == BinOp::Add && l == SqlType::String && r == SqlType::String {
                    return Ok(SqlType::String);
                }
                let ok = |t: &SqlType| t.is_numeric() || t.is_integral();
                if !ok(&l) {
                    return Err(mismatch(left, &l, "a number", &context));
                }
                if !ok(&r) {
                    return Err(mismatch(right, &r, "a number", &context));
                }
                Ok(SqlType::widen(&l, &r))
            }
        }
    }

    fn case(
        &self,
        operand: &Option<Box<Expr>>,
        whens: &[(Expr, Expr)],
        otherwise: &Option<Box<Expr>>,
    ) -> Result<SqlType, SqlError> {
        let op_type = operand.as_ref().map(|o| self.infer(o)).transpose()?;
        let mut result = SqlType::Any;
        for (when, then) in whens {
            match &op_type {
                Some(t) => {
                    let u = self.infer(when)?;
                    if !t.comparable(&u) {
                        return Err(mismatch(when, &u, &t.to_string(), "CASE WHEN"));
                    }
                }
                None => self.expect_bool(when, "CASE WHEN")?,
            }
            let t = self.infer(then)?;
            if result == SqlType::Any {
                result = t;
            } else if t != SqlType::Any && !result.comparable(&t) {
                return Err(mismatch(then, &t, &result.to_string(), "CASE (all branches)"));
            }
        }
        if let Some(o) = otherwise {
            let t = self.infer(o)?;
            if result == SqlType::Any {
                result = t;
            } else if t != SqlType::Any && !result.comparable(&t) {
                return Err(mismatch(o, &t, &result.to_string(), "CASE ELSE"));
            }
        }
        Ok(result)
    }
}

pub fn literal_type(v: &serde_json::Value) -> SqlType {
    match v {
        serde_json::Value::String(_) => SqlType::String,
        serde_json::Value::Bool(_) => SqlType::Boolean,
        serde_json::Value::Number(n) if n.is_f64() => SqlType::Double,
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) if i32::try_from(i).is_ok() => SqlType::Int,
            _ => SqlType::Bigint,
        },
        _ => SqlType::Any,
    }
}
