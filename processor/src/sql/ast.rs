//! The syntax tree the parser produces. Names are already normalised (unquoted identifiers
//! upper-cased); every expression knows where it starts in the text.

use serde_json::Value;

use super::error::Pos;
use super::types::SqlType;

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
    pub having: Option<Expr>,
    pub emit: Option<EmitMode>,
    pub limit: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SelectItem {
    /// `*`
    Wildcard(Pos),
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
    /// `->`, else `KSQL_COL_<i>` as ksqlDB does.
    pub fn default_name(&self, i: usize) -> String {
        match &self.kind {
            ExprKind::Column { name, .. } | ExprKind::Slot { name, .. } => name.clone(),
            ExprKind::Field { field, .. } => field.clone(),
            _ => format!("KSQL_COL_{i}"),
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
