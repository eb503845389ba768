//! Timings, result rows, the stdout table and the JSON file.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::machine::Machine;
use crate::workload::Options;

/// Per-operation latencies (nanoseconds) and the wall time of a whole run.
#[derive(Debug, Clone)]
pub struct Timing {
    hist: Histogram<u64>,
    pub elapsed: Duration,
}

impl Timing {
    pub fn new() -> Self {
        // Three significant figures from 1 ns to an hour.
        let hist = Histogram::new_with_bounds(1, 3_600_000_000_000, 3)
            .expect("static histogram bounds are valid");
        Self { hist, elapsed: Duration::ZERO }
    }

    pub fn record(&mut self, d: Duration) {
        self.hist.saturating_record(d.as_nanos().max(1) as u64);
    }

    pub fn merge(&mut self, other: &Timing) {
        // Both histograms share bounds, so adding cannot fail.
        let _ = self.hist.add(&other.hist);
    }

    pub fn finish(&mut self, elapsed: Duration) {
        self.elapsed = elapsed;
    }

    fn us(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }

    /// The latency at each of [`QUANTILES`], then the maximum (as percentile 100).
    pub fn percentiles(&self) -> Vec<Percentile> {
        let mut series: Vec<Percentile> = QUANTILES
            .iter()
            .map(|&q| Percentile { percentile: (q * 1e6).round() / 1e4, us: self.us(q) })
            .collect();
        series.push(Percentile { percentile: 100.0, us: self.hist.max() as f64 / 1000.0 });
        series
    }
}

/// The quantiles of a latency series in the JSON (the plot's curve), the same values as the op
/// columns' (p50, p90, p99, p99.9); the maximum follows.
pub const QUANTILES: [f64; 7] = [0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 0.9999];

/// One point of a latency distribution: `us` microseconds at `percentile` (100 = the maximum).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Percentile {
    pub percentile: f64,
    pub us: f64,
}

/// One measured line: what was done, how fast, and against which baseline.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub name: String,
    pub records: u64,
    pub bytes: u64,
    pub secs: f64,
    pub records_per_s: f64,
    pub mb_per_s: f64,
    /// Latency of one operation (one batch append, one read call), microseconds.
    pub op_p50_us: f64,
    pub op_p90_us: f64,
    pub op_p99_us: f64,
    pub op_p999_us: f64,
    pub op_max_us: f64,
    pub ops: u64,
    /// Name of the baseline row this one is compared with, and the ratio of throughputs.
    pub baseline: Option<String>,
    pub ratio: Option<f64>,
    /// Free-form facts about the run (fsync counts and the like).
    pub notes: Vec<(String, String)>,
    /// The whole latency distribution of the op columns, for the plot (e2e rows only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percentiles: Vec<Percentile>,
    /// Records per batch, where a row is one point of a sweep over batch sizes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<u64>,
}

impl Row {
    pub fn new(name: impl Into<String>, records: u64, bytes: u64, t: &Timing) -> Self {
        let secs = t.elapsed.as_secs_f64().max(1e-9);
        Self {
            name: name.into(),
            records,
            bytes,
            secs,
            records_per_s: records as f64 / secs,
            mb_per_s: bytes as f64 / secs / 1e6,
            op_p50_us: t.us(0.5),
            op_p90_us: t.us(0.9),
            op_p99_us: t.us(0.99),
            op_p999_us: t.us(0.999),
            op_max_us: t.hist.max() as f64 / 1000.0,
            ops: t.hist.len(),
            baseline: None,
            ratio: None,
            notes: Vec::new(),
            percentiles: Vec::new(),
            batch: None,
        }
    }

    /// A row for a measurement that could not be taken here, saying why.
    pub fn skipped(name: impl Into<String>, why: impl ToString) -> Self {
        Row::new(name, 0, 0, &Timing::new()).note("skipped", why)
    }

    pub fn against(mut self, baseline: &Row) -> Self {
        self.baseline = Some(baseline.name.clone());
        self.ratio = Some(self.records_per_s / baseline.records_per_s);
        self
    }

