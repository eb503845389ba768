//! Broker configuration: defaults, a TOML file, and `EDDY_*` environment overrides, validated
//! into one typed value before anything starts.
//!
//! ```toml
//! data_dir = "./eddy-data"
//! listen = "127.0.0.1:9750"
//! kafka_listen = "127.0.0.1:9092"  # the Kafka-protocol listener; "off" switches it off
//! kafka_advertised = "localhost:9092"  # host:port Metadata answers give (default: the bound address)
//! http_listen = "127.0.0.1:9751"   # /metrics, /health, /ready, the web console; "off" switches it off
//! insecure = false                 # true: serve non-loopback listeners without TLS and auth
//! maintenance_interval_ms = 30000
//!
//! [limits]
//! max_frame_bytes = 16777216
//! max_batch_bytes = 8388608
//! max_connections = 1024          # per listener (native and Kafka each)
//! max_connections_per_ip = 256    # per listener, from one client address (loopback included)
//! max_in_flight = 64
//! idle_timeout_ms = 600000
//! handshake_timeout_ms = 10000    # a new connection's first request must arrive within this
//!
//! [topic_defaults]
//! partitions = 1
//! segment_bytes = 1073741824
//! retention_ms = 604800000
//! cleanup = "delete"
//! flush = "os"            # or "always", or { interval = { ms = 1000 } }
//!
//! [groups]
//! session_timeout_ms = 45000       # when a member asks for none
//! min_session_timeout_ms = 500     # what a member may ask for is clamped to [min, max]
//! max_session_timeout_ms = 300000
//! heartbeat_interval_ms = 3000     # at most a third of the session timeout
//! rebalance_timeout_ms = 60000     # to release a revoked partition, when a member asks for none
//! offsets_flush = "always"         # flush policy of __consumer_offsets when it is created
//!
//! [processors]
//! retire_grace_ms = 600000         # a replaced version's state is kept this long (rollback)
//!
//! [quotas]                         # docs/security.md, "Quotas"; 0 or absent: no limit
//! producer_byte_rate = 0           # bytes/s each (principal, client id) may produce
//! consumer_byte_rate = 0           # bytes/s of records each may fetch
//! window_ms = 1000                 # Kafka's quota.window.size.seconds, in ms
//! samples = 11                     # Kafka's quota.window.num
//! [quotas.users.alice]             # one budget for every connection of User:alice
//! producer_byte_rate = 1048576
//! [quotas.clients.batch-loader]    # one budget for every connection with this client id
//! consumer_byte_rate = 10485760
//! [tls]                            # TLS is on when cert_file is set (docs/security.md)
//! cert_file = "broker.pem"         # certificate chain, PEM, leaf first
//! key_file = "broker.key"          # its private key, PEM
//! client_ca_file = "ca.pem"        # optional: clients must present a certificate it signed
//! listeners = ["native", "kafka", "http"]  # the default: every listener
//! [acl]
//! enabled = false                  # true: requests are checked against the ACLs (docs/security.md)
//! super_users = ["admin"]          # users with every right
//! [auth]
//! enabled = false                  # true: every native and Kafka connection authenticates
//! mechanisms = ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"]
//! max_connections_per_principal = 256   # per listener, once authenticated as one user
//! failed_delay_ms = 100            # a refused authentication is answered this late, then closed
//! ```
//!
//! Most keys may be overridden by an environment variable (`[topic_defaults]` and
//! `offsets_flush` may not; docs/protocol.md lists them all): `EDDY_DATA_DIR`, `EDDY_LISTEN`,
//! `EDDY_KAFKA_LISTEN`, `EDDY_KAFKA_ADVERTISED`, `EDDY_HTTP_LISTEN`, `EDDY_MAINTENANCE_INTERVAL_MS`, and `EDDY_` + the upper-cased key for each limit (for example
//! `EDDY_MAX_CONNECTIONS`), and `EDDY_GROUP_` + the upper-cased key for each group timing (for
//! example `EDDY_GROUP_MIN_SESSION_TIMEOUT_MS`), `EDDY_TXN_MAX_TIMEOUT_MS` and
//! `EDDY_TXN_ABORT_CHECK_INTERVAL_MS` (the `[transactions]` section), `EDDY_TLS_CERT_FILE`,
//! `EDDY_TLS_KEY_FILE`, `EDDY_TLS_CLIENT_CA_FILE` (the `[tls]` files), `EDDY_ACL_ENABLED` and
//! `EDDY_ACL_SUPER_USERS` (comma-separated).
//! `EDDY_TXN_ABORT_CHECK_INTERVAL_MS` (the `[transactions]` section), and `EDDY_AUTH_ENABLED`,
//! `EDDY_AUTH_MECHANISMS` (comma-separated), `EDDY_AUTH_MAX_CONNECTIONS_PER_PRINCIPAL` and
//! `EDDY_AUTH_FAILED_DELAY_MS` (the `[auth]` section).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use eddy_client::sasl::Mechanism;
use serde::Deserialize;

