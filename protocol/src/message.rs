//! The messages: handshake, requests and replies.
//!
//! Conversation on one connection:
//!
//! ```text
//! client                                   daemon
//!   | -- Hello { version } ------------------> |
//!   | <------------------ HelloReply --------- |   Rejected => the daemon closes
//!   | -- RequestFrame { id: 1, Verify } -----> |
//!   | -- RequestFrame { id: 2, Verify } -----> |   pipelined: no need to wait
//!   | <-------- ReplyFrame { id: 2, .. } ----- |   replies may come out of order
//!   | <-------- ReplyFrame { id: 1, .. } ----- |
//! ```
//!
//! Wire stability: bincode encodes an enum as its variant index, so variants and fields are only ever
//! appended, never reordered or removed, within one [`crate::PROTOCOL_VERSION`]. [`Hello`] and
//! [`HelloReply`] never change, so any client can learn which version a daemon speaks.
//!
//! Timestamps are Unix seconds (`i64`, UTC).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use crate::answer_key::VerifiedKey;
use crate::audit::{AuditEntry, AuditQuery};
use crate::code::{ErrorCode, VerifyCode};
use crate::codec::{self, CodecError};
use crate::expiry::ExpirySpec;
use crate::fleet::FleetReport;
use crate::lifecycle::{AccountView, ImportRequest, KeyChanges, KeyOrigin, Role};
use crate::limits::{CreditChange, KeyUsage, Limits, RateLimitStatus, StatsReport, UsageReport};
use crate::secret::Secret;
use crate::token::Environment;

/// The client's first frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub version: u16,
}

/// The daemon's first frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HelloReply {
    /// The daemon speaks `version`; requests may follow.
    Accepted { version: u16 },
    /// The daemon refuses (e.g. `UNSUPPORTED_VERSION`) and closes the connection.
    Rejected(ErrorReply),
}

/// Every frame a client sends after the handshake.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestFrame {
    /// Chosen by the client and echoed in the reply.
    pub id: u64,
    pub request: Request,
}

/// Every frame the daemon sends after the handshake.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReplyFrame {
    /// The id of the request this answers; 0 for a frame whose id could not be read.
    pub id: u64,
    pub reply: Reply,
}

