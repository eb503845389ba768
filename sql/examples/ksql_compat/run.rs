//! Running one case on eddy: creating its topics, executing its statements and starting its
//! queries on `LocalLogs` in a temporary directory, feeding its inputs, reading back the output
//! topics for [`compare`](super::compare), and turning refusals, timeouts and panics into a
//! verdict.

use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eddy_processor::{LocalLogs, LogAccess, RunningProcessor, RuntimeConfig};
use eddy_sql::{FunctionRegistry, Outcome, Session, SourceInfo, ValueFormat};
use serde_json::Value;

use super::common;
use super::compare::{self, Aspect, Mode, Topic};
use super::qtt::{Case, Rec};

/// How long a case may take to process its input.
const CASE_DEADLINE: Duration = Duration::from_secs(10);

/// Panic messages since the last case started (the hook records them; panics of the
/// processors' workers included).
static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Records panics instead of printing them: a panic is a result here.
pub fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        let place = info.location().map(|l| format!(" at {}:{}", l.file(), l.line()));
        let message = payload_text(info.payload());
        let mut panics = PANICS.lock().unwrap_or_else(|p| p.into_inner());
        panics.push(format!("{message}{}", place.unwrap_or_default()));
    }));
}

fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(a panic without a message)".into())
}

fn take_panic() -> Option<String> {
    let mut panics = PANICS.lock().unwrap_or_else(|p| p.into_inner());
    let first = panics.first().cloned();
    panics.clear();
    first
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Refused,
    OutputDiffers,
    NotRefused,
    ProcessorFailed,
    Timeout,
    Panic,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Refused => "refused",
            Kind::OutputDiffers => "output differs",
            Kind::NotRefused => "not refused",
            Kind::ProcessorFailed => "processor failed",
            Kind::Timeout => "timeout",
            Kind::Panic => "panic",
        }
    }
}

/// Why a case failed. `message` is the one-line reason; `aspects` every way the first
/// differing record differs (output differences only).
#[derive(Debug, Clone)]
pub struct Failure {
    pub kind: Kind,
    pub message: String,
    pub aspects: Vec<Aspect>,
    /// eddy's error, for refusals.
    pub eddy_error: Option<String>,
    /// ksqlDB's error (without its type), for tests eddy did not refuse.
    pub ksql_error: Option<String>,
    /// The group of an output difference.
    pub group: Option<String>,
    /// When eddy's values hold key columns ksqlDB's lack: the group of what else differs
    /// once they are dropped.
    pub beneath: Option<String>,
}

/// How a case passed.
#[derive(Debug, Clone, Default)]
pub struct Pass {
    /// The expected error, and eddy's.
    pub errors: Option<(String, String)>,
    /// Some number matched only numerically (`1` for `1.0`).
    pub lenient: bool,
}

pub type Verdict = Result<Pass, Box<Failure>>;

fn failure(kind: Kind, message: String) -> Failure {
    Failure {
        kind,
        message,
        aspects: Vec::new(),
        eddy_error: None,
        ksql_error: None,
        group: None,
        beneath: None,
    }
}

/// Runs `case`; a panic is its result too.
pub fn case(case: &Case) -> Verdict {
    take_panic();
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| execute(case)));
    result.unwrap_or_else(|payload| {
        let message = take_panic().unwrap_or_else(|| payload_text(&*payload));
        Err(Box::new(failure(Kind::Panic, format!("panic: {message}"))))
    })
}

/// A statement eddy refused, or a query it could not start.
struct Refusal {
    statement: String,
    message: String,
}

/// Why processing the input stopped.
enum Stall {
    Timeout,
    Failed(String),
}

struct Env {
    _dir: tempfile::TempDir,
    state: std::path::PathBuf,
    logs: Arc<LocalLogs>,
    running: Vec<RunningProcessor>,
    /// Topics whose values are text (a source or target format other than JSON).
    text_topics: HashMap<String, bool>,
    /// The key columns of the stream or table over each topic.
    key_columns: HashMap<String, Vec<String>>,
    /// The key columns of every declared source (a stream made by `CREATE STREAM ... AS
    /// SELECT` does not name its key column: it is one of these, or an expression).
    source_keys: Vec<String>,
    deadline: Instant,
}

fn execute(case: &Case) -> Verdict {
    let dir =
        tempfile::tempdir().map_err(|e| Box::new(failure(Kind::Panic, format!("tempdir: {e}"))))?;
    let mut env = Env {
        state: dir.path().join("state"),
        logs: common::open_logs(&dir.path().join("logs")),
        _dir: dir,
        running: Vec::new(),
        text_topics: HashMap::new(),
        key_columns: HashMap::new(),
        source_keys: Vec::new(),
        deadline: Instant::now() + CASE_DEADLINE,
    };
    let verdict = env.run(case);
    env.stop();
    verdict
}

