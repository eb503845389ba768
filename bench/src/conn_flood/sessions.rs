//! A normal client's whole session on each listener, from 127.0.0.1: a new connection,
//! authentication, one record produced and acknowledged, the connection closed.
//!
//! - native: eddy's client (SCRAM-SHA-512), `send_and_wait` at `acks = written`;
//! - Kafka: SaslHandshake v1 (PLAIN), SaslAuthenticate v2, Produce v9 at `acks = 1`, encoded
//!   with `kafka-protocol` (Kafka's schemas) over a blocking socket;
//! - HTTP: `POST /api/sql` with Basic authentication, `INSERT INTO` a stream over the topic.
//!
//! Every answer is checked; a session that was refused fails the workload.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use bytes::{Bytes, BytesMut};
use eddy_client::sasl::{b64, plain_token};
use eddy_client::{Acks, Connection, ConnectionOptions, Producer, ProducerConfig, ProducerRecord};
use eddy_storage::{BatchBuilder, Record};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader,
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};

use super::flood::Listener;

/// Longest one answer may take before the session fails.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer a session reads.
const MAX_ANSWER: usize = 1 << 20;
const STREAM: &str = "flood_values";

/// The three listeners' sessions, with what they need between runs.
pub(super) struct Sessions<'a> {
    runtime: &'a tokio::runtime::Runtime,
    addrs: [String; 3],
    options: ConnectionOptions,
    plain: Bytes,
    /// base64 of `user:password`, for HTTP Basic authentication.
    pub(super) basic: String,
    topic: String,
    acknowledged: u64,
}

impl<'a> Sessions<'a> {
    /// Sessions against `addrs` (native, Kafka, HTTP) as `user`; defines the HTTP sessions'
    /// stream over `topic`.
    pub(super) fn new(
        runtime: &'a tokio::runtime::Runtime,
        addrs: &[String; 3],
        options: ConnectionOptions,
        (user, password): (&str, &str),
        topic: &str,
    ) -> Result<Sessions<'a>> {
        let sessions = Sessions {
            runtime,
            addrs: addrs.clone(),
            options,
            plain: Bytes::from(plain_token(user, password)),
            basic: b64(format!("{user}:{password}").as_bytes()),
            topic: topic.to_string(),
            acknowledged: 0,
        };
        let create = format!(
            "CREATE STREAM {STREAM} (v VARCHAR) WITH (kafka_topic = '{topic}', \
             value_format = 'json');"
        );
        sessions.http_sql(&create).context("defining the HTTP sessions' stream")?;
        Ok(sessions)
    }

    /// Records acknowledged by every session so far.
    pub(super) fn acknowledged(&self) -> u64 {
        self.acknowledged
    }

    /// One whole session on `listener`.
    pub(super) fn run(&mut self, listener: Listener) -> Result<()> {
        match listener {
            Listener::Native => self.runtime.block_on(self.native())?,
            Listener::Kafka => self.kafka()?,
            Listener::Http => {
                let insert = format!("INSERT INTO {STREAM} (v) VALUES ('flood');");
                self.http_sql(&insert)?;
            }
        }
        self.acknowledged += 1;
        Ok(())
    }

    async fn native(&self) -> Result<()> {
        let conn = Connection::connect(&self.addrs[0], self.options.clone()).await?;
        let config = ProducerConfig {
            acks: Acks::Written,
            linger: Duration::ZERO,
            ..ProducerConfig::default()
        };
        let producer = Producer::new(Arc::new(conn), config)?;
        let record = ProducerRecord::value(&b"native"[..]);
        producer.send_and_wait(&self.topic, Some(0), record).await?;
        producer.close().await?;
        Ok(())
    }

    fn kafka(&self) -> Result<()> {
        let mut kafka = KafkaWire::connect(&self.addrs[1])?;
        let handshake = SaslHandshakeRequest::default().with_mechanism(text("PLAIN"));
        let answer: SaslHandshakeResponse = kafka.call(ApiKey::SaslHandshake, 1, &handshake)?;
        ensure!(answer.error_code == 0, "SaslHandshake: error {}", answer.error_code);
        let token = SaslAuthenticateRequest::default().with_auth_bytes(self.plain.clone());
        let answer: SaslAuthenticateResponse = kafka.call(ApiKey::SaslAuthenticate, 2, &token)?;
        ensure!(answer.error_code == 0, "SaslAuthenticate: {:?}", answer.error_message);

        let mut batch = BatchBuilder::new();
        let timestamp = 1_700_000_000_000;
        batch.push(Record { timestamp, key: None, value: Some(b"kafka"), headers: &[] });
        let partition =
            PartitionProduceData::default().with_index(0).with_records(Some(batch.build()));
        let topic = TopicProduceData::default()
            .with_name(TopicName(text(&self.topic)))
            .with_partition_data(vec![partition]);
        let produce = ProduceRequest::default().with_acks(1).with_timeout_ms(30_000);
        let answer: ProduceResponse =
            kafka.call(ApiKey::Produce, 9, &produce.with_topic_data(vec![topic]))?;
        let result = answer
            .responses
            .first()
            .and_then(|t| t.partition_responses.first())
            .context("a Produce answer without the partition")?;
        ensure!(result.error_code == 0, "Produce: error {}", result.error_code);
        Ok(())
    }

    /// `statement` by `POST /api/sql`, answered 200 with no statement's error.
    fn http_sql(&self, statement: &str) -> Result<()> {
        let body = serde_json::json!({ "sql": statement }).to_string();
        let text = http(&self.addrs[2], &self.basic, "POST /api/sql", &body)?;
        ensure!(!text.contains("\"error\""), "POST /api/sql answered: {text}");
        Ok(())
    }
}

