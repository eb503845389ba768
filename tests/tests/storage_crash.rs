//! Crash test: a child process appends fsynced batches and is killed with SIGKILL after a random
//! number of acknowledgements, over and over on the same directory. After every kill the log is
//! reopened here and must hold every acknowledged batch, byte for byte, at its acknowledged
//! offsets; offsets must run from 0 without a gap or a repeat; and nothing may be there that the
//! child did not write — at most the one batch it was appending when it died.
//!
//! The run is a function of one seed, printed at the start; `EDDY_CRASH_SEED=<seed>` replays
//! it, `EDDY_CRASH_CYCLES=<n>` changes the number of kills.

use std::path::Path;
use std::time::Duration;

use eddy_storage::Log;
use eddy_tests::check::read_whole_log;
use eddy_tests::child::{Ack, ChildLine, ChildProcess, deadline_in};
use eddy_tests::crash_config;
use eddy_tests::env_u64;
use eddy_tests::generate::{Rng, batch_for_seed, batch_seed, decode, records_for_seed, same_batch};

const DEFAULT_SEED: u64 = 0x5eed_c4a5_4000_0001;
const DEFAULT_CYCLES: u64 = 60;
/// The child is killed after 0 to this many (exclusive) acknowledgements.
const MAX_ACKS_BEFORE_KILL: u64 = 40;
/// Longest wait for one line from the child, or for its output to end once it is killed.
const CHILD_TIMEOUT: Duration = Duration::from_secs(30);

/// A batch the log must hold, at a known place.
#[derive(Debug)]
struct Expected {
    base_offset: u64,
    last_offset: u64,
    seed: u64,
    bytes: Vec<u8>,
}

/// What one cycle (one child's life) left behind.
#[derive(Debug, Default)]
struct Totals {
    acked: u64,
    unacked_kept: u64,
    /// Reopens that cut a torn tail off the active segment.
    torn_tails: u64,
    batches: u64,
}

#[test]
fn sigkilled_appender_never_loses_an_acknowledged_batch() {
    let base_seed = env_u64("EDDY_CRASH_SEED").unwrap_or(DEFAULT_SEED);
    let cycles = env_u64("EDDY_CRASH_CYCLES").unwrap_or(DEFAULT_CYCLES);
    eprintln!(
        "storage_crash: seed {base_seed:#x}, {cycles} cycles (replay with EDDY_CRASH_SEED={base_seed:#x})"
    );
    let dir = tempfile::tempdir().expect("create temp dir");
    let mut rng = Rng::new(base_seed);
    let mut model: Vec<Expected> = Vec::new();
    let mut totals = Totals::default();
    for cycle in 0..cycles {
        let stream_seed = rng.next_u64();
        let kill_after = rng.below(MAX_ACKS_BEFORE_KILL);
        let context = format!(
            "seed {base_seed:#x} (EDDY_CRASH_SEED), cycle {cycle}, stream seed {stream_seed:#x}, \
             kill after {kill_after} acks"
        );
        let acks = run_and_kill(dir.path(), stream_seed, kill_after, &context);
        verify_after_crash(dir.path(), &mut model, stream_seed, &acks, &mut totals, &context);
    }

    let log = Log::open(dir.path(), crash_config()).expect("final open");
    let segments = log.segment_count();
    eprintln!(
        "storage_crash: {cycles} kills, {} batches acknowledged, {} unacknowledged kept, \
         {} torn tails cut, {} batches / {} offsets / {segments} segments in the log",
        totals.acked,
        totals.unacked_kept,
        totals.torn_tails,
        totals.batches,
        log.next_offset()
    );
    // The test is only worth something if the child got to work and the log rolled under it.
    if cycles >= DEFAULT_CYCLES {
        assert!(totals.acked >= cycles, "too few acknowledged batches: {totals:?}");
        assert!(segments > 4, "the log rarely rolled: {segments} segments");
    }
    log.close().expect("close");
}

