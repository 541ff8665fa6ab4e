//! Credits: a key's usage quota, spent by valid verifies and refilled on a schedule.
//!
//! The balance is an atomic counter in memory; spending is a compare-and-swap that never goes below zero.
//! A refill *sets* the balance to its amount at each boundary (00:00 UTC daily, or the chosen day of the
//! month, clamped to the month's last day). The first verify after a boundary performs it, so a key nobody
//! uses is refilled lazily, and the boundary is recorded so it happens once.
//!
//! Durability: balances reach the store in batches ([`crate::flusher`]), not per verify. After a crash the
//! balance is the last saved one, so a key can over-spend by at most what it spent in one flush interval.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use keyward_protocol::Refill;

/// One key's live balance.
#[derive(Debug)]
pub struct CreditCell {
    balance: AtomicU64,
    /// The last refill boundary applied (Unix seconds).
    refilled_at: AtomicI64,
    /// What the store holds, to know whether the flusher has work.
    saved: AtomicU64,
    saved_refilled_at: AtomicI64,
}

impl CreditCell {
    /// A cell holding `balance`, last refilled (or created) at `refilled_at`, as stored.
    pub fn new(balance: u64, refilled_at: i64) -> CreditCell {
        CreditCell {
            balance: AtomicU64::new(balance),
            refilled_at: AtomicI64::new(refilled_at),
            saved: AtomicU64::new(balance),
            saved_refilled_at: AtomicI64::new(refilled_at),
        }
    }

    pub fn balance(&self) -> u64 {
        self.balance.load(Ordering::Acquire)
    }

    pub fn refilled_at(&self) -> i64 {
        self.refilled_at.load(Ordering::Acquire)
    }

    /// Spends `cost` (0: only checks that one credit is left) after applying any refill due at `now`.
    /// `Ok(balance after)`, or `Err(balance)` when there is not enough.
    pub fn spend(&self, cost: u64, refill: Option<Refill>, now: i64) -> Result<u64, u64> {
        if let Some(refill) = refill {
            self.refill_if_due(refill, now);
        }
        let mut balance = self.balance.load(Ordering::Acquire);
        loop {
            if balance < cost.max(1) {
                return Err(balance);
            }
            if cost == 0 {
                return Ok(balance);
            }
            match self.balance.compare_exchange_weak(balance, balance - cost, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(balance - cost),
                Err(current) => balance = current,
            }
        }
    }

    /// Sets the balance if a refill boundary has passed since the last one applied.
    pub fn refill_if_due(&self, refill: Refill, now: i64) {
        let boundary = last_boundary(refill, now);
        let applied = self.refilled_at.load(Ordering::Acquire);
        if boundary > applied
            && self.refilled_at.compare_exchange(applied, boundary, Ordering::AcqRel, Ordering::Acquire).is_ok()
        {
            self.balance.store(refill_amount(refill), Ordering::Release);
        }
    }

    /// Sets the balance (an operator's `credits --set`, already durable).
    pub fn set(&self, balance: u64) {
        self.balance.store(balance, Ordering::Release);
        self.saved.store(balance, Ordering::Release);
    }

    /// The balance and refill mark if they moved since last saved.
    pub fn unsaved(&self) -> Option<(u64, i64)> {
        let (balance, refilled_at) = (self.balance(), self.refilled_at());
        let moved = balance != self.saved.load(Ordering::Acquire)
            || refilled_at != self.saved_refilled_at.load(Ordering::Acquire);
        moved.then_some((balance, refilled_at))
    }

    /// Notes that the store now holds `balance` and `refilled_at`.
    pub fn mark_saved(&self, balance: u64, refilled_at: i64) {
        self.saved.store(balance, Ordering::Release);
        self.saved_refilled_at.store(refilled_at, Ordering::Release);
    }
}

fn refill_amount(refill: Refill) -> u64 {
    match refill {
        Refill::Daily { amount } | Refill::Monthly { amount, .. } => amount,
    }
}

/// The latest refill boundary at or before `now` (Unix seconds).
pub fn last_boundary(refill: Refill, now: i64) -> i64 {
    let utc = jiff::tz::TimeZone::UTC;
    let today = jiff::Timestamp::from_second(now).unwrap_or(jiff::Timestamp::UNIX_EPOCH).to_zoned(utc.clone()).date();
    let midnight =
        |date: jiff::civil::Date| date.to_zoned(utc.clone()).map(|z| z.timestamp().as_second()).unwrap_or(i64::MIN);
    match refill {
        Refill::Daily { .. } => midnight(today),
        Refill::Monthly { day, .. } => {
            let in_month = |first: jiff::civil::Date| {
                let last = first.last_of_month().day();
                first.with().day(i8::try_from(day).unwrap_or(1).min(last)).build().unwrap_or(first)
            };
            let this_month = in_month(today.first_of_month());
            if this_month <= today {
                midnight(this_month)
            } else {
                let previous = today.first_of_month().checked_sub(jiff::Span::new().months(1)).unwrap_or(today);
                midnight(in_month(previous))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> i64 {
        text.parse::<jiff::Timestamp>().unwrap().as_second()
    }

    #[test]
    fn boundaries_are_midnights_clamped_to_short_months() {
        let daily = Refill::Daily { amount: 5 };
        assert_eq!(last_boundary(daily, at("2027-03-10T15:00:00Z")), at("2027-03-10T00:00:00Z"));
        let on_31st = Refill::Monthly { amount: 5, day: 31 };
        assert_eq!(last_boundary(on_31st, at("2027-03-10T15:00:00Z")), at("2027-02-28T00:00:00Z"), "February clamps");
        assert_eq!(last_boundary(on_31st, at("2027-03-31T00:00:00Z")), at("2027-03-31T00:00:00Z"));
        assert_eq!(last_boundary(on_31st, at("2027-04-30T12:00:00Z")), at("2027-04-30T00:00:00Z"), "April clamps");
        let on_15th = Refill::Monthly { amount: 5, day: 15 };
        assert_eq!(last_boundary(on_15th, at("2027-01-14T23:59:59Z")), at("2026-12-15T00:00:00Z"), "previous year");
    }

    #[test]
    fn spending_stops_at_zero_and_refill_sets_the_balance() {
        let refill = Some(Refill::Monthly { amount: 3, day: 1 });
        let created = at("2027-01-20T10:00:00Z");
        let cell = CreditCell::new(2, created);
        assert_eq!(cell.spend(1, refill, created), Ok(1));
        assert_eq!(cell.spend(0, refill, created), Ok(1), "cost 0 checks without spending");
        assert_eq!(cell.spend(2, refill, created), Err(1), "not enough: nothing spent");
        assert_eq!(cell.spend(1, refill, created), Ok(0));
        assert_eq!(cell.spend(1, refill, at("2027-01-31T23:59:59Z")), Err(0), "no refill before the date");
        assert_eq!(cell.spend(1, refill, at("2027-02-01T00:00:00Z")), Ok(2), "refilled to 3 on the 1st, then spent");
        assert_eq!(cell.spend(1, refill, at("2027-02-20T00:00:00Z")), Ok(1), "once per boundary");
        assert_eq!(cell.unsaved(), Some((1, at("2027-02-01T00:00:00Z"))));
    }

    #[test]
    fn concurrent_spenders_never_overdraw() {
        let cell = std::sync::Arc::new(CreditCell::new(1000, 0));
        let spent: u64 = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| (0..500).filter(|_| cell.spend(1, None, 0).is_ok()).count() as u64))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!((spent, cell.balance()), (1000, 0));
    }
}
