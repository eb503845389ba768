//! The recovery point: `recovery-point.checkpoint`, the place in the log below which everything
//! is known to be on stable storage, with what recovery needs to resume checking there rather
//! than at the start of the active segment (Kafka's recovery-point-offset-checkpoint).
//!
//! A checkpoint names a segment and a byte position in it (the end of a whole batch) and carries
//! the state the log had at that position: the offset there, the segment's first and largest
//! timestamps, how many entries of the segment's index files precede it and their CRC, and the
//! idempotent producers as a snapshot in the `.producers` encoding. Invariants when one is
//! written:
//! - every segment below the named one, and the named one up to the position, is fsynced, and
//!   so are their directory entries;
//! - the counted index entries are in the segment's index files, fsynced.
//!
//! It is replaced atomically (temporary file, fsync, rename, directory fsync), and never by one
//! that lies before it. It may lag far behind the durable offset: a stale checkpoint costs only a
//! longer scan at open. Open validates it (CRC, and against the files it names) and falls back
//! to checking the whole active segment when it is missing or does not hold.
//!
//! ```text
//!   0 magic "ERPT" | 4 version u8 = 1 | 5 three zero bytes
//!   8 segment_base u64      the segment the point is in
//!  16 position u64          byte position in that segment's .log
//!  24 next_offset u64       the recovery point: the offset of the batch at `position`
//!  32 max_timestamp i64     largest timestamp in the segment below `position` (i64::MIN: none)
//!  40 first_timestamp i64   max timestamp of the segment's first batch (rolling by age)
//!  48 flags u8              bit 0: first_timestamp is set; then 7 zero bytes
//!  56 last_time_entry i64   \
//!  64 bytes_since_entry u64  | where the index entries stand at `position`
//!  72 offset_entries u64     | (.index entries and .timeindex entries before `position`,
//!  80 time_entries u64       |  and the CRC-32 of each file's entries)
//!  88 offset_crc u32         |
//!  92 time_crc u32          /
//!  96 producers_len u32
//! 100 producers             a producer snapshot (the .producers format, its own CRC included)
//!   … crc u32               CRC-32 of every byte before it
//! ```

use std::path::Path;

use crate::active_index::IndexState;
use crate::batch::header::{le_u32_at as u32_at, le_u64_at as u64_at};
use crate::error::{Error, Result};
use crate::files;
use crate::vfs::FileSystem;

pub const FILE_NAME: &str = "recovery-point.checkpoint";
const MAGIC: [u8; 4] = *b"ERPT";
const VERSION: u8 = 1;
const FIXED_LEN: usize = 100;
const HAS_FIRST_TIMESTAMP: u8 = 1;

/// A recovery point and the log's state there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub segment_base: u64,
    pub position: u64,
    pub first_timestamp: Option<i64>,
    /// The active index at `position`; its `next_offset` is the recovery point.
    pub index: IndexState,
    /// [`crate::producer::ProducerTable::encode`] as of the recovery point.
    pub producers: Vec<u8>,
}

/// What is on disk.
#[derive(Debug)]
pub enum Loaded {
    Missing,
    Invalid(&'static str),
    Found(Checkpoint),
}

impl Checkpoint {
    /// The point at the start of the segment `base`, with the producers as of `base`.
    pub fn segment_start(base: u64, producers: Vec<u8>) -> Self {
        Self {
            segment_base: base,
            position: 0,
            first_timestamp: None,
            index: IndexState::empty(base),
            producers,
        }
    }

    /// The recovery point: every offset below it is on stable storage.
    pub fn offset(&self) -> u64 {
        self.index.next_offset
    }

    /// Checkpoints are ordered by offset, then segment (a segment's end and the next one's
    /// start are the same offset; the later segment means less to scan).
    pub fn order(&self) -> (u64, u64) {
        (self.offset(), self.segment_base)
    }

