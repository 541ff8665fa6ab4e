//! The HTTP layer end to end: the real `keywardd`, the `tables_api` example server on loopback (the
//! binary `cargo test --workspace` builds into `target/debug/examples`), and a real HTTP client. Every
//! status the layer answers, every header, the JSON bodies, where a token may and may not travel, and a
//! stopped daemon, failing closed and open. One test builds its own router in-process, to look at what the
//! handler receives.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use keyward_client::http::{KeywardLayer, VerifiedKey};
use keyward_client::Client;
use keyward_tests::{bin, Daemon};
use serde_json::{json, Value};

/// One runtime for every HTTP request these tests make (the tests themselves are synchronous, like the
/// daemon harness).
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime")
});

/// The example API, started on a free loopback port against `daemon`'s verify socket.
struct Api {
    child: Child,
    base: String,
}

impl Api {
    fn start(daemon: &Daemon, flags: &[&str]) -> Api {
        let mut child = Command::new(bin("examples/tables_api"))
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--socket")
            .arg(daemon.verify_socket())
            .args(flags)
            .env_remove("KEYWARD_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn tables_api");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read its first line");
        let base = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("printed {line:?}")).to_owned();
        assert!(base.starts_with("http://127.0.0.1:"), "{base}");
        Api { child, base }
    }

    fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        send(Method::GET, &format!("{}{path}", self.base), headers)
    }

    fn call(&self, method: Method, path: &str, headers: &[(&str, &str)]) -> Answer {
        send(method, &format!("{}{path}", self.base), headers)
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response, read whole.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    fn header(&self, name: &str) -> &str {
        match self.headers.get(name) {
            Some(value) => value.to_str().expect("a text header"),
            None => panic!("no {name} header in {self:?}"),
        }
    }

    /// Asserts a refusal: `status`, the exact body shape `{"error":{"code","message","type"}}` with this
    /// code and type, a message containing `says`, and `token` nowhere in the response.
    fn assert_refusal(&self, status: StatusCode, code: &str, kind: &str, says: &str, token: &str) {
        assert_eq!(self.status, status, "{says}: {self:?}");
        let body = self.json();
        let error = body["error"].as_object().unwrap_or_else(|| panic!("no error object: {self:?}"));
        assert_eq!(body.as_object().unwrap().len(), 1, "only `error`: {self:?}");
        assert_eq!(error.len(), 3, "code, message and type: {self:?}");
        assert_eq!((&error["code"], &error["type"]), (&json!(code), &json!(kind)), "{self:?}");
        let message = error["message"].as_str().expect("a message");
        assert!(message.contains(says), "{says:?} not in {message:?}");
        assert_eq!(self.header("content-type"), "application/json");
        self.assert_no_token(token);
    }

    fn assert_no_token(&self, token: &str) {
        if token.is_empty() {
            return;
        }
        assert!(!self.body.contains(token), "the token is in the body: {self:?}");
        for (name, value) in &self.headers {
            assert!(!value.as_bytes().windows(token.len()).any(|w| w == token.as_bytes()), "the token is in {name}");
        }
    }
}

/// One HTTP/1.1 request with `headers` (a name given twice is sent twice), on a fresh connection.
fn send(method: Method, url: &str, headers: &[(&str, &str)]) -> Answer {
    RUNTIME.block_on(async {
        let client = HttpClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let mut request = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(Bytes::new())).expect("a request");
        let response = tokio::time::timeout(Duration::from_secs(30), client.request(request))
            .await
            .expect("an answer within 30 s")
            .expect("an HTTP response");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("the body").to_bytes();
        Answer { status: parts.status, headers: parts.headers, body: String::from_utf8(body.to_vec()).expect("UTF-8") }
    })
}

