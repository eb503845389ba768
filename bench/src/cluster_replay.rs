//! Cluster replay (issue 21, goal 5): how fast the per-URL count is rebuilt from offset zero by
//! 1, 2 and 3 eddy-cluster instances over the Kafka listener, against the same rebuild inside
//! the broker, in the same run.
//!
//! `--records` access-log lines (`eddy_processor::sample::access_log`) are streamed into
//! topic `access-log` (`--partitions`, default 6 — so 1, 2 and 3 instances split it evenly),
//! each keyed by its URL (murmur2 picks the partition), of a broker served on loopback in this
//! process with its native and Kafka listeners; the same lines go to a file, which
//! `awk '{print $7}' | sort | uniq -c` counts for the checks. Per run, on that broker:
//!
//! - **in the broker**: the spec (count per URL by the record's key into `requests-per-url`;
//!   no output topic) deployed with `Admin::deploy_processor`, timed from the request until
//!   `processor_status` reports lag 0 — the `replay` workload's v1.
//! - **N instances over the Kafka listener** (N = 1, 2, 3): the same spec, named
//!   `url-counts-kN` so each N has its own group, topics and registry entry, run by N
//!   `eddy_cluster::Instance`s started together in this process, each with its own
//!   `KafkaLogs` (its own librdkafka clients and connections) and state directory — what
//!   `eddy processor run --kafka` runs, minus the process. Timed from the first start until
//!   every task partition runs somewhere, every task has reported, and the instances' lag
//!   (each task's input positions against the partitions' ends, asked of the broker) is 0;
//!   that includes joining the group and the rebalances as the instances join (each moves
//!   tasks: final snapshot published, transaction committed, restored elsewhere).
//!
//! Checks: each table (the broker's; the union of the instances' tables) equals the
//! pipeline's counts URL by URL. Events/s = lines / time; the ratio column is against the
//! in-broker rebuild of the same run (median of per-run ratios).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use eddy_client::{Admin, Connection, ConnectionOptions, TopicConfig};
use eddy_cluster::{ClusterConfig, Instance, InstanceConfig, KafkaLogs};
use eddy_processor::LogAccess;
use serde_json::Value;

use crate::kafka::Served;
use crate::replay::{INPUT, NAME, POLL, TABLE, feed, pipeline, read_uniq};
use crate::report::{Row, Timing, median, median_against};
use crate::workload::{Options, url_counts_by_key_spec};

/// Give up on a rebuild that has not caught up by then.
const LIMIT: Duration = Duration::from_secs(1800);
/// Partitions when `--partitions` is left at 1: 1, 2 and 3 instances split 6 evenly.
const DEFAULT_PARTITIONS: u32 = 6;

pub fn run(opts: &Options) -> Result<Vec<Row>> {
    let parts = if opts.partitions > 1 { opts.partitions } else { DEFAULT_PARTITIONS };
    let mut rows: Vec<Vec<Row>> = vec![Vec::new(); 4];
    for run in 0..opts.runs {
        let served = Served::start(opts)?;
        let config = TopicConfig { partitions: Some(parts), ..TopicConfig::default() };
        let topic = served.broker.create_topic(INPUT, Some(&config))?;
        let files = opts.tempdir()?;
        let (file, out) = (files.path().join("access.log"), files.path().join("uniq-c.txt"));
        let (records, bytes) = feed(topic.partitions.clone(), &file, opts)?;
        ensure!(records == opts.records, "fed {records} lines, expected {}", opts.records);
        pipeline(&file, &out)?;
        let expected = read_uniq(&out)?;
        let synced = std::process::Command::new("sync").status().context("running sync")?;
        ensure!(synced.success(), "sync failed: {synced}");

        let spec = url_counts_by_key_spec(1);
        let (timing, secs) = in_broker(&served, &spec, &expected)?;
        println!("run {}: in the broker {:.0}/s ({secs:.2} s)", run + 1, records as f64 / secs);
        rows[0].push(
            Row::new("in the broker: deploy -> lag 0", records, bytes, &timing)
                .note("partitions", parts)
                .note("time to caught-up, s", format!("{secs:.2}")),
        );
        for n in 1..=3u32 {
            let name = format!("{NAME}-k{n}");
            let spec =
                spec.replacen(&format!("name = \"{NAME}\""), &format!("name = \"{name}\""), 1);
            let state = files.path().join(format!("instances-{n}"));
            let (timing, secs) = instances(&served, &spec, n, &state, &expected)?;
            println!(
                "run {}: {n} instance(s) over the Kafka listener {:.0}/s ({secs:.2} s)",
                run + 1,
                records as f64 / secs
            );
            let label = format!("{n} instance(s) over the Kafka listener: start -> lag 0");
            rows[n as usize].push(
                Row::new(&label, records, bytes, &timing)
                    .note("time to caught-up, s", format!("{secs:.2}")),
            );
        }
        drop(files);
        drop(served);
    }
    let broker = rows[0].clone();
    let mut out = vec![median(rows[0].clone())];
    for r in rows.into_iter().skip(1) {
        out.push(median_against(r, &broker));
    }
    Ok(out)
}

