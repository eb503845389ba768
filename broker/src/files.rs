//! Small metadata files written whole: the broker's `topic.json` and `producer-ids` files are
//! replaced atomically, never edited in place, so a crash leaves the old or the new file.

use std::path::Path;

use crate::error::BrokerError;

/// Write a temporary file, fsync, rename over, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), BrokerError> {
    eddy_storage::write_atomic(path, bytes).map_err(BrokerError::data_dir)
}
