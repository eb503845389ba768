//! The syntax tree the parser produces, and the SQL types it names ([`SqlType`]: in column
//! declarations and `CAST`, and what type checking infers).
//!
//! Invariants: names are already normalised (unquoted identifiers upper-cased); every
//! expression knows where it starts in the text; the compiled forms of [`ExprKind`] (`AggRef`,
//! `KeyRef`, `Slot`) are never produced by the parser. Below everything but `error` and
//! `lexer`: this module names no checking or evaluation.

use std::fmt;

use serde_json::Value;

use crate::error::{Pos, SqlError};

/// One statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// `CREATE STREAM|TABLE name (cols) WITH (...)`: a source over an existing topic.
    CreateSource(CreateSource),
    /// `CREATE STREAM|TABLE name [WITH (...)] AS SELECT ...`: a persistent query.
    CreateAs(CreateAs),
    /// A pull query (no EMIT) or push query (`EMIT CHANGES`).
    Select(Select),
    Show {
        pos: Pos,
        what: ShowWhat,
    },
    Describe {
        pos: Pos,
        name: String,
    },
    Drop {
        pos: Pos,
        kind: SourceKind,
        name: String,
        if_exists: bool,
        delete_topic: bool,
    },
    Terminate {
        pos: Pos,
        query: String,
    },
    /// `INSERT INTO name SELECT ...`: a persistent query writing into an existing stream.
    InsertSelect {
        pos: Pos,
        target: String,
        select: Select,
    },
    /// `INSERT INTO name [(col, ...)] VALUES (expr, ...)`: one record.
    InsertValues {
        pos: Pos,
        target: String,
        columns: Vec<String>,
        values: Vec<Expr>,
    },
    /// A connector statement: the catalog is not involved; the broker runs it.
    Connector(ConnectorStatement),
}

