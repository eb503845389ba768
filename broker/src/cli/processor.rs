//! `eddy processor deploy FILE | list | status NAME | drop NAME`.

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
            let file = one_name(parser)?;
            let spec = std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?;
            let admin = Admin::new(connect(broker).await?);
            let p = admin.deploy_processor(&spec).await?;
            out.line(format!("deployed processor {} version {}", p.name, p.version).as_bytes())
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
        other => bail!("unknown processor action {other:?} (deploy, list, status, drop)"),
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
