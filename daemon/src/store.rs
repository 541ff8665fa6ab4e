//! Durable storage: the one module that knows sled.
//!
//! Layout: one sled tree, `keys`, mapping a key id to a versioned, codec-encoded [`KeyRecord`]. Every write
//! is followed by a flush (fsync of sled's log) before it returns, so a caller that acknowledges after
//! [`Store::put_key`] has returned never acknowledges something a crash could lose.
//!
//! All methods block; async callers run them on the blocking pool.

use std::path::Path;

use keyward_protocol::codec;
use serde::{Deserialize, Serialize};

use crate::record::KeyRecord;

/// Storage failed. The message names the data directory or record, never any secret material.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the key store in {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("stored key {key} cannot be decoded ({reason}); the data directory may be corrupt")]
    Corrupt { key: String, reason: String },
    #[error("{0}")]
    Io(String),
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Io(e.to_string())
    }
}

/// The on-disk envelope. New record layouts are new variants, so old data stays readable.
#[derive(Deserialize)]
enum StoredKey {
    V1(KeyRecord),
}

/// [`StoredKey`] borrowed for writing; encodes to the same bytes.
#[derive(Serialize)]
enum StoredKeyRef<'a> {
    V1(&'a KeyRecord),
}

/// The key store.
pub struct Store {
    db: sled::Db,
    keys: sled::Tree,
}

impl Store {
    /// Opens (or creates) the store under `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let open_error = |e: sled::Error| StoreError::Open { path: dir.display().to_string(), reason: e.to_string() };
        let db = sled::Config::new().path(dir.join("keys.sled")).open().map_err(open_error)?;
        let keys = db.open_tree("keys").map_err(open_error)?;
        Ok(Store { db, keys })
    }

    /// Every stored key. Fails on the first record that cannot be decoded: a daemon that silently skipped
    /// a revoked key would let it verify again.
    pub fn load_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        self.keys
            .iter()
            .map(|entry| {
                let (id, bytes) = entry?;
                let key = String::from_utf8_lossy(&id).into_owned();
                match codec::decode::<StoredKey>(&bytes) {
                    Ok(StoredKey::V1(record)) => Ok(record),
                    Err(e) => Err(StoreError::Corrupt { key, reason: e.to_string() }),
                }
            })
            .collect()
    }

    /// Writes `record` and waits until it is on disk.
    pub fn put_key(&self, record: &KeyRecord) -> Result<(), StoreError> {
        let bytes = codec::encode(&StoredKeyRef::V1(record))
            .map_err(|e| StoreError::Io(format!("encoding key {}: {e}", record.id)))?;
        self.keys.insert(record.id.as_str().as_bytes(), bytes)?;
        self.flush()
    }

    /// Waits until every write so far is on disk.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}
