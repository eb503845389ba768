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

/// Copies `total` bytes over a loopback TCP connection between two threads of this process
/// (1 MiB writes, `chunk`-byte reads): the physical floor under any consumer over TCP. Timed
/// from the connect to the last byte received; a stalled side fails after 30 s.
pub fn loopback_copy(total: u64, chunk: usize) -> Result<Timing> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let receiver = std::thread::spawn(move || -> Result<u64> {
        let (mut socket, _) = listener.accept()?;
        socket.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
        let mut buf = vec![0u8; chunk];
        let mut got = 0u64;
        while got < total {
            let n = socket.read(&mut buf)?;
            anyhow::ensure!(n > 0, "the sender closed after {got} of {total} bytes");
            got += n as u64;
        }
        Ok(got)
    });
    let mut timing = Timing::new();
    let start = Instant::now();
    let mut socket = std::net::TcpStream::connect(addr)?;
    socket.set_write_timeout(Some(std::time::Duration::from_secs(30)))?;
    let block = vec![b'x'; 1 << 20];
    let mut sent = 0u64;
    while sent < total {
        let n = (total - sent).min(block.len() as u64) as usize;
        socket.write_all(&block[..n])?;
        sent += n as u64;
    }
    let got = receiver.join().map_err(|_| anyhow::anyhow!("the receiving thread panicked"))??;
    timing.finish(start.elapsed());
    anyhow::ensure!(got == total, "received {got} of {total} bytes");
    Ok(timing)
}
