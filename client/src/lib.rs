//! Clients for `keywardd`, the keyward API-key daemon, and the `keyward` command-line tool.
//!
//! App servers verify tokens over the daemon's verify socket; operators create, list, show and revoke
//! keys over its admin socket. Both speak the protocol defined in [`keyward_protocol`] (re-exported as
//! [`protocol`]), whose request and reply types this crate uses as they are.
//!
//! - [`Client`] is the async client for servers: one cheap, clonable handle over a small pool of
//!   pipelined connections, so that many tasks verify at once without a connection each.
//! - [`BlockingClient`] is a single synchronous connection for tools and code without a runtime.
//!
//! Both turn error replies into [`ClientError::Refused`] and have the same typed helpers, one per request:
//! `ping`, `verify`; `create`, `list`, `get`, `revoke`; `edit`, `regenerate`, `deactivate`, `activate`,
//! `import`; `audit`; `set_account`, `get_account`, `list_legacy`; `credits`, `usage`, `workspace_usage`;
//! `stats`.
//! Both can send management requests on behalf of an actor label recorded in the audit log
//! ([`BlockingClient::set_actor`], [`Client::with_actor`]). Tokens travel as [`Secret`]s and are never
//! printed, logged or put in an error.
//!
//! # Layout
//! - `client`: the async [`Client`] and its [`ClientBuilder`]: the pool, ids, deadlines.
//! - `connection`: one pipelined async connection: writer task, reader task, waiting requests, and the
//!   sweeper that fails them at their deadline.
//! - `blocking`: the synchronous [`BlockingClient`].
//! - `wire`: framing the handshake and requests, unframing replies.
//! - `frames`: the request frame buffers the async client reuses.
//! - `answer`: what a reply decodes to (a verify answer inline, anything else boxed).
//! - `shared_keys`: decoding a verify answer's key without rebuilding one that has not changed (recognised
//!   by its bytes).
//! - `actor`: which requests carry the caller's actor label (`Request::As`).
//! - `reply`: which reply each request expects; which requests may be retried.
//! - `listing`: following a listing's pages to the end.
//! - `trust`: who a client hands a token to ([`DaemonUser`]), and why a connect was refused.
//! - `error`: [`ClientError`].
//! - [`cli`]: the `keyward` command-line tool (the binary only calls [`cli::main`]).
//! - `http` (feature `http`): a tower layer for axum, hyper and tonic servers that verifies each request's
//!   `Authorization: Bearer` key and answers 401/403/429/503 as the reference documents do; with feature
//!   `axum`, an extractor for the verified key.

mod actor;
mod answer;
mod blocking;
pub mod cli;
mod client;
mod connection;
mod error;
#[cfg(test)]
mod fixtures;
mod frames;
#[cfg(feature = "http")]
pub mod http;
mod listing;
mod reply;
mod shared_keys;
mod trust;
mod wire;

use std::time::Duration;

pub use blocking::BlockingClient;
pub use client::{Client, ClientBuilder};
pub use error::ClientError;
pub use keyward_protocol as protocol;
pub use keyward_protocol::{
    AccountView, AuditEntry, AuditQuery, CreateRequest, CreatedKey, CreditChange, Environment, ErrorCode, ErrorReply,
    ExpirySpec, ImportRequest, KeyChanges, KeyPage, KeyStatus, KeyUsage, KeyView, ListRequest, Reply, Request, Role,
    Secret, StatsReport, UsageReport, VerifiedKey, VerifyAnswer, VerifyCode, VerifyRequest,
};
pub use trust::{DaemonUser, PACKAGED_DAEMON_USER};

/// How long a request may take unless a client is told otherwise.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
