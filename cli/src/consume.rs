//! `eddy consume TOPIC [--from earliest|latest|OFFSET|@UNIX_MS] [--partition P] [--count N]
//! [--format value|json] [--follow] [--isolation read_uncommitted|read_committed]`: one value
//! per line, or one JSON object per line with
//! partition, offset, timestamp, key, value and headers (a list of `{key, value}`, in order).
//! Without `--follow` it stops once it has read up to where each partition ended when it
//! started.
//!
//! With `--group G` the command is a member of consumer group G: it reads the partitions the
//! broker assigns it, from the group's committed offsets (`--from` applies to partitions the
//! group has never committed), and commits what it has printed after each poll. Without
//! `--follow` it leaves once its partitions are read up to where they ended when it got them.
//!
//! Transaction markers are never printed. `--isolation read_committed` prints only records of
//! committed transactions (and records outside transactions) and stops, without `--follow`,
//! at the last stable offset; the default, `read_uncommitted`, prints every record.
//!
//! JSON output holds keys and values as strings; bytes that are not UTF-8 are replaced with
//! U+FFFD (use `--format value` for raw bytes).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use eddy_client::{
    Admin, ConsumedBatch, Consumer, ConsumerConfig, GroupConfig, GroupConsumer, IsolationLevel,
    NoListener, OffsetQuery, SeekTo,
};

use super::{Output, connect};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Value,
    Json,
}

pub async fn run(broker: &str, parser: &mut lexopt::Parser, out: &mut Output) -> Result<()> {
    use lexopt::prelude::*;
    let (mut topic, mut partition, mut count, mut group) = (None, None, None::<u64>, None);
    let (mut from, mut format, mut follow) = (SeekTo::Earliest, Format::Value, false);
    let mut isolation = IsolationLevel::ReadUncommitted;
    while let Some(arg) = parser.next()? {
        match arg {
            Long("from") => from = parse_from(&parser.value()?.string()?)?,
            Long("partition") => partition = Some(parser.value()?.parse::<u32>()?),
            Long("count") => count = Some(parser.value()?.parse()?),
            Long("format") => {
                format = match parser.value()?.string()?.as_str() {
                    "value" => Format::Value,
                    "json" => Format::Json,
                    other => bail!("--format {other:?}: expected value or json"),
                }
            }
            Long("follow") => follow = true,
            Long("isolation") => {
                isolation = match parser.value()?.string()?.as_str() {
                    "read_uncommitted" => IsolationLevel::ReadUncommitted,
                    "read_committed" => IsolationLevel::ReadCommitted,
                    other => {
                        bail!("--isolation {other:?}: expected read_uncommitted or read_committed")
                    }
                }
            }
            Long("group") => group = Some(parser.value()?.string()?),
            Value(v) if topic.is_none() => topic = Some(v.string()?),
            other => return Err(other.unexpected().into()),
        }
    }
    let topic = topic.context("consume needs a TOPIC")?;
    if let Some(group) = group {
        if partition.is_some() {
            bail!("--partition and --group do not go together: the group assigns partitions");
        }
        let printer = Printer { format, count, written: 0 };
        let how = Reading { from, follow, isolation };
        return consume_in_group(broker, &topic, &group, how, printer, out).await;
    }
    let conn = Arc::new(connect(broker).await?);
    let admin = Admin::new(conn.clone());
    let partitions: Vec<u32> = match partition {
        Some(p) => vec![p],
        None => (0..admin.partition_count(&topic).await?).collect(),
    };
    let mut consumer =
        Consumer::new(conn, ConsumerConfig { start: from, isolation, ..ConsumerConfig::default() });
    consumer.assign(&topic, partitions.iter().copied());
    for p in &partitions {
        consumer.seek(&topic, *p, from).await?;
    }
    // Where to stop without --follow: each partition's end as of now.
    let mut ends: BTreeMap<u32, u64> = BTreeMap::new();
    if !follow {
        let queries: Vec<_> = partitions.iter().map(|p| (*p, OffsetQuery::Latest)).collect();
        for listed in admin.list_offsets_as(&topic, &queries, isolation).await? {
            ends.insert(listed.partition, listed.offset);
        }
    }
    let mut printer = Printer { format, count, written: 0 };
    loop {
        if printer.done() || (!follow && caught_up(&consumer, &topic, &ends)) {
            break;
        }
        let batches = consumer.poll(Duration::from_millis(500)).await?;
        printer.print(&batches, &ends, out)?;
        if follow {
            // Following is interactive: show each poll's records as they come.
            out.flush()?;
        }
    }
    out.flush()
}

/// Writes records in the chosen format, up to `count`.
struct Printer {
    format: Format,
    count: Option<u64>,
    written: u64,
}

