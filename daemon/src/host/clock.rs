//! Wall-clock time in Unix seconds: the one way the daemon asks what time it is for expiry and listings;
//! the monotonic clock rate limits run on; and [`Now`], both read once for a whole verify — or for every
//! verify a connection answers in one pass, which arrived together.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// One reading of both clocks, taken once per verify (or per pass of a connection) and passed down, so
/// that a verify's checks agree on the time and the hot path reads the clocks once rather than once per
/// check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    /// The monotonic reading itself: when the verify started, for its latency.
    pub at: Instant,
    /// Unix seconds, never earlier than a time already returned ([`unix_now`]).
    pub unix: i64,
    /// Unix milliseconds, as the system clock says (for reset times shown to clients).
    pub unix_ms: i64,
    /// [`mono_nanos`] at `at`.
    pub mono: u64,
}

impl Now {
    /// The time at `at` (an `Instant` the caller has already read), plus one wall-clock reading.
    pub fn at(at: Instant) -> Now {
        let unix_ms = unix_millis();
        Now { at, unix: never_backwards(unix_ms.div_euclid(1000), &HIGHEST), unix_ms, mono: mono_at(at) }
    }

    /// The time now.
    pub fn read() -> Now {
        Now::at(Instant::now())
    }
}

/// The highest Unix second returned so far.
static HIGHEST: AtomicI64 = AtomicI64::new(0);

/// Seconds since the Unix epoch, per the system clock, but never earlier than a time already returned.
///
/// If the wall clock is stepped backwards (an NTP correction, an operator's mistake), a key that has
/// expired must not become valid again, nor a legacy key come back from its sunset: expiry decisions only
/// ever move forward. A forward jump simply brings expiries forward, as the wall clock says. Rate limits do
/// not use this clock at all ([`mono_nanos`]).
pub fn unix_now() -> i64 {
    never_backwards(system_seconds(), &HIGHEST)
}

fn system_seconds() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// `reading`, or the highest reading seen so far if the clock went back. The shared value is written only
/// when the second moves on, so verifies on different cores do not contend for its cache line.
fn never_backwards(reading: i64, highest: &AtomicI64) -> i64 {
    let seen = highest.load(Ordering::Acquire);
    if reading <= seen {
        return seen;
    }
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
    mono_at(Instant::now())
}

fn mono_at(at: Instant) -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(|| at);
    1_000_000_000 + at.saturating_duration_since(start).as_nanos() as u64
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
