//! The wire contract's test vectors: `protocol/vectors/vectors.json`, named messages with their exact bytes,
//! which PROTOCOL.md offers to client authors in any language.
//!
//! The list in [`vectors`] is the source and the file its rendering. Each vector is checked in both
//! directions against the real codec (its JSON value encodes to its bytes, its bytes decode to its JSON
//! value), every request and reply variant must have one (an exhaustive `match` makes a new variant fail to
//! compile here until it has), and PROTOCOL.md's tables of fields and variants are compared with what
//! serde's derive says about the types, so neither the file nor the document can drift from the code.
//!
//! After an intended change to the wire, rewrite the file and review its diff:
//!
//! ```text
//! KEYWARD_BLESS_VECTORS=1 cargo test -p keyward-protocol --test vectors
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use keyward_protocol::answer_key::{self, VerifiedKey};
use keyward_protocol::message::encode_verify_reply_into;
use keyward_protocol::token::{Token, TOKEN_LEN};
use keyward_protocol::verify_ref::decode_verify_request;
use keyward_protocol::{
    codec, frame, AccountView, Actor, AuditAction, AuditEntry, AuditQuery, CreateRequest, CreatedKey, CreditChange,
    Environment, ErrorCode, ErrorReply, ExpirySpec, FieldChange, FleetFigures, FleetReport, Hello, HelloReply,
    HttpFigures, ImportRequest, KeyChanges, KeyId, KeyOrigin, KeyPage, KeyStatus, KeyUsage, KeyView, LatencySummary,
    Limits, ListRequest, NodeReport, Period, Rate, RateLimitStatus, RatePolicy, Refill, Reply, ReplyFrame, Request,
    RequestFrame, Role, Secret, StatsReport, UsageBucket, UsageReport, VerifyAnswer, VerifyCode, VerifyRequest,
    PROTOCOL_VERSION,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

const VECTORS_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/vectors/vectors.json");
const PROTOCOL_DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../PROTOCOL.md");
const BLESS: &str = "KEYWARD_BLESS_VECTORS";

const COMMENT: &str = "Test vectors of the keyward wire protocol (see PROTOCOL.md, section 14). Each vector is one \
message: `type` is its Rust type (Hello, HelloReply, RequestFrame, ReplyFrame, or VerifiedKey for the key a verify \
answer carries as a byte string), `hex` the payload bytes in lowercase hex WITHOUT the 4-byte big-endian length \
prefix of the frame, and `value` the message as serde_json writes the Rust value. JSON conventions: a struct is an \
object of its fields (listed here in wire order); an enum is externally tagged: a unit variant is its name as a \
string (\"Ping\"), any other variant an object of one member, its name, holding the payload ({\"Get\": {\"id\": \
\"...\"}}, {\"Custom\": {...}}, {\"Set\": 5}); an Option is null or the value itself, with no wrapper, so \
Option<Option<T>> cannot tell None from Some(None): both are null (only KeyChanges.refill is such a field, and \
the vector request.edit.refill_removed holds Some(None): its hex, 01 00, is the truth); a map is an object whose \
keys are strings, enum keys by variant name (\"Valid\"; on the wire its index); a Secret is a plain string; a \
tuple is an array; an f64 is a JSON number (finite in every vector); integers up to 2^64-1 are JSON integers; \
VerifyAnswer.key is null or an array of byte values: the encoding of a VerifiedKey (the bytes after the length \
varint on the wire), equal to the hex of one of the VerifiedKey vectors. Strings are UTF-8 (read the file as \
UTF-8). The Rust test protocol/tests/vectors.rs generates this file (KEYWARD_BLESS_VECTORS=1) and checks every \
vector both ways; do not edit it by hand.";

// ---------------------------------------------------------------------------------------------------------
// The messages a vector may hold.

/// A top-level wire message, or the key a verify answer carries as a byte string.
#[derive(Clone, Debug, PartialEq)]
enum Message {
    Hello(Hello),
    HelloReply(HelloReply),
    Request(RequestFrame),
    Reply(ReplyFrame),
    VerifiedKey(VerifiedKey),
}

impl Message {
    fn type_name(&self) -> &'static str {
        match self {
            Message::Hello(_) => "Hello",
            Message::HelloReply(_) => "HelloReply",
            Message::Request(_) => "RequestFrame",
            Message::Reply(_) => "ReplyFrame",
            Message::VerifiedKey(_) => "VerifiedKey",
        }
    }

    fn encode(&self) -> Vec<u8> {
        match self {
            Message::Hello(m) => codec::encode(m),
            Message::HelloReply(m) => codec::encode(m),
            Message::Request(m) => codec::encode(m),
            Message::Reply(m) => codec::encode(m),
            Message::VerifiedKey(m) => codec::encode(m),
        }
        .expect("every vector encodes")
    }

    /// Decodes `bytes` as the daemon (client-to-daemon messages: tight limits) or a client would.
    fn decode(type_name: &str, bytes: &[u8]) -> Result<Message, String> {
        let message = match type_name {
            "Hello" => Message::Hello(codec::decode_request(bytes).map_err(|e| e.to_string())?),
            "RequestFrame" => Message::Request(codec::decode_request(bytes).map_err(|e| e.to_string())?),
            "HelloReply" => Message::HelloReply(codec::decode(bytes).map_err(|e| e.to_string())?),
            "ReplyFrame" => Message::Reply(codec::decode(bytes).map_err(|e| e.to_string())?),
            "VerifiedKey" => Message::VerifiedKey(codec::decode(bytes).map_err(|e| e.to_string())?),
            other => return Err(format!("unknown type {other:?}")),
        };
        Ok(message)
    }

    fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("every vector has a JSON form")
    }

    /// Reads a vector's JSON value. A verify answer's key is the one field whose JSON form (an array of byte
    /// values) its own deserializer cannot read back, so it is decoded from those bytes here.
    fn from_json(type_name: &str, value: &Value) -> Result<Message, String> {
        let json = |e: serde_json::Error| e.to_string();
        let message = match type_name {
            "Hello" => Message::Hello(serde_json::from_value(value.clone()).map_err(json)?),
            "HelloReply" => Message::HelloReply(serde_json::from_value(value.clone()).map_err(json)?),
            "RequestFrame" => Message::Request(serde_json::from_value(value.clone()).map_err(json)?),
            "VerifiedKey" => Message::VerifiedKey(serde_json::from_value(value.clone()).map_err(json)?),
            "ReplyFrame" => {
                let mut value = value.clone();
                let key = value.pointer_mut("/reply/Verify/key").filter(|key| key.is_array()).map(Value::take);
                let mut frame: ReplyFrame = serde_json::from_value(value).map_err(json)?;
                if let (Some(key), Reply::Verify(answer)) = (key, &mut frame.reply) {
                    let bytes: Vec<u8> = serde_json::from_value(key).map_err(json)?;
                    answer.key = Some(Arc::new(codec::decode(&bytes).map_err(|e| e.to_string())?));
                }
                Message::Reply(frame)
            }
            other => return Err(format!("unknown type {other:?}")),
        };
        Ok(message)
    }
}

impl Serialize for Message {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Message::Hello(m) => m.serialize(serializer),
            Message::HelloReply(m) => m.serialize(serializer),
            Message::Request(m) => m.serialize(serializer),
            Message::Reply(m) => m.serialize(serializer),
            Message::VerifiedKey(m) => m.serialize(serializer),
        }
    }
}

struct Vector {
    name: String,
    message: Message,
    /// Whether the JSON value loses something the bytes hold (see [`COMMENT`]), so that reading it back
    /// gives another value.
    json_lossy: bool,
}

fn vector(name: impl Into<String>, message: Message) -> Vector {
    Vector { name: name.into(), message, json_lossy: false }
}

fn request(id: u64, request: Request) -> Message {
    Message::Request(RequestFrame { id, request })
}

fn reply(id: u64, reply: Reply) -> Message {
    Message::Reply(ReplyFrame { id, reply })
}

// ---------------------------------------------------------------------------------------------------------
// The vectors.

