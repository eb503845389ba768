//! The cluster's processor registry: which version of each processor serves, kept in the
//! compacted topic [`REGISTRY_TOPIC`] (one partition) of the cluster itself, so every instance
//! — and one restarted later — agrees on it.
//!
//! Records (key → JSON value), every key written at most once with one meaning, so compaction
//! (latest per key) never changes what the topic says:
//! - `<name>/serving/v<V>` → `{}`: version V serves from here on. The serving version is the
//!   highest one so recorded (versions only go up).
//! - `<name>/switching/v<V>` → `{}`: version V has caught up; the serving version's instances
//!   stop answering from their tables (they acknowledge, below) and V serves once all did.
//! - `<name>/v<V>/ack/<query address>` → `{}`: the instance of version V at that address no
//!   longer answers from its tables.
//! - `<name>/v<V>/p<P>` → `{"owner": <query address>, "inputs": [[topic, partition, next],
//!   ...]}`: task partition P of version V was at lag 0 with these input positions on the
//!   instance at that address (a later record of the key replaces an earlier one).
//! - `<name>/v<V>/spec` → `{"spec": <text>}`: the spec version V runs (every instance writes
//!   the same text), so `eddy processor verify NAME --kafka` can rebuild the serving logic.
//!
//! Invariant: a [`RegistryView`] applies the records in topic order and only ever moves
//! forward (serving and switching versions only rise), so every instance's view is a prefix of
//! the same history.

use std::collections::{BTreeMap, BTreeSet};

use eddy_processor::{LogAccess, LogError};
use eddy_storage::{BatchBuilder, Batches, Record};
use serde_json::{Value, json};

/// The registry topic. One leading underscore, as Kafka applications name their own internal
/// topics (`_schemas`, `_connect-configs`): brokers may reserve `__` for theirs (eddy does).
pub const REGISTRY_TOPIC: &str = "_eddy_registry";
/// Bytes read per request while catching up with the registry.
const READ_BYTES: usize = 1 << 20;

/// Input positions of a task partition: (topic, partition, next offset to read).
pub type Inputs = Vec<(String, u32, u64)>;

/// Why the registry could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("{REGISTRY_TOPIC} at {offset}: a damaged batch: {source}")]
    Damaged {
        offset: u64,
        #[source]
        source: eddy_storage::BatchError,
    },
    #[error("a registry record does not build: {0}")]
    Build(#[source] eddy_storage::BatchError),
}

/// What the registry says of one processor, as far as it has been read.
#[derive(Debug, Clone, Default)]
pub struct RegistryView {
    name: String,
    next_offset: u64,
    serving: Option<u32>,
    switching: Option<u32>,
    acks: BTreeMap<u32, BTreeSet<String>>,
    progress: BTreeMap<(u32, u32), (String, Inputs)>,
    specs: BTreeMap<u32, String>,
}

impl RegistryView {
    /// A view of processor `name` that has read nothing yet.
    pub fn new(name: &str) -> Self {
        Self { name: name.to_owned(), ..Self::default() }
    }

    /// The serving version (`None`: the name was never deployed).
    pub fn serving(&self) -> Option<u32> {
        self.serving
    }

    /// The version the name is switching to, if one caught up and does not serve yet.
    pub fn switching(&self) -> Option<u32> {
        self.switching.filter(|v| self.serving.is_none_or(|s| *v > s))
    }

    /// The query addresses of version `version`'s instances that stopped answering.
    pub fn acks(&self, version: u32) -> BTreeSet<String> {
        self.acks.get(&version).cloned().unwrap_or_default()
    }

    /// Who last recorded task partition `partition` of `version` at lag 0 (its query
    /// address), and the input positions it recorded.
    pub fn progress(&self, version: u32, partition: u32) -> Option<(&str, &Inputs)> {
        self.progress.get(&(version, partition)).map(|(o, i)| (o.as_str(), i))
    }

    /// The spec text `version` runs, if an instance recorded it.
    pub fn spec(&self, version: u32) -> Option<&str> {
        self.specs.get(&version).map(String::as_str)
    }

