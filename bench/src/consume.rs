//! Consume throughput from the page cache and after dropping the OS cache, over TCP and
//! embedded, each beside a raw sequential read of the partition's own segment files.
//!
//! The workload produces `--records` records once (embedded, `send_batch`) to a one-partition
//! topic of a broker served on loopback in this process, then, `--runs` times:
//!
//! - **warm**: the segment files read front to back with `read(2)` (the baseline), then every
//!   record consumed through the client on the embedded transport, then over TCP, then the same
//!   number of bytes copied over a plain loopback TCP connection (the TCP consume's floor,
//!   `baseline::loopback_copy`);
//! - **cold**: the same three, each after `sync` and `echo 1 > /proc/sys/vm/drop_caches`, so
//!   each reads from the disk. Where that file is not writable (no root, a read-only `/proc`),
//!   the cold rows say so and are skipped.
//!
//! Each row notes the least and the most bytes that any of its runs read from the block device
//! (`read_bytes` of `/proc/self/io`: the broker runs in this process), so a "cold" read that was
//! served from memory would show. MB/s counts the bytes of the segment files (records with their
//! batch headers), the same bytes for every row, so the rows compare directly.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use eddy_client::{Connection, ConnectionOptions};

use crate::baseline;
use crate::net::{Served, TOPIC, consume_all, produce_all};
use crate::report::{Row, Timing, median, median_against};
use crate::workload::Options;

const READ_CHUNK: usize = 1 << 20;
const DROP_CACHES: &str = "/proc/sys/vm/drop_caches";

/// What every read of one run needs.
struct Setup<'a> {
    served: &'a Served,
    conn: Arc<Connection>,
    files: Vec<PathBuf>,
    records: u64,
    bytes: u64,
    size: String,
}

pub fn run(opts: &Options) -> Result<Vec<Row>> {
    let served = Served::start(opts)?;
    let rt = &served.runtime;
    let producing = Options { api: "batch".into(), ..opts.clone() };
    rt.block_on(produce_all(served.broker.clone(), &producing, PARTITIONS))?;
    let files = segment_files(&served.data_dir().join("topics").join(TOPIC).join("0"))?;
    let bytes = files.iter().map(|f| Ok(std::fs::metadata(f)?.len())).sum::<Result<u64>>()?;
    let conn = rt.block_on(Connection::connect(&served.addr, ConnectionOptions::default()))?;
    let setup = Setup {
        served: &served,
        conn: Arc::new(conn),
        files,
        records: opts.records,
        bytes,
        size: format!("{}B", opts.record_bytes),
    };

    let (mut warm, mut cold) = (Vec::new(), Vec::new());
    let mut copies = Vec::new();
    let mut cold_skipped: Option<String> = None;
    for _ in 0..opts.runs {
        match read_three(&setup, false)? {
            Ok(rows) => warm.push(rows),
            Err(why) => anyhow::bail!("warm reads need no cache drop, yet: {why}"),
        }
        let t = baseline::loopback_copy(setup.bytes, READ_CHUNK)?;
        copies.push(Row::new(format!("loopback tcp copy {}", setup.size), opts.records, bytes, &t));
        if cold_skipped.is_none() {
            match read_three(&setup, true)? {
                Ok(rows) => cold.push(rows),
                Err(why) => cold_skipped = Some(why),
            }
        }
    }
    // The TCP consume of each run against a plain loopback copy of the same bytes.
    let vs_copy = ratios(warm.iter().map(|three| &three[2].row), &copies);
    let mut rows = summarise(warm);
    if let Some(tcp) = rows.pop() {
        rows.push(tcp.note("vs loopback tcp copy (min / median / max)", vs_copy));
    }
    rows.push(median(copies));
    match cold_skipped {
        Some(why) => {
            for what in ["raw read", "consume embedded", "consume tcp"] {
                rows.push(Row::skipped(format!("{what} {} cold cache", setup.size), &why));
            }
        }
        None => rows.extend(summarise(cold)),
    }
    Ok(rows)
}

const PARTITIONS: u32 = 1;

/// `min / median / max` of the per-run ratios of `rows` to `baselines`.
fn ratios<'a>(rows: impl Iterator<Item = &'a Row>, baselines: &[Row]) -> String {
    let mut r: Vec<f64> =
        rows.zip(baselines).map(|(a, b)| a.records_per_s / b.records_per_s).collect();
    r.sort_by(f64::total_cmp);
    match (r.first(), r.get(r.len() / 2), r.last()) {
        (Some(lo), Some(mid), Some(hi)) => format!("{lo:.2} / {mid:.2} / {hi:.2}"),
        _ => "no runs".into(),
    }
}

