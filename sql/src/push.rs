//! Push queries over a stream (`SELECT ... FROM stream [WHERE ...] EMIT CHANGES`): checked
//! here, run by whoever reads the stream's topic (the broker polls it from its end, ksqlDB's
//! `auto.offset.reset=latest`). Each record is decoded with the stream's own schema, exactly as
//! a persistent query reading the stream decodes it (`RowReader`: key column, `key` property,
//! `TIMESTAMP` column), then filtered by WHERE and projected; `ROWTIME` is the
//! record's event time and `ROWKEY` its key.
//!
//! Only filters and projections: a JOIN, WINDOW or GROUP BY needs state, which a stateless
//! poller does not keep — make a stream or table of it with `CREATE ... AS SELECT` and push-query
//! that. A record that does not decode or whose row fails to evaluate yields no row.
//!
//! Invariant: a push query keeps nothing between records — each row is a function of its
//! record alone — so any reader may evaluate it from any offset.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::ast::{EmitMode, Expr, Select, SourceKind, SqlType};
use crate::catalog::Catalog;
use crate::error::SqlError;
use crate::expr::{Row, bind, filter_project};
use crate::functions::FunctionRegistry;
use crate::plan::{Scope, projection, where_clause};
use crate::row_reader::{RowReader, decode_key};
use crate::types::Checker;

/// A checked push query over one stream.
#[derive(Debug, Clone)]
pub struct StreamQuery {
    /// The stream's name.
    pub stream: String,
    /// The topic to follow.
    pub topic: String,
    key_type: Option<SqlType>,
    reader: Arc<RowReader>,
    filter: Option<Expr>,
    items: Vec<(String, Expr)>,
    /// `LIMIT n`: the client stops after n rows (polls keep nothing in the broker).
    pub limit: Option<u64>,
}

impl StreamQuery {
    /// Checks `select` (whose FROM is a stream) against the catalog.
    pub fn prepare(
        select: &Select,
        catalog: &Catalog,
        registry: &FunctionRegistry,
    ) -> Result<StreamQuery, SqlError> {
        let info = catalog.lookup(select.from.pos, &select.from.name)?;
        if info.kind != SourceKind::Stream {
            return Err(SqlError::Invalid {
                pos: select.from.pos,
                message: format!("{} is a table, not a stream", info.name),
            });
        }
        if select.emit != Some(EmitMode::Changes) {
            return Err(SqlError::Invalid {
                pos: select.pos,
                message: format!(
                    "a query over stream {} is a push query: end it with EMIT CHANGES",
                    info.name
                ),
            });
        }
        if select.join.is_some()
            || select.window.is_some()
            || !select.group_by.is_empty()
            || select.having.is_some()
        {
            return Err(SqlError::Unsupported {
                pos: select.pos,
                what: "JOIN, WINDOW, GROUP BY or HAVING in a push query over a stream".into(),
                why: "push queries over streams filter and project; CREATE a stream or table AS \
                      SELECT for the rest and push-query it"
                    .into(),
            });
        }
        let scope = Scope::of(info, select.from.alias.as_deref());
        let checker = Checker { schema: &scope.schema, registry, aggs: &[], keys: &[] };
        let filter = where_clause(select, &scope, &checker)?.map(|f| bind(&f, &scope.schema));
        let items = projection(select, &scope, &checker)?;
        Ok(StreamQuery {
            stream: info.name.clone(),
            topic: info.topic.clone(),
            key_type: info.key_type().cloned(),
            reader: Arc::new(RowReader::new(info)),
            filter,
            items: items.into_iter().map(|(n, e, _)| (n, bind(&e, &scope.schema))).collect(),
            limit: select.limit,
        })
    }

    /// The output columns, in SELECT order.
    pub fn columns(&self) -> Vec<String> {
        self.items.iter().map(|(name, _)| name.clone()).collect()
    }

    /// One record of the stream's topic as a row: `None` when it does not decode, fails the
    /// WHERE or cannot be evaluated.
    pub fn row(
        &self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        timestamp: i64,
        registry: &FunctionRegistry,
    ) -> Option<Map<String, Value>> {
        let mut key = decode_key(key, self.key_type.as_ref());
        let mut columns = self.reader.decode(value).ok().filter(|row| !row.is_empty())?;
        let mut ts = timestamp;
        self.reader.complete(&mut key, &mut columns, &mut ts);
        let row = Row::new(&columns, ts, &key);
        filter_project(self.filter.as_ref(), &self.items, &row, registry)
    }
}
