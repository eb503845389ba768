//! Effectively-once across power loss: a processor's tasks run over `LocalLogs` and snapshots on
//! a simulated disk (`eddy_storage::vfs::sim`) that loses power at a random file operation —
//! unsynced writes dropped, kept, torn or reordered, unsynced directory entries lost — over and
//! over; then every table equals a replay from zero of the input that survived, and the output
//! topic holds each result once, in the order an uninterrupted run writes them. The logs are
//! `Flush::Always`, which docs/processors.md ("Effectively-once") names as the condition.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use common::Rng;
use eddy_processor::{
    Count, LocalLogs, LogAccess, Processor, ProcessorBuilder, TableRegistry, Task, TaskConfig, Utf8,
};
use eddy_storage::vfs::sim::SimFs;
use eddy_storage::{Flush, LogConfig};

const PARTITIONS: u32 = 2;

fn processor() -> Processor {
    let b = ProcessorBuilder::new("pl", 1);
    let words = b.stream::<String, String>("words", Utf8, Utf8);
    words.aggregate("counts", Count).unwrap();
    words.filter(|_, v| !v.is_empty()).to("pl-echo", Utf8, Utf8);
    b.build().unwrap()
}

fn logs_on(sim: &SimFs) -> Arc<LocalLogs> {
    let config = LogConfig { segment_bytes: 4096, flush: Flush::Always, ..LogConfig::default() };
    Arc::new(LocalLogs::open_on(sim.fs(), "/data/logs", config).unwrap())
}

fn task_config(sim: &SimFs, rng: &mut Rng) -> TaskConfig {
    let mut config = TaskConfig::new(PathBuf::from("/data/state"));
    config.fs = sim.fs();
    config.read_max_bytes = 200 + rng.below(1_500) as usize;
    config.poll_max_records = 1 + rng.below(40);
    config.snapshot_every_records = 10 + rng.below(80);
    config
}

fn produce(logs: &dyn LogAccess, seed: u64) {
    logs.create_topic("words", PARTITIONS, false).unwrap();
    let mut rng = Rng(seed);
    for p in 0..PARTITIONS {
        let records: Vec<common::In> = (0..300i64)
            .map(|i| {
                let key = format!("w{}", rng.below(25));
                (Some(key.into_bytes()), Some(format!("v{i}").into_bytes()), i)
            })
            .collect();
        common::produce(logs, "words", p, &records, 1 + rng.below(7) as usize);
    }
}

fn open_tasks(
    processor: &Processor,
    logs: Arc<dyn LogAccess>,
    config: &TaskConfig,
) -> (Vec<Task>, Arc<TableRegistry>) {
    let ids = processor.prepare(&*logs).unwrap();
    let registry = TableRegistry::new();
    let tasks = ids
        .iter()
        .map(|id| processor.open_task(logs.clone(), *id, config.clone(), &registry).unwrap())
        .collect();
    (tasks, registry)
}

type Outputs = BTreeMap<(u32, u64), Vec<(Option<Vec<u8>>, Option<Vec<u8>>, i64, String)>>;

/// The output topic per partition and writer, with positions.
fn outputs(logs: &dyn LogAccess) -> Outputs {
    let mut out = Outputs::new();
    for p in 0..logs.partition_count("pl-echo").unwrap() {
        for r in common::read_all(logs, "pl-echo", p) {
            let pos = r.pos.unwrap();
            out.entry((p, pos.writer)).or_default().push((
                r.key,
                r.value,
                r.ts,
                format!("{pos:?}"),
            ));
        }
    }
    out
}

/// The latest value per key of a changelog.
type Latest = BTreeMap<Vec<u8>, Vec<u8>>;

/// The table, and the latest value per key of its changelog.
fn tables(registry: &Arc<TableRegistry>, logs: &dyn LogAccess) -> (Vec<(String, u64)>, Latest) {
    let changelog = common::latest_by_key(&common::read_topic(logs, "pl-1-counts-changelog"));
    (registry.reader("counts").unwrap().scan(), changelog)
}

