//! [`ClientError`]: everything that can go wrong between a client and `keywardd`.
//!
//! This module owns the error type shared by both clients and the CLI, and the mapping of low-level
//! failures (I/O, framing) onto it. No variant ever holds a token: requests are encoded before anything can
//! fail, and error replies come from the daemon, which never puts a secret in a message.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use keyward_protocol::codec::CodecError;
use keyward_protocol::frame::FrameError;
use keyward_protocol::{ErrorCode, ErrorReply};

use crate::trust::{self, Distrust};

/// Why a request to `keywardd` did not get an answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The socket could not be connected to: the daemon is not running, the path is wrong, or this user may
    /// not reach it (the message then says which directory or file, and which group to join).
    #[error("cannot reach keywardd at {}: {source}; {}", .path.display(), trust::connect_hint(.path, .source))]
    Connect {
        /// The socket that was tried.
        path: PathBuf,
        /// What `connect(2)` said.
        #[source]
        source: io::Error,
    },
    /// The process listening on the socket runs as a user the client does not accept as the daemon's: it
    /// may be another local user's socket put there to collect tokens. Nothing was sent.
    #[error(
        "refusing to talk to {}: the process listening there runs as uid {uid}, not as root, this user or the \
         daemon's user ({}); if keywardd really runs as uid {uid}, say so with KEYWARD_DAEMON_USER={uid} \
         (keyward --daemon-user, ClientBuilder::daemon_user)",
        .path.display(),
        trust::PACKAGED_DAEMON_USER
    )]
    UntrustedDaemon {
        /// The socket that was tried.
        path: PathBuf,
        /// Who listens on it.
        uid: u32,
    },
    /// Reading or writing the connection failed.
    #[error("I/O error talking to keywardd: {0}")]
    Io(#[from] io::Error),
    /// The daemon sent a frame the client will not accept (e.g. larger than
    /// [`MAX_REPLY`](keyward_protocol::frame::MAX_REPLY)).
    #[error("bad frame from keywardd: {0}")]
    Frame(FrameError),
    /// A message could not be encoded or decoded.
    #[error("cannot encode or decode a keywardd message: {0}")]
    Codec(#[from] CodecError),
    /// The daemon refused the handshake (e.g. `UNSUPPORTED_VERSION`) and closed the connection.
    #[error("keywardd refused the connection: {0}")]
    Rejected(ErrorReply),
    /// The daemon answered the request with an error reply. Displays as `CODE: message`.
    #[error("{0}")]
    Refused(ErrorReply),
    /// No answer arrived within the request timeout.
    #[error("keywardd did not answer within {0:?}")]
    Timeout(Duration),
    /// The daemon closed the connection before answering.
    #[error("keywardd closed the connection before answering")]
    Closed,
    /// The daemon answered with a reply that does not fit the request.
    #[error("keywardd answered {got} where {expected} was expected")]
    UnexpectedReply {
        /// What the request called for.
        expected: &'static str,
        /// What arrived instead.
        got: &'static str,
    },
}

impl From<Distrust> for ClientError {
    fn from(distrust: Distrust) -> ClientError {
        match distrust {
            Distrust::Unknown(error) => ClientError::Io(error),
            Distrust::OtherUser { path, uid } => ClientError::UntrustedDaemon { path, uid },
        }
    }
}

impl ClientError {
    /// The daemon's error code, for a refused request or a refused handshake.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Rejected(reply) | ClientError::Refused(reply) => Some(reply.code),
            _ => None,
        }
    }

    /// A stable name for what went wrong, for machine-readable output: the daemon's error code (e.g.
    /// `KEY_NOT_FOUND`) when it sent one, else `UNREACHABLE`, `UNTRUSTED_DAEMON`, `TIMEOUT`, `CLOSED`, `IO`
    /// or `PROTOCOL`.
    pub fn code_name(&self) -> &'static str {
        match self {
            ClientError::Rejected(reply) | ClientError::Refused(reply) => reply.code.as_str(),
            ClientError::Connect { .. } => "UNREACHABLE",
            ClientError::UntrustedDaemon { .. } => "UNTRUSTED_DAEMON",
            ClientError::Timeout(_) => "TIMEOUT",
            ClientError::Closed => "CLOSED",
            ClientError::Io(_) => "IO",
            ClientError::Frame(_) | ClientError::Codec(_) | ClientError::UnexpectedReply { .. } => "PROTOCOL",
        }
    }

    /// Whether the connection this error happened on is known to be gone, so that a request which did not
    /// reach the daemon, or whose effect cannot matter, may be sent again on a new one.
    pub(crate) fn is_broken_connection(&self) -> bool {
        match self {
            ClientError::Io(_) | ClientError::Closed => true,
            ClientError::Frame(error) => matches!(error, FrameError::Truncated | FrameError::Io(_)),
            _ => false,
        }
    }

    /// A copy of a connection-level failure, for each of the requests that were waiting on that
    /// connection (`io::Error` is not `Clone`, so the kind and message are carried over).
    pub(crate) fn for_waiter(&self) -> ClientError {
        match self {
            ClientError::Io(error) => ClientError::Io(io::Error::new(error.kind(), error.to_string())),
            ClientError::Closed => ClientError::Closed,
            other => ClientError::Io(io::Error::new(io::ErrorKind::InvalidData, other.to_string())),
        }
    }

    /// Maps an I/O error on a connection whose socket timeouts are set to `timeout`: the kernel reports
    /// an expired socket timeout as `WouldBlock` (or `TimedOut`), which is a timeout, not a broken socket.
    pub(crate) fn from_io(error: io::Error, timeout: Duration) -> ClientError {
        match error.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout(timeout),
            _ => ClientError::Io(error),
        }
    }

    /// Like [`ClientError::from_io`], for errors from the frame reader.
    pub(crate) fn from_frame(error: FrameError, timeout: Duration) -> ClientError {
        match error {
            FrameError::Io(error) => ClientError::from_io(error, timeout),
            other => ClientError::Frame(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_error_names_the_socket_and_suggests_the_daemon() {
        let error = ClientError::Connect {
            path: "/run/kw/admin.sock".into(),
            source: io::Error::from(io::ErrorKind::NotFound),
        };
        let shown = error.to_string();
        assert!(shown.starts_with("cannot reach keywardd at /run/kw/admin.sock: "), "{shown}");
        assert!(shown.ends_with("is the daemon running?"), "{shown}");
    }

    #[test]
    fn refused_displays_code_and_message() {
        let reply = ErrorReply::new(ErrorCode::InvalidArgument, "name must be 3 to 50 characters");
        let error = ClientError::Refused(reply);
        assert_eq!(error.to_string(), "INVALID_ARGUMENT: name must be 3 to 50 characters");
        assert_eq!(error.code(), Some(ErrorCode::InvalidArgument));
    }

    #[test]
    fn expired_socket_timeouts_are_timeouts() {
        let timeout = Duration::from_millis(5);
        let would_block = io::Error::from(io::ErrorKind::WouldBlock);
        assert!(matches!(ClientError::from_io(would_block, timeout), ClientError::Timeout(_)));
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        let error = ClientError::from_io(reset, timeout);
        assert!(error.is_broken_connection());
        assert!(!ClientError::Timeout(timeout).is_broken_connection());
    }
}
