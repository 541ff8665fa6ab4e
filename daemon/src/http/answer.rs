//! The endpoint's responses: a granted key's headers for the proxy to pass upstream, a refusal in the
//! protocol's words ([`Refusal`], the same as the tower layer's), and the endpoint's own small answers.
//!
//! Every refusal also carries its real status in `X-Keyward-Status` and its JSON body in
//! `X-Keyward-Error` (ASCII, so it fits a header), because nginx's `auth_request` keeps neither: it passes
//! only 2xx, 401 and 403, drops the body, and lets its configuration read the headers. Sent with
//! `X-Keyward-Refuse-With: 401`, every refusal goes out as a 401 that the nginx snippet turns back into
//! the real status and body.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::Full;
use keyward_protocol::http::{json_string, ratelimit_headers, Refusal};
use keyward_protocol::{RateLimitStatus, VerifiedKey};

pub type Body = Full<Bytes>;

const X_KEYWARD_KEY_ID: HeaderName = HeaderName::from_static("x-keyward-key-id");
const X_KEYWARD_WORKSPACE: HeaderName = HeaderName::from_static("x-keyward-workspace");
const X_KEYWARD_SCOPES: HeaderName = HeaderName::from_static("x-keyward-scopes");
const X_KEYWARD_ROLE: HeaderName = HeaderName::from_static("x-keyward-role");
const X_KEYWARD_ENV: HeaderName = HeaderName::from_static("x-keyward-env");
const X_KEYWARD_EXPIRES_AT: HeaderName = HeaderName::from_static("x-keyward-expires-at");
const X_KEYWARD_ACCOUNT: HeaderName = HeaderName::from_static("x-keyward-account");
const X_KEYWARD_CREDITS: HeaderName = HeaderName::from_static("x-keyward-credits");
const X_KEYWARD_METADATA: HeaderName = HeaderName::from_static("x-keyward-metadata");
const X_KEYWARD_STATUS: HeaderName = HeaderName::from_static("x-keyward-status");
const X_KEYWARD_ERROR: HeaderName = HeaderName::from_static("x-keyward-error");

