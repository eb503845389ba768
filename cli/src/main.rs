//! The `eddy` binary: `eddy serve` runs the broker; the other commands are clients of it.
//!
//! Command-line parsing and dispatch. Arguments are parsed raw (lexopt), then validated into
//! typed values before anything runs; `anyhow` carries errors to `main`, which prints one line
//! and exits non-zero.

#![forbid(unsafe_code)]

mod acl;
mod auth;
mod connector;
mod consume;
mod group;
mod kafka_config;
mod processor;
mod processor_run;
mod processor_verify;
mod produce;
mod query;
mod serve;
mod sql;
mod sql_run;
mod topic;
mod user;

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use eddy_client::{Connection, ConnectionOptions, TlsOptions};

pub const USAGE: &str = "\
usage: eddy [--broker ADDR] <command> ...
       eddy [--broker ADDR] --tls-ca FILE [--tls-cert FILE --tls-key FILE] <command> ...
       eddy [--broker ADDR] --user NAME [--password-file FILE] [--sasl-mechanism M] <command> ...

  serve [--data-dir DIR] [--listen ADDR] [--kafka-listen ADDR|off] [--config FILE]
        [--http-listen ADDR|off] [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]]
        [--insecure]
        run the broker (defaults: ./eddy-data, 127.0.0.1:9750, the Kafka protocol
        on 127.0.0.1:9092, metrics and the web console on http://127.0.0.1:9751);
        with --tls-cert and --tls-key every listener serves TLS, and with
        --tls-client-ca clients must present a certificate it signed (docs/security.md);
        SIGHUP reloads the TLS files; a listener bound beyond loopback needs TLS and
        authentication ([auth] enabled = true), or --insecure to serve it unprotected
  topic create NAME [--partitions N] [--retention-ms MS] [--retention-bytes B]
                    [--segment-bytes B] [--cleanup delete|compact] [--flush always|os|MS]
  topic list | describe NAME | delete NAME
  produce TOPIC [--key-sep SEP] [--partition P] [--acks none|written|durable] [FILE]
        one record per line of FILE (or stdin)
  consume TOPIC [--from earliest|latest|OFFSET|@UNIX_MS] [--partition P] [--count N]
                [--format value|json] [--follow] [--group G]
                [--isolation read_uncommitted|read_committed]
        with --group: a member of consumer group G, committing what it prints
  group list | describe G | delete G
  group reset G --topic T --to earliest|latest|OFFSET|@UNIX_MS
        (reset and delete need a group without members)
  processor deploy FILE [--wait] | list | status NAME | replay NAME [--wait]
            | verify NAME | rollback NAME | drop NAME
        processors defined by a spec file (docs/processors.md), run inside the broker;
        deploying a higher version replays from offset zero and takes over when caught up
  processor run FILE --kafka BOOTSTRAP [--kafka-config FILE] [--state-dir DIR]
                [--query-listen ADDR] [--snapshot-every N] [--commit-ms MS] [--progress-ms MS]
        run the spec's processor in this process over a Kafka-protocol cluster (Kafka,
        Redpanda, eddy serve's Kafka listener); instances started with the same spec share
        its tasks as a consumer group (docs/processors.md, 'Over a Kafka cluster'). State in
        --state-dir (default ./eddy-data/cluster); pull queries on --query-listen (default
        127.0.0.1:0, printed): eddy --broker ADDR query TABLE KEY. A spec with a higher
        version replays beside the serving one and takes over when caught up.
        --kafka-config FILE: librdkafka settings (key=value lines: security.protocol,
        sasl.mechanism, sasl.username, sasl.password, ssl.ca.location, ...)
  processor verify NAME --kafka BOOTSTRAP [--kafka-config FILE] [--timeout-ms MS]
        rebuild the serving version from offset zero here and compare every table's
        digest with the live instances' tables (--timeout-ms: longest the rebuild may take
        to reach the live tables' positions, default one hour)
  connector create NAME --source|--sink [--config FILE] [KEY=VALUE ...]
            | list | status NAME | pause NAME | resume NAME | drop NAME
        connectors run inside the broker (docs/connectors.md): PostgreSQL sources
        (query mode, CDC) and sinks, a JSON-lines file sink
  acl add --allow|--deny User:NAME --operation OP[,OP...]
          (--topic|--group|--processor|--connector|--transactional-id NAME [--prefix]
           | --cluster) [--host IP]
      | list [--principal User:NAME | --allow|--deny User:NAME] [--operation OP,...]
             [--topic|--group|... NAME [--prefix|--match] | --cluster] [--host IP]
      | remove (the filters of list; at least one)
        who may do what (docs/security.md); operations: all, read, write, create, delete,
        alter, describe, cluster-action, describe-configs, alter-configs, idempotent-write
  query TABLE KEY | --scan [--prefix P] [--from K] [--to K] [--limit N] | --top N [--by FIELD]
        | --follow
        [--digest]   pull queries against a live table; --follow prints its changes

  sql [-e STATEMENTS | -f FILE] [--limit N]
        streaming SQL (docs/sql.md); without -e/-f an interactive shell on a terminal;
        push queries (EMIT CHANGES) print rows until Ctrl-C or N rows
  sql run FILE --kafka BOOTSTRAP [--kafka-config FILE] [--state-dir DIR]
                [--query-listen ADDR] [--snapshot-every N] [--commit-ms MS] [--progress-ms MS]
        run the script's persistent queries in this process over a Kafka-protocol
        cluster, as processor run runs a spec (docs/sql.md, 'Over a Kafka cluster')

  user add NAME [--mechanism SCRAM-SHA-256|SCRAM-SHA-512]... [--iterations N]
                [--new-password-file FILE]
       | passwd NAME [--new-password-file FILE] | list | delete NAME
        the broker's users (docs/security.md); the new password comes from
        EDDY_NEW_PASSWORD, --new-password-file or stdin, never an argument

--broker defaults to 127.0.0.1:9750. --tls-ca FILE (or EDDY_TLS_CA) connects with TLS,
trusting the CA certificates in FILE; --tls-cert and --tls-key (EDDY_TLS_CERT, EDDY_TLS_KEY)
present a client certificate; the broker's certificate must be valid for the host of
--broker unless --tls-server-name (EDDY_TLS_SERVER_NAME) names another. --user authenticates every connection (SASL; the
password from EDDY_PASSWORD or --password-file, never an argument; --sasl-mechanism
SCRAM-SHA-512 by default, or SCRAM-SHA-256 or PLAIN).
";

/// The lines of [`USAGE`] about `command` (its block: the line naming it and the lines
/// indented under it), or `None` for a command eddy does not have.
fn usage_of(command: &str) -> Option<String> {
    let mut block = Vec::new();
    let mut inside = false;
    for line in USAGE.lines() {
        let starts_block = line.starts_with("  ") && !line.starts_with("   ");
        if starts_block {
            inside = line[2..].split_whitespace().next() == Some(command);
        } else if line.trim().is_empty() {
            inside = false;
        }
        if inside {
            block.push(line);
        }
    }
    if block.is_empty() {
        return None;
    }
    let broker = if command == "serve" {
        ""
    } else {
        "\n--broker ADDR (before the command) defaults to 127.0.0.1:9750; --tls-ca FILE \
         [--tls-cert FILE --tls-key FILE] (before the command) connect with TLS."
    };
    Some(format!("usage: eddy {command} ...\n\n{}\n{broker}", block.join("\n")))
}

/// `eddy COMMAND ... --help`: the command named before the first `--help` or `-h` (ignoring
/// `--broker ADDR`), when the arguments ask for help. `-h` right after an option is that
/// option's value (`--key-sep -h`), not a request for help.
fn help_requested(args: &[OsString]) -> Option<Option<String>> {
    let mut command = None;
    let mut previous = String::new();
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        let arg = arg.to_string_lossy();
        match arg.as_ref() {
            "--" => return None,
            "--help" => return Some(command),
            "-h" if !previous.starts_with('-') => return Some(command),
            "--broker" | "--tls-ca" | "--tls-cert" | "--tls-key" | "--tls-server-name"
            | "--user" | "--password-file" | "--sasl-mechanism"
                if command.is_none() =>
            {
                i += 1
            }
            a if command.is_none() && !a.starts_with('-') => command = Some(a.to_string()),
            _ => {}
        }
        previous = arg.into_owned();
        i += 1;
    }
    None
}

