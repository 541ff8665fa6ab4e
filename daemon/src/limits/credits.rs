//! Credits: a key's usage quota, spent by valid verifies and refilled on a schedule.
//!
//! The balance is an atomic counter in memory; spending is a compare-and-swap that never goes below zero.
//! A refill *sets* the balance to its amount at each boundary (00:00 UTC daily, or the chosen day of the
//! month, clamped to the month's last day). The first verify after a boundary performs it, so a key nobody
//! uses is refilled lazily, and the boundary is recorded so it happens once.
//!
//! Durability: balances reach the store in batches ([`crate::flusher`]), not per verify. After a crash the
//! balance is the last saved one, so a key can over-spend by at most what it spent in one flush interval.
//!
//! In fleet mode a cell is *escrowed* ([`CreditCell::escrowed`]): the fleet's balance lives in the engine,
//! and the cell holds only the part of it granted to this host ([`CreditCell::grant`]), spent with the same
//! compare-and-swap. Below half of its last grant the cell asks for the next ([`CreditCell::wants_grant`]),
//! off the verify path. A grant is never saved: a host that crashes or restarts starts empty, and what it
//! held counts as spent — the fleet can under-spend, never over-spend. Refills happen in the engine, at
//! grant time, once for the fleet. A change of the balance (`credits --set/--add`) voids every earlier
//! grant ([`CreditCell::void`]).

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
    /// Fleet mode's grant bookkeeping; `None` on a host on its own.
    escrow: Option<Escrow>,
}

/// What an escrowed cell knows about its grants.
#[derive(Debug, Default)]
struct Escrow {
    /// Grants of a balance set before this change (its sequence number) are void.
    min_epoch: AtomicU64,
    /// A grant has been asked for and has not arrived.
    asking: std::sync::atomic::AtomicBool,
    /// The balance below which the next grant is asked for.
    low_water: AtomicU64,
    /// The engine's last answer was that the fleet's balance is spent.
    exhausted: std::sync::atomic::AtomicBool,
    /// What the fleet had left, ungranted, after this host's last grant.
    fleet_left: AtomicU64,
}

impl CreditCell {
    /// A cell holding `balance`, last refilled (or created) at `refilled_at`, as stored.
    pub fn new(balance: u64, refilled_at: i64) -> CreditCell {
        CreditCell {
            balance: AtomicU64::new(balance),
            refilled_at: AtomicI64::new(refilled_at),
            saved: AtomicU64::new(balance),
            saved_refilled_at: AtomicI64::new(refilled_at),
            escrow: None,
        }
    }

    /// An escrowed cell (fleet mode): empty until its first grant.
    pub fn escrowed() -> CreditCell {
        CreditCell { escrow: Some(Escrow::default()), ..CreditCell::new(0, i64::MIN) }
    }

    pub fn is_escrowed(&self) -> bool {
        self.escrow.is_some()
    }

    /// Whether this escrowed cell should ask for a grant now: below its low water, not exhausted, and not
    /// asking already. `true` at most once until [`CreditCell::grant`] or [`CreditCell::grant_failed`].
    pub fn wants_grant(&self) -> bool {
        let Some(escrow) = &self.escrow else { return false };
        self.balance() <= escrow.low_water.load(Ordering::Relaxed)
            && !escrow.exhausted.load(Ordering::Relaxed)
            && !escrow.asking.swap(true, Ordering::AcqRel)
    }

    /// The balance an answer shows for a cell holding `balance`: for an escrowed cell, this host's grant
    /// plus what the fleet had left ungranted at its last grant (other hosts' grants are not counted).
    pub fn shown(&self, balance: u64) -> u64 {
        self.escrow.as_ref().map_or(balance, |escrow| balance.saturating_add(escrow.fleet_left.load(Ordering::Relaxed)))
    }

    /// [`CreditCell::shown`] of the current balance.
    pub fn shown_balance(&self) -> u64 {
        self.shown(self.balance())
    }

    /// Whether an empty escrowed cell may still get credits (the fleet's balance was not found spent).
    pub fn may_get_more(&self) -> bool {
        self.escrow.as_ref().is_some_and(|escrow| !escrow.exhausted.load(Ordering::Relaxed))
    }

    /// Takes a grant of `granted` credits of the balance set by change `epoch`, last refilled at
    /// `refilled_at`; `remaining` is what the fleet has left after it. Ignored if the balance was changed
    /// since (a later epoch voided it); a grant from a later refill replaces what the cell held.
    pub fn grant(&self, granted: u64, remaining: u64, epoch: u64, refilled_at: i64) {
        let Some(escrow) = &self.escrow else { return };
        if epoch >= escrow.min_epoch.load(Ordering::Acquire) {
            if refilled_at > self.refilled_at.swap(refilled_at, Ordering::AcqRel) {
                self.balance.store(granted, Ordering::Release);
            } else {
                self.balance.fetch_add(granted, Ordering::AcqRel);
            }
            escrow.low_water.store(granted / 2, Ordering::Relaxed);
            escrow.fleet_left.store(remaining, Ordering::Relaxed);
            escrow.exhausted.store(granted == 0 && remaining == 0, Ordering::Relaxed);
        }
        escrow.asking.store(false, Ordering::Release);
    }

