//! A processor over `LocalLogs` in its own process, for crash tests that SIGKILL it
//! (`tests/sigkill.rs` builds and runs this example).
//!
//! ```text
//! cargo run -p eddy-processor --example eddy-process-demo -- produce DIR SEED
//! eddy-process-demo produce DIR SEED     write the demo input (customers, orders) into DIR/logs
//! eddy-process-demo run DIR [--until-caught-up]
//!     run the demo processor (state in DIR/state), printing "polled N" after every round of
//!     polls; with --until-caught-up, exit once every task has read its input to the end,
//!     printing "table NAME DIGEST" for each table first
//! ```
//!
//! The demo processor enriches orders with a customers table (two co-partitioned sources, so
//! the step journal is in play), sums spend per customer, counts orders per 100 ms window with
//! final emission, and dedupes orders per customer within 50 ms.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use eddy_processor::{
    Count, Emit, Json, LocalLogs, LogAccess, Processor, ProcessorBuilder, Sum, TableRegistry,
    TaskConfig, Utf8, Windows, partition_for_key,
};
use eddy_storage::{BatchBuilder, LogConfig, Record};

const PARTITIONS: u32 = 2;

fn processor() -> anyhow::Result<Processor> {
    let b = ProcessorBuilder::new("demo", 1);
    b.dead_letter("demo-dlq");
    let customers = b.table::<String, String>("customers", "customers", Utf8, Utf8)?;
    let orders = b.stream::<String, i64>("orders", Utf8, Json);
    orders.left_join_table(&customers, |_, amount, tier| (*amount, tier.cloned())).to(
        "demo-enriched",
        Utf8,
        Json,
    );
    orders.aggregate("spend", Sum::new(|v: &i64| *v))?;
    orders
        .window(Windows::tumbling(100).grace(30))
        .aggregate("orders-per-100", Count, Emit::Final)?
        .changes()
        .to("demo-final", Json, Json);
    orders.dedupe(50, 30).to("demo-deduped", Utf8, Json);
    Ok(b.build()?)
}

fn open_logs(dir: &Path) -> anyhow::Result<Arc<LocalLogs>> {
    let config = LogConfig { segment_bytes: 1 << 20, ..LogConfig::default() };
    Ok(Arc::new(LocalLogs::open(dir.join("logs"), config)?))
}

/// SplitMix64: a seeded, dependency-free generator.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn produce(dir: &Path, seed: u64) -> anyhow::Result<()> {
    let logs = open_logs(dir)?;
    logs.create_topic("customers", PARTITIONS, false)?;
    logs.create_topic("orders", PARTITIONS, false)?;
    let mut rng = seed;
    let mut batches: Vec<Vec<BatchBuilder>> =
        (0..2).map(|_| (0..PARTITIONS).map(|_| BatchBuilder::new()).collect()).collect();
    for i in 0..20_000i64 {
        let key = format!("c{}", next(&mut rng) % 50);
        let p = partition_for_key(key.as_bytes(), PARTITIONS) as usize;
        let (topic, value, ts) = if next(&mut rng).is_multiple_of(8) {
            (0, format!("tier-{}", next(&mut rng) % 4), i * 3)
        } else if next(&mut rng).is_multiple_of(40) {
            (1, "not json".to_owned(), i * 3)
        } else {
            (1, (next(&mut rng) % 100).to_string(), i * 3 - (next(&mut rng) % 60) as i64)
        };
        let builder = &mut batches[topic][p];
        builder.push(Record {
            timestamp: ts,
            key: Some(key.as_bytes()),
            value: Some(value.as_bytes()),
            headers: &[],
        });
        if builder.record_count() == 16 {
            let full = std::mem::take(builder);
            logs.append(["customers", "orders"][topic], p as u32, &full.build_valid()?)?;
        }
    }
    for (topic, per_partition) in batches.into_iter().enumerate() {
        for (p, builder) in per_partition.into_iter().enumerate() {
            if !builder.is_empty() {
                logs.append(["customers", "orders"][topic], p as u32, &builder.build_valid()?)?;
            }
        }
    }
    Ok(())
}

fn run(dir: &Path, until_caught_up: bool) -> anyhow::Result<()> {
    let logs = open_logs(dir)?;
    let processor = processor()?;
    let ids = processor.prepare(&*logs)?;
    let registry = TableRegistry::new();
    let mut config = TaskConfig::new(dir.join("state"));
    config.read_max_bytes = 2_048;
    config.poll_max_records = 50;
    config.snapshot_every_records = 500;
    let access: Arc<dyn LogAccess> = logs.clone();
    let mut tasks = ids
        .iter()
        .map(|id| processor.open_task(access.clone(), *id, config.clone(), &registry))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = std::io::stdout().lock();
    loop {
        let mut polled = 0;
        for task in &mut tasks {
            polled += task.poll()?;
        }
        let total: u64 = tasks.iter().map(|t| t.position()).sum();
        writeln!(out, "polled {total}")?;
        out.flush()?;
        if until_caught_up && polled == 0 {
            let mut all = true;
            for task in &tasks {
                all &= task.caught_up()?;
            }
            if all {
                break;
            }
        }
    }
    for task in &mut tasks {
        task.snapshot()?;
    }
    for name in processor.tables() {
        let reader = registry.reader::<serde_json::Value, serde_json::Value>(&name)?;
        writeln!(out, "table {name} {:016x}", reader.digest())?;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = |i: usize| args.get(i).map(PathBuf::from).context("missing DIR");
    match args.first().map(String::as_str) {
        Some("produce") => {
            let seed = args.get(2).context("missing SEED")?.parse()?;
            produce(&dir(1)?, seed)
        }
        Some("run") => run(&dir(1)?, args.iter().any(|a| a == "--until-caught-up")),
        _ => bail!("usage: eddy-process-demo produce DIR SEED | run DIR [--until-caught-up]"),
    }
}
