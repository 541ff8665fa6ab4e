//! Verify: from a presented token to a [`VerifyAnswer`] (as a [`Verdict`] while it is in the daemon),
//! cheapest check first.
//!
//! Order: token present → format and checksum (no lookup) → lookup by key id, or by lookup digest for an
//! imported token (a key not used since startup is read from the store first, on the blocking pool) →
//! secret → revoked → inactive → legacy sunset → expired → workspace → scope → rate limits (the key's plan
//! or custom rate, then the named limits the request asks for, all or nothing) → credits.
//! A refused request spends neither rate budget nor credits: what a later check refuses, earlier
//! reservations give back.
//!
//! A key's secrets (the current one, and the previous one during a regenerate's grace window) each have a
//! warm cell. A secret that matches a warm digest is answered inline with one HMAC and a constant-time
//! compare; a secret that matches no warm digest while every live secret is warm is wrong, also without
//! Argon2. Only a secret that may belong to a cold slot goes to the hasher, and its answer is judged on the
//! snapshot current *after* Argon2, so a change acknowledged meanwhile is never missed. A wrong secret never
//! warms anything.

use std::sync::Arc;

use keyward_protocol::codec::CodecError;
use keyward_protocol::token::{self, Token};
use keyward_protocol::{scope, KeyId, VerifyAnswer, VerifyCode, VerifyRequest, VerifyRequestRef};
use zeroize::Zeroizing;

use crate::error::DaemonError;
use crate::host::clock::Now;
use crate::keys::hot::{AnswerKey, HotKey, HotSecret};
use crate::keys::record::KeyState;
use crate::secrets::hasher::{Caller, Digest, HashError, PendingVerify, Verification};
use crate::service::Service;
use spend::{limits_of, peek, spend};

mod spend;

/// A verify's answer as the verify path produces it: the protocol's answer, and for an answer about a key,
/// the key encoded once per snapshot, which [`Verdict::encode_reply`] splices into the reply frame instead
/// of encoding the key's fields again.
pub struct Verdict {
    /// The answer, without its key.
    answer: VerifyAnswer,
    key: Option<Arc<AnswerKey>>,
}

impl Verdict {
    fn refused(code: VerifyCode) -> Verdict {
        Verdict { answer: VerifyAnswer::refused(code), key: None }
    }

    pub fn code(&self) -> VerifyCode {
        self.answer.code
    }

    /// The protocol's answer, key included.
    pub fn into_answer(self) -> VerifyAnswer {
        VerifyAnswer { key: self.key.map(|key| Arc::clone(&key.key)), ..self.answer }
    }

    /// Encodes the payload of the reply frame answering request `id` at the end of `out`: the bytes of
    /// `ReplyFrame { id, reply: Reply::Verify(self.into_answer()) }`. Returns the bytes written.
    pub fn encode_reply(&self, id: u64, out: &mut Vec<u8>) -> Result<usize, CodecError> {
        keyward_protocol::message::encode_verify_reply_into(
            out,
            id,
            &self.answer,
            self.key.as_deref().map(|key| &*key.encoded),
        )
    }
}

/// Where a verify stands after the in-memory checks.
pub enum Step {
    /// Answered from memory.
    Done(Verdict),
    /// The secret may belong to a cold slot: Argon2 must decide.
    Cold(ColdCheck),
    /// The key exists but was not used since startup: its record must be read from the store first (on
    /// the blocking pool; [`verify_later`]).
    Load(Load),
}

/// A verify waiting for its key to be read from the store.
pub struct Load {
    id: KeyId,
    request: VerifyRequest,
    caller: Caller,
}

/// A verify waiting for Argon2.
pub struct ColdCheck {
    key: Arc<HotKey>,
    /// The first candidate's computation, already queued.
    first: PendingVerify,
    /// The hashes to try, current first.
    candidates: Vec<Arc<str>>,
    secret: Zeroizing<Vec<u8>>,
    digest: Digest,
    request: VerifyRequest,
    caller: Caller,
}

fn refuse(code: VerifyCode) -> Step {
    tracing::trace!(%code, "verify refused without a key");
    Step::Done(Verdict::refused(code))
}

