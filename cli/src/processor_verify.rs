//! `eddy processor verify NAME --kafka BOOTSTRAP`: the broker's `verify` over a Kafka-protocol
//! cluster. The serving version and its spec are read from the registry in the cluster
//! (eddy-cluster's `registry`); the spec is rebuilt from offset zero in this process as a
//! shadow without outputs (`NAME-verify`, over `KafkaLogs`), and once the shadow's input
//! offsets equal those of the live tables, every table's digest is compared with the live one.
//!
//! The live table is the union of what every instance of the serving version's group answers
//! to a scan (each answers for its partitions), so both digests are taken here, the same way:
//! FNV-1a 64 over the rows in key order, each key and value (their JSON text) length-prefixed.
//! The shadow's state directory (under the system's temporary directory) and its internal
//! topics are removed at the end, whatever the outcome.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use eddy_broker::processors::definition::Definition;
use eddy_client::Admin;
use eddy_cluster::registry::RegistryView;
use eddy_cluster::{ClusterConfig, KafkaLogs, group};
use eddy_processor::{LogAccess, RunningProcessor, RuntimeConfig, fnv1a64};
use eddy_protocol::v1;
use serde_json::Value;

use super::{Output, connect_unauthenticated as connect};

/// Longest the shadow is given to reach the live input offsets, unless `--timeout-ms` says.
pub(crate) const CATCH_UP: Duration = Duration::from_secs(3600);

/// Positions of the inputs a table reflects (topic, partition, next offset), sorted.
type Offsets = Vec<(String, u32, u64)>;

pub async fn run(
    name: &str,
    cluster: ClusterConfig,
    catch_up: Duration,
    out: &mut Output,
) -> Result<()> {
    let logs = Arc::new(KafkaLogs::new(cluster)?);
    let (serving, text) = {
        let (logs, name) = (logs.clone(), name.to_owned());
        tokio::task::spawn_blocking(move || serving_spec(&logs, &name)).await??
    };
    let shadow = format!("{name}-verify");
    let def = Definition::parse(&super::processor::shadow_spec(&text, &shadow)?)?;
    let state = std::env::temp_dir().join(format!("eddy-{shadow}-{}", std::process::id()));
    let (running, tables, internal) = {
        let (logs, state) = (logs.clone(), state.clone());
        tokio::task::spawn_blocking(move || -> Result<_> {
            let processor = def.compile(&|t| logs.partition_count(t).ok())?;
            let (tables, internal) = (processor.tables(), processor.internal_topics());
            let running =
                processor.start(logs as Arc<dyn LogAccess>, RuntimeConfig::new(&state))?;
            Ok((running, tables, internal))
        })
        .await??
    };
    let deadline = Instant::now() + catch_up;
    let outcome = compare(&logs, &running, (name, serving), &shadow, &tables, deadline).await;
    let cleanup = tokio::task::spawn_blocking(move || -> Result<()> {
        running.stop()?;
        logs.delete_topics(&internal)?;
        match std::fs::remove_dir_all(&state) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    })
    .await?;
    let (same, lines) = outcome?;
    cleanup.context("removing the shadow")?;
    for line in lines {
        out.line(line.as_bytes())?;
    }
    if !same {
        bail!("{name}: a rebuild from offset zero differs from the live tables");
    }
    out.line(format!("{name}: every table equals its rebuild from offset zero").as_bytes())
}

/// The serving version of `name` and its spec text, from the registry.
fn serving_spec(logs: &KafkaLogs, name: &str) -> Result<(u32, String)> {
    let mut view = RegistryView::new(name);
    view.refresh(logs)?;
    let serving = view.serving().with_context(|| format!("no processor {name} in the cluster"))?;
    let text = view
        .spec(serving)
        .with_context(|| format!("the registry holds no spec for version {serving} of {name}"))?;
    Ok((serving, text.to_owned()))
}

