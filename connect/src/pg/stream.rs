//! The CDC source's streaming half: `START_REPLICATION` from the stored LSN, `pgoutput`
//! messages gathered into whole transactions, written in commit order, and the slot confirmed
//! only after what it covers is durable in eddy. [`Writer`] holds completed transactions until
//! they are appended, fsynced and the position stored.
//!
//! Invariants:
//! - The LSN sent as flushed (and stored as the position) is the end LSN of a transaction whose
//!   records, and every earlier one's, are fsynced in their partitions.
//! - After a restart PostgreSQL may send again the transactions after the confirmed LSN, some of
//!   which may already be written (a crash between the fsync and the confirmation). Each
//!   partition's last record's [`POS_HEADER`] says how far it got: a record at or below it is
//!   skipped, so no change is written twice, and none out of commit order.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tokio_postgres::Client;

use super::change::{Captured, Origin, POS_HEADER, commit_ms, pos};
use super::pgoutput::{self, Message, Payload, format_lsn};
use super::wire::ReplConn;
use crate::config::CdcConfig;
use crate::error::ConnectError;
use crate::runtime::Ctx;
use crate::topics::{OutRecord, Output, last_header};

/// Completed transactions' records waiting for one append and fsync.
const PENDING_MAX: usize = 5000;
/// How often the slot hears from us when nothing else happens.
const STATUS_EVERY: Duration = Duration::from_secs(5);

/// Appends records with their positions, skipping what partitions already hold.
#[derive(Debug)]
pub struct Writer {
    out: Output,
    /// (topic, partition) → the position of its last record.
    written: HashMap<(String, u32), String>,
    pending: Vec<(String, OutRecord)>,
}

impl Writer {
    /// Reads the last position of every partition of `tables`' topics.
    pub fn open(
        mut out: Output,
        tables: &[Captured],
        partitions: u32,
    ) -> Result<Writer, ConnectError> {
        let mut written = HashMap::new();
        for t in tables {
            let n = out.ensure_topic(&t.topic, partitions)?;
            for p in 0..n {
                if let Some(h) = last_header(&**out.logs(), &t.topic, p, POS_HEADER)? {
                    written.insert((t.topic.clone(), p), String::from_utf8_lossy(&h).into_owned());
                }
            }
        }
        Ok(Writer { out, written, pending: Vec::new() })
    }

    pub fn ensure_topic(&mut self, topic: &str, partitions: u32) -> Result<(), ConnectError> {
        self.out.ensure_topic(topic, partitions).map(drop)
    }

    /// Queues `rec` at `position`; `dedupe` skips it when its partition already holds it.
    pub fn push(
        &mut self,
        topic: &str,
        mut rec: OutRecord,
        position: String,
        dedupe: bool,
    ) -> Result<(), ConnectError> {
        let p = self.out.partition_of(topic, rec.key.as_deref())?;
        let slot = self.written.entry((topic.to_string(), p)).or_default();
        if dedupe && position.as_str() <= slot.as_str() {
            return Ok(());
        }
        slot.clone_from(&position);
        rec.headers.push((POS_HEADER, position.into_bytes()));
        self.pending.push((topic.to_string(), rec));
        Ok(())
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Appends and fsyncs the queued records; how many.
    pub fn write(&mut self) -> Result<u64, ConnectError> {
        let pending = std::mem::take(&mut self.pending);
        let n = pending.len() as u64;
        let mut run: Vec<OutRecord> = Vec::new();
        let mut topic = String::new();
        for (t, r) in pending {
            if t != topic && !run.is_empty() {
                self.out.append(&topic, &std::mem::take(&mut run))?;
            }
            topic = t;
            run.push(r);
        }
        if !run.is_empty() {
            self.out.append(&topic, &run)?;
        }
        self.out.sync()?;
        Ok(n)
    }

    /// Writes what is queued, then stores `lsn` as the position.
    pub fn commit(&mut self, ctx: &Ctx, lsn: u64, snapshot_done: bool) -> Result<(), ConnectError> {
        let n = self.write()?;
        ctx.add_records(n);
        let position = json!({"lsn": lsn, "snapshot_done": snapshot_done});
        ctx.store_position(&position, format!("LSN {}", format_lsn(lsn)))
    }
}

/// One change: (table index, op, before, after, its WAL position).
type Change = (usize, char, Option<Map<String, Value>>, Option<Map<String, Value>>, u64);

/// A transaction being received.
#[derive(Debug)]
struct Tx {
    xid: u32,
    commit_us: i64,
    /// (table index, op, before, after) in WAL order.
    changes: Vec<Change>,
}

/// The stream's state.
pub struct Streamer<'a> {
    pub c: &'a CdcConfig,
    pub ctx: &'a Ctx,
    pub client: &'a Client,
    pub tables: Vec<Captured>,
    pub writer: Writer,
    relations: HashMap<u32, usize>,
    tx: Option<Tx>,
    /// The end LSN of the last transaction queued in `writer`.
    queued: u64,
    confirmed: u64,
    /// The WAL position of the message being handled.
    lsn: u64,
}

