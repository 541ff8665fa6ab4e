//! axum extractors for the verified key (feature `axum`).
//!
//! `VerifiedKey` as a handler argument takes the key [`KeywardService`](super::KeywardService) put in the
//! request's extensions; `Option<VerifiedKey>` is `None` instead of a refusal, for routes that fail open
//! or serve anonymous callers too. Both only read extensions: the layer has already verified the key.

use std::convert::Infallible;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::request::Parts;

use super::key::{Unverified, VerifiedKey};
use super::refusal::{self, Refusal};

/// Why a handler that takes a [`VerifiedKey`] was called without one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifiedKeyRejection {
    /// The layer failed open (the daemon could not be asked): answered like the layer's own fail-closed
    /// refusal, `503 auth_unavailable` with `Retry-After: 1`.
    Unavailable,
    /// No [`KeywardLayer`](super::KeywardLayer) in front of this route (or it was added with `layer` after
    /// the route was built, or below it): `500 internal_error`, and an error log, since this is the
    /// program's mistake, not the caller's.
    NotProtected,
}

impl IntoResponse for VerifiedKeyRejection {
    fn into_response(self) -> Response {
        let refusal = match self {
            VerifiedKeyRejection::Unavailable => Refusal::unavailable(),
            VerifiedKeyRejection::NotProtected => {
                tracing::error!("keyward: a handler asked for a VerifiedKey on a route without a KeywardLayer");
                Refusal::internal()
            }
        };
        refusal::response(refusal).map(axum::body::Body::from)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for VerifiedKey {
    type Rejection = VerifiedKeyRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<VerifiedKey>() {
            Some(key) => Ok(key.clone()),
            None if parts.extensions.get::<Unverified>().is_some() => Err(VerifiedKeyRejection::Unavailable),
            None => Err(VerifiedKeyRejection::NotProtected),
        }
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for VerifiedKey {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<VerifiedKey>().cloned())
    }
}
