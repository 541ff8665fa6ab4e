//! HTTP integration (feature `http`; the axum extractor with feature `axum`): a [`tower_layer::Layer`]
//! that verifies each request's API key with `keywardd` and answers the way the reference documents do,
//! so an app server gets keyward's behaviour without writing it.
//!
//! ```no_run
//! # #[cfg(feature = "axum")]
//! # async fn example() -> std::io::Result<()> {
//! use axum::{routing::get, Json, Router};
//! use keyward_client::http::{KeywardLayer, VerifiedKey};
//! use keyward_client::Client;
//!
//! async fn list_tables(key: VerifiedKey) -> Json<serde_json::Value> {
//!     Json(serde_json::json!({ "workspace": key.workspace, "tables": [] }))
//! }
//!
//! // One client, so one connection pool, per process; the layer holds a cheap clone of it.
//! let client = Client::builder("/run/keyward/verify.sock").build();
//! let app: Router = Router::new()
//!     .route("/v1/tables", get(list_tables))
//!     .route_layer(KeywardLayer::new(client).resource("tables"));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await
//! # }
//! ```
//!
//! # What the layer does with a request
//!
//! 1. It takes the token from `Authorization: Bearer <token>` (scheme in any case, whitespace around it
//!    ignored), or from the `api_key` query parameter where the route
//!    [allows it](KeywardLayer::allow_query_parameter) (off by default: the reference documents call it
//!    "not recommended for production"). Two Authorization headers, a header and the parameter together,
//!    the parameter twice, another scheme or an empty token make the request malformed: `401`, and no
//!    verify is sent.
//! 2. It finds the route's [workspace](KeywardLayer::workspace_from), if the route names one, and the
//!    scope: a fixed [scope](KeywardLayer::scope), or a [resource](KeywardLayer::resource) rule (`GET`,
//!    `HEAD`, `OPTIONS` need `read:R`, every other method `write:R`).
//! 3. It verifies the token with the daemon, with the route's [named limits](KeywardLayer::limits) and
//!    [cost](KeywardLayer::cost), over the process's shared pool of pipelined connections.
//! 4. On `VALID` it calls the inner service with a [`VerifiedKey`] in the request's extensions; otherwise
//!    it answers itself, as the table below says.
//!
//! The token is never logged, never put in a response, and never forwarded: every `Authorization` header
//! and every `api_key` parameter is removed from the request (from axum's `OriginalUri` too) before the
//! inner service is called, whatever the outcome. The body is never read.
//!
//! # Answers
//!
//! Every refusal has a JSON body `{"error":{"code":"…","message":"…","type":"…"}}`, `Content-Type:
//! application/json` and `Cache-Control: no-store`. Messages say what the caller can fix, never hold the
//! token, and never say whether a key id exists (an unknown key and a wrong secret read the same).
//!
//! | verify answer | status | `code` | `type` | headers |
//! |---|---|---|---|---|
//! | `VALID` | the inner service's | | | rate-limit headers |
//! | `MISSING` (no key sent) | 401 | `invalid_api_key` | `authentication_error` | `WWW-Authenticate: Bearer` |
//! | `MALFORMED`, `NOT_FOUND`, `EXPIRED`, `REVOKED`, `INACTIVE`, `LEGACY_SUNSET`, a malformed request | 401 | `invalid_api_key` | `authentication_error` | `WWW-Authenticate: Bearer error="invalid_token"` |
//! | `INSUFFICIENT_SCOPE` | 403 | `insufficient_scope` | `permission_error` | `WWW-Authenticate: Bearer error="insufficient_scope", scope="…"` |
//! | `WRONG_WORKSPACE` (or no workspace in the request) | 403 | `wrong_workspace` | `permission_error` | |
//! | `RATE_LIMITED` | 429 | `rate_limited` | `rate_limit_error` | `Retry-After` (seconds, rounded up), rate-limit headers |
//! | `USAGE_EXCEEDED` | 429 | `usage_exceeded` | `rate_limit_error` | rate-limit headers |
//! | daemon unreachable, timed out, busy | 503 | `auth_unavailable` | `api_error` | `Retry-After: 1` |
//!
//! All 401s share one `code`, `invalid_api_key`, as the reference documents do; the message carries the
//! reason (missing header, malformed key: "use the full key, not just its id", expired, revoked,
//! deactivated, legacy sunset). Only the 401 for a request without any key has a bare challenge, as RFC
//! 6750 §3.1 asks.
//!
//! **Why 429 and not 402 for `USAGE_EXCEEDED`.** A key's credits are a quota that refills (daily or
//! monthly) or that an operator tops up: the caller's remedy is to wait or buy more, which is what 429
//! Too Many Requests tells clients, and what their retry logic already handles. 402 Payment Required is
//! "reserved for future use" (RFC 9110 §15.5.3); many HTTP clients and proxies treat it as an unknown
//! 4xx, and some browsers and SDKs give it no handling at all. The `code` (`usage_exceeded` rather than
//! `rate_limited`) tells the two 429s apart, and no `Retry-After` is sent for it, since the daemon does
//! not say when the refill comes.
//!
//! # Rate-limit headers
//!
//! Every response for a key with limits, the inner service's `200`s included, carries both generations of
//! the IETF draft (the inner service's own headers of these names are replaced):
//!
//! - `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (draft-ietf-httpapi-ratelimit-headers-05
//!   and earlier; what most clients and gateways read today) for the most restrictive limit: the fewest
//!   requests remaining, and of equals the one that resets last.
//! - `RateLimit-Policy: "free";q=100;w=60` and `RateLimit: "free";r=42;t=30`
//!   (draft-ietf-httpapi-ratelimit-headers-10, the same syntax in -11) for every limit the verify checked:
//!   the key's plan (named after it, e.g. `free`) or `custom` rate, and the route's named limits.
//!
//! Resets (`RateLimit-Reset`, `t`) are the whole seconds until the limit is fully available again, rounded
//! up.
//!
//! # When the daemon cannot be asked
//!
//! By default the layer fails closed: `503` with `Retry-After: 1`. A layer set to
//! [`OnUnavailable::FailOpen`] calls the inner service anyway, with [`Unverified`] in the extensions
//! instead of a key. That lets **every request that carries a key** through unauthenticated while the
//! daemon is down or slow (past the [`Client`](crate::Client)'s request timeout), whether the key is
//! revoked, expired or made up (`Bearer x`); only requests without a key, or with a malformed
//! Authorization header, are still refused. An attacker who can slow the daemon down can cause exactly
//! that. Use it only for routes whose anonymous
//! view is harmless, and take `Option<VerifiedKey>` in their handlers. Misconfigurations (a refused
//! verify, a confused reply) always fail closed.
//!
//! # axum, hyper and tonic
//!
//! [`KeywardService`] is generic over the request body (it never reads it) and over the inner service's
//! response body, which it returns inside a [`ResponseBody`]; any `http`-based server can use it. With
//! axum, add the layer with `route_layer`, so that only matched routes are checked and path parameters
//! are available to `WorkspaceFrom::path_param`, and take [`VerifiedKey`] or `Option<VerifiedKey>` as a
//! handler argument (feature `axum`). With hyper, wrap the service with `tower::ServiceBuilder` and serve it
//! through `hyper_util::service::TowerToHyperService`. With tonic, add it with `Server::builder().layer(..)`:
//! refusals are plain HTTP statuses, which gRPC clients map to `UNAUTHENTICATED` (401), `PERMISSION_DENIED`
//! (403) and `UNAVAILABLE` (429, 503), as gRPC's HTTP-to-status mapping says.
//!
//! # Layout
//! - `layer`: [`KeywardLayer`] and its builder: scope or resource rule, [`WorkspaceFrom`], limits, cost,
//!   query parameter, [`OnUnavailable`].
//! - `policy`: what a route asks, as the layer keeps it and the service reads it: the scope rule,
//!   [`WorkspaceFrom`], [`OnUnavailable`], all in one shared policy.
//! - `service`: [`KeywardService`], one request from token to response.
//! - `credentials`: finding the token in the header or query, and taking it out of the request.
//! - `refusal`: every answer the layer gives itself, and the one place it becomes a response.
//! - `ratelimit`: the rate-limit headers.
//! - `key`: [`VerifiedKey`] and [`Unverified`], what the inner service finds in the extensions.
//! - `body`: [`ResponseBody`].
//! - `extract`: the axum extractors and `VerifiedKeyRejection` (feature `axum`).

mod body;
mod credentials;
#[cfg(feature = "axum")]
mod extract;
mod key;
mod layer;
mod policy;
mod ratelimit;
mod refusal;
mod service;

pub use body::ResponseBody;
#[cfg(feature = "axum")]
pub use extract::VerifiedKeyRejection;
pub use key::{Unverified, VerifiedKey};
pub use layer::KeywardLayer;
pub use policy::{OnUnavailable, WorkspaceFrom};
pub use service::{KeywardService, ResponseFuture};
