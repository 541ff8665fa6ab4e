//! keywardd's forward-auth endpoint (`[http]`), end to end: asked directly the way a proxy asks it, and
//! behind nginx and Caddy running the snippets in `proxy/` exactly as operators copy them
//! (`keyward_tests::proxy`). Every case of the contract runs through each of the three doors — a module
//! per case, a test per door (`forward_auth::rate_limited_key::nginx`) — and asserts what the client got
//! (status, JSON body, challenge, `Retry-After`) and what reached the app (who the caller is, and never
//! the caller's key). The endpoint's handling of bad HTTP is tested directly.
//!
//! Through a proxy, the paths mean what the example sites (`proxy/nginx.conf`, `proxy/Caddyfile`) say:
//! `/v1/tables...` needs `read:tables`, `/v1/workspaces/<ws>/...` needs `write:tables` in workspace
//! `<ws>`, anything else a valid key. Asked directly, the test sends those requirements itself
//! ([`Door::Direct`]). Where nginx or Caddy is missing, its tests say `skipped` and pass, unless
//! `KEYWARD_REQUIRE_PROXIES=1`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use keyward_tests::proxy::{
    call, get, request_bytes, require_caddy, require_nginx, Address, App, Caddy, Echo, Keyward, Nginx, Response,
};
use serde_json::{json, Value};

/// Who is asked: keywardd itself, or a proxy in front of the app.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Door {
    Direct,
    Nginx,
    Caddy,
}

/// The front door of one test, and the app behind it.
struct Site {
    keyward: Keyward,
    app: App,
    front: Front,
}

enum Front {
    Direct,
    Nginx(Nginx),
    Caddy(Caddy),
}

/// What one request got.
struct Exchange {
    response: Response,
    /// What reached the app when the request was let through: the app's echo behind a proxy; asked
    /// directly, the answer's headers (what a proxy would pass on).
    app: Option<Echo>,
}

impl Site {
    /// `keyward` behind `door`; `None` when that proxy is not installed (the test is skipped).
    fn open(door: Door, keyward: Keyward) -> Option<Site> {
        let app = App::start();
        let front = match door {
            Door::Direct => Front::Direct,
            Door::Nginx => Front::Nginx(Nginx::start(&require_nginx()?, &keyward.address, app.port)),
            Door::Caddy => Front::Caddy(Caddy::start(&require_caddy()?, &keyward.address, app.port)),
        };
        Some(Site { keyward, app, front })
    }

    fn door(&self) -> Door {
        match self.front {
            Front::Direct => Door::Direct,
            Front::Nginx(_) => Door::Nginx,
            Front::Caddy(_) => Door::Caddy,
        }
    }

    /// Everything logged so far, for assertion messages.
    fn logs(&self) -> String {
        let proxy = match &self.front {
            Front::Direct => String::new(),
            Front::Nginx(nginx) => nginx.logs(),
            Front::Caddy(caddy) => caddy.logs(),
        };
        format!("{proxy}\n--- keywardd:\n{}", self.keyward.daemon.log())
    }

    fn get(&self, path: &str, headers: &[(&str, &str)]) -> Exchange {
        self.call("GET", path, headers)
    }

    /// `method path` with `headers`, sent to the front door. Asked directly, that is `method /auth` with
    /// the original request in X-Forwarded-Method/-Uri and the example sites' requirements for `path`.
    fn call(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Exchange {
        self.send(method, path, headers, b"")
    }

    /// [`Site::call`] with a request body.
    fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Exchange {
        let before = self.app.requests();
        let response = match &self.front {
            Front::Direct => {
                let (scope, workspace) = requirements(path);
                let mut all = vec![("X-Forwarded-Method", method), ("X-Forwarded-Uri", path)];
                all.extend(scope.map(|scope| ("X-Keyward-Scope", scope)));
                all.extend(workspace.as_deref().map(|workspace| ("X-Keyward-Workspace", workspace)));
                all.extend_from_slice(headers);
                exchange(&self.keyward.address, method, "/auth", &all, body)
            }
            Front::Nginx(nginx) => exchange(nginx.address(), method, path, headers, body),
            Front::Caddy(caddy) => exchange(caddy.address(), method, path, headers, body),
        };
        let reached = self.app.requests() - before;
        let app = match (&self.front, response.status) {
            (Front::Direct, 200) => {
                Some(Echo { request_line: String::new(), headers: response.headers.clone(), body_len: 0 })
            }
            (Front::Direct, _) => None,
            (_, 200) => Some(Echo::from_response(&response)),
            _ => None,
        };
        if self.door() != Door::Direct {
            let expected = usize::from(app.is_some());
            assert_eq!(
                reached,
                expected,
                "requests that reached the app for {method} {path}: {response}\n{}",
                self.logs()
            );
        }
        Exchange { response, app }
    }

    /// Asserts `exchange` was let through, and that the caller's key did not reach the app.
    fn passed<'a>(&self, exchange: &'a Exchange) -> &'a Echo {
        let Some(app) = &exchange.app else {
            panic!("{:?}: refused, expected to pass: {}\n{}", self.door(), exchange.response, self.logs());
        };
        if self.door() != Door::Direct {
            for name in ["authorization", "x-api-key", "x-keyward-scope", "x-keyward-refuse-with"] {
                assert!(app.header(name).is_none(), "{:?}: {name} reached the app: {:?}", self.door(), app.headers);
            }
        }
        app
    }

    /// Asserts `exchange` was refused with `status` and `code` (JSON body, `Cache-Control: no-store`), and
    /// returns the response.
    fn refused<'a>(&self, exchange: &'a Exchange, status: u16, code: &str) -> &'a Response {
        let response = &exchange.response;
        assert_eq!(response.status, status, "{:?}: {response}\n{}", self.door(), self.logs());
        assert!(exchange.app.is_none());
        assert_eq!(response.error_code(), code, "{:?}: {response}", self.door());
        let body = response.json();
        assert!(body["error"]["message"].is_string() && body["error"]["type"].is_string(), "{response}");
        assert!(
            response.header("content-type").is_some_and(|ct| ct.starts_with("application/json")),
            "{:?}: {response}",
            self.door()
        );
        assert_eq!(response.headers_named("cache-control"), ["no-store"], "{:?}: {response}", self.door());
        response
    }
}

