//! The crash-state checker: seeded workloads against a simulated file system
//! ([`crate::vfs::sim`]) that loses power at a random operation, then a reopen of every log on
//! what the power loss left, checked against a model of what was acknowledged.
//!
//! One seed is a run of a few cycles. Each cycle: arm a crash at a random mutating file
//! operation (opening the logs included), perhaps inject a fault (an fsync, write, rename,
//! directory fsync or file creation failing on some kind of file), open the partitions — a data
//! partition with a random flush policy, cleanup policy, segment size and index interval, and
//! sometimes an internal topic like `__consumer_offsets` (compacted, each append fsynced before
//! it is acknowledged) — and run random operations on them until the crash. Then, on the image
//! the crash left: the metadata files are whole (`recovery-point.checkpoint` and producer
//! snapshots decode, `aborted.txnindex` has its header), each log opens from its recovery
//! point (not a full scan: a checkpoint on disk always matches the files it names), and its
//! content satisfies [`model::Model::verify`]; the producers' last batches, retried, are
//! duplicates. What survived becomes the next cycle's starting point.
//!
//! Each checked image is one *crash state*. A broken invariant is a [`Finding`] carrying the
//! seed; `EDDY_SEED` (read by [`seeds_from_env`]) repeats one. The interleaving with each log's
//! background thread is not seeded, so a seed repeats its workload and crash point, and almost
//! always its outcome.

pub mod model;
mod workload;

use std::fmt;
use std::path::{Path, PathBuf};

use self::model::Violation;
use self::workload::Partition;
use crate::checkpoint::{self, Checkpoint};
use crate::files::PRODUCERS_EXT;
use crate::log::Log;
use crate::producer::ProducerTable;
use crate::txn::index::FILE_NAME as TXN_INDEX;
use crate::vfs::sim::{Fault, FaultError, FaultOp, SimFs, SimRng};

/// How much one seed does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckConfig {
    /// Crash and reopen this many times.
    pub cycles: u32,
    /// At most this many operations between two crashes.
    pub max_steps: u64,
}

impl Default for CheckConfig {
    fn default() -> Self {
        Self { cycles: 3, max_steps: 60 }
    }
}

/// What one seed did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeedReport {
    /// Crash images reopened and checked.
    pub crash_states: u64,
    /// Workload operations run.
    pub steps: u64,
    /// Mutating file operations simulated.
    pub file_ops: u64,
    /// Injected faults that fired.
    pub faults: u64,
}

impl std::ops::AddAssign for SeedReport {
    fn add_assign(&mut self, o: SeedReport) {
        self.crash_states += o.crash_states;
        self.steps += o.steps;
        self.file_ops += o.file_ops;
        self.faults += o.faults;
    }
}

/// A broken invariant, with what is needed to repeat it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub seed: u64,
    pub cycle: u32,
    pub partition: String,
    pub what: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {} (repeat with EDDY_SEED={}), cycle {}, {}: {}",
            self.seed, self.seed, self.cycle, self.partition, self.what
        )
    }
}

/// The seeds to run: `EDDY_SEED` if set (one seed), else `count` seeds from `first`.
pub fn seeds_from_env(first: u64, count: u64) -> Vec<u64> {
    match std::env::var("EDDY_SEED").ok().and_then(|s| s.trim().parse().ok()) {
        Some(seed) => vec![seed],
        None => (first..first + count).collect(),
    }
}

/// Runs one seed.
pub fn check_seed(seed: u64, config: &CheckConfig) -> Result<SeedReport, Finding> {
    let mut rng = SimRng::new(seed);
    let mut sim = SimFs::new();
    // The directory the partitions share exists, durably, before they are created (as a
    // broker's `topics/` does before it opens anything).
    if let Err(e) = crate::files::create_dir_durable_on(&sim, Path::new("/data/topics")) {
        let what = format!("setting up the simulated disk failed: {e}");
        return Err(Finding { seed, cycle: 0, partition: "/data/topics".into(), what });
    }
    let mut parts = vec![Partition::random(PathBuf::from("/data/topics/t/0"), false, &mut rng)];
    if rng.chance(1, 2) {
        let dir = PathBuf::from("/data/topics/__consumer_offsets/0");
        parts.push(Partition::random(dir, true, &mut rng));
    }
    let mut report = SeedReport::default();
    for cycle in 0..config.cycles {
        let fail = |partition: &Path, v: Violation| Finding {
            seed,
            cycle,
            partition: partition.display().to_string(),
            what: v.0,
        };
        let image = run_cycle(&sim, &mut parts, &mut rng, config, &mut report)
            .map_err(|(dir, v)| fail(&dir, v))?;
        report.file_ops += sim.ops();
        report.faults += sim.fired().len() as u64;
        for part in &mut parts {
            reopen_and_check(&image, part).map_err(|v| fail(&part.dir, v))?;
        }
        report.crash_states += 1;
        sim = image;
    }
    Ok(report)
}

