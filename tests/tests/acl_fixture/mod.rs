//! The embedded broker the ACL tests share: ACLs on, `admin` a super user, and a set of
//! resources created by the broker itself (topics with records, processors, groups with
//! committed offsets, connectors), so each test only grants rights and asks.
#![allow(clippy::unwrap_used, dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use eddy_broker::security::Principal;
use eddy_broker::security::acl::{
    AclBinding, AclSettings, Operation, PatternType, Permission, ResourceType,
};
use eddy_broker::{Broker, BrokerConfig, BrokerError};
use eddy_protocol::v1::{self, request, response};
use eddy_storage::{BatchBuilder, Record};

pub mod kafka;

/// The topic the scenario reads (`READ` on `orders-` by prefix).
pub const ORDERS_EU: &str = "orders-eu";
pub const PAYMENTS: &str = "payments";
/// The processor every test may query: reads `proc-in`, counts into table `views-table`,
/// writes `views-out`.
pub const VIEWS: &str = "views";
pub const VIEWS_TABLE: &str = "views-table";
pub const PROC_IN: &str = "proc-in";
pub const VIEWS_OUT: &str = "views-out";
/// A group with committed offsets on `orders-eu`.
pub const GROUP: &str = "g";
/// A file sink connector over `orders-eu`.
pub const SINK: &str = "sink-c";
/// A SQL stream declared over `orders-eu`.
pub const ORDERS_STREAM: &str = "ORDERS";

pub fn config(dir: &Path) -> BrokerConfig {
    BrokerConfig {
        data_dir: dir.to_path_buf(),
        acl: AclSettings { enabled: true, super_users: vec!["admin".into()] },
        ..BrokerConfig::default()
    }
}

pub fn user(name: &str) -> Principal {
    Principal::user(name)
}

/// A batch of `values`, keyed by themselves.
pub fn batch(values: &[&str]) -> Bytes {
    let mut b = BatchBuilder::new();
    for v in values {
        b.push(Record {
            timestamp: 1,
            key: Some(v.as_bytes()),
            value: Some(v.as_bytes()),
            headers: &[],
        });
    }
    Bytes::from(b.finish())
}

/// A processor spec: counts `input`'s lines by value into `table`, and writes the counts to
/// `output`.
pub fn spec(name: &str, version: u32, input: &str, table: &str, output: &str) -> String {
    format!(
        "name = \"{name}\"\nversion = {version}\nsource = {{ topic = \"{input}\", format = \"text\" }}\n\
         [[ops]]\nop = \"fields\"\nfields = {{ word = 1 }}\n\
         [[ops]]\nop = \"key_by\"\nfield = \"word\"\n\
         [[ops]]\nop = \"aggregate\"\ntable = \"{table}\"\nfn = \"count\"\n\
         [[ops]]\nop = \"to\"\ntopic = \"{output}\"\n"
    )
}

pub fn binding(principal: &str, op: Operation, kind: ResourceType, name: &str) -> AclBinding {
    AclBinding {
        resource_type: kind,
        resource_name: name.into(),
        pattern: PatternType::Literal,
        principal: format!("User:{principal}"),
        host: "*".into(),
        operation: op,
        permission: Permission::Allow,
    }
}

/// The broker, opened with ACLs on.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub broker: Broker,
}

impl Fixture {
    /// Opens a broker on a new directory and creates the shared resources as the broker.
    pub async fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::open_with(config(dir.path())).unwrap();
        let f = Fixture { dir, broker };
        f.setup().await;
        f
    }

    /// Opens the broker again on the same directory (the previous handle must be gone).
    pub fn reopen(dir: tempfile::TempDir) -> Fixture {
        let broker = Broker::open_with(config(dir.path())).unwrap();
        Fixture { dir, broker }
    }

    async fn setup(&self) {
        for topic in [ORDERS_EU, PAYMENTS, PROC_IN, "doomed"] {
            self.internal(request::Body::CreateTopic(v1::CreateTopicRequest {
                name: topic.into(),
                config: None,
            }))
            .await;
        }
        for topic in [ORDERS_EU, PAYMENTS, PROC_IN] {
            self.internal(produce(topic, &["a", "b", "a"])).await;
        }
        let views = spec(VIEWS, 1, PROC_IN, VIEWS_TABLE, VIEWS_OUT);
        self.internal(request::Body::DeployProcessor(v1::DeployProcessorRequest { spec: views }))
            .await;
        let doomed = spec("doomed-proc", 1, PROC_IN, "doomed-table", "doomed-out");
        self.internal(request::Body::DeployProcessor(v1::DeployProcessorRequest { spec: doomed }))
            .await;
        for group in [GROUP, "g-delete"] {
            self.internal(commit(group, ORDERS_EU, 1)).await;
        }
        for name in [SINK, "doomed-c"] {
            self.internal(file_sink(name, &self.dir.path().join(format!("{name}.jsonl")))).await;
        }
        let declared = self
            .internal(sql("CREATE STREAM orders (id VARCHAR KEY, item VARCHAR) WITH (kafka_topic='orders-eu');"))
            .await;
        assert!(errors_inside(&declared).is_empty(), "{declared:?}");
        self.wait_for_table(VIEWS_TABLE, "\"a\"").await;
    }

    /// Runs `body` as the broker itself; it must succeed.
    pub async fn internal(&self, body: request::Body) -> response::Body {
        let what = format!("{body:?}");
        match self.broker.handle(body).await {
            Ok(Some(answer)) => answer,
            other => panic!("{what}: {other:?}"),
        }
    }

    /// Runs `body` as `principal` (no address: only `*` host bindings apply).
    pub async fn call(
        &self,
        principal: &Principal,
        body: request::Body,
    ) -> Result<Option<response::Body>, BrokerError> {
        self.broker.handle_as(principal, body, Default::default()).await
    }

    /// Adds bindings as the super user `admin`, through the native request.
    pub async fn grant(&self, bindings: &[AclBinding]) {
        let body = request::Body::CreateAcls(v1::CreateAclsRequest {
            bindings: bindings.iter().map(AclBinding::to_wire).collect(),
        });
        let answer = self.call(&user("admin"), body).await.unwrap();
        assert!(matches!(answer, Some(response::Body::CreateAcls(_))), "{answer:?}");
    }

    /// Waits (up to 30 s) until `table` has `key` (JSON), asked as the broker.
    pub async fn wait_for_table(&self, table: &str, key: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let asked = self.broker.handle(query(table, key)).await;
            if let Ok(Some(response::Body::QueryTable(q))) = &asked
                && !q.rows.is_empty()
            {
                return;
            }
            assert!(Instant::now() < deadline, "table {table} never had {key}: {asked:?}");
            // The processor's progress is what is awaited; its lag has no event to wait on.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub fn produce(topic: &str, values: &[&str]) -> request::Body {
    request::Body::Produce(v1::ProduceRequest {
        acks: v1::Acks::Durable as i32,
        topics: vec![v1::ProduceTopic {
            topic: topic.into(),
            partitions: vec![v1::ProducePartition { partition: 0, batch: batch(values) }],
        }],
    })
}

