//! [`Consumer`]: reads assigned partitions, one long-polling `Fetch` per [`Consumer::poll`].
//!
//! The consumer keeps a position (the next offset wanted) per assigned partition. A poll
//! fetches every assigned partition from its position, splits each partition's bytes into whole
//! batches by their headers, and returns them as [`ConsumedBatch`]es: `Bytes` slices of the
//! response frame, decoded only when the caller iterates records (that is when the body
//! checksum is checked, once). Positions then move to the last returned batch's last offset
//! plus one.
//!
//! Invariants:
//! - A fetch may start mid-batch (the broker returns the batch that *holds* the position), so
//!   records below the position are skipped, and batches wholly below it are dropped: every
//!   record is handed out once, in offset order, per partition.
//! - A poll is all or nothing for positions: if any partition fails (for example
//!   `OFFSET_OUT_OF_RANGE` without [`ConsumerConfig::reset_out_of_range`]), the poll returns
//!   that typed error and no position moves, so nothing is skipped; the caller `seek`s or
//!   `unassign`s the partition and polls again.
//! - A newly assigned partition has no position until the next poll resolves it from
//!   [`ConsumerConfig::start`] (with `ListOffsets`), or until [`Consumer::seek`].
//!
//! - Control batches (transaction markers) are never handed out, and under
//!   [`ConsumerConfig::isolation`] `ReadCommitted` neither are the batches of aborted
//!   transactions (the broker lists them with each partition's answer, and returns nothing at
//!   or past the last stable offset); positions still move past them. Under `ReadUncommitted`
//!   the check is one header bit per batch.
//!
//! Not a group member: assignment is manual. Group membership, commits and heartbeats are a
//! separate layer above this one.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use eddy_protocol::ErrorCode;
use eddy_protocol::v1::{self, request};
use eddy_storage::batch::{BatchHeader, RecordIter};
use eddy_storage::{AbortedTxn, BatchError, BatchView, RecordView};

use crate::admin::{OffsetQuery, list_offsets_as};
use crate::record::ConsumerRecord;
use crate::{ClientError, Transport, expect_body};

/// Where to move a partition's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekTo {
    /// The first offset still stored.
    Earliest,
    /// The end of the log: only records produced from now on.
    Latest,
    /// This exact offset.
    Offset(u64),
    /// The first record at or after this timestamp (ms since the Unix epoch); the end of the
    /// log if every record is older.
    Timestamp(i64),
}

/// How a [`Consumer`] fetches.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Upper bound on record bytes in one fetch response (the broker still returns at least
    /// one batch, however large).
    pub max_bytes: u32,
    /// Upper bound on record bytes per partition in one fetch.
    pub partition_max_bytes: u32,
    /// The broker answers a long poll as soon as this many bytes are available.
    pub min_bytes: u32,
    /// Where a newly assigned partition starts reading.
    pub start: SeekTo,
    /// On `OFFSET_OUT_OF_RANGE` (the position was deleted by retention, or is past the end),
    /// move here and carry on. `None`: the poll fails with the error.
    pub reset_out_of_range: Option<SeekTo>,
    /// What of transactions is read (Kafka's `isolation.level`): `ReadCommitted` skips aborted
    /// transactions and stops at the last stable offset. Control batches are never returned.
    pub isolation: v1::IsolationLevel,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            max_bytes: 16 * 1024 * 1024,
            partition_max_bytes: 4 * 1024 * 1024,
            min_bytes: 1,
            start: SeekTo::Earliest,
            reset_out_of_range: None,
            isolation: v1::IsolationLevel::ReadUncommitted,
        }
    }
}

#[derive(Debug)]
struct TopicState {
    name: Arc<str>,
    /// Position per assigned partition; `None` until resolved.
    positions: BTreeMap<u32, Option<u64>>,
}

/// Reads assigned partitions.
#[derive(Debug)]
pub struct Consumer<T: Transport> {
    transport: T,
    config: ConsumerConfig,
    topics: BTreeMap<String, TopicState>,
    /// Sent with every fetch when the consumer reads for a group member (fencing).
    member: Option<v1::GroupMemberRef>,
    /// The last fetch answer asked the group member to heartbeat at once.
    heartbeat_now: bool,
}

impl<T: Transport> Consumer<T> {
    pub fn new(transport: T, config: ConsumerConfig) -> Self {
        Self { transport, config, topics: BTreeMap::new(), member: None, heartbeat_now: false }
    }

