//! eddy-sql: streaming SQL (ksqlDB-style), compiled to the same operators as eddy-processor's
//! Rust builder.
//!
//! A [`Session`] holds a [`Catalog`] of streams and tables and a [`FunctionRegistry`] of
//! user-defined functions; [`Session::execute`] runs a script. Declarations update the catalog;
//! each `CREATE ... AS SELECT` becomes a [`Processor`](eddy_processor::Processor) (named after
//! its target, at the version the caller gives) that the caller starts; `SELECT`s come back
//! checked, to run against a live table ([`TableQuery`]) or, for a push query over a stream,
//! over the stream's records ([`StreamQuery`]). Invariants: nothing here reads a clock or
//! touches the log (the caller — the broker — does); a statement that fails changes nothing;
//! the same statement compiles to the same processor every time.
//!
//! Modules, bottom-up (each names only modules before it; `tests/tests/layering.rs` at the
//! workspace root checks it):
//! - `error` (`SqlError`, `EvalError`, `Pos`); `lexer` (text → tokens with line/column);
//!   `ast` (the syntax tree and `SqlType`); `parser` (recursive descent, its expression half in
//!   `parser/expressions.rs`).
//! - `time` (timestamp patterns); `functions` (built-in and user-defined scalar functions);
//!   `types` (`Schema`, type checking); `expr` (evaluating expressions over rows); `format`
//!   (value formats: JSON, DELIMITED, KAFKA, RAW).
//! - `source` (what a stream or table is); `properties` (`WITH (...)`); `catalog` (streams,
//!   tables, queries); `row_reader` (records → rows); `codec` (rows at topic boundaries);
//!   `aggregate` (aggregate functions as one `Aggregator`).
//! - `plan` (a SELECT checked in its scope: filters, projections, GROUP BY plans); `stream`
//!   (the per-record nodes on the builder); `join` (stream–table and windowed stream–stream
//!   joins); `group` (GROUP BY on the builder); `compile` (CREATE ... AS SELECT → processor);
//!   `insert` (INSERT INTO);
//!   `materialize` (declared tables made queryable); `pull` (pull queries, and push queries
//!   over a table); `push` (push queries over a stream).
//!
//! **Names**: unquoted identifiers are upper-cased (`rideId` is the column `RIDEID`, as in
//! ksqlDB); quoted ones (`` `rideId` `` or `"rideId"`) keep their case. Rows are JSON objects keyed
//! by these names, so output rows have upper-case keys; input JSON fields are matched to declared
//! columns exactly, else case-insensitively.
//!
//! # Grammar
//!
//! ```text
//! script      := statement (';' statement)* [';']
//! statement   := create_src | create_as | select | insert | SHOW (STREAMS|TABLES|QUERIES)
//!              | DESCRIBE name | DROP (STREAM|TABLE) [IF EXISTS] name [DELETE TOPIC]
//!              | CREATE (SOURCE|SINK) CONNECTOR [IF NOT EXISTS] name WITH '(' 'k' = 'v', ... ')'
//!              | SHOW [SOURCE|SINK] CONNECTORS | DESCRIBE CONNECTOR name
//!              | DROP CONNECTOR [IF EXISTS] name
//!              | TERMINATE query_id
//! create_src  := CREATE [OR REPLACE] [SOURCE] (STREAM|TABLE) [IF NOT EXISTS] name
//!                '(' name type [KEY | PRIMARY KEY] (',' ...)* ')' WITH '(' props ')'
//! insert      := INSERT INTO name (select | ['(' name (',' name)* ')'] VALUES '(' expr, ... ')')
//! create_as   := CREATE [OR REPLACE] (STREAM|TABLE) [IF NOT EXISTS] name [WITH '(' props ')']
//!                AS select
//! props       := prop_name '=' ('string' | number) (',' ...)*
//!                -- KAFKA_TOPIC|TOPIC, VALUE_FORMAT|FORMAT ('JSON'|'DELIMITED'|'KAFKA'|'RAW'),
//!                -- VALUE_DELIMITER, WRAP_SINGLE_VALUE, KEY, PARTITIONS, TIMESTAMP
//! select      := SELECT item (',' item)* FROM name [[AS] alias]
//!                [join_kind JOIN name [[AS] alias] [within] ON expr]
//!                [WINDOW window] [WHERE expr] [WINDOW window] [GROUP BY expr (',' expr)*]
//!                [PARTITION BY expr] [HAVING expr] [EMIT (CHANGES | FINAL)] [LIMIT n]
//! join_kind   := [INNER] | LEFT [OUTER] | RIGHT [OUTER] | FULL [OUTER] | OUTER
//! within      := WITHIN (dur | '(' dur0 ',' dur0 ')') [GRACE PERIOD dur0]
//!                -- stream–stream joins only; '(before, after)'
//! item        := '*' | name '.' '*' | expr [[AS] alias]
//! window      := TUMBLING '(' SIZE dur [',' GRACE PERIOD dur] ')'
//!              | HOPPING '(' SIZE dur ',' ADVANCE BY dur [',' GRACE PERIOD dur] ')'
//!              | SESSION '(' dur [',' GRACE PERIOD dur] ')'
//! dur         := n (MILLISECOND|SECOND|MINUTE|HOUR|DAY)[S]      -- n > 0; in dur0, n >= 0
//! type        := VARCHAR | STRING | INT | INTEGER | BIGINT | DOUBLE ['(' p [',' s] ')']
//!              | DECIMAL '(' p ',' s ')' | BOOLEAN | TIMESTAMP | ARRAY '<' type '>'
//!              | MAP '<' type ',' type '>' | STRUCT '<' name type (',' ...)* '>'
//! expr        := or;  or := and (OR and)*;  and := not (AND not)*;  not := NOT not | cmp
//! cmp         := add [('='|'!='|'<>'|'<'|'<='|'>'|'>=') add | IS [NOT] NULL
//!                     | IS [NOT] DISTINCT FROM add | [NOT] LIKE add [ESCAPE 'c']
//!                     | [NOT] BETWEEN add AND add | [NOT] IN '(' expr, ... ')']
//! add         := mul (('+'|'-'|'||') mul)*;  mul := unary (('*'|'/'|'%') unary)*
//! unary       := ('-'|'+') unary | postfix;  postfix := primary ('[' expr ']' | '->' name)*
//! primary     := literal | name ['.' name] | name '(' [DISTINCT] [expr (',' expr)*] ')'
//!              | CASE [expr] (WHEN expr THEN expr)+ [ELSE expr] END | CAST '(' expr AS type ')'
//!              | ARRAY '[' expr, ... ']' | STRUCT '(' [name ':=' expr, ...] ')'
//!              | MAP '(' [expr ':=' expr, ...] ')' | '(' expr ')' | '*'
//! literal     := 'string' | integer | decimal | TRUE | FALSE | NULL
//! ```
//!
//! Pseudo columns: `ROWTIME` (event time, ms), `ROWKEY` (the record key), `WINDOWSTART` /
//! `WINDOWEND` (windowed aggregates). Arrays index from 1 (`arr[-1]` is the last element);
//! `map['k']` and `struct->field` read JSON objects. Functions are listed in `functions.rs`,
//! aggregates in `aggregate.rs`. Comments: `-- ...` and `/* ... */`.
//!
//! Semantics worth knowing: in a GROUP BY query a column that is neither grouped nor inside an
//! aggregate takes the group's latest value (an implicit `LATEST_BY_OFFSET`; ksqlDB refuses
//! such queries). A group for which HAVING is not true is a NULL row in the table and a
//! tombstone in the output topic. A declared `TIMESTAMP` column is the event time windows use.
//!
//! Joins: a stream with a table (INNER, LEFT; a lookup of the table's current row) or with
//! another stream (INNER, LEFT, RIGHT, FULL OUTER; `WITHIN` required, `GRACE PERIOD` default 0;
//! unmatched rows of an outer side come out once their window has closed). See `join.rs`.
//!
//! ksqlDB's semantics are the reference (docs/sql.md, "ksqlDB compatibility", and
//! `sql/tests/ksql_semantics.rs`): key columns live in the record key only, a persistent query
//! needs no EMIT, values are coerced to declared types, failing functions are NULL.
//!
//! **Not supported yet** (docs/sql.md lists them with the ksqlDB cases they block): joins of
//! more than two sources, table–table joins, self-joins, windows over a table, several key
//! columns, `BYTES`/`DATE`/`TIME` types,
//! windowed sources (`WINDOW_TYPE`), table functions, push queries over a stream with
//! JOIN/WINDOW/GROUP BY (push-query a `CREATE ... AS SELECT` of it), pull queries over streams,
//! `AVRO`/`PROTOBUF` formats, time zones without a fixed offset, and executing
//! SHOW/DESCRIBE/DROP/TERMINATE beyond the in-memory catalog (the broker's job).