pub fn fetch(topic: &str) -> request::Body {
    request::Body::Fetch(v1::FetchRequest {
        topics: vec![v1::FetchTopic {
            topic: topic.into(),
            partitions: vec![v1::FetchPartition { partition: 0, offset: 0, max_bytes: 0 }],
        }],
        ..Default::default()
    })
}

pub fn commit(group: &str, topic: &str, offset: u64) -> request::Body {
    request::Body::OffsetCommit(v1::OffsetCommitRequest {
        group_id: group.into(),
        member_id: String::new(),
        member_epoch: -1,
        topics: vec![v1::OffsetCommitTopic {
            topic: topic.into(),
            partitions: vec![v1::OffsetCommitPartition {
                partition: 0,
                offset,
                metadata: String::new(),
            }],
        }],
    })
}

pub fn query(table: &str, key: &str) -> request::Body {
    request::Body::QueryTable(v1::QueryTableRequest {
        table: table.into(),
        query: Some(v1::query_table_request::Query::Get(key.into())),
        digest: false,
    })
}

pub fn file_sink(name: &str, path: &Path) -> request::Body {
    request::Body::CreateConnector(v1::CreateConnectorRequest {
        name: name.into(),
        kind: "sink".into(),
        config: [
            ("connector.class", "FileStreamSinkConnector".to_string()),
            ("file", path.display().to_string()),
            ("topics", ORDERS_EU.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
    })
}

pub fn sql(text: &str) -> request::Body {
    request::Body::Sql(v1::SqlRequest { sql: text.into(), from: vec![], max_wait_ms: 0 })
}

/// Every per-partition (or per-topic) error in an answer.
pub fn errors_inside(answer: &response::Body) -> Vec<v1::Error> {
    use response::Body as Rs;
    match answer {
        Rs::Produce(p) => {
            p.topics.iter().flat_map(|t| &t.partitions).filter_map(|p| p.error.clone()).collect()
        }
        Rs::Fetch(f) => {
            f.topics.iter().flat_map(|t| &t.partitions).filter_map(|p| p.error.clone()).collect()
        }
        Rs::ListOffsets(l) => {
            l.topics.iter().flat_map(|t| &t.partitions).filter_map(|p| p.error.clone()).collect()
        }
        Rs::OffsetCommit(c) => {
            c.topics.iter().flat_map(|t| &t.partitions).filter_map(|p| p.error.clone()).collect()
        }
        Rs::Metadata(m) => m.topics.iter().filter_map(|t| t.error.clone()).collect(),
        Rs::Sql(s) => s
            .results
            .iter()
            .filter_map(|r| match &r.result {
                Some(v1::sql_result::Result::Error(e)) => {
                    Some(v1::Error::new(v1::ErrorCode::Unknown, e.message.clone()))
                }
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The names a listing answer lists.
pub fn listed(answer: &response::Body) -> Vec<String> {
    use response::Body as Rs;
    match answer {
        Rs::ListTopics(l) => l.names.clone(),
        Rs::Metadata(m) => m.topics.iter().map(|t| t.name.clone()).collect(),
        Rs::ListGroups(l) => l.groups.iter().map(|g| g.group_id.clone()).collect(),
        Rs::ListProcessors(l) => l.processors.iter().map(|p| p.name.clone()).collect(),
        Rs::ListConnectors(l) => l.connectors.iter().map(|c| c.name.clone()).collect(),
        Rs::OffsetFetch(f) => f.offsets.iter().map(|o| o.topic.clone()).collect(),
        Rs::DescribeGroup(d) => d.offsets.iter().map(|o| o.topic.clone()).collect(),
        Rs::ListAcls(l) => l.bindings.iter().map(|b| b.principal.clone()).collect(),
        _ => Vec::new(),
    }
}
