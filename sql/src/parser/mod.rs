//! A hand-written recursive-descent parser: tokens → [`Statement`]s. This file holds the
//! statements; `expressions.rs` the expressions, by precedence.
//!
//! One function per grammar rule (the grammar is in `lib.rs`). Invariants: the parser only
//! builds syntax (no catalog, no types checked), names come normalised from the lexer, and an
//! error says what was expected and what was found, at the found token's line and column.

mod expressions;

use serde_json::Value;

use crate::ast::*;
use crate::error::{Pos, SqlError};
use crate::lexer::{Tok, Token, lex};

/// Parses a script: statements separated by `;` (the last `;` is optional).
pub fn parse(text: &str) -> Result<Vec<Statement>, SqlError> {
    Ok(parse_script(text)?.into_iter().map(|(s, _)| s).collect())
}

/// Like [`parse`], with each statement's own text (to store with a persistent query).
pub fn parse_script(text: &str) -> Result<Vec<(Statement, String)>, SqlError> {
    let mut p = Parser { toks: lex(text)?, i: 0 };
    let mut out = Vec::new();
    loop {
        while p.eat_sym(";") {}
        if p.peek() == &Tok::Eof {
            return Ok(out);
        }
        let start = p.toks[p.i].offset;
        let statement = p.statement()?;
        let end = p.toks[p.i.min(p.toks.len() - 1)].offset;
        out.push((statement, text.get(start..end).unwrap_or_default().trim_end().to_owned()));
        if !p.eat_sym(";") && p.peek() != &Tok::Eof {
            return Err(p.error("';' or the end of the statement"));
        }
    }
}

/// Parses exactly one statement.
pub fn parse_one(text: &str) -> Result<Statement, SqlError> {
    let mut all = parse(text)?;
    match all.len() {
        1 => Ok(all.remove(0)),
        n => Err(SqlError::Syntax {
            pos: Pos { line: 1, col: 1 },
            message: format!("expected one statement, found {n}"),
        }),
    }
}

/// Parses one expression (for tests and tools).
pub fn parse_expr(text: &str) -> Result<Expr, SqlError> {
    let mut p = Parser { toks: lex(text)?, i: 0 };
    let e = p.expr()?;
    if p.peek() != &Tok::Eof {
        return Err(p.error("the end of the expression"));
    }
    Ok(e)
}

struct Parser {
    toks: Vec<Token>,
    i: usize,
}

const RESERVED: [&str; 25] = [
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP",
    "BY",
    "HAVING",
    "EMIT",
    "LIMIT",
    "WINDOW",
    "JOIN",
    "LEFT",
    "INNER",
    "ON",
    "AS",
    "AND",
    "OR",
    "NOT",
    "WITHIN",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "WITH",
    "PARTITION",
];

