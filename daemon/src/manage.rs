//! Management requests: create, list, get and revoke keys.
//!
//! Every change follows one sequence, under the service's write lock so that two changes to one key can
//! never interleave: read the current snapshot → build the new record → write it and flush
//! ([`crate::store`]) → swap the new snapshot into the index → answer. A failed write changes nothing; a
//! swapped snapshot is visible to the very next verify, before the caller hears back.

use keyward_protocol::token::Token;
use keyward_protocol::{CreateRequest, CreatedKey, KeyPage, KeyView, ListRequest};
use zeroize::Zeroizing;

use crate::clock::unix_now;
use crate::error::DaemonError;
use crate::index::{order, HotKey};
use crate::mint;
use crate::record::{KeyRecord, StoredSecret};
use crate::service::Service;
use crate::validate;

/// Keys per listing page when the request does not say.
const DEFAULT_PAGE: usize = 100;
/// The largest page a request may ask for.
const MAX_PAGE: usize = 1000;

impl Service {
    /// Creates a key and returns its token: the only time the token exists outside the caller's hands.
    pub async fn create(&self, request: CreateRequest) -> Result<CreatedKey, DaemonError> {
        let now = unix_now();
        let workspace = validate::workspace(&request.workspace)?;
        let name = validate::name(&request.name)?;
        let description = validate::description(request.description.as_deref())?;
        let scopes = validate::scopes(&request.scopes)?;
        let expires_at = validate::expiry(request.expires, now)?;

        let secret = mint::secret();
        let phc = self.hasher().hash(Zeroizing::new(secret.to_vec())).await?;
        let _writing = self.write_lock().await;
        let id = loop {
            let candidate = mint::key_id();
            if !self.index().contains(candidate.as_str()) {
                break candidate;
            }
        };
        let token = Token::assemble(request.env, &id, &secret);
        let parsed = Token::parse(token.expose()).expect("an assembled token parses");
        let record = KeyRecord {
            id,
            env: request.env,
            workspace,
            name,
            description,
            scopes,
            created_at: now,
            expires_at,
            last_used_at: None,
            revoked_at: None,
            metadata: Default::default(),
            secret: StoredSecret { phc, prefix: parsed.prefix().to_owned(), tail: parsed.tail().to_owned() },
        };
        let record = self.persist(record).await?;
        let key = HotKey::new(record);
        // The daemon has just hashed this very secret, so the first verify need not pay for Argon2 again.
        key.warm_up(self.hasher().digest(&secret[..]));
        let view = key.record.view(now, None);
        tracing::info!(key = %key.record.id, workspace = %key.record.workspace, "key created");
        self.index().put(key);
        Ok(CreatedKey { token, key: view })
    }

    /// One page of a workspace's keys, oldest first.
    pub fn list(&self, request: &ListRequest) -> Result<KeyPage, DaemonError> {
        let workspace = validate::workspace(&request.workspace)?;
        let keys = self.index().workspace_keys(&workspace);
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
        let shown: Vec<KeyView> =
            keys[start..].iter().take(page).map(|key| key.record.view(now, key.last_used_at())).collect();
        let next = (start + shown.len() < keys.len()).then(|| shown.last().map(|k| k.id.clone())).flatten();
        Ok(KeyPage { keys: shown, next })
    }

    /// One key.
    pub fn get(&self, id: &str) -> Result<KeyView, DaemonError> {
        let id = validate::key_id(id)?;
        let key = self.index().get(id.as_str()).ok_or_else(|| DaemonError::KeyNotFound(id.to_string()))?;
        Ok(key.record.view(unix_now(), key.last_used_at()))
    }

    /// Revokes a key for good; the next verify of its token answers REVOKED.
    pub async fn revoke(&self, id: &str) -> Result<KeyView, DaemonError> {
        let id = validate::key_id(id)?;
        let _writing = self.write_lock().await;
        let current = self.index().get(id.as_str()).ok_or_else(|| DaemonError::KeyNotFound(id.to_string()))?;
        if current.record.revoked_at.is_some() {
            return Err(DaemonError::Conflict(format!("key {id} is already revoked")));
        }
        let now = unix_now();
        let record = self.persist(KeyRecord { revoked_at: Some(now), ..current.current_record() }).await?;
        let next = current.succeed(record);
        let view = next.record.view(now, next.last_used_at());
        self.index().put(next);
        tracing::info!(key = %id, "key revoked");
        Ok(view)
    }

    /// Writes `record` durably (on the blocking pool) and hands it back.
    async fn persist(&self, record: KeyRecord) -> Result<KeyRecord, DaemonError> {
        let store = self.store().clone();
        tokio::task::spawn_blocking(move || store.put_key(&record).map(|()| record))
            .await
            .map_err(|e| DaemonError::Internal(format!("storage task failed: {e}")))?
            .map_err(DaemonError::from)
    }
}
