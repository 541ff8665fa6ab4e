//! A change as the engine stores it: [`Body`], encoded with the protocol's codec into
//! `keyward_changes.body`, and [`Row`], a change read back with its sequence number and id.

use keyward_protocol::{codec, AccountView, AuditAction, AuditEntry};
use serde::{Deserialize, Serialize};

use super::EngineError;
use crate::keys::record::KeyRecord;

/// What one change wrote. New layouts are new variants, so an engine's old rows stay readable.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Body {
    V1 {
        /// The key's record after the change (its Argon2 hash, never a token).
        key: Option<KeyRecord>,
        /// The key's credit balance and last refill, when the change set them.
        credits: Option<(u64, i64)>,
        account: Option<AccountView>,
        /// The audit entry; none for the snapshot rows `keyward fleet init` writes for imported keys.
        audit: Option<AuditEntry>,
    },
}

impl Body {
    pub fn encode(&self) -> Result<Vec<u8>, EngineError> {
        codec::encode(self).map_err(|e| EngineError::Decode(format!("encoding a change: {e}")))
    }

    pub fn decode(bytes: &[u8]) -> Result<Body, EngineError> {
        codec::decode(bytes).map_err(|e| EngineError::Decode(e.to_string()))
    }

    /// The balance this change gives the key's escrowed credits (fleet mode), with its last refill: a
    /// credits change's, or a new key's starting credits (created, imported, or a snapshot of `fleet init`).
    pub fn escrow(&self) -> Option<(u64, i64)> {
        let Body::V1 { key, credits, audit, .. } = self;
        let key = key.as_ref()?;
        key.limits.credits?;
        let new_key =
            audit.as_ref().is_none_or(|entry| matches!(entry.action, AuditAction::Create | AuditAction::Import));
        credits.or_else(|| new_key.then(|| (key.limits.credits.unwrap_or(0), key.created_at)))
    }

    /// A key's record as `keyward_keys.record` holds it.
    pub fn encode_record(record: &KeyRecord) -> Result<Vec<u8>, EngineError> {
        codec::encode(record).map_err(|e| EngineError::Decode(format!("encoding a key: {e}")))
    }

    /// The key id and action, for the columns SQL readers see.
    pub fn labels(&self) -> (Option<String>, Option<String>) {
        let Body::V1 { key, audit, .. } = self;
        let key_id = key.as_ref().map(|k| k.id.to_string()).or_else(|| audit.as_ref().and_then(|a| a.key_id.clone()));
        (key_id, Some(audit.as_ref().map_or_else(|| "snapshot".to_owned(), |a| a.action.to_string())))
    }
}

/// A change's identity: random, made by the host that issued it.
pub type ChangeId = [u8; 16];

/// A change read from the engine.
#[derive(Debug)]
pub struct Row {
    pub seq: u64,
    pub change_id: ChangeId,
    pub body: Body,
}

impl Row {
    /// A row of `SELECT seq, change_id, body`.
    pub fn read(row: &tokio_postgres::Row) -> Result<Row, EngineError> {
        let seq = row.get::<_, i64>(0).max(0) as u64;
        let change_id = change_id(row.get::<_, &[u8]>(1))?;
        Ok(Row { seq, change_id, body: Body::decode(row.get::<_, &[u8]>(2))? })
    }
}

pub fn change_id(bytes: &[u8]) -> Result<ChangeId, EngineError> {
    ChangeId::try_from(bytes).map_err(|_| EngineError::Decode("a change id is not 16 bytes".into()))
}
