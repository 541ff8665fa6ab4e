//! Usage counters: verifications per key by outcome code.
//!
//! Each key in use carries a small array of atomic counters, one per code, in place (only keys in use
//! have an [`Activity`](crate::keys::activity::Activity), so nothing is saved by allocating it on first use).
//! The flusher drains them into the store's hourly and
//! daily buckets ([`crate::keys::store::Store::add_usage`]); a query adds what is still pending, so reports are
//! exact. A count lands in the bucket of the time it was drained, at most one flush interval late.

use std::sync::atomic::{AtomicU32, Ordering};

use keyward_protocol::VerifyCode;

/// Number of verify codes, and so of counters per key.
pub const CODES: usize = VerifyCode::ALL.len();

/// The counter slot of a code.
pub fn slot(code: VerifyCode) -> usize {
    VerifyCode::ALL.iter().position(|&c| c == code).expect("every code is in ALL")
}

/// One key's pending counts.
#[derive(Debug, Default)]
pub struct UsageCell([AtomicU32; CODES]);

impl UsageCell {
    /// Counts one verification answered with `code`.
    pub fn count(&self, code: VerifyCode) {
        self.0[slot(code)].fetch_add(1, Ordering::Relaxed);
    }

    /// Takes the pending counts, leaving zeros; `None` when there were none.
    pub fn drain(&self) -> Option<[u64; CODES]> {
        if self.0.iter().all(|counter| counter.load(Ordering::Relaxed) == 0) {
            return None;
        }
        let drained: [u64; CODES] = std::array::from_fn(|i| u64::from(self.0[i].swap(0, Ordering::Relaxed)));
        drained.iter().any(|&n| n > 0).then_some(drained)
    }

    /// The pending counts, without taking them.
    pub fn pending(&self) -> [u64; CODES] {
        std::array::from_fn(|i| u64::from(self.0[i].load(Ordering::Relaxed)))
    }

    /// Puts counts back after a failed write, so nothing is lost.
    pub fn restore(&self, counts: &[u64; CODES]) {
        for (counter, &n) in self.0.iter().zip(counts) {
            counter.fetch_add(u32::try_from(n).unwrap_or(u32::MAX), Ordering::Relaxed);
        }
    }
}

/// Adds `b` into `a`.
pub fn add(a: &mut [u64; CODES], b: &[u64]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

/// Hourly buckets kept, and shown by a usage report.
pub const USAGE_HOURS: i64 = 48;
/// Daily buckets kept, and shown by a usage report.
pub const USAGE_DAYS: i64 = 90;

/// The start of the oldest hourly bucket kept at `now`.
pub fn first_hour_kept(now: i64) -> i64 {
    hour_start(now) - (USAGE_HOURS - 1) * 3600
}

/// The start of the oldest daily bucket kept at `now`.
pub fn first_day_kept(now: i64) -> i64 {
    day_start(now) - (USAGE_DAYS - 1) * 86_400
}

/// Start of the hour / day containing `at`.
pub fn hour_start(at: i64) -> i64 {
    at - at.rem_euclid(3600)
}

pub fn day_start(at: i64) -> i64 {
    at - at.rem_euclid(86_400)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_drain_once() {
        let cell = UsageCell::default();
        assert_eq!(cell.drain(), None);
        cell.count(VerifyCode::Valid);
        cell.count(VerifyCode::Valid);
        cell.count(VerifyCode::RateLimited);
        let drained = cell.drain().unwrap();
        assert_eq!((drained[slot(VerifyCode::Valid)], drained[slot(VerifyCode::RateLimited)]), (2, 1));
        assert_eq!(cell.drain(), None);
        cell.restore(&drained);
        assert_eq!(cell.pending()[slot(VerifyCode::Valid)], 2);
    }
}
