//! Changes to an existing key: edit, regenerate, deactivate/activate, revoke.
//!
//! Which changes each state allows:
//!
//! | state            | edit | regenerate | deactivate | activate | revoke |
//! |------------------|------|------------|------------|----------|--------|
//! | active           | yes  | yes        | yes        | conflict | yes    |
//! | inactive         | yes  | yes        | conflict   | yes      | yes    |
//! | expired          | yes  | conflict   | yes ¹      | conflict ¹ | yes   |
//! | revoked          | conflict (final)                          ||||conflict|
//! | legacy (any)     | conflict: view and revoke only            ||||yes    |
//!
//! ¹ An expired key keeps the active or inactive state it had: one deactivated before it expired answers
//! deactivate and activate as an inactive key does.

use keyward_protocol::token::Token;
use keyward_protocol::{Actor, AuditAction, CreatedKey, FieldChange, KeyChanges, KeyId, KeyView};

use super::create::new_secret;
use super::{commit, expiry_text, field, view, Draft};
use crate::error::DaemonError;
use crate::fleet::{self, write::Writing};
use crate::host::clock::{rfc3339, unix_now};
use crate::keys::hot::HotKey;
use crate::keys::record::{KeyRecord, KeyState, PreviousSecret, StoredSecret};
use crate::limits::Plans;
use crate::manage::validate;
use crate::secrets::hasher::Digest;
use crate::service::Service;

fn conflict(message: String) -> DaemonError {
    DaemonError::Conflict(message)
}

/// Refuses any change but revoke on revoked and legacy keys.
pub(super) fn changeable(record: &KeyRecord) -> Result<(), DaemonError> {
    if record.revoked_at.is_some() {
        return Err(conflict(format!("key {} is revoked; revocation is permanent", record.id)));
    }
    if record.is_legacy() {
        return Err(conflict(format!("key {} is a legacy personal key: it can only be viewed and revoked", record.id)));
    }
    Ok(())
}

/// What one change does to a record: the new record and the audit log's field list, and for a credits
/// change the new live balance with its last refill.
pub(super) struct Outcome {
    pub(super) record: KeyRecord,
    pub(super) changes: Vec<FieldChange>,
    pub(super) credits: Option<(u64, i64)>,
}

impl Outcome {
    pub(super) fn new(record: KeyRecord, changes: Vec<FieldChange>) -> Outcome {
        Outcome { record, changes, credits: None }
    }
}

/// Applies `build` to the current snapshot of key `id` under the write lock, commits it, and makes it
/// visible. `warm` (the digest of a secret the daemon just minted) warms the new current secret.
pub(super) async fn change_key(
    service: &Service,
    id: &str,
    actor: &Actor,
    action: AuditAction,
    warm: Option<Digest>,
    build: impl FnOnce(&HotKey, i64) -> Result<Outcome, DaemonError>,
) -> Result<KeyView, DaemonError> {
    let id = validate::key_id(id)?;
    let writing = fleet::write::begin(service).await?;
    change_key_in(service, writing, &id, actor, action, warm, build).await
}

/// [`change_key`] with the write lock (and in fleet mode the engine's transaction) already taken.
pub(super) async fn change_key_in(
    service: &Service,
    mut writing: Writing<'_>,
    id: &KeyId,
    actor: &Actor,
    action: AuditAction,
    warm: Option<Digest>,
    build: impl FnOnce(&HotKey, i64) -> Result<Outcome, DaemonError>,
) -> Result<KeyView, DaemonError> {
    let current = service.load_key(id).await?.ok_or_else(|| DaemonError::KeyNotFound(id.to_string()))?;
    let now = unix_now();
    let Outcome { record, changes, credits } = build(&current, now)?;
    let draft = Draft { credits, ..Draft::key(action, record, changes, now) };
    let committed = commit(service, &mut writing, actor, draft).await?;
    let next = current.succeed(committed.record.expect("a key was committed"), &service.plans());
    if let Some(digest) = warm {
        next.current.warm.set(digest);
    }
    if let (Some((balance, refilled_at)), Some(cell)) = (credits, &next.credits) {
        if cell.is_escrowed() {
            // The fleet's balance was set anew: this host's grant of the old one is void.
            cell.void(committed.seq);
        } else {
            cell.set(balance);
            cell.mark_saved(balance, refilled_at);
        }
    }
    let view = view(service, &next, now);
    service.top_up_credits(&service.index().put(next));
    Ok(view)
}

/// Changes a key's settings; its token stays the same.
pub async fn edit(service: &Service, id: &str, changes: KeyChanges, actor: &Actor) -> Result<KeyView, DaemonError> {
    if changes.is_empty() {
        return Err(DaemonError::InvalidArgument("nothing to change: pass at least one setting".into()));
    }
    let plans = service.plans();
    change_key(service, id, actor, AuditAction::Edit, None, |old, now| apply_edit(&old.record, &changes, now, &plans))
        .await
}

