//! What a proxy's auth subrequest asks: the caller's API key, the original request it came with, and what
//! that request needs (scope, workspace, named limits, cost), read into a [`VerifyRequest`] — or the
//! [`Refusal`] a request gets when that cannot be read, before anything is verified.
//!
//! The original request is named by `X-Forwarded-Method` and `X-Forwarded-Uri`, which Caddy and Traefik
//! send themselves and the nginx snippet sets; Envoy's `ext_authz` sends the original method itself, and
//! the original path after the configured `path_prefix` (`/auth`). One pair of names only: proxies pass
//! the caller's own headers on to the auth subrequest, so a second name the proxy does not set would be
//! the caller's to choose. What the request needs comes from the route table when one is configured
//! (matched on the original method and path), and from the `X-Keyward-*` headers the proxy sets per
//! location otherwise; those a caller could add on its own only ever ask for more (a scope, a workspace, a
//! limit, a higher cost), never less. This module never logs, and never returns the key but as a
//! [`Secret`].

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, Method, Uri};
use keyward_protocol::http::{bearer_token, BearerError, Refusal};
use keyward_protocol::limits::check_limit_name;
use keyward_protocol::{scope, Secret, VerifyRequest};
use percent_encoding::percent_decode_str;

use crate::config::http::{Route, Segment};
use crate::config::HttpSettings;

/// The path under which the endpoint answers auth subrequests; Envoy appends the original path to it.
pub const AUTH_PATH: &str = "/auth";

const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
const X_KEYWARD_SCOPE: HeaderName = HeaderName::from_static("x-keyward-scope");
const X_KEYWARD_WORKSPACE: HeaderName = HeaderName::from_static("x-keyward-workspace");
const X_KEYWARD_LIMITS: HeaderName = HeaderName::from_static("x-keyward-limits");
const X_KEYWARD_COST: HeaderName = HeaderName::from_static("x-keyward-cost");
/// `X-Keyward-Refuse-With: 401`: send every refusal with this status (nginx's `auth_request` turns any
/// other than 2xx, 401 and 403 into a 500).
const X_KEYWARD_REFUSE_WITH: HeaderName = HeaderName::from_static("x-keyward-refuse-with");

/// How to send a key, in every 401 message about the request rather than the key.
const SEND_KEY: &str = "send Authorization: Bearer <key> or X-API-Key: <key>";

/// The request the proxy is asking about.
#[derive(Debug, PartialEq, Eq)]
pub struct Original {
    pub method: String,
    /// Path and query, as the caller sent them.
    pub uri: String,
}

impl Original {
    /// The original request named by `headers`, or else by the subrequest's own method and the path after
    /// [`AUTH_PATH`]. A name sent twice is refused: which copy is the proxy's cannot be told.
    pub fn of(method: &Method, uri: &Uri, headers: &HeaderMap) -> Result<Original, Refusal> {
        let method = one(headers, &X_FORWARDED_METHOD)?.unwrap_or_else(|| method.as_str().to_owned());
        let uri = match one(headers, &X_FORWARDED_URI)? {
            Some(uri) => uri,
            None => {
                let path = uri.path().strip_prefix(AUTH_PATH).unwrap_or("");
                let path = if path.is_empty() { "/" } else { path };
                match uri.query() {
                    Some(query) => format!("{path}?{query}"),
                    None => path.to_owned(),
                }
            }
        };
        Ok(Original { method, uri })
    }

    fn path(&self) -> &str {
        self.uri.split_once('?').map_or(self.uri.as_str(), |(path, _)| path)
    }

    fn query(&self) -> Option<&str> {
        self.uri.split_once('?').map(|(_, query)| query)
    }
}

/// The first value of `name` that is readable text and not empty (nginx sends an empty value for an unset
/// variable).
fn non_empty<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h str> {
    headers.get_all(name).iter().filter_map(|value| value.to_str().ok()).find(|value| !value.trim().is_empty())
}

/// The status every refusal must be sent with, when the proxy asked for one (`X-Keyward-Refuse-With`).
pub fn refuse_with(headers: &HeaderMap) -> Option<u16> {
    match non_empty(headers, &X_KEYWARD_REFUSE_WITH)?.trim() {
        "401" => Some(401),
        "403" => Some(403),
        _ => None,
    }
}

/// The verify the subrequest asks for, or why it cannot be asked.
pub fn read(original: &Original, headers: &HeaderMap, settings: &HttpSettings) -> Result<VerifyRequest, Refusal> {
    let token = credentials(original, headers, settings)?;
    let needs = if settings.routes.is_empty() { from_headers(headers)? } else { from_routes(original, settings)? };
    Ok(VerifyRequest { token, scope: needs.scope, workspace: needs.workspace, cost: needs.cost, limits: needs.limits })
}

