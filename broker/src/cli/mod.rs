//! Command-line parsing and dispatch. Arguments are parsed raw (lexopt), then validated into
//! typed values before anything runs; `anyhow` carries errors to `main`, which prints one line
//! and exits non-zero.

mod consume;
mod group;
mod processor;
mod produce;
mod query;
mod serve;
mod sql;
mod topic;

use std::ffi::OsString;
use std::io::Write;

use anyhow::{Context, Result, bail};
use eddy_client::{Connection, ConnectionOptions};

pub const USAGE: &str = "\
usage: eddy [--broker ADDR] <command> ...

  serve [--data-dir DIR] [--listen ADDR] [--config FILE]
        run the broker (defaults: ./eddy-data, 127.0.0.1:9750)
  topic create NAME [--partitions N] [--retention-ms MS] [--retention-bytes B]
                    [--segment-bytes B] [--cleanup delete|compact] [--flush always|os|MS]
  topic list | describe NAME | delete NAME
  produce TOPIC [--key-sep SEP] [--partition P] [--acks none|written|durable] [FILE]
        one record per line of FILE (or stdin)
  consume TOPIC [--from earliest|latest|OFFSET|@UNIX_MS] [--partition P] [--count N]
                [--format value|json] [--follow] [--group G]
        with --group: a member of consumer group G, committing what it prints
  group list | describe G | delete G
  group reset G --topic T --to earliest|latest|OFFSET|@UNIX_MS
        (reset and delete need a group without members)
  processor deploy FILE [--wait] | list | status NAME | replay NAME [--wait]
            | verify NAME | rollback NAME | drop NAME
        processors defined by a spec file (docs/processors.md), run inside the broker;
        deploying a higher version replays from offset zero and takes over when caught up
  query TABLE KEY | --scan [--prefix P] [--from K] [--to K] [--limit N] | --top N [--by FIELD]
        | --follow
        [--digest]   pull queries against a live table; --follow prints its changes

  sql [-e STATEMENTS | -f FILE] [--limit N]
        streaming SQL (docs/sql.md); without -e/-f an interactive shell on a terminal;
        push queries (EMIT CHANGES) print rows until Ctrl-C or N rows

--broker defaults to 127.0.0.1:9750.
";

pub fn run(args: Vec<OsString>) -> Result<()> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let mut broker = eddy_broker::config::DEFAULT_LISTEN.to_string();
    let command = loop {
        match parser.next()? {
            Some(Long("broker")) => broker = parser.value()?.string()?,
            Some(Long("help") | Short('h')) => {
                return Output::stdout().line(USAGE.trim_end().as_bytes());
            }
            Some(Value(command)) => break command.string()?,
            Some(other) => return Err(other.unexpected().into()),
            None => bail!("no command given (see eddy --help)"),
        }
    };
    if command == "serve" {
        return serve::run(&mut parser);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let mut out = Output::stdout();
    runtime.block_on(async {
        match command.as_str() {
            "topic" => topic::run(&broker, &mut parser, &mut out).await,
            "produce" => produce::run(&broker, &mut parser, &mut out).await,
            "consume" => consume::run(&broker, &mut parser, &mut out).await,
            "group" => group::run(&broker, &mut parser, &mut out).await,
            "processor" => processor::run(&broker, &mut parser, &mut out).await,
            "query" => query::run(&broker, &mut parser, &mut out).await,
            "sql" => sql::run(&broker, &mut parser, &mut out).await,
            other => bail!("unknown command {other:?} (see eddy --help)"),
        }
    })
}

async fn connect(broker: &str) -> Result<Connection> {
    Connection::connect(broker, ConnectionOptions::default())
        .await
        .with_context(|| format!("connecting to {broker}"))
}

/// Buffered stdout that ends quietly when the reader goes away (`eddy consume | head`).
pub struct Output {
    out: std::io::BufWriter<std::io::Stdout>,
}

impl Output {
    fn stdout() -> Self {
        Self { out: std::io::BufWriter::with_capacity(1 << 16, std::io::stdout()) }
    }

    pub fn line(&mut self, bytes: &[u8]) -> Result<()> {
        self.write(bytes).and_then(|()| self.write(b"\n"))
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        match self.out.write_all(bytes) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
            other => other.context("writing to stdout"),
        }
    }

    pub fn flush(&mut self) -> Result<()> {
        match self.out.flush() {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
            other => other.context("writing to stdout"),
        }
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        let _ = self.out.flush();
    }
}
