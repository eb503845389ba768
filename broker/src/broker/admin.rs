//! The broker's administrative services besides topics, groups and processors: connectors
//! and ACLs, and the blocking-thread helper every service that fsyncs records uses.

use eddy_protocol::v1::{self, request, response};

use super::{Answer, Broker, misrouted};
use crate::error::BrokerError;
use crate::security::acls::Access;

impl Broker {
    /// Connectors. Creating, pausing and dropping start or stop threads and fsync records:
    /// on a blocking thread.
    pub(super) async fn handle_connectors(
        &self,
        access: &Access,
        body: request::Body,
    ) -> Answer<response::Body> {
        use request::Body as Rq;
        use response::Body as Rs;
        let broker = self.clone();
        let connectors = &self.inner.connectors;
        let owner = access.principal().clone();
        Ok(match body {
            Rq::CreateConnector(r) => {
                let config = r.config.into_iter().collect();
                let info = blocking(move || {
                    broker.inner.connectors.create(&r.name, &r.kind, config, &owner)
                })
                .await?;
                Rs::CreateConnector(v1::CreateConnectorResponse { connector: Some(info) })
            }
            Rq::ListConnectors(_) => {
                Rs::ListConnectors(v1::ListConnectorsResponse { connectors: connectors.list() })
            }
            Rq::ConnectorStatus(r) => Rs::ConnectorStatus(v1::ConnectorStatusResponse {
                connector: Some(connectors.status(&r.name)?),
            }),
            Rq::DropConnector(r) => {
                blocking(move || broker.inner.connectors.drop_connector(&r.name)).await?;
                Rs::DropConnector(v1::DropConnectorResponse {})
            }
            Rq::PauseConnector(r) => {
                let info =
                    blocking(move || broker.inner.connectors.pause(&r.name, r.paused)).await?;
                Rs::PauseConnector(v1::PauseConnectorResponse { connector: Some(info) })
            }
            _ => return Err(misrouted()),
        })
    }
}

impl Broker {
    /// ACLs. Each change fsyncs records: on a blocking thread.
    pub(super) async fn handle_acls(&self, body: request::Body) -> Answer<response::Body> {
        use request::Body as Rq;
        use response::Body as Rs;
        let acls = self.inner.acls.clone();
        Ok(match body {
            Rq::CreateAcls(r) => Rs::CreateAcls(blocking(move || acls.serve_create(&r)).await?),
            Rq::ListAcls(r) => Rs::ListAcls(acls.serve_list(&r)?),
            Rq::DeleteAcls(r) => Rs::DeleteAcls(blocking(move || acls.serve_delete(&r)).await?),
            _ => return Err(misrouted()),
        })
    }
}

/// Runs `work` on a blocking thread.
pub(super) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, BrokerError> + Send + 'static,
) -> Result<T, BrokerError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| BrokerError::TaskFailed { reason: e.to_string() })?
}
