//! `eddy-bench plot [DIR]`: the SVG plots of `docs/benchmarks.md`, from the JSON results in
//! DIR (default `docs/bench`):
//!
//! - `e2e-latency.svg`: latency against percentile (p50 … p99.99, max; log latency axis) of
//!   every row of `e2e-written.json` and `e2e-durable.json`;
//! - `throughput-vs-batch.svg`: records/s against records per `send_batch` (both axes log),
//!   embedded and TCP, from `produce-batch-sweep.json`.
//!
//! A missing input is reported and its plot skipped.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::svg::{Axis, Chart, Series, micros, si};

const E2E_INPUTS: [&str; 2] = ["e2e-written.json", "e2e-durable.json"];
const SWEEP_INPUT: &str = "produce-batch-sweep.json";
/// Where the maximum sits on the percentile axis: one "nine" past p99.99.
const MAX_AT: f64 = 5.0;

pub fn run(dir: &Path) -> Result<()> {
    let mut series = Vec::new();
    for file in E2E_INPUTS {
        match read(&dir.join(file))? {
            Some(json) => series.extend(latency_series(&json)),
            None => println!("no {}; its curves are left out", dir.join(file).display()),
        }
    }
    if series.is_empty() {
        println!("no e2e results: e2e-latency.svg not written");
    } else {
        write(&dir.join("e2e-latency.svg"), &latency_chart(series))?;
    }
    match read(&dir.join(SWEEP_INPUT))? {
        Some(json) => write(&dir.join("throughput-vs-batch.svg"), &sweep_chart(&json)?)?,
        None => {
            println!("no {}: throughput-vs-batch.svg not written", dir.join(SWEEP_INPUT).display())
        }
    }
    Ok(())
}

