//! `Connection` against a tiny fake broker that speaks frames over a real socket.

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use eddy_protocol::v1::{self, request, response};
use eddy_protocol::{ErrorCode, FrameDecoder, encode_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::{Connection, ConnectionOptions};
use crate::{ClientError, Transport};

/// The broker's side of one connection.
struct Peer {
    stream: TcpStream,
    buf: BytesMut,
    decoder: FrameDecoder,
}

impl Peer {
    async fn recv(&mut self) -> Option<v1::Request> {
        loop {
            if let Some(request) = self.decoder.next_message(&mut self.buf).unwrap() {
                return Some(request);
            }
            if self.stream.read_buf(&mut self.buf).await.unwrap() == 0 {
                return None;
            }
        }
    }

    async fn reply(&mut self, correlation_id: u64, body: response::Body) {
        self.write(v1::Response { correlation_id, error: None, body: Some(body) }).await;
    }

    async fn write(&mut self, response: v1::Response) {
        let mut out = BytesMut::new();
        encode_frame(&response, &mut out);
        self.stream.write_all(&out).await.unwrap();
    }

    async fn handshake(&mut self, limits: v1::Limits) {
        let request = self.recv().await.expect("a handshake");
        let Some(request::Body::ApiVersions(versions)) = request.body else {
            panic!("first request is not ApiVersions: {request:?}");
        };
        assert_eq!((versions.min_version, versions.max_version), (1, 1));
        assert_eq!(versions.client_name, "test-client");
        let body = response::Body::ApiVersions(v1::ApiVersionsResponse {
            version: 1,
            broker_version: "9.9.9".into(),
            limits: Some(limits),
        });
        self.reply(request.correlation_id, body).await;
    }
}

fn limits() -> v1::Limits {
    v1::Limits {
        max_frame_bytes: 1 << 20,
        max_batch_bytes: 1 << 19,
        max_in_flight: 64,
        idle_timeout_ms: 0,
    }
}

fn options() -> ConnectionOptions {
    ConnectionOptions { client_name: "test-client".into(), ..ConnectionOptions::default() }
}

/// Starts a fake broker that accepts one connection, answers the handshake with `limits`,
/// then runs `script`. Await the handle at the end of the test so its assertions count.
async fn fake_broker<F, Fut>(limits: v1::Limits, script: F) -> (String, JoinHandle<()>)
where
    F: FnOnce(Peer) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let handle = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut peer = Peer { stream, buf: BytesMut::new(), decoder: FrameDecoder::new(16 << 20) };
        peer.handshake(limits).await;
        script(peer).await;
    });
    (addr, handle)
}

fn describe(name: &str) -> request::Body {
    request::Body::DescribeTopic(v1::DescribeTopicRequest { name: name.into() })
}

fn described_name(body: response::Body) -> String {
    match body {
        response::Body::DescribeTopic(d) => d.name,
        other => panic!("unexpected body {other:?}"),
    }
}

fn describe_reply(name: String) -> response::Body {
    response::Body::DescribeTopic(v1::DescribeTopicResponse {
        name,
        config: None,
        partitions: vec![],
    })
}

#[tokio::test]
async fn handshake_sends_api_versions_and_keeps_the_broker_limits() {
    let (addr, broker) = fake_broker(limits(), |_peer| async {}).await;
    let conn = Connection::connect(&addr, options()).await.unwrap();
    assert_eq!(conn.limits(), &limits());
    assert_eq!(conn.broker_version(), "9.9.9");
    assert_eq!(conn.addr(), addr);
    broker.await.unwrap();
}

#[tokio::test]
async fn responses_in_reverse_order_reach_their_own_callers() {
    let (addr, broker) = fake_broker(limits(), |mut peer| async move {
        let mut requests = Vec::new();
        for _ in 0..3 {
            requests.push(peer.recv().await.unwrap());
        }
        let ids: Vec<u64> = requests.iter().map(|r| r.correlation_id).collect();
        assert_eq!(ids.iter().collect::<std::collections::HashSet<_>>().len(), 3, "unique ids");
        for request in requests.into_iter().rev() {
            let Some(request::Body::DescribeTopic(d)) = request.body else { panic!() };
            peer.reply(request.correlation_id, describe_reply(d.name)).await;
        }
        // Keep the socket open until the client is done.
        assert!(peer.recv().await.is_none());
    })
    .await;
    let conn = Connection::connect(&addr, options()).await.unwrap();
    let (a, b, c) =
        tokio::join!(conn.call(describe("a")), conn.call(describe("b")), conn.call(describe("c")));
    assert_eq!(described_name(a.unwrap()), "a");
    assert_eq!(described_name(b.unwrap()), "b");
    assert_eq!(described_name(c.unwrap()), "c");
    assert_eq!(conn.in_flight(), 0);
    drop(conn);
    broker.await.unwrap();
}

