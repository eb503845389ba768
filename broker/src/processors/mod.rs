//! Processors inside the broker: deployed from spec files, kept in the compacted internal topic
//! `__processors` (one record per processor, its spec; a tombstone when dropped), started when
//! the broker opens, and run over the broker's own topics through [`logs::BrokerLogs`].
//!
//! - [`spec`]: the spec format and its compiler to the processor builder.
//! - [`logs`]: `LogAccess` over the broker's topics, with a wake-up on every append.
//!
//! Invariants:
//! - A processor is registered (its record appended and, under the topic's flush policy, made
//!   durable) only once it has started; a spec that does not compile or start is refused and
//!   leaves nothing behind but the error.
//! - Each processor's state lives in `DATA/processors/<name>-<version>/`; its internal topics
//!   are named `<name>-<version>-…`. Dropping a processor stops it, writes the tombstone, then
//!   removes both; its output topics stay.
//! - A registered processor that fails to start after a restart stays registered and reports
//!   "failed" with the reason; the broker itself still opens.

pub mod logs;
pub mod spec;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use eddy_processor::{RunningProcessor, RuntimeConfig};
use eddy_protocol::v1;
use eddy_storage::{BatchBuilder, Batches, Log, Record};
use serde::{Deserialize, Serialize};

use self::logs::BrokerLogs;
use self::spec::Spec;
use crate::broker::{Broker, now_ms};
use crate::error::BrokerError;

/// The internal topic holding every deployed processor's spec.
pub const PROCESSORS_TOPIC: &str = "__processors";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Registration {
    spec: String,
    deployed_ms: i64,
}

struct Deployed {
    spec: Spec,
    text: String,
    running: Option<RunningProcessor>,
    error: Option<String>,
}

/// The processors of one broker.
pub struct Processors {
    deployed: Mutex<BTreeMap<String, Deployed>>,
    log: Arc<Log>,
    state_dir: PathBuf,
}

impl std::fmt::Debug for Processors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processors").field("state_dir", &self.state_dir).finish_non_exhaustive()
    }
}

fn storage(source: eddy_storage::Error) -> BrokerError {
    BrokerError::Storage { topic: PROCESSORS_TOPIC.into(), partition: 0, source }
}