/// What the original request needs of its key.
struct Needs {
    scope: Option<String>,
    workspace: Option<String>,
    limits: Vec<String>,
    cost: u32,
}

/// The one key the subrequest carries: in `Authorization: Bearer`, `X-API-Key`, the configured header, or
/// (when enabled) the configured parameter of the original URI. Two are refused, even when equal: a
/// request should say one thing.
fn credentials(original: &Original, headers: &HeaderMap, settings: &HttpSettings) -> Result<Secret, Refusal> {
    let invalid = |message: String| Refusal::invalid_key(message, true);
    let mut found: Vec<Secret> = Vec::new();
    for value in headers.get_all(AUTHORIZATION) {
        let text = value.to_str().map_err(|_| unreadable("Authorization"))?;
        match bearer_token(text) {
            Ok(token) => found.push(Secret::new(token)),
            Err(BearerError::NotBearer) => return Err(invalid(format!("Use the Bearer scheme: {SEND_KEY}"))),
            Err(BearerError::Empty) => return Err(invalid(format!("The API key is empty: {SEND_KEY}"))),
        }
    }
    for name in std::iter::once(&X_API_KEY).chain(&settings.key_header) {
        for value in headers.get_all(name) {
            let text = value.to_str().map_err(|_| unreadable(name.as_str()))?.trim_matches([' ', '\t']);
            if text.is_empty() {
                return Err(invalid(format!("The API key is empty: {SEND_KEY}")));
            }
            found.push(Secret::new(text));
        }
    }
    if let (Some(parameter), Some(query)) = (&settings.query_parameter, original.query()) {
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            if name == parameter.as_str() {
                found.push(Secret::new(value.into_owned()));
            }
        }
    }
    match found.len() {
        0 => Err(Refusal::invalid_key(format!("Missing API key: {SEND_KEY}"), false)),
        1 => {
            let token = found.pop().expect("one key");
            if token.expose().is_empty() {
                return Err(invalid(format!("The API key is empty: {SEND_KEY}")));
            }
            Ok(token)
        }
        _ => Err(invalid(format!("Send the API key once, in one header: {SEND_KEY}"))),
    }
}

fn unreadable(header: &str) -> Refusal {
    Refusal::invalid_key(format!("The {header} header is not readable text: {SEND_KEY}"), true)
}

/// The requirement headers a proxy sets per location. A value the proxy cannot have meant is its
/// configuration's mistake: a 500 that names the header, never a verify with less than was asked.
fn from_headers(headers: &HeaderMap) -> Result<Needs, Refusal> {
    let scope = one(headers, &X_KEYWARD_SCOPE)?;
    if let Some(scope) = &scope {
        scope::validate(scope).map_err(|e| misconfigured(&X_KEYWARD_SCOPE, &e.to_string()))?;
    }
    let workspace = one(headers, &X_KEYWARD_WORKSPACE)?;
    let limits: Vec<String> = match one(headers, &X_KEYWARD_LIMITS)? {
        Some(list) => list.split(',').map(|name| name.trim().to_owned()).filter(|name| !name.is_empty()).collect(),
        None => Vec::new(),
    };
    for limit in &limits {
        check_limit_name(limit).map_err(|e| misconfigured(&X_KEYWARD_LIMITS, &e.to_string()))?;
    }
    // At least 1: a caller's own copy of the header must not make its requests free.
    let cost = match one(headers, &X_KEYWARD_COST)? {
        Some(cost) => cost
            .parse()
            .ok()
            .filter(|cost| *cost >= 1)
            .ok_or_else(|| misconfigured(&X_KEYWARD_COST, "not a whole number of 1 or more"))?,
        None => 1,
    };
    Ok(Needs { scope, workspace, limits, cost })
}

/// The one value of a header the proxy sets, trimmed; `None` when absent or empty (nginx sends an empty
/// value for an unset variable). Two values are refused: a caller's own copy of the header must never
/// decide beside the proxy's.
fn one(headers: &HeaderMap, name: &HeaderName) -> Result<Option<String>, Refusal> {
    let mut values = headers.get_all(name).iter();
    let (first, second) = (values.next(), values.next());
    if second.is_some() {
        return Err(misconfigured(name, "sent more than once"));
    }
    let Some(value) = first else { return Ok(None) };
    let text = value.to_str().map_err(|_| misconfigured(name, "not readable text"))?.trim();
    Ok((!text.is_empty()).then(|| text.to_owned()))
}

