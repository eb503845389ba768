//! Task snapshots: the state of one task as of an input position, written atomically.
//!
//! ```text
//! <state_dir>/<processor>-<version>/task-<subtopology>-<partition>.snap
//!
//! 0   magic "EPSN"
//! 4   version u8 = 2, then 3 zero bytes (version 1 is read too: its table entries have no
//!     timestamps, which load as 0)
//! 8   body_len u64
//! 16  crc u32      CRC-32 of the body
//! 20  body:
//!       meta_len u32, meta (JSON: processor, version, task, n, input positions, journal end,
//!                          output partition ends)
//!       op_count u32,    op_count × (op_id u32, len u32, operator state)
//!       table_count u32, table_count × (name_len u32, name, len u32, table entries:
//!                        count u64, count × (key_len u32, key, value_len u32, value, ts i64))
//! ```
//!
//! All integers little-endian. A snapshot is written only after every output it accounts for
//! was appended and flushed, so it never claims outputs that a crash could lose. A missing file
//! means "start from zero"; a damaged one is an error (never silently ignored: starting from
//! zero would re-emit every output of a writer whose suppression window no longer covers them).

use std::path::{Path, PathBuf};

use eddy_storage::vfs::FileSystem;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::state::{put_bytes, take_bytes, take_u32};

const MAGIC: [u8; 4] = *b"EPSN";
/// The version written.
pub(crate) const VERSION: u8 = 2;
/// The oldest version still read.
const OLDEST: u8 = 1;
const HEAD_LEN: usize = 20;

/// Where a snapshot stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SnapshotMeta {
    pub processor: String,
    pub version: u32,
    pub subtopology: u32,
    pub partition: u32,
    /// Input records processed since offset zero.
    pub n: u64,
    /// Next offset to read, per source topic.
    pub inputs: Vec<(String, u64)>,
    /// End of the step journal this state reflects (multi-source tasks).
    pub journal_end: Option<u64>,
    /// End offset of every output partition when the snapshot was taken.
    pub outputs: Vec<(String, u32, u64)>,
    /// Output positions the task had found already written but not yet re-reached (a snapshot
    /// taken while re-processing after a restart): (topic, partition, n, index). Those outputs
    /// lie before `outputs`' ends, so the next recovery would not find them by scanning.
    #[serde(default)]
    pub suppress: Vec<(String, u32, u64, u32)>,
    /// Frontier hints received from upstream tasks: (origin, frontier).
    #[serde(default)]
    pub hints: Vec<(u64, i64)>,
}

/// A decoded snapshot.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub meta: SnapshotMeta,
    pub ops: Vec<(u32, Vec<u8>)>,
    pub tables: Vec<(String, Vec<u8>)>,
    /// The format version it was read in (table entries carry timestamps from 2 on); a
    /// snapshot is always written in [`VERSION`].
    pub format: u8,
}

pub(crate) fn path(
    state_dir: &Path,
    processor: &str,
    version: u32,
    sub: u32,
    part: u32,
) -> PathBuf {
    state_dir.join(format!("{processor}-{version}")).join(format!("task-{sub}-{part}.snap"))
}

pub(crate) fn encode(snapshot: &Snapshot) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    let meta = serde_json::to_vec(&snapshot.meta)
        .map_err(|source| Error::EncodeState { op: 0, source })?;
    put_bytes(&mut body, &meta);
    body.extend_from_slice(&(snapshot.ops.len() as u32).to_le_bytes());
    for (id, state) in &snapshot.ops {
        body.extend_from_slice(&id.to_le_bytes());
        put_bytes(&mut body, state);
    }
    body.extend_from_slice(&(snapshot.tables.len() as u32).to_le_bytes());
    for (name, state) in &snapshot.tables {
        put_bytes(&mut body, name.as_bytes());
        put_bytes(&mut body, state);
    }
    let mut out = Vec::with_capacity(HEAD_LEN + body.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[VERSION, 0, 0, 0]);
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

pub(crate) fn write(fs: &dyn FileSystem, path: &Path, snapshot: &Snapshot) -> Result<()> {
    let bytes = encode(snapshot)?;
    if let Some(dir) = path.parent() {
        eddy_storage::create_dir_durable_on(fs, dir).map_err(Error::SnapshotWrite)?;
    }
    eddy_storage::write_atomic_on(fs, path, &bytes).map_err(Error::SnapshotWrite)
}

/// Reads the snapshot at `path`; `Ok(None)` if there is none.
pub(crate) fn read(fs: &dyn FileSystem, path: &Path) -> Result<Option<Snapshot>> {
    let bytes = match fs.read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(Error::Io { op: "read", path: path.into(), source }),
    };
    let corrupt = |fault| Error::CorruptSnapshot { path: path.into(), fault };
    if bytes.len() < HEAD_LEN || bytes[..4] != MAGIC {
        return Err(corrupt("bad magic or short header"));
    }
    if !(OLDEST..=VERSION).contains(&bytes[4]) {
        return Err(Error::SnapshotVersion {
            path: path.into(),
            found: bytes[4],
            supported: VERSION,
        });
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&bytes[8..16]);
    let body_len = u64::from_le_bytes(len);
    if body_len != (bytes.len() - HEAD_LEN) as u64 {
        return Err(corrupt("length does not match the file"));
    }
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&bytes[16..20]);
    let body = &bytes[HEAD_LEN..];
    if crc32fast::hash(body) != u32::from_le_bytes(crc) {
        return Err(corrupt("checksum mismatch"));
    }
    decode_body(body, bytes[4]).map(Some).map_err(corrupt)
}

fn decode_body(mut body: &[u8], format: u8) -> std::result::Result<Snapshot, &'static str> {
    let meta: SnapshotMeta =
        serde_json::from_slice(take_bytes(&mut body)?).map_err(|_| "metadata does not decode")?;
    let op_count = take_u32(&mut body)?;
    let mut ops = Vec::new();
    for _ in 0..op_count {
        let id = take_u32(&mut body)?;
        ops.push((id, take_bytes(&mut body)?.to_vec()));
    }
    let table_count = take_u32(&mut body)?;
    let mut tables = Vec::new();
    for _ in 0..table_count {
        let name = std::str::from_utf8(take_bytes(&mut body)?).map_err(|_| "table name")?;
        tables.push((name.to_owned(), take_bytes(&mut body)?.to_vec()));
    }
    if !body.is_empty() {
        return Err("bytes after the last table");
    }
    Ok(Snapshot { meta, ops, tables, format })
}
