//! Stable codes: what a verify concluded ([`VerifyCode`]) and why a request failed ([`ErrorCode`]).
//!
//! The names are part of the contract (CLI JSON, HTTP mappings, other-language clients): never rename one,
//! only add. On the wire each is an enum variant index, so new variants go at the end.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The outcome of a verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum VerifyCode {
    /// The token is right and the key may do what was asked.
    Valid,
    /// No token was given.
    Missing,
    /// The token is not a keyward token (shape or checksum); refused without any lookup.
    Malformed,
    /// No key has this id, or the secret is wrong: one answer for both, so nobody can probe for ids.
    NotFound,
    /// The token was right, but the key's expiry has passed.
    Expired,
    /// The token was right, but the key was revoked.
    Revoked,
    /// A required scope was given and the key does not hold it (nor anything implying it).
    InsufficientScope,
    /// A workspace was given and the key belongs to another.
    WrongWorkspace,
    /// The token was right, but the key is deactivated.
    Inactive,
    /// The token was right, but it is a legacy personal key and the legacy sunset has passed.
    LegacySunset,
    /// A rate limit refused the request; `retry_after_ms` says when to try again. Nothing was spent.
    RateLimited,
    /// The key's credits are used up. Nothing was spent.
    UsageExceeded,
    /// Never in a verify answer: a verify refused with [`ErrorCode::Busy`] (the Argon2 pool could not take
    /// it) is counted under this code in the key's usage, so that a flood against a key shows where it hit.
    Busy,
}

impl VerifyCode {
    /// Every code, in wire order.
    pub const ALL: [VerifyCode; 13] = [
        VerifyCode::Valid,
        VerifyCode::Missing,
        VerifyCode::Malformed,
        VerifyCode::NotFound,
        VerifyCode::Expired,
        VerifyCode::Revoked,
        VerifyCode::InsufficientScope,
        VerifyCode::WrongWorkspace,
        VerifyCode::Inactive,
        VerifyCode::LegacySunset,
        VerifyCode::RateLimited,
        VerifyCode::UsageExceeded,
        VerifyCode::Busy,
    ];

    /// The stable name, e.g. `INSUFFICIENT_SCOPE`.
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyCode::Valid => "VALID",
            VerifyCode::Missing => "MISSING",
            VerifyCode::Malformed => "MALFORMED",
            VerifyCode::NotFound => "NOT_FOUND",
            VerifyCode::Expired => "EXPIRED",
            VerifyCode::Revoked => "REVOKED",
            VerifyCode::InsufficientScope => "INSUFFICIENT_SCOPE",
            VerifyCode::WrongWorkspace => "WRONG_WORKSPACE",
            VerifyCode::Inactive => "INACTIVE",
            VerifyCode::LegacySunset => "LEGACY_SUNSET",
            VerifyCode::RateLimited => "RATE_LIMITED",
            VerifyCode::UsageExceeded => "USAGE_EXCEEDED",
            VerifyCode::Busy => "BUSY",
        }
    }

    /// The code with this stable name.
    pub fn from_name(name: &str) -> Option<VerifyCode> {
        VerifyCode::ALL.into_iter().find(|code| code.as_str() == name)
    }

    pub fn is_valid(self) -> bool {
        self == VerifyCode::Valid
    }
}

impl fmt::Display for VerifyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a request was refused. Every error reply carries one, plus a human message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The handshake named a protocol version this daemon does not speak. The connection closes.
    UnsupportedVersion,
    /// A frame could not be decoded as a request (or a frame was too large, after which it closes).
    BadFrame,
    /// The request is not allowed on this socket (management on the verify socket).
    WrongSocket,
    /// An argument is invalid; the message says which and why.
    InvalidArgument,
    /// No key has the given id.
    KeyNotFound,
    /// The request conflicts with the key's state (e.g. revoking a revoked key).
    Conflict,
    /// The data directory could not be written; nothing was changed.
    Storage,
    /// The daemon is shutting down and takes no new work.
    ShuttingDown,
    /// Too much work is queued; try again shortly.
    Busy,
    /// The peer is not allowed to use this socket.
    Forbidden,
    /// A bug: the daemon could not answer. The message says what failed, never a secret.
    Internal,
    /// Fleet mode: the engine (PostgreSQL) could not be reached or did not answer in time, so the change
    /// was not made (the message says so, or that the engine did not confirm it). Verifies are unaffected.
    EngineUnavailable,
    /// Fleet mode: the engine holds fewer changes than this host has applied (it was restored from an
    /// older backup, or is another database); the host refuses to follow it rather than roll back.
    EngineDiverged,
}

impl ErrorCode {
    /// The stable name, e.g. `INVALID_ARGUMENT`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::UnsupportedVersion => "UNSUPPORTED_VERSION",
            ErrorCode::BadFrame => "BAD_FRAME",
            ErrorCode::WrongSocket => "WRONG_SOCKET",
            ErrorCode::InvalidArgument => "INVALID_ARGUMENT",
            ErrorCode::KeyNotFound => "KEY_NOT_FOUND",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::Storage => "STORAGE",
            ErrorCode::ShuttingDown => "SHUTTING_DOWN",
            ErrorCode::Busy => "BUSY",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::EngineUnavailable => "ENGINE_UNAVAILABLE",
            ErrorCode::EngineDiverged => "ENGINE_DIVERGED",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
