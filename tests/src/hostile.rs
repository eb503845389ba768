//! Hostile frames, each paired with what a correct broker does with it.
//!
//! A generator is a pure function of a [`Rng`] (and the [`Target`] it attacks), so a run replays
//! from its seed. Frames come in two families:
//!
//! - [`interior`]: frames the broker must answer and keep the connection open for — requests
//!   without a body, unknown field numbers, out-of-range enums, corrupt batches, unknown topics
//!   and partitions, offsets out of range, invalid topic configurations. Each carries an
//!   [`Expect`] that [`check`] holds the answer to.
//! - [`closing`]: frames after which the connection ends — length prefixes over the limit,
//!   messages that do not decode (wrong wire types, invalid UTF-8, truncated fields), frames cut
//!   short, random bytes. Each carries a [`CloseExpect`].
//!
//! Every hand-made message is decoded here with prost before it is used: an interior frame must
//! decode to exactly the request it stands for, an undecodable one must fail. So a mistake in
//! this file cannot pass for a broker bug.

use bytes::Bytes;
use eddy_protocol::ErrorCode;
use eddy_protocol::v1::{self, Request, Response, request, response};
use eddy_storage::batch::header;
use prost::Message;

use crate::generate::Rng;

/// What the frames are aimed at: a broker holding one known topic.
#[derive(Debug, Clone)]
pub struct Target {
    pub max_frame_bytes: u32,
    pub topic: String,
    /// Per partition of `topic`: the offset the next record gets. No hostile frame may move it.
    pub next_offsets: Vec<u64>,
    /// Per partition: the stored bytes of the batch at offset 0.
    pub first_batches: Vec<Vec<u8>>,
    /// A valid batch, never appended; corruptions start from it.
    pub spare_batch: Vec<u8>,
}

/// One frame (length prefix included) and what the broker owes for it.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub kind: &'static str,
    pub bytes: Vec<u8>,
    pub expect: Expect,
}

/// The answer an interior frame must get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// No answer at all (produce with acks = none).
    Nothing,
    /// A request-level error with this code and no body.
    Error(ErrorCode),
    /// Metadata in which the target topic's partitions are where they were.
    TargetMetadata,
    /// The handshake answer, with the target's frame limit.
    ApiVersions,
    /// Exactly the target topic.
    TopicNames,
    /// Per-partition produce results, in request order.
    Produce(Vec<(String, u32, ErrorCode)>),
    /// Per-partition fetch results, in request order.
    Fetch(Vec<(String, u32, FetchOutcome)>),
    /// Per-partition list-offsets results, in request order.
    ListOffsets(Vec<(String, u32, OffsetsOutcome)>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchOutcome {
    Error(ErrorCode),
    /// Records that begin with the partition's first stored batch.
    FirstBatch,
    /// No records, no error (the offset is the partition's end).
    Empty,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetsOutcome {
    Error(ErrorCode),
    Offset(u64),
    /// An `OffsetSpec` value the protocol does not define. docs/protocol.md promises
    /// `MALFORMED_REQUEST` for unknown enum values; the broker reads it as `LATEST`. Either is
    /// accepted (and counted), anything else is not.
    UnknownSpec {
        latest: u64,
    },
}

/// What happens on the connection after a closing frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseExpect {
    /// One error frame with correlation id 0 and this code, then a clean close.
    ErrorThenClose(ErrorCode),
    /// A clean close with nothing sent.
    SilentClose,
    /// Unknown in advance (random bytes that happen to decode as requests): any answers, then
    /// a close; a correlation-id-0 error must be FRAME_TOO_LARGE or MALFORMED_REQUEST.
    Anything,
}

/// How a closing frame is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Written, then the client waits for the answer and the close.
    Send,
    /// Written, then the client shuts down its sending side and waits for the close.
    SendThenShutdown,
}

/// The last frame of a connection.
#[derive(Debug, Clone)]
pub struct Closing {
    pub kind: &'static str,
    pub bytes: Vec<u8>,
    pub delivery: Delivery,
    pub expect: CloseExpect,
}

// ---- protobuf by hand -------------------------------------------------------------------------

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const FIXED32: u8 = 5;

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_key(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wire_type));
}

