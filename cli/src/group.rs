//! `eddy group list | describe G | reset G --topic T --to ... | delete G`.

use anyhow::{Context, Result, bail};
use eddy_client::{Admin, GroupReset};
use eddy_protocol::v1;

use super::topic::{no_more, one_name};
use super::{Output, connect};

pub async fn run(broker: &str, parser: &mut lexopt::Parser, out: &mut Output) -> Result<()> {
    use lexopt::prelude::*;
    let Some(Value(action)) = parser.next()? else {
        bail!("group needs an action: list, describe, reset or delete")
    };
    match action.string()?.as_str() {
        "list" => {
            no_more(parser)?;
            let admin = Admin::new(connect(broker).await?);
            out.line(b"group  state  members")?;
            for g in admin.list_groups().await? {
                out.line(format!("{}  {}  {}", g.group_id, g.state, g.members).as_bytes())?;
            }
            Ok(())
        }
        "describe" => {
            let group = one_name(parser)?;
            let admin = Admin::new(connect(broker).await?);
            let d = admin.describe_group(&group).await?;
            out.line(describe(&d).as_bytes())
        }
        "reset" => reset(broker, parser, out).await,
        "delete" => {
            let group = one_name(parser)?;
            Admin::new(connect(broker).await?).delete_group(&group).await?;
            out.line(format!("deleted group {group}").as_bytes())
        }
        other => bail!("unknown group action {other:?} (list, describe, reset, delete)"),
    }
}

async fn reset(broker: &str, parser: &mut lexopt::Parser, out: &mut Output) -> Result<()> {
    use lexopt::prelude::*;
    let (mut group, mut topic, mut to) = (None, None, None);
    while let Some(arg) = parser.next()? {
        match arg {
            Long("topic") => topic = Some(parser.value()?.string()?),
            Long("to") => to = Some(parse_to(&parser.value()?.string()?)?),
            Value(v) if group.is_none() => group = Some(v.string()?),
            other => return Err(other.unexpected().into()),
        }
    }
    let group = group.context("group reset needs a GROUP")?;
    let topic = topic.context("group reset needs --topic T")?;
    let to = to.context("group reset needs --to earliest|latest|OFFSET|@UNIX_MS")?;
    let admin = Admin::new(connect(broker).await?);
    let offsets = admin.reset_group_offsets(&group, &topic, to).await?;
    out.line(format!("group {group} topic {topic}: offsets reset").as_bytes())?;
    out.line(b"partition  committed")?;
    for c in offsets {
        out.line(format!("{:>9}  {:>9}", c.partition, c.offset.unwrap_or_default()).as_bytes())?;
    }
    Ok(())
}

fn parse_to(text: &str) -> Result<GroupReset> {
    Ok(match text {
        "earliest" => GroupReset::Earliest,
        "latest" => GroupReset::Latest,
        t if t.starts_with('@') => {
            GroupReset::Timestamp(t[1..].parse().with_context(|| format!("--to {t:?}"))?)
        }
        t => GroupReset::Offset(t.parse().with_context(|| {
            format!("--to {t:?}: expected earliest, latest, OFFSET or @UNIX_MS")
        })?),
    })
}

fn partitions(list: &[v1::TopicPartitions]) -> String {
    let parts: Vec<String> = list
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| format!("{}-{p}", t.topic)))
        .collect();
    if parts.is_empty() { "-".to_string() } else { parts.join(",") }
}

fn describe(d: &v1::DescribeGroupResponse) -> String {
    let mut text = format!(
        "group {}  state={} epoch={} assignor={} members={}\n",
        d.group_id,
        d.state,
        d.group_epoch,
        d.assignor,
        d.members.len()
    );
    text.push_str("member  client  epoch  assigned  revoking  pending");
    for m in &d.members {
        text.push_str(&format!(
            "\n{}  {}  {}  {}  {}  {}",
            m.member_id,
            if m.client_id.is_empty() { "-" } else { &m.client_id },
            m.member_epoch,
            partitions(&m.assigned),
            partitions(&m.revoking),
            partitions(&m.pending),
        ));
    }
    text.push_str("\n\ntopic  partition  committed  end-offset  lag  owner");
    for o in &d.offsets {
        text.push_str(&format!(
            "\n{}  {}  {}  {}  {}  {}",
            o.topic,
            o.partition,
            o.committed.map_or_else(|| "-".to_string(), |c| c.to_string()),
            o.end_offset,
            o.lag,
            if o.owner.is_empty() { "-" } else { &o.owner },
        ));
    }
    text
}
