use super::*;
use proptest::prelude::*;

/// An owned record for comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Owned {
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

fn build(records: &[Owned]) -> Vec<u8> {
    build_with(records, Compression::None)
}

fn build_with(records: &[Owned], codec: Compression) -> Vec<u8> {
    let mut b = BatchBuilder::new().producer(7, 1, 42).compression(codec);
    for r in records {
        let headers: Vec<Header<'_>> =
            r.headers.iter().map(|(k, v)| Header { key: k, value: v.as_deref() }).collect();
        b.push(Record {
            timestamp: r.timestamp,
            key: r.key.as_deref(),
            value: r.value.as_deref(),
            headers: &headers,
        });
    }
    b.finish()
}

fn decode(bytes: &[u8]) -> Vec<Owned> {
    let view = BatchView::parse(bytes).unwrap();
    let records = view.records().unwrap();
    records
        .iter()
        .map(|r| {
            let r = r.unwrap();
            Owned {
                timestamp: r.timestamp,
                key: r.key.map(<[u8]>::to_vec),
                value: r.value.map(<[u8]>::to_vec),
                headers: r
                    .headers()
                    .map(|h| (h.key.to_vec(), h.value.map(<[u8]>::to_vec)))
                    .collect(),
            }
        })
        .collect()
}

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

fn owned() -> impl Strategy<Value = Owned> {
    let bytes = || proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64));
    (
        any::<i64>(),
        bytes(),
        bytes(),
        proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..8), bytes()), 0..4),
    )
        .prop_map(|(timestamp, key, value, headers)| Owned { timestamp, key, value, headers })
}

