//! Spending a valid verify's budget: every rate limit it counts against, all or nothing, then its credits
//! (a fleet-wide limit from its lease, [`crate::limits::lease`]);
//! and how each limit's state is reported in the answer. A refused verify spends nothing (reservations made
//! before a later refusal are given back).

use keyward_protocol::{RateLimitStatus, VerifyAnswer, VerifyCode, VerifyRequestRef};

use crate::host::clock::Now;
use crate::keys::hot::{HotKey, HotLimit};
use crate::limits::lease::{self, LeaseCell};
use crate::limits::limiter::{Decision, Gcra};

/// How long a verify refused because this host's grant of escrowed credits ran out (fleet mode) is told to
/// wait: about one round trip to the engine for the next grant.
const ESCROW_RETRY_AFTER_MS: u64 = 50;

/// The limits a request counts against: the key's main limit, then the named limits it asks for (names
/// the key does not have are ignored).
pub(super) fn limits_of<'a>(
    key: &'a HotKey,
    request: &'a VerifyRequestRef<'_>,
) -> impl Iterator<Item = &'a HotLimit> + 'a {
    let named = key.named_limits.iter().filter(|limit| request.limits.iter().any(|name| **name == *limit.policy));
    key.main_limit.iter().chain(named)
}

/// Reserves every limit and the credits, all or nothing, and records the outcome in `answer`: every limit
/// that applies is reported, and a refusal's retry time is the longest any refusing limit asks for.
pub(super) fn spend(key: &HotKey, request: &VerifyRequestRef<'_>, now: Now, answer: &mut VerifyAnswer) {
    let cost = u64::from(request.cost);
    let mut reserved = 0;
    // `Some(None)`: refused by a limit that can never fit the cost.
    let mut retry: Option<Option<u64>> = None;
    for limit in limits_of(key, request) {
        if retry.is_some() {
            if let Err(wait) = check(limit, now, cost) {
                retry = Some(longest(retry.flatten(), wait));
            }
            answer.ratelimit.push(peek(limit, now));
            continue;
        }
        let (decided, shown) = reserve(limit, now, cost);
        answer.ratelimit.push(shown);
        match decided {
            Ok(()) => reserved += 1,
            Err(retry_after) => retry = Some(retry_after),
        }
    }
    if let Some(wait) = retry {
        answer.code = VerifyCode::RateLimited;
        answer.retry_after_ms = wait.map(|ns| ns.div_ceil(1_000_000));
    }
    if answer.code.is_valid() {
        if let Some(cell) = &key.credits {
            match cell.spend(cost, key.record.limits.refill, now.unix) {
                Ok(balance) => answer.credits = Some(cell.shown(balance)),
                Err(balance) => {
                    answer.credits = Some(cell.shown(balance));
                    answer.code = VerifyCode::UsageExceeded;
                    // Fleet mode: this host's grant ran out and the next is on its way.
                    if cell.may_get_more() {
                        answer.retry_after_ms = Some(ESCROW_RETRY_AFTER_MS);
                    }
                }
            }
        }
    } else {
        // Refused by a rate limit: nothing was spent, and the balance is reported as for any other answer
        // about a key with credits, so the app server can show it on its 429.
        answer.credits = key.credits.as_ref().map(|cell| cell.shown_balance());
    }
    if !answer.code.is_valid() && reserved > 0 {
        for (limit, shown) in limits_of(key, request).take(reserved).zip(answer.ratelimit.iter_mut()) {
            give_back(limit, cost);
            *shown = peek(limit, now);
        }
    }
}

/// Who decides a limit now: its lease from the engine (a fleet-wide limit), or a limiter of this host's
/// (every other limit, and a fleet-wide one's fallback while the engine cannot be reached).
enum Decider<'a> {
    Lease(&'a LeaseCell),
    Local(Gcra),
}

fn decider(limit: &HotLimit) -> Decider<'_> {
    match limit.lease.as_deref() {
        Some(lease) if !lease.decides_locally() => Decider::Lease(lease),
        Some(lease) => Decider::Local(Gcra::new(lease.fallback_rate())),
        None => Decider::Local(limit.gcra),
    }
}

/// Spends `cost` of `limit`: whether it passed (else how long until a retry would), and its status after.
fn reserve(limit: &HotLimit, now: Now, cost: u64) -> (Result<(), Option<u64>>, RateLimitStatus) {
    match decider(limit) {
        Decider::Lease(lease) => {
            let decided = lease.take(now.mono, cost).map_err(Some);
            (decided, leased_status(limit, lease, now))
        }
        Decider::Local(gcra) => match gcra.reserve(&limit.tat, now.mono, cost) {
            Decision::Allowed { tat } => (Ok(()), status(limit, &gcra, tat, now)),
            Decision::Refused { retry_after, tat } => (Err(retry_after), status(limit, &gcra, tat, now)),
        },
    }
}

/// Whether `cost` would pass `limit`, without spending.
fn check(limit: &HotLimit, now: Now, cost: u64) -> Result<(), Option<u64>> {
    match decider(limit) {
        Decider::Lease(lease) => lease.take(now.mono, 0).map_err(Some).and_then(|()| {
            if lease.remaining(now.mono) >= cost {
                Ok(())
            } else {
                Err(Some(lease::RETRY_AFTER_MS * 1_000_000))
            }
        }),
        Decider::Local(gcra) => gcra.check(&limit.tat, now.mono, cost),
    }
}

/// Gives back a reservation of `cost` made by [`reserve`].
fn give_back(limit: &HotLimit, cost: u64) {
    match decider(limit) {
        Decider::Lease(lease) => lease.give_back(cost),
        Decider::Local(gcra) => gcra.give_back(&limit.tat, cost),
    }
}

/// The longer of two retry times, where `None` (never) is longest of all.
fn longest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    a.zip(b).map(|(a, b)| a.max(b))
}

/// A limit's status as it stands.
pub(super) fn peek(limit: &HotLimit, now: Now) -> RateLimitStatus {
    match decider(limit) {
        Decider::Lease(lease) => leased_status(limit, lease, now),
        Decider::Local(gcra) => status(limit, &gcra, limit.tat.load(std::sync::atomic::Ordering::Acquire), now),
    }
}

/// A fleet-wide limit's status on this host: what is left of its lease, until the lease ends.
fn leased_status(limit: &HotLimit, lease: &LeaseCell, now: Now) -> RateLimitStatus {
    RateLimitStatus {
        policy: limit.policy.to_string(),
        limit: limit.gcra.limit(),
        remaining: lease.remaining(now.mono),
        reset_at_ms: now.unix_ms + lease.lease_ms() as i64,
        window_seconds: limit.gcra.window_seconds(),
    }
}

fn status(limit: &HotLimit, gcra: &Gcra, tat: u64, now: Now) -> RateLimitStatus {
    let (remaining, reset_in) = gcra.status(tat, now.mono);
    RateLimitStatus {
        policy: limit.policy.to_string(),
        limit: gcra.limit(),
        remaining,
        reset_at_ms: now.unix_ms + reset_in.div_ceil(1_000_000) as i64,
        window_seconds: gcra.window_seconds(),
    }
}
