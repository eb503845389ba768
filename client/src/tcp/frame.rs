//! Request frames as the writer sends them: a list of chunks, written back to back.
//!
//! A produce request is encoded as chunks — the protobuf structure in small buffers, and each
//! record batch as the producer's own bytes — so a batch (up to megabytes) is never copied into
//! a frame; the writer hands the chunks to the socket with vectored writes (`writer.rs`). Every
//! other request is small and is encoded whole by prost. The chunks, back to back, are byte for
//! byte what prost encodes for the same request (tests below), so the broker cannot tell.

use bytes::{BufMut, Bytes, BytesMut};
use eddy_protocol::frame::LENGTH_PREFIX;
use eddy_protocol::v1::{self, request};
use prost::Message as _;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

/// Field numbers in eddy.proto that this encoder writes by hand.
const REQUEST_CORRELATION_ID: u32 = 1;
const REQUEST_PRODUCE: u32 = 16;
const PRODUCE_TOPICS: u32 = 2;
const TOPIC_PARTITIONS: u32 = 2;
const PARTITION_BATCH: u32 = 2;

/// One encoded request: chunks to write in order, the first starting with the length prefix.
#[derive(Debug)]
pub(super) struct Frame {
    pub chunks: Vec<Bytes>,
}

impl Frame {
    /// Total bytes, prefix included.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.chunks.iter().map(Bytes::len).sum()
    }
}

/// Encodes `request`, whose encoded length (`request.encoded_len()`) is `len`, as one frame:
/// a u32 little-endian length, then the message.
pub(super) fn encode(request: v1::Request, len: usize) -> Frame {
    match request {
        v1::Request { correlation_id, body: Some(request::Body::Produce(produce)) } => {
            encode_produce(correlation_id, produce, len)
        }
        other => {
            let mut out = BytesMut::with_capacity(LENGTH_PREFIX + len);
            eddy_protocol::encode_frame(&other, &mut out);
            Frame { chunks: vec![out.freeze()] }
        }
    }
}