fn read(path: &Path) -> Result<Option<Value>> {
    match std::fs::read(path) {
        Ok(bytes) => {
            Ok(Some(serde_json::from_slice(&bytes).with_context(|| format!("{}", path.display()))?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn write(path: &Path, chart: &Chart) -> Result<()> {
    std::fs::write(path, chart.render()).with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

fn results(json: &Value) -> impl Iterator<Item = &Value> {
    json.get("results").and_then(Value::as_array).into_iter().flatten()
}

/// Position of percentile `p` on the axis: the number of nines (p90 → 1, p99 → 2, …); the
/// maximum (100) at [`MAX_AT`].
fn nines(p: f64) -> f64 {
    if p >= 100.0 { MAX_AT } else { -(1.0 - p / 100.0).log10() }
}

/// One curve per row: its `percentiles` series, or for results written before it existed the
/// op columns (p50, p90, p99, p99.9, max).
fn latency_series(json: &Value) -> Vec<Series> {
    results(json)
        .filter_map(|row| {
            let name = row.get("name")?.as_str()?;
            let mut points: Vec<(f64, f64)> = row
                .get("percentiles")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|p| {
                    Some((nines(p.get("percentile")?.as_f64()?), p.get("us")?.as_f64()?))
                })
                .collect();
            if points.is_empty() {
                let columns = [
                    (50.0, "op_p50_us"),
                    (90.0, "op_p90_us"),
                    (99.0, "op_p99_us"),
                    (99.9, "op_p999_us"),
                    (100.0, "op_max_us"),
                ];
                points = columns
                    .iter()
                    .filter_map(|(p, key)| Some((nines(*p), row.get(*key)?.as_f64()?)))
                    .collect();
            }
            // "e2e tcp 100B @10000/s acks=written" → "tcp, acks=written"
            let words: Vec<&str> = name.split(' ').collect();
            let acks = words.iter().find(|w| w.starts_with("acks="));
            let name = match (words.get(1), acks) {
                (Some(transport), Some(acks)) => format!("{transport}, {acks}"),
                _ => name.to_string(),
            };
            (!points.is_empty()).then_some(Series { name, points })
        })
        .collect()
}

fn latency_chart(series: Vec<Series>) -> Chart {
    let ys = series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let (lo, hi) = ys.fold((f64::MAX, 0f64), |(lo, hi), y| (lo.min(y), hi.max(y)));
    let ticks = [
        (50.0, "p50"),
        (90.0, "p90"),
        (99.0, "p99"),
        (99.9, "p99.9"),
        (99.99, "p99.99"),
        (100.0, "max"),
    ]
    .iter()
    .map(|(p, l)| (nines(*p), l.to_string()))
    .collect();
    Chart {
        title: "End-to-end latency (scheduled send to receipt) by percentile".into(),
        x: Axis::linear("percentile", 0.2, MAX_AT + 0.1, ticks),
        y: Axis::log10("latency", lo, hi, micros),
        series,
    }
}

type Points = Vec<(f64, f64)>;

/// Records/s against batch size: one curve per transport ("produce embedded …", "produce tcp
/// …"), the rows that carry a `batch`.
fn sweep_chart(json: &Value) -> Result<Chart> {
    // "produce tcp 100B x10 acks=written": curve "tcp", the rest ("100B acks=written") shared
    // by every curve goes to the title (or stays in the name where the curves differ in it).
    let mut curves: Vec<(String, String, Points)> = Vec::new();
    for row in results(json) {
        let (Some(name), Some(batch), Some(rate)) = (
            row.get("name").and_then(Value::as_str),
            row.get("batch").and_then(Value::as_f64),
            row.get("records_per_s").and_then(Value::as_f64),
        ) else {
            continue;
        };
        let batch_word = |w: &str| w.strip_prefix('x').is_some_and(|n| n.parse::<u64>().is_ok());
        let mut words = name.split(' ').filter(|w| *w != "produce" && !batch_word(w));
        let transport = words.next().unwrap_or_default().to_string();
        let rest = words.collect::<Vec<_>>().join(" ");
        match curves.iter_mut().find(|(t, r, _)| *t == transport && *r == rest) {
            Some((_, _, points)) => points.push((batch, rate)),
            None => curves.push((transport, rest, vec![(batch, rate)])),
        }
    }
    let shared = curves.first().map(|c| c.1.clone()).filter(|r| curves.iter().all(|c| c.1 == *r));
    let series: Vec<Series> = curves
        .into_iter()
        .map(|(transport, rest, mut points)| {
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let name = if shared.is_some() { transport } else { format!("{transport} {rest}") };
            Series { name, points }
        })
        .collect();
    anyhow::ensure!(!series.is_empty(), "{SWEEP_INPUT} has no rows with a batch size");
    let points = || series.iter().flat_map(|s| s.points.iter());
    let (xlo, xhi) = points().fold((f64::MAX, 0f64), |(lo, hi), p| (lo.min(p.0), hi.max(p.0)));
    let (ylo, yhi) = points().fold((f64::MAX, 0f64), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
    Ok(Chart {
        title: match shared {
            Some(rest) if !rest.is_empty() => {
                format!("Produce throughput by records per send_batch ({rest})")
            }
            _ => "Produce throughput by records per send_batch".into(),
        },
        x: Axis::log10("records per batch", xlo, xhi, si),
        y: Axis::log10("records/s", ylo, yhi, si),
        series,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curves_come_from_the_percentile_series_or_the_op_columns() {
        let json: Value = serde_json::json!({"results": [
            {"name": "e2e tcp 100B @10000/s acks=written", "op_p50_us": 1.0, "percentiles": [
                {"percentile": 50.0, "us": 190.0}, {"percentile": 99.0, "us": 300.0},
                {"percentile": 100.0, "us": 4000.0}]},
            {"name": "e2e embedded 100B", "op_p50_us": 95.0, "op_p90_us": 107.0,
             "op_p99_us": 214.0, "op_p999_us": 2181.0, "op_max_us": 4131.0}
        ]});
        let s = latency_series(&json);
        assert_eq!(s.len(), 2);
        assert_eq!(
            (s[0].name.as_str(), s[1].name.as_str()),
            ("tcp, acks=written", "e2e embedded 100B")
        );
        assert_eq!(s[0].points.len(), 3);
        assert!((s[0].points[1].0 - 2.0).abs() < 1e-9 && s[0].points[2] == (MAX_AT, 4000.0));
        assert_eq!(s[1].points.len(), 5);
        assert!((s[1].points[3].0 - 3.0).abs() < 1e-9);
    }

    #[test]
    fn the_sweep_makes_one_curve_per_transport() {
        let json: Value = serde_json::json!({"results": [
            {"name": "produce embedded 100B x10 acks=written", "batch": 10, "records_per_s": 2e5},
            {"name": "produce tcp 100B x10 acks=written", "batch": 10, "records_per_s": 1e5},
            {"name": "produce embedded 100B x1 acks=written", "batch": 1, "records_per_s": 3e4},
            {"name": "produce tcp 100B x1 acks=written", "batch": 1, "records_per_s": 1e4},
            {"name": "no batch", "records_per_s": 1.0}
        ]});
        let c = sweep_chart(&json).expect("a chart");
        assert_eq!(c.series.len(), 2);
        assert_eq!((c.series[0].name.as_str(), c.series[1].name.as_str()), ("embedded", "tcp"));
        assert!(c.title.ends_with("(100B acks=written)"), "{}", c.title);
        assert_eq!(c.series[0].points, vec![(1.0, 3e4), (10.0, 2e5)]);
        assert_eq!((c.x.min, c.x.max, c.y.min, c.y.max), (1.0, 10.0, 1e4, 1e6));
    }
}
