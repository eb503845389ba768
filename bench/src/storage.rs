//! Storage workloads: append and sequential read of one partition log against raw file I/O of
//! the same bytes, and group commit under `flush = always`.

use std::sync::{Arc, Barrier};
use std::time::Instant;

use anyhow::{Result, ensure};
use eddy_storage::batch::BatchHeader;
use eddy_storage::{Flush, Log, LogConfig, ValidBatch};

use crate::baseline;
use crate::report::{Row, Timing, median, median_against};
use crate::workload::{Options, batches};

const READ_CHUNK: usize = 1 << 20;

pub fn run(opts: &Options) -> Result<Vec<Row>> {
    let batches = batches(opts.records, opts.batch, opts.record_bytes);
    let records = batches.len() as u64 * opts.batch as u64;
    let bytes: u64 = batches.iter().map(|b| b.as_bytes().len() as u64).sum();
    let label = format!("{}B x{}", opts.record_bytes, opts.batch);
    let mut runs: [Vec<Row>; 6] = Default::default();
    for _ in 0..opts.runs {
        let dir = opts.tempdir()?;
        let raw = dir.path().join("raw.bin");
        let w = baseline::raw_write(&raw, &batches, false)?;
        let (r, read_bytes) = baseline::raw_read(&raw, READ_CHUNK)?;
        ensure!(read_bytes == bytes, "raw read {read_bytes} of {bytes} bytes");
        std::fs::remove_file(&raw)?;

        // Untrusted bytes, as a server receives them: checksums and a record walk per batch.
        let checked =
            append_all(&dir.path().join("checked"), &batches, |log, b| log.append(b.as_bytes()))?;
        // Batches from BatchBuilder::build_valid, as an embedded producer appends them.
        let log = Log::open(
            dir.path().join("log"),
            LogConfig { retention_ms: None, ..LogConfig::default() },
        )?;
        let append = append_into(&log, &batches, |log, b| log.append_valid(b))?;
        let active = read_log(&log, records)?;
        log.roll()?;
        let sealed = read_log(&log, records)?;
        let sealed_again = read_log(&log, records)?;

        runs[0].push(Row::new(format!("raw write {label}"), records, bytes, &w));
        runs[1].push(Row::new(format!("raw read {label}"), records, bytes, &r));
        runs[2].push(Row::new(format!("eddy append {label} flush=os"), records, bytes, &append));
        runs[5].push(Row::new(
            format!("eddy append {label} untrusted bytes"),
            records,
            bytes,
            &checked,
        ));
        runs[3].push(Row::new(
            format!("eddy read {label} active (pread)"),
            records,
            bytes,
            &active,
        ));
        runs[4].push(
            Row::new(format!("eddy read {label} sealed (mmap)"), records, bytes, &sealed).note(
                "second pass (checksums already verified)",
                format!(
                    "{:.2} M records/s",
                    records as f64 / sealed_again.elapsed.as_secs_f64() / 1e6
                ),
            ),
        );
    }
    let [w, r, a, ra, rs, ac] = runs;
    let (a, ac) = (median_against(a, &w), median_against(ac, &w));
    let (ra, rs) = (median_against(ra, &r), median_against(rs, &r));
    let (w, r) = (median(w), median(r));
    Ok(vec![w, a, ac, r, rs, ra])
}

type AppendFn = fn(&Log, &ValidBatch) -> eddy_storage::Result<eddy_storage::AppendInfo>;

/// Appends into a fresh log in `dir`, then deletes it, so its dirty pages are dropped instead of
/// being written back while later measurements run.
fn append_all(dir: &std::path::Path, batches: &[ValidBatch], append: AppendFn) -> Result<Timing> {
    let log = Log::open(dir, LogConfig { retention_ms: None, ..LogConfig::default() })?;
    let timing = append_into(&log, batches, append)?;
    drop(log);
    std::fs::remove_dir_all(dir)?;
    Ok(timing)
}

fn append_into(log: &Log, batches: &[ValidBatch], append: AppendFn) -> Result<Timing> {
    let mut timing = Timing::new();
    let start = Instant::now();
    for batch in batches {
        let t = Instant::now();
        append(log, batch)?;
        timing.record(t.elapsed());
    }
    timing.finish(start.elapsed());
    Ok(timing)
}

/// Reads the whole log in `READ_CHUNK` reads, walking batch headers to find the next offset
/// and count records, as a consumer's fetch loop would before decoding.
fn read_log(log: &Log, expect_records: u64) -> Result<Timing> {
    let mut timing = Timing::new();
    let mut next = log.start_offset();
    let mut records = 0u64;
    let start = Instant::now();
    while next < log.next_offset() {
        let t = Instant::now();
        let chunk = log.read(next, READ_CHUNK)?;
        let mut at = 0usize;
        while at < chunk.len() {
            let h = BatchHeader::parse(&chunk[at..])?;
            records += u64::from(h.record_count);
            next = h.next_offset();
            at += h.batch_len as usize;
        }
        timing.record(t.elapsed());
    }
    timing.finish(start.elapsed());
    ensure!(records == expect_records, "read {records} of {expect_records} records");
    Ok(timing)
}

/// `threads` appenders, each appending batches under `flush = always`: how many fsyncs the
/// appends cost, against a single writer that fdatasyncs every batch.
pub fn run_group_commit(opts: &Options) -> Result<Vec<Row>> {
    let per_thread = (opts.records / opts.batch as u64 / opts.threads as u64).max(1) as usize;
    let batches = batches(per_thread as u64 * opts.batch as u64, opts.batch, opts.record_bytes);
    let records = (batches.len() * opts.threads * opts.batch) as u64;
    let bytes =
        batches.iter().map(|b| b.as_bytes().len() as u64).sum::<u64>() * opts.threads as u64;
    let dir = opts.tempdir()?;

    let all: Vec<_> = (0..opts.threads).flat_map(|_| batches.iter().cloned()).collect();
    let w = baseline::raw_write(&dir.path().join("raw.bin"), &all, true)?;
    let raw =
        Row::new(format!("raw write+fdatasync per batch x{}", opts.batch), records, bytes, &w);

    let log = Arc::new(Log::open(
        dir.path().join("log"),
        LogConfig { flush: Flush::Always, ..LogConfig::default() },
    )?);
    let barrier = Arc::new(Barrier::new(opts.threads));
    let batches = Arc::new(batches);
    let start = Instant::now();
    let handles: Vec<_> = (0..opts.threads)
        .map(|_| {
            let (log, barrier, batches) = (log.clone(), barrier.clone(), batches.clone());
            std::thread::spawn(move || -> Result<Timing> {
                barrier.wait();
                let mut t = Timing::new();
                for b in batches.iter() {
                    let s = Instant::now();
                    log.append_valid(b)?;
                    t.record(s.elapsed());
                }
                Ok(t)
            })
        })
        .collect();
    let mut timing = Timing::new();
    for h in handles {
        let t = h.join().map_err(|_| anyhow::anyhow!("appender panicked"))??;
        timing.merge(&t);
    }
    timing.finish(start.elapsed());
    let stats = log.stats();
    let row = Row::new(
        format!("eddy append flush=always {} threads x{}", opts.threads, opts.batch),
        records,
        bytes,
        &timing,
    )
    .against(&raw)
    .note("appends", stats.appends)
    .note("fsyncs", stats.fsyncs)
    .note("appends per fsync", format!("{:.1}", stats.appends as f64 / stats.fsyncs.max(1) as f64));
    Ok(vec![raw, row])
}
