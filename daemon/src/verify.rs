//! Verify: from a presented token to a [`VerifyAnswer`], cheapest check first.
//!
//! Order: token present → format and checksum (no lookup) → lookup by key id, or by lookup digest for an
//! imported token → secret → revoked → inactive → legacy sunset → expired → workspace → scope.
//!
//! A key's secrets (the current one, and the previous one during a regenerate's grace window) each have a
//! warm cell. A secret that matches a warm digest is answered inline with one HMAC and a constant-time
//! compare; a secret that matches no warm digest while every live secret is warm is wrong, also without
//! Argon2. Only a secret that may belong to a cold slot goes to the hasher, and its answer is judged on the
//! snapshot current *after* Argon2, so a change acknowledged meanwhile is never missed. A wrong secret never
//! warms anything.

use std::sync::Arc;

use keyward_protocol::token::Token;
use keyward_protocol::{scope, VerifyAnswer, VerifyCode, VerifyRequest};
use zeroize::Zeroizing;

use crate::clock::unix_now;
use crate::error::DaemonError;
use crate::hasher::Digest;
use crate::index::{HotKey, HotSecret};
use crate::record::KeyState;
use crate::service::Service;
use crate::validate;

/// Where a verify stands after the in-memory checks.
pub enum Step {
    /// Answered from memory.
    Done(VerifyAnswer),
    /// The secret may belong to a cold slot: Argon2 must decide.
    Cold(ColdCheck),
}

/// A verify waiting for Argon2.
pub struct ColdCheck {
    key: Arc<HotKey>,
    /// The hashes to try, current first.
    candidates: Vec<Arc<str>>,
    secret: Zeroizing<Vec<u8>>,
    digest: Digest,
    request: VerifyRequest,
}

fn refuse(code: VerifyCode) -> Step {
    Step::Done(VerifyAnswer { code, key: None })
}

/// What the warm cells say about a presented secret.
enum Warmth<'a> {
    /// It matches a live secret's warm digest.
    Known,
    /// Every live secret is warm and none matches: wrong.
    Wrong,
    /// These live secrets are cold and must be tried with Argon2.
    Cold(Vec<&'a HotSecret>),
}

/// The key's secrets that verify at `now`: the current one, and the previous one inside its grace window.
fn live_secrets(key: &HotKey, now: i64) -> impl Iterator<Item = &HotSecret> {
    let previous = key.previous.as_ref().filter(|_| key.record.previous_until(now).is_some());
    std::iter::once(&key.current).chain(previous)
}

fn warmth<'k>(key: &'k HotKey, digest: &Digest, now: i64) -> Warmth<'k> {
    let mut cold = Vec::new();
    for secret in live_secrets(key, now) {
        match secret.warm.get() {
            Some(warm) if warm.matches(digest) => return Warmth::Known,
            Some(_) => {}
            None => cold.push(secret),
        }
    }
    if cold.is_empty() {
        Warmth::Wrong
    } else {
        Warmth::Cold(cold)
    }
}

impl Service {
    /// Every check that needs no Argon2. Errors only for a malformed request (an invalid required scope).
    pub fn verify_now(&self, request: VerifyRequest) -> Result<Step, DaemonError> {
        if let Some(required) = &request.scope {
            scope::validate(required).map_err(|e| DaemonError::InvalidArgument(e.to_string()))?;
        }
        let text = request.token.expose();
        if text.is_empty() {
            return Ok(refuse(VerifyCode::Missing));
        }
        let (key, secret) = match Token::parse(text) {
            Ok(token) => match self.index().get(token.key_id()) {
                Some(key) => (key, token.secret()),
                None => match self.find_imported(text) {
                    Some(key) => (key, text.as_bytes()),
                    None => return Ok(refuse(VerifyCode::NotFound)),
                },
            },
            Err(_) => match self.find_imported(text) {
                Some(key) => (key, text.as_bytes()),
                None => return Ok(refuse(VerifyCode::Malformed)),
            },
        };
        let now = unix_now();
        let digest = self.hasher().digest(secret);
        let candidates: Vec<Arc<str>> = match warmth(&key, &digest, now) {
            Warmth::Known => return Ok(Step::Done(self.judge(&key, &request, now))),
            Warmth::Wrong => return Ok(refuse(VerifyCode::NotFound)),
            Warmth::Cold(slots) => slots.iter().map(|slot| slot.phc.clone()).collect(),
        };
        let secret = Zeroizing::new(secret.to_vec());
        Ok(Step::Cold(ColdCheck { key, candidates, secret, digest, request }))
    }

    /// An imported key whose whole token is `text`, if any.
    fn find_imported(&self, text: &str) -> Option<Arc<HotKey>> {
        if !self.index().has_imports() || validate::importable_token(text).is_err() {
            return None;
        }
        self.index().find_imported(&self.hasher().lookup_digest(text.as_bytes()))
    }

    /// Finishes a verify of a cold slot: Argon2, then the state checks on the current snapshot.
    pub async fn verify_cold(&self, check: ColdCheck) -> Result<VerifyAnswer, DaemonError> {
        let ColdCheck { key, candidates, secret, digest, request } = check;
        let mut matched = None;
        for phc in candidates {
            if self.hasher().verify(Zeroizing::new(secret.to_vec()), phc.clone()).await? {
                matched = Some(phc);
                break;
            }
        }
        let not_found = VerifyAnswer { code: VerifyCode::NotFound, key: None };
        let Some(phc) = matched else {
            return Ok(not_found);
        };
        // Argon2 took milliseconds: judge on what is current now. If the matched secret is no longer a live
        // secret of the key (regenerated, grace over), the token is not the key's any more.
        let now = unix_now();
        let Some(current) = self.index().get(key.record.id.as_str()) else {
            return Ok(not_found);
        };
        let Some(slot) = live_secrets(&current, now).find(|slot| slot.phc == phc) else {
            return Ok(not_found);
        };
        slot.warm.set(digest);
        Ok(self.judge(&current, &request, now))
    }

    /// The state, workspace and scope checks for a key whose secret is right.
    fn judge(&self, key: &HotKey, request: &VerifyRequest, now: i64) -> VerifyAnswer {
        let record = &key.record;
        let code = if record.revoked_at.is_some() {
            VerifyCode::Revoked
        } else if record.state == KeyState::Inactive {
            VerifyCode::Inactive
        } else if record.is_legacy() && self.legacy_sunset().is_some_and(|at| at <= now) {
            VerifyCode::LegacySunset
        } else if record.is_expired(now) {
            VerifyCode::Expired
        } else if request.workspace.as_deref().is_some_and(|ws| !self.may_act_on(record, ws)) {
            VerifyCode::WrongWorkspace
        } else if request.scope.as_deref().is_some_and(|s| !key.scopes.grants(s).unwrap_or(false)) {
            VerifyCode::InsufficientScope
        } else {
            VerifyCode::Valid
        };
        if code.is_valid() {
            key.touch(now);
        }
        VerifyAnswer { code, key: Some(record.verified()) }
    }
}
