//! Fleet-wide rate limits: a host spends *leases* of a limit's budget that the engine hands out, never
//! waiting for the engine in a verify.
//!
//! The engine grants a lease of a few requests (a sixteenth of the limit) to one host at a time, and
//! records when; it never grants more than the limit N within any span of `P + L` (the limit's period
//! plus a lease's lifetime). A host spends a lease only within `L` of asking for it. So every request
//! admitted in any window of length P used a lease granted within a span of P + L: at most N in any window,
//! whatever the number of hosts. The price is a little throughput (N per P + L under sustained demand;
//! L is a tenth of the period, at most a second) and leases that expire unspent.
//!
//! A host asks for the next lease below a quarter of the last one, or when it expired, off the verify
//! path. While the engine cannot be reached the limit falls back to this host's own limiter at N divided by
//! the hosts the fleet had (so the fleet stays near N), and goes back to leases with the first granted one.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use keyward_protocol::Rate;

/// Nanoseconds per millisecond.
const MILLI: u64 = 1_000_000;

/// How long a verify refused for want of a lease is told to wait when the engine gave no time.
pub const RETRY_AFTER_MS: u64 = 20;

/// One fleet-wide limit of one key, on one host.
#[derive(Debug)]
pub struct LeaseCell {
    rate: Rate,
    /// Requests left of the current lease.
    tokens: AtomicU64,
    /// When the current lease ends (the limiter's monotonic nanoseconds).
    expires: AtomicU64,
    /// A lease was asked for and has not arrived.
    asking: AtomicBool,
    /// Until when the engine said the budget is spent (monotonic nanoseconds).
    spent_until: AtomicU64,
    /// The engine could not be reached at the last ask: the host's own limiter decides.
    fallback: AtomicBool,
    /// The hosts the fleet had at the last ask (the fallback's divisor).
    hosts: AtomicU64,
}

