//! One partition's seeded workload: appends at every ack level (plain, idempotent and
//! transactional batches, retries, markers), rolls, retention or compaction, checkpoints and
//! flushes — each result recorded in the partition's [`Model`].

use std::path::PathBuf;

use bytes::Bytes;

use super::model::{Model, Present, Rec, Violation, records_of};
use crate::batch::{BatchBuilder, BatchView, Header, Record, ValidBatch};
use crate::config::{Cleanup, Flush, LogConfig};
use crate::log::Log;
use crate::txn::{ControlType, Marker};
use crate::vfs::sim::SimRng;

/// An idempotent producer writing to the partition.
#[derive(Debug, Clone)]
struct Producer {
    id: i64,
    epoch: i16,
    next_seq: i32,
    in_txn: bool,
    /// Its last batch that reached the log, to retry.
    last: Option<Bytes>,
}

/// A partition under test: where it lives, how it is configured, and its model.
#[derive(Debug)]
pub struct Partition {
    pub dir: PathBuf,
    pub config: LogConfig,
    pub model: Model,
    producers: Vec<Producer>,
    transactions: bool,
    keys: u64,
    ts: i64,
}

impl Partition {
    /// A data partition (`internal` false: any flush policy, retention or compaction,
    /// transactions) or an internal topic like `__consumer_offsets` (compacted, `flush = os`,
    /// every append fsynced before it is acknowledged, as the broker's `append_durable`).
    pub fn random(dir: PathBuf, internal: bool, rng: &mut SimRng) -> Self {
        let flush = match rng.below(3) {
            0 => Flush::Always,
            1 => Flush::Interval(std::time::Duration::from_millis(1 + rng.below(5))),
            _ => Flush::Os,
        };
        let compact = internal || rng.chance(1, 3);
        let config = LogConfig {
            segment_bytes: rng.between(1024, 6144),
            index_interval_bytes: rng.between(32, 700) as u32,
            flush: if internal { Flush::Os } else { flush },
            cleanup: if compact { Cleanup::Compact } else { Cleanup::Delete },
            retention_ms: None,
            retention_bytes: (!compact).then(|| rng.between(2048, 12_000)),
            delete_retention_ms: rng.between(0, 50) as i64,
            ..LogConfig::default()
        };
        let producers = (0..2)
            .map(|i| Producer { id: 1000 + i, epoch: 0, next_seq: 0, in_txn: false, last: None })
            .collect();
        Self {
            dir,
            config,
            model: Model { compacted: compact, ..Model::default() },
            producers,
            transactions: !compact && !internal,
            keys: if internal { 6 } else { 1 + rng.below(12) },
            ts: 1_700_000_000_000,
        }
    }

    fn always(&self) -> bool {
        self.config.flush == Flush::Always
    }

    /// Runs one random operation against `log`. `Err` only for a broken invariant.
    pub fn step(&mut self, log: &Log, rng: &mut SimRng) -> Result<(), Violation> {
        self.ts += rng.between(0, 20) as i64;
        let op = rng.below(100);
        tracing::debug!(dir = %self.dir.display(), op, end = log.next_offset(), durable = self.model.durable, "step");
        match op {
            0..50 => self.append(log, rng),
            50..56 => self.retry(log, rng),
            56..63 => self.marker(log, rng),
            63..70 => {
                let _ = log.roll();
                Ok(())
            }
            70..77 => self.clean(log),
            77..83 => self.sync(log, |l| l.checkpoint()),
            83..89 => self.sync(log, Log::flush),
            _ => {
                let end = log.next_offset();
                self.sync(log, |l| l.sync_through(end))
            }
        }
    }

    /// Notes that a segment fsync failed: no durability may be acknowledged past this.
    pub fn fsync_failed(&mut self) {
        self.model.poisoned_at.get_or_insert(self.model.durable);
    }

    fn sync(
        &mut self,
        log: &Log,
        f: impl FnOnce(&Log) -> crate::Result<()>,
    ) -> Result<(), Violation> {
        let end = log.next_offset();
        match f(log) {
            Ok(()) => self.model.ack_durable(end),
            Err(_) => Ok(()),
        }
    }

