//! Which partition a record goes to.
//!
//! - A record sent to an explicit partition goes there.
//! - A record with a key goes to `to_positive(murmur2(key)) % partitions`, exactly as Kafka's
//!   Java client (`Utils.murmur2`, seed `0x9747b28c`, then `Utils.toPositive`, which clears the
//!   sign bit rather than taking an absolute value). So a key lands on the partition a Kafka
//!   user expects, and a topic written by both clients keeps each key on one partition.
//!   The hash is over the key's bytes as given; there is no serializer in between.
//!   (librdkafka's default, `consistent_random`, uses CRC32 instead and does *not* agree.)
//! - A record without a key goes to the topic's current *sticky* partition; the sticky
//!   partition moves to the next partition (round-robin) each time a batch for it is closed,
//!   so keyless records fill whole batches instead of scattering one record per partition.
//!
//! Invariants: the key hash depends only on the key's bytes and the partition count — it is
//! stable across processes, versions and platforms (never `std`'s randomly seeded hasher).

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;

/// Kafka's 32-bit murmur2 of `data` (`org.apache.kafka.common.utils.Utils.murmur2`).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    // Java computes `seed ^ length` on 32-bit ints; lengths past 2^32 do not occur for keys.
    let mut h = SEED ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        // Java's fall-through switch on `length % 4`.
        if tail.len() >= 3 {
            h ^= u32::from(tail[2]) << 16;
        }
        if tail.len() >= 2 {
            h ^= u32::from(tail[1]) << 8;
        }
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Kafka's `Utils.toPositive`: clears the sign bit (so `i32::MIN` maps to 0, not to an
/// overflow).
pub fn to_positive(n: i32) -> u32 {
    (n & 0x7fff_ffff) as u32
}

/// The partition of a keyed record among `partitions` (which must be at least 1).
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    debug_assert!(partitions > 0);
    to_positive(murmur2(key)) % partitions.max(1)
}

/// The current sticky partition of each topic, for records without a key.
#[derive(Debug)]
pub(crate) struct Sticky {
    /// Where each topic starts: random per producer, so producers do not all pile onto
    /// partition 0 first.
    seed: u64,
    /// Per topic: the sticky partition and the partition count it was chosen among.
    current: HashMap<Arc<str>, (u32, u32)>,
}

impl Sticky {
    pub(crate) fn new() -> Self {
        Self { seed: RandomState::new().hash_one(0u8), current: HashMap::new() }
    }

    /// The partition the next keyless record of `topic` goes to.
    pub(crate) fn partition(&mut self, topic: &Arc<str>, partitions: u32) -> u32 {
        let partitions = partitions.max(1);
        let seed = self.seed;
        let (p, count) = self
            .current
            .entry(Arc::clone(topic))
            .or_insert_with(|| ((seed % u64::from(partitions)) as u32, partitions));
        // The count changes when a topic is recreated.
        *count = partitions;
        *p %= partitions;
        *p
    }

    /// The batch of `partition` was closed: if it was the sticky one, move on to the next.
    pub(crate) fn batch_closed(&mut self, topic: &str, partition: u32) {
        if let Some((p, count)) = self.current.get_mut(topic)
            && *p == partition
        {
            *p = (partition + 1) % *count;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectors of Kafka's own `UtilsTest.testMurmur2`
    /// (clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java).
    #[test]
    fn murmur2_matches_kafka_utils_test_vectors() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
            (b"abc", 479_470_107), // new byte[] {'a', 'b', 'c'} in Kafka's test
        ];
        for (key, expected) in cases {
            assert_eq!(murmur2(key), expected, "murmur2({:?})", String::from_utf8_lossy(key));
        }
    }

    /// Values the Akka/Pekko cluster-sharding tests check against Kafka's implementation
    /// (one to five bytes: every tail length and one whole word).
    #[test]
    fn murmur2_matches_kafka_for_every_tail_length() {
        let cases: [(&[u8], i32); 5] = [
            (b"1", -1_993_445_489),
            (b"12", 126_087_238),
            (b"123", -267_702_483),
            (b"1234", -1_614_185_708),
            (b"12345", -1_188_365_604),
        ];
        for (key, expected) in cases {
            assert_eq!(murmur2(key), expected, "murmur2({:?})", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn to_positive_clears_the_sign_bit_like_kafka() {
        assert_eq!(to_positive(i32::MIN), 0);
        assert_eq!(to_positive(-1), 0x7fff_ffff);
        assert_eq!(to_positive(5), 5);
        // murmur2("21") = -973932308 = 0xC5F2F8EC; without the sign bit: 0x45F2F8EC.
        assert_eq!(to_positive(-973_932_308), 0x45F2_F8EC);
    }

    #[test]
    fn keyed_partition_is_positive_hash_modulo_count() {
        // 0x45F2F8EC = 1173551340.
        assert_eq!(partition_for_key(b"21", 10), 1_173_551_340 % 10);
        assert_eq!(partition_for_key(b"21", 1), 0);
        for n in 1..50 {
            assert!(partition_for_key(b"foobar", n) < n);
        }
    }

    #[test]
    fn sticky_partition_moves_round_robin_when_its_batch_closes() {
        let mut sticky = Sticky::new();
        let topic: Arc<str> = Arc::from("t");
        let first = sticky.partition(&topic, 3);
        assert_eq!(sticky.partition(&topic, 3), first, "stays until its batch closes");
        sticky.batch_closed("t", (first + 1) % 3);
        assert_eq!(sticky.partition(&topic, 3), first, "another partition's batch: no move");
        sticky.batch_closed("t", first);
        assert_eq!(sticky.partition(&topic, 3), (first + 1) % 3);
    }
}
