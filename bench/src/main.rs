//! eddy-bench: every performance figure eddy claims comes from here.
//!
//! Each workload measures eddy and, in the same run and on the same bytes, a physical baseline
//! (raw sequential write/read of a file), and prints the ratio between them. Results go to
//! stdout as a table and to a JSON file for `docs/benchmarks.md`.
//!
//! ```text
//! cargo run --release -p eddy-bench -- <workload> [--records N] [--record-bytes B] [--batch R]
//!     [--runs K] [--threads T] [--acks written|durable|none] [--rate R] [--api record|batch]
//!     [--idempotent true|false] [--batches 1,10,...] [--partitions P] [--dir DIR] [--json FILE]
//!     [--only rust|sql] [--shapes 1000000x100,300000x1024] [--broker PATH]
//!     [--server thread|process] [--consume true|false] [--attempts N]
//! cargo run --release -p eddy-bench -- plot [DIR]       (default DIR: docs/bench)
//! cargo run --release -p eddy-bench -- machine [DIR]    (DIR: where the data goes; default /tmp)
//!
//! storage       append and sequential read of one log, against raw write/read
//! group-commit  T appenders under flush=always, against write+fdatasync per batch
//! produce       produce then consume through the client, TCP against embedded; with
//!               --server process, to a child `eddy serve` against a loopback TCP copy
//! consume       consume from the page cache and after dropping it, TCP and embedded, against
//!               a raw read of the segment files (cold rows skipped where the cache cannot be
//!               dropped)
//! batch-sweep   produce throughput with --batches records per send_batch, TCP and embedded
//! memory        resident memory of a child `eddy serve` while --records of 1 KiB (default
//!               5.12 GB) are produced to it
//! rolls         produce latency of a child `eddy serve` across three 1 GiB segment rolls, at
//!               --rate records/s (default 32,000,000 of 100 B at 1,000,000/s)
//! e2e           publish-to-receive latency at --rate records/s, both transports
//! recovery      Log::open time with 10, 100, 1000 sealed segments, after a clean stop and kill -9;
//!               and of a 1 GiB active segment with its recovery point 10 MB from the end,
//!               against the same files without the checkpoint
//! groups        consumer group throughput with 1, 2, 4 members, against one plain consumer
//! rebalance     time from a member leaving (or dying) to every partition owned again
//! processor     per-URL count of an access log: embedded and deployed to the server, 1 and 2
//!               partitions, against reading the input
//! replay        rebuild of the per-URL count from --records lines (default 10,000,000) in the
//!               server, deploy and replay, against awk '{print $7}' | sort | uniq -c
//! query         pull-query latency (get, top 10) on a live table while lines arrive at --rate
//! sql           one aggregation in SQL and with the Rust API, replayed from the same log
//! producers     acks=durable from --threads producers against one (group commit via the broker)
//! format        serving stored batches as they are against transcoding each (decode every
//!               record, encode it again, checksum; lz4 also decompressed and recompressed)
//! kafka         produce and consume of --shapes (RECORDSxBYTES,...) through librdkafka over the
//!               Kafka listener against eddy's client over the native one (needs the `kafka`
//!               feature: `cargo run --release -p eddy-bench --features kafka -- kafka`)
//! cdc           PostgreSQL CDC into eddy: changes/s from commit to durable (catch-up and live)
//!               beside PostgreSQL's own commit rate, and commit → pull query latency, against
//!               a PostgreSQL it starts (fsync on) and a child `eddy serve`
//! crash-sim     the crash-state checker as a soak: `--seeds N` seeded workloads on a simulated
//!               disk that loses power, every image reopened and checked (docs/durability.md)
//! cluster-replay  the per-URL count rebuilt from --records lines by 1, 2 and 3 eddy-cluster
//!               instances over the Kafka listener, against the same rebuild in the broker
//!               (needs the `kafka` feature)
//! quota         a producer's throughput alone, beside a producer held to a byte-rate quota
//!               (--rate bytes/s), and beside the same producer without one (child eddy serve)
//! auth-flood    a normal client's produce latency (p50, p99, p99.9) against a child `eddy serve`
//!               with authentication on, quiet and under --attempts (10,000) wrong-password
//!               attempts from --threads (64) connections at once, in the same run
//! conn-flood    a normal client's whole session (connect, authenticate, produce one record)
//!               on the native, Kafka and HTTP listeners, quiet and while --idle (5,000) idle
//!               and --half-open (1,000) half-open connections flood each listener
//! plot          the SVG plots of docs/benchmarks.md from the JSON results in DIR
//! machine       the machine section of docs/benchmarks.md (Markdown)
//! ```
//!
//! `bench/run-all` builds once and runs every workload with the commands of the doc.
#![allow(clippy::print_stdout)]

