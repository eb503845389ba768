//! Idempotent producer state: the last few batches of every producer, so a retried batch is
//! answered with its original offsets instead of being written twice.
//!
//! A producer is `(producer_id, epoch)`; each batch carries the sequence number of its first
//! record. Within an epoch, sequences continue without a gap; a newer epoch starts at 0 and
//! fences older ones. Like Kafka, the last [`RETAINED_BATCHES`] batches per producer are kept,
//! matching the number of requests a client may have in flight.
//!
//! The state is derived from the log. Each time a segment is sealed, the state as of the new
//! active segment's base offset is written to `{base}.producers`, and every recovery-point
//! checkpoint carries the state as of its offset in the same encoding. On open the checkpoint's
//! copy is loaded and the batches after the recovery point replayed on top, so the state is
//! exactly what it was after the last batch that survived. Without a usable checkpoint, the
//! snapshot of the active segment is loaded instead and the active segment replayed; without
//! that either, the state is rebuilt by reading every batch header of the log.
//!
//! ```text
//! snapshot file
//!  0 magic "EPRS" | 4 version u8 = 2 | 5 three zero bytes | 8 producer_count u32
//! 12 producers...   producer: id i64 | epoch i16 | txn_first u64 | batch_count u8
//!                             | batch_count x (first_seq i32 | last_seq i32 | base_offset u64 | last_offset u64)
//!  then crc u32: CRC-32 of everything before it
//! ```
//!
//! `txn_first` is the first offset of the producer's open transaction in this partition
//! (`u64::MAX`: none). Version 1 (written before transactions) has no `txn_first` and is still
//! read. Transactions: a transactional batch opens its producer's transaction if none is
//! open; a control batch (a marker, written by the broker) closes it and may raise the
//! producer's epoch (a coordinator fences an old producer by writing with a newer one).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::Path;

use crate::batch::BatchHeader;
use crate::batch::header::{add_sequence, le_u32_at as u32_at, le_u64_at as u64_at};
use crate::error::{Error, Result};
use crate::vfs::FileSystem;

/// Batches remembered per producer for duplicate detection.
pub const RETAINED_BATCHES: usize = 5;
const MAGIC: [u8; 4] = *b"EPRS";
const VERSION: u8 = 2;
/// Snapshots written before transactions: no `txn_first`.
const VERSION_1: u8 = 1;
const NO_TXN: u64 = u64::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchMeta {
    first_seq: i32,
    last_seq: i32,
    base_offset: u64,
    last_offset: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Producer {
    epoch: i16,
    batches: VecDeque<BatchMeta>,
    /// First offset of this producer's open transaction here.
    txn_first: Option<u64>,
}

/// What to do with an incoming idempotent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Append it.
    Append,
    /// Already in the log at these offsets.
    Duplicate { base_offset: u64, last_offset: u64 },
}

/// All producers known to one log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerTable {
    producers: HashMap<i64, Producer>,
    /// (first offset, producer) of every open transaction: the earliest gives the LSO.
    ongoing: BTreeSet<(u64, i64)>,
}

impl ProducerTable {
    /// Decides whether `header`'s batch is new, a duplicate, or out of order.
    pub fn admit(&self, header: &BatchHeader) -> Result<Admit> {
        if !header.is_idempotent() {
            return Ok(Admit::Append);
        }
        if header.is_control() {
            return self.admit_marker(header).map(|()| Admit::Append);
        }
        let (id, epoch, seq) = (header.producer_id, header.producer_epoch, header.base_sequence);
        let out_of_order =
            |expected| Error::OutOfOrderSequence { producer_id: id, epoch, expected, got: seq };
        let Some(known) = self.producers.get(&id) else {
            return if seq == 0 { Ok(Admit::Append) } else { Err(out_of_order(0)) };
        };
        if epoch < known.epoch {
            return Err(Error::ProducerFenced { producer_id: id, epoch, current: known.epoch });
        }
        if epoch > known.epoch {
            return if seq == 0 { Ok(Admit::Append) } else { Err(out_of_order(0)) };
        }
        let last_seq = header.last_sequence();
        if let Some(b) = known.batches.iter().find(|b| b.first_seq == seq && b.last_seq == last_seq)
        {
            return Ok(Admit::Duplicate { base_offset: b.base_offset, last_offset: b.last_offset });
        }
        let expected = known.batches.back().map_or(0, |b| add_sequence(b.last_seq, 1));
        if seq == expected { Ok(Admit::Append) } else { Err(out_of_order(expected)) }
    }