impl LeaseCell {
    pub fn new(rate: Rate) -> LeaseCell {
        LeaseCell {
            rate,
            tokens: AtomicU64::new(0),
            expires: AtomicU64::new(0),
            asking: AtomicBool::new(false),
            spent_until: AtomicU64::new(0),
            fallback: AtomicBool::new(false),
            hosts: AtomicU64::new(1),
        }
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// A lease's lifetime: a tenth of the limit's period, at most a second.
    pub fn lease_ms(&self) -> u64 {
        (self.rate.period.seconds() * 100).clamp(1, 1_000)
    }

    /// The largest lease: a sixteenth of the limit, at least one request.
    pub fn chunk(&self) -> u64 {
        (self.rate.count / 16).max(1)
    }

    /// Whether the host's own limiter decides for now (the engine was unreachable at the last ask).
    pub fn fallback(&self) -> bool {
        self.fallback.load(Ordering::Relaxed)
    }

    /// The fallback's rate: the limit divided among the hosts.
    pub fn fallback_rate(&self) -> Rate {
        let hosts = self.hosts.load(Ordering::Relaxed).max(1);
        Rate { count: (self.rate.count / hosts).max(1), period: self.rate.period }
    }

    /// Spends `cost` of the current lease at `now` (0: checks that one is left). `Err(retry_after_ns)`.
    pub fn take(&self, now: u64, cost: u64) -> Result<(), u64> {
        let refused = || Err(self.spent_until.load(Ordering::Relaxed).saturating_sub(now).max(RETRY_AFTER_MS * MILLI));
        if now >= self.expires.load(Ordering::Acquire) {
            return refused();
        }
        let needed = cost.max(1);
        let mut tokens = self.tokens.load(Ordering::Acquire);
        loop {
            if tokens < needed {
                return refused();
            }
            if cost == 0 {
                return Ok(());
            }
            match self.tokens.compare_exchange_weak(tokens, tokens - cost, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(()),
                Err(current) => tokens = current,
            }
        }
    }

    /// Gives back what [`LeaseCell::take`] spent, for a verify refused by a later limit.
    pub fn give_back(&self, cost: u64) {
        self.tokens.fetch_add(cost, Ordering::AcqRel);
    }

    /// Requests left of the current lease at `now`.
    pub fn remaining(&self, now: u64) -> u64 {
        if now >= self.expires.load(Ordering::Acquire) {
            0
        } else {
            self.tokens.load(Ordering::Acquire)
        }
    }

    /// Whether to ask for a lease now: the current one is expired or below a quarter of a lease, the
    /// engine did not say the budget is spent for longer, and none is being asked for. `true` at most
    /// once until the answer ([`LeaseCell::granted`], [`LeaseCell::refused`], [`LeaseCell::failed`]).
    pub fn wants_lease(&self, now: u64) -> bool {
        let low = self.remaining(now) <= self.chunk() / 4;
        low && now >= self.spent_until.load(Ordering::Relaxed) && !self.asking.swap(true, Ordering::AcqRel)
    }

    /// A lease of `amount` requests asked for at `asked_at`: it replaces what is left of the last (whose
    /// lifetime ends with it) and ends one lifetime after the ask.
    pub fn granted(&self, amount: u64, asked_at: u64, hosts: u64) {
        self.tokens.store(amount, Ordering::Release);
        self.expires.store(asked_at + self.lease_ms() * MILLI, Ordering::Release);
        self.hosts.store(hosts.max(1), Ordering::Relaxed);
        self.fallback.store(false, Ordering::Relaxed);
        self.asking.store(false, Ordering::Release);
    }

    /// The engine has no budget left until `retry_after_ms` after `now`.
    pub fn refused(&self, now: u64, retry_after_ms: u64, hosts: u64) {
        self.spent_until.store(now + retry_after_ms.max(1) * MILLI, Ordering::Relaxed);
        self.hosts.store(hosts.max(1), Ordering::Relaxed);
        self.fallback.store(false, Ordering::Relaxed);
        self.asking.store(false, Ordering::Release);
    }

    /// The engine could not be reached: fall back to the host's own limiter, ask again after a pause.
    pub fn failed(&self, now: u64) {
        self.spent_until.store(now + 100 * MILLI, Ordering::Relaxed);
        self.fallback.store(true, Ordering::Relaxed);
        self.asking.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use keyward_protocol::Period;

    use super::*;

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn a_lease_is_spent_within_its_lifetime_only() {
        let cell = LeaseCell::new(Rate { count: 100, period: Period::Minute });
        assert_eq!((cell.chunk(), cell.lease_ms()), (6, 1_000));
        assert!(cell.take(SECOND, 1).is_err(), "no lease yet");
        assert!(cell.wants_lease(SECOND) && !cell.wants_lease(SECOND), "asks once");
        cell.granted(6, SECOND, 3);
        for _ in 0..6 {
            assert!(cell.take(SECOND + 1, 1).is_ok());
        }
        assert!(cell.take(SECOND + 1, 1).is_err(), "the lease is spent");
        cell.give_back(1);
        assert!(cell.take(SECOND + 1, 1).is_ok(), "given back");
        cell.granted(6, 2 * SECOND, 3);
        assert!(cell.take(3 * SECOND, 1).is_err(), "expired one lifetime after the ask");
    }

    #[test]
    fn a_refusal_holds_the_asking_back_and_a_failure_falls_back() {
        let cell = LeaseCell::new(Rate { count: 100, period: Period::Minute });
        assert!(cell.wants_lease(0));
        cell.refused(0, 500, 3);
        assert!(!cell.wants_lease(SECOND / 4), "the budget is spent for 500 ms");
        assert_eq!(cell.take(SECOND / 4, 1), Err(SECOND / 4), "told when to retry");
        assert!(cell.wants_lease(SECOND));
        cell.failed(SECOND);
        assert!(cell.fallback());
        assert_eq!(cell.fallback_rate().count, 33, "the limit divided among the hosts");
        assert!(cell.wants_lease(2 * SECOND));
        cell.granted(6, 2 * SECOND, 3);
        assert!(!cell.fallback(), "back to leases");
    }
}
