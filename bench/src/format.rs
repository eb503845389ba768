//! What the on-disk batch format costs a Kafka fetch: serving stored batches as they are
//! (one copy of the bytes, what a fetch answer costs at most) against transcoding each batch
//! into another layout, the per-fetch work a broker whose stored format differs from Kafka's
//! would do (decode every record, encode it into the other layout and checksum it). Both over
//! the same batches, uncompressed and lz4 (where transcoding also decompresses and
//! recompresses). The evidence behind "Why Kafka's batch format" in docs/format.md.

use std::time::Instant;

use anyhow::{Result, ensure};
use bytes::Bytes;
use eddy_storage::batch::{BatchBuilder, BatchView, Compression, Header, Record};

use crate::report::{Row, Timing, median, median_against};
use crate::workload::Options;

/// Batches of `per_batch` records of `value_bytes`, compressed with `codec`.
fn batches(opts: &Options, codec: Compression) -> Vec<Bytes> {
    let count = (opts.records / opts.batch as u64).max(1);
    let value: Vec<u8> = (0..opts.record_bytes).map(|i| b"abcdefghijklmnop"[i % 16]).collect();
    (0..count)
        .map(|b| {
            let mut builder = BatchBuilder::with_capacity(opts.batch * (opts.record_bytes + 16))
                .compression(codec);
            for i in 0..opts.batch as u64 {
                let key = (b * opts.batch as u64 + i).to_be_bytes();
                builder.push(Record {
                    timestamp: 1_700_000_000_000 + i as i64,
                    key: Some(&key),
                    value: Some(&value),
                    headers: &[],
                });
            }
            builder.build()
        })
        .collect()
}

/// One copy of each stored batch into an answer buffer.
fn serve_as_stored(batches: &[Bytes]) -> Result<Timing> {
    let mut timing = Timing::new();
    let mut answer = Vec::with_capacity(batches.iter().map(Bytes::len).max().unwrap_or(0));
    let start = Instant::now();
    for batch in batches {
        let t = Instant::now();
        answer.clear();
        answer.extend_from_slice(batch);
        std::hint::black_box(&answer);
        timing.record(t.elapsed());
    }
    timing.finish(start.elapsed());
    Ok(timing)
}

/// Each batch decoded (decompressed if it is) and encoded again, checksummed (and
/// recompressed with the same codec).
fn transcode(batches: &[Bytes], codec: Compression) -> Result<Timing> {
    let mut timing = Timing::new();
    let start = Instant::now();
    for batch in batches {
        let t = Instant::now();
        let view = BatchView::parse(batch)?;
        let records = view.records()?;
        let mut headers: Vec<Header<'_>> = Vec::new();
        let mut out = BatchBuilder::with_capacity(batch.len()).compression(codec);
        let mut n = 0u32;
        for r in records.iter() {
            let r = r?;
            headers.clear();
            headers.extend(r.headers());
            out.push(Record {
                timestamp: r.timestamp,
                key: r.key,
                value: r.value,
                headers: &headers,
            });
            n += 1;
        }
        ensure!(n == view.header().record_count, "decoded {n} records");
        std::hint::black_box(out.build());
        timing.record(t.elapsed());
    }
    timing.finish(start.elapsed());
    Ok(timing)
}

pub fn run(opts: &Options) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for codec in [Compression::None, Compression::Lz4] {
        let batches = batches(opts, codec);
        let records = batches.len() as u64 * opts.batch as u64;
        let bytes: u64 = batches.iter().map(|b| b.len() as u64).sum();
        let label = format!("{}B x{} {}", opts.record_bytes, opts.batch, codec.name());
        let (mut stored, mut transcoded) = (Vec::new(), Vec::new());
        for _ in 0..opts.runs {
            stored.push(Row::new(
                format!("serve as stored {label}"),
                records,
                bytes,
                &serve_as_stored(&batches)?,
            ));
            transcoded.push(Row::new(
                format!("transcode {label}"),
                records,
                bytes,
                &transcode(&batches, codec)?,
            ));
        }
        let transcoded = median_against(transcoded, &stored);
        rows.push(median(stored));
        rows.push(transcoded);
    }
    Ok(rows)
}
