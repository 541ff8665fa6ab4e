//! [`Service`]: the daemon's shared state in one cheap handle — the index of keys, the store, the hasher,
//! the reloadable settings (plans, access rules, legacy sunset), legacy accounts, the audit sequence and the
//! counters, and in fleet mode the engine. It holds state and the reads and swaps of that state; what a request does with it lives in
//! `verify/` and `manage/`, and which request goes where in `dispatch`.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use keyward_protocol::KeyId;
use tokio::sync::{Mutex, MutexGuard};

use crate::config::{Config, Reloadable};
use crate::engine::Engine;
use crate::error::DaemonError;
use crate::keys::hot::HotKey;
use crate::keys::index::Index;
use crate::keys::record::KeyRecord;
use crate::keys::store::{KeyCounters, Loaded, Store, StoreError};
use crate::limits::Plans;
use crate::secrets::hasher::Hasher;
use crate::stats::Stats;

/// What a key wants from the fleet engine, as [`Service::top_up_credits`] and [`Service::top_up_lease`]
/// queue it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wanted {
    /// A grant of its escrowed credits.
    Credits(KeyId),
    /// A lease of its fleet-wide limit.
    Lease(KeyId),
}

/// The queue of [`Wanted`] grants.
pub type GrantRequests = tokio::sync::mpsc::UnboundedReceiver<Wanted>;

/// A key as management reads it.
pub enum Found {
    /// In use: the snapshot verify uses, with its live counters.
    Hot(Arc<HotKey>),
    /// Not used since startup: the store holds everything about it.
    Stored(Box<KeyRecord>, KeyCounters),
}

impl Found {
    /// The key's record, as stored.
    pub fn record(&self) -> &KeyRecord {
        match self {
            Found::Hot(key) => &key.record,
            Found::Stored(record, _) => record,
        }
    }
}

/// The daemon's shared state; clones share everything.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

/// No legacy sunset configured.
const NO_SUNSET: i64 = i64::MAX;

struct Inner {
    index: Index,
    store: Arc<Store>,
    hasher: Hasher,
    /// Serialises changes so each is read-modify-write on the latest snapshot of a key.
    writes: Mutex<()>,
    /// Account → the workspaces its legacy keys may act on.
    accounts: DashMap<String, Arc<[String]>>,
    /// Unix seconds from which legacy keys answer LEGACY_SUNSET; [`NO_SUNSET`] for none.
    legacy_sunset: AtomicI64,
    /// The sequence number of the next audit entry (advanced only under the write lock, after a commit).
    next_audit_seq: AtomicU64,
    /// Rate plans by name; read when snapshots are built, never on the verify path.
    plans: Reloadable<Plans>,
    stats: Stats,
    /// Fleet mode's engine; `None` on a host on its own.
    engine: Option<Arc<Engine>>,
    /// Fleet mode: what keys want from the engine (credits, leases), for the task that asks it.
    grant_requests: Option<tokio::sync::mpsc::UnboundedSender<Wanted>>,
}

impl Service {
    /// The service over what the store held at startup.
    /// Fails if a stored key cannot be decoded.
    /// In fleet mode, also returns the queue of what keys want from the engine ([`Wanted`]).
    pub fn new(
        loaded: Loaded,
        store: Store,
        hasher: Hasher,
        config: &Config,
    ) -> Result<(Service, Option<GrantRequests>), StoreError> {
        let engine = config.fleet.clone().map(|settings| Arc::new(Engine::new(settings)));
        let (grant_requests, requested) = match engine {
            Some(_) => {
                let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
                (Some(sender), Some(receiver))
            }
            None => (None, None),
        };
        let plans = config.plans.clone();
        let index = Index::with_capacity(store.recorded_keys());
        // The keys in use before the restart (those with persisted warm digests) come back in memory and
        // warm, so their first verifies need neither Argon2 nor the store; every other key waits in the
        // directory until it is first used.
        store.load_keys(|record| {
            index.add_stored(&record);
            if loaded.warm_keys.contains(record.id.as_str()) {
                let counters = KeyCounters { escrow: engine.is_some(), ..store.counters(record.id.as_str())? };
                index.promote(HotKey::new(record, counters, &plans));
            }
            Ok(())
        })?;
        let accounts = loaded.accounts.into_iter().map(|a| (a.account, Arc::from(a.workspaces))).collect();
        let service = Service {
            inner: Arc::new(Inner {
                index,
                store: Arc::new(store),
                hasher,
                writes: Mutex::new(()),
                accounts,
                legacy_sunset: AtomicI64::new(config.legacy_sunset.unwrap_or(NO_SUNSET)),
                next_audit_seq: AtomicU64::new(loaded.next_audit_seq),
                plans: Reloadable::new(plans),
                stats: Stats::default(),
                engine,
                grant_requests,
            }),
        };
        Ok((service, requested))
    }

    pub fn index(&self) -> &Index {
        &self.inner.index
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.inner.store
    }

    /// The counters of a key that has none yet (just created or imported).
    pub fn fresh_counters(&self) -> KeyCounters {
        KeyCounters { escrow: self.engine().is_some(), ..KeyCounters::default() }
    }

    /// Fleet mode: if `key`'s escrowed credits want a grant (see [`crate::limits::credits`]), queues it
    /// for the task that asks the engine; never waits. Does nothing for a key whose credits are its own.
    pub fn top_up_credits(&self, key: &HotKey) {
        let Some(queue) = &self.inner.grant_requests else { return };
        if key.credits.as_ref().is_some_and(|cell| cell.wants_grant()) {
            let _ = queue.send(Wanted::Credits(key.record.id.clone()));
        }
    }