/// `200` with who the key is and what is left of its limits, as headers; no body. Every `X-Keyward-*`
/// header is sent, empty when it does not apply (no expiry, no account, no credits), so that a proxy
/// copying them upstream replaces a caller's own copy of each instead of letting it through.
pub fn granted(key: &VerifiedKey, credits: Option<u64>, limits: &[RateLimitStatus], now_ms: i64) -> Response<Body> {
    let mut response = Response::new(Body::default());
    let headers = response.headers_mut();
    insert(headers, X_KEYWARD_KEY_ID, &key.id);
    insert(headers, X_KEYWARD_WORKSPACE, &key.workspace);
    insert(headers, X_KEYWARD_SCOPES, &key.scopes.join(" "));
    insert(headers, X_KEYWARD_ROLE, key.role.as_str());
    insert(headers, X_KEYWARD_ENV, key.env.as_str());
    insert(headers, X_KEYWARD_EXPIRES_AT, &key.expires_at.map(|at| at.to_string()).unwrap_or_default());
    insert(headers, X_KEYWARD_ACCOUNT, key.account.as_deref().unwrap_or_default());
    insert(headers, X_KEYWARD_CREDITS, &credits.map(|credits| credits.to_string()).unwrap_or_default());
    insert(headers, X_KEYWARD_METADATA, &metadata_json(key));
    insert_ratelimit(headers, limits, now_ms);
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The key's metadata as a JSON object, ASCII only.
fn metadata_json(key: &VerifiedKey) -> String {
    let pairs: Vec<String> =
        key.metadata.iter().map(|(name, value)| format!("{}:{}", json_string(name), json_string(value))).collect();
    format!("{{{}}}", pairs.join(","))
}

/// `refusal` with its JSON body and headers, and the rate-limit headers of the answer that caused it;
/// sent with `status_override` instead of its own status when the proxy asked for one.
pub fn refused(
    refusal: &Refusal,
    limits: &[RateLimitStatus],
    status_override: Option<u16>,
    now_ms: i64,
) -> Response<Body> {
    let body = refusal.body();
    let mut response = Response::new(Body::from(body.clone()));
    let status = status_override.unwrap_or(refusal.status);
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(challenge) = &refusal.challenge {
        insert(headers, WWW_AUTHENTICATE, challenge);
    }
    if let Some(seconds) = refusal.retry_after {
        headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    headers.insert(X_KEYWARD_STATUS, HeaderValue::from(refusal.status));
    insert(headers, X_KEYWARD_ERROR, &body);
    insert_ratelimit(headers, limits, now_ms);
    response
}

/// The status `response` stands for: a refusal's own, also when it was sent as a 401 for nginx
/// (`X-Keyward-Refuse-With`), so that the figures count a 429 as a 429.
pub fn real_status(response: &Response<Body>) -> u16 {
    let own = response.headers().get(X_KEYWARD_STATUS).and_then(|value| value.to_str().ok()?.parse().ok());
    own.unwrap_or_else(|| response.status().as_u16())
}

/// `GET /health`: the endpoint is serving.
pub fn healthy() -> Response<Body> {
    json(StatusCode::OK, r#"{"status":"ok"}"#.to_owned())
}

/// Any path but the endpoint's own.
pub fn not_found() -> Response<Body> {
    let body = format!(
        r#"{{"error":{{"code":"not_found","message":{},"type":"invalid_request_error"}}}}"#,
        json_string("keywardd answers /auth (forward auth) and /health only")
    );
    json(StatusCode::NOT_FOUND, body)
}

fn json(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn insert_ratelimit(headers: &mut HeaderMap, limits: &[RateLimitStatus], now_ms: i64) {
    for (name, value) in ratelimit_headers(limits, now_ms) {
        insert(headers, HeaderName::from_static(name), &value);
    }
}

/// Sets `name` to `value`; a value that cannot be a header (a name with a control character) is left out
/// and logged rather than failing the whole answer.
fn insert(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    match HeaderValue::try_from(value) {
        Ok(value) => {
            headers.insert(name, value);
        }
        Err(_) => tracing::warn!(header = %name, "a value that cannot be an HTTP header was left out of an answer"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use keyward_protocol::{Environment, Role, VerifyCode};

    use super::*;

    fn key() -> VerifiedKey {
        VerifiedKey {
            id: "a1b2c3d4e5f6".into(),
            workspace: "acme".into(),
            name: "ci".into(),
            env: Environment::Live,
            scopes: vec!["read:tables".into(), "write:forms".into()],
            expires_at: Some(1_800_000_000),
            role: Role::Member,
            metadata: BTreeMap::from([("team".to_owned(), "données".to_owned())]),
            account: None,
        }
    }

    fn header<'a>(response: &'a Response<Body>, name: &str) -> &'a str {
        response.headers().get(name).unwrap_or_else(|| panic!("no {name}")).to_str().unwrap()
    }

    #[test]
    fn a_granted_key_travels_as_headers() {
        let limit = RateLimitStatus {
            policy: "free".into(),
            limit: 100,
            remaining: 99,
            reset_at_ms: 60_000,
            window_seconds: 60,
        };
        let response = granted(&key(), Some(7), &[limit], 0);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "x-keyward-key-id"), "a1b2c3d4e5f6");
        assert_eq!(header(&response, "x-keyward-workspace"), "acme");
        assert_eq!(header(&response, "x-keyward-scopes"), "read:tables write:forms");
        assert_eq!(header(&response, "x-keyward-env"), "live");
        assert_eq!(header(&response, "x-keyward-expires-at"), "1800000000");
        assert_eq!(header(&response, "x-keyward-credits"), "7");
        assert_eq!(header(&response, "x-keyward-metadata"), r#"{"team":"donn\u00e9es"}"#);
        assert_eq!(header(&response, "ratelimit-remaining"), "99");
        assert_eq!(header(&response, "x-keyward-account"), "", "sent empty: a caller's copy never passes");
    }

    #[test]
    fn a_refusal_carries_its_status_and_body_in_headers_too() {
        let refusal = Refusal::answer(VerifyCode::RateLimited, Some(1_500), None, None);
        let response = refused(&refusal, &[], None, 0);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(header(&response, "retry-after"), "2");
        assert_eq!(header(&response, "x-keyward-status"), "429");
        assert_eq!(header(&response, "x-keyward-error"), refusal.body());
        let for_nginx = refused(&refusal, &[], Some(401), 0);
        assert_eq!(for_nginx.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(header(&for_nginx, "x-keyward-status"), "429", "the real status stays readable");
        assert_eq!((real_status(&for_nginx), real_status(&healthy())), (429, 200), "and is what is counted");
    }
}
