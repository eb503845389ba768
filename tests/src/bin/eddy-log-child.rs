//! The process the end-to-end tests crash and starve. Modes:
//!
//! - `append DIR SEED`: appends the batches of stream `SEED` (see `eddy_tests::generate`) to the
//!   log in `DIR` forever, fsyncing each, and prints `ack <base> <last> <seed>` after each
//!   append returns. The crash test kills it at a random point.
//! - `diskfull DIR LIMIT_BYTES [SEED]`: appends under a file size limit (`RLIMIT_FSIZE`) until
//!   an append fails, which must be with `Error::NoSpace` (printed as `nospace <error>`); checks
//!   the log in-process, lifts the limit, appends `DISKFULL_APPENDS_AFTER` more batches (the
//!   first is the retry of the failed one) and exits 0.
//!
//! On any unexpected failure it prints `error <error>` and exits 1 (`append`) or 2
//! (`diskfull`). Log messages from the storage crate go to stderr (`RUST_LOG`, default `warn`).

use std::io::{self, StdoutLock, Write};
use std::path::Path;

use anyhow::{Context, bail, ensure};
use eddy_storage::{Error, Log};
use eddy_tests::check::{check_exactly, read_whole_log};
use eddy_tests::child::Ack;
use eddy_tests::generate::{batch_for_seed, batch_seed};
use eddy_tests::{DISKFULL_APPENDS_AFTER, DISKFULL_SEED, crash_config, diskfull_config};

const USAGE: &str = "usage: eddy-log-child append DIR SEED | diskfull DIR LIMIT_BYTES [SEED]";

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(io::stderr)
        .with_ansi(false)
        .init();

    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut out = io::stdout().lock();
    let (outcome, exit_code) = match args.as_slice() {
        [mode, dir, seed] if mode == "append" => {
            (parse_u64(seed).and_then(|seed| append(Path::new(dir), seed, &mut out)), 1)
        }
        [mode, dir, limit, seed @ ..] if mode == "diskfull" && seed.len() <= 1 => {
            let seed = seed.first().map_or(Ok(DISKFULL_SEED), |s| parse_u64(s));
            let outcome = parse_u64(limit)
                .and_then(|limit| Ok((limit, seed?)))
                .and_then(|(limit, seed)| diskfull(Path::new(dir), limit, seed, &mut out));
            (outcome, 2)
        }
        _ => bail!(USAGE),
    };
    if let Err(e) = outcome {
        // The parent reads this line; if stdout is gone there is no one left to tell.
        let _ = writeln!(out, "error {e:#}").and_then(|()| out.flush());
        std::process::exit(exit_code);
    }
    Ok(())
}

fn parse_u64(text: &str) -> anyhow::Result<u64> {
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.with_context(|| format!("not a number: {text:?}"))
}

/// Prints one protocol line and pushes it to the parent at once.
fn report(out: &mut StdoutLock<'_>, line: &dyn std::fmt::Display) -> anyhow::Result<()> {
    writeln!(out, "{line}").context("write to stdout")?;
    out.flush().context("flush stdout")
}

fn append(dir: &Path, stream_seed: u64, out: &mut StdoutLock<'_>) -> anyhow::Result<()> {
    let log = Log::open(dir, crash_config()).context("open log")?;
    for index in 0u64.. {
        let seed = batch_seed(stream_seed, index);
        let info = log
            .append(&batch_for_seed(seed))
            .with_context(|| format!("append batch {index} (seed {seed})"))?;
        report(out, &Ack { base_offset: info.base_offset, last_offset: info.last_offset, seed })?;
    }
    Ok(())
}