mod aggregate;
mod ast;
mod catalog;
mod codec;
mod compile;
mod error;
mod expr;
mod format;
mod functions;
mod group;
mod insert;
mod join;
mod lexer;
mod materialize;
mod parser;
mod plan;
mod properties;
mod pull;
mod push;
mod row_reader;
mod source;
mod stream;
mod time;
mod types;

use std::sync::Arc;

use serde_json::{Value, json};

pub use aggregate::AggFn;
pub use ast::{
    BinOp, ColumnDef, ConnectorStatement, CreateAs, CreateSource, EmitMode, Expr, ExprKind,
    FromItem, Join, JoinKind, Property, Select, SelectItem, ShowWhat, SourceKind, SqlType,
    Statement, WindowShape, WindowSpec, Within,
};
pub use catalog::{Catalog, QueryInfo};
pub use compile::CompiledQuery;
pub use error::{EvalError, Pos, SqlError};
pub use expr::{Row, eval};
pub use functions::{FunctionRegistry, ScalarFn, geo_distance_km};
pub use insert::InsertRecord;
pub use parser::{parse, parse_expr, parse_one, parse_script};
pub use pull::TableQuery;
pub use push::StreamQuery;
pub use source::{Materialized, SourceInfo, ValueFormat};
pub use types::Schema;

