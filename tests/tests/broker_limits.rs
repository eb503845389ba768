//! The broker's connection limits against a real `eddy serve` process, over raw sockets:
//! silent and half-sent connections, the idle timeout, `max_connections`, `max_in_flight`, and
//! a client that stops reading its answers.

use std::io;
use std::time::{Duration, Instant};

use bytes::Bytes;
use eddy_protocol::ErrorCode;
use eddy_protocol::v1::{self, Request, Response, request, response};
use eddy_tests::broker::BrokerProcess;
use eddy_tests::generate::batch_for_seed;
use eddy_tests::hostile;
use eddy_tests::raw_client::{
    RawClient, big_batch, error_code, fetch_request, mib, single_fetch_result,
};
use prost::Message;

/// Longest wait for an answer the broker owes.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// A metadata request of about 1 KiB, framed.
fn long_request(id: u64) -> Vec<u8> {
    let topics = (0..60).map(|i| format!("some-topic-{i}")).collect();
    let request = Request {
        correlation_id: id,
        body: Some(request::Body::Metadata(v1::MetadataRequest { topics })),
    };
    hostile::framed(&request.encode_to_vec())
}

fn assert_metadata_answer(response: &Response, id: u64) {
    assert_eq!(response.correlation_id, id);
    assert!(matches!(response.body, Some(response::Body::Metadata(_))), "{response:?}");
}

#[test]
fn silent_and_half_sent_connections_do_not_hold_up_others() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let silent: Vec<RawClient> = (0..50).map(|_| RawClient::connect(broker.addr())).collect();
    let mut halves = Vec::new();
    for _ in 0..50 {
        let mut client = RawClient::connect(broker.addr());
        let id = client.next_id();
        let frame = long_request(id);
        let (sent, rest) = frame.split_at(frame.len() / 2);
        client.send_bytes(sent).unwrap();
        halves.push((client, id, rest.to_vec()));
    }

    let mut normal = RawClient::connect(broker.addr());
    let mut slowest = Duration::ZERO;
    let mut timed = |what: &str, call: &mut dyn FnMut(&mut RawClient)| {
        let started = Instant::now();
        call(&mut normal);
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "{what} took {took:?} beside 100 stalled connections"
        );
        slowest = slowest.max(took);
    };
    timed("handshake", &mut |c| {
        c.handshake();
    });
    timed("create_topic", &mut |c| c.create_topic("t", 1));
    let batch = batch_for_seed(7);
    timed("produce", &mut |c| assert_eq!(c.produce_ok("t", 0, Bytes::from(batch.clone())).0, 0));
    let mut stored = batch.clone();
    eddy_storage::batch::stamp_position(&mut stored, 0);
    timed("fetch", &mut |c| assert!(c.fetch_all("t", 0, 0) == stored));
    eprintln!("broker_bad_input: slowest round trip beside 100 stalled connections: {slowest:?}");

    // They were all held open meanwhile, and are served now.
    for mut client in silent {
        client.handshake();
    }
    for (mut client, id, rest) in halves {
        client.send_bytes(&rest).unwrap();
        assert_metadata_answer(&client.recv(), id);
    }
}

#[test]
fn idle_connections_are_closed_after_the_idle_timeout() {
    const IDLE: Duration = Duration::from_millis(300);
    // Timers may fire up to a tick early relative to our clock readings.
    const SLACK: Duration = Duration::from_millis(10);
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[("EDDY_IDLE_TIMEOUT_MS", "300")]);
    let mut served = RawClient::connect(broker.addr());
    // Each connection's idle time starts at or after its `since`: its accept, or the last
    // complete frame the broker read from it.
    let served_since = Instant::now();
    served.create_topic("t", 1);
    let silent_since = Instant::now();
    let mut silent = RawClient::connect(broker.addr());
    let half_since = Instant::now();
    let mut half = RawClient::connect(broker.addr());
    let frame = long_request(1);
    half.send_bytes(&frame[..frame.len() / 2]).unwrap();
    let poll_since = Instant::now();
    let mut polling = RawClient::connect(broker.addr());
    let poll_id = polling.send_body(fetch_request("t", 0, 0, 1000, 1)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);

    for (name, client, since) in [
        ("silent", &mut silent, silent_since),
        ("half-frame", &mut half, half_since),
        ("served", &mut served, served_since),
    ] {
        let end = client.recv_until(deadline);
        let after = since.elapsed();
        assert!(matches!(end, Ok(None)), "{name} connection: expected a clean close, got {end:?}");
        assert!(after + SLACK >= IDLE, "{name} connection closed after only {after:?}");
        eprintln!("broker_bad_input: idle {name} connection closed after {after:?}");
    }
    // A request in flight is not idleness: the long poll gets its answer, then the idle close.
    let answer = polling.recv_until(deadline).unwrap().expect("the long poll is answered");
    let answered = poll_since.elapsed();
    assert_eq!(answer.correlation_id, poll_id);
    assert!(matches!(answer.body, Some(response::Body::Fetch(_))), "{answer:?}");
    assert!(
        answered + SLACK >= Duration::from_millis(1000),
        "the long poll ended after {answered:?}"
    );
    let end = polling.recv_until(deadline);
    assert!(matches!(end, Ok(None)), "the polling connection is not closed once idle: {end:?}");
    eprintln!(
        "broker_bad_input: long-polling connection answered after {answered:?}, closed after {:?}",
        poll_since.elapsed()
    );
}

