//! The daemon's domain errors and the one place they become wire replies ([`DaemonError::to_reply`]).
//!
//! Messages may name key ids, workspaces, scopes and paths; they never hold a token, a secret or a hash.

use keyward_protocol::{ErrorCode, ErrorReply};

use crate::keys::store::StoreError;

/// Why a request could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("no key with id {0}")]
    KeyNotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("storage failed, nothing was changed: {0}")]
    Storage(#[from] StoreError),
    #[error("too many verifications are waiting for the hasher; try again shortly")]
    Busy,
    #[error("{0}")]
    WrongSocket(&'static str),
    #[error("internal error: {0}")]
    Internal(String),
}

impl DaemonError {
    /// The wire form of this error: its stable code and message.
    pub fn to_reply(&self) -> ErrorReply {
        let code = match self {
            DaemonError::InvalidArgument(_) => ErrorCode::InvalidArgument,
            DaemonError::KeyNotFound(_) => ErrorCode::KeyNotFound,
            DaemonError::Conflict(_) => ErrorCode::Conflict,
            DaemonError::Storage(_) => ErrorCode::Storage,
            DaemonError::Busy => ErrorCode::Busy,
            DaemonError::WrongSocket(_) => ErrorCode::WrongSocket,
            DaemonError::Internal(_) => ErrorCode::Internal,
        };
        ErrorReply::new(code, self.to_string())
    }
}

/// Why the daemon could not start. Printed to the operator as is.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("data directory {}: {reason}", path.display())]
    DataDir { path: std::path::PathBuf, reason: String },
    #[error("another keywardd (pid {owner}) is already using data directory {}", path.display())]
    Locked { path: std::path::PathBuf, owner: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("socket {}: {reason}", path.display())]
    Socket { path: std::path::PathBuf, reason: String },
    #[error("socket directory {}: {reason}", path.display())]
    UnsafeSocketDir { path: std::path::PathBuf, reason: String },
    #[error("socket {} is in use: another keywardd is listening there", path.display())]
    SocketInUse { path: std::path::PathBuf },
    #[error("{0}")]
    Config(String),
}
