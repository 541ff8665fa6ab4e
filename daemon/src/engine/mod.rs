//! The fleet engine: the one module that knows PostgreSQL (through `tokio-postgres`), as
//! [`crate::keys::store`] is the one that knows sled.
//!
//! In fleet mode every host's management changes are committed here, one fleet-wide sequence numbering
//! them, and every host follows that sequence into its local replica (the sled store). What this module
//! owns: the connection settings ([`Settings`]), connecting with a deadline ([`connect`]), the schema
//! ([`schema`]), the encoded change rows ([`rows`]), the one write transaction ([`write`](mod@write)), the
//! follower's connection with its notifications and queries ([`follow`]), escrowed credits ([`credits`]),
//! leases of fleet-wide limits ([`leases`]), and the figures of the link
//! ([`Link`]). What a change *means* for the daemon, and when to follow, lives in `crate::fleet`.
//!
//! Every call has a deadline: a server that was killed fails a query at once ("connection closed"), but
//! one that stopped answering (a stalled network, a SIGSTOPped postmaster) would make it wait forever, so
//! each await here runs under `tokio::time::timeout_at` and a connection that missed one is dropped.
//!
//! Secrets: the connection string may not hold a password (it is read from `password_file`), the
//! address shown to operators ([`Settings::address`]) has none, and no error here quotes a row.

pub mod credits;
pub mod follow;
pub mod leases;
pub mod rows;
pub mod schema;
pub mod write;

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use keyward_protocol::FleetFigures;
use tokio::time::Instant;
use tokio_postgres::config::Host;
use tokio_postgres::{Client, NoTls};

use crate::keys::store::ReplicaMark;

/// How a host reaches the fleet engine: the `[fleet]` section of the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// A `postgres://` URL or a libpq `key=value` string (a Unix socket directory as `host=/run/postgresql`),
    /// without a password.
    pub engine: String,
    /// A file holding the password, if the engine wants one (its first line; read at each connect).
    pub password_file: Option<PathBuf>,
    /// This host's name in the fleet (`keyward fleet status` lists hosts by it).
    pub node_id: String,
    /// The fleet this host belongs to; a host whose engine holds another fleet refuses to start.
    pub fleet_id: Option<String>,
    /// Whether to LISTEN for changes (lower latency); the poll catches every change either way.
    pub notify: bool,
    /// How often the host asks the engine for changes it has not applied (and reports its own progress).
    pub poll_interval: Duration,
    /// How long a connection attempt may take.
    pub connect_timeout: Duration,
    /// How long the engine's part of one management call may take, connecting included.
    pub request_timeout: Duration,
}

impl Settings {
    /// Settings with the defaults for everything but the engine's address and the node id.
    pub fn new(engine: String, node_id: String) -> Settings {
        Settings {
            engine,
            password_file: None,
            node_id,
            fleet_id: None,
            notify: true,
            poll_interval: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(2),
        }
    }

    /// Checks the connection string: it must parse, name a database and hold no password.
    pub fn check(&self) -> Result<(), String> {
        let parsed = tokio_postgres::Config::from_str(&self.engine)
            .map_err(|e| format!("`engine` is neither a postgres:// URL nor a key=value connection string: {e}"))?;
        if parsed.get_password().is_some() {
            return Err("`engine` holds a password: put it in a file named by `password_file` instead".into());
        }
        if parsed.get_hosts().is_empty() {
            return Err("`engine` names no host (a host name, an address, or a Unix socket directory)".into());
        }
        Ok(())
    }

    /// The engine's address for operators and logs: hosts, ports, user and database, never a password.
    pub fn address(&self) -> String {
        let Ok(parsed) = tokio_postgres::Config::from_str(&self.engine) else { return "(unparsable)".into() };
        let hosts: Vec<String> = parsed
            .get_hosts()
            .iter()
            .map(|host| match host {
                Host::Tcp(name) => name.clone(),
                Host::Unix(dir) => dir.display().to_string(),
            })
            .collect();
        let ports: Vec<String> = parsed.get_ports().iter().map(u16::to_string).collect();
        let mut parts = vec![format!("host={}", hosts.join(","))];
        if !ports.is_empty() {
            parts.push(format!("port={}", ports.join(",")));
        }
        if let Some(user) = parsed.get_user() {
            parts.push(format!("user={user}"));
        }
        if let Some(db) = parsed.get_dbname() {
            parts.push(format!("dbname={db}"));
        }
        parts.join(" ")
    }
}

