//! Type checking of expressions against a [`Schema`] (the columns visible to them); the types
//! themselves are [`SqlType`] in `ast`.
//!
//! Values are `serde_json::Value`s; a type says which JSON shapes a column holds. The checker
//! infers each expression's type and refuses what cannot work (`'a' + 1`, `NOT 3`, `x LIKE 5`),
//! naming the column or value and both types. Where a type is not known (a function registered
//! without a signature, an untyped JSON field) it is [`SqlType::Any`] and the check is left to
//! run time.
//!
//! Invariants: checking never evaluates anything; an expression that checks here can still fail
//! on a row only for reasons a row alone shows (a bad CAST, a division by zero, a failing
//! function), which are `EvalError`s.

use crate::ast::{BinOp, Expr, ExprKind, SqlType, mismatch};
use crate::error::SqlError;
use crate::functions::{self, FunctionRegistry};

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
        "ROWPARTITION" => Some(SqlType::Int),
        "ROWOFFSET" => Some(SqlType::Bigint),
        "WINDOWSTART" | "WINDOWEND" if schema.windowed => Some(SqlType::Bigint),
        _ => None,
    }
}

/// Infers expression types over a schema; in post-aggregation expressions `AggRef`s and
/// `KeyRef`s take the types given.
#[derive(Debug)]
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
                self.comparable_with(expr, [&**low, &**high], "BETWEEN")
            }
            ExprKind::InList { expr, list, .. } => self.comparable_with(expr, list, "IN"),
            ExprKind::Case { operand, whens, otherwise } => self.case(operand, whens, otherwise),
            ExprKind::Cast { expr, ty } => {
                let from = self.infer(expr)?;
                if !castable(&from, ty) {
                    return Err(SqlError::Invalid {
                        pos: e.pos,
                        message: format!("cast of {from} to {ty} is not supported"),
                    });
                }
                Ok(ty.clone())
            }
            ExprKind::Index { base, index } => self.index(base, index),
            ExprKind::Field { base, field } => self.field(e, base, field),
            ExprKind::Var(_) => Ok(SqlType::Any),
            ExprKind::Lambda { body, .. } => self.infer(body),
            ExprKind::Struct(fields) => Ok(SqlType::Struct(
                fields
                    .iter()
                    .map(|(n, x)| Ok((n.clone(), self.infer(x)?)))
                    .collect::<Result<_, SqlError>>()?,
            )),
            ExprKind::Map(entries) => {
                let (mut k, mut v) = (SqlType::Any, SqlType::Any);
                for (key, value) in entries {
                    let (kt, vt) = (self.infer(key)?, self.infer(value)?);
                    if k == SqlType::Any {
                        k = kt;
                    }
                    if v == SqlType::Any {
                        v = vt;
                    }
                }
                Ok(SqlType::Map(Box::new(k), Box::new(v)))
            }
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
            ExprKind::Call { name, args, .. } => self.call(e, name, args),
        }
    }

    /// `expr` compared with each of `others` (BETWEEN, IN): a boolean.
    fn comparable_with<'e>(
        &self,
        expr: &Expr,
        others: impl IntoIterator<Item = &'e Expr>,
        context: &str,
    ) -> Result<SqlType, SqlError> {
        let t = self.infer(expr)?;
        for x in others {
            let u = self.infer(x)?;
            if !t.comparable(&u) {
                return Err(mismatch(x, &u, &t.to_string(), context));
            }
        }
        Ok(SqlType::Boolean)
    }

    /// `base[index]`: an array's element or a map's value.
    fn index(&self, base: &Expr, index: &Expr) -> Result<SqlType, SqlError> {
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

    /// `base->field` (`e` is the whole expression).
    fn field(&self, e: &Expr, base: &Expr, field: &str) -> Result<SqlType, SqlError> {
        match self.infer(base)? {
            SqlType::Struct(fields) => {
                fields.iter().find(|(n, _)| n == field).map(|(_, t)| t.clone()).ok_or_else(|| {
                    SqlError::UnknownColumn {
                        pos: e.pos,
                        name: field.to_owned(),
                        known: fields.iter().map(|(n, _)| n.clone()).collect(),
                    }
                })
            }
            SqlType::Any | SqlType::Map(..) => Ok(SqlType::Any),
            other => Err(mismatch(base, &other, "a STRUCT", "->")),
        }
    }

    /// A scalar function call (`e` is the whole expression); aggregates are refused here.
    fn call(&self, e: &Expr, name: &str, args: &[Expr]) -> Result<SqlType, SqlError> {
        if functions::is_aggregate(name) {
            return Err(SqlError::Invalid {
                pos: e.pos,
                message: format!(
                    "aggregate {name} is only allowed in the select list or HAVING of a query with GROUP BY"
                ),
            });
        }
        let types = args.iter().map(|a| self.infer(a)).collect::<Result<Vec<_>, _>>()?;
        if let Some(t) = self.higher_order(e, name, args, &types)? {
            return Ok(t);
        }
        functions::check_call(self.registry, e.pos, name, args, &types)
    }

    /// The type of TRANSFORM, FILTER or REDUCE called with a lambda (`None`: another call).
    fn higher_order(
        &self,
        e: &Expr,
        name: &str,
        args: &[Expr],
        types: &[SqlType],
    ) -> Result<Option<SqlType>, SqlError> {
        let lambdas = args.iter().filter(|a| matches!(a.kind, ExprKind::Lambda { .. })).count();
        if lambdas == 0 || !matches!(name, "TRANSFORM" | "FILTER" | "REDUCE") {
            return Ok(None);
        }
        let (collection, last) = (types.first().cloned().unwrap_or(SqlType::Any), types.last());
        let map = matches!(collection, SqlType::Map(..));
        let (wanted, ty) = match name {
            "TRANSFORM" if map => (
                3,
                SqlType::Map(
                    Box::new(SqlType::String),
                    Box::new(last.cloned().unwrap_or(SqlType::Any)),
                ),
            ),
            "TRANSFORM" => (2, SqlType::Array(Box::new(last.cloned().unwrap_or(SqlType::Any)))),
            "FILTER" => (2, collection.clone()),
            _ => (3, types.get(1).cloned().unwrap_or(SqlType::Any)),
        };
        if args.len() != wanted || !matches!(args[wanted - 1].kind, ExprKind::Lambda { .. }) {
            return Err(SqlError::Arity {
                pos: e.pos,
                name: name.to_owned(),
                expected: format!("{wanted} (the last a lambda)"),
                got: args.len(),
            });
        }
        if !matches!(collection, SqlType::Array(_) | SqlType::Map(..) | SqlType::Any) {
            return Err(mismatch(
                &args[0],
                &collection,
                "an ARRAY or a MAP",
                &format!("function {name}"),
            ));
        }
        Ok(Some(ty))
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
            BinOp::Eq
            | BinOp::Ne
            | BinOp::Lt
            | BinOp::Le
            | BinOp::Gt
            | BinOp::Ge
            | BinOp::Distinct
            | BinOp::NotDistinct => {
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

/// Whether `CAST(x AS to)` is allowed for an `x` of type `from` (ksqlDB's rules): anything to
/// VARCHAR; numbers, text and timestamps among themselves; text to BOOLEAN; arrays, maps and
/// structs to their own kind when their elements can be cast. Text never becomes an array, map
/// or struct.
pub(crate) fn castable(from: &SqlType, to: &SqlType) -> bool {
    use SqlType::*;
    let scalar = |t: &SqlType| matches!(t, Int | Bigint | Double | Timestamp | String);
    match (from, to) {
        (Any, _) | (_, Any) | (_, String) => true,
        (a, b) if a == b => true,
        (a, b) if scalar(a) && matches!(b, Int | Bigint | Double | Timestamp) => true,
        (String | Boolean, Boolean) => true,
        (Array(a), Array(b)) => castable(a, b),
        (Map(ka, va), Map(kb, vb)) => castable(ka, kb) && castable(va, vb),
        (Struct(_), Struct(_)) => true,
        _ => false,
    }
}
