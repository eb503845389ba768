//! The file sink: every record of its topics as one JSON line
//! `{"topic","partition","offset","timestamp","key","value"}` (the value parsed when it is
//! JSON, else a string; `null` for a tombstone), appended to `file`.
//!
//! Invariant: the position stores the offsets together with the file's length after the lines
//! they cover were fsynced; at start the file is cut back to that length, so a crash between
//! the write and the position neither loses nor repeats a line. The first start stores the
//! file's length before writing anything (else a crash before the first position would leave
//! the first batch's lines to be written twice).

use std::fs::OpenOptions;
use std::io::Write;

use serde_json::{Value, json};

use crate::config::FileSinkConfig;
use crate::consume::{Consumed, Consumer};
use crate::error::ConnectError;
use crate::runtime::Ctx;

fn line(c: &Consumed) -> String {
    let text = |b: &Vec<u8>| String::from_utf8_lossy(b).into_owned();
    let value = c.record.value.as_ref().map_or(Value::Null, |v| {
        serde_json::from_slice::<Value>(v).unwrap_or_else(|_| Value::String(text(v)))
    });
    let mut l = json!({
        "topic": c.topic,
        "partition": c.partition,
        "offset": c.record.offset,
        "timestamp": c.record.timestamp,
        "key": c.record.key.as_ref().map(text),
        "value": value,
    })
    .to_string();
    l.push('\n');
    l
}

pub async fn run(c: &FileSinkConfig, ctx: &Ctx) -> Result<(), ConnectError> {
    let io = |e| ConnectError::File { path: c.path.clone(), source: e };
    let stored = ctx.load_position();
    let mut consumer = Consumer::open(ctx, &c.topics, stored.as_ref())?;
    let mut file = OpenOptions::new().create(true).append(true).open(&c.path).map_err(io)?;
    let mut len = file.metadata().map_err(io)?.len();
    match stored.as_ref().and_then(|s| s.get("len")).and_then(Value::as_u64) {
        Some(kept) if len > kept => {
            // Lines written after the last stored position: they are written again below.
            file.set_len(kept).map_err(io)?;
            len = kept;
        }
        Some(_) => {}
        // The first start: the length the file had before any line of ours is stored before
        // the first line, so a crash before the first batch's position cuts those lines too.
        None => {
            let offsets = consumer.advance(&[]);
            ctx.store_position(&json!({"offsets": offsets, "len": len}), consumer.shown())?;
        }
    }
    ctx.running();
    loop {
        let batch = consumer.poll(ctx).await?;
        let text: String = batch.iter().map(line).collect();
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_data().map_err(io)?;
        len += text.len() as u64;
        let offsets = consumer.advance(&batch);
        ctx.add_records(batch.len() as u64);
        ctx.store_position(&json!({"offsets": offsets, "len": len}), consumer.shown())?;
    }
}
