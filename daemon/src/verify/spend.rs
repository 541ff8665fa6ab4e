//! Spending a valid verify's budget: every rate limit it counts against, all or nothing, then its credits;
//! and how each limit's state is reported in the answer. A refused verify spends nothing (reservations made
//! before a later refusal are given back).

use keyward_protocol::{RateLimitStatus, VerifyAnswer, VerifyCode, VerifyRequestRef};

use crate::host::clock::Now;
use crate::keys::hot::{HotKey, HotLimit};
use crate::limits::limiter::Decision;

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
    let mono = now.mono;
    let mut reserved = 0;
    // `Some(None)`: refused by a limit that can never fit the cost.
    let mut retry: Option<Option<u64>> = None;
    for limit in limits_of(key, request) {
        if retry.is_some() {
            if let Err(wait) = limit.gcra.check(&limit.tat, mono, cost) {
                retry = Some(longest(retry.flatten(), wait));
            }
            answer.ratelimit.push(peek(limit, now));
            continue;
        }
        match limit.gcra.reserve(&limit.tat, mono, cost) {
            Decision::Allowed { tat } => {
                answer.ratelimit.push(status(limit, tat, now));
                reserved += 1;
            }
            Decision::Refused { retry_after, tat } => {
                answer.ratelimit.push(status(limit, tat, now));
                retry = Some(retry_after);
            }
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
            limit.gcra.give_back(&limit.tat, cost);
            *shown = peek(limit, now);
        }
    }
}

/// The longer of two retry times, where `None` (never) is longest of all.
fn longest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    a.zip(b).map(|(a, b)| a.max(b))
}

/// A limit's status as of its current timestamp.
pub(super) fn peek(limit: &HotLimit, now: Now) -> RateLimitStatus {
    status(limit, limit.tat.load(std::sync::atomic::Ordering::Acquire), now)
}

fn status(limit: &HotLimit, tat: u64, now: Now) -> RateLimitStatus {
    let (remaining, reset_in) = limit.gcra.status(tat, now.mono);
    RateLimitStatus {
        policy: limit.policy.to_string(),
        limit: limit.gcra.limit(),
        remaining,
        reset_at_ms: now.unix_ms + reset_in.div_ceil(1_000_000) as i64,
        window_seconds: limit.gcra.window_seconds(),
    }
}
