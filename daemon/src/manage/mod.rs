//! Management requests, one module per family:
//!
//! - `create`: new keys — minted ([`Service::create`]) or imported ([`Service::import`]);
//! - `change`: edit, regenerate, deactivate/activate, revoke;
//! - `account`: the account → workspaces mapping of legacy keys;
//! - `credits`: setting and adding to credit balances;
//! - `query`: list, show, legacy listing, audit log, usage.
//!
//! Every change follows one sequence, under the service's write lock so that two changes can never
//! interleave: read the current snapshot → build the new record and its audit entry → write both in one
//! transaction and flush ([`crate::store::Store::commit`]) → swap the new snapshot into the index → answer.
//! A failed write changes nothing; a swapped snapshot is visible to the very next verify, before the caller
//! hears back.

mod account;
mod change;
mod create;
mod credits;
mod query;

pub use query::{USAGE_DAYS, USAGE_HOURS};

use keyward_protocol::{AccountView, Actor, AuditAction, AuditEntry, FieldChange, KeyId, KeyView};
use tokio::sync::MutexGuard;

use crate::clock::rfc3339;
use crate::error::DaemonError;
use crate::index::HotKey;
use crate::record::{KeyRecord, Live};
use crate::service::{Found, Service};
use crate::store::Change;

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
}

impl Service {
    /// Writes `draft` and its audit entry durably. The caller holds the write lock (`_writing`) and makes
    /// the result visible before releasing it.
    async fn commit(
        &self,
        _writing: &MutexGuard<'_, ()>,
        actor: &Actor,
        draft: Draft,
    ) -> Result<Committed, DaemonError> {
        let Draft { action, record, credits, account, changes, at } = draft;
        let entry = AuditEntry {
            seq: self.peek_audit_seq(),
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
        let store = self.store().clone();
        let committed = tokio::task::spawn_blocking(move || {
            store.commit(&Change { key: record.as_ref(), credits, account: account.as_ref(), audit: &entry })?;
            Ok::<_, DaemonError>(Committed { record, account })
        })
        .await
        .map_err(|e| DaemonError::Internal(format!("storage task failed: {e}")))??;
        self.advance_audit_seq();
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
    fn view(&self, key: &HotKey, now: i64) -> KeyView {
        let credits = key.credits.as_ref().map(|cell| cell.balance());
        key.record.view(Live { now, sunset: self.legacy_sunset(), last_used_at: key.last_used_at(), credits })
    }

    /// How listings show a key as [found](Service::found) at `now`.
    fn view_found(&self, found: &Found, now: i64) -> KeyView {
        match found {
            Found::Hot(key) => self.view(key, now),
            Found::Stored(record, counters) => {
                // As its snapshot would show it: the flusher's last balance, else the starting balance.
                let credits = counters.credits.map(|(balance, _)| balance).or(record.limits.credits);
                let live = Live { now, sunset: self.legacy_sunset(), last_used_at: counters.last_used, credits };
                record.view(live)
            }
        }
    }

    /// Key `id` as [found](Service::found), or KEY_NOT_FOUND.
    fn existing(&self, id: &KeyId) -> Result<Found, DaemonError> {
        self.found(id.as_str())?.ok_or_else(|| DaemonError::KeyNotFound(id.to_string()))
    }
}

/// A changed field for the audit log.
fn field(name: &str, from: Option<String>, to: Option<String>) -> FieldChange {
    FieldChange { field: name.to_owned(), from, to }
}

/// An expiry for the audit log: RFC 3339 or `never`.
fn expiry_text(at: Option<i64>) -> Option<String> {
    Some(at.map_or_else(|| "never".to_owned(), rfc3339))
}
