//! Physical baselines: what the hardware and kernel do with the same bytes and no eddy.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use eddy_storage::ValidBatch;

use crate::report::Timing;

/// Writes each batch with one `write` call, in order, to a new file (optionally fdatasync after
/// each, the floor for a durable append).
pub fn raw_write(path: &Path, batches: &[ValidBatch], sync_each: bool) -> Result<Timing> {
    let mut file = File::create(path)?;
    let mut timing = Timing::new();
    let start = Instant::now();
    for batch in batches {
        let t = Instant::now();
        file.write_all(batch.as_bytes())?;
        if sync_each {
            file.sync_data()?;
        }
        timing.record(t.elapsed());
    }
    timing.finish(start.elapsed());
    Ok(timing)
}

/// Reads a file front to back in `chunk`-byte `read` calls, summing a byte of every 64 so the
/// data is looked at (as eddy's read path looks at every byte when it verifies checksums).
pub fn raw_read(path: &Path, chunk: usize) -> Result<(Timing, u64)> {
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; chunk];
    let mut timing = Timing::new();
    let mut total = 0u64;
    let mut sum = 0u64;
    let start = Instant::now();
    loop {
        let t = Instant::now();
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        sum = buf[..n].iter().step_by(64).fold(sum, |s, b| s.wrapping_add(u64::from(*b)));
        total += n as u64;
        timing.record(t.elapsed());
    }
    timing.finish(start.elapsed());
    std::hint::black_box(sum);
    Ok((timing, total))
}
