//! Hostile input on the Kafka listener: more than 100,000 random and mutated Kafka frames —
//! huge and negative sizes, truncated requests, wrong versions, unknown API keys, bad varints,
//! batches with a bad CRC-32C, flipped bytes, random garbage — over thousands of connections,
//! several at a time. The broker must answer or close each connection (never hang), keep
//! serving, keep its memory bounded, and leave the data it already held byte for byte as it
//! was. The seed is printed; `EDDY_TEST_SEED=N` replays a run.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use eddy_storage::batch::{BatchBuilder, Record};
use eddy_tests::broker::BrokerProcess;
use eddy_tests::generate::{Rng, batch_for_seed};
use eddy_tests::kafka_wire::{frame, read_answer, text};
use eddy_tests::raw_client::RawClient;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, HeaderVersion};

const FRAMES: u64 = 100_000;
const THREADS: u64 = 8;
/// Longest a connection may take to be answered or closed: a mutated fetch may ask to wait
/// up to the broker's longest long poll (30 s).
const ANSWER_DEADLINE: Duration = Duration::from_secs(40);
/// The broker's resident memory may not pass this during the attack.
const RSS_LIMIT: u64 = 512 << 20;

fn batch(seed: u64) -> Bytes {
    let mut b = BatchBuilder::new();
    b.push(Record {
        timestamp: seed as i64,
        key: Some(b"k"),
        value: Some(b"scratch value"),
        headers: &[],
    });
    b.build()
}

fn produce(topic: &str, records: Bytes) -> ProduceRequest {
    let partition =
        produce_request::PartitionProduceData::default().with_index(0).with_records(Some(records));
    let topic = produce_request::TopicProduceData::default()
        .with_name(TopicName(text(topic)))
        .with_partition_data(vec![partition]);
    ProduceRequest::default().with_acks(1).with_timeout_ms(1000).with_topic_data(vec![topic])
}

/// A well-formed request of a random kind and version, aimed at the scratch topic.
fn valid(rng: &mut Rng, correlation: i32, mutable: bool) -> (Vec<u8>, bool) {
    let scratch = TopicName(text("scratch"));
    // A JoinGroup may rightly wait for a whole rebalance (up to the rebalance timeout it
    // names), so only well-formed ones, which do not, are sent.
    let kinds = if mutable { 7 } else { 8 };
    match rng.below(kinds) {
        0 => (
            frame(
                ApiKey::ApiVersions,
                rng.below(4) as i16,
                correlation,
                &ApiVersionsRequest::default(),
            ),
            false,
        ),
        1 => {
            let topic = metadata_request::MetadataRequestTopic::default().with_name(Some(scratch));
            let r = MetadataRequest::default()
                .with_topics(Some(vec![topic]))
                .with_allow_auto_topic_creation(false);
            (frame(ApiKey::Metadata, 4 + rng.below(9) as i16, correlation, &r), false)
        }
        2 => (
            frame(
                ApiKey::Produce,
                3 + rng.below(9) as i16,
                correlation,
                &produce("scratch", batch(rng.next_u64())),
            ),
            true,
        ),
        3 => {
            let p = fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(rng.below(50) as i64)
                .with_partition_max_bytes(1 << 16);
            let t =
                fetch_request::FetchTopic::default().with_topic(scratch).with_partitions(vec![p]);
            let r = FetchRequest::default()
                .with_max_wait_ms(0)
                .with_max_bytes(1 << 20)
                .with_topics(vec![t])
                .with_session_epoch(-1);
            (frame(ApiKey::Fetch, 4 + rng.below(9) as i16, correlation, &r), false)
        }
        4 => {
            let p = list_offsets_request::ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-1);
            let t = list_offsets_request::ListOffsetsTopic::default()
                .with_name(scratch)
                .with_partitions(vec![p]);
            let r = ListOffsetsRequest::default().with_topics(vec![t]);
            (frame(ApiKey::ListOffsets, 1 + rng.below(6) as i16, correlation, &r), false)
        }
        7 => {
            let protocol = join_group_request::JoinGroupRequestProtocol::default()
                .with_name(text("range"))
                .with_metadata(Bytes::from_static(&[0, 1, 2]));
            let r = JoinGroupRequest::default()
                .with_group_id(GroupId(text("hostile-group")))
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(1_000)
                .with_protocol_type(text("consumer"))
                .with_protocols(vec![protocol]);
            // Version 4+ answers MEMBER_ID_REQUIRED at once, without joining a round.
            (frame(ApiKey::JoinGroup, 4 + rng.below(6) as i16, correlation, &r), false)
        }
        _ => {
            let r = FindCoordinatorRequest::default().with_key(text("hostile-group"));
            (frame(ApiKey::FindCoordinator, rng.below(4) as i16, correlation, &r), false)
        }
    }
}

