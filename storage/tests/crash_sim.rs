//! The crash-state checker (`eddy_storage::crashcheck`) over a fixed budget of seeds: seeded
//! workloads on a simulated file system that loses power at a random operation, every image
//! reopened and checked against what was acknowledged. A failure prints its seed;
//! `EDDY_SEED=<seed> cargo test -p eddy-storage --test crash_sim` repeats it. The longer soak is
//! `eddy-bench crash-sim --seeds N` (docs/durability.md).

#![allow(clippy::print_stderr)] // the totals, and the seeds of findings

use eddy_storage::crashcheck::{CheckConfig, SeedReport, check_seed, seeds_from_env};

/// Seeds per CI run (three crash states each): 30–70 s of a debug build on two shared cores.
const SEEDS: u64 = 5000;

#[test]
fn crash_states_satisfy_the_model() {
    let config = CheckConfig::default();
    let mut total = SeedReport::default();
    let mut findings = Vec::new();
    for seed in seeds_from_env(0, SEEDS) {
        match check_seed(seed, &config) {
            Ok(report) => total += report,
            Err(finding) => findings.push(finding.to_string()),
        }
    }
    eprintln!("{total:?}");
    assert!(findings.is_empty(), "{} findings:\n{}", findings.len(), findings.join("\n"));
    assert!(total.crash_states > 0);
}
