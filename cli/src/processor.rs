//! `eddy processor deploy FILE [--wait] | list | status NAME | replay NAME [--wait] |
//! verify NAME | rollback NAME | drop NAME`, and `run FILE --kafka BOOTSTRAP`
//! (`processor_run.rs`: no broker, the processor in this process over a Kafka cluster) and
//! `verify NAME --kafka BOOTSTRAP` (`processor_verify.rs`: the same check over a cluster).
//!
//! `verify` rebuilds the serving logic from offset zero in a shadow processor without outputs
//! (`NAME-verify`), waits until it reflects the live tables' input offsets, compares every
//! table's digest, and drops the shadow.
//!
//! `deploy --wait` of a new version waits until it has replayed the log and serves, showing
//! its progress (events, events/s, lag, ETA) on stderr when stderr is a terminal.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use eddy_client::Admin;
use eddy_protocol::v1;

use super::topic::{no_more, one_name};
use super::{Output, connect};

pub async fn run(broker: &str, parser: &mut lexopt::Parser, out: &mut Output) -> Result<()> {
    use lexopt::prelude::*;
    let Some(Value(action)) = parser.next()? else {
        bail!("processor needs an action: deploy, list, status or drop")
    };
    match action.string()?.as_str() {
        "deploy" => deploy(broker, parser, out).await,
        "run" => super::processor_run::run(parser, out).await,
        "replay" => replay(broker, parser, out).await,
        "verify" => {
            let args = verify_args(parser)?;
            match args.kafka {
                Some(kafka) => {
                    let file = args.kafka_config.as_deref();
                    let cluster = super::kafka_config::cluster_config(&kafka, file)?;
                    super::processor_verify::run(&args.name, cluster, args.timeout, out).await
                }
                None => verify(&Admin::new(connect(broker).await?), &args.name, out).await,
            }
        }
        "rollback" => {
            let name = one_name(parser)?;
            let p = Admin::new(connect(broker).await?).rollback_processor(&name).await?;
            out.line(format!("processor {} version {} serves again", p.name, p.version).as_bytes())
        }
        "list" => {
            no_more(parser)?;
            list_all(&Admin::new(connect(broker).await?), out).await
        }
        "status" => {
            let name = one_name(parser)?;
            let admin = Admin::new(connect(broker).await?);
            out.line(status(&admin.processor_status(&name).await?).as_bytes())
        }
        "drop" => {
            let name = one_name(parser)?;
            Admin::new(connect(broker).await?).drop_processor(&name).await?;
            out.line(format!("dropped processor {name}").as_bytes())
        }
        other => bail!(
            "unknown processor action {other:?} (deploy, list, status, replay, verify, rollback, drop, run)"
        ),
    }
}

/// `processor verify`'s arguments.
struct VerifyArgs {
    name: String,
    /// `--kafka BOOTSTRAP`: verify over a cluster rather than in the broker.
    kafka: Option<String>,
    /// `--kafka-config FILE`: the cluster's client settings.
    kafka_config: Option<std::path::PathBuf>,
    /// `--timeout-ms MS`: longest the rebuild over a cluster may take to catch up.
    timeout: Duration,
}

/// A NAME, then `--kafka BOOTSTRAP`, `--kafka-config FILE`, `--timeout-ms MS`, all optional.
fn verify_args(parser: &mut lexopt::Parser) -> Result<VerifyArgs> {
    use lexopt::prelude::*;
    let (mut name, mut kafka, mut kafka_config) = (None, None, None);
    let mut timeout = None;
    while let Some(arg) = parser.next()? {
        match arg {
            Long("kafka") => kafka = Some(parser.value()?.string()?),
            Long("kafka-config") => kafka_config = Some(std::path::PathBuf::from(parser.value()?)),
            Long("timeout-ms") => timeout = Some(Duration::from_millis(parser.value()?.parse()?)),
            Value(v) if name.is_none() => name = Some(v.string()?),
            other => return Err(other.unexpected().into()),
        }
    }
    if kafka.is_none() && (kafka_config.is_some() || timeout.is_some()) {
        bail!("--kafka-config and --timeout-ms go with --kafka BOOTSTRAP");
    }
    let name = name.context("processor verify needs a NAME")?;
    let timeout = timeout.unwrap_or(super::processor_verify::CATCH_UP);
    Ok(VerifyArgs { name, kafka, kafka_config, timeout })
}

