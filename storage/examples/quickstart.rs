//! Appends a few records to a partition log in `./eddy-data/quickstart-0`, reads them back,
//! and finds one by timestamp.
//!
//! Run with `cargo run --release -p eddy-storage --example quickstart`.
#![allow(clippy::print_stdout)]

use std::time::{SystemTime, UNIX_EPOCH};

use eddy_storage::{BatchBuilder, Batches, Log, LogConfig, Record};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "eddy-data/quickstart-0".into());
    let log = Log::open(&dir, LogConfig::default())?;
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;

    let mut batch = BatchBuilder::new();
    for (i, page) in ["/index.html", "/about", "/index.html"].iter().enumerate() {
        batch.push(Record {
            timestamp: now_ms + i as i64,
            key: Some(page.as_bytes()),
            value: Some(b"GET 200"),
            headers: &[],
        });
    }
    let appended = log.append(&batch.build())?;
    println!("appended offsets {}..={} to {dir}", appended.base_offset, appended.last_offset);

    let from = log.start_offset();
    let bytes = log.read(from, 1 << 20)?;
    for batch in Batches::new(&bytes) {
        for record in batch?.records()?.iter() {
            let r = record?;
            let key = String::from_utf8_lossy(r.key.unwrap_or_default());
            let value = String::from_utf8_lossy(r.value.unwrap_or_default());
            println!("offset {:>4}  ts {}  {key} -> {value}", r.offset, r.timestamp);
        }
    }
    if let Some(found) = log.offset_for_timestamp(now_ms + 1)? {
        println!("first record at or after ts {}: offset {}", now_ms + 1, found.offset);
    }
    println!("log holds [{}, {})", log.start_offset(), log.next_offset());
    log.close()?;
    Ok(())
}
