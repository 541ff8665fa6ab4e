//! Fleet-wide rate limits: a host spends *leases* of a limit's slots that the engine hands out, never
//! waiting for the engine in a verify.
//!
//! A limit of N per period P is a fleet-wide schedule of slots one interval T = P / N apart
//! ([`crate::engine::leases`]). A lease gives this host the next few slots within a short horizon; each
//! slot may be spent once, from its time until one lease lifetime L later (measured from when the host
//! asked, so never later by the engine's clock). Every request admitted in any window of length P spent a
//! slot whose time fell within a span of P + L, and slots are T apart: at most N·(1 + L/P) + 1 in any window
//! — 102 for 100/min with L = 1 s, over any number of hosts. Under sustained demand the slots are spent as
//! they come, about N per P. L is a tenth of the period, at most a second. Unlike a host's own limiter, a
//! fleet-wide limit has no burst: its budget comes evenly, one slot every T.
//!
//! A host asks for the next lease when the current one is spent, off the verify path. While the engine cannot be reached the limit falls back to this host's own limiter at N divided by
//! the hosts the fleet had (so the fleet stays near N), and goes back to leases with the first granted one.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use keyward_protocol::Rate;

/// Nanoseconds per millisecond.
const MILLI: u64 = 1_000_000;

/// How long a verify refused for want of a lease is told to wait when no slot time is known.
pub const RETRY_AFTER_MS: u64 = 20;

/// One fleet-wide limit of one key, on one host.
#[derive(Debug)]
pub struct LeaseCell {
    rate: Rate,
    /// T, in nanoseconds.
    interval: u64,
    /// The current lease: when its first slot opens and closes (the limiter's monotonic nanoseconds), its
    /// slot count, and how many were spent (or let expire).
    opens: AtomicU64,
    closes: AtomicU64,
    count: AtomicU64,
    used: AtomicU64,
    /// A lease was asked for and has not arrived.
    asking: AtomicBool,
    /// Odd while [`LeaseCell::granted`] replaces the lease, so a reader never mixes two leases.
    generation: AtomicU64,
    /// Until when no slot is within the engine's horizon (monotonic nanoseconds).
    none_until: AtomicU64,
    /// The engine could not be reached at the last ask: the host's own limiter decides.
    fallback: AtomicBool,
    /// The hosts the fleet had at the last ask (the fallback's divisor).
    hosts: AtomicU64,
}

