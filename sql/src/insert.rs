//! `INSERT INTO`: `INSERT INTO stream SELECT ...`, a persistent query writing into an existing
//! stream's topic in that stream's format, and `INSERT INTO source [(cols)] VALUES (...)`, one
//! record encoded as the source declares it, for the caller to append.
//!
//! ksqlDB's rules: only streams take `INSERT ... SELECT` and the query's columns must be the
//! stream's (same names, types that meet); nothing is inserted into a `SOURCE` stream or table;
//! `VALUES` without a column list gives every column, key column first; `ROWTIME` among the
//! columns sets the record's timestamp. Invariants: nothing here appends anything or reads a
//! clock (a record without `ROWTIME` has no timestamp, and the caller stamps it); an insert
//! query's processor name is derived from its statement, so the same statement compiles to the
//! same processor at every replay.

use std::sync::Arc;

use serde_json::Value;

use crate::ast::{CreateAs, Expr, Property, Select, SourceKind, SqlType};
use crate::catalog::Catalog;
use crate::codec::{ObjectWriter, SqlKey, ValueWriter};
use crate::compile::{self, CompiledQuery};
use crate::error::{Pos, SqlError};
use crate::expr::{Row, eval};
use crate::functions::FunctionRegistry;
use crate::row_reader::coerce;
use crate::source::{SourceInfo, ValueFormat};
use eddy_processor::Codec;

/// One record `INSERT ... VALUES` makes, for the caller to append to `topic` (in the
/// partition its key hashes to, by the Kafka rule).
#[derive(Debug, Clone, PartialEq)]
pub struct InsertRecord {
    pub topic: String,
    pub partitions: u32,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// From a `ROWTIME` column; `None`: the caller's time of appending.
    pub timestamp: Option<i64>,
}

/// The source `INSERT INTO name` may write into (`what` names the statement in errors).
fn writable<'a>(
    catalog: &'a Catalog,
    pos: Pos,
    name: &str,
    what: &str,
) -> Result<&'a SourceInfo, SqlError> {
    let info = catalog.lookup(pos, name)?;
    if info.read_only {
        let kind = if info.kind == SourceKind::Stream { "stream" } else { "table" };
        return Err(SqlError::Invalid {
            pos,
            message: format!("cannot insert {what}into read-only {kind}: {name}"),
        });
    }
    Ok(info)
}

/// `INSERT INTO target SELECT ...` as processor `INSERTQUERY_<target>_<hash of the text>`.
pub(crate) fn insert_select(
    pos: Pos,
    target: &str,
    select: &Select,
    sql: &str,
    catalog: &Catalog,
    registry: &Arc<FunctionRegistry>,
    version: u32,
) -> Result<(String, CompiledQuery), SqlError> {
    let sink = writable(catalog, pos, target, "")?;
    if sink.kind != SourceKind::Stream {
        return Err(SqlError::Invalid {
            pos,
            message: format!(
                "INSERT INTO can only be used to insert into a stream. {target} is a table."
            ),
        });
    }
    let words: Vec<&str> = sql.split_whitespace().collect();
    let hash = eddy_processor::fnv1a64(words.join(" ").as_bytes());
    let id = format!("INSERTQUERY_{target}_{:08X}", hash >> 32);
    let text = |v: &str| Value::String(v.to_owned());
    let prop = |name: &str, value: Value| Property { pos, name: name.into(), value };
    let mut with = vec![
        prop("KAFKA_TOPIC", text(&sink.topic)),
        prop("VALUE_FORMAT", text(sink.format.name())),
    ];
    match sink.format {
        ValueFormat::Delimited(d) => with.push(prop("VALUE_DELIMITER", text(&d.to_string()))),
        ValueFormat::JsonValue => with.push(prop("WRAP_SINGLE_VALUE", Value::Bool(false))),
        _ => {}
    }
    let stmt = CreateAs {
        pos,
        kind: SourceKind::Stream,
        name: id.clone(),
        or_replace: false,
        if_not_exists: false,
        with,
        select: select.clone(),
    };
    let mut compiled = compile::compile(&stmt, catalog, registry, version)?;
    let got = &compiled.target;
    let same = got.columns.len() == sink.columns.len()
        && got.columns.iter().zip(&sink.columns).all(|((n, t), (m, u))| n == m && t.comparable(u))
        && got.key_column == sink.key_column;
    if !same {
        let show = |s: &SourceInfo| {
            s.columns.iter().map(|(n, t)| format!("{n} {t}")).collect::<Vec<_>>().join(", ")
        };
        return Err(SqlError::Invalid {
            pos,
            message: format!(
                "Incompatible schema between results and sink. Result schema is ({}), sink schema is ({})",
                show(got),
                show(sink)
            ),
        });
    }
    compiled.target = sink.clone();
    Ok((id, compiled))
}

