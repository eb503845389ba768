//! Long polls against a real `eddy serve`: a fetch parked on an empty partition is woken by the
//! append itself (not by a timer or by polling), and SIGTERM ends parked polls at once, exits 0
//! and keeps every acknowledged byte for the next start (as SIGKILL keeps a durable append).

use std::time::{Duration, Instant};

use bytes::Bytes;
use eddy_protocol::ErrorCode;
use eddy_protocol::v1::{self, Response, response};
use eddy_tests::broker::BrokerProcess;
use eddy_tests::generate::{batch_for_seed, batch_seed};
use eddy_tests::raw_client::{
    RawClient, error_code, fetch_request, metadata_request, produce_request, single_fetch_result,
    single_produce_result,
};

const ROUNDS: u64 = 20;
/// Long enough that an answer within it cannot be the poll timing out.
const MAX_WAIT_MS: u32 = 10_000;
const WAKE_LIMIT: Duration = Duration::from_secs(1);
const SEED: u64 = 0x10_9011;

/// Sends a long poll for `topic`-0 from `offset`, then a metadata request on the same
/// connection. The broker answers in completion order, so the metadata answer coming first
/// proves the fetch was read and is parked. Returns the fetch's correlation id.
fn park_fetch(client: &mut RawClient, topic: &str, offset: u64) -> u64 {
    let fetch_id =
        client.send_body(fetch_request(topic, 0, offset, MAX_WAIT_MS, 1)).expect("send a fetch");
    let metadata_id = client.send_body(metadata_request()).expect("send a metadata request");
    let first = client.recv();
    assert_eq!(first.correlation_id, metadata_id, "the parked fetch answered first: {first:?}");
    fetch_id
}

/// The stored form of a produced batch: the log writes the base offset in front.
fn stored(mut batch: Vec<u8>, base_offset: u64) -> Vec<u8> {
    eddy_storage::batch::stamp_position(&mut batch, base_offset);
    batch
}

fn fetched_records(response: Response, fetch_id: u64) -> Bytes {
    assert_eq!(response.correlation_id, fetch_id, "{response:?}");
    let Some(response::Body::Fetch(fetch)) = response.body else { panic!("{response:?}") };
    let result = single_fetch_result(fetch);
    assert!(result.error.is_none(), "{result:?}");
    result.records
}

/// Signed microseconds from `from` to `to`.
fn micros_between(from: Instant, to: Instant) -> i64 {
    match to.checked_duration_since(from) {
        Some(d) => d.as_micros() as i64,
        None => -(from.duration_since(to).as_micros() as i64),
    }
}

fn p50_max(values: &mut [i64]) -> (i64, i64) {
    values.sort_unstable();
    (values[values.len() / 2], values[values.len() - 1])
}

#[test]
fn a_parked_fetch_is_woken_by_the_produce() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let mut producer = RawClient::connect(broker.addr());
    producer.create_topic("t", 1);
    let mut poller = RawClient::connect(broker.addr());

    // Per round, in µs: produce sent → produce answered (the baseline round trip), produce
    // answered → fetch answered (the wake-up; negative when the fetch answer came first, as the
    // broker wakes polls before it answers the produce), produce sent → fetch answered.
    let (mut produce_rtt, mut after_ack, mut after_send) = (Vec::new(), Vec::new(), Vec::new());
    let mut next_offset = 0;
    for round in 0..ROUNDS {
        let fetch_id = park_fetch(&mut poller, "t", next_offset);
        let batch = batch_for_seed(batch_seed(SEED, round));
        // A thread stamps the fetch answer the moment it arrives.
        let (sent, acked, (answer, answered), (base, last)) = std::thread::scope(|scope| {
            let waiter = scope.spawn(|| {
                let answer = poller.recv_until(
                    Instant::now() + Duration::from_millis(u64::from(MAX_WAIT_MS) + 5000),
                );
                (answer, Instant::now())
            });
            let sent = Instant::now();
            let offsets = producer.produce_ok("t", 0, Bytes::from(batch.clone()));
            let acked = Instant::now();
            (sent, acked, waiter.join().unwrap(), offsets)
        });
        let answer = answer.unwrap().expect("the broker closed the polling connection");
        assert_eq!(base, next_offset);
        let records = fetched_records(answer, fetch_id);
        assert!(
            records == stored(batch.clone(), base),
            "round {round}: the woken fetch returns the record"
        );
        next_offset = last + 1;

        let wake = micros_between(acked, answered);
        assert!(
            answered.duration_since(sent) < WAKE_LIMIT,
            "round {round}: the fetch answered {:?} after the produce was sent",
            answered.duration_since(sent)
        );
        assert!(
            wake < WAKE_LIMIT.as_micros() as i64,
            "round {round}: woken {wake} µs after the produce's answer"
        );
        produce_rtt.push(micros_between(sent, acked));
        after_ack.push(wake);
        after_send.push(micros_between(sent, answered));
    }
    let (rtt_p50, rtt_max) = p50_max(&mut produce_rtt);
    let (ack_p50, ack_max) = p50_max(&mut after_ack);
    let (send_p50, send_max) = p50_max(&mut after_send);
    eprintln!(
        "broker_long_poll: {ROUNDS} rounds, max_wait {MAX_WAIT_MS} ms, in µs (p50 / max): \
         produce round trip {rtt_p50} / {rtt_max}; fetch answer after the produce's answer \
         {ack_p50} / {ack_max}; fetch answer after the produce was sent {send_p50} / {send_max}"
    );
}