/// One hostile frame: a valid request, or one mutated in one of the ways a broker meets.
fn hostile(rng: &mut Rng, correlation: i32) -> (&'static str, Vec<u8>) {
    let mutation = rng.below(11);
    let (mut f, is_produce) = valid(rng, correlation, mutation != 0);
    let body = 4..f.len();
    let kind = match mutation {
        0 => "valid",
        1 => {
            for _ in 0..1 + rng.below(4) {
                let at = body.start + rng.below(body.len() as u64) as usize;
                f[at] ^= 1 + rng.below(255) as u8;
            }
            "flipped bytes"
        }
        2 => {
            let keep = 4 + rng.below((f.len() - 4) as u64) as usize;
            f.truncate(keep);
            let size = (keep - 4) as i32;
            f[..4].copy_from_slice(&size.to_be_bytes());
            "truncated request"
        }
        3 => {
            // The size says more than is sent; the sender then stops.
            f.truncate(4 + rng.below((f.len() - 4) as u64) as usize);
            "size past the end"
        }
        4 => {
            let sizes =
                [i32::MAX, i32::MIN, -1, 0, 3, 1 << 30, (100 << 20) + rng.below(1 << 20) as i32];
            let size = sizes[rng.below(sizes.len() as u64) as usize];
            f[..4].copy_from_slice(&size.to_be_bytes());
            "huge or negative size"
        }
        5 => {
            let version = rng.next_u64() as i16;
            f[6..8].copy_from_slice(&version.to_be_bytes());
            "wrong version"
        }
        6 => {
            let key = [93i16, 200, 1000, i16::MAX, -1, i16::MIN][rng.below(6) as usize];
            f[4..6].copy_from_slice(&key.to_be_bytes());
            "unknown API key"
        }
        7 => {
            let at = 12 + rng.below((f.len() - 12) as u64) as usize;
            let run = 5 + rng.below(10) as usize;
            f.splice(at..at, std::iter::repeat_n(0xff, run));
            let size = (f.len() - 4) as i32;
            f[..4].copy_from_slice(&size.to_be_bytes());
            "bad varint"
        }
        8 if is_produce => {
            // Inside the last record: the batch CRC-32C no longer matches.
            let at = f.len() - 1 - rng.below(3) as usize;
            f[at] ^= 0x5a;
            "bad CRC-32C"
        }
        9 => {
            let mut garbage = rng.bytes(300);
            let size = garbage.len() as i32;
            garbage.splice(0..0, size.to_be_bytes());
            f = garbage;
            "random bytes"
        }
        _ => {
            // A length inside the request claims far more than the frame holds.
            let at = 12 + rng.below((f.len() - 12) as u64) as usize;
            let claim = [0x7f, 0xff, 0xff, 0xff];
            let end = (at + 4).min(f.len());
            f[at..end].copy_from_slice(&claim[..end - at]);
            "lying length"
        }
    };
    (kind, f)
}

/// Sends a few frames on one connection, stops writing, and reads until the broker closes.
/// Fails if the broker neither answers nor closes within the deadline.
fn attack_once(addr: SocketAddr, rng: &mut Rng, sent: &AtomicU64) -> Result<(), String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    let frames = 1 + rng.below(4);
    let mut kinds = Vec::new();
    for i in 0..frames {
        let (kind, bytes) = hostile(rng, i as i32);
        kinds.push(kind);
        // The broker may already have closed after an earlier frame: that is its right.
        if stream.write_all(&bytes).is_err() {
            break;
        }
        sent.fetch_add(1, Ordering::Relaxed);
    }
    let _ = stream.shutdown(Shutdown::Write);
    stream.set_read_timeout(Some(ANSWER_DEADLINE)).unwrap();
    let started = Instant::now();
    let mut sink = [0u8; 64 << 10];
    loop {
        match stream.read(&mut sink) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(()),
            Err(e) => {
                return Err(format!(
                    "after {kinds:?}: neither answered nor closed in {:?}: {e}",
                    started.elapsed()
                ));
            }
        }
    }
}