impl Processors {
    /// Reads the registrations from `log`; nothing starts until [`Processors::start_all`].
    pub fn open(log: Arc<Log>, state_dir: PathBuf) -> Result<Processors, BrokerError> {
        let mut deployed = BTreeMap::new();
        let (mut at, end) = (log.start_offset(), log.next_offset());
        while at < end {
            let bytes = log.read(at, 1 << 20).map_err(storage)?;
            let before = at;
            for batch in Batches::new(&bytes) {
                let batch = batch.map_err(|e| storage(e.into()))?;
                for record in batch.records() {
                    let record = record.map_err(|e| storage(e.into()))?;
                    if record.offset < at {
                        continue;
                    }
                    let name = String::from_utf8_lossy(record.key.unwrap_or_default()).into_owned();
                    let parsed = record
                        .value
                        .map(|v| serde_json::from_slice::<Registration>(v).map(|r| r.spec));
                    match parsed {
                        None => {
                            deployed.remove(&name);
                        }
                        Some(Ok(text)) => match Spec::parse(&text) {
                            Ok(spec) => {
                                deployed.insert(
                                    name,
                                    Deployed { spec, text, running: None, error: None },
                                );
                            }
                            Err(e) => {
                                tracing::warn!(processor = %name, error = %e, "stored spec does not parse; skipped")
                            }
                        },
                        Some(Err(e)) => {
                            tracing::warn!(processor = %name, error = %e, "stored registration does not parse; skipped")
                        }
                    }
                }
                at = at.max(batch.last_offset() + 1);
            }
            if at == before {
                break;
            }
        }
        Ok(Processors { deployed: Mutex::new(deployed), log, state_dir })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Deployed>> {
        self.deployed.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn start(&self, broker: &Broker, spec: &Spec) -> Result<RunningProcessor, BrokerError> {
        let partitions = |t: &str| broker.topic(t).ok().map(|t| t.partitions.len() as u32);
        let processor = spec.compile(&partitions)?;
        let mut config = RuntimeConfig::new(&self.state_dir);
        config.threads = spec.threads.unwrap_or(1).clamp(1, 16);
        processor.start(Arc::new(BrokerLogs::new(broker.clone())), config).map_err(|e| {
            BrokerError::InvalidSpec(format!("processor {:?} did not start: {e}", spec.name))
        })
    }

    /// Starts every registered processor; one that fails is reported, not fatal.
    pub fn start_all(&self, broker: &Broker) {
        let mut deployed = self.lock();
        for (name, d) in deployed.iter_mut() {
            match self.start(broker, &d.spec) {
                Ok(running) => {
                    tracing::info!(processor = %name, version = d.spec.version, "processor resumed");
                    d.running = Some(running);
                }
                Err(e) => {
                    tracing::error!(processor = %name, error = %e, "processor failed to start");
                    d.error = Some(e.to_string());
                }
            }
        }
    }

    /// Compiles, starts and registers a processor. Blocking (it waits for its tasks to open).
    pub fn deploy(&self, broker: &Broker, text: &str) -> Result<v1::ProcessorInfo, BrokerError> {
        let spec = Spec::parse(text)?;
        if self.lock().contains_key(&spec.name) {
            return Err(BrokerError::ProcessorExists(spec.name));
        }
        let running = self.start(broker, &spec)?;
        let registration = Registration { spec: text.to_string(), deployed_ms: now_ms() };
        let value = serde_json::to_vec(&registration).unwrap_or_default();
        if let Err(e) = self.write(&spec.name, Some(&value)) {
            let _ = running.stop();
            return Err(e);
        }
        let name = spec.name.clone();
        let mut deployed = self.lock();
        deployed.insert(
            name.clone(),
            Deployed { spec, text: text.to_string(), running: Some(running), error: None },
        );
        tracing::info!(processor = %name, "processor deployed");
        Ok(info(broker, &name, &deployed[&name]))
    }

    fn write(&self, name: &str, value: Option<&[u8]>) -> Result<(), BrokerError> {
        let mut b = BatchBuilder::new();
        b.push(Record { timestamp: now_ms(), key: Some(name.as_bytes()), value, headers: &[] });
        let batch = b.build_valid().map_err(|e| storage(e.into()))?;
        let appended = self.log.append_valid(&batch).map_err(storage)?;
        // Registrations are rare; make each durable whatever the topic's policy.
        self.log.sync_through(appended.last_offset + 1).map_err(storage)
    }

    /// Stops and forgets a processor, removing its state and internal topics. Blocking.
    pub fn drop_processor(&self, broker: &Broker, name: &str) -> Result<(), BrokerError> {
        let Some(d) = self.lock().remove(name) else {
            return Err(BrokerError::UnknownProcessor(name.to_string()));
        };
        if let Some(running) = d.running
            && let Err(e) = running.stop()
        {
            tracing::warn!(processor = %name, error = %e, "processor stopped with an error");
        }
        self.write(name, None)?;
        let prefix = format!("{}-{}", d.spec.name, d.spec.version);
        let dir = self.state_dir.join(&prefix);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(BrokerError::io("remove", &dir))?;
        }
        let outputs = d.spec.outputs();
        for topic in broker.topic_names() {
            if topic.starts_with(&format!("{prefix}-")) && !outputs.contains(&topic) {
                broker.delete_topic(&topic)?;
            }
        }
        tracing::info!(processor = %name, "processor dropped");
        Ok(())
    }

    pub fn list(&self, broker: &Broker) -> Vec<v1::ProcessorInfo> {
        let deployed = self.lock();
        deployed.iter().map(|(name, d)| info(broker, name, d)).collect()
    }

    pub fn status(&self, broker: &Broker, name: &str) -> Result<v1::ProcessorInfo, BrokerError> {
        let deployed = self.lock();
        let d =
            deployed.get(name).ok_or_else(|| BrokerError::UnknownProcessor(name.to_string()))?;
        Ok(info(broker, name, d))
    }

    /// Stops every processor, each writing a final snapshot.
    pub fn stop_all(&self) {
        let mut deployed = self.lock();
        for (name, d) in deployed.iter_mut() {
            if let Some(running) = d.running.take()
                && let Err(e) = running.stop()
            {
                tracing::warn!(processor = %name, error = %e, "processor stopped with an error");
            }
        }
    }
}

fn info(broker: &Broker, name: &str, d: &Deployed) -> v1::ProcessorInfo {
    let mut tasks = Vec::new();
    let mut lag = 0u64;
    let mut tables = Vec::new();
    let mut error = d.error.clone();
    if let Some(running) = &d.running {
        tables = running.processor().tables();
        for (id, status) in running.status() {
            let inputs: Vec<v1::ProcessorInput> = status
                .inputs
                .iter()
                .map(|(topic, partition, position)| {
                    let end = broker
                        .topic(topic)
                        .ok()
                        .and_then(|t| {
                            t.partitions.get(*partition as usize).map(|l| l.next_offset())
                        })
                        .unwrap_or(*position);
                    lag += end.saturating_sub(*position);
                    v1::ProcessorInput {
                        topic: topic.clone(),
                        partition: *partition,
                        position: *position,
                        end_offset: end,
                    }
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
    let failed = error.is_some() || d.running.is_none();
    v1::ProcessorInfo {
        name: name.to_string(),
        version: d.spec.version,
        state: if failed { "failed" } else { "running" }.to_string(),
        error: error.unwrap_or_default(),
        sources: std::iter::once(d.spec.source.topic.clone())
            .chain(d.spec.tables.iter().map(|t| t.topic.clone()))
            .collect(),
        tables,
        outputs: d.spec.outputs(),
        tasks,
        lag,
        spec: d.text.clone(),
    }
}