/// What a presented token names.
enum Named<'t> {
    /// A key in memory, and the secret to check against it.
    Key(Arc<HotKey>, &'t [u8]),
    /// A key not used since startup, to be read from the store.
    Stored(KeyId),
    /// No key.
    Refused(VerifyCode),
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

/// Every check that needs no Argon2, as of `now` (the request's arrival, which the caller has read for
/// its latency figures anyway). Errors only for a malformed request (an invalid required scope). The
/// request is borrowed (from its frame, on the hot path); a verify that must wait keeps an owned copy.
/// `caller` (the connection) waits its own turn if Argon2 must decide.
pub fn verify_now(
    service: &Service,
    request: &VerifyRequestRef<'_>,
    now: Now,
    caller: Caller,
) -> Result<Step, DaemonError> {
    if let Some(required) = request.scope {
        scope::validate(required).map_err(|e| DaemonError::InvalidArgument(e.to_string()))?;
    }
    let text = request.token;
    if text.is_empty() {
        return Ok(refuse(VerifyCode::Missing));
    }
    let (key, secret) = match named(service, text) {
        Named::Key(key, secret) => (key, secret),
        Named::Stored(id) => return Ok(Step::Load(Load { id, request: request.to_request(), caller })),
        Named::Refused(code) => return Ok(refuse(code)),
    };
    let digest = service.hasher().digest(secret);
    let candidates: Vec<Arc<str>> = match warmth(&key, &digest, now.unix) {
        Warmth::Known => {
            service.stats().cache_hit();
            return Ok(Step::Done(judge(service, &key, request, now)));
        }
        Warmth::Wrong => {
            service.stats().cache_hit();
            service.index().note_use(&key, VerifyCode::NotFound);
            return Ok(refuse(VerifyCode::NotFound));
        }
        Warmth::Cold(slots) => {
            service.stats().cache_miss();
            slots.iter().map(|slot| slot.phc.clone()).collect()
        }
    };
    // Queued now, so that a full queue (BUSY) or a secret the failure cache knows to be wrong is answered
    // inline, without a task per attempt: a flood of wrong secrets must not crowd the async workers.
    let secret = Zeroizing::new(secret.to_vec());
    let first =
        argon2(service, &key, Verification { secret: secret.clone(), phc: candidates[0].clone(), caller }, &digest)?;
    if first.is_refuted() && candidates.len() == 1 {
        service.index().note_use(&key, VerifyCode::NotFound);
        return Ok(refuse(VerifyCode::NotFound));
    }
    let request = request.to_request();
    Ok(Step::Cold(ColdCheck { key, first, candidates, secret, digest, request, caller }))
}

/// Starts the Argon2 check of `verification` against `key`; a BUSY refusal is counted in the key's usage,
/// where its holder's operator sees a flood against it.
fn argon2(
    service: &Service,
    key: &HotKey,
    verification: Verification,
    digest: &Digest,
) -> Result<PendingVerify, DaemonError> {
    let started = service.hasher().start_verify_digested(verification, digest);
    busy_noted(service, key, started)
}

/// `result`, with a BUSY refusal counted in `key`'s usage.
fn busy_noted<T>(service: &Service, key: &HotKey, result: Result<T, HashError>) -> Result<T, DaemonError> {
    if matches!(result, Err(HashError::Busy)) {
        service.index().note_use(key, VerifyCode::Busy);
    }
    Ok(result?)
}

/// The key a presented token names, by its key id or (for an imported token) its lookup digest.
fn named<'t>(service: &Service, text: &'t str) -> Named<'t> {
    let parsed = Token::parse(text);
    if let Ok(token) = &parsed {
        if let Some(key) = service.index().get(token.key_id()) {
            // The environment is part of what was issued: a live key's secret under a test prefix (with
            // its checksum recomputed) is not the key's token.
            if key.record.env != token.env() {
                service.index().note_use(&key, VerifyCode::NotFound);
                return Named::Refused(VerifyCode::NotFound);
            }
            return Named::Key(key, token.secret());
        }
        if service.index().contains(token.key_id()) {
            return KeyId::parse(token.key_id()).map_or(Named::Refused(VerifyCode::NotFound), Named::Stored);
        }
    }
    match find_imported(service, text) {
        Some(Ok(key)) => Named::Key(key, text.as_bytes()),
        Some(Err(id)) => Named::Stored(id),
        None if parsed.is_ok() => Named::Refused(VerifyCode::NotFound),
        None => Named::Refused(VerifyCode::Malformed),
    }
}