/// One request with `body` on a connection of its own, and its response.
fn exchange(address: &Address, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let mut conn = address.connect().unwrap_or_else(|e| panic!("connect to {address:?}: {e}"));
    conn.send(method, path, headers, body).unwrap_or_else(|e| panic!("send {method} {path}: {e}"));
    conn.read_response(method == "HEAD").unwrap_or_else(|e| panic!("the answer to {method} {path}: {e}"))
}

/// What the example sites require of `path`: its scope, and its workspace.
fn requirements(path: &str) -> (Option<&'static str>, Option<String>) {
    if path.starts_with("/v1/tables") {
        return (Some("read:tables"), None);
    }
    if let Some(rest) = path.strip_prefix("/v1/workspaces/") {
        if let Some((workspace, _)) = rest.split_once('/') {
            return (Some("write:tables"), Some(workspace.to_owned()));
        }
    }
    (None, None)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs()
}

/// For each case `fn name(door: Door)`, a module `name` with one test per door.
macro_rules! through_every_door {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            use super::Door;

            #[test]
            fn direct() {
                super::$case(Door::Direct)
            }

            #[test]
            fn nginx() {
                super::$case(Door::Nginx)
            }

            #[test]
            fn caddy() {
                super::$case(Door::Caddy)
            }
        }
    )*};
}

through_every_door!(
    valid_key,
    missing_key,
    malformed_key,
    wrong_scope,
    wrong_workspace,
    revoked_key,
    rate_limited_key,
    x_api_key_header,
    two_keys,
    query_parameter_when_enabled,
    query_parameter_ignored_by_default,
    route_table,
    unix_socket,
    keywardd_stopped,
    request_body,
);

/// A valid key passes; the app learns who called (key id, workspace, scopes, role, environment, expiry,
/// metadata, rate limit) and nothing a client forged under those names, and never the key.
fn valid_key(door: Door) {
    let Some(site) = Site::open(door, Keyward::start("", "")) else { return };
    let (token, id) = site.keyward.create(
        "acme",
        &["read:tables"],
        &["--meta", "team=platform", "--meta", "city=Zürich", "--expires", "30d"],
    );
    let exchange = site.get(
        "/v1/tables/orders?limit=5",
        &[
            ("Authorization", &bearer(&token)),
            ("X-Keyward-Key-Id", "forged"),
            ("X-Keyward-Credits", "1000000"),
            ("X-Keyward-Role", "admin"),
        ],
    );
    let app = site.passed(&exchange);
    assert_eq!(app.headers_named("x-keyward-key-id"), [id.as_str()], "{door:?}: {:?}", app.headers);
    assert_eq!(app.headers_named("x-keyward-workspace"), ["acme"], "{door:?}: {:?}", app.headers);
    assert_eq!(app.headers_named("x-keyward-scopes"), ["read:tables"], "{door:?}: {:?}", app.headers);
    assert_eq!(app.headers_named("x-keyward-role"), ["member"], "{door:?}: {:?}", app.headers);
    assert_eq!(app.headers_named("x-keyward-env"), ["live"], "{door:?}: {:?}", app.headers);
    // Absent, or empty where keywardd sends them empty (headers_without_a_value_are_not_sent); never the
    // client's forged value.
    assert_eq!(app.header("x-keyward-credits").unwrap_or(""), "", "{door:?}: no credits: {:?}", app.headers);
    assert_eq!(app.header("x-keyward-account").unwrap_or(""), "", "{door:?}: not a legacy key: {:?}", app.headers);
    let expires: u64 = app.header("x-keyward-expires-at").and_then(|at| at.parse().ok()).expect("X-Keyward-Expires-At");
    assert!(expires > now() + 29 * 86_400 && expires <= now() + 31 * 86_400, "{door:?}: expires at {expires}");
    let metadata = app.header("x-keyward-metadata").expect("X-Keyward-Metadata");
    assert!(metadata.is_ascii(), "{door:?}: metadata is escaped to ASCII: {metadata:?}");
    let metadata: Value = serde_json::from_str(metadata).expect("metadata is JSON");
    assert_eq!(metadata, json!({"city": "Zürich", "team": "platform"}), "{door:?}");
    assert_eq!(app.header("ratelimit-limit"), Some("100"), "{door:?}: the free plan, 100/min: {:?}", app.headers);
    assert_eq!(app.header("ratelimit-remaining"), Some("99"), "{door:?}: {:?}", app.headers);
    assert!(app.header("ratelimit-reset").is_some() && app.header("ratelimit-policy").is_some(), "{:?}", app.headers);
    match door {
        Door::Direct => {
            assert_eq!(exchange.response.body, b"", "a 200 has no body: {}", exchange.response);
            assert_eq!(exchange.response.header("cache-control"), Some("no-store"), "{}", exchange.response);
        }
        _ => assert!(app.request_line.starts_with("GET /v1/tables/orders?limit=5 HTTP/1."), "{}", app.request_line),
    }
    if door == Door::Nginx {
        // The snippet also gives the caller its rate-limit state.
        assert_eq!(exchange.response.header("ratelimit-limit"), Some("100"), "{}", exchange.response);
    }
}

/// No key: 401 with a bare challenge (RFC 6750 §3), and the app is never reached.
fn missing_key(door: Door) {
    let Some(site) = Site::open(door, Keyward::start("", "")) else { return };
    let exchange = site.get("/v1/tables/orders", &[]);
    let response = site.refused(&exchange, 401, "invalid_api_key");
    assert_eq!(response.headers_named("www-authenticate"), ["Bearer"], "{door:?}: {response}");
    assert!(response.header("retry-after").is_none(), "{door:?}: {response}");
}