#[tokio::test]
async fn pending_calls_fail_with_closed_when_the_server_drops_the_socket() {
    let (addr, broker) = fake_broker(limits(), |mut peer| async move {
        peer.recv().await.unwrap();
        peer.recv().await.unwrap();
        drop(peer);
    })
    .await;
    let conn = Connection::connect(&addr, options()).await.unwrap();
    let (a, b) = tokio::join!(conn.call(describe("a")), conn.call(describe("b")));
    assert!(matches!(a, Err(ClientError::Closed { .. })), "{a:?}");
    assert!(matches!(b, Err(ClientError::Closed { .. })), "{b:?}");
    assert!(conn.is_closed());
    assert_eq!(conn.in_flight(), 0);
    let later = conn.call(describe("c")).await;
    assert!(matches!(later, Err(ClientError::Closed { .. })), "{later:?}");
    let sent = conn.send(describe("d")).await;
    assert!(matches!(sent, Err(ClientError::Closed { .. })), "{sent:?}");
    broker.await.unwrap();
}

#[tokio::test]
async fn request_level_error_becomes_broker_error() {
    let (addr, broker) = fake_broker(limits(), |mut peer| async move {
        let request = peer.recv().await.unwrap();
        let error = v1::Error::new(ErrorCode::UnknownTopic, "no such topic");
        peer.write(v1::Response {
            correlation_id: request.correlation_id,
            error: Some(error),
            body: None,
        })
        .await;
        assert!(peer.recv().await.is_none());
    })
    .await;
    let conn = Connection::connect(&addr, options()).await.unwrap();
    let err = conn.call(describe("nope")).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::UnknownTopic), "{err:?}");
    assert!(matches!(err, ClientError::Broker(_)));
    assert!(!conn.is_closed(), "a request error leaves the connection usable");
    drop(conn);
    broker.await.unwrap();
}

#[tokio::test]
async fn connection_level_error_fails_pending_calls_with_it() {
    let (addr, broker) = fake_broker(limits(), |mut peer| async move {
        peer.recv().await.unwrap();
        let error = v1::Error::new(ErrorCode::ShuttingDown, "bye");
        peer.write(v1::Response { correlation_id: 0, error: Some(error), body: None }).await;
    })
    .await;
    let conn = Connection::connect(&addr, options()).await.unwrap();
    let err = conn.call(describe("a")).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ShuttingDown), "{err:?}");
    assert!(conn.is_closed());
    broker.await.unwrap();
}

#[tokio::test]
async fn timed_out_call_is_forgotten_and_its_late_answer_ignored() {
    let (addr, broker) = fake_broker(limits(), |mut peer| async move {
        let slow = peer.recv().await.unwrap();
        let fast = peer.recv().await.unwrap();
        // Answer the timed-out call late, then the live one.
        peer.reply(slow.correlation_id, describe_reply("slow".into())).await;
        peer.reply(fast.correlation_id, describe_reply("fast".into())).await;
        assert!(peer.recv().await.is_none());
    })
    .await;
    let options =
        ConnectionOptions { request_timeout: Some(Duration::from_millis(100)), ..options() };
    let conn = Connection::connect(&addr, options).await.unwrap();
    let slow = conn.call(describe("slow")).await;
    assert!(matches!(slow, Err(ClientError::Timeout { ms: 100 })), "{slow:?}");
    assert_eq!(conn.in_flight(), 0, "the timed-out waiter is removed");
    let fast = conn.call(describe("fast")).await.unwrap();
    assert_eq!(described_name(fast), "fast");
    drop(conn);
    broker.await.unwrap();
}