fn misconfigured(header: &HeaderName, why: &str) -> Refusal {
    tracing::warn!(%header, why, "a forward-auth request carried a bad requirement header; answering 500");
    Refusal::internal_because(format!("The proxy's {header} header is wrong ({why}): fix its keyward configuration"))
}

/// The first route matching the original method and path.
fn from_routes(original: &Original, settings: &HttpSettings) -> Result<Needs, Refusal> {
    let segments = normalized_segments(original.path());
    for route in &settings.routes {
        if !route.methods.is_empty() && !route.methods.contains(&original.method) {
            continue;
        }
        if let Some(workspace) = matches(route, &segments) {
            return Ok(Needs { scope: route.scope.clone(), workspace, limits: route.limits.clone(), cost: route.cost });
        }
    }
    Err(Refusal::insufficient_scope("This endpoint is not open to API keys", None))
}

/// The path's segments, percent-decoded, with empty and `.` segments dropped and `..` taking the one
/// before it away (RFC 3986 §5.2.4), so that `/public/../admin` is matched as the `/admin` the upstream
/// will serve.
fn normalized_segments(path: &str) -> Vec<String> {
    let mut segments: Vec<String> = Vec::new();
    for raw in path.split('/') {
        let segment = percent_decode_str(raw).decode_utf8_lossy();
        match segment.as_ref() {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            _ => segments.push(segment.into_owned()),
        }
    }
    segments
}

