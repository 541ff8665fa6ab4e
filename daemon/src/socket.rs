//! Unix socket files: binding with the right mode, replacing a stale file left by a crash, refusing to
//! steal a socket another live daemon answers on, and removing the file on exit.
//!
//! The daemon runs under umask 0077 (set in `main`), so a socket is born 0600 and only then widened to its
//! configured mode: it never exists with wider permissions than intended.

use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

use crate::error::StartError;

/// Removes the socket file when dropped.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Binds a listening socket at `path` with permission bits `mode`.
pub fn bind(path: &Path, mode: u32) -> Result<(UnixListener, SocketFile), StartError> {
    let fail = |reason: String| StartError::Socket { path: path.to_owned(), reason };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|e| fail(format!("cannot create its directory: {e}")))?;
    }
    clear_stale(path)?;
    let listener = std::os::unix::net::UnixListener::bind(path).map_err(|e| fail(e.to_string()))?;
    let guard = SocketFile { path: path.to_owned() };
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| fail(format!("chmod: {e}")))?;
    listener.set_nonblocking(true).map_err(|e| fail(e.to_string()))?;
    let listener = UnixListener::from_std(listener).map_err(|e| fail(e.to_string()))?;
    Ok((listener, guard))
}

/// Removes a socket file nobody answers on; refuses if something does, or if the path is not a socket.
fn clear_stale(path: &Path) -> Result<(), StartError> {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(StartError::Socket { path: path.to_owned(), reason: "the path exists and is not a socket".into() });
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(StartError::SocketInUse { path: path.to_owned() });
    }
    tracing::info!(path = %path.display(), "replacing a stale socket file");
    fs::remove_file(path).map_err(|e| StartError::Socket { path: path.to_owned(), reason: e.to_string() })
}
