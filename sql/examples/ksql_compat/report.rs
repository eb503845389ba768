//! Counting results and writing them up: per-file and total counts, grouping failures by
//! reason (eddy's messages without names, positions and literals), and the Markdown report.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::LazyLock;

use regex::Regex;

use super::run::{Failure, Kind, Pass, one_line};

/// Words kept in grouped messages (SQL keywords); other quoted words become `_`.
const KEYWORDS: &str = "\
    SELECT FROM WHERE GROUP BY HAVING WINDOW EMIT CHANGES FINAL PARTITION INSERT INTO VALUES \
    CREATE STREAM TABLE AS WITH JOIN ON WITHIN LIMIT TYPE DROP TERMINATE DESCRIBE SHOW LIST \
    EXPLAIN STRUCT ARRAY MAP KEY PRIMARY HEADERS HEADER SOURCE OR REPLACE IF NOT EXISTS DEFINE \
    UNDEFINE ASSERT RUN SCRIPT SET UNSET DELETE TOPIC CASE WHEN THEN ELSE END CAST AND NULL \
    TRUE FALSE IN LIKE BETWEEN IS TUMBLING HOPPING SESSION SIZE ADVANCE GRACE PERIOD RETENTION \
    LEFT RIGHT FULL OUTER INNER DECIMAL BYTES DATE TIME TIMESTAMP VARCHAR STRING INT INTEGER \
    BIGINT DOUBLE BOOLEAN WINDOWSTART WINDOWEND ROWTIME ROWPARTITION ROWOFFSET ESCAPE EXTRACT \
    INTERVAL JSON RAW KAFKA DELIMITED NONE AVRO PROTOBUF";

fn pattern(p: &str) -> Regex {
    Regex::new(p).expect("a valid pattern")
}

static POSITION: LazyLock<Regex> = LazyLock::new(|| pattern(r" at line \d+, column \d+"));
/// The hints eddy appends to some messages (lists that change as eddy grows).
static HINT: LazyLock<Regex> = LazyLock::new(|| {
    pattern(r"; (?:columns here|known|built-in functions are listed|declare it first).*$")
});
static STRING_LITERAL: LazyLock<Regex> = LazyLock::new(|| pattern(r"string '[^']*'"));
static QUOTED: LazyLock<Regex> = LazyLock::new(|| pattern(r"'([^']*)'|`[^`]*`"));
/// Phrases of eddy's messages followed by a name, and messages starting with one.
static NAMED: LazyLock<Regex> = LazyLock::new(|| {
    pattern(concat!(
        r"(unknown (?:column|stream or table|function)|reading table|output column",
        r"|a pull query on|creating topic) [\w.$-]+|^[\w.$-]+ (takes|already exists)"
    ))
});
static TYPE_MISMATCH: LazyLock<Regex> =
    LazyLock::new(|| pattern(r"type mismatch: .* is (.*) but .* needs (.*)"));
static NUMBER: LazyLock<Regex> = LazyLock::new(|| pattern(r"\b\d+\b"));

/// eddy's message without positions and hints (what varies within a group).
pub fn refusal_detail(message: &str) -> String {
    let m = POSITION.replace_all(message, "");
    one_line(&HINT.replace(&m, ""))
}

/// eddy's message without names, positions and literals: what refusals are grouped by.
pub fn refusal_group(message: &str) -> String {
    let m = refusal_detail(message);
    let m = STRING_LITERAL.replace_all(&m, "string '…'");
    let m = QUOTED.replace_all(&m, |c: &regex::Captures<'_>| match c.get(1) {
        Some(w) if KEYWORDS.split_whitespace().any(|k| k.eq_ignore_ascii_case(w.as_str())) => {
            format!("'{}'", w.as_str().to_ascii_uppercase())
        }
        Some(w) if !w.as_str().chars().any(char::is_alphanumeric) => c[0].to_owned(),
        _ => "_".to_owned(),
    });
    let m = NAMED.replace_all(&m, |c: &regex::Captures<'_>| match (c.get(1), c.get(2)) {
        (Some(what), _) => format!("{} _", what.as_str()),
        (_, Some(verb)) => format!("_ {}", verb.as_str()),
        _ => String::new(),
    });
    let m = TYPE_MISMATCH.replace_all(&m, "type mismatch: _ is $1 but _ needs $2");
    NUMBER.replace_all(&m, "N").into_owned()
}

