//! Wall-clock time as the broker stores it: milliseconds since the Unix epoch. A leaf module:
//! record timestamps, retention, group expiry and registry records all read the clock here.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
