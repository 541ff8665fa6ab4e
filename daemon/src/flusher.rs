//! The batch writer for what verify learns in memory: last-used times, credit balances, usage counts, and
//! warm digests (so that a restart does not send every key back through Argon2).
//!
//! Verify never writes to disk. Every interval (and once more at shutdown) this task writes what moved
//! since the last pass in one batch and one flush, so stored values are at most one interval late, and a
//! crash loses at most one interval of them — never a management change, which lives in other trees and is
//! written before it is acknowledged. Counters are written under the management write lock, so an
//! operator's `credits --set` can never be overwritten by an older balance.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock::unix_now;
use crate::hasher::fingerprint;
use crate::index::{HotKey, HotSecret};
use crate::manage::{USAGE_DAYS, USAGE_HOURS};
use crate::service::Service;
use crate::store::HighWater;
use crate::usage::{self, CODES};

/// How often old usage buckets are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Writes last-used times and credit balances that moved, then pending usage counts.
pub async fn flush(service: &Service) {
    // One walk over the index per pass; the cells read are shared by every snapshot of a key, so a key
    // changed since the walk is saved with its latest values, and a key created since, on the next pass.
    let keys = service.index().all();
    save_counters(service, &keys).await;
    save_usage(service, &keys).await;
    save_warm(service, &keys).await;
    save_high_water(service).await;
    service.stats().flushed(unix_now());
}

async fn save_counters(service: &Service, keys: &[Arc<HotKey>]) {
    let _writing = service.write_lock().await;
    let last_used: Vec<(Arc<HotKey>, i64)> =
        keys.iter().filter_map(|key| key.unsaved_last_used().map(|at| (key.clone(), at))).collect();
    let credits: Vec<(Arc<HotKey>, (u64, i64))> = keys
        .iter()
        .filter_map(|key| key.credits.as_ref().and_then(|cell| cell.unsaved()).map(|state| (key.clone(), state)))
        .collect();
    if last_used.is_empty() && credits.is_empty() {
        return;
    }
    let last_used_batch: Vec<(String, i64)> = last_used.iter().map(|(k, at)| (k.record.id.to_string(), *at)).collect();
    let credits_batch: Vec<(String, (u64, i64))> = credits.iter().map(|(k, s)| (k.record.id.to_string(), *s)).collect();
    let store = service.store().clone();
    match tokio::task::spawn_blocking(move || store.save_counters(&last_used_batch, &credits_batch)).await {
        Ok(Ok(())) => {
            for (key, at) in &last_used {
                key.mark_last_used_saved(*at);
            }
            for (key, (balance, refilled_at)) in &credits {
                if let Some(cell) = &key.credits {
                    cell.mark_saved(*balance, *refilled_at);
                }
            }
        }
        Ok(Err(error)) => tracing::warn!(%error, "saving last-used times and credits failed; will retry"),
        Err(error) => tracing::warn!(%error, "counter task failed; will retry"),
    }
}

async fn save_usage(service: &Service, keys: &[Arc<HotKey>]) {
    let drained: Vec<(Arc<HotKey>, [u64; CODES])> =
        keys.iter().filter_map(|key| key.usage.drain().map(|counts| (key.clone(), counts))).collect();
    if drained.is_empty() {
        return;
    }
    let batch: Vec<(String, [u64; CODES])> = drained.iter().map(|(k, c)| (k.record.id.to_string(), *c)).collect();
    let store = service.store().clone();
    let written = tokio::task::spawn_blocking(move || store.add_usage(unix_now(), &batch)).await;
    if !matches!(written, Ok(Ok(()))) {
        tracing::warn!("saving usage counts failed; they stay in memory and are retried");
        for (key, counts) in &drained {
            key.usage.restore(counts);
        }
    }
}

/// Persists the warm digests of keyward-generated secrets that are warm but not yet stored. Each key's
/// entry is rewritten whole (current and previous secret), so a regenerated secret's old digest goes.
async fn save_warm(service: &Service, keys: &[Arc<HotKey>]) {
    let mut cells = Vec::new();
    let mut batch = Vec::new();
    for key in keys {
        let secrets: Vec<&HotSecret> =
            std::iter::once(&key.current).chain(&key.previous).filter(|s| s.persistable).collect();
        if !secrets.iter().any(|s| s.warm.unsaved().is_some()) {
            continue;
        }
        let mut digests = Vec::new();
        for secret in secrets {
            if let Some(digest) = secret.warm.get() {
                digests.push((fingerprint(&secret.phc), digest.to_bytes()));
                cells.push(secret.warm.clone());
            }
        }
        batch.push((key.record.id.to_string(), digests));
    }
    if batch.is_empty() {
        return;
    }
    let store = service.store().clone();
    match tokio::task::spawn_blocking(move || store.save_warm(&batch)).await {
        Ok(Ok(())) => cells.iter().for_each(|cell| cell.mark_saved()),
        Ok(Err(error)) => tracing::warn!(%error, "saving warm digests failed; will retry"),
        Err(error) => tracing::warn!(%error, "warm digest task failed; will retry"),
    }
}

/// Records the store's high-water mark (see [`crate::store`]) when it moved.
async fn save_high_water(service: &Service) {
    let mark = {
        let _writing = service.write_lock().await;
        HighWater { audit_seq: service.committed_audit_seq(), keys: service.index().len() as u64 }
    };
    if service.stats().high_water() == (mark.audit_seq, mark.keys) {
        return;
    }
    let store = service.store().clone();
    match tokio::task::spawn_blocking(move || store.record_high_water(mark)).await {
        Ok(Ok(())) => service.stats().set_high_water(mark.audit_seq, mark.keys),
        Ok(Err(error)) => tracing::warn!(%error, "recording the store manifest failed; will retry"),
        Err(error) => tracing::warn!(%error, "manifest task failed; will retry"),
    }
}

async fn prune_usage(service: &Service) {
    let now = unix_now();
    let hours_before = usage::hour_start(now) - (USAGE_HOURS - 1) * 3600;
    let days_before = usage::day_start(now) - (USAGE_DAYS - 1) * 86_400;
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
