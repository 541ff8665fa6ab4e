//! The HTTP face of a verify answer: which status, error code, message and headers an answer becomes, for
//! every HTTP door keyward has — the tower layer of `keyward-client` and the daemon's forward-auth
//! endpoint — so that both answer alike and the mapping is written once.
//!
//! The body of every refusal is `{"error":{"code":"…","message":"…","type":"…"}}`. A message tells the
//! caller what it can fix and never holds the token, nor anything that says whether a key id exists: an
//! unknown key and a wrong secret both read "The API key provided is invalid".
//!
//! The rate-limit headers are written in two generations of the IETF draft side by side, because clients
//! read both:
//!
//! - `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (draft-ietf-httpapi-ratelimit-headers-05
//!   and earlier, and what most client libraries and gateways understand today): one limit, the most
//!   restrictive of the answer's (the fewest requests remaining; of equals, the one that resets last).
//! - `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers-10, unchanged in -11): every
//!   limit the verify checked, as Structured Field lists named by policy:
//!   `RateLimit-Policy: "free";q=100;w=60` and `RateLimit: "free";r=42;t=30`.
//!
//! Every reset (`RateLimit-Reset`, `t`) is the whole seconds until the limit is fully available again,
//! rounded up, so that waiting that long is always enough. This module only describes answers; it names
//! no HTTP library, and never decides whether a request is allowed.

use crate::{RateLimitStatus, VerifyCode};

/// How to send a key, in every 401 message that is about the request rather than the key.
pub const SEND_BEARER: &str = "send Authorization: Bearer <key>";

/// A refused request: status, stable code, error type, message and headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// 401, 403, 429, 500 or 503.
    pub status: u16,
    /// `invalid_api_key`, `insufficient_scope`, `wrong_workspace`, `rate_limited`, `usage_exceeded`,
    /// `auth_unavailable` or `internal_error`.
    pub code: &'static str,
    /// `authentication_error`, `permission_error`, `rate_limit_error` or `api_error`.
    pub kind: &'static str,
    pub message: String,
    /// The `WWW-Authenticate` challenge (401, and 403 for a missing scope).
    pub challenge: Option<String>,
    /// `Retry-After`, in whole seconds.
    pub retry_after: Option<u64>,
}

