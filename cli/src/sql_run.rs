//! `eddy sql run FILE --kafka BOOTSTRAP [--state-dir DIR] [--query-listen ADDR]
//! [--snapshot-every N] [--commit-ms MS] [--progress-ms MS]`: a SQL script's persistent
//! queries run in this process over a Kafka-protocol cluster, each one an instance of its
//! processor's group (eddy-cluster's `Instance`), exactly as `processor run` runs a spec —
//! start the same command on several machines and they share every query's tasks.
//!
//! The script runs in a session with the broker's functions (`qualifyPromotion` included), at
//! version 1: declared streams and tables get their topics created (with their `PARTITIONS`)
//! when missing; every `CREATE ... AS SELECT`, `INSERT INTO ... SELECT` and declared table's
//! materialization starts, in script order (a query reads what an earlier one writes). Pull
//! and push `SELECT`s are not run here: tables answer `QueryTable` on the query listener
//! (`eddy --broker ADDR query TABLE KEY`, a key another instance runs is forwarded). Other
//! statements (INSERT VALUES, DROP, TERMINATE, connectors) are refused: they change a broker's
//! catalog, which a cluster of instances does not have.
//!
//! Prints `eddy sql: queries NAME,...: queries on ADDR` once every query's instance has joined
//! its group, then the role and progress lines of `processor run`, each prefixed with the
//! query's processor name.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use eddy_broker::processors::definition::builtin_functions;
use eddy_cluster::{Instance, KafkaLogs};
use eddy_processor::{LogAccess, Processor};
use eddy_sql::{Outcome, Session, SourceInfo};

use super::Output;
use super::processor_run::{parse, stop_all, watch};

pub async fn run(parser: &mut lexopt::Parser, out: &mut Output) -> Result<()> {
    let args = parse(parser)?;
    crate::serve::init_tracing();
    let text =
        std::fs::read_to_string(&args.file).with_context(|| format!("reading {}", args.file))?;
    let mut session = Session::new(builtin_functions());
    let outcomes = session.execute(&text, 1).with_context(|| format!("in {}", args.file))?;
    let cluster = crate::kafka_config::cluster_config(&args.kafka, args.kafka_config.as_deref())?;
    let logs = Arc::new(KafkaLogs::new(cluster)?);
    let (topics, processors) = plan(outcomes)?;
    let (listener, query_addr) = args.listen()?;
    let config = args.instance_config(&query_addr);
    let names: Vec<String> = processors.iter().map(|p| p.name().to_owned()).collect();
    let instances = {
        let logs = logs.clone();
        tokio::task::spawn_blocking(move || -> Result<Vec<Arc<Instance>>> {
            for t in &topics {
                logs.create_topic(&t.topic, t.partitions.max(1), false)
                    .with_context(|| format!("creating topic {} of {}", t.topic, t.name))?;
            }
            let mut instances = Vec::new();
            for processor in processors {
                let name = processor.name().to_owned();
                let instance = Instance::start(processor, logs.clone(), config.clone())
                    .with_context(|| format!("starting query {name}"))?;
                instances.push(Arc::new(instance));
            }
            Ok(instances)
        })
        .await??
    };
    eddy_cluster::query::serve(instances.clone(), listener)?;
    let line = format!("eddy sql: queries {}: queries on {query_addr}", names.join(","));
    out.line(line.as_bytes())?;
    out.flush()?;
    let outcome = watch(&instances, args.progress, out).await;
    stop_all(instances).await?;
    outcome?;
    out.line(b"stopped: snapshots published, left the groups")?;
    out.flush()
}

/// The topics the script declares and the processors it starts, in script order.
fn plan(outcomes: Vec<Outcome>) -> Result<(Vec<SourceInfo>, Vec<Processor>)> {
    let (mut topics, mut processors) = (Vec::new(), Vec::new());
    for outcome in outcomes {
        match outcome {
            Outcome::Declared(info) => topics.push(info),
            Outcome::Materialized { compiled, .. } => {
                topics.push(compiled.target);
                processors.push(compiled.processor);
            }
            Outcome::Query { compiled, .. } => processors.push(compiled.processor),
            Outcome::Select(_) | Outcome::Push(_) | Outcome::Rows(_) => {}
            Outcome::Dropped(_)
            | Outcome::Terminated(_)
            | Outcome::Inserted(_)
            | Outcome::Connector(_) => {
                bail!(
                    "only declarations and persistent queries run over a cluster (INSERT VALUES, \
                     DROP, TERMINATE and connectors need a broker)"
                )
            }
        }
    }
    if processors.is_empty() {
        bail!("the script starts no persistent query");
    }
    Ok((topics, processors))
}