proptest! {
    #[test]
    fn records_round_trip(records in proptest::collection::vec(owned(), 1..20)) {
        let bytes = build(&records);
        let v = validate_for_append(&bytes).unwrap();
        prop_assert_eq!(v.header.record_count as usize, records.len());
        prop_assert_eq!(v.header.max_timestamp, records.iter().map(|r| r.timestamp).max().unwrap());
        prop_assert_eq!(v.has_null_key, records.iter().any(|r| r.key.is_none()));
        prop_assert_eq!(decode(&bytes), records);
    }

    /// Compressed batches, in each of Kafka's codecs, validate and decode to what was pushed.
    #[test]
    fn compressed_records_round_trip(records in proptest::collection::vec(owned(), 1..20), codec in 0usize..5) {
        let bytes = build_with(&records, CODECS[codec]);
        let v = validate_for_append(&bytes).unwrap();
        prop_assert_eq!(v.header.codec(), CODECS[codec] as u16);
        prop_assert_eq!(v.header.record_count as usize, records.len());
        prop_assert_eq!(decode(&bytes), records);
    }

    /// Any single flipped bit from the magic byte on is caught by the checksum, the magic or
    /// the length check, and decoding garbage never panics. (Base offset and leader epoch
    /// are the log's to write; a flipped length bit is a length mismatch.)
    #[test]
    fn any_bit_flip_is_detected(records in proptest::collection::vec(owned(), 1..5), pick in any::<usize>(), bit in 0u8..8) {
        let mut bytes = build(&records);
        let at = header::MAGIC + pick % (bytes.len() - header::MAGIC);
        bytes[at] ^= 1 << bit;
        prop_assert!(validate_for_append(&bytes).is_err());
        prop_assert!(BatchView::parse(&bytes).is_err());
    }

    /// What the builder vouches for is exactly what validation would conclude.
    #[test]
    fn build_valid_agrees_with_validation(records in proptest::collection::vec(owned(), 1..20)) {
        let mut b = BatchBuilder::new();
        for r in &records {
            let headers: Vec<Header<'_>> = r.headers.iter().map(|(k, v)| Header { key: k, value: v.as_deref() }).collect();
            b.push(Record { timestamp: r.timestamp, key: r.key.as_deref(), value: r.value.as_deref(), headers: &headers });
        }
        let valid = b.build_valid().unwrap();
        prop_assert_eq!(validate_for_append(valid.as_bytes()), Ok(*valid.validated()));
    }

    /// The combined checksum (header CRC combined with the records' CRC) is the direct one,
    /// for any header bytes and any records, including none.
    #[test]
    fn combined_checksum_equals_direct(
        head in proptest::collection::vec(any::<u8>(), HEADER_LEN),
        records in proptest::collection::vec(any::<u8>(), 0..5000),
    ) {
        let mut direct = head;
        direct.extend_from_slice(&records);
        let mut combined = direct.clone();
        header::seal_checksums(&mut direct);
        header::seal_checksums_with_records(&mut combined, crc32c::crc32c(&records));
        prop_assert_eq!(combined, direct);
    }

    /// Checksumming the records as they are pushed (at any points, any producer identity and
    /// sequence set afterwards) builds the same bytes as checksumming the whole batch at the
    /// end; with compression, the early checksum is ignored.
    #[test]
    fn early_record_checksums_build_the_same_batch(
        records in proptest::collection::vec(owned(), 1..20),
        every in 1usize..6,
        producer in (any::<i64>(), any::<i16>(), any::<i32>()),
        codec in 0usize..5,
    ) {
        let push = |b: &mut BatchBuilder, r: &Owned| {
            let headers: Vec<Header<'_>> = r.headers.iter().map(|(k, v)| Header { key: k, value: v.as_deref() }).collect();
            b.push(Record { timestamp: r.timestamp, key: r.key.as_deref(), value: r.value.as_deref(), headers: &headers });
        };
        let (mut early, mut late) = (BatchBuilder::new(), BatchBuilder::new());
        for (i, r) in records.iter().enumerate() {
            push(&mut early, r);
            push(&mut late, r);
            if i % every == 0 {
                early.checksum_records();
                prop_assert_eq!(early.unchecksummed_bytes(), 0);
            }
        }
        let (id, epoch, sequence) = producer;
        let early = early.producer(id, epoch, sequence).compression(CODECS[codec]).finish();
        let late = late.producer(id, epoch, sequence).compression(CODECS[codec]).finish();
        prop_assert!(BatchView::parse(&early).is_ok());
        prop_assert_eq!(early, late);
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = validate_for_append(&bytes);
        for view in Batches::new(&bytes).flatten() {
            if let Ok(records) = view.records() {
                records.iter().for_each(drop);
            }
        }
    }

    /// Records with valid checksums but broken insides (re-sealed after corruption) are refused
    /// by validation and fail to decode cleanly.
    #[test]
    fn resealed_garbage_is_refused_or_decodes(records in proptest::collection::vec(owned(), 1..5), pick in any::<usize>(), byte in any::<u8>()) {
        let mut bytes = build(&records);
        let at = HEADER_LEN + pick % (bytes.len() - HEADER_LEN);
        bytes[at] = byte;
        header::seal_checksums(&mut bytes);
        if let Ok(v) = validate_for_append(&bytes) {
            let view = BatchView::parse(&bytes).unwrap();
            let n = view.records().unwrap().iter().collect::<Result<Vec<_>, _>>().unwrap().len();
            prop_assert_eq!(n as u32, v.header.record_count);
        }
    }
}

#[test]
fn base_offset_is_outside_the_checksums() {
    let bytes =
        build(&[Owned { timestamp: 5, key: None, value: Some(b"x".to_vec()), headers: vec![] }]);
    let mut moved = bytes.clone();
    stamp_position(&mut moved, 1234);
    let view = BatchView::parse(&moved).unwrap();
    assert_eq!(view.base_offset(), 1234);
    assert_eq!(view.header().leader_epoch, 0);
    assert_eq!(view.records().unwrap().iter().next().unwrap().unwrap().offset, 1234);
}

