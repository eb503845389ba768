//! A consumer group member in its own process, for the group tests to stop, kill and watch.
//!
//! `eddy-group-member BROKER GROUP TOPIC SESSION_MS [OUT_FILE [WORK_US]]`
//!
//! Joins GROUP (subscribing to TOPIC, manual commits) and prints, one line each, flushed:
//! - `joined MEMBER_ID` once subscribed;
//! - `assigned P,P,...`, `revoked P,...`, `lost P,...` as the assignment changes;
//! - `committed N` after each acknowledged commit, N being the records processed so far.
//!
//! With OUT_FILE it "processes" each record by appending `r PARTITION OFFSET` to it, and after
//! every acknowledged commit appends `c PARTITION OFFSET` per committed partition — written
//! before the commit is sent, and after its acknowledgement respectively, so a test can tell
//! what a killed member processed and what it had committed. WORK_US stands for the time
//! processing one record takes (spent after each poll), so a run lasts long enough for a test
//! to kill members in the middle of it; polls then fetch at most 64 KiB.
//!
//! SIGTERM makes it leave the group (its partitions move at once) and exit 0. Any failure
//! prints `error ...` and exits 1.

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use eddy_client::{
    Connection, ConnectionOptions, GroupConfig, GroupConsumer, RebalanceListener, SeekTo,
    TopicPartition,
};

/// Prints assignment changes.
struct Printer(Arc<Mutex<io::Stdout>>);

impl Printer {
    fn event(&self, what: &str, partitions: &[TopicPartition]) {
        let list: Vec<String> = partitions.iter().map(|(_, p)| p.to_string()).collect();
        say(&self.0, &format!("{what} {}", list.join(",")));
    }
}

impl RebalanceListener for Printer {
    fn on_assigned(&mut self, partitions: &[TopicPartition]) {
        self.event("assigned", partitions);
    }
    fn on_revoked(&mut self, partitions: &[TopicPartition]) {
        self.event("revoked", partitions);
    }
    fn on_lost(&mut self, partitions: &[TopicPartition]) {
        self.event("lost", partitions);
    }
}

fn say(out: &Mutex<io::Stdout>, line: &str) {
    let out = out.lock().unwrap_or_else(|p| p.into_inner());
    let mut out = out.lock();
    // A closed stdout only means nobody is watching; the member carries on.
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

fn main() {
    let stdout = Arc::new(Mutex::new(io::stdout()));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
    let outcome = match runtime {
        Ok(rt) => rt.block_on(run(Arc::clone(&stdout))),
        Err(e) => Err(e.into()),
    };
    if let Err(e) = outcome {
        say(&stdout, &format!("error {e:#}"));
        std::process::exit(1);
    }
}

async fn run(stdout: Arc<Mutex<io::Stdout>>) -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (broker, group, topic, session_ms, out_file, work_us) = match args.as_slice() {
        [b, g, t, s] => (b, g, t, s.parse::<u64>()?, None, 0),
        [b, g, t, s, o] => (b, g, t, s.parse::<u64>()?, Some(o), 0),
        [b, g, t, s, o, w] => (b, g, t, s.parse::<u64>()?, Some(o), w.parse::<u64>()?),
        _ => bail!("usage: eddy-group-member BROKER GROUP TOPIC SESSION_MS [OUT_FILE [WORK_US]]"),
    };
    let mut out = match out_file {
        Some(path) => Some(BufWriter::new(
            OpenOptions::new().create(true).append(true).open(path).context("opening OUT_FILE")?,
        )),
        None => None,
    };
    let conn = Connection::connect(broker, ConnectionOptions::default()).await?;
    let mut config = GroupConfig::new(group, &[topic]);
    config.client_id = format!("member-{}", std::process::id());
    config.session_timeout = Some(Duration::from_millis(session_ms));
    config.auto_commit = None;
    config.start = SeekTo::Earliest;
    if work_us > 0 {
        config.fetch.max_bytes = 64 * 1024;
        config.fetch.partition_max_bytes = 32 * 1024;
    }
    let mut member = GroupConsumer::subscribe(conn, config, Printer(Arc::clone(&stdout))).await?;
    say(&stdout, &format!("joined {}", member.member_id()));
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut processed = 0u64;
    loop {
        let batches = tokio::select! {
            _ = terminate.recv() => {
                member.close().await?;
                say(&stdout, "left");
                return Ok(());
            }
            polled = member.poll(Duration::from_millis(200)) => polled?,
        };
        if batches.is_empty() {
            continue;
        }
        let mut next: Vec<(String, u32, u64)> = Vec::new();
        let before = processed;
        for batch in &batches {
            for record in batch.records() {
                let record = record?;
                if let Some(out) = out.as_mut() {
                    writeln!(out, "r {} {}", batch.partition(), record.offset)?;
                }
                processed += 1;
            }
            let end = (topic.clone(), batch.partition(), batch.last_offset() + 1);
            match next.iter_mut().find(|(_, p, _)| *p == end.1) {
                Some(slot) => slot.2 = slot.2.max(end.2),
                None => next.push(end),
            }
        }
        let processed_now = processed - before;
        if work_us > 0 {
            tokio::time::sleep(Duration::from_micros(work_us * processed_now)).await;
        }
        if let Some(out) = out.as_mut() {
            // Processed means written to the file (the kernel has it, a SIGKILL cannot undo it).
            out.flush()?;
        }
        member.commit_offsets(&next).await?;
        if let Some(out) = out.as_mut() {
            for (_, p, offset) in &next {
                writeln!(out, "c {p} {offset}")?;
            }
            out.flush()?;
        }
        say(&stdout, &format!("committed {processed}"));
    }
}
