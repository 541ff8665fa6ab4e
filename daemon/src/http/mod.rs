//! The forward-auth endpoint: an HTTP/1.1 door for reverse proxies (nginx `auth_request`, Caddy
//! `forward_auth`, Envoy `ext_authz`, Traefik `ForwardAuth`), served by keywardd itself when `[http]`
//! lists addresses. It is a verify door only: `/auth` verifies the caller's key of the original request
//! and answers 200 with the key's headers or the refusal the tower layer would give; `/health` says the
//! endpoint is up; nothing else is served, and no management is possible over HTTP.
//!
//! Loopback addresses only (the configuration refuses others: the endpoint has no TLS) and Unix sockets,
//! made like the verify socket and admitting the same peers. Bad input is bounded like the verify
//! socket's: a request head must arrive whole within [`HEAD_TIMEOUT`] (which also closes a kept-alive
//! connection idle that long) and fit [`MAX_HEAD`] (else 431), a malformed request gets 400 and the
//! connection is closed, a connection that makes no progress for [`STALL_TIMEOUT`] (a caller that stops
//! reading its answers) is dropped, and at most `http.max_connections` are open at once, the rest waiting
//! in the kernel's backlog. A verify through HTTP is the same verify as on the socket
//! ([`dispatch::handle_verify`]), counted in the same statistics; the endpoint's connections and answers
//! by status are counted apart (`keyward stats`, Prometheus).

mod answer;
mod ask;
mod watched;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use keyward_protocol::http::Refusal;
use keyward_protocol::{Actor, ErrorCode, Reply, VerifyAnswer, VerifyRequest};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::http::Listen;
use crate::config::{HttpSettings, Reloadable};
use crate::dispatch::{self, Handled, SocketRole};
use crate::host::clock::{unix_millis, Now};
use crate::net::peer::{self, Gatekeeper};
use crate::net::socket::{self, SocketError, SocketFile, SocketMode};
use crate::secrets::hasher::Caller;
use crate::service::Service;
use answer::Body;
use watched::{Activity, Watched};

/// A request head (request line and headers) larger than this is answered 431 and the connection closed.
pub const MAX_HEAD: usize = 16 * 1024;
/// A request head must arrive whole within this, counted from the connection's start or the previous
/// answer: a slow client is closed, and so is a kept-alive connection idle this long.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection that moves no byte for this long is dropped: a caller that stops reading its answers (one
/// that is merely idle is closed sooner, by [`HEAD_TIMEOUT`]).
pub const STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Why an `[http]` address could not be listened on.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("http.listen {address}: {source}")]
    Tcp { address: std::net::SocketAddr, source: std::io::Error },
    #[error("http.listen: {0}")]
    Unix(#[from] SocketError),
}

/// The endpoint's bound listeners (and the guards that remove its socket files on exit).
pub struct Listeners {
    tcp: Vec<TcpListener>,
    unix: Vec<(UnixListener, SocketFile)>,
}

impl Listeners {
    /// Binds every address of `settings`; a Unix socket is made with `mode` (the verify socket's).
    pub async fn bind(settings: &HttpSettings, mode: SocketMode) -> Result<Listeners, ListenError> {
        let mut listeners = Listeners { tcp: Vec::new(), unix: Vec::new() };
        for address in &settings.listen {
            match address {
                Listen::Tcp(address) => {
                    let bound = TcpListener::bind(address).await;
                    listeners.tcp.push(bound.map_err(|source| ListenError::Tcp { address: *address, source })?);
                }
                Listen::Unix(path) => listeners.unix.push(socket::bind(path, mode)?),
            }
        }
        Ok(listeners)
    }
}

