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
    /// balance is kept apart, see [`crate::limits::credits`]).
    pub limits: Limits,
}

/// What a key's status depends on, kept for every key in eight bytes ([`Census::pack`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Census {
    pub revoked: bool,
    pub inactive: bool,
    pub legacy: bool,
    pub expires_at: Option<i64>,
}

/// A packed census's flag bits; the expiry takes the bits above them.
const REVOKED: u64 = 1;
const INACTIVE: u64 = 2;
const LEGACY: u64 = 4;
const FLAG_BITS: u32 = 3;
/// A packed census's expiry when the key never expires (later than any representable time).
const NEVER: u64 = u64::MAX >> FLAG_BITS;

impl Census {
    /// The operator-facing status at `now`, given the legacy sunset (if any). Revocation wins over
    /// everything, then deactivation, then expiry.
    pub fn status(self, now: i64, sunset: Option<i64>) -> KeyStatus {
        if self.revoked {
            KeyStatus::Revoked
        } else if self.inactive {
            KeyStatus::Inactive
        } else if self.expires_at.is_some_and(|at| at <= now) {
            KeyStatus::Expired
        } else if self.legacy {
            if sunset.is_some_and(|at| at <= now) {
                KeyStatus::Sunset
            } else {
                KeyStatus::Legacy
            }
        } else {
            KeyStatus::Active
        }
    }

    /// Eight bytes: the expiry (clamped to 0..2^61 seconds, far beyond any expiry a key can be given)
    /// above three flag bits.
    pub fn pack(self) -> u64 {
        let expiry = self.expires_at.map_or(NEVER, |at| (at.max(0) as u64).min(NEVER - 1));
        let flag = |set: bool, bit: u64| if set { bit } else { 0 };
        expiry << FLAG_BITS | flag(self.revoked, REVOKED) | flag(self.inactive, INACTIVE) | flag(self.legacy, LEGACY)
    }

    pub fn unpack(packed: u64) -> Census {
        let expiry = packed >> FLAG_BITS;
        Census {
            revoked: packed & REVOKED != 0,
            inactive: packed & INACTIVE != 0,
            legacy: packed & LEGACY != 0,
            expires_at: (expiry != NEVER).then_some(expiry as i64),
        }
    }
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

    /// The operator-facing status at `now`, given the legacy sunset (if any).
    pub fn status(&self, now: i64, sunset: Option<i64>) -> KeyStatus {
        self.census().status(now, sunset)
    }

    /// What the key's status depends on.
    pub fn census(&self) -> Census {
        Census {
            revoked: self.revoked_at.is_some(),
            inactive: self.state == KeyState::Inactive,
            legacy: self.is_legacy(),
            expires_at: self.expires_at,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_census_packs_into_eight_bytes_and_back() {
        for revoked in [false, true] {
            for inactive in [false, true] {
                for legacy in [false, true] {
                    for expires_at in [None, Some(0), Some(1_790_000_000), Some(i64::MAX >> 3)] {
                        let census = Census { revoked, inactive, legacy, expires_at };
                        let back = Census::unpack(census.pack());
                        let clamped = expires_at.map(|at| at.min((NEVER - 1) as i64));
                        assert_eq!(back, Census { expires_at: clamped, ..census });
                    }
                }
            }
        }
    }

    #[test]
    fn status_puts_revocation_first_then_deactivation_then_expiry() {
        let census = Census { revoked: false, inactive: false, legacy: true, expires_at: Some(100) };
        assert_eq!(census.status(50, None), KeyStatus::Legacy);
        assert_eq!(census.status(50, Some(50)), KeyStatus::Sunset);
        assert_eq!(census.status(100, Some(50)), KeyStatus::Expired);
        assert_eq!(Census { inactive: true, ..census }.status(100, None), KeyStatus::Inactive);
        assert_eq!(Census { revoked: true, inactive: true, ..census }.status(100, None), KeyStatus::Revoked);
    }
}
