//! A client that speaks raw frames over a blocking socket: what a test needs to put exact bytes
//! on the wire and see exactly what comes back.
//!
//! Every read has a deadline (a socket read timeout recomputed before each `read`), so a broker
//! that stops answering fails the test instead of hanging it. [`RawClient::recv_until`] tells a
//! clean close (`Ok(None)`) apart from a reset, a timeout and a close in the middle of a frame.
//! The request builders (`fetch_request`, `produce_request`, ...) return bodies, so tests can
//! pipeline them with [`RawClient::send`] and match answers by correlation id.

use eddy_storage::{BatchBuilder, Record};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use eddy_protocol::v1::{self, Request, Response, request, response};
use eddy_protocol::{ErrorCode, FrameDecoder, encode_frame};

/// Default wait for one answer.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response frame the client accepts.
const MAX_RESPONSE_BYTES: u32 = 256 << 20;
const READ_CHUNK: usize = 64 * 1024;

/// One connection to a broker.
#[derive(Debug)]
pub struct RawClient {
    stream: TcpStream,
    buf: BytesMut,
    chunk: Vec<u8>,
    decoder: FrameDecoder,
    next_correlation_id: u64,
}

impl RawClient {
    /// Connects to `addr` (within 5 s), with Nagle off so small frames leave at once.
    pub fn connect(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
        RawClient::from_stream(stream)
    }

    pub fn from_stream(stream: TcpStream) -> RawClient {
        let _ = stream.set_nodelay(true);
        // Writes are small except on purpose; a broker that stops reading must not hang a test.
        let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
        RawClient {
            stream,
            buf: BytesMut::new(),
            chunk: vec![0; READ_CHUNK],
            decoder: FrameDecoder::new(MAX_RESPONSE_BYTES),
            next_correlation_id: 1,
        }
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// A correlation id not used before on this connection (they count up from 1).
    pub fn next_id(&mut self) -> u64 {
        let id = self.next_correlation_id;
        self.next_correlation_id += 1;
        id
    }

    /// Sends one request frame.
    pub fn send(&mut self, request: &Request) -> io::Result<()> {
        let mut out = BytesMut::new();
        encode_frame(request, &mut out);
        self.send_bytes(&out)
    }

    /// Sends `body` under a fresh correlation id, which it returns.
    pub fn send_body(&mut self, body: request::Body) -> io::Result<u64> {
        let correlation_id = self.next_id();
        self.send(&Request { correlation_id, body: Some(body) })?;
        Ok(correlation_id)
    }

    /// Writes `bytes` as they are: frames, parts of frames, or garbage.
    pub fn send_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Closes the sending direction: the broker reads end-of-file.
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        self.stream.shutdown(Shutdown::Write)
    }

