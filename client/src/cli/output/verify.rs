//! What `keyward verify` prints: the answer's code and the key it names, when to retry and the credits
//! left as text; every field of the answer, the key's included, as JSON (`null` where the daemon named no
//! key). The token itself is never printed.

use std::collections::BTreeMap;
use std::io::{self, Write};

use keyward_protocol::{RateLimitStatus, VerifyAnswer};
use serde::Serialize;

use super::format::{plural, printable, rfc3339, rfc3339_millis, wait_text};
use super::{write_json, Format};

/// A verify answer as JSON. The key fields are `null` when the daemon named no key.
#[derive(Debug, Serialize)]
struct VerifyJson<'a> {
    valid: bool,
    code: &'static str,
    key_id: Option<&'a str>,
    workspace: Option<&'a str>,
    name: Option<&'a str>,
    env: Option<&'static str>,
    scopes: Option<&'a [String]>,
    expires_at: Option<String>,
    role: Option<&'static str>,
    metadata: Option<&'a BTreeMap<String, String>>,
    account: Option<&'a str>,
    retry_after_ms: Option<u64>,
    ratelimit: Vec<RateLimitJson<'a>>,
    credits: Option<u64>,
}

/// One rate limit a verify checked.
#[derive(Debug, Serialize)]
struct RateLimitJson<'a> {
    policy: &'a str,
    limit: u64,
    remaining: u64,
    reset_at: String,
    window_seconds: u64,
}

fn verify_json(answer: &VerifyAnswer) -> VerifyJson<'_> {
    let key = answer.key.as_ref();
    VerifyJson {
        valid: answer.code.is_valid(),
        code: answer.code.as_str(),
        key_id: key.map(|k| k.id.as_str()),
        workspace: key.map(|k| k.workspace.as_str()),
        name: key.map(|k| k.name.as_str()),
        env: key.map(|k| k.env.as_str()),
        scopes: key.map(|k| k.scopes.as_slice()),
        expires_at: key.and_then(|k| k.expires_at).map(rfc3339),
        role: key.map(|k| k.role.as_str()),
        metadata: key.map(|k| &k.metadata),
        account: key.and_then(|k| k.account.as_deref()),
        retry_after_ms: answer.retry_after_ms,
        ratelimit: answer.ratelimit.iter().map(rate_limit_json).collect(),
        credits: answer.credits,
    }
}

fn rate_limit_json(status: &RateLimitStatus) -> RateLimitJson<'_> {
    RateLimitJson {
        policy: &status.policy,
        limit: status.limit,
        remaining: status.remaining,
        reset_at: rfc3339_millis(status.reset_at_ms),
        window_seconds: status.window_seconds,
    }
}

/// Prints a verify answer: `VALID key ID (workspace WS)`, or only the code when no key was named, then
/// when to retry and the credits left, when the daemon said.
pub(crate) fn verified(out: &mut dyn Write, format: Format, answer: &VerifyAnswer) -> io::Result<()> {
    if format == Format::Json {
        return write_json(out, &verify_json(answer));
    }
    let mut line = match &answer.key {
        Some(key) => format!("{} key {} (workspace {})", answer.code, key.id, printable(&key.workspace)),
        None => answer.code.to_string(),
    };
    if let Some(retry) = answer.retry_after_ms {
        line.push_str(&format!("; retry after {}", wait_text(retry)));
    }
    if let Some(credits) = answer.credits {
        line.push_str(&format!("; {} left", plural(credits, "credit", "credits")));
    }
    writeln!(out, "{line}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::output::samples::{render, render_json};
    use crate::fixtures::{self, NOON};
    use keyward_protocol::{Role, VerifiedKey, VerifyCode};
    use serde_json::{json, Value};
    use std::sync::Arc;

    #[test]
    fn verify_json_names_the_key_or_nulls() {
        let key = VerifiedKey {
            scopes: vec!["admin".into()],
            role: Role::Admin,
            metadata: BTreeMap::from([("team".into(), "billing".into())]),
            ..fixtures::verified_key("AbCdEf012345")
        };
        let answer = VerifyAnswer { key: Some(Arc::new(key)), ..VerifyAnswer::refused(VerifyCode::Valid) };
        let value = render_json(|out| verified(out, Format::Json, &answer));
        assert_eq!(
            value,
            json!({
                "valid": true,
                "code": "VALID",
                "key_id": "AbCdEf012345",
                "workspace": "acme",
                "name": "CI deploy",
                "env": "live",
                "scopes": ["admin"],
                "expires_at": null,
                "role": "admin",
                "metadata": {"team": "billing"},
                "account": null,
                "retry_after_ms": null,
                "ratelimit": [],
                "credits": null,
            })
        );
        let text = render(|out| verified(out, Format::Text, &answer));
        assert_eq!(text, "VALID key AbCdEf012345 (workspace acme)\n");

        let not_found = VerifyAnswer::refused(VerifyCode::NotFound);
        let value = render_json(|out| verified(out, Format::Json, &not_found));
        assert_eq!(value["valid"], false);
        assert_eq!(value["code"], "NOT_FOUND");
        for field in ["key_id", "scopes", "role", "metadata", "account", "credits", "retry_after_ms"] {
            assert_eq!(value[field], Value::Null, "{field}");
        }
        assert_eq!(render(|out| verified(out, Format::Text, &not_found)), "NOT_FOUND\n");
    }

    #[test]
    fn a_rate_limited_answer_says_when_to_retry() {
        let status = |policy: &str, remaining| RateLimitStatus {
            policy: policy.into(),
            limit: 2,
            remaining,
            reset_at_ms: NOON * 1000 + 1500,
            window_seconds: 3600,
        };
        let answer = VerifyAnswer {
            key: Some(Arc::new(fixtures::verified_key("AbCdEf012345"))),
            retry_after_ms: Some(1800),
            ratelimit: vec![status("custom", 1), status("exports", 0)],
            credits: Some(7),
            ..VerifyAnswer::refused(VerifyCode::RateLimited)
        };
        let value = render_json(|out| verified(out, Format::Json, &answer));
        assert_eq!((&value["valid"], &value["code"]), (&json!(false), &json!("RATE_LIMITED")));
        assert_eq!(value["retry_after_ms"], 1800);
        assert_eq!(value["credits"], 7);
        assert_eq!(
            value["ratelimit"][1],
            json!({"policy": "exports", "limit": 2, "remaining": 0, "reset_at": "2026-11-23T12:00:01.5Z", "window_seconds": 3600})
        );
        let text = render(|out| verified(out, Format::Text, &answer));
        assert_eq!(text, "RATE_LIMITED key AbCdEf012345 (workspace acme); retry after 1.8 s; 7 credits left\n");
    }
}
