//! Consumer groups on an embedded broker (`eddy_broker::Broker` as the client's transport, no
//! socket), through the same `GroupConsumer` API as over TCP: two members share a 4-partition
//! topic two partitions each, every record is read exactly once between them with commits
//! after processing, the survivor of a `close()` takes over all four partitions from the
//! committed offsets, a rebalance listener sees each hand-over, and the committed offsets
//! survive closing and reopening the broker's directory.
//!
//! Members poll one after the other in one task; the only waits are the polls themselves,
//! which never wait past the member's next heartbeat (the protocol's own pace), all bounded by
//! a deadline.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eddy_broker::config::GroupSettings;
use eddy_broker::{Broker, BrokerConfig};
use eddy_client::{
    Admin, GroupConfig, GroupConsumer, Producer, ProducerConfig, ProducerRecord, RebalanceListener,
    TopicConfig, TopicPartition,
};
use eddy_protocol::v1;

const TOPIC: &str = "t";
const GROUP: &str = "g";
const PARTITIONS: u32 = 4;
const SESSION: Duration = Duration::from_millis(2000);
/// Longest any phase may take to settle.
const PHASE_LIMIT: Duration = Duration::from_secs(15);
const POLL_WAIT: Duration = Duration::from_millis(50);

fn config(dir: &Path) -> BrokerConfig {
    BrokerConfig {
        data_dir: dir.to_path_buf(),
        groups: GroupSettings {
            session_timeout_ms: 2000,
            min_session_timeout_ms: 100,
            heartbeat_interval_ms: 100,
            rebalance_timeout_ms: 5000,
            ..GroupSettings::default()
        },
        ..BrokerConfig::default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Assigned(Vec<u32>),
    Revoked(Vec<u32>),
    Lost(Vec<u32>),
}

/// A listener that records every call, shared with the test.
#[derive(Debug, Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Event>>>);

impl Recorder {
    fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }

    fn push(&self, make: fn(Vec<u32>) -> Event, partitions: &[TopicPartition]) {
        assert!(partitions.iter().all(|(t, _)| t == TOPIC), "{partitions:?}");
        self.0.lock().unwrap().push(make(partitions.iter().map(|(_, p)| *p).collect()));
    }
}

impl RebalanceListener for Recorder {
    fn on_assigned(&mut self, partitions: &[TopicPartition]) {
        self.push(Event::Assigned, partitions);
    }

    fn on_revoked(&mut self, partitions: &[TopicPartition]) {
        self.push(Event::Revoked, partitions);
    }

    fn on_lost(&mut self, partitions: &[TopicPartition]) {
        self.push(Event::Lost, partitions);
    }
}

/// A member that commits by hand, after processing each poll.
async fn join(broker: &Broker, name: &str, events: &Recorder) -> GroupConsumer<Broker> {
    let mut c = GroupConfig::new(GROUP, &[TOPIC]);
    c.client_id = name.into();
    c.session_timeout = Some(SESSION);
    c.auto_commit = None;
    GroupConsumer::subscribe(broker.clone(), c, events.clone()).await.unwrap()
}

fn owned(member: &GroupConsumer<Broker>) -> BTreeSet<u32> {
    member.assignment().into_iter().map(|(_, p)| p).collect()
}

/// Who read each record, by (partition, offset), and its value.
type Seen = BTreeMap<(u32, u64), (String, String)>;

/// One poll: records each record as read by `name` (none twice), then commits.
async fn poll_and_commit(member: &mut GroupConsumer<Broker>, name: &str, seen: &mut Seen) {
    let batches = member.poll(POLL_WAIT).await.unwrap();
    let mine = owned(member);
    for batch in &batches {
        assert!(mine.contains(&batch.partition()), "{name} read a partition it does not own");
        for r in batch.to_records().unwrap() {
            let value = String::from_utf8(r.value.unwrap().to_vec()).unwrap();
            let key = (r.partition, r.offset);
            if let Some(first) = seen.insert(key, (name.to_string(), value)) {
                panic!("{name} read {key:?} again; {} read it first", first.0);
            }
        }
    }
    member.commit_sync().await.unwrap();
}

/// Writes `count` records round-robin over the partitions; returns their values.
async fn produce(producer: &Producer<Broker>, phase: &str, count: u32) -> Vec<String> {
    let mut deliveries = Vec::new();
    let mut values = Vec::new();
    for i in 0..count {
        let value = format!("{phase}-{i}");
        let record = ProducerRecord::value(value.clone());
        deliveries.push(producer.send(TOPIC, Some(i % PARTITIONS), record).await.unwrap());
        values.push(value);
    }
    for d in deliveries {
        d.await.unwrap();
    }
    values
}

