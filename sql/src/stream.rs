//! Row streams on eddy-processor's builder: the per-record nodes compiled queries are made of
//! — records decoded into rows, rows filtered and projected, rows re-keyed — and how a row
//! that fails to evaluate is set aside.
//!
//! Invariants: a row is a `Vec<Value>` in the layout its expressions were bound to (the
//! reader's, or the joined scope's); a row whose WHERE or key fails to evaluate is set aside
//! (counted, and dead-lettered when the processor has a dead-letter topic) like a record that
//! does not decode — never dropped silently, never fatal; a projected column that fails is
//! NULL (ksqlDB's rule); these nodes keep no state.

use std::sync::Arc;

use eddy_processor::operator_api::Cx;
use eddy_processor::{ProcessorBuilder, Rec, RecordError, Stream};
use serde_json::Value;

use crate::ast::Expr;
use crate::codec::{KeyDecoder, RowDecoder};
use crate::error::EvalError;
use crate::expr::{Row, eval, truth};
use crate::functions::FunctionRegistry;
use crate::row_reader::RowReader;
use crate::source::SourceInfo;

/// A stream of rows keyed by a SQL value.
pub(crate) type Rows = Stream<Value, Vec<Value>>;

/// Sets the record being handled aside because its row failed to evaluate.
pub(crate) fn set_aside(cx: &mut Cx, e: &EvalError) {
    cx.set_aside(&RecordError::Value(format!("sql: {e}")));
}

/// Records of `info.topic` as (key, row) decoded by `reader`; the event time from `TIMESTAMP`
/// if declared. Records without a value (tombstones, which decode to the empty row) are no
/// events to aggregate or join and are skipped; with `tombstones` they go on as a tombstone
/// row (see [`is_tombstone`]), which a projection writes as a tombstone, as ksqlDB does.
pub(crate) fn decoded_stream(
    b: &ProcessorBuilder,
    info: &SourceInfo,
    reader: RowReader,
    tombstones: bool,
) -> Rows {
    let reader = Arc::new(reader);
    let width = reader.layout.columns.len();
    let key = KeyDecoder(info.key_type().cloned());
    let raw = b.stream::<Value, Vec<Value>>(&info.topic, key, RowDecoder(reader.clone()));
    let complete =
        reader.key_column.is_some() || reader.key_property.is_some() || reader.timestamp.is_some();
    let place = reader.rowpartition.is_some() || reader.rowoffset.is_some();
    raw.then(move |mut rec: Rec<Value, Vec<Value>>, cx, down| {
        if rec.value.is_empty() {
            if !tombstones {
                return;
            }
            rec.value = vec![Value::Null; width + 1];
        }
        if complete {
            reader.complete(&mut rec.key, &mut rec.value, &mut rec.ts);
        }
        if place {
            let at = [
                (reader.rowpartition, Value::from(cx.partition())),
                (reader.rowoffset, Value::from(cx.input_offset())),
            ];
            for (slot, value) in at {
                if let Some(v) = slot.and_then(|i| rec.value.get_mut(i)) {
                    *v = value;
                }
            }
        }
        down.push(rec, cx)
    })
}

/// A tombstone going through a plain stream query: the layout's NULLs (the key column filled
/// from the key, so that PARTITION BY can read it) and one slot more, so that no decoded row
/// (which has exactly `width` slots) is taken for one.
pub(crate) fn is_tombstone(row: &[Value], width: usize) -> bool {
    row.len() > width
}

/// WHERE + projection as one node (expressions bound to the input's layout, `width` slots).
/// A tombstone row goes out as the empty row (written as a tombstone) unless there is a WHERE.
pub(crate) fn project_stream(
    stream: &Rows,
    width: usize,
    filter: Option<Expr>,
    exprs: Vec<Expr>,
    registry: Arc<FunctionRegistry>,
) -> Rows {
    let (filter, exprs) = (Arc::new(filter), Arc::new(exprs));
    stream.then(move |rec: Rec<Value, Vec<Value>>, cx, down| {
        if is_tombstone(&rec.value, width) {
            if filter.is_none() {
                down.push(Rec { key: rec.key, value: Vec::new(), ts: rec.ts }, cx);
            }
            return;
        }
        let row = Row::new(&rec.value, rec.ts, &rec.key);
        let out = (|| {
            if let Some(f) = filter.as_ref()
                && truth(&eval(f, &row, &registry)?) != Some(true)
            {
                return Ok(None);
            }
            // As in ksqlDB, a column that fails to evaluate (a bad CAST, a failing function)
            // is NULL; the row still goes out.
            let values = exprs
                .iter()
                .map(|e| {
                    eval(e, &row, &registry).unwrap_or_else(|error| {
                        tracing::debug!(%error, "a column failed to evaluate; it is NULL");
                        Value::Null
                    })
                })
                .collect();
            Ok::<_, EvalError>(Some(values))
        })();
        match out {
            Ok(Some(value)) => down.push(Rec { key: rec.key, value, ts: rec.ts }, cx),
            Ok(None) => {}
            Err(e) => set_aside(cx, &e),
        }
    })
}

/// Re-keys each row by `by`; with `skip_null`, a row whose key is NULL is dropped.
pub(crate) fn rekey(
    stream: &Rows,
    by: Expr,
    registry: Arc<FunctionRegistry>,
    skip_null: bool,
) -> Rows {
    stream.then(move |rec: Rec<Value, Vec<Value>>, cx, down| {
        let row = Row::new(&rec.value, rec.ts, &rec.key);
        match eval(&by, &row, &registry) {
            Ok(Value::Null) if skip_null => {}
            Ok(key) => down.push(Rec { key, value: rec.value, ts: rec.ts }, cx),
            Err(e) => set_aside(cx, &e),
        }
    })
}
