//! Encoding answers into frames. Most answers are encoded whole by prost; a fetch answer is
//! encoded as a list of chunks instead — the protobuf structure in small buffers, and each
//! partition's records as the stored bytes themselves (slices of mapped segments) — so the
//! broker never copies fetched records into a frame. The chunks, written back to back, are
//! byte for byte what prost would encode.

use bytes::{BufMut, Bytes, BytesMut};
use eddy_protocol::v1::{self, Response, response};
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

/// Field numbers in eddy.proto that this encoder writes by hand.
const RESPONSE_CORRELATION_ID: u32 = 1;
const RESPONSE_FETCH: u32 = 17;
const FETCH_TOPICS: u32 = 1;
const FETCH_HEARTBEAT_NOW: u32 = 2;
const FETCH_THROTTLE_TIME_MS: u32 = 3;
const TOPIC_NAME: u32 = 1;
const TOPIC_PARTITIONS: u32 = 2;
const PARTITION_RECORDS: u32 = 5;

/// One frame, ready to write: one buffer, or several to be written in order.
#[derive(Debug)]
pub enum Frame {
    Whole(Bytes),
    Chunks(Vec<Bytes>),
}

/// Encodes `response` as a frame (u32 little-endian length, then the message).
pub fn encode(response: Response) -> Frame {
    match response {
        Response { correlation_id, error: None, body: Some(response::Body::Fetch(fetch)) } => {
            Frame::Chunks(encode_fetch(correlation_id, fetch))
        }
        other => {
            let mut out = BytesMut::with_capacity(other.encoded_len() + 4);
            eddy_protocol::encode_frame(&other, &mut out);
            Frame::Whole(out.freeze())
        }
    }
}

