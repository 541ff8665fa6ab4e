//! The rate-limit response headers: what a verify said about the key's limits, in the words HTTP clients
//! read. Which headers and what they hold is the protocol's ([`keyward_protocol::http::ratelimit_headers`],
//! shared with the daemon's forward-auth endpoint); this module puts them in an `http` header map.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use keyward_protocol::http::ratelimit_headers;
use keyward_protocol::RateLimitStatus;

/// Sets the rate-limit headers for `limits` (replacing any the inner service set); sets nothing for a key
/// without limits. `now_ms` is Unix milliseconds.
pub(crate) fn insert_headers(headers: &mut HeaderMap, limits: &[RateLimitStatus], now_ms: i64) {
    for (name, value) in ratelimit_headers(limits, now_ms) {
        // Every value is printable ASCII by construction.
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_protocols_headers_replace_the_inner_services() {
        let mut headers = HeaderMap::new();
        headers.insert("ratelimit-remaining", HeaderValue::from_static("999"));
        let limit = RateLimitStatus {
            policy: "free".into(),
            limit: 100,
            remaining: 42,
            reset_at_ms: 30_000,
            window_seconds: 60,
        };
        insert_headers(&mut headers, &[limit], 1_000);
        assert_eq!(headers["ratelimit-remaining"], "42");
        assert_eq!(headers["ratelimit-reset"], "29");
        assert_eq!(headers["ratelimit"], r#""free";r=42;t=29"#);
        insert_headers(&mut headers, &[], 0);
        assert_eq!(headers.len(), 5, "no limits, nothing changed");
    }
}
