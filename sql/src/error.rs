//! The SQL layer's errors: the bottom layer, naming no other module of the crate.
//!
//! Invariants: every error about the text carries the line and column it points at
//! ([`SqlError::pos`]); errors found while evaluating a row ([`EvalError`]) name the function or
//! operator at fault; a failure of eddy-processor underneath keeps its typed source.

use std::fmt;

use eddy_processor::TableError;

/// A place in the SQL text: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.col)
    }
}

/// Why a statement was refused. Nothing is built unless the whole statement checks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqlError {
    #[error("syntax error at {pos}: {message}")]
    Syntax { pos: Pos, message: String },
    #[error("unknown column {name} at {pos}{}", hint(.known))]
    UnknownColumn { pos: Pos, name: String, known: Vec<String> },
    #[error("unknown stream or table {name} at {pos}; declare it first with CREATE STREAM|TABLE")]
    UnknownSource { pos: Pos, name: String },
    #[error(
        "unknown function {name} at {pos}; built-in functions are listed in docs/sql.md, others must be registered with FunctionRegistry"
    )]
    UnknownFunction { pos: Pos, name: String },
    #[error("type mismatch at {pos}: {what} is {found} but {context} needs {expected}")]
    TypeMismatch { pos: Pos, what: String, found: String, expected: String, context: String },
    #[error("{name} at {pos} takes {expected} argument(s), got {got}")]
    Arity { pos: Pos, name: String, expected: String, got: usize },
    #[error("invalid statement at {pos}: {message}")]
    Invalid { pos: Pos, message: String },
    #[error("{name} at {pos} already exists; use CREATE OR REPLACE or DROP it first")]
    AlreadyExists { pos: Pos, name: String },
    #[error("{what} at {pos} is not supported yet: {why}")]
    Unsupported { pos: Pos, what: String, why: String },
    /// eddy-processor's builder refused the dataflow a statement compiled to (a table
    /// defined twice, say).
    #[error("building the processor failed: {0}")]
    Build(#[from] eddy_processor::Error),
    /// A pull query could not read its table.
    #[error("reading table {table} failed: {source}")]
    TableRead {
        table: String,
        #[source]
        source: TableError,
    },
}

fn hint(known: &[String]) -> String {
    if known.is_empty() { String::new() } else { format!("; columns here: {}", known.join(", ")) }
}

impl SqlError {
    /// Where the error points, if it points somewhere.
    pub fn pos(&self) -> Option<Pos> {
        match self {
            SqlError::Syntax { pos, .. }
            | SqlError::UnknownColumn { pos, .. }
            | SqlError::UnknownSource { pos, .. }
            | SqlError::UnknownFunction { pos, .. }
            | SqlError::TypeMismatch { pos, .. }
            | SqlError::Arity { pos, .. }
            | SqlError::Invalid { pos, .. }
            | SqlError::AlreadyExists { pos, .. }
            | SqlError::Unsupported { pos, .. } => Some(*pos),
            SqlError::Build(_) | SqlError::TableRead { .. } => None,
        }
    }
}

/// Why one row could not be evaluated (the record is set aside, like a record that does not
/// decode).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    #[error("{function}: {message}")]
    Function { function: String, message: String },
    #[error("division by zero at {pos}")]
    DivisionByZero { pos: Pos },
    #[error("cannot cast {value} to {to}")]
    Cast { value: String, to: String },
}
