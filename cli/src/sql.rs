//! `eddy sql [-e STATEMENTS | -f FILE] [--limit N]`: SQL against the broker (docs/sql.md).
//! (`eddy sql run FILE --kafka BOOTSTRAP` runs a script's queries over a Kafka-protocol
//! cluster instead: `sql_run.rs`.)
//!
//! Without `-e`/`-f`, statements come from stdin: an interactive shell when stdin is a
//! terminal (line editing; Up/Down and Ctrl-R recall earlier statements, also those of earlier
//! sessions, kept in `~/.eddy_sql_history` or `$EDDY_SQL_HISTORY`; a statement may span lines
//! and ends with `;`; Ctrl-C drops the statement being typed; `history` lists what was run;
//! `exit` or Ctrl-D leaves), else the whole input as a script.
//!
//! Statements are split here and sent one per request; each request's text keeps the
//! statement at its place (what comes before is blanked, newlines kept), so the broker's error
//! positions are positions in the script. A failed statement prints one line on stderr
//! (`error: ... at line L, column C ...`) and, outside the shell, stops the script with a
//! non-zero exit. Rows print as a table. A push query (`SELECT ... EMIT CHANGES`, over a table's
//! changes or a stream's new records) polls the broker and prints rows as they come, until
//! Ctrl-C, or `--limit N` rows, or the statement's own `LIMIT n` (the smaller of the two).

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use eddy_client::{Admin, Connection};
use eddy_protocol::v1::{self, sql_result::Result as R};
use eddy_sql::{Statement, parse_script};
use rustyline::error::ReadlineError;
use serde_json::Value;

use super::{Output, connect};

/// How long one push poll waits for changes.
const PUSH_WAIT_MS: u32 = 1000;

pub async fn run(broker: &str, parser: &mut lexopt::Parser, out: &mut Output) -> Result<()> {
    use lexopt::prelude::*;
    // `eddy sql run FILE --kafka BOOTSTRAP`: the script's queries over a cluster.
    let mut ahead = parser.clone();
    if let Ok(Some(Value(first))) = ahead.next()
        && first == "run"
    {
        *parser = ahead;
        return super::sql_run::run(parser, out).await;
    }
    let (mut script, mut limit) = (None, None);
    while let Some(arg) = parser.next()? {
        match arg {
            Short('e') | Long("execute") => script = Some(parser.value()?.string()?),
            Short('f') | Long("file") => {
                let file = parser.value()?.string()?;
                script = Some(
                    std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?,
                );
            }
            Long("limit") => limit = Some(parser.value()?.parse::<usize>()?),
            other => return Err(other.unexpected().into()),
        }
    }
    let admin = Admin::new(Arc::new(connect(broker).await?));
    let script = match script {
        Some(s) => s,
        None if std::io::stdin().is_terminal() => return shell(&admin, out, limit).await,
        None => std::io::read_to_string(std::io::stdin()).context("reading stdin")?,
    };
    run_script(&admin, &script, out, limit).await
}

/// Runs a script, stopping at the first statement that fails (its error, one line, is the
/// error returned).
async fn run_script(
    admin: &Admin<Arc<Connection>>,
    script: &str,
    out: &mut Output,
    limit: Option<usize>,
) -> Result<()> {
    // Split here; a script that does not parse goes whole, for the broker's error.
    // (text, whether a push query, its own LIMIT)
    let pieces: Vec<(String, bool, Option<u64>)> = match parse_script(script) {
        Ok(statements) => {
            let mut cursor = 0;
            let mut pieces = Vec::new();
            for (statement, text) in statements {
                let at =
                    script.get(cursor..).and_then(|r| r.find(&text)).map_or(cursor, |i| cursor + i);
                cursor = at + text.len();
                let blank: String = script
                    .get(..at)
                    .unwrap_or_default()
                    .chars()
                    .map(|c| if c == '\n' { '\n' } else { ' ' })
                    .collect();
                let push = eddy_broker::sql::is_push(&text);
                let own = match statement {
                    Statement::Select(s) => s.limit,
                    _ => None,
                };
                pieces.push((format!("{blank}{text}"), push, own));
            }
            pieces
        }
        Err(_) => vec![(script.to_string(), false, None)],
    };
    for (text, push, own) in pieces {
        if push {
            let own = own.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
            let limit = match (limit, own) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if limit == Some(0) {
                continue;
            }
            push_query(admin, &text, out, limit).await?;
            continue;
        }
        for result in admin.sql(&text, Vec::new(), 0).await? {
            print_result(&result, out)?;
        }
    }
    Ok(())
}

/// Prints one statement's result; a failed statement is the error returned, on one line.
fn print_result(result: &v1::SqlResult, out: &mut Output) -> Result<()> {
    let line = match &result.result {
        None | Some(R::Unchanged(_)) => "nothing to do".to_string(),
        Some(R::Declared(d)) => format!(
            "declared {} {} over topic {} ({} partition{})",
            d.kind,
            d.name,
            d.topic,
            d.partitions,
            if d.partitions == 1 { "" } else { "s" }
        ),
        Some(R::Query(q)) if q.replaced => format!(
            "replacing query {}: version {} of {} replays from offset zero and serves once caught up",
            q.id, q.version, q.target
        ),
        Some(R::Query(q)) => format!("started query {} ({} version {})", q.id, q.target, q.version),
        Some(R::Rows(rows)) => {
            table(&rows.columns, &rows.rows, out)?;
            if rows.processor.is_empty() {
                return out.flush();
            }
            format!("({} row(s), {} version {})", rows.rows.len(), rows.processor, rows.version)
        }
        Some(R::Push(p)) => {
            table(&p.columns, &p.rows, out)?;
            return out.flush();
        }
        Some(R::Dropped(name)) => format!("dropped {name}"),
        Some(R::Terminated(id)) => format!("terminated query {id}"),
        Some(R::Error(e)) => {
            out.flush()?;
            bail!("{}", e.message.replace('\n', " "));
        }
    };
    out.line(line.as_bytes())?;
    out.flush()
}

