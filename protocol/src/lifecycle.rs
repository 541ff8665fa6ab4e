//! The wire types of a key's life after creation: roles, edits, imports and legacy accounts.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::expiry::ExpirySpec;
use crate::limits::{Limits, Rate, RatePolicy, Refill};
use crate::secret::Secret;

/// The longest grace window a regenerate may give the previous token: 30 days, in seconds.
pub const MAX_GRACE_SECONDS: u64 = 30 * 86_400;

/// The role a key acts with. A member key can never hold the `admin` scope.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    #[default]
    Member,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "member" => Ok(Role::Member),
            "admin" => Ok(Role::Admin),
            other => Err(format!("unknown role {other:?}: expected admin or member")),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a key's token came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyOrigin {
    /// Minted by keyward.
    #[default]
    Generated,
    /// Imported from another system.
    Imported,
    /// An imported legacy personal key.
    Legacy,
}

impl KeyOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyOrigin::Generated => "generated",
            KeyOrigin::Imported => "imported",
            KeyOrigin::Legacy => "legacy",
        }
    }
}

/// The settings an edit changes; `None` leaves a setting as it is. The token never changes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyChanges {
    pub name: Option<String>,
    /// `Some("")` clears the description.
    pub description: Option<String>,
    /// Replaces the whole scope set.
    pub scopes: Option<Vec<String>>,
    pub role: Option<Role>,
    /// Sets, moves or (with `never`) clears the expiry.
    pub expires: Option<ExpirySpec>,
    /// Merged into the key's metadata; an empty value removes that entry.
    pub metadata: BTreeMap<String, String>,
    /// A new plan, custom rate or `Unlimited`; takes effect on the next verify.
    pub rate: Option<RatePolicy>,
    /// Merged into the key's named limits; `None` as a value removes that limit.
    pub named_limits: BTreeMap<String, Option<Rate>>,
    /// A new refill schedule; `Some(None)` removes it.
    pub refill: Option<Option<Refill>>,
}

impl KeyChanges {
    /// Whether the edit would change nothing.
    pub fn is_empty(&self) -> bool {
        self == &KeyChanges::default()
    }
}

/// Take over a token issued by another system, storing only its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportRequest {
    /// The existing token: any printable ASCII, 16 to 512 characters.
    pub token: Secret,
    pub workspace: String,
    pub name: String,
    pub description: Option<String>,
    pub scopes: Vec<String>,
    pub role: Role,
    pub expires: ExpirySpec,
    pub metadata: BTreeMap<String, String>,
    pub limits: Limits,
    /// `Some(account)` imports a legacy personal key: account-wide, view and revoke only, refused after the
    /// daemon's legacy sunset.
    pub legacy_account: Option<String>,
}

impl ImportRequest {
    /// An import of `token` as a `member` key that never expires, with the default limits.
    pub fn new(
        token: impl Into<Secret>,
        workspace: impl Into<String>,
        name: impl Into<String>,
        scopes: Vec<String>,
    ) -> Self {
        ImportRequest {
            token: token.into(),
            workspace: workspace.into(),
            name: name.into(),
            description: None,
            scopes,
            role: Role::default(),
            expires: ExpirySpec::Never,
            metadata: BTreeMap::new(),
            limits: Limits::default(),
            legacy_account: None,
        }
    }
}

/// An account and the workspaces its legacy keys may act on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    pub account: String,
    pub workspaces: Vec<String>,
}
