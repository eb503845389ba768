//! Status of registered versions: progress (records done, lag per input partition), whether a
//! building version caught up, the smoothed processing rate, and the wire `ProcessorInfo`.

use std::time::Instant;

use eddy_protocol::v1;

use super::{Entry, Version};
use crate::topics::Topics;

/// Input records done and not yet done by a version, from its tasks' last reports.
pub(super) fn progress(
    topics: &Topics,
    v: &Version,
) -> Option<(u64, u64, Vec<v1::ProcessorInput>)> {
    let running = v.running.as_ref()?;
    let (mut done, mut lag, mut inputs) = (0, 0, Vec::new());
    for status in running.status().values() {
        for (topic, partition, position) in &status.inputs {
            let end = topics.end_offset(topic, *partition).unwrap_or(*position);
            done += *position;
            lag += end.saturating_sub(*position);
            inputs.push(v1::ProcessorInput {
                topic: topic.clone(),
                partition: *partition,
                position: *position,
                end_offset: end,
            });
        }
    }
    Some((done, lag, inputs))
}

/// Every task open and no input partition behind.
pub(super) fn caught_up(topics: &Topics, v: &Version) -> bool {
    let Some(running) = &v.running else { return false };
    if running.failure().is_some() || running.status().len() < running.tasks().len() {
        return false;
    }
    progress(topics, v).is_some_and(|(_, lag, inputs)| lag == 0 && !inputs.is_empty())
}

pub(super) fn update_rate(v: &mut Version) {
    let Some(running) = &v.running else { return };
    let done: u64 = running.status().values().map(|s| s.metrics.records_in).sum();
    let now = Instant::now();
    if let Some((at, before)) = v.last_done {
        let secs = now.duration_since(at).as_secs_f64();
        if secs > 0.0 {
            let sample = done.saturating_sub(before) as f64 / secs;
            // Smoothed over about a second of samples.
            v.rate = if v.rate == 0.0 { sample } else { 0.8 * v.rate + 0.2 * sample };
        }
    }
    v.last_done = Some((now, done));
}

fn version_info(topics: &Topics, name: &str, v: &Version, role: &str) -> v1::ProcessorInfo {
    let mut tasks = Vec::new();
    let mut tables = Vec::new();
    let mut error = v.error.clone();
    let mut records = 0;
    if let Some(running) = &v.running {
        tables = running.processor().tables();
        for (id, status) in running.status() {
            records += status.metrics.records_in;
            let inputs: Vec<v1::ProcessorInput> = status
                .inputs
                .iter()
                .map(|(topic, partition, position)| v1::ProcessorInput {
                    topic: topic.clone(),
                    partition: *partition,
                    position: *position,
                    end_offset: topics.end_offset(topic, *partition).unwrap_or(*position),
                })
                .collect();
            tasks.push(v1::ProcessorTask {
                task: id.to_string(),
                inputs,
                records_in: status.metrics.records_in,
                records_out: status.metrics.records_out,
                late: status.metrics.late,
                decode_errors: status.metrics.decode_errors,
                state_keys: status.state.table_keys,
                state_bytes: status.state.table_bytes,
            });
        }
        if let Some(failure) = running.failure() {
            error = Some(failure);
        }
    }
    let lag = progress(topics, v).map_or(0, |(_, lag, _)| lag);
    let state = if error.is_some() || v.running.is_none() { "failed" } else { role };
    let eta_ms = if lag == 0 {
        0
    } else if v.rate > 0.0 {
        (lag as f64 / v.rate * 1000.0) as u64
    } else {
        u64::MAX
    };
    v1::ProcessorInfo {
        name: name.to_string(),
        version: v.def.version(),
        state: state.to_string(),
        error: error.unwrap_or_default(),
        sources: v.def.inputs(),
        tables,
        outputs: v.def.outputs(),
        tasks,
        lag,
        spec: v.text.clone(),
        records_processed: records,
        records_per_s: v.rate,
        eta_ms,
        running_ms: v.started.elapsed().as_millis() as u64,
        building: None,
        retired_version: 0,
        owner: v.owner.owner().unwrap_or_default(),
    }
}

pub(super) fn info(topics: &Topics, name: &str, e: &Entry) -> v1::ProcessorInfo {
    let mut serving = version_info(topics, name, &e.serving, "running");
    serving.building =
        e.building.as_ref().map(|b| Box::new(version_info(topics, name, b, "building")));
    serving.retired_version = e.retired.as_ref().map_or(0, |(v, _)| v.def.version());
    serving
}
