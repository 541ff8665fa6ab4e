//! What a route asks of a key, as the layer keeps it: the scope ([`Requirement`]), where the request names
//! its workspace ([`WorkspaceFrom`]), the named limits and cost, whether the query parameter is allowed,
//! and what to do when the daemon cannot be asked ([`OnUnavailable`]), all in one shared [`Policy`].
//!
//! [`KeywardLayer`](super::KeywardLayer) builds a policy and [`KeywardService`](super::KeywardService)
//! reads it for every request; both use this module, and this module uses neither.

use std::fmt;
use std::sync::Arc;

use http::request::Parts;
use http::{HeaderName, Method};

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

#[cfg(test)]
mod tests {
    use super::*;

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
