//! A connection flood against a real `eddy serve` process cannot lock other clients out: one
//! source address (127.0.0.2, bound on Linux's loopback) fills its `max_connections_per_ip`
//! on the native and on the Kafka listener with connections that never send a byte or send
//! half a size prefix, and keeps trying for more; it is refused past its share
//! (`TOO_MANY_CONNECTIONS` on the native listener, a close on the Kafka one) while eddy's
//! client and a Kafka client from another address (127.0.0.1) connect and produce within a
//! bound. The flood's connections are closed once `handshake_timeout_ms` passes without a
//! first request, and their places come back. The HTTP listener keeps its own per-address
//! share (64 of its 256 by default) the same way, and closes a connection that sends nothing
//! once its header deadline (5 s) passes.

#![allow(clippy::unwrap_used, clippy::print_stderr)] // test helpers outside #[test] fns

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_client::{Admin, Connection, ConnectionOptions, Producer, ProducerConfig, ProducerRecord};
use eddy_protocol::ErrorCode;
use eddy_tests::broker::BrokerProcess;
use eddy_tests::kafka_wire::{KafkaConnection, text};
use eddy_tests::raw_client::{RawClient, error_code};
use eddy_tests::workload::read_topic;
use kafka_protocol::messages::*;
use tokio::net::TcpSocket;
use tokio::task::block_in_place;

/// The flood's share of each listener.
const PER_IP: usize = 64;
/// Each listener's total: more than one address's share, so others have room.
const MAX_CONNECTIONS: usize = 96;
/// Further connections the flood tries on each listener past its share.
const EXTRA: usize = 200;
const HANDSHAKE: Duration = Duration::from_millis(5000);
/// Longest a normal client's step may take beside the flood.
const STEP_LIMIT: Duration = Duration::from_secs(2);
/// Timers may fire up to a tick early relative to our clock readings.
const SLACK: Duration = Duration::from_millis(10);
const FLOOD_SOURCE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// A connection to `to` from `source` (any port), as a blocking socket.
async fn connect_from(source: IpAddr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    let stream = socket.connect(to).await.unwrap_or_else(|e| panic!("{source} -> {to}: {e}"));
    let stream = stream.into_std().unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
}

/// `PER_IP` connections from the flood source, every other one with 2 bytes of a size prefix.
async fn flood(to: SocketAddr) -> Vec<(TcpStream, Instant)> {
    flood_n(to, PER_IP, &[0, 0]).await
}

/// `n` connections from the flood source, every other one with `partial`, the start of a first
/// request.
async fn flood_n(to: SocketAddr, n: usize, partial: &[u8]) -> Vec<(TcpStream, Instant)> {
    let mut held = Vec::new();
    for i in 0..n {
        let since = Instant::now();
        let mut stream = connect_from(FLOOD_SOURCE, to).await;
        if i % 2 == 1 {
            stream.write_all(partial).unwrap();
        }
        held.push((stream, since));
    }
    held
}

/// Whether the broker still holds `stream` open (nothing to read, no end of stream).
fn still_open(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let open = matches!(stream.peek(&mut [0u8; 1]), Err(e) if e.kind() == ErrorKind::WouldBlock);
    stream.set_nonblocking(false).unwrap();
    open
}

/// Reads until the broker closes `stream`; a reset counts as a close.
fn read_to_close(stream: &mut TcpStream, deadline: Instant) -> Vec<u8> {
    let wait = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut seen = Vec::new();
    match stream.read_to_end(&mut seen) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the broker did not close a connection by the deadline: {e}"),
    }
    seen
}

