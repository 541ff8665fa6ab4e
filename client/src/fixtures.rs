//! Sample protocol values for unit tests, in one place so that a field added to the protocol is added to
//! the tests once.

use std::collections::BTreeMap;

use keyward_protocol::lifecycle::{KeyOrigin, Role};
use keyward_protocol::{Environment, KeyStatus, KeyView, Limits, VerifiedKey};

/// 2026-11-23T12:00:00Z.
pub(crate) const NOON: i64 = 1_795_435_200;

/// An active live member key of workspace `acme`, created at [`NOON`], never used, never expiring.
pub(crate) fn key_view(id: &str) -> KeyView {
    KeyView {
        id: id.into(),
        prefix: "kw_live_".into(),
        masked: "kw_live_****Zq9T".into(),
        name: "CI deploy".into(),
        description: None,
        workspace: "acme".into(),
        env: Environment::Live,
        scopes: vec!["read:all".into()],
        status: KeyStatus::Active,
        created_at: NOON,
        last_used_at: None,
        expires_at: None,
        revoked_at: None,
        metadata: BTreeMap::new(),
        role: Role::Member,
        origin: KeyOrigin::Generated,
        account: None,
        previous_token_until: None,
        limits: Limits::default(),
    }
}

/// What a valid verify of [`key_view`]'s token tells an app server.
pub(crate) fn verified_key(id: &str) -> VerifiedKey {
    VerifiedKey {
        id: id.into(),
        workspace: "acme".into(),
        name: "CI deploy".into(),
        env: Environment::Live,
        scopes: vec!["read:all".into()],
        expires_at: None,
        role: Role::Member,
        metadata: BTreeMap::new(),
        account: None,
    }
}