fn diskfull(
    dir: &Path,
    limit: u64,
    stream_seed: u64,
    out: &mut StdoutLock<'_>,
) -> anyhow::Result<()> {
    ignore_sigxfsz()?;
    let original = file_size_limit()?;
    set_file_size_limit(libc::rlimit { rlim_cur: limit, ..original })?;

    let log = Log::open(dir, diskfull_config()).context("open log")?;
    let mut acks = Vec::new();
    let mut index = 0u64;
    // Far more batches than fit: the limit must stop the loop long before this does.
    let give_up = limit / 61 + 1;
    let nospace = loop {
        ensure!(index < give_up, "{index} appends succeeded under a limit of {limit} bytes");
        let seed = batch_seed(stream_seed, index);
        match log.append(&batch_for_seed(seed)) {
            Ok(info) => {
                let ack =
                    Ack { base_offset: info.base_offset, last_offset: info.last_offset, seed };
                report(out, &ack)?;
                acks.push(ack);
                index += 1;
            }
            Err(e @ Error::NoSpace { .. }) => break e,
            Err(e) => return Err(e).with_context(|| format!("append batch {index} (seed {seed})")),
        }
    };
    report(out, &format_args!("nospace {nospace}"))?;
    ensure!(!acks.is_empty(), "the first append already failed: the limit {limit} is too small");

    // The failed append left the log as it was.
    check_log(&log, &acks).context("after the failed append")?;
    let on_disk = segment_bytes_on_disk(dir)?;
    let stored = log.size_bytes();
    ensure!(
        on_disk == stored,
        "segment files hold {on_disk} bytes after the failed append, the log's batches {stored}"
    );
    // And it is not poisoned: with the limit still in place the same append fails the same way.
    match log.append(&batch_for_seed(batch_seed(stream_seed, index))) {
        Err(Error::NoSpace { .. }) => {}
        Err(e) => return Err(e).context("second append under the limit"),
        Ok(info) => bail!("second append under the limit succeeded: {info:?}"),
    }
    check_log(&log, &acks).context("after the second failed append")?;

    set_file_size_limit(original)?;
    for _ in 0..DISKFULL_APPENDS_AFTER {
        let seed = batch_seed(stream_seed, index);
        let info = log.append(&batch_for_seed(seed)).with_context(|| {
            format!("append batch {index} (seed {seed}) after lifting the limit")
        })?;
        let ack = Ack { base_offset: info.base_offset, last_offset: info.last_offset, seed };
        report(out, &ack)?;
        acks.push(ack);
        index += 1;
    }
    check_log(&log, &acks).context("after lifting the limit")?;
    log.close().context("close log")?;
    Ok(())
}

/// The log holds exactly `acks`, and ends right after the last.
fn check_log(log: &Log, acks: &[Ack]) -> anyhow::Result<()> {
    let batches = read_whole_log(log)?;
    check_exactly(&batches, acks)?;
    let end = acks.last().map_or(0, |a| a.last_offset + 1);
    ensure!(log.next_offset() == end, "next_offset {} after acks up to {end}", log.next_offset());
    Ok(())
}

/// Total size of the `.log` files in `dir`.
fn segment_bytes_on_disk(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).context("list log directory")? {
        let entry = entry.context("list log directory")?;
        if entry.path().extension().is_some_and(|e| e == "log") {
            total += entry.metadata().context("stat segment")?.len();
        }
    }
    Ok(total)
}

/// Makes writes past `RLIMIT_FSIZE` fail with EFBIG instead of killing the process.
fn ignore_sigxfsz() -> anyhow::Result<()> {
    #[allow(unsafe_code)]
    // SAFETY: installs SIG_IGN, no handler code runs; nothing else in this process touches
    // SIGXFSZ's disposition.
    let previous = unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    ensure!(previous != libc::SIG_ERR, "signal(SIGXFSZ, SIG_IGN): {}", io::Error::last_os_error());
    Ok(())
}

fn file_size_limit() -> anyhow::Result<libc::rlimit> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    #[allow(unsafe_code)]
    // SAFETY: `limit` is a valid, writable rlimit for the duration of the call.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, &mut limit) };
    ensure!(rc == 0, "getrlimit(RLIMIT_FSIZE): {}", io::Error::last_os_error());
    Ok(limit)
}

fn set_file_size_limit(limit: libc::rlimit) -> anyhow::Result<()> {
    #[allow(unsafe_code)]
    // SAFETY: `limit` is a valid rlimit that outlives the call, which only reads it.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &limit) };
    ensure!(
        rc == 0,
        "setrlimit(RLIMIT_FSIZE, {} / {}): {}",
        limit.rlim_cur,
        limit.rlim_max,
        io::Error::last_os_error()
    );
    Ok(())
}