/// Polls both members (each commits after its poll) until `done` holds.
async fn poll_until(
    members: &mut [(&mut GroupConsumer<Broker>, &str)],
    seen: &mut Seen,
    what: &str,
    done: impl Fn(&[(&mut GroupConsumer<Broker>, &str)], &Seen) -> bool,
) {
    let deadline = Instant::now() + PHASE_LIMIT;
    while !done(members, seen) {
        let owned: Vec<_> = members.iter().map(|(m, n)| (*n, owned(m))).collect();
        assert!(
            Instant::now() < deadline,
            "{what}: not done; owned {owned:?}, read {}",
            seen.len()
        );
        for (member, name) in members.iter_mut() {
            poll_and_commit(member, name, seen).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_share_a_topic_and_the_survivor_continues_from_the_commits() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open_with(config(dir.path())).unwrap();
    let admin = Admin::new(broker.clone());
    let topic = TopicConfig { partitions: Some(PARTITIONS), ..TopicConfig::default() };
    admin.create_topic(TOPIC, topic).await.unwrap();
    let producer = Producer::new(broker.clone(), ProducerConfig::default()).unwrap();
    let all: BTreeSet<u32> = (0..PARTITIONS).collect();
    let mut seen = Seen::new();
    let mut produced = produce(&producer, "before", 200).await;

    // m1 alone owns every partition and reads what is there.
    let (ev1, ev2) = (Recorder::default(), Recorder::default());
    let mut m1 = join(&broker, "m1", &ev1).await;
    assert_eq!(owned(&m1), all);
    let n = produced.len();
    poll_until(&mut [(&mut m1, "m1")], &mut seen, "m1 alone", |_, s| s.len() == n).await;

    // m2 joins: two partitions move to it, and each member reads only its own.
    let mut m2 = join(&broker, "m2", &ev2).await;
    assert!(owned(&m2).is_empty(), "granted before m1 released: {:?}", owned(&m2));
    let n = produced.len();
    poll_until(&mut [(&mut m1, "m1"), (&mut m2, "m2")], &mut seen, "hand-over", |ms, s| {
        ms.iter().all(|(m, _)| owned(m).len() == 2) && s.len() == n
    })
    .await;
    produced.extend(produce(&producer, "shared", 400).await);
    let n = produced.len();
    poll_until(&mut [(&mut m1, "m1"), (&mut m2, "m2")], &mut seen, "sharing", |_, s| s.len() == n)
        .await;
    let (kept, moved) = (owned(&m1), owned(&m2));
    assert!(kept.is_disjoint(&moved) && kept.union(&moved).eq(all.iter()), "{kept:?} {moved:?}");
    let moved_list: Vec<u32> = moved.iter().copied().collect();
    let all_list: Vec<u32> = all.iter().copied().collect();
    assert_eq!(ev1.events(), [Event::Assigned(all_list), Event::Revoked(moved_list.clone())]);
    assert_eq!(ev2.events(), [Event::Assigned(moved_list.clone())]);
    let by = |name: &str| seen.values().filter(|(who, _)| who == name).count();
    assert!(by("m2") > 0, "m2 read nothing while sharing");
    for ((p, _), (who, value)) in &seen {
        if value.starts_with("shared") {
            let owner = if moved.contains(p) { "m2" } else { "m1" };
            assert_eq!(who, owner, "partition {p}: {value}");
        }
    }

    // More records arrive; m2 leaves before reading them. m1 gets its partitions and reads
    // them from where m2 committed.
    let m2_read: BTreeMap<u32, u64> = seen.iter().filter(|(_, (who, _))| who == "m2").fold(
        BTreeMap::new(),
        |mut next, ((p, o), _)| {
            let e = next.entry(*p).or_insert(0);
            *e = (*e).max(o + 1);
            next
        },
    );
    produced.extend(produce(&producer, "after", 400).await);
    m2.close().await.unwrap();
    let n = produced.len();
    poll_until(&mut [(&mut m1, "m1")], &mut seen, "after m2 left", |ms, s| {
        owned(ms[0].0).len() == PARTITIONS as usize && s.len() == n
    })
    .await;
    assert_eq!(
        ev1.events()[2..],
        [Event::Assigned(moved_list.clone())],
        "m1 got m2's partitions back, and was never revoked another"
    );
    assert_eq!(ev2.events(), [Event::Assigned(moved_list.clone()), Event::Revoked(moved_list)]);
    for (p, from) in &m2_read {
        let first_by_m1 = seen
            .iter()
            .filter(|((q, _), (who, value))| q == p && who == "m1" && value.starts_with("after"))
            .map(|((_, o), _)| *o)
            .min();
        assert_eq!(first_by_m1, Some(*from), "m1 did not continue partition {p} at m2's commit");
    }

    // Every record read exactly once, each partition's offsets without a gap.
    let read: BTreeSet<&String> = seen.values().map(|(_, v)| v).collect();
    assert_eq!(read, produced.iter().collect(), "records lost");
    let mut ends = BTreeMap::new();
    for (p, o) in seen.keys() {
        let next = ends.entry(*p).or_insert(0);
        assert_eq!(*next, *o, "partition {p}: offset {o} read, {next} missing");
        *next += 1;
    }

    // The group committed the end of every partition; it stays so across a reopen.
    m1.close().await.unwrap();
    producer.close().await.unwrap();
    let committed = admin.committed_offsets(GROUP, &[]).await.unwrap();
    let got: BTreeMap<u32, Option<u64>> =
        committed.iter().map(|c| (c.partition, c.offset)).collect();
    let want: BTreeMap<u32, Option<u64>> = ends.iter().map(|(p, e)| (*p, Some(*e))).collect();
    assert_eq!(got, want);
    let described = admin.describe_group(GROUP).await.unwrap();
    assert_eq!((described.state.as_str(), described.members.len()), ("empty", 0));
    assert!(described.offsets.iter().all(|o| o.lag == 0), "{:?}", described.offsets);
    drop(admin);
    broker.close().unwrap();
    drop(broker);

    let broker = Broker::open_with(config(dir.path())).unwrap();
    let admin = Admin::new(broker.clone());
    assert_eq!(admin.committed_offsets(GROUP, &[]).await.unwrap(), committed);
    let again = admin.describe_group(GROUP).await.unwrap();
    let lags = |d: &v1::DescribeGroupResponse| d.offsets.clone();
    assert_eq!(lags(&again), lags(&described), "describe after reopening");
    assert_eq!((again.state.as_str(), again.members.len()), ("empty", 0));
    broker.close().unwrap();
}

/// Auto-commit, asynchronous commits (which land in order) and seeking within an owned
/// partition, on one member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_and_auto_commits_land_in_order_and_seek_moves_within_owned_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open_with(config(dir.path())).unwrap();
    let admin = Admin::new(broker.clone());
    let topic = TopicConfig { partitions: Some(PARTITIONS), ..TopicConfig::default() };
    admin.create_topic(TOPIC, topic).await.unwrap();
    let producer = Producer::new(broker.clone(), ProducerConfig::default()).unwrap();
    produce(&producer, "a", 400).await;

    let mut c = GroupConfig::new(GROUP, &[TOPIC]);
    c.session_timeout = Some(SESSION);
    c.auto_commit = None;
    let mut member =
        GroupConsumer::subscribe(broker.clone(), c, Recorder::default()).await.unwrap();
    let deadline = Instant::now() + PHASE_LIMIT;
    let mut read = 0;
    let mut handles = Vec::new();
    while read < 400 {
        assert!(Instant::now() < deadline, "read {read} of 400");
        for b in member.poll(POLL_WAIT).await.unwrap() {
            read += b.to_records().unwrap().len();
        }
        // Fire-and-forget commits after each poll; each later one carries larger offsets.
        handles.push(member.commit_async());
    }
    for h in handles {
        h.wait().await.unwrap();
    }
    let committed = admin.committed_offsets(GROUP, &[]).await.unwrap();
    let ends: Vec<u64> = (0..PARTITIONS).map(|p| member.position(TOPIC, p).unwrap()).collect();
    assert_eq!(committed.iter().map(|c| c.offset.unwrap()).collect::<Vec<_>>(), ends);
    assert_eq!(ends.iter().sum::<u64>(), 400);

    // Seek back within an owned partition: its records come again; a partition the member
    // does not own cannot be sought.
    assert_eq!(member.seek(TOPIC, 0, eddy_client::SeekTo::Offset(90)).await.unwrap(), 90);
    let mut again = 0;
    while again < ends[0] - 90 {
        assert!(Instant::now() < deadline, "re-read {again}");
        for b in member.poll(POLL_WAIT).await.unwrap() {
            assert_eq!(b.partition(), 0);
            again += b.to_records().unwrap().len() as u64;
        }
    }
    assert!(member.seek(TOPIC, PARTITIONS, eddy_client::SeekTo::Earliest).await.is_err());
    member.close().await.unwrap();

    // Auto-commit: a member that only polls commits on its interval and when it leaves.
    produce(&producer, "b", 40).await;
    let mut c = GroupConfig::new(GROUP, &[TOPIC]);
    c.session_timeout = Some(SESSION);
    c.auto_commit = Some(Duration::from_millis(1));
    let mut member =
        GroupConsumer::subscribe(broker.clone(), c, Recorder::default()).await.unwrap();
    let mut fresh = 0;
    while fresh < 40 {
        assert!(Instant::now() < deadline, "read {fresh} of 40 new records");
        for b in member.poll(POLL_WAIT).await.unwrap() {
            fresh += b.to_records().unwrap().len();
        }
    }
    member.close().await.unwrap();
    let committed = admin.committed_offsets(GROUP, &[]).await.unwrap();
    assert_eq!(committed.iter().map(|c| c.offset.unwrap()).sum::<u64>(), 440);
}
