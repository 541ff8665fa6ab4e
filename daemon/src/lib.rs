//! `keywardd`, the keyward daemon, as a library: everything but argument parsing lives here so that it can
//! be tested.
//!
//! A request's path: [`server`] accepts a connection on the verify or admin socket → [`connection`] reads
//! frames and decodes them → [`service`] dispatches by request type to [`verify`] or [`manage`] →
//! [`manage`] writes through [`store`] and swaps snapshots in [`index`] → the reply goes back through
//! [`connection`].
//!
//! # Layout
//! - [`server`]: startup, accept loops, drain and final flush.
//! - [`connection`]: handshake, framing, pipelining, per-connection bounds.
//! - [`service`]: the shared state handle and the one dispatch `match`.
//! - [`verify`]: the verify decision, cheapest check first.
//! - [`manage`]: create, import, edit, regenerate, deactivate/activate, revoke, accounts, listings, audit.
//! - [`validate`]: the rules for every management field.
//! - [`index`]: the directory of every key, and the in-memory snapshots of the keys in use.
//! - [`store`]: durable storage (the only module that knows sled).
//! - [`record`]: the stored key record and its views.
//! - [`hasher`]: Argon2id hashing off the async workers, and the keyed warm and lookup digests.
//! - [`limiter`]: GCRA rate limiting, lock-free.
//! - [`credits`]: credit balances and refills.
//! - [`usage`]: per-key verification counters.
//! - [`activity`]: what verify learns per key (last use, usage counts) and the keys the flusher must visit.
//! - [`keyfile`]: the persistent lookup key for imported tokens.
//! - [`flusher`]: the batch writer for last-used times, credits and usage counters.
//! - [`mint`]: new key ids and secrets from the OS CSPRNG.
//! - [`parallel`]: startup work (decoding every key into the directory) split over the cores.
//! - [`stats`]: operational counters and the verify latency histogram.
//! - [`systemd`]: readiness notifications, the watchdog, socket activation.
//! - [`peer`]: who may use which socket, from the peer's credentials.
//! - [`roster`]: the open verify connections, so the one idle longest can make room for a newcomer.
//! - [`socket`], [`lockfile`], [`signals`]: Unix socket files, the data directory lock, stop signals.
//! - [`logging`]: log formats and the reloadable filter.
//! - [`config`], [`config_file`]: settings and the TOML file they may come from.
//! - [`clock`], [`error`].

pub mod activity;
pub mod clock;
pub mod config;
pub mod config_file;
pub mod connection;
pub mod credits;
pub mod error;
pub mod flusher;
pub mod hasher;
pub mod index;
pub mod keyfile;
pub mod limiter;
pub mod lockfile;
pub mod logging;
pub mod manage;
pub mod mint;
pub mod parallel;
pub mod peer;
pub mod record;
pub mod roster;
pub mod server;
pub mod service;
pub mod signals;
pub mod socket;
pub mod stats;
pub mod store;
pub mod systemd;
pub mod usage;
pub mod validate;
pub mod verify;

pub use config::Config;
pub use error::{DaemonError, StartError};
pub use server::{run, run_with, Launch, Reload};
