//! Running the daemon: take the data directory, load the index, bind both sockets, accept connections
//! until shutdown, drain, flush.
//!
//! Back-pressure starts at the door: a connection permit is taken *before* `accept()`, so past
//! `max_connections` new clients wait in the kernel's backlog instead of being accepted and starved.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::connection::{self, ConnectionLimits};
use crate::error::StartError;
use crate::hasher::Hasher;
use crate::service::{Service, SocketRole};
use crate::store::Store;
use crate::{flusher, keyfile, lockfile, socket};

/// Runs the daemon until `shutdown` is cancelled, then drains in-flight requests (up to the configured
/// deadline), flushes the store and removes the socket files.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), StartError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .create(&config.data_dir)
        .map_err(|e| StartError::DataDir { path: config.data_dir.clone(), reason: e.to_string() })?;
    let _lock = lockfile::lock(&config.data_dir)?;
    let lookup_key = keyfile::load_or_create(&config.data_dir)?;
    let store = Store::open(&config.data_dir)?;
    let loaded = store.load()?;
    let hasher = Hasher::new(config.hash_cost, config.hash_workers, config.hash_queue, lookup_key)
        .map_err(StartError::Config)?;
    let service = Service::new(loaded, store, hasher, config.legacy_sunset, config.plans.clone());

    let (verify_listener, _verify_file) = socket::bind(&config.verify_socket, config.verify_socket_mode)?;
    let (admin_listener, _admin_file) = socket::bind(&config.admin_socket, config.admin_socket_mode)?;
    tracing::info!(
        keys = service.index().len(),
        verify_socket = %config.verify_socket.display(),
        admin_socket = %config.admin_socket.display(),
        "keywardd ready"
    );

    let tracker = TaskTracker::new();
    let flusher = tokio::spawn(flusher::run(service.clone(), config.flush_interval, shutdown.clone()));
    let permits = Arc::new(Semaphore::new(config.max_connections));
    let door = Door {
        service: service.clone(),
        limits: config.connection,
        permits,
        tracker: tracker.clone(),
        shutdown: shutdown.clone(),
    };
    tokio::join!(
        door.clone().accept(verify_listener, SocketRole::Verify),
        door.accept(admin_listener, SocketRole::Admin)
    );

    tracker.close();
    if tokio::time::timeout(config.drain_deadline, tracker.wait()).await.is_err() {
        tracing::warn!(deadline = ?config.drain_deadline, "drain deadline passed; closing remaining connections");
    }
    let _ = flusher.await;
    flusher::flush(&service).await;
    let store = service.store().clone();
    match tokio::task::spawn_blocking(move || store.flush()).await {
        Ok(Ok(())) => tracing::info!("store flushed; keywardd stopped"),
        Ok(Err(error)) => tracing::error!(%error, "final flush failed"),
        Err(error) => tracing::error!(%error, "final flush task failed"),
    }
    Ok(())
}

/// What every accept loop shares.
#[derive(Clone)]
struct Door {
    service: Service,
    limits: ConnectionLimits,
    permits: Arc<Semaphore>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Door {
    /// Accepts connections on `listener` until shutdown.
    async fn accept(self, listener: UnixListener, role: SocketRole) {
        let mut backoff = Duration::from_millis(10);
        loop {
            let permit = tokio::select! {
                permit = self.permits.clone().acquire_owned() => permit.expect("the permit semaphore is never closed"),
                _ = self.shutdown.cancelled() => return,
            };
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = self.shutdown.cancelled() => return,
            };
            match accepted {
                Ok((stream, _)) => {
                    backoff = Duration::from_millis(10);
                    let (service, limits, shutdown) = (self.service.clone(), self.limits, self.shutdown.clone());
                    self.tracker.spawn(async move {
                        connection::serve(stream, role, service, limits, shutdown).await;
                        drop(permit);
                    });
                }
                Err(error) => {
                    // Typically EMFILE: wait for descriptors to free up rather than spin or die.
                    tracing::warn!(%error, ?role, "accept failed; backing off");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }
}