    fn clean(&mut self, log: &Log) -> Result<(), Violation> {
        let now = self.ts + 100;
        if self.model.compacted {
            let _ = log.compact(now);
        } else {
            let _ = log.enforce_retention(now);
            self.model.retention_ran = true;
        }
        self.model.start_floor = self.model.start_floor.max(log.start_offset());
        Ok(())
    }

    fn records(&mut self, rng: &mut SimRng) -> Vec<Rec> {
        (0..rng.between(1, 4))
            .map(|i| {
                let keyed = self.model.compacted || rng.chance(2, 3);
                let tombstone = self.model.compacted && rng.chance(1, 8);
                let fill = rng.below(256) as u8;
                let headers = if rng.chance(1, 5) {
                    vec![(b"h".to_vec(), Some(vec![fill; 3]))]
                } else {
                    Vec::new()
                };
                Rec {
                    timestamp: self.ts + i as i64,
                    key: keyed.then(|| format!("k{}", rng.below(self.keys)).into_bytes()),
                    value: (!tombstone).then(|| vec![fill; rng.below(220) as usize]),
                    headers,
                }
            })
            .collect()
    }

    fn append(&mut self, log: &Log, rng: &mut SimRng) -> Result<(), Violation> {
        let records = self.records(rng);
        let who = rng.below(self.producers.len() as u64 + 1) as usize;
        let mut builder = BatchBuilder::new();
        let mut txn = false;
        if let Some(p) = self.producers.get(who) {
            builder = builder.producer(p.id, p.epoch, p.next_seq);
            if self.transactions && (p.in_txn || rng.chance(1, 3)) {
                builder = builder.transactional();
                txn = true;
            }
        }
        for r in &records {
            let headers: Vec<Header<'_>> =
                r.headers.iter().map(|(k, v)| Header { key: k, value: v.as_deref() }).collect();
            builder.push(Record {
                timestamp: r.timestamp,
                key: r.key.as_deref(),
                value: r.value.as_deref(),
                headers: &headers,
            });
        }
        let bytes = builder.build();
        let Ok(valid) = ValidBatch::check_transactional(bytes.clone()) else {
            return Err(Violation("the workload built an invalid batch".into()));
        };
        let durable_ack = self.always() || rng.chance(1, 2);
        let base = log.next_offset();
        let producer_id = valid.header().producer_id;
        let n = records.len();
        let records = (base..).zip(records).collect();
        let written =
            super::model::Written { base, bytes, records, producer_id, transactional: txn };
        let result = log.append_valid(&valid);
        tracing::debug!(base, producer_id, txn, n, ok = result.is_ok(), "append");
        let info = match result {
            Ok(info) => info,
            Err(_) => {
                self.model.attempts.push(written);
                return Ok(());
            }
        };
        if info.duplicate || info.base_offset != base {
            return Err(Violation(format!(
                "a new batch appended at {} (duplicate {}), the end was {base}",
                info.base_offset, info.duplicate
            )));
        }
        if let Some(p) = self.producers.get_mut(who) {
            p.next_seq = p.next_seq.wrapping_add(n as i32);
            p.in_txn |= txn;
            p.last = Some(written.bytes.clone());
        }
        self.model.acked.insert(base, written);
        let end = info.last_offset + 1;
        // Under `Always` the append returned once durable; otherwise ask, as `acks = durable`.
        if durable_ack && (self.always() || log.sync_through(end).is_ok()) {
            self.model.ack_durable(end)?;
        }
        Ok(())
    }

    /// Whether an append after a failed segment fsync was accepted (it must not be).
    pub fn accepted_after_poison(&self, log: &Log) -> Result<(), Violation> {
        if self.model.poisoned_at.is_some() && log.append(&BatchBuilder::new().finish()).is_ok() {
            return Err(Violation("the log accepted an append after a failed fsync".into()));
        }
        Ok(())
    }