/// What every HTTP connection shares.
#[derive(Clone)]
pub struct Endpoint {
    service: Service,
    /// Key header, query parameter and routes: a reload replaces them (the addresses change with a
    /// restart only).
    settings: Arc<Reloadable<HttpSettings>>,
    gatekeeper: Arc<Gatekeeper>,
    permits: Arc<Semaphore>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Endpoint {
    pub fn new(
        service: Service,
        settings: Arc<Reloadable<HttpSettings>>,
        gatekeeper: Arc<Gatekeeper>,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Endpoint {
        let permits = Arc::new(Semaphore::new(settings.get().max_connections));
        if !settings.get().listen.is_empty() {
            service.stats().http_serving();
        }
        Endpoint { service, settings, gatekeeper, permits, tracker, shutdown }
    }

    /// Accepts connections on every listener until shutdown.
    pub async fn serve(self, listeners: Listeners) {
        let mut loops = tokio::task::JoinSet::new();
        for listener in listeners.tcp {
            loops.spawn(self.clone().accept_tcp(listener));
        }
        for (listener, file) in listeners.unix {
            loops.spawn(self.clone().accept_unix(listener, file));
        }
        while loops.join_next().await.is_some() {}
    }

    async fn accept_tcp(self, listener: TcpListener) {
        while let Some(permit) = self.permit().await {
            let Some(accepted) = self.cancellable(listener.accept()).await else { return };
            match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    self.spawn(permit, stream, None);
                }
                Err(error) => back_off(&error).await,
            }
        }
    }

    async fn accept_unix(self, listener: UnixListener, _file: SocketFile) {
        while let Some(permit) = self.permit().await {
            let Some(accepted) = self.cancellable(listener.accept()).await else { return };
            match accepted {
                Ok((stream, _)) => match peer::peer_of(&stream) {
                    Ok(peer) => self.spawn(permit, stream, Some(peer)),
                    Err(error) => tracing::warn!(%error, "cannot read an HTTP peer's credentials; closing"),
                },
                Err(error) => back_off(&error).await,
            }
        }
    }

    /// Serves `stream` on a task of its own, holding `permit` until it closes.
    fn spawn<S>(&self, permit: OwnedSemaphorePermit, stream: S, peer: Option<Actor>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let endpoint = self.clone();
        self.tracker.spawn(async move {
            endpoint.connection(stream, peer).await;
            drop(permit);
        });
    }

    async fn permit(&self) -> Option<OwnedSemaphorePermit> {
        let permit = self.cancellable(self.permits.clone().acquire_owned()).await?;
        Some(permit.expect("the permit semaphore is never closed"))
    }

    async fn cancellable<T>(&self, future: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::select! {
            output = future => Some(output),
            () = self.shutdown.cancelled() => None,
        }
    }

