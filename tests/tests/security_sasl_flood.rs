//! A flood of wrong passwords does not cost a normal client its records (docs/security.md,
//! "Authentication"): `EDDY_FLOOD_ATTEMPTS` wrong attempts (default 2,000; the figure
//! is 10,000) from `EDDY_FLOOD_THREADS` threads (default 32), each a fresh connection to the
//! native or the Kafka listener with SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN, as the bootstrap
//! user with a wrong password or as a user that does not exist — chosen by `EDDY_FLOOD_SEED`
//! (printed) — while an authenticated eddy producer keeps producing. Every attempt must be
//! refused, and afterwards every record the producer sent must be in the topic, in order.
//!
//! The broker slows the flood down (`security::throttle`: 2,000 attempts take about 45 s here),
//! which is what keeps the normal client served. The latency it sees is printed, not asserted: the "p99 within 2x of a quiet
//! run" figure is `eddy-bench auth-flood`'s (docs/benchmarks.md), measured on a quiet machine.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use eddy_client::sasl::Mechanism;
use eddy_client::{
    Admin, Connection, ConnectionOptions, Consumer, ConsumerConfig, Credentials, ErrorCode,
    Producer, ProducerConfig, ProducerRecord, SeekTo, TopicConfig,
};
use eddy_tests::env_u64;
use eddy_tests::kafka_wire::KafkaConnection;
use eddy_tests::raw_client::RawClient;
use eddy_tests::sasl::{
    ADMIN, ADMIN_PASSWORD, KafkaRefusal, kafka_authenticate, native_authenticate,
    start_authenticated,
};

const TOPIC: &str = "steady";
const REFUSED: &str =
    "Authentication failed during authentication due to invalid credentials with SASL mechanism";

/// SplitMix64: the attempts are a pure function of the seed.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// One wrong attempt, number `i` of the flood seeded `seed`; panics unless it is refused.
fn wrong_attempt(native: std::net::SocketAddr, kafka: std::net::SocketAddr, seed: u64, i: u64) {
    let r = mix(seed ^ mix(i));
    let mechanism = Mechanism::ALL[(r % 3) as usize];
    let unknown = format!("intruder-{}", r % 1000);
    let user = if r & 8 == 0 { ADMIN } else { unknown.as_str() };
    let password = format!("guess-{r:x}");
    if r & 16 == 0 {
        let mut client = RawClient::connect(native);
        client.handshake();
        let e = native_authenticate(&mut client, mechanism, user, &password)
            .expect_err("a wrong password is refused");
        assert_eq!(e.error_code(), ErrorCode::AuthenticationFailed, "attempt {i}: {e}");
        assert_eq!(e.message, format!("{REFUSED} {mechanism}"), "attempt {i}");
    } else {
        let mut conn = KafkaConnection::connect(kafka);
        let refused = kafka_authenticate(&mut conn, mechanism, user, &password);
        assert_eq!(
            refused,
            Err(KafkaRefusal::Authenticate(58, format!("{REFUSED} {mechanism}"))),
            "attempt {i}"
        );
    }
}

/// Produces records 0, 1, ... one at a time (each acknowledged before the next) until `stop`;
/// returns how many it sent and each one's latency.
async fn steady_producer(addr: String, stop: Arc<AtomicBool>) -> (u64, Vec<Duration>) {
    let options = ConnectionOptions {
        credentials: Some(Credentials::new(ADMIN, ADMIN_PASSWORD)),
        ..ConnectionOptions::default()
    };
    let conn =
        Arc::new(Connection::connect(&addr, options).await.expect("the normal client connects"));
    Admin::new(conn.clone())
        .create_topic(TOPIC, TopicConfig::default())
        .await
        .expect("the topic is created");
    let producer = Producer::new(conn, ProducerConfig::default()).expect("a producer");
    let (mut sent, mut latencies) = (0u64, Vec::new());
    while !stop.load(Ordering::Acquire) {
        let started = Instant::now();
        let record = ProducerRecord::keyed(format!("k{sent}"), format!("record-{sent}"));
        producer.send_and_wait(TOPIC, Some(0), record).await.expect("acknowledged");
        latencies.push(started.elapsed());
        sent += 1;
    }
    producer.close().await.expect("flushed");
    (sent, latencies)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let at = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len().max(1)) - 1;
    sorted.get(at).copied().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_wrong_passwords_is_refused_and_costs_no_record() {
    let attempts = env_u64("EDDY_FLOOD_ATTEMPTS").unwrap_or(2_000);
    let threads = env_u64("EDDY_FLOOD_THREADS").unwrap_or(32).max(1);
    let seed = env_u64("EDDY_FLOOD_SEED").unwrap_or(0x5a51_f100d);
    println!("flood: {attempts} wrong attempts from {threads} threads, EDDY_FLOOD_SEED={seed:#x}");
    let dir = tempfile::tempdir().unwrap();
    let broker = start_authenticated(dir.path(), &[]);
    let (native, kafka) = (broker.addr(), broker.kafka_addr());

    let stop = Arc::new(AtomicBool::new(false));
    let steady = tokio::spawn(steady_producer(native.to_string(), stop.clone()));
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let flood: Vec<_> = (0..threads)
        .map(|_| {
            let next = next.clone();
            std::thread::spawn(move || {
                let mut done = 0u64;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= attempts {
                        return done;
                    }
                    wrong_attempt(native, kafka, seed, i);
                    done += 1;
                }
            })
        })
        .collect();
    let refused: u64 = tokio::task::spawn_blocking(move || {
        flood.into_iter().map(|t| t.join().expect("a flood thread failed")).sum()
    })
    .await
    .unwrap();
    let took = started.elapsed();
    stop.store(true, Ordering::Release);
    let (sent, mut latencies) = steady.await.unwrap();
    assert_eq!(refused, attempts, "every wrong attempt refused");
    latencies.sort();
    println!(
        "flood: {refused} refused in {took:.1?}; the normal client produced {sent} records meanwhile \
         (p50 {:?}, p99 {:?}, max {:?})",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default()
    );
    assert!(sent > 0, "the normal client produced nothing during the flood");

    // Every record is there, in order.
    let options = ConnectionOptions {
        credentials: Some(Credentials::new(ADMIN, ADMIN_PASSWORD).with_mechanism(Mechanism::Plain)),
        ..ConnectionOptions::default()
    };
    let conn = Arc::new(Connection::connect(&native.to_string(), options).await.unwrap());
    let mut consumer = Consumer::new(conn, ConsumerConfig::default());
    consumer.assign(TOPIC, [0]);
    consumer.seek(TOPIC, 0, SeekTo::Earliest).await.unwrap();
    let mut seen = 0u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen < sent {
        assert!(Instant::now() < deadline, "only {seen} of {sent} records read back");
        for batch in consumer.poll(Duration::from_secs(1)).await.unwrap() {
            for record in batch.to_records().unwrap() {
                assert_eq!(record.value.as_deref(), Some(format!("record-{seen}").as_bytes()));
                seen += 1;
            }
        }
    }
}
