//! [`KeywardLayer`]: a route's requirements, set with a builder, and the [`tower_layer::Layer`] that wraps
//! a service with them.
//!
//! This module owns what a route asks of a key (a scope, or a resource whose scope depends on the method;
//! a workspace taken from the request; named limits; a cost) and what the layer does when the daemon cannot
//! be asked. It decides nothing about a request itself: [`KeywardService`] does.

use std::fmt;
use std::sync::Arc;

use http::request::Parts;
use http::{HeaderName, Method};
use keyward_protocol::scope;
use tower_layer::Layer;

use super::service::KeywardService;
use crate::Client;

/// What the layer does when the daemon cannot be asked: unreachable, timed out, shutting down, or too busy
/// to take the verify.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnUnavailable {
    /// Refuse the request: `503 Service Unavailable`, code `auth_unavailable`, `Retry-After: 1`. The
    /// default, and the only safe choice for anything that is not public anyway.
    #[default]
    FailClosed,
    /// Call the inner service without a [`VerifiedKey`](super::VerifiedKey), with
    /// [`Unverified`](super::Unverified) in the extensions instead. **Every request that carries something
    /// shaped like a key is then let through unauthenticated while the daemon is down**: a revoked key, an
    /// expired one, or `Bearer anything` (only requests without a key, or with a malformed header, are
    /// still refused, since that needs no daemon). An attacker who can make the daemon unreachable, or
    /// slow past the client's request timeout, gets the anonymous view of every such route. Use it only
    /// where that view is harmless and availability matters more, and have the handlers check for the key
    /// (`Option<VerifiedKey>` with axum).
    FailOpen,
}

/// Where a route finds the workspace a request acts on. The key must belong to it (a legacy personal key:
/// its account must be allowed on it), or the request is refused with `403 wrong_workspace`; a request in
/// which the workspace cannot be found is refused the same way, without a verify.
#[derive(Clone)]
pub struct WorkspaceFrom(Source);

/// A closure that finds a request's workspace.
type FindWorkspace = dyn Fn(&Parts) -> Option<String> + Send + Sync;

#[derive(Clone)]
enum Source {
    Segment(usize),
    Header(HeaderName),
    #[cfg(feature = "axum")]
    PathParam(Arc<str>),
    With(Arc<FindWorkspace>),
}

impl WorkspaceFrom {
    /// The `index`-th segment of the request's path, counting from 0 after the leading `/`, percent-decoded:
    /// `WorkspaceFrom::segment(2)` finds `acme` in `/v1/workspaces/acme/tables`. Inside an axum `nest`, the
    /// path is the one the layer sees, without the nest's prefix.
    pub fn segment(index: usize) -> Self {
        WorkspaceFrom(Source::Segment(index))
    }

    /// A request header, e.g. `WorkspaceFrom::header(HeaderName::from_static("x-workspace"))`.
    pub fn header(name: HeaderName) -> Self {
        WorkspaceFrom(Source::Header(name))
    }

    /// An axum path parameter by name: `WorkspaceFrom::path_param("workspace")` for a route
    /// `/v1/workspaces/{workspace}/tables`. Path parameters exist only after routing, so add the layer with
    /// `route_layer` (with `layer` on a router, no request names the parameter and all are refused).
    #[cfg(feature = "axum")]
    pub fn path_param(name: &str) -> Self {
        WorkspaceFrom(Source::PathParam(Arc::from(name)))
    }

    /// Whatever `find` returns for the request's head (method, URI, headers, extensions); `None` when the
    /// request names no workspace.
    pub fn with(find: impl Fn(&Parts) -> Option<String> + Send + Sync + 'static) -> Self {
        WorkspaceFrom(Source::With(Arc::new(find)))
    }

    /// The workspace `parts` names, if any.
    pub(crate) async fn find(&self, parts: &mut Parts) -> Option<String> {
        match &self.0 {
            Source::Segment(index) => {
                let segment = parts.uri.path().split('/').skip(1).nth(*index)?;
                let decoded = percent_encoding::percent_decode_str(segment).decode_utf8().ok()?;
                (!decoded.is_empty()).then(|| decoded.into_owned())
            }
            Source::Header(name) => {
                let value = parts.headers.get(name)?.to_str().ok()?.trim();
                (!value.is_empty()).then(|| value.to_owned())
            }
            #[cfg(feature = "axum")]
            Source::PathParam(name) => {
                use axum::extract::{FromRequestParts, RawPathParams};
                let params = RawPathParams::from_request_parts(parts, &()).await.ok()?;
                let found = params.iter().find(|(key, _)| *key == &**name).map(|(_, value)| value.to_owned());
                found.filter(|value| !value.is_empty())
            }
            Source::With(find) => find(parts),
        }
    }
}

