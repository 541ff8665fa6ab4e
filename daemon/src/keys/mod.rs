//! Keys: what is stored about each one and how the daemon finds it — the record, the store (the one place
//! sled lives), the in-memory index with the snapshot of each key in use, and what verify learns about a key
//! between two flushes (last use, usage counts).
//!
//! This folder knows nothing of sockets, requests or the shared [`Service`](crate::service::Service): the
//! layers above hand it records and read snapshots back.

pub mod activity;
pub mod hot;
pub mod index;
pub mod parallel;
pub mod record;
pub mod store;
pub mod usage;
