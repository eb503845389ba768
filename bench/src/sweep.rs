//! Produce throughput against batch size: `Producer::send_batch` of 1, 10, … records per call
//! (`--batches`), embedded and over TCP, for the plot of throughput against batch size.
//!
//! Each point produces `min(--records, 10,000 batches)` records of `--record-bytes` to a
//! one-partition topic of a broker served on loopback in this process (`--acks`, idempotent
//! unless `--idempotent false`), `--runs` times; the rows are the median runs, each TCP row
//! against the embedded runs of its own batch size. Nothing is consumed.

use std::sync::Arc;

use anyhow::{Result, ensure};
use eddy_client::{Connection, ConnectionOptions};

use crate::net::{Served, TOPIC, produce_all};
use crate::report::{Row, median, median_against};
use crate::workload::Options;

/// The most batches one point sends (so that a batch of 1 record takes seconds, not minutes).
const MAX_BATCHES: u64 = 10_000;
/// The broker's default `max_batch_bytes`.
const MAX_BATCH_BYTES: usize = 8 << 20;

pub fn run(opts: &Options) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for &batch in &opts.batches {
        ensure!(
            batch * (opts.record_bytes + 16) + 64 <= MAX_BATCH_BYTES,
            "a batch of {batch} records of {} B exceeds the broker's {MAX_BATCH_BYTES}-byte batches",
            opts.record_bytes
        );
        let records = opts.records.min(batch as u64 * MAX_BATCHES);
        let point = Options { api: "batch".into(), batch, records, ..opts.clone() };
        let bytes = records * opts.record_bytes as u64;
        let plain = if opts.idempotent { "" } else { " non-idempotent" };
        let label = format!("{}B x{batch} acks={}{plain}", opts.record_bytes, opts.acks);
        let (mut embedded, mut tcp) = (Vec::new(), Vec::new());
        for _ in 0..opts.runs {
            let served = Served::start(&point)?;
            let rt = &served.runtime;
            let timing = rt.block_on(produce_all(served.broker.clone(), &point, 1))?;
            served.broker.delete_topic(TOPIC)?;
            embedded.push(Row::new(format!("produce embedded {label}"), records, bytes, &timing));
            let conn =
                rt.block_on(Connection::connect(&served.addr, ConnectionOptions::default()))?;
            let timing = rt.block_on(produce_all(Arc::new(conn), &point, 1))?;
            tcp.push(Row::new(format!("produce tcp {label}"), records, bytes, &timing));
        }
        let tcp = median_against(tcp, &embedded);
        let embedded = median(embedded);
        rows.push(Row { batch: Some(batch as u64), ..embedded });
        rows.push(Row { batch: Some(batch as u64), ..tcp });
    }
    Ok(rows)
}
