//! Wall-clock time as the active node stamps it on commands, and as servers date keys and tokens.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch on this machine.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