/// The raw read, the embedded consume and the TCP consume of one run, each after dropping the
/// page cache if `cold`; `Ok(Err(why))` if the cache cannot be dropped here.
fn read_three(s: &Setup<'_>, cold: bool) -> Result<Result<[Read; 3], String>> {
    let state = if cold { "cold" } else { "warm" };
    let name = |what: &str| format!("{what} {} {state} cache", s.size);
    let rt = &s.served.runtime;
    let prepare = || if cold { drop_page_cache() } else { Ok(()) };

    if let Err(why) = prepare() {
        return Ok(Err(why));
    }
    let raw = measured(name("raw read"), s, || {
        let (timing, read) = read_files(&s.files)?;
        ensure!(read == s.bytes, "raw read {read} of {} bytes", s.bytes);
        Ok(timing)
    })?;
    if let Err(why) = prepare() {
        return Ok(Err(why));
    }
    let embedded = measured(name("consume embedded"), s, || {
        rt.block_on(consume_all(s.served.broker.clone(), s.records, PARTITIONS))
    })?;
    if let Err(why) = prepare() {
        return Ok(Err(why));
    }
    let tcp = measured(name("consume tcp"), s, || {
        rt.block_on(consume_all(s.conn.clone(), s.records, PARTITIONS))
    })?;
    Ok(Ok([raw, embedded, tcp]))
}

/// One timed read and the bytes the process read from the block device meanwhile.
struct Read {
    row: Row,
    from_disk: Option<u64>,
}

/// The median raw read, and each consume against the raw read of its own run; each row notes
/// the least and most any of its runs read from the block device.
fn summarise(runs: Vec<[Read; 3]>) -> Vec<Row> {
    let mut kinds: [Vec<Read>; 3] = Default::default();
    for three in runs {
        for (kind, read) in kinds.iter_mut().zip(three) {
            kind.push(read);
        }
    }
    let [raw, embedded, tcp] = kinds.map(|reads| {
        let disk: Option<Vec<u64>> = reads.iter().map(|r| r.from_disk).collect();
        let note = match disk.as_deref().map(|d| (d.iter().min(), d.iter().max())) {
            Some((Some(lo), Some(hi))) => {
                format!("{:.1} – {:.1} MB", *lo as f64 / 1e6, *hi as f64 / 1e6)
            }
            _ => "unknown (no /proc/self/io)".to_string(),
        };
        (reads.into_iter().map(|r| r.row).collect::<Vec<_>>(), note)
    });
    let note = "read from disk per run (least – most)";
    let embedded_row = median_against(embedded.0, &raw.0).note(note, embedded.1);
    let tcp_row = median_against(tcp.0, &raw.0).note(note, tcp.1);
    vec![median(raw.0).note(note, raw.1), embedded_row, tcp_row]
}

/// Runs `f` and makes its row, counting the bytes this process read from the block device
/// meanwhile.
fn measured(name: String, s: &Setup<'_>, f: impl FnOnce() -> Result<Timing>) -> Result<Read> {
    let before = disk_read_bytes();
    let timing = f()?;
    let from_disk = disk_read_bytes().zip(before).map(|(after, before)| after - before);
    Ok(Read { row: Row::new(name, s.records, s.bytes, &timing), from_disk })
}

/// `read_bytes` of `/proc/self/io`: bytes this process (all its threads) caused to be fetched
/// from the storage layer.
fn disk_read_bytes() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines().find_map(|l| l.strip_prefix("read_bytes:")?.trim().parse().ok())
}

/// Writes back dirty pages, then asks the kernel to drop the clean page cache. `Err` says why
/// it cannot be done here.
fn drop_page_cache() -> Result<(), String> {
    let synced = Command::new("sync").status().map_err(|e| format!("cannot run sync: {e}"))?;
    if !synced.success() {
        return Err(format!("sync failed: {synced}"));
    }
    std::fs::write(DROP_CACHES, "1").map_err(|e| format!("cannot write {DROP_CACHES}: {e}"))
}

/// The partition's segment files (`*.log`), in offset order.
fn segment_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .map(|e| Ok(e?.path()))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    ensure!(!files.is_empty(), "no segment files in {}", dir.display());
    Ok(files)
}

/// Reads `files` front to back in turn; one timing over all of them.
fn read_files(files: &[PathBuf]) -> Result<(Timing, u64)> {
    let mut total = Timing::new();
    let mut elapsed = std::time::Duration::ZERO;
    let mut bytes = 0;
    for file in files {
        let (timing, read) = baseline::raw_read(file, READ_CHUNK)?;
        total.merge(&timing);
        elapsed += timing.elapsed;
        bytes += read;
    }
    total.finish(elapsed);
    Ok((total, bytes))
}