/// A token that is not a keyward key, and a well-formed key nobody created: 401 `invalid_token`.
fn malformed_key(door: Door) {
    let Some(site) = Site::open(door, Keyward::start("", "")) else { return };
    let (token, _) = site.keyward.create("acme", &["read:tables"], &[]);
    // Same id and format, another secret: the lookup finds the key, the secret does not match.
    let mut wrong = token.clone().into_bytes();
    let last = wrong.len() - 8;
    wrong[last] = if wrong[last] == b'a' { b'b' } else { b'a' };
    let wrong = String::from_utf8(wrong).expect("ASCII");
    for bad in ["not-a-key", "kw_live_short", &wrong] {
        let exchange = site.get("/v1/tables/orders", &[("Authorization", &bearer(bad))]);
        let response = site.refused(&exchange, 401, "invalid_api_key");
        assert_eq!(
            response.headers_named("www-authenticate"),
            [r#"Bearer error="invalid_token""#],
            "{door:?}: {response}"
        );
        let message = response.json()["error"]["message"].as_str().expect("a message").to_owned();
        assert!(!message.contains(bad), "{door:?}: the message quotes the token: {message}");
    }
    // The real key still works: refusals spent nothing of it.
    site.passed(&site.get("/v1/tables/orders", &[("Authorization", &bearer(&token))]));
}

/// A key without the scope: 403 `insufficient_scope`, the challenge naming the scope.
fn wrong_scope(door: Door) {
    let Some(site) = Site::open(door, Keyward::start("", "")) else { return };
    let (token, _) = site.keyward.create("acme", &["read:forms"], &[]);
    let exchange = site.get("/v1/tables/orders", &[("Authorization", &bearer(&token))]);
    let response = site.refused(&exchange, 403, "insufficient_scope");
    assert_eq!(
        response.headers_named("www-authenticate"),
        [r#"Bearer error="insufficient_scope", scope="read:tables""#],
        "{door:?}: {response}"
    );
    // Where no scope is required, the same key passes.
    site.passed(&site.get("/v1/forms/contact", &[("Authorization", &bearer(&token))]));
}

/// A key of another workspace: 403 `wrong_workspace`, no challenge; its own workspace passes.
fn wrong_workspace(door: Door) {
    let Some(site) = Site::open(door, Keyward::start("", "")) else { return };
    let (token, _) = site.keyward.create("acme", &["write:tables"], &[]);
    let exchange = site.call("POST", "/v1/workspaces/globex/tables", &[("Authorization", &bearer(&token))]);
    let response = site.refused(&exchange, 403, "wrong_workspace");
    assert!(response.header("www-authenticate").is_none(), "{door:?}: {response}");
    let exchange = site.call("POST", "/v1/workspaces/acme/tables", &[("Authorization", &bearer(&token))]);
    assert_eq!(site.passed(&exchange).headers_named("x-keyward-workspace"), ["acme"]);
}

/// Revoked with the CLI: the very next request is refused.
fn revoked_key(door: Door) {
    let Some(site) = Site::open(door, Keyward::start("", "")) else { return };
    let (token, id) = site.keyward.create("acme", &["read:tables"], &[]);
    let auth = bearer(&token);
    site.passed(&site.get("/v1/tables/orders", &[("Authorization", &auth)]));
    assert_eq!(site.keyward.daemon.json(&["revoke", &id], 0)["status"], "revoked");
    let exchange = site.get("/v1/tables/orders", &[("Authorization", &auth)]);
    let response = site.refused(&exchange, 401, "invalid_api_key");
    assert!(response.text().contains("revoked"), "{door:?}: {response}");
    assert_eq!(response.headers_named("www-authenticate"), [r#"Bearer error="invalid_token""#], "{door:?}: {response}");
}

/// A plan of 2 per minute: two requests pass, the third is 429 with `Retry-After` and the RateLimit
/// headers — through nginx too, whose auth_request knows only 2xx, 401 and 403 (the reason for
/// `X-Keyward-Refuse-With` and the snippet's re-rendering).
fn rate_limited_key(door: Door) {
    let Some(site) = Site::open(door, Keyward::start("", "[plans]\ntiny = \"2/min\"\n")) else { return };
    let (token, _) = site.keyward.create("acme", &["read:tables"], &["--plan", "tiny"]);
    let auth = bearer(&token);
    for remaining in ["1", "0"] {
        let exchange = site.get("/v1/tables/orders", &[("Authorization", &auth)]);
        let app = site.passed(&exchange);
        assert_eq!(app.header("ratelimit-limit"), Some("2"), "{door:?}: {:?}", app.headers);
        assert_eq!(app.header("ratelimit-remaining"), Some(remaining), "{door:?}: {:?}", app.headers);
    }
    let exchange = site.get("/v1/tables/orders", &[("Authorization", &auth)]);
    let response = site.refused(&exchange, 429, "rate_limited");
    let retry_after: u64 = response
        .header("retry-after")
        .and_then(|seconds| seconds.parse().ok())
        .unwrap_or_else(|| panic!("{door:?}: no Retry-After in seconds: {response}"));
    assert!((1..=60).contains(&retry_after), "{door:?}: Retry-After {retry_after}");
    assert_eq!(response.headers_named("retry-after").len(), 1, "{door:?}: {response}");
    assert_eq!(response.header("ratelimit-limit"), Some("2"), "{door:?}: {response}");
    assert_eq!(response.header("ratelimit-remaining"), Some("0"), "{door:?}: {response}");
    assert!(response.header("www-authenticate").is_none(), "{door:?}: {response}");
}

/// The key in `X-API-Key` instead of `Authorization`; it does not reach the app either.
fn x_api_key_header(door: Door) {
    let Some(site) = Site::open(door, Keyward::start("", "")) else { return };
    let (token, id) = site.keyward.create("acme", &["read:tables"], &[]);
    let exchange = site.get("/v1/tables/orders", &[("X-API-Key", &token)]);
    assert_eq!(site.passed(&exchange).headers_named("x-keyward-key-id"), [id.as_str()]);
}

/// Two keys at once (even the same one twice, in two headers) is a 401: never a guess which one counts.
fn two_keys(door: Door) {
    let Some(site) = Site::open(door, Keyward::start("", "")) else { return };
    let (token, _) = site.keyward.create("acme", &["read:tables"], &[]);
    let (other, _) = site.keyward.create("acme", &["read:tables"], &[]);
    for second in [&token, &other] {
        let exchange = site.get("/v1/tables/orders", &[("Authorization", &bearer(&token)), ("X-API-Key", second)]);
        let response = site.refused(&exchange, 401, "invalid_api_key");
        assert_eq!(response.headers_named("www-authenticate"), [r#"Bearer error="invalid_token""#], "{response}");
    }
}

/// With `query_parameter = "api_key"`, the key may come in that parameter of the original URI.
fn query_parameter_when_enabled(door: Door) {
    let Some(site) = Site::open(door, Keyward::start("query_parameter = \"api_key\"", "")) else { return };
    let (token, id) = site.keyward.create("acme", &["read:tables"], &[]);
    let exchange = site.get(&format!("/v1/tables/orders?api_key={token}&limit=5"), &[]);
    assert_eq!(site.passed(&exchange).headers_named("x-keyward-key-id"), [id.as_str()]);
    // In the parameter and a header: two keys.
    let exchange = site.get(&format!("/v1/tables/orders?api_key={token}"), &[("Authorization", &bearer(&token))]);
    site.refused(&exchange, 401, "invalid_api_key");
}

/// Without `query_parameter`, a key in the URL is not a key: 401 as if there were none.
fn query_parameter_ignored_by_default(door: Door) {
    let Some(site) = Site::open(door, Keyward::start("", "")) else { return };
    let (token, _) = site.keyward.create("acme", &["read:tables"], &[]);
    let exchange = site.get(&format!("/v1/tables/orders?api_key={token}"), &[]);
    let response = site.refused(&exchange, 401, "invalid_api_key");
    assert_eq!(response.headers_named("www-authenticate"), ["Bearer"], "{door:?}: {response}");
}

/// The route table of a second configuration: method and path decide scope and workspace, whatever the
/// proxy's own X-Keyward-Scope says (the example sites ask write:tables for /v1/workspaces/...), and a
/// client cannot steer the decision with its own X-Forwarded-Uri/-Method.
fn route_table(door: Door) {
    let routes = r#"
[[http.route]]
methods = ["GET", "HEAD"]
path = "/v1/workspaces/{workspace}/tables/**"
scope = "read:tables"

[[http.route]]
methods = ["POST", "PUT", "DELETE"]
path = "/v1/workspaces/{workspace}/tables/**"
scope = "write:tables"

[[http.route]]
path = "/v1/public/*"
"#;
    let Some(site) = Site::open(door, Keyward::start(routes, "")) else { return };
    let (token, id) = site.keyward.create("acme", &["read:tables"], &[]);
    let auth = bearer(&token);
    let exchange = site.get("/v1/workspaces/acme/tables/orders", &[("Authorization", &auth)]);
    assert_eq!(site.passed(&exchange).headers_named("x-keyward-key-id"), [id.as_str()]);
    let exchange = site.call("POST", "/v1/workspaces/acme/tables/orders", &[("Authorization", &auth)]);
    let response = site.refused(&exchange, 403, "insufficient_scope");
    assert!(response.header("www-authenticate").is_some_and(|c| c.contains(r#"scope="write:tables""#)), "{response}");
    let exchange = site.get("/v1/workspaces/globex/tables/orders", &[("Authorization", &auth)]);
    site.refused(&exchange, 403, "wrong_workspace");
    // `*` is one segment: /v1/public/a passes, /v1/public/a/b matches no route.
    site.passed(&site.get("/v1/public/status", &[("Authorization", &auth)]));
    let exchange = site.get("/v1/public/status/deep", &[("Authorization", &auth)]);
    assert_eq!(exchange.response.status, 403, "{door:?}: no route matches: {}", exchange.response);
    if door != Door::Direct {
        // What the client says the request is never reaches keywardd: the proxy states it.
        let spoof = [
            ("Authorization", auth.as_str()),
            ("X-Forwarded-Uri", "/v1/workspaces/acme/tables/orders"),
            ("X-Forwarded-Method", "GET"),
            ("X-Original-URI", "/v1/workspaces/acme/tables/orders"),
            ("X-Original-Method", "GET"),
        ];
        let exchange = site.call("POST", "/v1/workspaces/acme/tables/orders", &spoof);
        site.refused(&exchange, 403, "insufficient_scope");
        let exchange = site.get("/v1/workspaces/globex/tables/orders", &spoof);
        site.refused(&exchange, 403, "wrong_workspace");
    }
}

/// The endpoint on a Unix socket (nginx `server unix:PATH`, Caddy `unix//PATH`).
fn unix_socket(door: Door) {
    let Some(site) = Site::open(door, Keyward::start_unix("", "")) else { return };
    assert!(matches!(site.keyward.address, Address::Unix(_)));
    let (token, id) = site.keyward.create("acme", &["read:tables"], &[]);
    let exchange = site.get("/v1/tables/orders", &[("Authorization", &bearer(&token))]);
    assert_eq!(site.passed(&exchange).headers_named("x-keyward-key-id"), [id.as_str()]);
    site.refused(&site.get("/v1/tables/orders", &[]), 401, "invalid_api_key");
}

/// keywardd stopped: a proxy fails closed at once with the snippet's 503 `auth_unavailable` and
/// `Retry-After: 1` (not a hang, not a 500, and not the app); asked directly, nobody answers.
fn keywardd_stopped(door: Door) {
    let Some(mut site) = Site::open(door, Keyward::start("", "")) else { return };
    let (token, _) = site.keyward.create("acme", &["read:tables"], &[]);
    let auth = bearer(&token);
    site.passed(&site.get("/v1/tables/orders", &[("Authorization", &auth)]));
    site.keyward.daemon.stop();
    if door == Door::Direct {
        assert!(!site.keyward.address.accepts(), "the endpoint still accepts connections after SIGTERM");
        return;
    }
    for _ in 0..2 {
        let exchange = site.get("/v1/tables/orders", &[("Authorization", &auth)]);
        let response = site.refused(&exchange, 503, "auth_unavailable");
        assert_eq!(response.headers_named("retry-after"), ["1"], "{door:?}: {response}");
    }
}

/// A request's body goes to the app whole (keywardd gets none from nginx, and skips what Caddy sends),
/// request after request over the proxy's kept connections to keywardd.
fn request_body(door: Door) {
    let Some(site) = Site::open(door, Keyward::start("", "")) else { return };
    let (token, _) = site.keyward.create("acme", &["write:tables"], &[]);
    let auth = bearer(&token);
    let body = vec![b'x'; 64 * 1024];
    for _ in 0..3 {
        let exchange = site.send("POST", "/v1/workspaces/acme/tables", &[("Authorization", &auth)], &body);
        let app = site.passed(&exchange);
        if door != Door::Direct {
            assert_eq!(app.body_len, body.len(), "{door:?}: the app got the whole body");
        }
        site.refused(&site.send("POST", "/v1/workspaces/acme/tables", &[], &body), 401, "invalid_api_key");
    }
}

// ---- The endpoint itself: what only a direct request can show, and bad HTTP.

fn direct() -> Keyward {
    Keyward::start("", "")
}

/// `keyward stats` shows the endpoint's connections and answers by status (and Prometheus exports them);
/// a daemon without `[http]` shows none.
#[test]
fn the_endpoints_figures_are_in_keyward_stats() {
    let keyward = direct();
    let (token, _) = keyward.create("acme", &["read:tables"], &[]);
    assert_eq!(get(&keyward.address, "/auth", &[("Authorization", &bearer(&token))]).status, 200);
    for _ in 0..2 {
        assert_eq!(get(&keyward.address, "/auth", &[]).status, 401);
    }
    assert_eq!(get(&keyward.address, "/nowhere", &[]).status, 404);
    let auth = bearer(&token);
    let misconfigured =
        [("Authorization", auth.as_str()), ("X-Keyward-Scope", "Bad"), ("X-Keyward-Refuse-With", "401")];
    let for_nginx = get(&keyward.address, "/auth", &misconfigured);
    assert_eq!(for_nginx.status, 401, "{for_nginx}");
    let stats = keyward.daemon.json(&["stats"], 0);
    let http = &stats["http"];
    assert_eq!(http["answers"], json!({"200": 1, "401": 2, "404": 1, "500": 1}), "a refusal counts as itself: {stats}");
    assert!(http["connections_total"].as_u64() >= Some(4), "{stats}");
    assert_eq!(http["connections_forbidden"], 0);
    assert_eq!(stats["verifies"]["VALID"], 1, "the endpoint's verify counts as every verify does");
    let output = keyward.daemon.cli(&["stats", "--prometheus"]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("\nkeyward_http_answers_total{status=\"401\"} 2\n"), "{text}");

    let plain = keyward_tests::Daemon::start();
    assert_eq!(plain.json(&["stats"], 0)["http"], Value::Null, "no [http], no figures");
}

#[test]
fn health_answers_ok() {
    let keyward = direct();
    let response = keyward.health();
    assert_eq!(response.status, 200, "{response}");
    assert_eq!(response.json(), json!({"status": "ok"}));
}

#[test]
fn an_unknown_path_is_a_json_404() {
    let keyward = direct();
    for path in ["/", "/authx", "/healthz", "/v1/tables"] {
        let response = get(&keyward.address, path, &[]);
        assert_eq!(response.status, 404, "{path}: {response}");
        assert_eq!(response.error_code(), "not_found", "{path}: {response}");
    }
}

/// `/auth` answers any method, and `/auth/<path>` is the original path when no header names one (Envoy's
/// ext_authz with `path_prefix: /auth`). A body is read and ignored, so the connection stays usable.
#[test]
fn auth_answers_any_method_and_reads_the_path_after_it() {
    let keyward = Keyward::start("query_parameter = \"api_key\"", "");
    let (token, id) = keyward.create("acme", &["read:tables"], &[]);
    let mut conn = keyward.address.connect().expect("connect");
    let auth = bearer(&token);
    for method in ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        conn.send(method, "/auth", &[("Authorization", &auth)], b"{\"a body\": \"to skip\"}").expect("send");
        let response = conn.read_response(false).expect("a response");
        assert_eq!(response.status, 200, "{method}: {response}");
        assert_eq!(response.header("x-keyward-key-id"), Some(id.as_str()), "{method}: {response}");
    }
    let response = conn.call("HEAD", "/auth", &[("Authorization", &auth)]);
    assert_eq!(response.status, 200, "HEAD: {response}");
    // The key in the query of the original path, which is what follows /auth.
    let response = conn.call("GET", &format!("/auth/v1/tables/orders?api_key={token}"), &[]);
    assert_eq!(response.status, 200, "{response}");
    let response =
        conn.call("GET", &format!("/auth/v1/tables?api_key={token}"), &[("X-Forwarded-Uri", "/v1/tables/orders")]);
    assert_eq!(response.status, 401, "X-Forwarded-Uri wins over the path after /auth: {response}");
}

/// X-Forwarded-Uri/-Method name the original request, over the request's own method and path after /auth,
/// and over X-Original-URI/-Method.
#[test]
fn the_original_request_is_read_from_the_forwarded_headers() {
    let routes = "[[http.route]]\nmethods = [\"GET\"]\npath = \"/open/**\"\n";
    let keyward = Keyward::start(routes, "");
    let (token, _) = keyward.create("acme", &["read:tables"], &[]);
    let auth = bearer(&token);
    let status = |method: &str, path: &str, extra: &[(&str, &str)]| {
        let mut headers = vec![("Authorization", auth.as_str())];
        headers.extend_from_slice(extra);
        call(&keyward.address, method, path, &headers).status
    };
    assert_eq!(status("GET", "/auth/open/x", &[]), 200);
    assert_eq!(status("POST", "/auth/open/x", &[]), 403);
    assert_eq!(status("POST", "/auth/open/x", &[("X-Forwarded-Method", "GET")]), 200);
    assert_eq!(status("GET", "/auth/open/x", &[("X-Forwarded-Method", "POST")]), 403);
    assert_eq!(status("GET", "/auth", &[("X-Forwarded-Uri", "/open/x")]), 200);
    assert_eq!(status("GET", "/auth/open/x", &[("X-Forwarded-Uri", "/closed")]), 403);
    assert_eq!(status("GET", "/auth", &[("X-Original-URI", "/closed"), ("X-Forwarded-Uri", "/open/x")]), 200);
    assert_eq!(status("GET", "/auth", &[("X-Original-URI", "/open/x"), ("X-Forwarded-Uri", "/closed")]), 403);
    assert_eq!(status("GET", "/auth/open/x", &[("X-Original-Method", "POST"), ("X-Forwarded-Method", "GET")]), 200);
    // A name sent twice cannot be told the proxy's from the client's.
    assert_ne!(status("GET", "/auth", &[("X-Forwarded-Uri", "/open/x"), ("X-Forwarded-Uri", "/open/y")]), 200);
}

/// Only X-Forwarded-Method/-Uri name the original request: proxies pass the caller's own headers on to
/// the auth subrequest, so another pair of names, which the proxy does not set, would be the caller's to
/// choose. With a route table covering `/open/**` only, `X-Original-URI: /open/x` names nothing: the
/// original request is the subrequest's own path, which no route covers.
#[test]
fn only_the_forwarded_headers_name_the_original_request() {
    let routes = "[[http.route]]\nmethods = [\"GET\"]\npath = \"/open/**\"\n";
    let keyward = Keyward::start(routes, "");
    let (token, _) = keyward.create("acme", &["read:tables"], &[]);
    let auth = bearer(&token);
    let status = |method: &str, extra: &[(&str, &str)]| {
        let mut headers = vec![("Authorization", auth.as_str())];
        headers.extend_from_slice(extra);
        call(&keyward.address, method, "/auth", &headers).status
    };
    assert_eq!(status("GET", &[("X-Original-URI", "/open/x")]), 403);
    assert_eq!(status("POST", &[("X-Forwarded-Uri", "/open/x"), ("X-Original-Method", "GET")]), 403);
    assert_eq!(status("POST", &[("X-Forwarded-Uri", "/open/x"), ("X-Forwarded-Method", "GET")]), 200);
}

/// `X-Keyward-Refuse-With: 401`: every refusal comes as a 401 carrying its real status and body in
/// `X-Keyward-Status` and `X-Keyward-Error` (which every refusal has anyway); a valid key is still a 200.
#[test]
fn refuse_with_401_sends_every_refusal_as_401_with_the_real_one_in_headers() {
    let keyward = Keyward::start("", "[plans]\nsingle = \"1/min\"\n");
    let (token, _) = keyward.create("acme", &["read:tables"], &["--plan", "single"]);
    let auth = bearer(&token);
    let ask = |extra: &[(&str, &str)], refuse_with: bool| {
        let mut headers = vec![("X-Forwarded-Uri", "/v1/tables/orders")];
        headers.extend_from_slice(extra);
        if refuse_with {
            headers.push(("X-Keyward-Refuse-With", "401"));
        }
        get(&keyward.address, "/auth", &headers)
    };
    assert_eq!(ask(&[("Authorization", &auth)], true).status, 200);
    type Headers<'h> = &'h [(&'h str, &'h str)];
    let cases: [(Headers, u16, &str); 5] = [
        (&[], 401, "invalid_api_key"),
        (&[("Authorization", "Bearer nonsense")], 401, "invalid_api_key"),
        (&[("Authorization", &auth), ("X-Keyward-Scope", "write:tables")], 403, "insufficient_scope"),
        (&[("Authorization", &auth), ("X-Keyward-Workspace", "globex")], 403, "wrong_workspace"),
        (&[("Authorization", &auth)], 429, "rate_limited"),
    ];
    for (extra, status, code) in cases {
        let plain = ask(extra, false);
        // The rate limit was spent by the request above; plain and rewritten ask the same thing.
        let rewritten = ask(extra, true);
        for (response, expected) in [(&plain, status), (&rewritten, 401)] {
            assert_eq!(response.status, expected, "{code}: {response}");
            assert_eq!(response.error_code(), code, "{response}");
            assert_eq!(response.header("x-keyward-status"), Some(status.to_string().as_str()), "{response}");
            let carried: Value =
                serde_json::from_str(response.header("x-keyward-error").expect("X-Keyward-Error")).expect("JSON");
            assert_eq!(carried, response.json(), "X-Keyward-Error is the body: {response}");
        }
        // (Retry-After is there on both, but may differ by the second between the two answers.)
        assert_eq!(plain.header("www-authenticate"), rewritten.header("www-authenticate"), "{plain}\n{rewritten}");
        assert_eq!(plain.header("retry-after").is_some(), rewritten.header("retry-after").is_some(), "{rewritten}");
    }
}

/// A proxy misconfiguration (a bad scope, a cost that is not a number) is a 500 `internal_error` naming
/// the header, not a refusal of the caller's key; an empty value is no value (nginx's unset variable).
#[test]
fn a_bad_requirement_header_is_a_500_naming_it() {
    let keyward = direct();
    let (token, _) = keyward.create("acme", &["read:tables"], &[]);
    let auth = bearer(&token);
    for (name, value) in [("X-Keyward-Scope", "read tables"), ("X-Keyward-Cost", "lots"), ("X-Keyward-Cost", "-1")] {
        let response = get(&keyward.address, "/auth", &[("Authorization", &auth), (name, value)]);
        assert_eq!(response.status, 500, "{name}: {value}: {response}");
        assert_eq!(response.error_code(), "internal_error", "{response}");
        let message = response.json()["error"]["message"].as_str().expect("a message").to_ascii_lowercase();
        assert!(message.contains(&name.to_ascii_lowercase()), "the message names {name}: {response}");
    }
    let empty = [
        ("Authorization", auth.as_str()),
        ("X-Keyward-Scope", ""),
        ("X-Keyward-Workspace", ""),
        ("X-Keyward-Limits", ""),
        ("X-Keyward-Cost", ""),
    ];
    assert_eq!(get(&keyward.address, "/auth", &empty).status, 200, "empty headers are unset");
}

/// `X-Keyward-Limits` and `X-Keyward-Cost`: a named limit of 1 per minute is spent once; a cost of 0
/// checks without spending.
#[test]
fn limits_and_cost_headers_spend_named_limits() {
    let keyward = direct();
    let (token, _) = keyward.create("acme", &["read:tables"], &["--limit", "exports=1/min"]);
    let auth = bearer(&token);
    let ask = |cost: &str| {
        get(
            &keyward.address,
            "/auth",
            &[("Authorization", &auth), ("X-Keyward-Limits", "exports"), ("X-Keyward-Cost", cost)],
        )
    };
    assert_eq!(ask("1").status, 200);
    let refused = ask("1");
    assert_eq!((refused.status, refused.error_code().as_str()), (429, "rate_limited"), "{refused}");
    assert!(refused.header("retry-after").is_some(), "{refused}");
    // Without the named limit the key is still fine.
    assert_eq!(get(&keyward.address, "/auth", &[("Authorization", &auth)]).status, 200);
}

/// `X-Keyward-Cost` is at least 1: a proxy that does not set it passes the caller's own copy on, and a
/// caller must not make its requests free. A 0 is the proxy configuration's mistake (a 500 naming the
/// header); a higher cost spends more.
#[test]
fn a_cost_of_0_is_refused_and_a_higher_cost_spends_more() {
    let keyward = direct();
    let (token, _) = keyward.create("acme", &["read:tables"], &["--limit", "exports=2/min"]);
    let auth = bearer(&token);
    let ask = |cost: &str| {
        get(
            &keyward.address,
            "/auth",
            &[("Authorization", &auth), ("X-Keyward-Limits", "exports"), ("X-Keyward-Cost", cost)],
        )
    };
    let zero = ask("0");
    assert_eq!((zero.status, zero.error_code().as_str()), (500, "internal_error"), "{zero}");
    assert!(String::from_utf8_lossy(&zero.body).contains("x-keyward-cost"), "the message names the header: {zero}");
    assert_eq!(ask("2").status, 200);
    let refused = ask("1");
    assert_eq!((refused.status, refused.error_code().as_str()), (429, "rate_limited"), "cost 2 spent both: {refused}");
}

/// Every X-Keyward-* header of a valid answer is sent, empty when it does not apply (no expiry, no account,
/// no credits), so that a proxy copying the answer's headers upstream replaces a caller's forged copy of
/// each instead of letting it through.
#[test]
fn headers_that_do_not_apply_are_sent_empty() {
    let keyward = direct();
    let (token, _) = keyward.create("acme", &["read:tables"], &["--expires", "never"]);
    let response = get(&keyward.address, "/auth", &[("Authorization", &bearer(&token))]);
    assert_eq!(response.status, 200, "{response}");
    for name in ["x-keyward-account", "x-keyward-credits", "x-keyward-expires-at"] {
        assert_eq!(response.header(name), Some(""), "{name} on a key without one: {response}");
    }
}

/// `key_header = "X-Custom-Key"`: one more header a key may come in, counted like the others.
#[test]
fn a_configured_key_header_carries_a_key() {
    let keyward = Keyward::start("key_header = \"X-Custom-Key\"", "");
    let (token, id) = keyward.create("acme", &["read:tables"], &[]);
    let response = get(&keyward.address, "/auth", &[("X-Custom-Key", &token)]);
    assert_eq!(response.status, 200, "{response}");
    assert_eq!(response.header("x-keyward-key-id"), Some(id.as_str()));
    let response = get(&keyward.address, "/auth", &[("X-Custom-Key", &token), ("X-API-Key", &token)]);
    assert_eq!((response.status, response.error_code().as_str()), (401, "invalid_api_key"), "{response}");
    // Without the setting, the header is just a header.
    let plain = direct();
    let response = get(&plain.address, "/auth", &[("X-Custom-Key", &token)]);
    assert_eq!(response.status, 401, "{response}");
}

/// Several requests on one HTTP/1.1 connection, pipelined too, each answered in order.
#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let keyward = direct();
    let (token, id) = keyward.create("acme", &["read:tables"], &[]);
    let auth = bearer(&token);
    let mut conn = keyward.address.connect().expect("connect");
    for _ in 0..5 {
        let response = conn.call("GET", "/auth", &[("Authorization", &auth)]);
        assert_eq!(response.header("x-keyward-key-id"), Some(id.as_str()), "{response}");
        assert_eq!(conn.call("GET", "/auth", &[]).status, 401);
        assert_eq!(conn.call("GET", "/health", &[]).status, 200);
    }
    let mut pipelined = Vec::new();
    for path in ["/health", "/auth", "/nowhere", "/auth"] {
        pipelined.extend(request_bytes("GET", path, &[("Authorization", &auth)], b""));
    }
    conn.send_raw(&pipelined).expect("send");
    let statuses: Vec<u16> = (0..4).map(|_| conn.read_response(false).expect("a response").status).collect();
    assert_eq!(statuses, [200, 200, 404, 200]);
    // `Connection: close` is honoured.
    let response = conn.call("GET", "/health", &[("Connection", "close")]);
    assert_eq!(response.status, 200);
    assert_eq!(conn.wait_closed().expect("closed after Connection: close"), b"");
}

/// HTTP/1.0: answered, then closed (no keep-alive unless asked for).
#[test]
fn http_1_0_is_answered_and_closed() {
    let keyward = direct();
    let (token, _) = keyward.create("acme", &["read:tables"], &[]);
    let mut conn = keyward.address.connect().expect("connect");
    conn.send_raw(format!("GET /auth HTTP/1.0\r\nAuthorization: Bearer {token}\r\n\r\n").as_bytes()).expect("send");
    let response = conn.read_response(false).expect("a response");
    assert_eq!(response.status, 200, "{response}");
    assert_eq!(conn.wait_closed().expect("closed"), b"", "HTTP/1.0 without keep-alive is closed");
    let mut conn = keyward.address.connect().expect("connect");
    conn.send_raw(b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").expect("send");
    assert_eq!(conn.read_response(false).expect("a response").status, 200);
    conn.send_raw(b"GET /health HTTP/1.0\r\n\r\n").expect("send");
    assert_eq!(conn.read_response(false).expect("a second response on the kept connection").status, 200);
}

/// Sends `bytes` on a fresh connection and returns the first response, asserting the daemon then closed
/// the connection and still serves others.
fn rejects(keyward: &Keyward, bytes: &[u8]) -> Response {
    let mut conn = keyward.address.connect().expect("connect");
    conn.send_raw(bytes).expect("send");
    let response = conn
        .read_response(false)
        .unwrap_or_else(|e| panic!("no response to {:?}: {e}", String::from_utf8_lossy(bytes)));
    conn.wait_closed().unwrap_or_else(|e| panic!("still open after {}: {e}", response.status));
    assert_eq!(keyward.health().status, 200, "the endpoint still serves");
    response
}

#[test]
fn a_malformed_request_line_is_a_400_and_the_daemon_keeps_serving() {
    let keyward = direct();
    for bytes in [
        &b"GET\r\n\r\n"[..],
        b"GET /auth\r\n\r\n",
        b"GET /auth HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET /auth HTTP/1.1\r\nContent-Length: nope\r\n\r\n",
    ] {
        let response = rejects(&keyward, bytes);
        assert_eq!(response.status, 400, "{:?}: {response}", String::from_utf8_lossy(bytes));
    }
}

#[test]
fn garbage_bytes_are_refused_and_the_daemon_keeps_serving() {
    let keyward = direct();
    let mut noise: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    noise.extend_from_slice(b"\r\n\r\n");
    for bytes in [&noise[..], b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", b"\0\0\0\0\r\n\r\n"] {
        let response = rejects(&keyward, bytes);
        assert_eq!(response.status, 400, "{response}");
    }
    // Bytes and then a close, with no blank line: nothing to answer, and no harm.
    let mut conn = keyward.address.connect().expect("connect");
    conn.send_raw(&noise[..100]).expect("send");
    drop(conn);
    assert_eq!(keyward.health().status, 200);
}

#[test]
fn headers_over_16_kib_are_a_431() {
    let keyward = direct();
    let big = "a".repeat(17 * 1024);
    let response = rejects(&keyward, format!("GET /auth HTTP/1.1\r\nX-Big: {big}\r\n\r\n").as_bytes());
    assert_eq!(response.status, 431, "{response}");
    let many: String = (0..1000).map(|i| format!("X-Header-{i}: value\r\n")).collect();
    let response = rejects(&keyward, format!("GET /auth HTTP/1.1\r\n{many}\r\n").as_bytes());
    assert_eq!(response.status, 431, "{response}");
    // Just under the limit is an ordinary request.
    let fine = "a".repeat(12 * 1024);
    let response = get(&keyward.address, "/health", &[("X-Big", &fine)]);
    assert_eq!(response.status, 200, "{response}");
}

/// A client that sends half its headers and stalls is closed eventually (the contract says 10 s; the test
/// waits up to its 30 s read timeout), and others are served in the meantime.
#[test]
fn a_stalled_client_is_closed_and_others_are_served_meanwhile() {
    let keyward = direct();
    let mut stalled: Vec<_> = (0..8).map(|_| keyward.address.connect().expect("connect")).collect();
    for conn in &mut stalled {
        conn.send_raw(b"GET /auth HTTP/1.1\r\nHost: localhost\r\nX-Half").expect("send half a header");
    }
    let started = Instant::now();
    for _ in 0..20 {
        assert_eq!(keyward.health().status, 200, "served while others stall");
    }
    for conn in &mut stalled {
        // Whatever the daemon says first (a 408 is fine), the connection must end.
        conn.wait_closed().expect("a stalled connection is closed within the 30 s read timeout");
    }
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(keyward.health().status, 200);
}

/// The README shows the example sites the tests run: each block marked `<!-- the file F, verbatim … -->` is
/// F's text exactly, so the snippet a reader copies is the one tested here.
#[test]
fn the_readme_shows_the_tested_proxy_files_verbatim() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let mut shown = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        let Some(rest) = line.strip_prefix("<!-- the file ") else { continue };
        let path = rest.split([' ', ',']).next().expect("a path after `the file`");
        let fence = lines.next().unwrap_or_default();
        assert!(fence.starts_with("```"), "README: a fence must follow the marker for {path}, not {fence:?}");
        let block: Vec<&str> = lines.by_ref().take_while(|line| *line != "```").collect();
        let file = std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("README names {path}: {e}"));
        assert_eq!(block.join("\n"), file.trim_end_matches('\n'), "README's copy of {path} differs from the file");
        shown.push(path.to_owned());
    }
    assert_eq!(shown, ["proxy/nginx.conf", "proxy/Caddyfile"], "the README shows both tested example sites");
}
