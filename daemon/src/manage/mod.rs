//! Management requests, one module per family:
//!
//! - `create`: new keys — minted ([`create()`]) or imported ([`import()`]);
//! - `change`: edit, regenerate, deactivate/activate, revoke;
//! - `account`: the account → workspaces mapping of legacy keys;
//! - `credits`: setting and adding to credit balances;
//! - `query`: list, show, legacy listing, audit log, usage, the daemon's counters;
//! - [`validate`]: the rules of every management field.
//!
//! Each is a function over the shared [`Service`]; `dispatch` calls them.
//!
//! Every change follows one sequence, under the service's write lock so that two changes can never
//! interleave: read the current snapshot → build the new record and its audit entry → write both in one
//! transaction and flush ([`crate::keys::store::Store::commit`]; in fleet mode first through the engine,
//! [`crate::fleet::write`]) → swap the new snapshot into the index → answer.
//! A failed write changes nothing; a swapped snapshot is visible to the very next verify, before the caller
//! hears back.

mod account;
mod change;
mod create;
mod credits;
mod query;
pub mod validate;

pub use account::{get_account, set_account};
pub use change::{edit, regenerate, revoke, set_active};
pub use create::{create, import};
pub use credits::change_credits;
pub use query::{audit, get, list, list_legacy, report, usage, workspace_usage};

use keyward_protocol::{AccountView, Actor, AuditAction, AuditEntry, FieldChange, KeyId, KeyView};

use crate::engine::rows::Body;
use crate::error::DaemonError;
use crate::fleet::{self, write::Writing};
use crate::host::clock::rfc3339;
use crate::keys::hot::HotKey;
use crate::keys::record::{KeyRecord, Live};
use crate::keys::store::Change;
use crate::service::{Found, Service};

/// A change about to be committed.
struct Draft {
    action: AuditAction,
    record: Option<KeyRecord>,
    /// The key's live credit balance and last refill, when the change sets them.
    credits: Option<(u64, i64)>,
    account: Option<AccountView>,
    changes: Vec<FieldChange>,
    at: i64,
}

impl Draft {
    /// A change to one key.
    fn key(action: AuditAction, record: KeyRecord, changes: Vec<FieldChange>, at: i64) -> Draft {
        Draft { action, record: Some(record), credits: None, account: None, changes, at }
    }
}

/// What a committed draft hands back.
struct Committed {
    record: Option<KeyRecord>,
    account: Option<AccountView>,
    /// Its audit entry's number (in fleet mode, the fleet's change number).
    seq: u64,
}

/// Writes `draft` and its audit entry durably: through the engine in fleet mode, else to the store. The
/// caller holds the write lock (`writing`) and makes the result visible before releasing it.
async fn commit(
    service: &Service,
    writing: &mut Writing<'_>,
    actor: &Actor,
    draft: Draft,
) -> Result<Committed, DaemonError> {
    let Draft { action, record, credits, account, changes, at } = draft;
    let entry = AuditEntry {
        seq: service.peek_audit_seq(),
        at,
        action,
        key_id: record.as_ref().map(|r| r.id.to_string()),
        workspace: record.as_ref().map(|r| r.workspace.clone()),
        account: record
            .as_ref()
            .and_then(|r| r.account.clone())
            .or_else(|| account.as_ref().map(|a| a.account.clone())),
        changes,
        actor: actor.clone(),
    };
    let in_fleet = fleet::write::commit(service, writing, at, |seq| Body::V1 {
        key: record.clone(),
        credits,
        account: account.clone(),
        audit: Some(AuditEntry { seq, ..entry.clone() }),
    })
    .await?;
    let committed = match in_fleet {
        Some(seq) => Committed { record, account, seq },
        None => {
            let seq = entry.seq;
            let store = service.store().clone();
            let committed = tokio::task::spawn_blocking(move || {
                let change = Change { key: record.as_ref(), credits, account: account.as_ref(), audit: Some(&entry) };
                store.commit(&change)?;
                Ok::<_, DaemonError>(Committed { record, account, seq })
            })
            .await
            .map_err(DaemonError::task("storage"))??;
            service.advance_audit_seq();
            committed
        }
    };
    tracing::info!(
        action = %action,
        key = committed.record.as_ref().map(|r| r.id.as_str()),
        uid = actor.uid,
        pid = actor.pid,
        actor = actor.label.as_deref(),
        "management change committed"
    );
    Ok(committed)
}

/// How listings show `key` at `now`.
fn view(service: &Service, key: &HotKey, now: i64) -> KeyView {
    let credits = key.credits.as_ref().map(|cell| cell.shown_balance());
    key.record.view(Live { now, sunset: service.legacy_sunset(), last_used_at: key.last_used_at(), credits })
}

/// How listings show a key as [found](Service::found) at `now`.
fn view_found(service: &Service, found: &Found, now: i64) -> KeyView {
    match found {
        Found::Hot(key) => view(service, key, now),
        Found::Stored(record, counters) => {
            // As its snapshot would show it: the flusher's last balance, else the starting balance.
            let credits = counters.credits.map(|(balance, _)| balance).or(record.limits.credits);
            let live = Live { now, sunset: service.legacy_sunset(), last_used_at: counters.last_used, credits };
            record.view(live)
        }
    }
}

/// Key `id` as [found](Service::found), or KEY_NOT_FOUND.
fn existing(service: &Service, id: &KeyId) -> Result<Found, DaemonError> {
    service.found(id.as_str())?.ok_or_else(|| DaemonError::KeyNotFound(id.to_string()))
}

/// A changed field for the audit log.
fn field(name: &str, from: Option<String>, to: Option<String>) -> FieldChange {
    FieldChange { field: name.to_owned(), from, to }
}

/// An expiry for the audit log: RFC 3339 or `never`.
fn expiry_text(at: Option<i64>) -> Option<String> {
    Some(at.map_or_else(|| "never".to_owned(), rfc3339))
}
