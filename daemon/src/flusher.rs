//! The batch writer for what verify learns in memory: last-used times, credit balances, usage counts, and
//! warm digests (so that a restart does not send every key back through Argon2).
//!
//! Verify never writes to disk. Every interval (and once more at shutdown) this task writes what moved
//! since the last pass in one batch and one flush, visiting only the keys verified since then (the
//! [`crate::keys::activity`] list) and never walking the whole index, so stored values are at most one interval late, and a
//! crash loses at most one interval of them — never a management change, which lives in other trees and is
//! written before it is acknowledged. Counters are written under the management write lock, so an
//! operator's `credits --set` can never be overwritten by an older balance.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::host::clock::unix_now;
use crate::keys::hot::HotKey;
use crate::keys::store::{HighWater, StoreError};
use crate::keys::usage::{self, CODES};
use crate::secrets::hasher::fingerprint;
use crate::service::Service;

/// How often old usage buckets are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The keys a pass visits, shared with the blocking tasks that read their cells and write them.
type Keys = Arc<Vec<Arc<HotKey>>>;

/// Writes what moved for the keys used since the last pass: last-used times and credit balances, pending
/// usage counts, and new warm digests; then the high-water mark. Everything that walks the keys runs on
/// the blocking pool with the writes: after a restart a pass can visit a hundred thousand keys, which on
/// an async worker would hold up every connection it serves.
pub async fn flush(service: &Service) {
    // The keys verified since the last pass, each taken off the list before its cells are read: a verify
    // from now on lists it again. The cells are shared by every snapshot of a key, so a key changed since
    // is saved with its latest values. A key whose values could not be saved is listed again.
    let index = service.index().clone();
    let Ok(keys) = tokio::task::spawn_blocking(move || Arc::new(index.take_active())).await else {
        return;
    };
    let saved = save_counters(service, &keys).await && save_warm(service, &keys).await;
    save_usage(service, &keys).await;
    if !saved {
        keys.iter().for_each(|key| service.index().relist(key));
    }
    save_high_water(service).await;
    service.stats().flushed(unix_now());
}

/// `false` when the write failed (the values stay unsaved and are retried). The values are written under the
/// write lock (so a management change's balance is never overwritten by an older one) and flushed after it
/// is released, so a management change, or a fleet host applying one, never waits for this fsync.
async fn save_counters(service: &Service, keys: &Keys) -> bool {
    let staged = {
        let _writing = service.write_lock().await;
        let (store, keys) = (service.store().clone(), Arc::clone(keys));
        stored_with("last-used times and credits", move || stage_counters(&store, &keys)).await
    };
    let Some(staged) = staged else { return false };
    let store = service.store().clone();
    stored("last-used times and credits", move || {
        store.flush()?;
        staged.mark_saved();
        Ok(())
    })
    .await
}

/// Last-used times and credit balances written to the store but not flushed yet.
#[derive(Default)]
struct Staged {
    last_used: Vec<(Arc<HotKey>, i64)>,
    credits: Vec<(Arc<HotKey>, (u64, i64))>,
}

impl Staged {
    /// Notes in each key's cells that the store holds what was written.
    fn mark_saved(&self) {
        for (key, at) in &self.last_used {
            key.activity.mark_last_used_saved(*at);
        }
        for (key, (balance, refilled_at)) in &self.credits {
            if let Some(cell) = &key.credits {
                cell.mark_saved(*balance, *refilled_at);
            }
        }
    }
}

/// Writes the last-used times and credit balances that moved (without flushing).
fn stage_counters(store: &crate::keys::store::Store, keys: &Keys) -> Result<Staged, StoreError> {
    let last_used: Vec<(Arc<HotKey>, i64)> =
        keys.iter().filter_map(|key| key.activity.unsaved_last_used().map(|at| (key.clone(), at))).collect();
    let credits: Vec<(Arc<HotKey>, (u64, i64))> = keys
        .iter()
        .filter_map(|key| key.credits.as_ref().and_then(|cell| cell.unsaved()).map(|state| (key.clone(), state)))
        .collect();
    if last_used.is_empty() && credits.is_empty() {
        return Ok(Staged::default());
    }
    let last_used_batch: Vec<(String, i64)> = last_used.iter().map(|(k, at)| (k.record.id.to_string(), *at)).collect();
    let credits_batch: Vec<(String, (u64, i64))> = credits.iter().map(|(k, s)| (k.record.id.to_string(), *s)).collect();
    store.save_counters(&last_used_batch, &credits_batch)?;
    Ok(Staged { last_used, credits })
}

