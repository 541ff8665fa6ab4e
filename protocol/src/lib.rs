//! The keyward wire contract: everything a client in any language needs to talk to `keywardd`.
//!
//! keyward speaks length-framed messages over a Unix stream socket:
//!
//! ```text
//! +----------------+--------------------------------------+
//! | length: u32 BE |  payload: `length` bytes (bincode 2,  |
//! |   (4 bytes)    |  standard config: varint integers)   |
//! +----------------+--------------------------------------+
//! ```
//!
//! The length counts the payload only and is checked against a maximum (64 KiB for requests by default)
//! before anything is allocated. The first frame in each direction is the handshake ([`Hello`] from the
//! client, [`HelloReply`] from the daemon); every later client frame is a [`RequestFrame`] and every daemon
//! frame a [`ReplyFrame`] carrying the request's id, so a client may pipeline many requests on one
//! connection and match replies (which may arrive out of order) by id.
//!
//! # Layout
//! - [`frame`]: the 4-byte length header, its limits, and blocking read/write helpers.
//! - [`codec`]: the payload encoding; the one place bincode is named.
//! - [`message`]: handshake, request and reply types.
//! - [`answer_key`]: the wire form of the key in a verify answer (the bytes of its encoding).
//! - [`lifecycle`]: roles, edits, imports and legacy accounts.
//! - [`audit`]: audit log entries and queries.
//! - [`limits`]: rate limits, credits and usage.
//! - [`fleet`]: the fleet engine and its hosts, as `keyward fleet status` shows them.
//! - [`http`]: what a verify answer becomes over HTTP (status, error body, rate-limit headers), for every
//!   HTTP door: the tower layer and the daemon's forward-auth endpoint.
//! - [`token`]: the API token format: prefix, key id, secret and CRC32 checksum.
//! - [`scope`]: scope strings and their implication rules.
//! - [`code`]: stable verify outcome codes and error codes.
//! - [`expiry`]: expiry presets accepted at creation.
//! - [`paths`]: default socket and data locations, shared by daemon and CLI.
//! - [`secret`]: a string that never prints and is wiped on drop.
//! - [`users`]: users and groups by name and id, for the daemon's access rules and the clients' checks.

pub mod answer_key;
pub mod audit;
pub mod code;
pub mod codec;
pub mod expiry;
pub mod fleet;
pub mod frame;
pub mod http;
pub mod lifecycle;
pub mod limits;
pub mod message;
pub mod paths;
pub mod scope;
pub mod secret;
pub mod token;
pub mod users;
pub mod verify_ref;

pub use audit::{Actor, AuditAction, AuditEntry, AuditQuery, FieldChange};
pub use code::{ErrorCode, VerifyCode};
pub use expiry::ExpirySpec;
pub use fleet::{FleetFigures, FleetReport, NodeReport};
pub use lifecycle::{AccountView, ImportRequest, KeyChanges, KeyOrigin, Role};
pub use limits::{
    CreditChange, HttpFigures, KeyUsage, LatencySummary, Limits, Period, Rate, RateLimitStatus, RatePolicy, Refill,
    StatsReport, UsageBucket, UsageReport, DEFAULT_PLAN, DEFAULT_PLAN_RATE, PAID_PLAN_RATE,
};
pub use message::{
    CreateRequest, CreatedKey, ErrorReply, Hello, HelloReply, KeyPage, KeyStatus, KeyView, ListRequest, Reply,
    ReplyFrame, Request, RequestFrame, VerifiedKey, VerifyAnswer, VerifyRequest,
};
pub use scope::{Scope, ScopeError, ScopeSet};
pub use secret::Secret;
pub use token::{Environment, KeyId, Token, TokenError};
pub use verify_ref::VerifyRequestRef;

/// The protocol version this crate speaks. A daemon answers a handshake that names another version with
/// [`ErrorCode::UnsupportedVersion`] and closes the connection.
pub const PROTOCOL_VERSION: u16 = 2;
