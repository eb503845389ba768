//! The planner: a SELECT checked in its scope and rewritten for execution, before any operator
//! is built (`compile.rs` and `join.rs` wire the plans into a processor; `pull.rs` and
//! `push.rs` evaluate them per row).
//!
//! - [`Scope`]: the columns a query sees, and how qualified names (`alias.col`) map to them.
//! - [`where_clause`], [`projection`]: a query's filter and output columns, checked.
//! - [`GroupPlan`]: a GROUP BY query's group values, aggregate calls and output columns.
//! - [`read_columns`]: the columns a query reads (the only ones decoded).
//!
//! Invariants: a plan's expressions are resolved (no qualifiers) and type-checked, and still
//! name their columns — binding them to slots is the wiring's job, for the layout its rows
//! have; output column names are unique; nothing here touches the processor builder.

use std::collections::BTreeSet;

use crate::aggregate::AggFn;
use crate::ast::{self, Expr, ExprKind, Select, SelectItem, SqlType, WindowSpec, mismatch};
use crate::error::{Pos, SqlError};
use crate::functions::is_aggregate;
use crate::source::{Materialized, SourceInfo};
use crate::types::{Checker, Schema};

/// The columns in scope and how qualified names map to them.
#[derive(Debug)]
pub(crate) struct Scope {
    pub schema: Schema,
    /// The columns the scope's rows hold, in order, when not all of `schema` (a source whose
    /// unread columns are not decoded): what expressions are bound to.
    pub(crate) layout: Option<Schema>,
    /// (qualifier, column) → column in the row.
    pub(crate) qualified: Vec<(String, String, String)>,
    pub(crate) qualifiers: Vec<String>,
    /// A join's columns as ksqlDB names them in output: column in the row →
    /// `<SOURCE>_<COLUMN>` (the source's alias, else its name); empty for one source.
    pub(crate) display: Vec<(String, String)>,
    /// Column names both joined sources have (a qualified reference to one is output under
    /// its prefixed name).
    pub(crate) ambiguous: Vec<String>,
}

impl Scope {
    pub(crate) fn of(info: &SourceInfo, alias: Option<&str>) -> Self {
        let mut qualifiers = vec![info.name.clone()];
        qualifiers.extend(alias.map(str::to_owned));
        let mut qualified = Vec::new();
        for q in &qualifiers {
            for (c, _) in &info.columns {
                qualified.push((q.clone(), c.clone(), c.clone()));
            }
        }
        Self {
            schema: info.schema(),
            layout: None,
            qualified,
            qualifiers,
            display: Vec::new(),
            ambiguous: Vec::new(),
        }
    }

    /// The columns rows of this scope hold, in order.
    pub(crate) fn layout(&self) -> &Schema {
        self.layout.as_ref().unwrap_or(&self.schema)
    }

    /// Strips qualifiers (`g.col` → the row's column), checking them.
    pub fn resolve(&self, e: &Expr) -> Result<Expr, SqlError> {
        let mut e = e.clone();
        self.walk(&mut e)?;
        Ok(e)
    }

    fn walk(&self, e: &mut Expr) -> Result<(), SqlError> {
        if let ExprKind::Column { qualifier: Some(q), name } = &e.kind {
            if !self.qualifiers.contains(q) {
                return Err(SqlError::UnknownSource { pos: e.pos, name: q.clone() });
            }
            let found = self.qualified.iter().find(|(a, c, _)| a == q && c == name);
            let column = match found {
                Some((_, _, col)) => col.clone(),
                None if matches!(name.as_str(), "ROWTIME" | "ROWKEY") => name.clone(),
                None => {
                    return Err(SqlError::UnknownColumn {
                        pos: e.pos,
                        name: format!("{q}.{name}"),
                        known: self.schema.names(),
                    });
                }
            };
            e.kind = ExprKind::Column { qualifier: None, name: column };
            return Ok(());
        }
        for child in ast::children(e) {
            self.walk(child)?;
        }
        Ok(())
    }

    /// How a row column is named in output: its join name (`L_COL`), else itself.
    pub(crate) fn display_name(&self, column: &str) -> String {
        self.display
            .iter()
            .find(|(c, _)| c == column)
            .map_or_else(|| column.to_owned(), |(_, d)| d.clone())
    }

    /// The columns `*` (or `q.*`) stands for, in row order.
    pub(crate) fn star(
        &self,
        pos: Pos,
        qualifier: Option<&str>,
    ) -> Result<Vec<(String, SqlType)>, SqlError> {
        let Some(q) = qualifier else { return Ok(self.schema.columns.clone()) };
        if !self.qualifiers.iter().any(|x| x == q) {
            return Err(SqlError::UnknownSource { pos, name: q.to_owned() });
        }
        let mine: Vec<&String> =
            self.qualified.iter().filter(|(a, _, _)| a == q).map(|(_, _, col)| col).collect();
        Ok(self.schema.columns.iter().filter(|(c, _)| mine.contains(&c)).cloned().collect())
    }

