//! [`HttpSettings`]: the forward-auth endpoint's settings (`[http]` and `[[http.route]]`), checked when the
//! file is read so that a bad address, header name, scope or route pattern stops the daemon at startup (or
//! keeps the old settings on a reload) instead of refusing requests later.

use std::net::SocketAddr;
use std::path::PathBuf;

use http::HeaderName;

use keyward_protocol::limits::check_limit_name;
use keyward_protocol::scope;

/// Where the endpoint listens, and how it reads a request. Off when `listen` is empty (the default).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpSettings {
    pub listen: Vec<Listen>,
    /// One more header an API key may arrive in, besides `Authorization: Bearer` and `X-API-Key`.
    pub key_header: Option<HeaderName>,
    /// The query parameter of the original URI an API key may arrive in; `None` (the default) accepts
    /// none: URLs end up in logs.
    pub query_parameter: Option<String>,
    /// Open HTTP connections, over every listener; past that, newcomers wait in the kernel's backlog.
    pub max_connections: usize,
    /// When any is set, the routes decide what each original request needs, and the `X-Keyward-*`
    /// requirement headers are ignored.
    pub routes: Vec<Route>,
}

impl Default for HttpSettings {
    fn default() -> HttpSettings {
        HttpSettings {
            listen: Vec::new(),
            key_header: None,
            query_parameter: None,
            max_connections: 1024,
            routes: Vec::new(),
        }
    }
}

/// One listening address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    /// A loopback address and port.
    Tcp(SocketAddr),
    /// A Unix socket path, created like the verify socket (its mode and group, its peers).
    Unix(PathBuf),
}

impl Listen {
    /// Parses `text`: an absolute path is a Unix socket; anything else must be a loopback `host:port`
    /// (`127.0.0.1:9311`, `[::1]:9311`, `localhost:9311`). The endpoint has no TLS and answers anyone who
    /// reaches it, so it never listens beyond the host.
    pub fn parse(text: &str) -> Result<Listen, String> {
        if text.starts_with('/') {
            return Ok(Listen::Unix(PathBuf::from(text)));
        }
        let address = match text.strip_prefix("localhost:") {
            Some(port) => format!("127.0.0.1:{port}"),
            None => text.to_owned(),
        };
        let address: SocketAddr = address
            .parse()
            .map_err(|_| format!("{text:?} is neither an absolute socket path nor a host:port address"))?;
        if !address.ip().is_loopback() {
            return Err(format!(
                "{text:?} is not a loopback address: the endpoint speaks plain HTTP, so it listens on 127.0.0.1, \
                 [::1] or a Unix socket only"
            ));
        }
        Ok(Listen::Tcp(address))
    }
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Tcp(address) => write!(f, "http://{address}"),
            Listen::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// What requests to one family of paths need: `path = "/v1/workspaces/{workspace}/tables/**"`,
/// `methods = ["GET"]`, `scope = "read:tables"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Upper case; empty for any method.
    pub methods: Vec<String>,
    pub path: Vec<Segment>,
    /// The pattern as written, for logs and messages.
    pub pattern: String,
    pub scope: Option<String>,
    pub limits: Vec<String>,
    pub cost: u32,
}

/// One segment of a route's path pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    /// Matches itself.
    Literal(String),
    /// `{workspace}`: any one segment, which names the workspace the key must belong to.
    Workspace,
    /// `*`: any one segment.
    Any,
    /// `**`, last only: the rest of the path, however many segments (none too).
    Rest,
}

impl Route {
    /// A route from its parts as the file gives them.
    pub fn new(
        methods: &[String],
        pattern: &str,
        scope: Option<&str>,
        limits: &[String],
        cost: Option<u32>,
    ) -> Result<Route, String> {
        let methods = methods.iter().map(|method| checked_method(method)).collect::<Result<Vec<_>, _>>()?;
        if let Some(scope) = scope {
            scope::validate(scope).map_err(|e| e.to_string())?;
        }
        for limit in limits {
            check_limit_name(limit).map_err(|e| format!("limit {limit:?}: {e}"))?;
        }
        Ok(Route {
            methods,
            path: parse_pattern(pattern)?,
            pattern: pattern.to_owned(),
            scope: scope.map(str::to_owned),
            limits: limits.to_vec(),
            cost: cost.unwrap_or(1),
        })
    }
}

fn checked_method(method: &str) -> Result<String, String> {
    let is_token = !method.is_empty() && method.bytes().all(|b| b.is_ascii_alphabetic());
    if !is_token {
        return Err(format!("method {method:?} is not an HTTP method such as GET or POST"));
    }
    Ok(method.to_ascii_uppercase())
}