pub fn run(args: Vec<OsString>) -> Result<()> {
    use lexopt::prelude::*;
    if let Some(command) = help_requested(&args) {
        let text = match command.as_deref() {
            None => USAGE.trim_end().to_string(),
            Some(c) => {
                usage_of(c).with_context(|| format!("unknown command {c:?} (see eddy --help)"))?
            }
        };
        return Output::stdout().line(text.trim_end().as_bytes());
    }
    let mut parser = lexopt::Parser::from_args(args);
    let mut broker = eddy_broker::config::DEFAULT_LISTEN.to_string();
    let mut tls = TlsFlags::default();
    let mut auth = auth::AuthArgs::default();
    let command = loop {
        match parser.next()? {
            Some(Long("broker")) => broker = parser.value()?.string()?,
            Some(Long("tls-ca")) => tls.ca = Some(PathBuf::from(parser.value()?)),
            Some(Long("tls-cert")) => tls.cert = Some(PathBuf::from(parser.value()?)),
            Some(Long("tls-key")) => tls.key = Some(PathBuf::from(parser.value()?)),
            Some(Long("tls-server-name")) => tls.server_name = Some(parser.value()?.string()?),
            Some(Value(command)) => break command.string()?,
            Some(Long(name)) => {
                let name = name.to_string();
                if !auth.take(&name, &mut parser)? {
                    bail!("invalid option '--{name}'");
                }
            }
            Some(other) => return Err(other.unexpected().into()),
            None => bail!("no command given (see eddy --help)"),
        }
    };
    if command == "serve" {
        if tls.given() {
            bail!(
                "--tls-ca, --tls-cert, --tls-key and --tls-server-name before the command are a \
                 client's; give eddy serve its TLS files after it: eddy serve --tls-cert FILE \
                 --tls-key FILE [--tls-client-ca FILE]"
            );
        }
        return serve::run(&mut parser);
    }
    let tls = tls.with_env(|name| std::env::var_os(name)).options()?;
    auth::set_connection(auth.credentials(|k| std::env::var(k).ok())?, tls);
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
            "connector" => connector::run(&broker, &mut parser, &mut out).await,
            "acl" => acl::run(&broker, &mut parser, &mut out).await,
            "query" => query::run(&broker, &mut parser, &mut out).await,
            "sql" => sql::run(&broker, &mut parser, &mut out).await,
            "user" => user::run(&broker, &mut parser, &mut out).await,
            other => bail!("unknown command {other:?} (see eddy --help)"),
        }
    })
}

