//! The module layering of the crates with many modules, written down and checked.
//!
//! Each crate below lists its top-level modules from the bottom layer up. A module may name
//! (through `crate::x`, `super::x` reaching the crate root, or `use crate::{x, ..}`) only
//! modules listed before it, so no module imports one that imports it back. A module missing
//! from its list fails the test: a new module takes a deliberate place in the order.
//!
//! Test code is not checked: files named `tests.rs` and everything after a `#[cfg(test)]`
//! line, since tests may reach anywhere; nor are comments (doc links are not imports). Items
//! re-exported at the crate root (`crate::Broker`) count as the module that defines them.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// (crate source folder, layers bottom-up).
const CRATES: &[(&str, &[&str])] = &[
    (
        "processor/src",
        &[
            "error",
            "calendar",
            "position",
            "codec",
            "rank",
            "context",
            "state",
            "log_access",
            "input",
            "snapshot",
            "table",
            "graph",
            "aggregator",
            "ops",
            "definition",
            "recovery",
            "task",
            "processor",
            "runtime",
            "builder",
            "operators",
            "operator_api",
            "local",
            "sample",
        ],
    ),
    (
        "sql/src",
        &[
            "error",
            "lexer",
            "ast",
            "parser",
            "time",
            "functions",
            "types",
            "expr",
            "format",
            "source",
            "properties",
            "catalog",
            "row_reader",
            "codec",
            "aggregate",
            "plan",
            "stream",
            "join",
            "group",
            "compile",
            "insert",
            "materialize",
            "pull",
            "push",
        ],
    ),
    (
        "broker/src",
        &[
            "clock",
            "error",
            "files",
            "internal",
            "metrics",
            "topic",
            "topics",
            "groups",
            "security",
            "quotas",
            "config",
            "admission",
            "producer_ids",
            "transactions",
            "processors",
            "connectors",
            "sql",
            "data",
            "service",
            "guard",
            "broker",
            "wire",
            "server",
            "kafka",
        ],
    ),
    ("http/src", &["server", "app", "auth", "json", "exposition", "api", "push", "routes"]),
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of `file` relative to the crate root: `broker/src/a/b.rs` is `[a, b]`,
/// `a/mod.rs` is `[a]`, `lib.rs` is `[]`.
fn module_path(root: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(root).expect("file under root");
    let mut parts: Vec<String> =
        rel.iter().map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    if parts.first().is_some_and(|p| p == "bin") {
        parts.clear();
    }
    parts
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The first path segment of each path in `rest` (the text after `crate::` or a `super::`
/// chain): `a::b` gives `a`; a group `{a::{b, c}, d}` gives `a` and `d`, however nested.
fn first_segments(rest: &str) -> Vec<String> {
    let rest = rest.trim_start();
    let Some(group) = rest.strip_prefix('{') else {
        return vec![rest.chars().take_while(|c| is_ident(*c)).collect()];
    };
    let (mut names, mut depth, mut start) = (Vec::new(), 0usize, 0usize);
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                names.push(first_segments(&group[start..i]).remove(0));
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                names.push(first_segments(&group[start..i]).remove(0));
                start = i + 1;
            }
            _ => {}
        }
    }
    names
}

/// The crate-level modules named in `code`, by a file at `path` (its module path).
fn referenced(code: &str, path: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        if i > 0 && code[..i].ends_with(|c: char| is_ident(c) || c == '$') {
            continue; // `$crate::` in macros, `eddy_crate::` and the like
        }
        found.extend(first_segments(&code[i + "crate::".len()..]));
    }
    // `super::` chains that reach the crate root from this file's module.
    for (i, _) in code.match_indices("super::") {
        if i > 0 && code[..i].ends_with(|c: char| is_ident(c) || c == ':') {
            continue; // counted from the first `super::` of a chain
        }
        let mut rest = &code[i..];
        let mut depth = 0;
        while let Some(r) = rest.strip_prefix("super::") {
            depth += 1;
            rest = r;
        }
        if depth == path.len() {
            found.extend(first_segments(rest));
        }
    }
    found.retain(|n| !n.is_empty() && n != "self" && n != "super" && n != "crate");
    found
}

