//! `eddy connector create NAME --source|--sink [--config FILE] [KEY=VALUE ...] | list |
//! status NAME | pause NAME | resume NAME | drop NAME` (docs/connectors.md).
//!
//! Options come from `KEY=VALUE` arguments and/or a properties file (`KEY=VALUE` lines, `#`
//! comments), as Kafka Connect's standalone files are written.

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use eddy_client::Admin;
use eddy_protocol::v1;

use super::topic::{no_more, one_name};
use super::{Output, connect};

pub async fn run(broker: &str, parser: &mut lexopt::Parser, out: &mut Output) -> Result<()> {
    use lexopt::prelude::*;
    let Some(Value(action)) = parser.next()? else {
        bail!("connector needs an action: create, list, status, pause, resume or drop")
    };
    let admin = || async { Ok::<_, anyhow::Error>(Admin::new(connect(broker).await?)) };
    match action.string()?.as_str() {
        "create" => {
            let (name, kind, config) = create_args(parser)?;
            let info = admin().await?.create_connector(&name, kind, config).await?;
            out.line(format!("created {kind} connector {}: {}", info.name, info.state).as_bytes())
        }
        "list" => {
            no_more(parser)?;
            for c in admin().await?.list_connectors().await? {
                out.line(summary(&c).as_bytes())?;
            }
            Ok(())
        }
        "status" => {
            let name = one_name(parser)?;
            out.line(status(&admin().await?.connector_status(&name).await?).as_bytes())
        }
        a @ ("pause" | "resume") => {
            let name = one_name(parser)?;
            let info = admin().await?.pause_connector(&name, a == "pause").await?;
            out.line(format!("connector {}: {}", info.name, info.state).as_bytes())
        }
        "drop" => {
            let name = one_name(parser)?;
            admin().await?.drop_connector(&name).await?;
            out.line(format!("dropped connector {name}").as_bytes())
        }
        other => {
            bail!("unknown connector action {other:?} (create, list, status, pause, resume, drop)")
        }
    }
}

/// `KEY=VALUE` lines of a properties file.
fn properties(text: &str, into: &mut HashMap<String, String>) -> Result<()> {
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .with_context(|| format!("line {}: expected KEY=VALUE, got {line:?}", n + 1))?;
        into.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(())
}

fn create_args(
    parser: &mut lexopt::Parser,
) -> Result<(String, &'static str, HashMap<String, String>)> {
    use lexopt::prelude::*;
    let (mut name, mut kind, mut config) = (None, None, HashMap::new());
    while let Some(arg) = parser.next()? {
        match arg {
            Long("source") => kind = Some("source"),
            Long("sink") => kind = Some("sink"),
            Long("config") => {
                let file = parser.value()?.string()?;
                let text =
                    std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?;
                properties(&text, &mut config).with_context(|| format!("in {file}"))?;
            }
            Value(v) if name.is_none() => name = Some(v.string()?),
            Value(v) => properties(&v.string()?, &mut config)?,
            other => return Err(other.unexpected().into()),
        }
    }
    let name = name.context("connector create needs a NAME")?;
    let kind = kind.context("connector create needs --source or --sink")?;
    Ok((name, kind, config))
}

fn summary(c: &v1::ConnectorInfo) -> String {
    let reason = if c.reason.is_empty() { String::new() } else { format!(": {}", c.reason) };
    format!("{}\t{}\t{}\t{}{reason}", c.name, c.kind, c.class, c.state)
}

/// `eddy connector status`: one `field: value` line each.
fn status(c: &v1::ConnectorInfo) -> String {
    let mut config: Vec<_> = c.config.iter().collect();
    config.sort();
    let mut lines = vec![
        format!("connector: {}", c.name),
        format!("kind: {}", c.kind),
        format!("class: {}", c.class),
        format!("state: {}", c.state),
    ];
    if !c.reason.is_empty() {
        lines.push(format!("reason: {}", c.reason));
    }
    lines.push(format!("failures: {}", c.failures));
    lines.push(format!("records: {}", c.records));
    lines.push(format!("position: {}", c.position));
    if !c.owner.is_empty() {
        lines.push(format!("owner: {}", c.owner));
    }
    lines.extend(config.into_iter().map(|(k, v)| format!("option {k}: {v}")));
    lines.join("\n")
}
