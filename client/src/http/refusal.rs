//! Every answer the layer gives instead of calling the inner service becomes an HTTP response here, and
//! only here. What each refusal says (status, code, type, message, headers) is the protocol's
//! [`Refusal`], shared with the daemon's forward-auth endpoint; this module adds the messages about a
//! request's credentials, which only the layer finds, and the `http` types. The table in the [module
//! documentation](super) lists every status, code, type and header.

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
pub(crate) use keyward_protocol::http::Refusal;
use keyward_protocol::http::SEND_BEARER;

use super::credentials::CredentialError;

/// The request's credentials are missing or malformed; nothing was sent to the daemon.
pub(crate) fn credentials(error: CredentialError, allow_parameter: bool) -> Refusal {
    let message = match error {
        CredentialError::Missing if allow_parameter => {
            format!("Missing API key: {SEND_BEARER} (or the api_key query parameter)")
        }
        CredentialError::Missing => format!("Missing Authorization header: {SEND_BEARER}"),
        CredentialError::TwoHeaders => format!("Send one Authorization header, not several: {SEND_BEARER}"),
        CredentialError::TwoParameters => "Send the api_key query parameter once, not several times".into(),
        CredentialError::HeaderAndParameter => {
            "Send the API key once: in the Authorization header or the api_key query parameter, not both".into()
        }
        CredentialError::ParameterNotAllowed => format!(
            "API keys are not accepted in the api_key query parameter here (URLs end up in logs): {SEND_BEARER}"
        ),
        CredentialError::NotBearer => format!("Use the Bearer scheme: {SEND_BEARER}"),
        CredentialError::Empty => format!("The API key is empty: {SEND_BEARER}"),
        CredentialError::Unreadable => format!("The Authorization header is not readable text: {SEND_BEARER}"),
    };
    Refusal::invalid_key(message, error.token_given())
}

/// The HTTP response: status, JSON body, `Content-Type`, `Cache-Control: no-store`, and
/// `WWW-Authenticate` and `Retry-After` where they apply.
pub(crate) fn response(refusal: Refusal) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from(refusal.body()));
    *response.status_mut() = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // An answer about credentials must not be replayed by a cache to another caller.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(challenge) = refusal.challenge.and_then(|challenge| HeaderValue::try_from(challenge).ok()) {
        headers.insert(WWW_AUTHENTICATE, challenge);
    }
    if let Some(seconds) = refusal.retry_after {
        headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

#[cfg(test)]
mod tests {
    use keyward_protocol::VerifyCode;
    use serde_json::{json, Value};

    use super::*;

    fn body(refusal: Refusal) -> (StatusCode, http::HeaderMap, Value) {
        let (parts, body) = response(refusal).into_parts();
        (parts.status, parts.headers, serde_json::from_slice(&body).expect("a JSON body"))
    }

    #[test]
    fn a_refusal_becomes_its_status_json_body_and_headers() {
        let (status, headers, value) = body(Refusal::answer(VerifyCode::NotFound, None, None, None));
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            value,
            json!({"error": {"code": "invalid_api_key", "message": "The API key provided is invalid", "type": "authentication_error"}})
        );
        assert_eq!(headers[WWW_AUTHENTICATE], r#"Bearer error="invalid_token""#);
        assert_eq!(headers[CONTENT_TYPE], "application/json");
        assert_eq!(headers[CACHE_CONTROL], "no-store");
        assert!(headers.get(RETRY_AFTER).is_none());

        let (status, headers, value) =
            body(Refusal::answer(VerifyCode::InsufficientScope, None, Some("write:tables"), None));
        assert_eq!((status, &value["error"]["code"]), (StatusCode::FORBIDDEN, &json!("insufficient_scope")));
        assert_eq!(headers[WWW_AUTHENTICATE], r#"Bearer error="insufficient_scope", scope="write:tables""#);

        let (status, headers, value) = body(Refusal::answer(VerifyCode::RateLimited, Some(1_001), None, None));
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(headers[RETRY_AFTER], "2", "rounded up");
        assert_eq!(value["error"]["type"], "rate_limit_error");

        let (status, headers, value) = body(Refusal::unavailable());
        assert_eq!((status, &headers[RETRY_AFTER]), (StatusCode::SERVICE_UNAVAILABLE, &HeaderValue::from_static("1")));
        assert_eq!(value["error"]["code"], "auth_unavailable");
    }

    #[test]
    fn a_missing_key_gets_a_bare_challenge() {
        let (status, headers, value) = body(credentials(CredentialError::Missing, false));
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(headers[WWW_AUTHENTICATE], "Bearer");
        assert_eq!(value["error"]["message"], "Missing Authorization header: send Authorization: Bearer <key>");
        let (_, headers, _) = body(credentials(CredentialError::TwoHeaders, false));
        assert_eq!(headers[WWW_AUTHENTICATE], r#"Bearer error="invalid_token""#);
        let (_, _, value) = body(credentials(CredentialError::Missing, true));
        assert!(value["error"]["message"].as_str().unwrap().contains("api_key query parameter"));
    }
}
