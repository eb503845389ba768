//! Consumer group workloads over TCP:
//!
//! - throughput: 1, 2 and 4 members of one group read a topic of 8 partitions to the end,
//!   committing after every poll; against one plain consumer reading all 8 partitions with no
//!   group, no heartbeats and no commits, in the same run.
//! - rebalance: 4 members own 8 partitions; one leaves (or dies: its connection drops without
//!   a leave) and the clock runs until the other three own every partition again, as their
//!   rebalance listeners report it. Leave is a matter of round trips; death waits for the
//!   session timeout, which is printed beside it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use eddy_client::{
    Connection, ConnectionOptions, GroupConfig, GroupConsumer, RebalanceListener, SeekTo,
    TopicConfig, TopicPartition,
};
use tokio::sync::Notify;

use crate::net::{Served, consume_all};
use crate::report::{Row, Timing, median, median_against};
use crate::workload::{Options, batches};

const TOPIC: &str = "bench";
const PARTITIONS: u32 = 8;
const SESSION: Duration = Duration::from_secs(3);

/// Fills the topic with `--records` records straight into the partition logs.
fn fill(served: &Served, opts: &Options) -> Result<()> {
    let config = TopicConfig { partitions: Some(PARTITIONS), ..TopicConfig::default() };
    let topic = served.broker.create_topic(TOPIC, Some(&config))?;
    for (i, batch) in batches(opts.records, opts.batch, opts.record_bytes).iter().enumerate() {
        topic.partitions[i % PARTITIONS as usize].append_valid(batch)?;
    }
    Ok(())
}

async fn connect(served: &Served) -> Result<Connection> {
    Ok(Connection::connect(&served.addr, ConnectionOptions::default()).await?)
}

/// `members` members of a fresh group read everything, committing after every poll.
async fn grouped(served: &Served, group: &str, members: usize, records: u64) -> Result<Timing> {
    let seen = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..members {
        let conn = connect(served).await?;
        let seen = Arc::clone(&seen);
        let mut config = GroupConfig::new(group, &[TOPIC]);
        config.auto_commit = None;
        config.session_timeout = Some(SESSION);
        tasks.push(tokio::spawn(async move {
            let mut member = GroupConsumer::subscribe(conn, config, Quiet).await?;
            let mut timing = Timing::new();
            while seen.load(Ordering::Relaxed) < records {
                let t = Instant::now();
                let batches = member.poll(Duration::from_millis(100)).await?;
                let mut n = 0;
                for b in &batches {
                    for r in b.records() {
                        r?;
                        n += 1;
                    }
                }
                if n > 0 {
                    member.commit_sync().await?;
                    seen.fetch_add(n, Ordering::Relaxed);
                    timing.record(t.elapsed());
                }
            }
            member.close().await?;
            Ok::<Timing, anyhow::Error>(timing)
        }));
    }
    let mut timing = Timing::new();
    for task in tasks {
        timing.merge(&task.await??);
    }
    timing.finish(start.elapsed());
    let total = seen.load(Ordering::Relaxed);
    if total != records {
        bail!("group {group} read {total} records, expected {records}");
    }
    Ok(timing)
}

struct Quiet;
impl RebalanceListener for Quiet {}

pub fn run_throughput(opts: &Options) -> Result<Vec<Row>> {
    let bytes = opts.records * opts.record_bytes as u64;
    let mut base = Vec::new();
    let mut by_members: BTreeMap<usize, Vec<Row>> = BTreeMap::new();
    for run in 0..opts.runs {
        let served = Served::start(opts)?;
        fill(&served, opts)?;
        let rt = &served.runtime;
        let t = rt.block_on(async {
            consume_all(connect(&served).await?, opts.records, PARTITIONS).await
        })?;
        base.push(Row::new(format!("consume tcp {PARTITIONS}p no group"), opts.records, bytes, &t));
        for members in [1, 2, 4] {
            let group = format!("g{members}-{run}");
            let t = rt.block_on(grouped(&served, &group, members, opts.records))?;
            let row =
                Row::new(format!("group of {members} tcp {PARTITIONS}p"), opts.records, bytes, &t)
                    .note("op", "one poll + commit by one member");
            by_members.entry(members).or_default().push(row);
        }
    }
    let mut rows = vec![median(base.clone())];
    for (_, runs) in by_members {
        rows.push(median_against(runs, &base));
    }
    Ok(rows)
}

/// Who owns what, per member index, as the listeners report it.
#[derive(Default)]
struct Owners {
    owned: Mutex<BTreeMap<usize, BTreeSet<u32>>>,
    changed: Notify,
}

struct Tracker(usize, Arc<Owners>);

