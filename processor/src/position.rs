//! Output positions and partitioning: the pieces of effectively-once that are pure functions.
//!
//! Every record a task appends carries a header `eddy-pos` of 20 bytes:
//!
//! ```text
//! 0  writer u64   FNV-1a 64 of "<processor>/<version>/<subtopology>/<partition>": which task
//! 8  n      u64   position of the input record that caused this output (records processed
//!                 by the task since offset zero, before it)
//! 16 index  u32   which output of that input record (0, 1, ...), over all output partitions
//! ```
//!
//! All little-endian. Within one writer, positions only grow in the order records are appended
//! to a partition, so the largest one in a partition's tail says exactly which outputs exist.

/// Header key of the output position.
pub const POSITION_HEADER: &[u8] = b"eddy-pos";
pub(crate) const POSITION_LEN: usize = 20;

/// Where an output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Position {
    pub writer: u64,
    pub n: u64,
    pub index: u32,
}

impl Position {
    pub fn encode(&self) -> [u8; POSITION_LEN] {
        let mut out = [0u8; POSITION_LEN];
        out[0..8].copy_from_slice(&self.writer.to_le_bytes());
        out[8..16].copy_from_slice(&self.n.to_le_bytes());
        out[16..20].copy_from_slice(&self.index.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Position> {
        if bytes.len() != POSITION_LEN {
            return None;
        }
        let mut w = [0u8; 8];
        let mut n = [0u8; 8];
        let mut i = [0u8; 4];
        w.copy_from_slice(&bytes[0..8]);
        n.copy_from_slice(&bytes[8..16]);
        i.copy_from_slice(&bytes[16..20]);
        Some(Position {
            writer: u64::from_le_bytes(w),
            n: u64::from_le_bytes(n),
            index: u32::from_le_bytes(i),
        })
    }

    /// The order of positions of one writer.
    pub fn order(&self) -> (u64, u32) {
        (self.n, self.index)
    }
}

/// FNV-1a, 64 bits: a stable hash (unlike `DefaultHasher`, the same in every build).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The writer id of a task.
pub fn writer_id(processor: &str, version: u32, subtopology: u32, partition: u32) -> u64 {
    fnv1a64(format!("{processor}/{version}/{subtopology}/{partition}").as_bytes())
}

/// Kafka's murmur2 (the client's default partitioner), so keyed outputs land where a producer
/// would put the same key.
pub fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// The partition of `key` among `count` (count > 0).
pub fn partition_for_key(key: &[u8], count: u32) -> u32 {
    (murmur2(key) & 0x7fff_ffff) % count.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // Values from Kafka's Utils.murmur2 test vectors.
        assert_eq!(murmur2(b"21") as i32, -973932308);
        assert_eq!(murmur2(b"foobar") as i32, -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string") as i32, -1486304829);
        assert_eq!(murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32, -58897971);
        assert_eq!(murmur2(b"abc") as i32, 479470107);
    }

    #[test]
    fn position_round_trips() {
        let p = Position { writer: 7, n: 1 << 40, index: 3 };
        assert_eq!(Position::decode(&p.encode()), Some(p));
        assert_eq!(Position::decode(&[0; 19]), None);
    }
}
