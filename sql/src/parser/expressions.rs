//! The expression half of the parser: precedence climbing by one function per level, loosest
//! first (OR, AND, NOT, comparisons, + - ||, * / %, unary, postfix `[i]` and `->`, primaries).
//!
//! Invariant: a binary operator's expression starts where its left operand does, so errors
//! about it point at the start of the whole expression.

use serde_json::Value;

use super::{Parser, RESERVED};
use crate::ast::{BinOp, Expr, ExprKind};
use crate::error::{Pos, SqlError};
use crate::lexer::Tok;

impl Parser {
    // Expressions, loosest first.

    pub(super) fn expr(&mut self) -> Result<Expr, SqlError> {
        self.or()
    }

    fn or(&mut self) -> Result<Expr, SqlError> {
        let mut left = self.and()?;
        while self.is_word("OR") {
            self.advance();
            let right = self.and()?;
            left = bin(BinOp::Or, left, right);
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, SqlError> {
        let mut left = self.not()?;
        while self.is_word("AND") {
            self.advance();
            let right = self.not()?;
            left = bin(BinOp::And, left, right);
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, SqlError> {
        let pos = self.pos();
        if self.eat_word("NOT") {
            let e = self.not()?;
            return Ok(Expr::new(pos, ExprKind::Not(Box::new(e))));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, SqlError> {
        let left = self.additive()?;
        let op = match self.peek() {
            Tok::Sym("=") => Some(BinOp::Eq),
            Tok::Sym("!=") | Tok::Sym("<>") => Some(BinOp::Ne),
            Tok::Sym("<") => Some(BinOp::Lt),
            Tok::Sym("<=") => Some(BinOp::Le),
            Tok::Sym(">") => Some(BinOp::Gt),
            Tok::Sym(">=") => Some(BinOp::Ge),
            _ => None,
        };
        if let Some(op) = op {
            self.advance();
            let right = self.additive()?;
            return Ok(bin(op, left, right));
        }
        if self.eat_word("IS") {
            let negated = self.eat_word("NOT");
            if self.eat_word("DISTINCT") {
                self.expect_word("FROM")?;
                let right = self.additive()?;
                let op = if negated { BinOp::NotDistinct } else { BinOp::Distinct };
                return Ok(bin(op, left, right));
            }
            if !self.eat_word("NULL") {
                return Err(self.error("NULL or DISTINCT FROM"));
            }
            return Ok(Expr::new(left.pos, ExprKind::IsNull { expr: Box::new(left), negated }));
        }
        let negated = self.is_word("NOT")
            && matches!(self.peek_at(1), Tok::Word(w) if w == "LIKE" || w == "BETWEEN" || w == "IN");
        if negated {
            self.advance();
        }
        if self.eat_word("LIKE") {
            let pattern = Box::new(self.additive()?);
            let escape = if self.eat_word("ESCAPE") {
                let at = self.pos();
                match self.advance() {
                    Tok::Str(s) if s.chars().count() == 1 => s.chars().next(),
                    _ => {
                        return Err(SqlError::Syntax {
                            pos: at,
                            message: "ESCAPE takes one character in quotes, like ESCAPE '!'".into(),
                        });
                    }
                }
            } else {
                None
            };
            return Ok(Expr::new(
                left.pos,
                ExprKind::Like { expr: Box::new(left), pattern, negated, escape },
            ));
        }
        if self.eat_word("BETWEEN") {
            let low = Box::new(self.additive()?);
            self.expect_word("AND")?;
            let high = Box::new(self.additive()?);
            return Ok(Expr::new(
                left.pos,
                ExprKind::Between { expr: Box::new(left), low, high, negated },
            ));
        }
        if self.eat_word("IN") {
            self.expect_sym("(")?;
            let list = self.expr_list(")")?;
            return Ok(Expr::new(
                left.pos,
                ExprKind::InList { expr: Box::new(left), list, negated },
            ));
        }
        Ok(left)
    }

    fn additive(&mut self) -> Result<Expr, SqlError> {
        let mut left = self.multiplicative()?;
        loop {
            let op = match self.peek() {
                Tok::Sym("+") => BinOp::Add,
                Tok::Sym("-") => BinOp::Sub,
                Tok::Sym("||") => BinOp::Concat,
                _ => return Ok(left),
            };
            self.advance();
            let right = self.multiplicative()?;
            left = bin(op, left, right);
        }
    }

    fn multiplicative(&mut self) -> Result<Expr, SqlError> {
        let mut left = self.unary()?;
        loop {
            let op = match self.peek() {
                Tok::Sym("*") => BinOp::Mul,
                Tok::Sym("/") => BinOp::Div,
                Tok::Sym("%") => BinOp::Mod,
                _ => return Ok(left),
            };
            self.advance();
            let right = self.unary()?;
            left = bin(op, left, right);
        }
    }

    fn unary(&mut self) -> Result<Expr, SqlError> {
        let pos = self.pos();
        if self.eat_sym("-") {
            let e = self.unary()?;
            return Ok(match e.kind {
                ExprKind::Literal(Value::Number(n)) if n.is_i64() => {
                    Expr::new(pos, ExprKind::Literal(Value::from(-n.as_i64().unwrap_or(0))))
                }
                ExprKind::Literal(Value::Number(n)) if n.is_f64() => {
                    Expr::new(pos, ExprKind::Literal(Value::from(-n.as_f64().unwrap_or(0.0))))
                }
                kind => Expr::new(pos, ExprKind::Neg(Box::new(Expr::new(e.pos, kind)))),
            });
        }
        if self.eat_sym("+") {
            return self.unary();
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Result<Expr, SqlError> {
        let mut e = self.primary()?;
        loop {
            let pos = self.pos();
            if self.eat_sym("[") {
                let index = self.expr()?;
                self.expect_sym("]")?;
                e = Expr::new(pos, ExprKind::Index { base: Box::new(e), index: Box::new(index) });
            } else if self.eat_sym("->") {
                // Any word is a field name here, reserved or not.
                let field = match self.peek().clone() {
                    Tok::Word(w) | Tok::Quoted(w) => {
                        self.advance();
                        w
                    }
                    _ => return Err(self.error("a field name after ->")),
                };
                e = Expr::new(pos, ExprKind::Field { base: Box::new(e), field });
            } else {
                return Ok(e);
            }
        }
    }

    /// A call's arguments after its `(`: expressions or lambdas (`x => e`, `(a, b) => e`).
    fn call_args(&mut self) -> Result<Vec<Expr>, SqlError> {
        let mut list = Vec::new();
        if self.eat_sym(")") {
            return Ok(list);
        }
        loop {
            list.push(match self.lambda_params() {
                Some(params) => {
                    let pos = self.pos();
                    let mut body = self.expr()?;
                    bind_vars(&mut body, &params);
                    Expr::new(pos, ExprKind::Lambda { params, body: Box::new(body) })
                }
                None => self.expr()?,
            });
            if !self.eat_sym(",") {
                break;
            }
        }
        self.expect_sym(")")?;
        Ok(list)
    }

    /// A lambda's parameters and its `=>` (consumed), if a lambda starts here.
    fn lambda_params(&mut self) -> Option<Vec<String>> {
        let name = |t: &Tok| match t {
            Tok::Word(w) | Tok::Quoted(w) => Some(w.clone()),
            _ => None,
        };
        let arrow = |p: &Self, at: usize| {
            p.peek_at(at) == &Tok::Sym("=") && p.peek_at(at + 1) == &Tok::Sym(">")
        };
        if let Some(one) = name(self.peek())
            && arrow(self, 1)
        {
            self.i += 3;
            return Some(vec![one]);
        }
        if self.peek() != &Tok::Sym("(") {
            return None;
        }
        let mut params = Vec::new();
        let mut at = 1;
        loop {
            params.push(name(self.peek_at(at))?);
            match self.peek_at(at + 1) {
                Tok::Sym(",") => at += 2,
                Tok::Sym(")") if arrow(self, at + 2) => {
                    self.i += at + 4;
                    return Some(params);
                }
                _ => return None,
            }
        }
    }

    pub(super) fn expr_list(&mut self, close: &str) -> Result<Vec<Expr>, SqlError> {
        let mut list = Vec::new();
        if self.eat_sym(close) {
            return Ok(list);
        }
        loop {
            list.push(self.expr()?);
            if !self.eat_sym(",") {
                break;
            }
        }
        self.expect_sym(close)?;
        Ok(list)
    }

    fn primary(&mut self) -> Result<Expr, SqlError> {
        let pos = self.pos();
        let lit = |v: Value| Ok(Expr::new(pos, ExprKind::Literal(v)));
        match self.peek().clone() {
            Tok::Int(n) => {
                self.advance();
                lit(Value::from(n))
            }
            Tok::Float(x) => {
                self.advance();
                lit(Value::from(x))
            }
            Tok::Str(s) => {
                self.advance();
                lit(Value::String(s))
            }
            Tok::Sym("(") => {
                self.advance();
                let e = self.expr()?;
                self.expect_sym(")")?;
                Ok(e)
            }
            Tok::Sym("*") => {
                self.advance();
                Ok(Expr::new(pos, ExprKind::Star))
            }
            Tok::Quoted(name) => {
                self.advance();
                self.column_rest(pos, name)
            }
            Tok::Word(w) => match w.as_str() {
                "TRUE" | "FALSE" => {
                    self.advance();
                    lit(Value::Bool(w == "TRUE"))
                }
                "NULL" => {
                    self.advance();
                    lit(Value::Null)
                }
                "CASE" => self.case(),
                "CAST" => {
                    self.advance();
                    self.expect_sym("(")?;
                    let e = self.expr()?;
                    self.expect_word("AS")?;
                    let ty = self.sql_type()?;
                    self.expect_sym(")")?;
                    Ok(Expr::new(pos, ExprKind::Cast { expr: Box::new(e), ty }))
                }
                "STRUCT" | "MAP" if self.peek_at(1) == &Tok::Sym("(") => {
                    self.constructor(w == "MAP")
                }
                "ARRAY" if self.peek_at(1) == &Tok::Sym("[") => {
                    self.advance();
                    self.advance();
                    Ok(Expr::new(pos, ExprKind::Array(self.expr_list("]")?)))
                }
                _ if RESERVED.contains(&w.as_str()) => Err(self.error("an expression")),
                _ => {
                    self.advance();
                    if self.eat_sym("(") {
                        let distinct = self.eat_word("DISTINCT");
                        let args = self.call_args()?;
                        return Ok(Expr::new(pos, ExprKind::Call { name: w, args, distinct }));
                    }
                    self.column_rest(pos, w)
                }
            },
            _ => Err(self.error("an expression")),
        }
    }

    /// `STRUCT(name := value, ...)` or `MAP(key := value, ...)`, either possibly empty.
    fn constructor(&mut self, map: bool) -> Result<Expr, SqlError> {
        let pos = self.pos();
        self.advance();
        self.expect_sym("(")?;
        let (mut fields, mut entries) = (Vec::new(), Vec::new());
        if !self.eat_sym(")") {
            loop {
                if map {
                    let key = self.expr()?;
                    self.expect_sym(":=")?;
                    entries.push((key, self.expr()?));
                } else {
                    let name = match self.advance() {
                        Tok::Word(w) | Tok::Quoted(w) => w,
                        _ => {
                            self.i -= 1;
                            return Err(self.error("a field name"));
                        }
                    };
                    self.expect_sym(":=")?;
                    fields.push((name, self.expr()?));
                }
                if !self.eat_sym(",") {
                    break;
                }
            }
            self.expect_sym(")")?;
        }
        let kind = if map { ExprKind::Map(entries) } else { ExprKind::Struct(fields) };
        Ok(Expr::new(pos, kind))
    }

    /// `name` or `qualifier.name`.
    fn column_rest(&mut self, pos: Pos, first: String) -> Result<Expr, SqlError> {
        if self.eat_sym(".") {
            let name = self.ident("a column name after '.'")?;
            return Ok(Expr::new(pos, ExprKind::Column { qualifier: Some(first), name }));
        }
        Ok(Expr::new(pos, ExprKind::Column { qualifier: None, name: first }))
    }

    fn case(&mut self) -> Result<Expr, SqlError> {
        let pos = self.pos();
        self.expect_word("CASE")?;
        let operand = if self.is_word("WHEN") { None } else { Some(Box::new(self.expr()?)) };
        let mut whens = Vec::new();
        while self.eat_word("WHEN") {
            let when = self.expr()?;
            self.expect_word("THEN")?;
            whens.push((when, self.expr()?));
        }
        if whens.is_empty() {
            return Err(self.error("WHEN"));
        }
        let otherwise = if self.eat_word("ELSE") { Some(Box::new(self.expr()?)) } else { None };
        self.expect_word("END")?;
        Ok(Expr::new(pos, ExprKind::Case { operand, whens, otherwise }))
    }
}

/// Turns the unqualified columns of `body` named like a parameter into that parameter (but
/// not inside a nested lambda that binds the same name again).
fn bind_vars(body: &mut Expr, params: &[String]) {
    match &mut body.kind {
        ExprKind::Column { qualifier: None, name } if params.contains(name) => {
            body.kind = ExprKind::Var(name.clone());
        }
        ExprKind::Lambda { params: inner, body: nested } => {
            let outer: Vec<String> =
                params.iter().filter(|p| !inner.contains(p)).cloned().collect();
            bind_vars(nested, &outer);
        }
        _ => {
            for child in crate::ast::children(body) {
                bind_vars(child, params);
            }
        }
    }
}

fn bin(op: BinOp, left: Expr, right: Expr) -> Expr {
    Expr::new(left.pos, ExprKind::Binary { op, left: Box::new(left), right: Box::new(right) })
}
