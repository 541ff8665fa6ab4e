//! Verify: from a presented token to a [`VerifyAnswer`], cheapest check first.
//!
//! Order: token present → format and checksum (no lookup) → lookup by key id → secret → revoked → expired
//! → workspace → scope. A warm key (its secret has passed Argon2 once in this process) is answered inline
//! from memory with one HMAC and a constant-time compare; only a cold key goes to the hasher, and the
//! answer for it is judged on the snapshot current *after* Argon2, so a change acknowledged meanwhile is
//! never missed. A wrong secret never warms anything.

use std::sync::Arc;

use keyward_protocol::token::Token;
use keyward_protocol::{scope, VerifyAnswer, VerifyCode, VerifyRequest};
use zeroize::Zeroizing;

use crate::clock::unix_now;
use crate::error::DaemonError;
use crate::hasher::Digest;
use crate::index::HotKey;
use crate::service::Service;

/// Where a verify stands after the in-memory checks.
pub enum Step {
    /// Answered from memory.
    Done(VerifyAnswer),
    /// The key is cold: the secret must pass Argon2 first.
    Cold(ColdCheck),
}

/// A verify waiting for Argon2.
pub struct ColdCheck {
    key: Arc<HotKey>,
    secret: Zeroizing<Vec<u8>>,
    digest: Digest,
    request: VerifyRequest,
}

fn refuse(code: VerifyCode) -> Step {
    Step::Done(VerifyAnswer { code, key: None })
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
        let Ok(token) = Token::parse(text) else {
            return Ok(refuse(VerifyCode::Malformed));
        };
        let Some(key) = self.index().get(token.key_id()) else {
            return Ok(refuse(VerifyCode::NotFound));
        };
        let digest = self.hasher().digest(token.secret());
        match key.warm_digest() {
            Some(warm) if warm.matches(&digest) => Ok(Step::Done(judge(&key, &request, unix_now()))),
            // The cached digest came from the key's one secret: anything else is wrong, no Argon2 needed.
            Some(_) => Ok(refuse(VerifyCode::NotFound)),
            None => {
                let secret = Zeroizing::new(token.secret().to_vec());
                Ok(Step::Cold(ColdCheck { key, secret, digest, request }))
            }
        }
    }

    /// Finishes a verify of a cold key: Argon2, then the state checks on the current snapshot.
    pub async fn verify_cold(&self, check: ColdCheck) -> Result<VerifyAnswer, DaemonError> {
        let ColdCheck { key, secret, digest, request } = check;
        if !self.hasher().verify(secret, key.phc.clone()).await? {
            return Ok(VerifyAnswer { code: VerifyCode::NotFound, key: None });
        }
        // Argon2 took milliseconds; judge on what is current now. If the secret itself changed meanwhile,
        // the token that passed is no longer the key's.
        let current = match self.index().get(key.record.id.as_str()) {
            Some(current) if current.phc == key.phc => current,
            _ => return Ok(VerifyAnswer { code: VerifyCode::NotFound, key: None }),
        };
        current.warm_up(digest);
        Ok(judge(&current, &request, unix_now()))
    }
}

/// The state, workspace and scope checks for a key whose secret is right.
fn judge(key: &HotKey, request: &VerifyRequest, now: i64) -> VerifyAnswer {
    let record = &key.record;
    let code = if record.revoked_at.is_some() {
        VerifyCode::Revoked
    } else if record.is_expired(now) {
        VerifyCode::Expired
    } else if request.workspace.as_deref().is_some_and(|ws| ws != record.workspace) {
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
