//! The rate limiter: GCRA (the generic cell rate algorithm) with one atomic timestamp per limit.
//!
//! A rate of N per period P becomes an emission interval T = P / N (nanoseconds, rounded down) and a burst
//! tolerance τ = (N−1)·T. Each limit keeps one "theoretical arrival time" (TAT). A request of cost c at time
//! t is allowed iff `t ≥ TAT + (c−1)·T − τ`, and then moves the TAT to `max(TAT, t) + c·T`. This is exactly
//! the arithmetic of the `governor` crate; the differential test checks it decision by decision on
//! generated traces.
//!
//! Guarantee: the cells allowed in any interval `[t, t + d]` never exceed `N + d / T` — a fresh or idle
//! limit allows a burst of N at once, then one request per T. Over one full period P that is at most 2N
//! at the boundary of a burst, and N per P in the steady state.
//!
//! Cost 0 asks whether a cost-1 request would pass, without spending. A cost larger than N can never pass
//! and is refused without a retry time.
//!
//! Updates are lock-free compare-and-swap loops; nothing here allocates. A verify that counts against
//! several limits reserves them in order and, if a later one refuses, gives back what it reserved on the
//! earlier ones (`TAT −= c·T`). Giving back is exact unless another request moved the same TAT in between
//! from an idle state (its `max(TAT, t)` picked `t`); then the give-back can over-credit by at most c·T
//! — one request's worth, on that limit, once.

use std::sync::atomic::{AtomicU64, Ordering};

use keyward_protocol::Rate;

/// Nanoseconds per second.
const NANOS: u64 = 1_000_000_000;

/// A limit's parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gcra {
    /// T: nanoseconds per cell.
    interval: u64,
    /// τ: the burst tolerance, (N−1)·T.
    tau: u64,
    /// N.
    limit: u64,
    /// P in seconds.
    window_seconds: u64,
}

/// What a reservation decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allowed; the limit's TAT is now `tat`.
    Allowed { tat: u64 },
    /// Refused; a retry `retry_after` nanoseconds from now would pass (`None`: never, the cost exceeds N).
    Refused { retry_after: Option<u64>, tat: u64 },
}

impl Gcra {
    /// The limiter of `rate`. Requests never carry a count of 0 (`validate::limits` refuses one), but a
    /// limit is never a division by zero either: a count of 0 is held as 1.
    pub fn new(rate: Rate) -> Gcra {
        let count = rate.count.max(1);
        let period = rate.period.seconds() * NANOS;
        let interval = (period / count).max(1);
        Gcra { interval, tau: interval * (count - 1), limit: count, window_seconds: rate.period.seconds() }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn window_seconds(&self) -> u64 {
        self.window_seconds
    }

    /// The pure decision for a TAT at `now`: the new TAT, or how long until a retry would pass.
    fn decide(&self, tat: u64, now: u64, cost: u64) -> Result<u64, Option<u64>> {
        let spent = cost.max(1);
        let weight = self.interval * (spent - 1);
        if weight > self.tau {
            return Err(None);
        }
        let earliest = (tat + weight).saturating_sub(self.tau);
        if now < earliest {
            return Err(Some(earliest - now));
        }
        if cost == 0 {
            return Ok(tat);
        }
        Ok(tat.max(now) + self.interval + weight)
    }

    /// Spends `cost` from the limit whose TAT is `cell`, if it allows it at `now` (nanoseconds on the
    /// limiter's monotonic clock).
    pub fn reserve(&self, cell: &AtomicU64, now: u64, cost: u64) -> Decision {
        let mut tat = cell.load(Ordering::Acquire);
        loop {
            match self.decide(tat, now, cost) {
                Err(retry_after) => return Decision::Refused { retry_after, tat },
                Ok(next) if next == tat => return Decision::Allowed { tat },
                Ok(next) => match cell.compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => return Decision::Allowed { tat: next },
                    Err(current) => tat = current,
                },
            }
        }
    }

    /// Whether a request of `cost` would pass at `now`, without spending: `Err(retry_after)` if not.
    pub fn check(&self, cell: &AtomicU64, now: u64, cost: u64) -> Result<(), Option<u64>> {
        self.decide(cell.load(Ordering::Acquire), now, cost).map(|_| ())
    }

    /// The TAT that carries a limit's spent requests (not its spent time) over to the parameters `self`,
    /// when a key's limit changes from `old`: the outstanding debt is converted cell for cell.
    pub fn rescale(&self, old: &Gcra, tat: u64, now: u64) -> u64 {
        if tat <= now {
            return tat;
        }
        let debt_cells = u128::from(tat - now) * u128::from(self.interval) / u128::from(old.interval);
        now.saturating_add(u64::try_from(debt_cells).unwrap_or(u64::MAX))
    }