/// The items the crate root re-exports (`pub use module::{A, B};`, `pub(crate) use ...`, over
/// several lines or one, in lib.rs), by the module that defines them, so `crate::A` counts as
/// naming that module.
fn reexports(root: &Path) -> BTreeMap<String, String> {
    let lib = without_tests(&fs::read_to_string(root.join("lib.rs")).unwrap_or_default());
    let mut out = BTreeMap::new();
    for statement in lib.split(';') {
        let statement = statement.trim();
        let Some(at) = statement.find("use ") else { continue };
        if !statement[..at].trim_start().starts_with("pub") {
            continue;
        }
        let path = statement[at + "use ".len()..].trim().trim_start_matches("crate::");
        let Some((module, items)) = path.split_once("::") else { continue };
        let items = items.trim().trim_start_matches('{').trim_end_matches('}');
        for item in items.split(',') {
            let item = item.split(" as ").last().unwrap_or_default();
            let name = item.rsplit("::").next().unwrap_or_default().trim();
            if !name.is_empty() {
                out.insert(name.to_string(), module.to_string());
            }
        }
    }
    out
}

/// The next item after byte `from` of `code`: to its `;` or to the brace that closes it.
fn item_end(code: &str, from: usize) -> usize {
    let mut depth = 0usize;
    for (i, c) in code[from..].char_indices() {
        match c {
            ';' if depth == 0 => return from + i + 1,
            '{' => depth += 1,
            '}' if depth <= 1 => return from + i + 1,
            '}' => depth -= 1,
            _ => {}
        }
    }
    code.len()
}

/// `code` without comment lines (doc links name items anywhere; they are not imports) and
/// without the items marked `#[cfg(test)]` (tests may reach anywhere).
fn without_tests(code: &str) -> String {
    let mut code: String =
        code.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
    while let Some(at) = code.find("#[cfg(test)]") {
        let end = item_end(&code, at + "#[cfg(test)]".len());
        code.replace_range(at..end, "");
    }
    code
}

#[test]
fn modules_only_name_modules_below_them() {
    let mut problems = Vec::new();
    for (dir, layers) in CRATES {
        let root = workspace().join(dir);
        let rank: BTreeMap<&str, usize> = layers.iter().enumerate().map(|(i, m)| (*m, i)).collect();
        let reexported = reexports(&root);
        let mut files = Vec::new();
        rust_files(&root, &mut files);
        files.sort();
        for file in files {
            if file.file_name().is_some_and(|n| n == "tests.rs") {
                continue;
            }
            let path = module_path(&root, &file);
            let Some(top) = path.first() else { continue };
            let Some(&own) = rank.get(top.as_str()) else {
                problems.push(format!("{dir}: module `{top}` is not in the layering list"));
                continue;
            };
            let code = fs::read_to_string(&file).expect("read source");
            for name in referenced(&without_tests(&code), &path) {
                let name = reexported.get(&name).cloned().unwrap_or(name);
                if name == *top {
                    continue;
                }
                match rank.get(name.as_str()) {
                    Some(&other) if other < own => {}
                    Some(_) => problems.push(format!(
                        "{}: `{top}` names `{name}`, which is not below it",
                        file.strip_prefix(workspace()).unwrap_or(&file).display()
                    )),
                    // Macros and items of the root itself.
                    None => {}
                }
            }
        }
    }
    assert!(problems.is_empty(), "layering broken:\n{}", problems.join("\n"));
}

#[test]
fn the_scanner_finds_every_form_of_reference() {
    let m = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let code = "use crate::a::X;\nuse crate::{b::Y, c};\nfn f() { super::d::g(); $crate::e; }";
    assert_eq!(referenced(code, &m(&["m"])), ["a", "b", "c", "d"]);
    assert_eq!(referenced("use crate::{p::{A, B}, q::D};", &m(&["m"])), ["p", "q"]);
    assert_eq!(referenced("use super::super::{q::R, s};", &m(&["m", "n"])), ["q", "s"]);
    assert!(referenced("super::q::r()", &m(&["m", "n"])).is_empty());
    // Comments and test items are not imports; what follows a test module is.
    let code = "/// see [`X`](crate::x::X)\n#[cfg(test)]\nmod tests;\n#[cfg(test)]\nmod t {\n    use crate::y::Y;\n    fn f() { }\n}\nuse crate::z::Z;";
    assert_eq!(referenced(&without_tests(code), &m(&["m"])), ["z"]);
}

#[test]
fn re_exports_over_several_lines_count_as_their_module() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lib = "pub use broker::Broker;\npub(crate) use inner::{\n    Inner,\n    Other as Renamed,\n};\npub use crate::topics::{MAX, Topic};\nuse private::Hidden;";
    fs::write(dir.path().join("lib.rs"), lib).expect("write lib.rs");
    let found = reexports(dir.path());
    let pairs: Vec<(&str, &str)> = found.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        pairs,
        [
            ("Broker", "broker"),
            ("Inner", "inner"),
            ("MAX", "topics"),
            ("Renamed", "inner"),
            ("Topic", "topics"),
        ]
    );
}
