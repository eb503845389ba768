//! [`Broker`]: the one type an embedding program or the TCP server holds — its one `impl`
//! home. It owns the services and routes each request to the one that answers it:
//!
//! - [`Topics`] (the data directory, topics, append wake-ups) — everything below sees topics
//!   through an `Arc<Topics>`, never through the broker;
//! - the data path ([`Data`]: produce, fetch, list offsets, metadata);
//! - the consumer-group [`Coordinator`] (state in `__consumer_offsets`);
//! - the [`Processors`] registry (`__processors`) and the [`SqlService`] (`__sql`);
//! - the [`Connectors`] registry (`__connectors`);
//! - the [`Acls`] (`__acls`): every request is checked against them in [`Broker::handle_from`]
//!   (`crate::guard` says what each request kind needs).
//! - the [`Users`] registry (`__users`), which the listeners authenticate against.
//!
//! Ownership: `Broker` is a cheap handle; clones share one broker. When the last handle is
//! dropped (or [`Broker::close`] runs) the processors' supervisor and every running version
//! are stopped and joined, so dropping the last handle releases the data directory: a
//! `Broker::open` of the same directory afterwards, in the same process, succeeds. Nothing the
//! broker starts holds a `Broker`.

use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eddy_client::{ClientError, Transport};
use eddy_protocol::v1::{self, request, response};

use crate::config::BrokerConfig;
use crate::connectors::{CONNECTORS_TOPIC, Connectors};
use crate::data::{AppendTurn, Data};
use crate::error::BrokerError;
use crate::groups::Coordinator;
use crate::groups::records::OFFSETS_TOPIC;
use crate::guard::{self, Admitted};
use crate::metrics::Meters;
use crate::processors::{PROCESSORS_TOPIC, Processors};
use crate::producer_ids::ProducerIds;
use crate::quotas::Quotas;
use crate::security::Principal;
use crate::security::acls::{ACLS_TOPIC, Access, Acls};
use crate::security::throttle::FailureThrottle;
use crate::security::users::{USERS_TOPIC, Users};
use crate::service::{Service, service};
use crate::sql::{SQL_TOPIC, SqlService};
use crate::topic::{CleanupSetting, FlushSetting, TopicSettings};
use crate::topics::{MaintenanceReport, Topic, Topics};
use crate::transactions::{self, TXN_TOPIC};

mod admin;

use admin::blocking;

/// An eddy broker: cheap to clone (clones share one broker).
#[derive(Debug, Clone)]
pub struct Broker {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    config: BrokerConfig,
    /// What the listeners and the data path count (enabled when an HTTP listener is set).
    meters: Meters,
    /// Byte-rate quotas, shared by every connection of every listener.
    quotas: Quotas,
    producer_ids: Mutex<ProducerIds>,
    groups: Coordinator,
    /// Kafka transactions (`__transaction_state`).
    transactions: transactions::Coordinator,
    pub(crate) processors: Arc<Processors>,
    pub(crate) connectors: Arc<Connectors>,
    /// The SQL session and its `__sql` log.
    pub(crate) sql: SqlService,
    /// Who may do what (`__acls`).
    acls: Arc<Acls>,
    /// Users and their SCRAM credentials (`__users`).
    users: Arc<Users>,
    /// Recent authentication failures by address, for both listeners.
    auth_failures: FailureThrottle,
    // Last: the data directory's lock goes with the last `Arc<Topics>`.
    topics: Arc<Topics>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Running versions and connectors hold `Arc<Topics>`; stop them so the directory is
        // released now.
        self.connectors.shutdown();
        self.processors.shutdown();
    }
}

type Answer<T> = Result<T, BrokerError>;

/// A request handed to a service that does not answer its kind (`handle` routes exhaustively,
/// so this is a bug, answered rather than panicked on).
fn misrouted() -> BrokerError {
    BrokerError::Malformed("a request routed to the wrong service")
}