/// Runs one store write off the async workers; `false`, after a warning naming `what`, when it failed (the
/// values stay unsaved and are retried on the next pass).
async fn stored(what: &'static str, write: impl FnOnce() -> Result<(), StoreError> + Send + 'static) -> bool {
    stored_with(what, write).await.is_some()
}

/// [`stored`] for a write that returns something; `None` when it failed.
async fn stored_with<T: Send + 'static>(
    what: &'static str,
    write: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Option<T> {
    match tokio::task::spawn_blocking(write).await {
        Ok(Ok(value)) => Some(value),
        Ok(Err(error)) => {
            tracing::warn!(%error, what, "saving failed; will retry");
            None
        }
        Err(error) => {
            tracing::warn!(%error, what, "storage task failed; will retry");
            None
        }
    }
}

/// Usage counts are taken from their cells; a failed write puts them back and lists their keys again.
async fn save_usage(service: &Service, keys: &Keys) {
    let (store, index, keys) = (service.store().clone(), service.index().clone(), Arc::clone(keys));
    stored("usage counts", move || {
        let drained: Vec<(&HotKey, [u64; CODES])> =
            keys.iter().filter_map(|key| key.activity.usage.drain().map(|counts| (&**key, counts))).collect();
        if drained.is_empty() {
            return Ok(());
        }
        let batch: Vec<(String, [u64; CODES])> = drained.iter().map(|(k, c)| (k.record.id.to_string(), *c)).collect();
        store.add_usage(unix_now(), &batch).inspect_err(|_| {
            for (key, counts) in &drained {
                key.activity.usage.restore(counts);
                index.relist(key);
            }
        })
    })
    .await;
}

/// Persists the warm digests of keyward-generated secrets that are warm but not yet stored. Each key's
/// entry is rewritten whole (current and previous secret), so a regenerated secret's old digest goes.
/// `false` when the write failed.
async fn save_warm(service: &Service, keys: &Keys) -> bool {
    let (store, keys) = (service.store().clone(), Arc::clone(keys));
    stored("warm digests", move || {
        let mut cells = Vec::new();
        let mut batch = Vec::new();
        for key in keys.iter().filter(|key| key.has_unsaved_warm()) {
            let mut digests = Vec::new();
            for secret in key.persistable_secrets() {
                if let Some(digest) = secret.warm.get() {
                    digests.push((fingerprint(&secret.phc), digest.to_bytes()));
                    cells.push(secret.warm.clone());
                }
            }
            batch.push((key.record.id.to_string(), digests));
        }
        if batch.is_empty() {
            return Ok(());
        }
        store.save_warm(&batch)?;
        cells.iter().for_each(|cell| cell.mark_saved());
        Ok(())
    })
    .await
}

/// Records the store's high-water mark (see [`crate::keys::store`]) when it moved.
async fn save_high_water(service: &Service) {
    let mark = {
        let _writing = service.write_lock().await;
        HighWater { audit_seq: service.committed_audit_seq(), keys: service.index().len() as u64 }
    };
    if service.stats().high_water() == (mark.audit_seq, mark.keys) {
        return;
    }
    let store = service.store().clone();
    if stored("the store manifest", move || store.record_high_water(mark)).await {
        service.stats().set_high_water(mark.audit_seq, mark.keys);
    }
}

async fn prune_usage(service: &Service) {
    let now = unix_now();
    let (hours_before, days_before) = (usage::first_hour_kept(now), usage::first_day_kept(now));
    let store = service.store().clone();
    match tokio::task::spawn_blocking(move || store.prune_usage(hours_before, days_before)).await {
        Ok(Ok(pruned)) if pruned > 0 => tracing::debug!(pruned, "old usage buckets pruned"),
        Ok(Ok(_)) => {}
        Ok(Err(error)) => tracing::warn!(%error, "pruning usage buckets failed"),
        Err(error) => tracing::warn!(%error, "pruning task failed"),
    }
}

/// Flushes every `interval` until `shutdown`, then once more; prunes old usage buckets hourly.
pub async fn run(service: Service, interval: Duration, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_prune = tokio::time::Instant::now();
    prune_usage(&service).await;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shutdown.cancelled() => break,
        }
        flush(&service).await;
        if last_prune.elapsed() >= PRUNE_EVERY {
            prune_usage(&service).await;
            last_prune = tokio::time::Instant::now();
        }
    }
}