/// Waits until the shadow has read every input (its internal topics too) to the end and
/// reflects the live tables' input offsets, then compares digests.
async fn compare(
    logs: &Arc<KafkaLogs>,
    running: &RunningProcessor,
    (name, serving): (&str, u32),
    shadow: &str,
    tables: &[String],
    deadline: Instant,
) -> Result<(bool, Vec<String>)> {
    loop {
        let live = live_tables(logs, name, serving, tables).await;
        let inputs = running_inputs(running);
        let caught_up = {
            let (logs, inputs) = (logs.clone(), inputs.clone());
            tokio::task::spawn_blocking(move || {
                inputs.iter().all(|(t, p, next)| logs.end_offset(t, *p).is_ok_and(|e| *next >= e))
            })
            .await?
        };
        let rebuilt = offsets(inputs, shadow);
        if let Ok((live_offsets, rows)) = &live
            && caught_up
            && *live_offsets == rebuilt
        {
            let (mut same, mut lines) = (true, Vec::new());
            for table in tables {
                let live = digest(rows.get(table).into_iter().flatten());
                let reader = running.table::<Value, Value>(table)?;
                let scan: BTreeMap<String, String> = reader
                    .scan()
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                let ours = digest(&scan);
                same &= live == ours;
                let verdict = if live == ours { "equal" } else { "DIFFERENT" };
                lines.push(format!("{table}: live {live:016x} rebuilt {ours:016x} {verdict}"));
            }
            return Ok((same, lines));
        }
        if Instant::now() > deadline {
            // Say where each side stood, so a rebuild that stalls can be told from live
            // instances that keep moving.
            let live = match live {
                Ok((offsets, _)) => format!("live tables at {}", show(&offsets)),
                Err(e) => format!("live tables unknown ({e:#})"),
            };
            let end = if caught_up { "at" } else { "not yet at" };
            bail!(
                "the rebuild did not reach the live input offsets: {live}; rebuild at {} \
                 ({end} the inputs' ends)",
                show(&rebuilt)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `topic/partition@offset` for each position.
fn show(offsets: &Offsets) -> String {
    let all: Vec<String> = offsets.iter().map(|(t, p, o)| format!("{t}/{p}@{o}")).collect();
    if all.is_empty() { "no positions".to_owned() } else { all.join(" ") }
}

fn running_inputs(running: &RunningProcessor) -> Offsets {
    running.status().values().flat_map(|s| s.inputs.iter().cloned()).collect()
}

/// The positions in `inputs` of topics that are not `processor`'s own, sorted.
fn offsets(inputs: Offsets, processor: &str) -> Offsets {
    let own = format!("{processor}-");
    let mut out: Offsets = inputs.into_iter().filter(|(t, _, _)| !t.starts_with(&own)).collect();
    out.sort();
    out.dedup();
    out
}

/// Every live instance's scan of every table, joined, and the input offsets they reflect.
async fn live_tables(
    logs: &Arc<KafkaLogs>,
    name: &str,
    serving: u32,
    tables: &[String],
) -> Result<(Offsets, BTreeMap<String, BTreeMap<String, String>>)> {
    let members = {
        let (logs, group) = (logs.clone(), group::group_id(name, serving));
        tokio::task::spawn_blocking(move || logs.group_members(&group).map_err(anyhow::Error::from))
            .await??
    };
    let (mut inputs, mut rows) = (Vec::new(), BTreeMap::<String, BTreeMap<_, _>>::new());
    for (client_id, _) in members {
        let Some(addr) = group::query_addr_of(&client_id) else { continue };
        let admin = Admin::new(connect(addr).await?);
        for table in tables {
            let answer = admin
                .query_table(v1::QueryTableRequest {
                    table: format!("{name}/{table}"),
                    query: Some(v1::query_table_request::Query::Scan(v1::ScanQuery::default())),
                    digest: false,
                })
                .await
                .with_context(|| format!("scanning {table} at {addr}"))?;
            inputs.extend(answer.inputs.into_iter().map(|i| (i.topic, i.partition, i.position)));
            let table = rows.entry(table.clone()).or_default();
            table.extend(answer.rows.into_iter().map(|r| (r.key, r.value)));
        }
    }
    Ok((offsets(inputs, name), rows))
}

/// FNV-1a 64 over `rows` in key order, each key and value length-prefixed (u32 LE).
fn digest<'a>(rows: impl IntoIterator<Item = (&'a String, &'a String)>) -> u64 {
    let mut bytes = Vec::new();
    for (k, v) in rows {
        for part in [k, v] {
            bytes.extend_from_slice(&(part.len() as u32).to_le_bytes());
            bytes.extend_from_slice(part.as_bytes());
        }
    }
    fnv1a64(&bytes)
}