impl Broker {
    /// Opens the broker in `dir` with default settings — the embedded entry point.
    pub fn open(dir: impl AsRef<Path>) -> Result<Broker, BrokerError> {
        Self::open_with(BrokerConfig {
            data_dir: dir.as_ref().to_path_buf(),
            ..BrokerConfig::default()
        })
    }

    /// Opens the broker described by `config`, recovering every topic's partitions, then
    /// starts the registered processors and reconciles the SQL catalog with them.
    pub fn open_with(config: BrokerConfig) -> Result<Broker, BrokerError> {
        let dir = config.data_dir.clone();
        let topics = Arc::new(Topics::open(&dir, config.topic_defaults.clone())?);
        let producer_ids = ProducerIds::open(&dir.join("producer-ids"))?;
        let internal = |flush| TopicSettings {
            partitions: 1,
            retention_ms: None,
            retention_bytes: None,
            cleanup: CleanupSetting::Compact,
            flush,
            ..config.topic_defaults.clone()
        };
        let offsets = topics.internal(OFFSETS_TOPIC, internal(config.groups.offsets_flush))?;
        let acls_log = topics.internal(ACLS_TOPIC, internal(FlushSetting::Always))?;
        let acls = Arc::new(Acls::open(acls_log.partition(0)?.clone(), &config.acl)?);
        let registry = topics.internal(PROCESSORS_TOPIC, internal(FlushSetting::Always))?;
        let sql_log = topics.internal(SQL_TOPIC, internal(FlushSetting::Always))?;
        let processors = Arc::new(Processors::open(
            topics.clone(),
            registry.partition(0)?.clone(),
            dir.join("processors"),
            Duration::from_millis(config.processors.retire_grace_ms),
            acls.clone(),
        )?);
        let connectors_log = topics.internal(CONNECTORS_TOPIC, internal(FlushSetting::Always))?;
        let (connectors, defs) =
            Connectors::open(connectors_log.partition(0)?.clone(), topics.clone(), acls.clone())?;
        let connectors = Arc::new(connectors);
        let sql = SqlService::open(
            sql_log.partition(0)?.clone(),
            processors.clone(),
            connectors.clone(),
        )?;
        let groups = Coordinator::open(offsets.partition(0)?.clone(), config.groups.timing())?;
        let users_log = topics.internal(USERS_TOPIC, internal(FlushSetting::Always))?;
        let users = Arc::new(Users::open(users_log.partition(0)?.clone())?);
        let txn_log = topics.internal(TXN_TOPIC, internal(FlushSetting::Always))?;
        let transactions = transactions::Coordinator::open(
            txn_log.partition(0)?.clone(),
            topics.clone(),
            config.transactions,
            &groups,
        )?;
        tracing::info!(data_dir = %dir.display(), topics = topics.names().len(), "broker opened");
        processors.start_all();
        sql.reconcile();
        connectors.start_all(defs);
        let meters = Meters::new(config.http_listen != crate::config::Listen::Off);
        let failed_delay = Duration::from_millis(u64::from(config.auth.failed_delay_ms));
        let auth_failures = FailureThrottle::new(failed_delay);
        let inner = Inner {
            meters,
            quotas: Quotas::new(&config.quotas),
            config,
            producer_ids: Mutex::new(producer_ids),
            groups,
            transactions,
            processors,
            connectors,
            sql,
            acls,
            users,
            auth_failures,
            topics,
        };
        Ok(Broker { inner: Arc::new(inner) })
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.inner.config
    }

    /// The byte-rate quotas the listeners enforce.
    pub fn quotas(&self) -> &Quotas {
        &self.inner.quotas
    }

    /// What the listeners and the data path have counted.
    pub fn meters(&self) -> &Meters {
        &self.inner.meters
    }

    /// The broker's ACLs.
    pub fn acls(&self) -> &Arc<Acls> {
        &self.inner.acls
    }

