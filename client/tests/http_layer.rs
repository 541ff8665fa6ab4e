//! The HTTP layer (`keyward_client::http`) against the fake daemon in `support`: what the handler sees,
//! what the verify asks, which requests never reach the daemon, every answer's status, headers and body,
//! timeouts and refusals failing closed (or open), and the layer on a plain tower service without axum.

mod support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::OriginalUri;
use axum::http::{HeaderMap, Request, Response, StatusCode, Uri};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use keyward_client::http::{KeywardLayer, OnUnavailable, Unverified, VerifiedKey, WorkspaceFrom};
use keyward_client::{Client, ErrorCode, ErrorReply, Reply, Request as KeywardRequest, VerifyAnswer, VerifyCode};
use keyward_protocol::RateLimitStatus;
use serde_json::{json, Value};
use support::{canned, good_token, recording, valid_in, Action, FakeDaemon, Received};
use tower::{Layer, ServiceExt};

/// What the inner handler saw of a request.
#[derive(Clone, Debug, Default)]
struct Seen {
    headers: HeaderMap,
    uri: Option<Uri>,
    original_uri: Option<Uri>,
    key: Option<VerifiedKey>,
    unverified: bool,
}

type SeenLog = Arc<Mutex<Vec<Seen>>>;

/// A router whose handlers record what they saw; `GET|POST /v1/tables/{id}/rows` behind `layer`.
fn recording_router(layer: KeywardLayer) -> (Router, SeenLog) {
    let seen = SeenLog::default();
    let log = Arc::clone(&seen);
    let handler = move |request: Request<Body>| {
        let log = Arc::clone(&log);
        async move {
            let extensions = request.extensions();
            log.lock().unwrap().push(Seen {
                headers: request.headers().clone(),
                uri: Some(request.uri().clone()),
                original_uri: extensions.get::<OriginalUri>().map(|original| original.0.clone()),
                key: extensions.get::<VerifiedKey>().cloned(),
                unverified: extensions.get::<Unverified>().is_some(),
            });
            "ok"
        }
    };
    let router = Router::new().route("/v1/tables/{id}/rows", get(handler.clone()).post(handler)).route_layer(layer);
    (router, seen)
}

fn client(daemon: &FakeDaemon) -> Client {
    Client::builder(daemon.socket()).request_timeout(Duration::from_millis(500)).build()
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    fn header(&self, name: &str) -> &str {
        self.headers.get(name).unwrap_or_else(|| panic!("no {name} header")).to_str().unwrap()
    }
}

async fn send(router: &Router, request: Request<Body>) -> Answer {
    let response = router.clone().oneshot(request).await.expect("infallible");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("a body").to_bytes();
    Answer { status: parts.status, headers: parts.headers, body: String::from_utf8(body.to_vec()).unwrap() }
}

fn get_with(uri: &str, authorization: &[&str]) -> Request<Body> {
    let mut builder = Request::get(uri);
    for value in authorization {
        builder = builder.header("authorization", *value);
    }
    builder.body(Body::empty()).unwrap()
}

fn bearer() -> String {
    format!("Bearer {}", good_token().expose())
}

