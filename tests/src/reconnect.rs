//! [`Reconnecting`]: a [`Transport`] that survives its broker being killed and restarted, for
//! tests that crash the broker under a live client.
//!
//! The client's [`Connection`] never reconnects (once closed, every call fails). This wrapper
//! holds one connection at a time and opens a new one, to the address the test last published,
//! when the current one has closed. While the test publishes no address (the broker is down), a
//! call waits for one — up to a deadline, never by polling — rather than failing, so a producer
//! above it sees only the calls that were in flight when the broker died fail.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use eddy_client::{ClientError, Connection, ConnectionOptions, Transport};
use eddy_protocol::v1::{request, response};
use tokio::sync::{Mutex, watch};

/// Where the broker is now: `None` while it is down.
pub type BrokerAddress = watch::Sender<Option<SocketAddr>>;

/// A transport over a connection that is reopened, to the published address, once it closes.
#[derive(Debug)]
pub struct Reconnecting {
    address: watch::Receiver<Option<SocketAddr>>,
    current: Mutex<Option<Arc<Connection>>>,
    /// Longest wait for an address to be published.
    wait_limit: Duration,
}

impl Reconnecting {
    /// A transport following `address`, and the sender the test publishes addresses with.
    pub fn new(address: Option<SocketAddr>, wait_limit: Duration) -> (Self, BrokerAddress) {
        let (tx, rx) = watch::channel(address);
        let transport = Self { address: rx, current: Mutex::new(None), wait_limit };
        (transport, tx)
    }

    /// The open connection, or a new one to the published address.
    async fn connection(&self) -> Result<Arc<Connection>, ClientError> {
        let mut current = self.current.lock().await;
        if let Some(conn) = current.as_ref().filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(conn));
        }
        *current = None;
        let mut address = self.address.clone();
        let addr = {
            let published =
                tokio::time::timeout(self.wait_limit, address.wait_for(Option::is_some))
                    .await
                    .map_err(|_| ClientError::Timeout { ms: self.wait_limit.as_millis() as u64 })?
                    .map_err(|_| ClientError::Closed { addr: "(no broker address)".into() })?;
            *published
        };
        let Some(addr) = addr else {
            return Err(ClientError::UnexpectedResponse("a published address vanished"));
        };
        let conn =
            Arc::new(Connection::connect(&addr.to_string(), ConnectionOptions::default()).await?);
        *current = Some(Arc::clone(&conn));
        Ok(conn)
    }
}

impl Transport for Reconnecting {
    async fn call(&self, body: request::Body) -> Result<response::Body, ClientError> {
        self.connection().await?.call(body).await
    }

    async fn send(&self, body: request::Body) -> Result<(), ClientError> {
        self.connection().await?.send(body).await
    }
}