    /// `principal`, connecting from `host`, as the broker's ACLs see it.
    pub fn access(&self, principal: &Principal, host: Option<IpAddr>) -> Access {
        self.inner.acls.access(principal.clone(), host)
    }

    /// The users the listeners authenticate against.
    pub fn users(&self) -> &Arc<Users> {
        &self.inner.users
    }

    /// Recent authentication failures by client address (the listeners slow a flood down).
    pub fn auth_failures(&self) -> &FailureThrottle {
        &self.inner.auth_failures
    }

    /// The broker's topics, as its services see them.
    pub fn topics(&self) -> &Arc<Topics> {
        &self.inner.topics
    }

    pub fn topic(&self, name: &str) -> Result<Arc<Topic>, BrokerError> {
        self.inner.topics.get(name)
    }

    pub fn topic_names(&self) -> Vec<String> {
        self.inner.topics.names()
    }

    /// Creates a topic; `config` fields left unset take the broker's defaults.
    pub fn create_topic(
        &self,
        name: &str,
        config: Option<&v1::TopicConfig>,
    ) -> Result<Arc<Topic>, BrokerError> {
        self.inner.topics.create(name, config)
    }

    /// Grows a topic to `count` partitions. Refused while a processor reads it: its tasks and
    /// state are laid out per partition, and records keyed to new partitions would be missed.
    pub fn add_partitions(&self, name: &str, count: u32) -> Result<Arc<Topic>, BrokerError> {
        let readers = self.inner.processors.readers_of(name, "");
        if !readers.is_empty() {
            return Err(BrokerError::SourceInUse { name: name.to_string(), readers });
        }
        self.inner.topics.add_partitions(name, count)
    }

    /// Deletes a topic and its data.
    pub fn delete_topic(&self, name: &str) -> Result<(), BrokerError> {
        self.inner.topics.delete(name)
    }

    /// Records how many Kafka classic members `group` has (kept by the Kafka listener); eddy
    /// members are refused from such a group, and Kafka members from a group with eddy
    /// members (`INCONSISTENT_GROUP_PROTOCOL`).
    pub fn set_classic_group_members(
        &self,
        group: &str,
        members: usize,
    ) -> Result<(), BrokerError> {
        self.inner.groups.set_classic_members(group, members)
    }

    /// Allocates a producer id for an idempotent producer.
    pub fn init_producer(&self) -> Result<(i64, i16), BrokerError> {
        self.inner.topics.check_running()?;
        Ok((self.allocate_producer_id()?, 0))
    }

    /// A producer id never handed out before.
    pub(crate) fn allocate_producer_id(&self) -> Result<i64, BrokerError> {
        self.inner.producer_ids.lock().unwrap_or_else(|p| p.into_inner()).allocate()
    }

    /// The Kafka transaction coordinator.
    pub(crate) fn transactions(&self) -> &transactions::Coordinator {
        &self.inner.transactions
    }

    /// The consumer group coordinator (a committing transaction writes offsets through it).
    pub(crate) fn groups(&self) -> &Coordinator {
        &self.inner.groups
    }

    /// A produce whose transactional batches the transaction coordinator has allowed (the
    /// caller holds its guard until this returns).
    /// Checked as `access`'s, as any produce (a refused topic's partitions answer
    /// AUTHORIZATION_FAILED).
    pub(crate) async fn produce_transactional(
        &self,
        access: &Access,
        r: v1::ProduceRequest,
    ) -> Result<Option<v1::ProduceResponse>, BrokerError> {
        self.inner.topics.check_running()?;
        let body = request::Body::Produce(r);
        let Admitted { body, patch } = guard::admit(access, &self.inner.processors, body)?;
        let request::Body::Produce(r) = body else { return Err(misrouted()) };
        let answer = self.data().produce_as(r, AppendTurn::default(), true).await?;
        Ok(answer.map(|p| match guard::finish(access, patch, response::Body::Produce(p)) {
            response::Body::Produce(p) => p,
            // `finish` keeps the kind of the answer it is given.
            _ => v1::ProduceResponse::default(),
        }))
    }