fn verifies(received: &Received) -> Vec<keyward_client::VerifyRequest> {
    received
        .lock()
        .unwrap()
        .iter()
        .filter_map(|request| match request {
            KeywardRequest::Verify(verify) => Some(verify.clone()),
            _ => None,
        })
        .collect()
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

#[tokio::test]
async fn the_handler_gets_the_key_and_never_the_token() {
    let daemon = FakeDaemon::start(canned);
    let layer = KeywardLayer::new(client(&daemon)).allow_query_parameter(true);
    let (router, seen) = recording_router(layer);

    let request = Request::get("/v1/tables/t1/rows?limit=5")
        .header("authorization", bearer())
        .header("x-request-id", "abc")
        .body(Body::empty())
        .unwrap();
    let answer = send(&router, request).await;
    assert_eq!((answer.status, answer.body.as_str()), (StatusCode::OK, "ok"));
    let token = good_token().expose().to_owned();
    let query = format!("/v1/tables/t1/rows?limit=5&api_key={token}&sort=id");
    assert_eq!(send(&router, get_with(&query, &[])).await.status, StatusCode::OK);

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    for (index, request) in seen.iter().enumerate() {
        assert!(request.headers.get("authorization").is_none(), "request {index}: {:?}", request.headers);
        let key = request.key.as_ref().expect("the verified key");
        assert_eq!((key.id.as_str(), key.workspace.as_str()), ("AbCdEf012345", "acme"));
        assert!(!request.unverified);
        for uri in [&request.uri, &request.original_uri] {
            let uri = uri.as_ref().expect("a URI").to_string();
            assert!(!uri.contains(&token) && !uri.contains("api_key"), "request {index}: {uri}");
        }
    }
    assert_eq!(seen[0].headers["x-request-id"], "abc", "other headers pass through");
    assert_eq!(seen[1].uri.as_ref().unwrap().to_string(), "/v1/tables/t1/rows?limit=5&sort=id");
    assert_eq!(seen[1].original_uri.as_ref().unwrap().to_string(), "/v1/tables/t1/rows?limit=5&sort=id");
}

#[tokio::test]
async fn the_verify_carries_the_routes_requirements() {
    let (received, handler) = recording(canned);
    let daemon = FakeDaemon::start(handler);
    let layer = KeywardLayer::new(client(&daemon))
        .resource("tables")
        .workspace_from(WorkspaceFrom::path_param("workspace"))
        .limits(["exports"])
        .cost(3);
    let router = Router::new()
        .route("/v1/{workspace}/tables", get(|| async { "read" }).post(|| async { "wrote" }))
        .route_layer(layer);
    let post = Request::post("/v1/acme/tables").header("authorization", bearer()).body(Body::empty()).unwrap();
    assert_eq!(send(&router, post).await.body, "wrote");
    assert_eq!(send(&router, get_with("/v1/acme/tables", &[&bearer()])).await.body, "read");
    let other = send(&router, get_with("/v1/other/tables", &[&bearer()])).await;
    assert_eq!(other.status, StatusCode::FORBIDDEN);
    assert_eq!(other.json()["error"]["code"], "wrong_workspace");
    assert!(other.json()["error"]["message"].as_str().unwrap().contains("workspace other"), "{}", other.body);

    let verifies = verifies(&received);
    assert_eq!(verifies.len(), 3);
    assert_eq!(verifies[0].scope.as_deref(), Some("write:tables"));
    assert_eq!(verifies[1].scope.as_deref(), Some("read:tables"));
    for verify in &verifies {
        assert_eq!((verify.cost, verify.limits.as_slice()), (3, &["exports".to_string()][..]));
    }
    assert_eq!(verifies[0].workspace.as_deref(), Some("acme"));
    assert_eq!(verifies[2].workspace.as_deref(), Some("other"));
}

#[tokio::test]
async fn malformed_requests_never_reach_the_daemon() {
    let (received, handler) = recording(canned);
    let daemon = FakeDaemon::start(handler);
    let (router, seen) = recording_router(KeywardLayer::new(client(&daemon)));
    let token = good_token().expose().to_owned();
    let both = get_with(&format!("/v1/tables/t1/rows?api_key={token}"), &[&bearer()]);
    let cases = [
        (get_with("/v1/tables/t1/rows", &[]), "Missing Authorization header", "Bearer"),
        (get_with("/v1/tables/t1/rows", &[&bearer(), &bearer()]), "one Authorization header", "invalid_token"),
        (both, "not both", "invalid_token"),
        (get_with(&format!("/v1/tables/t1/rows?api_key={token}"), &[]), "not accepted in the api_key", "invalid_token"),
        (get_with("/v1/tables/t1/rows", &[&format!("Basic {token}")]), "Bearer scheme", "invalid_token"),
        (get_with("/v1/tables/t1/rows", &["Bearer   "]), "empty", "invalid_token"),
    ];
    for (request, says, challenge) in cases {
        let answer = send(&router, request).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{says}: {}", answer.body);
        let error = &answer.json()["error"];
        assert_eq!((&error["code"], &error["type"]), (&json!("invalid_api_key"), &json!("authentication_error")));
        assert!(error["message"].as_str().unwrap().contains(says), "{says}: {}", answer.body);
        assert!(answer.header("www-authenticate").contains(challenge), "{says}");
        assert!(!answer.body.contains(&token), "{says}: the token is never echoed");
    }
    assert!(verifies(&received).is_empty(), "no verify was sent");
    assert!(seen.lock().unwrap().is_empty(), "no request reached the handler");
}

/// Answers each token by its text: `code:NAME` gets that code, with one rate limit and a retry time.
fn by_token(connection: usize, request: &KeywardRequest) -> Action {
    let KeywardRequest::Verify(verify) = request else { return canned(connection, request) };
    let Some(name) = verify.token.expose().strip_prefix("code:") else { return canned(connection, request) };
    let code = VerifyCode::from_name(name).expect("a code name");
    let limit = RateLimitStatus {
        policy: "free".into(),
        limit: 100,
        remaining: 0,
        reset_at_ms: now_ms() + 29_500,
        window_seconds: 60,
    };
    let answer = VerifyAnswer {
        code,
        retry_after_ms: (code == VerifyCode::RateLimited).then_some(1_200),
        ratelimit: vec![limit],
        ..valid_in("acme")
    };
    Action::Answer(Reply::Verify(answer))
}

#[tokio::test]
async fn every_answer_has_its_status_headers_and_body() {
    let daemon = FakeDaemon::start(by_token);
    let router = Router::new()
        .route("/v1/forms/{id}/submissions", get(|key: VerifiedKey| async move { Json(json!({ "id": key.id })) }))
        .route_layer(KeywardLayer::new(client(&daemon)).scope("read:forms"));
    let cases = [
        ("MALFORMED", StatusCode::UNAUTHORIZED, "invalid_api_key", "authentication_error", "not just its id"),
        ("NOT_FOUND", StatusCode::UNAUTHORIZED, "invalid_api_key", "authentication_error", "is invalid"),
        ("EXPIRED", StatusCode::UNAUTHORIZED, "invalid_api_key", "authentication_error", "expired"),
        ("REVOKED", StatusCode::UNAUTHORIZED, "invalid_api_key", "authentication_error", "revoked"),
        ("INACTIVE", StatusCode::UNAUTHORIZED, "invalid_api_key", "authentication_error", "deactivated"),
        ("LEGACY_SUNSET", StatusCode::UNAUTHORIZED, "invalid_api_key", "authentication_error", "Legacy personal"),
        ("INSUFFICIENT_SCOPE", StatusCode::FORBIDDEN, "insufficient_scope", "permission_error", "read:forms scope"),
        ("WRONG_WORKSPACE", StatusCode::FORBIDDEN, "wrong_workspace", "permission_error", "another"),
        ("RATE_LIMITED", StatusCode::TOO_MANY_REQUESTS, "rate_limited", "rate_limit_error", "retry after 2 seconds"),
        ("USAGE_EXCEEDED", StatusCode::TOO_MANY_REQUESTS, "usage_exceeded", "rate_limit_error", "credits"),
    ];
    for (code, status, error_code, kind, says) in cases {
        let token = format!("code:{code}");
        let answer = send(&router, get_with("/v1/forms/f1/submissions", &[&format!("Bearer {token}")])).await;
        assert_eq!(answer.status, status, "{code}: {}", answer.body);
        let error = &answer.json()["error"];
        assert_eq!(error.as_object().unwrap().len(), 3, "{code}: code, message and type only");
        assert_eq!((&error["code"], &error["type"]), (&json!(error_code), &json!(kind)), "{code}");
        assert!(error["message"].as_str().unwrap().contains(says), "{code}: {}", answer.body);
        assert!(!answer.body.contains(&token), "{code}");
        assert_eq!(answer.header("content-type"), "application/json");
        assert_eq!(answer.header("ratelimit-remaining"), "0", "{code}: every answer with limits has them");
        assert_eq!(answer.header("ratelimit-policy"), r#""free";q=100;w=60"#);
        assert!(answer.header("ratelimit").starts_with(r#""free";r=0;t="#), "{code}");
        let reset: u64 = answer.header("ratelimit-reset").parse().unwrap();
        assert!((29..=30).contains(&reset), "{code}: {reset}");
        match status {
            StatusCode::UNAUTHORIZED => {
                assert_eq!(answer.header("www-authenticate"), r#"Bearer error="invalid_token""#)
            }
            _ if code == "INSUFFICIENT_SCOPE" => {
                assert_eq!(
                    answer.header("www-authenticate"),
                    r#"Bearer error="insufficient_scope", scope="read:forms""#
                )
            }
            _ => assert!(answer.headers.get("www-authenticate").is_none(), "{code}"),
        }
        let retry_after = answer.headers.get("retry-after").map(|value| value.to_str().unwrap());
        assert_eq!(retry_after, (code == "RATE_LIMITED").then_some("2"), "{code}: 1.2 s rounds up to 2");
    }
    let valid = send(&router, get_with("/v1/forms/f1/submissions", &["Bearer code:VALID"])).await;
    assert_eq!((valid.status, valid.json()), (StatusCode::OK, json!({"id": "AbCdEf012345"})));
    assert_eq!(valid.header("ratelimit-limit"), "100", "the inner service's 200 carries them too");
}

#[tokio::test]
async fn an_unreachable_or_silent_daemon_fails_closed_by_default() {
    let silent = FakeDaemon::start(|_, request| match request {
        KeywardRequest::Verify(_) => Action::Ignore,
        _ => Action::Answer(Reply::Pong),
    });
    let timeout = Client::builder(silent.socket()).request_timeout(Duration::from_millis(150)).build();
    let gone = Client::builder("/nonexistent/keyward/verify.sock").build();
    for client in [timeout, gone] {
        let (router, seen) = recording_router(KeywardLayer::new(client));
        let answer = send(&router, get_with("/v1/tables/t1/rows", &[&bearer()])).await;
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{}", answer.body);
        assert_eq!(answer.header("retry-after"), "1");
        assert_eq!(
            answer.json(),
            json!({"error": {"code": "auth_unavailable", "message": "API key verification is temporarily unavailable: retry shortly", "type": "api_error"}})
        );
        assert!(seen.lock().unwrap().is_empty());
    }
}

#[tokio::test]
async fn failing_open_lets_requests_through_unverified() {
    let gone = Client::builder("/nonexistent/keyward/verify.sock").build();
    let layer = KeywardLayer::new(gone).on_unavailable(OnUnavailable::FailOpen);
    let (router, seen) = recording_router(layer.clone());
    let answer = send(&router, get_with("/v1/tables/t1/rows", &[&bearer()])).await;
    assert_eq!((answer.status, answer.body.as_str()), (StatusCode::OK, "ok"));
    let seen = seen.lock().unwrap()[0].clone();
    assert!(seen.unverified && seen.key.is_none());
    assert!(seen.headers.get("authorization").is_none(), "stripped even when failing open");

    // A handler that requires the key answers as the layer would have, fail-closed.
    let strict = Router::new().route("/v1/forms", get(|_key: VerifiedKey| async { "never" })).route_layer(layer);
    let answer = send(&strict, get_with("/v1/forms", &[&bearer()])).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.json()["error"]["code"], "auth_unavailable");

    // A handler without a layer in front is the program's mistake, not the caller's.
    let unprotected = Router::new().route("/v1/forms", get(|_key: VerifiedKey| async { "never" }));
    let answer = send(&unprotected, get_with("/v1/forms", &[])).await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(answer.json()["error"]["code"], "internal_error");
}

#[tokio::test]
async fn busy_may_fail_open_but_a_refused_verify_never_does() {
    let reply_for = |code: ErrorCode| {
        move |_: usize, request: &KeywardRequest| match request {
            KeywardRequest::Verify(_) => Action::Answer(Reply::Error(ErrorReply::new(code, "no"))),
            _ => Action::Answer(Reply::Pong),
        }
    };
    let busy = FakeDaemon::start(reply_for(ErrorCode::Busy));
    let confused = FakeDaemon::start(reply_for(ErrorCode::InvalidArgument));
    for (daemon, fail_open, status) in [
        (&busy, false, StatusCode::SERVICE_UNAVAILABLE),
        (&busy, true, StatusCode::OK),
        (&confused, true, StatusCode::SERVICE_UNAVAILABLE),
    ] {
        let behaviour = if fail_open { OnUnavailable::FailOpen } else { OnUnavailable::FailClosed };
        let (router, _) = recording_router(KeywardLayer::new(client(daemon)).on_unavailable(behaviour));
        let answer = send(&router, get_with("/v1/tables/t1/rows", &[&bearer()])).await;
        assert_eq!(answer.status, status, "fail open {fail_open}: {}", answer.body);
    }
}

#[tokio::test]
async fn a_plain_tower_service_with_any_body_type() {
    // No axum: a request body that is not even an HTTP body type (the layer never reads it), and a
    // response body of hyper's ecosystem.
    let daemon = FakeDaemon::start(canned);
    let inner = tower::service_fn(|request: Request<String>| async move {
        let key = request.extensions().get::<VerifiedKey>().expect("the key").id.clone();
        let seen_authorization = request.headers().contains_key("authorization");
        let text = format!("{key} {} {seen_authorization}", request.into_body());
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
    });
    let service = KeywardLayer::new(client(&daemon)).layer(inner);
    let request = Request::post("/anything").header("authorization", bearer()).body("payload".to_string()).unwrap();
    let response = service.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "AbCdEf012345 payload false");

    let refused = service.oneshot(Request::get("/").body(String::new()).unwrap()).await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let body: Value = serde_json::from_slice(&refused.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key");
}