    /// A marker may not carry an epoch older than the producer's (it would un-fence it).
    fn admit_marker(&self, header: &BatchHeader) -> Result<()> {
        match self.producers.get(&header.producer_id) {
            Some(known) if header.producer_epoch < known.epoch => Err(Error::ProducerFenced {
                producer_id: header.producer_id,
                epoch: header.producer_epoch,
                current: known.epoch,
            }),
            _ => Ok(()),
        }
    }

    /// The first offset of the earliest open transaction.
    pub fn first_unstable(&self) -> Option<u64> {
        self.ongoing.first().map(|&(first, _)| first)
    }

    /// What the marker `header` (not yet recorded) ends: the first offset of its producer's
    /// open transaction, and the earliest open transaction's first offset once it is ended.
    pub fn ended_by(&self, header: &BatchHeader) -> Option<(u64, Option<u64>)> {
        let first = self.producers.get(&header.producer_id)?.txn_first?;
        let after = self.ongoing.iter().find(|&&(_, id)| id != header.producer_id).map(|x| x.0);
        Some((first, after))
    }

    /// Records a batch that is now in the log (with its real base offset). For a marker,
    /// returns the first offset of the transaction it ended, if one was open.
    pub fn record(&mut self, header: &BatchHeader) -> Option<u64> {
        if !header.is_idempotent() {
            return None;
        }
        if header.is_control() {
            return self.end_txn(header);
        }
        let meta = BatchMeta {
            first_seq: header.base_sequence,
            last_seq: header.last_sequence(),
            base_offset: header.base_offset,
            last_offset: header.last_offset(),
        };
        let producer = self.producer(header);
        if header.producer_epoch != producer.epoch {
            producer.epoch = header.producer_epoch;
            producer.batches.clear();
        }
        if producer.batches.len() == RETAINED_BATCHES {
            producer.batches.pop_front();
        }
        producer.batches.push_back(meta);
        if header.is_transactional() && producer.txn_first.is_none() {
            producer.txn_first = Some(header.base_offset);
            self.ongoing.insert((header.base_offset, header.producer_id));
        }
        None
    }

    fn producer(&mut self, header: &BatchHeader) -> &mut Producer {
        self.producers.entry(header.producer_id).or_insert_with(|| Producer {
            epoch: header.producer_epoch,
            batches: VecDeque::new(),
            txn_first: None,
        })
    }

