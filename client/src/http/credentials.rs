//! Finding the API key in a request, and taking it out.
//!
//! This module owns where a token may come from (`Authorization: Bearer <token>`, and the `api_key` query
//! parameter when the route allows it) and what counts as a malformed request: two Authorization headers,
//! a header and the parameter together, the parameter twice, another scheme than Bearer, an empty token.
//! [`take`] always removes every Authorization header and every `api_key` parameter from the request,
//! whatever it concludes, so that no path through the layer can forward a token to the inner service. It
//! never looks at the body, and never logs or returns the token except as a [`Secret`].

use std::borrow::Cow;

use http::header::AUTHORIZATION;
use http::request::Parts;
use http::uri::{PathAndQuery, Uri};
use keyward_protocol::http::BearerError;
use keyward_protocol::Secret;

/// The query parameter a token may travel in, when the route allows it.
pub(crate) const QUERY_PARAMETER: &str = "api_key";

/// Why a request's credentials cannot be used, found before anything is sent to the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CredentialError {
    /// Neither an Authorization header nor (where allowed) an `api_key` parameter.
    Missing,
    /// More than one Authorization header.
    TwoHeaders,
    /// More than one `api_key` parameter.
    TwoParameters,
    /// An Authorization header and an `api_key` parameter.
    HeaderAndParameter,
    /// An `api_key` parameter on a route that does not accept one.
    ParameterNotAllowed,
    /// An Authorization header with another scheme than Bearer (or a bare token).
    NotBearer,
    /// `Authorization: Bearer` with nothing after it, or an empty `api_key`.
    Empty,
    /// An Authorization header that is not visible ASCII text.
    Unreadable,
}

impl CredentialError {
    /// Whether the request carried something meant as a token (RFC 6750: only then does the challenge
    /// name an error).
    pub(crate) fn token_given(self) -> bool {
        self != CredentialError::Missing
    }
}

/// Takes the token out of `parts`: removes every Authorization header and every `api_key` query
/// parameter (rewriting the URI without them), then says which token the request carried, or why it
/// cannot be used.
pub(crate) fn take(parts: &mut Parts, allow_parameter: bool) -> Result<Secret, CredentialError> {
    let headers: Vec<http::HeaderValue> = match parts.headers.entry(AUTHORIZATION) {
        http::header::Entry::Occupied(entry) => entry.remove_entry_mult().1.collect(),
        http::header::Entry::Vacant(_) => Vec::new(),
    };
    let parameters = match parts.uri.query() {
        Some(query) if mentions_parameter(query) => {
            let (kept, taken) = split_query(query);
            let uri = without_query_parameter(&parts.uri, kept.as_deref());
            // A URI that cannot be rebuilt without the token must not go on with it: refuse the request.
            parts.uri = uri.ok_or(CredentialError::Unreadable)?;
            taken
        }
        _ => Vec::new(),
    };
    match (headers.as_slice(), parameters.len()) {
        ([_, _, ..], _) => Err(CredentialError::TwoHeaders),
        ([_], 1..) => Err(CredentialError::HeaderAndParameter),
        ([], 1..) if !allow_parameter => Err(CredentialError::ParameterNotAllowed),
        ([], 2..) => Err(CredentialError::TwoParameters),
        ([header], 0) => bearer_token(header),
        ([], _) => match parameters.into_iter().next() {
            Some(token) if !token.is_empty() => Ok(token),
            Some(_) => Err(CredentialError::Empty),
            None => Err(CredentialError::Missing),
        },
    }
}

/// The token of an `Authorization: Bearer <token>` value (the protocol's rule).
fn bearer_token(value: &http::HeaderValue) -> Result<Secret, CredentialError> {
    let text = value.to_str().map_err(|_| CredentialError::Unreadable)?;
    match keyward_protocol::http::bearer_token(text) {
        Ok(token) => Ok(Secret::new(token)),
        Err(BearerError::NotBearer) => Err(CredentialError::NotBearer),
        Err(BearerError::Empty) => Err(CredentialError::Empty),
    }
}

/// A cheap pre-check, so that most queries cost no parsing. It may say yes wrongly (`xapi_key=`, any
/// percent-encoded text), never no wrongly: a name spelled with escapes (`%61pi_key`) has a `%`.
fn mentions_parameter(query: &str) -> bool {
    query.contains(QUERY_PARAMETER) || query.contains('%')
}

/// The query without its `api_key` pairs (the other pairs byte for byte as they were; `None` when none
/// is left), and the decoded values of the pairs taken out.
fn split_query(query: &str) -> (Option<String>, Vec<Secret>) {
    let mut kept: Vec<&str> = Vec::new();
    let mut taken = Vec::new();
    for pair in query.split('&') {
        match form_urlencoded::parse(pair.as_bytes()).next() {
            Some((name, value)) if name == QUERY_PARAMETER => taken.push(Secret::new(value.into_owned())),
            _ => kept.push(pair),
        }
    }
    let kept = kept.join("&");
    ((!kept.is_empty()).then_some(kept), taken)
}

/// `uri` with its query replaced by `query`; `None` if the result is not a URI (it always is: only whole
/// `&`-separated pairs were removed).
fn without_query_parameter(uri: &Uri, query: Option<&str>) -> Option<Uri> {
    let path_and_query: Cow<'_, str> = match query {
        Some(query) => Cow::Owned(format!("{}?{query}", uri.path())),
        None => Cow::Borrowed(uri.path()),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(path_and_query.as_ref()).ok()?);
    Uri::from_parts(parts).ok()
}