/// `INSERT INTO target [(columns)] VALUES (values)`: the record, encoded.
pub(crate) fn insert_values(
    pos: Pos,
    target: &str,
    columns: &[String],
    values: &[Expr],
    catalog: &Catalog,
    registry: &FunctionRegistry,
) -> Result<InsertRecord, SqlError> {
    let info = writable(catalog, pos, target, "values ")?;
    let names: Vec<String> = if columns.is_empty() {
        let key = info.key_column.iter().cloned();
        key.chain(
            info.columns
                .iter()
                .map(|(n, _)| n.clone())
                .filter(|n| Some(n) != info.key_column.as_ref()),
        )
        .collect()
    } else {
        columns.to_vec()
    };
    if names.len() != values.len() {
        return Err(SqlError::Invalid {
            pos,
            message: format!(
                "expected a value for each of the {} column(s), got {}",
                names.len(),
                values.len()
            ),
        });
    }
    let null = Value::Null;
    let row = Row::new(&[], 0, &null);
    let mut given: Vec<(String, Value)> = Vec::new();
    for (name, e) in names.iter().zip(values) {
        let ty = match name.as_str() {
            "ROWTIME" => SqlType::Bigint,
            _ => match info.columns.iter().find(|(n, _)| n == name) {
                Some((_, t)) => t.clone(),
                None => {
                    return Err(SqlError::UnknownColumn {
                        pos: e.pos,
                        name: name.clone(),
                        known: info.schema().names(),
                    });
                }
            },
        };
        let v = eval(e, &row, registry)
            .map_err(|err| SqlError::Invalid { pos: e.pos, message: err.to_string() })?;
        let v = coerce(v, &ty).map_err(|message| SqlError::Invalid {
            pos: e.pos,
            message: format!("column {name}: {message}"),
        })?;
        given.push((name.clone(), v));
    }
    let get = |n: &str| given.iter().find(|(m, _)| m == n).map_or(Value::Null, |(_, v)| v.clone());
    let key_name = info.key_name().map(str::to_owned);
    let key = match &key_name {
        Some(k) => SqlKey.encode(&get(k)).map_err(|message| SqlError::Invalid { pos, message })?,
        None => None,
    };
    let value_columns: Vec<(String, SqlType)> =
        info.columns.iter().filter(|(n, _)| Some(n) != info.key_column.as_ref()).cloned().collect();
    let row_values: Vec<Value> = value_columns.iter().map(|(n, _)| get(n)).collect();
    let writer = ValueWriter::new(
        ObjectWriter::new(value_columns.iter().map(|(n, _)| n.clone()).collect()),
        value_columns.iter().map(|(_, t)| t.clone()).collect(),
        info.format,
    );
    let value = writer.write(&row_values).map_err(|message| SqlError::Invalid { pos, message })?;
    let timestamp = given.iter().find(|(n, _)| n == "ROWTIME").and_then(|(_, v)| v.as_i64());
    Ok(InsertRecord {
        topic: info.topic.clone(),
        partitions: info.partitions,
        key,
        value,
        timestamp,
    })
}
