//! `eddy consume TOPIC [--from earliest|latest|OFFSET|@UNIX_MS] [--partition P] [--count N]
//! [--format value|json] [--follow]`: one value per line, or one JSON object per line with
//! partition, offset, timestamp, key and value. Without `--follow` it stops once it has read up
//! to where each partition ended when it started.
//!
//! JSON output holds keys and values as strings; bytes that are not UTF-8 are replaced with
//! U+FFFD (use `--format value` for raw bytes).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use eddy_client::{Admin, Consumer, ConsumerConfig, OffsetQuery, SeekTo};

use super::{Output, connect};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Value,
    Json,
}

pub async fn run(broker: &str, parser: &mut lexopt::Parser, out: &mut Output) -> Result<()> {
    use lexopt::prelude::*;
    let (mut topic, mut partition, mut count) = (None, None, None::<u64>);
    let (mut from, mut format, mut follow) = (SeekTo::Earliest, Format::Value, false);
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
            Value(v) if topic.is_none() => topic = Some(v.string()?),
            other => return Err(other.unexpected().into()),
        }
    }
    let topic = topic.context("consume needs a TOPIC")?;
    let conn = Arc::new(connect(broker).await?);
    let admin = Admin::new(conn.clone());
    let partitions: Vec<u32> = match partition {
        Some(p) => vec![p],
        None => (0..admin.partition_count(&topic).await?).collect(),
    };
    let mut consumer =
        Consumer::new(conn, ConsumerConfig { start: from, ..ConsumerConfig::default() });
    consumer.assign(&topic, partitions.iter().copied());
    for p in &partitions {
        consumer.seek(&topic, *p, from).await?;
    }
    // Where to stop without --follow: each partition's end as of now.
    let mut ends: BTreeMap<u32, u64> = BTreeMap::new();
    if !follow {
        let queries: Vec<_> = partitions.iter().map(|p| (*p, OffsetQuery::Latest)).collect();
        for listed in admin.list_offsets(&topic, &queries).await? {
            ends.insert(listed.partition, listed.offset);
        }
    }
    let mut written = 0u64;
    loop {
        if count.is_some_and(|c| written >= c) {
            break;
        }
        if !follow && caught_up(&consumer, &topic, &ends) {
            break;
        }
        let batches = consumer.poll(Duration::from_millis(500)).await?;
        for batch in &batches {
            for record in batch.to_records()? {
                if !follow && ends.get(&record.partition).is_some_and(|end| record.offset >= *end) {
                    continue;
                }
                if count.is_some_and(|c| written >= c) {
                    break;
                }
                match format {
                    Format::Value => out.line(record.value.as_deref().unwrap_or_default())?,
                    Format::Json => {
                        let json = serde_json::json!({
                            "partition": record.partition,
                            "offset": record.offset,
                            "timestamp": record.timestamp,
                            "key": record.key.as_deref().map(String::from_utf8_lossy),
                            "value": record.value.as_deref().map(String::from_utf8_lossy),
                        });
                        out.line(json.to_string().as_bytes())?;
                    }
                }
                written += 1;
            }
        }
        if follow {
            // Following is interactive: show each poll's records as they come.
            out.flush()?;
        }
    }
    out.flush()
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
