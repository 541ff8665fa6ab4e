//! Running the daemon: take the data directory, load the index, bind (or adopt) both sockets, tell systemd
//! it is ready, accept connections, reload on request, and on shutdown drain, flush and clean up.
//!
//! Back-pressure starts at the door, and each socket has its own permits: `max_connections` for the verify
//! socket and `max_admin_connections` for the admin socket, so app servers (or anyone allowed on the verify
//! socket) holding every verify connection cannot keep an operator from `keyward revoke` during an incident.
//! An admin permit is taken *before* `accept()`, so past the limit operators wait in the kernel's backlog.
//! When every verify permit is taken, one more verify client is accepted and waits while the connection
//! idle the longest is asked to make room ([`crate::net::roster`]); with none idle it waits for one to close.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::file::ConfigError;
use crate::config::{Config, Principal, Reloadable};
use crate::config::{ConnectionLimits, HttpSettings};
use crate::dispatch::SocketRole;
use crate::fleet::{self, JoinError};
use crate::host::lockfile::LockError;
use crate::host::logging::LogError;
use crate::host::systemd::{self, Activated};
use crate::http::{Endpoint, ListenError, Listeners};
use crate::keys::store::StoreError;
use crate::keys::store::{HighWater, Store};
use crate::net::connection;
use crate::net::peer::{Gate, Gatekeeper};
use crate::net::roster::Roster;
use crate::net::socket::SocketError;
use crate::net::socket::{SocketFile, SocketMode};
use crate::secrets::hasher::HashError;
use crate::secrets::hasher::{DigestKeys, Hasher};
use crate::secrets::keyfile::KeyFileError;
use crate::service::Service;
use crate::{flusher, host::lockfile, net::socket, secrets::keyfile};