/// A request. Verify socket: [`Request::Ping`] and [`Request::Verify`] only. Admin socket: all of them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Liveness check. Reply: [`Reply::Pong`].
    Ping,
    /// Check a token. Reply: [`Reply::Verify`] (every outcome, valid or not, is an answer, not an error).
    Verify(VerifyRequest),
    /// Create a key. Reply: [`Reply::Created`], the only reply that ever carries a token. Errors:
    /// `INVALID_ARGUMENT`, `STORAGE`.
    Create(CreateRequest),
    /// List a workspace's keys, oldest first, one page at a time. Reply: [`Reply::Keys`].
    List(ListRequest),
    /// Show one key. Reply: [`Reply::Key`]. Errors: `KEY_NOT_FOUND`.
    Get { id: String },
    /// Revoke a key, permanently. Reply: [`Reply::Key`] with status `revoked`. Errors: `KEY_NOT_FOUND`,
    /// `CONFLICT` (already revoked), `STORAGE`.
    Revoke { id: String },
    /// Change a key's settings; its token stays the same. Reply: [`Reply::Key`]. Errors: `KEY_NOT_FOUND`,
    /// `INVALID_ARGUMENT`, `CONFLICT` (revoked or legacy key), `STORAGE`.
    Edit { id: String, changes: KeyChanges },
    /// Give a key a new token with the same settings. The old token stops working at once, or after
    /// `grace_seconds` (never past the key's expiry). Reply: [`Reply::Created`] with the new token. Errors:
    /// `KEY_NOT_FOUND`, `CONFLICT` (revoked, expired or legacy key), `STORAGE`.
    Regenerate { id: String, grace_seconds: u64 },
    /// Suspend a key (reversible); its verifies answer `INACTIVE`. Reply: [`Reply::Key`]. Errors:
    /// `KEY_NOT_FOUND`, `CONFLICT`, `STORAGE`.
    Deactivate { id: String },
    /// Undo [`Request::Deactivate`]. Reply: [`Reply::Key`]. Errors: `KEY_NOT_FOUND`, `CONFLICT` (revoked),
    /// `STORAGE`.
    Activate { id: String },
    /// Take over an existing token of any format. Reply: [`Reply::Key`] (the caller already has the token).
    /// Errors: `INVALID_ARGUMENT`, `CONFLICT` (token already known), `STORAGE`.
    Import(ImportRequest),
    /// Read the audit log, newest first. Reply: [`Reply::Audit`].
    Audit(AuditQuery),
    /// Set the workspaces an account's legacy keys may act on. Reply: [`Reply::Account`].
    SetAccount(AccountView),
    /// Show an account's workspaces. Reply: [`Reply::Account`] (empty when unknown).
    GetAccount { account: String },
    /// Legacy keys, optionally of one account, oldest first. Reply: [`Reply::Keys`] (one page, no `next`).
    ListLegacy { account: Option<String> },
    /// Set or add to a key's credit balance. Reply: [`Reply::Key`]. Errors: `KEY_NOT_FOUND`,
    /// `CONFLICT` (the key has no credits; give it some with `Set`), `STORAGE`.
    Credits { id: String, change: CreditChange },
    /// One key's verifications by outcome. Reply: [`Reply::Usage`].
    Usage { id: String },
    /// Per-key totals of a workspace, most verifications first. Reply: [`Reply::WorkspaceUsage`].
    WorkspaceUsage { workspace: String },
    /// Carry out `request` on behalf of `actor`, a label recorded in the audit log next to the peer's uid
    /// and pid (e.g. the dashboard user's name). Cannot be nested.
    As { actor: String, request: Box<Request> },
    /// The daemon's counters. Reply: [`Reply::Stats`].
    Stats,
    /// Fleet mode: create (or upgrade) the engine's schema and, on a new fleet, import this host's store
    /// (keys, accounts, audit log, credits) with every token unchanged. Reply: [`Reply::Fleet`]. Errors:
    /// `INVALID_ARGUMENT` (not in fleet mode), `CONFLICT` (the fleet exists and this host's store is not
    /// a replica of it), `ENGINE_UNAVAILABLE`.
    FleetInit,
    /// Fleet mode: the engine, each host, its applied change and its lag. Reply: [`Reply::Fleet`] (also
    /// when the engine cannot be reached: `reachable` is false). Errors: `INVALID_ARGUMENT` (not in fleet
    /// mode).
    FleetStatus,
}

impl Request {
    /// Whether only the admin socket takes this request: everything but [`Request::Ping`] and
    /// [`Request::Verify`] (an [`Request::As`] is management whatever it wraps).
    pub fn is_management(&self) -> bool {
        !matches!(self, Request::Ping | Request::Verify(_))
    }

    /// Whether the request changes what the daemon stores (and so is written to the audit log): the
    /// management writes. Reads, pings and verifies do not; a verify's cost spends rate budget and credits,
    /// which is the caller's to weigh.
    pub fn is_write(&self) -> bool {
        match self {
            Request::As { request, .. } => request.is_write(),
            Request::Create(_)
            | Request::Revoke { .. }
            | Request::Edit { .. }
            | Request::Regenerate { .. }
            | Request::Deactivate { .. }
            | Request::Activate { .. }
            | Request::Import(_)
            | Request::SetAccount(_)
            | Request::Credits { .. }
            | Request::FleetInit => true,
            Request::Ping
            | Request::Verify(_)
            | Request::List(_)
            | Request::Get { .. }
            | Request::Audit(_)
            | Request::GetAccount { .. }
            | Request::ListLegacy { .. }
            | Request::Usage { .. }
            | Request::WorkspaceUsage { .. }
            | Request::Stats
            | Request::FleetStatus => false,
        }
    }
}

