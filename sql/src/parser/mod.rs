//! A hand-written recursive-descent parser: tokens → [`Statement`]s. This file holds the
//! statements; `select.rs` the SELECT and its clauses; `expressions.rs` the expressions, by
//! precedence.
//!
//! One function per grammar rule (the grammar is in `lib.rs`). Invariants: the parser only
//! builds syntax (no catalog, no types checked), names come normalised from the lexer, and an
//! error says what was expected and what was found, at the found token's line and column.

mod expressions;
mod select;

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
                    if let Some(source) = self.connectors_word()? {
                        return Ok(Statement::Connector(ConnectorStatement::Show { pos, source }));
                    }
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
                    if self.eat_word("CONNECTOR") {
                        let name = self.ident("a connector name")?;
                        return Ok(Statement::Connector(ConnectorStatement::Describe {
                            pos,
                            name,
                        }));
                    }
                    Ok(Statement::Describe { pos, name: self.ident("a stream or table name")? })
                }
                "DROP" => {
                    self.advance();
                    if self.eat_word("CONNECTOR") {
                        let if_exists = self.eat_word("IF") && {
                            self.expect_word("EXISTS")?;
                            true
                        };
                        let name = self.ident("a connector name")?;
                        return Ok(Statement::Connector(ConnectorStatement::Drop {
                            pos,
                            name,
                            if_exists,
                        }));
                    }
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
        if (source || self.is_word("SINK"))
            && matches!(self.peek_at(usize::from(!source)), Tok::Word(w) if w == "CONNECTOR")
        {
            return self.create_connector(pos, source);
        }
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

    /// After SHOW: `CONNECTORS`, `SOURCE CONNECTORS` or `SINK CONNECTORS` (which ones), else
    /// `None` with nothing consumed.
    fn connectors_word(&mut self) -> Result<Option<Option<bool>>, SqlError> {
        if self.eat_word("CONNECTORS") {
            return Ok(Some(None));
        }
        for (word, source) in [("SOURCE", true), ("SINK", false)] {
            if self.is_word(word) && matches!(self.peek_at(1), Tok::Word(w) if w == "CONNECTORS") {
                self.advance();
                self.advance();
                return Ok(Some(Some(source)));
            }
        }
        Ok(None)
    }

    /// `(SOURCE|SINK) CONNECTOR [IF NOT EXISTS] name WITH ('k' = 'v', ...)`, after CREATE.
    fn create_connector(&mut self, pos: Pos, source: bool) -> Result<Statement, SqlError> {
        if !source {
            self.expect_word("SINK")?;
        }
        self.expect_word("CONNECTOR")?;
        let if_not_exists = self.eat_word("IF") && {
            self.expect_word("NOT")?;
            self.expect_word("EXISTS")?;
            true
        };
        let name = self.ident("a connector name")?;
        self.expect_word("WITH")?;
        self.expect_sym("(")?;
        let mut properties = Vec::new();
        loop {
            let key = match self.advance() {
                Tok::Str(s) | Tok::Quoted(s) => s,
                Tok::Word(w) => w.to_ascii_lowercase(),
                _ => {
                    self.i -= 1;
                    return Err(self.error("a connector option name ('connector.class')"));
                }
            };
            self.expect_sym("=")?;
            let value = match self.advance() {
                Tok::Str(s) => s,
                Tok::Int(n) => n.to_string(),
                Tok::Float(x) => x.to_string(),
                Tok::Word(w) if w == "TRUE" || w == "FALSE" => w.to_ascii_lowercase(),
                _ => {
                    self.i -= 1;
                    return Err(self.error("an option value ('text' or a number)"));
                }
            };
            properties.push((key, value));
            if !self.eat_sym(",") {
                break;
            }
        }
        self.expect_sym(")")?;
        Ok(Statement::Connector(ConnectorStatement::Create {
            pos,
            name,
            source,
            if_not_exists,
            properties,
        }))
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
}

/// The `'static` spelling of a symbol (the lexer's table), so tokens compare by value.
fn sym_of(s: &str) -> &'static str {
    const ALL: [&str; 22] = [
        "!=", "<>", "<=", ">=", "->", "||", ":=", "(", ")", "[", "]", ",", ";", ".", "*", "+", "-",
        "/", "%", "=", "<", ">",
    ];
    ALL.iter().find(|x| **x == s).copied().unwrap_or("")
}
