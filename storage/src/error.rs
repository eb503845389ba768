//! The storage error type. Every failure a caller can meet has its own variant with the facts
//! needed to act on it (file, position, offsets); none carries a free-form string.

use std::io;
use std::path::PathBuf;

use crate::batch::BatchError;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in a log operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O call failed for a reason other than running out of space.
    #[error("failed to {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The disk (or the process's file size limit) is full. Nothing was appended; the log is
    /// unchanged and accepts appends again once space returns.
    #[error("no space to {op} {path}: {source}")]
    NoSpace {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Another process (or another `Log` in this one) has the directory open.
    #[error("log directory {path} is locked by another process or handle")]
    Locked { path: PathBuf },
    /// A stored batch failed its checks. Reads stop before it; nothing past it is served
    /// silently.
    #[error("corrupt batch in {path} at byte {position}: {fault}")]
    Corrupt { path: PathBuf, position: u64, fault: BatchError },
    /// A batch handed to `append` is malformed.
    #[error("invalid batch: {0}")]
    InvalidBatch(#[from] BatchError),
    /// A batch handed to `append` is larger than the log accepts.
    #[error("batch of {size} bytes exceeds the limit of {max} bytes")]
    BatchTooLarge { size: u64, max: u64 },
    /// A read below the log start or past its end.
    #[error("offset {requested} is out of range: the log holds [{start}, {end})")]
    OffsetOutOfRange { requested: u64, start: u64, end: u64 },
    /// An idempotent producer's batch does not follow its previous one.
    #[error("producer {producer_id} epoch {epoch}: expected sequence {expected}, got {got}")]
    OutOfOrderSequence { producer_id: i64, epoch: i16, expected: i32, got: i32 },
    /// An idempotent producer wrote with an epoch older than one already seen.
    #[error("producer {producer_id} epoch {epoch} is fenced by epoch {current}")]
    ProducerFenced { producer_id: i64, epoch: i16, current: i16 },
    /// A compacted log refuses records without a key.
    #[error("record {index} has a null key, which a compacted log cannot keep")]
    MissingKey { index: u32 },
    /// An earlier write or fsync failed in a way that leaves the file's state unknown; the log
    /// refuses writes until it is reopened (which re-validates the tail).
    #[error("log {path} refuses writes after a failed {op}; reopen it to recover")]
    Poisoned { path: PathBuf, op: &'static str },
    /// A configuration value is out of its range.
    #[error("invalid log config {field}: {reason}")]
    InvalidConfig { field: &'static str, reason: &'static str },
    /// The active segment holds a batch written whole (its header checksum holds) in a format
    /// this build does not read: a newer version, compression or attributes. Recovery refuses
    /// to open rather than cut it as a torn tail.
    #[error(
        "batch in {path} at byte {position} is whole but unreadable by this build ({fault}); the log was not opened and nothing was cut"
    )]
    UnreadableBatch { path: PathBuf, position: u64, fault: BatchError },
    /// A metadata file (index, producer snapshot) has an unknown version.
    #[error("{path} has format version {found}; this build reads version {supported}")]
    UnsupportedFileVersion { path: PathBuf, found: u8, supported: u8 },
}

impl Error {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| {
            if is_no_space(&source) {
                Error::NoSpace { op, path, source }
            } else {
                Error::Io { op, path, source }
            }
        }
    }
}

/// ENOSPC, EDQUOT and EFBIG (a file size limit) all mean "no room for these bytes".
pub(crate) fn is_no_space(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded | io::ErrorKind::FileTooLarge
    )
}