impl std::fmt::Debug for Streamer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streamer").field("confirmed", &self.confirmed).finish_non_exhaustive()
    }
}

fn now_us() -> i64 {
    crate::now_ms() * 1000
}

impl<'a> Streamer<'a> {
    pub fn new(
        c: &'a CdcConfig,
        ctx: &'a Ctx,
        client: &'a Client,
        tables: Vec<Captured>,
        writer: Writer,
    ) -> Self {
        Streamer {
            c,
            ctx,
            client,
            tables,
            writer,
            relations: HashMap::new(),
            tx: None,
            queued: 0,
            confirmed: 0,
            lsn: 0,
        }
    }

    /// Streams from `start` until stopped or failed.
    pub async fn run(mut self, repl: &mut ReplConn, start: u64) -> Result<(), ConnectError> {
        let sql = format!(
            "START_REPLICATION SLOT {} LOGICAL {} (proto_version '1', publication_names '{}')",
            self.c.slot,
            format_lsn(start),
            self.c.publication
        );
        repl.start_copy_both(&sql).await?;
        self.confirmed = start;
        self.queued = start;
        self.ctx.running();
        tracing::info!(connector = %self.ctx.name, lsn = %format_lsn(start), "streaming changes");
        let mut last_status = Instant::now();
        loop {
            let data = match tokio::time::timeout(STATUS_EVERY, repl.copy_data()).await {
                Ok(d) => Some(d?),
                Err(_) => None,
            };
            if let Some(data) = data {
                match pgoutput::payload(data)? {
                    Payload::Keepalive { wal_end, reply } => {
                        // Nothing received is outstanding: everything before wal_end was sent.
                        if self.tx.is_none()
                            && self.writer.pending() == 0
                            && wal_end > self.confirmed
                        {
                            self.confirmed = wal_end;
                        }
                        if reply {
                            last_status = Instant::now() - STATUS_EVERY;
                        }
                    }
                    Payload::XLogData { start, message } => {
                        self.lsn = start;
                        self.message(pgoutput::message(message)?).await?;
                    }
                }
            }
            let full = self.writer.pending() >= PENDING_MAX;
            if self.tx.is_none() && self.writer.pending() > 0 && (full || !repl.has_frame()) {
                self.writer.commit(self.ctx, self.queued, true)?;
                self.confirmed = self.confirmed.max(self.queued);
                last_status = Instant::now() - STATUS_EVERY;
            }
            if last_status.elapsed() >= STATUS_EVERY {
                repl.send_copy(&pgoutput::status_update(self.confirmed, now_us())).await?;
                last_status = Instant::now();
            }
        }
    }

