//! The admin API's JSON: the wire types of `proto/eddy.proto` (what the native admin requests
//! answer) rendered field by field, with the names the proto gives them. Keys and values that
//! travel as JSON text (table rows, SQL rows) are parsed back into JSON values; text that does
//! not parse is kept as a string.

use eddy_protocol::v1::{self, sql_result::Result as SqlOutcome};
use serde_json::{Value, json};

/// JSON text as a value (a string when it does not parse).
pub fn parsed(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

pub fn error(e: &v1::Error) -> Value {
    let code = v1::ErrorCode::try_from(e.code).map_or("UNKNOWN", |c| c.as_str_name());
    json!({ "code": code, "message": e.message })
}

pub fn partition(p: &v1::PartitionInfo) -> Value {
    json!({
        "partition": p.partition,
        "start_offset": p.log_start_offset,
        "end_offset": p.next_offset,
        "size_bytes": p.size_bytes,
        "segments": p.segments,
    })
}

pub fn topic_partitions(tp: &[v1::TopicPartitions]) -> Value {
    tp.iter().map(|t| json!({ "topic": t.topic, "partitions": t.partitions })).collect()
}

pub fn group_listing(g: &v1::GroupListing) -> Value {
    json!({ "group_id": g.group_id, "state": g.state, "members": g.members })
}

pub fn group(d: &v1::DescribeGroupResponse) -> Value {
    let members: Vec<Value> = d
        .members
        .iter()
        .map(|m| {
            json!({
                "member_id": m.member_id,
                "client_id": m.client_id,
                "member_epoch": m.member_epoch,
                "subscribed_topics": m.subscribed_topics,
                "assigned": topic_partitions(&m.assigned),
                "revoking": topic_partitions(&m.revoking),
                "pending": topic_partitions(&m.pending),
            })
        })
        .collect();
    let offsets: Vec<Value> = d
        .offsets
        .iter()
        .map(|p| {
            json!({
                "topic": p.topic,
                "partition": p.partition,
                "committed": p.committed,
                "end_offset": p.end_offset,
                "lag": p.lag,
                "owner": p.owner,
            })
        })
        .collect();
    let lag: u64 = d.offsets.iter().map(|p| p.lag).sum();
    json!({
        "group_id": d.group_id,
        "state": d.state,
        "group_epoch": d.group_epoch,
        "assignor": d.assignor,
        "members": members,
        "offsets": offsets,
        "lag": lag,
    })
}

pub fn processor(p: &v1::ProcessorInfo) -> Value {
    let tasks: Vec<Value> = p
        .tasks
        .iter()
        .map(|t| {
            json!({
                "task": t.task,
                "records_in": t.records_in,
                "records_out": t.records_out,
                "late": t.late,
                "decode_errors": t.decode_errors,
                "state_keys": t.state_keys,
                "state_bytes": t.state_bytes,
                "inputs": t.inputs.iter().map(input).collect::<Vec<_>>(),
            })
        })
        .collect();
    let done = p.records_processed;
    let progress = if done + p.lag == 0 { 1.0 } else { done as f64 / (done + p.lag) as f64 };
    json!({
        "name": p.name,
        "version": p.version,
        "state": p.state,
        "error": p.error,
        "sources": p.sources,
        "tables": p.tables,
        "outputs": p.outputs,
        "lag": p.lag,
        "records_processed": done,
        "progress": progress,
        "records_per_s": p.records_per_s,
        "eta_ms": (p.eta_ms != u64::MAX).then_some(p.eta_ms),
        "running_ms": p.running_ms,
        "retired_version": p.retired_version,
        "spec": p.spec,
        "tasks": tasks,
        "building": p.building.as_deref().map(processor),
    })
}

fn input(i: &v1::ProcessorInput) -> Value {
    json!({ "topic": i.topic, "partition": i.partition, "position": i.position, "end_offset": i.end_offset })
}

pub fn table(r: &v1::QueryTableResponse, digest: bool) -> Value {
    let rows: Vec<Value> = r
        .rows
        .iter()
        .map(|row| json!({ "key": parsed(&row.key), "value": parsed(&row.value) }))
        .collect();
    json!({
        "processor": r.processor,
        "version": r.version,
        "rows": rows,
        "inputs": r.inputs.iter().map(input).collect::<Vec<_>>(),
        // As text: a u64 does not fit in a JavaScript number.
        "digest": digest.then(|| format!("{:016x}", r.digest)),
        "changelog": r.changelog,
    })
}

pub fn sql_result(r: &v1::SqlResult) -> Value {
    let outcome = match &r.result {
        Some(SqlOutcome::Declared(d)) => json!({ "declared": {
            "name": d.name, "kind": d.kind, "topic": d.topic, "partitions": d.partitions } }),
        Some(SqlOutcome::Query(q)) => json!({ "query": {
            "id": q.id, "target": q.target, "version": q.version, "replaced": q.replaced } }),
        Some(SqlOutcome::Rows(rows)) => json!({ "rows": {
            "columns": rows.columns,
            "rows": rows.rows.iter().map(|r| parsed(r)).collect::<Vec<_>>(),
            "processor": rows.processor,
            "version": rows.version } }),
        Some(SqlOutcome::Push(p)) => json!({ "push": {
            "topic": p.topic, "columns": p.columns,
            "rows": p.rows.iter().map(|r| parsed(r)).collect::<Vec<_>>() } }),
        Some(SqlOutcome::Error(e)) => json!({ "error": {
            "message": e.message, "line": e.line, "column": e.column } }),
        Some(SqlOutcome::Dropped(name)) => json!({ "dropped": name }),
        Some(SqlOutcome::Terminated(id)) => json!({ "terminated": id }),
        Some(SqlOutcome::Unchanged(_)) => json!({ "unchanged": true }),
        None => json!({}),
    };
    json!({ "statement": r.statement, "result": outcome })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_keep_json_values_and_text_that_is_not_json() {
        let r = v1::QueryTableResponse {
            processor: "p".into(),
            version: 2,
            rows: vec![v1::TableRow { key: "\"/a\"".into(), value: "3".into() }],
            digest: u64::MAX,
            ..Default::default()
        };
        let v = table(&r, true);
        assert_eq!(v["rows"][0]["key"], "/a");
        assert_eq!(v["rows"][0]["value"], 3);
        assert_eq!(v["digest"], "ffffffffffffffff");
        assert_eq!(parsed("not json"), Value::String("not json".into()));
    }
}
