//! Speaking the Kafka protocol by hand, for tests that need exact requests: frames encoded
//! with `kafka-protocol` (Kafka's schemas) and answers decoded with it, over a blocking
//! socket with a read deadline.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};

/// Longest a test waits for one answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

pub fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// A request frame (size prefix, header, body) for `key` at `version`.
pub fn frame<T: Encodable + HeaderVersion>(
    key: ApiKey,
    version: i16,
    correlation: i32,
    body: &T,
) -> Vec<u8> {
    let mut buf = BytesMut::new();
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation)
        .with_client_id(Some(text("eddy-tests")));
    header.encode(&mut buf, T::header_version(version)).expect("encodable header");
    body.encode(&mut buf, version).expect("encodable request");
    let mut out = (buf.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&buf);
    out
}

/// A connection to a Kafka listener that sends one request at a time and decodes its answer.
#[derive(Debug)]
pub struct KafkaConnection {
    stream: TcpStream,
    next_correlation: i32,
}

impl KafkaConnection {
    pub fn connect(addr: SocketAddr) -> KafkaConnection {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        KafkaConnection::from_stream(stream)
    }

    /// Speaks over a connection made elsewhere (from a chosen source address, say).
    pub fn from_stream(stream: TcpStream) -> KafkaConnection {
        stream.set_read_timeout(Some(ANSWER_TIMEOUT)).expect("read timeout");
        KafkaConnection { stream, next_correlation: 1 }
    }

    /// The socket, to watch it close.
    pub fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Sends `request` as `key` v`version` and decodes the answer as `R`.
    pub fn call<Q, R>(&mut self, key: ApiKey, version: i16, request: &Q) -> R
    where
        Q: Encodable + HeaderVersion,
        R: Decodable + HeaderVersion,
    {
        let correlation = self.next_correlation;
        self.next_correlation += 1;
        self.stream.write_all(&frame(key, version, correlation, request)).expect("send request");
        let mut answer = read_answer(&mut self.stream);
        let header = ResponseHeader::decode(&mut answer, R::header_version(version))
            .expect("response header");
        assert_eq!(header.correlation_id, correlation, "answers come back in order");
        R::decode(&mut answer, version).unwrap_or_else(|e| panic!("{key:?} v{version} answer: {e}"))
    }
}

/// One size-prefixed answer (header and body, without the size).
pub fn read_answer(stream: &mut TcpStream) -> Bytes {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).expect("answer size");
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut body).expect("answer body");
    Bytes::from(body)
}