/// The imported key whose whole token is `text`, if any: its snapshot, or its id when it must be read
/// from the store first.
fn find_imported(service: &Service, text: &str) -> Option<Result<Arc<HotKey>, KeyId>> {
    if !service.index().has_imports() || token::check_importable(text).is_err() {
        return None;
    }
    let id = service.index().find_imported(&service.hasher().lookup_digest(text.as_bytes()))?;
    Some(service.index().get(id.as_str()).ok_or(id))
}

/// Finishes a verify [`verify_now`] could not answer from memory: reads the key from the store
/// on the blocking pool if it must, then runs Argon2 if it must.
pub async fn verify_later(service: &Service, step: Step) -> Result<VerifyAnswer, DaemonError> {
    match step {
        Step::Done(verdict) => Ok(verdict.into_answer()),
        Step::Cold(check) => verify_cold(service, check).await,
        Step::Load(Load { id, request, caller }) => {
            service.load_key(&id).await?;
            match verify_now(service, &request.as_borrowed(), Now::read(), caller)? {
                Step::Done(verdict) => Ok(verdict.into_answer()),
                Step::Cold(check) => verify_cold(service, check).await,
                // The store had no record for a key the directory lists: keys are never removed, so this
                // does not happen; the answer is the one for a key that does not exist.
                Step::Load(_) => Ok(VerifyAnswer::refused(VerifyCode::NotFound)),
            }
        }
    }
}

/// Finishes a verify of a cold slot: Argon2, then the state checks on the current snapshot.
pub async fn verify_cold(service: &Service, check: ColdCheck) -> Result<VerifyAnswer, DaemonError> {
    let ColdCheck { key, first, candidates, secret, digest, request, caller } = check;
    let mut matched = None;
    let mut first = Some(first);
    for phc in candidates {
        let pending = match first.take() {
            Some(first) => first,
            None => argon2(service, &key, Verification { secret: secret.clone(), phc: phc.clone(), caller }, &digest)?,
        };
        let right = busy_noted(service, &key, pending.answer().await)?;
        if right {
            matched = Some(phc);
            break;
        }
    }
    let not_found = VerifyAnswer::refused(VerifyCode::NotFound);
    let Some(phc) = matched else {
        service.index().note_use(&key, VerifyCode::NotFound);
        return Ok(not_found);
    };
    // Argon2 took milliseconds: judge on what is current now. If the matched secret is no longer a live
    // secret of the key (regenerated, grace over), the token is not the key's any more.
    let now = Now::read();
    let Some(current) = service.index().get(key.record.id.as_str()) else {
        return Ok(not_found);
    };
    let Some(slot) = live_secrets(&current, now.unix).find(|slot| slot.phc == phc) else {
        return Ok(not_found);
    };
    slot.warm.set(digest);
    Ok(judge(service, &current, &request.as_borrowed(), now).into_answer())
}

/// The state, workspace, scope, rate-limit and credit checks for a key whose secret is right.
fn judge(service: &Service, key: &HotKey, request: &VerifyRequestRef<'_>, now: Now) -> Verdict {
    let record = &key.record;
    let Now { unix, .. } = now;
    let code = if record.revoked_at.is_some() {
        VerifyCode::Revoked
    } else if record.state == KeyState::Inactive {
        VerifyCode::Inactive
    } else if record.is_legacy() && service.legacy_sunset().is_some_and(|at| at <= unix) {
        VerifyCode::LegacySunset
    } else if record.is_expired(unix) {
        VerifyCode::Expired
    } else if request.workspace.is_some_and(|ws| !service.may_act_on(record, ws)) {
        VerifyCode::WrongWorkspace
    } else if request.scope.is_some_and(|s| !key.scopes.grants(s).unwrap_or(false)) {
        VerifyCode::InsufficientScope
    } else {
        VerifyCode::Valid
    };
    let mut answer = VerifyAnswer::refused(code);
    if code.is_valid() {
        spend(key, request, now, &mut answer);
        service.top_up_credits(key);
        service.top_up_lease(key, now.mono);
    } else {
        answer.ratelimit = limits_of(key, request).map(|limit| peek(limit, now)).collect();
        answer.credits = key.credits.as_ref().map(|cell| cell.shown_balance());
    }
    if answer.code.is_valid() {
        key.activity.touch(unix);
    }
    service.index().note_use(key, answer.code);
    tracing::trace!(key = %record.id, code = %answer.code, "verified");
    Verdict { answer, key: Some(key.answer_key()) }
}