/// Opens the partitions on `sim`, runs operations until the armed crash (or the end of the
/// cycle, then crashes), and returns the image the crash left.
fn run_cycle(
    sim: &SimFs,
    parts: &mut [Partition],
    rng: &mut SimRng,
    config: &CheckConfig,
    report: &mut SeedReport,
) -> Result<SimFs, (PathBuf, Violation)> {
    let steps = rng.between(1, config.max_steps);
    sim.crash_after(rng.between(1, 40 + steps * 6), rng.next_u64());
    if rng.chance(1, 3) {
        sim.inject(random_fault(rng));
    }
    let mut logs = Vec::new();
    for part in parts.iter() {
        match Log::open_on(sim.fs(), &part.dir, part.config.clone()) {
            Ok(log) => logs.push(Some(log)),
            Err(_) if sim.is_dead() || !sim.fired().is_empty() => logs.push(None),
            Err(e) => return Err((part.dir.clone(), Violation(format!("open failed: {e}")))),
        }
    }
    let mut seen = sim.fired().len();
    for _ in 0..steps {
        if sim.is_dead() {
            break;
        }
        let i = rng.below(parts.len() as u64) as usize;
        let Some(log) = &logs[i] else { continue };
        report.steps += 1;
        parts[i].step(log, rng).map_err(|v| (parts[i].dir.clone(), v))?;
        let fired = sim.fired();
        for (op, path) in &fired[seen..] {
            let segment = path.extension().is_some_and(|e| e == "log");
            if *op == FaultOp::Fsync && segment {
                for part in parts.iter_mut().filter(|p| path.starts_with(&p.dir)) {
                    part.fsync_failed();
                }
            }
        }
        seen = fired.len();
    }
    if !sim.is_dead() {
        for (part, log) in parts.iter().zip(&logs) {
            if let Some(log) = log {
                part.accepted_after_poison(log).map_err(|v| (part.dir.clone(), v))?;
            }
        }
    }
    let image = match sim.take_image() {
        Some((image, _)) => image,
        None => sim.crash(rng.next_u64()).0,
    };
    drop(logs);
    Ok(image)
}

fn random_fault(rng: &mut SimRng) -> Fault {
    const OPS: [FaultOp; 5] =
        [FaultOp::Fsync, FaultOp::Write, FaultOp::Rename, FaultOp::SyncDir, FaultOp::Create];
    const PATHS: [&str; 8] =
        [".log", ".index", ".timeindex", "checkpoint", ".producers", "txnindex", ".cleaned", "/"];
    Fault {
        op: OPS[rng.below(OPS.len() as u64) as usize],
        path_contains: PATHS[rng.below(PATHS.len() as u64) as usize].to_owned(),
        error: if rng.chance(1, 2) { FaultError::Eio } else { FaultError::NoSpace },
        skip: rng.below(12) as u32,
        times: if rng.chance(1, 3) { 3 } else { 1 },
        partial: rng.chance(1, 2),
    }
}

/// Checks the metadata files one partition's directory holds on `image`; whether a whole
/// checkpoint is there.
fn check_metadata(image: &SimFs, dir: &Path) -> Result<bool, Violation> {
    let mut checkpoint_ok = false;
    if let Some(bytes) = image.contents(&dir.join(checkpoint::FILE_NAME)) {
        if let Err(reason) = Checkpoint::decode(&bytes) {
            return Err(Violation(format!("recovery-point.checkpoint is not whole: {reason}")));
        }
        checkpoint_ok = true;
    }
    for name in image.files(dir) {
        let path = dir.join(&name);
        if path.extension().is_some_and(|e| e == PRODUCERS_EXT) {
            let bytes = image.contents(&path).unwrap_or_default();
            if !matches!(ProducerTable::from_snapshot(&bytes), Ok(Some(_))) {
                return Err(Violation(format!("producer snapshot {name} is not whole")));
            }
        }
        if name == TXN_INDEX {
            let bytes = image.contents(&path).unwrap_or_default();
            if bytes.len() < 8 || &bytes[..4] != b"ETXN" {
                return Err(Violation(format!("{TXN_INDEX} lost its header")));
            }
        }
    }
    Ok(checkpoint_ok)
}

/// Reopens one partition on the crash image and checks it against its model.
fn reopen_and_check(image: &SimFs, part: &mut Partition) -> Result<(), Violation> {
    let checkpoint_ok = check_metadata(image, &part.dir)?;
    let log = Log::open_on(image.fs(), &part.dir, part.config.clone())
        .map_err(|e| Violation(format!("reopen failed: {e}")))?;
    if checkpoint_ok && log.stats().recovery_full_scans > 0 {
        return Err(Violation(
            "the checkpoint on disk did not match the files it names (open fell back to a full scan)"
                .into(),
        ));
    }
    let present = part.model.verify(&log)?;
    part.recovered(&log, present)?;
    // Everything reopened is on disk already; closing writes nothing the next cycle needs.
    drop(log);
    Ok(())
}
