//! The lexer: SQL text → tokens, each with the line and column (1-based) where it starts.
//!
//! Unquoted identifiers and keywords are upper-cased here (ksqlDB's rule: `rideId` is `RIDEID`);
//! identifiers in backticks or double quotes keep their case. Comments: `-- to end of line` and
//! `/* ... */`. Strings use single quotes, `''` inside one is a quote.
//!
//! Invariants: every token knows the line, column and byte offset where it starts; the tokens
//! always end with [`Tok::Eof`]; an unclosed string, comment or quoted name is an error at its
//! start, never a token running to the end.

use super::error::{Pos, SqlError};

/// One token.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// An unquoted word, upper-cased (keywords are words too; the parser decides).
    Word(String),
    /// A quoted identifier, case kept.
    Quoted(String),
    Str(String),
    Int(i64),
    Float(f64),
    /// Punctuation and operators: `( ) [ ] , ; . * + - / % = != <> < <= > >= -> || :=`.
    Sym(&'static str),
    Eof,
}

impl Tok {
    /// How the token reads in an error message.
    pub fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("'{w}'"),
            Tok::Quoted(w) => format!("`{w}`"),
            Tok::Str(s) => format!("string '{s}'"),
            Tok::Int(n) => format!("number {n}"),
            Tok::Float(x) => format!("number {x}"),
            Tok::Sym(s) => format!("'{s}'"),
            Tok::Eof => "the end of the input".to_owned(),
        }
    }
}

/// A token and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub tok: Tok,
    pub pos: Pos,
    /// Byte offset in the text.
    pub offset: usize,
}

const SYMBOLS: [&str; 22] = [
    "!=", "<>", "<=", ">=", "->", "||", ":=", "(", ")", "[", "]", ",", ";", ".", "*", "+", "-",
    "/", "%", "=", "<", ">",
];

/// Splits `text` into tokens, ending with [`Tok::Eof`].
pub fn lex(text: &str) -> Result<Vec<Token>, SqlError> {
    let mut lexer = Lexer { chars: text.chars().collect(), i: 0, offset: 0, line: 1, col: 1 };
    let mut out = Vec::new();
    loop {
        lexer.skip_blank()?;
        let (pos, offset) = (lexer.pos(), lexer.offset);
        let Some(c) = lexer.peek(0) else {
            out.push(Token { tok: Tok::Eof, pos, offset });
            return Ok(out);
        };
        let tok = if c.is_ascii_alphabetic() || c == '_' {
            let word = lexer.take_while(|c| c.is_ascii_alphanumeric() || c == '_');
            Tok::Word(word.to_ascii_uppercase())
        } else if c.is_ascii_digit() {
            lexer.number(pos)?
        } else if c == '\'' {
            Tok::Str(lexer.quoted('\'', pos)?)
        } else if c == '`' || c == '"' {
            Tok::Quoted(lexer.quoted(c, pos)?)
        } else {
            lexer.symbol(pos)?
        };
        out.push(Token { tok, pos, offset });
    }
}

struct Lexer {
    chars: Vec<char>,
    i: usize,
    offset: usize,
    line: u32,
    col: u32,
}

impl Lexer {
    fn pos(&self) -> Pos {
        Pos { line: self.line, col: self.col }
    }

    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.i + ahead).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek(0)?;
        self.i += 1;
        self.offset += c.len_utf8();
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn take_while(&mut self, f: impl Fn(char) -> bool) -> String {
        let mut s = String::new();
        while let Some(c) = self.peek(0).filter(|c| f(*c)) {
            s.push(c);
            self.bump();
        }
        s
    }

    fn skip_blank(&mut self) -> Result<(), SqlError> {
        loop {
            match (self.peek(0), self.peek(1)) {
                (Some(c), _) if c.is_whitespace() => {
                    self.bump();
                }
                (Some('-'), Some('-')) => {
                    self.take_while(|c| c != '\n');
                }
                (Some('/'), Some('*')) => {
                    let pos = self.pos();
                    self.bump();
                    self.bump();
                    loop {
                        match (self.peek(0), self.peek(1)) {
                            (Some('*'), Some('/')) => {
                                self.bump();
                                self.bump();
                                break;
                            }
                            (Some(_), _) => {
                                self.bump();
                            }
                            (None, _) => {
                                return Err(SqlError::Syntax {
                                    pos,
                                    message: "this comment is never closed with */".into(),
                                });
                            }
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn number(&mut self, pos: Pos) -> Result<Tok, SqlError> {
        let mut text = self.take_while(|c| c.is_ascii_digit());
        let mut float = false;
        if self.peek(0) == Some('.') && self.peek(1).is_some_and(|c| c.is_ascii_digit()) {
            float = true;
            self.bump();
            text.push('.');
            text.push_str(&self.take_while(|c| c.is_ascii_digit()));
        }
        if matches!(self.peek(0), Some('e' | 'E')) {
            float = true;
            text.push('e');
            self.bump();
            if let Some(sign) = self.peek(0).filter(|c| *c == '+' || *c == '-') {
                text.push(sign);
                self.bump();
            }
            text.push_str(&self.take_while(|c| c.is_ascii_digit()));
        }
        let bad = || SqlError::Syntax { pos, message: format!("{text} is not a valid number") };
        if float {
            text.parse().map(Tok::Float).map_err(|_| bad())
        } else {
            text.parse().map(Tok::Int).map_err(|_| bad())
        }
    }

    fn quoted(&mut self, quote: char, pos: Pos) -> Result<String, SqlError> {
        self.bump();
        let mut s = String::new();
        loop {
            match self.bump() {
                Some(c) if c == quote => {
                    if self.peek(0) == Some(quote) {
                        self.bump();
                        s.push(quote);
                    } else {
                        return Ok(s);
                    }
                }
                Some(c) => s.push(c),
                None => {
                    return Err(SqlError::Syntax {
                        pos,
                        message: format!("this {quote}...{quote} is never closed"),
                    });
                }
            }
        }
    }

    fn symbol(&mut self, pos: Pos) -> Result<Tok, SqlError> {
        for sym in SYMBOLS {
            let matches = sym.chars().enumerate().all(|(k, c)| self.peek(k) == Some(c));
            if matches {
                for _ in 0..sym.chars().count() {
                    self.bump();
                }
                return Ok(Tok::Sym(sym));
            }
        }
        let c = self.peek(0).unwrap_or(' ');
        Err(SqlError::Syntax { pos, message: format!("unexpected character {c:?}") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_positions_and_words_are_upper_cased() {
        let toks = lex("select rideId,\n  `camelCase` -- note\n, 'it''s' 1.5e2 <> 7").unwrap();
        let got: Vec<_> = toks.iter().map(|t| (t.tok.clone(), t.pos.line, t.pos.col)).collect();
        assert_eq!(got[0], (Tok::Word("SELECT".into()), 1, 1));
        assert_eq!(got[1], (Tok::Word("RIDEID".into()), 1, 8));
        assert_eq!(got[3], (Tok::Quoted("camelCase".into()), 2, 3));
        assert_eq!(got[4].0, Tok::Sym(","));
        assert_eq!(got[5].0, Tok::Str("it's".into()));
        assert_eq!(got[6].0, Tok::Float(150.0));
        assert_eq!(got[7].0, Tok::Sym("<>"));
        assert_eq!(got[8].0, Tok::Int(7));
        assert!(matches!(lex("'open").unwrap_err(), SqlError::Syntax { .. }));
    }
}
