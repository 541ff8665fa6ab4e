//! [`KeyRecord`]: a key as the daemon stores it, and how it is shown ([`KeyRecord::view`]).
//!
//! A record holds Argon2id hashes of secrets, never a token. Its `Debug` prints no hash and no lookup
//! digest.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use keyward_protocol::{token, Environment, KeyId, KeyOrigin, KeyStatus, KeyView, Limits, Role, VerifiedKey};
use serde::{Deserialize, Serialize};

/// The stored form of one token's secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSecret {
    /// Argon2id PHC string of the secret: the secret part of a keyward token, or a whole imported token.
    pub phc: Arc<str>,
    /// The token's first characters, shown in listings (8 for keyward tokens; fewer for short imports).
    pub prefix: String,
    /// The token's last characters, shown in the masked preview (possibly none for short imports).
    pub tail: String,
    /// For an imported token: its keyed lookup digest, which finds the record without a key id.
    pub lookup: Option<[u8; 32]>,
}

impl fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoredSecret {{ phc: [redacted], prefix: {:?}, tail: {:?} }}", self.prefix, self.tail)
    }
}

/// A previous token that keeps working until `until` after a regenerate with a grace window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousSecret {
    pub secret: StoredSecret,
    /// Unix seconds; the old token is refused from this time on.
    pub until: i64,
}

/// Whether a key answers verifies. Revocation is separate and final (`revoked_at`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyState {
    #[default]
    Active,
    Inactive,
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
    pub scopes: Arc<[String]>,
    pub role: Role,
    pub metadata: BTreeMap<String, String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub state: KeyState,
    pub origin: KeyOrigin,
    /// The account of a legacy personal key.
    pub account: Option<String>,
    pub secret: StoredSecret,
    /// Boxed: only keys regenerated with a grace window have one, and a million hot entries should not each
    /// carry room for it.
    pub previous: Option<Box<PreviousSecret>>,
    /// Rate policy, named limits and refill; `credits` is the balance last set by an operator (the live
    /// balance is kept apart, see [`crate::credits`]).
    pub limits: Limits,
}

/// What a view shows beyond the record: the time, the legacy sunset and the live counters.
#[derive(Clone, Copy, Debug)]
pub struct Live {
    pub now: i64,
    pub sunset: Option<i64>,
    pub last_used_at: Option<i64>,
    pub credits: Option<u64>,
}

impl KeyRecord {
    /// Whether the key's expiry has passed at `now`.
    pub fn is_expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// Whether this is a legacy personal key.
    pub fn is_legacy(&self) -> bool {
        self.origin == KeyOrigin::Legacy
    }

    /// The operator-facing status at `now`, given the legacy sunset (if any). Revocation wins over
    /// everything, then deactivation, then expiry.
    pub fn status(&self, now: i64, sunset: Option<i64>) -> KeyStatus {
        if self.revoked_at.is_some() {
            KeyStatus::Revoked
        } else if self.state == KeyState::Inactive {
            KeyStatus::Inactive
        } else if self.is_expired(now) {
            KeyStatus::Expired
        } else if self.is_legacy() {
            if sunset.is_some_and(|at| at <= now) {
                KeyStatus::Sunset
            } else {
                KeyStatus::Legacy
            }
        } else {
            KeyStatus::Active
        }
    }

    /// The previous token's end, while it still works at `now`.
    pub fn previous_until(&self, now: i64) -> Option<i64> {
        self.previous.as_ref().map(|p| p.until).filter(|&until| until > now)
    }

    /// How listings show the key.
    pub fn view(&self, live: Live) -> KeyView {
        let Live { now, sunset, last_used_at, credits } = live;
        KeyView {
            id: self.id.to_string(),
            prefix: self.secret.prefix.clone(),
            masked: token::masked(&self.secret.prefix, &self.secret.tail),
            name: self.name.clone(),
            description: self.description.clone(),
            workspace: self.workspace.clone(),
            env: self.env,
            scopes: self.scopes.to_vec(),
            status: self.status(now, sunset),
            created_at: self.created_at,
            last_used_at,
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
            metadata: self.metadata.clone(),
            role: self.role,
            origin: self.origin,
            account: self.account.clone(),
            previous_token_until: self.previous_until(now),
            limits: Limits { credits, ..self.limits.clone() },
        }
    }

    /// What a verify tells the app server about the key.
    pub fn verified(&self) -> VerifiedKey {
        VerifiedKey {
            id: self.id.to_string(),
            workspace: self.workspace.clone(),
            name: self.name.clone(),
            env: self.env,
            scopes: self.scopes.to_vec(),
            expires_at: self.expires_at,
            role: self.role,
            metadata: self.metadata.clone(),
            account: self.account.clone(),
        }
    }
}
