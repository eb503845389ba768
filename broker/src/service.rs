//! Which of the broker's services answers each native request kind: one exhaustive `match`, so
//! a new request kind does not compile until it has a service. The broker routes by it
//! (`Broker::route`) and the ACL check picks its rules by it (`crate::guard::admit`), so the two
//! cannot disagree about where a request belongs.

use eddy_protocol::v1::request;

/// A service of the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    /// Topics, produce, fetch, offsets by time, producer ids and the version handshake.
    Data,
    /// Consumer groups and their committed offsets.
    Groups,
    /// Processors, their tables and SQL.
    Processing,
    Connectors,
    Acls,
    Users,
    /// Authentication, which a connection's listener answers before the broker sees it.
    Sasl,
}

/// The service that answers `body`.
pub(crate) fn service(body: &request::Body) -> Service {
    use request::Body as Rq;
    match body {
        Rq::ApiVersions(_)
        | Rq::Metadata(_)
        | Rq::CreateTopic(_)
        | Rq::DeleteTopic(_)
        | Rq::ListTopics(_)
        | Rq::DescribeTopic(_)
        | Rq::Produce(_)
        | Rq::Fetch(_)
        | Rq::ListOffsets(_)
        | Rq::InitProducer(_) => Service::Data,
        Rq::GroupHeartbeat(_)
        | Rq::OffsetCommit(_)
        | Rq::OffsetFetch(_)
        | Rq::ListGroups(_)
        | Rq::DescribeGroup(_)
        | Rq::ResetGroupOffsets(_)
        | Rq::DeleteGroup(_) => Service::Groups,
        Rq::DeployProcessor(_)
        | Rq::ListProcessors(_)
        | Rq::ProcessorStatus(_)
        | Rq::RollbackProcessor(_)
        | Rq::ReplayProcessor(_)
        | Rq::QueryTable(_)
        | Rq::DropProcessor(_)
        | Rq::Sql(_) => Service::Processing,
        Rq::CreateConnector(_)
        | Rq::ListConnectors(_)
        | Rq::ConnectorStatus(_)
        | Rq::DropConnector(_)
        | Rq::PauseConnector(_) => Service::Connectors,
        Rq::CreateAcls(_) | Rq::ListAcls(_) | Rq::DeleteAcls(_) => Service::Acls,
        Rq::CreateUser(_) | Rq::AlterUser(_) | Rq::DeleteUser(_) | Rq::ListUsers(_) => {
            Service::Users
        }
        Rq::SaslHandshake(_) | Rq::SaslAuthenticate(_) => Service::Sasl,
    }
}