    /// Creates the registry topic unless it exists.
    pub fn create(logs: &dyn LogAccess) -> Result<(), RegistryError> {
        Ok(logs.create_topic(REGISTRY_TOPIC, 1, true)?)
    }

    /// Reads what was appended since the last refresh. Returns whether anything changed.
    pub fn refresh(&mut self, logs: &dyn LogAccess) -> Result<bool, RegistryError> {
        let end = logs.end_offset(REGISTRY_TOPIC, 0)?;
        let before = self.next_offset;
        while self.next_offset < end {
            let bytes = logs.read(REGISTRY_TOPIC, 0, self.next_offset, READ_BYTES)?;
            if bytes.is_empty() {
                break;
            }
            let at = self.next_offset;
            for batch in Batches::new(&bytes) {
                let batch =
                    batch.map_err(|source| RegistryError::Damaged { offset: at, source })?;
                let damaged =
                    |source| RegistryError::Damaged { offset: batch.base_offset(), source };
                for r in batch.records().map_err(damaged)?.iter() {
                    let r = r.map_err(damaged)?;
                    if r.offset >= self.next_offset {
                        self.apply(r.key.unwrap_or_default(), r.value.unwrap_or_default());
                    }
                }
                self.next_offset = self.next_offset.max(batch.last_offset() + 1);
            }
            if self.next_offset == at {
                break;
            }
        }
        Ok(self.next_offset != before)
    }

    fn apply(&mut self, key: &[u8], value: &[u8]) {
        let Some(rest) = std::str::from_utf8(key)
            .ok()
            .and_then(|k| k.strip_prefix(self.name.as_str()).and_then(|k| k.strip_prefix('/')))
        else {
            return;
        };
        let version = |v: &str| v.strip_prefix('v').and_then(|v| v.parse::<u32>().ok());
        let parts: Vec<&str> = rest.splitn(3, '/').collect();
        match parts.as_slice() {
            ["serving", v] => {
                if let Some(v) = version(v) {
                    self.serving = Some(self.serving.map_or(v, |s| s.max(v)));
                }
            }
            ["switching", v] => {
                if let Some(v) = version(v) {
                    self.switching = Some(self.switching.map_or(v, |s| s.max(v)));
                }
            }
            [v, "ack", addr] => {
                if let Some(v) = version(v) {
                    self.acks.entry(v).or_default().insert((*addr).to_owned());
                }
            }
            [v, "spec"] => {
                let text = serde_json::from_slice::<Value>(value)
                    .ok()
                    .and_then(|v| v.get("spec").and_then(Value::as_str).map(str::to_owned));
                if let (Some(v), Some(text)) = (version(v), text) {
                    self.specs.insert(v, text);
                }
            }
            [v, p] => {
                let p = p.strip_prefix('p').and_then(|p| p.parse::<u32>().ok());
                if let (Some(v), Some(p), Some(progress)) = (version(v), p, decode_progress(value))
                {
                    self.progress.insert((v, p), progress);
                }
            }
            _ => {}
        }
    }
}

fn decode_progress(value: &[u8]) -> Option<(String, Inputs)> {
    let value: Value = serde_json::from_slice(value).ok()?;
    let owner = value.get("owner")?.as_str()?.to_owned();
    let inputs = value
        .get("inputs")?
        .as_array()?
        .iter()
        .map(|i| {
            let i = i.as_array()?;
            let topic = i.first()?.as_str()?.to_owned();
            let partition = u32::try_from(i.get(1)?.as_u64()?).ok()?;
            Some((topic, partition, i.get(2)?.as_u64()?))
        })
        .collect::<Option<Inputs>>()?;
    Some((owner, inputs))
}

