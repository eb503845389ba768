//! Disk-full test: a child process appends under a file size limit (`RLIMIT_FSIZE`, which makes
//! writes fail with EFBIG just as a full disk fails them with ENOSPC) until an append fails. The
//! failure must be `Error::NoSpace`, must leave no partial batch behind, and must not stop the
//! log: once the limit is lifted the same process appends again. Then the log is reopened here
//! and must hold exactly the acknowledged batches.

use std::path::Path;
use std::time::Duration;

use eddy_storage::Log;
use eddy_tests::check::{check_exactly, read_whole_log};
use eddy_tests::child::{Ack, ChildLine, ChildProcess, deadline_in};
use eddy_tests::generate::{batch_for_seed, batch_seed};
use eddy_tests::{DISKFULL_APPENDS_AFTER, DISKFULL_SEED, diskfull_config};

const LIMIT_BYTES: u64 = 200 << 10;
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn append_past_the_file_size_limit_fails_cleanly_and_the_log_recovers() {
    let dir = tempfile::tempdir().expect("create temp dir");
    let mut child = ChildProcess::spawn(
        Path::new(env!("CARGO_BIN_EXE_eddy-log-child")),
        ["diskfull".as_ref(), dir.path().as_os_str(), LIMIT_BYTES.to_string().as_ref()],
    )
    .expect("spawn child");
    let lines = child.remaining_lines(deadline_in(CHILD_TIMEOUT)).expect("child output");
    let status = child.wait().expect("wait for child");
    let stderr = child.stderr();
    assert!(status.success(), "child failed ({status}); output {lines:#?}; stderr:\n{stderr}");

    // Acks, one `nospace`, acks.
    let mut before = Vec::new();
    let mut after = Vec::new();
    let mut nospace = Vec::new();
    for line in &lines {
        match ChildLine::parse(line) {
            ChildLine::Ack(ack) if nospace.is_empty() => before.push(ack),
            ChildLine::Ack(ack) => after.push(ack),
            ChildLine::NoSpace(text) => nospace.push(text),
            other => panic!("unexpected line from the child: {other:?}; stderr:\n{stderr}"),
        }
    }
    assert_eq!(nospace.len(), 1, "nospace lines: {nospace:?}");
    assert!(nospace[0].contains("no space"), "the error does not say so: {:?}", nospace[0]);
    assert!(!before.is_empty(), "nothing was appended before the limit");
    assert_eq!(after.len() as u64, DISKFULL_APPENDS_AFTER, "acks after lifting the limit");

    // The child wrote its stream in order, retrying the batch that failed first.
    let acks: Vec<Ack> = before.iter().chain(&after).copied().collect();
    for (index, ack) in acks.iter().enumerate() {
        assert_eq!(ack.seed, batch_seed(DISKFULL_SEED, index as u64), "ack {index}");
    }
    // It failed exactly when the next batch no longer fit under the limit.
    let fitted: u64 = before.iter().map(|a| batch_for_seed(a.seed).len() as u64).sum();
    let failed = batch_for_seed(after[0].seed).len() as u64;
    assert!(
        fitted <= LIMIT_BYTES && fitted + failed > LIMIT_BYTES,
        "{fitted} bytes fitted and a {failed}-byte batch failed under a {LIMIT_BYTES}-byte limit"
    );

    // Reopened without a limit: no torn tail to cut, exactly the acknowledged batches.
    let log = Log::open(dir.path(), diskfull_config()).expect("reopen");
    assert_eq!(log.stats().recovery_truncated_bytes, 0, "recovery found a partial batch");
    let batches = read_whole_log(&log).unwrap_or_else(|e| panic!("{e}"));
    check_exactly(&batches, &acks).unwrap_or_else(|e| panic!("{e}"));
    let end = acks.last().map_or(0, |a| a.last_offset + 1);
    assert_eq!(log.next_offset(), end);
    let on_disk: u64 = batches.iter().map(|b| b.bytes.len() as u64).sum();
    assert_eq!(log.size_bytes(), on_disk);

    // And it takes more.
    let seed = batch_seed(DISKFULL_SEED, acks.len() as u64);
    let info = log.append(&batch_for_seed(seed)).expect("append after reopen");
    assert_eq!(info.base_offset, end);
    let mut acks = acks;
    acks.push(Ack { base_offset: info.base_offset, last_offset: info.last_offset, seed });
    let batches = read_whole_log(&log).unwrap_or_else(|e| panic!("{e}"));
    check_exactly(&batches, &acks).unwrap_or_else(|e| panic!("{e}"));
    log.close().expect("close");
}