fn len_delimited(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

fn batch_field_len(batch: &Bytes) -> usize {
    // proto3: an empty `bytes` field is not written.
    if batch.is_empty() { 0 } else { len_delimited(PARTITION_BATCH, batch.len()) }
}

/// A partition's fields but its batch (prost encodes those), and the batch.
type Partition = (v1::ProducePartition, Bytes);

fn partition_len((fields, batch): &Partition) -> usize {
    fields.encoded_len() + batch_field_len(batch)
}

/// The topic's name field, and the length of the whole topic message.
fn topic_len(fields: &v1::ProduceTopic, partitions: &[Partition]) -> usize {
    fields.encoded_len()
        + partitions
            .iter()
            .map(|p| len_delimited(TOPIC_PARTITIONS, partition_len(p)))
            .sum::<usize>()
}

fn encode_produce(correlation_id: u64, produce: v1::ProduceRequest, len: usize) -> Frame {
    let v1::ProduceRequest { acks, topics } = produce;
    // Each message split into its own small fields (prost writes them first: they come before
    // the repeated field in number order) and what follows them.
    let fields = v1::ProduceRequest { acks, topics: Vec::new() };
    let topics: Vec<(v1::ProduceTopic, Vec<Partition>)> = topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .into_iter()
                .map(|mut p| {
                    let batch = std::mem::take(&mut p.batch);
                    (p, batch)
                })
                .collect();
            (v1::ProduceTopic { topic: t.topic, partitions: Vec::new() }, partitions)
        })
        .collect();
    let produce_len = fields.encoded_len()
        + topics
            .iter()
            .map(|(t, ps)| len_delimited(PRODUCE_TOPICS, topic_len(t, ps)))
            .sum::<usize>();
    let id_len = if correlation_id == 0 {
        0
    } else {
        key_len(REQUEST_CORRELATION_ID) + encoded_len_varint(correlation_id)
    };
    let message_len = id_len + len_delimited(REQUEST_PRODUCE, produce_len);
    debug_assert_eq!(message_len, len, "the chunked encoding's length is prost's");

    let mut chunks = Vec::new();
    let mut head = BytesMut::with_capacity(256);
    head.put_u32_le(message_len as u32);
    if correlation_id != 0 {
        encode_key(REQUEST_CORRELATION_ID, WireType::Varint, &mut head);
        encode_varint(correlation_id, &mut head);
    }
    encode_key(REQUEST_PRODUCE, WireType::LengthDelimited, &mut head);
    encode_varint(produce_len as u64, &mut head);
    fields.encode_raw(&mut head);
    for (topic, partitions) in &topics {
        encode_key(PRODUCE_TOPICS, WireType::LengthDelimited, &mut head);
        encode_varint(topic_len(topic, partitions) as u64, &mut head);
        topic.encode_raw(&mut head);
        for partition in partitions {
            encode_key(TOPIC_PARTITIONS, WireType::LengthDelimited, &mut head);
            encode_varint(partition_len(partition) as u64, &mut head);
            let (fields, batch) = partition;
            fields.encode_raw(&mut head);
            if !batch.is_empty() {
                encode_key(PARTITION_BATCH, WireType::LengthDelimited, &mut head);
                encode_varint(batch.len() as u64, &mut head);
                chunks.push(head.split().freeze());
                chunks.push(batch.clone());
            }
        }
    }
    if !head.is_empty() {
        chunks.push(head.freeze());
    }
    Frame { chunks }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn prost_frame(request: &v1::Request) -> Vec<u8> {
        let mut out = BytesMut::new();
        eddy_protocol::encode_frame(request, &mut out);
        out.to_vec()
    }

    fn flatten(frame: &Frame) -> Vec<u8> {
        frame.chunks.iter().flat_map(|c| c.iter().copied()).collect()
    }

    /// Topics of (partition, batch) pairs.
    type Topics = Vec<(String, Vec<(u32, Vec<u8>)>)>;

    fn produce(correlation_id: u64, acks: i32, topics: Topics) -> v1::Request {
        let topics = topics
            .into_iter()
            .map(|(topic, partitions)| v1::ProduceTopic {
                topic,
                partitions: partitions
                    .into_iter()
                    .map(|(partition, batch)| v1::ProducePartition {
                        partition,
                        batch: Bytes::from(batch),
                    })
                    .collect(),
            })
            .collect();
        v1::Request {
            correlation_id,
            body: Some(request::Body::Produce(v1::ProduceRequest { acks, topics })),
        }
    }

    proptest! {
        /// Any produce request — empty names and batches, partition 0, acks 0, correlation id
        /// 0 included — encodes to prost's bytes.
        #[test]
        fn chunked_produce_frames_equal_prost_encoding(
            correlation_id in prop_oneof![Just(0u64), any::<u64>()],
            acks in 0i32..3,
            topics in proptest::collection::vec(
                (
                    "[a-z]{0,12}",
                    proptest::collection::vec(
                        (prop_oneof![Just(0u32), any::<u32>()], proptest::collection::vec(any::<u8>(), 0..300)),
                        0..4,
                    ),
                ),
                0..3,
            ),
        ) {
            let request = produce(correlation_id, acks, topics);
            let expected = prost_frame(&request);
            let frame = encode(request.clone(), request.encoded_len());
            prop_assert_eq!(frame.len(), expected.len());
            prop_assert_eq!(flatten(&frame), expected);
        }
    }

    #[test]
    fn batches_are_not_copied() {
        let batch = vec![7u8; 100_000];
        let request = produce(9, 1, vec![("t".into(), vec![(0, batch)])]);
        let v1::Request { body: Some(request::Body::Produce(p)), .. } = &request else {
            unreachable!()
        };
        let sent = p.topics[0].partitions[0].batch.clone();
        let frame = encode(request.clone(), request.encoded_len());
        assert!(frame.chunks.iter().any(|c| c.as_ptr() == sent.as_ptr() && c.len() == sent.len()));
    }

    #[test]
    fn other_requests_are_one_chunk() {
        let request = v1::Request {
            correlation_id: 3,
            body: Some(request::Body::InitProducer(v1::InitProducerRequest {})),
        };
        let frame = encode(request.clone(), request.encoded_len());
        assert_eq!(frame.chunks.len(), 1);
        assert_eq!(flatten(&frame), prost_frame(&request));
    }
}