fn put_len(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(out, field, LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A length prefix and `body`.
pub fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// 0 to 3 fields with numbers no message of the protocol uses, of every wire type.
fn unknown_fields(rng: &mut Rng) -> Vec<u8> {
    const NUMBERS: [u32; 6] = [2, 7, 9, 77, 1000, 536_870_911];
    let mut out = Vec::new();
    for _ in 0..rng.below(4) {
        let field = NUMBERS[rng.below(NUMBERS.len() as u64) as usize];
        match rng.below(5) {
            0 => {
                put_key(&mut out, field, VARINT);
                put_varint(&mut out, rng.next_u64());
            }
            1 => {
                put_key(&mut out, field, FIXED64);
                out.extend_from_slice(&rng.next_u64().to_le_bytes());
            }
            2 => {
                put_key(&mut out, field, FIXED32);
                out.extend_from_slice(&(rng.next_u64() as u32).to_le_bytes());
            }
            3 => put_len(&mut out, field, &rng.bytes(32)),
            _ => {
                put_key(&mut out, field, START_GROUP);
                put_key(&mut out, 3, VARINT);
                put_varint(&mut out, rng.next_u64());
                put_key(&mut out, field, END_GROUP);
            }
        }
    }
    out
}

/// Encodes `request`, with unknown fields appended one time in three, and checks that it
/// decodes back to `request`.
fn encode_checked(rng: &mut Rng, request: &Request) -> Vec<u8> {
    let mut body = request.encode_to_vec();
    if rng.one_in(3) {
        body.extend_from_slice(&unknown_fields(rng));
    }
    let decoded = Request::decode(&body[..]).expect("a generated request decodes");
    assert_eq!(&decoded, request, "a generated request decodes to itself");
    body
}

fn outgoing(kind: &'static str, body: &[u8], expect: Expect) -> Outgoing {
    Outgoing { kind, bytes: framed(body), expect }
}

// ---- interior frames --------------------------------------------------------------------------

/// One frame the broker must answer (or, for acks = none, silently take) without closing the
/// connection.
pub fn interior(rng: &mut Rng, target: &Target, id: u64) -> Outgoing {
    match rng.below(100) {
        0..8 => no_body(rng, id),
        8..16 => metadata_with_unknown_fields(rng, target, id),
        16..24 => produce_with_bad_acks(rng, target, id),
        24..44 => produce_bad_batches(rng, target, id, false),
        44..48 => produce_bad_batches(rng, target, id, true),
        48..60 => fetch_mixed(rng, target, id),
        60..66 => api_versions(rng, id),
        66..76 => create_topic_refused(rng, target, id),
        76..82 => unknown_topic_admin(rng, id),
        82..94 => list_offsets_mixed(rng, target, id),
        _ => {
            let request = Request { correlation_id: id, body: Some(list_topics()) };
            outgoing("list_topics", &encode_checked(rng, &request), Expect::TopicNames)
        }
    }
}

fn list_topics() -> request::Body {
    request::Body::ListTopics(v1::ListTopicsRequest {})
}

fn no_body(rng: &mut Rng, id: u64) -> Outgoing {
    let request = Request { correlation_id: id, body: None };
    outgoing("no_body", &encode_checked(rng, &request), Expect::Error(ErrorCode::MalformedRequest))
}

/// A metadata request with unknown fields inside the body as well as around it.
fn metadata_with_unknown_fields(rng: &mut Rng, target: &Target, id: u64) -> Outgoing {
    let inner = v1::MetadataRequest { topics: vec![target.topic.clone()] };
    let mut inner_bytes = inner.encode_to_vec();
    inner_bytes.extend_from_slice(&unknown_fields(rng));
    let mut body = unknown_fields(rng);
    put_key(&mut body, 1, VARINT);
    put_varint(&mut body, id);
    body.extend_from_slice(&unknown_fields(rng));
    put_len(&mut body, 11, &inner_bytes);
    body.extend_from_slice(&unknown_fields(rng));
    let expected = Request { correlation_id: id, body: Some(request::Body::Metadata(inner)) };
    let decoded = Request::decode(&body[..]).expect("metadata with unknown fields decodes");
    assert_eq!(decoded, expected, "metadata with unknown fields decodes to itself");
    outgoing("metadata_unknown_fields", &body, Expect::TargetMetadata)
}

/// A valid batch for a real partition, but an acks value the protocol does not define. If the
/// broker appended it anyway, the partition's end would move.
fn produce_with_bad_acks(rng: &mut Rng, target: &Target, id: u64) -> Outgoing {
    const BAD_ACKS: [i32; 6] = [3, 7, 99, 1000, -1, i32::MAX];
    let acks = BAD_ACKS[rng.below(BAD_ACKS.len() as u64) as usize];
    let partition = rng.below(target.next_offsets.len() as u64) as u32;
    let produce = v1::ProduceRequest {
        acks,
        topics: vec![v1::ProduceTopic {
            topic: target.topic.clone(),
            partitions: vec![v1::ProducePartition {
                partition,
                batch: Bytes::from(target.spare_batch.clone()),
            }],
        }],
    };
    let request = Request { correlation_id: id, body: Some(request::Body::Produce(produce)) };
    let body = encode_checked(rng, &request);
    outgoing("produce_bad_acks", &body, Expect::Error(ErrorCode::MalformedRequest))
}

/// A batch that fails the broker's checks, however it was damaged.
pub fn corrupt_batch(rng: &mut Rng, valid: &[u8]) -> Vec<u8> {
    let mut batch = valid.to_vec();
    match rng.below(9) {
        // Any byte from the header checksum on is covered by one of the two checksums (the
        // base offset in bytes 0..8 is not, so it is left alone).
        0 | 1 => {
            let at = 8 + rng.below(batch.len() as u64 - 8) as usize;
            batch[at] ^= 1 + rng.below(255) as u8;
        }
        2 => batch.truncate(rng.below(batch.len() as u64) as usize),
        3 => {
            batch.extend_from_slice(&rng.bytes(15));
            batch.push(rng.next_u64() as u8);
        }
        4 => {
            batch = rng.bytes(200);
            batch.push(0);
        }
        // Checksums recomputed over a header that lies about the records.
        5 => reseal_u32(&mut batch, header::RECORD_COUNT, |n| {
            n.wrapping_add(1 + rng.below(5) as u32)
        }),
        6 => reseal_u32(&mut batch, header::RECORD_COUNT, |_| 0),
        7 => reseal_u32(&mut batch, header::LAST_OFFSET_DELTA, |d| d.wrapping_add(1)),
        _ => {
            batch[header::VERSION] = 2 + rng.below(250) as u8;
            header::seal_checksums(&mut batch);
        }
    }
    assert!(
        eddy_storage::batch::validate_for_append(&batch).is_err(),
        "a corrupted batch is still valid: {batch:?}"
    );
    batch
}

fn reseal_u32(batch: &mut [u8], at: usize, change: impl FnOnce(u32) -> u32) {
    let old = u32::from_le_bytes([batch[at], batch[at + 1], batch[at + 2], batch[at + 3]]);
    batch[at..at + 4].copy_from_slice(&change(old).to_le_bytes());
    header::seal_checksums(batch);
}

/// One produce mixing corrupt batches for real partitions with valid batches for partitions
/// and topics that do not exist.
fn produce_bad_batches(rng: &mut Rng, target: &Target, id: u64, acks_none: bool) -> Outgoing {
    let partitions = target.next_offsets.len() as u32;
    let mut real = Vec::new();
    let mut expected = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let partition = rng.below(u64::from(partitions)) as u32;
        let batch = corrupt_batch(rng, &target.spare_batch);
        real.push(v1::ProducePartition { partition, batch: Bytes::from(batch) });
        expected.push((target.topic.clone(), partition, ErrorCode::InvalidBatch));
    }
    if rng.one_in(2) {
        let partition = partitions + rng.below(u64::from(u32::MAX - partitions)) as u32;
        let batch = Bytes::from(target.spare_batch.clone());
        real.push(v1::ProducePartition { partition, batch });
        expected.push((target.topic.clone(), partition, ErrorCode::UnknownPartition));
    }
    let mut topics = vec![v1::ProduceTopic { topic: target.topic.clone(), partitions: real }];
    if rng.one_in(2) {
        let topic = format!("no-such-topic-{}", rng.below(1000));
        let batch = Bytes::from(target.spare_batch.clone());
        topics.push(v1::ProduceTopic {
            topic: topic.clone(),
            partitions: vec![v1::ProducePartition { partition: 0, batch }],
        });
        expected.push((topic, 0, ErrorCode::UnknownTopic));
    }
    let acks = if acks_none {
        v1::Acks::None
    } else if rng.one_in(4) {
        v1::Acks::Durable
    } else {
        v1::Acks::Written
    };
    let produce = v1::ProduceRequest { acks: acks as i32, topics };
    let request = Request { correlation_id: id, body: Some(request::Body::Produce(produce)) };
    let body = encode_checked(rng, &request);
    if acks_none {
        outgoing("produce_acks_none_bad_batches", &body, Expect::Nothing)
    } else {
        outgoing("produce_bad_batches", &body, Expect::Produce(expected))
    }
}

/// A fetch mixing a real read (first, so it always gets data) with offsets out of range,
/// partitions and topics that do not exist, and the partition's end.
fn fetch_mixed(rng: &mut Rng, target: &Target, id: u64) -> Outgoing {
    let partitions = target.next_offsets.len() as u32;
    let mut own = Vec::new();
    let mut expected = Vec::new();
    let with_data = rng.one_in(2);
    if with_data {
        let partition = rng.below(u64::from(partitions)) as u32;
        let max_bytes = rng.below(100_000) as u32;
        own.push(v1::FetchPartition { partition, offset: 0, max_bytes });
        expected.push((target.topic.clone(), partition, FetchOutcome::FirstBatch));
    }
    for _ in 0..1 + rng.below(3) {
        let partition = rng.below(u64::from(partitions + 1)) as u32;
        let next = target.next_offsets.get(partition as usize).copied();
        let (offset, outcome) = match (next, rng.below(3)) {
            (None, _) => (rng.below(10), FetchOutcome::Error(ErrorCode::UnknownPartition)),
            (Some(next), 0) => (next, FetchOutcome::Empty),
            (Some(next), 1) => {
                (next + 1 + rng.below(1000), FetchOutcome::Error(ErrorCode::OffsetOutOfRange))
            }
            (Some(_), _) => {
                (u64::MAX - rng.below(10), FetchOutcome::Error(ErrorCode::OffsetOutOfRange))
            }
        };
        own.push(v1::FetchPartition { partition, offset, max_bytes: rng.below(1 << 20) as u32 });
        expected.push((target.topic.clone(), partition, outcome));
    }
    let mut topics = vec![v1::FetchTopic { topic: target.topic.clone(), partitions: own }];
    if rng.one_in(2) {
        let topic = format!("no-such-topic-{}", rng.below(1000));
        topics.push(v1::FetchTopic {
            topic: topic.clone(),
            partitions: vec![v1::FetchPartition { partition: 0, offset: 0, max_bytes: 0 }],
        });
        expected.push((topic, 0, FetchOutcome::Error(ErrorCode::UnknownTopic)));
    }
    // A fetch that finds data answers at once whatever its max_wait; one that finds none would
    // wait, so it asks for no wait at all. A fetch with data keeps a response budget larger
    // than one batch: once the budget is spent the broker reports later partitions without
    // reading them, which hides OFFSET_OUT_OF_RANGE (see the ignored regression test in
    // broker_bad_input.rs).
    let (max_wait_ms, min_bytes, max_bytes) = if with_data {
        (
            rng.below(30_000) as u32,
            rng.below(2) as u32,
            [0, 1 << 20, u32::MAX][rng.below(3) as usize],
        )
    } else {
        (0, rng.below(1 << 20) as u32, rng.below(1 << 20) as u32)
    };
    let fetch = v1::FetchRequest { max_wait_ms, min_bytes, max_bytes, topics };
    let request = Request { correlation_id: id, body: Some(request::Body::Fetch(fetch)) };
    outgoing("fetch_mixed", &encode_checked(rng, &request), Expect::Fetch(expected))
}

fn api_versions(rng: &mut Rng, id: u64) -> Outgoing {
    let (min_version, max_version, expect) = match rng.below(4) {
        0 => (1, 1 + rng.below(5) as u32, Expect::ApiVersions),
        1 => (
            2 + rng.below(100) as u32,
            2 + rng.below(100) as u32,
            Expect::Error(ErrorCode::MalformedRequest),
        ),
        2 => (0, 0, Expect::Error(ErrorCode::MalformedRequest)),
        _ => (5, 1, Expect::Error(ErrorCode::MalformedRequest)),
    };
    let client_name = String::from_utf8_lossy(&rng.bytes(40)).into_owned();
    let body = request::Body::ApiVersions(v1::ApiVersionsRequest {
        min_version,
        max_version,
        client_name,
    });
    let request = Request { correlation_id: id, body: Some(body) };
    outgoing("api_versions", &encode_checked(rng, &request), expect)
}

/// A create_topic the broker must refuse: a bad name, a bad setting, or the target's name.
/// Names never collide with anything the tests create, so a topic created by mistake shows.
fn create_topic_refused(rng: &mut Rng, target: &Target, id: u64) -> Outgoing {
    const BAD_NAMES: [&str; 9] =
        ["", ".", "..", "../escape", "a/b", "with space", "tab\there", "ünïcode", "nul\0byte"];
    let valid_config = v1::TopicConfig { partitions: Some(1), ..Default::default() };
    let (name, config, code) = match rng.below(4) {
        0 => {
            let name = BAD_NAMES[rng.below(BAD_NAMES.len() as u64) as usize].to_string();
            (name, Some(valid_config), ErrorCode::InvalidConfig)
        }
        1 => ("x".repeat(250 + rng.below(1000) as usize), None, ErrorCode::InvalidConfig),
        2 => {
            let name = if rng.one_in(4) {
                target.topic.clone()
            } else {
                format!("hostile-{}", rng.below(1000))
            };
            (name, Some(bad_topic_config(rng)), ErrorCode::InvalidConfig)
        }
        _ => (target.topic.clone(), Some(valid_config), ErrorCode::TopicAlreadyExists),
    };
    let body = request::Body::CreateTopic(v1::CreateTopicRequest { name, config });
    let request = Request { correlation_id: id, body: Some(body) };
    outgoing("create_topic_refused", &encode_checked(rng, &request), Expect::Error(code))
}

fn bad_topic_config(rng: &mut Rng) -> v1::TopicConfig {
    let mut config = v1::TopicConfig::default();
    match rng.below(5) {
        0 => config.partitions = Some([0, 4097, u32::MAX][rng.below(3) as usize]),
        1 => config.cleanup = Some([2, 99, -1][rng.below(3) as usize]),
        2 => {
            let policy = Some(v1::flush_policy::Policy::IntervalMs(0));
            config.flush = Some(v1::FlushPolicy { policy });
        }
        3 => config.segment_bytes = Some([0, 1, 1023, u64::MAX][rng.below(4) as usize]),
        _ => {
            config.partitions = Some(1);
            config.segment_bytes = Some(0);
        }
    }
    config
}

/// describe_topic or delete_topic of names that do not exist, including path-like ones.
fn unknown_topic_admin(rng: &mut Rng, id: u64) -> Outgoing {
    const NAMES: [&str; 5] = ["missing", "../known", "..", "/etc", "topics/known"];
    let name = format!(
        "{}{}",
        NAMES[rng.below(NAMES.len() as u64) as usize],
        ["", "-1", "-x"][rng.below(3) as usize]
    );
    let body = if rng.one_in(2) {
        request::Body::DescribeTopic(v1::DescribeTopicRequest { name })
    } else {
        request::Body::DeleteTopic(v1::DeleteTopicRequest { name })
    };
    let request = Request { correlation_id: id, body: Some(body) };
    outgoing(
        "unknown_topic_admin",
        &encode_checked(rng, &request),
        Expect::Error(ErrorCode::UnknownTopic),
    )
}

fn list_offsets_mixed(rng: &mut Rng, target: &Target, id: u64) -> Outgoing {
    const BAD_SPECS: [i32; 4] = [3, 99, -1, i32::MIN];
    let partitions = target.next_offsets.len() as u32;
    let mut own = Vec::new();
    let mut expected = Vec::new();
    for _ in 0..1 + rng.below(4) {
        let partition = rng.below(u64::from(partitions) + 1) as u32;
        let next = target.next_offsets.get(partition as usize).copied();
        let (spec, outcome) = match (next, rng.below(3)) {
            (None, _) => {
                (v1::OffsetSpec::Latest as i32, OffsetsOutcome::Error(ErrorCode::UnknownPartition))
            }
            (Some(next), 0) => (v1::OffsetSpec::Latest as i32, OffsetsOutcome::Offset(next)),
            (Some(_), 1) => (v1::OffsetSpec::Earliest as i32, OffsetsOutcome::Offset(0)),
            (Some(latest), _) => (
                BAD_SPECS[rng.below(BAD_SPECS.len() as u64) as usize],
                OffsetsOutcome::UnknownSpec { latest },
            ),
        };
        own.push(v1::ListOffsetsPartition { partition, spec, timestamp_ms: rng.next_u64() as i64 });
        expected.push((target.topic.clone(), partition, outcome));
    }
    let mut topics = vec![v1::ListOffsetsTopic { topic: target.topic.clone(), partitions: own }];
    if rng.one_in(3) {
        let topic = format!("no-such-topic-{}", rng.below(1000));
        let partitions = vec![v1::ListOffsetsPartition { partition: 0, spec: 0, timestamp_ms: 0 }];
        topics.push(v1::ListOffsetsTopic { topic: topic.clone(), partitions });
        expected.push((topic, 0, OffsetsOutcome::Error(ErrorCode::UnknownTopic)));
    }
    let body = request::Body::ListOffsets(v1::ListOffsetsRequest { topics });
    let request = Request { correlation_id: id, body: Some(body) };
    outgoing("list_offsets_mixed", &encode_checked(rng, &request), Expect::ListOffsets(expected))
}

// ---- closing frames ---------------------------------------------------------------------------

/// One frame after which the broker must close the connection.
pub fn closing(rng: &mut Rng, target: &Target) -> Closing {
    match rng.below(100) {
        0..30 => too_large(rng, target),
        30..58 => undecodable(rng),
        58..78 => truncated(rng, target),
        78..89 => random_raw(rng, target),
        _ => random_body(rng),
    }
}

/// A length prefix over the limit, alone: the broker must refuse it before reading on.
fn too_large(rng: &mut Rng, target: &Target) -> Closing {
    let max = target.max_frame_bytes;
    let len = match rng.below(3) {
        0 => u32::MAX,
        1 => max + 1,
        _ => max + 1 + rng.below(u64::from(u32::MAX - max)) as u32,
    };
    Closing {
        kind: "frame_too_large",
        bytes: len.to_le_bytes().to_vec(),
        delivery: Delivery::Send,
        expect: CloseExpect::ErrorThenClose(ErrorCode::FrameTooLarge),
    }
}

/// A frame whose message is not a `Request`: checked here to fail decoding.
fn undecodable(rng: &mut Rng) -> Closing {
    let mut body = Vec::new();
    if rng.one_in(2) {
        put_key(&mut body, 1, VARINT);
        put_varint(&mut body, 1 + rng.below(1000));
    }
    let kind = match rng.below(14) {
        0 => {
            // A message field (api_versions) sent as a varint.
            put_key(&mut body, 10, VARINT);
            put_varint(&mut body, 1);
            "message_as_varint"
        }
        1 => {
            // A string where a message (ProduceRequest) is expected.
            put_len(&mut body, 16, b"this is a string, not a ProduceRequest");
            "string_as_message"
        }
        2 => {
            // A string where a nested message (FetchTopic) is expected.
            let mut fetch = Vec::new();
            put_len(&mut fetch, 4, b"orders");
            put_len(&mut body, 17, &fetch);
            "string_as_nested_message"
        }
        3 => {
            // correlation_id (a varint) sent length-delimited.
            put_len(&mut body, 1, b"abc");
            "varint_as_bytes"
        }
        4 => {
            // A topic name that is not UTF-8.
            let mut create = Vec::new();
            put_len(&mut create, 1, &[0xff, 0xfe, 0xfd, b'x']);
            put_len(&mut body, 12, &create);
            "invalid_utf8_string"
        }
        5 => {
            // A length-delimited field longer than the frame.
            put_key(&mut body, 16, LEN);
            put_varint(&mut body, 1000 + rng.below(1 << 20));
            body.extend_from_slice(&rng.bytes(20));
            "field_past_frame_end"
        }
        6 => {
            // A field length of 2^64 - 1.
            put_key(&mut body, 17, LEN);
            put_varint(&mut body, u64::MAX);
            "huge_field_length"
        }
        7 => {
            // A varint that never ends within ten bytes.
            put_key(&mut body, 1, VARINT);
            body.extend_from_slice(&[0xff; 11]);
            "overlong_varint"
        }
        8 => {
            body.push(0x00);
            "field_number_zero"
        }
        9 => {
            put_key(&mut body, 2 + rng.below(8) as u32, 6 + rng.below(2) as u8);
            "invalid_wire_type"
        }
        10 => {
            // A record batch (bytes) sent as a varint, three messages deep.
            let mut partition = Vec::new();
            put_key(&mut partition, 2, VARINT);
            put_varint(&mut partition, 5);
            let mut topic = Vec::new();
            put_len(&mut topic, 2, &partition);
            let mut produce = Vec::new();
            put_len(&mut produce, 2, &topic);
            put_len(&mut body, 16, &produce);
            "bytes_as_varint_nested"
        }
        11 => {
            // An enum (acks) sent as fixed64.
            let mut produce = Vec::new();
            put_key(&mut produce, 1, FIXED64);
            produce.extend_from_slice(&99u64.to_le_bytes());
            put_len(&mut body, 16, &produce);
            "enum_as_fixed64"
        }
        12 => {
            // A group that is never closed.
            put_key(&mut body, 5, START_GROUP);
            put_key(&mut body, 1, VARINT);
            put_varint(&mut body, 1);
            "unterminated_group"
        }
        _ => {
            // A group closed by the wrong field number.
            put_key(&mut body, 5, START_GROUP);
            put_key(&mut body, 6, END_GROUP);
            "mismatched_group"
        }
    };
    assert!(Request::decode(&body[..]).is_err(), "{kind} frame decodes: {body:?}");
    Closing {
        kind,
        bytes: framed(&body),
        delivery: Delivery::Send,
        expect: CloseExpect::ErrorThenClose(ErrorCode::MalformedRequest),
    }
}

/// A valid request cut short (possibly inside its length prefix), then end-of-file.
fn truncated(rng: &mut Rng, target: &Target) -> Closing {
    let topics = (0..rng.below(20)).map(|i| format!("{}-{i}", target.topic)).collect();
    let request = Request {
        correlation_id: rng.next_u64(),
        body: Some(request::Body::Metadata(v1::MetadataRequest { topics })),
    };
    let mut bytes = framed(&request.encode_to_vec());
    bytes.truncate(rng.below(bytes.len() as u64) as usize);
    Closing {
        kind: "truncated",
        bytes,
        delivery: Delivery::SendThenShutdown,
        expect: CloseExpect::SilentClose,
    }
}

/// Random bytes, length prefix included: predicted where the prefix alone decides.
fn random_raw(rng: &mut Rng, target: &Target) -> Closing {
    let mut bytes = rng.bytes(512);
    bytes.push(rng.next_u64() as u8);
    let expect = match bytes.get(..4) {
        None => CloseExpect::SilentClose,
        Some(prefix) => {
            let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
            if len > target.max_frame_bytes {
                CloseExpect::ErrorThenClose(ErrorCode::FrameTooLarge)
            } else if bytes.len() - 4 < len as usize {
                CloseExpect::SilentClose
            } else {
                CloseExpect::Anything
            }
        }
    };
    Closing { kind: "random_raw", bytes, delivery: Delivery::SendThenShutdown, expect }
}

/// Random bytes in a well-formed frame: predicted when they do not decode.
fn random_body(rng: &mut Rng) -> Closing {
    let mut body = rng.bytes(255);
    body.push(rng.next_u64() as u8);
    let expect = if Request::decode(&body[..]).is_err() {
        CloseExpect::ErrorThenClose(ErrorCode::MalformedRequest)
    } else {
        CloseExpect::Anything
    };
    Closing {
        kind: "random_body",
        bytes: framed(&body),
        delivery: Delivery::SendThenShutdown,
        expect,
    }
}

// ---- checking answers -------------------------------------------------------------------------

/// Holds `response` to `expect`; the error says what differs.
pub fn check(response: &Response, expect: &Expect, target: &Target) -> Result<CheckNote, String> {
    let error = response.error.as_ref().map(v1::Error::error_code);
    let body = response.body.as_ref();
    let mismatch = || Err(format!("expected {expect:?}, got {response:?}"));
    match (expect, error, body) {
        (Expect::Nothing, _, _) => mismatch(),
        (Expect::Error(code), Some(got), None) if got == *code => Ok(CheckNote::Plain),
        (Expect::TargetMetadata, None, Some(response::Body::Metadata(m))) => {
            check_metadata(m, target)
        }
        (Expect::ApiVersions, None, Some(response::Body::ApiVersions(a))) => {
            let frame_limit = a.limits.as_ref().map(|l| l.max_frame_bytes);
            if a.version == 1 && frame_limit == Some(target.max_frame_bytes) {
                Ok(CheckNote::Plain)
            } else {
                mismatch()
            }
        }
        (Expect::TopicNames, None, Some(response::Body::ListTopics(l))) => {
            if l.names == [target.topic.clone()] { Ok(CheckNote::Plain) } else { mismatch() }
        }
        (Expect::Produce(want), None, Some(response::Body::Produce(p))) => {
            let got: Vec<_> = p
                .topics
                .iter()
                .flat_map(|t| {
                    t.partitions
                        .iter()
                        .map(|r| (t.topic.clone(), r.partition, code_of(r.error.as_ref())))
                })
                .collect();
            if &got == want { Ok(CheckNote::Plain) } else { mismatch() }
        }
        (Expect::Fetch(want), None, Some(response::Body::Fetch(f))) => check_fetch(f, want, target),
        (Expect::ListOffsets(want), None, Some(response::Body::ListOffsets(l))) => {
            check_list_offsets(l, want)
        }
        _ => mismatch(),
    }
}

/// Something [`check`] saw that the caller may want to count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckNote {
    Plain,
    /// `n` unknown `OffsetSpec` values were answered as LATEST, `m` with MALFORMED_REQUEST.
    UnknownSpecs {
        as_latest: u64,
        refused: u64,
    },
}

