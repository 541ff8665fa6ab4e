//! The rules every field of a management request must meet. Each check returns the normalised value or
//! an [`DaemonError::InvalidArgument`] whose message says what is wrong and what is allowed.
//!
//! Messages never quote a field that could hold a token (key ids typed by an operator are not echoed).

use std::collections::BTreeMap;

use keyward_protocol::token::{self, Token};
use keyward_protocol::{ExpirySpec, KeyId, Limits, RatePolicy, Refill, Role, ScopeSet};

use crate::limits::Plans;

use crate::error::DaemonError;

const NAME_CHARS: std::ops::RangeInclusive<usize> = 3..=50;
const DESCRIPTION_MAX_CHARS: usize = 500;
const WORKSPACE_MAX_LEN: usize = 64;
const METADATA_MAX_BYTES: usize = 4096;
const METADATA_KEY_MAX_LEN: usize = 64;
const ACTOR_MAX_CHARS: usize = 100;
/// The longest grace window a regenerate may leave the old token working.
pub use keyward_protocol::lifecycle::MAX_GRACE_SECONDS;

fn invalid(message: impl Into<String>) -> DaemonError {
    DaemonError::InvalidArgument(message.into())
}

/// A key name: trimmed, 3 to 50 characters, no control characters.
pub fn name(raw: &str) -> Result<String, DaemonError> {
    let name = raw.trim();
    let chars = name.chars().count();
    if !NAME_CHARS.contains(&chars) {
        let (min, max) = (NAME_CHARS.start(), NAME_CHARS.end());
        return Err(invalid(format!("name must be {min} to {max} characters (got {chars})")));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid("name must not contain control characters"));
    }
    Ok(name.to_owned())
}

/// An optional description: trimmed, at most 500 characters; line breaks and tabs allowed, no other control
/// characters. Empty means none.
pub fn description(raw: Option<&str>) -> Result<Option<String>, DaemonError> {
    let Some(text) = raw.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let chars = text.chars().count();
    if chars > DESCRIPTION_MAX_CHARS {
        return Err(invalid(format!("description must be at most {DESCRIPTION_MAX_CHARS} characters (got {chars})")));
    }
    if text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(invalid("description must not contain control characters other than line breaks and tabs"));
    }
    Ok(Some(text.to_owned()))
}

/// A workspace id: 1 to 64 characters of `A-Z a-z 0-9 . _ -`, starting with a letter or digit.
pub fn workspace(raw: &str) -> Result<String, DaemonError> {
    identifier(raw, "workspace")
}

/// An account id, with the same rules as a workspace id.
pub fn account(raw: &str) -> Result<String, DaemonError> {
    identifier(raw, "account")
}

fn identifier(raw: &str, what: &str) -> Result<String, DaemonError> {
    let ok = raw.len() <= WORKSPACE_MAX_LEN
        && raw.bytes().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && raw.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(invalid(format!(
            "{what} must be 1 to {WORKSPACE_MAX_LEN} characters of letters, digits, '.', '_' or '-', starting with a \
             letter or digit"
        )))
    }
}

/// A member key can never hold the `admin` scope.
pub fn role_allows(role: Role, scopes: &[String]) -> Result<(), DaemonError> {
    if role == Role::Member && scopes.iter().any(|s| s == "admin") {
        return Err(invalid("a member key cannot hold the admin scope; give the key --role admin"));
    }
    Ok(())
}

/// Metadata: keys of 1 to 64 characters of `A-Z a-z 0-9 . _ -`, values without control characters, at most
/// 4 KiB of keys and values in all.
pub fn metadata(map: &BTreeMap<String, String>) -> Result<(), DaemonError> {
    for (key, value) in map {
        let key_ok = (1..=METADATA_KEY_MAX_LEN).contains(&key.len())
            && key.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
        if !key_ok {
            let rule = format!("1 to {METADATA_KEY_MAX_LEN} letters, digits, '.', '_' or '-'");
            return Err(invalid(format!("metadata key {key:?} must be {rule}")));
        }
        if value.chars().any(char::is_control) {
            return Err(invalid(format!("metadata value of {key:?} must not contain control characters")));
        }
    }
    let size: usize = map.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > METADATA_MAX_BYTES {
        return Err(invalid(format!(
            "metadata must be at most {METADATA_MAX_BYTES} bytes of keys and values (got {size})"
        )));
    }
    Ok(())
}

/// A token that may be imported ([`token::check_importable`]).
pub fn importable_token(text: &str) -> Result<(), DaemonError> {
    token::check_importable(text).map_err(|e| invalid(e.to_string()))
}

const MAX_NAMED_LIMITS: usize = 16;