fn len_delimited(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

fn records_field_len(records: &Bytes) -> usize {
    if records.is_empty() { 0 } else { len_delimited(PARTITION_RECORDS, records.len()) }
}

/// A fetch partition's fields before its records, its records, and its fields after them.
type Split = (v1::FetchPartitionResult, Bytes, v1::FetchPartitionResult);

fn encode_fetch(correlation_id: u64, fetch: v1::FetchResponse) -> Vec<Bytes> {
    // Split every partition into its small fields before the records (1-4, encoded by prost),
    // its records (5), and its fields after them (6-7, encoded by prost as a message holding
    // only those), so the bytes are in field order, as prost writes them.
    let mut topics = Vec::with_capacity(fetch.topics.len());
    for topic in fetch.topics {
        let partitions: Vec<Split> = topic
            .partitions
            .into_iter()
            .map(|mut p| {
                let records = std::mem::take(&mut p.records);
                let after = v1::FetchPartitionResult {
                    last_stable_offset: std::mem::take(&mut p.last_stable_offset),
                    aborted: std::mem::take(&mut p.aborted),
                    ..Default::default()
                };
                (p, records, after)
            })
            .collect();
        topics.push((topic.topic, partitions));
    }
    let partition_len = |(p, records, after): &Split| {
        p.encoded_len() + records_field_len(records) + after.encoded_len()
    };
    let topic_len = |name: &String, parts: &[Split]| {
        let name_len = if name.is_empty() { 0 } else { len_delimited(TOPIC_NAME, name.len()) };
        name_len
            + parts
                .iter()
                .map(|split| len_delimited(TOPIC_PARTITIONS, partition_len(split)))
                .sum::<usize>()
    };
    // A true bool is its key and one byte; false is not written (proto3 default).
    let hint_len = if fetch.heartbeat_now { key_len(FETCH_HEARTBEAT_NOW) + 1 } else { 0 };
    let throttle = u64::from(fetch.throttle_time_ms);
    let throttle_len = if throttle == 0 {
        0
    } else {
        key_len(FETCH_THROTTLE_TIME_MS) + encoded_len_varint(throttle)
    };
    let fetch_len: usize = hint_len
        + throttle_len
        + topics.iter().map(|(n, ps)| len_delimited(FETCH_TOPICS, topic_len(n, ps))).sum::<usize>();
    let id_len = if correlation_id == 0 {
        0
    } else {
        key_len(RESPONSE_CORRELATION_ID) + encoded_len_varint(correlation_id)
    };
    let message_len = id_len + len_delimited(RESPONSE_FETCH, fetch_len);

    let mut chunks = Vec::new();
    let mut head = BytesMut::with_capacity(256);
    head.put_u32_le(message_len as u32);
    if correlation_id != 0 {
        encode_key(RESPONSE_CORRELATION_ID, WireType::Varint, &mut head);
        encode_varint(correlation_id, &mut head);
    }
    encode_key(RESPONSE_FETCH, WireType::LengthDelimited, &mut head);
    encode_varint(fetch_len as u64, &mut head);
    for (name, partitions) in &topics {
        encode_key(FETCH_TOPICS, WireType::LengthDelimited, &mut head);
        encode_varint(topic_len(name, partitions) as u64, &mut head);
        if !name.is_empty() {
            encode_key(TOPIC_NAME, WireType::LengthDelimited, &mut head);
            encode_varint(name.len() as u64, &mut head);
            head.put_slice(name.as_bytes());
        }
        for split in partitions {
            let (partition, records, after) = split;
            encode_key(TOPIC_PARTITIONS, WireType::LengthDelimited, &mut head);
            encode_varint(partition_len(split) as u64, &mut head);
            // Fields 1-4 (prost writes them in field order), field 5 by hand, then 6-7.
            partition.encode_raw(&mut head);
            if !records.is_empty() {
                encode_key(PARTITION_RECORDS, WireType::LengthDelimited, &mut head);
                encode_varint(records.len() as u64, &mut head);
                chunks.push(head.split().freeze());
                chunks.push(records.clone());
            }
            after.encode_raw(&mut head);
        }
    }
    if fetch.heartbeat_now {
        // After the topics, as prost writes fields in number order.
        encode_key(FETCH_HEARTBEAT_NOW, WireType::Varint, &mut head);
        encode_varint(1, &mut head);
    }
    if throttle != 0 {
        encode_key(FETCH_THROTTLE_TIME_MS, WireType::Varint, &mut head);
        encode_varint(throttle, &mut head);
    }
    if !head.is_empty() {
        chunks.push(head.freeze());
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_protocol::v1::{FetchPartitionResult, FetchResponse, FetchTopicResult};

    fn flatten(frame: Frame) -> Vec<u8> {
        match frame {
            Frame::Whole(b) => b.to_vec(),
            Frame::Chunks(chunks) => chunks.iter().flat_map(|c| c.iter().copied()).collect(),
        }
    }

    fn prost_frame(response: &Response) -> Vec<u8> {
        let mut out = BytesMut::new();
        eddy_protocol::encode_frame(response, &mut out);
        out.to_vec()
    }

    #[test]
    fn chunked_fetch_frames_equal_prost_encoding() {
        let records = |n: usize| Bytes::from((0..n).map(|i| i as u8).collect::<Vec<_>>());
        let cases = [
            (0, vec![]),
            (7, vec![("", vec![(0, records(0), None)])]),
            (
                u64::MAX,
                vec![
                    (
                        "orders",
                        vec![
                            (0, records(300), None),
                            (1, records(0), None),
                            (2, records(70_000), None),
                        ],
                    ),
                    (
                        "x",
                        vec![(
                            3,
                            records(1),
                            Some(v1::Error::new(v1::ErrorCode::OffsetOutOfRange, "past the end")),
                        )],
                    ),
                ],
            ),
        ];
        for (n, (id, topics)) in cases.into_iter().enumerate() {
            let fetch = FetchResponse {
                heartbeat_now: n % 2 == 1,
                throttle_time_ms: (n % 3) as u32 * 150,
                topics: topics
                    .into_iter()
                    .map(|(name, parts)| FetchTopicResult {
                        topic: name.to_string(),
                        partitions: parts
                            .into_iter()
                            .map(|(partition, records, error)| FetchPartitionResult {
                                partition,
                                error,
                                high_watermark: 12_345,
                                log_start_offset: 3,
                                records,
                                last_stable_offset: 12_000,
                                aborted: vec![v1::AbortedTransaction {
                                    producer_id: 7,
                                    first_offset: 1,
                                    last_offset: 2,
                                }],
                            })
                            .collect(),
                    })
                    .collect(),
            };
            let response = Response {
                correlation_id: id,
                error: None,
                body: Some(response::Body::Fetch(fetch)),
            };
            let expected = prost_frame(&response);
            assert_eq!(flatten(encode(response)), expected, "correlation id {id}");
        }
    }

    #[test]
    fn records_are_not_copied() {
        let records = Bytes::from(vec![9u8; 1000]);
        let fetch = FetchResponse {
            heartbeat_now: false,
            throttle_time_ms: 0,
            topics: vec![FetchTopicResult {
                topic: "t".into(),
                partitions: vec![FetchPartitionResult {
                    records: records.clone(),
                    ..Default::default()
                }],
            }],
        };
        let Frame::Chunks(chunks) = encode(Response {
            correlation_id: 1,
            error: None,
            body: Some(response::Body::Fetch(fetch)),
        }) else {
            panic!("a fetch answer is chunked");
        };
        assert!(chunks.iter().any(|c| c.as_ptr() == records.as_ptr() && c.len() == records.len()));
    }
}