/// Words that start a join but stay usable as names elsewhere.
const JOIN_WORDS: [&str; 3] = ["FULL", "RIGHT", "OUTER"];

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.i.min(self.toks.len() - 1)].tok
    }

    fn peek_at(&self, ahead: usize) -> &Tok {
        &self.toks[(self.i + ahead).min(self.toks.len() - 1)].tok
    }

    fn pos(&self) -> Pos {
        self.toks[self.i.min(self.toks.len() - 1)].pos
    }

    fn advance(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.i < self.toks.len() - 1 {
            self.i += 1;
        }
        t
    }

    fn error(&self, expected: &str) -> SqlError {
        SqlError::Syntax {
            pos: self.pos(),
            message: format!("expected {expected}, found {}", self.peek().describe()),
        }
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Tok::Word(x) if x == w)
    }

    fn eat_word(&mut self, w: &str) -> bool {
        if self.is_word(w) {
            self.advance();
            true
        } else {
            false
        }
    }

    fn expect_word(&mut self, w: &str) -> Result<(), SqlError> {
        if self.eat_word(w) { Ok(()) } else { Err(self.error(w)) }
    }

    fn is_sym(&self, s: &str) -> bool {
        self.peek() == &Tok::Sym(sym_of(s))
    }

    fn eat_sym(&mut self, s: &str) -> bool {
        if self.peek() == &Tok::Sym(sym_of(s)) {
            self.advance();
            true
        } else {
            false
        }
    }

    fn expect_sym(&mut self, s: &str) -> Result<(), SqlError> {
        if self.eat_sym(s) { Ok(()) } else { Err(self.error(&format!("'{s}'"))) }
    }

    /// An identifier: an unreserved word, or a quoted name.
    fn ident(&mut self, what: &str) -> Result<String, SqlError> {
        match self.peek().clone() {
            Tok::Word(w) if !RESERVED.contains(&w.as_str()) => {
                self.advance();
                Ok(w)
            }
            Tok::Quoted(w) => {
                self.advance();
                Ok(w)
            }
            _ => Err(self.error(what)),
        }
    }

    fn int(&mut self, what: &str) -> Result<i64, SqlError> {
        match self.peek() {
            Tok::Int(n) => {
                let n = *n;
                self.advance();
                Ok(n)
            }
            _ => Err(self.error(what)),
        }
    }

    fn statement(&mut self) -> Result<Statement, SqlError> {
        let pos = self.pos();
        match self.peek() {
            Tok::Word(w) => match w.as_str() {
                "CREATE" => self.create(),
                "SELECT" => Ok(Statement::Select(self.select()?)),
                "SHOW" | "LIST" => {
                    self.advance();
                    let what = if self.eat_word("STREAMS") {
                        ShowWhat::Streams
                    } else if self.eat_word("TABLES") {
                        ShowWhat::Tables
                    } else if self.eat_word("QUERIES") {
                        ShowWhat::Queries
                    } else {
                        return Err(self.error("STREAMS, TABLES or QUERIES"));
                    };
                    Ok(Statement::Show { pos, what })
                }
                "DESCRIBE" => {
                    self.advance();
                    self.eat_word("EXTENDED");
                    Ok(Statement::Describe { pos, name: self.ident("a stream or table name")? })
                }
                "DROP" => {
                    self.advance();
                    let kind = self.source_kind()?;
                    let if_exists = self.eat_word("IF") && {
                        self.expect_word("EXISTS")?;
                        true
                    };
                    let name = self.ident("a stream or table name")?;
                    let delete_topic = self.eat_word("DELETE") && {
                        self.expect_word("TOPIC")?;
                        true
                    };
                    Ok(Statement::Drop { pos, kind, name, if_exists, delete_topic })
                }
                "TERMINATE" => {
                    self.advance();
                    Ok(Statement::Terminate { pos, query: self.ident("a query id")? })
                }
                "INSERT" => self.insert(),
                _ => Err(self.error("CREATE, SELECT, INSERT, SHOW, DESCRIBE, DROP or TERMINATE")),
            },
            _ => Err(self.error("a statement")),
        }
    }

    /// `INSERT INTO name SELECT ...` or `INSERT INTO name [(cols)] VALUES (exprs)`.
    fn insert(&mut self) -> Result<Statement, SqlError> {
        let pos = self.pos();
        self.expect_word("INSERT")?;
        self.expect_word("INTO")?;
        let target = self.ident("a stream or table name")?;
        if self.is_word("SELECT") {
            return Ok(Statement::InsertSelect { pos, target, select: self.select()? });
        }
        let mut columns = Vec::new();
        if self.eat_sym("(") {
            loop {
                columns.push(self.ident("a column name")?);
                if !self.eat_sym(",") {
                    break;
                }
            }
            self.expect_sym(")")?;
        }
        self.expect_word("VALUES")?;
        self.expect_sym("(")?;
        let values = self.expr_list(")")?;
        Ok(Statement::InsertValues { pos, target, columns, values })
    }

    fn source_kind(&mut self) -> Result<SourceKind, SqlError> {
        if self.eat_word("STREAM") {
            Ok(SourceKind::Stream)
        } else if self.eat_word("TABLE") {
            Ok(SourceKind::Table)
        } else {
            Err(self.error("STREAM or TABLE"))
        }
    }

    fn create(&mut self) -> Result<Statement, SqlError> {
        let pos = self.pos();
        self.expect_word("CREATE")?;
        let or_replace = self.eat_word("OR") && {
            self.expect_word("REPLACE")?;
            true
        };
        let source = self.eat_word("SOURCE");
        let kind = self.source_kind()?;
        let if_not_exists = self.eat_word("IF") && {
            self.expect_word("NOT")?;
            self.expect_word("EXISTS")?;
            true
        };
        let name = self.ident("a name for the new stream or table")?;
        let mut columns = Vec::new();
        if self.eat_sym("(") {
            loop {
                columns.push(self.column_def()?);
                if !self.eat_sym(",") {
                    break;
                }
            }
            self.expect_sym(")")?;
        }
        let with = if self.eat_word("WITH") { self.properties()? } else { Vec::new() };
        if self.eat_word("AS") {
            if source {
                return Err(SqlError::Syntax {
                    pos,
                    message: "a SOURCE stream or table is declared over a topic, not AS SELECT"
                        .into(),
                });
            }
            if !columns.is_empty() {
                return Err(SqlError::Syntax {
                    pos,
                    message: "CREATE ... AS SELECT takes its columns from the SELECT; remove the column list".into(),
                });
            }
            let select = self.select()?;
            return Ok(Statement::CreateAs(CreateAs {
                pos,
                kind,
                name,
                or_replace,
                if_not_exists,
                with,
                select,
            }));
        }
        if columns.is_empty() {
            return Err(self.error("a column list '(name TYPE, ...)' or AS SELECT"));
        }
        Ok(Statement::CreateSource(CreateSource {
            pos,
            kind,
            name,
            source,
            or_replace,
            if_not_exists,
            columns,
            with,
        }))
    }

    fn column_def(&mut self) -> Result<ColumnDef, SqlError> {
        let pos = self.pos();
        let name = self.ident("a column name")?;
        let ty = self.sql_type()?;
        let key = if self.eat_word("PRIMARY") {
            self.expect_word("KEY")?;
            true
        } else {
            self.eat_word("KEY")
        };
        Ok(ColumnDef { pos, name, ty, key })
    }

    fn sql_type(&mut self) -> Result<SqlType, SqlError> {
        let Tok::Word(w) = self.peek().clone() else { return Err(self.error("a type")) };
        self.advance();
        Ok(match w.as_str() {
            "VARCHAR" | "STRING" => {
                if self.eat_sym("(") {
                    self.int("a length")?;
                    self.expect_sym(")")?;
                }
                SqlType::String
            }
            "INT" | "INTEGER" => SqlType::Int,
            "BIGINT" => SqlType::Bigint,
            "DOUBLE" | "DECIMAL" | "FLOAT" | "REAL" => {
                if self.eat_sym("(") {
                    self.int("a precision")?;
                    if self.eat_sym(",") {
                        self.int("a scale")?;
                    }
                    self.expect_sym(")")?;
                }
                SqlType::Double
            }
            "BOOLEAN" | "BOOL" => SqlType::Boolean,
            "TIMESTAMP" => SqlType::Timestamp,
            "ARRAY" => {
                self.expect_sym("<")?;
                let t = self.sql_type()?;
                self.expect_sym(">")?;
                SqlType::Array(Box::new(t))
            }
            "MAP" => {
                self.expect_sym("<")?;
                let k = self.sql_type()?;
                self.expect_sym(",")?;
                let v = self.sql_type()?;
                self.expect_sym(">")?;
                SqlType::Map(Box::new(k), Box::new(v))
            }
            "STRUCT" => {
                self.expect_sym("<")?;
                let mut fields = Vec::new();
                if !self.eat_sym(">") {
                    loop {
                        let n = self.ident("a field name")?;
                        fields.push((n, self.sql_type()?));
                        if !self.eat_sym(",") {
                            break;
                        }
                    }
                    self.expect_sym(">")?;
                }
                SqlType::Struct(fields)
            }
            _ => {
                self.i -= 1;
                return Err(self.error(
                    "a type (VARCHAR, INT, BIGINT, DOUBLE, BOOLEAN, TIMESTAMP, ARRAY, MAP, STRUCT)",
                ));
            }
        })
    }

    fn properties(&mut self) -> Result<Vec<Property>, SqlError> {
        self.expect_sym("(")?;
        let mut props = Vec::new();
        loop {
            let pos = self.pos();
            let name = self.ident("a property name")?.to_ascii_uppercase();
            self.expect_sym("=")?;
            let value = match self.advance() {
                Tok::Str(s) => Value::String(s),
                Tok::Int(n) => Value::from(n),
                Tok::Float(x) => Value::from(x),
                Tok::Word(w) if w == "TRUE" || w == "FALSE" => Value::Bool(w == "TRUE"),
                _ => {
                    self.i -= 1;
                    return Err(self.error("a property value ('text' or a number)"));
                }
            };
            props.push(Property { pos, name, value });
            if !self.eat_sym(",") {
                break;
            }
        }
        self.expect_sym(")")?;
        Ok(props)
    }

    fn select(&mut self) -> Result<Select, SqlError> {
        let pos = self.pos();
        self.expect_word("SELECT")?;
        let mut items = Vec::new();
        loop {
            items.push(self.select_item()?);
            if !self.eat_sym(",") {
                break;
            }
        }
        self.expect_word("FROM")?;
        let from = self.source_item()?;
        let join = self.join()?;
        let mut window = self.window()?;
        let filter = if self.eat_word("WHERE") { Some(self.expr()?) } else { None };
        if window.is_none() {
            window = self.window()?;
        }
        let mut group_by = Vec::new();
        if self.eat_word("GROUP") {
            self.expect_word("BY")?;
            loop {
                group_by.push(self.expr()?);
                if !self.eat_sym(",") {
                    break;
                }
            }
        }
        let partition_by = if self.eat_word("PARTITION") {
            self.expect_word("BY")?;
            let by = self.expr()?;
            if self.is_sym(",") {
                return Err(SqlError::Unsupported {
                    pos: self.pos(),
                    what: "PARTITION BY several expressions".into(),
                    why: "keys of several columns need KEY_FORMAT='JSON', which eddy has not yet"
                        .into(),
                });
            }
            Some(by)
        } else {
            None
        };
        let having = if self.eat_word("HAVING") { Some(self.expr()?) } else { None };
        let emit = if self.eat_word("EMIT") {
            if self.eat_word("CHANGES") {
                Some(EmitMode::Changes)
            } else if self.eat_word("FINAL") {
                Some(EmitMode::Final)
            } else {
                return Err(self.error("CHANGES or FINAL"));
            }
        } else {
            None
        };
        let limit = if self.eat_word("LIMIT") {
            let n = self.int("a row count")?;
            Some(u64::try_from(n).map_err(|_| self.error("a row count of 0 or more"))?)
        } else {
            None
        };
        Ok(Select {
            pos,
            items,
            from,
            join,
            window,
            filter,
            group_by,
            partition_by,
            having,
            emit,
            limit,
        })
    }

    fn select_item(&mut self) -> Result<SelectItem, SqlError> {
        let pos = self.pos();
        if self.eat_sym("*") {
            return Ok(SelectItem::Wildcard(pos, None));
        }
        if let (Tok::Word(q) | Tok::Quoted(q), Tok::Sym("."), Tok::Sym("*")) =
            (self.peek().clone(), self.peek_at(1).clone(), self.peek_at(2).clone())
        {
            self.i += 3;
            return Ok(SelectItem::Wildcard(pos, Some(q)));
        }
        let expr = self.expr()?;
        let alias = self.alias("a column alias")?;
        Ok(SelectItem::Expr { expr, alias })
    }

    fn source_item(&mut self) -> Result<FromItem, SqlError> {
        let pos = self.pos();
        let name = self.ident("a stream or table name")?;
        let alias = self.alias("an alias")?;
        Ok(FromItem { pos, name, alias })
    }

    /// `[AS] name` after a select item or a source. `FULL`, `RIGHT` and `OUTER` are not
    /// reserved, but where they start a join (`FULL [OUTER] JOIN`) they are not an alias.
    fn alias(&mut self, what: &str) -> Result<Option<String>, SqlError> {
        let joins = matches!(self.peek(), Tok::Word(w) if JOIN_WORDS.contains(&w.as_str()))
            && matches!(self.peek_at(1), Tok::Word(w) if w == "JOIN" || w == "OUTER");
        let bare = (matches!(self.peek(), Tok::Word(w) if !RESERVED.contains(&w.as_str()))
            && !joins)
            || matches!(self.peek(), Tok::Quoted(_));
        if self.eat_word("AS") || bare { self.ident(what).map(Some) } else { Ok(None) }
    }

    fn join(&mut self) -> Result<Option<Join>, SqlError> {
        let pos = self.pos();
        let kind = if self.eat_word("LEFT") {
            self.eat_word("OUTER");
            Some(JoinKind::Left)
        } else if self.eat_word("RIGHT") {
            self.eat_word("OUTER");
            Some(JoinKind::Right)
        } else if self.eat_word("FULL") {
            self.eat_word("OUTER");
            Some(JoinKind::Full)
        } else if self.eat_word("OUTER") {
            Some(JoinKind::Full)
        } else if self.eat_word("INNER") {
            Some(JoinKind::Inner)
        } else {
            None
        };
        if !self.eat_word("JOIN") {
            return match kind {
                Some(_) => Err(self.error("JOIN")),
                None => Ok(None),
            };
        }
        let kind = kind.unwrap_or(JoinKind::Inner);
        let right = self.source_item()?;
        let within = self.within()?;
        self.expect_word("ON")?;
        let on = self.expr()?;
        Ok(Some(Join { pos, kind, right, within, on }))
    }

    /// `WITHIN n unit | WITHIN '(' before ',' after ')'`, then `[GRACE PERIOD n unit]`.
    fn within(&mut self) -> Result<Option<Within>, SqlError> {
        let pos = self.pos();
        if !self.eat_word("WITHIN") {
            return Ok(None);
        }
        let (before_ms, after_ms) = if self.eat_sym("(") {
            let before = self.duration_from(0)?;
            self.expect_sym(",")?;
            let after = self.duration_from(0)?;
            self.expect_sym(")")?;
            (before, after)
        } else {
            let n = self.duration()?;
            (n, n)
        };
        let grace_ms = if self.eat_word("GRACE") {
            self.expect_word("PERIOD")?;
            Some(self.duration_from(0)?)
        } else {
            None
        };
        Ok(Some(Within { pos, before_ms, after_ms, grace_ms }))
    }

    /// `n unit`, in ms, `n` positive.
    fn duration(&mut self) -> Result<i64, SqlError> {
        self.duration_from(1)
    }

    /// `n unit`, in ms, with `n >= min`.
    fn duration_from(&mut self, min: i64) -> Result<i64, SqlError> {
        let n = self.int("a duration like '1 HOUR'")?;
        let Tok::Word(unit) = self.peek().clone() else {
            return Err(self.error("a time unit (MILLISECONDS, SECONDS, MINUTES, HOURS, DAYS)"));
        };
        let ms = match unit.trim_end_matches('S') {
            "MILLISECOND" => 1,
            "SECOND" => 1_000,
            "MINUTE" => 60_000,
            "HOUR" => 3_600_000,
            "DAY" => 86_400_000,
            _ => {
                return Err(self.error("a time unit (MILLISECONDS, SECONDS, MINUTES, HOURS, DAYS)"));
            }
        };
        self.advance();
        if n < min {
            let what = if min > 0 { "positive" } else { "zero or more" };
            return Err(SqlError::Syntax {
                pos: self.pos(),
                message: format!("a duration must be {what}"),
            });
        }
        Ok(n.saturating_mul(ms))
    }

    fn window(&mut self) -> Result<Option<WindowSpec>, SqlError> {
        let pos = self.pos();
        if !self.eat_word("WINDOW") {
            return Ok(None);
        }
        let shape_word = self.peek().clone();
        self.advance();
        self.expect_sym("(")?;
        let shape = match shape_word {
            Tok::Word(w) if w == "TUMBLING" => {
                self.expect_word("SIZE")?;
                WindowShape::Tumbling { size_ms: self.duration()? }
            }
            Tok::Word(w) if w == "HOPPING" => {
                self.expect_word("SIZE")?;
                let size_ms = self.duration()?;
                self.expect_sym(",")?;
                self.expect_word("ADVANCE")?;
                self.expect_word("BY")?;
                WindowShape::Hopping { size_ms, advance_ms: self.duration()? }
            }
            Tok::Word(w) if w == "SESSION" => WindowShape::Session { gap_ms: self.duration()? },
            _ => {
                self.i -= 2;
                return Err(self.error("TUMBLING, HOPPING or SESSION"));
            }
        };
        let mut grace_ms = None;
        if self.eat_sym(",") {
            self.expect_word("GRACE")?;
            self.expect_word("PERIOD")?;
            grace_ms = Some(self.duration_from(0)?);
        }
        self.expect_sym(")")?;
        Ok(Some(WindowSpec { pos, shape, grace_ms }))
    }
}

/// The `'static` spelling of a symbol (the lexer's table), so tokens compare by value.
fn sym_of(s: &str) -> &'static str {
    const ALL: [&str; 22] = [
        "!=", "<>", "<=", ">=", "->", "||", ":=", "(", ")", "[", "]", ",", ";", ".", "*", "+", "-",
        "/", "%", "=", "<", ">",
    ];
    ALL.iter().find(|x| **x == s).copied().unwrap_or("")
}