/// One case's result.
#[derive(Debug)]
pub struct CaseResult {
    pub file: String,
    pub name: String,
    pub verdict: super::run::Verdict,
    pub unchecked: Vec<&'static str>,
    pub outputs: usize,
}

/// The results of one file.
#[derive(Debug, Default)]
pub struct FileResult {
    pub passed: usize,
    pub runnable: usize,
    pub not_runnable: usize,
}

/// Everything the run found.
#[derive(Debug, Default)]
pub struct Results {
    pub files: BTreeMap<String, FileResult>,
    pub cases: Vec<CaseResult>,
    /// Why tests were not runnable, and how many.
    pub skipped: BTreeMap<String, usize>,
    pub unreadable: Vec<(String, String)>,
}

impl Results {
    pub fn totals(&self) -> FileResult {
        let mut t = FileResult::default();
        for f in self.files.values() {
            t.passed += f.passed;
            t.runnable += f.runnable;
            t.not_runnable += f.not_runnable;
        }
        t
    }

    pub fn failures(&self) -> impl Iterator<Item = (&CaseResult, &Failure)> {
        self.cases.iter().filter_map(|c| c.verdict.as_ref().err().map(|f| (c, &**f)))
    }

    fn passes(&self) -> impl Iterator<Item = (&CaseResult, &Pass)> {
        self.cases.iter().filter_map(|c| c.verdict.as_ref().ok().map(|p| (c, p)))
    }
}

/// The group a failure is counted under.
pub fn group(f: &Failure) -> String {
    match f.kind {
        Kind::Refused => refusal_group(f.eddy_error.as_deref().unwrap_or("")),
        Kind::OutputDiffers => f.group.clone().unwrap_or_default(),
        Kind::ProcessorFailed | Kind::Panic => {
            NUMBER.replace_all(&POSITION.replace_all(&f.message, ""), "N").into_owned()
        }
        Kind::NotRefused => {
            format!("ksqlDB: {}", refusal_group(f.ksql_error.as_deref().unwrap_or("")))
        }
        Kind::Timeout => String::new(),
    }
}

/// Failures by (kind, group): the count, an example and the most common particulars.
struct Group<'a> {
    count: usize,
    example: (&'a CaseResult, &'a Failure),
    details: BTreeMap<String, usize>,
}

fn groups(results: &Results) -> Vec<((Kind, String), Group<'_>)> {
    let mut groups: BTreeMap<(Kind, String), Group<'_>> = BTreeMap::new();
    for (c, f) in results.failures() {
        let g = groups.entry((f.kind, group(f))).or_insert_with(|| Group {
            count: 0,
            example: (c, f),
            details: BTreeMap::new(),
        });
        g.count += 1;
        let detail = match (f.kind, &f.eddy_error) {
            (Kind::Refused, Some(e)) => refusal_detail(e),
            _ => String::new(),
        };
        *g.details.entry(detail).or_default() += 1;
    }
    let mut list: Vec<_> = groups.into_iter().collect();
    list.sort_by(|a, b| b.1.count.cmp(&a.1.count).then_with(|| a.0.cmp(&b.0)));
    list
}

fn cell(text: &str) -> String {
    one_line(text).replace('|', "\\|")
}

fn percent(part: usize, whole: usize) -> f64 {
    if whole == 0 { 0.0 } else { 100.0 * part as f64 / whole as f64 }
}

/// The Markdown report.
pub fn markdown(results: &Results, command: &str) -> String {
    let mut out = String::new();
    let t = results.totals();
    let _ = writeln!(out, "# eddy SQL vs ksqlDB's query-validation tests\n");
    let _ = writeln!(out, "Command: `{command}`\n");
    let _ = writeln!(
        out,
        "**Total: passed {} / runnable {} ({:.1}%), not runnable {}** ({} files)\n",
        t.passed,
        t.runnable,
        percent(t.passed, t.runnable),
        t.not_runnable,
        results.files.len()
    );
    totals_section(&mut out, results);
    top_groups_section(&mut out, results, 30);
    aspects_section(&mut out, results);
    beneath_section(&mut out, results);
    refusal_details_section(&mut out, results, 15);
    files_section(&mut out, results);
    skipped_section(&mut out, results);
    all_groups_section(&mut out, results);
    expected_errors_section(&mut out, results);
    out
}

