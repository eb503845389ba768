//! The fused plan of the commonest spec: a text source split by `fields`, then only
//! `event_time` and `key_by` ops, then an unwindowed `aggregate`, on a one-partition source (the
//! per-URL count). It runs as one `ProcessorBuilder::aggregate_raw` operator that reads each
//! log record's bytes where they lie — no row, no key string, no node graph per record.
//!
//! Invariant: for every record it yields the key, event time and folded value the op-by-op
//! graph yields (`per_record` and `aggregate` in the parent module), so both make the same
//! table, changelog and snapshots; a line the borrowed view cannot hold goes through the
//! graph's own row type.

use std::borrow::Cow;

use serde_json::Value;

use eddy_processor::{Extract, RecordError};

use super::row::{FieldsCodec, LineRef, Pick, Row};
use super::scan::is_plain_json;
use super::values::{JsonAgg, Picked, event_time, number_of, parse_clf_bytes, text_of};
use super::{AggFn, Op, TimeFormat};

/// What the ops before the aggregate do to a line, resolved against the picks.
#[derive(Debug, Clone)]
pub(super) struct LineAggregate {
    codec: FieldsCodec,
    /// `event_time` ops in order: the field (and its pick), the format.
    times: Vec<(String, Option<usize>, TimeFormat)>,
    /// The last `key_by` field and its pick; `None`: the record's own key.
    key: Option<(String, Option<usize>)>,
    agg: JsonAgg,
    /// The aggregate's field's pick.
    agg_pick: Option<usize>,
}

impl LineAggregate {
    /// The fused plan of `ops` (the spec's ops up to and including the first aggregate), if
    /// they are `fields`, then only `event_time` and `key_by`, then an unwindowed aggregate.
    pub fn plan(picks: Vec<Pick>, ops: &[Op]) -> Option<LineAggregate> {
        let (Some(Op::Fields { .. }), Some((Op::Aggregate { function, field, .. }, between))) =
            (ops.first(), ops.get(1..).and_then(<[Op]>::split_last))
        else {
            return None;
        };
        let mut used: Vec<&str> = field.iter().map(String::as_str).collect();
        for op in between {
            match op {
                Op::EventTime { field, .. } | Op::KeyBy { field } => used.push(field),
                _ => return None,
            }
        }
        // Only the picks something reads are split out (a line is scanned up to the last of
        // them); `latest` of the whole row reads them all.
        let whole_row = matches!(function, AggFn::Latest) && field.is_none();
        let picks = picks.into_iter().filter(|p| whole_row || used.contains(&p.name.as_str()));
        let codec = FieldsCodec::new(picks.collect());
        let pick = |name: &str| codec.picks().iter().position(|p| p.name == name);
        let mut times = Vec::new();
        let mut key = None;
        for op in between {
            match op {
                Op::EventTime { field, format } => {
                    times.push((field.clone(), pick(field), *format))
                }
                Op::KeyBy { field } => key = Some((field.clone(), pick(field))),
                _ => return None,
            }
        }
        let agg = JsonAgg { function: *function, field: field.clone() };
        let agg_pick = field.as_deref().and_then(pick);
        Some(LineAggregate { codec, times, key, agg, agg_pick })
    }

    pub fn agg(&self) -> JsonAgg {
        self.agg.clone()
    }

    /// A line the borrowed view cannot hold: through the graph's row, as the graph does.
    fn through_row(
        &self,
        key: Option<&[u8]>,
        line: &[u8],
        ts: i64,
        out: &mut Vec<u8>,
    ) -> (Picked, i64) {
        let row = Row::Json(self.codec.split_to_json(line));
        let mut t = ts;
        for (field, _, format) in &self.times {
            t = event_time(&row, field, *format).unwrap_or(t);
        }
        match &self.key {
            Some((field, _)) => write_key(out, text_of(&row, field).as_bytes()),
            None => write_key(out, key.unwrap_or_default()),
        }
        let field = self.agg.field.as_deref().and_then(|f| row.field(f));
        let num = number_of(field.as_deref());
        let latest = matches!(self.agg.function, AggFn::Latest).then(|| match &self.agg.field {
            Some(_) => field.map_or(Value::Null, Cow::into_owned),
            None => row.clone().into_value(),
        });
        (Picked { num, latest }, t)
    }
}

impl Extract for LineAggregate {
    type Value = Picked;

