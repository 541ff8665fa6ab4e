//! The daemon's persistent keys: 32 random bytes each, in files of mode 0600, made once at first start
//! from the OS CSPRNG.
//!
//! - `lookup.key` keys the lookup digests of imported tokens (which carry no key id, so verify finds them by
//!   HMAC-SHA256 of the whole token). Without it the stored lookup digests are useless: back it up with the
//!   data directory.
//! - `warm.key` keys the warm digests of verified secrets, which the daemon persists so that a restart does
//!   not send every key back through Argon2. Without it the persisted digests are useless and keys simply
//!   start cold; it may be kept outside the data directory (`warm_key_file`).

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::secrets::mint;

/// The lookup key's file name in the data directory.
pub const LOOKUP_KEY: &str = "lookup.key";
/// The warm digest key's default file name in the data directory.
pub const WARM_KEY: &str = "warm.key";

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("data directory {}: {reason}", path.display())]
pub struct KeyFileError {
    pub path: PathBuf,
    pub reason: String,
}

/// Reads the key in `path`, creating it on first start.
pub fn load_or_create(path: &Path) -> Result<Zeroizing<[u8; 32]>, KeyFileError> {
    let path = path.to_owned();
    let fail = |reason: String| KeyFileError { path: path.clone(), reason };
    match OpenOptions::new().read(true).open(&path) {
        Ok(mut file) => {
            let mode = file.metadata().map_err(|e| fail(e.to_string()))?.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(fail(format!("mode {:o} lets others read it; chmod 600 it", mode & 0o777)));
            }
            let mut key = Zeroizing::new([0u8; 32]);
            let mut extra = [0u8; 1];
            file.read_exact(key.as_mut()).map_err(|_| fail("is shorter than 32 bytes: corrupt".into()))?;
            if file.read(&mut extra).map_err(|e| fail(e.to_string()))? != 0 {
                return Err(fail("is longer than 32 bytes: corrupt".into()));
            }
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = mint::key_material();
            let partial = path.with_extension("new");
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&partial)
                .map_err(|e| fail(e.to_string()))?;
            file.write_all(key.as_ref()).and_then(|()| file.sync_all()).map_err(|e| fail(e.to_string()))?;
            fs::rename(&partial, &path).map_err(|e| fail(e.to_string()))?;
            Ok(key)
        }
        Err(e) => Err(fail(e.to_string())),
    }
}
