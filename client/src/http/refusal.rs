//! [`Refusal`]: every answer the layer gives instead of calling the inner service, and the one place such
//! an answer becomes an HTTP response.
//!
//! The body is always `{"error":{"code":"…","message":"…","type":"…"}}`. A message tells the caller what
//! it can fix and never holds the token, nor anything that says whether a key id exists: an unknown key
//! and a wrong secret both read "The API key provided is invalid". The table in the [module
//! documentation](super) lists every status, code, type and header.

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use keyward_protocol::VerifyCode;
use serde::Serialize;

use super::credentials::CredentialError;

/// How to send a key, in every 401 message that is about the request rather than the key.
const SEND_BEARER: &str = "send Authorization: Bearer <key>";

/// A refused request: status, stable code, error type, message and headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    /// `invalid_api_key`, `insufficient_scope`, `wrong_workspace`, `rate_limited`, `usage_exceeded`,
    /// `auth_unavailable` or `internal_error`.
    pub(crate) code: &'static str,
    /// `authentication_error`, `permission_error`, `rate_limit_error` or `api_error`.
    pub(crate) kind: &'static str,
    pub(crate) message: String,
    /// The `WWW-Authenticate` challenge (401, and 403 for a missing scope).
    pub(crate) challenge: Option<String>,
    /// `Retry-After`, in whole seconds.
    pub(crate) retry_after: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
}