    fn extract(
        &self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        ts: i64,
        out: &mut Vec<u8>,
    ) -> Result<Option<(Picked, i64)>, RecordError> {
        let line = value.unwrap_or_default();
        let Some((spans, _)) = self.codec.spans(line) else {
            return Ok(Some(self.through_row(key, line, ts, out)));
        };
        let view = self.codec.view(line, &spans);
        let mut t = ts;
        for (_, pick, format) in &self.times {
            let bytes = pick.and_then(|i| view.bytes(i));
            t = bytes.and_then(|b| line_time(b, *format)).unwrap_or(t);
        }
        match &self.key {
            Some((_, pick)) => write_key(out, pick.and_then(|i| view.bytes(i)).unwrap_or_default()),
            None => write_key(out, key.unwrap_or_default()),
        }
        let field = self.agg_pick.and_then(|i| view.text(i));
        let num = field.as_deref().and_then(|s| s.trim().parse().ok());
        let latest =
            matches!(self.agg.function, AggFn::Latest).then(|| latest_of(&self.agg, field, view));
        Ok(Some((Picked { num, latest }, t)))
    }
}

/// The event time of a line's field, as `values::event_time` reads a `Line` row's.
fn line_time(bytes: &[u8], format: TimeFormat) -> Option<i64> {
    match format {
        TimeFormat::Ms => {
            String::from_utf8_lossy(bytes).trim().parse::<f64>().ok().map(|n| n as i64)
        }
        TimeFormat::Clf => parse_clf_bytes(bytes),
    }
}

/// The value `latest` keeps: the field's text, or the whole row without a field.
fn latest_of(agg: &JsonAgg, field: Option<Cow<'_, str>>, view: LineRef<'_>) -> Value {
    match &agg.field {
        Some(_) => field.map_or(Value::Null, |t| Value::String(t.into_owned())),
        None => view.to_value(),
    }
}

/// A text key's state encoding: the JSON string of its text (invalid UTF-8 read lossily), as
/// the aggregate writes a `String` key.
fn write_key(out: &mut Vec<u8>, bytes: &[u8]) {
    // Printable ASCII but `"` and `\` is its own JSON (and the commonest key by far).
    if is_plain_json(bytes) {
        out.reserve(bytes.len() + 2);
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
    } else {
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, &String::from_utf8_lossy(bytes));
    }
}

#[cfg(test)]
mod tests {
    //! The fused plan against the op-by-op graph of the same spec, on real logs: the same
    //! table (values and timestamps), the same changelog records at the same positions, and
    //! snapshots that load across the two.

    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;
    use eddy_processor::{LocalLogs, LogAccess, RunningProcessor, RuntimeConfig};
    use eddy_storage::{BatchBuilder, Batches, Header, LogConfig, Record};

    use super::super::Spec;

    const TOPIC: &str = "lines";

    /// Access-log lines, then lines that take the unusual paths: tabs and runs of blanks,
    /// missing fields, quotes and backslashes and control bytes in keys, invalid UTF-8, numbers
    /// with blanks around them, times that do not parse, null values.
    /// A record to produce: key, value, timestamp.
    type Input = (Option<Vec<u8>>, Option<Vec<u8>>, i64);

    fn input() -> Vec<Input> {
        let mut text = Vec::new();
        // Enough that a chunk of a 4 MiB read (half the input) holds more records than a
        // chunk needs for a helper thread.
        eddy_processor::sample::access_log::generate(&mut text, 12_000, 2, 11).unwrap();
        let mut recs: Vec<_> = text
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .enumerate()
            .map(|(i, l)| (None, Some(l.to_vec()), i as i64))
            .collect();
        let odd: [&[u8]; 12] = [
            b"1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] \"GET /a\tb HTTP/1.1\" 200 512",
            b"1.2.3.4  -  - [10/Oct/2000:13:55:36 -0700]  \"GET  /two  HTTP/1.1\"  404  7",
            b"1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] \"GET /q\"uo\\te\x01 HTTP/1.1\" 200 -3",
            b"1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] \"GET /\xff\xfe HTTP/1.1\" 500 x",
            b"1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] \"GET /caf\xc3\xa9 HTTP/1.1\" 200 1e3",
            b"1.2.3.4 - - [bad time] \"GET /a HTTP/1.1\" 200 1",
            b"short line",
            b"",
            b"   \t  ",
            b"1.2.3.4 - - [29/Feb/2024:23:59:59 +0100] \"GET /a HTTP/1.1\" 200 12345678901234567890",
            b"a b c d e f g h i j k l m n o p q r s t",
            b"1.2.3.4 - - 1700000000123 x \"GET /ms HTTP/1.1\" 200 9",
        ];
        for (i, line) in odd.iter().enumerate() {
            let key = (i % 3 == 0).then(|| format!("k{}", i % 2).into_bytes());
            recs.push((key, Some(line.to_vec()), 1_000 + i as i64));
        }
        recs.push((Some(b"k0".to_vec()), None, 2_000));
        recs
    }

