//! Wall-clock time in Unix seconds: the one way the daemon asks what time it is for expiry and listings.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, per the system clock. A clock set before 1970 reads as 0.
pub fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Unix seconds as an RFC 3339 UTC string, for audit entries and messages.
pub fn rfc3339(at: i64) -> String {
    jiff::Timestamp::from_second(at).map(|ts| ts.to_string()).unwrap_or_else(|_| format!("@{at}"))
}
