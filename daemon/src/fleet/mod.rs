//! Fleet mode: many hosts, one set of keys, through the engine (PostgreSQL, [`crate::engine`]).
//!
//! - [`write`](mod@write): how a management change is made: under the host's write lock, open the engine's write
//!   transaction (the fleet's one writer), apply what other hosts committed meanwhile, build the change on
//!   that, commit it in the engine with its audit entry, write it to the local replica, then answer — so the
//!   issuing host's very next verify sees it, as on a host on its own.
//! - [`follow`]: how every other host learns of it: a LISTEN for latency, a poll for correctness, a
//!   catch-up at startup and on every reconnect; a host that finds the engine behind its replica refuses to
//!   follow it (no silent rollback).
//! - [`apply`]: changes from the engine into the local replica (one sled transaction a page, with the
//!   replica's mark) and into the index.
//! - [`join`](mod@join): startup: which engine, which fleet, whether this store is its replica; a first catch-up.
//! - [`grants`]: grants of escrowed credits and leases of fleet-wide limits, asked for off the verify path.
//! - [`init`](mod@init): `keyward fleet init` (schema, import of a host's store) and `keyward fleet status`.
//!
//! Verifies never reach this module: they read the index, which this module keeps current.

pub mod apply;
pub mod follow;
pub mod grants;
pub mod init;
pub mod join;
pub mod write;

pub use init::{init, status};
pub use join::{join, JoinError};

use crate::service::Service;

/// Whether this host's lookup key is the fleet's (`check`, as the engine holds it): without it, imported
/// tokens would not be found here.
fn same_lookup_key(service: &Service, check: &[u8]) -> bool {
    service.hasher().lookup_key_check().as_slice() == check
}
