//! eddy-bench: every performance figure eddy claims comes from here.
//!
//! Each workload measures eddy and, in the same run and on the same bytes, a physical baseline
//! (raw sequential write/read of a file), and prints the ratio between them. Results go to
//! stdout as a table and to a JSON file for `docs/benchmarks.md`.
//!
//! ```text
//! cargo run --release -p eddy-bench -- storage [--records N] [--record-bytes B] [--batch R]
//!                                              [--runs K] [--dir DIR] [--json FILE]
//! ```
#![allow(clippy::print_stdout)]

mod baseline;
mod machine;
mod report;
mod storage;
mod workload;

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(workload) = args.next() else {
        bail!("usage: eddy-bench <workload> [options]\nworkloads: storage, group-commit");
    };
    let opts = workload::Options::parse(args).context("bad options")?;
    let results = match workload.as_str() {
        "storage" => storage::run(&opts)?,
        "group-commit" => storage::run_group_commit(&opts)?,
        other => bail!("unknown workload {other:?} (try: storage, group-commit)"),
    };
    report::print(&results);
    if let Some(path) = &opts.json {
        report::write_json(path, &workload, &opts, &results)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