impl fmt::Debug for WorkspaceFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Source::Segment(index) => write!(f, "WorkspaceFrom::segment({index})"),
            Source::Header(name) => write!(f, "WorkspaceFrom::header({name:?})"),
            #[cfg(feature = "axum")]
            Source::PathParam(name) => write!(f, "WorkspaceFrom::path_param({name:?})"),
            Source::With(_) => f.write_str("WorkspaceFrom::with(..)"),
        }
    }
}

/// The scope a route requires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Requirement {
    /// Any valid key.
    None,
    /// This scope, whatever the method.
    Scope(String),
    /// `read:R` for GET, HEAD and OPTIONS; `write:R` for every other method.
    Resource { read: String, write: String },
}

impl Requirement {
    /// The scope a request with `method` needs.
    pub(crate) fn scope_for(&self, method: &Method) -> Option<&str> {
        match self {
            Requirement::None => None,
            Requirement::Scope(scope) => Some(scope),
            // Unknown and extension methods need the stronger scope: a method this table does not know
            // must not be a way to write with a read-only key.
            Requirement::Resource { read, write } => Some(match *method {
                Method::GET | Method::HEAD | Method::OPTIONS => read,
                _ => write,
            }),
        }
    }
}

/// Everything a route asks; shared by every clone of the layer's services.
#[derive(Clone, Debug)]
pub(crate) struct Policy {
    pub(crate) requirement: Requirement,
    pub(crate) workspace: Option<WorkspaceFrom>,
    pub(crate) limits: Vec<String>,
    pub(crate) cost: u32,
    pub(crate) allow_parameter: bool,
    pub(crate) on_unavailable: OnUnavailable,
}

/// A [`tower_layer::Layer`] that verifies each request's API key with `keywardd` before the wrapped
/// service sees it; see the [module documentation](super) for what it answers and why.
///
/// One layer per route (or per router whose routes share requirements), built from a clone of the
/// process's one [`Client`]:
///
/// ```no_run
/// # #[cfg(feature = "axum")]
/// # fn example() {
/// use axum::routing::{get, post};
/// use axum::Router;
/// use keyward_client::http::{KeywardLayer, VerifiedKey};
/// use keyward_client::Client;
///
/// async fn list_tables(key: VerifiedKey) -> String {
///     format!("tables of {}", key.workspace)
/// }
/// # async fn trigger() {}
///
/// let client = Client::builder("/run/keyward/verify.sock").build();
/// let auth = KeywardLayer::new(client);
/// let app: Router = Router::new()
///     .route("/v1/tables", get(list_tables))
///     .route_layer(auth.clone().resource("tables"))
///     .merge(Router::new().route("/v1/workflows/{id}/trigger", post(trigger)).route_layer(auth.scope("write:workflows")));
/// # }
/// ```
#[derive(Clone)]
pub struct KeywardLayer {
    client: Client,
    policy: Arc<Policy>,
}

impl KeywardLayer {
    /// A layer that accepts any valid key, sent as `Authorization: Bearer <key>`, at a cost of 1, failing
    /// closed. `client` is a handle on the process's pool (cloning a [`Client`] is cheap, and every
    /// request of every route shares its pipelined connections); its request timeout bounds how long a
    /// verify may hold a request up.
    pub fn new(client: Client) -> Self {
        KeywardLayer {
            client,
            policy: Arc::new(Policy {
                requirement: Requirement::None,
                workspace: None,
                limits: Vec::new(),
                cost: 1,
                allow_parameter: false,
                on_unavailable: OnUnavailable::FailClosed,
            }),
        }
    }

    fn policy(&mut self) -> &mut Policy {
        Arc::make_mut(&mut self.policy)
    }

    /// Require `scope` (or a scope implying it) whatever the method, e.g. `write:workflows`. Replaces a
    /// [`resource`](Self::resource) rule.
    ///
    /// # Panics
    /// If `scope` is not a scope (`admin`, `read:<resource>` or `write:<resource>`): a route's scope is
    /// part of the program, and a typo should stop it at startup rather than refuse every request.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        let scope = scope.into();
        if let Err(error) = scope::validate(&scope) {
            panic!("KeywardLayer::scope: {error}");
        }
        self.policy().requirement = Requirement::Scope(scope);
        self
    }

    /// Require `read:<resource>` for GET, HEAD and OPTIONS and `write:<resource>` for every other method
    /// (POST, PUT, PATCH, DELETE, and any method this rule does not know). Replaces a
    /// [`scope`](Self::scope).
    ///
    /// # Panics
    /// If `resource` is not a resource name (`all`, or a lowercase word of `a-z0-9-_`, e.g. `tables`).
    pub fn resource(mut self, resource: impl AsRef<str>) -> Self {
        let resource = resource.as_ref();
        let (read, write) = (format!("read:{resource}"), format!("write:{resource}"));
        if let Err(error) = scope::validate(&read) {
            panic!("KeywardLayer::resource: {error}");
        }
        self.policy().requirement = Requirement::Resource { read, write };
        self
    }

    /// Require the key to belong to the workspace the request names, found as `source` says.
    pub fn workspace_from(mut self, source: WorkspaceFrom) -> Self {
        self.policy().workspace = Some(source);
        self
    }

    /// Count each request against these named limits of the key too (all or nothing), replacing any set
    /// before. A name the key has no limit for is ignored by the daemon.
    pub fn limits<I>(mut self, names: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.policy().limits = names.into_iter().map(Into::into).collect();
        self
    }

    /// What each request costs against rate limits and credits (default 1; 0 checks without spending).
    pub fn cost(mut self, cost: u32) -> Self {
        self.policy().cost = cost;
        self
    }

    /// Also accept the key in the `api_key` query parameter (off by default). The reference documents call
    /// it "not recommended for production": URLs are written to access logs, browser histories and
    /// `Referer` headers. The layer takes the parameter out of the URI before the inner service sees it,
    /// but it cannot take it out of a proxy's log. A request carrying both a header and the parameter is
    /// refused, allowed or not.
    pub fn allow_query_parameter(mut self, allow: bool) -> Self {
        self.policy().allow_parameter = allow;
        self
    }

    /// What to do when the daemon cannot be asked; see [`OnUnavailable`] (default: fail closed).
    pub fn on_unavailable(mut self, behaviour: OnUnavailable) -> Self {
        self.policy().on_unavailable = behaviour;
        self
    }
}

