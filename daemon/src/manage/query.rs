//! Reading keys and the audit log: list, show, legacy listing, audit.

use keyward_protocol::{AuditEntry, AuditQuery, KeyPage, KeyView, ListRequest};

use crate::clock::unix_now;
use crate::error::DaemonError;
use crate::index::order;
use crate::service::Service;
use crate::validate;

/// Keys per listing page when the request does not say.
const DEFAULT_PAGE: usize = 100;
/// The largest page a request may ask for.
const MAX_PAGE: usize = 1000;
/// Audit entries when the request does not say, and at most.
const DEFAULT_AUDIT: usize = 100;
const MAX_AUDIT: usize = 10_000;

impl Service {
    /// One page of a workspace's keys, oldest first.
    pub fn list(&self, request: &ListRequest) -> Result<KeyPage, DaemonError> {
        let workspace = validate::workspace(&request.workspace)?;
        let keys = self.index().select(|record| record.workspace == workspace);
        let start = match &request.after {
            None => 0,
            Some(after) => {
                let after = self
                    .index()
                    .get(validate::key_id(after)?.as_str())
                    .filter(|key| key.record.workspace == workspace)
                    .ok_or_else(|| DaemonError::InvalidArgument("`after` is not a key of this workspace".into()))?;
                keys.partition_point(|key| order(key) <= order(&after))
            }
        };
        let page = match request.limit as usize {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        let now = unix_now();
        let shown: Vec<KeyView> = keys[start..].iter().take(page).map(|key| self.view(key, now)).collect();
        let next = (start + shown.len() < keys.len()).then(|| shown.last().map(|k| k.id.clone())).flatten();
        Ok(KeyPage { keys: shown, next })
    }

    /// Legacy personal keys (of one account, if given), oldest first, so operators can chase the ones
    /// still in use before the sunset.
    pub fn list_legacy(&self, account: Option<&str>) -> Result<KeyPage, DaemonError> {
        let account = account.map(validate::account).transpose()?;
        let keys = self.index().select(|record| {
            record.is_legacy() && account.as_deref().is_none_or(|a| record.account.as_deref() == Some(a))
        });
        let now = unix_now();
        Ok(KeyPage { keys: keys.iter().map(|key| self.view(key, now)).collect(), next: None })
    }

    /// One key.
    pub fn get(&self, id: &str) -> Result<KeyView, DaemonError> {
        let id = validate::key_id(id)?;
        let key = self.index().get(id.as_str()).ok_or_else(|| DaemonError::KeyNotFound(id.to_string()))?;
        Ok(self.view(&key, unix_now()))
    }

    /// Audit entries matching `query`, newest first.
    pub async fn audit(&self, query: AuditQuery) -> Result<Vec<AuditEntry>, DaemonError> {
        if let Some(key) = &query.key {
            validate::key_id(key)?;
        }
        let limit = match query.limit as usize {
            0 => DEFAULT_AUDIT,
            n => n.min(MAX_AUDIT),
        };
        let store = self.store().clone();
        tokio::task::spawn_blocking(move || {
            store.audit_entries(limit, |entry| {
                query.workspace.as_ref().is_none_or(|ws| entry.workspace.as_ref() == Some(ws))
                    && query.key.as_ref().is_none_or(|key| entry.key_id.as_ref() == Some(key))
                    && query.since.is_none_or(|since| entry.at >= since)
            })
        })
        .await
        .map_err(|e| DaemonError::Internal(format!("audit task failed: {e}")))?
        .map_err(DaemonError::from)
    }
}