    /// Fleet mode: if the lease of `key`'s fleet-wide limit wants renewing at `now` (see
    /// [`crate::limits::lease`]), queues it for the task that asks the engine; never waits.
    pub fn top_up_lease(&self, key: &HotKey, now: u64) {
        let Some(queue) = &self.inner.grant_requests else { return };
        let lease = key.main_limit.as_ref().and_then(|limit| limit.lease.as_ref());
        if lease.is_some_and(|lease| lease.wants_lease(now)) {
            let _ = queue.send(Wanted::Lease(key.record.id.clone()));
        }
    }

    /// Fleet mode's engine, if this host is part of a fleet.
    pub fn engine(&self) -> Option<&Arc<Engine>> {
        self.inner.engine.as_ref()
    }

    pub fn hasher(&self) -> &Hasher {
        &self.inner.hasher
    }

    pub(crate) async fn write_lock(&self) -> MutexGuard<'_, ()> {
        self.inner.writes.lock().await
    }

    /// The rate plans in force.
    pub fn plans(&self) -> Arc<Plans> {
        self.inner.plans.get()
    }

    /// Replaces the rate plans and rebuilds the snapshot of every key in use under them (under the write
    /// lock, so no management change interleaves); the next verify of each key uses its new plan. Keys not
    /// in use get the plans in force when their snapshot is built.
    pub async fn set_plans(&self, plans: Plans) {
        let _writing = self.write_lock().await;
        self.inner.plans.replace(plans);
        let plans = self.plans();
        for key in self.index().hot_keys() {
            self.index().put(key.succeed(key.record.clone(), &plans));
        }
    }

    /// The snapshot of key `id`, read from the store and added to the index if the key was not in use yet;
    /// `None` for a key that does not exist. Blocks: a key not in use yet costs four reads of the store (its
    /// record, last-used time, credits and persisted warm digests; no Argon2), paid by the first verify or
    /// change of the key since startup; later ones find it in memory. Two first uses at once may both read; the
    /// first snapshot installed is the one both get.
    pub fn hot_key(&self, id: &str) -> Result<Option<Arc<HotKey>>, StoreError> {
        Ok(self.found(id)?.map(|found| match found {
            Found::Hot(key) => key,
            Found::Stored(record, counters) => {
                let key = self.index().promote(HotKey::new(*record, counters, &self.plans()));
                // Fleet mode: the first grant is on its way while this first use runs Argon2.
                self.top_up_credits(&key);
                key
            }
        }))
    }

    /// [`Service::hot_key`] on the blocking pool, for async callers.
    pub async fn load_key(&self, id: &KeyId) -> Result<Option<Arc<HotKey>>, DaemonError> {
        let (service, id) = (self.clone(), id.clone());
        let loaded = tokio::task::spawn_blocking(move || service.hot_key(id.as_str())).await;
        Ok(loaded.map_err(DaemonError::task("storage"))??)
    }

    /// Key `id` as management shows it, without adding it to the index: its snapshot if it is in use, or
    /// its stored record and counters (read only for a key the directory lists).
    pub fn found(&self, id: &str) -> Result<Option<Found>, StoreError> {
        if let Some(key) = self.index().get(id) {
            return Ok(Some(Found::Hot(key)));
        }
        if !self.index().contains(id) {
            return Ok(None);
        }
        let Some(record) = self.store().record(id)? else { return Ok(None) };
        let counters = KeyCounters { escrow: self.engine().is_some(), ..self.store().counters(id)? };
        Ok(Some(Found::Stored(Box::new(record), counters)))
    }

    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// When legacy keys stop working, if ever.
    pub fn legacy_sunset(&self) -> Option<i64> {
        Some(self.inner.legacy_sunset.load(Ordering::Relaxed)).filter(|&at| at != NO_SUNSET)
    }

    /// Moves (or clears) the legacy sunset; takes effect on the next verify.
    pub fn set_legacy_sunset(&self, at: Option<i64>) {
        self.inner.legacy_sunset.store(at.unwrap_or(NO_SUNSET), Ordering::Relaxed);
    }

    /// The workspaces an account's legacy keys may act on.
    pub fn account_workspaces(&self, account: &str) -> Option<Arc<[String]>> {
        self.inner.accounts.get(account).map(|entry| entry.value().clone())
    }

    pub(crate) fn put_account(&self, account: String, workspaces: Vec<String>) {
        self.inner.accounts.insert(account, Arc::from(workspaces));
    }

    /// The sequence number the next audit entry gets. Call under the write lock.
    pub(crate) fn peek_audit_seq(&self) -> u64 {
        self.inner.next_audit_seq.load(Ordering::Acquire)
    }

    /// The sequence number of the last committed audit entry (0 before any).
    pub(crate) fn committed_audit_seq(&self) -> u64 {
        self.peek_audit_seq() - 1
    }

    /// Advances the audit sequence after an entry was committed. Call under the write lock.
    pub(crate) fn advance_audit_seq(&self) {
        self.inner.next_audit_seq.fetch_add(1, Ordering::AcqRel);
    }

    /// Notes that the store holds audit entry `seq` (fleet mode, where the engine numbers them).
    pub(crate) fn note_audit_seq(&self, seq: u64) {
        self.inner.next_audit_seq.fetch_max(seq + 1, Ordering::AcqRel);
    }

    /// Whether `record` may act on `workspace`: its own, or for a legacy key any of its account's.
    pub fn may_act_on(&self, record: &KeyRecord, workspace: &str) -> bool {
        if record.workspace == workspace {
            return true;
        }
        let Some(account) = record.account.as_deref().filter(|_| record.is_legacy()) else {
            return false;
        };
        self.account_workspaces(account).is_some_and(|list| list.iter().any(|ws| ws == workspace))
    }
}
