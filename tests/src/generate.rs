//! Deterministic test batches.
//!
//! A batch is a pure function of a 64-bit seed, and a child process writes the batches of a
//! *stream*: batch `k` of stream `s` has seed [`batch_seed`]`(s, k)`. A test that knows the
//! stream seed therefore knows every byte the child could have written, acknowledged or not.

use eddy_storage::batch::BatchError;
use eddy_storage::{BatchBuilder, BatchView, Header, Record};

/// Event times are spread over an hour from here (well inside one segment's time span).
pub const TIMESTAMP_BASE_MS: i64 = 1_700_000_000_000;
/// A batch holds 1 to this many records.
pub const MAX_RECORDS: u64 = 20;
/// Keys and values are 0 to this many bytes long (when not null).
pub const MAX_FIELD_BYTES: u64 = 300;

const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// The SplitMix64 output function: a bijective 64-bit mix.
pub fn mix64(x: u64) -> u64 {
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A small deterministic generator (SplitMix64). Not for anything but tests.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix64(self.state)
    }

    /// Uniform-ish in `0..n`; `n` must be positive.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True one time in `n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }

    /// `0..=max_len` random bytes.
    pub fn bytes(&mut self, max_len: u64) -> Vec<u8> {
        let mut buf = vec![0u8; self.below(max_len + 1) as usize];
        self.fill(&mut buf);
        buf
    }

    /// Like [`bytes`](Self::bytes), but `None` one time in `null_one_in`.
    pub fn maybe_bytes(&mut self, null_one_in: u64, max_len: u64) -> Option<Vec<u8>> {
        if self.one_in(null_one_in) { None } else { Some(self.bytes(max_len)) }
    }
}

/// Seed of batch `index` of the stream `stream_seed`.
pub fn batch_seed(stream_seed: u64, index: u64) -> u64 {
    mix64(stream_seed ^ mix64(index.wrapping_add(GOLDEN_GAMMA)))
}

/// An owned record, as generated and as decoded back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRecord {
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// The records of the batch with this seed: 1 to [`MAX_RECORDS`] of them, null keys and values
/// one time in eight, headers one time in four, timestamps not always increasing.
pub fn records_for_seed(seed: u64) -> Vec<OwnedRecord> {
    let mut rng = Rng::new(seed);
    let count = 1 + rng.below(MAX_RECORDS);
    let first_timestamp = TIMESTAMP_BASE_MS + rng.below(3_600_000) as i64;
    (0..count)
        .map(|_| {
            let timestamp = first_timestamp + rng.below(10_000) as i64 - 5_000;
            let key = rng.maybe_bytes(8, MAX_FIELD_BYTES);
            let value = rng.maybe_bytes(8, MAX_FIELD_BYTES);
            let headers = if rng.one_in(4) {
                (0..1 + rng.below(3)).map(|_| (rng.bytes(20), rng.maybe_bytes(4, 40))).collect()
            } else {
                Vec::new()
            };
            OwnedRecord { timestamp, key, value, headers }
        })
        .collect()
}

/// Encodes records as one batch (base offset 0), as a producer would.
pub fn encode(records: &[OwnedRecord]) -> Vec<u8> {
    let mut builder = BatchBuilder::new();
    for r in records {
        let headers: Vec<Header<'_>> =
            r.headers.iter().map(|(key, value)| Header { key, value: value.as_deref() }).collect();
        builder.push(Record {
            timestamp: r.timestamp,
            key: r.key.as_deref(),
            value: r.value.as_deref(),
            headers: &headers,
        });
    }
    builder.finish()
}

/// The batch with this seed, exactly as the child appends it.
pub fn batch_for_seed(seed: u64) -> Vec<u8> {
    encode(&records_for_seed(seed))
}

/// Decodes (and checks) one batch back into owned records.
pub fn decode(batch: &[u8]) -> Result<Vec<OwnedRecord>, BatchError> {
    let view = BatchView::parse(batch)?;
    let records = view.records()?;
    records
        .iter()
        .map(|r| {
            let r = r?;
            Ok(OwnedRecord {
                timestamp: r.timestamp,
                key: r.key.map(<[u8]>::to_vec),
                value: r.value.map(<[u8]>::to_vec),
                headers: r
                    .headers()
                    .map(|h| (h.key.to_vec(), h.value.map(<[u8]>::to_vec)))
                    .collect(),
            })
        })
        .collect()
}

/// Whether two encoded batches are the same batch but for the base offset and leader epoch
/// the log writes in front (the only bytes the log changes).
pub fn same_batch(stored: &[u8], produced: &[u8]) -> bool {
    use eddy_storage::batch::{POSITION_LEN, header};
    let front = |b: &[u8]| b.get(header::BATCH_LENGTH..header::LEADER_EPOCH).map(<[u8]>::to_vec);
    stored.len() == produced.len()
        && front(stored) == front(produced)
        && stored.get(POSITION_LEN..) == produced.get(POSITION_LEN..)
}