use crate::groups::state::Timing;
use crate::quotas::QuotaSettings;
use crate::security::acl::AclSettings;
use crate::security::tls::TlsSettings;
use crate::topic::{FlushSetting, TopicSettings};

pub const DEFAULT_DATA_DIR: &str = "./eddy-data";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9750";
pub const DEFAULT_KAFKA_LISTEN: &str = "127.0.0.1:9092";
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:9751";

/// Where a listener binds, or that it is switched off (`"off"` in the file and environment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    Off,
    At(SocketAddr),
}

impl std::str::FromStr for Listen {
    type Err = std::net::AddrParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "off" { Ok(Listen::Off) } else { s.parse().map(Listen::At) }
    }
}

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(|e| serde::de::Error::custom(format!("{text:?}: {e}")))
    }
}

/// Limits the server enforces on every connection; each has a stable error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub max_frame_bytes: u32,
    pub max_batch_bytes: u32,
    pub max_connections: u32,
    /// Connections one client address may hold on a listener (at most `max_connections`
    /// counts: a larger value is the same as no per-address limit).
    pub max_connections_per_ip: u32,
    pub max_in_flight: u32,
    pub idle_timeout_ms: u32,
    /// A connection whose first request is not complete this long after its accept is closed
    /// (or after `idle_timeout_ms`, if that is shorter).
    pub handshake_timeout_ms: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 16 << 20,
            max_batch_bytes: 8 << 20,
            max_connections: 1024,
            max_connections_per_ip: 256,
            max_in_flight: 64,
            idle_timeout_ms: 600_000,
            handshake_timeout_ms: 10_000,
        }
    }
}

/// Consumer group timing and the internal offsets topic's durability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupSettings {
    pub session_timeout_ms: u32,
    pub min_session_timeout_ms: u32,
    pub max_session_timeout_ms: u32,
    pub heartbeat_interval_ms: u32,
    pub rebalance_timeout_ms: u32,
    pub offsets_flush: FlushSetting,
}

impl Default for GroupSettings {
    fn default() -> Self {
        Self {
            session_timeout_ms: 45_000,
            min_session_timeout_ms: 500,
            max_session_timeout_ms: 300_000,
            heartbeat_interval_ms: 3_000,
            rebalance_timeout_ms: 60_000,
            offsets_flush: FlushSetting::Always,
        }
    }
}