    pub fn encode(&self) -> Vec<u8> {
        let i = &self.index;
        let mut buf = Vec::with_capacity(FIXED_LEN + self.producers.len() + 4);
        buf.extend_from_slice(&MAGIC);
        buf.extend_from_slice(&[VERSION, 0, 0, 0]);
        for v in [self.segment_base, self.position, i.next_offset, i.max_timestamp as u64] {
            buf.extend_from_slice(&v.to_le_bytes());
        }
        buf.extend_from_slice(&self.first_timestamp.unwrap_or(i64::MIN).to_le_bytes());
        let flags = if self.first_timestamp.is_some() { HAS_FIRST_TIMESTAMP } else { 0 };
        buf.extend_from_slice(&[flags, 0, 0, 0, 0, 0, 0, 0]);
        for v in [i.last_time_entry as u64, i.bytes_since_entry, i.offset_entries, i.time_entries] {
            buf.extend_from_slice(&v.to_le_bytes());
        }
        buf.extend_from_slice(&i.offset_crc.to_le_bytes());
        buf.extend_from_slice(&i.time_crc.to_le_bytes());
        buf.extend_from_slice(&(self.producers.len() as u32).to_le_bytes());
        buf.extend_from_slice(&self.producers);
        let crc = crc32fast::hash(&buf);
        buf.extend_from_slice(&crc.to_le_bytes());
        buf
    }

    /// Parses a checkpoint; the reason it is unusable otherwise.
    pub fn decode(bytes: &[u8]) -> Result<Self, &'static str> {
        if bytes.len() < FIXED_LEN + 4 {
            return Err("too short");
        }
        if bytes[..4] != MAGIC {
            return Err("bad magic");
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32fast::hash(body) != u32_at(crc, 0) {
            return Err("checksum mismatch");
        }
        if body[4] != VERSION {
            return Err("unknown version");
        }
        let producers_len = u32_at(body, 96) as usize;
        if body.len() - FIXED_LEN != producers_len {
            return Err("length mismatch");
        }
        let first_timestamp =
            (body[48] & HAS_FIRST_TIMESTAMP != 0).then(|| u64_at(body, 40) as i64);
        let index = IndexState {
            offset_entries: u64_at(body, 72),
            offset_crc: u32_at(body, 88),
            time_entries: u64_at(body, 80),
            time_crc: u32_at(body, 92),
            last_time_entry: u64_at(body, 56) as i64,
            bytes_since_entry: u64_at(body, 64),
            next_offset: u64_at(body, 24),
            max_timestamp: u64_at(body, 32) as i64,
        };
        Ok(Self {
            segment_base: u64_at(body, 8),
            position: u64_at(body, 16),
            first_timestamp,
            index,
            producers: body[FIXED_LEN..].to_vec(),
        })
    }

    /// Reads the checkpoint of the log in `dir`.
    pub fn load(fs: &dyn FileSystem, dir: &Path) -> Result<Loaded> {
        let path = dir.join(FILE_NAME);
        match fs.read(&path) {
            Ok(bytes) => Ok(match Self::decode(&bytes) {
                Ok(checkpoint) => Loaded::Found(checkpoint),
                Err(reason) => Loaded::Invalid(reason),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Loaded::Missing),
            Err(e) => Err(Error::io("read", path)(e)),
        }
    }

    /// Replaces the checkpoint of the log in `dir` with this one, durably.
    pub fn write(&self, fs: &dyn FileSystem, dir: &Path) -> Result<()> {
        files::write_atomic_on(fs, &dir.join(FILE_NAME), &self.encode())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        Checkpoint {
            segment_base: 4096,
            position: 123_456,
            first_timestamp: Some(-7),
            index: IndexState {
                offset_entries: 30,
                offset_crc: 0xdead_beef,
                time_entries: 12,
                time_crc: 7,
                last_time_entry: 99,
                bytes_since_entry: 1000,
                next_offset: 5000,
                max_timestamp: 1_700_000_000_000,
            },
            producers: vec![1, 2, 3, 4, 5],
        }
    }

    #[test]
    fn round_trips_and_rejects_damage() {
        let c = sample();
        assert_eq!(Checkpoint::decode(&c.encode()), Ok(c.clone()));
        let none = Checkpoint { first_timestamp: None, ..c.clone() };
        assert_eq!(Checkpoint::decode(&none.encode()), Ok(none));
        let bytes = c.encode();
        for at in [0, 5, 20, 60, 97, 101, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x10;
            assert!(Checkpoint::decode(&bad).is_err(), "flip at {at}");
        }
        assert_eq!(Checkpoint::decode(&bytes[..50]), Err("too short"));
        assert_eq!(Checkpoint::decode(&bytes[..bytes.len() - 1]), Err("checksum mismatch"));
    }

    #[test]
    fn later_points_order_after_earlier_ones() {
        let end = Checkpoint { segment_base: 0, ..sample() };
        let next_start = Checkpoint::segment_start(5000, vec![]);
        assert!(next_start.order() > end.order());
        assert!(Checkpoint::segment_start(4999, vec![]).order() < end.order());
    }
}