    async fn message(&mut self, m: Message) -> Result<(), ConnectError> {
        match m {
            Message::Begin { xid, commit_us, .. } => {
                self.tx = Some(Tx { xid, commit_us, changes: Vec::new() });
            }
            Message::Relation { id, schema, table, columns } => {
                let i = self.table_index(&schema, &table).await?;
                self.tables[i].set_columns(&columns)?;
                self.relations.insert(id, i);
            }
            Message::Insert { rel, new } => {
                let i = self.rel(rel)?;
                let after = self.tables[i].row(&new, None)?;
                self.change(i, 'c', None, Some(after))?;
            }
            Message::Update { rel, old, new } => {
                let i = self.rel(rel)?;
                let before = old.map(|o| self.tables[i].row(&o, None)).transpose()?;
                let after = self.tables[i].row(&new, before.as_ref())?;
                let t = &self.tables[i];
                let moved = before.as_ref().is_some_and(|b| t.key(b) != t.key(&after));
                if moved {
                    // The key changed: Debezium's delete of the old key, then a create.
                    self.change(i, 'd', before, None)?;
                    self.change(i, 'c', None, Some(after))?;
                } else {
                    self.change(i, 'u', before, Some(after))?;
                }
            }
            Message::Delete { rel, old } => {
                let i = self.rel(rel)?;
                let before = self.tables[i].row(&old, None)?;
                self.change(i, 'd', Some(before), None)?;
            }
            Message::Truncate { rels } => {
                for rel in rels {
                    let i = self.rel(rel)?;
                    self.change(i, 't', None, None)?;
                }
            }
            Message::Commit { end_lsn, .. } => self.commit(end_lsn)?,
            Message::Other => {}
        }
        Ok(())
    }

    fn change(
        &mut self,
        i: usize,
        op: char,
        before: Option<Map<String, Value>>,
        after: Option<Map<String, Value>>,
    ) -> Result<(), ConnectError> {
        let tx = self
            .tx
            .as_mut()
            .ok_or_else(|| ConnectError::Protocol("a change outside a transaction".into()))?;
        tx.changes.push((i, op, before, after, self.lsn));
        Ok(())
    }

    fn rel(&self, rel: u32) -> Result<usize, ConnectError> {
        self.relations.get(&rel).copied().ok_or_else(|| {
            ConnectError::Protocol(format!(
                "a change to relation {rel} before its Relation message"
            ))
        })
    }

    /// The index of `schema.table`, capturing it when it is new (a publication for all tables).
    async fn table_index(&mut self, schema: &str, table: &str) -> Result<usize, ConnectError> {
        if let Some(i) = self.tables.iter().position(|t| t.schema == schema && t.table == table) {
            return Ok(i);
        }
        let t = super::cdc::capture(self.client, self.c, schema, table).await?;
        self.writer.ensure_topic(&t.topic, self.c.topic_partitions)?;
        self.tables.push(t);
        Ok(self.tables.len() - 1)
    }

    /// A transaction committed: its records queued at positions (end LSN, index).
    fn commit(&mut self, end_lsn: u64) -> Result<(), ConnectError> {
        let Some(tx) = self.tx.take() else {
            return Err(ConnectError::Protocol("Commit without Begin".into()));
        };
        let db = self.c.addr.dbname.clone();
        let mut seq = 0u32;
        for (i, op, before, after, lsn) in tx.changes {
            let origin = Origin {
                db: &db,
                prefix: &self.c.topic_prefix,
                xid: Some(tx.xid),
                lsn,
                commit_ms: commit_ms(tx.commit_us),
                snapshot: "false",
            };
            let table = &self.tables[i];
            let topic = table.topic.clone();
            for rec in table.records(op, before, after, origin) {
                self.writer.push(&topic, rec, pos(end_lsn, seq), true)?;
                seq += 1;
            }
        }
        self.queued = end_lsn;
        Ok(())
    }
}
