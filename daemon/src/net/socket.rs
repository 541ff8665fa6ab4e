//! Unix socket files: a directory nobody else controls, binding with the right mode and group, replacing a
//! stale file left by a crash, refusing to steal a socket another live daemon answers on, and removing the
//! file on exit.
//!
//! A socket is only as private as its directory: whoever may write to the directory (or to any directory
//! above it) can replace the socket with one of their own and read every token sent to it. So before
//! binding, the socket's directory must be a real directory (not a symbolic link), owned by the daemon's
//! user or root, and not writable by group or others; every directory above it must be owned by the
//! daemon's user or root and, if group or others may write to it, have the sticky bit (as `/tmp` has, where
//! nobody may rename another user's entries). A missing directory is created — 0700, or 0750 for the
//! verify socket when its mode lets its group connect — and checked like any other.
//!
//! The daemon runs under umask 0077 (set in `main`), so a socket is born 0600 and only then widened to its
//! configured mode (and given its group): it never exists with wider permissions than intended.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use keyward_protocol::users;
use tokio::net::UnixListener;

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

/// How a socket file is made.
#[derive(Clone, Copy, Debug)]
pub struct SocketMode {
    /// Permission bits of the socket file.
    pub mode: u32,
    /// The group the socket file (and a directory created for it) is given; `None` keeps the daemon's.
    pub group: Option<u32>,
}

/// Binds a listening socket at `path`, in a directory checked (and if need be created) first.
pub fn bind(path: &Path, socket: SocketMode) -> Result<(UnixListener, SocketFile), SocketError> {
    let fail = |reason: String| SocketError::Unusable { path: path.to_owned(), reason };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    prepare_dir(dir, socket)?;
    clear_stale(path)?;
    let listener = std::os::unix::net::UnixListener::bind(path).map_err(|e| fail(e.to_string()))?;
    let guard = SocketFile { path: path.to_owned() };
    if let Some(gid) = socket.group {
        set_group(path, gid).map_err(|e| fail(format!("cannot give it group {gid}: {e}")))?;
    }
    fs::set_permissions(path, fs::Permissions::from_mode(socket.mode)).map_err(|e| fail(format!("chmod: {e}")))?;
    listener.set_nonblocking(true).map_err(|e| fail(e.to_string()))?;
    let listener = UnixListener::from_std(listener).map_err(|e| fail(e.to_string()))?;
    Ok((listener, guard))
}

/// Why a socket could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("socket {}: {reason}", path.display())]
    Unusable { path: PathBuf, reason: String },
    #[error("socket directory {}: {problem}", path.display())]
    UnsafeDir {
        path: PathBuf,
        #[source]
        problem: UnsafeDir,
    },
    #[error("socket {} is in use: another keywardd is listening there", path.display())]
    InUse { path: PathBuf },
}

/// Why a directory cannot hold the daemon's sockets. Each message says what is wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum UnsafeDir {
    #[error("{doing}: {source}")]
    Io {
        doing: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "is a symbolic link: a socket directory must be a real directory, or whoever controls the link's target \
         could intercept tokens; point --socket at the target itself"
    )]
    Symlink,
    #[error("is not a directory")]
    NotADirectory,
    #[error(
        "is owned by uid {owner}, not by this daemon's user (uid {own_uid}) or root: another user may have made \
         it to intercept tokens; remove it, or choose a directory of your own with --socket / --admin-socket"
    )]
    Owner { owner: u32, own_uid: u32 },
    #[error(
        "is writable by group or others (mode {mode:04o}): anyone who may write there could replace the socket \
         and intercept tokens; chmod 750 it (700 if no group needs the verify socket)"
    )]
    Writable { mode: u32 },
    #[error(
        "the directory above it, {}, is writable by group or others without the sticky bit (mode {mode:04o}): \
         anyone who may write there could replace the socket directory; use a directory in a safe place",
        .path.display()
    )]
    WritableAbove { path: PathBuf, mode: u32 },
    #[error("the directory above it, {}, {problem}", .path.display())]
    Above { path: PathBuf, problem: Box<UnsafeDir> },
}

fn io(doing: &'static str) -> impl FnOnce(std::io::Error) -> UnsafeDir {
    move |source| UnsafeDir::Io { doing, source }
}

/// Creates `dir` if it is missing (its mode from what the socket's group needs), then checks it and the
/// directories above it.
fn prepare_dir(dir: &Path, socket: SocketMode) -> Result<(), SocketError> {
    make_dir(dir, socket)
        .and_then(|()| check_dir(dir, users::own_uid()))
        .map_err(|problem| SocketError::UnsafeDir { path: dir.to_owned(), problem })
}

