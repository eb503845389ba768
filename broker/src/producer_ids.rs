//! Producer id allocation: ids are unique for the life of a data directory and never reused.
//!
//! Ids are handed out from a block; the file `producer-ids` records the end of the current
//! block, so a restart (or a crash) skips the rest of the block instead of reusing any id.

use std::path::{Path, PathBuf};

use crate::error::BrokerError;
use crate::files::write_atomic;

const BLOCK: i64 = 1000;

#[derive(Debug)]
pub struct ProducerIds {
    path: PathBuf,
    next: i64,
    block_end: i64,
}

impl ProducerIds {
    pub fn open(path: &Path) -> Result<Self, BrokerError> {
        let start = match std::fs::read_to_string(path) {
            Ok(text) => text.trim().parse::<i64>().map_err(|e| BrokerError::InvalidConfig {
                field: "producer-ids",
                reason: format!("{}: {e}", path.display()),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(BrokerError::io("read", path)(e)),
        };
        Ok(Self { path: path.to_path_buf(), next: start, block_end: start })
    }

    pub fn allocate(&mut self) -> Result<i64, BrokerError> {
        if self.next == self.block_end {
            let end = self.block_end + BLOCK;
            write_atomic(&self.path, end.to_string().as_bytes())?;
            self.block_end = end;
        }
        let id = self.next;
        self.next += 1;
        Ok(id)
    }
}