/// Gives a key a new token. The old one keeps working for `grace_seconds` (never past the key's expiry).
pub async fn regenerate(
    service: &Service,
    id: &str,
    grace_seconds: u64,
    actor: &Actor,
) -> Result<CreatedKey, DaemonError> {
    if grace_seconds > validate::MAX_GRACE_SECONDS {
        let days = validate::MAX_GRACE_SECONDS / 86_400;
        return Err(DaemonError::InvalidArgument(format!("the grace window may be at most {days} days")));
    }
    let (secret, phc) = new_secret(service).await?;
    let mut token = None;
    let warm = service.hasher().digest(&secret[..]);
    let view = change_key(service, id, actor, AuditAction::Regenerate, Some(warm), |old, now| {
        let old = &old.record;
        changeable(old)?;
        if old.is_expired(now) {
            return Err(conflict(format!("key {} has expired; create a new key instead", old.id)));
        }
        let new_token = Token::assemble(old.env, &old.id, &secret);
        let parsed = Token::parse(new_token.expose()).expect("an assembled token parses");
        let stored = StoredSecret {
            phc: phc.as_str().into(),
            prefix: parsed.prefix().to_owned(),
            tail: parsed.tail().to_owned(),
            lookup: None,
        };
        token = Some(new_token);
        let until = now.saturating_add(grace_seconds as i64).min(old.expires_at.unwrap_or(i64::MAX));
        let previous = (until > now).then(|| Box::new(PreviousSecret { secret: old.secret.clone(), until }));
        let changes = vec![
            field("token", Some(old.secret.prefix.clone()), Some(stored.prefix.clone())),
            field("previous_token_until", None, previous.as_ref().map(|p| rfc3339(p.until))),
        ];
        let origin = keyward_protocol::KeyOrigin::Generated;
        Ok(Outcome::new(KeyRecord { secret: stored, previous, origin, ..old.clone() }, changes))
    })
    .await?;
    Ok(CreatedKey { token: token.expect("set when the change succeeded"), key: view })
}

/// Deactivates (`active == false`) or reactivates a key.
pub async fn set_active(service: &Service, id: &str, active: bool, actor: &Actor) -> Result<KeyView, DaemonError> {
    let (action, state) =
        if active { (AuditAction::Activate, KeyState::Active) } else { (AuditAction::Deactivate, KeyState::Inactive) };
    change_key(service, id, actor, action, None, |old, _| {
        let old = &old.record;
        changeable(old)?;
        if old.state == state {
            let word = if active { "active" } else { "inactive" };
            return Err(conflict(format!("key {} is already {word}", old.id)));
        }
        let changes = vec![field("state", Some(state_text(old.state)), Some(state_text(state)))];
        Ok(Outcome::new(KeyRecord { state, ..old.clone() }, changes))
    })
    .await
}

/// Revokes a key for good; the next verify of its token answers REVOKED.
pub async fn revoke(service: &Service, id: &str, actor: &Actor) -> Result<KeyView, DaemonError> {
    change_key(service, id, actor, AuditAction::Revoke, None, |old, now| {
        let old = &old.record;
        if old.revoked_at.is_some() {
            return Err(conflict(format!("key {} is already revoked", old.id)));
        }
        let changes = vec![field("revoked_at", None, Some(rfc3339(now)))];
        // The previous token keeps its grace window so that, until it ends, it answers REVOKED like the
        // current one rather than NOT_FOUND: its holder learns what happened.
        Ok(Outcome::new(KeyRecord { revoked_at: Some(now), ..old.clone() }, changes))
    })
    .await
}

fn state_text(state: KeyState) -> String {
    match state {
        KeyState::Active => "active".into(),
        KeyState::Inactive => "inactive".into(),
    }
}

/// The record after an edit, with one audit field per setting that actually changed.
fn apply_edit(old: &KeyRecord, edit: &KeyChanges, now: i64, plans: &Plans) -> Result<Outcome, DaemonError> {
    changeable(old)?;
    let mut new = old.clone();
    let mut changes = Vec::new();
    if let Some(name) = &edit.name {
        new.name = validate::name(name)?;
    }
    if let Some(description) = &edit.description {
        new.description = validate::description(Some(description))?;
    }
    if let Some(scopes) = &edit.scopes {
        new.scopes = validate::scopes(scopes)?.into();
    }
    if let Some(role) = edit.role {
        new.role = role;
    }
    if let Some(expires) = edit.expires {
        new.expires_at = validate::expiry(expires, now)?;
    }
    for (key, value) in &edit.metadata {
        if value.is_empty() {
            new.metadata.remove(key);
        } else {
            new.metadata.insert(key.clone(), value.clone());
        }
    }
    if let Some(rate) = &edit.rate {
        new.limits.rate = rate.clone();
    }
    for (name, rate) in &edit.named_limits {
        match rate {
            Some(rate) => new.limits.named.insert(name.clone(), *rate),
            None => new.limits.named.remove(name),
        };
    }
    if let Some(refill) = edit.refill {
        new.limits.refill = refill;
    }
    new.limits = validate::limits(&new.limits, plans)?;
    validate::role_allows(new.role, &new.scopes)?;
    validate::metadata(&new.metadata)?;

    let mut note = |name: &str, from: Option<String>, to: Option<String>| {
        if from != to {
            changes.push(field(name, from, to));
        }
    };
    note("name", Some(old.name.clone()), Some(new.name.clone()));
    note("description", old.description.clone(), new.description.clone());
    note("scopes", Some(old.scopes.join(" ")), Some(new.scopes.join(" ")));
    note("role", Some(old.role.to_string()), Some(new.role.to_string()));
    note("expires_at", expiry_text(old.expires_at), expiry_text(new.expires_at));
    for key in edit.metadata.keys() {
        note(&format!("metadata.{key}"), old.metadata.get(key).cloned(), new.metadata.get(key).cloned());
    }
    note("rate", Some(old.limits.rate.to_string()), Some(new.limits.rate.to_string()));
    for name in edit.named_limits.keys() {
        let shown = |limits: &keyward_protocol::Limits| limits.named.get(name).map(|rate| rate.to_string());
        note(&format!("limit.{name}"), shown(&old.limits), shown(&new.limits));
    }
    let refill = |limits: &keyward_protocol::Limits| limits.refill.map(|r| r.to_string());
    note("refill", refill(&old.limits), refill(&new.limits));
    Ok(Outcome::new(new, changes))
}