/// Creates `dir` 0700, or 0750 (with the socket's group) when the socket lets its group connect, unless it
/// exists.
fn make_dir(dir: &Path, socket: SocketMode) -> Result<(), UnsafeDir> {
    if fs::symlink_metadata(dir).is_ok() {
        return Ok(());
    }
    let mode = if socket.mode & 0o070 != 0 { 0o750 } else { 0o700 };
    if let Some(above) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(above).map_err(io("cannot create the directories above it"))?;
    }
    fs::DirBuilder::new().mode(mode).create(dir).map_err(io("cannot create it"))?;
    // The umask narrowed the mode the directory was created with.
    fs::set_permissions(dir, fs::Permissions::from_mode(mode)).map_err(io("cannot chmod it"))?;
    if let Some(gid) = socket.group.filter(|_| mode & 0o070 != 0) {
        set_group(dir, gid).map_err(io("cannot give it the verify socket's group"))?;
    }
    Ok(())
}

/// Why `dir` cannot hold a socket of a daemon running as `own_uid`, if it cannot.
fn check_dir(dir: &Path, own_uid: u32) -> Result<(), UnsafeDir> {
    let meta = fs::symlink_metadata(dir).map_err(io("cannot read it"))?;
    if meta.file_type().is_symlink() {
        return Err(UnsafeDir::Symlink);
    }
    if !meta.is_dir() {
        return Err(UnsafeDir::NotADirectory);
    }
    trusted_owner(&meta, own_uid)?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(UnsafeDir::Writable { mode });
    }
    let absolute = fs::canonicalize(dir).map_err(io("cannot resolve it"))?;
    for above in absolute.ancestors().skip(1) {
        check_above(above, own_uid)?;
    }
    Ok(())
}

/// Why a directory above the socket's directory lets someone else replace it, if it does.
fn check_above(above: &Path, own_uid: u32) -> Result<(), UnsafeDir> {
    let within = |problem| UnsafeDir::Above { path: above.to_owned(), problem: Box::new(problem) };
    let meta = fs::metadata(above).map_err(|e| within(io("cannot read it")(e)))?;
    trusted_owner(&meta, own_uid).map_err(within)?;
    let mode = meta.mode() & 0o7777;
    let sticky = mode & 0o1000 != 0;
    if mode & 0o022 != 0 && !sticky {
        return Err(UnsafeDir::WritableAbove { path: above.to_owned(), mode });
    }
    Ok(())
}

/// Only the daemon's own user and root may own a directory a socket depends on.
fn trusted_owner(meta: &fs::Metadata, own_uid: u32) -> Result<(), UnsafeDir> {
    let owner = meta.uid();
    if owner == own_uid || owner == 0 {
        Ok(())
    } else {
        Err(UnsafeDir::Owner { owner, own_uid })
    }
}

/// Gives `path` group `gid`, keeping its owner.
fn set_group(path: &Path, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::chown(path, None, Some(gid))
}

/// Removes a socket file nobody answers on; refuses if something does, or if the path is not a socket.
fn clear_stale(path: &Path) -> Result<(), SocketError> {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        let reason = "the path exists and is not a socket".into();
        return Err(SocketError::Unusable { path: path.to_owned(), reason });
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(SocketError::InUse { path: path.to_owned() });
    }
    tracing::info!(path = %path.display(), "replacing a stale socket file");
    fs::remove_file(path).map_err(|e| SocketError::Unusable { path: path.to_owned(), reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chmod(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_private_directory_passes_and_a_loose_or_linked_one_is_refused() {
        let base = tempfile::tempdir().unwrap();
        let me = users::own_uid();
        let dir = base.path().join("run");
        fs::create_dir(&dir).unwrap();
        chmod(&dir, 0o750);
        check_dir(&dir, me).unwrap();
        chmod(&dir, 0o777);
        let refused = check_dir(&dir, me).unwrap_err().to_string();
        assert!(refused.contains("mode 0777"), "{refused}");
        chmod(&dir, 0o700);
        let link = base.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(check_dir(&link, me).unwrap_err().to_string().contains("symbolic link"));
        // Root may give the directory away; anyone else asks as another (unprivileged) uid would.
        let (owner, asking) = if me == 0 {
            std::os::unix::fs::chown(&dir, Some(65534), None).unwrap();
            (65534, 0)
        } else {
            (me, me + 1)
        };
        let refused = check_dir(&dir, asking).unwrap_err().to_string();
        assert!(refused.contains(&format!("owned by uid {owner}")), "{refused}");
    }

    #[test]
    fn a_loose_directory_above_is_refused_unless_sticky() {
        let base = tempfile::tempdir().unwrap();
        let (above, dir) = (base.path().join("shared"), base.path().join("shared/run"));
        fs::create_dir_all(&dir).unwrap();
        chmod(&dir, 0o700);
        chmod(&above, 0o777);
        let refused = check_dir(&dir, users::own_uid()).unwrap_err().to_string();
        assert!(refused.contains("without the sticky bit") && refused.contains("shared"), "{refused}");
        chmod(&above, 0o1777);
        check_dir(&dir, users::own_uid()).unwrap();
    }

    #[test]
    fn a_missing_directory_is_made_for_the_group_when_the_socket_grants_it() {
        let base = tempfile::tempdir().unwrap();
        for (mode, expected) in [(0o660, 0o750), (0o600, 0o700)] {
            let dir = base.path().join(format!("run-{mode:o}"));
            prepare_dir(&dir, SocketMode { mode, group: None }).unwrap();
            assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, expected);
        }
    }
}