fn token_of(created: &Value) -> String {
    created["token"].as_str().expect("create --json prints the token").to_owned()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The verifies the daemon has answered since it started.
fn verifies_so_far(daemon: &Daemon) -> u64 {
    daemon.json(&["stats"], 0)["verify_latency"]["count"].as_u64().expect("a count")
}

/// `at` as RFC 3339 UTC, for `--expires`.
fn rfc3339(at: SystemTime) -> String {
    let secs = at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    let output = Command::new("date").args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%SZ"]).output().unwrap();
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[test]
fn a_valid_key_reaches_every_endpoint_its_scopes_allow_with_ratelimit_headers() {
    let daemon = Daemon::start();
    let created = daemon.create("acme", &["write:tables"], &[]);
    let (token, id) = (token_of(&created), created["id"].as_str().unwrap().to_owned());
    let api = Api::start(&daemon, &[]);
    let auth = bearer(&token);
    let calls = [
        (Method::GET, "/v1/tables", StatusCode::OK),
        (Method::GET, "/v1/tables/t1/rows", StatusCode::OK),
        (Method::POST, "/v1/tables/t1/rows", StatusCode::CREATED),
        (Method::PATCH, "/v1/tables/t1/rows/r1", StatusCode::OK),
        (Method::DELETE, "/v1/tables/t1/rows/r1", StatusCode::OK),
    ];
    for (index, (method, path, status)) in calls.into_iter().enumerate() {
        let answer = api.call(method.clone(), path, &[("authorization", &auth)]);
        assert_eq!(answer.status, status, "{method} {path}: {answer:?}");
        let body = answer.json();
        assert_eq!(body["caller"], json!({"key_id": id, "workspace": "acme"}), "{method} {path}");
        answer.assert_no_token(&token);
        // The free plan: 100 per minute, one spent per request.
        let remaining = 99 - index as u64;
        assert_eq!(answer.header("ratelimit-limit"), "100");
        assert_eq!(answer.header("ratelimit-remaining"), remaining.to_string());
        let reset: u64 = answer.header("ratelimit-reset").parse().expect("whole seconds");
        assert!((1..=60).contains(&reset), "{reset}");
        assert_eq!(answer.header("ratelimit-policy"), r#""free";q=100;w=60"#);
        assert_eq!(answer.header("ratelimit"), format!(r#""free";r={remaining};t={reset}"#));
    }
    // The scheme in any case, and whitespace around the value, are accepted.
    let relaxed = api.get("/v1/tables", &[("authorization", &format!("  bearer   {token}  "))]);
    assert_eq!(relaxed.status, StatusCode::OK, "{relaxed:?}");
}

#[test]
fn every_invalid_key_is_a_401_that_says_why() {
    let daemon = Daemon::start();
    let expiring = token_of(&daemon.create(
        "acme",
        &["read:all"],
        &["--expires", &rfc3339(SystemTime::now() + Duration::from_secs(2))],
    ));
    let started = Instant::now();
    let api = Api::start(&daemon, &[]);
    let created = daemon.create("acme", &["read:all"], &[]);
    let (token, id) = (token_of(&created), created["id"].as_str().unwrap().to_owned());

    let missing = api.get("/v1/tables", &[]);
    missing.assert_refusal(
        StatusCode::UNAUTHORIZED,
        "invalid_api_key",
        "authentication_error",
        "Missing Authorization header: send Authorization: Bearer <key>",
        "",
    );
    assert_eq!(missing.header("www-authenticate"), "Bearer", "no error code without credentials (RFC 6750)");

    // A well-formed token (right checksum) whose secret is wrong: NOT_FOUND, which says nothing more.
    let wrong_secret = keyward_protocol::token::Token::assemble(
        keyward_protocol::Environment::Live,
        &keyward_protocol::KeyId::parse(&id).unwrap(),
        &[b'Q'; 32],
    );
    let other = token_of(&daemon.create("acme", &["read:all"], &[]));
    let revoked = daemon.create("acme", &["read:all"], &[]);
    daemon.json(&["revoke", revoked["id"].as_str().unwrap()], 0);
    let inactive = daemon.create("acme", &["read:all"], &[]);
    daemon.json(&["deactivate", inactive["id"].as_str().unwrap()], 0);
    let cases = [
        (id.clone(), "use the full key exactly as it was shown at creation, not just its id"),
        (token[..30].to_owned(), "not just its id"),
        (wrong_secret.expose().to_owned(), "The API key provided is invalid"),
        (token_of(&revoked), "revoked"),
        (token_of(&inactive), "deactivated"),
        (format!("{}{}", &token[..21], &other[21..]), "not just its id"),
    ];
    for (bad, says) in &cases {
        let answer = api.get("/v1/tables", &[("authorization", &bearer(bad))]);
        answer.assert_refusal(StatusCode::UNAUTHORIZED, "invalid_api_key", "authentication_error", says, bad);
        assert_eq!(answer.header("www-authenticate"), r#"Bearer error="invalid_token""#);
        answer.assert_no_token(&token);
    }
    let basic = api.get("/v1/tables", &[("authorization", &format!("Basic {token}"))]);
    basic.assert_refusal(StatusCode::UNAUTHORIZED, "invalid_api_key", "authentication_error", "Bearer scheme", &token);

    // No check that it still passes before its expiry: under load the test may reach that line late. The
    // refusal's message ("expired") is what shows the key was found and its secret right.
    std::thread::sleep(Duration::from_secs(3).saturating_sub(started.elapsed()));
    let expired = api.get("/v1/tables", &[("authorization", &bearer(&expiring))]);
    expired.assert_refusal(StatusCode::UNAUTHORIZED, "invalid_api_key", "authentication_error", "expired", &expiring);
}

#[test]
fn a_key_without_the_scope_is_a_403_naming_it() {
    let daemon = Daemon::start();
    let read_only = token_of(&daemon.create("acme", &["read:tables"], &[]));
    let tables = token_of(&daemon.create("acme", &["write:tables"], &[]));
    let api = Api::start(&daemon, &[]);

    assert_eq!(api.get("/v1/tables/t1/rows", &[("authorization", &bearer(&read_only))]).status, StatusCode::OK);
    let write = api.call(Method::POST, "/v1/tables/t1/rows", &[("authorization", &bearer(&read_only))]);
    write.assert_refusal(
        StatusCode::FORBIDDEN,
        "insufficient_scope",
        "permission_error",
        "This key lacks the write:tables scope",
        &read_only,
    );
    assert_eq!(write.header("www-authenticate"), r#"Bearer error="insufficient_scope", scope="write:tables""#);
    let delete = api.call(Method::DELETE, "/v1/tables/t1/rows/r1", &[("authorization", &bearer(&read_only))]);
    assert_eq!(delete.status, StatusCode::FORBIDDEN);

    let workflow = api.call(Method::POST, "/v1/workflows/w1/trigger", &[("authorization", &bearer(&tables))]);
    workflow.assert_refusal(
        StatusCode::FORBIDDEN,
        "insufficient_scope",
        "permission_error",
        "This key lacks the write:workflows scope",
        &tables,
    );
    let forms = api.get("/v1/forms/f1/submissions", &[("authorization", &bearer(&tables))]);
    forms.assert_refusal(StatusCode::FORBIDDEN, "insufficient_scope", "permission_error", "read:forms", &tables);

    let everything = token_of(&daemon.create("acme", &["write:all"], &[]));
    let accepted = api.call(Method::POST, "/v1/workflows/w1/trigger", &[("authorization", &bearer(&everything))]);
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{accepted:?}");
    assert_eq!(api.get("/v1/forms/f1/submissions", &[("authorization", &bearer(&everything))]).status, StatusCode::OK);
}

#[test]
fn a_rate_limited_key_gets_429_then_succeeds_after_retry_after() {
    let daemon = Daemon::start();
    let token = token_of(&daemon.create("acme", &["read:all"], &["--rate-limit", "1/s"]));
    let api = Api::start(&daemon, &[]);
    let auth = [("authorization", bearer(&token))];
    let auth: Vec<(&str, &str)> = auth.iter().map(|(n, v)| (*n, v.as_str())).collect();

    let first = api.get("/v1/tables", &auth);
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!((first.header("ratelimit-limit"), first.header("ratelimit-remaining")), ("1", "0"));
    assert_eq!(first.header("ratelimit-policy"), r#""custom";q=1;w=1"#);
    let limited = api.get("/v1/tables", &auth);
    limited.assert_refusal(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "rate_limit_error",
        "Rate limit exceeded: retry after 1 second",
        &token,
    );
    assert_eq!(limited.header("retry-after"), "1");
    assert_eq!(limited.header("ratelimit-remaining"), "0");
    assert_eq!(limited.header("ratelimit-reset"), "1");
    assert_eq!(limited.header("ratelimit"), r#""custom";r=0;t=1"#);
    let wait: u64 = limited.header("retry-after").parse().unwrap();
    std::thread::sleep(Duration::from_secs(wait));
    let again = api.get("/v1/tables", &auth);
    assert_eq!(again.status, StatusCode::OK, "allowed after Retry-After: {again:?}");

    let credits = token_of(&daemon.create("acme", &["read:all"], &["--credits", "1"]));
    assert_eq!(api.get("/v1/tables", &[("authorization", &bearer(&credits))]).status, StatusCode::OK);
    let used_up = api.get("/v1/tables", &[("authorization", &bearer(&credits))]);
    used_up.assert_refusal(StatusCode::TOO_MANY_REQUESTS, "usage_exceeded", "rate_limit_error", "credits", &credits);
    assert!(used_up.headers.get("retry-after").is_none(), "a used-up balance has no retry time");
}

#[test]
fn the_query_parameter_only_where_allowed_and_never_with_a_header() {
    let daemon = Daemon::start();
    let token = token_of(&daemon.create("acme", &["read:all"], &[]));
    let strict = Api::start(&daemon, &[]);
    let relaxed = Api::start(&daemon, &["--allow-query-key"]);
    let in_query = format!("/v1/tables?api_key={token}");

    let before = verifies_so_far(&daemon);
    let refused = strict.get(&in_query, &[]);
    refused.assert_refusal(
        StatusCode::UNAUTHORIZED,
        "invalid_api_key",
        "authentication_error",
        "not accepted in the api_key query parameter",
        &token,
    );
    let both = relaxed.get(&in_query, &[("authorization", &bearer(&token))]);
    both.assert_refusal(StatusCode::UNAUTHORIZED, "invalid_api_key", "authentication_error", "not both", &token);
    let two_headers =
        relaxed.get("/v1/tables", &[("authorization", &bearer(&token)), ("authorization", &bearer(&token))]);
    two_headers.assert_refusal(
        StatusCode::UNAUTHORIZED,
        "invalid_api_key",
        "authentication_error",
        "one Authorization header",
        &token,
    );
    assert_eq!(verifies_so_far(&daemon), before, "malformed requests are refused without a verify");

    let accepted = relaxed.get(&format!("{in_query}&page=2"), &[]);
    assert_eq!(accepted.status, StatusCode::OK, "{accepted:?}");
    assert_eq!(accepted.json()["caller"]["workspace"], "acme");
    accepted.assert_no_token(&token);
    assert_eq!(verifies_so_far(&daemon), before + 1);
}

#[test]
fn a_stopped_daemon_is_a_503_or_an_unverified_request_when_failing_open() {
    let mut daemon = Daemon::start();
    let token = token_of(&daemon.create("acme", &["read:all"], &[]));
    let closed = Api::start(&daemon, &[]);
    let open = Api::start(&daemon, &["--fail-open"]);
    let auth = bearer(&token);
    assert_eq!(closed.get("/v1/tables", &[("authorization", &auth)]).status, StatusCode::OK);
    assert_eq!(open.get("/v1/tables", &[("authorization", &auth)]).json()["caller"]["workspace"], "acme");

    daemon.stop();
    let unavailable = closed.get("/v1/tables", &[("authorization", &auth)]);
    unavailable.assert_refusal(StatusCode::SERVICE_UNAVAILABLE, "auth_unavailable", "api_error", "unavailable", &token);
    assert_eq!(unavailable.header("retry-after"), "1");
    let unverified = open.get("/v1/tables", &[("authorization", &auth)]);
    assert_eq!(unverified.status, StatusCode::OK, "{unverified:?}");
    assert_eq!(unverified.json()["caller"], json!({"key_id": null, "workspace": null, "unverified": true}));
    let made_up = open.get("/v1/tables", &[("authorization", "Bearer made-up")]);
    assert_eq!(made_up.status, StatusCode::OK, "failing open lets any key through, even a made-up one");
    let keyless = open.get("/v1/tables", &[]);
    assert_eq!(keyless.status, StatusCode::UNAUTHORIZED, "a request without a key needs no daemon to refuse");

    daemon.restart();
    let back = closed.get("/v1/tables", &[("authorization", &auth)]);
    assert_eq!(back.status, StatusCode::OK, "the pool reconnects once the daemon is back: {back:?}");
    let checked = open.get("/v1/tables", &[("authorization", "Bearer made-up")]);
    assert_eq!(checked.status, StatusCode::UNAUTHORIZED, "and checks keys again");
}

/// What the in-process handler received.
#[derive(Clone, Debug)]
struct Received {
    authorization: bool,
    uri: String,
    key_id: String,
}

#[test]
fn the_handler_never_sees_the_token() {
    let daemon = Daemon::start();
    let created = daemon.create("acme", &["read:all"], &[]);
    let (token, id) = (token_of(&created), created["id"].as_str().unwrap().to_owned());
    let received: Arc<Mutex<Vec<Received>>> = Arc::default();
    let log = Arc::clone(&received);
    let handler = move |key: VerifiedKey, request: Request<Body>| {
        let log = Arc::clone(&log);
        async move {
            log.lock().unwrap().push(Received {
                authorization: request.headers().contains_key("authorization"),
                uri: request.uri().to_string(),
                key_id: key.id,
            });
            "seen"
        }
    };
    let client = Client::builder(daemon.verify_socket()).build();
    let layer = KeywardLayer::new(client).resource("tables").allow_query_parameter(true);
    let app = Router::new().route("/v1/tables", get(handler)).route_layer(layer);
    let listener = RUNTIME.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("a loopback port");
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = RUNTIME.spawn(async move { axum::serve(listener, app).await });

    let with_header = send(Method::GET, &format!("{base}/v1/tables?page=2"), &[("authorization", &bearer(&token))]);
    let with_query = send(Method::GET, &format!("{base}/v1/tables?api_key={token}&page=2"), &[]);
    for answer in [&with_header, &with_query] {
        assert_eq!((answer.status, answer.body.as_str()), (StatusCode::OK, "seen"), "{answer:?}");
    }
    server.abort();
    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), 2);
    for request in &received {
        assert!(!request.authorization, "the Authorization header is stripped: {request:?}");
        assert_eq!(request.uri, "/v1/tables?page=2", "the api_key parameter is stripped");
        assert_eq!(request.key_id, id);
    }
}