    /// Gives back a reservation of `cost` made by [`Gcra::reserve`].
    pub fn give_back(&self, cell: &AtomicU64, cost: u64) {
        let weight = self.interval * cost;
        let _ = cell.fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| Some(tat.saturating_sub(weight)));
    }

    /// Requests still allowed at `now` for a limit whose TAT is `tat`, and nanoseconds until it is full.
    pub fn status(&self, tat: u64, now: u64) -> (u64, u64) {
        let busy_until = tat.max(now);
        let remaining = match (now + self.tau).checked_sub(busy_until) {
            Some(slack) => (slack / self.interval + 1).min(self.limit),
            None => 0,
        };
        (remaining, busy_until - now)
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::time::Duration;

    use governor::clock::FakeRelativeClock;
    use governor::{Quota, RateLimiter};
    use keyward_protocol::Period;

    use super::*;

    fn rate(count: u64, period: Period) -> Gcra {
        Gcra::new(Rate { count, period })
    }

    #[test]
    fn burst_then_steady_state() {
        let limit = rate(100, Period::Minute);
        let cell = AtomicU64::new(0);
        let start = 1_000 * NANOS;
        for i in 0..100 {
            assert!(matches!(limit.reserve(&cell, start, 1), Decision::Allowed { .. }), "burst request {i}");
        }
        let Decision::Refused { retry_after: Some(wait), .. } = limit.reserve(&cell, start, 1) else {
            panic!("the 101st request in the same instant must be refused");
        };
        assert_eq!(wait, 600_000_000, "one cell every 600 ms");
        assert!(matches!(limit.reserve(&cell, start + wait - 1, 1), Decision::Refused { .. }));
        assert!(
            matches!(limit.reserve(&cell, start + wait, 1), Decision::Allowed { .. }),
            "a retry at that time passes"
        );
        assert!(matches!(limit.reserve(&cell, start + wait, 1), Decision::Refused { .. }));
    }

    #[test]
    fn cost_zero_checks_and_larger_costs_spend_more() {
        let limit = rate(10, Period::Second);
        let cell = AtomicU64::new(0);
        let now = 5 * NANOS;
        assert!(matches!(limit.reserve(&cell, now, 0), Decision::Allowed { .. }));
        assert_eq!(cell.load(Ordering::Relaxed), 0, "cost 0 spends nothing");
        let Decision::Allowed { tat } = limit.reserve(&cell, now, 4) else { panic!() };
        assert_eq!(limit.status(tat, now).0, 6);
        assert!(matches!(limit.reserve(&cell, now, 7), Decision::Refused { retry_after: Some(_), .. }));
        assert!(matches!(limit.reserve(&cell, now, 6), Decision::Allowed { .. }));
        assert!(matches!(limit.reserve(&cell, now, 11), Decision::Refused { retry_after: None, .. }), "never fits");
        assert!(matches!(limit.reserve(&cell, now, 0), Decision::Refused { .. }), "cost 0 sees an empty bucket");
    }

    #[test]
    fn give_back_restores_the_budget() {
        let limit = rate(2, Period::Second);
        let cell = AtomicU64::new(0);
        let now = NANOS;
        assert!(matches!(limit.reserve(&cell, now, 1), Decision::Allowed { .. }));
        assert!(matches!(limit.reserve(&cell, now, 1), Decision::Allowed { .. }));
        limit.give_back(&cell, 1);
        assert!(matches!(limit.reserve(&cell, now, 1), Decision::Allowed { .. }));
        assert!(matches!(limit.reserve(&cell, now, 1), Decision::Refused { .. }));
    }

    #[test]
    fn rescaling_carries_spent_requests_to_a_new_rate() {
        let (free, tight) = (rate(100, Period::Minute), rate(3, Period::Hour));
        let cell = AtomicU64::new(0);
        let now = 7 * NANOS;
        for _ in 0..2 {
            limit_allows(&free, &cell, now);
        }
        let moved = AtomicU64::new(tight.rescale(&free, cell.load(Ordering::Relaxed), now));
        assert_eq!(tight.status(moved.load(Ordering::Relaxed), now).0, 1, "2 of 3 already spent");
        assert!(matches!(tight.reserve(&moved, now, 1), Decision::Allowed { .. }));
        assert!(matches!(tight.reserve(&moved, now, 1), Decision::Refused { .. }));
    }

    fn limit_allows(limit: &Gcra, cell: &AtomicU64, now: u64) {
        assert!(matches!(limit.reserve(cell, now, 1), Decision::Allowed { .. }));
    }

    #[test]
    fn status_reports_remaining_and_reset() {
        let limit = rate(4, Period::Second);
        let cell = AtomicU64::new(0);
        let now = 10 * NANOS;
        let Decision::Allowed { tat } = limit.reserve(&cell, now, 1) else { panic!() };
        assert_eq!(limit.status(tat, now), (3, 250_000_000));
        assert_eq!(limit.status(tat, now + NANOS), (4, 0), "full again once idle");
    }

    proptest::proptest! {
        /// Over any trace, the requests allowed in any window of length d never exceed N + d / T, and a
        /// fresh limit never refuses its first N requests in one instant.
        #[test]
        fn never_more_than_the_limit_allows(
            count in 1u64..50,
            gaps in proptest::collection::vec(0u64..3_000_000_000, 1..200),
            costs in proptest::collection::vec(1u64..4, 200),
        ) {
            let limit = rate(count, Period::Second);
            let cell = AtomicU64::new(0);
            let mut now = 10 * NANOS;
            let mut allowed: Vec<(u64, u64)> = Vec::new();
            for (gap, cost) in gaps.iter().zip(&costs) {
                now += gap;
                if let Decision::Allowed { .. } = limit.reserve(&cell, now, *cost) {
                    allowed.push((now, *cost));
                }
            }
            for (i, &(start, _)) in allowed.iter().enumerate() {
                let mut cells = 0;
                for &(at, cost) in &allowed[i..] {
                    cells += cost;
                    let window = at - start;
                    proptest::prop_assert!(cells <= count + window / limit.interval, "{} cells in {} ns", cells, window);
                }
            }
            let fresh = AtomicU64::new(0);
            for _ in 0..count {
                let allowed = matches!(limit.reserve(&fresh, now, 1), Decision::Allowed { .. });
                proptest::prop_assert!(allowed, "a fresh limit refused part of its burst");
            }
        }
    }

    /// A small deterministic generator for request traces (xorshift64*).
    struct Trace(u64);

    impl Trace {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
    }

    #[test]
    fn decisions_match_governor_on_generated_traces() {
        let configs = [
            (1, Period::Second),
            (5, Period::Second),
            (100, Period::Minute),
            (1000, Period::Minute),
            (7, Period::Hour),
        ];
        let mut compared = 0;
        for (seed, &(count, period)) in configs.iter().enumerate() {
            let ours = rate(count, period);
            let quota = match period {
                Period::Second => Quota::per_second(NonZeroU32::new(count as u32).unwrap()),
                Period::Minute => Quota::per_minute(NonZeroU32::new(count as u32).unwrap()),
                Period::Hour => Quota::per_hour(NonZeroU32::new(count as u32).unwrap()),
                Period::Day => unreachable!(),
            };
            let clock = FakeRelativeClock::default();
            let reference = RateLimiter::direct_with_clock(quota, clock.clone());
            let cell = AtomicU64::new(0);
            let mut trace = Trace(0x9E37_79B9_7F4A_7C15 ^ seed as u64);
            // Start well after zero: our TAT 0 means "never used", governor starts from its clock's zero.
            let origin = 1_000 * NANOS;
            let mut now = 0u64;
            let mean_gap = ours.interval;
            for _ in 0..20_000 {
                // Gaps from bursts (0) to idle stretches (several intervals), costs 1 to 4.
                let roll = trace.next();
                let gap = match roll % 4 {
                    0 => 0,
                    1 => roll % (mean_gap / 2 + 1),
                    2 => roll % (mean_gap * 2 + 1),
                    _ => roll % (mean_gap * 8 + 1),
                };
                now += gap;
                clock.advance(Duration::from_nanos(gap));
                let cost = 1 + (trace.next() % 4) as u32;
                let theirs = reference.check_n(NonZeroU32::new(cost).unwrap());
                let mine = ours.reserve(&cell, origin + now, u64::from(cost));
                match (theirs, mine) {
                    (Ok(Ok(())), Decision::Allowed { .. }) => {}
                    (Ok(Err(_)), Decision::Refused { retry_after: Some(_), .. }) => {}
                    (Err(_), Decision::Refused { retry_after: None, .. }) => {}
                    (theirs, mine) => {
                        panic!("{count}/{period:?} at {now} ns cost {cost}: governor {theirs:?}, ours {mine:?}")
                    }
                }
                compared += 1;
            }
        }
        assert_eq!(compared, 100_000);
    }
}