impl Refusal {
    /// A 401 `invalid_api_key` with `message`; the challenge names `invalid_token` when a token was given
    /// (RFC 6750 §3: a request without credentials gets a bare challenge).
    fn invalid_key(message: impl Into<String>, token_given: bool) -> Refusal {
        Refusal {
            status: StatusCode::UNAUTHORIZED,
            code: "invalid_api_key",
            kind: "authentication_error",
            message: message.into(),
            challenge: Some(if token_given { r#"Bearer error="invalid_token""# } else { "Bearer" }.to_owned()),
            retry_after: None,
        }
    }

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

    /// The daemon's answer to a verify that is not `VALID`. `scope` and `workspace` are what the route
    /// required, for the 403 messages.
    pub(crate) fn answer(
        code: VerifyCode,
        retry_after_ms: Option<u64>,
        scope: Option<&str>,
        workspace: Option<&str>,
    ) -> Refusal {
        let invalid = |message: &str| Refusal::invalid_key(message, true);
        match code {
            // The layer never sends an empty token, but the daemon's word is mapped all the same.
            VerifyCode::Missing => Refusal::credentials(CredentialError::Missing, false),
            VerifyCode::Malformed => {
                invalid("Malformed API key: use the full key exactly as it was shown at creation, not just its id")
            }
            VerifyCode::NotFound => invalid("The API key provided is invalid"),
            VerifyCode::Expired => invalid("The API key has expired: create a new key"),
            VerifyCode::Revoked => invalid("The API key has been revoked: create a new key"),
            VerifyCode::Inactive => {
                invalid("The API key is deactivated: ask a workspace admin to activate it, or create a new key")
            }
            VerifyCode::LegacySunset => {
                invalid("Legacy personal API keys no longer work: create a workspace key and use it instead")
            }
            VerifyCode::InsufficientScope => Refusal {
                status: StatusCode::FORBIDDEN,
                code: "insufficient_scope",
                kind: "permission_error",
                message: match scope {
                    Some(scope) => format!("This key lacks the {scope} scope"),
                    None => "This key lacks the scope this endpoint requires".into(),
                },
                // RFC 6750 §3.1; a scope is `a-z0-9:_-` only (the protocol's syntax), safe in a quoted string.
                challenge: Some(match scope {
                    Some(scope) => format!(r#"Bearer error="insufficient_scope", scope="{scope}""#),
                    None => r#"Bearer error="insufficient_scope""#.to_owned(),
                }),
                retry_after: None,
            },
            VerifyCode::WrongWorkspace => Refusal {
                status: StatusCode::FORBIDDEN,
                code: "wrong_workspace",
                kind: "permission_error",
                message: match workspace {
                    Some(workspace) => format!("This key cannot act on workspace {workspace}: it belongs to another"),
                    None => "This key cannot act on this workspace: it belongs to another".into(),
                },
                challenge: None,
                retry_after: None,
            },
            VerifyCode::RateLimited => {
                // Rounded up, and never 0: a client told to retry now would only be refused again.
                let retry_after = retry_after_ms.map(|ms| ms.div_ceil(1000).max(1));
                Refusal {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    code: "rate_limited",
                    kind: "rate_limit_error",
                    message: match retry_after {
                        Some(1) => "Rate limit exceeded: retry after 1 second".into(),
                        Some(seconds) => format!("Rate limit exceeded: retry after {seconds} seconds"),
                        // Only a request costing more than the limit's whole window has no retry time.
                        None => "This request costs more than this key's rate limit allows in one window".into(),
                    },
                    challenge: None,
                    retry_after,
                }
            }
            VerifyCode::UsageExceeded => Refusal {
                status: StatusCode::TOO_MANY_REQUESTS,
                code: "usage_exceeded",
                kind: "rate_limit_error",
                message: "This key has used up its credits: wait for the refill or add credits".into(),
                challenge: None,
                retry_after: None,
            },
            // The daemon answers BUSY as an error, never as a verify code; mapped as that error is.
            VerifyCode::Busy => Refusal::unavailable(),
            // A VALID answer is never a refusal; reaching here means the daemon contradicted itself.
            VerifyCode::Valid => Refusal::internal(),
        }
    }

    /// The route takes the workspace from the request and this request names none; nothing was sent to
    /// the daemon.
    pub(crate) fn no_workspace() -> Refusal {
        Refusal {
            status: StatusCode::FORBIDDEN,
            code: "wrong_workspace",
            kind: "permission_error",
            message: "This request does not name a workspace".into(),
            challenge: None,
            retry_after: None,
        }
    }

    /// The daemon could not be asked (unreachable, timed out, overloaded): fail closed.
    pub(crate) fn unavailable() -> Refusal {
        Refusal {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "auth_unavailable",
            kind: "api_error",
            message: "API key verification is temporarily unavailable: retry shortly".into(),
            challenge: None,
            retry_after: Some(1),
        }
    }

    /// The server cannot authenticate the request for a reason of its own (a misconfiguration).
    pub(crate) fn internal() -> Refusal {
        Refusal {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal_error",
            kind: "api_error",
            message: "The server could not authenticate this request".into(),
            challenge: None,
            retry_after: None,
        }
    }

    /// The HTTP response: status, JSON body, `Content-Type`, `Cache-Control: no-store`, and
    /// `WWW-Authenticate` and `Retry-After` where they apply.
    pub(crate) fn into_response(self) -> Response<Bytes> {
        let body = Body { error: Detail { code: self.code, message: &self.message, kind: self.kind } };
        let body = serde_json::to_vec(&body).expect("a struct of strings always serializes");
        let mut response = Response::new(Bytes::from(body));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        // An answer about credentials must not be replayed by a cache to another caller.
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(challenge) = self.challenge.and_then(|challenge| HeaderValue::try_from(challenge).ok()) {
            headers.insert(WWW_AUTHENTICATE, challenge);
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn body(refusal: Refusal) -> (StatusCode, http::HeaderMap, Value) {
        let (parts, body) = refusal.into_response().into_parts();
        (parts.status, parts.headers, serde_json::from_slice(&body).expect("a JSON body"))
    }

    #[test]
    fn every_401_is_invalid_api_key_with_a_specific_message() {
        let codes = [
            (VerifyCode::Malformed, "not just its id"),
            (VerifyCode::NotFound, "The API key provided is invalid"),
            (VerifyCode::Expired, "expired"),
            (VerifyCode::Revoked, "revoked"),
            (VerifyCode::Inactive, "deactivated"),
            (VerifyCode::LegacySunset, "Legacy personal API keys"),
        ];
        for (code, says) in codes {
            let (status, headers, value) = body(Refusal::answer(code, None, None, None));
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{code}");
            assert_eq!(value["error"]["code"], "invalid_api_key");
            assert_eq!(value["error"]["type"], "authentication_error");
            assert!(value["error"]["message"].as_str().unwrap().contains(says), "{code}: {value}");
            assert_eq!(headers[WWW_AUTHENTICATE], r#"Bearer error="invalid_token""#);
            assert_eq!(headers[CONTENT_TYPE], "application/json");
        }
        let (_, _, not_found) = body(Refusal::answer(VerifyCode::NotFound, None, None, None));
        assert_eq!(
            not_found,
            json!({"error": {"code": "invalid_api_key", "message": "The API key provided is invalid", "type": "authentication_error"}})
        );
    }

    #[test]
    fn a_missing_key_gets_a_bare_challenge() {
        let (status, headers, value) = body(Refusal::credentials(CredentialError::Missing, false));
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(headers[WWW_AUTHENTICATE], "Bearer");
        assert_eq!(value["error"]["message"], "Missing Authorization header: send Authorization: Bearer <key>");
        let (_, headers, _) = body(Refusal::credentials(CredentialError::TwoHeaders, false));
        assert_eq!(headers[WWW_AUTHENTICATE], r#"Bearer error="invalid_token""#);
        let (_, _, value) = body(Refusal::credentials(CredentialError::Missing, true));
        assert!(value["error"]["message"].as_str().unwrap().contains("api_key query parameter"));
    }

    #[test]
    fn forbidden_names_the_scope_or_workspace() {
        let (status, headers, value) =
            body(Refusal::answer(VerifyCode::InsufficientScope, None, Some("write:tables"), None));
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(
            value,
            json!({"error": {"code": "insufficient_scope", "message": "This key lacks the write:tables scope", "type": "permission_error"}})
        );
        assert_eq!(headers[WWW_AUTHENTICATE], r#"Bearer error="insufficient_scope", scope="write:tables""#);
        let (status, _, value) = body(Refusal::answer(VerifyCode::WrongWorkspace, None, None, Some("acme")));
        assert_eq!((status, &value["error"]["code"]), (StatusCode::FORBIDDEN, &json!("wrong_workspace")));
        assert!(value["error"]["message"].as_str().unwrap().contains("workspace acme"));
    }

    #[test]
    fn too_many_requests_says_when_to_retry() {
        let (status, headers, value) = body(Refusal::answer(VerifyCode::RateLimited, Some(1_001), None, None));
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(headers[RETRY_AFTER], "2", "rounded up");
        assert_eq!(value["error"]["code"], "rate_limited");
        assert_eq!(value["error"]["type"], "rate_limit_error");
        assert_eq!(value["error"]["message"], "Rate limit exceeded: retry after 2 seconds");
        let (_, headers, _) = body(Refusal::answer(VerifyCode::RateLimited, Some(0), None, None));
        assert_eq!(headers[RETRY_AFTER], "1", "never 0");
        let (_, headers, _) = body(Refusal::answer(VerifyCode::RateLimited, None, None, None));
        assert!(headers.get(RETRY_AFTER).is_none(), "no retry can fit");
        let (status, headers, value) = body(Refusal::answer(VerifyCode::UsageExceeded, None, None, None));
        assert_eq!((status, &value["error"]["code"]), (StatusCode::TOO_MANY_REQUESTS, &json!("usage_exceeded")));
        assert!(headers.get(RETRY_AFTER).is_none());
    }

    #[test]
    fn unavailable_fails_closed_with_a_retry() {
        let (status, headers, value) = body(Refusal::unavailable());
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers[RETRY_AFTER], "1");
        assert_eq!(value["error"]["code"], "auth_unavailable");
        assert_eq!(value["error"]["type"], "api_error");
        assert_eq!(headers[CACHE_CONTROL], "no-store");
    }
}