    /// Adds the columns of a joined source: `qualifiers` (its name and alias) qualify its
    /// columns, each `(column, name in the joined row)` of `renames`.
    pub(crate) fn add_qualified(&mut self, qualifiers: &[String], renames: &[(String, String)]) {
        for q in qualifiers {
            for (from, to) in renames {
                self.qualified.push((q.clone(), from.clone(), to.clone()));
            }
            self.qualifiers.push(q.clone());
        }
    }
}

/// Every column name `select` mentions (under any qualifier); `None` when it selects `*`.
pub(crate) fn read_columns(select: &Select) -> Option<BTreeSet<String>> {
    let mut stack: Vec<Expr> = Vec::new();
    for item in &select.items {
        match item {
            SelectItem::Wildcard(..) => return None,
            SelectItem::Expr { expr, .. } => stack.push(expr.clone()),
        }
    }
    stack.extend(
        select
            .filter
            .iter()
            .chain(&select.group_by)
            .chain(&select.having)
            .chain(&select.partition_by)
            .cloned(),
    );
    let mut names = BTreeSet::new();
    while let Some(mut e) = stack.pop() {
        if let ExprKind::Column { name, .. } = &e.kind {
            names.insert(name.clone());
        }
        stack.extend(ast::children(&mut e).into_iter().map(|c| c.clone()));
    }
    Some(names)
}

/// The query's `WHERE`, resolved in `scope` and checked to be a boolean.
pub(crate) fn where_clause(
    select: &Select,
    scope: &Scope,
    checker: &Checker<'_>,
) -> Result<Option<Expr>, SqlError> {
    let Some(f) = &select.filter else { return Ok(None) };
    let f = scope.resolve(f)?;
    checker.expect_bool(&f, "WHERE")?;
    Ok(Some(f))
}

/// The select list of a stream query: (name, resolved expression, type); `*` expands.
pub(crate) fn projection(
    select: &Select,
    scope: &Scope,
    checker: &Checker<'_>,
) -> Result<Vec<(String, Expr, SqlType)>, SqlError> {
    let names = output_names(&select.items, &scope.schema.names());
    let mut out: Vec<(String, Expr, SqlType)> = Vec::new();
    for (item, name) in select.items.iter().zip(names) {
        match item {
            SelectItem::Wildcard(pos, qualifier) => {
                for (c, t) in scope.star(*pos, qualifier.as_deref())? {
                    let e = Expr::new(*pos, ExprKind::Column { qualifier: None, name: c.clone() });
                    out.push((scope.display_name(&c), e, t));
                }
            }
            SelectItem::Expr { expr, alias } => {
                let e = scope.resolve(expr)?;
                let t = checker.infer(&e)?;
                // In a join, a column both sources have is output under its prefixed name.
                let name = match (&expr.kind, &e.kind, alias) {
                    (
                        ExprKind::Column { name: c, .. },
                        ExprKind::Column { name: row, .. },
                        None,
                    ) if scope.ambiguous.contains(c) => scope.display_name(row),
                    _ => name,
                };
                out.push((name, e, t));
            }
        }
    }
    check_unique(&out)?;
    Ok(out)
}

fn check_unique(items: &[(String, Expr, SqlType)]) -> Result<(), SqlError> {
    for (i, (n, e, _)) in items.iter().enumerate() {
        if items[..i].iter().any(|(m, _, _)| m == n) {
            return Err(SqlError::Invalid {
                pos: e.pos,
                message: format!("output column {n} appears twice; give one an alias with AS"),
            });
        }
    }
    Ok(())
}

/// Output column names of a select list (aliases, else ksqlDB's defaults). As in ksqlDB, the
/// expressions without a name are numbered `KSQL_COL_0`, `KSQL_COL_1`, ... among themselves,
/// skipping numbers whose name another item, or a column of the source (`taken`), already has.
pub(crate) fn output_names(items: &[SelectItem], taken: &[String]) -> Vec<String> {
    let given: Vec<Option<String>> = items
        .iter()
        .map(|item| match item {
            SelectItem::Expr { alias: Some(a), .. } => Some(a.clone()),
            SelectItem::Expr { expr, .. } => expr.default_name(),
            SelectItem::Wildcard(..) => Some("*".to_owned()),
        })
        .collect();
    let mut next = 0;
    given
        .iter()
        .map(|name| {
            name.clone().unwrap_or_else(|| {
                loop {
                    let candidate = format!("KSQL_COL_{next}");
                    next += 1;
                    let used = given.iter().any(|g| g.as_deref() == Some(candidate.as_str()))
                        || taken.contains(&candidate);
                    if !used {
                        break candidate;
                    }
                }
            })
        })
        .collect()
}