impl fmt::Debug for KeywardLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeywardLayer").field("client", &self.client).field("policy", &self.policy).finish()
    }
}

impl<S> Layer<S> for KeywardLayer {
    type Service = KeywardService<S>;

    fn layer(&self, inner: S) -> KeywardService<S> {
        KeywardService::new(inner, self.client.clone(), Arc::clone(&self.policy))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer() -> KeywardLayer {
        KeywardLayer::new(Client::builder("/nonexistent.sock").build())
    }

    #[test]
    fn the_method_rule_reads_with_safe_methods_and_writes_with_the_rest() {
        let layer = layer().resource("tables");
        let requirement = &layer.policy.requirement;
        for method in [Method::GET, Method::HEAD, Method::OPTIONS] {
            assert_eq!(requirement.scope_for(&method), Some("read:tables"), "{method}");
        }
        let custom = Method::from_bytes(b"PURGE").unwrap();
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::TRACE, custom] {
            assert_eq!(requirement.scope_for(&method), Some("write:tables"), "{method}");
        }
        let layer = layer.scope("write:workflows");
        assert_eq!(layer.policy.requirement.scope_for(&Method::GET), Some("write:workflows"), "the last rule wins");
        assert_eq!(Requirement::None.scope_for(&Method::POST), None);
    }

    #[test]
    fn builders_do_not_change_the_layer_they_were_cloned_from() {
        let base = layer().allow_query_parameter(true).cost(2);
        let tables = base.clone().resource("tables").limits(["exports"]);
        assert_eq!(base.policy.requirement, Requirement::None);
        assert!(base.policy.limits.is_empty());
        assert_eq!((tables.policy.cost, tables.policy.allow_parameter), (2, true));
        assert_eq!(tables.policy.limits, ["exports"]);
        assert_eq!(base.policy.on_unavailable, OnUnavailable::FailClosed);
    }

    #[test]
    #[should_panic(expected = "KeywardLayer::scope")]
    fn a_misspelled_scope_stops_the_program() {
        let _ = layer().scope("wrte:tables");
    }

    #[test]
    #[should_panic(expected = "KeywardLayer::resource")]
    fn a_bad_resource_stops_the_program() {
        let _ = layer().resource("Tables");
    }

    #[test]
    fn workspaces_from_segments_headers_and_closures() {
        let find = |source: WorkspaceFrom, request: http::Request<()>| {
            let (mut parts, _) = request.into_parts();
            tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(source.find(&mut parts))
        };
        let request = || http::Request::get("/v1/workspaces/acme%2Deu/tables?x=1").body(()).unwrap();
        assert_eq!(find(WorkspaceFrom::segment(2), request()), Some("acme-eu".into()));
        assert_eq!(find(WorkspaceFrom::segment(0), request()), Some("v1".into()));
        assert_eq!(find(WorkspaceFrom::segment(9), request()), None);
        assert_eq!(
            find(WorkspaceFrom::segment(4), http::Request::get("/v1/workspaces/acme/tables/").body(()).unwrap()),
            None
        );
        let header = HeaderName::from_static("x-workspace");
        let with_header = http::Request::get("/").header("x-workspace", " acme ").body(()).unwrap();
        assert_eq!(find(WorkspaceFrom::header(header.clone()), with_header), Some("acme".into()));
        assert_eq!(find(WorkspaceFrom::header(header), request()), None);
        let from_query = WorkspaceFrom::with(|parts| parts.uri.query().map(str::to_owned));
        assert_eq!(find(from_query, request()), Some("x=1".into()));
        assert_eq!(format!("{:?}", WorkspaceFrom::segment(2)), "WorkspaceFrom::segment(2)");
    }
}
