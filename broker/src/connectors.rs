//! The connector registry: connectors (eddy-connect) defined by `CREATE SOURCE|SINK
//! CONNECTOR` or `eddy connector create`, each run as an [`eddy_connect::Running`] over the
//! broker's topics ([`BrokerLogs`]).
//!
//! `__connectors` (compacted, one partition, fsynced per record) holds two records per
//! connector: key `def/<name>` = its [`ConnectorDef`] as JSON, with `owner` (the principal
//! that created it, whose rights it runs with; absent for the broker's own and for records
//! written before ACLs existed), and key `pos/<name>` = its
//! position (whatever shape its class stores). Drop writes tombstones for both. Opening the
//! broker reads the topic to its end (the last write of a key wins) and starts every connector
//! that is not paused, from its position.
//!
//! Invariants: a definition is durable before its connector starts, and its tombstone is
//! durable only after its thread has stopped (so a dropped connector never writes a position
//! afterwards); a position is written only by its connector's thread (`Positions::store`).
//! A connector owned by a principal reads and writes topics through
//! [`OwnedLogs`](crate::processors::owned::OwnedLogs): what its owner may not do fails it
//! (state FAILED, the refusal as its reason) when it tries.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use eddy_connect::{ConnectError, ConnectorDef, Kind, Positions, Running, Status};
use eddy_protocol::v1;
use eddy_storage::Log;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::BrokerError;
use crate::internal::{append_durable, for_each_record};
use crate::processors::logs::BrokerLogs;
use crate::processors::owned::{OwnedLogs, check_rights};
use crate::security::Principal;
use crate::security::acls::Acls;
use crate::topics::Topics;

/// The internal topic holding connector definitions and positions.
pub const CONNECTORS_TOPIC: &str = "__connectors";

/// Positions, kept in memory and in `__connectors`.
struct Store {
    log: Arc<Log>,
    positions: Mutex<HashMap<String, Value>>,
}

impl Positions for Store {
    fn load(&self, connector: &str) -> Option<Value> {
        self.positions.lock().unwrap_or_else(|p| p.into_inner()).get(connector).cloned()
    }

    fn store(&self, connector: &str, position: &Value) -> Result<(), String> {
        let key = format!("pos/{connector}");
        let value = position.to_string();
        append_durable(&self.log, CONNECTORS_TOPIC, key.as_bytes(), Some(value.as_bytes()))
            .map_err(|e| e.to_string())?;
        let mut map = self.positions.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(connector.to_string(), position.clone());
        Ok(())
    }
}

/// A definition as `__connectors` keeps it: the connector's and its owner.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    def: ConnectorDef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
}

/// A connector: its definition, whose rights it has, and its thread.
struct Live {
    def: ConnectorDef,
    owner: Principal,
    running: Running,
}

/// The broker's connectors.
pub struct Connectors {
    store: Arc<Store>,
    topics: Arc<Topics>,
    acls: Arc<Acls>,
    running: Mutex<BTreeMap<String, Live>>,
}

impl std::fmt::Debug for Connectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connectors").finish_non_exhaustive()
    }
}

/// Names: what a topic name allows, so a connector's name can prefix its topics.
fn check_name(name: &str) -> Result<(), BrokerError> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with("__")
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(BrokerError::InvalidConnector {
            name: name.to_string(),
            reason: "a name is letters, digits, '.', '_' and '-', not starting with __".into(),
        })
    }
}