    /// Fetch as this group member: the broker then refuses partitions the member does not own.
    pub(crate) fn set_member(&mut self, member: Option<v1::GroupMemberRef>) {
        self.member = member;
    }

    /// Whether the last fetch asked the group member to heartbeat now (and forgets it).
    pub(crate) fn take_heartbeat_hint(&mut self) -> bool {
        std::mem::take(&mut self.heartbeat_now)
    }

    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Makes `partitions` the assigned partitions of `topic` (replacing its previous set;
    /// empty unassigns the topic). Partitions that stay keep their positions.
    pub fn assign(&mut self, topic: &str, partitions: impl IntoIterator<Item = u32>) {
        let state = self
            .topics
            .entry(topic.to_owned())
            .or_insert_with(|| TopicState { name: Arc::from(topic), positions: BTreeMap::new() });
        let mut positions = BTreeMap::new();
        for p in partitions {
            positions.insert(p, state.positions.get(&p).copied().flatten());
        }
        state.positions = positions;
        if state.positions.is_empty() {
            self.topics.remove(topic);
        }
    }

    /// Stops reading `topic`.
    pub fn unassign(&mut self, topic: &str) {
        self.topics.remove(topic);
    }

    /// The assigned (topic, partition) pairs, sorted.
    pub fn assignment(&self) -> Vec<(String, u32)> {
        self.topics
            .iter()
            .flat_map(|(t, s)| s.positions.keys().map(move |p| (t.clone(), *p)))
            .collect()
    }

    /// The next offset the consumer will read from a partition; `None` when the partition is
    /// not assigned or its position is not resolved yet.
    pub fn position(&self, topic: &str, partition: u32) -> Option<u64> {
        self.topics.get(topic)?.positions.get(&partition).copied().flatten()
    }

    /// Moves an assigned partition's position; returns the new position.
    pub async fn seek(
        &mut self,
        topic: &str,
        partition: u32,
        to: SeekTo,
    ) -> Result<u64, ClientError> {
        if !self.topics.get(topic).is_some_and(|s| s.positions.contains_key(&partition)) {
            return Err(ClientError::NotAssigned { topic: topic.to_owned(), partition });
        }
        let isolation = self.config.isolation;
        let offset = match resolve(&self.transport, topic, &[(partition, to)], isolation).await?[..]
        {
            [(_, offset)] => offset,
            _ => return Err(ClientError::UnexpectedResponse("list_offsets answer count")),
        };
        self.set_position(topic, partition, offset);
        Ok(offset)
    }

    fn set_position(&mut self, topic: &str, partition: u32, offset: u64) {
        if let Some(p) = self.topics.get_mut(topic).and_then(|s| s.positions.get_mut(&partition)) {
            *p = Some(offset);
        }
    }

    /// Fetches from every assigned partition, waiting up to `max_wait` for data. Returns the
    /// batches that hold records at or past each position (empty if nothing arrived in time).
    pub async fn poll(&mut self, max_wait: Duration) -> Result<Vec<ConsumedBatch>, ClientError> {
        self.resolve_positions().await?;
        let fetch = self.fetch_request(max_wait);
        if fetch.topics.is_empty() {
            return Ok(Vec::new());
        }
        let response =
            expect_body!(self.transport.call(request::Body::Fetch(fetch)).await?, Fetch)?;
        self.heartbeat_now |= response.heartbeat_now;
        let mut batches = Vec::new();
        let mut moves = Vec::new();
        let mut resets = Vec::new();
        for topic in response.topics {
            let Some(state) = self.topics.get(&topic.topic) else { continue };
            for result in topic.partitions {
                let Some(&Some(position)) = state.positions.get(&result.partition) else {
                    continue;
                };
                if let Some(error) = result.error.clone()
                    && error.error_code() != ErrorCode::None
                {
                    match (error.error_code(), self.config.reset_out_of_range) {
                        (ErrorCode::OffsetOutOfRange, Some(to)) => {
                            resets.push((Arc::clone(&state.name), result.partition, to));
                            continue;
                        }
                        _ => {
                            let (topic, partition) = (topic.topic.clone(), result.partition);
                            return Err(ClientError::Partition { topic, partition, error });
                        }
                    }
                }
                let part = PartitionData { topic: &state.name, result: &result, position };
                if let Some(next) = part.split(&mut batches)? {
                    moves.push((Arc::clone(&state.name), result.partition, next));
                }
            }
        }
        for (topic, partition, next) in moves {
            self.set_position(&topic, partition, next);
        }
        for (topic, partition, to) in resets {
            let offset = self.seek(&topic, partition, to).await?;
            tracing::info!(%topic, partition, offset, "offset out of range: position reset");
        }
        Ok(batches)
    }

    /// Gives every partition without a position one, from `config.start`.
    async fn resolve_positions(&mut self) -> Result<(), ClientError> {
        let start = self.config.start;
        let mut resolved = Vec::new();
        for (topic, state) in &self.topics {
            let wanted: Vec<(u32, SeekTo)> = state
                .positions
                .iter()
                .filter(|(_, p)| p.is_none())
                .map(|(p, _)| (*p, start))
                .collect();
            if !wanted.is_empty() {
                let isolation = self.config.isolation;
                for (partition, offset) in
                    resolve(&self.transport, topic, &wanted, isolation).await?
                {
                    resolved.push((topic.clone(), partition, offset));
                }
            }
        }
        for (topic, partition, offset) in resolved {
            self.set_position(&topic, partition, offset);
        }
        Ok(())
    }

    fn fetch_request(&self, max_wait: Duration) -> v1::FetchRequest {
        let topics = self
            .topics
            .iter()
            .map(|(topic, state)| v1::FetchTopic {
                topic: topic.clone(),
                partitions: state
                    .positions
                    .iter()
                    .filter_map(|(partition, position)| {
                        Some(v1::FetchPartition {
                            partition: *partition,
                            offset: (*position)?,
                            max_bytes: self.config.partition_max_bytes,
                        })
                    })
                    .collect(),
            })
            .filter(|t| !t.partitions.is_empty())
            .collect();
        v1::FetchRequest {
            max_wait_ms: u32::try_from(max_wait.as_millis()).unwrap_or(u32::MAX),
            min_bytes: self.config.min_bytes,
            max_bytes: self.config.max_bytes,
            topics,
            member: self.member.clone(),
            isolation: self.config.isolation as i32,
        }
    }
}

/// Offsets for `SeekTo`s in one topic, asking the broker only for those that need it.
async fn resolve<T: Transport>(
    transport: &T,
    topic: &str,
    wanted: &[(u32, SeekTo)],
    isolation: v1::IsolationLevel,
) -> Result<Vec<(u32, u64)>, ClientError> {
    let mut out = Vec::with_capacity(wanted.len());
    let mut queries = Vec::new();
    for &(partition, to) in wanted {
        match to {
            SeekTo::Offset(offset) => out.push((partition, offset)),
            SeekTo::Earliest => queries.push((partition, OffsetQuery::Earliest)),
            SeekTo::Latest => queries.push((partition, OffsetQuery::Latest)),
            SeekTo::Timestamp(ts) => queries.push((partition, OffsetQuery::Timestamp(ts))),
        }
    }
    if !queries.is_empty() {
        let listed = list_offsets_as(transport, topic, &queries, isolation).await?;
        out.extend(listed.into_iter().map(|l| (l.partition, l.offset)));
    }
    Ok(out)
}

/// One partition's part of a fetch response.
struct PartitionData<'a> {
    topic: &'a Arc<str>,
    result: &'a v1::FetchPartitionResult,
    position: u64,
}

