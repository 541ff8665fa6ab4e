//! [`Config`]: everything the daemon needs to know to run, with its defaults; [`file`](mod@file) reads the TOML
//! file it may come from.

use std::path::PathBuf;
use std::time::Duration;

use keyward_protocol::frame::DEFAULT_MAX_REQUEST;
use keyward_protocol::paths;

pub use crate::host::logging::LogFormat;
use crate::limits::{default_plans, Plans};
use crate::secrets::hasher::{self, HashCost, PoolSettings};
pub use http::HttpSettings;

pub mod file;
pub mod http;
mod reloadable;

pub use reloadable::Reloadable;

/// Per-connection limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Largest request payload, in bytes.
    pub max_request: u32,
    /// Requests that may wait for the hasher or the disk at once.
    pub max_in_flight: usize,
    /// Time a new connection has to send its handshake.
    pub handshake_timeout: Duration,
    /// A connection with no request in flight and no bytes for this long is closed.
    pub idle_timeout: Duration,
    /// Once a frame has started, the rest of it must arrive within this (slow-loris defence).
    pub frame_timeout: Duration,
}

/// A user or group named in the configuration, by name or numeric id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    Name(String),
    Id(u32),
}

impl Principal {
    /// The gid of the group this names, or `None` if there is no such group.
    pub fn group_id(&self) -> Option<u32> {
        match self {
            Principal::Id(id) => Some(*id),
            Principal::Name(name) => keyward_protocol::users::group_id(name),
        }
    }
}

/// The daemon's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Where the key store and the lock file live (created 0700 if missing).
    pub data_dir: PathBuf,
    /// The app servers' socket (Ping, Verify).
    pub verify_socket: PathBuf,
    /// The operators' socket (everything).
    pub admin_socket: PathBuf,
    /// Mode of the verify socket; the group decides which app servers may connect.
    pub verify_socket_mode: u32,
    /// The group the verify socket is given when the daemon binds it (default: the daemon's own group).
    pub verify_socket_group: Option<Principal>,
    /// Mode of the admin socket.
    pub admin_socket_mode: u32,
    /// Argon2id cost of new hashes.
    pub hash_cost: HashCost,
    /// Threads of the runtime that answers both sockets (default: one per core). Changes with a restart.
    pub runtime_threads: Option<usize>,
    /// Argon2 threads, i.e. computations at once (default: one fewer than the cores, at least one).
    pub hash_workers: usize,
    /// Argon2 computations that may wait for a thread before verifies answer BUSY (default: 96 per thread).
    pub hash_queue: usize,
    /// How many nice steps below the rest of the daemon the Argon2 threads run (0..=19, default 10).
    pub hash_nice: u8,
    /// Open connections on the verify socket; past that, the connection idle the longest makes room for a
    /// newcomer, or the newcomer waits.
    pub max_connections: usize,
    /// Open connections on the admin socket: its own reserve, which verify connections cannot take.
    pub max_admin_connections: usize,
    pub connection: ConnectionLimits,
    /// How long a stop signal waits for in-flight requests before closing anyway.
    pub drain_deadline: Duration,
    /// From this time (Unix seconds) legacy personal keys answer LEGACY_SUNSET.
    pub legacy_sunset: Option<i64>,
    /// How often last-used times, credit balances and usage counts are written to the store.
    pub flush_interval: Duration,
    /// Rate plans keys may name.
    pub plans: Plans,
    /// Who may use the admin socket besides root and the daemon's own user.
    pub admin_users: Vec<Principal>,
    pub admin_groups: Vec<Principal>,
    /// When set, only members of these groups may use the verify socket (on top of its file mode).
    pub verify_groups: Option<Vec<Principal>>,
    /// Where the key of the persisted warm digests lives (default: `warm.key` in the data directory).
    pub warm_key_file: Option<PathBuf>,
    /// Where the key of imported tokens' lookup digests lives (default: `lookup.key` in the data
    /// directory). Every host of a fleet needs the same one.
    pub lookup_key_file: Option<PathBuf>,
    /// A tracing filter, e.g. `info` or `info,keyward_daemon=debug`.
    pub log_level: String,
    pub log_format: LogFormat,
    /// Fleet mode: the engine every host shares (`[fleet]`); `None` runs on the local store alone.
    pub fleet: Option<crate::engine::Settings>,
    /// The forward-auth endpoint (`[http]`); off unless it lists an address.
    pub http: HttpSettings,
}

impl Config {
    /// The defaults, with the given locations.
    pub fn new(data_dir: PathBuf, verify_socket: PathBuf, admin_socket: PathBuf) -> Config {
        let hash_workers = hasher::default_workers();
        Config {
            data_dir,
            verify_socket,
            admin_socket,
            verify_socket_mode: 0o660,
            verify_socket_group: None,
            admin_socket_mode: 0o600,
            hash_cost: HashCost::default(),
            runtime_threads: None,
            hash_workers,
            hash_queue: hasher::default_queue(hash_workers),
            hash_nice: hasher::DEFAULT_NICE,
            max_connections: 1024,
            max_admin_connections: 16,
            connection: ConnectionLimits {
                max_request: DEFAULT_MAX_REQUEST,
                max_in_flight: 128,
                handshake_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(300),
                frame_timeout: Duration::from_secs(10),
            },
            drain_deadline: Duration::from_secs(10),
            legacy_sunset: None,
            flush_interval: Duration::from_secs(2),
            plans: default_plans(),
            admin_users: Vec::new(),
            admin_groups: Vec::new(),
            verify_groups: None,
            warm_key_file: None,
            lookup_key_file: None,
            log_level: "info".to_owned(),
            log_format: LogFormat::Auto,
            fleet: None,
            http: HttpSettings::default(),
        }
    }

    /// The lookup key's file.
    pub fn lookup_key_path(&self) -> PathBuf {
        self.lookup_key_file.clone().unwrap_or_else(|| self.data_dir.join(crate::secrets::keyfile::LOOKUP_KEY))
    }

    /// The Argon2 pool these settings ask for.
    pub fn hash_pool(&self) -> PoolSettings {
        PoolSettings { workers: self.hash_workers, queue: self.hash_queue, nice: self.hash_nice }
    }
}

impl Default for Config {
    /// The default locations (see [`keyward_protocol::paths`]).
    fn default() -> Config {
        Config::new(paths::default_data_dir(), paths::default_verify_socket(), paths::default_admin_socket())
    }
}