impl Env {
    fn run(&mut self, case: &Case) -> Verdict {
        if let Err(r) = self.declare(case) {
            return refused(case, r);
        }
        let fed = self.feed(&case.inputs);
        match (&case.expected_error, fed) {
            (Some(expected), Err(Stall::Failed(e))) => {
                Ok(Pass { errors: Some((expected.clone(), e)), lenient: false })
            }
            (_, Err(Stall::Timeout)) => Err(Box::new(failure(
                Kind::Timeout,
                "timeout: the input was not processed in time".into(),
            ))),
            (None, Err(Stall::Failed(e))) => {
                Err(Box::new(failure(Kind::ProcessorFailed, format!("processor failed: {e}"))))
            }
            (Some(expected), Ok(())) => {
                let message = format!("not refused: ksqlDB raises {}", one_line(expected));
                let ksql = expected.split_once(": ").map_or(expected.as_str(), |(_, m)| m);
                let ksql_error = Some(ksql.to_owned());
                Err(Box::new(Failure { ksql_error, ..failure(Kind::NotRefused, message) }))
            }
            (None, Ok(())) => self.check(case),
        }
    }

    /// Creates the case's topics and runs its statements, starting each query.
    fn declare(&mut self, case: &Case) -> Result<(), Refusal> {
        for (topic, partitions) in &case.topics {
            self.create_topic(topic, *partitions, "(topics)")?;
        }
        let mut session = Session::new(FunctionRegistry::new());
        for statement in &case.statements {
            let refusal = |message: String| Refusal { statement: statement.clone(), message };
            let outcomes = session.execute(statement, 1).map_err(|e| refusal(e.to_string()))?;
            for outcome in outcomes {
                self.apply(outcome, statement)?;
            }
        }
        Ok(())
    }