    /// Runs retention and compaction over every partition once, at `now_ms`.
    pub fn run_maintenance(&self, now_ms: i64) -> MaintenanceReport {
        let report = self.inner.topics.run_maintenance(now_ms);
        if self.inner.meters.enabled() {
            let (m, add) = (&self.inner.meters.maintenance, |c: &AtomicU64, n: u64| {
                c.fetch_add(n, Ordering::Relaxed);
            });
            add(&m.runs, report.partitions);
            add(&m.retention_segments_deleted, report.retention.segments_deleted as u64);
            add(&m.retention_bytes_deleted, report.retention.bytes_deleted);
            add(&m.compaction_segments_rewritten, report.compaction.segments_rewritten as u64);
            add(&m.compaction_records_removed, report.compaction.records_removed);
            let reclaimed =
                report.compaction.bytes_before.saturating_sub(report.compaction.bytes_after);
            add(&m.compaction_bytes_reclaimed, reclaimed);
            add(&m.failures, report.failures);
        }
        report
    }

    /// Refuses new requests (`SHUTTING_DOWN`) and ends waiting long polls now, with what they
    /// have; requests already running finish.
    pub fn begin_shutdown(&self) {
        self.inner.topics.begin_shutdown();
    }

    /// Stops taking requests, wakes long polls, stops the processors (each writes a final
    /// snapshot), and flushes every partition.
    pub fn close(&self) -> Result<(), BrokerError> {
        self.begin_shutdown();
        self.inner.connectors.shutdown();
        self.inner.processors.shutdown();
        self.inner.topics.flush_all()?;
        tracing::info!("broker closed: every partition flushed");
        Ok(())
    }

    pub fn is_shutting_down(&self) -> bool {
        self.inner.topics.is_shutting_down()
    }

    /// Every processor name with its status, switch-overs and snapshot ages (for metrics and
    /// the console; `ListProcessors` answers the status part).
    pub fn observe_processors(&self) -> Vec<crate::processors::observe::Observed> {
        self.inner.processors.observe()
    }

    /// Why the broker is not ready to serve, if it is not: shutting down, or a registered
    /// processor version that is not running. Empty when ready (it is open and recovered by
    /// construction: a `Broker` exists only once every partition has been recovered).
    pub fn not_ready(&self) -> Vec<String> {
        if self.is_shutting_down() {
            return vec!["the broker is shutting down".into()];
        }
        self.inner.processors.not_running()
    }

