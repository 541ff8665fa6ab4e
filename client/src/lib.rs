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
//! Both turn error replies into [`ClientError::Refused`] and have the same typed helpers (`ping`,
//! `verify`, `create`, `list`, `get`, `revoke`). Tokens travel as [`Secret`]s and are never printed, logged
//! or put in an error.
//!
//! # Layout
//! - `client`: the async [`Client`] and its [`ClientBuilder`]: the pool, ids, timeouts.
//! - `connection`: one pipelined async connection: writer task, reader task, waiting requests.
//! - `blocking`: the synchronous [`BlockingClient`].
//! - `wire`: framing the handshake and requests, unframing replies.
//! - `reply`: which reply each request expects; which requests may be retried.
//! - `listing`: following a listing's pages to the end.
//! - `error`: [`ClientError`].
//! - [`cli`]: the `keyward` command-line tool (the binary only calls [`cli::main`]).

mod blocking;
pub mod cli;
mod client;
mod connection;
mod error;
#[cfg(test)]
mod fixtures;
mod listing;
mod reply;
mod wire;

use std::time::Duration;

pub use blocking::BlockingClient;
pub use client::{Client, ClientBuilder};
pub use error::ClientError;
pub use keyward_protocol as protocol;
pub use keyward_protocol::{
    CreateRequest, CreatedKey, Environment, ErrorCode, ErrorReply, ExpirySpec, KeyPage, KeyStatus, KeyView,
    ListRequest, Reply, Request, Secret, VerifiedKey, VerifyAnswer, VerifyCode, VerifyRequest,
};

/// How long a request may take unless a client is told otherwise.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
