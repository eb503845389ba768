//! Processor spec files: a declarative pipeline for server users (until SQL), parsed from TOML
//! and compiled to the same builder the Rust API uses.
//!
//! ```toml
//! name = "url-counts"
//! version = 1
//! source = { topic = "access-log", format = "text" }   # text (one string) or json
//!
//! [[ops]]
//! op = "fields"                # split a text line on whitespace, as awk does
//! fields = { url = 7, status = 9, time = "4-5" }
//! [[ops]]
//! op = "event_time"
//! field = "time"
//! format = "clf"               # ms | clf ([10/Oct/2000:13:55:36 -0700])
//! [[ops]]
//! op = "key_by"
//! field = "url"
//! [[ops]]
//! op = "aggregate"
//! table = "requests-per-url"
//! fn = "count"                 # count | sum | min | max | avg | latest (sum..avg need `field`)
//! [[ops]]
//! op = "to"
//! topic = "url-counts"
//! ```
//!
//! Records flow as (key: text, value: JSON). Other ops: `filter` (`field` with `equals`,
//! `not_equals`, `gt`, `ge`, `lt` or `le`), `select` (keep `fields`), `window` (`kind` =
//! tumbling / hopping / session, `size_ms`, `advance_ms`, `gap_ms`, `grace_ms`, `emit` =
//! changes / final; the next op must be `aggregate`), `dedupe` (`window_ms`, `grace_ms`),
//! `join_table` (`table` from `[[tables]]`, the match stored under `as`).
//!
//! After an `aggregate`, the stream continues with the table's changes; a windowed
//! aggregate's values are `{"key", "start", "end", "value"}`. `key_by` on a source with
//! several partitions repartitions by the new key, so every key is counted in one task.
//!
//! Errors name the op (by its position) and the field at fault; nothing is deployed unless
//! the whole spec compiles.

mod fused;
mod row;
mod scan;
mod values;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use eddy_processor::{Emit, Json, Processor, ProcessorBuilder, Stream, Table, Windowed, Windows};

use crate::error::BrokerError;
use row::{FieldsCodec, Row};
use values::{
    Cmp, Filter, JsonAgg, SourceCodec, TextKey, ValueCodec, event_time, field_picks, text_of,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub name: String,
    pub version: u32,
    pub source: Source,
    #[serde(default)]
    pub tables: Vec<TableSource>,
    #[serde(default)]
    pub ops: Vec<Op>,
    /// Worker threads for the processor's tasks (default 1).
    #[serde(default)]
    pub threads: Option<usize>,
    /// A source partition silent this long (ms of wall time) no longer holds windows open
    /// (docs/processors.md, "Idle partitions"); unset: silent partitions hold them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub topic: String,
    #[serde(default)]
    pub format: Format,
}