impl PartitionData<'_> {
    /// Splits the records into batches (pushed to `out`) by their checked headers; returns the
    /// next position if any batch moved it.
    fn split(&self, out: &mut Vec<ConsumedBatch>) -> Result<Option<u64>, ClientError> {
        let mut rest = self.result.records.clone();
        let mut next = None;
        // Empty unless the fetch was read_committed and aborted transactions are in range.
        let aborted: Vec<AbortedTxn> = self
            .result
            .aborted
            .iter()
            .map(|a| AbortedTxn {
                producer_id: a.producer_id,
                first_offset: a.first_offset,
                last_offset: a.last_offset,
                last_stable_offset: 0,
            })
            .collect();
        while !rest.is_empty() {
            let at = next.unwrap_or(self.position);
            let header = BatchHeader::parse(&rest).map_err(|e| self.corrupt(at, e))?;
            let len = header.batch_len as usize;
            if len > rest.len() {
                if next.is_some() {
                    // A cut-off last batch: take it whole next time.
                    break;
                }
                let truncated =
                    BatchError::Truncated { needed: len as u64, available: rest.len() as u64 };
                return Err(self.corrupt(at, truncated));
            }
            let bytes = rest.split_to(len);
            if header.last_offset() < self.position {
                continue;
            }
            next = Some(header.next_offset());
            let hidden =
                header.is_transactional() && eddy_storage::txn::is_hidden(&header, &aborted);
            if header.record_count > 0 && !hidden {
                out.push(ConsumedBatch {
                    topic: Arc::clone(self.topic),
                    partition: self.result.partition,
                    bytes,
                    header,
                    first_wanted: self.position,
                    high_watermark: self.result.high_watermark,
                    area: OnceLock::new(),
                });
            }
        }
        Ok(next)
    }

    fn corrupt(&self, offset: u64, source: BatchError) -> ClientError {
        ClientError::CorruptFetch {
            topic: self.topic.to_string(),
            partition: self.result.partition,
            offset,
            source,
        }
    }
}

