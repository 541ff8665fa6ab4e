//! The audit log's wire types: who did what to which key, and when.
//!
//! Entries hold field names and non-secret values (names, scopes, expiry, state), never a token, secret or
//! hash.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A management action that is audited.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AuditAction {
    Create,
    Edit,
    Regenerate,
    Deactivate,
    Activate,
    Revoke,
    Import,
    AccountSet,
    Credits,
}

impl AuditAction {
    /// The stable lowercase name, e.g. `regenerate`, `account_set`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Create => "create",
            AuditAction::Edit => "edit",
            AuditAction::Regenerate => "regenerate",
            AuditAction::Deactivate => "deactivate",
            AuditAction::Activate => "activate",
            AuditAction::Revoke => "revoke",
            AuditAction::Import => "import",
            AuditAction::AccountSet => "account_set",
            AuditAction::Credits => "credits",
        }
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who asked: the peer's credentials as the kernel reported them, plus the label the caller chose.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
    /// Free text the caller passed with `--actor` (e.g. the dashboard user's name); not verified.
    pub label: Option<String>,
}

/// One changed field: its name and the values before and after (absent values are `None`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: String,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// One audit log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Increases by one per entry, never reused.
    pub seq: u64,
    /// Unix seconds.
    pub at: i64,
    pub action: AuditAction,
    pub key_id: Option<String>,
    pub workspace: Option<String>,
    pub account: Option<String>,
    pub changes: Vec<FieldChange>,
    pub actor: Actor,
}

/// Which entries to return, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditQuery {
    pub workspace: Option<String>,
    pub key: Option<String>,
    /// Only entries at or after this time (Unix seconds).
    pub since: Option<i64>,
    /// At most this many; 0 means the daemon's default (100).
    pub limit: u32,
}