/// What one statement did.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A stream was declared over a topic.
    Declared(SourceInfo),
    /// A table was declared over a topic (`compiled.target`; create the topic if missing, as
    /// for `Declared`), and the processor that materializes it for pull and push queries is to
    /// be started, like a persistent query's.
    Materialized {
        id: String,
        compiled: CompiledQuery,
    },
    /// A persistent query to start: its processor, and the query's id.
    Query {
        id: String,
        compiled: CompiledQuery,
        replaced: bool,
    },
    /// A pull query (`push == false`) or push query, checked, to run against a table.
    Select(TableQuery),
    /// A push query over a stream, checked, to run over the stream's topic from its end.
    Push(StreamQuery),
    /// Rows of SHOW / DESCRIBE.
    Rows(Vec<Value>),
    Dropped(SourceInfo),
    Terminated(QueryInfo),
    /// `INSERT ... VALUES`: a record for the caller to append.
    Inserted(InsertRecord),
    /// A connector statement, for the caller (the broker) to run.
    Connector(ConnectorStatement),
}

/// A catalog and the functions statements may call.
#[derive(Debug, Clone, Default)]
pub struct Session {
    pub catalog: Catalog,
    pub functions: Arc<FunctionRegistry>,
}

impl Session {
    pub fn new(functions: FunctionRegistry) -> Self {
        Self { catalog: Catalog::new(), functions: Arc::new(functions) }
    }

    /// Runs every statement of `sql` in order; a `CREATE ... AS SELECT` compiles as `version`
    /// (or, replacing a query, the next version after the replaced one). Stops at the first
    /// error, with the statements before it applied.
    pub fn execute(&mut self, sql: &str, version: u32) -> Result<Vec<Outcome>, SqlError> {
        let statements = parse_script(sql)?;
        let mut out = Vec::new();
        for (stmt, text) in &statements {
            if let Some(outcome) = self.statement(stmt, text, version)? {
                out.push(outcome);
            }
        }
        Ok(out)
    }

    /// Runs one statement parsed by [`parse_script`] (positions in errors point into the
    /// script it came from); `None` when it did nothing (`IF [NOT] EXISTS`). Callers that
    /// persist statements run this on a clone and keep the clone once the change is stored.
    pub fn execute_statement(
        &mut self,
        stmt: &Statement,
        sql: &str,
        version: u32,
    ) -> Result<Option<Outcome>, SqlError> {
        self.statement(stmt, sql, version)
    }

    fn statement(
        &mut self,
        stmt: &Statement,
        sql: &str,
        version: u32,
    ) -> Result<Option<Outcome>, SqlError> {
        Ok(Some(match stmt {
            Statement::CreateSource(c) => {
                if c.if_not_exists && self.catalog.get(&c.name).is_some() {
                    return Ok(None);
                }
                let info = self.catalog.declare(c)?;
                if info.kind == SourceKind::Table {
                    return self.declare_table(c, info, sql, version).map(Some);
                }
                self.catalog.insert(c.pos, info.clone(), c.or_replace)?;
                Outcome::Declared(info)
            }
            Statement::CreateAs(c) => return self.create_as(c, sql, version),
            Statement::Select(s)
                if s.emit.is_some()
                    && self
                        .catalog
                        .get(&s.from.name)
                        .is_some_and(|i| i.kind == SourceKind::Stream) =>
            {
                Outcome::Push(StreamQuery::prepare(s, &self.catalog, &self.functions)?)
            }
            Statement::Select(s) => {
                Outcome::Select(TableQuery::prepare(s, &self.catalog, &self.functions)?)
            }
            Statement::Show { what, .. } => Outcome::Rows(self.show(*what)),
            Statement::Describe { pos, name } => Outcome::Rows(self.describe(*pos, name)?),
            Statement::Drop { pos, name, if_exists, delete_topic, .. } => {
                if *if_exists && self.catalog.get(name).is_none() {
                    return Ok(None);
                }
                if *delete_topic && self.catalog.get(name).is_some_and(|s| s.read_only) {
                    return Err(SqlError::Invalid {
                        pos: *pos,
                        message: format!("cannot delete topic for read-only source: {name}"),
                    });
                }
                Outcome::Dropped(self.catalog.drop_source(*pos, name)?)
            }
            Statement::Terminate { pos, query } => {
                Outcome::Terminated(self.catalog.terminate(*pos, query)?)
            }
            Statement::InsertValues { pos, target, columns, values } => {
                Outcome::Inserted(insert::insert_values(
                    *pos,
                    target,
                    columns,
                    values,
                    &self.catalog,
                    &self.functions,
                )?)
            }
            Statement::Connector(c) => Outcome::Connector(c.clone()),
            Statement::InsertSelect { pos, target, select } => {
                let (id, compiled) = insert::insert_select(
                    *pos,
                    target,
                    select,
                    sql,
                    &self.catalog,
                    &self.functions,
                    version,
                )?;
                if self.catalog.queries().any(|q| q.id == id) {
                    return Err(SqlError::AlreadyExists { pos: *pos, name: id });
                }
                let sql = sql.to_owned();
                // The query is known by its processor (what TERMINATE and DROP act on).
                let query = QueryInfo { id: id.clone(), target: id.clone(), sql, version };
                self.catalog.add_query(query);
                Outcome::Query { id, compiled, replaced: false }
            }
        }))
    }

