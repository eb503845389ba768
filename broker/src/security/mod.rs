//! Who is asking: the principal a connection acts as, and (in the modules below) how a
//! listener learns it and what it may do.
//!
//! - [`Principal`] is the identity every request is handled as. A listener starts each
//!   connection as [`Principal::Anonymous`] and may replace it once, when the connection
//!   authenticates (a TLS client certificate or a SASL exchange). Work the broker does for
//!   itself (processors, connectors, SQL queries, the HTTP console's own reads) runs as
//!   [`Principal::Internal`] unless it runs with the rights of the principal that deployed it.
//! - [`users`]: the user registry (SCRAM credentials in `__users`); [`sasl`]: one connection's
//!   SASL exchange (SCRAM-SHA-256/512, PLAIN), which the listeners drive; [`throttle`]: the
//!   wait imposed on an address that keeps failing to authenticate.
//! - Principals are written as Kafka writes them, `User:<name>` (`User:ANONYMOUS` for the
//!   anonymous one), so ACLs and logs read the same in eddy and in Kafka's tools.
//! - [`tls`]: the `[tls]` settings, the certificate files, the listeners' handshake (a client
//!   certificate's common name is its principal) and the reload on SIGHUP.
//! - [`exposure`]: safe defaults — a listener reachable from other machines needs TLS and
//!   authentication, or `--insecure`.
//! - [`acl`]: the ACL model (bindings, filters, Kafka's decision rules); [`acls`]: the
//!   broker's ACLs in `__acls`, and [`acls::Access`], a principal checked against them.

pub mod acl;
pub mod acls;
pub mod exposure;
pub mod tls;

pub mod sasl;
pub mod throttle;
pub mod users;

use std::fmt;
use std::sync::Arc;

pub use eddy_client::sasl::Mechanism;

/// The identity a request is handled as.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Principal {
    /// A connection that has not authenticated (or a listener without authentication).
    #[default]
    Anonymous,
    /// An authenticated user (SASL user name, or a client certificate's common name).
    User(Arc<str>),
    /// The broker itself: embedded callers, processors and connectors without a deployer.
    Internal,
}

impl Principal {
    /// A user principal named `name`.
    pub fn user(name: &str) -> Self {
        Principal::User(Arc::from(name))
    }

    /// Whether a connection acting as this principal may run any request on a listener whose
    /// `auth.enabled` is `auth_required`: it authenticated (SASL or a client certificate), or
    /// the listener does not ask it to. Until then only ApiVersions and SASL's requests run,
    /// and the handshake deadline still applies.
    pub fn may_run(&self, auth_required: bool) -> bool {
        !auth_required || *self != Principal::Anonymous
    }

    /// The user name, for a [`Principal::User`].
    pub fn name(&self) -> Option<&str> {
        match self {
            Principal::User(name) => Some(name),
            _ => None,
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Anonymous => f.write_str("User:ANONYMOUS"),
            Principal::User(name) => write!(f, "User:{name}"),
            Principal::Internal => f.write_str("User:eddy-internal"),
        }
    }
}
