//! [`KeywardService`]: one request through the layer.
//!
//! In order: take the token out of the request ([`credentials::take`], which also strips it), find the
//! route's workspace, verify with the daemon, then either call the inner service with the
//! [`VerifiedKey`] in the request's extensions or answer with a [`Refusal`]; rate-limit headers go on
//! both. The request body is never read: the service is generic over it and hands it on untouched.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use http::{Request, Response};
use keyward_protocol::{ErrorCode, RateLimitStatus, VerifyRequest};
use tower_service::Service;

use super::body::ResponseBody;
use super::credentials;
use super::key::{Unverified, VerifiedKey};
use super::policy::{OnUnavailable, Policy};
use super::ratelimit;
use super::refusal::{self, Refusal};
use crate::client::Client;
use crate::error::ClientError;

/// The service [`KeywardLayer`](super::KeywardLayer) wraps around `S`. Cheap to clone: the inner service,
/// a [`Client`] handle and the route's shared requirements.
#[derive(Clone)]
pub struct KeywardService<S> {
    inner: S,
    client: Client,
    policy: Arc<Policy>,
}

impl<S> KeywardService<S> {
    pub(crate) fn new(inner: S, client: Client, policy: Arc<Policy>) -> Self {
        KeywardService { inner, client, policy }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for KeywardService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeywardService").field("inner", &self.inner).field("policy", &self.policy).finish()
    }
}

/// The future of [`KeywardService::call`]: the verify, then the inner service's future.
pub struct ResponseFuture<B, E> {
    inner: Pin<Box<dyn Future<Output = Outcome<B, E>> + Send>>,
}

/// What a [`KeywardService`] call ends with.
type Outcome<B, E> = Result<Response<ResponseBody<B>>, E>;

impl<B, E> Future for ResponseFuture<B, E> {
    type Output = Outcome<B, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<B, E> std::fmt::Debug for ResponseFuture<B, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResponseFuture")
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for KeywardService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The service that was polled ready goes into the future; this one keeps a fresh clone (the usual
        // tower pattern for a service that calls its inner service after an await).
        let fresh = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, fresh);
        let (client, policy) = (self.client.clone(), Arc::clone(&self.policy));
        ResponseFuture { inner: Box::pin(authorize(inner, client, policy, request)) }
    }
}

async fn authorize<S, ReqBody, ResBody>(
    mut inner: S,
    client: Client,
    policy: Arc<Policy>,
    request: Request<ReqBody>,
) -> Result<Response<ResponseBody<ResBody>>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    let (mut parts, body) = request.into_parts();
    let token = credentials::take(&mut parts, policy.allow_parameter);
    #[cfg(feature = "axum")]
    strip_original_uri(&mut parts);
    let token = match token {
        Ok(token) => token,
        Err(error) => return Ok(refuse(refusal::credentials(error, policy.allow_parameter), &[])),
    };
    let workspace = match &policy.workspace {
        Some(source) => match source.find(&mut parts).await {
            Some(workspace) => Some(workspace),
            None => return Ok(refuse(Refusal::no_workspace(), &[])),
        },
        None => None,
    };
    let scope = policy.requirement.scope_for(&parts.method).map(str::to_owned);
    let request = VerifyRequest {
        token,
        scope: scope.clone(),
        workspace: workspace.clone(),
        cost: policy.cost,
        limits: policy.limits.clone(),
    };
    let answer = match client.verify(request).await {
        Ok(answer) => answer,
        Err(error) if policy.on_unavailable == OnUnavailable::FailOpen && is_unavailable(&error) => {
            tracing::warn!(%error, "keyward: cannot verify API keys; failing open: the request goes on unverified");
            parts.extensions.insert(Unverified);
            let response = inner.call(Request::from_parts(parts, body)).await?;
            return Ok(response.map(ResponseBody::inner));
        }
        Err(error) => {
            tracing::warn!(%error, "keyward: cannot verify API keys; answering 503");
            return Ok(refuse(Refusal::unavailable(), &[]));
        }
    };
    if !answer.code.is_valid() {
        let refusal = Refusal::answer(answer.code, answer.retry_after_ms, scope.as_deref(), workspace.as_deref());
        return Ok(refuse(refusal, &answer.ratelimit));
    }
    let Some(key) = VerifiedKey::from_answer(answer) else {
        tracing::error!("keyward: the daemon answered VALID without naming the key; answering 503");
        return Ok(refuse(Refusal::unavailable(), &[]));
    };
    let limits = key.ratelimit.clone();
    parts.extensions.insert(key);
    let mut response = inner.call(Request::from_parts(parts, body)).await?;
    ratelimit::insert_headers(response.headers_mut(), &limits, now_ms());
    Ok(response.map(ResponseBody::inner))
}

/// The response for `refusal`, with the rate-limit headers of the answer that caused it.
fn refuse<B>(refusal: Refusal, limits: &[RateLimitStatus]) -> Response<ResponseBody<B>> {
    let mut response = refusal::response(refusal);
    ratelimit::insert_headers(response.headers_mut(), limits, now_ms());
    response.map(ResponseBody::refusal)
}

/// Whether `error` means the daemon could not be asked right now (the case [`OnUnavailable`] is about),
/// rather than a misconfiguration or a bug, which always fail closed.
fn is_unavailable(error: &ClientError) -> bool {
    match error {
        ClientError::Connect { .. }
        | ClientError::Io(_)
        | ClientError::Timeout(_)
        | ClientError::Closed
        | ClientError::Frame(_) => true,
        ClientError::Refused(reply) | ClientError::Rejected(reply) => {
            matches!(reply.code, ErrorCode::Busy | ErrorCode::ShuttingDown)
        }
        _ => false,
    }
}

/// axum keeps a copy of the request's URI before routing (`OriginalUri`); a token in its query must go as
/// well.
#[cfg(feature = "axum")]
fn strip_original_uri(parts: &mut http::request::Parts) {
    if let Some(axum::extract::OriginalUri(uri)) = parts.extensions.get_mut::<axum::extract::OriginalUri>() {
        if let Some(stripped) = credentials::strip_parameter(uri) {
            *uri = stripped;
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::time::Duration;

    use keyward_protocol::ErrorReply;

    use super::*;

    #[test]
    fn only_an_unreachable_or_overloaded_daemon_may_fail_open() {
        let refused = |code| ClientError::Refused(ErrorReply::new(code, "x"));
        for error in [
            ClientError::Connect { path: "/x".into(), source: io::Error::from(io::ErrorKind::NotFound) },
            ClientError::Io(io::Error::from(io::ErrorKind::BrokenPipe)),
            ClientError::Timeout(Duration::from_secs(1)),
            ClientError::Closed,
            refused(ErrorCode::Busy),
            refused(ErrorCode::ShuttingDown),
        ] {
            assert!(is_unavailable(&error), "{error}");
        }
        for error in [
            refused(ErrorCode::InvalidArgument),
            refused(ErrorCode::Forbidden),
            refused(ErrorCode::Internal),
            ClientError::UnexpectedReply { expected: "Verify", got: "Pong" },
        ] {
            assert!(!is_unavailable(&error), "{error}");
        }
    }
}