mod auth_flood;
mod baseline;
mod cdc;
#[cfg(feature = "kafka")]
mod cluster_replay;
mod conn_flood;
mod consume;
mod crashsim;
mod format;
mod groups;
#[cfg(feature = "kafka")]
mod kafka;
mod machine;
mod memory;
mod net;
mod plot;
mod processor;
mod producers;
mod query;
mod quota;
mod recovery;
mod replay;
mod report;
mod rolls;
mod sql;
mod storage;
mod svg;
mod sweep;
mod windows;
mod workload;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

const WORKLOADS: &str = "storage, group-commit, produce, consume, batch-sweep, memory, rolls, e2e, \
                         recovery, groups, rebalance, processor, windows, replay, query, sql, producers, format, kafka, \
                         cdc, crash-sim, cluster-replay, quota, auth-flood, conn-flood, \
                         plot, machine";

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(workload) = args.next() else {
        bail!("usage: eddy-bench <workload> [options]\nworkloads: {WORKLOADS}");
    };
    if workload == "recovery-fill" {
        // The writer child of the recovery workload (not for direct use).
        let (dir, segments) = (args.next().context("dir")?, args.next().context("segments")?);
        return recovery::run_fill_child(&dir, &segments);
    }
    if workload == "recovery-fill-active" {
        // The writer child of the recovery workload's recovery-point case (not for direct use).
        return recovery::run_fill_active_child(&args.next().context("dir")?);
    }
    if workload == "crash-sim" {
        return crashsim::run(args);
    }
    if workload == "plot" {
        let dir = args.next().map_or_else(|| PathBuf::from("docs/bench"), PathBuf::from);
        return plot::run(&dir);
    }
    if workload == "machine" {
        let dir = args.next().map_or_else(std::env::temp_dir, PathBuf::from);
        let rustc = std::process::Command::new("rustc").arg("-V").output().ok();
        let rustc = rustc.map_or("rustc (unknown)".into(), |o| {
            String::from_utf8_lossy(&o.stdout).trim().to_string()
        });
        println!("{}", machine::Machine::detect(&dir).markdown(&rustc));
        return Ok(());
    }
    let opts = workload::Options::parse(&workload, args).context("bad options")?;
    let results = match workload.as_str() {
        "storage" => storage::run(&opts)?,
        "format" => format::run(&opts)?,
        "group-commit" => storage::run_group_commit(&opts)?,
        "produce" if opts.server == "process" => net::run_produce_process(&opts)?,
        "produce" => net::run_produce_consume(&opts)?,
        "consume" => consume::run(&opts)?,
        "batch-sweep" => sweep::run(&opts)?,
        "memory" => memory::run(&opts)?,
        "rolls" => rolls::run(&opts)?,
        "e2e" => net::run_e2e(&opts)?,
        "recovery" => recovery::run(&opts)?,
        "groups" => groups::run_throughput(&opts)?,
        "rebalance" => groups::run_rebalance(&opts)?,
        "processor" => processor::run(&opts)?,
        "windows" => windows::run(&opts)?,
        "replay" => replay::run(&opts)?,
        "query" => query::run(&opts)?,
        "sql" => sql::run(&opts)?,
        "producers" => producers::run(&opts)?,
        "cdc" => cdc::run(&opts)?,
        "quota" => quota::run(&opts)?,
        "auth-flood" => auth_flood::run(&opts)?,
        "conn-flood" => conn_flood::run(&opts)?,
        #[cfg(feature = "kafka")]
        "kafka" => kafka::run(&opts)?,
        #[cfg(feature = "kafka")]
        "cluster-replay" => cluster_replay::run(&opts)?,
        #[cfg(not(feature = "kafka"))]
        "cluster-replay" => bail!(
            "the cluster-replay workload runs eddy-cluster (librdkafka), built only with the \
             kafka feature: cargo run --release -p eddy-bench --features kafka -- cluster-replay"
        ),
        #[cfg(not(feature = "kafka"))]
        "kafka" => bail!(
            "the kafka workload runs librdkafka, built only with the kafka feature: \
             cargo run --release -p eddy-bench --features kafka -- kafka"
        ),
        other => bail!("unknown workload {other:?} (try: {WORKLOADS})"),
    };
    report::print(&results);
    if let Some(path) = &opts.json {
        report::write_json(path, &workload, &opts, &results)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