/// A GROUP BY query planned: what each row gives its group, and what each group's row is.
#[derive(Debug)]
pub(crate) struct GroupPlan {
    /// The GROUP BY expressions, resolved.
    pub keys: Vec<Expr>,
    /// (function, argument, result type) per aggregate call, in `AggRef` order.
    pub aggs: Vec<(AggFn, Expr, SqlType)>,
    /// The output columns in SELECT order: name, and expression over `KeyRef`, `AggRef` and
    /// the window's columns.
    pub items: Vec<(String, Expr)>,
    pub having: Option<Expr>,
    /// The output columns' types.
    pub columns: Vec<(String, SqlType)>,
    /// Output columns holding the group values (the key), in GROUP BY order.
    pub key_columns: Vec<String>,
    pub window: Option<WindowSpec>,
    /// `EMIT FINAL`: a windowed query's topic gets each window's row once.
    pub emit_final: bool,
}

impl GroupPlan {
    /// Plans `select` (which has a GROUP BY) in `scope`; `checker` types the input rows.
    pub(crate) fn new(
        select: &Select,
        scope: &Scope,
        checker: &Checker<'_>,
    ) -> Result<Self, SqlError> {
        let keys =
            select.group_by.iter().map(|k| scope.resolve(k)).collect::<Result<Vec<_>, _>>()?;
        let key_types = keys.iter().map(|k| checker.infer(k)).collect::<Result<Vec<_>, _>>()?;
        let mut g = Grouping { keys, key_types, aggs: Vec::new() };
        let names = output_names(&select.items, &scope.schema.names());
        let mut items = Vec::new();
        for (item, name) in select.items.iter().zip(names) {
            let SelectItem::Expr { expr, .. } = item else {
                return Err(SqlError::Invalid {
                    pos: select.pos,
                    message: "SELECT * cannot be used with GROUP BY; list the columns".into(),
                });
            };
            let mut e = scope.resolve(expr)?;
            g.rewrite(&mut e, checker)?;
            items.push((name, e));
        }
        let having = match &select.having {
            Some(h) => {
                let mut h = scope.resolve(h)?;
                g.rewrite(&mut h, checker)?;
                Some(h)
            }
            None => None,
        };
        let columns = g.output_types(&items, having.as_ref(), checker, select.window.is_some())?;
        let key_columns: Vec<String> = (0..g.keys.len())
            .filter_map(|j| {
                items.iter().find(|(_, e)| e.kind == ExprKind::KeyRef(j)).map(|(n, _)| n.clone())
            })
            .collect();
        Ok(GroupPlan {
            keys: g.keys,
            aggs: g.aggs,
            items,
            having,
            columns,
            key_columns,
            window: select.window,
            emit_final: select.emit == Some(ast::EmitMode::Final),
        })
    }

    /// The type of output column `name`.
    pub(crate) fn type_of(&self, name: &str) -> SqlType {
        self.columns.iter().find(|(n, _)| n == name).map_or(SqlType::Any, |(_, t)| t.clone())
    }

    /// Describes the table the query makes (`target`, in the catalog): its columns, its key
    /// column (one GROUP BY value) and how it is materialized.
    pub(crate) fn describe(&self, target: &mut SourceInfo) {
        target.columns = self.columns.clone();
        // One group value is the record key, and readers of the table's topic take the column
        // from it; several are a JSON array key, which no single column holds.
        target.key_column = self.key_columns.first().cloned().filter(|_| self.keys.len() == 1);
        target.key_property = None;
        target.materialized = Some(Materialized {
            processor: target.name.clone(),
            windowed: self.window.is_some(),
            key_columns: self.key_columns.clone(),
        });
    }
}

/// A GROUP BY query's parts after rewriting the select list.
struct Grouping {
    keys: Vec<Expr>,
    key_types: Vec<SqlType>,
    /// (function, argument) per aggregate call.
    aggs: Vec<(AggFn, Expr, SqlType)>,
}