/// One fetched record batch of one partition, as bytes; records are decoded on demand.
#[derive(Debug, Clone)]
pub struct ConsumedBatch {
    topic: Arc<str>,
    partition: u32,
    bytes: Bytes,
    header: BatchHeader,
    /// The position the fetch asked for: records below it were handed out before.
    first_wanted: u64,
    high_watermark: u64,
    /// The records area once checked: a slice of `bytes`, or the decompressed records of a
    /// compressed batch (decompressed once, however often the records are read).
    area: OnceLock<Result<Bytes, BatchError>>,
}

impl ConsumedBatch {
    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// The whole batch as stored (header included), e.g. to forward it untouched.
    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The batch header (checked: its own checksum matched).
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    pub fn base_offset(&self) -> u64 {
        self.header.base_offset
    }

    pub fn last_offset(&self) -> u64 {
        self.header.last_offset()
    }

    /// The partition's high watermark when fetched: lag is `high_watermark - (last_offset+1)`.
    pub fn high_watermark(&self) -> u64 {
        self.high_watermark
    }

    /// The batch's records at or after the position it was fetched for, borrowing from the
    /// batch. The first call checks the batch checksum; a mismatch is the first (and last)
    /// item.
    pub fn records(&self) -> Records<'_> {
        Records { batch: self, state: RecordsState::Unchecked }
    }

    /// The records as owned values (slices of the batch's bytes, or of its decompressed
    /// records, with no further copy).
    pub fn to_records(&self) -> Result<Vec<ConsumerRecord>, ClientError> {
        let area = self.checked_area().map_err(|e| self.corrupt(e))?;
        self.records()
            .map(|r| {
                r.map(|view| ConsumerRecord::from_view(&self.topic, self.partition, area, &view))
            })
            .collect()
    }

    /// Checks the batch and returns its records area (see `area`).
    fn checked_area(&self) -> Result<&Bytes, BatchError> {
        let area = self.area.get_or_init(|| {
            let view = BatchView::parse(&self.bytes)?;
            Ok(view.records()?.into_bytes(&self.bytes))
        });
        area.as_ref().map_err(|e| *e)
    }

    fn corrupt(&self, source: BatchError) -> ClientError {
        ClientError::CorruptFetch {
            topic: self.topic.to_string(),
            partition: self.partition,
            offset: self.header.base_offset,
            source,
        }
    }
}

/// Iterator over a [`ConsumedBatch`]'s records; see [`ConsumedBatch::records`].
#[derive(Debug)]
pub struct Records<'a> {
    batch: &'a ConsumedBatch,
    state: RecordsState<'a>,
}

#[derive(Debug)]
enum RecordsState<'a> {
    Unchecked,
    Reading(RecordIter<'a>),
    Done,
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<RecordView<'a>, ClientError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match &mut self.state {
                RecordsState::Unchecked => match self.batch.checked_area() {
                    Ok(area) => {
                        let records = RecordIter::over(area, &self.batch.header);
                        self.state = RecordsState::Reading(records);
                    }
                    Err(e) => {
                        self.state = RecordsState::Done;
                        return Some(Err(self.batch.corrupt(e)));
                    }
                },
                RecordsState::Reading(records) => match records.next()? {
                    Ok(record) if record.offset < self.batch.first_wanted => {}
                    Ok(record) => return Some(Ok(record)),
                    Err(e) => {
                        self.state = RecordsState::Done;
                        return Some(Err(self.batch.corrupt(e)));
                    }
                },
                RecordsState::Done => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests;
