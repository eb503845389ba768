//! Declared tables made queryable: `CREATE [SOURCE] TABLE name (cols) WITH (...)` compiles, beside
//! its declaration, to a processor named after the table that reads the table's topic as a
//! changelog (a record sets its key, a tombstone deletes it) into table `name`, so pull
//! queries (`SELECT ... FROM name WHERE ROWKEY = ...`) and push queries answer from it, as
//! ksqlDB's source tables do.
//!
//! Invariants: the stored rows are objects of the table's value columns (a declared key
//! column lives in the record key only, as in a table `CREATE TABLE ... AS SELECT` makes);
//! the processor writes nothing but its table's changelog.

use std::sync::Arc;

use eddy_processor::ProcessorBuilder;
use serde_json::Value;

use crate::codec::{KeyDecoder, ObjectDecoder};
use crate::compile::CompiledQuery;
use crate::error::SqlError;
use crate::row_reader::RowReader;
use crate::source::{Materialized, SourceInfo};

/// The processor materializing declared table `info` as version `version`, and the table as
/// the catalog holds it (queryable).
pub(crate) fn materialize(info: &SourceInfo, version: u32) -> Result<CompiledQuery, SqlError> {
    let b = ProcessorBuilder::new(&info.name, version);
    let reader = Arc::new(RowReader::new(info));
    let key = KeyDecoder(info.key_type().cloned());
    b.table::<Value, Value>(&info.name, &info.topic, key, ObjectDecoder(reader))?;
    let mut target = info.clone();
    target.materialized = Some(Materialized {
        processor: info.name.clone(),
        windowed: false,
        key_columns: info.key_column.iter().cloned().collect(),
    });
    Ok(CompiledQuery { processor: b.build()?, target })
}
