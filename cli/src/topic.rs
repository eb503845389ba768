//! `eddy topic create | list | describe | delete`.

use anyhow::{Context, Result, bail};
use eddy_client::Admin;
use eddy_protocol::v1;

use super::{Output, connect};

pub async fn run(broker: &str, parser: &mut lexopt::Parser, out: &mut Output) -> Result<()> {
    use lexopt::prelude::*;
    let Some(Value(action)) = parser.next()? else {
        bail!("topic needs an action: create, list, describe or delete")
    };
    match action.string()?.as_str() {
        "create" => create(broker, parser, out).await,
        "list" => {
            no_more(parser)?;
            let admin = Admin::new(connect(broker).await?);
            for name in admin.list_topics().await? {
                out.line(name.as_bytes())?;
            }
            Ok(())
        }
        "describe" => {
            let name = one_name(parser)?;
            let admin = Admin::new(connect(broker).await?);
            let d = admin.describe_topic(&name).await?;
            out.line(describe(&d).as_bytes())
        }
        "delete" => {
            let name = one_name(parser)?;
            Admin::new(connect(broker).await?).delete_topic(&name).await?;
            out.line(format!("deleted topic {name}").as_bytes())
        }
        other => bail!("unknown topic action {other:?} (create, list, describe, delete)"),
    }
}

async fn create(broker: &str, parser: &mut lexopt::Parser, out: &mut Output) -> Result<()> {
    use lexopt::prelude::*;
    let mut name = None;
    let mut config = v1::TopicConfig::default();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("partitions") => config.partitions = Some(parser.value()?.parse()?),
            Long("retention-ms") => config.retention_ms = Some(parser.value()?.parse()?),
            Long("retention-bytes") => config.retention_bytes = Some(parser.value()?.parse()?),
            Long("segment-bytes") => config.segment_bytes = Some(parser.value()?.parse()?),
            Long("cleanup") => {
                let value = parser.value()?.string()?;
                config.cleanup = Some(match value.as_str() {
                    "delete" => v1::CleanupPolicy::Delete as i32,
                    "compact" => v1::CleanupPolicy::Compact as i32,
                    other => bail!("--cleanup {other:?}: expected delete or compact"),
                });
            }
            Long("flush") => {
                let value = parser.value()?.string()?;
                let policy = match value.as_str() {
                    "always" => v1::flush_policy::Policy::Always(true),
                    "os" => v1::flush_policy::Policy::Os(true),
                    ms => v1::flush_policy::Policy::IntervalMs(ms.parse().with_context(|| {
                        format!("--flush {ms:?}: expected always, os or milliseconds")
                    })?),
                };
                config.flush = Some(v1::FlushPolicy { policy: Some(policy) });
            }
            Value(v) if name.is_none() => name = Some(v.string()?),
            other => return Err(other.unexpected().into()),
        }
    }
    let name = name.context("topic create needs a NAME")?;
    let admin = Admin::new(connect(broker).await?);
    let created = admin.create_topic(&name, config).await?;
    out.line(format!("created topic {name} ({})", settings(&created)).as_bytes())
}

pub(super) fn one_name(parser: &mut lexopt::Parser) -> Result<String> {
    use lexopt::prelude::*;
    let name = match parser.next()? {
        Some(Value(v)) => v.string()?,
        Some(other) => return Err(other.unexpected().into()),
        None => bail!("a topic NAME is needed"),
    };
    no_more(parser)?;
    Ok(name)
}

pub(super) fn no_more(parser: &mut lexopt::Parser) -> Result<()> {
    match parser.next()? {
        Some(arg) => Err(arg.unexpected().into()),
        None => Ok(()),
    }
}

fn settings(c: &v1::TopicConfig) -> String {
    let cleanup = match c.cleanup.map(v1::CleanupPolicy::try_from) {
        Some(Ok(v1::CleanupPolicy::Compact)) => "compact",
        _ => "delete",
    };
    let flush = match c.flush.as_ref().and_then(|f| f.policy) {
        Some(v1::flush_policy::Policy::Always(_)) => "always".to_string(),
        Some(v1::flush_policy::Policy::IntervalMs(ms)) => format!("{ms}ms"),
        _ => "os".to_string(),
    };
    let retention = match c.retention_ms {
        Some(ms) if ms >= 0 => format!("{ms}ms"),
        _ => "forever".to_string(),
    };
    let bytes = c.retention_bytes.map_or_else(|| "unlimited".to_string(), |b| b.to_string());
    format!(
        "partitions={} retention={retention} retention-bytes={bytes} segment-bytes={} cleanup={cleanup} flush={flush}",
        c.partitions.unwrap_or(1),
        c.segment_bytes.unwrap_or_default()
    )
}

fn describe(d: &v1::DescribeTopicResponse) -> String {
    let mut text =
        format!("topic {}  {}\n", d.name, d.config.as_ref().map(settings).unwrap_or_default());
    text.push_str("partition  start-offset  next-offset  bytes  segments");
    for p in &d.partitions {
        text.push_str(&format!(
            "\n{:>9}  {:>12}  {:>11}  {:>5}  {:>8}",
            p.partition, p.log_start_offset, p.next_offset, p.size_bytes, p.segments
        ));
    }
    text
}