fn parse_pattern(pattern: &str) -> Result<Vec<Segment>, String> {
    let Some(rest) = pattern.strip_prefix('/') else {
        return Err(format!("path {pattern:?} must start with /"));
    };
    let segments: Vec<&str> = if rest.is_empty() { Vec::new() } else { rest.split('/').collect() };
    let last = segments.len().saturating_sub(1);
    let mut parsed = Vec::with_capacity(segments.len());
    let mut named_workspace = false;
    for (index, segment) in segments.into_iter().enumerate() {
        parsed.push(match segment {
            "**" if index == last => Segment::Rest,
            "**" => return Err(format!("path {pattern:?}: ** may only be the last segment")),
            "*" => Segment::Any,
            "{workspace}" if named_workspace => return Err(format!("path {pattern:?} names {{workspace}} twice")),
            "{workspace}" => {
                named_workspace = true;
                Segment::Workspace
            }
            _ if segment.contains(['{', '}', '*', '?', '#']) => {
                return Err(format!("path {pattern:?}: segment {segment:?} is not a literal, {{workspace}}, * or **"))
            }
            _ => Segment::Literal(segment.to_owned()),
        });
    }
    Ok(parsed)
}

/// Checks a header name given in the file (`key_header`): a header name (HTTP's token rule), and not one
/// the endpoint reads already.
pub fn checked_header_name(name: &str) -> Result<HeaderName, String> {
    let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("{name:?} is not an HTTP header name"))?;
    if ["authorization", "x-api-key"].contains(&header.as_str()) || header.as_str().starts_with("x-keyward-") {
        return Err(format!("{name:?} is already read by the endpoint; name another header"));
    }
    Ok(header)
}

/// Checks a query parameter name given in the file (`query_parameter`).
pub fn checked_parameter_name(name: &str) -> Result<String, String> {
    let fits = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !fits {
        return Err(format!("{name:?}: a query parameter name is letters, digits, '-', '_' or '.'"));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_are_loopback_or_socket_paths() {
        assert_eq!(Listen::parse("127.0.0.1:9311"), Ok(Listen::Tcp("127.0.0.1:9311".parse().unwrap())));
        assert_eq!(Listen::parse("[::1]:9311"), Ok(Listen::Tcp("[::1]:9311".parse().unwrap())));
        assert_eq!(Listen::parse("localhost:80"), Ok(Listen::Tcp("127.0.0.1:80".parse().unwrap())));
        assert_eq!(Listen::parse("/run/keyward/http.sock"), Ok(Listen::Unix("/run/keyward/http.sock".into())));
        assert!(Listen::parse("0.0.0.0:9311").unwrap_err().contains("not a loopback address"));
        assert!(Listen::parse("10.0.0.1:9311").is_err());
        assert!(Listen::parse("9311").unwrap_err().contains("neither"));
        assert!(Listen::parse("run/http.sock").is_err(), "a relative path is not taken for a socket");
    }

    #[test]
    fn route_patterns() {
        let route =
            Route::new(&["get".into()], "/v1/workspaces/{workspace}/*/**", Some("read:tables"), &[], None).unwrap();
        assert_eq!(route.methods, ["GET"]);
        assert_eq!(
            route.path,
            [
                Segment::Literal("v1".into()),
                Segment::Literal("workspaces".into()),
                Segment::Workspace,
                Segment::Any,
                Segment::Rest
            ]
        );
        assert_eq!(route.cost, 1);
        assert_eq!(Route::new(&[], "/", None, &[], Some(0)).unwrap().path, []);
        for (pattern, says) in [
            ("v1/x", "must start with /"),
            ("/**/x", "last segment"),
            ("/{workspace}/{workspace}", "twice"),
            ("/{id}", "not a literal"),
            ("/a*", "not a literal"),
        ] {
            let error = Route::new(&[], pattern, None, &[], None).unwrap_err();
            assert!(error.contains(says), "{pattern}: {error}");
        }
        assert!(Route::new(&[], "/x", Some("read:Tables"), &[], None).is_err());
        assert!(Route::new(&["GE T".into()], "/x", None, &[], None).is_err());
        assert!(Route::new(&[], "/x", None, &["Bad Name".into()], None).is_err());
    }

    #[test]
    fn header_and_parameter_names() {
        assert_eq!(checked_header_name("X-Custom-Key"), Ok(HeaderName::from_static("x-custom-key")));
        assert!(checked_header_name("X Key").is_err());
        assert!(checked_header_name("Authorization").unwrap_err().contains("already read"));
        assert!(checked_header_name("X-Keyward-Scope").is_err());
        assert_eq!(checked_parameter_name("api_key"), Ok("api_key".into()));
        assert!(checked_parameter_name("api key").is_err());
    }
}