/// A reply. Errors are replies too: [`Reply::Error`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    Pong,
    Verify(VerifyAnswer),
    Created(CreatedKey),
    Keys(KeyPage),
    Key(KeyView),
    Error(ErrorReply),
    Audit(Vec<AuditEntry>),
    Account(AccountView),
    Usage(UsageReport),
    WorkspaceUsage(Vec<KeyUsage>),
    Stats(Box<StatsReport>),
    Fleet(Box<FleetReport>),
}

/// A refused request: a stable code and a message for humans (never containing a secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub code: ErrorCode,
    pub message: String,
}

impl ErrorReply {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

impl std::fmt::Display for ErrorReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// Check a token, and optionally that it may act on a workspace with a scope, spending rate budget and
/// credits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyRequest {
    pub token: Secret,
    /// A scope the key must hold (or hold something implying it), e.g. `write:tables`.
    pub scope: Option<String>,
    /// The workspace the caller is acting on; the key must belong to it.
    pub workspace: Option<String>,
    /// What the request costs against rate limits and credits: 1 normally, 0 to check without spending.
    pub cost: u32,
    /// Named limits of the key that this request also counts against (all or nothing).
    pub limits: Vec<String>,
}

impl VerifyRequest {
    /// A verify of `token` with cost 1 and no other requirement.
    pub fn new(token: impl Into<Secret>) -> Self {
        VerifyRequest { token: token.into(), scope: None, workspace: None, cost: 1, limits: Vec::new() }
    }
}

impl Default for VerifyRequest {
    fn default() -> Self {
        VerifyRequest::new(Secret::default())
    }
}

/// The outcome of a verify.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyAnswer {
    pub code: VerifyCode,
    /// The key, when the secret was right (every code but `MISSING`, `MALFORMED` and `NOT_FOUND`); `None`
    /// otherwise, so a wrong secret learns nothing about the key. Shared: the daemon builds it once per
    /// version of the key, not once per verify. On the wire it is the byte string of the key's encoding
    /// ([`crate::answer_key`]), so that an unchanged key can be recognised by its bytes.
    #[serde(with = "crate::answer_key")]
    pub key: Option<Arc<VerifiedKey>>,
    /// With `RATE_LIMITED`: when a retry will be allowed, in milliseconds.
    pub retry_after_ms: Option<u64>,
    /// Every rate limit checked for this answer (the key's plan or custom rate, then named limits).
    pub ratelimit: Vec<RateLimitStatus>,
    /// The key's remaining credits, for a key that has credits.
    pub credits: Option<u64>,
}

impl VerifyAnswer {
    /// An answer that names no key.
    pub fn refused(code: VerifyCode) -> Self {
        VerifyAnswer { code, key: None, retry_after_ms: None, ratelimit: Vec::new(), credits: None }
    }
}

/// Create a key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateRequest {
    pub workspace: String,
    /// 3 to 50 characters after trimming, no control characters.
    pub name: String,
    /// Up to 500 characters.
    pub description: Option<String>,
    /// At least one scope string.
    pub scopes: Vec<String>,
    pub expires: ExpirySpec,
    pub env: Environment,
    /// Default `member`; a member key cannot hold the `admin` scope.
    pub role: Role,
    /// String labels returned by every valid verify; at most 4 KiB in all.
    pub metadata: BTreeMap<String, String>,
    pub limits: Limits,
}

impl CreateRequest {
    /// A request for a `member` key with the default expiry, environment and limits.
    pub fn new(workspace: impl Into<String>, name: impl Into<String>, scopes: Vec<String>) -> Self {
        CreateRequest {
            workspace: workspace.into(),
            name: name.into(),
            description: None,
            scopes,
            expires: ExpirySpec::default(),
            env: Environment::default(),
            role: Role::default(),
            metadata: BTreeMap::new(),
            limits: Limits::default(),
        }
    }
}

