//! How an instance reaches the cluster: the bootstrap servers, librdkafka settings every client
//! gets, and the time limits of blocking calls.
//!
//! Invariant: every client this crate creates starts from [`ClusterConfig::client`], so a
//! setting given here (security, timeouts) reaches the readers, the producer, the admin client
//! and the group member alike.

use std::time::Duration;

use rdkafka::ClientConfig;

/// Where the cluster is and how long to wait for it.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `host:port[,host:port...]`, librdkafka's `bootstrap.servers`.
    pub bootstrap: String,
    /// Extra librdkafka properties given to every client (e.g. `security.protocol`).
    pub properties: Vec<(String, String)>,
    /// Longest wait for a metadata, offsets or admin answer.
    pub op_timeout: Duration,
    /// Longest wait for an appended batch to be acknowledged (`acks=all`).
    pub delivery_timeout: Duration,
    /// A task partition's transaction still open after this long is aborted by the cluster
    /// (`transaction.timeout.ms`); it bounds how long a stuck producer holds back the last
    /// stable offset of the partitions it wrote.
    pub transaction_timeout: Duration,
}

impl ClusterConfig {
    pub fn new(bootstrap: impl Into<String>) -> Self {
        Self {
            bootstrap: bootstrap.into(),
            properties: Vec::new(),
            op_timeout: Duration::from_secs(30),
            delivery_timeout: Duration::from_secs(60),
            transaction_timeout: Duration::from_secs(30),
        }
    }

    /// A librdkafka configuration with the bootstrap servers and the extra properties.
    pub(crate) fn client(&self, client_id: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap).set("client.id", client_id);
        for (k, v) in &self.properties {
            config.set(k, v);
        }
        config
    }
}