/// `config` with passwords hidden (options named *password*, and inside connection URLs).
fn redacted(config: &BTreeMap<String, String>) -> HashMap<String, String> {
    let hide_url = |url: &str| {
        let mut out = url.to_string();
        if let Some(i) = out.find("password=") {
            let end = out[i..].find('&').map_or(out.len(), |j| i + j);
            out.replace_range(i + "password=".len()..end, "********");
        }
        if let (Some(scheme), Some(at)) = (out.find("://"), out.rfind('@'))
            && let Some(colon) = out.get(scheme + 3..at).and_then(|auth| auth.find(':'))
        {
            out.replace_range(scheme + 3 + colon + 1..at, "********");
        }
        out
    };
    config
        .iter()
        .map(|(k, v)| {
            let v = if k.contains("password") {
                "********".to_string()
            } else if k.ends_with(".url") {
                hide_url(v)
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect()
}

fn info(def: &ConnectorDef, owner: &Principal, status: Status) -> v1::ConnectorInfo {
    v1::ConnectorInfo {
        owner: owner.owner().unwrap_or_default(),
        name: def.name.clone(),
        kind: def.kind.as_str().to_string(),
        class: def.config.get("connector.class").cloned().unwrap_or_default(),
        state: status.state.as_str().to_string(),
        reason: status.reason.unwrap_or_default(),
        failures: status.failures,
        records: status.records,
        position: status.position.unwrap_or_default(),
        config: redacted(&def.config),
    }
}

impl Connectors {
    /// Reads `__connectors` (partition 0 is `log`); nothing starts until [`Self::start_all`].
    pub fn open(
        log: Arc<Log>,
        topics: Arc<Topics>,
        acls: Arc<Acls>,
    ) -> Result<(Connectors, Vec<(ConnectorDef, Principal)>), BrokerError> {
        let mut defs = BTreeMap::new();
        let mut positions = HashMap::new();
        for_each_record(&log, CONNECTORS_TOPIC, |_, key, value| {
            let key = String::from_utf8_lossy(key.unwrap_or_default()).into_owned();
            if let Some(name) = key.strip_prefix("def/") {
                match value.map(serde_json::from_slice::<Stored>) {
                    Some(Ok(s)) => {
                        let owner = Principal::from_owner(s.owner.as_deref());
                        drop(defs.insert(name.to_string(), (s.def, owner)))
                    }
                    Some(Err(e)) => {
                        tracing::error!(%name, error = %e, "unreadable connector definition: skipped")
                    }
                    None => drop(defs.remove(name)),
                }
            } else if let Some(name) = key.strip_prefix("pos/") {
                match value.map(serde_json::from_slice::<Value>) {
                    Some(Ok(p)) => drop(positions.insert(name.to_string(), p)),
                    Some(Err(e)) => {
                        tracing::error!(%name, error = %e, "unreadable connector position: skipped")
                    }
                    None => drop(positions.remove(name)),
                }
            }
        })?;
        let store = Arc::new(Store { log, positions: Mutex::new(positions) });
        let connectors = Connectors { store, topics, acls, running: Mutex::new(BTreeMap::new()) };
        Ok((connectors, defs.into_values().collect()))
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Live>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts `def` with `owner`'s rights.
    fn run(&self, def: ConnectorDef, owner: Principal) -> Live {
        let logs = BrokerLogs::new(self.topics.clone());
        let access = self.acls.access(owner.clone(), None);
        let running = if access.restricted() {
            let logs = Arc::new(OwnedLogs::new(logs, access, []));
            Running::start(def.clone(), logs, self.store.clone())
        } else {
            Running::start(def.clone(), Arc::new(logs), self.store.clone())
        };
        Live { def, owner, running }
    }

    /// Starts the connectors read at open.
    pub fn start_all(&self, defs: Vec<(ConnectorDef, Principal)>) {
        let mut running = self.lock();
        for (def, owner) in defs {
            tracing::info!(connector = %def.name, paused = def.paused, "starting connector");
            running.insert(def.name.clone(), self.run(def, owner));
        }
    }

    fn write_def(&self, def: &ConnectorDef, owner: &Principal) -> Result<(), BrokerError> {
        let stored = Stored { def: def.clone(), owner: owner.owner() };
        let value = serde_json::to_vec(&stored).map_err(|e| BrokerError::InvalidConnector {
            name: def.name.clone(),
            reason: e.to_string(),
        })?;
        let key = format!("def/{}", def.name);
        append_durable(&self.store.log, CONNECTORS_TOPIC, key.as_bytes(), Some(&value)).map(drop)
    }

    /// Creates and starts a connector owned by `owner`; its options are checked first, and a
    /// sink's topics against the owner's rights (a source's topics are named as it runs: each
    /// write is checked then).
    pub fn create(
        &self,
        name: &str,
        kind: &str,
        config: BTreeMap<String, String>,
        owner: &Principal,
    ) -> Result<v1::ConnectorInfo, BrokerError> {
        check_name(name)?;
        let kind = match kind.to_ascii_lowercase().as_str() {
            "source" => Kind::Source,
            "sink" => Kind::Sink,
            other => {
                return Err(BrokerError::InvalidConnector {
                    name: name.to_string(),
                    reason: format!("kind {other:?}: source or sink"),
                });
            }
        };
        let config = config.into_iter().map(|(k, v)| (k.trim().to_ascii_lowercase(), v)).collect();
        let def = ConnectorDef { name: name.to_string(), kind, config, paused: false };
        let reads = match def.class() {
            Err(e @ (ConnectError::Config { .. } | ConnectError::Url { .. })) => {
                return Err(BrokerError::InvalidConnector {
                    name: name.to_string(),
                    reason: e.to_string(),
                });
            }
            Ok(eddy_connect::Class::PgSink(c)) => vec![c.topic],
            Ok(eddy_connect::Class::FileSink(c)) => c.topics,
            _ => Vec::new(),
        };
        let access = self.acls.access(owner.clone(), None);
        check_rights(&access, &self.topics, &reads, &[])?;
        let mut running = self.lock();
        if running.contains_key(name) {
            return Err(BrokerError::ConnectorExists(name.to_string()));
        }
        self.write_def(&def, owner)?;
        let live = self.run(def, owner.clone());
        let answer = info(&live.def, owner, live.running.status());
        running.insert(name.to_string(), live);
        tracing::info!(connector = %name, "connector created");
        Ok(answer)
    }

    pub fn list(&self) -> Vec<v1::ConnectorInfo> {
        self.lock().values().map(|l| info(&l.def, &l.owner, l.running.status())).collect()
    }

    pub fn status(&self, name: &str) -> Result<v1::ConnectorInfo, BrokerError> {
        let running = self.lock();
        let l = running.get(name).ok_or_else(|| BrokerError::UnknownConnector(name.to_string()))?;
        Ok(info(&l.def, &l.owner, l.running.status()))
    }

    /// Stops the connector, then removes its definition and position.
    pub fn drop_connector(&self, name: &str) -> Result<(), BrokerError> {
        let mut running = self.lock();
        let live =
            running.remove(name).ok_or_else(|| BrokerError::UnknownConnector(name.to_string()))?;
        live.running.stop();
        let log = &self.store.log;
        append_durable(log, CONNECTORS_TOPIC, format!("pos/{name}").as_bytes(), None)?;
        append_durable(log, CONNECTORS_TOPIC, format!("def/{name}").as_bytes(), None)?;
        self.store.positions.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
        tracing::info!(connector = %name, "connector dropped");
        Ok(())
    }

    /// Pauses (stops, keeping its position) or resumes a connector.
    pub fn pause(&self, name: &str, paused: bool) -> Result<v1::ConnectorInfo, BrokerError> {
        let mut running = self.lock();
        let Live { mut def, owner, running: r } =
            running.remove(name).ok_or_else(|| BrokerError::UnknownConnector(name.to_string()))?;
        r.stop();
        def.paused = paused;
        let written = self.write_def(&def, &owner);
        let live = self.run(def, owner);
        let answer = info(&live.def, &live.owner, live.running.status());
        running.insert(name.to_string(), live);
        written.map(|()| answer)
    }

    /// Stops every connector (broker close).
    pub fn shutdown(&self) {
        let all = std::mem::take(&mut *self.lock());
        for (_, live) in all {
            live.running.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden_in_options_and_urls() {
        let config: BTreeMap<String, String> = [
            ("connection.url", "jdbc:postgresql://h:5/db?user=u&password=secret&x=1"),
            ("connection.password", "secret"),
            ("database.url", "postgresql://u:secret@h/db"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let shown = redacted(&config);
        assert!(shown.values().all(|v| !v.contains("secret")), "{shown:?}");
        assert_eq!(
            shown["connection.url"],
            "jdbc:postgresql://h:5/db?user=u&password=********&x=1"
        );
        assert_eq!(shown["database.url"], "postgresql://u:********@h/db");
    }
}
