//! Usage counters: verifications per key by outcome code.
//!
//! Each key that has been verified gets a small array of atomic counters (one per code, allocated on
//! first use, so keys nobody uses cost one pointer). The flusher drains them into the store's hourly and
//! daily buckets ([`crate::store::Store::add_usage`]); a query adds what is still pending, so reports are
//! exact. A count lands in the bucket of the time it was drained, at most one flush interval late.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use keyward_protocol::VerifyCode;

/// Number of verify codes, and so of counters per key.
pub const CODES: usize = VerifyCode::ALL.len();

/// The counter slot of a code.
pub fn slot(code: VerifyCode) -> usize {
    VerifyCode::ALL.iter().position(|&c| c == code).expect("every code is in ALL")
}

/// One key's pending counts.
#[derive(Debug, Default)]
pub struct UsageCell(OnceLock<Box<[AtomicU32; CODES]>>);

impl UsageCell {
    /// Counts one verification answered with `code`.
    pub fn count(&self, code: VerifyCode) {
        let counters = self.0.get_or_init(|| Box::new(std::array::from_fn(|_| AtomicU32::new(0))));
        counters[slot(code)].fetch_add(1, Ordering::Relaxed);
    }

    /// Takes the pending counts, leaving zeros; `None` when there were none.
    pub fn drain(&self) -> Option<[u64; CODES]> {
        let counters = self.0.get()?;
        let drained: [u64; CODES] = std::array::from_fn(|i| u64::from(counters[i].swap(0, Ordering::Relaxed)));
        drained.iter().any(|&n| n > 0).then_some(drained)
    }

    /// The pending counts, without taking them.
    pub fn pending(&self) -> [u64; CODES] {
        match self.0.get() {
            Some(counters) => std::array::from_fn(|i| u64::from(counters[i].load(Ordering::Relaxed))),
            None => [0; CODES],
        }
    }

    /// Puts counts back after a failed write, so nothing is lost.
    pub fn restore(&self, counts: &[u64; CODES]) {
        if let Some(counters) = self.0.get() {
            for (counter, &n) in counters.iter().zip(counts) {
                counter.fetch_add(u32::try_from(n).unwrap_or(u32::MAX), Ordering::Relaxed);
            }
        }
    }
}

/// Adds `b` into `a`.
pub fn add(a: &mut [u64; CODES], b: &[u64]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
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