/// Runs the child on `dir` for `kill_after` acknowledgements, kills it, and returns every
/// acknowledgement it printed (including any that were still in the pipe at the kill).
fn run_and_kill(dir: &Path, stream_seed: u64, kill_after: u64, context: &str) -> Vec<Ack> {
    let mut child = ChildProcess::spawn(
        Path::new(env!("CARGO_BIN_EXE_eddy-log-child")),
        ["append".as_ref(), dir.as_os_str(), stream_seed.to_string().as_ref()],
    )
    .unwrap_or_else(|e| panic!("{context}: spawn child: {e}"));
    let mut lines = Vec::new();
    let mut acked = 0u64;
    while acked < kill_after {
        match child.next_line(deadline_in(CHILD_TIMEOUT)) {
            Ok(Some(line)) => {
                acked += u64::from(matches!(ChildLine::parse(&line), ChildLine::Ack(_)));
                lines.push(line);
            }
            Ok(None) => {
                let status = child.wait();
                panic!(
                    "{context}: child exited ({status:?}) after {acked} acks; output {lines:?}; \
                     stderr:\n{}",
                    child.stderr()
                )
            }
            Err(e) => panic!("{context}: {e}; output {lines:?}"),
        }
    }
    child.kill().unwrap_or_else(|e| panic!("{context}: kill child: {e}"));
    match child.remaining_lines(deadline_in(CHILD_TIMEOUT)) {
        Ok(rest) => lines.extend(rest),
        Err(e) => panic!("{context}: reading the output of the killed child: {e}"),
    }
    let stderr = child.stderr();
    lines
        .iter()
        .map(|line| match ChildLine::parse(line) {
            ChildLine::Ack(ack) => ack,
            other => panic!("{context}: child said {other:?}; stderr:\n{stderr}"),
        })
        .collect()
}

/// Reopens the log after a kill and checks it against everything known: the batches of earlier
/// cycles (`model`), then this cycle's stream — its acknowledged batches and at most one more.
/// Adds what this cycle left to `model`.
fn verify_after_crash(
    dir: &Path,
    model: &mut Vec<Expected>,
    stream_seed: u64,
    acks: &[Ack],
    totals: &mut Totals,
    context: &str,
) {
    let log = Log::open(dir, crash_config())
        .unwrap_or_else(|e| panic!("{context}: reopen after kill: {e}"));
    // Offsets contiguous from 0 to next_offset, every batch passing its checksums.
    let stored = read_whole_log(&log).unwrap_or_else(|e| panic!("{context}: {e}"));

    // Everything from earlier cycles is still there, unchanged.
    assert!(
        stored.len() >= model.len(),
        "{context}: log holds {} batches, earlier cycles left {}",
        stored.len(),
        model.len()
    );
    for (got, want) in stored.iter().zip(model.iter()) {
        assert!(
            got.base_offset == want.base_offset
                && got.last_offset == want.last_offset
                && same_batch(&got.bytes, &want.bytes),
            "{context}: batch of seed {} at [{}, {}] changed: now [{}, {}], {} bytes",
            want.seed,
            want.base_offset,
            want.last_offset,
            got.base_offset,
            got.last_offset,
            got.bytes.len()
        );
    }

    // Then this child's batches, in its order: all it acknowledged, and perhaps the one it was
    // writing when it died.
    let new = &stored[model.len()..];
    assert!(
        new.len() == acks.len() || new.len() == acks.len() + 1,
        "{context}: the child acknowledged {} batches, the log gained {}",
        acks.len(),
        new.len()
    );
    for (index, got) in new.iter().enumerate() {
        let seed = batch_seed(stream_seed, index as u64);
        let bytes = batch_for_seed(seed);
        assert!(
            same_batch(&got.bytes, &bytes),
            "{context}: batch {index} of the stream (seed {seed}) at [{}, {}] is not what the \
             child wrote",
            got.base_offset,
            got.last_offset
        );
        assert_eq!(
            decode(&got.bytes).map_err(|e| e.to_string()),
            Ok(records_for_seed(seed)),
            "{context}: batch {index} decodes to other records"
        );
        if let Some(ack) = acks.get(index) {
            let stored_as =
                Ack { base_offset: got.base_offset, last_offset: got.last_offset, seed };
            assert_eq!(*ack, stored_as, "{context}: acknowledged batch {index} is elsewhere");
        }
        model.push(Expected {
            base_offset: got.base_offset,
            last_offset: got.last_offset,
            seed,
            bytes,
        });
    }
    let end = model.last().map_or(0, |b| b.last_offset + 1);
    assert_eq!(log.next_offset(), end, "{context}: next_offset");

    totals.acked += acks.len() as u64;
    totals.unacked_kept += (new.len() - acks.len()) as u64;
    totals.torn_tails += u64::from(log.stats().recovery_truncated_bytes > 0);
    totals.batches = model.len() as u64;
    log.close().unwrap_or_else(|e| panic!("{context}: close: {e}"));
}