    /// A marker: ends the producer's open transaction (its first offset, if one was open) and
    /// raises its epoch to the marker's.
    fn end_txn(&mut self, header: &BatchHeader) -> Option<u64> {
        let producer = self.producer(header);
        if header.producer_epoch > producer.epoch {
            producer.epoch = header.producer_epoch;
            producer.batches.clear();
        }
        let first = producer.txn_first.take()?;
        self.ongoing.remove(&(first, header.producer_id));
        Some(first)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(16 + self.producers.len() * 64);
        buf.extend_from_slice(&MAGIC);
        buf.extend_from_slice(&[VERSION, 0, 0, 0]);
        buf.extend_from_slice(&(self.producers.len() as u32).to_le_bytes());
        let mut ids: Vec<_> = self.producers.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let p = &self.producers[&id];
            buf.extend_from_slice(&id.to_le_bytes());
            buf.extend_from_slice(&p.epoch.to_le_bytes());
            buf.extend_from_slice(&p.txn_first.unwrap_or(NO_TXN).to_le_bytes());
            buf.push(p.batches.len() as u8);
            for b in &p.batches {
                buf.extend_from_slice(&b.first_seq.to_le_bytes());
                buf.extend_from_slice(&b.last_seq.to_le_bytes());
                buf.extend_from_slice(&b.base_offset.to_le_bytes());
                buf.extend_from_slice(&b.last_offset.to_le_bytes());
            }
        }
        let crc = crc32fast::hash(&buf);
        buf.extend_from_slice(&crc.to_le_bytes());
        buf
    }

    /// Reads a snapshot file. `Ok(None)` when it is missing or damaged (the caller rebuilds from
    /// the log); an unknown version is an error rather than a guess.
    pub fn load(fs: &dyn FileSystem, path: &Path) -> Result<Option<Self>> {
        let bytes = match fs.read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("read", path)(e)),
        };
        Self::from_snapshot(&bytes).map_err(|found| Error::UnsupportedFileVersion {
            path: path.to_path_buf(),
            found,
            supported: VERSION,
        })
    }

    /// Parses a snapshot as [`ProducerTable::encode`] writes it: `Ok(None)` if damaged,
    /// `Err(version)` if of an unknown version.
    pub fn from_snapshot(bytes: &[u8]) -> Result<Option<Self>, u8> {
        if bytes.len() < 16 || bytes[..4] != MAGIC {
            return Ok(None);
        }
        let version = bytes[4];
        if version != VERSION && version != VERSION_1 {
            return Err(version);
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32fast::hash(body) != u32_at(crc, 0) {
            return Ok(None);
        }
        Ok(Self::decode(body, version == VERSION))
    }

    fn decode(body: &[u8], with_txn: bool) -> Option<Self> {
        let count = u32_at(body, 8) as usize;
        let mut pos = 12;
        let head_len = if with_txn { 19 } else { 11 };
        let mut producers = HashMap::with_capacity(count.min(body.len() / head_len));
        let mut ongoing = BTreeSet::new();
        for _ in 0..count {
            let head = body.get(pos..pos + head_len)?;
            let id = u64_at(head, 0) as i64;
            let epoch = i16::from_le_bytes([head[8], head[9]]);
            let txn_first = if with_txn { Some(u64_at(head, 10)) } else { None };
            let txn_first = txn_first.filter(|&f| f != NO_TXN);
            let n = head[head_len - 1] as usize;
            pos += head_len;
            let mut batches = VecDeque::with_capacity(n.min(RETAINED_BATCHES));
            for _ in 0..n {
                let b = body.get(pos..pos + 24)?;
                batches.push_back(BatchMeta {
                    first_seq: u32_at(b, 0) as i32,
                    last_seq: u32_at(b, 4) as i32,
                    base_offset: u64_at(b, 8),
                    last_offset: u64_at(b, 16),
                });
                pos += 24;
            }
            if let Some(first) = txn_first {
                ongoing.insert((first, id));
            }
            producers.insert(id, Producer { epoch, batches, txn_first });
        }
        (pos == body.len()).then_some(Self { producers, ongoing })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(id: i64, epoch: i16, seq: i32, base_offset: u64, count: u32) -> BatchHeader {
        BatchHeader {
            base_offset,
            batch_len: 100,
            leader_epoch: 0,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            first_timestamp: 0,
            max_timestamp: 0,
            producer_id: id,
            producer_epoch: epoch,
            base_sequence: seq,
            record_count: count,
        }
    }

    #[test]
    fn sequences_duplicates_and_fencing() {
        let mut t = ProducerTable::default();
        assert_eq!(
            t.admit(&header(1, 0, 3, 0, 1)).unwrap_err().to_string(),
            "producer 1 epoch 0: expected sequence 0, got 3"
        );
        let first = header(1, 0, 0, 10, 5);
        assert_eq!(t.admit(&first).unwrap(), Admit::Append);
        t.record(&first);
        assert_eq!(t.admit(&first).unwrap(), Admit::Duplicate { base_offset: 10, last_offset: 14 });
        assert!(matches!(
            t.admit(&header(1, 0, 6, 0, 1)),
            Err(Error::OutOfOrderSequence { expected: 5, got: 6, .. })
        ));
        let second = header(1, 0, 5, 15, 2);
        assert_eq!(t.admit(&second).unwrap(), Admit::Append);
        t.record(&second);
        let bumped = header(1, 1, 0, 17, 1);
        assert_eq!(t.admit(&bumped).unwrap(), Admit::Append);
        t.record(&bumped);
        assert!(matches!(
            t.admit(&header(1, 0, 7, 0, 1)),
            Err(Error::ProducerFenced { current: 1, .. })
        ));
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut t = ProducerTable::default();
        for i in 0..7 {
            t.record(&header(9, 0, i, i as u64, 1));
        }
        assert!(matches!(
            t.admit(&header(9, 0, 1, 0, 1)),
            Err(Error::OutOfOrderSequence { expected: 7, .. })
        ));
        assert_eq!(
            t.admit(&header(9, 0, 2, 0, 1)).unwrap(),
            Admit::Duplicate { base_offset: 2, last_offset: 2 }
        );
    }

    #[test]
    fn snapshot_round_trips_and_rejects_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.producers");
        let mut t = ProducerTable::default();
        for id in 0..20 {
            for s in 0..(id % 7) {
                t.record(&header(id, (id % 3) as i16, s as i32, (id * 100 + s) as u64, 1));
            }
        }
        std::fs::write(&path, t.encode()).unwrap();
        assert_eq!(ProducerTable::load(&crate::vfs::OsFs, &path).unwrap(), Some(t.clone()));
        let mut bytes = t.encode();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(ProducerTable::load(&crate::vfs::OsFs, &path).unwrap(), None);
        assert_eq!(
            ProducerTable::load(&crate::vfs::OsFs, &dir.path().join("missing")).unwrap(),
            None
        );
    }
}