/// The spec `text` as its verify shadow: named `shadow`, without its `to` ops (a rebuild
/// writes no outputs).
pub(crate) fn shadow_spec(text: &str, shadow: &str) -> Result<String> {
    let mut spec: toml::Table = toml::from_str(text).context("the live spec")?;
    spec.insert("name".into(), toml::Value::String(shadow.to_owned()));
    if let Some(toml::Value::Array(ops)) = spec.get_mut("ops") {
        ops.retain(|op| op.get("op").and_then(|o| o.as_str()) != Some("to"));
    }
    Ok(toml::to_string(&spec)?)
}

/// A NAME or FILE and an optional `--wait`.
fn target_and_wait(parser: &mut lexopt::Parser, what: &str) -> Result<(String, bool)> {
    use lexopt::prelude::*;
    let (mut target, mut wait) = (None, false);
    while let Some(arg) = parser.next()? {
        match arg {
            Long("wait") => wait = true,
            Value(v) if target.is_none() => target = Some(v.string()?),
            other => return Err(other.unexpected().into()),
        }
    }
    Ok((target.with_context(|| format!("processor {what}"))?, wait))
}

/// `deploy FILE [--wait]`: a new name serves at once; a new version builds, and `--wait`
/// waits for its switch-over.
async fn deploy(broker: &str, parser: &mut lexopt::Parser, out: &mut Output) -> Result<()> {
    let (file, wait) = target_and_wait(parser, "deploy needs a FILE")?;
    let spec = std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?;
    let admin = Admin::new(connect(broker).await?);
    let p = admin.deploy_processor(&spec).await?;
    let Some(b) = &p.building else {
        return out.line(format!("deployed processor {} version {}", p.name, p.version).as_bytes());
    };
    out.line(
        format!(
            "building processor {} version {} from offset zero (version {} serves meanwhile)",
            p.name, b.version, p.version
        )
        .as_bytes(),
    )?;
    if wait {
        out.flush()?;
        wait_for_switch(&admin, &p.name, b.version).await?;
        out.line(format!("processor {} version {} serves", p.name, b.version).as_bytes())?;
    }
    Ok(())
}

/// `replay NAME [--wait]`: rebuilds the serving logic as the next version.
async fn replay(broker: &str, parser: &mut lexopt::Parser, out: &mut Output) -> Result<()> {
    let (name, wait) = target_and_wait(parser, "replay needs a NAME")?;
    let admin = Admin::new(connect(broker).await?);
    let p = admin.replay_processor(&name).await?;
    let version = p.building.as_ref().map_or(p.version, |b| b.version);
    out.line(format!("replaying {name} from offset zero as version {version}").as_bytes())?;
    if wait {
        out.flush()?;
        wait_for_switch(&admin, &name, version).await?;
        out.line(format!("processor {name} version {version} serves").as_bytes())?;
    }
    Ok(())
}

/// `list`: one line per processor under a header.
async fn list_all<T: eddy_client::Transport>(admin: &Admin<T>, out: &mut Output) -> Result<()> {
    out.line(b"processor  version  state  lag  sources  tables  outputs")?;
    for p in admin.list_processors().await? {
        out.line(
            format!(
                "{}  {}  {}  {}  {}  {}  {}",
                p.name,
                p.version,
                p.state,
                p.lag,
                list(&p.sources),
                list(&p.tables),
                list(&p.outputs)
            )
            .as_bytes(),
        )?;
    }
    Ok(())
}

/// Rebuilds the serving logic from zero in a shadow processor (no outputs), waits until it
/// reflects the same input offsets as the live one, and compares every table's digest.
async fn verify<T: eddy_client::Transport>(
    admin: &Admin<T>,
    name: &str,
    out: &mut Output,
) -> Result<()> {
    let live = admin.processor_status(name).await?;
    let spec: toml::Table = toml::from_str(&live.spec).context("the live spec")?;
    if spec.contains_key("sql") {
        bail!(
            "{name} is a SQL query: verify it with a second CREATE TABLE ... AS SELECT of the same query and compare digests (eddy query TABLE --digest)"
        );
    }
    let shadow = format!("{name}-verify");
    admin.deploy_processor(&shadow_spec(&live.spec, &shadow)?).await?;
    let outcome = compare_tables(admin, name, &shadow, &live.tables).await;
    admin.drop_processor(&shadow).await?;
    let (same, lines) = outcome?;
    for line in lines {
        out.line(line.as_bytes())?;
    }
    if !same {
        bail!("{name}: a rebuild from offset zero differs from the live tables");
    }
    out.line(format!("{name}: every table equals its rebuild from offset zero").as_bytes())
}