    pub fn note(mut self, key: &str, value: impl ToString) -> Self {
        self.notes.push((key.to_string(), value.to_string()));
        self
    }
}

/// The median of several runs of the same measurement, by throughput.
pub fn median(mut rows: Vec<Row>) -> Row {
    rows.sort_by(|a, b| a.records_per_s.total_cmp(&b.records_per_s));
    rows.swap_remove(rows.len() / 2)
}

/// The median run of `rows`, compared with `baselines` run by run: each run's ratio is taken
/// against the baseline measured in the same run, and the median of those ratios is reported,
/// so drift across runs (page cache, write-back, a noisy neighbour) cancels out.
pub fn median_against(rows: Vec<Row>, baselines: &[Row]) -> Row {
    let mut ratios: Vec<f64> =
        rows.iter().zip(baselines).map(|(r, b)| r.records_per_s / b.records_per_s).collect();
    ratios.sort_by(f64::total_cmp);
    let (lo, hi) = (ratios[0], ratios[ratios.len() - 1]);
    let ratio = ratios[ratios.len() / 2];
    let mut row = median(rows);
    row.baseline = Some(baselines[0].name.clone());
    row.ratio = Some(ratio);
    row.note("ratio per run (min / median / max)", format!("{lo:.2} / {ratio:.2} / {hi:.2}"))
}

pub fn print(rows: &[Row]) {
    println!(
        "{:<38} {:>12} {:>10} {:>9} {:>9} {:>9} {:>9} {:>10}  vs baseline",
        "measurement", "records/s", "MB/s", "p50 us", "p99 us", "p99.9 us", "max us", "ops"
    );
    for r in rows {
        if r.notes.iter().any(|(k, _)| k == "skipped") {
            println!("{:<38} {:>12}", r.name, "skipped");
            for (k, v) in &r.notes {
                println!("    {k}: {v}");
            }
            continue;
        }
        let vs = match (&r.baseline, r.ratio) {
            (Some(b), Some(x)) => format!("{x:.2} x {b}"),
            _ => "(baseline)".to_string(),
        };
        println!(
            "{:<38} {:>12} {:>10.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>10}  {vs}",
            r.name,
            human(r.records_per_s),
            r.mb_per_s,
            r.op_p50_us,
            r.op_p99_us,
            r.op_p999_us,
            r.op_max_us,
            r.ops
        );
        for (k, v) in &r.notes {
            println!("    {k}: {v}");
        }
    }
}

fn human(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1} k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

#[derive(Serialize)]
struct JsonReport<'a> {
    workload: &'a str,
    options: &'a Options,
    machine: Machine,
    results: &'a [Row],
}

pub fn write_json(path: &Path, workload: &str, options: &Options, rows: &[Row]) -> Result<()> {
    let data_dir = options.dir.clone().unwrap_or_else(std::env::temp_dir);
    let report =
        JsonReport { workload, options, machine: Machine::detect(&data_dir), results: rows };
    std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_percentile_series_agrees_with_the_op_columns() {
        let mut t = Timing::new();
        for us in 1..=10_000u64 {
            t.record(Duration::from_micros(us));
        }
        t.finish(Duration::from_secs(1));
        let row = Row::new("x", 10_000, 0, &t);
        let series = t.percentiles();
        let percentiles: Vec<f64> = series.iter().map(|p| p.percentile).collect();
        assert_eq!(percentiles, [50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 99.99, 100.0]);
        let at = |p: f64| series.iter().find(|s| s.percentile == p).map(|s| s.us);
        assert_eq!(at(50.0), Some(row.op_p50_us));
        assert_eq!(at(90.0), Some(row.op_p90_us));
        assert_eq!(at(99.0), Some(row.op_p99_us));
        assert_eq!(at(99.9), Some(row.op_p999_us));
        assert_eq!(at(100.0), Some(row.op_max_us));
        assert!((row.op_p50_us - 5000.0).abs() < 10.0, "{}", row.op_p50_us);
    }
}
