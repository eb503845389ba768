//! `eddy produce TOPIC [--key-sep SEP] [--partition P] [--acks none|written|durable] [FILE]`:
//! one record per input line (the line without its `\n`); with `--key-sep`, the part before the
//! first separator is the key. A progress line with the rate goes to stderr when it is a
//! terminal and the input is large.

use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use eddy_client::{Acks, Producer, ProducerConfig, ProducerRecord};
use tokio::sync::mpsc;

use super::{Output, connect};

/// Inputs smaller than this finish too quickly to need a progress line.
const PROGRESS_MIN_BYTES: u64 = 8 << 20;

pub async fn run(broker: &str, parser: &mut lexopt::Parser, out: &mut Output) -> Result<()> {
    use lexopt::prelude::*;
    let (mut topic, mut file, mut key_sep, mut partition) = (None, None, None::<String>, None);
    let mut acks = Acks::Written;
    while let Some(arg) = parser.next()? {
        match arg {
            Long("key-sep") => key_sep = Some(parser.value()?.string()?),
            Long("partition") => partition = Some(parser.value()?.parse::<u32>()?),
            Long("acks") => {
                acks = match parser.value()?.string()?.as_str() {
                    "none" => Acks::None,
                    "written" => Acks::Written,
                    "durable" => Acks::Durable,
                    other => bail!("--acks {other:?}: expected none, written or durable"),
                }
            }
            Value(v) if topic.is_none() => topic = Some(v.string()?),
            Value(v) if file.is_none() => file = Some(PathBuf::from(v)),
            other => return Err(other.unexpected().into()),
        }
    }
    let topic = topic.context("produce needs a TOPIC")?;
    if key_sep.as_deref() == Some("") {
        bail!("--key-sep must not be empty");
    }
    let (input, size): (Box<dyn Read + Send>, Option<u64>) = match &file {
        Some(path) => {
            let f =
                std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
            let size = f.metadata().ok().map(|m| m.len());
            (Box::new(f), size)
        }
        None => (Box::new(std::io::stdin()), None),
    };
    let conn = connect(broker).await?;
    let config = ProducerConfig { acks, ..ProducerConfig::default() };
    let producer = Producer::new(conn, config)?;

    // Acknowledgements are checked in order by a second task, so reading never waits for them.
    let (deliveries, mut pending) = mpsc::channel::<eddy_client::Delivery>(65_536);
    let checker = tokio::spawn(async move {
        let mut acked = 0u64;
        while let Some(delivery) = pending.recv().await {
            delivery.await?;
            acked += 1;
        }
        Ok::<u64, eddy_client::ClientError>(acked)
    });

    let mut progress =
        Progress::new(size.filter(|s| *s >= PROGRESS_MIN_BYTES && std::io::stderr().is_terminal()));
    let mut reader = BufReader::with_capacity(1 << 20, input);
    let mut line = Vec::new();
    let mut sent = 0u64;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).context("reading input")?;
        if n == 0 {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        let record = match key_sep.as_deref().and_then(|sep| split_key(&line, sep.as_bytes())) {
            Some((key, value)) => {
                ProducerRecord::keyed(Bytes::copy_from_slice(key), Bytes::copy_from_slice(value))
            }
            None => ProducerRecord::value(Bytes::copy_from_slice(&line)),
        };
        let delivery = producer.send(&topic, partition, record).await?;
        if deliveries.send(delivery).await.is_err() {
            break; // the checker stopped on an error; it is reported below
        }
        sent += 1;
        progress.update(n as u64, sent);
    }
    drop(deliveries);
    producer.close().await?;
    let acked = checker.await.context("acknowledgement task")??;
    progress.finish(sent);
    if acked != sent {
        bail!("{sent} records read but {acked} acknowledged");
    }
    out.flush()
}

fn split_key<'a>(line: &'a [u8], sep: &[u8]) -> Option<(&'a [u8], &'a [u8])> {
    let at = line.windows(sep.len()).position(|w| w == sep)?;
    Some((&line[..at], &line[at + sep.len()..]))
}

/// A one-line progress report on stderr, redrawn at most ten times a second.
struct Progress {
    total: Option<u64>,
    done: u64,
    started: Instant,
    drawn: Instant,
}

impl Progress {
    fn new(total: Option<u64>) -> Self {
        let now = Instant::now();
        Self { total, done: 0, started: now, drawn: now }
    }

    fn update(&mut self, bytes: u64, records: u64) {
        self.done += bytes;
        let Some(total) = self.total else { return };
        if self.drawn.elapsed() < Duration::from_millis(100) {
            return;
        }
        self.drawn = Instant::now();
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let pct = self.done as f64 * 100.0 / total.max(1) as f64;
        let width = 30usize;
        let filled = ((pct / 100.0) * width as f64) as usize;
        let bar: String = "#".repeat(filled.min(width)) + &"-".repeat(width - filled.min(width));
        let line = format!(
            "\r[{bar}] {pct:5.1}%  {records} records  {:.0} rec/s  {:.1} MB/s ",
            records as f64 / secs,
            self.done as f64 / secs / 1e6
        );
        let _ = std::io::stderr().write_all(line.as_bytes());
    }

    fn finish(&self, records: u64) {
        if self.total.is_some() {
            let secs = self.started.elapsed().as_secs_f64().max(1e-3);
            let line = format!(
                "\n{records} records in {secs:.1} s ({:.0} rec/s)\n",
                records as f64 / secs
            );
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split_key;

    #[test]
    fn key_is_before_the_first_separator() {
        assert_eq!(split_key(b"k:v:w", b":"), Some((&b"k"[..], &b"v:w"[..])));
        assert_eq!(split_key(b"no-sep", b":"), None);
        assert_eq!(split_key(b"::", b"::"), Some((&b""[..], &b""[..])));
    }
}