#[test]
fn hostile_kafka_frames_leave_the_broker_serving_and_the_data_intact() {
    let seed =
        std::env::var("EDDY_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
                as u64
        });
    eprintln!("kafka_bad_input: seed {seed} (EDDY_TEST_SEED={seed} replays it)");
    let dir = tempfile::tempdir().unwrap();
    // The known data carries old timestamps; retention must not be what changes it here.
    let mut broker =
        BrokerProcess::start(dir.path(), &[("EDDY_MAINTENANCE_INTERVAL_MS", "86400000")]);
    let kafka = broker.kafka_addr();

    // Data that must come through untouched, and the scratch topic the frames aim at.
    let mut native = RawClient::connect(broker.addr());
    native.create_topic("keep", 2);
    native.create_topic("scratch", 1);
    for p in 0..2 {
        for k in 0..20 {
            native.produce_ok(
                "keep",
                p,
                Bytes::from(batch_for_seed(seed ^ (u64::from(p) << 32 | k))),
            );
        }
    }
    let before: Vec<Vec<u8>> = (0..2).map(|p| native.fetch_all("keep", p, 0)).collect();
    let next_before = native.next_offset("keep", 0);

    let sent = Arc::new(AtomicU64::new(0));
    let peak = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let sent = sent.clone();
            std::thread::spawn(move || {
                let mut rng = Rng::new(seed ^ (t + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                while sent.load(Ordering::Relaxed) < FRAMES {
                    attack_once(kafka, &mut rng, &sent)?;
                }
                Ok::<(), String>(())
            })
        })
        .collect();
    while !workers.iter().all(|w| w.is_finished()) {
        peak.fetch_max(broker.rss_bytes().unwrap_or(0), Ordering::Relaxed);
        if !broker.is_running() {
            panic!("seed {seed}: the broker died; stderr:\n{}", broker.stderr());
        }
        std::thread::park_timeout(Duration::from_millis(50));
    }
    for w in workers {
        if let Err(e) = w.join().unwrap() {
            broker.kill9();
            panic!("seed {seed}: {e}\nbroker stderr:\n{}", broker.stderr());
        }
    }
    let peak = peak.load(Ordering::Relaxed);
    eprintln!(
        "kafka_bad_input: {} frames in {:?}, broker peak RSS {} MiB",
        sent.load(Ordering::Relaxed),
        started.elapsed(),
        peak >> 20
    );
    assert!(sent.load(Ordering::Relaxed) >= FRAMES);
    assert!(peak < RSS_LIMIT, "broker RSS reached {} MiB", peak >> 20);

    // Still serving: the data is as it was, and a Kafka produce and fetch work end to end.
    assert!(broker.is_running(), "the broker died; stderr:\n{}", broker.stderr());
    for (p, bytes) in before.iter().enumerate() {
        assert!(native.fetch_all("keep", p as u32, 0) == *bytes, "keep-{p} changed (seed {seed})");
    }
    let mut stream = TcpStream::connect(kafka).unwrap();
    stream.set_read_timeout(Some(ANSWER_DEADLINE)).unwrap();
    let records = batch(7);
    stream.write_all(&frame(ApiKey::Produce, 9, 1, &produce("keep", records.clone()))).unwrap();
    let answer = read_answer(&mut stream);
    let mut answer = answer;
    let header = ResponseHeader::decode(&mut answer, ProduceResponse::header_version(9)).unwrap();
    assert_eq!(header.correlation_id, 1);
    let decoded = ProduceResponse::decode(&mut answer, 9).unwrap();
    let partition = &decoded.responses[0].partition_responses[0];
    assert_eq!(partition.error_code, 0, "{decoded:?}");
    assert_eq!(partition.base_offset as u64, next_before, "appended right after the known data");
    let after = native.fetch_all("keep", 0, 0);
    assert!(after.starts_with(&before[0]), "keep-0 lost data");
    assert_eq!(
        after.len() - before[0].len(),
        records.len(),
        "exactly the one new batch was appended"
    );
}