impl LeaseCell {
    pub fn new(rate: Rate) -> LeaseCell {
        LeaseCell {
            rate,
            interval: (rate.period.seconds() * 1_000_000_000 / rate.count).max(1),
            opens: AtomicU64::new(0),
            closes: AtomicU64::new(0),
            count: AtomicU64::new(0),
            used: AtomicU64::new(0),
            asking: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            none_until: AtomicU64::new(0),
            fallback: AtomicBool::new(false),
            hosts: AtomicU64::new(1),
        }
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// A slot's lifetime: a tenth of the limit's period, at most a second.
    pub fn lease_ms(&self) -> u64 {
        (self.rate.period.seconds() * 100).clamp(1, 1_000)
    }

    /// How far ahead a lease reaches (microseconds): one lifetime.
    pub fn horizon_us(&self) -> u64 {
        self.lease_ms() * 1_000
    }

    /// The most slots one lease holds.
    pub fn chunk(&self) -> u64 {
        (self.rate.count / 16).max(2)
    }

    /// Whether the host's own limiter decides (the engine was unreachable at the last ask). While an ask
    /// is outstanding the limit refuses: it fails closed until the ask's deadline, never open.
    pub fn decides_locally(&self) -> bool {
        self.fallback.load(Ordering::Relaxed)
    }

    /// The fallback's rate: the limit divided among the hosts.
    pub fn fallback_rate(&self) -> Rate {
        let hosts = self.hosts.load(Ordering::Relaxed).max(1);
        Rate { count: (self.rate.count / hosts).max(1), period: self.rate.period }
    }

    /// The current lease's slots at `now`: how many have opened, and how many are spent or expired.
    fn slots(&self, now: u64) -> (u64, u64) {
        let (opens, closes, count) = loop {
            let before = self.generation.load(Ordering::Acquire);
            let read = (self.opens.load(Ordering::Acquire), self.closes.load(Ordering::Acquire));
            let count = self.count.load(Ordering::Acquire);
            if before.is_multiple_of(2) && self.generation.load(Ordering::Acquire) == before {
                break (read.0, read.1, count);
            }
            std::hint::spin_loop();
        };
        let opened = if now >= opens { ((now - opens) / self.interval + 1).min(count) } else { 0 };
        let closed = if now >= closes { ((now - closes) / self.interval + 1).min(count) } else { 0 };
        (opened, self.used.load(Ordering::Acquire).max(closed))
    }

    /// Spends `cost` open slots at `now` (0: checks that one is open). `Err(retry_after_ns)`.
    pub fn take(&self, now: u64, cost: u64) -> Result<(), u64> {
        let needed = cost.max(1);
        loop {
            let (opened, gone) = self.slots(now);
            if gone + needed > opened {
                return Err(self.retry_after(now, opened));
            }
            if cost == 0 {
                return Ok(());
            }
            let used = self.used.load(Ordering::Acquire);
            // Expired slots count as spent: `used` jumps past them.
            if self.used.compare_exchange_weak(used, gone + cost, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                return Ok(());
            }
        }
    }

    /// When a refused verify may try again: the next slot of this lease, or the engine's next, or shortly.
    fn retry_after(&self, now: u64, opened: u64) -> u64 {
        if opened < self.count.load(Ordering::Acquire) {
            let next = self.opens.load(Ordering::Acquire) + opened * self.interval;
            return next.saturating_sub(now).max(1);
        }
        self.none_until.load(Ordering::Relaxed).saturating_sub(now).max(RETRY_AFTER_MS * MILLI)
    }

    /// Gives back what [`LeaseCell::take`] spent, for a verify refused by a later limit.
    pub fn give_back(&self, cost: u64) {
        let _ = self.used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| Some(used.saturating_sub(cost)));
    }

    /// Slots open and unspent at `now`.
    pub fn remaining(&self, now: u64) -> u64 {
        let (opened, gone) = self.slots(now);
        opened.saturating_sub(gone)
    }

    /// Whether to ask for a lease now: every slot of the current one is spent or expired (a new lease
    /// replaces the old, so asking earlier would throw slots away), the engine did not say none is near,
    /// and none is being asked for. `true` at most once until the answer ([`LeaseCell::granted`],
    /// [`LeaseCell::refused`], [`LeaseCell::failed`]).
    pub fn wants_lease(&self, now: u64) -> bool {
        let (_, gone) = self.slots(now);
        let spent = gone >= self.count.load(Ordering::Acquire);
        spent && now >= self.none_until.load(Ordering::Relaxed) && !self.asking.swap(true, Ordering::AcqRel)
    }

