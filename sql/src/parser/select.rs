//! The SELECT half of the parser: the select list, FROM with its JOIN, WINDOW, WHERE,
//! GROUP BY, PARTITION BY, HAVING, EMIT and LIMIT, and the durations windows and joins take.
//!
//! Invariants as in `mod.rs`: syntax only, names normalised by the lexer, errors at the found
//! token.

use super::{JOIN_WORDS, Parser, RESERVED};
use crate::ast::*;
use crate::error::SqlError;
use crate::lexer::Tok;

impl Parser {
    pub(super) fn select(&mut self) -> Result<Select, SqlError> {
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