/// What went wrong with the engine. Messages name the engine's address, never a password or a row.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the fleet engine ({address}) did not answer within {waited:?}")]
    Timeout { address: String, waited: Duration },
    #[error("the fleet engine ({address}) cannot be reached: {reason}")]
    Unreachable { address: String, reason: String },
    #[error("the fleet engine ({address}) refused a query: {reason}")]
    Query { address: String, reason: String },
    #[error("cannot read the engine's password file {}: {reason}", path.display())]
    PasswordFile { path: PathBuf, reason: String },
    #[error("the fleet engine holds a change this host cannot decode ({0}); is this host's keywardd older?")]
    Decode(String),
}

impl EngineError {
    fn from_postgres(settings: &Settings, error: tokio_postgres::Error) -> EngineError {
        let address = settings.address();
        let reason = describe(&error);
        if error.as_db_error().is_some() {
            EngineError::Query { address, reason }
        } else {
            EngineError::Unreachable { address, reason }
        }
    }
}

/// A PostgreSQL error in words: the server's message (and its hint) when it sent one, else the client's.
fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => match db.hint() {
            Some(hint) => format!("{} ({hint})", db.message()),
            None => db.message().to_owned(),
        },
        None => {
            let mut text = error.to_string();
            if let Some(source) = std::error::Error::source(error) {
                text = format!("{text}: {source}");
            }
            text
        }
    }
}

/// Runs `future` until `deadline`; a miss is [`EngineError::Timeout`].
pub(crate) async fn until<T>(
    settings: &Settings,
    deadline: Instant,
    future: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, EngineError> {
    let waited = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout_at(deadline, future).await {
        Ok(result) => result.map_err(|e| EngineError::from_postgres(settings, e)),
        Err(_) => Err(EngineError::Timeout { address: settings.address(), waited }),
    }
}

/// A connection's client half and the task that drives it; dropping it closes the connection.
pub struct Connected {
    pub client: Client,
    /// Notifications (LISTEN), if the caller asked for them.
    pub notifications: Option<tokio::sync::mpsc::UnboundedReceiver<()>>,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Connects to the engine before `deadline` (and within the connect timeout). With `notifications`, the
/// connection's notifications arrive on [`Connected::notifications`], which closes when the connection
/// does.
pub async fn connect(settings: &Settings, deadline: Instant, notifications: bool) -> Result<Connected, EngineError> {
    let mut config = tokio_postgres::Config::from_str(&settings.engine)
        .map_err(|e| EngineError::Unreachable { address: settings.address(), reason: e.to_string() })?;
    if let Some(path) = &settings.password_file {
        config.password(read_password(path)?);
    }
    // A backend whose client vanished mid-transaction (a cut link) would keep the fleet's write lock until
    // the server's own keepalive gave up, hours later: the server ends such a session itself.
    let idle = settings.request_timeout.max(Duration::from_secs(5)).as_millis();
    config
        .options(format!("-c idle_in_transaction_session_timeout={idle}"))
        .application_name(format!("keywardd {}", settings.node_id))
        .connect_timeout(settings.connect_timeout)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(5))
        .keepalives_interval(Duration::from_secs(1))
        .keepalives_retries(3)
        .tcp_user_timeout(settings.request_timeout);
    let deadline = deadline.min(Instant::now() + settings.connect_timeout);
    let (client, mut connection) = until(settings, deadline, config.connect(NoTls)).await?;
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = futures_util::StreamExt::next(&mut messages).await {
            if matches!(message, tokio_postgres::AsyncMessage::Notification(_)) && notifications {
                let _ = sender.send(());
            }
        }
    });
    Ok(Connected { client, notifications: notifications.then_some(receiver), driver })
}

/// The connection kept in `slot`, made anew before `deadline` if there is none or it closed. Callers drop
/// it (`*slot = None`) after any failure, so a connection whose state is unknown is never reused.
pub(crate) async fn kept<'a>(
    settings: &Settings,
    slot: &'a mut Option<Connected>,
    deadline: Instant,
) -> Result<&'a Connected, EngineError> {
    if slot.as_ref().is_none_or(|c| c.client.is_closed()) {
        *slot = None;
        *slot = Some(connect(settings, deadline, false).await?);
    }
    Ok(slot.as_ref().expect("connected above"))
}

fn read_password(path: &std::path::Path) -> Result<String, EngineError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| EngineError::PasswordFile { path: path.to_owned(), reason: e.to_string() })?;
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

