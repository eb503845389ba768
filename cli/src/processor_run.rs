//! `eddy processor run FILE --kafka BOOTSTRAP [--state-dir DIR] [--query-listen ADDR]
//! [--snapshot-every N] [--commit-ms MS] [--progress-ms MS]`: runs the spec's processor in this process over a
//! Kafka-protocol cluster, as one instance of a group that shares its tasks
//! (eddy-cluster's `Instance`; docs/processors.md, "Over a Kafka cluster").
//!
//! Why a `processor run` of one spec rather than a `worker` that serves deploys: the spec file
//! is the deployment — every instance is started with the same file, which is what
//! orchestrators (systemd units, Kubernetes deployments) already do for Kafka Streams
//! applications; a redeploy is the same command with the spec's version raised, and the
//! registry in the cluster (eddy-cluster's `registry`, `switch`) decides which version serves.
//!
//! Prints `eddy processor NAME version V: queries on ADDR` once the group is joined and the
//! query listener bound (scripts and tests read the address from it), then a `progress` line
//! every `--progress-ms`, `serving version V` when this version starts to serve (at once for
//! the first version of a name; after the switch for a redeployed one), and `retired: version
//! S serves` when a higher version took over (the tasks stopped; queries are forwarded to
//! the serving version until the process is stopped). A version below the serving one does
//! not start (docs/processors.md, "Over a Kafka cluster"). SIGTERM or Ctrl-C stops it cleanly: every task's final snapshot is
//! published and the instance leaves the group, so the others take its tasks at once.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use eddy_broker::processors::definition::Definition;
use eddy_cluster::registry::{self, RegistryView};
use eddy_cluster::switch::Role;
use eddy_cluster::{Instance, InstanceConfig, KafkaLogs};
use eddy_processor::LogAccess;

use super::Output;

/// Parsed arguments of `processor run` (and `sql run`, `sql_run.rs`).
pub(crate) struct Args {
    pub file: String,
    pub kafka: String,
    /// `--kafka-config FILE`: the cluster's client settings (`crate::kafka_config`).
    pub kafka_config: Option<PathBuf>,
    state_dir: PathBuf,
    query_listen: String,
    snapshot_every: Option<u64>,
    commit_every: Option<Duration>,
    pub progress: Duration,
}

impl Args {
    /// Binds the query listener; returns it with its address.
    pub(crate) fn listen(&self) -> Result<(std::net::TcpListener, String)> {
        let listener = std::net::TcpListener::bind(&self.query_listen)
            .with_context(|| format!("binding the query listener {}", self.query_listen))?;
        let addr = listener.local_addr()?.to_string();
        Ok((listener, addr))
    }

    /// The instance settings the arguments give, with queries at `query_addr`.
    pub(crate) fn instance_config(&self, query_addr: &str) -> InstanceConfig {
        let mut config = InstanceConfig::new(&self.state_dir, query_addr);
        if let Some(n) = self.snapshot_every {
            config.snapshot_every_records = n;
        }
        if let Some(every) = self.commit_every {
            config.commit_every = every;
        }
        config
    }
}

pub(crate) fn parse(parser: &mut lexopt::Parser) -> Result<Args> {
    use lexopt::prelude::*;
    let (mut file, mut kafka, mut snapshot_every, mut commit_every) = (None, None, None, None);
    let mut state_dir = PathBuf::from("eddy-data/cluster");
    let mut query_listen = "127.0.0.1:0".to_owned();
    let mut progress = Duration::from_secs(5);
    let mut kafka_config = None;
    while let Some(arg) = parser.next()? {
        match arg {
            Long("kafka") => kafka = Some(parser.value()?.string()?),
            Long("kafka-config") => kafka_config = Some(PathBuf::from(parser.value()?)),
            Long("state-dir") => state_dir = PathBuf::from(parser.value()?),
            Long("query-listen") => query_listen = parser.value()?.string()?,
            Long("snapshot-every") => snapshot_every = Some(parser.value()?.parse()?),
            Long("commit-ms") => {
                commit_every = Some(Duration::from_millis(parser.value()?.parse()?));
            }
            Long("progress-ms") => progress = Duration::from_millis(parser.value()?.parse()?),
            Value(v) if file.is_none() => file = Some(v.string()?),
            other => return Err(other.unexpected().into()),
        }
    }
    let file = file.context("a FILE is needed")?;
    let kafka = kafka.context("--kafka BOOTSTRAP (host:port of the cluster) is needed")?;
    Ok(Args {
        file,
        kafka,
        kafka_config,
        state_dir,
        query_listen,
        snapshot_every,
        commit_every,
        progress,
    })
}