    fn spec(ops: &str) -> Spec {
        let text = format!(
            "name = \"t\"\nversion = 1\nsource = {{ topic = \"{TOPIC}\", format = \"text\" }}\n{ops}"
        );
        Spec::parse(&text).unwrap()
    }

    const FIELDS: &str = "[[ops]]\nop = \"fields\"\nfields = { url = 7, status = 9, bytes = 10, time = \"4-5\", ip = 1, ms = 4 }\n";

    /// Specs the fused plan takes: every function, each time format, keyed by a field or by
    /// the record's own key, a field that is not picked, changes read by a sink.
    fn specs() -> Vec<(&'static str, String)> {
        let agg = |f: &str, field: Option<&str>| {
            let field = field.map(|f| format!("field = \"{f}\"\n")).unwrap_or_default();
            format!("[[ops]]\nop = \"aggregate\"\ntable = \"out\"\nfn = \"{f}\"\n{field}")
        };
        let time = |field: &str, format: &str| {
            format!("[[ops]]\nop = \"event_time\"\nfield = \"{field}\"\nformat = \"{format}\"\n")
        };
        let key = |f: &str| format!("[[ops]]\nop = \"key_by\"\nfield = \"{f}\"\n");
        vec![
            (
                "count",
                format!("{FIELDS}{}{}{}", time("time", "clf"), key("url"), agg("count", None)),
            ),
            ("sum", format!("{FIELDS}{}{}", key("status"), agg("sum", Some("bytes")))),
            ("min max", format!("{FIELDS}{}{}", key("url"), agg("min", Some("status")))),
            ("max", format!("{FIELDS}{}{}", key("ip"), agg("max", Some("bytes")))),
            ("avg", format!("{FIELDS}{}", agg("avg", Some("bytes")))),
            (
                "latest",
                format!(
                    "{FIELDS}{}{}{}",
                    time("ms", "ms"),
                    key("url"),
                    agg("latest", Some("status"))
                ),
            ),
            ("latest row", format!("{FIELDS}{}{}", key("nope"), agg("latest", None))),
            (
                "two times",
                format!(
                    "{FIELDS}{}{}{}{}",
                    time("ms", "ms"),
                    key("status"),
                    time("time", "clf"),
                    agg("count", None)
                ),
            ),
            (
                "to a sink",
                format!(
                    "{FIELDS}{}{}[[ops]]\nop = \"to\"\ntopic = \"sink\"\n",
                    key("url"),
                    agg("count", None)
                ),
            ),
        ]
    }

    fn open(dir: &std::path::Path) -> Arc<LocalLogs> {
        open_with(dir, 1)
    }

    fn open_with(dir: &std::path::Path, partitions: u32) -> Arc<LocalLogs> {
        let logs = Arc::new(LocalLogs::open(dir.join("logs"), LogConfig::default()).unwrap());
        logs.create_topic(TOPIC, partitions, false).unwrap();
        logs.create_topic("sink", 1, false).unwrap();
        logs
    }

    /// Appends `recs` in batches of `per_batch`.
    fn produce(logs: &LocalLogs, recs: &[Input], per_batch: usize) {
        for chunk in recs.chunks(per_batch) {
            let mut b = BatchBuilder::new();
            for (k, v, ts) in chunk {
                b.push(Record {
                    timestamp: *ts,
                    key: k.as_deref(),
                    value: v.as_deref(),
                    headers: &[],
                });
            }
            logs.append(TOPIC, 0, &b.build_valid().unwrap()).unwrap();
        }
    }

    /// How the task reads: bytes per read, threads per chunk.
    #[derive(Debug, Clone, Copy)]
    struct Reads(usize, usize);

    const SMALL: Reads = Reads(16 << 10, 2);