/// `CREATE SOURCE|SINK CONNECTOR`, `SHOW [SOURCE|SINK] CONNECTORS`, `DESCRIBE CONNECTOR`,
/// `DROP CONNECTOR` (ksqlDB's statements).
#[derive(Debug, Clone, PartialEq)]
pub enum ConnectorStatement {
    Create {
        pos: Pos,
        name: String,
        /// `SOURCE` (else `SINK`).
        source: bool,
        if_not_exists: bool,
        /// `'name' = 'value'` pairs: names as written (quoted) or lower-cased (bare), values
        /// as text.
        properties: Vec<(String, String)>,
    },
    /// `None`: every connector; `Some(true)`: sources; `Some(false)`: sinks.
    Show {
        pos: Pos,
        source: Option<bool>,
    },
    Describe {
        pos: Pos,
        name: String,
    },
    Drop {
        pos: Pos,
        name: String,
        if_exists: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShowWhat {
    Streams,
    Tables,
    Queries,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SourceKind {
    Stream,
    Table,
}

/// A column declaration.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDef {
    pub pos: Pos,
    pub name: String,
    pub ty: SqlType,
    /// `KEY` / `PRIMARY KEY`: the column is the record's key.
    pub key: bool,
}

/// `name = value` in a `WITH (...)` list; names upper-cased.
#[derive(Debug, Clone, PartialEq)]
pub struct Property {
    pub pos: Pos,
    pub name: String,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateSource {
    pub pos: Pos,
    pub kind: SourceKind,
    pub name: String,
    /// `CREATE SOURCE STREAM|TABLE`: read-only (no INSERT, no DROP ... DELETE TOPIC).
    pub source: bool,
    pub or_replace: bool,
    pub if_not_exists: bool,
    pub columns: Vec<ColumnDef>,
    pub with: Vec<Property>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateAs {
    pub pos: Pos,
    pub kind: SourceKind,
    pub name: String,
    pub or_replace: bool,
    pub if_not_exists: bool,
    pub with: Vec<Property>,
    pub select: Select,
}

/// A `SELECT`.
#[derive(Debug, Clone, PartialEq)]
pub struct Select {
    pub pos: Pos,
    pub items: Vec<SelectItem>,
    pub from: FromItem,
    pub join: Option<Join>,
    pub window: Option<WindowSpec>,
    pub filter: Option<Expr>,
    pub group_by: Vec<Expr>,
    /// `PARTITION BY expr`: a stream's records re-keyed by it.
    pub partition_by: Option<Expr>,
    pub having: Option<Expr>,
    pub emit: Option<EmitMode>,
    pub limit: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SelectItem {
    /// `*`, or `q.*` (the columns of the source named or aliased `q`).
    Wildcard(Pos, Option<String>),
    Expr {
        expr: Expr,
        alias: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct FromItem {
    pub pos: Pos,
    pub name: String,
    pub alias: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    Inner,
    /// `LEFT [OUTER] JOIN`
    Left,
    /// `RIGHT [OUTER] JOIN` (stream–stream only)
    Right,
    /// `FULL [OUTER] JOIN` or `OUTER JOIN` (stream–stream only)
    Full,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Join {
    pub pos: Pos,
    pub kind: JoinKind,
    pub right: FromItem,
    /// The window of a stream–stream join.
    pub within: Option<Within>,
    pub on: Expr,
}

/// `WITHIN n unit` (`before = after = n`) or `WITHIN (before, after)`, with an optional
/// `GRACE PERIOD`; in ms. A right record at `tr` joins a left one at `tl` when
/// `tl - before <= tr <= tl + after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Within {
    pub pos: Pos,
    pub before_ms: i64,
    pub after_ms: i64,
    pub grace_ms: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmitMode {
    Changes,
    Final,
}

/// `WINDOW TUMBLING|HOPPING|SESSION (...)`, durations in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSpec {
    pub pos: Pos,
    pub shape: WindowShape,
    pub grace_ms: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowShape {
    Tumbling { size_ms: i64 },
    Hopping { size_ms: i64, advance_ms: i64 },
    Session { gap_ms: i64 },
}

/// An expression and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub pos: Pos,
    pub kind: ExprKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Concat,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
    /// `IS DISTINCT FROM`: inequality where NULL is a value (never NULL itself).
    Distinct,
    /// `IS NOT DISTINCT FROM`.
    NotDistinct,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
            BinOp::Concat => "||",
            BinOp::Eq => "=",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::And => "AND",
            BinOp::Or => "OR",
            BinOp::Distinct => "IS DISTINCT FROM",
            BinOp::NotDistinct => "IS NOT DISTINCT FROM",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    Literal(Value),
    /// A column, optionally qualified by a source name or alias (`g.rideId`).
    Column {
        qualifier: Option<String>,
        name: String,
    },
    /// `*` inside `COUNT(*)`.
    Star,
    Binary {
        op: BinOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    Not(Box<Expr>),
    Neg(Box<Expr>),
    IsNull {
        expr: Box<Expr>,
        negated: bool,
    },
    Like {
        expr: Box<Expr>,
        pattern: Box<Expr>,
        negated: bool,
        /// `ESCAPE 'c'`: `c` makes the next `%` or `_` (or `c`) literal.
        escape: Option<char>,
    },
    Between {
        expr: Box<Expr>,
        low: Box<Expr>,
        high: Box<Expr>,
        negated: bool,
    },
    InList {
        expr: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
    },
    /// `CASE [operand] WHEN .. THEN .. [ELSE ..] END`.
    Case {
        operand: Option<Box<Expr>>,
        whens: Vec<(Expr, Expr)>,
        otherwise: Option<Box<Expr>>,
    },
    Cast {
        expr: Box<Expr>,
        ty: SqlType,
    },
    /// `base[index]`: 1-based array index (negative counts from the end), or a map key.
    Index {
        base: Box<Expr>,
        index: Box<Expr>,
    },
    /// `base->field`.
    Field {
        base: Box<Expr>,
        field: String,
    },
    /// A function call, name upper-cased.
    Call {
        name: String,
        args: Vec<Expr>,
        distinct: bool,
    },
    /// `ARRAY[a, b, ...]`.
    Array(Vec<Expr>),
    /// `x => body` or `(a, b) => body`, an argument of TRANSFORM, FILTER or REDUCE. In the
    /// body the parameters are [`ExprKind::Var`]s.
    Lambda {
        params: Vec<String>,
        body: Box<Expr>,
    },
    /// A lambda's parameter inside its body.
    Var(String),
    /// `STRUCT(name := value, ...)`.
    Struct(Vec<(String, Expr)>),
    /// `MAP(key := value, ...)`.
    Map(Vec<(Expr, Expr)>),
    /// Compiled forms (never produced by the parser): the i-th aggregate's result, and the i-th
    /// GROUP BY expression's value, in a post-aggregation projection.
    AggRef(usize),
    KeyRef(usize),
    /// Compiled form: a column bound to its place in the row it is evaluated over (`name` for
    /// messages).
    Slot {
        index: usize,
        name: String,
    },
}

impl Expr {
    pub fn new(pos: Pos, kind: ExprKind) -> Self {
        Self { pos, kind }
    }

    /// The default output name of a select item: the column name for a column, the field for
    /// `->`; `None` for other expressions, which get generated names (`KSQL_COL_<n>`).
    pub fn default_name(&self) -> Option<String> {
        match &self.kind {
            ExprKind::Column { name, .. } | ExprKind::Slot { name, .. } => Some(name.clone()),
            ExprKind::Field { field, .. } => Some(field.clone()),
            _ => None,
        }
    }

    /// Equal ignoring positions (GROUP BY expressions are matched in the select list this way).
    pub fn same_as(&self, other: &Expr) -> bool {
        strip(self) == strip(other)
    }
}

fn strip(e: &Expr) -> String {
    // Positions are the only difference Debug shows that matters; blank them out.
    let text = format!("{:?}", e.kind);
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(i) = rest.find("Pos {") {
        out.push_str(&rest[..i]);
        match rest[i..].find('}') {
            Some(j) => rest = &rest[i + j + 1..],
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The direct sub-expressions of `e`.
pub(crate) fn children(e: &mut Expr) -> Vec<&mut Expr> {
    match &mut e.kind {
        ExprKind::Binary { left, right, .. } => vec![left, right],
        ExprKind::Not(x) | ExprKind::Neg(x) => vec![x],
        ExprKind::IsNull { expr, .. } | ExprKind::Cast { expr, .. } => vec![expr],
        ExprKind::Like { expr, pattern, .. } => vec![expr, pattern],
        ExprKind::Between { expr, low, high, .. } => vec![expr, low, high],
        ExprKind::InList { expr, list, .. } => {
            let mut v: Vec<&mut Expr> = vec![expr];
            v.extend(list.iter_mut());
            v
        }
        ExprKind::Case { operand, whens, otherwise } => {
            let mut v: Vec<&mut Expr> = Vec::new();
            if let Some(o) = operand {
                v.push(o);
            }
            for (w, t) in whens {
                v.push(w);
                v.push(t);
            }
            if let Some(o) = otherwise {
                v.push(o);
            }
            v
        }
        ExprKind::Index { base, index } => vec![base, index],
        ExprKind::Field { base, .. } => vec![base],
        ExprKind::Call { args, .. } | ExprKind::Array(args) => args.iter_mut().collect(),
        ExprKind::Struct(fields) => fields.iter_mut().map(|(_, e)| e).collect(),
        ExprKind::Lambda { body, .. } => vec![body],
        ExprKind::Map(entries) => entries.iter_mut().flat_map(|(k, v)| [k, v]).collect(),
        _ => Vec::new(),
    }
}

/// How an expression reads in a type error: "column X", "value 'a'", or "the result of F(...)".
fn describe(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Column { name, .. } | ExprKind::Slot { name, .. } => format!("column {name}"),
        ExprKind::Literal(v) => format!("value {v}"),
        ExprKind::Call { name, .. } => format!("the result of {name}(...)"),
        ExprKind::Field { field, .. } => format!("field {field}"),
        _ => "the expression".to_owned(),
    }
}

/// The type error of `e`, of type `found`, where `context` needs `expected`.
pub(crate) fn mismatch(e: &Expr, found: &SqlType, expected: &str, context: &str) -> SqlError {
    SqlError::TypeMismatch {
        pos: e.pos,
        what: describe(e),
        found: found.to_string(),
        expected: expected.to_owned(),
        context: context.to_owned(),
    }
}

/// A SQL type: which JSON shapes a column holds. VARCHAR/STRING → string, INT/BIGINT →
/// integer, DOUBLE (and `DOUBLE(p, s)` / `DECIMAL(p, s)`, kept as a double) → number, BOOLEAN →
/// bool, TIMESTAMP → integer ms since the epoch, `ARRAY<T>` → array, `MAP<VARCHAR, T>` →
/// object, `STRUCT<a T, ...>` → object. `NULL` fits every type.
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
    pub(crate) fn is_integral(&self) -> bool {
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
    pub(crate) fn widen(a: &SqlType, b: &SqlType) -> SqlType {
        match (a, b) {
            (SqlType::Any, _) | (_, SqlType::Any) => SqlType::Any,
            (SqlType::Double, _) | (_, SqlType::Double) => SqlType::Double,
            (SqlType::Int, SqlType::Int) => SqlType::Int,
            _ => SqlType::Bigint,
        }
    }
}