/// A new key and its token: shown once, never stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedKey {
    pub token: Secret,
    pub key: KeyView,
}

/// List one workspace's keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListRequest {
    pub workspace: String,
    /// Continue after this key id (the previous page's `next`).
    pub after: Option<String>,
    /// Page size; 0 means the daemon's default. Capped by the daemon.
    pub limit: u32,
}

/// One page of a listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPage {
    pub keys: Vec<KeyView>,
    /// Pass as `after` to get the next page; `None` on the last page.
    pub next: Option<String>,
}

/// A key's lifecycle state as shown to operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyStatus {
    Active,
    Expired,
    Revoked,
    /// Deactivated; can be activated again.
    Inactive,
    /// A legacy personal key that still works (before the legacy sunset).
    Legacy,
    /// A legacy personal key after the legacy sunset: refused.
    Sunset,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Expired => "expired",
            KeyStatus::Revoked => "revoked",
            KeyStatus::Inactive => "inactive",
            KeyStatus::Legacy => "legacy",
            KeyStatus::Sunset => "sunset",
        }
    }
}

/// A key as listings show it: never the token, its secret, or a hash of either.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyView {
    pub id: String,
    /// The token's first 8 characters (e.g. `kw_live_`).
    pub prefix: String,
    /// The token's first 8 and last 4 characters with the rest elided.
    pub masked: String,
    pub name: String,
    pub description: Option<String>,
    pub workspace: String,
    pub env: Environment,
    pub scopes: Vec<String>,
    pub status: KeyStatus,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub metadata: BTreeMap<String, String>,
    pub role: Role,
    pub origin: KeyOrigin,
    /// For a legacy personal key: its account.
    pub account: Option<String>,
    /// After a regenerate with a grace window: when the previous token stops working.
    pub previous_token_until: Option<i64>,
    /// Rate policy, named limits, refill, and the *current* credit balance.
    pub limits: Limits,
}

/// A verify request with every field set, for the protocol's own tests.
/// The variant index of [`Reply::Verify`].
const VERIFY_REPLY: u32 = 1;

/// Encodes the payload of `ReplyFrame { id, reply: Reply::Verify(answer) }` at the end of `out`, with the
/// answer's key replaced by `key`: a [`VerifiedKey`]'s wire form made once by
/// [`answer_key::wire_form`](crate::answer_key::wire_form), so that a key answered many times is not
/// encoded each time (`None`: no key). The bytes are exactly those of encoding the frame with `answer.key` set to that key. Returns the
/// bytes written.
pub fn encode_verify_reply_into(
    out: &mut Vec<u8>,
    id: u64,
    answer: &VerifyAnswer,
    key: Option<&[u8]>,
) -> Result<usize, CodecError> {
    let VerifyAnswer { code, key: _, retry_after_ms, ratelimit, credits } = answer;
    let start = out.len();
    // The frame's id, the reply's variant, the answer's code, and the key's `Option` tag.
    codec::encode_into(&(id, VERIFY_REPLY, code, u8::from(key.is_some())), out)?;
    out.extend_from_slice(key.unwrap_or_default());
    codec::encode_into(&(retry_after_ms, ratelimit, credits), out)?;
    Ok(out.len() - start)
}

#[cfg(test)]
pub(crate) fn sample_verify_request() -> VerifyRequest {
    VerifyRequest {
        scope: Some("read:tables".into()),
        workspace: Some("ws1".into()),
        cost: 3,
        limits: vec!["search".into(), "export".into()],
        ..VerifyRequest::new(Secret::new("kw_live_secret-looking-token"))
    }
}

