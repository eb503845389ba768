//! What metrics and the console read of the processors beyond `status`: how often each name
//! switched its serving version and when it last did, how old each version's snapshots are,
//! and whether every registered version is running (readiness).
//!
//! Read-only over the registry: one lock of the entries, like `list`; snapshot ages come from
//! the snapshot files' modification times in the version's state directory
//! (`DATA/processors/<name>-<version>/task-<sub>-<partition>.snap`), so nothing on a
//! processor's own path is measured or changed.

use std::path::Path;
use std::time::SystemTime;

use eddy_protocol::v1;

use super::status::info;
use super::{Processors, Version};

/// One processor name as metrics and the console see it.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The status, as `ProcessorStatus` answers it (the building version inside).
    pub info: v1::ProcessorInfo,
    /// Switches of the serving version since the broker started (caught up, or rolled back).
    pub switchovers: u64,
    /// When the last switch happened (wall-clock ms), if one did since the broker started.
    pub last_switch_ms: Option<i64>,
    /// Age of the oldest task snapshot of the serving version (none written yet: `None`).
    pub snapshot_age_ms: Option<u64>,
    /// The same for the building version.
    pub building_snapshot_age_ms: Option<u64>,
}

impl Processors {
    /// Every processor name, with what `status` gives and more.
    pub fn observe(&self) -> Vec<Observed> {
        let entries = self.lock();
        entries
            .iter()
            .map(|(name, e)| Observed {
                info: info(&self.topics, name, e),
                switchovers: e.switches.0,
                last_switch_ms: e.switches.1,
                snapshot_age_ms: snapshot_age_ms(&self.state_dir, &e.serving),
                building_snapshot_age_ms: e
                    .building
                    .as_ref()
                    .and_then(|b| snapshot_age_ms(&self.state_dir, b)),
            })
            .collect()
    }

    /// Versions (serving or building) that are not running, with why: empty when every
    /// registered processor has started.
    pub fn not_running(&self) -> Vec<String> {
        let entries = self.lock();
        let mut out = Vec::new();
        for (name, e) in entries.iter() {
            for v in std::iter::once(&e.serving).chain(e.building.as_ref()) {
                let failure = match &v.running {
                    None => Some(v.error.clone().unwrap_or_else(|| "not started".into())),
                    Some(r) => r.failure(),
                };
                if let Some(why) = failure {
                    out.push(format!("{name} version {}: {why}", v.def.version()));
                }
            }
        }
        out
    }
}

/// Age of the oldest `.snap` file in the version's state directory.
fn snapshot_age_ms(state_dir: &Path, v: &Version) -> Option<u64> {
    let dir = state_dir.join(v.prefix());
    let now = SystemTime::now();
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|f| f.path().extension().is_some_and(|x| x == "snap"))
        .filter_map(|f| f.metadata().ok()?.modified().ok())
        .map(|at| now.duration_since(at).map_or(0, |d| d.as_millis() as u64))
        .max()
}
