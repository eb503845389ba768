//! Interior frames: requests the broker must answer while keeping the connection open.

use super::wire::*;
use super::*;

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
            // Anything but the base offset and leader epoch, which the log writes itself.
            let mut at = 8 + rng.below(batch.len() as u64 - 8) as usize;
            if (header::LEADER_EPOCH..header::MAGIC).contains(&at) {
                at += 4;
            }
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
            batch[header::MAGIC] = 3 + rng.below(253) as u8;
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
    let old = u32::from_be_bytes([batch[at], batch[at + 1], batch[at + 2], batch[at + 3]]);
    batch[at..at + 4].copy_from_slice(&change(old).to_be_bytes());
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
    let fetch =
        v1::FetchRequest { max_wait_ms, min_bytes, max_bytes, topics, member: None, isolation: 0 };
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
    let body = request::Body::ListOffsets(v1::ListOffsetsRequest { topics, isolation: 0 });
    let request = Request { correlation_id: id, body: Some(body) };
    outgoing("list_offsets_mixed", &encode_checked(rng, &request), Expect::ListOffsets(expected))
}