impl Printer {
    fn done(&self) -> bool {
        self.count.is_some_and(|c| self.written >= c)
    }

    /// Prints the records below each partition's end (no end: all); returns, per partition,
    /// the offset after the last record printed.
    fn print(
        &mut self,
        batches: &[ConsumedBatch],
        ends: &BTreeMap<u32, u64>,
        out: &mut Output,
    ) -> Result<BTreeMap<u32, u64>> {
        let mut next = BTreeMap::new();
        for batch in batches {
            for record in batch.to_records()? {
                if ends.get(&record.partition).is_some_and(|end| record.offset >= *end) {
                    continue;
                }
                if self.done() {
                    return Ok(next);
                }
                match self.format {
                    Format::Value => out.line(record.value.as_deref().unwrap_or_default())?,
                    Format::Json => {
                        let json = serde_json::json!({
                            "partition": record.partition,
                            "offset": record.offset,
                            "timestamp": record.timestamp,
                            "key": record.key.as_deref().map(String::from_utf8_lossy),
                            "value": record.value.as_deref().map(String::from_utf8_lossy),
                            "headers": record
                                .headers
                                .iter()
                                .map(|h| {
                                    serde_json::json!({
                                        "key": String::from_utf8_lossy(&h.key),
                                        "value": h.value.as_deref().map(String::from_utf8_lossy),
                                    })
                                })
                                .collect::<Vec<_>>(),
                        });
                        out.line(json.to_string().as_bytes())?;
                    }
                }
                self.written += 1;
                next.insert(record.partition, record.offset + 1);
            }
        }
        Ok(next)
    }
}

/// Where and how a group member reads.
struct Reading {
    from: SeekTo,
    follow: bool,
    isolation: IsolationLevel,
}

/// `consume --group`: a group member that commits exactly what it printed, after printing it.
async fn consume_in_group(
    broker: &str,
    topic: &str,
    group: &str,
    how: Reading,
    mut printer: Printer,
    out: &mut Output,
) -> Result<()> {
    let Reading { from, follow, isolation } = how;
    let conn = Arc::new(connect(broker).await?);
    let admin = Admin::new(conn.clone());
    let mut config = GroupConfig::new(group, &[topic]);
    config.client_id = "eddy-cli".into();
    config.auto_commit = None;
    config.start = from;
    config.fetch.isolation = isolation;
    let mut member = GroupConsumer::subscribe(conn, config, NoListener).await?;
    // Where each owned partition ended when this member got it (without --follow).
    let mut ends: BTreeMap<u32, u64> = BTreeMap::new();
    loop {
        if printer.done() {
            break;
        }
        let owned: Vec<u32> = member.assignment().into_iter().map(|(_, p)| p).collect();
        ends.retain(|p, _| owned.contains(p));
        if !follow {
            let new: Vec<_> = owned
                .iter()
                .filter(|p| !ends.contains_key(p))
                .map(|p| (*p, OffsetQuery::Latest))
                .collect();
            if !new.is_empty() {
                for listed in admin.list_offsets_as(topic, &new, isolation).await? {
                    ends.insert(listed.partition, listed.offset);
                }
            }
            let done = !owned.is_empty()
                && owned.iter().all(|p| {
                    member
                        .position(topic, *p)
                        .is_some_and(|pos| ends.get(p).is_some_and(|e| pos >= *e))
                });
            if done {
                break;
            }
        }
        let batches = member.poll(Duration::from_millis(500)).await?;
        let limits = if follow { BTreeMap::new() } else { ends.clone() };
        let printed = printer.print(&batches, &limits, out)?;
        out.flush()?;
        let commits: Vec<(String, u32, u64)> =
            printed.into_iter().map(|(p, next)| (topic.to_string(), p, next)).collect();
        if !commits.is_empty() {
            member.commit_offsets(&commits).await?;
        }
    }
    out.flush()?;
    member.close().await?;
    Ok(())
}

fn caught_up<T: eddy_client::Transport>(
    consumer: &Consumer<T>,
    topic: &str,
    ends: &BTreeMap<u32, u64>,
) -> bool {
    ends.iter().all(|(p, end)| consumer.position(topic, *p).is_some_and(|pos| pos >= *end))
}

fn parse_from(text: &str) -> Result<SeekTo> {
    Ok(match text {
        "earliest" => SeekTo::Earliest,
        "latest" => SeekTo::Latest,
        t if t.starts_with('@') => {
            SeekTo::Timestamp(t[1..].parse().with_context(|| format!("--from {t:?}"))?)
        }
        t => SeekTo::Offset(t.parse().with_context(|| {
            format!("--from {t:?}: expected earliest, latest, OFFSET or @UNIX_MS")
        })?),
    })
}