    fn start(
        spec: &Spec,
        fuse: bool,
        logs: &Arc<LocalLogs>,
        state: &std::path::Path,
        reads: Reads,
    ) -> RunningProcessor {
        let parts = |t: &str| (t == TOPIC || t == "sink").then_some(1);
        let processor = spec.compile_plan(&parts, fuse).unwrap();
        let mut config = RuntimeConfig::new(state);
        config.threads = 1;
        config.task.snapshot_every_records = 2_900;
        config.task.read_max_bytes = reads.0;
        config.task.chunk_read_bytes = reads.0;
        config.task.chunk_threads = reads.1;
        processor.start(logs.clone(), config).unwrap()
    }

    /// Every record of a topic: key, value, timestamp, headers.
    type Logged = Vec<(Option<Bytes>, Option<Bytes>, i64, Vec<(Vec<u8>, Option<Vec<u8>>)>)>;

    fn records(logs: &LocalLogs, topic: &str) -> Logged {
        let mut out = Vec::new();
        let mut next = 0;
        loop {
            let bytes = logs.read(topic, 0, next, 1 << 20).unwrap();
            if bytes.is_empty() {
                return out;
            }
            for batch in Batches::new(&bytes) {
                let batch = batch.unwrap();
                let area = batch.records().unwrap().into_bytes(&bytes);
                for r in eddy_storage::batch::RecordIter::over(&area, batch.header()) {
                    let r = r.unwrap();
                    let headers = r
                        .headers()
                        .map(|h: Header<'_>| (h.key.to_vec(), h.value.map(<[u8]>::to_vec)))
                        .collect();
                    let (k, v) =
                        (r.key.map(Bytes::copy_from_slice), r.value.map(Bytes::copy_from_slice));
                    out.push((k, v, r.timestamp, headers));
                }
                next = batch.last_offset() + 1;
            }
        }
    }

    struct Outcome {
        table: Vec<(String, serde_json::Value, i64)>,
        changelog: Logged,
        sink: Logged,
        chunked: u64,
    }

    fn run(spec: &Spec, fuse: bool, reads: Reads) -> Outcome {
        let dir = tempfile::tempdir().unwrap();
        let logs = open(dir.path());
        let recs = input();
        let (first, second) = recs.split_at(recs.len() / 2);
        produce(&logs, first, 100);
        let running = start(spec, fuse, &logs, &dir.path().join("state"), reads);
        running.wait_caught_up(Duration::from_secs(30)).unwrap();
        // One append: the task sees all of it or none, so where its polls end (and so which
        // changes its flushes write) does not depend on timing.
        produce(&logs, second, second.len());
        running.wait_caught_up(Duration::from_secs(30)).unwrap();
        let table = running.table::<String, serde_json::Value>("out").unwrap().scan_stamped();
        let chunked = running.status().values().map(|s| s.metrics.chunked).sum();
        running.stop().unwrap();
        Outcome {
            table,
            changelog: records(&logs, "t-1-out-changelog"),
            sink: records(&logs, "sink"),
            chunked,
        }
    }

    #[test]
    fn the_fused_plan_writes_what_the_graph_writes() {
        let total = input().len() as u64;
        // Chunks of ~100 records (one thread), and of thousands on one thread and on two.
        let reads = [SMALL, Reads(4 << 20, 1), Reads(4 << 20, 2)];
        for (name, ops) in specs() {
            let spec = spec(&ops);
            let graph = run(&spec, false, SMALL);
            assert!(!graph.table.is_empty(), "{name}: an empty table proves nothing");
            assert_eq!(graph.chunked, 0, "{name}");
            for reads in reads {
                let fused = run(&spec, true, reads);
                assert_eq!(graph.table, fused.table, "{name} {reads:?}: tables");
                assert_eq!(graph.changelog, fused.changelog, "{name} {reads:?}: changelogs");
                assert_eq!(graph.sink, fused.sink, "{name} {reads:?}: sink records");
                // With a sink reading the changes the operator is still the source's only
                // reader, so chunks reach it; it then pushes each record's change on.
                assert_eq!(fused.chunked, total, "{name} {reads:?}: all a chunk at a time");
            }
        }
    }

    /// On a source of several partitions a spec without `key_by` (counting by the record's
    /// key) runs fused in every task; one with `key_by` repartitions, op by op.
    #[test]
    fn several_partitions_fuse_per_task_unless_a_key_by_repartitions() {
        let by_key = format!(
            "{FIELDS}[[ops]]\nop = \"aggregate\"\ntable = \"out\"\nfn = \"avg\"\nfield = \"bytes\"\n"
        );
        let by_url = format!(
            "{FIELDS}[[ops]]\nop = \"key_by\"\nfield = \"url\"\n[[ops]]\nop = \"aggregate\"\ntable = \"out\"\nfn = \"count\"\n"
        );
        let recs: Vec<Input> = input()
            .into_iter()
            .enumerate()
            .map(|(i, (_, v, ts))| (Some(format!("k{}", i % 97).into_bytes()), v, ts))
            .collect();
        let run = |ops: &str, fuse: bool| {
            let dir = tempfile::tempdir().unwrap();
            let logs = open_with(dir.path(), 2);
            for rec in &recs {
                let p = eddy_processor::partition_for_key(rec.0.as_deref().unwrap(), 2);
                let mut b = BatchBuilder::new();
                b.push(Record {
                    timestamp: rec.2,
                    key: rec.0.as_deref(),
                    value: rec.1.as_deref(),
                    headers: &[],
                });
                logs.append(TOPIC, p, &b.build_valid().unwrap()).unwrap();
            }
            let parts = |t: &str| match t {
                TOPIC => Some(2),
                "sink" => Some(1),
                _ => None,
            };
            let processor = spec(ops).compile_plan(&parts, fuse).unwrap();
            let config = RuntimeConfig::new(dir.path().join("state"));
            let running = processor.start(logs.clone(), config).unwrap();
            running.wait_caught_up(Duration::from_secs(60)).unwrap();
            let mut table = running.table::<String, serde_json::Value>("out").unwrap().scan();
            table.sort_by(|a, b| a.0.cmp(&b.0));
            let chunked: u64 = running.status().values().map(|s| s.metrics.chunked).sum();
            running.stop().unwrap();
            (table, chunked)
        };
        let (graph, none) = run(&by_key, false);
        let (fused, chunked) = run(&by_key, true);
        assert_eq!((graph.len(), none), (97, 0));
        assert_eq!(fused, graph);
        assert_eq!(chunked, recs.len() as u64, "both tasks took their records in chunks");
        let (_, chunked) = run(&by_url, true);
        assert_eq!(chunked, 0, "a key_by on two partitions repartitions, op by op");
    }

    /// A version restarted by a newer eddy, whose plan for the spec changed, goes on from its
    /// snapshot (the operator ids are the same in both plans), whichever way it changed; a
    /// crash (no final snapshot) in between re-processes from the last snapshot and writes
    /// no change twice.
    #[test]
    fn snapshots_load_across_plans_and_a_crash_writes_nothing_twice() {
        let (name, ops) = &specs()[0];
        let spec = spec(ops);
        let reference = run(&spec, true, SMALL);
        for (before, after) in [(false, true), (true, false), (true, true)] {
            let dir = tempfile::tempdir().unwrap();
            let logs = open(dir.path());
            let state = dir.path().join("state");
            let recs = input();
            let (first, second) = recs.split_at(recs.len() / 3);
            produce(&logs, first, 100);
            let running = start(&spec, before, &logs, &state, Reads(4 << 20, 2));
            running.wait_caught_up(Duration::from_secs(30)).unwrap();
            running.stop().unwrap();
            produce(&logs, &second[..second.len() / 2], 100);
            let running = start(&spec, after, &logs, &state, Reads(4 << 20, 2));
            running.wait_caught_up(Duration::from_secs(30)).unwrap();
            running.abort().unwrap();
            produce(&logs, &second[second.len() / 2..], 100);
            let running = start(&spec, after, &logs, &state, Reads(4 << 20, 2));
            running.wait_caught_up(Duration::from_secs(30)).unwrap();
            let table = running.table::<String, serde_json::Value>("out").unwrap().scan_stamped();
            running.stop().unwrap();
            assert_eq!(table, reference.table, "{name}: {before} then {after}");
            // Each change at most once: no position twice in the changelog.
            let changelog = records(&logs, "t-1-out-changelog");
            let position = |h: &[(Vec<u8>, Option<Vec<u8>>)]| {
                h.iter().find(|(k, _)| k == b"eddy-pos").and_then(|(_, v)| v.clone()).unwrap()
            };
            let positions: Vec<Vec<u8>> = changelog.iter().map(|r| position(&r.3)).collect();
            let mut sorted = positions.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), positions.len(), "{name}: a change written twice");
        }
    }
}