impl Refusal {
    /// A 401 `invalid_api_key` with `message`; the challenge names `invalid_token` when a token was given
    /// (RFC 6750 §3: a request without credentials gets a bare challenge).
    pub fn invalid_key(message: impl Into<String>, token_given: bool) -> Refusal {
        Refusal {
            status: 401,
            code: "invalid_api_key",
            kind: "authentication_error",
            message: message.into(),
            challenge: Some(if token_given { r#"Bearer error="invalid_token""# } else { "Bearer" }.to_owned()),
            retry_after: None,
        }
    }

    /// The daemon's answer to a verify that is not `VALID`. `scope` and `workspace` are what the route
    /// required, for the 403 messages.
    pub fn answer(
        code: VerifyCode,
        retry_after_ms: Option<u64>,
        scope: Option<&str>,
        workspace: Option<&str>,
    ) -> Refusal {
        let invalid = |message: &str| Refusal::invalid_key(message, true);
        match code {
            // An HTTP door never sends an empty token, but the daemon's word is mapped all the same.
            VerifyCode::Missing => Refusal::invalid_key(format!("Missing API key: {SEND_BEARER}"), false),
            VerifyCode::Malformed => {
                invalid("Malformed API key: use the full key exactly as it was shown at creation, not just its id")
            }
            VerifyCode::NotFound => invalid("The API key provided is invalid"),
            VerifyCode::Expired => invalid("The API key has expired: create a new key"),
            VerifyCode::Revoked => invalid("The API key has been revoked: create a new key"),
            VerifyCode::Inactive => {
                invalid("The API key is deactivated: ask a workspace admin to activate it, or create a new key")
            }
            VerifyCode::LegacySunset => {
                invalid("Legacy personal API keys no longer work: create a workspace key and use it instead")
            }
            VerifyCode::InsufficientScope => Refusal::insufficient_scope(
                match scope {
                    Some(scope) => format!("This key lacks the {scope} scope"),
                    None => "This key lacks the scope this endpoint requires".into(),
                },
                scope,
            ),
            VerifyCode::WrongWorkspace => Refusal::wrong_workspace(match workspace {
                Some(workspace) => format!("This key cannot act on workspace {workspace}: it belongs to another"),
                None => "This key cannot act on this workspace: it belongs to another".into(),
            }),
            VerifyCode::RateLimited => {
                // Rounded up, and never 0: a client told to retry now would only be refused again.
                let retry_after = retry_after_ms.map(|ms| ms.div_ceil(1000).max(1));
                Refusal {
                    status: 429,
                    code: "rate_limited",
                    kind: "rate_limit_error",
                    message: match retry_after {
                        Some(1) => "Rate limit exceeded: retry after 1 second".into(),
                        Some(seconds) => format!("Rate limit exceeded: retry after {seconds} seconds"),
                        // Only a request costing more than the limit's whole window has no retry time.
                        None => "This request costs more than this key's rate limit allows in one window".into(),
                    },
                    challenge: None,
                    retry_after,
                }
            }
            VerifyCode::UsageExceeded => Refusal {
                status: 429,
                code: "usage_exceeded",
                kind: "rate_limit_error",
                message: "This key has used up its credits: wait for the refill or add credits".into(),
                challenge: None,
                retry_after: None,
            },
            // The daemon answers BUSY as an error, never as a verify code; mapped as that error is.
            VerifyCode::Busy => Refusal::unavailable(),
            // A VALID answer is never a refusal; reaching here means the daemon contradicted itself.
            VerifyCode::Valid => Refusal::internal(),
        }
    }

    /// A 403 `insufficient_scope` saying `message`, with the RFC 6750 §3.1 challenge naming `scope`.
    pub fn insufficient_scope(message: impl Into<String>, scope: Option<&str>) -> Refusal {
        Refusal {
            status: 403,
            code: "insufficient_scope",
            kind: "permission_error",
            message: message.into(),
            // A scope is `a-z0-9:_-` only (the protocol's syntax), safe in a quoted string.
            challenge: Some(match scope {
                Some(scope) => format!(r#"Bearer error="insufficient_scope", scope="{scope}""#),
                None => r#"Bearer error="insufficient_scope""#.to_owned(),
            }),
            retry_after: None,
        }
    }

    /// A 403 `wrong_workspace` saying `message`.
    pub fn wrong_workspace(message: impl Into<String>) -> Refusal {
        Refusal {
            status: 403,
            code: "wrong_workspace",
            kind: "permission_error",
            message: message.into(),
            challenge: None,
            retry_after: None,
        }
    }

    /// The route takes the workspace from the request and this request names none.
    pub fn no_workspace() -> Refusal {
        Refusal::wrong_workspace("This request does not name a workspace")
    }

    /// The daemon could not be asked, or is too busy to answer (unreachable, timed out, overloaded): fail
    /// closed, with a retry.
    pub fn unavailable() -> Refusal {
        Refusal {
            status: 503,
            code: "auth_unavailable",
            kind: "api_error",
            message: "API key verification is temporarily unavailable: retry shortly".into(),
            challenge: None,
            retry_after: Some(1),
        }
    }

    /// The server cannot authenticate the request for a reason of its own (a misconfiguration).
    pub fn internal() -> Refusal {
        Refusal::internal_because("The server could not authenticate this request")
    }

    /// A 500 `internal_error` saying `message`, for a misconfiguration the operator must fix.
    pub fn internal_because(message: impl Into<String>) -> Refusal {
        Refusal {
            status: 500,
            code: "internal_error",
            kind: "api_error",
            message: message.into(),
            challenge: None,
            retry_after: None,
        }
    }

    /// The JSON body: `{"error":{"code":"…","message":"…","type":"…"}}`, ASCII only (other characters
    /// escaped), so that it can also travel in a header.
    pub fn body(&self) -> String {
        format!(
            r#"{{"error":{{"code":{},"message":{},"type":{}}}}}"#,
            json_string(self.code),
            json_string(&self.message),
            json_string(self.kind)
        )
    }
}

/// `text` as a JSON string, quoted, with every character outside printable ASCII escaped (`\uXXXX`, as
/// UTF-16), so the result is valid in a JSON document and in an HTTP header value alike.
pub fn json_string(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            ' '..='~' => quoted.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    quoted.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    quoted.push('"');
    quoted
}

/// Why an `Authorization` value holds no Bearer token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BearerError {
    /// Another scheme than Bearer, or a bare token.
    NotBearer,
    /// `Bearer` with nothing after it.
    Empty,
}

/// The token of an `Authorization: Bearer <token>` value: the scheme in any case, spaces and tabs around
/// the value and between scheme and token ignored.
pub fn bearer_token(value: &str) -> Result<&str, BearerError> {
    let text = value.trim_matches([' ', '\t']);
    let (scheme, token) = match text.split_once([' ', '\t']) {
        Some((scheme, token)) => (scheme, token.trim_matches([' ', '\t'])),
        None => (text, ""),
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(BearerError::NotBearer);
    }
    if token.is_empty() {
        return Err(BearerError::Empty);
    }
    Ok(token)
}

/// The names of the rate-limit headers, lower case.
pub const RATELIMIT_LIMIT: &str = "ratelimit-limit";
pub const RATELIMIT_REMAINING: &str = "ratelimit-remaining";
pub const RATELIMIT_RESET: &str = "ratelimit-reset";
pub const RATELIMIT_POLICY: &str = "ratelimit-policy";
pub const RATELIMIT: &str = "ratelimit";

/// The rate-limit headers for `limits` as (name, value) pairs, every value printable ASCII; none for a key
/// without limits. `now_ms` is Unix milliseconds.
pub fn ratelimit_headers(limits: &[RateLimitStatus], now_ms: i64) -> Vec<(&'static str, String)> {
    let Some(tightest) = most_restrictive(limits) else {
        return Vec::new();
    };
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
    vec![
        (RATELIMIT_LIMIT, tightest.limit.to_string()),
        (RATELIMIT_REMAINING, tightest.remaining.to_string()),
        (RATELIMIT_RESET, seconds_until(tightest.reset_at_ms, now_ms).to_string()),
        (RATELIMIT_POLICY, policies.join(", ")),
        (RATELIMIT, remaining.join(", ")),
    ]
}

/// The limit with the fewest requests remaining; of equals, the one that resets last.
fn most_restrictive(limits: &[RateLimitStatus]) -> Option<&RateLimitStatus> {
    limits.iter().min_by(|a, b| a.remaining.cmp(&b.remaining).then(b.reset_at_ms.cmp(&a.reset_at_ms)))
}

/// Whole seconds from `now_ms` until `at_ms`, rounded up; 0 when it has passed.
pub fn seconds_until(at_ms: i64, now_ms: i64) -> u64 {
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

    fn header<'a>(headers: &'a [(&'static str, String)], name: &str) -> &'a str {
        headers.iter().find(|(n, _)| *n == name).map(|(_, value)| value.as_str()).unwrap_or_else(|| panic!("no {name}"))
    }

    #[test]
    fn every_401_is_invalid_api_key_with_a_specific_message() {
        let codes = [
            (VerifyCode::Malformed, "not just its id"),
            (VerifyCode::NotFound, "The API key provided is invalid"),
            (VerifyCode::Expired, "expired"),
            (VerifyCode::Revoked, "revoked"),
            (VerifyCode::Inactive, "deactivated"),
            (VerifyCode::LegacySunset, "Legacy personal API keys"),
        ];
        for (code, says) in codes {
            let refusal = Refusal::answer(code, None, None, None);
            assert_eq!((refusal.status, refusal.code, refusal.kind), (401, "invalid_api_key", "authentication_error"));
            assert!(refusal.message.contains(says), "{code}: {refusal:?}");
            assert_eq!(refusal.challenge.as_deref(), Some(r#"Bearer error="invalid_token""#));
        }
        assert_eq!(
            Refusal::answer(VerifyCode::NotFound, None, None, None).body(),
            r#"{"error":{"code":"invalid_api_key","message":"The API key provided is invalid","type":"authentication_error"}}"#
        );
        assert_eq!(Refusal::answer(VerifyCode::Missing, None, None, None).challenge.as_deref(), Some("Bearer"));
    }

    #[test]
    fn forbidden_names_the_scope_or_workspace() {
        let refusal = Refusal::answer(VerifyCode::InsufficientScope, None, Some("write:tables"), None);
        assert_eq!((refusal.status, refusal.code, refusal.kind), (403, "insufficient_scope", "permission_error"));
        assert_eq!(refusal.message, "This key lacks the write:tables scope");
        assert_eq!(refusal.challenge.as_deref(), Some(r#"Bearer error="insufficient_scope", scope="write:tables""#));
        let refusal = Refusal::answer(VerifyCode::WrongWorkspace, None, None, Some("acme"));
        assert_eq!((refusal.status, refusal.code), (403, "wrong_workspace"));
        assert!(refusal.message.contains("workspace acme"));
    }

    #[test]
    fn too_many_requests_says_when_to_retry() {
        let refusal = Refusal::answer(VerifyCode::RateLimited, Some(1_001), None, None);
        assert_eq!((refusal.status, refusal.code, refusal.kind), (429, "rate_limited", "rate_limit_error"));
        assert_eq!(refusal.retry_after, Some(2), "rounded up");
        assert_eq!(refusal.message, "Rate limit exceeded: retry after 2 seconds");
        assert_eq!(Refusal::answer(VerifyCode::RateLimited, Some(0), None, None).retry_after, Some(1), "never 0");
        assert_eq!(Refusal::answer(VerifyCode::RateLimited, None, None, None).retry_after, None, "no retry can fit");
        let refusal = Refusal::answer(VerifyCode::UsageExceeded, None, None, None);
        assert_eq!((refusal.status, refusal.code, refusal.retry_after), (429, "usage_exceeded", None));
    }

    #[test]
    fn unavailable_fails_closed_with_a_retry() {
        for refusal in [Refusal::unavailable(), Refusal::answer(VerifyCode::Busy, None, None, None)] {
            assert_eq!((refusal.status, refusal.code, refusal.kind), (503, "auth_unavailable", "api_error"));
            assert_eq!(refusal.retry_after, Some(1));
        }
        assert_eq!(Refusal::answer(VerifyCode::Valid, None, None, None).status, 500);
    }

    #[test]
    fn the_body_is_ascii_json_whatever_the_message() {
        let refusal = Refusal::wrong_workspace("café \"quoted\" \\ \u{1F600}\n");
        let body = refusal.body();
        assert!(body.is_ascii(), "{body}");
        assert!(body.contains(r#""message":"caf\u00e9 \"quoted\" \\ \ud83d\ude00\u000a""#), "{body}");
    }

    #[test]
    fn bearer_in_any_case_with_whitespace_trimmed() {
        for value in ["Bearer kw_live_abc", "bearer kw_live_abc", "BEARER   kw_live_abc  ", "  Bearer\tkw_live_abc"] {
            assert_eq!(bearer_token(value), Ok("kw_live_abc"), "{value:?}");
        }
        for value in ["Basic dXNlcjpwYXNz", "kw_live_abc", "Bearerkw_live_abc"] {
            assert_eq!(bearer_token(value), Err(BearerError::NotBearer), "{value:?}");
        }
        assert_eq!(bearer_token("Bearer"), Err(BearerError::Empty));
        assert_eq!(bearer_token("Bearer   "), Err(BearerError::Empty));
    }

    #[test]
    fn one_limit() {
        let headers = ratelimit_headers(&[limit("free", 100, 42, 29_001, 60)], NOW);
        assert_eq!(header(&headers, RATELIMIT_LIMIT), "100");
        assert_eq!(header(&headers, RATELIMIT_REMAINING), "42");
        assert_eq!(header(&headers, RATELIMIT_RESET), "30", "rounded up");
        assert_eq!(header(&headers, RATELIMIT_POLICY), r#""free";q=100;w=60"#);
        assert_eq!(header(&headers, RATELIMIT), r#""free";r=42;t=30"#);
    }

    #[test]
    fn the_most_restrictive_limit_leads_and_every_limit_is_listed() {
        let limits = [limit("custom", 1000, 900, 60_000, 3600), limit("exports", 10, 2, 1_500, 3600)];
        let headers = ratelimit_headers(&limits, NOW);
        assert_eq!(header(&headers, RATELIMIT_LIMIT), "10");
        assert_eq!(header(&headers, RATELIMIT_REMAINING), "2");
        assert_eq!(header(&headers, RATELIMIT_RESET), "2");
        assert_eq!(header(&headers, RATELIMIT_POLICY), r#""custom";q=1000;w=3600, "exports";q=10;w=3600"#);
        assert_eq!(header(&headers, RATELIMIT), r#""custom";r=900;t=60, "exports";r=2;t=2"#);

        let tie = [limit("a", 5, 0, 1_000, 1), limit("b", 5, 0, 9_000, 1)];
        assert_eq!(header(&ratelimit_headers(&tie, NOW), RATELIMIT_RESET), "9", "of equals, the one that resets last");
    }

    #[test]
    fn no_limits_no_headers_and_odd_names_stay_valid() {
        assert!(ratelimit_headers(&[], NOW).is_empty());
        let headers = ratelimit_headers(&[limit("we\"ird\\ é\n", 1, 0, -5_000, 0)], NOW);
        assert_eq!(header(&headers, RATELIMIT), r#""we\"ird\\ ??";r=0;t=0"#, "a past reset is 0");
        assert_eq!(header(&headers, RATELIMIT_POLICY), r#""we\"ird\\ ??";q=1;w=1"#, "w is never 0");
        assert_eq!(seconds_until(NOW + 1, NOW), 1);
        assert_eq!(seconds_until(NOW + 1000, NOW), 1);
        assert_eq!(seconds_until(NOW + 1001, NOW), 2);
    }
}