/// A connection to the broker, with TLS and authentication as the global options say.
async fn connect(broker: &str) -> Result<Connection> {
    Connection::connect(broker, auth::options())
        .await
        .with_context(|| format!("connecting to {broker}"))
}

/// The client's TLS flags (`--tls-ca`, `--tls-cert`, `--tls-key`, `--tls-server-name`).
#[derive(Debug, Default)]
struct TlsFlags {
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    server_name: Option<String>,
}

impl TlsFlags {
    fn given(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some() || self.server_name.is_some()
    }

    /// Each flag not given from its environment variable (`EDDY_TLS_CA`, `EDDY_TLS_CERT`,
    /// `EDDY_TLS_KEY`, `EDDY_TLS_SERVER_NAME`).
    fn with_env(mut self, env: impl Fn(&str) -> Option<OsString>) -> Self {
        for (name, slot) in [
            ("EDDY_TLS_CA", &mut self.ca),
            ("EDDY_TLS_CERT", &mut self.cert),
            ("EDDY_TLS_KEY", &mut self.key),
        ] {
            if slot.is_none() {
                *slot = env(name).map(PathBuf::from);
            }
        }
        if self.server_name.is_none() {
            self.server_name = env("EDDY_TLS_SERVER_NAME").and_then(|v| v.into_string().ok());
        }
        self
    }

