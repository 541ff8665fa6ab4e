//! [`KeywardLayer`]: a route's requirements, set with a builder, and the [`tower_layer::Layer`] that wraps
//! a service with them.
//!
//! This module owns the builder: how a route says what it asks of a key (a scope, or a resource whose
//! scope depends on the method; a workspace taken from the request; named limits; a cost) and what the
//! layer does when the daemon cannot be asked. What those requirements are lives in [`super::policy`],
//! which both this module and [`KeywardService`] read. It decides nothing about a request itself:
//! [`KeywardService`] does.

use std::fmt;
use std::sync::Arc;

use keyward_protocol::scope;
use tower_layer::Layer;

use super::policy::{OnUnavailable, Policy, Requirement, WorkspaceFrom};
use super::service::KeywardService;
use crate::client::Client;

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
    use http::Method;

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
}