/// The link's figures, shared by the writer, the follower and the stats.
#[derive(Default)]
pub struct Link {
    reachable: AtomicBool,
    diverged: AtomicBool,
    applied_seq: AtomicU64,
    head_seq: AtomicU64,
    last_sync_at: AtomicI64,
    changes_applied: AtomicU64,
    queries: AtomicU64,
    reconnects: AtomicU64,
    /// Hosts that reported to the engine lately (at least this one).
    hosts: AtomicU64,
}

impl Link {
    /// Counts one query sent to the engine.
    pub fn queried(&self, n: u64) {
        self.queries.fetch_add(n, Ordering::Relaxed);
    }

    pub fn set_reachable(&self, reachable: bool) {
        self.reachable.store(reachable, Ordering::Relaxed);
    }

    pub fn reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    pub fn set_diverged(&self, diverged: bool) {
        self.diverged.store(diverged, Ordering::Relaxed);
    }

    pub fn diverged(&self) -> bool {
        self.diverged.load(Ordering::Relaxed)
    }

    pub fn reconnected(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// Records that the replica holds every change up to `applied` and the engine's newest is `head`, as
    /// learnt from the engine at `now` (Unix seconds).
    pub fn synced(&self, applied: u64, head: u64, now: i64) {
        self.applied_seq.store(applied, Ordering::Release);
        self.head_seq.store(head.max(applied), Ordering::Release);
        self.last_sync_at.store(now, Ordering::Relaxed);
    }

    /// Records that the replica now holds every change up to `applied`.
    pub fn advanced(&self, applied: u64) {
        self.applied_seq.store(applied, Ordering::Release);
        self.head_seq.fetch_max(applied, Ordering::AcqRel);
    }

    /// Hosts that reported to the engine lately, at least 1.
    pub fn hosts(&self) -> u64 {
        self.hosts.load(Ordering::Relaxed).max(1)
    }

    pub fn set_hosts(&self, hosts: u64) {
        self.hosts.store(hosts, Ordering::Relaxed);
    }

    /// Records `n` changes made elsewhere applied here.
    pub fn applied(&self, n: u64) {
        self.changes_applied.fetch_add(n, Ordering::Relaxed);
    }

    pub fn applied_seq(&self) -> u64 {
        self.applied_seq.load(Ordering::Acquire)
    }

    /// The figures for `keyward stats`.
    pub fn figures(&self, node_id: &str) -> FleetFigures {
        let last_sync_at = self.last_sync_at.load(Ordering::Relaxed);
        FleetFigures {
            node_id: node_id.to_owned(),
            engine_reachable: self.reachable(),
            diverged: self.diverged(),
            applied_seq: self.applied_seq(),
            head_seq: self.head_seq.load(Ordering::Acquire),
            last_sync_at: (last_sync_at > 0).then_some(last_sync_at),
            changes_applied: self.changes_applied.load(Ordering::Relaxed),
            engine_queries: self.queries.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
        }
    }
}

/// The engine as a host holds it: how to reach it, the write connection, what the local replica holds,
/// and the link's figures.
pub struct Engine {
    pub settings: Settings,
    pub link: Link,
    /// The connection management writes use, made on first use and dropped after any failure.
    writer: tokio::sync::Mutex<Option<Connected>>,
    /// The connection credit grants use (never held up behind a management write).
    grants: tokio::sync::Mutex<Option<Connected>>,
    /// The fleet the local store is a replica of and its newest change, as last made durable; `None`
    /// while the engine holds no fleet yet (before `keyward fleet init`).
    replica: std::sync::Mutex<Option<ReplicaMark>>,
}

impl Engine {
    pub fn new(settings: Settings) -> Engine {
        Engine {
            settings,
            link: Link::default(),
            writer: tokio::sync::Mutex::new(None),
            grants: tokio::sync::Mutex::new(None),
            replica: std::sync::Mutex::new(None),
        }
    }

    /// What the local replica holds (see [`Engine::set_replica`]).
    pub fn replica(&self) -> Option<ReplicaMark> {
        self.replica.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Records what the local replica now durably holds.
    pub fn set_replica(&self, mark: ReplicaMark) {
        self.link.advanced(mark.applied_seq);
        *self.replica.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(mark);
    }

    /// A deadline one request budget from now.
    pub fn deadline(&self) -> Instant {
        Instant::now() + self.settings.request_timeout
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("address", &self.settings.address()).finish_non_exhaustive()
    }
}
