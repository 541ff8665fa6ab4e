//! The rate-limit response headers: what a verify said about the key's limits, in the words HTTP clients
//! read.
//!
//! Two generations of the IETF draft are written side by side, because clients read both:
//!
//! - `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (draft-ietf-httpapi-ratelimit-headers-05
//!   and earlier, and what most client libraries and gateways understand today): one limit, the most
//!   restrictive of the answer's (the fewest requests remaining; of equals, the one that resets last).
//! - `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers-10, unchanged in -11): every
//!   limit the verify checked, as Structured Field lists named by policy:
//!   `RateLimit-Policy: "free";q=100;w=60` and `RateLimit: "free";r=42;t=30`.
//!
//! Every reset (`RateLimit-Reset`, `t`) is the whole seconds until the limit is fully available again,
//! rounded up, so that waiting that long is always enough. This module only formats; it never decides
//! whether a request is allowed.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use keyward_protocol::RateLimitStatus;

pub(crate) const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
pub(crate) const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
pub(crate) const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
pub(crate) const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub(crate) const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Sets the rate-limit headers for `limits` (replacing any the inner service set); sets nothing for a key
/// without limits. `now_ms` is Unix milliseconds.
pub(crate) fn insert_headers(headers: &mut HeaderMap, limits: &[RateLimitStatus], now_ms: i64) {
    let Some(tightest) = most_restrictive(limits) else {
        return;
    };
    headers.insert(RATELIMIT_LIMIT, HeaderValue::from(tightest.limit));
    headers.insert(RATELIMIT_REMAINING, HeaderValue::from(tightest.remaining));
    headers.insert(RATELIMIT_RESET, HeaderValue::from(seconds_until(tightest.reset_at_ms, now_ms)));
    let policies: Vec<String> = limits
        .iter()
        .map(|limit| format!("{};q={};w={}", sf_string(&limit.policy), limit.limit, limit.window_seconds.max(1)))
        .collect();
    let remaining: Vec<String> = limits
        .iter()
        .map(|limit| {
            format!("{};r={};t={}", sf_string(&limit.policy), limit.remaining, seconds_until(limit.reset_at_ms, now_ms))
        })
        .collect();
    // Both values are printable ASCII by construction (sf_string drops everything else).
    if let Ok(value) = HeaderValue::try_from(policies.join(", ")) {
        headers.insert(RATELIMIT_POLICY, value);
    }
    if let Ok(value) = HeaderValue::try_from(remaining.join(", ")) {
        headers.insert(RATELIMIT, value);
    }
}

/// The limit with the fewest requests remaining; of equals, the one that resets last.
fn most_restrictive(limits: &[RateLimitStatus]) -> Option<&RateLimitStatus> {
    limits.iter().min_by(|a, b| a.remaining.cmp(&b.remaining).then(b.reset_at_ms.cmp(&a.reset_at_ms)))
}

/// Whole seconds from `now_ms` until `at_ms`, rounded up; 0 when it has passed.
pub(crate) fn seconds_until(at_ms: i64, now_ms: i64) -> u64 {
    let millis = at_ms.saturating_sub(now_ms).max(0) as u64;
    millis.div_ceil(1000)
}

/// `text` as a Structured Field String (RFC 8941 §3.3.3): quoted, with `\` and `"` escaped. Characters a
/// String cannot hold (controls, non-ASCII) become `?`: policy names come from the daemon's configuration,
/// and a header must never fail to build because of one.
fn sf_string(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                quoted.push('\\');
                quoted.push(c);
            }
            ' '..='~' => quoted.push(c),
            _ => quoted.push('?'),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_435_200_000;

    fn limit(policy: &str, limit: u64, remaining: u64, reset_in_ms: i64, window: u64) -> RateLimitStatus {
        RateLimitStatus {
            policy: policy.into(),
            limit,
            remaining,
            reset_at_ms: NOW + reset_in_ms,
            window_seconds: window,
        }
    }

    fn header<'a>(headers: &'a HeaderMap, name: &HeaderName) -> &'a str {
        headers.get(name).unwrap_or_else(|| panic!("no {name}")).to_str().unwrap()
    }

    #[test]
    fn one_limit() {
        let mut headers = HeaderMap::new();
        insert_headers(&mut headers, &[limit("free", 100, 42, 29_001, 60)], NOW);
        assert_eq!(header(&headers, &RATELIMIT_LIMIT), "100");
        assert_eq!(header(&headers, &RATELIMIT_REMAINING), "42");
        assert_eq!(header(&headers, &RATELIMIT_RESET), "30", "rounded up");
        assert_eq!(header(&headers, &RATELIMIT_POLICY), r#""free";q=100;w=60"#);
        assert_eq!(header(&headers, &RATELIMIT), r#""free";r=42;t=30"#);
    }

    #[test]
    fn the_most_restrictive_limit_leads_and_every_limit_is_listed() {
        let limits = [limit("custom", 1000, 900, 60_000, 3600), limit("exports", 10, 2, 1_500, 3600)];
        let mut headers = HeaderMap::new();
        insert_headers(&mut headers, &limits, NOW);
        assert_eq!(header(&headers, &RATELIMIT_LIMIT), "10");
        assert_eq!(header(&headers, &RATELIMIT_REMAINING), "2");
        assert_eq!(header(&headers, &RATELIMIT_RESET), "2");
        assert_eq!(header(&headers, &RATELIMIT_POLICY), r#""custom";q=1000;w=3600, "exports";q=10;w=3600"#);
        assert_eq!(header(&headers, &RATELIMIT), r#""custom";r=900;t=60, "exports";r=2;t=2"#);

        let tie = [limit("a", 5, 0, 1_000, 1), limit("b", 5, 0, 9_000, 1)];
        insert_headers(&mut headers, &tie, NOW);
        assert_eq!(header(&headers, &RATELIMIT_RESET), "9", "of equals, the one that resets last");
    }

    #[test]
    fn no_limits_no_headers_and_odd_names_stay_valid() {
        let mut headers = HeaderMap::new();
        insert_headers(&mut headers, &[], NOW);
        assert!(headers.is_empty());
        insert_headers(&mut headers, &[limit("we\"ird\\ é\n", 1, 0, -5_000, 0)], NOW);
        assert_eq!(header(&headers, &RATELIMIT), r#""we\"ird\\ ??";r=0;t=0"#, "a past reset is 0");
        assert_eq!(header(&headers, &RATELIMIT_POLICY), r#""we\"ird\\ ??";q=1;w=1"#, "w is never 0");
        assert_eq!(seconds_until(NOW + 1, NOW), 1);
        assert_eq!(seconds_until(NOW + 1000, NOW), 1);
        assert_eq!(seconds_until(NOW + 1001, NOW), 2);
    }
}