    /// A lease of `count` slots asked for at `asked_at` and received at `received_at`, the first
    /// `first_in_us` after the engine's now: its slots open no earlier than the engine's times (counted from
    /// the receipt) and close no later (counted from the ask). It replaces what is left of the last.
    pub fn granted(&self, count: u64, first_in_us: u64, asked_at: u64, received_at: u64, hosts: u64) {
        let first = first_in_us * 1_000;
        // Only the one grants task writes a cell; readers retry while the generation is odd or moved.
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.count.store(0, Ordering::Release);
        self.used.store(0, Ordering::Release);
        self.opens.store(received_at + first, Ordering::Release);
        self.closes.store(asked_at + first + self.lease_ms() * MILLI, Ordering::Release);
        self.count.store(count, Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.hosts.store(hosts.max(1), Ordering::Relaxed);
        self.fallback.store(false, Ordering::Relaxed);
        self.asking.store(false, Ordering::Release);
    }

    /// No slot falls within the horizon until `retry_after_us` after `now`.
    pub fn refused(&self, now: u64, retry_after_us: u64, hosts: u64) {
        self.none_until.store(now + retry_after_us.max(1) * 1_000, Ordering::Relaxed);
        self.hosts.store(hosts.max(1), Ordering::Relaxed);
        self.fallback.store(false, Ordering::Relaxed);
        self.asking.store(false, Ordering::Release);
    }

    /// The engine could not be reached: fall back to the host's own limiter, ask again after a pause.
    pub fn failed(&self, now: u64) {
        self.none_until.store(now + 100 * MILLI, Ordering::Relaxed);
        self.fallback.store(true, Ordering::Relaxed);
        self.asking.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use keyward_protocol::Period;

    use super::*;

    const SECOND: u64 = 1_000_000_000;

    fn per_minute(count: u64) -> LeaseCell {
        LeaseCell::new(Rate { count, period: Period::Minute })
    }

    #[test]
    fn slots_open_one_interval_apart_and_close_one_lifetime_later() {
        let cell = per_minute(100); // one slot every 600 ms; a slot lives 1 s
        assert!(cell.take(SECOND, 1).is_err(), "no lease yet");
        assert!(cell.wants_lease(SECOND) && !cell.wants_lease(SECOND), "asks once");
        cell.granted(2, 0, SECOND, SECOND, 3);
        assert!(cell.take(SECOND, 1).is_ok(), "the first slot is open at once");
        assert_eq!(cell.take(SECOND, 1), Err(600_000_000), "the second opens 600 ms later");
        assert!(cell.take(SECOND + 600_000_000, 1).is_ok());
        assert!(cell.take(SECOND + 700_000_000, 1).is_err(), "the lease is spent");
        cell.give_back(1);
        assert!(cell.take(SECOND + 700_000_000, 1).is_ok(), "given back");
    }

    #[test]
    fn an_unspent_slot_expires() {
        let cell = per_minute(100);
        cell.granted(2, 0, 0, 0, 1);
        assert_eq!(cell.remaining(SECOND + 1), 1, "the first slot closed at 1 s, the second is open");
        assert!(cell.take(SECOND + 1, 1).is_ok());
        assert!(cell.take(2 * SECOND, 1).is_err());
        assert!(cell.wants_lease(2 * SECOND));
    }

    #[test]
    fn a_late_answer_shortens_the_slots_never_lengthens_them() {
        let cell = per_minute(100);
        // Asked at 0, received 300 ms later, first slot 100 ms after the engine's now.
        cell.granted(1, 100_000, 0, 300_000_000, 1);
        assert!(cell.take(350_000_000, 1).is_err(), "opens no earlier than the receipt + 100 ms");
        assert!(cell.take(400_000_000, 1).is_ok());
        cell.granted(1, 100_000, 0, 300_000_000, 1);
        assert!(cell.take(1_150_000_000, 1).is_err(), "closed 1.1 s after the ask");
    }

    #[test]
    fn a_refusal_holds_the_asking_back_and_a_failure_falls_back() {
        let cell = per_minute(100);
        assert!(cell.wants_lease(0));
        cell.refused(0, 500_000, 3);
        assert!(!cell.wants_lease(SECOND / 4), "no slot near for 500 ms");
        assert_eq!(cell.take(SECOND / 4, 1), Err(SECOND / 4), "told when to retry");
        assert!(cell.wants_lease(SECOND));
        cell.failed(SECOND);
        assert!(cell.decides_locally());
        assert_eq!(cell.fallback_rate().count, 33, "the limit divided among the hosts");
        assert!(cell.wants_lease(2 * SECOND));
        cell.granted(2, 0, 2 * SECOND, 2 * SECOND, 3);
        assert!(!cell.decides_locally(), "back to leases");
    }
}
