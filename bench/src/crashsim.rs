//! `crash-sim`: the crash-state checker (`eddy_storage::crashcheck`) as a soak — `--seeds N`
//! seeded workloads from `--first S` (default 0) on `--threads T` threads (default: the CPUs),
//! each crashing a simulated disk a few times and checking every image on reopen. Prints the
//! seeds, crash states, states per second and every finding with its seed; `--json FILE`
//! writes the figures.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use eddy_storage::crashcheck::{CheckConfig, SeedReport, check_seed};

#[derive(Debug)]
struct Args {
    seeds: u64,
    first: u64,
    threads: usize,
    json: Option<String>,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut out = Args { seeds: 1000, first: 0, threads, json: None };
    while let Some(flag) = args.next() {
        let value = args.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--seeds" => out.seeds = value.parse().context("--seeds")?,
            "--first" => out.first = value.parse().context("--first")?,
            "--threads" => out.threads = value.parse::<usize>().context("--threads")?.max(1),
            "--json" => out.json = Some(value),
            other => bail!("crash-sim: unknown option {other}"),
        }
    }
    Ok(out)
}

pub fn run(args: impl Iterator<Item = String>) -> Result<()> {
    let args = parse(args)?;
    let config = CheckConfig::default();
    let next = AtomicU64::new(args.first);
    let end = args.first + args.seeds;
    let total = Mutex::new(SeedReport::default());
    let findings = Mutex::new(Vec::new());
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..args.threads {
            s.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= end {
                        break;
                    }
                    match check_seed(seed, &config) {
                        Ok(r) => *total.lock().unwrap_or_else(|p| p.into_inner()) += r,
                        Err(f) => {
                            println!("FINDING {f}");
                            findings.lock().unwrap_or_else(|p| p.into_inner()).push(f.to_string());
                        }
                    }
                }
            });
        }
    });
    let secs = started.elapsed().as_secs_f64();
    let total = total.into_inner().unwrap_or_else(|p| p.into_inner());
    let findings = findings.into_inner().unwrap_or_else(|p| p.into_inner());
    let rate = total.crash_states as f64 / secs;
    println!(
        "crash-sim: seeds {}..{} on {} threads: {} crash states ({} workload operations, {} simulated file operations, {} injected faults) in {secs:.1} s = {rate:.0} states/s; {} findings",
        args.first,
        end,
        args.threads,
        total.crash_states,
        total.steps,
        total.file_ops,
        total.faults,
        findings.len()
    );
    if let Some(path) = &args.json {
        let json = serde_json::json!({
            "workload": "crash-sim",
            "first_seed": args.first,
            "seeds": args.seeds,
            "threads": args.threads,
            "crash_states": total.crash_states,
            "steps": total.steps,
            "file_ops": total.file_ops,
            "faults": total.faults,
            "seconds": secs,
            "states_per_second": rate,
            "findings": findings,
        });
        std::fs::write(path, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("write {path}"))?;
    }
    if !findings.is_empty() {
        bail!("{} findings", findings.len());
    }
    Ok(())
}