/// A well-formed token (its checksum is right); PROTOCOL.md takes it apart.
fn token() -> Secret {
    Token::assemble(Environment::Live, &KeyId::parse("AbCdEf012345").unwrap(), b"0123456789abcdefghijABCDEFGHIJxy")
}

fn test_token() -> Secret {
    Token::assemble(Environment::Test, &KeyId::parse("Zz9Yy8Xx7Ww6").unwrap(), b"ZYXWVUTSRQPONMLKJIHGFEDCBA987654")
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn map(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
    entries.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600;

fn verified_key() -> VerifiedKey {
    VerifiedKey {
        id: "AbCdEf012345".into(),
        workspace: "acme".into(),
        name: "CI deploy".into(),
        env: Environment::Live,
        scopes: strings(&["read:tables", "write:forms"]),
        expires_at: Some(T0 + 90 * 86_400),
        role: Role::Member,
        metadata: map(&[("owner", "ops"), ("region", "Zürich")]),
        account: None,
    }
}

fn legacy_verified_key() -> VerifiedKey {
    VerifiedKey {
        id: "Zz9Yy8Xx7Ww6".into(),
        workspace: "globex".into(),
        name: "Ancien jeton personnel".into(),
        env: Environment::Test,
        scopes: strings(&["admin"]),
        expires_at: None,
        role: Role::Admin,
        metadata: BTreeMap::new(),
        account: Some("acct_42".into()),
    }
}

fn rate_status(policy: &str, limit: u64, remaining: u64, window_seconds: u64) -> RateLimitStatus {
    RateLimitStatus { policy: policy.into(), limit, remaining, reset_at_ms: T0 * 1000 + 60_000, window_seconds }
}

/// A limit's status as the daemon reports it at `T0`: `reset_in_ms` from then until the limit is full again
/// (0 for a full one).
fn status_at_t0(policy: &str, limit: u64, remaining: u64, reset_in_ms: i64, window_seconds: u64) -> RateLimitStatus {
    RateLimitStatus { policy: policy.into(), limit, remaining, reset_at_ms: T0 * 1000 + reset_in_ms, window_seconds }
}

fn key_view(status: KeyStatus) -> KeyView {
    KeyView {
        id: "AbCdEf012345".into(),
        prefix: "kw_live_".into(),
        masked: format!("kw_live_****{}", &token().expose()[TOKEN_LEN - 4..]),
        name: "CI deploy".into(),
        description: None,
        workspace: "acme".into(),
        env: Environment::Live,
        scopes: strings(&["read:tables"]),
        status,
        created_at: T0,
        last_used_at: None,
        expires_at: Some(T0 + 90 * 86_400),
        revoked_at: None,
        metadata: BTreeMap::new(),
        role: Role::Member,
        origin: KeyOrigin::Generated,
        account: None,
        previous_token_until: None,
        limits: Limits::default(),
    }
}

fn full_key_view() -> KeyView {
    KeyView {
        description: Some("Déploiement continu — équipe ✓".into()),
        scopes: strings(&["read:all", "write:tables", "admin"]),
        last_used_at: Some(T0 + 3_600),
        metadata: map(&[("owner", "ops"), ("region", "Zürich")]),
        role: Role::Admin,
        previous_token_until: Some(T0 + 86_400),
        limits: Limits {
            rate: RatePolicy::Custom(Rate { count: 1000, period: Period::Minute }),
            named: BTreeMap::from([
                ("export".to_owned(), Rate { count: 10, period: Period::Hour }),
                ("search".to_owned(), Rate { count: 5, period: Period::Second }),
            ]),
            credits: Some(4_999),
            refill: Some(Refill::Monthly { amount: 5_000, day: 31 }),
        },
        ..key_view(KeyStatus::Active)
    }
}

fn error(id: u64, code: ErrorCode, message: &str) -> Message {
    reply(id, Reply::Error(ErrorReply::new(code, message)))
}

fn hello_vectors() -> Vec<Vector> {
    vec![
        vector("hello.client.v2", Message::Hello(Hello { version: PROTOCOL_VERSION })),
        vector("hello.client.v1", Message::Hello(Hello { version: 1 })),
        vector("hello.client.v300", Message::Hello(Hello { version: 300 })),
        vector("hello.daemon.accepted", Message::HelloReply(HelloReply::Accepted { version: PROTOCOL_VERSION })),
        vector(
            "hello.daemon.rejected_version",
            Message::HelloReply(HelloReply::Rejected(ErrorReply::new(
                ErrorCode::UnsupportedVersion,
                "keywardd speaks protocol version 2; the client asked for version 300",
            ))),
        ),
        vector(
            "hello.daemon.rejected_forbidden",
            Message::HelloReply(HelloReply::Rejected(ErrorReply::new(
                ErrorCode::Forbidden,
                "this user may not use the verify socket: it is not in verify_groups",
            ))),
        ),
        vector(
            "hello.daemon.rejected_bad_frame",
            Message::HelloReply(HelloReply::Rejected(ErrorReply::new(
                ErrorCode::BadFrame,
                "the first frame must be a handshake (Hello { version })",
            ))),
        ),
    ]
}

fn request_vectors() -> Vec<Vector> {
    let everything = KeyChanges {
        name: Some("CI deploy (prod)".into()),
        description: Some("Rotated by ops — Zürich".into()),
        scopes: Some(strings(&["read:all", "write:tables"])),
        role: Some(Role::Admin),
        expires: Some(ExpirySpec::Months(6)),
        metadata: map(&[("owner", "sre"), ("stale", "")]),
        rate: Some(RatePolicy::Plan("paid".into())),
        named_limits: BTreeMap::from([
            ("export".to_owned(), None),
            ("search".to_owned(), Some(Rate { count: 20, period: Period::Day })),
        ]),
        refill: Some(Some(Refill::Daily { amount: 70_000 })),
    };
    let mut full_create = CreateRequest::new("acme", "Clé de déploiement 🔑", strings(&["write:tables", "read:all"]));
    full_create.description = Some("Déploiement continu — équipe ✓".into());
    full_create.expires = ExpirySpec::At(1_900_000_000);
    full_create.env = Environment::Test;
    full_create.role = Role::Admin;
    full_create.metadata = map(&[("plan", "pro"), ("owner", "ops")]);
    full_create.limits = Limits {
        rate: RatePolicy::Custom(Rate { count: 1000, period: Period::Minute }),
        named: BTreeMap::from([("export".to_owned(), Rate { count: 10, period: Period::Hour })]),
        credits: Some(5_000),
        refill: Some(Refill::Monthly { amount: 5_000, day: 31 }),
    };
    let mut unlimited_create = CreateRequest::new("internal", "Batch jobs", strings(&["read:all"]));
    unlimited_create.expires = ExpirySpec::Never;
    unlimited_create.limits = Limits {
        rate: RatePolicy::Unlimited,
        named: BTreeMap::new(),
        credits: None,
        refill: Some(Refill::Daily { amount: 100 }),
    };
    let mut legacy_import = ImportRequest::new(
        Secret::new("sk_personal_9f8e7d6c5b4a3f2e"),
        "globex",
        "Ancien jeton personnel",
        strings(&["admin"]),
    );
    legacy_import.description = Some("imported from the old portal".into());
    legacy_import.role = Role::Admin;
    legacy_import.expires = ExpirySpec::Days(30);
    legacy_import.metadata = map(&[("source", "portal")]);
    legacy_import.limits.credits = Some(0);
    legacy_import.legacy_account = Some("acct_42".into());

    vec![
        vector("request.ping.id_1", request(1, Request::Ping)),
        vector("request.ping.id_250", request(250, Request::Ping)),
        vector("request.ping.id_251", request(251, Request::Ping)),
        vector("request.ping.id_65535", request(65_535, Request::Ping)),
        vector("request.ping.id_65536", request(65_536, Request::Ping)),
        vector("request.ping.id_4294967296", request(1 << 32, Request::Ping)),
        vector("request.ping.id_max", request(u64::MAX, Request::Ping)),
        vector("request.verify.minimal", request(7, Request::Verify(VerifyRequest::new(token())))),
        vector(
            "request.verify.full",
            request(
                8,
                Request::Verify(VerifyRequest {
                    token: token(),
                    scope: Some("read:tables".into()),
                    workspace: Some("acme".into()),
                    cost: 70_000,
                    limits: strings(&["search", "export"]),
                }),
            ),
        ),
        vector(
            "request.verify.check_only",
            request(9, Request::Verify(VerifyRequest { cost: 0, ..VerifyRequest::new(test_token()) })),
        ),
        vector("request.verify.empty_token", request(10, Request::Verify(VerifyRequest::new(Secret::default())))),
        vector(
            "request.create.minimal",
            request(11, Request::Create(CreateRequest::new("acme", "CI deploy", strings(&["read:tables"])))),
        ),
        vector("request.create.full", request(12, Request::Create(full_create))),
        vector("request.create.unlimited_never_expires", request(13, Request::Create(unlimited_create))),
        vector(
            "request.list.first_page",
            request(14, Request::List(ListRequest { workspace: "acme".into(), after: None, limit: 0 })),
        ),
        vector(
            "request.list.next_page",
            request(
                15,
                Request::List(ListRequest {
                    workspace: "acme".into(),
                    after: Some("AbCdEf012345".into()),
                    limit: 1000,
                }),
            ),
        ),
        vector("request.get", request(16, Request::Get { id: "AbCdEf012345".into() })),
        vector("request.revoke", request(17, Request::Revoke { id: "AbCdEf012345".into() })),
        vector(
            "request.edit.everything",
            request(18, Request::Edit { id: "AbCdEf012345".into(), changes: everything }),
        ),
        vector(
            "request.edit.nothing",
            request(19, Request::Edit { id: "AbCdEf012345".into(), changes: KeyChanges::default() }),
        ),
        vector(
            "request.edit.description_cleared",
            request(
                20,
                Request::Edit {
                    id: "AbCdEf012345".into(),
                    changes: KeyChanges {
                        description: Some(String::new()),
                        expires: Some(ExpirySpec::Never),
                        rate: Some(RatePolicy::Unlimited),
                        ..KeyChanges::default()
                    },
                },
            ),
        ),
        Vector {
            json_lossy: true,
            ..vector(
                "request.edit.refill_removed",
                request(
                    21,
                    Request::Edit {
                        id: "AbCdEf012345".into(),
                        changes: KeyChanges { refill: Some(None), ..KeyChanges::default() },
                    },
                ),
            )
        },
        vector(
            "request.regenerate.now",
            request(22, Request::Regenerate { id: "AbCdEf012345".into(), grace_seconds: 0 }),
        ),
        vector(
            "request.regenerate.grace_one_day",
            request(23, Request::Regenerate { id: "AbCdEf012345".into(), grace_seconds: 86_400 }),
        ),
        vector("request.deactivate", request(24, Request::Deactivate { id: "AbCdEf012345".into() })),
        vector("request.activate", request(25, Request::Activate { id: "AbCdEf012345".into() })),
        vector(
            "request.import.minimal",
            request(
                26,
                Request::Import(ImportRequest::new(
                    Secret::new("sk_live_0123456789abcdef"),
                    "acme",
                    "Old system key",
                    strings(&["read:all"]),
                )),
            ),
        ),
        vector("request.import.legacy", request(27, Request::Import(legacy_import))),
        vector("request.audit.everything", request(28, Request::Audit(AuditQuery::default()))),
        vector(
            "request.audit.filtered",
            request(
                29,
                Request::Audit(AuditQuery {
                    workspace: Some("acme".into()),
                    key: Some("AbCdEf012345".into()),
                    since: Some(T0),
                    limit: 50,
                }),
            ),
        ),
        vector(
            "request.audit.since_negative",
            request(30, Request::Audit(AuditQuery { since: Some(-1), limit: 10_000, ..AuditQuery::default() })),
        ),
        vector(
            "request.set_account",
            request(
                31,
                Request::SetAccount(AccountView {
                    account: "acct_42".into(),
                    workspaces: strings(&["acme", "globex"]),
                }),
            ),
        ),
        vector("request.get_account", request(32, Request::GetAccount { account: "acct_42".into() })),
        vector("request.list_legacy.all", request(33, Request::ListLegacy { account: None })),
        vector("request.list_legacy.one_account", request(34, Request::ListLegacy { account: Some("acct_42".into()) })),
        vector(
            "request.credits.set",
            request(35, Request::Credits { id: "AbCdEf012345".into(), change: CreditChange::Set(5_000) }),
        ),
        vector(
            "request.credits.add",
            request(36, Request::Credits { id: "AbCdEf012345".into(), change: CreditChange::Add(1 << 32) }),
        ),
        vector("request.usage", request(37, Request::Usage { id: "AbCdEf012345".into() })),
        vector("request.workspace_usage", request(38, Request::WorkspaceUsage { workspace: "acme".into() })),
        vector(
            "request.as.revoke",
            request(
                39,
                Request::As {
                    actor: "alice@dashboard".into(),
                    request: Box::new(Request::Revoke { id: "AbCdEf012345".into() }),
                },
            ),
        ),
        vector(
            "request.as.create",
            request(
                40,
                Request::As {
                    actor: "Zoë".into(),
                    request: Box::new(Request::Create(CreateRequest::new("acme", "CI deploy", strings(&["admin"])))),
                },
            ),
        ),
        vector("request.stats", request(41, Request::Stats)),
        vector("request.fleet_init", request(42, Request::FleetInit)),
        vector("request.fleet_status", request(43, Request::FleetStatus)),
    ]
}

fn verify_answer(code: VerifyCode) -> VerifyAnswer {
    let names_key = !matches!(code, VerifyCode::Missing | VerifyCode::Malformed | VerifyCode::NotFound);
    VerifyAnswer {
        code,
        key: names_key.then(|| Arc::new(verified_key())),
        retry_after_ms: None,
        ratelimit: Vec::new(),
        credits: None,
    }
}

/// The daemon's answer with `code` about a key, for the codes without a vector of their own. A refused code
/// carries the key's limits (as they stand: nothing was spent) and balance as VALID does: REVOKED and
/// INSUFFICIENT_SCOPE show it; the others are about a key with no rate limit (`Unlimited`) and no credits.
fn refused_answer(code: VerifyCode) -> VerifyAnswer {
    match code {
        VerifyCode::Revoked => VerifyAnswer {
            ratelimit: vec![status_at_t0("free", 100, 97, 1_800, 60)],
            credits: Some(250),
            ..verify_answer(code)
        },
        // The request named the limit `export`, which the key has, and `bulk`, which it has not (ignored).
        VerifyCode::InsufficientScope => VerifyAnswer {
            ratelimit: vec![status_at_t0("custom", 1000, 1000, 0, 60), status_at_t0("export", 10, 4, 2_160_000, 3_600)],
            credits: Some(4_999),
            ..verify_answer(code)
        },
        _ => verify_answer(code),
    }
}

fn reply_vectors() -> Vec<Vector> {
    let mut vectors = vec![
        vector("reply.pong", reply(1, Reply::Pong)),
        vector(
            "reply.verify.valid_with_limits",
            reply(
                8,
                Reply::Verify(VerifyAnswer {
                    ratelimit: vec![rate_status("free", 100, 99, 60), rate_status("search", 5, 0, 1)],
                    credits: Some(4_999),
                    ..verify_answer(VerifyCode::Valid)
                }),
            ),
        ),
        vector(
            "reply.verify.valid_legacy_key",
            reply(
                9,
                Reply::Verify(VerifyAnswer {
                    key: Some(Arc::new(legacy_verified_key())),
                    ratelimit: vec![rate_status("paid", 1000, 998, 60)],
                    credits: Some(u64::MAX),
                    ..verify_answer(VerifyCode::Valid)
                }),
            ),
        ),
        vector(
            "reply.verify.rate_limited",
            reply(
                10,
                Reply::Verify(VerifyAnswer {
                    retry_after_ms: Some(1_500),
                    ratelimit: vec![rate_status("custom", 1000, 0, 60)],
                    ..verify_answer(VerifyCode::RateLimited)
                }),
            ),
        ),
        vector(
            "reply.verify.usage_exceeded",
            reply(
                11,
                Reply::Verify(VerifyAnswer {
                    // The rate limit's reservation was given back.
                    ratelimit: vec![status_at_t0("free", 100, 99, 600, 60)],
                    credits: Some(0),
                    ..verify_answer(VerifyCode::UsageExceeded)
                }),
            ),
        ),
        vector(
            // Cost 20 against `export` (10/h): more than its whole burst, so no retry time; `free` was given back.
            "reply.verify.rate_limited_over_burst",
            reply(
                13,
                Reply::Verify(VerifyAnswer {
                    retry_after_ms: None,
                    ratelimit: vec![status_at_t0("free", 100, 100, 0, 60), status_at_t0("export", 10, 10, 0, 3_600)],
                    credits: Some(120),
                    ..verify_answer(VerifyCode::RateLimited)
                }),
            ),
        ),
    ];
    // Every other outcome a verify answers (BUSY is an error reply, never an answer's code).
    for code in VerifyCode::ALL {
        if !matches!(code, VerifyCode::RateLimited | VerifyCode::UsageExceeded | VerifyCode::Busy) {
            let name = format!("reply.verify.{}", code.as_str().to_lowercase());
            vectors.push(vector(name, reply(100 + code as u64, Reply::Verify(refused_answer(code)))));
        }
    }
    let every_status = [
        KeyStatus::Active,
        KeyStatus::Expired,
        KeyStatus::Revoked,
        KeyStatus::Inactive,
        KeyStatus::Legacy,
        KeyStatus::Sunset,
    ]
    .map(|status| {
        let mut view = key_view(status);
        match status {
            KeyStatus::Revoked => view.revoked_at = Some(T0 + 7_200),
            KeyStatus::Legacy | KeyStatus::Sunset => {
                view.origin = KeyOrigin::Legacy;
                view.account = Some("acct_42".into());
                view.expires_at = None;
            }
            KeyStatus::Inactive => view.origin = KeyOrigin::Imported,
            KeyStatus::Active | KeyStatus::Expired => {}
        }
        view
    });
    vectors.extend([
        vector(
            "reply.created",
            reply(12, Reply::Created(CreatedKey { token: token(), key: key_view(KeyStatus::Active) })),
        ),
        vector(
            "reply.keys.every_status",
            reply(14, Reply::Keys(KeyPage { keys: every_status.to_vec(), next: Some("AbCdEf012345".into()) })),
        ),
        vector("reply.keys.empty", reply(15, Reply::Keys(KeyPage { keys: Vec::new(), next: None }))),
        vector("reply.key.full", reply(16, Reply::Key(full_key_view()))),
        vector(
            "reply.key.revoked",
            reply(17, Reply::Key(KeyView { revoked_at: Some(T0 + 7_200), ..key_view(KeyStatus::Revoked) })),
        ),
    ]);
    let errors = [
        (ErrorCode::UnsupportedVersion, "keywardd speaks protocol version 2; the client asked for version 3"),
        (ErrorCode::BadFrame, "undecodable request: unexpected variant index 200"),
        (ErrorCode::WrongSocket, "management requests are only accepted on the admin socket"),
        (ErrorCode::InvalidArgument, "name must be 3 to 50 characters (got 2)"),
        (ErrorCode::KeyNotFound, "no key with id AbCdEf012345"),
        (ErrorCode::Conflict, "the key is already revoked"),
        (ErrorCode::Storage, "storage failed, nothing was changed: disk full"),
        (ErrorCode::ShuttingDown, "the daemon is shutting down"),
        (ErrorCode::Busy, "too many verifications are waiting for the hasher; try again shortly"),
        (
            ErrorCode::Forbidden,
            "a configuration reload withdrew this user's access to this socket; closing the connection",
        ),
        (ErrorCode::Internal, "internal error: the storage task failed"),
        (ErrorCode::EngineUnavailable, "the fleet engine is unavailable, so nothing was changed: timed out"),
        (ErrorCode::EngineDiverged, "the engine holds fewer changes than this host has applied"),
    ];
    for (n, (code, message)) in errors.into_iter().enumerate() {
        vectors.push(vector(
            format!("reply.error.{}", code.as_str().to_lowercase()),
            error(200 + n as u64, code, message),
        ));
    }
    vectors.push(vector(
        "reply.error.bad_frame_id_0",
        error(0, ErrorCode::BadFrame, "frame of 70000 bytes exceeds the 65536-byte limit; closing the connection"),
    ));
    let actor = Actor { uid: 1000, gid: 1000, pid: Some(4242), label: Some("alice@dashboard".into()) };
    let entry = |seq: u64, action: AuditAction| AuditEntry {
        seq,
        at: T0 + seq as i64,
        action,
        key_id: Some("AbCdEf012345".into()),
        workspace: Some("acme".into()),
        account: None,
        changes: Vec::new(),
        actor: Actor { uid: 0, gid: 0, pid: None, label: None },
    };
    let detailed = vec![
        AuditEntry {
            changes: vec![
                FieldChange { field: "name".into(), from: Some("CI".into()), to: Some("CI deploy".into()) },
                FieldChange { field: "description".into(), from: None, to: Some("Déploiement".into()) },
                FieldChange { field: "refill".into(), from: Some("500/day".into()), to: None },
            ],
            actor: actor.clone(),
            ..entry(70_000, AuditAction::Edit)
        },
        AuditEntry {
            key_id: None,
            workspace: None,
            account: Some("acct_42".into()),
            ..entry(1, AuditAction::AccountSet)
        },
    ];
    let every_action = [
        AuditAction::Create,
        AuditAction::Edit,
        AuditAction::Regenerate,
        AuditAction::Deactivate,
        AuditAction::Activate,
        AuditAction::Revoke,
        AuditAction::Import,
        AuditAction::AccountSet,
        AuditAction::Credits,
    ];
    let mut totals: BTreeMap<VerifyCode, u64> =
        VerifyCode::ALL.into_iter().map(|code| (code, code as u64 + 1)).collect();
    totals.insert(VerifyCode::Valid, 1 << 32);
    let bucket = |start: i64, valid: u64| UsageBucket {
        start,
        counts: BTreeMap::from([(VerifyCode::Valid, valid), (VerifyCode::NotFound, 2)]),
    };
    let fleet = FleetReport {
        engine: "host=/run/postgresql port=5432 dbname=keyward".into(),
        reachable: true,
        problem: None,
        fleet_id: Some("3f2a9c1e-fleet".into()),
        schema_version: Some(3),
        head_seq: Some(70_000),
        keys: Some(42),
        this_node: "app-1".into(),
        nodes: vec![
            NodeReport {
                node_id: "app-1".into(),
                applied_seq: 70_000,
                lag: 0,
                last_seen_at: T0,
                last_seen_seconds_ago: 1,
                version: "0.1.0".into(),
            },
            NodeReport {
                node_id: "app-2".into(),
                applied_seq: 69_990,
                lag: 10,
                last_seen_at: T0 - 30,
                last_seen_seconds_ago: 31,
                version: "0.1.0".into(),
            },
        ],
    };
    vectors.extend([
        vector("reply.audit.detailed", reply(18, Reply::Audit(detailed))),
        vector(
            "reply.audit.every_action",
            reply(19, Reply::Audit(every_action.iter().zip(1..).map(|(&action, seq)| entry(seq, action)).collect())),
        ),
        vector("reply.audit.empty", reply(20, Reply::Audit(Vec::new()))),
        vector(
            "reply.account",
            reply(
                21,
                Reply::Account(AccountView { account: "acct_42".into(), workspaces: strings(&["acme", "globex"]) }),
            ),
        ),
        vector(
            "reply.account.unknown",
            reply(22, Reply::Account(AccountView { account: "acct_0".into(), workspaces: Vec::new() })),
        ),
        vector(
            "reply.usage",
            reply(
                23,
                Reply::Usage(UsageReport {
                    key_id: "AbCdEf012345".into(),
                    totals,
                    hourly: vec![bucket(T0, 7), bucket(T0 + 3_600, 300)],
                    daily: vec![bucket(T0 - 86_400, 70_000)],
                }),
            ),
        ),
        vector(
            "reply.workspace_usage",
            reply(
                24,
                Reply::WorkspaceUsage(vec![
                    KeyUsage {
                        key_id: "AbCdEf012345".into(),
                        name: "CI deploy".into(),
                        total: 70_002,
                        totals: BTreeMap::from([(VerifyCode::Valid, 70_000), (VerifyCode::RateLimited, 2)]),
                    },
                    KeyUsage {
                        key_id: "Zz9Yy8Xx7Ww6".into(),
                        name: "Ancien jeton personnel".into(),
                        total: 0,
                        totals: BTreeMap::new(),
                    },
                ]),
            ),
        ),
        vector("reply.stats.standalone", reply(25, Reply::Stats(Box::new(stats(None, None))))),
        vector(
            "reply.stats.fleet",
            reply(
                26,
                Reply::Stats(Box::new(stats(
                    Some(FleetFigures {
                        node_id: "app-1".into(),
                        engine_reachable: true,
                        diverged: false,
                        applied_seq: 70_000,
                        head_seq: 70_000,
                        last_sync_at: Some(T0),
                        changes_applied: 12,
                        engine_queries: 1 << 32,
                        reconnects: 1,
                    }),
                    // The forward-auth endpoint's answers: u16 keys, one byte (200) and three (fb + u16 LE).
                    Some(HttpFigures {
                        connections_open: 2,
                        connections_total: 300,
                        connections_forbidden: 1,
                        answers: BTreeMap::from([(200, 12), (401, 3), (429, 1)]),
                    }),
                ))),
            ),
        ),
        vector("reply.fleet.reachable", reply(27, Reply::Fleet(Box::new(fleet)))),
        vector(
            "reply.fleet.unreachable",
            reply(
                28,
                Reply::Fleet(Box::new(FleetReport {
                    engine: "host=db.internal port=5432 dbname=keyward".into(),
                    reachable: false,
                    problem: Some("connection refused".into()),
                    this_node: "app-1".into(),
                    ..FleetReport::default()
                })),
            ),
        ),
    ]);
    vectors
}

fn stats(fleet: Option<FleetFigures>, http: Option<HttpFigures>) -> StatsReport {
    StatsReport {
        version: "0.1.0".into(),
        uptime_seconds: 86_400,
        keys: BTreeMap::from([("active".to_owned(), 12), ("expired".to_owned(), 1), ("revoked".to_owned(), 3)]),
        connections_open: 4,
        connections_total: 70_000,
        connections_forbidden: 0,
        verifies: BTreeMap::from([
            (VerifyCode::Valid, 1 << 32),
            (VerifyCode::NotFound, 3),
            (VerifyCode::RateLimited, 1),
        ]),
        verify_latency: LatencySummary {
            count: 4_294_967_300,
            sum_seconds: 0.5,
            p50_seconds: 0.000_012,
            p99_seconds: 0.0025,
            p999_seconds: 0.015,
            buckets: vec![(0.000_01, 10), (0.001, 4_294_967_000), (1.0, 4_294_967_300), (f64::MAX, 4_294_967_300)],
        },
        cache_hits: 4_294_967_290,
        cache_misses: 10,
        argon2_running: 1,
        argon2_waiting: 0,
        busy_refusals: 0,
        store_bytes: 1_048_576,
        last_flush_at: Some(T0 + 86_398),
        fleet,
        http,
    }
}

fn key_vectors() -> Vec<Vector> {
    vec![
        vector("verified_key.member", Message::VerifiedKey(verified_key())),
        vector("verified_key.legacy", Message::VerifiedKey(legacy_verified_key())),
    ]
}

/// Every vector, in the file's order.
fn vectors() -> Vec<Vector> {
    let mut all = hello_vectors();
    all.extend(request_vectors());
    all.extend(reply_vectors());
    all.extend(key_vectors());
    all
}

// ---------------------------------------------------------------------------------------------------------
// The file.

#[derive(Serialize)]
struct FileOut<'a> {
    protocol_version: u16,
    comment: &'a str,
    vectors: Vec<EntryOut<'a>>,
}

#[derive(Serialize)]
struct EntryOut<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    type_name: &'static str,
    value: &'a Message,
    hex: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileIn {
    protocol_version: u16,
    #[allow(dead_code)]
    comment: String,
    vectors: Vec<EntryIn>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryIn {
    name: String,
    #[serde(rename = "type")]
    type_name: String,
    value: Value,
    hex: String,
}

/// The file's text: serialized straight from the Rust values (not through `serde_json::Value`, whose key
/// order depends on serde_json's features), so objects keep their fields in wire order; two-space indent
/// and a final newline.
fn render(vectors: &[Vector]) -> String {
    let file = FileOut {
        protocol_version: PROTOCOL_VERSION,
        comment: COMMENT,
        vectors: vectors
            .iter()
            .map(|v| EntryOut {
                name: &v.name,
                type_name: v.message.type_name(),
                value: &v.message,
                hex: hex(&v.message.encode()),
            })
            .collect(),
    };
    let mut text = serde_json::to_string_pretty(&file).expect("the vectors render");
    text.push('\n');
    text
}

fn blessing() -> bool {
    std::env::var_os(BLESS).is_some_and(|value| value == "1")
}

/// The file as the other tests read it: what is on disk, or what is being written to it.
fn file_text() -> String {
    if blessing() {
        return render(&vectors());
    }
    std::fs::read_to_string(VECTORS_FILE).unwrap_or_else(|e| panic!("cannot read {VECTORS_FILE}: {e}"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    assert!(
        text.len().is_multiple_of(2) && text.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')),
        "bad hex {text:?}"
    );
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
}

#[test]
fn the_vectors_file_is_what_the_rust_list_renders() {
    let rendered = render(&vectors());
    if blessing() {
        std::fs::write(VECTORS_FILE, &rendered).unwrap_or_else(|e| panic!("cannot write {VECTORS_FILE}: {e}"));
        return;
    }
    let on_disk = std::fs::read_to_string(VECTORS_FILE).unwrap_or_default();
    if on_disk != rendered {
        let line = on_disk.lines().zip(rendered.lines()).position(|(a, b)| a != b);
        let line = line.unwrap_or_else(|| on_disk.lines().count().min(rendered.lines().count()));
        panic!(
            "{VECTORS_FILE} is not what protocol/tests/vectors.rs renders (first difference at line {}):\n  file:     \
             {}\n  expected: {}\nIf the wire change is intended, run `{BLESS}=1 cargo test -p keyward-protocol --test \
             vectors` and review the file's diff.",
            line + 1,
            on_disk.lines().nth(line).unwrap_or("<end of file>"),
            rendered.lines().nth(line).unwrap_or("<end of file>"),
        );
    }
}

#[test]
fn every_vector_encodes_to_its_bytes_and_decodes_to_its_value() {
    let file: FileIn = serde_json::from_str(&file_text()).expect("the vectors file has its shape");
    assert_eq!(file.protocol_version, PROTOCOL_VERSION);
    let lossy: BTreeSet<String> = vectors().into_iter().filter(|v| v.json_lossy).map(|v| v.name).collect();
    let mut names = BTreeSet::new();
    for entry in &file.vectors {
        let name = &entry.name;
        assert!(names.insert(name.clone()), "{name}: two vectors have this name");
        let bytes = unhex(&entry.hex);

        // Bytes to value: the decoded message has the vector's JSON value, and encodes to the same bytes.
        let decoded = Message::decode(&entry.type_name, &bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(decoded.to_json(), entry.value, "{name}: the bytes decode to another value");
        assert_eq!(hex(&decoded.encode()), entry.hex, "{name}: re-encoding changes the bytes");

        // Value to bytes: the JSON value, read as the Rust type, encodes to the vector's bytes.
        let parsed = Message::from_json(&entry.type_name, &entry.value).unwrap_or_else(|e| panic!("{name}: {e}"));
        if lossy.contains(name) {
            assert_ne!(parsed, decoded, "{name}: marked lossy, but its JSON value reads back whole");
            assert_eq!(parsed.to_json(), entry.value, "{name}");
        } else {
            assert_eq!(parsed, decoded, "{name}: the JSON value and the bytes are different messages");
            assert_eq!(hex(&parsed.encode()), entry.hex, "{name}: the JSON value encodes to other bytes");
        }

        // The daemon's own fast paths agree: a verify read in place, a verify answer with its key spliced in.
        match &decoded {
            Message::Request(RequestFrame { id, request: Request::Verify(verify) }) => {
                let (read_id, read) = decode_verify_request(&bytes).unwrap_or_else(|| panic!("{name}: fast path"));
                assert_eq!((read_id, read), (*id, verify.as_borrowed()), "{name}");
            }
            Message::Reply(ReplyFrame { id, reply: Reply::Verify(answer) }) => {
                let key = answer.key.as_deref().map(|key| answer_key::wire_form(key).unwrap());
                let mut spliced = Vec::new();
                encode_verify_reply_into(&mut spliced, *id, answer, key.as_deref()).unwrap();
                assert_eq!(hex(&spliced), entry.hex, "{name}: the daemon's spliced verify reply differs");
                if answer.key.is_some() {
                    let direct = serde_json::from_value::<ReplyFrame>(entry.value.clone());
                    assert!(direct.is_err(), "{name}: the answer key's JSON form now reads back: update COMMENT");
                }
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Coverage.

/// The name of a request's variant. No wildcard: a new variant does not compile until it has a vector.
fn request_variant(request: &Request) -> &'static str {
    match request {
        Request::Ping => "Ping",
        Request::Verify(_) => "Verify",
        Request::Create(_) => "Create",
        Request::List(_) => "List",
        Request::Get { .. } => "Get",
        Request::Revoke { .. } => "Revoke",
        Request::Edit { .. } => "Edit",
        Request::Regenerate { .. } => "Regenerate",
        Request::Deactivate { .. } => "Deactivate",
        Request::Activate { .. } => "Activate",
        Request::Import(_) => "Import",
        Request::Audit(_) => "Audit",
        Request::SetAccount(_) => "SetAccount",
        Request::GetAccount { .. } => "GetAccount",
        Request::ListLegacy { .. } => "ListLegacy",
        Request::Credits { .. } => "Credits",
        Request::Usage { .. } => "Usage",
        Request::WorkspaceUsage { .. } => "WorkspaceUsage",
        Request::As { .. } => "As",
        Request::Stats => "Stats",
        Request::FleetInit => "FleetInit",
        Request::FleetStatus => "FleetStatus",
    }
}

/// The name of a reply's variant. No wildcard, as above.
fn reply_variant(reply: &Reply) -> &'static str {
    match reply {
        Reply::Pong => "Pong",
        Reply::Verify(_) => "Verify",
        Reply::Created(_) => "Created",
        Reply::Keys(_) => "Keys",
        Reply::Key(_) => "Key",
        Reply::Error(_) => "Error",
        Reply::Audit(_) => "Audit",
        Reply::Account(_) => "Account",
        Reply::Usage(_) => "Usage",
        Reply::WorkspaceUsage(_) => "WorkspaceUsage",
        Reply::Stats(_) => "Stats",
        Reply::Fleet(_) => "Fleet",
    }
}

#[test]
fn every_request_reply_and_code_has_a_vector() {
    let vectors = vectors();
    let mut requests = BTreeSet::new();
    let mut replies = BTreeSet::new();
    let mut errors = BTreeSet::new();
    let mut answers = BTreeSet::new();
    let mut counted = BTreeSet::new();
    let mut hello_replies = BTreeSet::new();
    let mut refills = BTreeSet::new();
    let mut error_frame_with_id_0 = false;
    for v in &vectors {
        match &v.message {
            Message::Request(RequestFrame { request, .. }) => {
                let name = request_variant(request);
                // The match's name is the variant's own: its index in serde's list is its first encoded byte.
                let index = variant_names::<Request>().iter().position(|n| *n == name).expect("a Request variant");
                assert_eq!(codec::encode(request).unwrap()[0] as usize, index, "{}", v.name);
                requests.insert(name);
                if let Request::Edit { changes, .. } = request {
                    refills.insert(match changes.refill {
                        None => "None",
                        Some(None) => "Some(None)",
                        Some(Some(_)) => "Some(Some)",
                    });
                }
            }
            Message::Reply(ReplyFrame { id, reply }) => {
                let name = reply_variant(reply);
                let index = variant_names::<Reply>().iter().position(|n| *n == name).expect("a Reply variant");
                assert_eq!(codec::encode(reply).unwrap()[0] as usize, index, "{}", v.name);
                replies.insert(name);
                match reply {
                    Reply::Error(error) => {
                        errors.insert(error.code.as_str());
                        error_frame_with_id_0 |= *id == 0;
                    }
                    Reply::Verify(answer) => {
                        answers.insert(answer.code);
                    }
                    Reply::Usage(usage) => counted.extend(usage.totals.keys().copied()),
                    _ => {}
                }
            }
            Message::HelloReply(reply) => {
                hello_replies.insert(match reply {
                    HelloReply::Accepted { .. } => "Accepted",
                    HelloReply::Rejected(_) => "Rejected",
                });
            }
            Message::Hello(_) | Message::VerifiedKey(_) => {}
        }
    }
    assert_eq!(requests, variant_names::<Request>().iter().copied().collect(), "Request variants without a vector");
    assert_eq!(replies, variant_names::<Reply>().iter().copied().collect(), "Reply variants without a vector");
    assert_eq!(hello_replies, variant_names::<HelloReply>().iter().copied().collect());
    let all_errors: BTreeSet<&str> = (0..variant_names::<ErrorCode>().len())
        .map(|i| codec::decode::<ErrorCode>(&[i as u8]).unwrap().as_str())
        .collect();
    assert_eq!(errors, all_errors, "error codes without an error reply vector");
    let answered: BTreeSet<VerifyCode> = VerifyCode::ALL.into_iter().filter(|c| *c != VerifyCode::Busy).collect();
    assert_eq!(answers, answered, "verify codes without a verify answer vector");
    assert_eq!(counted, VerifyCode::ALL.into_iter().collect(), "usage totals should name every code");
    assert_eq!(VerifyCode::ALL.len(), variant_names::<VerifyCode>().len(), "VerifyCode::ALL is incomplete");
    assert!(error_frame_with_id_0, "no error frame with id 0");
    assert_eq!(refills.len(), 3, "Option<Option<Refill>> in all three states: {refills:?}");
    // Every Verify answer's key is one of the VerifiedKey vectors, so a client can check the blob alone.
    let keys: BTreeSet<Vec<u8>> =
        vectors.iter().filter(|v| matches!(v.message, Message::VerifiedKey(_))).map(|v| v.message.encode()).collect();
    for v in &vectors {
        if let Message::Reply(ReplyFrame { reply: Reply::Verify(VerifyAnswer { key: Some(key), .. }), .. }) = &v.message
        {
            assert!(keys.contains(&codec::encode(&**key).unwrap()), "{}: its key has no VerifiedKey vector", v.name);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// The encoding rules PROTOCOL.md states, checked against the codec itself.

fn bytes<T: Serialize>(value: &T) -> String {
    hex(&codec::encode(value).unwrap())
}

#[test]
fn the_encoding_rules_in_protocol_md_hold() {
    // Unsigned varints: up to 250 one byte; then 251 + u16, 252 + u32, 253 + u64, little-endian.
    assert_eq!(bytes(&0u64), "00");
    assert_eq!(bytes(&250u64), "fa");
    assert_eq!(bytes(&251u64), "fbfb00");
    assert_eq!(bytes(&300u16), "fb2c01");
    assert_eq!(bytes(&65_535u32), "fbffff");
    assert_eq!(bytes(&65_536u32), "fc00000100");
    assert_eq!(bytes(&(1u64 << 32)), "fd0000000001000000");
    assert_eq!(bytes(&u64::MAX), "fdffffffffffffffff");
    // The shortest form is chosen whatever the type's width: a u64 of 5 is one byte.
    assert_eq!(bytes(&5u64), bytes(&5u16));
    // Decoders accept a longer form than needed (never send one), but not a wider marker than the type.
    assert_eq!(codec::decode::<u64>(&[251, 5, 0]).unwrap(), 5);
    assert!(codec::decode::<u16>(&[252, 0, 0, 1, 0]).is_err());
    assert!(codec::decode::<u64>(&[255]).is_err());
    assert!(codec::decode::<u64>(&[254, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());

    // Signed integers: zig-zag (0, -1, 1, -2, 2 … → 0, 1, 2, 3, 4 …), then the unsigned varint.
    assert_eq!(bytes(&0i64), "00");
    assert_eq!(bytes(&-1i64), "01");
    assert_eq!(bytes(&1i64), "02");
    assert_eq!(bytes(&-2i64), "03");
    assert_eq!(bytes(&125i64), "fa");
    assert_eq!(bytes(&-126i64), "fbfb00");
    assert_eq!(bytes(&T0), bytes(&(T0 as u64 * 2)));
    assert_eq!(bytes(&i64::MIN), "fdffffffffffffffff");
    assert_eq!(bytes(&-1i32), "01");

    // u8 is a raw byte, never a varint (Refill::Monthly's day), and so is bool.
    assert_eq!(bytes(&Refill::Monthly { amount: 0, day: 31 }), "01001f");
    assert_eq!(bytes(&Refill::Monthly { amount: 0, day: 251 }), "0100fb");
    assert_eq!(bytes(&true), "01");
    assert_eq!(bytes(&false), "00");
    assert!(codec::decode::<bool>(&[2]).is_err());

    // f64: 8 bytes, IEEE 754, little-endian. The last latency bucket's bound is +∞.
    assert_eq!(bytes(&1.0f64), "000000000000f03f");
    assert_eq!(bytes(&0.5f64), "000000000000e03f");
    assert_eq!(bytes(&f64::INFINITY), "000000000000f07f");
    assert_eq!(bytes(&(f64::INFINITY, 7u64)), "000000000000f07f07");

    // Strings: a varint byte length, then UTF-8. A Secret is a string. Byte strings: a length, then bytes.
    assert_eq!(bytes(&""), "00");
    assert_eq!(bytes(&"é"), "02c3a9");
    assert_eq!(bytes(&Secret::new("kw")), "026b77");
    assert!(codec::decode::<String>(&[1, 0xff]).is_err(), "invalid UTF-8 is refused");
    let key = codec::encode(&verified_key()).unwrap();
    let blob = answer_key::wire_form(&verified_key()).unwrap();
    assert_eq!(blob[0] as usize, key.len());
    assert_eq!(blob[1..], key[..]);

    // Option: a tag byte 0 or 1, then the value. Option<Option<T>>: two tags.
    assert_eq!(bytes(&None::<u32>), "00");
    assert_eq!(bytes(&Some(5u32)), "0105");
    assert_eq!(bytes(&None::<Option<u64>>), "00");
    assert_eq!(bytes(&Some(None::<u64>)), "0100");
    assert_eq!(bytes(&Some(Some(7u64))), "010107");
    assert!(codec::decode::<Option<u8>>(&[2]).is_err());

    // Sequences and maps: a varint count, then the items (a map's in key order: entries sorted by key).
    assert_eq!(bytes(&Vec::<String>::new()), "00");
    assert_eq!(bytes(&strings(&["a", "bc"])), "020161026263");
    assert_eq!(bytes(&map(&[("b", "1"), ("a", "2")])), "020161013201620131");
    // Decoders take the entries in any order, and of a key given twice the last value.
    let unordered: BTreeMap<String, String> = codec::decode(&unhex("020162013101610132")).unwrap();
    assert_eq!(unordered, map(&[("a", "2"), ("b", "1")]));
    let repeated: BTreeMap<String, String> = codec::decode(&unhex("020161013101610132")).unwrap();
    assert_eq!(repeated, map(&[("a", "2")]));
    // A map keyed by an enum writes the key as the variant's index (VerifyCode: Valid 0, Busy 12).
    assert_eq!(bytes(&BTreeMap::from([(VerifyCode::Busy, 2u64), (VerifyCode::Valid, 1)])), "0200010c02");
    // A map keyed by u16 (HttpFigures.answers) writes its keys as varints, in numeric order.
    assert_eq!(bytes(&BTreeMap::from([(401u16, 3u64), (200, 12)])), "02c80cfb910103");

    // Enums: the variant index as a varint u32, then the payload; a unit variant is the index alone.
    assert_eq!(bytes(&Request::Stats), "13");
    assert_eq!(bytes(&ExpirySpec::Days(90)), "015a");
    assert_eq!(bytes(&ExpirySpec::At(-1)), "0301");
    assert_eq!(bytes(&RatePolicy::Plan("free".into())), "000466726565");
    assert_eq!(bytes(&CreditChange::Add(1)), "0101");
    assert!(codec::decode::<Role>(&[2]).is_err(), "an unknown variant index is refused");
    // Structs and tuples: the fields one after another, nothing between; Box and Arc add nothing.
    assert_eq!(bytes(&Rate { count: 100, period: Period::Minute }), "6401");
    assert_eq!(bytes(&(1u8, 2u16)), "0102");
    assert!(bytes(&Reply::Stats(Box::default())).starts_with("0a"));

    // Handshake bytes that never change, and the frame header: 4 bytes, big-endian, payload only.
    assert_eq!(bytes(&Hello { version: 2 }), "02");
    assert_eq!(bytes(&HelloReply::Accepted { version: 2 }), "0002");
    let mut framed = Vec::new();
    frame::put_frame(&mut framed, &codec::encode(&Hello { version: 2 }).unwrap());
    assert_eq!(hex(&framed), "0000000102");
    // Trailing bytes after a message are an error.
    assert!(codec::decode_request::<Hello>(&[2, 0]).is_err());
    // Every field is sent: a CreateRequest cut short does not decode (no defaults on the wire).
    let create = codec::encode(&CreateRequest::new("acme", "CI deploy", strings(&["read:tables"]))).unwrap();
    assert!(codec::decode_request::<CreateRequest>(&create[..create.len() - 1]).is_err());
}

// ---------------------------------------------------------------------------------------------------------
// PROTOCOL.md's tables against the types.

/// A type's shape as serde's derive describes it to a deserializer: a struct's field names, or an enum's
/// variants with their payloads, in declaration (= wire) order.
#[derive(Debug, PartialEq)]
enum Shape {
    Struct(&'static [&'static str]),
    Enum(Vec<(&'static str, Payload)>),
}

#[derive(Clone, Debug, PartialEq)]
enum Payload {
    Unit,
    Newtype,
    Tuple(usize),
    Struct(&'static [&'static str]),
}

/// What a [`Probe`] was asked for.
#[derive(Debug, Default)]
struct Seen {
    fields: Option<&'static [&'static str]>,
    variants: Option<&'static [&'static str]>,
    payload: Option<Payload>,
}

/// A deserializer that holds no data: it notes what the type asks for, then fails.
struct Probe<'a> {
    /// For an enum, which variant to pick (to learn its payload).
    variant: u32,
    seen: &'a mut Seen,
}

type ProbeError = serde::de::value::Error;

fn probe_error() -> ProbeError {
    serde::de::Error::custom("probed")
}

impl<'de> serde::Deserializer<'de> for Probe<'_> {
    type Error = ProbeError;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, ProbeError> {
        Err(probe_error())
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, ProbeError> {
        self.seen.fields = Some(fields);
        Err(probe_error())
    }

    fn deserialize_enum<V: serde::de::Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        self.seen.variants = Some(variants);
        visitor.visit_enum(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map identifier ignored_any
    }
}

impl<'de> serde::de::EnumAccess<'de> for Probe<'_> {
    type Error = ProbeError;
    type Variant = Self;

    fn variant_seed<S: serde::de::DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Self), ProbeError> {
        use serde::de::IntoDeserializer;
        let index: serde::de::value::U32Deserializer<ProbeError> = self.variant.into_deserializer();
        Ok((seed.deserialize(index)?, self))
    }
}

impl<'de> serde::de::VariantAccess<'de> for Probe<'_> {
    type Error = ProbeError;

    fn unit_variant(self) -> Result<(), ProbeError> {
        self.note(Payload::Unit);
        Err(probe_error())
    }

    fn newtype_variant_seed<S: serde::de::DeserializeSeed<'de>>(self, _: S) -> Result<S::Value, ProbeError> {
        self.note(Payload::Newtype);
        Err(probe_error())
    }

    fn tuple_variant<V: serde::de::Visitor<'de>>(self, len: usize, _: V) -> Result<V::Value, ProbeError> {
        self.note(Payload::Tuple(len));
        Err(probe_error())
    }

    fn struct_variant<V: serde::de::Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, ProbeError> {
        self.note(Payload::Struct(fields));
        Err(probe_error())
    }
}

impl Probe<'_> {
    fn note(self, payload: Payload) {
        self.seen.payload = Some(payload);
    }
}

fn shape<T: DeserializeOwned>() -> Shape {
    let mut seen = Seen::default();
    let _ = T::deserialize(Probe { variant: 0, seen: &mut seen });
    match seen {
        Seen { fields: Some(fields), variants: None, .. } => Shape::Struct(fields),
        Seen { fields: None, variants: Some(variants), .. } => Shape::Enum(
            (0..variants.len() as u32)
                .map(|variant| {
                    let mut seen = Seen::default();
                    let _ = T::deserialize(Probe { variant, seen: &mut seen });
                    (variants[variant as usize], seen.payload.expect("a variant's payload"))
                })
                .collect(),
        ),
        other => panic!("not a struct or an enum: {other:?}"),
    }
}

fn variant_names<T: DeserializeOwned>() -> Vec<&'static str> {
    match shape::<T>() {
        Shape::Enum(variants) => variants.into_iter().map(|(name, _)| name).collect(),
        Shape::Struct(_) => panic!("not an enum"),
    }
}

/// The first three cells of each row of the table under the heading "#### `name`".
fn table(doc: &str, name: &str) -> Vec<[String; 3]> {
    let heading = format!("#### `{name}`");
    let mut lines = doc.lines().skip_while(|line| line.trim_end() != heading);
    assert!(lines.next().is_some(), "PROTOCOL.md has no section {heading:?}");
    lines
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2)
        .map(|line| {
            let cells: Vec<String> = line.trim_matches('|').split(" | ").map(|c| c.trim().to_owned()).collect();
            assert!(cells.len() >= 3, "{name}: a row of fewer than three cells: {line}");
            [cells[0].clone(), cells[1].clone(), cells[2].clone()]
        })
        .collect()
}

fn unquote(cell: &str) -> &str {
    cell.trim_matches('`')
}

/// The field names of a struct variant's payload cell, written `` `{ id: string, grace_seconds: u64 }` ``.
fn payload_fields(cell: &str) -> Vec<String> {
    let inner = cell.trim_matches('`').trim_start_matches('{').trim_end_matches('}');
    inner.split(", ").map(|field| field.split(':').next().unwrap().trim().to_owned()).collect()
}

fn check<T: DeserializeOwned>(doc: &str, name: &str) {
    let rows = table(doc, name);
    match shape::<T>() {
        Shape::Struct(fields) => {
            let documented: Vec<(String, &str)> = rows.iter().map(|r| (r[0].clone(), unquote(&r[1]))).collect();
            let expected: Vec<(String, &str)> =
                fields.iter().enumerate().map(|(n, f)| ((n + 1).to_string(), *f)).collect();
            assert_eq!(documented, expected, "PROTOCOL.md's fields of {name} (position, name) are not the struct's");
        }
        Shape::Enum(variants) => {
            assert_eq!(rows.len(), variants.len(), "PROTOCOL.md's variants of {name}");
            for (index, (row, (variant, payload))) in rows.iter().zip(&variants).enumerate() {
                assert_eq!((row[0].as_str(), unquote(&row[1])), (index.to_string().as_str(), *variant), "{name}");
                let cell = row[2].as_str();
                match payload {
                    Payload::Unit => {}
                    Payload::Newtype | Payload::Tuple(_) => {
                        assert!(cell.starts_with('`') && !cell.starts_with("`{"), "{name}::{variant}: payload {cell}")
                    }
                    Payload::Struct(fields) => {
                        assert_eq!(payload_fields(cell), fields.to_vec(), "{name}::{variant}: payload fields")
                    }
                }
            }
        }
    }
}

#[test]
fn protocol_md_tables_match_the_types() {
    let doc = std::fs::read_to_string(PROTOCOL_DOC).unwrap_or_else(|e| panic!("cannot read {PROTOCOL_DOC}: {e}"));
    check::<Hello>(&doc, "Hello");
    check::<HelloReply>(&doc, "HelloReply");
    check::<RequestFrame>(&doc, "RequestFrame");
    check::<ReplyFrame>(&doc, "ReplyFrame");
    check::<Request>(&doc, "Request");
    check::<Reply>(&doc, "Reply");
    check::<ErrorReply>(&doc, "ErrorReply");
    check::<VerifyRequest>(&doc, "VerifyRequest");
    check::<VerifyAnswer>(&doc, "VerifyAnswer");
    check::<VerifiedKey>(&doc, "VerifiedKey");
    check::<RateLimitStatus>(&doc, "RateLimitStatus");
    check::<CreateRequest>(&doc, "CreateRequest");
    check::<CreatedKey>(&doc, "CreatedKey");
    check::<ImportRequest>(&doc, "ImportRequest");
    check::<KeyChanges>(&doc, "KeyChanges");
    check::<ListRequest>(&doc, "ListRequest");
    check::<KeyPage>(&doc, "KeyPage");
    check::<KeyView>(&doc, "KeyView");
    check::<Limits>(&doc, "Limits");
    check::<Rate>(&doc, "Rate");
    check::<AccountView>(&doc, "AccountView");
    check::<AuditQuery>(&doc, "AuditQuery");
    check::<AuditEntry>(&doc, "AuditEntry");
    check::<FieldChange>(&doc, "FieldChange");
    check::<Actor>(&doc, "Actor");
    check::<UsageReport>(&doc, "UsageReport");
    check::<UsageBucket>(&doc, "UsageBucket");
    check::<KeyUsage>(&doc, "KeyUsage");
    check::<StatsReport>(&doc, "StatsReport");
    check::<LatencySummary>(&doc, "LatencySummary");
    check::<FleetFigures>(&doc, "FleetFigures");
    check::<HttpFigures>(&doc, "HttpFigures");
    check::<FleetReport>(&doc, "FleetReport");
    check::<NodeReport>(&doc, "NodeReport");
    check::<ExpirySpec>(&doc, "ExpirySpec");
    check::<RatePolicy>(&doc, "RatePolicy");
    check::<Refill>(&doc, "Refill");
    check::<CreditChange>(&doc, "CreditChange");
    check::<Period>(&doc, "Period");
    check::<Role>(&doc, "Role");
    check::<Environment>(&doc, "Environment");
    check::<KeyStatus>(&doc, "KeyStatus");
    check::<KeyOrigin>(&doc, "KeyOrigin");
    check::<AuditAction>(&doc, "AuditAction");
    check::<VerifyCode>(&doc, "VerifyCode");
    check::<ErrorCode>(&doc, "ErrorCode");
    // The stable names beside the indexes.
    for (index, row) in table(&doc, "VerifyCode").iter().enumerate() {
        assert_eq!(unquote(&row[2]), VerifyCode::ALL[index].as_str(), "VerifyCode {index}");
    }
    for (index, row) in table(&doc, "ErrorCode").iter().enumerate() {
        let code: ErrorCode = codec::decode(&[index as u8]).unwrap();
        assert_eq!(unquote(&row[2]), code.as_str(), "ErrorCode {index}");
    }
    assert!(doc.contains(&format!("`PROTOCOL_VERSION` = {PROTOCOL_VERSION}")), "PROTOCOL.md names another version");
    // The worked examples quote their vectors' bytes.
    let rendered: BTreeMap<String, String> =
        vectors().into_iter().map(|v| (v.name.clone(), hex(&v.message.encode()))).collect();
    for name in ["request.verify.minimal", "reply.verify.not_found", "reply.error.bad_frame_id_0"] {
        let quoted = format!("`{name}`: `{}`", rendered[name]);
        assert!(doc.contains(&quoted), "PROTOCOL.md should quote {quoted}");
    }
    // The token it takes apart is well formed, and is the vectors' token.
    assert!(doc.contains(token().expose()) && Token::parse(token().expose()).is_ok());
}
