//! What the inner service learns about the caller: [`VerifiedKey`] in the request's extensions after a
//! valid verify, or [`Unverified`] when the layer failed open.
//!
//! With the `axum` feature both are read by extractors: `VerifiedKey` (refusing the request when absent)
//! and `Option<VerifiedKey>`.

use std::collections::BTreeMap;

use keyward_protocol::{Environment, RateLimitStatus, Role, ScopeSet, VerifyAnswer};

/// The key a request was verified with, as the handler sees it: who it is, what it may do, and what is
/// left of its limits after this request. Inserted into the request's extensions by
/// [`KeywardService`](super::KeywardService) before the inner service is called; never holds the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedKey {
    /// The key's id (12 characters, the `kw_live_<id>…` part of the token; safe to log).
    pub id: String,
    /// The workspace the key belongs to (for a legacy personal key, the workspace it was imported into).
    pub workspace: String,
    /// The key's name, for people.
    pub name: String,
    pub env: Environment,
    /// Canonical scope strings (`read:tables`, `write:all`, `admin`).
    pub scopes: Vec<String>,
    pub role: Role,
    /// Unix seconds; `None` for a key that never expires.
    pub expires_at: Option<i64>,
    /// The key's metadata labels.
    pub metadata: BTreeMap<String, String>,
    /// For a legacy personal key: the account it belongs to.
    pub account: Option<String>,
    /// Every rate limit this request counted against, after counting it.
    pub ratelimit: Vec<RateLimitStatus>,
    /// The key's remaining credits, for a key that has credits.
    pub credits: Option<u64>,
}

impl VerifiedKey {
    /// Whether the key holds `scope` or a scope that implies it (`write:tables` implies `read:tables`,
    /// `write:all` implies both, `admin` implies everything), for checks finer than the route's. An
    /// invalid scope string is held by nobody.
    pub fn has_scope(&self, scope: &str) -> bool {
        ScopeSet::parse(&self.scopes).and_then(|held| held.grants(scope)).unwrap_or(false)
    }

    /// The key of a `VALID` answer; `None` if the answer names no key.
    pub(crate) fn from_answer(answer: VerifyAnswer) -> Option<VerifiedKey> {
        let key = std::sync::Arc::unwrap_or_clone(answer.key?);
        Some(VerifiedKey {
            id: key.id,
            workspace: key.workspace,
            name: key.name,
            env: key.env,
            scopes: key.scopes,
            role: key.role,
            expires_at: key.expires_at,
            metadata: key.metadata,
            account: key.account,
            ratelimit: answer.ratelimit,
            credits: answer.credits,
        })
    }
}

/// Put in a request's extensions, instead of a [`VerifiedKey`], when the daemon could not be asked and
/// the layer was set to [fail open](super::OnUnavailable::FailOpen): the request was **not**
/// authenticated. A handler that serves such requests should serve only what an anonymous caller may see.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unverified;

#[cfg(test)]
mod tests {
    use keyward_protocol::{VerifyAnswer, VerifyCode};

    use super::*;
    use crate::fixtures;

    #[test]
    fn a_valid_answer_becomes_the_handlers_key() {
        let answer = VerifyAnswer {
            key: Some(std::sync::Arc::new(keyward_protocol::VerifiedKey {
                scopes: vec!["write:tables".into()],
                ..fixtures::verified_key("AbCdEf012345")
            })),
            credits: Some(7),
            ..VerifyAnswer::refused(VerifyCode::Valid)
        };
        let key = VerifiedKey::from_answer(answer).expect("a key");
        assert_eq!((key.id.as_str(), key.workspace.as_str(), key.credits), ("AbCdEf012345", "acme", Some(7)));
        assert!(key.has_scope("read:tables") && key.has_scope("write:tables"));
        assert!(!key.has_scope("read:forms") && !key.has_scope("admin") && !key.has_scope("delete:tables"));
        assert!(VerifiedKey::from_answer(VerifyAnswer::refused(VerifyCode::Valid)).is_none());
    }
}
