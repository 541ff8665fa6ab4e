//! Who a client hands a token to: before anything is sent, even the handshake, a client reads the
//! credentials of the process listening on the socket (`SO_PEERCRED`, which the kernel records when that
//! process called `listen`, so it cannot be forged or swapped after the fact) and talks only to a daemon
//! running as root, as the client's own user, as the user `keyward` (the one `systemd/keyward.sysusers`
//! creates), or as a [`DaemonUser`] the caller names. A socket another local user managed to put at the
//! path (in a directory it could write to) is refused (a [`Distrust`], which the caller reports as
//! [`ClientError::UntrustedDaemon`](crate::ClientError::UntrustedDaemon)).
//!
//! With socket activation the listener is systemd (root), which hands the socket to the daemon.
//!
//! The same module explains a refused `connect`: which directory or socket file does not let this user
//! through, and which group would.
//!
//! This module sits below [`crate::error`]: the error's messages quote [`PACKAGED_DAEMON_USER`] and
//! [`connect_hint`], so a refusal here is a [`Distrust`] of its own, which the error module turns into a
//! `ClientError`, rather than a `ClientError` built here.

use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use keyward_protocol::users;

/// The user the packaged daemon runs as.
pub const PACKAGED_DAEMON_USER: &str = "keyward";

/// A user name that is no user of this system.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no user {0:?} on this system")]
pub struct UnknownUser(pub String);

/// One more user a client accepts as the daemon's, besides root, itself and [`PACKAGED_DAEMON_USER`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DaemonUser(Option<u32>);

impl DaemonUser {
    /// The daemon runs as `uid`.
    pub fn uid(uid: u32) -> DaemonUser {
        DaemonUser(Some(uid))
    }

    /// A user name or a numeric uid (`"keyward"`, `"997"`).
    pub fn parse(text: &str) -> Result<DaemonUser, UnknownUser> {
        users::user_by_name_or_id(text).map(DaemonUser::uid).ok_or_else(|| UnknownUser(text.to_owned()))
    }

    /// Whether a daemon running as `uid` may be told a token.
    pub fn accepts(self, uid: u32) -> bool {
        uid == 0 || uid == users::own_uid() || Some(uid) == self.0 || Some(uid) == packaged_daemon_uid()
    }

    /// Refuses the socket `path` unless the process listening on `stream` runs as a user this accepts.
    pub(crate) fn check(self, stream: &impl AsRawFd, path: &Path) -> Result<(), Distrust> {
        let uid = listener_uid(stream).map_err(Distrust::Unknown)?;
        if self.accepts(uid) {
            Ok(())
        } else {
            Err(Distrust::OtherUser { path: path.to_owned(), uid })
        }
    }
}

/// Why a socket's listener is not told a token.
#[derive(Debug)]
pub(crate) enum Distrust {
    /// Who listens could not be read (`getsockopt` failed).
    Unknown(std::io::Error),
    /// The listener on the socket `path` runs as `uid`, a user this client does not accept.
    OtherUser { path: PathBuf, uid: u32 },
}

/// The uid of [`PACKAGED_DAEMON_USER`], looked up once.
fn packaged_daemon_uid() -> Option<u32> {
    static UID: OnceLock<Option<u32>> = OnceLock::new();
    *UID.get_or_init(|| users::user_id(PACKAGED_DAEMON_USER))
}

/// The uid of the process at the other end of a connected Unix stream.
fn listener_uid(stream: &impl AsRawFd) -> std::io::Result<u32> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes of the sizes given; the descriptor is a live socket.
    let status = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if status == 0 {
        Ok(cred.uid)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// What to tell a user whose `connect` to `path` failed with `error`.
pub(crate) fn connect_hint(path: &Path, error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::PermissionDenied => permission_hint(path),
        std::io::ErrorKind::ConnectionRefused => {
            "a socket file is there but nothing listens on it; is the daemon running?".into()
        }
        _ => "is the daemon running?".into(),
    }
}

/// Which directory on the way to `path`, or the socket itself, does not let this user through.
fn permission_hint(path: &Path) -> String {
    let uid = users::own_uid();
    let blocking_dir = path.ancestors().skip(1).filter(|dir| !dir.as_os_str().is_empty()).collect::<Vec<_>>();
    for dir in blocking_dir.into_iter().rev() {
        if !may(dir, libc::X_OK) {
            return format!("uid {uid} may not enter {}{}", dir.display(), ownership(dir));
        }
    }
    format!("uid {uid} may not connect to the socket file{}", ownership(path))
}

/// ` (owner uid N, group NAME, mode 0750): ...`, the advice for joining a file's group.
fn ownership(path: &Path) -> String {
    let Ok(meta) = std::fs::metadata(path) else { return String::new() };
    let group = users::group_name(meta.gid()).unwrap_or_else(|| meta.gid().to_string());
    format!(
        " (owner uid {}, group {group}, mode {:04o}): app servers need to be in group {group} \
         (usermod -aG {group} USER, then log in again or restart the app server)",
        meta.uid(),
        meta.mode() & 0o7777
    )
}

/// Whether this process may access `path` as `mode` asks (`access(2)`).
fn may(path: &Path, mode: libc::c_int) -> bool {
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else { return false };
    // SAFETY: `c_path` is a valid C string for the call.
    unsafe { libc::access(c_path.as_ptr(), mode) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_self_and_the_named_user_are_accepted() {
        let none = DaemonUser::default();
        assert!(none.accepts(0));
        assert!(none.accepts(users::own_uid()));
        assert!(!none.accepts(54_321) || packaged_daemon_uid() == Some(54_321));
        assert!(DaemonUser::uid(54_321).accepts(54_321));
        assert_eq!(DaemonUser::parse("root"), Ok(DaemonUser::uid(0)));
        assert_eq!(DaemonUser::parse("4242"), Ok(DaemonUser::uid(4242)));
        assert!(DaemonUser::parse("no-such-user-x").unwrap_err().to_string().contains("no user"));
    }

    #[test]
    fn a_listener_of_ones_own_is_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let stream = std::os::unix::net::UnixStream::connect(&path).unwrap();
        assert_eq!(listener_uid(&stream).unwrap(), users::own_uid());
        DaemonUser::default().check(&stream, &path).unwrap();
    }
}