pub async fn run(parser: &mut lexopt::Parser, out: &mut Output) -> Result<()> {
    let args = parse(parser)?;
    crate::serve::init_tracing();
    let text =
        std::fs::read_to_string(&args.file).with_context(|| format!("reading {}", args.file))?;
    let def = Definition::parse(&text)?;
    let cluster = crate::kafka_config::cluster_config(&args.kafka, args.kafka_config.as_deref())?;
    let logs = Arc::new(KafkaLogs::new(cluster)?);
    let processor = {
        let logs = logs.clone();
        let def = def.clone();
        tokio::task::spawn_blocking(move || def.compile(&|t| logs.partition_count(t).ok()))
            .await??
    };
    let (listener, query_addr) = args.listen()?;
    let mut config = args.instance_config(&query_addr);
    config.idle_timeout = def.idle_timeout();
    let (name, version) = (processor.name().to_owned(), processor.version());
    let instance = {
        let logs = logs.clone();
        tokio::task::spawn_blocking(move || -> Result<Instance> {
            // The spec each version runs is kept in the cluster for `processor verify --kafka`.
            RegistryView::create(&*logs)?;
            registry::write_spec(&*logs, processor.name(), processor.version(), &text)?;
            Ok(Instance::start(processor, logs, config)?)
        })
        .await??
    };
    let instance = Arc::new(instance);
    eddy_cluster::query::serve(vec![instance.clone()], listener)?;
    out.line(
        format!("eddy processor {name} version {version}: queries on {query_addr}").as_bytes(),
    )?;
    out.flush()?;
    let outcome = watch(std::slice::from_ref(&instance), args.progress, out).await;
    stop_all(vec![instance]).await?;
    outcome?;
    out.line(b"stopped: snapshots published, left the group")?;
    out.flush()
}

/// How often the role (serving, retired, ...) is looked at.
const ROLE_EVERY: Duration = Duration::from_millis(100);

/// Stops every instance (final snapshots published, groups left); the first failure is
/// returned.
pub(crate) async fn stop_all(instances: Vec<Arc<Instance>>) -> Result<()> {
    tokio::task::spawn_blocking(move || {
        let mut first = Ok(());
        for instance in instances {
            if let Err(e) = instance.stop()
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    })
    .await??;
    Ok(())
}

/// Prints each instance's role when it changes and progress every `every`, until a signal or
/// a task failure. With several instances (a SQL script's queries) each line starts with the
/// processor's name.
pub(crate) async fn watch(
    instances: &[Arc<Instance>],
    every: Duration,
    out: &mut Output,
) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut tick = tokio::time::interval(ROLE_EVERY.min(every));
    let started = Instant::now();
    let mut last: Vec<(Instant, u64)> = vec![(Instant::now(), 0); instances.len()];
    let mut told: Vec<Option<Role>> = vec![None; instances.len()];
    let named = instances.len() > 1;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = term.recv() => return Ok(()),
            _ = tick.tick() => {}
        }
        for (i, instance) in instances.iter().enumerate() {
            let name = instance.processor().name();
            if let Some(failure) = instance.failure() {
                bail!("processor {name} failed: {failure}");
            }
            let prefix = if named { format!("{name}: ") } else { String::new() };
            let role = instance.role();
            if told[i] != Some(role) {
                told[i] = Some(role);
                out.line(format!("{prefix}{}", role_line(instance, role)).as_bytes())?;
                out.flush()?;
            }
            if last[i].0.elapsed() >= every {
                last[i] = progress(instance, &prefix, role, started, last[i], out).await?;
            }
        }
    }
}

fn role_line(instance: &Instance, role: Role) -> String {
    let serving = instance.serving_version().unwrap_or(0);
    match role {
        Role::Serving => format!("serving version {serving}"),
        Role::Retired => format!("retired: version {serving} serves"),
        Role::Candidate => format!("replaying: version {serving} serves"),
        Role::Handover => "handing over".to_owned(),
    }
}

/// Prints one progress line; returns when and at how many records it was taken.
async fn progress(
    instance: &Arc<Instance>,
    prefix: &str,
    role: Role,
    started: Instant,
    last: (Instant, u64),
    out: &mut Output,
) -> Result<(Instant, u64)> {
    let probe = instance.clone();
    let (reports, lag) =
        tokio::task::spawn_blocking(move || (probe.reports(), probe.lag())).await?;
    let records: u64 = reports.values().map(|r| r.metrics.records_in).sum();
    let now = Instant::now();
    let secs = now.duration_since(last.0).as_secs_f64().max(1e-3);
    let rate = records.saturating_sub(last.1) as f64 / secs;
    let line = format!(
        "{prefix}progress {role:?} partitions {:?} tasks {} records {records} ({rate:.0}/s) \
         lag {lag} up {}s",
        instance.partitions(),
        reports.len(),
        started.elapsed().as_secs()
    );
    out.line(line.as_bytes())?;
    out.flush()?;
    Ok((now, records))
}