impl Grouping {
    /// Replaces group expressions by `KeyRef`, aggregate calls by `AggRef`, and a column that
    /// is neither by `AggRef` of an implicit `LATEST_BY_OFFSET` (an eddy extension).
    fn rewrite(&mut self, e: &mut Expr, checker: &Checker<'_>) -> Result<(), SqlError> {
        if let Some(j) = self.keys.iter().position(|k| k.same_as(e)) {
            e.kind = ExprKind::KeyRef(j);
            return Ok(());
        }
        let (f, arg) = match &e.kind {
            ExprKind::Call { name, args, .. } if is_aggregate(name) => {
                let f = AggFn::from_name(e.pos, name, args)?;
                let arg = args.first().cloned().unwrap_or(Expr::new(e.pos, ExprKind::Star));
                match (f, &arg.kind) {
                    (AggFn::Count, ExprKind::Star) => (AggFn::CountAll, arg),
                    _ => (f, arg),
                }
            }
            ExprKind::Column { name, .. }
                if matches!(name.as_str(), "WINDOWSTART" | "WINDOWEND") =>
            {
                return Ok(());
            }
            ExprKind::Column { .. } => (AggFn::Latest, e.clone()),
            _ => {
                for child in ast::children(e) {
                    self.rewrite(child, checker)?;
                }
                return Ok(());
            }
        };
        if let ExprKind::Call { name, .. } = &arg.kind
            && is_aggregate(name)
        {
            return Err(SqlError::Invalid {
                pos: arg.pos,
                message: "aggregates cannot be nested".into(),
            });
        }
        let arg_type = checker.infer(&arg)?;
        if matches!(f, AggFn::Sum | AggFn::Avg) && !arg_type.is_numeric() {
            return Err(mismatch(&arg, &arg_type, "a number", &format!("{f:?}").to_uppercase()));
        }
        let i = match self.aggs.iter().position(|(g, a, _)| *g == f && a.same_as(&arg)) {
            Some(i) => i,
            None => {
                self.aggs.push((f, arg, f.result_type(&arg_type)));
                self.aggs.len() - 1
            }
        };
        e.kind = ExprKind::AggRef(i);
        Ok(())
    }

    /// The types of the output columns `items` (rewritten), checked unique; `having` checked
    /// to be a boolean.
    fn output_types(
        &self,
        items: &[(String, Expr)],
        having: Option<&Expr>,
        checker: &Checker<'_>,
        windowed: bool,
    ) -> Result<Vec<(String, SqlType)>, SqlError> {
        let mut schema = checker.schema.clone();
        schema.windowed = windowed;
        let agg_types: Vec<SqlType> = self.aggs.iter().map(|(_, _, t)| t.clone()).collect();
        let post = Checker {
            schema: &schema,
            registry: checker.registry,
            aggs: &agg_types,
            keys: &self.key_types,
        };
        let mut columns = Vec::new();
        for (name, e) in items {
            columns.push((name.clone(), post.infer(e)?));
        }
        let typed: Vec<(String, Expr, SqlType)> = items
            .iter()
            .zip(&columns)
            .map(|((n, e), (_, t))| (n.clone(), e.clone(), t.clone()))
            .collect();
        check_unique(&typed)?;
        if let Some(h) = having {
            post.expect_bool(h, "HAVING")?;
        }
        Ok(columns)
    }
}

/// Which output columns hold the key, by ksqlDB's rules: each key (named `keys[j]` in errors)
/// must be projected exactly once, and some column must be left for the value. `key_of` tells
/// which key an item's expression is (`None`: a value column). Returns, per item, its key.
pub(crate) fn key_items(
    target: &str,
    pos: Pos,
    items: &[(String, Expr)],
    keys: &[String],
    key_of: impl Fn(&Expr) -> Option<usize>,
) -> Result<Vec<Option<usize>>, SqlError> {
    let of: Vec<Option<usize>> = items.iter().map(|(_, e)| key_of(e)).collect();
    let missing: Vec<&String> =
        keys.iter().enumerate().filter(|(j, _)| !of.contains(&Some(*j))).map(|(_, k)| k).collect();
    if !missing.is_empty() {
        let (what, list) = match missing.as_slice() {
            [one] => ("the key column", one.to_string()),
            [init @ .., last] => {
                let init: Vec<&str> = init.iter().map(|s| s.as_str()).collect();
                ("the key columns", format!("{} and {last}", init.join(", ")))
            }
            [] => unreachable!("missing is not empty"),
        };
        let eg: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
        return Err(SqlError::Invalid {
            pos,
            message: format!(
                "the query used to build {target} must include {what} {list} in its projection \
                 (eg, SELECT {}...)",
                eg.join(", ")
            ),
        });
    }
    for (i, k) in of.iter().enumerate() {
        if let Some(j) = k
            && let Some(first) = of[..i].iter().position(|o| o == &Some(*j))
        {
            return Err(SqlError::Invalid {
                pos: items[i].1.pos,
                message: format!(
                    "the projection contains a key column more than once: {} and {}",
                    items[first].0, items[i].0
                ),
            });
        }
    }
    if of.iter().all(Option::is_some) {
        return Err(SqlError::Invalid {
            pos,
            message: "the projection contains no value columns; select a column or aggregate \
                      besides the key (AS_VALUE(key) copies the key into the value)"
                .into(),
        });
    }
    Ok(of)
}