    /// TLS options, or `None` for plaintext.
    fn options(&self) -> Result<Option<TlsOptions>> {
        let client = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
            (None, None) => None,
            _ => bail!("--tls-cert and --tls-key go together (a client certificate and its key)"),
        };
        let Some(ca) = &self.ca else {
            if self.given() {
                bail!(
                    "--tls-ca FILE is needed to connect with TLS (the CA certificates that \
                     signed the broker's certificate)"
                );
            }
            return Ok(None);
        };
        let mut options = TlsOptions::from_files(ca, client)?;
        if let Some(name) = &self.server_name {
            options = options.with_server_name(name.clone());
        }
        Ok(Some(options))
    }
}

/// A connection to a processor instance's query listener, which does not authenticate.
async fn connect_unauthenticated(addr: &str) -> Result<Connection> {
    Connection::connect(addr, ConnectionOptions::default())
        .await
        .with_context(|| format!("connecting to {addr}"))
}

/// Buffered stdout that ends quietly when the reader goes away (`eddy consume | head`).
#[derive(Debug)]
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

/// `e` and its causes joined with ": ", leaving out a cause whose text the message before it
/// already ends with (errors that print their source as well as returning it).
fn one_line(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let text = cause.to_string().replace('\n', " ");
        if msg.ends_with(&text) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&text);
    }
    msg
}

/// Whether the broker refused a request for want of authentication.
fn needs_authentication(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause.downcast_ref::<eddy_client::ClientError>().and_then(eddy_client::ClientError::code)
            == Some(eddy_client::ErrorCode::AuthenticationRequired)
    })
}

fn main() -> std::process::ExitCode {
    match run(std::env::args_os().skip(1).collect()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line on stderr, as the CLI promises; causes joined with ": ".
            let mut msg = one_line(&e);
            if needs_authentication(&e) {
                msg.push_str(
                    " (give --user NAME, with the password in EDDY_PASSWORD or --password-file)",
                );
            }
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!("eddy: {msg}\n").as_bytes(),
            );
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_is_asked_by_help_flags_not_by_option_values() {
        let ask =
            |args: &[&str]| help_requested(&args.iter().map(OsString::from).collect::<Vec<_>>());
        assert_eq!(ask(&["topic", "create", "t", "-h"]), Some(Some("topic".into())));
        assert_eq!(ask(&["--broker", "a:1", "sql", "--help"]), Some(Some("sql".into())));
        assert_eq!(ask(&["-h"]), Some(None));
        assert_eq!(ask(&["produce", "t", "--key-sep", "-h"]), None);
        assert_eq!(ask(&["consume", "t", "--group", "-h"]), None);
        assert_eq!(ask(&["sql", "-e", "SELECT 1 -h"]), None);
        assert_eq!(ask(&["query", "t", "--", "--help"]), None);
    }

    #[test]
    fn tls_flags_need_a_ca_and_come_from_flags_then_the_environment() {
        let cert_only = TlsFlags { cert: Some("c.pem".into()), ..TlsFlags::default() };
        assert_eq!(
            cert_only.options().unwrap_err().to_string(),
            "--tls-cert and --tls-key go together (a client certificate and its key)"
        );
        let no_ca = TlsFlags { server_name: Some("b".into()), ..TlsFlags::default() };
        assert!(no_ca.options().unwrap_err().to_string().starts_with("--tls-ca FILE is needed"));
        assert!(TlsFlags::default().with_env(|_| None).options().unwrap().is_none());
        let env = |name: &str| (name == "EDDY_TLS_CA").then(|| OsString::from("env-ca.pem"));
        assert_eq!(TlsFlags::default().with_env(env).ca, Some(PathBuf::from("env-ca.pem")));
        let flag = TlsFlags { ca: Some("flag-ca.pem".into()), ..TlsFlags::default() };
        assert_eq!(flag.with_env(env).ca, Some(PathBuf::from("flag-ca.pem")));
    }

    #[test]
    fn a_cause_the_message_already_ends_with_is_not_repeated() {
        let io =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused (os error 111)");
        let client =
            eddy_client::ClientError::Connection { addr: "127.0.0.1:1".into(), source: io };
        let e = anyhow::Error::new(client).context("connecting to 127.0.0.1:1");
        assert_eq!(
            one_line(&e),
            "connecting to 127.0.0.1:1: connection to 127.0.0.1:1: refused (os error 111)"
        );
    }
}