    fn retry(&mut self, log: &Log, rng: &mut SimRng) -> Result<(), Violation> {
        let i = rng.below(self.producers.len() as u64) as usize;
        let Some(last) = self.producers[i].last.clone() else { return Ok(()) };
        if self.model.compacted {
            return Ok(());
        }
        let Ok(valid) = ValidBatch::check_transactional(last.clone()) else {
            return Err(Violation("a stored batch no longer validates".into()));
        };
        match log.append_valid(&valid) {
            Ok(info) if !info.duplicate => Err(Violation(format!(
                "a retried batch of producer {} was written again at {}",
                valid.header().producer_id,
                info.base_offset
            ))),
            Ok(_) | Err(_) => Ok(()),
        }
    }

    fn marker(&mut self, log: &Log, rng: &mut SimRng) -> Result<(), Violation> {
        let Some(i) = self.producers.iter().position(|p| p.in_txn) else {
            return self.append(log, rng);
        };
        let p = &self.producers[i];
        let kind = if rng.chance(1, 2) { ControlType::Abort } else { ControlType::Commit };
        let marker = Marker {
            producer_id: p.id,
            producer_epoch: p.epoch,
            kind,
            coordinator_epoch: 0,
            timestamp: self.ts,
        };
        let bytes = marker.batch().into_bytes();
        let base = log.next_offset();
        let records = records_of(&bytes)?.into_iter().map(|(o, r)| (base + o, r)).collect();
        let written =
            super::model::Written { base, bytes, records, producer_id: p.id, transactional: true };
        let result = log.append_marker(&marker);
        tracing::debug!(base, producer_id = p.id, ?kind, ok = result.is_ok(), "marker");
        match result {
            Ok(info) => {
                self.producers[i].in_txn = false;
                self.model.acked.insert(base, written);
                if self.always() {
                    self.model.ack_durable(info.last_offset + 1)?;
                }
                Ok(())
            }
            Err(_) => {
                self.model.attempts.push(written);
                Ok(())
            }
        }
    }

    /// After a reopen: what survived is the new truth (all of it on disk), the producers
    /// continue from their last surviving batch, and each such batch, retried, is recognised
    /// as a duplicate at its offsets.
    pub fn recovered(&mut self, log: &Log, present: Vec<Present>) -> Result<(), Violation> {
        let mut acked = std::collections::BTreeMap::new();
        for p in &mut self.producers {
            p.in_txn = false;
            p.last = None;
        }
        for batch in present {
            let view = BatchView::parse(&batch.bytes).map_err(|e| Violation(e.to_string()))?;
            let h = *view.header();
            if let Some(p) = self.producers.iter_mut().find(|p| p.id == h.producer_id) {
                if h.is_control() {
                    p.in_txn = false;
                } else {
                    p.next_seq = h.last_sequence().wrapping_add(1);
                    p.in_txn |= h.is_transactional();
                    p.last = Some(batch.bytes.clone());
                }
            }
            let records = records_of(&batch.bytes)?;
            let written = super::model::Written {
                base: batch.base,
                bytes: batch.bytes,
                records,
                producer_id: h.producer_id,
                transactional: h.is_transactional(),
            };
            acked.insert(batch.base, written);
        }
        self.model.acked = acked;
        self.model.attempts.clear();
        self.model.durable = log.next_offset();
        self.model.start_floor = log.start_offset();
        self.model.poisoned_at = None;
        self.check_duplicates(log)
    }

    fn check_duplicates(&self, log: &Log) -> Result<(), Violation> {
        if self.model.compacted {
            return Ok(());
        }
        for p in &self.producers {
            let Some(last) = &p.last else { continue };
            let base = BatchView::parse(last).map(|v| v.base_offset()).unwrap_or(u64::MAX);
            let Ok(valid) = ValidBatch::check_transactional(last.clone()) else { continue };
            match log.append_valid(&valid) {
                Ok(info) if info.duplicate && info.base_offset == base => {}
                other => {
                    return Err(Violation(format!(
                        "after recovery, producer {}'s last batch (at {base}) retried gave {other:?}, not a duplicate",
                        p.id
                    )));
                }
            }
        }
        Ok(())
    }
}