#[test]
fn sigterm_ends_parked_polls_and_keeps_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = BrokerProcess::start(dir.path(), &[]);
    let mut client = RawClient::connect(broker.addr());
    client.create_topic("t", 1);
    let mut log = Vec::new();
    let mut next_offset = 0;
    for k in 0..5 {
        let batch = batch_for_seed(batch_seed(SEED ^ 1, k));
        let (base, last) = client.produce_ok("t", 0, Bytes::from(batch.clone()));
        log.extend_from_slice(&stored(batch, base));
        next_offset = last + 1;
    }
    let mut poller = RawClient::connect(broker.addr());
    let fetch_id = park_fetch(&mut poller, "t", next_offset);

    let started = Instant::now();
    let status = broker.terminate();
    let stopped_after = started.elapsed();
    assert!(status.success(), "exit status {status:?}; stderr:\n{}", broker.stderr());
    assert!(
        stopped_after < Duration::from_millis(u64::from(MAX_WAIT_MS) / 2),
        "the broker took {stopped_after:?} to stop with a poll parked for {MAX_WAIT_MS} ms"
    );
    // The parked poll got its (empty) answer before the broker went, or a clean close.
    let deadline = Instant::now() + Duration::from_secs(5);
    let ending = match poller.recv_until(deadline).unwrap() {
        Some(answer) if error_code(&answer) == Some(ErrorCode::ShuttingDown) => {
            assert_eq!(answer.correlation_id, fetch_id);
            "SHUTTING_DOWN"
        }
        Some(answer) => {
            assert!(fetched_records(answer, fetch_id).is_empty());
            "an empty answer"
        }
        None => "a clean close",
    };
    assert!(matches!(poller.recv_until(deadline), Ok(None)), "the connection ends cleanly");
    eprintln!(
        "broker_long_poll: SIGTERM with a parked poll: exit 0 after {stopped_after:?}; the poll got {ending}"
    );

    let mut broker = BrokerProcess::start(dir.path(), &[]);
    let mut client = RawClient::connect(broker.addr());
    assert_eq!(client.next_offset("t", 0), next_offset);
    assert!(client.fetch_all("t", 0, 0) == log, "the data read back after the restart differs");

    // A durable append survives SIGKILL as well.
    let batch = batch_for_seed(batch_seed(SEED ^ 2, 0));
    let body = produce_request(v1::Acks::Durable, "t", 0, Bytes::from(batch.clone()));
    let Some(response::Body::Produce(produced)) = client.call(body).body else {
        panic!("produce failed")
    };
    let result = single_produce_result(produced);
    assert!(result.error.is_none() && result.base_offset == next_offset, "{result:?}");
    log.extend_from_slice(&stored(batch, next_offset));
    next_offset = result.last_offset + 1;
    assert!(!broker.kill9().success());

    let broker = BrokerProcess::start(dir.path(), &[]);
    let mut client = RawClient::connect(broker.addr());
    assert_eq!(client.next_offset("t", 0), next_offset);
    assert!(client.fetch_all("t", 0, 0) == log, "the data read back after SIGKILL differs");
}