    fn apply(&mut self, outcome: Outcome, statement: &str) -> Result<(), Refusal> {
        match outcome {
            Outcome::Declared(info) => {
                self.note_source(&info);
                self.source_keys.extend(info.key_name().map(str::to_owned));
                self.create_topic(&info.topic, info.partitions, statement)
            }
            Outcome::Query { compiled, .. } => {
                self.note_source(&compiled.target);
                let config = RuntimeConfig::new(self.state.clone());
                let started = compiled.processor.start(self.logs.clone(), config);
                let running = started.map_err(|e| Refusal {
                    statement: statement.to_owned(),
                    message: format!("starting the query failed: {e}"),
                })?;
                self.running.push(running);
                Ok(())
            }
            Outcome::Materialized { compiled, .. } => {
                let info = compiled.target.clone();
                self.source_keys.extend(info.key_name().map(str::to_owned));
                self.create_topic(&info.topic, info.partitions, statement)?;
                self.apply(
                    Outcome::Query { id: String::new(), compiled, replaced: false },
                    statement,
                )
            }
            Outcome::Inserted(r) => {
                let p = r
                    .key
                    .as_ref()
                    .map_or(0, |k| eddy_processor::partition_for_key(k, r.partitions));
                let record = (r.key, r.value, r.timestamp.unwrap_or(0));
                common::produce(&*self.logs, &r.topic, p, &[record], 1);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// What comparing needs to know of a stream or table: its format and key columns.
    fn note_source(&mut self, info: &SourceInfo) {
        let text = !matches!(info.format, ValueFormat::Json);
        self.text_topics.insert(info.topic.clone(), text);
        let mut keys: Vec<String> = info.key_name().map(str::to_owned).into_iter().collect();
        if let Some(m) = &info.materialized {
            keys.extend(m.key_columns.iter().cloned());
        }
        self.key_columns.insert(info.topic.clone(), keys);
    }

    fn create_topic(&self, topic: &str, partitions: u32, statement: &str) -> Result<(), Refusal> {
        if self.logs.partition_count(topic).is_ok() {
            return Ok(());
        }
        self.logs.create_topic(topic, partitions.max(1), false).map_err(|e| Refusal {
            statement: statement.to_owned(),
            message: format!("creating topic {topic} failed: {e}"),
        })
    }

    /// Produces `inputs` one at a time, each processed by every query before the next
    /// (as ksqlDB's test driver does). Records for topics no statement declared are
    /// dropped, as ksqlDB's driver drops records no query reads.
    fn feed(&self, inputs: &[Rec]) -> Result<(), Stall> {
        for rec in inputs {
            let Ok(parts) = self.logs.partition_count(&rec.topic) else { continue };
            let text = self.text_topics.get(&rec.topic).copied().unwrap_or(false);
            let key = key_bytes(&rec.key, rec.window);
            let value = value_bytes(&rec.value, text);
            let p = key.as_ref().map_or(0, |k| eddy_processor::partition_for_key(k, parts));
            let ts = rec.timestamp.unwrap_or(0);
            common::produce(&*self.logs, &rec.topic, p, &[(key, value, ts)], 1);
            self.settle()?;
        }
        self.settle()
    }

    /// Waits until every query processed its input (twice: a query may read another's).
    fn settle(&self) -> Result<(), Stall> {
        for _ in 0..2 {
            for r in &self.running {
                let left = self.deadline.saturating_duration_since(Instant::now());
                match r.wait_caught_up(left) {
                    Ok(()) => {}
                    Err(eddy_processor::Error::Timeout) => return Err(Stall::Timeout),
                    Err(e) => {
                        let panic = take_panic().map(|p| format!(" ({p})")).unwrap_or_default();
                        return Err(Stall::Failed(format!("{e}{panic}")));
                    }
                }
            }
        }
        Ok(())
    }

    /// Compares each topic named in the case's outputs with what eddy wrote to it.
    /// When the output differs by key columns in the value, also what else differs (a
    /// diagnostic for the report: the case fails either way).
    fn check(&self, case: &Case) -> Verdict {
        let mut by_topic: BTreeMap<&str, Vec<&Rec>> = BTreeMap::new();
        for rec in &case.outputs {
            by_topic.entry(&rec.topic).or_default().push(rec);
        }
        let topics: Vec<_> =
            by_topic.into_iter().map(|(name, recs)| (name, recs, self.read(name))).collect();
        let mode = Mode { zero_ts_any: case.inputs.is_empty(), drop_key_columns: false };
        let (primary, aspects) = match compare::outputs(&topics, mode) {
            Ok(lenient) => return Ok(Pass { errors: None, lenient }),
            Err(difference) => difference,
        };
        let beneath =
            aspects.iter().any(|a| a.group == compare::KEYS_IN_VALUE).then(
                || match compare::outputs(&topics, Mode { drop_key_columns: true, ..mode }) {
                    Ok(_) => "nothing (would pass)".to_owned(),
                    Err((p, _)) => p.group,
                },
            );
        let message = format!("output differs: {}", one_line(&primary.detail));
        let group = Some(primary.group);
        Err(Box::new(Failure { group, aspects, beneath, ..failure(Kind::OutputDiffers, message) }))
    }

    fn read(&self, name: &str) -> Topic {
        let partitions = self.logs.partition_count(name).ok();
        Topic {
            partitions,
            text: self.text_topics.get(name).copied().unwrap_or(false),
            key_columns: {
                let mut keys = self.key_columns.get(name).cloned().unwrap_or_default();
                keys.extend(self.source_keys.iter().cloned());
                keys
            },
            records: match partitions {
                Some(_) => common::read_topic(&*self.logs, name),
                None => Vec::new(),
            },
        }
    }

    /// Stops the queries without snapshots. A query that does not stop within a few
    /// seconds is left behind (said on stderr) rather than hanging the run.
    fn stop(&mut self) {
        let running = std::mem::take(&mut self.running);
        if running.is_empty() {
            return;
        }
        let (done, wait) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for r in running {
                let _ = r.abort(); // its failure, if any, was seen while settling
            }
            let _ = done.send(());
        });
        if wait.recv_timeout(Duration::from_secs(5)).is_err() {
            eprintln!("warning: a query did not stop; left running");
        }
    }
}

fn refused(case: &Case, r: Refusal) -> Verdict {
    match &case.expected_error {
        Some(expected) => Ok(Pass { errors: Some((expected.clone(), r.message)), lenient: false }),
        None => {
            let message =
                format!("refused: {} [in: {}]", one_line(&r.message), one_line(&r.statement));
            Err(Box::new(Failure {
                eddy_error: Some(r.message),
                ..failure(Kind::Refused, message)
            }))
        }
    }
}

/// A QTT key as eddy reads keys: text (a string as itself, anything else as JSON); a
/// windowed key as eddy writes them, `{"key", "start", "end"}`.
fn key_bytes(key: &Value, window: Option<(i64, i64)>) -> Option<Vec<u8>> {
    if let Some((start, end)) = window {
        let w = serde_json::json!({"key": key, "start": start, "end": end});
        return Some(w.to_string().into_bytes());
    }
    match key {
        Value::Null => None,
        Value::String(s) => Some(s.as_bytes().to_vec()),
        other => Some(other.to_string().into_bytes()),
    }
}

/// A QTT value: JSON, or for a text topic a string as itself; `null` a tombstone.
fn value_bytes(value: &Value, text: bool) -> Option<Vec<u8>> {
    match value {
        Value::Null => None,
        Value::String(s) if text => Some(s.as_bytes().to_vec()),
        other => Some(other.to_string().into_bytes()),
    }
}

/// `text` on one line, at most 200 characters.
pub fn one_line(text: &str) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(200) {
        Some((at, _)) => format!("{}…", &flat[..at]),
        None => flat,
    }
}