/// A further native connection from the flood source is answered `TOO_MANY_CONNECTIONS`
/// naming the address, and a further Kafka connection is closed without a byte.
async fn assert_flood_refused(broker: &BrokerProcess) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for _ in 0..EXTRA {
        let stream = connect_from(FLOOD_SOURCE, broker.addr()).await;
        let mut client = RawClient::from_stream(stream);
        let answers = block_in_place(|| client.recv_until_closed(deadline)).unwrap();
        let [refusal] = &answers[..] else { panic!("expected one refusal, got {answers:?}") };
        assert_eq!(error_code(refusal), Some(ErrorCode::TooManyConnections), "{refusal:?}");
        let message = refusal.error.as_ref().map(|e| e.message.as_str()).unwrap_or_default();
        assert!(message.contains("127.0.0.2"), "the refusal names the address: {message}");

        let mut kafka = connect_from(FLOOD_SOURCE, broker.kafka_addr()).await;
        assert!(block_in_place(|| read_to_close(&mut kafka, deadline)).is_empty());
    }
}

/// eddy's client from 127.0.0.1: create a topic, produce, read the record back.
async fn native_client_produces(broker: &BrokerProcess) {
    let started = Instant::now();
    let addr = broker.addr().to_string();
    let conn = Arc::new(Connection::connect(&addr, ConnectionOptions::default()).await.unwrap());
    Admin::new(Arc::clone(&conn)).create_topic("flood", Default::default()).await.unwrap();
    let producer = Producer::new(Arc::clone(&conn), ProducerConfig::default()).unwrap();
    let delivery = producer.send("flood", Some(0), ProducerRecord::value("native")).await.unwrap();
    assert_eq!(delivery.await.unwrap().offset, Some(0));
    producer.close().await.unwrap();
    let mut values = Vec::new();
    read_topic(Arc::clone(&conn), "flood", Instant::now() + STEP_LIMIT, |_, r| {
        values.push(r.value.unwrap_or_default().to_vec());
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(values, [b"native".to_vec()]);
    let took = started.elapsed();
    assert!(took < 2 * STEP_LIMIT, "eddy's client took {took:?} beside the flood");
    eprintln!("broker_connection_flood: eddy's client connected, produced, fetched in {took:?}");
}

/// A Kafka client from 127.0.0.1: ApiVersions, then a produce to the topic.
fn kafka_client_produces(broker: &BrokerProcess) {
    let started = Instant::now();
    let mut kafka = KafkaConnection::connect(broker.kafka_addr());
    let versions: ApiVersionsResponse =
        kafka.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(versions.error_code, 0);
    let mut builder = eddy_storage::batch::BatchBuilder::new();
    builder.push(eddy_storage::batch::Record {
        timestamp: 1,
        key: None,
        value: Some(b"kafka"),
        headers: &[],
    });
    let partition = produce_request::PartitionProduceData::default()
        .with_index(0)
        .with_records(Some(builder.build()));
    let topic = produce_request::TopicProduceData::default()
        .with_name(TopicName(text("flood")))
        .with_partition_data(vec![partition]);
    let request = ProduceRequest::default().with_acks(1).with_timeout_ms(1000);
    let answer: ProduceResponse =
        kafka.call(ApiKey::Produce, 9, &request.with_topic_data(vec![topic]));
    let result = &answer.responses[0].partition_responses[0];
    assert_eq!((result.error_code, result.base_offset), (0, 1), "{answer:?}");
    let took = started.elapsed();
    assert!(took < STEP_LIMIT, "the Kafka client took {took:?} beside the flood");
    eprintln!("broker_connection_flood: a Kafka client connected and produced in {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_address_does_not_lock_others_out() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("EDDY_MAX_CONNECTIONS", MAX_CONNECTIONS.to_string()),
        ("EDDY_MAX_CONNECTIONS_PER_IP", PER_IP.to_string()),
        ("EDDY_HANDSHAKE_TIMEOUT_MS", HANDSHAKE.as_millis().to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let broker = block_in_place(|| BrokerProcess::start(dir.path(), &env));

    let flood_started = Instant::now();
    let mut native_flood = flood(broker.addr()).await;
    let mut kafka_flood = flood(broker.kafka_addr()).await;
    assert_flood_refused(&broker).await;
    native_client_produces(&broker).await;
    block_in_place(|| kafka_client_produces(&broker));
    // All of that happened while the flood held its share: none of it was closed yet.
    let held = native_flood.iter().chain(&kafka_flood).filter(|(s, _)| still_open(s)).count();
    assert!(
        flood_started.elapsed() < HANDSHAKE && held == 2 * PER_IP,
        "{held} of the flood's connections were held after {:?}",
        flood_started.elapsed()
    );

    // Never completing a first request, the flood's connections are closed after the
    // handshake deadline, long before the idle timeout (10 minutes).
    let deadline = Instant::now() + HANDSHAKE + Duration::from_secs(20);
    block_in_place(|| {
        for (stream, since) in native_flood.iter_mut().chain(kafka_flood.iter_mut()) {
            read_to_close(stream, deadline);
            let after = since.elapsed();
            assert!(after + SLACK >= HANDSHAKE, "a flood connection closed after only {after:?}");
        }
    });
    eprintln!(
        "broker_connection_flood: the flood's {} connections were closed {:?} after it began",
        2 * PER_IP,
        flood_started.elapsed()
    );

    // Their places came back: the flood source is served again, on both listeners.
    let stream = connect_from(FLOOD_SOURCE, broker.addr()).await;
    block_in_place(|| RawClient::from_stream(stream).handshake());
    let stream = connect_from(FLOOD_SOURCE, broker.kafka_addr()).await;
    let mut kafka = block_in_place(|| KafkaConnection::from_stream(stream));
    let versions: ApiVersionsResponse =
        block_in_place(|| kafka.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()));
    assert_eq!(versions.error_code, 0);

    let metrics = block_in_place(|| eddy_tests::http::get(broker.http_addr(), "/metrics")).body;
    for listener in ["native", "kafka"] {
        let name = format!("eddy_connections_refused_total{{listener=\"{listener}\"}} {EXTRA}");
        assert!(metrics.contains(&name), "{listener} refusals are counted:\n{metrics}");
    }
}

/// The HTTP listener's defaults: its share for one address, of `HTTP_MAX` in all, and how long
/// a connection may take to send a request head.
const HTTP_PER_IP: usize = 64;
const HTTP_HEADER_DEADLINE: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_on_the_http_listener_leaves_room_for_others() {
    let dir = tempfile::tempdir().unwrap();
    let broker = block_in_place(|| BrokerProcess::start(dir.path(), &[]));
    let flood_started = Instant::now();
    let mut held = flood_n(broker.http_addr(), HTTP_PER_IP, b"GET /hea").await;

    // Past its share, the flood source's connections are closed without an answer...
    let deadline = Instant::now() + Duration::from_secs(30);
    for _ in 0..EXTRA {
        let mut refused = connect_from(FLOOD_SOURCE, broker.http_addr()).await;
        let seen = block_in_place(|| read_to_close(&mut refused, deadline));
        assert!(seen.is_empty(), "a refused HTTP connection got {seen:?}");
    }
    // ...while a client from another address is served at once.
    let started = Instant::now();
    let health = block_in_place(|| eddy_tests::http::get(broker.http_addr(), "/health"));
    assert_eq!(health.status, 200, "{health:?}");
    assert!(started.elapsed() < STEP_LIMIT, "GET /health took {:?}", started.elapsed());
    let open = held.iter().filter(|(s, _)| still_open(s)).count();
    assert!(
        flood_started.elapsed() < HTTP_HEADER_DEADLINE && open == HTTP_PER_IP,
        "{open} of the flood's HTTP connections were held after {:?}",
        flood_started.elapsed()
    );

    // A connection that never sends a request head is closed at the header deadline.
    let deadline = Instant::now() + HTTP_HEADER_DEADLINE + Duration::from_secs(20);
    block_in_place(|| {
        for (stream, since) in &mut held {
            read_to_close(stream, deadline);
            let after = since.elapsed();
            assert!(after + SLACK >= HTTP_HEADER_DEADLINE, "closed after only {after:?}");
        }
    });
    let metrics = block_in_place(|| eddy_tests::http::get(broker.http_addr(), "/metrics")).body;
    let name = format!("eddy_connections_refused_total{{listener=\"http\"}} {EXTRA}");
    assert!(metrics.contains(&name), "HTTP refusals are counted:\n{metrics}");
}