#[tokio::test]
async fn send_writes_without_registering_a_waiter() {
    let (addr, broker) = fake_broker(limits(), |mut peer| async move {
        let produce = peer.recv().await.unwrap();
        let Some(request::Body::Produce(p)) = produce.body else { panic!("{produce:?}") };
        assert_eq!(p.acks, v1::Acks::None as i32);
        let next = peer.recv().await.unwrap();
        peer.reply(next.correlation_id, describe_reply("after".into())).await;
        assert!(peer.recv().await.is_none());
    })
    .await;
    let conn = Connection::connect(&addr, options()).await.unwrap();
    let produce = v1::ProduceRequest { acks: v1::Acks::None as i32, topics: vec![] };
    conn.send(request::Body::Produce(produce)).await.unwrap();
    assert_eq!(conn.in_flight(), 0);
    assert_eq!(described_name(conn.call(describe("after")).await.unwrap()), "after");
    drop(conn);
    broker.await.unwrap();
}

#[tokio::test]
async fn request_over_the_broker_frame_limit_is_refused_before_sending() {
    let small = v1::Limits { max_frame_bytes: 64, ..limits() };
    let (addr, broker) = fake_broker(small, |mut peer| async move {
        let request = peer.recv().await.unwrap();
        let Some(request::Body::DescribeTopic(d)) = request.body else { panic!() };
        assert_eq!(d.name, "ok", "the oversized request never reached the broker");
        peer.reply(request.correlation_id, describe_reply(d.name)).await;
        assert!(peer.recv().await.is_none());
    })
    .await;
    let conn = Connection::connect(&addr, options()).await.unwrap();
    let err = conn.call(describe(&"x".repeat(100))).await.unwrap_err();
    assert!(matches!(err, ClientError::RequestTooLarge { max: 64, .. }), "{err:?}");
    assert_eq!(described_name(conn.call(describe("ok")).await.unwrap()), "ok");
    drop(conn);
    broker.await.unwrap();
}

#[tokio::test]
async fn huge_response_length_closes_with_a_frame_error() {
    let (addr, broker) = fake_broker(limits(), |mut peer| async move {
        peer.recv().await.unwrap();
        let mut prefix = BytesMut::new();
        prefix.put_u32_le(u32::MAX);
        peer.stream.write_all(&prefix).await.unwrap();
        assert!(peer.recv().await.is_none());
    })
    .await;
    let options = ConnectionOptions { max_response_frame_bytes: 4096, ..options() };
    let conn = Connection::connect(&addr, options).await.unwrap();
    let err = conn.call(describe("a")).await.unwrap_err();
    assert!(matches!(err, ClientError::Frame { .. }), "{err:?}");
    drop(conn);
    broker.await.unwrap();
}

#[tokio::test]
async fn connect_to_a_closed_port_is_a_connection_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let err = Connection::connect(&addr, options()).await.unwrap_err();
    assert!(matches!(err, ClientError::Connection { .. }), "{err:?}");
}

#[tokio::test]
async fn calls_beyond_the_broker_in_flight_limit_wait_for_a_slot() {
    let two = v1::Limits { max_in_flight: 2, ..limits() };
    let (got_two, two_received) = tokio::sync::oneshot::channel();
    let (addr, broker) = fake_broker(two, |mut peer| async move {
        let first = peer.recv().await.unwrap();
        let second = peer.recv().await.unwrap();
        got_two.send(()).unwrap();
        for request in [first, second] {
            let Some(request::Body::DescribeTopic(d)) = request.body else { panic!() };
            peer.reply(request.correlation_id, describe_reply(d.name)).await;
        }
        let third = peer.recv().await.unwrap();
        let Some(request::Body::DescribeTopic(d)) = third.body else { panic!() };
        peer.reply(third.correlation_id, describe_reply(d.name)).await;
        assert!(peer.recv().await.is_none());
    })
    .await;
    let conn = std::sync::Arc::new(Connection::connect(&addr, options()).await.unwrap());
    let calls: Vec<_> = ["a", "b", "c"]
        .into_iter()
        .map(|name| {
            let conn = std::sync::Arc::clone(&conn);
            tokio::spawn(async move { described_name(conn.call(describe(name)).await.unwrap()) })
        })
        .collect();
    two_received.await.unwrap();
    tokio::task::yield_now().await;
    assert_eq!(conn.in_flight(), 2, "the third call waits for a slot");
    let mut names = Vec::new();
    for call in calls {
        names.push(call.await.unwrap());
    }
    assert_eq!(names, ["a", "b", "c"]);
    drop(conn);
    broker.await.unwrap();
}