/// Appends one registry record and waits until the cluster holds it.
fn write(logs: &dyn LogAccess, key: &str, value: &Value) -> Result<(), RegistryError> {
    let value = value.to_string();
    let mut builder = BatchBuilder::new();
    builder.push(Record {
        timestamp: 0,
        key: Some(key.as_bytes()),
        value: Some(value.as_bytes()),
        headers: &[],
    });
    let batch = builder.build_valid().map_err(RegistryError::Build)?;
    logs.append(REGISTRY_TOPIC, 0, &batch)?;
    logs.flush(REGISTRY_TOPIC, 0)?;
    Ok(())
}

/// Records that `version` of `name` serves.
pub fn write_serving(logs: &dyn LogAccess, name: &str, version: u32) -> Result<(), RegistryError> {
    write(logs, &format!("{name}/serving/v{version}"), &json!({}))
}

/// Records that `version` of `name` caught up and is switching in.
pub fn write_switching(
    logs: &dyn LogAccess,
    name: &str,
    version: u32,
) -> Result<(), RegistryError> {
    write(logs, &format!("{name}/switching/v{version}"), &json!({}))
}

/// Records that the instance of `version` at `addr` no longer answers from its tables.
pub fn write_ack(
    logs: &dyn LogAccess,
    name: &str,
    version: u32,
    addr: &str,
) -> Result<(), RegistryError> {
    write(logs, &format!("{name}/v{version}/ack/{addr}"), &json!({}))
}

/// Records the spec text `version` of `name` runs.
pub fn write_spec(
    logs: &dyn LogAccess,
    name: &str,
    version: u32,
    text: &str,
) -> Result<(), RegistryError> {
    write(logs, &format!("{name}/v{version}/spec"), &json!({ "spec": text }))
}

/// Records task partition `partition` of `version` at lag 0 with `inputs` on the instance at
/// `owner` (its query address).
pub fn write_progress(
    logs: &dyn LogAccess,
    name: &str,
    version: u32,
    partition: u32,
    owner: &str,
    inputs: &[(String, u32, u64)],
) -> Result<(), RegistryError> {
    let inputs: Vec<Value> = inputs.iter().map(|(t, p, n)| json!([t, p, n])).collect();
    let value = json!({ "owner": owner, "inputs": inputs });
    write(logs, &format!("{name}/v{version}/p{partition}"), &value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_only_moves_forward_and_ignores_other_names() {
        let mut view = RegistryView::new("counts");
        view.apply(b"counts/serving/v2", b"{}");
        view.apply(b"counts/serving/v1", b"{}");
        view.apply(b"counts-other/serving/v9", b"{}");
        view.apply(b"count/serving/v9", b"{}");
        assert_eq!(view.serving(), Some(2));
        view.apply(b"counts/switching/v2", b"{}");
        assert_eq!(view.switching(), None, "a version that serves is not switching");
        view.apply(b"counts/switching/v3", b"{}");
        assert_eq!(view.switching(), Some(3));
        view.apply(b"counts/v2/ack/127.0.0.1:9", b"{}");
        assert_eq!(view.acks(2).into_iter().collect::<Vec<_>>(), vec!["127.0.0.1:9"]);
        view.apply(b"counts/v3/p4", br#"{"owner": "a:1", "inputs": [["access", 4, 17]]}"#);
        view.apply(b"counts/v3/p5", br#"{"owner": "a:1", "inputs": [["access", "x", 17]]}"#);
        view.apply(b"counts/v3/p6", br#"{"inputs": [["access", 6, 17]]}"#);
        let recorded = vec![("access".to_owned(), 4, 17)];
        assert_eq!(view.progress(3, 4), Some(("a:1", &recorded)));
        assert_eq!(view.progress(3, 5), None, "a malformed record is ignored");
        assert_eq!(view.progress(3, 6), None, "a record without its owner is ignored");
        view.apply(b"counts/v3/spec", br#"{"spec": "name = \"counts\""}"#);
        assert_eq!(view.spec(3), Some("name = \"counts\""));
        assert_eq!(view.spec(2), None);
        view.apply(b"counts/serving/vX", b"{}");
        view.apply(b"\xff", b"{}");
        assert_eq!(view.serving(), Some(2));
    }
}
