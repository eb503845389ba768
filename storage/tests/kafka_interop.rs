//! eddy's batches are Kafka's RecordBatch v2, checked against an independent implementation
//! (the `kafka-protocol` crate, generated from Kafka's schemas): what it encodes, in every
//! codec, eddy validates and decodes to the same records; what eddy builds, it decodes to the
//! same records.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use bytes::{Bytes, BytesMut};
use eddy_storage::batch::{BatchBuilder, BatchView, Compression, Header, Record};
use indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression as KCompression, Record as KRecord, RecordBatchDecoder, RecordBatchEncoder,
    RecordEncodeOptions, TimestampType,
};
use proptest::prelude::*;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Owned {
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

fn owned() -> impl Strategy<Value = Owned> {
    let bytes = || proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200));
    let headers = proptest::collection::btree_map("[a-z]{1,6}", bytes(), 0..4)
        .prop_map(|m| m.into_iter().collect::<Vec<_>>());
    (0i64..4_000_000_000_000, bytes(), bytes(), headers)
        .prop_map(|(timestamp, key, value, headers)| Owned { timestamp, key, value, headers })
}

const CODECS: [(Compression, KCompression); 5] = [
    (Compression::None, KCompression::None),
    (Compression::Gzip, KCompression::Gzip),
    (Compression::Snappy, KCompression::Snappy),
    (Compression::Lz4, KCompression::Lz4),
    (Compression::Zstd, KCompression::Zstd),
];

fn kafka_encode(records: &[Owned], codec: KCompression) -> Bytes {
    let krecords: Vec<KRecord> = records
        .iter()
        .enumerate()
        .map(|(i, r)| KRecord {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: 42,
            producer_epoch: 3,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: 7 + i as i32,
            timestamp: r.timestamp,
            key: r.key.clone().map(Bytes::from),
            value: r.value.clone().map(Bytes::from),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone().map(Bytes::from)))
                .collect::<IndexMap<_, _>>(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: codec };
    RecordBatchEncoder::encode(&mut buf, &krecords, &options).unwrap();
    buf.freeze()
}

fn eddy_encode(records: &[Owned], codec: Compression) -> Bytes {
    let mut b = BatchBuilder::new().producer(42, 3, 7).compression(codec);
    for r in records {
        let headers: Vec<Header<'_>> = r
            .headers
            .iter()
            .map(|(k, v)| Header { key: k.as_bytes(), value: v.as_deref() })
            .collect();
        b.push(Record {
            timestamp: r.timestamp,
            key: r.key.as_deref(),
            value: r.value.as_deref(),
            headers: &headers,
        });
    }
    b.build()
}

fn eddy_decode(batch: &[u8]) -> Vec<Owned> {
    let view = BatchView::parse(batch).unwrap();
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
                    .map(|h| {
                        (String::from_utf8(h.key.to_vec()).unwrap(), h.value.map(<[u8]>::to_vec))
                    })
                    .collect(),
            }
        })
        .collect()
}

fn kafka_decode(batch: Bytes) -> Vec<Owned> {
    let set = RecordBatchDecoder::decode(&mut batch.clone()).unwrap();
    set.records
        .into_iter()
        .map(|r| {
            assert_eq!((r.producer_id, r.producer_epoch), (42, 3));
            Owned {
                timestamp: r.timestamp,
                key: r.key.map(|b| b.to_vec()),
                value: r.value.map(|b| b.to_vec()),
                headers: r
                    .headers
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.map(|b| b.to_vec())))
                    .collect(),
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn batches_kafka_encodes_validate_and_decode_the_same(
        records in proptest::collection::vec(owned(), 1..30),
        codec in 0usize..5,
    ) {
        let (ours, theirs) = CODECS[codec];
        let batch = kafka_encode(&records, theirs);
        let valid = eddy_storage::batch::validate_for_append(&batch).unwrap();
        prop_assert_eq!(valid.header.codec(), ours as u16);
        prop_assert_eq!(valid.header.record_count as usize, records.len());
        prop_assert_eq!((valid.header.producer_id, valid.header.base_sequence), (42, 7));
        prop_assert_eq!(eddy_decode(&batch), records);
    }

    #[test]
    fn batches_eddy_builds_decode_the_same_in_kafka(
        records in proptest::collection::vec(owned(), 1..30),
        codec in 0usize..5,
    ) {
        let batch = eddy_encode(&records, CODECS[codec].0);
        prop_assert_eq!(kafka_decode(batch), records);
    }
}