#[test]
fn connections_past_max_connections_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[("EDDY_MAX_CONNECTIONS", "4")]);
    let mut held: Vec<RawClient> = (0..4)
        .map(|_| {
            let mut client = RawClient::connect(broker.addr());
            client.handshake();
            client
        })
        .collect();

    let mut fifth = RawClient::connect(broker.addr());
    let responses = fifth.recv_until_closed(Instant::now() + ANSWER_TIMEOUT).unwrap();
    let [refusal] = &responses[..] else { panic!("expected one refusal, got {responses:?}") };
    assert_eq!(refusal.correlation_id, 0);
    assert_eq!(error_code(refusal), Some(ErrorCode::TooManyConnections), "{refusal:?}");

    for client in &mut held {
        client.handshake();
    }
    // A freed slot is taken by the next connection, once the broker has seen the close.
    drop(held.pop());
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    let mut refusals = 0;
    loop {
        assert!(Instant::now() < deadline, "no slot freed {ANSWER_TIMEOUT:?} after a close");
        let mut client = RawClient::connect(broker.addr());
        let Ok(id) = client.send_body(request::Body::ListTopics(v1::ListTopicsRequest {})) else {
            continue;
        };
        match client.recv_until(deadline) {
            Ok(Some(r)) if r.correlation_id == id => break,
            Ok(Some(r)) => assert_eq!(error_code(&r), Some(ErrorCode::TooManyConnections), "{r:?}"),
            Ok(None) => {}
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}"),
        }
        refusals += 1;
    }
    eprintln!("broker_bad_input: a freed connection slot was reused after {refusals} refusals");
}

#[test]
fn requests_past_max_in_flight_are_refused() {
    const LIMIT: u64 = 4;
    const SENT: u64 = 7;
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[("EDDY_MAX_IN_FLIGHT", "4")]);
    let mut producer = RawClient::connect(broker.addr());
    producer.create_topic("t", 1);

    // Long polls on an empty partition stay in flight; all seven go out in one write.
    let mut poller = RawClient::connect(broker.addr());
    let mut bytes = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..SENT {
        let id = poller.next_id();
        let request = Request { correlation_id: id, body: Some(fetch_request("t", 0, 0, 2000, 1)) };
        bytes.extend_from_slice(&hostile::framed(&request.encode_to_vec()));
        ids.push(id);
    }
    let sent = Instant::now();
    poller.send_bytes(&bytes).unwrap();
    let mut refused = Vec::new();
    for _ in LIMIT..SENT {
        let response = poller.recv();
        assert_eq!(error_code(&response), Some(ErrorCode::TooManyInFlight), "{response:?}");
        refused.push(response.correlation_id);
    }
    let refused_after = sent.elapsed();
    assert_eq!(refused, ids[LIMIT as usize..], "the excess requests are the ones refused");
    assert!(
        refused_after < Duration::from_millis(1500),
        "refusals took {refused_after:?}: not at once"
    );

    // The four parked polls are still in flight: a produce wakes every one of them.
    let mut batch = batch_for_seed(11);
    producer.produce_ok("t", 0, Bytes::from(batch.clone()));
    eddy_storage::batch::stamp_position(&mut batch, 0);
    let mut answered = Vec::new();
    for _ in 0..LIMIT {
        let response = poller.recv();
        let Some(response::Body::Fetch(fetch)) = response.body else { panic!("{response:?}") };
        assert!(single_fetch_result(fetch).records == batch, "a woken poll returns the record");
        answered.push(response.correlation_id);
    }
    answered.sort_unstable();
    assert_eq!(answered, ids[..LIMIT as usize]);
    assert!(
        sent.elapsed() < Duration::from_millis(1900),
        "the polls were woken by the produce, not the timeout"
    );
    poller.handshake();
    eprintln!(
        "broker_bad_input: {} requests past max_in_flight refused after {refused_after:?}",
        SENT - LIMIT
    );
}

/// A client that pipelines large fetches and never reads its socket. Regression: its writer sat
/// in `write_all` for ever, graceful shutdown waited for it, so SIGTERM never completed, and the
/// queued answers stayed in memory. Writes now time out and shutdown gives a connection a
/// bounded grace period.
#[test]
fn shutdown_is_not_held_up_by_a_client_that_stops_reading() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = BrokerProcess::start(dir.path(), &[("EDDY_IDLE_TIMEOUT_MS", "300")]);
    let mut client = RawClient::connect(broker.addr());
    client.create_topic("t", 1);
    for _ in 0..4 {
        client.produce_ok("t", 0, big_batch(1 << 20));
    }
    // 32 fetches of about 4 MiB each: far more than the socket buffers hold. Never read.
    let mut stalled = RawClient::connect(broker.addr());
    let mut bytes = Vec::new();
    for _ in 0..32 {
        let id = stalled.next_id();
        let mut body = fetch_request("t", 0, 0, 0, 1);
        if let request::Body::Fetch(f) = &mut body {
            f.max_bytes = 8 << 20;
            f.topics[0].partitions[0].max_bytes = 8 << 20;
        }
        bytes.extend_from_slice(&hostile::framed(
            &Request { correlation_id: id, body: Some(body) }.encode_to_vec(),
        ));
    }
    stalled.send_bytes(&bytes).unwrap();
    // One answer read proves the fetches were taken; the other 31 (about 124 MiB) are not read.
    let first = stalled.recv();
    assert!(matches!(first.body, Some(response::Body::Fetch(_))), "{first:?}");
    eprintln!(
        "broker_bad_input: broker RSS with a stalled reader: {:.1} MiB",
        mib(broker.rss_bytes().unwrap())
    );
    let started = Instant::now();
    let status = broker.terminate_within(Duration::from_secs(10));
    eprintln!(
        "broker_bad_input: stopped {:?} after SIGTERM with a stalled reader",
        started.elapsed()
    );
    assert!(status.success(), "{status:?}");
    drop(stalled);
}
