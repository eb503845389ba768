//! `ksql_compat`: measures how much of ksqlDB's own SQL test suite eddy's SQL passes.
//!
//! ksqlDB checks its SQL with "query validation tests" (QTT): JSON files in which each test is
//! a list of statements, input records, and the records the queries must write (or the error a
//! statement must raise). This tool runs every such test it can on eddy — statements through
//! `eddy_sql::Session::execute` one by one, queries started on `LocalLogs` in a temporary
//! directory, inputs produced one at a time, each processed before the next (as ksqlDB's test
//! driver does) — and compares what eddy wrote with what ksqlDB expects. Each case runs in its
//! own directory, has 10 s to process its input, and a panic fails only that case. It is a
//! compatibility *measurement*: failures are counted and grouped by reason, never
//! special-cased.
//!
//! The JSON files are ksqlDB's (`ksqldb-functional-tests/src/test/resources/
//! query-validation-tests/` in the ksql repository). They are read from the directory given on
//! the command line and are never stored in this repository. From a ksql checkout:
//!
//! ```text
//! mkdir -p /tmp/qtt && git -C ksql archive HEAD \
//!     ksqldb-functional-tests/src/test/resources/query-validation-tests \
//!     | tar x --strip-components=5 -C /tmp/qtt
//! cargo run -p eddy-sql --example ksql_compat -- /tmp/qtt [FILTER] [--verbose] [--report FILE]
//! ```
//!
//! - `FILTER` keeps the files whose name contains it.
//! - `--verbose` lists every failing case with its reason.
//! - `--report FILE` writes a Markdown report: totals, a per-file table, the failures grouped
//!   by reason, and ksqlDB's and eddy's messages for the tests expecting an error.
//!
//! **Not runnable** (counted apart): tests using the AVRO, PROTOBUF, PROTOBUF_NOSR or JSON_SR
//! formats (in `VALUE_FORMAT`/`KEY_FORMAT`/`FORMAT`, a `{FORMAT}` variant or a default-format
//! property), tests declaring schema-registry schemas in `topics`, and tests ksqlDB disables.
//! A test with `format` or `config` lists is one case per variant, named as ksqlDB names them.
//!
//! **Passing**: a test with `expectedException` passes when eddy refuses one of its statements
//! (or a query fails on the input). Any other passes when every topic named in `outputs` holds
//! the expected records — key, value, timestamp (when given) and window — in order, or in any
//! order when the topic has several partitions.
//!
//! **How QTT's JSON maps onto eddy's bytes**: an input key is written as its text (a string as
//! itself, anything else as JSON), an input value as JSON, or as its text when the topic's
//! format is not JSON and the value is a string; `null` is no key / a tombstone. Output keys
//! are compared as text when ksqlDB expects a string, else parsed as JSON; a `window` is
//! compared with the `start` and `end` of eddy's windowed key `{"key", "start", "end"}`.
//! Values compare as JSON the way ksqlDB's comparator does (field names exactly or
//! upper-cased, same number of fields), except that numbers compare numerically (1 == 1.0;
//! doubles within 1e-9 relative). Not checked: `post` conditions, record headers and
//! `properties` (eddy has none of these).
//!
//! The parts: [`qtt`] reads the test files into cases, [`run`] runs a case on eddy, [`compare`]
//! compares what it wrote with what ksqlDB expects, and [`report`] counts and writes up the
//! results; this file holds the command line and the loop over the files.

#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line tool: printing is its job

#[path = "../../../processor/tests/common/mod.rs"]
mod common;

mod compare;
mod qtt;
mod report;
mod run;

use std::error::Error;
use std::path::{Path, PathBuf};

type BoxResult<T> = Result<T, Box<dyn Error>>;

use report::{CaseResult, FileResult, Results};

/// The command line.
struct Args {
    dir: PathBuf,
    filter: Option<String>,
    verbose: bool,
    report: Option<PathBuf>,
}

const USAGE: &str = "usage: ksql_compat DIR [FILTER] [--verbose] [--report FILE]";

fn args() -> BoxResult<Args> {
    let mut dir = None;
    let mut filter = None;
    let mut verbose = false;
    let mut report = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--verbose" | "-v" => verbose = true,
            "--report" => report = Some(PathBuf::from(it.next().ok_or(USAGE)?)),
            "--help" | "-h" => return Err(USAGE.into()),
            _ if dir.is_none() => dir = Some(PathBuf::from(a)),
            _ if filter.is_none() => filter = Some(a),
            _ => return Err(format!("unexpected argument {a}\n{USAGE}").into()),
        }
    }
    Ok(Args { dir: dir.ok_or(USAGE)?, filter, verbose, report })
}

/// The `.json` files of `dir` whose name contains `filter`, by name.
fn test_files(dir: &Path, filter: Option<&str>) -> BoxResult<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        if name.ends_with(".json") && filter.is_none_or(|f| name.contains(f)) {
            files.push((name, path));
        }
    }
    files.sort();
    Ok(files)
}

/// Runs every case of one file into `results`.
fn run_file(name: &str, path: &Path, results: &mut Results) {
    let planned = match qtt::load(path) {
        Ok(p) => p,
        Err(e) => {
            results.unreadable.push((name.to_owned(), e.to_string()));
            return;
        }
    };
    let mut file = FileResult::default();
    for p in planned {
        match p {
            qtt::Planned::Skip { why } => {
                file.not_runnable += 1;
                *results.skipped.entry(why).or_default() += 1;
            }
            qtt::Planned::Run(case) => {
                let verdict = run::case(&case);
                file.runnable += 1;
                file.passed += usize::from(verdict.is_ok());
                results.cases.push(CaseResult {
                    file: name.to_owned(),
                    name: case.name.clone(),
                    verdict,
                    unchecked: case.unchecked.clone(),
                    outputs: case.outputs.len(),
                });
            }
        }
    }
    println!(
        "{name}: passed {} / runnable {} (not runnable {})",
        file.passed, file.runnable, file.not_runnable
    );
    results.files.insert(name.to_owned(), file);
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ksql_compat: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> BoxResult<()> {
    let args = args()?;
    let files = test_files(&args.dir, args.filter.as_deref())?;
    if files.is_empty() {
        return Err(format!("no .json files in {}", args.dir.display()).into());
    }
    run::quiet_panics();
    let mut results = Results::default();
    for (name, path) in &files {
        run_file(name, path, &mut results);
    }
    let t = results.totals();
    println!(
        "TOTAL: passed {} / runnable {} (not runnable {})",
        t.passed, t.runnable, t.not_runnable
    );
    for (file, e) in &results.unreadable {
        println!("unreadable: {file}: {e}");
    }
    if args.verbose {
        for (c, f) in results.failures() {
            println!("FAIL {} › {}: {}", c.file, c.name, f.message);
        }
    }
    if let Some(path) = &args.report {
        let command: Vec<String> = std::env::args().collect();
        let markdown = report::markdown(&results, &command.join(" "));
        std::fs::write(path, markdown).map_err(|e| format!("writing {}: {e}", path.display()))?;
        println!("report written to {}", path.display());
    }
    Ok(())
}