fn totals_section(out: &mut String, results: &Results) {
    let mut by_kind: BTreeMap<Kind, usize> = BTreeMap::new();
    for (_, f) in results.failures() {
        *by_kind.entry(f.kind).or_default() += 1;
    }
    let _ = writeln!(out, "## Failures by kind\n\n| kind | cases |\n|---|---|");
    for (kind, n) in &by_kind {
        let _ = writeln!(out, "| {} | {n} |", kind.label());
    }
    let passes: Vec<_> = results.passes().collect();
    let count =
        |f: &dyn Fn(&CaseResult, &Pass) -> bool| passes.iter().filter(|(c, p)| f(c, p)).count();
    let by_error = count(&|_, p| p.errors.is_some());
    let no_output = count(&|c, p| p.errors.is_none() && c.outputs == 0);
    let lenient = count(&|_, p| p.lenient);
    let post = count(&|c, _| c.unchecked.contains(&"post conditions"));
    let props = count(&|c, _| c.unchecked.contains(&"properties"));
    let headers = count(&|c, _| c.unchecked.contains(&"headers"));
    let _ = writeln!(
        out,
        "\n## What the passes rest on\n\n\
         - {by_error} passes are tests expecting an error that eddy refused (for whatever \
         reason: see the last section for both messages).\n\
         - {no_output} passes expect no output records and no error: eddy accepted the \
         statements (ksqlDB checks only `post` conditions there).\n\
         - {lenient} passes matched some number only numerically (like `1` for `1.0`).\n\
         - Not checked by this tool: `post` conditions ({post} passes have them), \
         `properties` ({props}), headers ({headers}).\n"
    );
    for (file, e) in &results.unreadable {
        let _ = writeln!(out, "- unreadable file {file}: {}", cell(e));
    }
}

fn top_groups_section(out: &mut String, results: &Results, top: usize) {
    let _ = writeln!(
        out,
        "## Top {top} failure groups\n\nRefusals are grouped by eddy's message without \
         names, positions and literals; output differences by the first way the output \
         differs (record count first, as ksqlDB checks it).\n\n\
         | # | cases | kind | group | example case | example reason |\n|---|---|---|---|---|---|"
    );
    for (i, ((kind, group), g)) in groups(results).into_iter().take(top).enumerate() {
        let (c, f) = g.example;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} › {} | {} |",
            i + 1,
            g.count,
            kind.label(),
            cell(&group),
            c.file,
            cell(&c.name),
            cell(&f.message)
        );
    }
    let _ = writeln!(out);
}

fn aspects_section(out: &mut String, results: &Results) {
    let mut counts: BTreeMap<&str, (usize, &CaseResult, &str)> = BTreeMap::new();
    for (c, f) in results.failures() {
        let mut seen: Vec<&str> = Vec::new();
        for a in &f.aspects {
            if seen.contains(&a.group.as_str()) {
                continue;
            }
            seen.push(&a.group);
            counts.entry(&a.group).or_insert((0, c, &a.detail)).0 += 1;
        }
    }
    let mut list: Vec<_> = counts.into_iter().collect();
    list.sort_by_key(|(_, (n, _, _))| std::cmp::Reverse(*n));
    let _ = writeln!(
        out,
        "## Output differences by aspect\n\nEvery way the first differing record differs \
         (key, value, timestamp, window) and the record count; a case counts once per \
         aspect.\n\n| aspect | cases | example case | example |\n|---|---|---|---|"
    );
    for (aspect, (n, c, detail)) in list {
        let _ = writeln!(out, "| {} | {n} | {} | {} |", cell(aspect), cell(&c.name), cell(detail));
    }
    let _ = writeln!(out);
}

