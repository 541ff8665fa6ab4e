//! The batch writer for what verify counts in memory: last-used times.
//!
//! Verify never writes to disk. Every `interval` (and once more at shutdown) this task collects the keys
//! whose last-used time moved since it was last saved and writes them in one batch and one flush, so the
//! stored value is at most one interval late, and a crash loses at most that much last-used history —
//! never a management change, which lives in other trees.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::service::Service;

/// Saves unsaved last-used times now. Returns how many keys were written.
pub async fn save_last_used(service: &Service) -> usize {
    let moved: Vec<(std::sync::Arc<crate::index::HotKey>, i64)> =
        service.index().all().into_iter().filter_map(|key| key.unsaved_last_used().map(|at| (key, at))).collect();
    if moved.is_empty() {
        return 0;
    }
    let batch: Vec<(String, i64)> = moved.iter().map(|(key, at)| (key.record.id.to_string(), *at)).collect();
    let store = service.store().clone();
    match tokio::task::spawn_blocking(move || store.save_last_used(&batch)).await {
        Ok(Ok(())) => {
            for (key, at) in &moved {
                key.mark_last_used_saved(*at);
            }
            moved.len()
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "saving last-used times failed; will retry");
            0
        }
        Err(error) => {
            tracing::warn!(%error, "last-used task failed; will retry");
            0
        }
    }
}

/// Saves last-used times every `interval` until `shutdown`, then once more.
pub async fn run(service: Service, interval: Duration, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shutdown.cancelled() => break,
        }
        save_last_used(&service).await;
    }
}