impl RebalanceListener for Tracker {
    fn on_assigned(&mut self, partitions: &[TopicPartition]) {
        let mut owned = self.1.owned.lock().unwrap_or_else(|p| p.into_inner());
        owned.entry(self.0).or_default().extend(partitions.iter().map(|(_, p)| *p));
        self.1.changed.notify_waiters();
    }
    fn on_revoked(&mut self, partitions: &[TopicPartition]) {
        let mut owned = self.1.owned.lock().unwrap_or_else(|p| p.into_inner());
        let mine = owned.entry(self.0).or_default();
        for (_, p) in partitions {
            mine.remove(p);
        }
        self.1.changed.notify_waiters();
    }
}

/// A member polling in its own task until told to leave (or aborted, to die).
struct Running {
    stop: Arc<Notify>,
    task: tokio::task::JoinHandle<Result<()>>,
}

async fn start_member(served: &Served, index: usize, owners: &Arc<Owners>) -> Result<Running> {
    let conn = connect(served).await?;
    let mut config = GroupConfig::new("rebalance", &[TOPIC]);
    config.session_timeout = Some(SESSION);
    config.start = SeekTo::Latest;
    let stop = Arc::new(Notify::new());
    let flag = Arc::clone(&stop);
    let owners = Arc::clone(owners);
    let task = tokio::spawn(async move {
        let mut member =
            GroupConsumer::subscribe(conn, config, Tracker(index, Arc::clone(&owners))).await?;
        loop {
            tokio::select! {
                () = flag.notified() => break,
                polled = member.poll(Duration::from_millis(500)) => { polled?; }
            }
        }
        owners.owned.lock().unwrap_or_else(|p| p.into_inner()).remove(&index);
        member.close().await?;
        Ok(())
    });
    Ok(Running { stop, task })
}

/// Waits until the members in `live` own every partition between them, without overlap.
async fn settled(owners: &Owners, live: &BTreeSet<usize>, balanced: bool) {
    loop {
        let notified = owners.changed.notified();
        {
            let owned = owners.owned.lock().unwrap_or_else(|p| p.into_inner());
            let mut union = BTreeSet::new();
            let mut total = 0;
            let mut sizes = Vec::new();
            for (i, set) in owned.iter() {
                if live.contains(i) {
                    union.extend(set.iter().copied());
                    total += set.len();
                    sizes.push(set.len());
                }
            }
            let even = sizes.iter().max().copied().unwrap_or(0)
                - sizes.iter().min().copied().unwrap_or(0)
                <= 1;
            let others_empty = owned.iter().all(|(i, s)| live.contains(i) || s.is_empty());
            if union.len() == PARTITIONS as usize
                && total == union.len()
                && others_empty
                && (!balanced || (even && sizes.len() == live.len()))
            {
                return;
            }
        }
        notified.await;
    }
}

pub fn run_rebalance(opts: &Options) -> Result<Vec<Row>> {
    let served = Served::start(opts)?;
    let config = TopicConfig { partitions: Some(PARTITIONS), ..TopicConfig::default() };
    served.broker.create_topic(TOPIC, Some(&config))?;
    let rt = &served.runtime;
    let owners = Arc::new(Owners::default());
    let mut members: BTreeMap<usize, Running> = BTreeMap::new();
    let mut next = 0usize;
    let limit = Duration::from_secs(60);
    let mut rows = Vec::new();
    for death in [false, true] {
        let mut timing = Timing::new();
        for _ in 0..opts.runs {
            while members.len() < 4 {
                members.insert(next, rt.block_on(start_member(&served, next, &owners))?);
                next += 1;
            }
            let live: BTreeSet<usize> = members.keys().copied().collect();
            rt.block_on(async {
                tokio::time::timeout(limit, settled(&owners, &live, true)).await
            })?;
            let (&victim, _) = members.iter().next().ok_or_else(|| anyhow::anyhow!("no member"))?;
            let Some(running) = members.remove(&victim) else { bail!("no member") };
            let rest: BTreeSet<usize> = members.keys().copied().collect();
            let t0 = Instant::now();
            if death {
                running.task.abort();
                owners.owned.lock().unwrap_or_else(|p| p.into_inner()).remove(&victim);
            } else {
                running.stop.notify_one();
            }
            rt.block_on(async {
                tokio::time::timeout(limit, settled(&owners, &rest, false)).await
            })?;
            timing.record(t0.elapsed());
            if !death {
                rt.block_on(running.task)??;
            }
        }
        timing.finish(Duration::from_secs(1));
        let what = if death { "dies (no leave)" } else { "leaves" };
        let row = Row::new(format!("rebalance: 1 of 4 {what}"), 0, 0, &timing)
            .note("op", "from the leave (or the death) to every partition owned again")
            .note("session timeout", format!("{} ms", SESSION.as_millis()));
        rows.push(row);
    }
    for (_, m) in members {
        m.stop.notify_one();
        let _ = rt.block_on(m.task);
    }
    Ok(rows)
}