/// A key as a verify answers it, for the protocol's own tests.
#[cfg(test)]
pub(crate) fn sample_key() -> VerifiedKey {
    VerifiedKey {
        id: "AbCdEf012345".into(),
        workspace: "acme".into(),
        name: "CI deploy".into(),
        env: crate::Environment::Live,
        scopes: vec!["read:tables".into(), "write:forms".into()],
        expires_at: Some(1_900_000_000),
        role: Role::default(),
        metadata: BTreeMap::from([("plan".into(), "pro".into())]),
        account: Some("acct_1".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    #[test]
    fn frames_round_trip_through_the_codec() {
        let frame = RequestFrame {
            id: 7,
            request: Request::Verify(VerifyRequest {
                scope: Some("read:tables".into()),
                ..VerifyRequest::new(Secret::new("kw_live_x"))
            }),
        };
        let bytes = codec::encode(&frame).unwrap();
        assert_eq!(codec::decode_request::<RequestFrame>(&bytes).unwrap(), frame);
    }

    #[test]
    fn variant_indexes_never_move() {
        // bincode writes an enum variant as its index: these bytes are the wire contract of version 1.
        let index = |request: Request| codec::encode(&request).unwrap()[0];
        assert_eq!(index(Request::Ping), 0);
        assert_eq!(index(Request::Revoke { id: String::new() }), 5);
        assert_eq!(index(Request::As { actor: String::new(), request: Box::new(Request::Ping) }), 18);
        assert_eq!(index(Request::Stats), 19);
    }

    #[test]
    fn hello_encoding_is_fixed() {
        // Any client, of any version, can rely on these bytes.
        assert_eq!(codec::encode(&Hello { version: 1 }).unwrap(), [1]);
        assert_eq!(codec::encode(&HelloReply::Accepted { version: 1 }).unwrap(), [0, 1]);
    }

    #[test]
    fn trailing_bytes_and_huge_claims_are_refused() {
        let mut bytes = codec::encode(&Hello { version: 1 }).unwrap();
        bytes.push(0);
        assert!(codec::decode_request::<Hello>(&bytes).is_err());
        // A Verify whose token claims a 4-billion-byte string: refused without allocating it.
        let hostile = [7u8, 1, 252, 0xff, 0xff, 0xff, 0xf0];
        assert!(codec::decode_request::<RequestFrame>(&hostile).is_err());
    }

    fn limit(policy: &str) -> RateLimitStatus {
        RateLimitStatus {
            policy: policy.into(),
            limit: 1000,
            remaining: 999,
            reset_at_ms: 1_700_000_000_000,
            window_seconds: 60,
        }
    }

    #[test]
    fn a_verify_reply_with_a_key_encoded_once_is_the_frame_encoded_whole() {
        let encoded_key = crate::answer_key::wire_form(&sample_key()).unwrap();
        let answers = [
            VerifyAnswer { key: Some(Arc::new(sample_key())), ..VerifyAnswer::refused(VerifyCode::Valid) },
            VerifyAnswer {
                code: VerifyCode::RateLimited,
                key: Some(Arc::new(sample_key())),
                retry_after_ms: Some(1_500),
                ratelimit: vec![limit("paid"), limit("burst")],
                credits: Some(u64::MAX),
            },
            VerifyAnswer {
                key: Some(Arc::new(sample_key())),
                ratelimit: vec![limit("free")],
                credits: Some(0),
                ..VerifyAnswer::refused(VerifyCode::InsufficientScope)
            },
            VerifyAnswer::refused(VerifyCode::NotFound),
        ];
        for (n, answer) in answers.into_iter().enumerate() {
            let id = 300 * n as u64 + 7;
            let mut spliced = vec![9, 9];
            let key = answer.key.is_some().then_some(&encoded_key[..]);
            let written = encode_verify_reply_into(&mut spliced, id, &answer, key).unwrap();
            let whole = codec::encode(&ReplyFrame { id, reply: Reply::Verify(answer) }).unwrap();
            assert_eq!(spliced[2..], whole, "answer {n}");
            assert_eq!(written, whole.len());
        }
    }
}
