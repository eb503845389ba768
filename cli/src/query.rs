//! `eddy query TABLE KEY | --scan [--prefix P] [--from K] [--to K] [--limit N] |
//! --top N [--by FIELD] | --follow`
//! and `--digest`: pull queries against the serving version of a table, and the push query —
//! `--follow` prints every change of the table as it happens, by following its changelog topic
//! (a table *is* a log).
//!
//! Data on stdout, metadata on stderr, so `eddy query T --scan | sort` sorts rows only: each
//! row prints as `KEY<TAB>VALUE` — the key as text (as `eddy consume` prints keys; a key that is
//! not a JSON string prints as its JSON text), the value as JSON — and stderr gets one line
//! `# processor P version V inputs ...` with the input offsets the answer reflects and, with
//! `--digest`, the table's digest.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use eddy_client::{Admin, Consumer, ConsumerConfig, SeekTo};
use eddy_protocol::v1;

use super::{Output, connect};

pub async fn run(broker: &str, parser: &mut lexopt::Parser, out: &mut Output) -> Result<()> {
    use lexopt::prelude::*;
    let (mut table, mut key, mut scan, mut prefix, mut limit) = (None, None, false, None, 0u32);
    let (mut top, mut by, mut follow, mut digest) = (None, String::new(), false, false);
    let (mut from, mut to) = (String::new(), String::new());
    while let Some(arg) = parser.next()? {
        match arg {
            Long("scan") => scan = true,
            Long("prefix") => prefix = Some(parser.value()?.string()?),
            Long("limit") => limit = parser.value()?.parse()?,
            Long("from") => {
                from = parser.value()?.string()?;
                scan = true;
            }
            Long("to") => {
                to = parser.value()?.string()?;
                scan = true;
            }
            Long("top") => top = Some(parser.value()?.parse::<u32>()?),
            Long("by") => by = parser.value()?.string()?,
            Long("follow") => follow = true,
            Long("digest") => digest = true,
            Value(v) if table.is_none() => table = Some(v.string()?),
            Value(v) if key.is_none() => key = Some(v.string()?),
            other => return Err(other.unexpected().into()),
        }
    }
    let table = table.context("query needs a TABLE")?;
    let query = match (key, scan || prefix.is_some(), top, follow) {
        (Some(k), false, None, false) => {
            v1::query_table_request::Query::Get(serde_json::Value::String(k).to_string())
        }
        (None, _, None, false) if scan || prefix.is_some() || digest => {
            v1::query_table_request::Query::Scan(v1::ScanQuery {
                prefix: prefix.unwrap_or_default(),
                limit,
                from,
                to,
            })
        }
        (None, false, Some(n), false) => {
            v1::query_table_request::Query::Top(v1::TopQuery { n, by })
        }
        (None, false, None, true) => {
            v1::query_table_request::Query::Scan(v1::ScanQuery { limit: 1, ..Default::default() })
        }
        _ => bail!(
            "query takes one of: KEY, --scan [--prefix P] [--limit N], --top N [--by FIELD], --follow"
        ),
    };
    let conn = Arc::new(connect(broker).await?);
    let admin = Admin::new(conn.clone());
    let request = v1::QueryTableRequest { table: table.clone(), query: Some(query), digest };
    let answer = admin.query_table(request).await?;
    if follow {
        return follow_changelog(conn, &answer.changelog, out).await;
    }
    for row in &answer.rows {
        out.line(format!("{}\t{}", key_text(&row.key), row.value).as_bytes())?;
    }
    out.flush()?;
    let offsets: Vec<String> = answer
        .inputs
        .iter()
        .map(|i| format!("{}-{}@{}", i.topic, i.partition, i.position))
        .collect();
    let mut footer = format!(
        "# processor {} version {} inputs {}",
        answer.processor,
        answer.version,
        offsets.join(",")
    );
    if digest {
        footer.push_str(&format!(" digest {:016x}", answer.digest));
    }
    writeln!(std::io::stderr(), "{footer}").context("writing to stderr")
}

/// A row's key (JSON text on the wire) as text: a JSON string unquoted, anything else as is.
fn key_text(json: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(serde_json::Value::String(s)) => s,
        _ => json.to_string(),
    }
}

/// Prints each change of the table from now on: `KEY<TAB>VALUE`, or `KEY<TAB>null` when a
/// key is deleted.
async fn follow_changelog(
    conn: Arc<eddy_client::Connection>,
    changelog: &str,
    out: &mut Output,
) -> Result<()> {
    let partitions = Admin::new(conn.clone()).partition_count(changelog).await?;
    let mut consumer =
        Consumer::new(conn, ConsumerConfig { start: SeekTo::Latest, ..ConsumerConfig::default() });
    consumer.assign(changelog, 0..partitions);
    loop {
        for batch in consumer.poll(Duration::from_millis(500)).await? {
            for r in batch.to_records()? {
                let key =
                    String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned();
                let value = r
                    .value
                    .as_deref()
                    .map_or("null".into(), |v| String::from_utf8_lossy(v).into_owned());
                out.line(format!("{key}\t{value}").as_bytes())?;
            }
        }
        out.flush()?;
    }
}
