//! [`DaemonError`]: why a request could not be carried out, with the errors of the layers below it as its
//! sources, and the one place it becomes a wire reply ([`DaemonError::to_reply`]). Why the daemon could not
//! start is [`crate::server::StartError`], at the top, where every layer's startup errors meet.
//!
//! Messages may name key ids, workspaces, scopes and paths; they never hold a token, a secret or a hash.

use keyward_protocol::{ErrorCode, ErrorReply};

use crate::engine::EngineError;
use crate::keys::store::StoreError;
use crate::secrets::hasher::HashError;

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
    Hasher(#[source] HashError),
    #[error("the fleet engine is unavailable, so nothing was changed: {0}")]
    Engine(#[from] EngineError),
    #[error(
        "the fleet engine did not confirm the change ({0}); if it was committed, every host applies it once \
         the engine is back: check `keyward audit` before retrying"
    )]
    Unconfirmed(#[source] EngineError),
    #[error("{0}")]
    Diverged(String),
    #[error("{0}")]
    NoFleet(&'static str),
    #[error("internal error: the {what} task failed: {source}")]
    Task {
        what: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
}

impl DaemonError {
    /// The error of a blocking-pool task that panicked or was cancelled, for `map_err`.
    pub fn task(what: &'static str) -> impl FnOnce(tokio::task::JoinError) -> DaemonError {
        move |source| DaemonError::Task { what, source }
    }
}

impl From<HashError> for DaemonError {
    /// A full queue is the caller's BUSY; anything else is the daemon's fault.
    fn from(error: HashError) -> DaemonError {
        match error {
            HashError::Busy => DaemonError::Busy,
            other => DaemonError::Hasher(other),
        }
    }
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
            DaemonError::Engine(_) | DaemonError::Unconfirmed(_) | DaemonError::NoFleet(_) => {
                ErrorCode::EngineUnavailable
            }
            DaemonError::Diverged(_) => ErrorCode::EngineDiverged,
            DaemonError::Hasher(_) | DaemonError::Task { .. } => ErrorCode::Internal,
        };
        ErrorReply::new(code, self.to_string())
    }
}
