//! The daemon's persistent lookup key: 32 random bytes in `<data dir>/lookup.key`, mode 0600.
//!
//! Imported tokens carry no key id, so verify finds them by HMAC-SHA256 of the whole token under this key.
//! The key is made once, at first start, from the OS CSPRNG; without it the stored lookup digests are
//! useless, so back it up with the data directory (and guard it like the data directory).

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use zeroize::Zeroizing;

use crate::error::StartError;
use crate::mint;

const FILE_NAME: &str = "lookup.key";

/// Reads the lookup key, creating it on first start.
pub fn load_or_create(data_dir: &Path) -> Result<Zeroizing<[u8; 32]>, StartError> {
    let path = data_dir.join(FILE_NAME);
    let fail = |reason: String| StartError::DataDir { path: path.clone(), reason };
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
            let partial = data_dir.join(format!("{FILE_NAME}.new"));
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
