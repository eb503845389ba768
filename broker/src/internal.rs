//! The broker's internal topics (`__consumer_offsets`, `__processors`, `__sql`) are read back
//! the same way at startup: every record from the log's start to its end, in offset order, so
//! the last write of a key wins exactly as it does after compaction. The registries
//! (`__processors`, `__sql`) write them the same way too: one keyed record at a time, fsynced
//! before the change it records takes effect.

use eddy_storage::{BatchBuilder, Batches, Log, Record};

use crate::clock::now_ms;
use crate::error::BrokerError;

/// Appends one record (`value` `None`: a tombstone) to `log` (partition 0 of `topic`) and
/// fsyncs it whatever the topic's flush policy; returns its offset.
pub fn append_durable(
    log: &Log,
    topic: &str,
    key: &[u8],
    value: Option<&[u8]>,
) -> Result<u64, BrokerError> {
    let storage = |source| BrokerError::Storage { topic: topic.to_string(), partition: 0, source };
    let mut b = BatchBuilder::new();
    b.push(Record { timestamp: now_ms(), key: Some(key), value, headers: &[] });
    let batch = b.build_valid().map_err(|e| storage(e.into()))?;
    let appended = log.append_valid(&batch).map_err(storage)?;
    log.sync_through(appended.last_offset + 1).map_err(storage)?;
    Ok(appended.last_offset)
}

/// Calls `f(offset, key, value)` for every record of `log` (partition 0 of `topic`) from its
/// start to the end it had when called. A damaged batch is a typed storage error.
pub fn for_each_record(
    log: &Log,
    topic: &str,
    mut f: impl FnMut(u64, Option<&[u8]>, Option<&[u8]>),
) -> Result<(), BrokerError> {
    let storage = |source| BrokerError::Storage { topic: topic.to_string(), partition: 0, source };
    let (mut at, end) = (log.start_offset(), log.next_offset());
    while at < end {
        let bytes = log.read(at, 4 << 20).map_err(storage)?;
        let before = at;
        for batch in Batches::new(&bytes) {
            let batch = batch.map_err(|e| storage(e.into()))?;
            let records = batch.records().map_err(|e| storage(e.into()))?;
            for record in records.iter() {
                let record = record.map_err(|e| storage(e.into()))?;
                // A read starts at the batch holding `at`; records before it were seen.
                if record.offset >= at {
                    f(record.offset, record.key, record.value);
                }
            }
            at = at.max(batch.last_offset() + 1);
        }
        if at == before {
            break;
        }
    }
    Ok(())
}