    fn data(&self) -> Data<'_> {
        Data {
            topics: &self.inner.topics,
            groups: &self.inner.groups,
            config: &self.inner.config,
            meters: &self.inner.meters,
        }
    }

    /// Handles one request body. `Ok(None)` means no response is owed (produce with
    /// `ACKS_NONE`).
    /// Handled as [`Principal::Internal`]: the embedded broker's own callers.
    pub async fn handle(&self, body: request::Body) -> Result<Option<response::Body>, BrokerError> {
        self.handle_as(&Principal::Internal, body, AppendTurn::default()).await
    }

    /// [`handle`](Self::handle) for a request of a connection acting as `principal`: a produce
    /// appends in `turn`, after the connection's earlier produces (see [`Data::produce`]).
    /// Checked against the ACLs as from no particular address (only bindings for host `*`
    /// apply); [`handle_from`](Self::handle_from) names the address.
    pub async fn handle_as(
        &self,
        principal: &Principal,
        body: request::Body,
        turn: AppendTurn,
    ) -> Result<Option<response::Body>, BrokerError> {
        self.handle_from(principal, None, body, turn).await
    }

    /// [`handle_as`](Self::handle_as) for a connection from `host`: the request is checked
    /// against the ACLs first (`crate::guard`), run, and its answer trimmed to what the
    /// principal may see; processors, SQL queries and connectors it creates are owned by
    /// `principal` and run with its rights.
    pub async fn handle_from(
        &self,
        principal: &Principal,
        host: Option<IpAddr>,
        body: request::Body,
        turn: AppendTurn,
    ) -> Result<Option<response::Body>, BrokerError> {
        self.inner.topics.check_running()?;
        let access = self.access(principal, host);
        let Admitted { body, patch } = guard::admit(&access, &self.inner.processors, body)?;
        let answer = self.route(&access, body, turn).await?;
        Ok(answer.map(|a| guard::finish(&access, patch, a)))
    }

    /// Runs an admitted request on the service that answers it.
    async fn route(
        &self,
        access: &Access,
        body: request::Body,
        turn: AppendTurn,
    ) -> Result<Option<response::Body>, BrokerError> {
        match service(&body) {
            Service::Data => self.handle_data(body, turn).await,
            Service::Groups => self.handle_groups(body).await.map(Some),
            Service::Processing => self.handle_processors(access, body).await.map(Some),
            Service::Connectors => self.handle_connectors(access, body).await.map(Some),
            Service::Acls => self.handle_acls(body).await.map(Some),
            Service::Users => self.inner.users.handle(body).await.map(Some),
            // A connection's listener answers these (it owns the exchange and the principal);
            // the embedded broker has nothing to authenticate.
            Service::Sasl => Err(BrokerError::Malformed(
                "SASL requests are answered by a listener, not by the embedded broker",
            )),
        }
    }

    /// Topics, produce, fetch and the handshake.
    async fn handle_data(
        &self,
        body: request::Body,
        turn: AppendTurn,
    ) -> Answer<Option<response::Body>> {
        use request::Body as Rq;
        use response::Body as Rs;
        Ok(Some(match body {
            Rq::ApiVersions(r) => Rs::ApiVersions(self.data().api_versions(&r)?),
            Rq::Metadata(r) => Rs::Metadata(self.data().metadata(&r)),
            Rq::CreateTopic(r) => {
                let topic = self.create_topic(&r.name, r.config.as_ref())?;
                Rs::CreateTopic(v1::CreateTopicResponse { config: Some(topic.settings.to_wire()) })
            }
            Rq::DeleteTopic(r) => {
                self.delete_topic(&r.name)?;
                Rs::DeleteTopic(v1::DeleteTopicResponse {})
            }
            Rq::ListTopics(_) => {
                Rs::ListTopics(v1::ListTopicsResponse { names: self.topic_names() })
            }
            Rq::DescribeTopic(r) => {
                let topic = self.topic(&r.name)?;
                Rs::DescribeTopic(v1::DescribeTopicResponse {
                    name: topic.name.clone(),
                    config: Some(topic.settings.to_wire()),
                    partitions: topic.partition_info(),
                })
            }
            Rq::Produce(r) => return Ok(self.data().produce(r, turn).await?.map(Rs::Produce)),
            Rq::Fetch(r) => {
                if let Some(member) = &r.member {
                    self.inner.groups.check_member_fetch(member, &r)?;
                }
                Rs::Fetch(self.data().fetch(&r).await)
            }
            Rq::ListOffsets(r) => Rs::ListOffsets(self.data().list_offsets(&r)),
            Rq::InitProducer(_) => {
                let (producer_id, epoch) = self.init_producer()?;
                Rs::InitProducer(v1::InitProducerResponse {
                    producer_id,
                    producer_epoch: i32::from(epoch),
                })
            }
            _ => return Err(misrouted()),
        }))
    }

    /// Consumer groups.
    async fn handle_groups(&self, body: request::Body) -> Answer<response::Body> {
        use request::Body as Rq;
        use response::Body as Rs;
        let (topics, groups) = (&*self.inner.topics, &self.inner.groups);
        Ok(match body {
            Rq::GroupHeartbeat(r) => Rs::GroupHeartbeat(groups.serve_heartbeat(topics, &r).await?),
            Rq::OffsetCommit(r) => Rs::OffsetCommit(groups.serve_commit(topics, &r).await?),
            Rq::OffsetFetch(r) => Rs::OffsetFetch(groups.fetch_offsets(&r)?),
            Rq::ListGroups(_) => Rs::ListGroups(groups.serve_list().await?),
            Rq::DescribeGroup(r) => {
                Rs::DescribeGroup(groups.serve_describe(topics, &r.group_id).await?)
            }
            Rq::ResetGroupOffsets(r) => {
                Rs::ResetGroupOffsets(groups.serve_reset(topics, &r).await?)
            }
            Rq::DeleteGroup(r) => {
                groups.serve_delete(&r.group_id).await?;
                Rs::DeleteGroup(v1::DeleteGroupResponse {})
            }
            _ => return Err(misrouted()),
        })
    }

    /// Processors, table queries and SQL. Deploys, drops and statements run on a blocking
    /// thread: they start and stop processor threads and fsync registry records.
    async fn handle_processors(
        &self,
        access: &Access,
        body: request::Body,
    ) -> Answer<response::Body> {
        use request::Body as Rq;
        use response::Body as Rs;
        let (processors, sql) = (&self.inner.processors, &self.inner.sql);
        let broker = self.clone();
        let owner = access.principal().clone();
        Ok(match body {
            Rq::DeployProcessor(r) => {
                let processor =
                    blocking(move || broker.inner.processors.deploy(&r.spec, &owner)).await?;
                Rs::DeployProcessor(v1::DeployProcessorResponse { processor: Some(processor) })
            }
            Rq::ListProcessors(_) => {
                Rs::ListProcessors(v1::ListProcessorsResponse { processors: processors.list() })
            }
            Rq::ProcessorStatus(r) => Rs::ProcessorStatus(v1::ProcessorStatusResponse {
                processor: Some(processors.status(&r.name)?),
            }),
            Rq::RollbackProcessor(r) => {
                let processor = blocking(move || {
                    let info = broker.inner.processors.rollback(&r.name)?;
                    // A SQL query's catalog follows the version that serves again.
                    broker.inner.sql.adopt_serving(&r.name)?;
                    Ok(info)
                })
                .await?;
                Rs::RollbackProcessor(v1::RollbackProcessorResponse { processor: Some(processor) })
            }
            Rq::ReplayProcessor(r) => {
                let processor = blocking(move || broker.inner.processors.replay(&r.name)).await?;
                Rs::ReplayProcessor(v1::ReplayProcessorResponse { processor: Some(processor) })
            }
            Rq::QueryTable(r) => Rs::QueryTable(processors.query(&r)?),
            Rq::DropProcessor(r) => {
                // A SQL query's processor is dropped by terminating the query (so the stored
                // catalog does not start it again).
                blocking(move || match broker.inner.sql.drop_processor(&r.name) {
                    Some(done) => done,
                    None => broker.inner.processors.drop_processor(&r.name),
                })
                .await?;
                Rs::DropProcessor(v1::DropProcessorResponse {})
            }
            Rq::Sql(r) if crate::sql::is_push(&r.sql) => Rs::Sql(sql.push(&r, access).await?),
            Rq::Sql(r) => {
                let access = access.clone();
                Rs::Sql(blocking(move || Ok(broker.inner.sql.execute(&r.sql, &access))).await?)
            }
            _ => return Err(misrouted()),
        })
    }
}

/// The embedded transport: requests go straight to the broker, no encoding, no socket.
impl Transport for Broker {
    async fn call(&self, body: request::Body) -> Result<response::Body, ClientError> {
        match self.handle(body).await {
            Ok(Some(body)) => Ok(body),
            Ok(None) => Err(ClientError::UnexpectedResponse("no response to an acks=none produce")),
            Err(e) => Err(ClientError::Broker(e.to_wire())),
        }
    }

    async fn send(&self, body: request::Body) -> Result<(), ClientError> {
        self.handle(body).await.map(drop).map_err(|e| ClientError::Broker(e.to_wire()))
    }
}