/// Deploys `spec` in the broker and waits for lag 0; checks the table.
fn in_broker(
    served: &Served,
    spec: &str,
    expected: &HashMap<String, u64>,
) -> Result<(Timing, f64)> {
    served.client.block_on(async {
        let conn = Connection::connect(&served.native_addr, ConnectionOptions::default()).await?;
        let admin = Admin::new(Arc::new(conn));
        let mut timing = Timing::new();
        let start = Instant::now();
        admin.deploy_processor(spec).await?;
        crate::processor::until_caught_up(&admin, NAME, &mut timing, LIMIT).await?;
        let secs = start.elapsed();
        timing.finish(secs);
        let scan = admin
            .query_table(eddy_protocol::v1::QueryTableRequest {
                table: TABLE.into(),
                query: Some(eddy_protocol::v1::query_table_request::Query::Scan(
                    eddy_protocol::v1::ScanQuery::default(),
                )),
                digest: false,
            })
            .await?;
        let mut table = HashMap::new();
        for row in &scan.rows {
            let url: String = serde_json::from_str(&row.key).context("a text key")?;
            table.insert(url, crate::replay::count_of(row)?);
        }
        ensure!(table == *expected, "the broker's table differs from the pipeline's counts");
        Ok((timing, secs.as_secs_f64()))
    })
}

/// Starts `n` instances of `spec` over the Kafka listener, waits until they are caught up,
/// checks the union of their tables, and stops them.
fn instances(
    served: &Served,
    spec: &str,
    n: u32,
    state: &std::path::Path,
    expected: &HashMap<String, u64>,
) -> Result<(Timing, f64)> {
    let def = eddy_broker::processors::definition::Definition::parse(spec)?;
    let mut timing = Timing::new();
    let start = Instant::now();
    let mut running = Vec::new();
    for i in 0..n {
        let logs = Arc::new(KafkaLogs::new(ClusterConfig::new(&served.kafka_addr))?);
        let processor = def.clone().compile(&|t| logs.partition_count(t).ok())?;
        let config = InstanceConfig::new(state.join(format!("i{i}")), format!("bench-{n}-{i}"));
        running.push(Instance::start(processor, logs, config)?);
    }
    loop {
        let t = Instant::now();
        let done = caught_up(&running);
        timing.record(t.elapsed());
        if done {
            break;
        }
        if start.elapsed() > LIMIT {
            bail!("{n} instance(s) not caught up after {LIMIT:?}");
        }
        std::thread::sleep(POLL);
    }
    let secs = start.elapsed();
    timing.finish(secs);
    let mut table = HashMap::new();
    for instance in &running {
        let reader = instance.registry().reader::<Value, Value>(TABLE)?;
        for (k, v) in reader.scan() {
            let url = k.as_str().context("a text key")?.to_owned();
            table.insert(url, v.as_u64().context("a count")?);
        }
    }
    for instance in &running {
        instance.stop()?;
    }
    ensure!(table == *expected, "{n} instance(s): the union of the tables differs from awk's");
    Ok((timing, secs.as_secs_f64()))
}

/// Every task partition runs somewhere, every task reported, and no input is left to read.
fn caught_up(running: &[Instance]) -> bool {
    let Some(first) = running.first() else { return false };
    let partitions = first.partition_count();
    let mut owned: Vec<u32> = running.iter().flat_map(Instance::partitions).collect();
    owned.sort_unstable();
    owned.dedup();
    owned.len() == partitions as usize
        && running.iter().all(|i| i.reports().len() == i.partitions().len() && i.lag() == 0)
}
