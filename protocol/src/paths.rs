//! Where the daemon listens and keeps its data when nothing says otherwise, shared by `keywardd` and
//! `keyward` so that both find each other with no flags.
//!
//! - sockets: `$XDG_RUNTIME_DIR/keyward/{verify,admin}.sock`, else `/tmp/keyward-$UID/…`
//! - data: `$XDG_STATE_HOME/keyward`, else `~/.local/state/keyward`
//!
//! The environment variables `KEYWARD_SOCKET`, `KEYWARD_ADMIN_SOCKET` and `KEYWARD_DATA_DIR` override them
//! (applied by the binaries' argument parsers).

use std::path::PathBuf;

/// Overrides the verify socket path.
pub const ENV_SOCKET: &str = "KEYWARD_SOCKET";
/// Overrides the admin socket path.
pub const ENV_ADMIN_SOCKET: &str = "KEYWARD_ADMIN_SOCKET";
/// Overrides the data directory.
pub const ENV_DATA_DIR: &str = "KEYWARD_DATA_DIR";

/// The directory both sockets live in by default.
pub fn default_socket_dir() -> PathBuf {
    match non_empty_env("XDG_RUNTIME_DIR") {
        Some(runtime) => PathBuf::from(runtime).join("keyward"),
        // SAFETY: getuid has no preconditions and cannot fail.
        None => PathBuf::from(format!("/tmp/keyward-{}", unsafe { libc::getuid() })),
    }
}

/// The default verify socket (app servers).
pub fn default_verify_socket() -> PathBuf {
    default_socket_dir().join("verify.sock")
}

/// The default admin socket (operators).
pub fn default_admin_socket() -> PathBuf {
    default_socket_dir().join("admin.sock")
}

/// The default data directory.
pub fn default_data_dir() -> PathBuf {
    if let Some(state) = non_empty_env("XDG_STATE_HOME") {
        return PathBuf::from(state).join("keyward");
    }
    let home = non_empty_env("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".local/state/keyward")
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}