fn beneath_section(out: &mut String, results: &Results) {
    let mut counts: BTreeMap<&str, (usize, &CaseResult)> = BTreeMap::new();
    for (c, f) in results.failures() {
        if let Some(b) = &f.beneath {
            counts.entry(b).or_insert((0, c)).0 += 1;
        }
    }
    let mut list: Vec<_> = counts.into_iter().collect();
    list.sort_by(|a, b| b.1.0.cmp(&a.1.0).then_with(|| a.0.cmp(b.0)));
    let _ = writeln!(
        out,
        "## Beneath the key columns in the value\n\nThe cases whose output differs by key \
         columns eddy also writes into the value, compared again without them (a \
         diagnostic: they still fail): what differs next.\n\n\
         | then differs | cases | example case |\n|---|---|---|"
    );
    for (group, (n, c)) in list {
        let _ = writeln!(out, "| {} | {n} | {} › {} |", cell(group), c.file, cell(&c.name));
    }
    let _ = writeln!(out);
}

fn refusal_details_section(out: &mut String, results: &Results, top: usize) {
    let _ = writeln!(
        out,
        "## Refusal groups in detail\n\nThe {top} largest refusal groups, each with its most \
         common messages (names kept, positions dropped).\n"
    );
    let refusals = groups(results).into_iter().filter(|((k, _), _)| *k == Kind::Refused);
    for ((_, group), g) in refusals.take(top) {
        let _ = writeln!(out, "- **{}** — {} cases", cell(&group), g.count);
        let mut details: Vec<_> = g.details.into_iter().collect();
        details.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        for (detail, n) in details.into_iter().take(8) {
            let _ = writeln!(out, "  - {n} × {}", cell(&detail));
        }
    }
    let _ = writeln!(out);
}

fn files_section(out: &mut String, results: &Results) {
    let _ = writeln!(
        out,
        "## Per file\n\n| file | passed | runnable | not runnable | pass % |\n|---|---|---|---|---|"
    );
    for (file, f) in &results.files {
        let pct = percent(f.passed, f.runnable);
        let _ = writeln!(
            out,
            "| {file} | {} | {} | {} | {pct:.0} |",
            f.passed, f.runnable, f.not_runnable
        );
    }
    let _ = writeln!(out);
}

fn skipped_section(out: &mut String, results: &Results) {
    let _ = writeln!(out, "## Not runnable\n\n| reason | cases |\n|---|---|");
    for (why, n) in &results.skipped {
        let _ = writeln!(out, "| {why} | {n} |");
    }
    let _ = writeln!(out);
}

fn all_groups_section(out: &mut String, results: &Results) {
    let _ = writeln!(
        out,
        "## All failure groups\n\n| cases | kind | group | example case |\n|---|---|---|---|"
    );
    for ((kind, group), g) in groups(results) {
        let (c, _) = g.example;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} › {} |",
            g.count,
            kind.label(),
            cell(&group),
            c.file,
            cell(&c.name)
        );
    }
    let _ = writeln!(out);
}

fn expected_errors_section(out: &mut String, results: &Results) {
    let mut by_group: BTreeMap<String, usize> = BTreeMap::new();
    for (_, p) in results.passes() {
        if let Some((_, eddy)) = &p.errors {
            *by_group.entry(refusal_group(eddy)).or_default() += 1;
        }
    }
    let mut by_group: Vec<_> = by_group.into_iter().collect();
    by_group.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let _ = writeln!(
        out,
        "## Tests expecting an error that eddy refused\n\nA pass here only says eddy refused \
         something: when eddy refuses for a missing feature (an unknown function, the \
         DELIMITED format), the pass says little. eddy's reasons, grouped:\n\n\
         | eddy refused with | passes |\n|---|---|"
    );
    for (group, n) in by_group {
        let _ = writeln!(out, "| {} | {n} |", cell(&group));
    }
    let _ = writeln!(out, "\nEach case, ksqlDB's and eddy's messages:\n");
    let _ = writeln!(out, "| case | ksqlDB | eddy |\n|---|---|---|");
    for (c, p) in results.passes() {
        if let Some((ksql, eddy)) = &p.errors {
            let _ = writeln!(
                out,
                "| {} › {} | {} | {} |",
                c.file,
                cell(&c.name),
                cell(ksql),
                cell(&refusal_detail(eddy))
            );
        }
    }
}