/// A table fed by a topic (latest value per key), for `join_table`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSource {
    pub name: String,
    pub topic: String,
    #[serde(default)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Json,
    Text,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    Fields {
        fields: toml::Table,
    },
    Filter {
        field: String,
        equals: Option<Value>,
        not_equals: Option<Value>,
        gt: Option<f64>,
        ge: Option<f64>,
        lt: Option<f64>,
        le: Option<f64>,
    },
    Select {
        fields: Vec<String>,
    },
    EventTime {
        field: String,
        #[serde(default)]
        format: TimeFormat,
    },
    KeyBy {
        field: String,
    },
    Window {
        kind: WindowShape,
        size_ms: Option<i64>,
        advance_ms: Option<i64>,
        gap_ms: Option<i64>,
        #[serde(default)]
        grace_ms: i64,
        #[serde(default)]
        emit: EmitSpec,
    },
    Aggregate {
        table: String,
        #[serde(rename = "fn")]
        function: AggFn,
        field: Option<String>,
    },
    Dedupe {
        window_ms: i64,
        #[serde(default)]
        grace_ms: i64,
    },
    JoinTable {
        table: String,
        #[serde(rename = "as")]
        field: String,
    },
    To {
        topic: String,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeFormat {
    #[default]
    Ms,
    Clf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WindowShape {
    Tumbling,
    Hopping,
    Session,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmitSpec {
    #[default]
    Changes,
    Final,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AggFn {
    Count,
    Sum,
    Min,
    Max,
    Avg,
    Latest,
}

/// The `[[tables]]` by name, for `join_table` ops.
type JoinTables = Vec<(String, Table<String, Value>)>;

fn invalid(reason: impl Into<String>) -> BrokerError {
    BrokerError::InvalidSpec(reason.into())
}

impl Spec {
    pub fn parse(text: &str) -> Result<Spec, BrokerError> {
        let spec: Spec = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        crate::topic::validate_name(&spec.name).map_err(|_| {
            invalid(format!("name {:?}: use letters, digits, '.', '_', '-'", spec.name))
        })?;
        if spec.name.starts_with("__") {
            return Err(invalid("names starting with '__' are reserved"));
        }
        Ok(spec)
    }

    /// Compiles the spec; `partitions` tells how many partitions a topic has.
    pub fn compile(
        &self,
        partitions: &dyn Fn(&str) -> Option<u32>,
    ) -> Result<Processor, BrokerError> {
        self.compile_plan(partitions, true)
    }

    /// [`compile`](Self::compile), with the fused plan (`fused`) where it applies, or
    /// always op by op (to compare them).
    fn compile_plan(
        &self,
        partitions: &dyn Fn(&str) -> Option<u32>,
        fuse: bool,
    ) -> Result<Processor, BrokerError> {
        let b = ProcessorBuilder::new(&self.name, self.version);
        let source_parts = partitions(&self.source.topic).ok_or_else(|| {
            invalid(format!("source topic {:?} does not exist", self.source.topic))
        })?;
        let tables = self.tables(&b, partitions)?;
        // A text source whose first op is `fields` splits each line straight from its bytes.
        let fused = match (self.source.format, self.ops.first()) {
            (Format::Text, Some(Op::Fields { fields })) => {
                Some(field_picks(fields).map_err(|e| invalid(format!("op 1 (fields): {e}")))?)
            }
            _ => None,
        };
        let value_codec = match &fused {
            Some(picks) => SourceCodec::Fields(FieldsCodec::new(picks.clone())),
            None => SourceCodec::Plain(ValueCodec(self.source.format)),
        };
        // The ops up to the first aggregate may run fused (`fused`); the graph of the same
        // ops is still built, unwired, so that every operator gets the id it has in the graph
        // and a snapshot written by either plan loads in the other.
        let first_aggregate = self.ops.iter().position(|op| matches!(op, Op::Aggregate { .. }));
        let plan = match (&fused, first_aggregate) {
            // With several source partitions a `key_by` repartitions (the graph's way); without
            // one, each task counts its own partition's keys, fused.
            (Some(picks), Some(at))
                if fuse
                    && (source_parts == 1
                        || !self.ops[..at].iter().any(|op| matches!(op, Op::KeyBy { .. }))) =>
            {
                fused::LineAggregate::plan(picks.clone(), &self.ops[..=at])
            }
            _ => None,
        };
        let mut stream: Stream<String, Row> =
            b.stream::<String, Row>(&self.source.topic, TextKey, value_codec);
        // A `window` op waits here for the `aggregate` after it.
        let mut window: Option<(Windows, Emit)> = None;
        for (i, op) in self.ops.iter().enumerate() {
            let at = |reason: String| invalid(format!("op {} ({}): {reason}", i + 1, op_name(op)));
            if window.is_some() && !matches!(op, Op::Aggregate { .. }) {
                return Err(at("a window must be followed by an aggregate".into()));
            }
            if i == 0 && fused.is_some() {
                continue;
            }
            stream = match op {
                Op::Window { .. } => {
                    window = Some(window_of(op).map_err(at)?);
                    continue;
                }
                Op::Aggregate { table, function, field } => {
                    if !matches!(function, AggFn::Count | AggFn::Latest) && field.is_none() {
                        return Err(at(format!("fn {function:?} needs a field")));
                    }
                    let agg = JsonAgg { function: *function, field: field.clone() };
                    match &plan {
                        Some(plan) if Some(i) == first_aggregate => b
                            .aggregate_raw(&self.source.topic, table, plan.clone(), plan.agg())
                            .map_err(|e| at(e.to_string()))?
                            .changes()
                            .map_values(|_, v| Row::Json(v)),
                        _ => aggregate(stream, table, agg, window.take()).map_err(at)?,
                    }
                }
                Op::JoinTable { table, field } => {
                    let Some((_, t)) = tables.iter().find(|(n, _)| n == table) else {
                        return Err(at(format!("no table {table:?} in [[tables]]")));
                    };
                    join_table(stream, t, field)
                }
                other => per_record(stream, other, i, source_parts).map_err(at)?,
            };
        }
        if window.is_some() {
            return Err(invalid("the last op is a window: an aggregate must follow it"));
        }
        b.build().map_err(|e| invalid(e.to_string()))
    }

    /// The `[[tables]]` the ops may join, each over an existing topic.
    fn tables(
        &self,
        b: &ProcessorBuilder,
        partitions: &dyn Fn(&str) -> Option<u32>,
    ) -> Result<JoinTables, BrokerError> {
        let mut tables = Vec::new();
        for t in &self.tables {
            if partitions(&t.topic).is_none() {
                return Err(invalid(format!(
                    "table {:?}: topic {:?} does not exist",
                    t.name, t.topic
                )));
            }
            let table = b
                .table::<String, Value>(&t.name, &t.topic, TextKey, ValueCodec(t.format))
                .map_err(|e| invalid(format!("table {:?}: {e}", t.name)))?;
            tables.push((t.name.clone(), table));
        }
        Ok(tables)
    }

    /// Topics the processor's sinks write to.
    pub fn outputs(&self) -> Vec<String> {
        self.ops
            .iter()
            .filter_map(|op| match op {
                Op::To { topic } => Some(topic.clone()),
                _ => None,
            })
            .collect()
    }
}

fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Fields { .. } => "fields",
        Op::Filter { .. } => "filter",
        Op::Select { .. } => "select",
        Op::EventTime { .. } => "event_time",
        Op::KeyBy { .. } => "key_by",
        Op::Window { .. } => "window",
        Op::Aggregate { .. } => "aggregate",
        Op::Dedupe { .. } => "dedupe",
        Op::JoinTable { .. } => "join_table",
        Op::To { .. } => "to",
    }
}

fn sanitize(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect()
}

/// The ops that act on each record alone (or repartition, or write): `fields`, `filter`,
/// `select`, `event_time`, `key_by`, `dedupe`, `to`. `i` is the op's index.
fn per_record(
    stream: Stream<String, Row>,
    op: &Op,
    i: usize,
    source_parts: u32,
) -> Result<Stream<String, Row>, String> {
    Ok(match op {
        Op::Fields { fields } => {
            let codec = FieldsCodec::new(field_picks(fields)?);
            stream.map_values(move |_, v| match v {
                Row::Json(Value::String(line)) => codec.split(&line.into_bytes().into()),
                _ => codec.split(&bytes::Bytes::new()),
            })
        }
        Op::Filter { field, equals, not_equals, gt, ge, lt, le } => {
            let test = Filter {
                field: field.clone(),
                equals: equals.clone(),
                not_equals: not_equals.clone(),
                bounds: [(*gt, Cmp::Gt), (*ge, Cmp::Ge), (*lt, Cmp::Lt), (*le, Cmp::Le)],
            };
            stream.filter(move |_, v| test.keeps(v))
        }
        Op::Select { fields } => {
            let fields = fields.clone();
            stream.map_values(move |_, v| {
                let mut out = serde_json::Map::new();
                for f in &fields {
                    if let Some(x) = v.field(f) {
                        out.insert(f.clone(), x.into_owned());
                    }
                }
                Row::Json(Value::Object(out))
            })
        }
        Op::EventTime { field, format } => {
            let (field, format) = (field.clone(), *format);
            stream.event_time(move |_, v, ts| event_time(v, &field, format).unwrap_or(ts))
        }
        Op::KeyBy { field } => {
            let by = field.clone();
            let keyed = stream.select_key(move |_, v| text_of(v, &by));
            if source_parts > 1 {
                keyed.repartition(&format!("by-{}-{}", sanitize(field), i + 1), source_parts)
            } else {
                keyed
            }
        }
        Op::Dedupe { window_ms, grace_ms } => stream.dedupe(*window_ms, *grace_ms),
        Op::To { topic } => {
            stream.to(topic, TextKey, Json);
            stream
        }
        Op::Window { .. } | Op::Aggregate { .. } | Op::JoinTable { .. } => {
            return Err("not a per-record op".into());
        }
    })
}

/// The windows and emit mode of a `window` op.
fn window_of(op: &Op) -> Result<(Windows, Emit), String> {
    let Op::Window { kind, size_ms, advance_ms, gap_ms, grace_ms, emit } = op else {
        return Err("not a window".into());
    };
    let need = |v: &Option<i64>, name: &str| {
        v.filter(|x| *x > 0).ok_or_else(|| format!("{name} must be a positive number"))
    };
    let w = match kind {
        WindowShape::Tumbling => Windows::tumbling(need(size_ms, "size_ms")?),
        WindowShape::Hopping => {
            Windows::hopping(need(size_ms, "size_ms")?, need(advance_ms, "advance_ms")?)
        }
        WindowShape::Session => Windows::session(need(gap_ms, "gap_ms")?),
    };
    let emit = match emit {
        EmitSpec::Changes => Emit::Changes,
        EmitSpec::Final => Emit::Final,
    };
    Ok((w.grace((*grace_ms).max(0)), emit))
}

/// An `aggregate` op, over `window` when a `window` op came before it; the stream continues
/// with the table's changes (a windowed one's values as `{"key", "start", "end", "value"}`).
fn aggregate(
    stream: Stream<String, Row>,
    table: &str,
    agg: JsonAgg,
    window: Option<(Windows, Emit)>,
) -> Result<Stream<String, Row>, String> {
    Ok(match window {
        None => stream
            .aggregate(table, agg)
            .map_err(|e| e.to_string())?
            .changes()
            .map_values(|_, v| Row::Json(v)),
        Some((w, emit)) => {
            stream.window(w).aggregate(table, agg, emit).map_err(|e| e.to_string())?.changes().map(
                |k: Windowed<String>, v: Value| {
                    let value = serde_json::json!({
                        "key": k.key, "start": k.start, "end": k.end, "value": v,
                    });
                    (k.key, Row::Json(value))
                },
            )
        }
    })
}

/// A `join_table` op: each record's value gains the table's row for its key under `field`.
fn join_table(
    stream: Stream<String, Row>,
    table: &Table<String, Value>,
    field: &str,
) -> Stream<String, Row> {
    let field = field.to_string();
    stream.join_table(table, move |_, v, right| {
        let mut v = v.clone().into_value();
        Row::Json(match &mut v {
            Value::Object(map) => {
                map.insert(field.clone(), right.clone());
                v
            }
            other => serde_json::json!({ "value": other, field.clone(): right }),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::values::parse_clf;
    use super::*;

    #[test]
    fn clf_times_parse_with_their_zone() {
        assert_eq!(parse_clf("[10/Oct/2000:13:55:36 -0700]"), Some(971_211_336_000));
        assert_eq!(parse_clf("01/Jan/1970:00:00:00 +0000"), Some(0));
        assert_eq!(parse_clf("[29/Feb/2024:23:59:59 +0100]"), Some(1_709_247_599_000));
        assert_eq!(parse_clf("[10/Foo/2000:13:55:36 -0700]"), None);
        assert_eq!(parse_clf("garbage"), None);
    }

    #[test]
    fn specs_are_checked_before_anything_runs() {
        let parts = |t: &str| (t == "in").then_some(2);
        let bad = [
            ("name = \"x\"\nversion = 1\nsource = { topic = \"nope\" }\n", "does not exist"),
            (
                "name = \"x\"\nversion = 1\nsource = { topic = \"in\" }\nbogus = 1\n",
                "unknown field",
            ),
            (
                "name = \"x\"\nversion = 1\nsource = { topic = \"in\" }\n[[ops]]\nop = \"aggregate\"\ntable = \"t\"\nfn = \"sum\"\n",
                "op 1 (aggregate): fn Sum needs a field",
            ),
            (
                "name = \"x\"\nversion = 1\nsource = { topic = \"in\" }\n[[ops]]\nop = \"window\"\nkind = \"tumbling\"\n",
                "op 1 (window): size_ms must be a positive number",
            ),
            ("name = \"__x\"\nversion = 1\nsource = { topic = \"in\" }\n", "reserved"),
        ];
        for (text, want) in bad {
            let e = Spec::parse(text).and_then(|s| s.compile(&parts).map(drop)).unwrap_err();
            assert!(e.to_string().contains(want), "{e} should say {want:?}");
        }
    }

    #[test]
    fn fields_split_like_awk() {
        let line = Value::String(
            "1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] \"GET /a.html HTTP/1.1\" 200 512".into(),
        );
        let pick = |name: &str, from, to| row::Pick { name: name.into(), from, to };
        let picks = vec![pick("url", 7, 7), pick("time", 4, 5), pick("none", 12, 13)];
        let Value::String(line) = line else { unreachable!() };
        let v = FieldsCodec::new(picks).split(&line.into_bytes().into()).into_value();
        assert_eq!(v.as_object().map(|m| m.len()), Some(2));
        assert_eq!(v["url"], "/a.html");
        assert_eq!(v["time"], "[10/Oct/2000:13:55:36 -0700]");
    }
}
