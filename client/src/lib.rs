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
//! - `requests`: what each request is for the client: whether it carries the actor label
//!   (`Request::As`), whether it may be retried, which reply it expects, and
//!   [`DEFAULT_REQUEST_TIMEOUT`].
//! - `wire/`: bytes ↔ meaning: framing the handshake and requests, unframing replies (`wire/mod.rs`);
//!   what a reply decodes to, a verify answer inline and anything else boxed (`answer`); decoding a
//!   verify answer's key without rebuilding one that has not changed, recognised by its bytes
//!   (`shared_keys`); the request frame buffers the async client reuses (`frames`).
//! - `listing`: following a listing's pages to the end.
//! - `trust`: who a client hands a token to ([`DaemonUser`]), and why a connect was refused.
//! - `error`: [`ClientError`].
//! - `cli/` (feature `cli`, on by default): the `keyward` command-line tool (the binary only calls
//!   `cli::main`): what each command does (`cli/mod.rs`), what the command line accepts (`args`), and
//!   what it prints (`output/`: the shared writers, then one file per family of answers: `format`,
//!   `keys`, `verify`, `audit`, `usage`, `stats`, `prometheus`).
//! - `http/` (feature `http`): a tower layer for axum, hyper and tonic servers that verifies each
//!   request's `Authorization: Bearer` key and answers 401/403/429/503 as the reference documents do; with
//!   feature `axum`, an extractor for the verified key.
//!
//! Imports go one way, down: `cli` and `http` use the clients (`blocking`; `client`, which uses
//! `connection`); the clients use `requests`, `listing`, `wire` and `trust`; `requests` uses `wire`; all of
//! these use `error`, which uses only `trust`, which uses no other module of the crate. No module imports
//! one that imports it.
//!
//! # Features
//! - `cli` (default): the `keyward` binary and `keyward_client::cli`, with clap, serde_json and jiff. An
//!   app server that only verifies keys depends on this crate with `default-features = false` and builds
//!   no clap and no serde_json (jiff only as `keyward_protocol`'s, for its expiry rules).
//! - `http`: the HTTP layer (`keyward_client::http`), with serde_json for its JSON refusals.
//! - `axum`: `http`, plus an axum extractor for the verified key and axum path parameters as the
//!   workspace.

mod blocking;
#[cfg(feature = "cli")]
pub mod cli;
mod client;
mod connection;
mod error;
#[cfg(test)]
mod fixtures;
#[cfg(feature = "http")]
pub mod http;
mod listing;
mod requests;
mod trust;
mod wire;

pub use blocking::BlockingClient;
pub use client::{Client, ClientBuilder};
pub use error::ClientError;
pub use keyward_protocol as protocol;
pub use keyward_protocol::{
    AccountView, AuditEntry, AuditQuery, CreateRequest, CreatedKey, CreditChange, Environment, ErrorCode, ErrorReply,
    ExpirySpec, ImportRequest, KeyChanges, KeyPage, KeyStatus, KeyUsage, KeyView, ListRequest, Reply, Request, Role,
    Secret, StatsReport, UsageReport, VerifiedKey, VerifyAnswer, VerifyCode, VerifyRequest,
};
pub use requests::DEFAULT_REQUEST_TIMEOUT;
pub use trust::{DaemonUser, UnknownUser, PACKAGED_DAEMON_USER};
