//! `eddy processor deploy FILE [--wait] | list | status NAME | rollback NAME | drop NAME`.
//!
//! `deploy --wait` of a new version waits until it has replayed the log and serves, showing
//! its progress (events, events/s, lag, ETA) on stderr when stderr is a terminal.

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
        "deploy" => {
            let (mut file, mut wait) = (None, false);
            while let Some(arg) = parser.next()? {
                match arg {
                    Long("wait") => wait = true,
                    Value(v) if file.is_none() => file = Some(v.string()?),
                    other => return Err(other.unexpected().into()),
                }
            }
            let file = file.context("processor deploy needs a FILE")?;
            let spec = std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?;
            let admin = Admin::new(connect(broker).await?);
            let p = admin.deploy_processor(&spec).await?;
            match &p.building {
                Some(b) => {
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
                        out.line(
                            format!("processor {} version {} serves", p.name, b.version).as_bytes(),
                        )?;
                    }
                    Ok(())
                }
                None => out.line(
                    format!("deployed processor {} version {}", p.name, p.version).as_bytes(),
                ),
            }
        }
        "rollback" => {
            let name = one_name(parser)?;
            let p = Admin::new(connect(broker).await?).rollback_processor(&name).await?;
            out.line(format!("processor {} version {} serves again", p.name, p.version).as_bytes())
        }
        "list" => {
            no_more(parser)?;
            let admin = Admin::new(connect(broker).await?);
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
        other => bail!("unknown processor action {other:?} (deploy, list, status, rollback, drop)"),
    }
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