/// A key's limits: the plan must exist, every rate must count 1 to 10⁹, named limits need word names, a
/// monthly refill needs a day of the month, and a refill without a balance starts the balance at the refill
/// amount.
pub fn limits(limits: &Limits, plans: &Plans) -> Result<Limits, DaemonError> {
    match &limits.rate {
        RatePolicy::Plan(name) if !plans.contains_key(name) => {
            let known: Vec<&str> = plans.keys().map(String::as_str).collect();
            return Err(invalid(format!("unknown plan {name:?}; the plans are: {}", known.join(", "))));
        }
        RatePolicy::Custom(rate) => rate.check().map_err(|e| invalid(e.to_string()))?,
        RatePolicy::Plan(_) | RatePolicy::Unlimited => {}
    }
    if limits.named.len() > MAX_NAMED_LIMITS {
        return Err(invalid("a key may have at most 16 named limits"));
    }
    for (name, rate) in &limits.named {
        keyward_protocol::limits::check_limit_name(name).map_err(|e| invalid(e.to_string()))?;
        rate.check().map_err(|e| invalid(format!("limit {name}: {e}")))?;
    }
    if let Some(refill) = &limits.refill {
        refill.check().map_err(|e| invalid(e.to_string()))?;
    }
    let credits = match (limits.credits, limits.refill) {
        (None, Some(Refill::Daily { amount } | Refill::Monthly { amount, .. })) => Some(amount),
        (credits, _) => credits,
    };
    Ok(Limits { credits, ..limits.clone() })
}

/// The optional actor label a caller passes for the audit log.
pub fn actor(raw: &str) -> Result<String, DaemonError> {
    let label = raw.trim();
    if label.is_empty() || label.chars().count() > ACTOR_MAX_CHARS || label.chars().any(char::is_control) {
        return Err(invalid(format!("actor must be 1 to {ACTOR_MAX_CHARS} characters without control characters")));
    }
    Ok(label.to_owned())
}

/// A non-empty set of valid scopes, in canonical form.
pub fn scopes(raw: &[String]) -> Result<Vec<String>, DaemonError> {
    if raw.is_empty() {
        return Err(invalid("at least one scope is required (e.g. read:tables, write:all, admin)"));
    }
    let set = ScopeSet::parse(raw).map_err(|e| invalid(e.to_string()))?;
    Ok(set.to_strings())
}

/// The expiry time for a key created at `now`; refuses a time that has already passed.
pub fn expiry(spec: ExpirySpec, now: i64) -> Result<Option<i64>, DaemonError> {
    match spec.resolve(now) {
        Some(at) if at <= now => Err(invalid("expiry must be in the future")),
        resolved => Ok(resolved),
    }
}

/// A key id typed by an operator. Never echoes the input: an operator may paste a whole token by mistake.
pub fn key_id(raw: &str) -> Result<KeyId, DaemonError> {
    KeyId::parse(raw).map_err(|_| {
        if Token::parse(raw).is_ok() {
            invalid("that is a whole token; pass the key id (the 12 characters after kw_live_ or kw_test_)")
        } else {
            invalid("a key id is 12 letters and digits")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(name("  CI pipeline ").unwrap(), "CI pipeline");
        assert!(name("ab").is_err());
        assert!(name(&"x".repeat(51)).is_err());
        assert!(name(&"é".repeat(50)).is_ok(), "counted in characters, not bytes");
        assert!(name("bad\u{7}name").is_err());
    }

    #[test]
    fn descriptions_workspaces_and_scopes() {
        assert_eq!(description(Some("  ")).unwrap(), None);
        assert!(description(Some("line\nbreak")).is_ok());
        assert!(description(Some(&"d".repeat(501))).is_err());
        assert!(workspace("ws_1.prod-eu").is_ok());
        for bad in ["", "-ws", "has space", &"w".repeat(65)] {
            assert!(workspace(bad).is_err(), "accepted {bad:?}");
        }
        assert_eq!(scopes(&["write:tables".into(), "read:tables".into()]).unwrap(), ["read:tables", "write:tables"]);
        assert!(scopes(&[]).is_err());
        assert!(scopes(&["root".into()]).is_err());
    }

    #[test]
    fn lifecycle_fields() {
        assert!(role_allows(Role::Member, &["admin".into()]).is_err());
        assert!(role_allows(Role::Admin, &["admin".into()]).is_ok());
        assert!(role_allows(Role::Member, &["write:all".into()]).is_ok());
        let mut meta = BTreeMap::from([("team".to_string(), "billing".to_string())]);
        assert!(metadata(&meta).is_ok());
        meta.insert("big".into(), "x".repeat(4090));
        assert!(metadata(&meta).is_err());
        assert!(metadata(&BTreeMap::from([("bad key".to_string(), String::new())])).is_err());
        assert!(importable_token("sk_prod_3f9a1c7e2b8d4056").is_ok());
        assert!(importable_token("short").is_err());
        assert!(importable_token("has a space in it ok").is_err());
        assert!(actor("alice@example.com").is_ok());
        assert!(actor("").is_err());
    }

    #[test]
    fn expiry_must_be_ahead() {
        assert_eq!(expiry(ExpirySpec::Never, 100).unwrap(), None);
        assert_eq!(expiry(ExpirySpec::Days(15), 0).unwrap(), Some(15 * 86_400));
        assert!(expiry(ExpirySpec::At(50), 100).is_err());
    }
}