/// `uri` without its `api_key` parameters, for the other copies of the URI a framework keeps (axum's
/// `OriginalUri`). Unchanged when it has none.
#[cfg_attr(not(feature = "axum"), allow(dead_code))]
pub(crate) fn strip_parameter(uri: &Uri) -> Option<Uri> {
    let query = uri.query().filter(|query| mentions_parameter(query))?;
    let (kept, taken) = split_query(query);
    if taken.is_empty() {
        return None;
    }
    without_query_parameter(uri, kept.as_deref())
}

#[cfg(test)]
mod tests {
    use http::Request;

    use super::*;

    fn parts(uri: &str, authorization: &[&str]) -> Parts {
        let mut builder = Request::builder().uri(uri);
        for value in authorization {
            builder = builder.header(AUTHORIZATION, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    fn token(uri: &str, authorization: &[&str], allow: bool) -> (Result<String, CredentialError>, Parts) {
        let mut parts = parts(uri, authorization);
        let taken = take(&mut parts, allow).map(|secret| secret.expose().to_owned());
        assert!(parts.headers.get(AUTHORIZATION).is_none(), "the header is always taken out");
        let left = parts.uri.query().map_or(0, |query| split_query(query).1.len());
        assert_eq!(left, 0, "the parameter is always taken out: {}", parts.uri);
        (taken, parts)
    }

    #[test]
    fn bearer_in_any_case_with_whitespace_trimmed() {
        for value in ["Bearer kw_live_abc", "bearer kw_live_abc", "BEARER   kw_live_abc  ", "  Bearer\tkw_live_abc"] {
            assert_eq!(token("/v1/tables", &[value], false).0, Ok("kw_live_abc".into()), "{value:?}");
        }
    }

    #[test]
    fn malformed_headers() {
        let cases = [
            (&["Basic dXNlcjpwYXNz"][..], CredentialError::NotBearer),
            (&["kw_live_abc"], CredentialError::NotBearer),
            (&["Bearerkw_live_abc"], CredentialError::NotBearer),
            (&["Bearer"], CredentialError::Empty),
            (&["Bearer   "], CredentialError::Empty),
            (&["Bearer a", "Bearer b"], CredentialError::TwoHeaders),
            (&["Bearer a", "Bearer a"], CredentialError::TwoHeaders),
        ];
        for (headers, expected) in cases {
            assert_eq!(token("/", headers, true).0, Err(expected), "{headers:?}");
        }
        let mut parts = parts("/", &[]);
        parts.headers.insert(AUTHORIZATION, http::HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap());
        assert_eq!(take(&mut parts, false).map(|_| ()), Err(CredentialError::Unreadable));
        assert_eq!(token("/v1/tables", &[], false).0, Err(CredentialError::Missing));
        assert!(!CredentialError::Missing.token_given() && CredentialError::Empty.token_given());
    }

    #[test]
    fn the_query_parameter_only_where_allowed() {
        let (taken, parts) = token("/v1/tables?limit=5&api_key=kw_live_abc&sort=name", &[], true);
        assert_eq!(taken, Ok("kw_live_abc".into()));
        assert_eq!(parts.uri, "/v1/tables?limit=5&sort=name", "other pairs kept as they were");
        let (taken, parts) = token("/v1/tables?api_key=kw_live_abc", &[], false);
        assert_eq!(taken, Err(CredentialError::ParameterNotAllowed));
        assert_eq!(parts.uri, "/v1/tables", "taken out even when refused");
        assert_eq!(token("/v1/tables?api_key=a%2Bb+c", &[], true).0, Ok("a+b c".into()), "form-decoded");
        assert_eq!(token("/v1/tables?api%5Fkey=kw_live_abc", &[], true).0, Ok("kw_live_abc".into()));
        assert_eq!(token("/v1/tables?%61pi_key=kw_live_abc", &[], false).0, Err(CredentialError::ParameterNotAllowed));
        assert_eq!(token("/?api_key=a&api_key=b", &[], true).0, Err(CredentialError::TwoParameters));
        assert_eq!(token("/?api_key=", &[], true).0, Err(CredentialError::Empty));
        assert_eq!(token("/?api_key=a", &["Bearer a"], true).0, Err(CredentialError::HeaderAndParameter));
        assert_eq!(token("/?api_key=a", &["Bearer a"], false).0, Err(CredentialError::HeaderAndParameter));
        let (taken, parts) = token("/v1/tables?xapi_key=1&api_keys=2", &["Bearer t"], false);
        assert_eq!(taken, Ok("t".into()), "other names are not the parameter");
        assert_eq!(parts.uri, "/v1/tables?xapi_key=1&api_keys=2");
    }

    #[test]
    fn absolute_uris_keep_their_authority() {
        let (taken, parts) = token("http://api.example:8080/v1/tables?api_key=t&x=1", &[], true);
        assert_eq!(taken, Ok("t".into()));
        assert_eq!(parts.uri, "http://api.example:8080/v1/tables?x=1");
        let original: Uri = "/v1/tables?api_key=t".parse().unwrap();
        assert_eq!(strip_parameter(&original), Some("/v1/tables".parse().unwrap()));
        assert_eq!(strip_parameter(&"/v1/tables?x=1".parse().unwrap()), None);
    }
}
