//! [`KeyRecord`]: a key as the daemon stores it, and how it is shown ([`KeyRecord::view`]).
//!
//! A record holds the Argon2id hash of the key's secret, never the token. Its `Debug` prints no hash.

use std::collections::BTreeMap;
use std::fmt;

use keyward_protocol::{token, Environment, KeyId, KeyStatus, KeyView, VerifiedKey};
use serde::{Deserialize, Serialize};

/// The stored form of a key's secret: an Argon2id PHC string plus the public ends of the token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSecret {
    /// Argon2id PHC string of the secret part of the token.
    pub phc: String,
    /// The token's first [`token::PREFIX_LEN`] characters.
    pub prefix: String,
    /// The token's last [`token::TAIL_LEN`] characters (checksum digits), for the masked preview.
    pub tail: String,
}

impl fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoredSecret {{ phc: [redacted], prefix: {:?}, tail: {:?} }}", self.prefix, self.tail)
    }
}

/// One key, as stored and indexed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub id: KeyId,
    pub env: Environment,
    pub workspace: String,
    pub name: String,
    pub description: Option<String>,
    /// Canonical scope strings (parsed, sorted, deduplicated).
    pub scopes: Vec<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub metadata: BTreeMap<String, String>,
    pub secret: StoredSecret,
}

impl KeyRecord {
    /// Whether the key's expiry has passed at `now`.
    pub fn is_expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// The operator-facing status at `now`. Revocation wins over expiry.
    pub fn status(&self, now: i64) -> KeyStatus {
        if self.revoked_at.is_some() {
            KeyStatus::Revoked
        } else if self.is_expired(now) {
            KeyStatus::Expired
        } else {
            KeyStatus::Active
        }
    }

    /// How listings show the key. `last_used_at` is the freshest value the caller knows.
    pub fn view(&self, now: i64, last_used_at: Option<i64>) -> KeyView {
        KeyView {
            id: self.id.to_string(),
            prefix: self.secret.prefix.clone(),
            masked: token::masked(&self.secret.prefix, &self.secret.tail),
            name: self.name.clone(),
            description: self.description.clone(),
            workspace: self.workspace.clone(),
            env: self.env,
            scopes: self.scopes.clone(),
            status: self.status(now),
            created_at: self.created_at,
            last_used_at,
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
            metadata: self.metadata.clone(),
        }
    }

    /// What a verify tells the app server about the key.
    pub fn verified(&self) -> VerifiedKey {
        VerifiedKey {
            id: self.id.to_string(),
            workspace: self.workspace.clone(),
            name: self.name.clone(),
            env: self.env,
            scopes: self.scopes.clone(),
            expires_at: self.expires_at,
        }
    }
}
