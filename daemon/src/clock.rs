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

/// Milliseconds since the Unix epoch, per the system clock.
pub fn unix_millis() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Nanoseconds on a monotonic clock that starts near 1 s when the process starts. Rate limits run on it,
/// so wall-clock jumps neither refill nor freeze them. Never returns 0 ("never used" in a limit cell).
pub fn mono_nanos() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(std::time::Instant::now);
    1_000_000_000 + start.elapsed().as_nanos() as u64
}