    /// The grant request failed (engine unreachable): the next verify below low water asks again.
    pub fn grant_failed(&self) {
        if let Some(escrow) = &self.escrow {
            escrow.asking.store(false, Ordering::Release);
        }
    }

    /// Voids every grant of a balance older than change `epoch` (the fleet's balance was set anew).
    pub fn void(&self, epoch: u64) {
        if let Some(escrow) = &self.escrow {
            escrow.min_epoch.fetch_max(epoch, Ordering::AcqRel);
            escrow.exhausted.store(false, Ordering::Relaxed);
            escrow.low_water.store(0, Ordering::Relaxed);
            escrow.fleet_left.store(0, Ordering::Relaxed);
            self.balance.store(0, Ordering::Release);
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
        match (refill, &self.escrow) {
            (Some(refill), None) => self.refill_if_due(refill, now),
            (Some(refill), Some(escrow)) => self.new_period_if_due(escrow, refill, now),
            (None, _) => {}
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

    /// An escrowed cell past a refill boundary its grant predates: the grant was of the last period, which
    /// is over (as a host on its own drops the old balance at the boundary), so it is dropped and the next
    /// grant, of the new period, is asked for. The engine applies the refill itself, at that grant.
    fn new_period_if_due(&self, escrow: &Escrow, refill: Refill, now: i64) {
        let stale = last_boundary(refill, now) > self.refilled_at.load(Ordering::Acquire);
        if stale && (self.balance() > 0 || escrow.exhausted.load(Ordering::Relaxed)) {
            self.balance.store(0, Ordering::Release);
            escrow.low_water.store(0, Ordering::Relaxed);
            escrow.exhausted.store(false, Ordering::Relaxed);
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

    /// The balance and refill mark if they moved since last saved (never for an escrowed cell: a grant is
    /// not saved).
    pub fn unsaved(&self) -> Option<(u64, i64)> {
        if self.escrow.is_some() {
            return None;
        }
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

pub fn refill_amount(refill: Refill) -> u64 {
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

#[cfg(test)]
mod escrow_tests {
    use super::*;

    #[test]
    fn an_escrowed_cell_spends_its_grants_and_asks_below_half() {
        let cell = CreditCell::escrowed();
        assert!(cell.wants_grant(), "empty: asks");
        assert!(!cell.wants_grant(), "asks once");
        assert_eq!(cell.spend(1, None, 0), Err(0));
        cell.grant(10, 90, 1, 0);
        assert_eq!(cell.balance(), 10);
        for _ in 0..5 {
            assert!(cell.spend(1, None, 0).is_ok());
        }
        assert!(cell.wants_grant(), "at half of the grant");
        cell.grant(10, 80, 1, 0);
        assert_eq!(cell.balance(), 15, "a grant of the same epoch and period adds");
        assert_eq!(cell.unsaved(), None, "grants are never saved");
    }

    #[test]
    fn a_new_balance_voids_older_grants_and_a_refill_replaces_them() {
        let cell = CreditCell::escrowed();
        cell.grant(10, 0, 3, 0);
        cell.void(5);
        assert_eq!(cell.balance(), 0);
        cell.grant(10, 0, 4, 0);
        assert_eq!(cell.balance(), 0, "a grant of a voided balance is ignored");
        cell.grant(7, 0, 5, 9_849_600);
        cell.grant(4, 0, 5, 9_936_000);
        assert_eq!(cell.balance(), 4, "a grant after a refill replaces the old period's");
        let spent: u64 =
            (0..10).filter(|_| cell.spend(1, Some(Refill::Daily { amount: 1000 }), 10_000_000).is_ok()).count() as u64;
        assert_eq!(spent, 4, "an escrowed cell never refills by itself (its grant is of this day's period)");
    }

    #[test]
    fn a_refill_boundary_drops_the_old_period_and_asks_again() {
        let daily = Some(Refill::Daily { amount: 100 });
        let (day1, day2) = (86_400 * 20_000, 86_400 * 20_001);
        let cell = CreditCell::escrowed();
        cell.grant(5, 0, 1, day1);
        assert!(cell.spend(1, daily, day1 + 10).is_ok());
        cell.grant(0, 0, 1, day1);
        assert!(cell.spend(1, daily, day1 + 20).is_ok(), "what it holds is still spent");
        assert!(!cell.may_get_more(), "the fleet's balance is spent");
        assert_eq!(cell.spend(1, daily, day2 + 1), Err(0), "past the boundary: the old period's grant is gone");
        assert!(cell.may_get_more() && cell.wants_grant(), "and the new period is asked for");
        cell.grant(6, 94, 1, day2);
        assert_eq!(cell.spend(1, daily, day2 + 2), Ok(5));
    }

    #[test]
    fn an_exhausted_fleet_balance_stops_the_asking() {
        let cell = CreditCell::escrowed();
        assert!(cell.wants_grant());
        cell.grant(0, 0, 1, 0);
        assert!(!cell.may_get_more());
        assert!(!cell.wants_grant(), "the fleet's balance is spent: no more asking until it changes");
        cell.void(2);
        assert!(cell.may_get_more() && cell.wants_grant());
    }
}