/// A JSON value as a cell: strings without quotes.
fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn cells(row: &str) -> Vec<String> {
    match serde_json::from_str::<Value>(row) {
        Ok(Value::Array(values)) => values.iter().map(cell).collect(),
        _ => vec![row.to_string()],
    }
}

fn table(columns: &[String], rows: &[String], out: &mut Output) -> Result<()> {
    let rows: Vec<Vec<String>> = rows.iter().map(|r| cells(r)).collect();
    let mut widths: Vec<usize> = columns.iter().map(|c| c.chars().count()).collect();
    for row in &rows {
        for (i, c) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let rule: String =
        widths.iter().map(|w| format!("+{}", "-".repeat(w + 2))).collect::<String>() + "+";
    let line = |values: &[String]| -> String {
        let mut s = String::new();
        for (i, w) in widths.iter().enumerate() {
            let v = values.get(i).map_or("", String::as_str);
            s.push_str(&format!("| {v:<w$} "));
        }
        s + "|"
    };
    out.line(rule.as_bytes())?;
    out.line(line(columns).as_bytes())?;
    out.line(rule.as_bytes())?;
    for row in &rows {
        out.line(line(row).as_bytes())?;
    }
    out.line(rule.as_bytes())
}

/// Polls a push query and prints its rows until Ctrl-C or `limit` rows.
async fn push_query(
    admin: &Admin<Arc<Connection>>,
    sql: &str,
    out: &mut Output,
    limit: Option<usize>,
) -> Result<()> {
    let mut from = Vec::new();
    let mut printed = 0;
    let mut header = false;
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let poll = admin.sql(sql, from.clone(), PUSH_WAIT_MS);
        let results = tokio::select! {
            r = poll => r?,
            _ = &mut interrupted => return Ok(()),
        };
        let Some(result) = results.into_iter().next() else { bail!("an empty answer") };
        let push = match result.result {
            Some(R::Push(p)) => p,
            other => {
                print_result(&v1::SqlResult { statement: result.statement, result: other }, out)?;
                bail!("the push query stopped");
            }
        };
        if !header {
            out.line(format!("| {} |", push.columns.join(" | ")).as_bytes())?;
            header = true;
        }
        for row in &push.rows {
            out.line(format!("| {} |", cells(row).join(" | ")).as_bytes())?;
            printed += 1;
            if limit.is_some_and(|n| printed >= n) {
                return out.flush();
            }
        }
        out.flush()?;
        from = push.next;
    }
}

/// The history file of the interactive shell: `$EDDY_SQL_HISTORY`, else
/// `$HOME/.eddy_sql_history` (none without a home: history then lasts the session).
fn history_file() -> Option<std::path::PathBuf> {
    if let Some(file) = std::env::var_os("EDDY_SQL_HISTORY") {
        return Some(file.into());
    }
    std::env::var_os("HOME").map(|home| std::path::Path::new(&home).join(".eddy_sql_history"))
}

/// The interactive shell: line editing and history (arrow keys, Ctrl-R search) from the
/// terminal, statements over several lines until `;`, history kept across sessions.
async fn shell(
    admin: &Admin<Arc<Connection>>,
    out: &mut Output,
    limit: Option<usize>,
) -> Result<()> {
    let mut editor = rustyline::DefaultEditor::new().context("opening the terminal")?;
    let file = history_file();
    if let Some(f) = &file
        && f.exists()
        && let Err(e) = editor.load_history(f)
    {
        let _ = writeln!(std::io::stderr(), "warning: history {} not read: {e}", f.display());
    }
    let mut statement = String::new();
    loop {
        let prompt = if statement.is_empty() { "eddy> " } else { "   -> " };
        let line = match editor.readline(prompt) {
            Ok(line) => line,
            // Ctrl-C drops the statement being typed, as psql and the ksqlDB CLI do.
            Err(ReadlineError::Interrupted) => {
                statement.clear();
                continue;
            }
            Err(ReadlineError::Eof) => return Ok(()),
            Err(e) => return Err(e).context("reading the terminal"),
        };
        let trimmed = line.trim();
        if statement.is_empty() {
            match trimmed.to_ascii_lowercase().trim_end_matches(';') {
                "" => continue,
                "exit" | "quit" => return Ok(()),
                "history" => {
                    for (i, h) in editor.history().iter().enumerate() {
                        out.line(format!("{:>4}  {h}", i + 1).as_bytes())?;
                    }
                    out.flush()?;
                    continue;
                }
                _ => {}
            }
        }
        statement.push_str(&line);
        statement.push('\n');
        if !trimmed.ends_with(';') {
            continue;
        }
        let text = std::mem::take(&mut statement);
        // One history entry per statement, on one line, so that one Up brings it back whole.
        let entry = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if editor.add_history_entry(entry).unwrap_or(false)
            && let Some(f) = &file
            && let Err(e) = editor.append_history(f)
        {
            let _ = writeln!(std::io::stderr(), "warning: history {} not saved: {e}", f.display());
        }
        if let Err(e) = run_script(admin, &text, out, limit).await {
            let _ = out.flush();
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
        }
    }
}
