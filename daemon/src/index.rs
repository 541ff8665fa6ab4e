//! The hot index: every key in memory, so that verify never reads the store.
//!
//! Each entry is an immutable snapshot ([`HotKey`]) behind an `Arc`. A management change builds a new
//! snapshot and swaps it in *before* the change is acknowledged, so the next verify sees it; a verify holds
//! the map's shard lock only long enough to clone the `Arc`. What changes without a management call (the
//! warm digest, last-used time) lives in cells carried from one snapshot to the next.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};

use dashmap::DashMap;
use keyward_protocol::{KeyId, ScopeSet};

use crate::hasher::Digest;
use crate::record::KeyRecord;

/// One key as the verify path needs it.
#[derive(Debug)]
pub struct HotKey {
    pub record: KeyRecord,
    /// The record's scopes, parsed once.
    pub scopes: ScopeSet,
    /// The PHC string, shared with in-flight Argon2 checks.
    pub phc: Arc<str>,
    /// Set by the first verify whose secret passes Argon2; later verifies compare against it.
    warm: Arc<OnceLock<Digest>>,
    /// Last successful verify, Unix seconds; 0 when never used.
    last_used: Arc<AtomicI64>,
}

impl HotKey {
    /// A snapshot of a record loaded from storage or newly created.
    pub fn new(record: KeyRecord) -> HotKey {
        let last_used = record.last_used_at.unwrap_or(0);
        HotKey::build(record, Arc::new(OnceLock::new()), Arc::new(AtomicI64::new(last_used)))
    }

    /// The next snapshot of this key: same secret cells (the warm digest stays valid while the hash is
    /// unchanged), new settings.
    pub fn succeed(&self, record: KeyRecord) -> HotKey {
        let warm = if record.secret.phc == *self.phc { self.warm.clone() } else { Arc::new(OnceLock::new()) };
        HotKey::build(record, warm, self.last_used.clone())
    }

    fn build(record: KeyRecord, warm: Arc<OnceLock<Digest>>, last_used: Arc<AtomicI64>) -> HotKey {
        let scopes = ScopeSet::parse(&record.scopes).unwrap_or_default();
        let phc = Arc::from(record.secret.phc.as_str());
        HotKey { record, scopes, phc, warm, last_used }
    }

    /// The cached digest, once a verify has warmed this key.
    pub fn warm_digest(&self) -> Option<&Digest> {
        self.warm.get()
    }

    /// Caches the digest of a secret that has just passed Argon2 against this snapshot's hash.
    pub fn warm_up(&self, digest: Digest) {
        let _ = self.warm.set(digest);
    }

    /// Records a successful verify at `now`.
    pub fn touch(&self, now: i64) {
        self.last_used.fetch_max(now, Ordering::Relaxed);
    }

    /// The last successful verify, if any.
    pub fn last_used_at(&self) -> Option<i64> {
        Some(self.last_used.load(Ordering::Relaxed)).filter(|&t| t > 0)
    }

    /// The record with the freshest last-used time folded in, ready to be stored.
    pub fn current_record(&self) -> KeyRecord {
        KeyRecord { last_used_at: self.last_used_at(), ..self.record.clone() }
    }
}

/// Every key by id; cheap to clone.
#[derive(Clone, Default)]
pub struct Index {
    keys: Arc<DashMap<KeyId, Arc<HotKey>>>,
}

impl Index {
    /// An index holding `records`.
    pub fn load(records: Vec<KeyRecord>) -> Index {
        let index = Index::default();
        for record in records {
            index.keys.insert(record.id.clone(), Arc::new(HotKey::new(record)));
        }
        index
    }

    /// The current snapshot of key `id`.
    pub fn get(&self, id: &str) -> Option<Arc<HotKey>> {
        self.keys.get(id).map(|entry| entry.value().clone())
    }

    pub fn contains(&self, id: &str) -> bool {
        self.keys.contains_key(id)
    }

    /// Installs `key` as the current snapshot of its id.
    pub fn put(&self, key: HotKey) {
        self.keys.insert(key.record.id.clone(), Arc::new(key));
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The snapshots of one workspace's keys, oldest first (ties broken by id).
    pub fn workspace_keys(&self, workspace: &str) -> Vec<Arc<HotKey>> {
        let mut keys: Vec<Arc<HotKey>> = self
            .keys
            .iter()
            .filter(|entry| entry.value().record.workspace == workspace)
            .map(|entry| entry.value().clone())
            .collect();
        keys.sort_by(|a, b| order(a).cmp(&order(b)));
        keys
    }
}

/// The listing order of a key.
pub fn order(key: &HotKey) -> (i64, &str) {
    (key.record.created_at, key.record.id.as_str())
}
