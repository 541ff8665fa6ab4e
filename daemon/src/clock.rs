//! Wall-clock time in Unix seconds: the one way the daemon asks what time it is for expiry and listings.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, per the system clock, but never earlier than a time already returned.
///
/// If the wall clock is stepped backwards (an NTP correction, an operator's mistake), a key that has
/// expired must not become valid again, nor a legacy key come back from its sunset: expiry decisions only
/// ever move forward. A forward jump simply brings expiries forward, as the wall clock says. Rate limits do
/// not use this clock at all ([`mono_nanos`]).
pub fn unix_now() -> i64 {
    static HIGHEST: AtomicI64 = AtomicI64::new(0);
    never_backwards(system_seconds(), &HIGHEST)
}

fn system_seconds() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// `reading`, or the highest reading seen so far if the clock went back.
fn never_backwards(reading: i64, highest: &AtomicI64) -> i64 {
    highest.fetch_max(reading, Ordering::AcqRel).max(reading)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_time_never_runs_backwards_for_expiry() {
        let highest = AtomicI64::new(0);
        assert_eq!(never_backwards(1_000, &highest), 1_000);
        assert_eq!(never_backwards(2_000, &highest), 2_000, "forward jumps count");
        assert_eq!(never_backwards(500, &highest), 2_000, "a step back is ignored");
        assert_eq!(never_backwards(2_001, &highest), 2_001);
    }

    #[test]
    fn the_monotonic_clock_is_never_zero_and_never_decreases() {
        let a = mono_nanos();
        let b = mono_nanos();
        assert!(a > 0 && b >= a);
    }
}