    /// `CREATE [SOURCE] TABLE (cols)`: the table in the catalog, queryable through the
    /// processor that materializes it (query id `CST_<name>`, as ksqlDB names them).
    fn declare_table(
        &mut self,
        c: &ast::CreateSource,
        info: SourceInfo,
        sql: &str,
        version: u32,
    ) -> Result<Outcome, SqlError> {
        let id = format!("CST_{}", c.name);
        let previous = self.catalog.queries().find(|q| q.id == id).map(|q| q.version);
        let version = previous.map_or(version, |v| version.max(v + 1));
        let compiled = materialize::materialize(&info, version)?;
        self.catalog.insert(c.pos, compiled.target.clone(), c.or_replace)?;
        let sql = sql.to_owned();
        self.catalog.add_query(QueryInfo { id: id.clone(), target: c.name.clone(), sql, version });
        Ok(Outcome::Materialized { id, compiled })
    }

    /// `CREATE ... AS SELECT`: the query compiled, its target and the query in the catalog.
    fn create_as(
        &mut self,
        c: &CreateAs,
        sql: &str,
        version: u32,
    ) -> Result<Option<Outcome>, SqlError> {
        let existing = self.catalog.get(&c.name).cloned();
        if existing.is_some() {
            if c.if_not_exists {
                return Ok(None);
            }
            if !c.or_replace {
                return Err(SqlError::AlreadyExists { pos: c.pos, name: c.name.clone() });
            }
        }
        let prefix = if c.kind == SourceKind::Stream { "CSAS" } else { "CTAS" };
        let id = format!("{prefix}_{}", c.name);
        let previous = self.catalog.queries().find(|q| q.id == id).map(|q| q.version);
        let version = previous.map_or(version, |v| version.max(v + 1));
        let compiled = compile::compile(c, &self.catalog, &self.functions, version)?;
        self.catalog.insert(c.pos, compiled.target.clone(), c.or_replace)?;
        let sql = sql.to_owned();
        self.catalog.add_query(QueryInfo { id: id.clone(), target: c.name.clone(), sql, version });
        Ok(Some(Outcome::Query { id, compiled, replaced: existing.is_some() }))
    }

    /// `DESCRIBE name`: a row per column.
    fn describe(&self, pos: Pos, name: &str) -> Result<Vec<Value>, SqlError> {
        let info = self.catalog.lookup(pos, name)?;
        let key = info.key_name().map(str::to_owned);
        Ok(info
            .columns
            .iter()
            .map(|(n, t)| json!({"column": n, "type": t.to_string(), "key": Some(n) == key.as_ref()}))
            .collect())
    }

    fn show(&self, what: ShowWhat) -> Vec<Value> {
        match what {
            ShowWhat::Queries => self
                .catalog
                .queries()
                .map(|q| json!({"id": q.id, "target": q.target, "version": q.version}))
                .collect(),
            ShowWhat::Streams | ShowWhat::Tables => {
                let kind =
                    if what == ShowWhat::Streams { SourceKind::Stream } else { SourceKind::Table };
                self.catalog
                    .sources()
                    .filter(|s| s.kind == kind)
                    .map(|s| {
                        json!({"name": s.name, "topic": s.topic, "format": s.format.name(),
                            "partitions": s.partitions})
                    })
                    .collect()
            }
        }
    }
}
