//! Windowed replay (issue 17, item 5): what event time per source partition costs a replay.
//!
//! `--records` lines from `eddy_processor::sample::access_log` (six hours of timestamps) are
//! appended to topic `access-log` with 1 and then 2 partitions (line *i* to partition *i mod P*),
//! as the `processor` workload does. Per run, over a fresh `LocalLogs`:
//!
//! - **read**: every input partition read end to end, each record decoded — the floor.
//! - **hourly count**: the typed builder's pipeline: parse the URL and time of each line, key
//!   by URL (repartitioned by URL when P > 1), 1 h tumbling windows with 10 min grace, count per
//!   URL and hour into table `hourly`; timed from `Processor::start` to `wait_caught_up`.
//!
//! Each run reports the records counted and the records set aside as late. Comparing the
//! watermark rule before and after a change means running this same workload from two builds
//! in one session, alternately: `bench/compare-revisions` does that.

use std::time::Instant;

use anyhow::{Result, ensure};
use eddy_processor::{Count, Emit, Processor, ProcessorBuilder, RuntimeConfig, Windowed, Windows};

use crate::processor::{
    Input, LIMIT, access_log_text, input, local_input, read_floor, requests_by_url,
};
use crate::report::{Row, Timing, median, median_against};
use crate::workload::Options;

const TABLE: &str = "hourly";
const HOUR_MS: i64 = 3_600_000;
const GRACE_MS: i64 = 600_000;

fn pipeline(partitions: u32) -> Result<Processor> {
    let b = ProcessorBuilder::new("url-hourly", 1);
    let by_url = requests_by_url(&b, partitions);
    by_url.window(Windows::tumbling(HOUR_MS).grace(GRACE_MS)).aggregate(
        TABLE,
        Count,
        Emit::Changes,
    )?;
    Ok(b.build()?)
}

/// One run: (timing, records counted, records late).
fn hourly(opts: &Options, input: &Input) -> Result<(Timing, u64, u64)> {
    let dir = opts.tempdir()?;
    let logs = local_input(dir.path(), input)?;
    let mut config = RuntimeConfig::new(dir.path().join("state"));
    config.threads = input.partitions as usize;
    let mut timing = Timing::new();
    let start = Instant::now();
    let running = pipeline(input.partitions)?.start(logs, config)?;
    running.wait_caught_up(LIMIT)?;
    timing.finish(start.elapsed());
    let counted: u64 =
        running.table::<Windowed<String>, u64>(TABLE)?.scan().iter().map(|(_, n)| n).sum();
    let late: u64 = running.status().values().map(|s| s.metrics.late).sum();
    running.stop()?;
    Ok((timing, counted, late))
}

pub fn run(opts: &Options) -> Result<Vec<Row>> {
    let text = access_log_text(opts.records)?;
    let lines: Vec<&str> = text.lines().collect();
    let records = lines.len() as u64;
    let bytes = lines.iter().map(|l| l.len() as u64).sum::<u64>();
    ensure!(records == opts.records, "generated {records} lines, expected {}", opts.records);
    let mut rows = Vec::new();
    for partitions in [1u32, 2] {
        let input = input(&lines, partitions, opts.batch)?;
        let (mut read, mut counted) = (Vec::new(), Vec::new());
        for run in 0..opts.runs {
            let dir = opts.tempdir()?;
            let logs = local_input(dir.path(), &input)?;
            let t = read_floor(&*logs, partitions, records)?;
            read.push(Row::new(format!("read input {partitions}p"), records, bytes, &t));
            drop((logs, dir));
            let (t, total, late) = hourly(opts, &input)?;
            ensure!(total + late == records, "counted {total} + late {late} != {records}");
            println!(
                "{partitions}p run {}: read {:.0}/s, hourly count {:.0}/s ({late} late)",
                run + 1,
                read[run].records_per_s,
                records as f64 / t.elapsed.as_secs_f64()
            );
            counted.push(
                Row::new(format!("hourly count {partitions}p {partitions}t"), records, bytes, &t)
                    .note("late records", late.to_string()),
            );
        }
        rows.push(median(read.clone()));
        rows.push(median_against(counted, &read));
    }
    Ok(rows)
}