    /// The next response frame, `Ok(None)` if the broker closed the connection cleanly between
    /// frames. Fails with `TimedOut` at `deadline`, `UnexpectedEof` if the connection closed
    /// mid-frame, `InvalidData` if a frame does not decode, or the socket's own error (such as
    /// `ConnectionReset`).
    pub fn recv_until(&mut self, deadline: Instant) -> io::Result<Option<Response>> {
        loop {
            let frame = self
                .decoder
                .next_message::<Response>(&mut self.buf)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            if let Some(response) = frame {
                return Ok(Some(response));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no response by the deadline"));
            }
            self.stream.set_read_timeout(Some(left))?;
            match self.stream.read(&mut self.chunk) {
                Ok(0) if self.buf.is_empty() => return Ok(None),
                Ok(0) => {
                    let held = self.buf.len();
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("connection closed with {held} bytes of a frame received"),
                    ));
                }
                Ok(n) => self.buf.extend_from_slice(&self.chunk[..n]),
                Err(e)
                    if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) =>
                {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no response by the deadline",
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The next response, within [`RECV_TIMEOUT`]. Panics if there is none.
    pub fn recv(&mut self) -> Response {
        match self.recv_until(Instant::now() + RECV_TIMEOUT) {
            Ok(Some(response)) => response,
            Ok(None) => panic!("the broker closed the connection instead of answering"),
            Err(e) => panic!("no response: {e}"),
        }
    }

    /// Reads until the broker closes the connection cleanly, by `deadline`; returns what it
    /// sent before closing.
    pub fn recv_until_closed(&mut self, deadline: Instant) -> io::Result<Vec<Response>> {
        let mut responses = Vec::new();
        while let Some(response) = self.recv_until(deadline)? {
            responses.push(response);
        }
        Ok(responses)
    }

    /// Sends `body` and returns its answer, which must be the next frame.
    pub fn call(&mut self, body: request::Body) -> Response {
        let id = self.send_body(body).unwrap_or_else(|e| panic!("cannot send a request: {e}"));
        let response = self.recv();
        assert_eq!(response.correlation_id, id, "answer to another request: {response:?}");
        response
    }

    /// Sends `body` and returns the answer's body; panics on a request-level error.
    pub fn call_ok(&mut self, body: request::Body) -> response::Body {
        let response = self.call(body);
        match (response.error, response.body) {
            (None, Some(body)) => body,
            (error, body) => panic!("request failed: error {error:?}, body {body:?}"),
        }
    }

    /// Negotiates version 1 and returns the broker's limits.
    pub fn handshake(&mut self) -> v1::Limits {
        let body = request::Body::ApiVersions(v1::ApiVersionsRequest {
            min_version: 1,
            max_version: 1,
            client_name: "eddy-tests raw client".into(),
        });
        match self.call_ok(body) {
            response::Body::ApiVersions(r) => r.limits.unwrap_or_default(),
            other => panic!("api_versions answered with {other:?}"),
        }
    }

    /// Creates `name` with `partitions` partitions; panics unless it succeeds.
    pub fn create_topic(&mut self, name: &str, partitions: u32) {
        let config = v1::TopicConfig { partitions: Some(partitions), ..Default::default() };
        let body = request::Body::CreateTopic(v1::CreateTopicRequest {
            name: name.into(),
            config: Some(config),
        });
        match self.call_ok(body) {
            response::Body::CreateTopic(_) => {}
            other => panic!("create_topic answered with {other:?}"),
        }
    }

    /// Produces one batch (acks = written) and returns the partition's result.
    pub fn produce(
        &mut self,
        topic: &str,
        partition: u32,
        batch: Bytes,
    ) -> v1::ProducePartitionResult {
        match self.call_ok(produce_request(v1::Acks::Written, topic, partition, batch)) {
            response::Body::Produce(r) => single_produce_result(r),
            other => panic!("produce answered with {other:?}"),
        }
    }

    /// Produces one batch and returns its `(base_offset, last_offset)`; panics on an error.
    pub fn produce_ok(&mut self, topic: &str, partition: u32, batch: Bytes) -> (u64, u64) {
        let result = self.produce(topic, partition, batch);
        assert!(result.error.is_none(), "produce to {topic}-{partition} failed: {result:?}");
        (result.base_offset, result.last_offset)
    }

    /// Fetches one partition and returns its result.
    pub fn fetch(
        &mut self,
        topic: &str,
        partition: u32,
        offset: u64,
        max_wait_ms: u32,
        min_bytes: u32,
    ) -> v1::FetchPartitionResult {
        match self.call_ok(fetch_request(topic, partition, offset, max_wait_ms, min_bytes)) {
            response::Body::Fetch(r) => single_fetch_result(r),
            other => panic!("fetch answered with {other:?}"),
        }
    }

    /// Every batch of the partition from `offset` to its end, fetched without waiting,
    /// concatenated as stored.
    pub fn fetch_all(&mut self, topic: &str, partition: u32, mut offset: u64) -> Vec<u8> {
        let mut all = Vec::new();
        loop {
            let result = self.fetch(topic, partition, offset, 0, 1);
            assert!(
                result.error.is_none(),
                "fetch {topic}-{partition}@{offset} failed: {result:?}"
            );
            if result.records.is_empty() {
                assert_eq!(offset, result.high_watermark, "empty fetch below the high watermark");
                return all;
            }
            let mut last = None;
            for batch in eddy_storage::Batches::new(&result.records) {
                let batch = batch.unwrap_or_else(|e| panic!("fetched an invalid batch: {e}"));
                last = Some(batch.last_offset());
            }
            offset = last.map_or(offset, |l| l + 1);
            all.extend_from_slice(&result.records);
        }
    }

    /// The partition's next offset (high watermark), from a metadata request.
    pub fn next_offset(&mut self, topic: &str, partition: u32) -> u64 {
        let body = request::Body::Metadata(v1::MetadataRequest { topics: vec![topic.into()] });
        let metadata = match self.call_ok(body) {
            response::Body::Metadata(m) => m,
            other => panic!("metadata answered with {other:?}"),
        };
        let topic_metadata = metadata
            .topics
            .iter()
            .find(|t| t.name == topic)
            .unwrap_or_else(|| panic!("metadata without topic {topic}: {metadata:?}"));
        assert!(topic_metadata.error.is_none(), "metadata for {topic}: {topic_metadata:?}");
        topic_metadata
            .partitions
            .iter()
            .find(|p| p.partition == partition)
            .unwrap_or_else(|| panic!("metadata without {topic}-{partition}: {metadata:?}"))
            .next_offset
    }

    /// The sorted names of every topic.
    pub fn topic_names(&mut self) -> Vec<String> {
        match self.call_ok(request::Body::ListTopics(v1::ListTopicsRequest {})) {
            response::Body::ListTopics(r) => r.names,
            other => panic!("list_topics answered with {other:?}"),
        }
    }
}

/// A produce of one batch to one partition.
pub fn produce_request(acks: v1::Acks, topic: &str, partition: u32, batch: Bytes) -> request::Body {
    request::Body::Produce(v1::ProduceRequest {
        acks: acks as i32,
        topics: vec![v1::ProduceTopic {
            topic: topic.into(),
            partitions: vec![v1::ProducePartition { partition, batch }],
        }],
    })
}

/// A fetch of one partition from `offset`, waiting up to `max_wait_ms` for `min_bytes`.
pub fn fetch_request(
    topic: &str,
    partition: u32,
    offset: u64,
    max_wait_ms: u32,
    min_bytes: u32,
) -> request::Body {
    request::Body::Fetch(v1::FetchRequest {
        max_wait_ms,
        min_bytes,
        max_bytes: 0,
        topics: vec![v1::FetchTopic {
            topic: topic.into(),
            partitions: vec![v1::FetchPartition { partition, offset, max_bytes: 0 }],
        }],
        member: None,
        isolation: 0,
    })
}

/// A metadata request for every topic.
pub fn metadata_request() -> request::Body {
    request::Body::Metadata(v1::MetadataRequest { topics: vec![] })
}

/// The only partition result of a one-partition produce.
pub fn single_produce_result(response: v1::ProduceResponse) -> v1::ProducePartitionResult {
    let mut partitions: Vec<_> = response.topics.into_iter().flat_map(|t| t.partitions).collect();
    assert_eq!(partitions.len(), 1, "expected one partition result: {partitions:?}");
    partitions.remove(0)
}

/// The only partition result of a one-partition fetch.
pub fn single_fetch_result(response: v1::FetchResponse) -> v1::FetchPartitionResult {
    let mut partitions: Vec<_> = response.topics.into_iter().flat_map(|t| t.partitions).collect();
    assert_eq!(partitions.len(), 1, "expected one partition result: {partitions:?}");
    partitions.remove(0)
}

/// The request-level error code of `response` (`None` when it succeeded).
pub fn error_code(response: &Response) -> Option<ErrorCode> {
    response.error.as_ref().map(v1::Error::error_code)
}

/// A batch of about `bytes` bytes in one record.
pub fn big_batch(bytes: usize) -> Bytes {
    let value = vec![0x5a; bytes];
    let mut builder = BatchBuilder::new();
    builder.push(Record {
        timestamp: 1_700_000_000_000,
        key: Some(b"k"),
        value: Some(&value),
        headers: &[],
    });
    builder.build()
}

/// Bytes as MiB, for messages.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}
