//! Waiting for a processor on the embedded broker to catch up, for the watermark tests.

use std::time::{Duration, Instant};

use eddy_broker::Broker;
use eddy_client::Admin;
use eddy_protocol::v1;

/// Polls `name`'s status until its lag is 0 with all `produced` records of `topic` read by its
/// source tasks, or a 120 s deadline passes.
pub async fn caught_up(
    admin: &Admin<Broker>,
    name: &str,
    topic: &str,
    produced: usize,
) -> v1::ProcessorInfo {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let info = admin.processor_status(name).await.unwrap();
        assert_ne!(info.state, "failed", "{}", info.error);
        let read: u64 = info
            .tasks
            .iter()
            .flat_map(|t| &t.inputs)
            .filter(|i| i.topic == topic)
            .map(|i| i.position)
            .sum();
        if info.lag == 0 && read == produced as u64 {
            return info;
        }
        assert!(
            Instant::now() < deadline,
            "not caught up after 120 s: lag {}, {read} of {produced} source records read",
            info.lag
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