/// Returns how many of the power losses landed while the tasks ran.
fn power_loss_cycles(seed: u64, cycles: usize) -> usize {
    let mut rng = Rng(seed ^ 0x9e37);
    let mut sim = SimFs::new();
    let processor = processor();
    produce(&*logs_on(&sim), seed);
    let mut landed = 0;
    for cycle in 0..cycles {
        let logs = logs_on(&sim);
        let config = task_config(&sim, &mut rng);
        let (mut tasks, _) = open_tasks(&processor, logs.clone(), &config);
        // Power fails at a random file operation while the tasks run.
        sim.crash_after(1 + rng.below(120), seed * 31 + cycle as u64);
        'run: for _ in 0..200 {
            for t in &mut tasks {
                if t.poll().is_err() {
                    break 'run;
                }
            }
        }
        drop(tasks);
        drop(logs);
        sim = match sim.take_image() {
            Some((image, _)) => {
                landed += 1;
                image
            }
            None => sim.crash(seed + cycle as u64).0,
        };
    }
    // Restart on what the last power loss left and run to the end.
    let logs = logs_on(&sim);
    let config = task_config(&sim, &mut rng);
    let (mut tasks, registry) = open_tasks(&processor, logs.clone(), &config);
    common::poll_to_end(&mut tasks);
    // Every input record was appended under `Flush::Always`: all of it survived.
    let input = common::read_topic(&*logs, "words");
    assert_eq!(input.len(), 300 * PARTITIONS as usize, "seed {seed}: input lost");

    // The uninterrupted run over the same input, on a disk that never fails.
    let clean = SimFs::new();
    let clean_logs = logs_on(&clean);
    produce(&*clean_logs, seed);
    let mut clean_config = TaskConfig::new(PathBuf::from("/data/state"));
    clean_config.fs = clean.fs();
    let (mut clean_tasks, clean_registry) =
        open_tasks(&processor, clean_logs.clone(), &clean_config);
    common::poll_to_end(&mut clean_tasks);

    assert_eq!(outputs(&*logs), outputs(&*clean_logs), "seed {seed}: outputs differ");
    let (table, changelog) = tables(&registry, &*logs);
    let (clean_table, clean_changelog) = tables(&clean_registry, &*clean_logs);
    assert_eq!(table, clean_table, "seed {seed}: table differs from a replay from zero");
    assert_eq!(changelog, clean_changelog, "seed {seed}: changelog differs");
    let total: u64 = table.iter().map(|(_, c)| c).sum();
    assert_eq!(total, 300 * u64::from(PARTITIONS), "seed {seed}");
    landed
}

#[test]
fn tables_and_outputs_survive_power_loss_exactly_once() {
    let landed: usize = (0..8).map(|seed| power_loss_cycles(seed, 4)).sum();
    assert!(landed >= 12, "only {landed} of 32 power losses landed while the tasks ran");
}

/// Bit rot in a task snapshot: every flip (of a seeded sample of bits) is refused with an
/// error naming the file, or (the three zero bytes of the header) changes nothing.
#[test]
fn every_bit_flip_in_a_task_snapshot_is_refused_or_harmless() {
    let sim = SimFs::new();
    let logs = logs_on(&sim);
    produce(&*logs, 1);
    let processor = processor();
    let mut config = TaskConfig::new(PathBuf::from("/data/state"));
    config.fs = sim.fs();
    config.snapshot_every_records = 100;
    let (mut tasks, registry) = open_tasks(&processor, logs.clone(), &config);
    common::poll_to_end(&mut tasks);
    let reference = tables(&registry, &*logs).0;
    drop(tasks);
    drop(logs);
    let dir = PathBuf::from("/data/state/pl-1");
    let name = sim.files(&dir).into_iter().find(|n| n.ends_with(".snap")).unwrap();
    let path = dir.join(&name);
    let original = sim.contents(&path).unwrap();
    let bits = original.len() as u64 * 8;
    let seed = std::env::var("EDDY_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(7);
    let mut rng = Rng(seed);
    let (mut refused, mut harmless) = (0, 0);
    for _ in 0..400 {
        let bit = rng.below(bits);
        let image = sim.fork();
        let mut bytes = original.clone();
        bytes[(bit / 8) as usize] ^= 1 << (bit % 8);
        image.set_contents(&path, &bytes).unwrap();
        let logs = logs_on(&image);
        let mut config = config.clone();
        config.fs = image.fs();
        let ids = processor.prepare(&*logs).unwrap();
        let registry = TableRegistry::new();
        let opened: Result<Vec<Task>, _> = ids
            .iter()
            .map(|id| processor.open_task(logs.clone(), *id, config.clone(), &registry))
            .collect();
        match opened {
            Err(e) => {
                assert!(e.to_string().contains(&name), "bit {bit} (seed {seed}): {e}");
                refused += 1;
            }
            Ok(mut tasks) => {
                common::poll_to_end(&mut tasks);
                let got = tables(&registry, &*logs).0;
                assert_eq!(got, reference, "bit {bit} (seed {seed}): a damaged snapshot served");
                harmless += 1;
            }
        }
    }
    assert!(refused > 300, "{refused} refused, {harmless} harmless");
}