/// One HTTP/1.1 request (`line`: method and path) on a connection of its own, with Basic
/// authentication (`basic`: base64 of `user:password`); the whole answer, which must be 200.
pub(super) fn http(addr: &str, basic: &str, line: &str, body: &str) -> Result<String> {
    let request = format!(
        "{line} HTTP/1.1\r\nhost: eddy\r\nauthorization: Basic {basic}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    stream.write_all(request.as_bytes())?;
    let mut answer = Vec::new();
    stream.take(MAX_ANSWER as u64).read_to_end(&mut answer)?;
    let text = String::from_utf8_lossy(&answer).into_owned();
    ensure!(text.starts_with("HTTP/1.1 200"), "{line} answered: {text}");
    Ok(text)
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// A Kafka connection that sends one request at a time.
struct KafkaWire {
    stream: TcpStream,
    correlation: i32,
}

impl KafkaWire {
    fn connect(addr: &str) -> Result<KafkaWire> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
        Ok(KafkaWire { stream, correlation: 0 })
    }

    fn call<Q, R>(&mut self, key: ApiKey, version: i16, request: &Q) -> Result<R>
    where
        Q: Encodable + HeaderVersion,
        R: Decodable + HeaderVersion,
    {
        self.correlation += 1;
        let mut buf = BytesMut::new();
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(text("eddy-bench")));
        header.encode(&mut buf, Q::header_version(version))?;
        request.encode(&mut buf, version)?;
        let mut frame = u32::try_from(buf.len())?.to_be_bytes().to_vec();
        frame.extend_from_slice(&buf);
        self.stream.write_all(&frame)?;

        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).with_context(|| format!("{key:?}'s answer"))?;
        let size = u32::from_be_bytes(size) as usize;
        if size > MAX_ANSWER {
            bail!("{key:?}'s answer claims {size} bytes");
        }
        let mut answer = vec![0u8; size];
        self.stream.read_exact(&mut answer)?;
        let mut answer = Bytes::from(answer);
        let header = ResponseHeader::decode(&mut answer, R::header_version(version))?;
        ensure!(header.correlation_id == self.correlation, "an answer out of order");
        R::decode(&mut answer, version)
    }
}