/// Whether `route` matches `segments`: `Some(workspace)` (the `{workspace}` segment, if the pattern has
/// one) when it does.
fn matches(route: &Route, segments: &[String]) -> Option<Option<String>> {
    let mut workspace = None;
    for (index, pattern) in route.path.iter().enumerate() {
        match (pattern, segments.get(index)) {
            (Segment::Rest, _) => return Some(workspace),
            (_, None) => return None,
            (Segment::Literal(literal), Some(segment)) if literal == segment => {}
            (Segment::Literal(_), Some(_)) => return None,
            (Segment::Any, Some(_)) => {}
            (Segment::Workspace, Some(segment)) => workspace = Some(segment.clone()),
        }
    }
    (segments.len() == route.path.len()).then_some(workspace)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(HeaderName::try_from(*name).unwrap(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn original(uri: &str) -> Original {
        Original { method: "GET".into(), uri: uri.into() }
    }

    fn key(pairs: &[(&str, &str)], settings: &HttpSettings) -> Result<String, (u16, String)> {
        credentials(&original("/v1/x?api_key=from-query"), &headers(pairs), settings)
            .map(|secret| secret.expose().to_owned())
            .map_err(|refusal| (refusal.status, refusal.message))
    }

    #[test]
    fn the_original_request_comes_from_the_forwarded_headers_or_the_path() {
        let auth: Uri = "/auth".parse().unwrap();
        let of = |uri: &Uri, pairs: &[(&str, &str)]| Original::of(&Method::GET, uri, &headers(pairs)).ok().unwrap();
        let forwarded = of(&auth, &[("x-forwarded-method", "POST"), ("x-forwarded-uri", "/v1/tables?a=1")]);
        assert_eq!(forwarded, Original { method: "POST".into(), uri: "/v1/tables?a=1".into() });
        let envoy: Uri = "/auth/v1/tables?limit=5".parse().unwrap();
        assert_eq!(
            Original::of(&Method::PUT, &envoy, &HeaderMap::new()).ok().unwrap(),
            Original { method: "PUT".into(), uri: "/v1/tables?limit=5".into() }
        );
        assert_eq!(of(&auth, &[]).uri, "/");
        assert_eq!(of(&auth, &[("x-forwarded-uri", "")]).uri, "/", "empty is unset");
        assert_eq!(of(&auth, &[("x-original-uri", "/v1/admin")]).uri, "/", "one pair of names only");
        let twice =
            Original::of(&Method::GET, &auth, &headers(&[("x-forwarded-uri", "/a"), ("x-forwarded-uri", "/b")]));
        assert_eq!(twice.err().map(|refusal| refusal.status), Some(500), "which copy is the proxy's?");
    }

    #[test]
    fn exactly_one_key_from_any_source() {
        let plain = HttpSettings::default();
        assert_eq!(key(&[("authorization", "Bearer kw_a")], &plain), Ok("kw_a".into()));
        assert_eq!(key(&[("x-api-key", " kw_b ")], &plain), Ok("kw_b".into()));
        assert_eq!(key(&[], &plain).unwrap_err().0, 401);
        let (status, message) = key(&[("authorization", "Bearer kw_a"), ("x-api-key", "kw_a")], &plain).unwrap_err();
        assert_eq!((status, message.contains("once")), (401, true), "two keys, even equal");
        assert!(key(&[("authorization", "Basic abc")], &plain).unwrap_err().1.contains("Bearer scheme"));
        assert!(key(&[("x-api-key", "")], &plain).unwrap_err().1.contains("empty"));
        assert_eq!(key(&[("x-custom", "kw_c")], &plain).unwrap_err().0, 401, "an unconfigured header is not read");

        let custom = HttpSettings {
            key_header: Some(HeaderName::from_static("x-custom")),
            query_parameter: Some("api_key".into()),
            ..HttpSettings::default()
        };
        assert_eq!(key(&[("x-custom", "kw_c")], &custom).unwrap_err().0, 401, "the query's key is a second one");
        let no_query = credentials(&original("/v1/x"), &headers(&[("x-custom", "kw_c")]), &custom);
        assert_eq!(no_query.unwrap().expose(), "kw_c");
        assert_eq!(key(&[], &custom), Ok("from-query".into()));
        let missing = credentials(&original("/v1/x"), &HeaderMap::new(), &plain).unwrap_err();
        assert_eq!(missing.challenge.as_deref(), Some("Bearer"), "a bare challenge when nothing was sent");
    }

    #[test]
    fn requirement_headers_are_checked_and_never_doubled() {
        let needs = from_headers(&headers(&[
            ("x-keyward-scope", "write:tables"),
            ("x-keyward-workspace", "acme"),
            ("x-keyward-limits", "exports, imports"),
            ("x-keyward-cost", "3"),
        ]))
        .unwrap_or_else(|refusal| panic!("{refusal:?}"));
        assert_eq!(needs.scope.as_deref(), Some("write:tables"));
        assert_eq!(needs.workspace.as_deref(), Some("acme"));
        assert_eq!((needs.limits, needs.cost), (vec!["exports".to_owned(), "imports".to_owned()], 3));
        let empty = from_headers(&headers(&[("x-keyward-scope", ""), ("x-keyward-workspace", " ")])).ok().unwrap();
        assert_eq!((empty.scope, empty.workspace, empty.cost), (None, None, 1), "empty means unset");
        for bad in [
            &[("x-keyward-scope", "write:Tables")][..],
            &[("x-keyward-scope", "read:tables"), ("x-keyward-scope", "admin")],
            &[("x-keyward-cost", "-1")],
            &[("x-keyward-cost", "0")],
            &[("x-keyward-limits", "Bad Name")],
        ] {
            let refusal = from_headers(&headers(bad)).err().unwrap();
            assert_eq!((refusal.status, refusal.code), (500, "internal_error"), "{bad:?}");
        }
        assert_eq!(refuse_with(&headers(&[("x-keyward-refuse-with", "401")])), Some(401));
        assert_eq!(refuse_with(&headers(&[("x-keyward-refuse-with", "500")])), None);
    }

    #[test]
    fn routes_match_on_the_normalized_original_path() {
        let route = |methods: &[&str], path: &str, scope: &str| {
            let methods: Vec<String> = methods.iter().map(|m| m.to_string()).collect();
            Route::new(&methods, path, Some(scope), &[], None).unwrap()
        };
        let settings = HttpSettings {
            routes: vec![
                route(&["GET"], "/v1/workspaces/{workspace}/tables/**", "read:tables"),
                route(&[], "/v1/workspaces/{workspace}/tables/**", "write:tables"),
                route(&[], "/v1/admin/*", "admin"),
            ],
            ..HttpSettings::default()
        };
        let needs = |method: &str, uri: &str| {
            from_routes(&Original { method: method.into(), uri: uri.into() }, &settings)
                .map(|needs| (needs.scope.unwrap_or_default(), needs.workspace.unwrap_or_default()))
                .map_err(|refusal| refusal.status)
        };
        assert_eq!(needs("GET", "/v1/workspaces/acme/tables"), Ok(("read:tables".into(), "acme".into())));
        assert_eq!(needs("POST", "/v1/workspaces/acme/tables/7?x=1"), Ok(("write:tables".into(), "acme".into())));
        assert_eq!(needs("GET", "/v1/workspaces/a%20b/tables/1"), Ok(("read:tables".into(), "a b".into())));
        assert_eq!(needs("GET", "/v1/public/../admin/users"), Ok(("admin".into(), String::new())), "dot segments");
        assert_eq!(needs("GET", "//v1/./admin//users"), Ok(("admin".into(), String::new())));
        assert_eq!(needs("GET", "/v1/admin/users/1"), Err(403), "* is one segment");
        assert_eq!(needs("GET", "/v2/anything"), Err(403), "no route: refused");
    }
}
