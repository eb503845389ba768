//! A name's versions after their deploy: replay (a rebuild from offset zero as the next
//! version), rollback (the retired version serves again), drop, and the removal of a stopped
//! version's state and internal topics.

use eddy_protocol::v1;

use super::status::info;
use super::{Processors, Version};
use crate::clock::now_ms;
use crate::error::BrokerError;

impl Processors {
    /// Removes a stopped version's state directory and the internal topics its definition
    /// names (changelogs, repartition topics, journals) — never outputs or a user's topic that
    /// merely shares the prefix.
    pub(super) fn remove_version(&self, v: &Version) {
        let prefix = v.prefix();
        let dir = self.state_dir.join(&prefix);
        if dir.exists()
            && let Err(e) = std::fs::remove_dir_all(&dir)
        {
            tracing::warn!(path = %dir.display(), error = %e, "could not remove processor state");
        }
        let partitions = |t: &str| self.topics.partition_count(t);
        let internal = match v.def.compile(&partitions) {
            Ok(p) => p.internal_topics(),
            Err(e) => {
                tracing::warn!(processor = %v.def.name(), error = %e, "cannot list the version's topics; they stay");
                Vec::new()
            }
        };
        for topic in internal {
            if self.topics.get(&topic).is_ok()
                && let Err(e) = self.topics.delete(&topic)
            {
                tracing::warn!(%topic, error = %e, "could not remove a processor topic");
            }
        }
        tracing::info!(processor = %v.def.name(), version = v.def.version(), "version removed");
    }

    /// Rebuilds the serving logic from offset zero: deploys it again as the next version, which
    /// replays beside the serving one and takes over when caught up (state and topics are per
    /// version, so a rebuild is a version). The rebuild keeps the serving version's owner.
    /// Blocking.
    pub fn replay(&self, name: &str) -> Result<v1::ProcessorInfo, BrokerError> {
        let (text, owner) = {
            let entries = self.lock();
            let e = entries.get(name).ok_or_else(|| BrokerError::UnknownProcessor(name.into()))?;
            (e.serving.def.text_at(e.serving.def.version() + 1)?, e.serving.owner.clone())
        };
        self.deploy(&text, &owner)
    }

    /// Serves the retired version again (it resumes from its state and catches up) and
    /// retires the current one. Blocking.
    pub fn rollback(&self, name: &str) -> Result<v1::ProcessorInfo, BrokerError> {
        let mut entries = self.lock();
        let e = entries.get_mut(name).ok_or_else(|| BrokerError::UnknownProcessor(name.into()))?;
        let Some((mut old, _)) = e.retired.take() else {
            return Err(BrokerError::NoRetiredVersion { name: name.to_string() });
        };
        self.start_version(&mut old, name);
        let current = std::mem::replace(&mut e.serving, old);
        e.retired = Some((current.stopped_copy(), now_ms()));
        if let Some(b) = e.building.take()
            && let Some(r) = b.running
        {
            let _ = r.stop();
        }
        self.write(name, Some(&e.registration()))?;
        e.switches = (e.switches.0 + 1, Some(now_ms()));
        if let Some(r) = current.running {
            let _ = r.stop();
        }
        Ok(info(&self.topics, name, e))
    }

    /// Stops and forgets a processor, removing every version's state and internal topics.
    /// Blocking.
    pub fn drop_processor(&self, name: &str) -> Result<(), BrokerError> {
        let Some(e) = self.lock().remove(name) else {
            return Err(BrokerError::UnknownProcessor(name.to_string()));
        };
        self.write(name, None)?;
        let versions =
            std::iter::once(e.serving).chain(e.building).chain(e.retired.map(|(v, _)| v));
        for mut v in versions {
            if let Some(running) = v.running.take()
                && let Err(err) = running.stop()
            {
                tracing::warn!(processor = %name, error = %err, "processor stopped with an error");
            }
            self.remove_version(&v);
        }
        tracing::info!(processor = %name, "processor dropped");
        Ok(())
    }
}