fn code_of(error: Option<&v1::Error>) -> ErrorCode {
    error.map_or(ErrorCode::None, v1::Error::error_code)
}

fn check_metadata(m: &v1::MetadataResponse, target: &Target) -> Result<CheckNote, String> {
    let [topic] = &m.topics[..] else { return Err(format!("metadata for one topic holds {m:?}")) };
    let offsets: Vec<_> =
        topic.partitions.iter().map(|p| (p.partition, p.log_start_offset, p.next_offset)).collect();
    let want: Vec<_> =
        target.next_offsets.iter().enumerate().map(|(p, &next)| (p as u32, 0, next)).collect();
    if topic.name == target.topic && topic.error.is_none() && offsets == want {
        Ok(CheckNote::Plain)
    } else {
        Err(format!("metadata moved: want (partition, start, next) {want:?}, got {m:?}"))
    }
}

fn check_fetch(
    f: &v1::FetchResponse,
    want: &[(String, u32, FetchOutcome)],
    target: &Target,
) -> Result<CheckNote, String> {
    let got: Vec<_> =
        f.topics.iter().flat_map(|t| t.partitions.iter().map(move |r| (&t.topic, r))).collect();
    if got.len() != want.len() {
        return Err(format!(
            "fetch answered {} partitions for {} asked: {f:?}",
            got.len(),
            want.len()
        ));
    }
    for ((topic, result), (want_topic, want_partition, outcome)) in got.into_iter().zip(want) {
        let at = format!("fetch {want_topic}-{want_partition}");
        if topic != want_topic || result.partition != *want_partition {
            return Err(format!("{at}: answered for {topic}-{}", result.partition));
        }
        let code = code_of(result.error.as_ref());
        let ok = match outcome {
            FetchOutcome::Error(want_code) => code == *want_code && result.records.is_empty(),
            FetchOutcome::Empty => {
                code == ErrorCode::None
                    && result.records.is_empty()
                    && result.high_watermark == target.next_offsets[*want_partition as usize]
            }
            FetchOutcome::FirstBatch => {
                let first = &target.first_batches[*want_partition as usize];
                code == ErrorCode::None
                    && result.records.starts_with(first)
                    && result.high_watermark == target.next_offsets[*want_partition as usize]
                    && result.log_start_offset == 0
            }
        };
        if !ok {
            return Err(format!(
                "{at}: expected {outcome:?}, got error {code:?}, high watermark {}, {} record bytes",
                result.high_watermark,
                result.records.len()
            ));
        }
    }
    Ok(CheckNote::Plain)
}