#[test]
fn validation_names_what_is_wrong() {
    let good =
        build(&[Owned { timestamp: 5, key: Some(b"k".to_vec()), value: None, headers: vec![] }]);
    assert_eq!(
        validate_for_append(&good[..30]),
        Err(BatchError::Truncated { needed: 61, available: 30 })
    );

    let mut longer = good.clone();
    longer.push(0);
    assert!(matches!(validate_for_append(&longer), Err(BatchError::LengthMismatch { .. })));

    let mut version = good.clone();
    version[header::MAGIC] = 1;
    header::seal_checksums(&mut version);
    assert_eq!(
        validate_for_append(&version),
        Err(BatchError::UnsupportedVersion { found: 1, supported: 2 })
    );

    let set_attributes = |attributes: u16| {
        let mut bytes = good.clone();
        bytes[header::ATTRIBUTES..header::ATTRIBUTES + 2]
            .copy_from_slice(&attributes.to_be_bytes());
        header::seal_checksums(&mut bytes);
        validate_for_append(&bytes)
    };
    assert_eq!(set_attributes(5), Err(BatchError::UnsupportedCompression { codec: 5 }));
    assert_eq!(set_attributes(1 << 7), Err(BatchError::UnknownAttributes { attributes: 1 << 7 }));
    assert_eq!(
        set_attributes(1),
        Err(BatchError::Decompress { codec: 1, reason: "corrupt compressed data" })
    );
    for (bit, attribute) in
        [(5, "control"), (4, "transactional"), (3, "log-append-time"), (6, "delete-horizon")]
    {
        assert_eq!(set_attributes(1 << bit), Err(BatchError::AttributeNotAllowed { attribute }));
    }

    let mut negative = good.clone();
    negative[header::RECORD_COUNT..header::RECORD_COUNT + 4]
        .copy_from_slice(&(-1i32).to_be_bytes());
    assert_eq!(
        BatchView::parse(&negative).unwrap_err(),
        BatchError::NegativeCount { last_offset_delta: 0, record_count: -1 }
    );

    let mut bad_max = good.clone();
    bad_max[header::MAX_TIMESTAMP..header::MAX_TIMESTAMP + 8].copy_from_slice(&99i64.to_be_bytes());
    header::seal_checksums(&mut bad_max);
    assert_eq!(
        validate_for_append(&bad_max),
        Err(BatchError::MaxTimestamp { header: 99, computed: 5 })
    );

    assert_eq!(validate_for_append(&BatchBuilder::new().finish()), Err(BatchError::Empty));
    assert_eq!(BatchBuilder::new().build_valid().unwrap_err(), BatchError::Empty);
}

#[test]
fn huge_declared_lengths_are_refused_without_allocating() {
    // A record claiming a 2^62-byte value must fail on bounds, not try to allocate.
    let mut b = BatchBuilder::new();
    b.push(Record { timestamp: 0, key: None, value: Some(b"abc"), headers: &[] });
    let mut bytes = b.finish();
    // Record layout: len, attrs, ts delta, offset delta, key len (-1), value len (3) ...
    let value_len_at = HEADER_LEN + 5;
    assert_eq!(bytes[value_len_at], 6); // zigzag(3)
    let mut patched = bytes[..value_len_at].to_vec();
    patched.extend_from_slice(&[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
    patched.extend_from_slice(&bytes[value_len_at + 1..]);
    // The record's own length prefix grows by the 8 extra bytes.
    patched[HEADER_LEN] += 16;
    bytes = patched;
    let len = (bytes.len() - header::LENGTH_FIELD_END) as u32;
    bytes[header::BATCH_LENGTH..header::BATCH_LENGTH + 4].copy_from_slice(&len.to_be_bytes());
    header::seal_checksums(&mut bytes);
    assert!(matches!(validate_for_append(&bytes), Err(BatchError::Record { index: 0, .. })));
}

#[test]
fn sequences_wrap_like_kafka() {
    assert_eq!(header::add_sequence(i32::MAX, 1), 0);
    assert_eq!(header::add_sequence(i32::MAX - 1, 3), 1);
    assert_eq!(header::add_sequence(5, 0), 5);
}

#[test]
fn a_decompression_bomb_is_refused_at_the_limit() {
    // 200 MiB of zeros gzip to about 200 KiB: the records area of a small batch.
    let zeros = vec![0u8; 200 << 20];
    let area = compression::compress(Compression::Gzip as u16, &zeros);
    assert!(area.len() < 1 << 20);
    assert_eq!(
        compression::decompress(Compression::Gzip as u16, &area),
        Err(BatchError::DecompressedTooLarge { limit: compression::MAX_DECOMPRESSED_BYTES as u64 })
    );
}

#[test]
fn raw_snappy_as_librdkafka_writes_it_decodes_too() {
    let data = b"raw snappy block, no xerial framing".repeat(10);
    let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
    assert_eq!(compression::decompress(Compression::Snappy as u16, &raw).unwrap(), data);
}