    /// Serves one connection until the client closes it, it breaks a bound, or the daemon stops (which
    /// lets the request in progress finish). `peer` is a Unix socket's client, checked against the verify
    /// socket's rules at every request.
    async fn connection<S>(self, stream: S, peer: Option<Actor>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        if let Some(peer) = &peer {
            if !self.gatekeeper.rules().admits(SocketRole::Verify, peer) {
                self.service.stats().http_connection_forbidden();
                tracing::warn!(uid = peer.uid, pid = peer.pid, "HTTP peer not allowed on the verify socket; refused");
                return;
            }
        }
        let counted = self.service.clone();
        let _open = counted.stats().http_connection_opened();
        let activity = Activity::new();
        let io = TokioIo::new(Watched::new(stream, activity.clone()));
        let caller = Caller::next();
        let endpoint = self.clone();
        let gate_seen = Arc::new(AtomicU64::new(self.gatekeeper.generation()));
        let serve = service_fn(move |request| {
            let (endpoint, peer, gate_seen) = (endpoint.clone(), peer.clone(), gate_seen.clone());
            async move {
                let withdrawn = |peer: &Actor| !endpoint.gatekeeper.still_admits(SocketRole::Verify, peer, &gate_seen);
                if let Some(peer) = peer.filter(withdrawn) {
                    tracing::warn!(uid = peer.uid, pid = peer.pid, "HTTP peer no longer allowed; closing");
                    return Err(PeerWithdrawn);
                }
                let response = endpoint.answer(request, caller).await;
                endpoint.service.stats().http_answered(answer::real_status(&response));
                Ok::<_, PeerWithdrawn>(response)
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(HEAD_TIMEOUT).max_buf_size(MAX_HEAD);
        let connection = builder.serve_connection(io, serve);
        tokio::pin!(connection);
        tokio::select! {
            result = connection.as_mut() => log_end(result),
            () = activity.stalled(STALL_TIMEOUT) => tracing::debug!("HTTP connection made no progress; dropped"),
            () = self.shutdown.cancelled() => {
                connection.as_mut().graceful_shutdown();
                tokio::select! {
                    result = connection.as_mut() => log_end(result),
                    () = activity.stalled(STALL_TIMEOUT) => {}
                }
            }
        }
    }

    /// The answer to one request.
    async fn answer(&self, request: Request<Incoming>, caller: Caller) -> Response<Body> {
        let path = request.uri().path();
        if path == "/health" {
            return answer::healthy();
        }
        if path != ask::AUTH_PATH && !path.starts_with("/auth/") {
            return answer::not_found();
        }
        let (parts, _body) = request.into_parts();
        let refuse_with = ask::refuse_with(&parts.headers);
        let read = ask::Original::of(&parts.method, &parts.uri, &parts.headers)
            .and_then(|original| ask::read(&original, &parts.headers, &self.settings.get()));
        let verify = match read {
            Ok(verify) => verify,
            Err(refusal) => return answer::refused(&refusal, &[], refuse_with, unix_millis()),
        };
        match self.verify(&verify, caller).await {
            Ok(answer) => match answer.key.as_deref() {
                Some(key) if answer.code.is_valid() => {
                    answer::granted(key, answer.credits, &answer.ratelimit, unix_millis())
                }
                _ => {
                    let refusal = Refusal::answer(
                        answer.code,
                        answer.retry_after_ms,
                        verify.scope.as_deref(),
                        verify.workspace.as_deref(),
                    );
                    answer::refused(&refusal, &answer.ratelimit, refuse_with, unix_millis())
                }
            },
            Err(refusal) => answer::refused(&refusal, &[], refuse_with, unix_millis()),
        }
    }

    /// The daemon's answer to `verify`, as the verify socket would give it; an error reply as the
    /// refusal it becomes (BUSY and shutting down: unavailable, with a retry).
    async fn verify(&self, verify: &VerifyRequest, caller: Caller) -> Result<VerifyAnswer, Refusal> {
        let reply = match dispatch::handle_verify(&self.service, &verify.as_borrowed(), Now::read(), caller) {
            Handled::Verified(verdict) => return Ok(verdict.into_answer()),
            Handled::Now(reply) => reply,
            Handled::Later(future) => future.await,
        };
        match reply {
            Reply::Verify(answer) => Ok(answer),
            Reply::Error(error) if matches!(error.code, ErrorCode::Busy | ErrorCode::ShuttingDown) => {
                Err(Refusal::unavailable())
            }
            Reply::Error(error) => {
                tracing::error!(code = %error.code, message = %error.message, "a forward-auth verify failed");
                Err(Refusal::internal())
            }
            _ => Err(Refusal::internal()),
        }
    }
}

/// The reason a connection's request is not answered: its peer lost access in a reload.
#[derive(Debug, thiserror::Error)]
#[error("the peer is no longer allowed")]
struct PeerWithdrawn;

fn log_end(result: Result<(), hyper::Error>) {
    match result {
        Ok(()) => tracing::trace!("HTTP connection closed"),
        Err(error) => tracing::debug!(%error, "HTTP connection ended with an error"),
    }
}

/// After a failed accept (typically EMFILE): wait for descriptors to free up rather than spin.
async fn back_off(error: &std::io::Error) {
    tracing::warn!(%error, "HTTP accept failed; backing off");
    tokio::time::sleep(Duration::from_millis(100)).await;
}