async fn compare_tables<T: eddy_client::Transport>(
    admin: &Admin<T>,
    live: &str,
    shadow: &str,
    tables: &[String],
) -> Result<(bool, Vec<String>)> {
    let digest = |processor: &str, table: &str| v1::QueryTableRequest {
        table: format!("{processor}/{table}"),
        query: Some(v1::query_table_request::Query::Scan(v1::ScanQuery {
            limit: 1,
            ..Default::default()
        })),
        digest: true,
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3600);
    let (mut same, mut lines) = (true, Vec::new());
    for table in tables {
        loop {
            let a = admin.query_table(digest(live, table)).await?;
            let b = admin.query_table(digest(shadow, table)).await?;
            let offsets = |q: &v1::QueryTableResponse| {
                let mut v: Vec<(String, u32, u64)> = q
                    .inputs
                    .iter()
                    .filter(|i| !i.topic.starts_with(&format!("{}-", q.processor)))
                    .map(|i| (i.topic.clone(), i.partition, i.position))
                    .collect();
                v.sort();
                v
            };
            let caught_up = b.inputs.iter().all(|i| i.position == i.end_offset);
            if caught_up && offsets(&a) == offsets(&b) {
                let ok = a.digest == b.digest;
                same &= ok;
                lines.push(format!(
                    "{table}: live {:016x} rebuilt {:016x} {}",
                    a.digest,
                    b.digest,
                    if ok { "equal" } else { "DIFFERENT" }
                ));
                break;
            }
            if std::time::Instant::now() > deadline {
                bail!("{table}: the rebuild did not reach the live input offsets");
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    Ok((same, lines))
}

/// Polls the status until `version` serves; progress on stderr when it is a terminal.
async fn wait_for_switch<T: eddy_client::Transport>(
    admin: &Admin<T>,
    name: &str,
    version: u32,
) -> Result<()> {
    use std::io::{IsTerminal, Write};
    let show = std::io::stderr().is_terminal();
    loop {
        let p = admin.processor_status(name).await?;
        if p.version == version {
            if show {
                let _ = std::io::stderr().write_all(b"\n");
            }
            return Ok(());
        }
        let Some(b) = p.building.as_deref().filter(|b| b.version == version) else {
            bail!("version {version} of {name} is no longer building (dropped or replaced)");
        };
        if b.state == "failed" {
            bail!("version {version} of {name} failed: {}", b.error);
        }
        if show {
            let eta = if b.eta_ms == u64::MAX {
                "-".to_string()
            } else {
                format!("{:.1}s", b.eta_ms as f64 / 1000.0)
            };
            let line = format!(
                "\rreplaying {name} v{version}: {} events, {:.0}/s, lag {}, eta {eta}   ",
                b.records_processed, b.records_per_s, b.lag
            );
            let _ = std::io::stderr()
                .write_all(line.as_bytes())
                .and_then(|()| std::io::stderr().flush());
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() { "-".into() } else { items.join(",") }
}

fn status(p: &v1::ProcessorInfo) -> String {
    let mut text = format!(
        "processor {} version {}  state={} lag={}\nsources={} tables={} outputs={}",
        p.name,
        p.version,
        p.state,
        p.lag,
        list(&p.sources),
        list(&p.tables),
        list(&p.outputs)
    );
    if !p.error.is_empty() {
        text.push_str(&format!("\nerror: {}", p.error));
    }
    text.push_str(&format!(
        "\nprocessed={} rate={:.0}/s running={:.1}s",
        p.records_processed,
        p.records_per_s,
        p.running_ms as f64 / 1000.0
    ));
    if let Some(b) = &p.building {
        let eta = if b.eta_ms == u64::MAX {
            "-".to_string()
        } else {
            format!("{:.1}s", b.eta_ms as f64 / 1000.0)
        };
        text.push_str(&format!(
            "\nbuilding version {}: state={} processed={} rate={:.0}/s lag={} eta={eta}",
            b.version, b.state, b.records_processed, b.records_per_s, b.lag
        ));
    }
    if p.retired_version > 0 {
        text.push_str(&format!("\nretired version {} (rollback possible)", p.retired_version));
    }
    if !p.owner.is_empty() {
        text.push_str(&format!("\nowner: {} (runs with its rights)", p.owner));
    }
    text.push_str(
        "\n\ntask  records-in  records-out  late  decode-errors  state-keys  state-bytes  inputs",
    );
    for t in &p.tasks {
        let inputs: Vec<String> = t
            .inputs
            .iter()
            .map(|i| format!("{}-{}@{}/{}", i.topic, i.partition, i.position, i.end_offset))
            .collect();
        text.push_str(&format!(
            "\n{}  {}  {}  {}  {}  {}  {}  {}",
            t.task,
            t.records_in,
            t.records_out,
            t.late,
            t.decode_errors,
            t.state_keys,
            t.state_bytes,
            inputs.join(",")
        ));
    }
    text
}