impl GroupSettings {
    pub fn timing(&self) -> Timing {
        Timing {
            default_session_ms: self.session_timeout_ms,
            min_session_ms: self.min_session_timeout_ms,
            max_session_ms: self.max_session_timeout_ms,
            heartbeat_interval_ms: self.heartbeat_interval_ms,
            default_rebalance_ms: self.rebalance_timeout_ms,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let ordered = self.min_session_timeout_ms > 0
            && self.min_session_timeout_ms <= self.session_timeout_ms
            && self.session_timeout_ms <= self.max_session_timeout_ms;
        if !ordered {
            return Err(ConfigError::Invalid(
                "groups: need 0 < min_session_timeout_ms <= session_timeout_ms <= max_session_timeout_ms".into(),
            ));
        }
        if self.heartbeat_interval_ms == 0 || self.rebalance_timeout_ms == 0 {
            return Err(ConfigError::Invalid(
                "groups: heartbeat_interval_ms and rebalance_timeout_ms must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// Everything the broker needs to start.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// The Kafka-protocol listener.
    pub kafka_listen: Listen,
    /// `host:port` the Kafka listener names in Metadata answers (clients connect there); by
    /// default the address it is bound to.
    pub kafka_advertised: Option<String>,
    /// The HTTP listener (metrics, health, the web console). Off, the broker also counts no
    /// requests: nothing could read them.
    pub http_listen: Listen,
    /// How often retention and compaction run over every partition.
    pub maintenance_interval_ms: u64,
    pub limits: Limits,
    pub topic_defaults: TopicSettings,
    pub groups: GroupSettings,
    pub processors: ProcessorSettings,
    pub transactions: TransactionSettings,
    /// Byte-rate quotas (docs/security.md, "Quotas").
    pub quotas: QuotaSettings,
    /// TLS on the listeners (`[tls]`); off unless `cert_file` is set.
    pub tls: TlsSettings,
    /// Authorization (docs/security.md): off by default.
    pub acl: AclSettings,
    pub auth: AuthSettings,
    /// Serve listeners reachable from other machines without TLS and authentication
    /// (`security::exposure`); off, such a configuration is refused.
    pub insecure: bool,
}

/// Authentication on the native and Kafka listeners (docs/security.md, "Authentication").
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Every connection must authenticate (SASL) before any request but ApiVersions and the
    /// SASL requests. Off, a client may still authenticate (and then acts as its user).
    pub enabled: bool,
    /// The SASL mechanisms the listeners accept.
    #[serde(deserialize_with = "mechanisms")]
    pub mechanisms: Vec<Mechanism>,
    /// Connections one authenticated user may hold on a listener; past it, an authentication
    /// is refused and its connection closed.
    pub max_connections_per_principal: u32,
    /// A refused authentication is answered this long after it arrived, then its connection
    /// is closed (Kafka's `connection.failed.authentication.delay.ms`): a guesser gets one
    /// guess per connection and per delay.
    pub failed_delay_ms: u32,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            mechanisms: Mechanism::ALL.to_vec(),
            max_connections_per_principal: 256,
            failed_delay_ms: 100,
        }
    }
}

/// `["SCRAM-SHA-256", "plain"]` as mechanisms (names in any case).
fn mechanisms<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Mechanism>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    names.iter().map(|n| n.parse().map_err(serde::de::Error::custom)).collect()
}

/// Comma-separated mechanism names, as `EDDY_AUTH_MECHANISMS` gives them.
fn parse_mechanisms(text: &str) -> Result<Vec<Mechanism>, String> {
    text.split(',').filter(|n| !n.trim().is_empty()).map(str::parse).collect()
}

/// The Kafka transaction coordinator (`transactions::Coordinator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransactionSettings {
    /// Longest `transaction.timeout.ms` a producer may ask for (Kafka's
    /// `transaction.max.timeout.ms`, 15 minutes); more is `INVALID_TRANSACTION_TIMEOUT`.
    pub max_timeout_ms: u32,
    /// How often transactions past their timeout are looked for and aborted (Kafka's
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`).
    pub abort_check_interval_ms: u32,
}

impl Default for TransactionSettings {
    fn default() -> Self {
        Self { max_timeout_ms: 900_000, abort_check_interval_ms: 1_000 }
    }
}

/// Processors run inside the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessorSettings {
    /// How long a version replaced by a redeploy keeps its state (for rollback).
    pub retire_grace_ms: u64,
}

impl Default for ProcessorSettings {
    fn default() -> Self {
        Self { retire_grace_ms: 600_000 }
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 9750))),
            kafka_listen: DEFAULT_KAFKA_LISTEN
                .parse()
                .unwrap_or(Listen::At(SocketAddr::from(([127, 0, 0, 1], 9092)))),
            kafka_advertised: None,
            http_listen: DEFAULT_HTTP_LISTEN
                .parse()
                .unwrap_or(Listen::At(SocketAddr::from(([127, 0, 0, 1], 9751)))),
            maintenance_interval_ms: 30_000,
            limits: Limits::default(),
            topic_defaults: TopicSettings::default(),
            groups: GroupSettings::default(),
            processors: ProcessorSettings::default(),
            transactions: TransactionSettings::default(),
            quotas: QuotaSettings::default(),
            tls: TlsSettings::default(),
            acl: AclSettings::default(),
            auth: AuthSettings::default(),
            insecure: false,
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {name}={value:?}: {reason}")]
    Env { name: String, value: String, reason: String },
    #[error("invalid config: {0}")]
    Invalid(String),
}

impl BrokerConfig {
    /// Listeners bound beyond loopback need TLS and authentication, or `insecure`.
    fn check_exposure(&self) -> Result<(), ConfigError> {
        use crate::security::exposure::{Exposed, check};
        use crate::security::tls::TlsListener;
        let mut listeners = vec![Exposed {
            setting: "listen",
            addr: self.listen,
            tls: self.tls.serves(TlsListener::Native),
        }];
        for (setting, listen, kind) in [
            ("kafka_listen", &self.kafka_listen, TlsListener::Kafka),
            ("http_listen", &self.http_listen, TlsListener::Http),
        ] {
            if let Listen::At(addr) = listen {
                listeners.push(Exposed { setting, addr: *addr, tls: self.tls.serves(kind) });
            }
        }
        check(&listeners, self.auth.enabled, self.insecure).map_err(ConfigError::Invalid)
    }

    /// Defaults, then `file` if given, then the environment.
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut config = match file {
            None => BrokerConfig::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
                toml::from_str(&text).map_err(|e| ConfigError::Parse {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?
            }
        };
        config.apply_env(env)?;
        config.validate()?;
        Ok(config)
    }

    fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(name: &str, value: String) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            value.parse().map_err(|e: T::Err| ConfigError::Env {
                name: name.into(),
                value,
                reason: e.to_string(),
            })
        }
        if let Some(v) = env("EDDY_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = env("EDDY_LISTEN") {
            self.listen = parse("EDDY_LISTEN", v)?;
        }
        if let Some(v) = env("EDDY_KAFKA_LISTEN") {
            self.kafka_listen = parse("EDDY_KAFKA_LISTEN", v)?;
        }
        if let Some(v) = env("EDDY_HTTP_LISTEN") {
            self.http_listen = parse("EDDY_HTTP_LISTEN", v)?;
        }
        if let Some(v) = env("EDDY_INSECURE") {
            self.insecure = parse("EDDY_INSECURE", v)?;
        }
        if let Some(v) = env("EDDY_KAFKA_ADVERTISED") {
            self.kafka_advertised = Some(v);
        }
        if let Some(v) = env("EDDY_MAINTENANCE_INTERVAL_MS") {
            self.maintenance_interval_ms = parse("EDDY_MAINTENANCE_INTERVAL_MS", v)?;
        }
        let limits = &mut self.limits;
        for (name, slot) in [
            ("EDDY_MAX_FRAME_BYTES", &mut limits.max_frame_bytes),
            ("EDDY_MAX_BATCH_BYTES", &mut limits.max_batch_bytes),
            ("EDDY_MAX_CONNECTIONS", &mut limits.max_connections),
            ("EDDY_MAX_CONNECTIONS_PER_IP", &mut limits.max_connections_per_ip),
            ("EDDY_MAX_IN_FLIGHT", &mut limits.max_in_flight),
            ("EDDY_IDLE_TIMEOUT_MS", &mut limits.idle_timeout_ms),
            ("EDDY_HANDSHAKE_TIMEOUT_MS", &mut limits.handshake_timeout_ms),
        ] {
            if let Some(v) = env(name) {
                *slot = parse(name, v)?;
            }
        }
        let t = &mut self.transactions;
        for (name, slot) in [
            ("EDDY_TXN_MAX_TIMEOUT_MS", &mut t.max_timeout_ms),
            ("EDDY_TXN_ABORT_CHECK_INTERVAL_MS", &mut t.abort_check_interval_ms),
        ] {
            if let Some(v) = env(name) {
                *slot = parse(name, v)?;
            }
        }
        for (name, slot) in [
            ("EDDY_TLS_CERT_FILE", &mut self.tls.cert_file),
            ("EDDY_TLS_KEY_FILE", &mut self.tls.key_file),
            ("EDDY_TLS_CLIENT_CA_FILE", &mut self.tls.client_ca_file),
        ] {
            if let Some(v) = env(name) {
                *slot = Some(PathBuf::from(v));
            }
        }
        self.apply_auth_env(&env)?;
        if let Some(v) = env("EDDY_PROCESSOR_RETIRE_GRACE_MS") {
            self.processors.retire_grace_ms = parse("EDDY_PROCESSOR_RETIRE_GRACE_MS", v)?;
        }
        if let Some(v) = env("EDDY_ACL_ENABLED") {
            self.acl.enabled = parse("EDDY_ACL_ENABLED", v)?;
        }
        if let Some(v) = env("EDDY_ACL_SUPER_USERS") {
            self.acl.super_users = v.split(',').map(|u| u.trim().to_string()).collect();
        }
        let g = &mut self.groups;
        for (name, slot) in [
            ("EDDY_GROUP_SESSION_TIMEOUT_MS", &mut g.session_timeout_ms),
            ("EDDY_GROUP_MIN_SESSION_TIMEOUT_MS", &mut g.min_session_timeout_ms),
            ("EDDY_GROUP_MAX_SESSION_TIMEOUT_MS", &mut g.max_session_timeout_ms),
            ("EDDY_GROUP_HEARTBEAT_INTERVAL_MS", &mut g.heartbeat_interval_ms),
            ("EDDY_GROUP_REBALANCE_TIMEOUT_MS", &mut g.rebalance_timeout_ms),
        ] {
            if let Some(v) = env(name) {
                *slot = parse(name, v)?;
            }
        }
        Ok(())
    }

    fn apply_auth_env(&mut self, env: &impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let invalid = |name: &str, value: String, reason: String| ConfigError::Env {
            name: name.into(),
            value,
            reason,
        };
        let auth = &mut self.auth;
        if let Some(v) = env("EDDY_AUTH_ENABLED") {
            auth.enabled = match v.as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => return Err(invalid("EDDY_AUTH_ENABLED", v, "true or false".into())),
            };
        }
        if let Some(v) = env("EDDY_AUTH_MECHANISMS") {
            auth.mechanisms =
                parse_mechanisms(&v).map_err(|e| invalid("EDDY_AUTH_MECHANISMS", v, e))?;
        }
        for (name, slot) in [
            ("EDDY_AUTH_MAX_CONNECTIONS_PER_PRINCIPAL", &mut auth.max_connections_per_principal),
            ("EDDY_AUTH_FAILED_DELAY_MS", &mut auth.failed_delay_ms),
        ] {
            if let Some(v) = env(name) {
                *slot = v.parse().map_err(|e: std::num::ParseIntError| {
                    invalid(name, v.clone(), e.to_string())
                })?;
            }
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check_exposure()?;
        let l = &self.limits;
        if l.max_frame_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "limits.max_frame_bytes must be at least 1024".into(),
            ));
        }
        // A produce carries a batch plus its envelope, and a fetch answer at least one batch.
        if l.max_batch_bytes == 0
            || u64::from(l.max_batch_bytes) + 64 * 1024 > u64::from(l.max_frame_bytes)
        {
            return Err(ConfigError::Invalid(
                "limits.max_batch_bytes must be positive and at least 64 KiB below max_frame_bytes"
                    .into(),
            ));
        }
        if [
            l.max_connections,
            l.max_connections_per_ip,
            l.max_in_flight,
            l.idle_timeout_ms,
            l.handshake_timeout_ms,
        ]
        .contains(&0)
        {
            return Err(ConfigError::Invalid(
                "limits.max_connections, max_connections_per_ip, max_in_flight, idle_timeout_ms \
                 and handshake_timeout_ms must be positive"
                    .into(),
            ));
        }
        if let Some(advertised) = &self.kafka_advertised {
            let port = advertised.rsplit_once(':').and_then(|(h, p)| {
                (!h.is_empty()).then_some(())?;
                p.parse::<u16>().ok()
            });
            if port.is_none() {
                return Err(ConfigError::Invalid(format!(
                    "kafka_advertised {advertised:?} must be host:port"
                )));
            }
        }
        if self.maintenance_interval_ms == 0 {
            return Err(ConfigError::Invalid("maintenance_interval_ms must be positive".into()));
        }
        self.groups.validate()?;
        self.quotas.validate().map_err(ConfigError::Invalid)?;
        self.tls.validate().map_err(ConfigError::Invalid)?;
        let auth = &self.auth;
        if auth.mechanisms.is_empty() || auth.max_connections_per_principal == 0 {
            return Err(ConfigError::Invalid(
                "auth.mechanisms must name at least one mechanism and \
                 auth.max_connections_per_principal must be positive"
                    .into(),
            ));
        }
        if auth.failed_delay_ms > 10_000 {
            return Err(ConfigError::Invalid("auth.failed_delay_ms must be at most 10000".into()));
        }
        if self.transactions.max_timeout_ms == 0 || self.transactions.abort_check_interval_ms == 0 {
            return Err(ConfigError::Invalid(
                "transactions.max_timeout_ms and abort_check_interval_ms must be positive".into(),
            ));
        }
        self.topic_defaults
            .validate()
            .map_err(|e| ConfigError::Invalid(format!("topic_defaults: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eddy.toml");
        std::fs::write(
            &path,
            "data_dir = \"/tmp/x\"\nlisten = \"127.0.0.1:1234\"\n[limits]\nmax_connections = 7\n[topic_defaults]\npartitions = 3\nsegment_bytes = 1048576\ncleanup = \"compact\"\nflush = \"always\"\n",
        )
        .unwrap();
        let env = |k: &str| (k == "EDDY_MAX_IN_FLIGHT").then(|| "9".to_string());
        let c = BrokerConfig::load(Some(&path), env).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.listen.port(), 1234);
        assert_eq!(c.limits.max_connections, 7);
        assert_eq!(c.limits.max_in_flight, 9);
        assert_eq!(c.topic_defaults.partitions, 3);
    }

    #[test]
    fn connection_flood_limits_from_file_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eddy.toml");
        std::fs::write(&path, "[limits]\nmax_connections_per_ip = 3\n").unwrap();
        let env = |k: &str| (k == "EDDY_HANDSHAKE_TIMEOUT_MS").then(|| "250".to_string());
        let c = BrokerConfig::load(Some(&path), env).unwrap();
        assert_eq!(c.limits.max_connections_per_ip, 3);
        assert_eq!(c.limits.handshake_timeout_ms, 250);
        let zero = |k: &str| (k == "EDDY_MAX_CONNECTIONS_PER_IP").then(|| "0".to_string());
        let e = BrokerConfig::load(None, zero).unwrap_err();
        assert!(e.to_string().contains("max_connections_per_ip"), "{e}");
    }

    #[test]
    fn tls_from_file_and_environment() {
        use crate::security::tls::TlsListener;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eddy.toml");
        std::fs::write(&path, "[tls]\ncert_file = \"a.pem\"\nlisteners = [\"kafka\"]\n").unwrap();
        let env = |k: &str| (k == "EDDY_TLS_KEY_FILE").then(|| "b.key".to_string());
        let c = BrokerConfig::load(Some(&path), env).unwrap();
        assert_eq!(c.tls.cert_file, Some(PathBuf::from("a.pem")));
        assert_eq!(c.tls.key_file, Some(PathBuf::from("b.key")));
        assert!(c.tls.serves(TlsListener::Kafka) && !c.tls.serves(TlsListener::Native));
        let e = BrokerConfig::load(Some(&path), |_| None).unwrap_err();
        assert_eq!(e.to_string(), "invalid config: tls.cert_file is set without tls.key_file");
        assert!(!BrokerConfig::default().tls.enabled());
    }

    #[test]
    fn acl_settings_from_file_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eddy.toml");
        std::fs::write(&path, "[acl]\nsuper_users = [\"admin\"]\n").unwrap();
        let c = BrokerConfig::load(Some(&path), |_| None).unwrap();
        assert!(!c.acl.enabled, "off unless asked for");
        assert_eq!(c.acl.super_principals(), vec!["User:admin".to_string()]);
        let env = |k: &str| match k {
            "EDDY_ACL_ENABLED" => Some("true".to_string()),
            "EDDY_ACL_SUPER_USERS" => Some("root, User:ops".to_string()),
            _ => None,
        };
        let c = BrokerConfig::load(Some(&path), env).unwrap();
        assert!(c.acl.enabled);
        assert_eq!(c.acl.super_principals(), vec!["User:root".to_string(), "User:ops".to_string()]);
        let bad = |k: &str| (k == "EDDY_ACL_ENABLED").then(|| "yes".to_string());
        let e = BrokerConfig::load(None, bad).unwrap_err();
        assert!(e.to_string().starts_with("environment variable EDDY_ACL_ENABLED"), "{e}");
    }

    #[test]
    fn auth_from_file_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eddy.toml");
        std::fs::write(&path, "[auth]\nenabled = true\nmechanisms = [\"scram-sha-512\"]\n")
            .unwrap();
        let c = BrokerConfig::load(Some(&path), |_| None).unwrap();
        assert!(c.auth.enabled);
        assert_eq!(c.auth.mechanisms, vec![Mechanism::ScramSha512]);
        let env = |k: &str| match k {
            "EDDY_AUTH_MECHANISMS" => Some("PLAIN, SCRAM-SHA-256".to_string()),
            "EDDY_AUTH_MAX_CONNECTIONS_PER_PRINCIPAL" => Some("3".to_string()),
            _ => None,
        };
        let c = BrokerConfig::load(Some(&path), env).unwrap();
        assert_eq!(c.auth.mechanisms, vec![Mechanism::Plain, Mechanism::ScramSha256]);
        assert_eq!(c.auth.max_connections_per_principal, 3);
        let bad = |k: &str| (k == "EDDY_AUTH_MECHANISMS").then(|| "GSSAPI".to_string());
        let e = BrokerConfig::load(None, bad).unwrap_err();
        assert!(e.to_string().contains("unknown SASL mechanism \"GSSAPI\""), "{e}");
        std::fs::write(&path, "[auth]\nmechanisms = []\n").unwrap();
        assert!(matches!(BrokerConfig::load(Some(&path), |_| None), Err(ConfigError::Invalid(_))));
    }

    #[test]
    fn bad_values_are_named() {
        let env = |k: &str| (k == "EDDY_LISTEN").then(|| "nowhere".to_string());
        let e = BrokerConfig::load(None, env).unwrap_err();
        assert!(e.to_string().starts_with("environment variable EDDY_LISTEN=\"nowhere\""), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eddy.toml");
        std::fs::write(&path, "bogus = 1\n").unwrap();
        assert!(matches!(
            BrokerConfig::load(Some(&path), |_| None),
            Err(ConfigError::Parse { .. })
        ));
    }
}