fn check_list_offsets(
    l: &v1::ListOffsetsResponse,
    want: &[(String, u32, OffsetsOutcome)],
) -> Result<CheckNote, String> {
    let got: Vec<_> =
        l.topics.iter().flat_map(|t| t.partitions.iter().map(move |r| (&t.topic, r))).collect();
    if got.len() != want.len() {
        return Err(format!(
            "list_offsets answered {} partitions for {} asked: {l:?}",
            got.len(),
            want.len()
        ));
    }
    let (mut as_latest, mut refused) = (0, 0);
    for ((topic, result), (want_topic, want_partition, outcome)) in got.into_iter().zip(want) {
        let code = code_of(result.error.as_ref());
        let ok = topic == want_topic
            && result.partition == *want_partition
            && match *outcome {
                OffsetsOutcome::Error(want_code) => code == want_code,
                OffsetsOutcome::Offset(offset) => {
                    code == ErrorCode::None && result.offset == offset
                }
                OffsetsOutcome::UnknownSpec { latest } => {
                    if code == ErrorCode::MalformedRequest {
                        refused += 1;
                        true
                    } else {
                        as_latest += 1;
                        code == ErrorCode::None && result.offset == latest
                    }
                }
            };
        if !ok {
            return Err(format!(
                "list_offsets {want_topic}-{want_partition}: expected {outcome:?}, got {topic}: {result:?}"
            ));
        }
    }
    Ok(CheckNote::UnknownSpecs { as_latest, refused })
}
