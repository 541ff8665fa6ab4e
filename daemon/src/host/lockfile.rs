//! The data directory lock: one daemon per data directory.
//!
//! An exclusive `flock` on `<data dir>/keywardd.lock`, held for the daemon's life. The kernel releases it
//! when the process dies, however it dies, so a crash never leaves a stale lock. The file holds the owner's
//! pid for the operator's benefit only.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Held while the daemon owns the data directory.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

/// Why the data directory could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("data directory {}: {reason}", path.display())]
    Unusable { path: PathBuf, reason: String },
    #[error("another keywardd (pid {owner}) is already using data directory {}", path.display())]
    Locked { path: PathBuf, owner: String },
}

/// Takes the lock on `dir`, or explains who has it.
pub fn lock(dir: &Path) -> Result<DataDirLock, LockError> {
    let path = dir.join("keywardd.lock");
    let fail = |reason: String| LockError::Unusable { path: dir.to_owned(), reason };
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| fail(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let owner = std::fs::read_to_string(&path).unwrap_or_default();
            return Err(LockError::Locked { path: dir.to_owned(), owner: owner.trim().to_owned() });
        }
        Err(TryLockError::Error(e)) => return Err(fail(format!("cannot lock {}: {e}", path.display()))),
    }
    file.set_len(0).and_then(|()| writeln!(file, "{}", std::process::id())).map_err(|e| fail(e.to_string()))?;
    Ok(DataDirLock { _file: file })
}