/// Why the daemon could not start. Printed to the operator as is.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("data directory {}: {reason}", path.display())]
    DataDir { path: std::path::PathBuf, reason: String },
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Socket(#[from] SocketError),
    #[error("the Argon2 pool: {0}")]
    Hasher(#[from] HashError),
    #[error("fleet mode: {0}")]
    Fleet(#[from] JoinError),
    #[error(transparent)]
    Http(#[from] ListenError),
}

/// Builds the configuration anew (file, then flags and environment).
pub type LoadConfig = Box<dyn Fn() -> Result<Config, ConfigError> + Send + Sync>;
/// Installs a new log filter.
pub type SetLogLevel = Box<dyn Fn(&str) -> Result<(), LogError> + Send + Sync>;

/// How to re-read the configuration on SIGHUP, and how to apply what the daemon cannot apply itself.
pub struct Reload {
    /// Signalled for each reload request.
    pub requested: Arc<Notify>,
    pub load: LoadConfig,
    pub set_log_level: SetLogLevel,
}

/// Everything a daemon run starts from.
pub struct Launch {
    pub config: Config,
    pub shutdown: CancellationToken,
    pub reload: Option<Reload>,
    pub activated: Activated,
}

/// Runs the daemon with `config` until `shutdown` is cancelled (no reload, no socket activation).
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), StartError> {
    run_with(Launch { config, shutdown, reload: None, activated: Activated::default() }).await
}

/// Runs the daemon until `launch.shutdown` is cancelled, then drains in-flight requests (up to the
/// configured deadline), flushes the store and removes the socket files it created.
pub async fn run_with(launch: Launch) -> Result<(), StartError> {
    let Launch { config, shutdown, reload, activated } = launch;
    prepare_data_dir(&config.data_dir)?;
    let _lock = lockfile::lock(&config.data_dir)?;
    let keys = DigestKeys {
        lookup: keyfile::load_or_create(&config.lookup_key_path())?,
        warm: keyfile::load_or_create(
            &config.warm_key_file.clone().unwrap_or_else(|| config.data_dir.join(keyfile::WARM_KEY)),
        )?,
    };
    let store = Store::open(&config.data_dir)?;
    let mut loaded = store.load()?;
    let hasher = Hasher::with_pool(config.hash_cost, config.hash_pool(), keys)?;
    let warm_check = store.warm_check()?;
    let warm_key_changed = warm_check != Some(hasher.warm_key_check());
    if warm_key_changed {
        if warm_check.is_some() {
            tracing::info!("persisted warm digests were made with another warm key; keys start cold");
        }
        // Their digests are dropped below, before any key is read from the store; none may be restored.
        loaded.warm_keys.clear();
    }
    let audit_seq = loaded.next_audit_seq - 1;
    let (service, grant_requests) = Service::new(loaded, store, hasher, &config)?;
    // Checked before anything is written to the store: a damaged store is refused as it was found.
    service.store().check_high_water(HighWater { audit_seq, keys: service.index().len() as u64 })?;
    // Before serving, so that no key loaded on its first use finds digests made with another warm key.
    if warm_key_changed {
        service.store().reset_warm(service.hasher().warm_key_check())?;
    }

    // A fleet host catches up before it opens its sockets: ready means every key of the fleet is here.
    fleet::join(&service, &config.lookup_key_path()).await?;

    let verify_group = config.verify_socket_group.as_ref().and_then(Principal::group_id);
    let verify_mode = SocketMode { mode: config.verify_socket_mode, group: verify_group };
    let admin_mode = SocketMode { mode: config.admin_socket_mode, group: None };
    let (verify_listener, _verify_file) = listener(activated.verify, &config.verify_socket, verify_mode)?;
    let (admin_listener, _admin_file) = listener(activated.admin, &config.admin_socket, admin_mode)?;
    let http_listeners = Listeners::bind(&config.http, verify_mode).await?;
    let keys = service.index().len();
    tracing::info!(
        keys,
        verify_socket = %config.verify_socket.display(),
        admin_socket = %config.admin_socket.display(),
        http = %config.http.listen.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "),
        "keywardd ready"
    );
    systemd::ready(&format!("serving {keys} keys"));

    let tracker = TaskTracker::new();
    let flusher = tokio::spawn(flusher::run(service.clone(), config.flush_interval, shutdown.clone()));
    tokio::spawn(fleet::follow::run(service.clone(), shutdown.clone()));
    if let Some(requests) = grant_requests {
        tokio::spawn(fleet::grants::run(service.clone(), requests, shutdown.clone()));
    }
    tokio::spawn(systemd::keep_watchdog_fed(shutdown.clone()));
    let http_settings = Arc::new(Reloadable::new(config.http.clone()));
    let gatekeeper = Arc::new(Gatekeeper::new(Gate::new(&config)));
    let endpoint =
        Endpoint::new(service.clone(), http_settings.clone(), gatekeeper.clone(), tracker.clone(), shutdown.clone());
    let door = Door {
        service: service.clone(),
        http_settings,
        limits: Arc::new(RwLock::new(config.connection)),
        verify_permits: Arc::new(Semaphore::new(config.max_connections)),
        admin_permits: Arc::new(Semaphore::new(config.max_admin_connections)),
        roster: Roster::new(),
        gatekeeper,
        tracker: tracker.clone(),
        shutdown: shutdown.clone(),
    };
    let reloads = reload.map(|reload| tokio::spawn(reload_loop(reload, config.clone(), door.clone())));
    tokio::join!(
        door.clone().accept(verify_listener, SocketRole::Verify),
        door.accept(admin_listener, SocketRole::Admin),
        endpoint.serve(http_listeners),
    );

    systemd::stopping();
    if let Some(reloads) = reloads {
        reloads.abort();
    }
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

/// Creates the data directory (0700) or checks an existing one: a directory others may write to could
/// have its keys swapped underneath the daemon, so the daemon refuses it.
fn prepare_data_dir(dir: &Path) -> Result<(), StartError> {
    let fail = |reason: String| StartError::DataDir { path: dir.to_owned(), reason };
    std::fs::DirBuilder::new().recursive(true).create(dir).map_err(|e| fail(e.to_string()))?;
    let mode = std::fs::metadata(dir).map_err(|e| fail(e.to_string()))?.permissions().mode();
    if mode & 0o022 != 0 {
        return Err(fail(format!("is writable by group or others (mode {:o}); chmod 700 it", mode & 0o777)));
    }
    Ok(())
}

/// The socket systemd passed, or one bound here (with a guard that removes its file on exit).
fn listener(
    passed: Option<std::os::fd::OwnedFd>,
    path: &Path,
    mode: SocketMode,
) -> Result<(UnixListener, Option<SocketFile>), StartError> {
    let Some(fd) = passed else {
        let (listener, file) = socket::bind(path, mode)?;
        return Ok((listener, Some(file)));
    };
    let fail =
        |e: std::io::Error| SocketError::Unusable { path: path.to_owned(), reason: format!("passed by systemd: {e}") };
    let listener = std::os::unix::net::UnixListener::from(fd);
    listener.set_nonblocking(true).map_err(fail)?;
    Ok((UnixListener::from_std(listener).map_err(fail)?, None))
}

/// Applies SIGHUP reloads until the run ends. A bad file is logged and the old configuration stays.
async fn reload_loop(reload: Reload, mut current: Config, door: Door) {
    loop {
        reload.requested.notified().await;
        systemd::reloading();
        match (reload.load)() {
            Ok(next) => {
                apply(&reload, &current, &next, &door).await;
                current = next;
                tracing::info!("configuration reloaded");
            }
            Err(error) => tracing::error!(%error, "configuration rejected; keeping the previous one"),
        }
        systemd::ready("configuration reloaded");
    }
}

async fn apply(reload: &Reload, old: &Config, new: &Config, door: &Door) {
    let service = &door.service;
    if new.log_level != old.log_level {
        if let Err(error) = (reload.set_log_level)(&new.log_level) {
            tracing::error!(%error, "log level not changed");
        }
    }
    if new.plans != old.plans {
        service.set_plans(new.plans.clone()).await;
    }
    service.set_legacy_sunset(new.legacy_sunset);
    door.gatekeeper.replace(Gate::new(new));
    door.http_settings.replace(new.http.clone());
    *door.limits.write().unwrap_or_else(|p| p.into_inner()) = new.connection;
    resize(&door.verify_permits, old.max_connections, new.max_connections);
    resize(&door.admin_permits, old.max_admin_connections, new.max_admin_connections);
    let restart_only = [
        ("data_dir", old.data_dir != new.data_dir),
        ("verify_socket", old.verify_socket != new.verify_socket),
        ("admin_socket", old.admin_socket != new.admin_socket),
        ("verify_socket_group", old.verify_socket_group != new.verify_socket_group),
        ("runtime.threads", old.runtime_threads != new.runtime_threads),
        ("argon2", old.hash_cost != new.hash_cost || old.hash_pool() != new.hash_pool()),
        ("log.format", old.log_format != new.log_format),
        ("fleet", old.fleet != new.fleet),
        ("lookup_key_file", old.lookup_key_file != new.lookup_key_file),
        ("http.listen", old.http.listen != new.http.listen),
        ("http.max_connections", old.http.max_connections != new.http.max_connections),
    ];
    for (setting, changed) in restart_only {
        if changed {
            tracing::warn!(setting, "this setting changes only with a restart");
        }
    }
}

/// Moves the connection limit from `old` to `new` permits: growing adds permits at once; shrinking
/// retires permits as connections close.
fn resize(permits: &Arc<Semaphore>, old: usize, new: usize) {
    if new > old {
        permits.add_permits(new - old);
    } else if new < old {
        let permits = permits.clone();
        let retire = u32::try_from(old - new).unwrap_or(u32::MAX);
        tokio::spawn(async move {
            if let Ok(taken) = permits.acquire_many_owned(retire).await {
                taken.forget();
            }
        });
    }
}

/// What every accept loop shares.
#[derive(Clone)]
struct Door {
    service: Service,
    /// Read once per new connection, so a reload applies to connections opened after it.
    limits: Arc<RwLock<ConnectionLimits>>,
    verify_permits: Arc<Semaphore>,
    admin_permits: Arc<Semaphore>,
    /// The open verify connections, one of which may be asked to make room.
    roster: Arc<Roster>,
    /// Who may use which socket; a reload replaces the rules.
    gatekeeper: Arc<Gatekeeper>,
    /// The forward-auth endpoint's key header, query parameter and routes; a reload replaces them.
    http_settings: Arc<Reloadable<HttpSettings>>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

/// How often a verify newcomer that found no idle connection to replace looks again.
const MAKE_ROOM_RETRY: Duration = Duration::from_millis(250);

impl Door {
    /// Accepts connections on `listener` until shutdown.
    async fn accept(self, listener: UnixListener, role: SocketRole) {
        let mut backoff = Duration::from_millis(10);
        loop {
            // Operators wait in the backlog for an admin permit; a verify newcomer is let in to make room.
            let early = match role {
                SocketRole::Admin => match self.cancellable(self.admin_permits.clone().acquire_owned()).await {
                    Some(permit) => Some(permit.expect("the permit semaphores are never closed")),
                    None => return,
                },
                SocketRole::Verify => self.verify_permits.clone().try_acquire_owned().ok(),
            };
            let Some(accepted) = self.cancellable(listener.accept()).await else { return };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Typically EMFILE: wait for descriptors to free up rather than spin or die.
                    tracing::warn!(%error, ?role, "accept failed; backing off");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            backoff = Duration::from_millis(10);
            let permit = match early {
                Some(permit) => permit,
                None => match self.make_room().await {
                    Some(permit) => permit,
                    None => return,
                },
            };
            let membership = (role == SocketRole::Verify).then(|| self.roster.join());
            let limits = *self.limits.read().unwrap_or_else(|p| p.into_inner());
            let (service, shutdown, gatekeeper) =
                (self.service.clone(), self.shutdown.clone(), self.gatekeeper.clone());
            self.tracker.spawn(async move {
                connection::serve(stream, role, service, limits, membership, gatekeeper, shutdown).await;
                drop(permit);
            });
        }
    }

    /// A verify permit for a newcomer that found them all taken: asks the connection idle the longest to
    /// close, and looks again while none qualifies. `None` at shutdown.
    async fn make_room(&self) -> Option<OwnedSemaphorePermit> {
        loop {
            if self.roster.ask_longest_idle_to_leave() {
                tracing::info!("every verify connection is taken; asked the one idle longest to make room");
            }
            let permit = self.verify_permits.clone().acquire_owned();
            tokio::select! {
                permit = permit => return Some(permit.expect("the permit semaphores are never closed")),
                () = tokio::time::sleep(MAKE_ROOM_RETRY) => {}
                () = self.shutdown.cancelled() => return None,
            }
        }
    }

    /// `future`'s output, or `None` if shutdown comes first.
    async fn cancellable<T>(&self, future: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::select! {
            output = future => Some(output),
            () = self.shutdown.cancelled() => None,
        }
    }
}
