//! `keywardd`, the keyward daemon, as a library: everything but argument parsing lives here so that it can
//! be tested. ARCHITECTURE.md at the repository's root walks a verify and a management write through these
//! folders and says where each invariant is kept.
//!
//! A request's path, top to bottom: [`server`] accepts a connection on the verify or admin socket →
//! `net::connection` reads and decodes its frames → `dispatch` decides what that socket may ask and hands
//! the request to `verify` (the hot path) or `manage` (writes and reads for operators) → both work on the
//! shared state in `service`, which holds the `keys` (index, snapshots, store), the `limits` and the
//! `secrets` (Argon2, digests) → the reply goes back through `net::connection`.
//!
//! # Layout (each folder imports only the ones below it)
//! - [`server`]: startup order, accept loops, SIGHUP reload, drain and final flush.
//! - `http/`: the forward-auth endpoint for reverse proxies (`[http]`): a verify door over HTTP/1.1.
//! - `net/`: socket files, who may use which socket, the open verify connections, one connection's
//!   handshake, framing and pipelining.
//! - `dispatch`: the one `match` over a request: which socket may ask what, and errors → replies.
//! - `verify/`: the verify decision, cheapest check first, and spending limits and credits.
//! - `manage/`: create, import, edit, regenerate, deactivate/activate, revoke, credits, accounts, listings,
//!   audit and usage, and the rules of every management field.
//! - `flusher`: the batch writer of last-used times, credits and usage counts.
//! - `fleet/`: fleet mode: management changes through the engine, following it, joining a fleet, `fleet init`.
//! - `service`: the shared state, one cheap handle; no behaviour of its own.
//! - `stats`: operational counters and the verify latency histogram.
//! - [`error`]: why a request failed, and the one mapping to wire codes.
//! - [`config`]: settings and the TOML file they may come from.
//! - `engine/`: the fleet engine, PostgreSQL (the only module that knows it): connections with deadlines,
//!   the schema, change rows, the write transaction, the follower's queries.
//! - `keys/`: records, the store (the only module that knows sled), the index of every key and the
//!   snapshots of the keys in use, activity and usage counters.
//! - `limits/`: rate plans, the GCRA limiter, credits.
//! - `secrets/`: Argon2id on its own threads, the keyed digests, minting, the persistent digest keys.
//! - `host/`: clocks, logging, signals, the data directory's lock, systemd.

// The daemon's documentation is its maintainers' map (`cargo doc --document-private-items`): its modules
// are private and their docs link to one another.
#![allow(rustdoc::private_intra_doc_links)]

pub mod config;
mod dispatch;
mod engine;
pub mod error;
mod fleet;
mod flusher;
mod host;
mod http;
mod keys;
mod limits;
mod manage;
mod net;
mod secrets;
pub mod server;
mod service;
mod stats;
mod verify;

pub use config::file::ConfigError;
pub use config::Config;
pub use engine::Settings as FleetSettings;
pub use error::DaemonError;
pub use host::{logging, signals, systemd};
pub use server::{run, run_with, Launch, Reload, StartError};

/// What the benchmarks (`daemon/benches`, `bench/`) and fuzz targets (`fuzz/`) drive in-process: the
/// shared state, the dispatcher and the parts of the hot path they time. Not an API: it changes with the
/// daemon's insides.
#[doc(hidden)]
pub mod internals {
    pub use crate::dispatch::SocketRole;
    pub use crate::dispatch::{handle, handle_verify, Handled};
    pub use crate::host::clock::{mono_nanos, Now};
    pub use crate::keys::record::KeyRecord;
    pub use crate::keys::store::{Change, Store, WarmDigest};
    pub use crate::keys::usage::UsageCell;
    pub use crate::limits::credits::CreditCell;
    pub use crate::limits::limiter::Gcra;
    pub use crate::secrets::hasher::{self, Caller, DigestKeys, HashCost, Hasher};
    pub use crate::secrets::keyfile;
    pub use crate::service::Service;
}
