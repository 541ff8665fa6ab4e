//! [`Client`]: the async client, a small pool of pipelined connections behind one cheap handle.
//!
//! This module owns the pool: which connection a request goes to (round-robin), opening connections
//! lazily and again after one breaks, request ids, and each request's deadline. How a single connection
//! carries many requests at once, and fails those past their deadline, lives in [`crate::connection`].
//!
//! Per request, the client allocates only what the decoded answer holds (for a verify of an unchanged key,
//! not the key: see `shared_keys` in [`crate::wire`]): the frame is encoded into a buffer reused from the
//! client's [`FramePool`], and the answer waits in the connection's map of waiting requests. Choosing a
//! connection is an atomic increment, an uncontended lock and an `Arc` clone. A request is encoded when it
//! is called, not when it is first polled, so its future holds the frame rather than the request; only the
//! slow paths (opening a connection, waiting for a free slot) arm a timer, boxed outside the future.

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use keyward_protocol::{
    AccountView, AuditEntry, AuditQuery, CreateRequest, CreatedKey, CreditChange, FleetReport, ImportRequest,
    KeyChanges, KeyPage, KeyUsage, KeyView, ListRequest, Reply, Request, StatsReport, UsageReport, VerifyAnswer,
    VerifyRequest,
};
use tokio::time::Instant;

use crate::connection::{Connection, RequestError};
use crate::error::ClientError;
use crate::listing::Listing;
use crate::requests::{self, DEFAULT_REQUEST_TIMEOUT};
use crate::trust::DaemonUser;
use crate::wire::{self, Answer, FramePool};

/// Settings for a [`Client`].
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    socket: PathBuf,
    daemon_user: DaemonUser,
    pool_size: usize,
    request_timeout: Duration,
    max_in_flight: usize,
}

impl ClientBuilder {
    /// Connections in the pool unless set otherwise.
    pub const DEFAULT_POOL_SIZE: usize = 2;
    /// Requests that may wait on one connection at once unless set otherwise (the daemon's default limit
    /// too: past it the daemon stops reading and the socket buffer pushes back anyway).
    pub const DEFAULT_MAX_IN_FLIGHT: usize = 128;

    /// Settings for a client of the socket at `socket`, with the defaults.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        ClientBuilder {
            socket: socket.into(),
            daemon_user: DaemonUser::default(),
            pool_size: Self::DEFAULT_POOL_SIZE,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_in_flight: Self::DEFAULT_MAX_IN_FLIGHT,
        }
    }

    /// One more user the daemon may run as, besides root, this process's user and
    /// [`PACKAGED_DAEMON_USER`](crate::PACKAGED_DAEMON_USER): a socket whose listener runs as anyone else is
    /// refused with [`ClientError::UntrustedDaemon`] before anything is sent.
    pub fn daemon_user(mut self, user: DaemonUser) -> Self {
        self.daemon_user = user;
        self
    }

    /// How many connections to spread requests over (at least 1).
    pub fn pool_size(mut self, connections: usize) -> Self {
        self.pool_size = connections.max(1);
        self
    }

    /// How long a request may take, from choosing a connection (and opening it if needed) to its reply.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How many requests may wait on one connection at once (at least 1); more wait for a slot, within
    /// their timeout.
    pub fn max_in_flight(mut self, requests: usize) -> Self {
        self.max_in_flight = requests.max(1);
        self
    }

    /// The client, without connecting: connections open on first use. Needs no runtime.
    pub fn build(self) -> Client {
        let slots = (0..self.pool_size).map(|_| Slot::default()).collect();
        Client {
            actor: None,
            shared: Arc::new(Shared {
                socket: self.socket,
                daemon_user: self.daemon_user,
                request_timeout: self.request_timeout,
                max_in_flight: self.max_in_flight,
                slots,
                frames: Arc::default(),
                next_slot: AtomicUsize::new(0),
                // Id 0 is what the daemon answers when it cannot read a request's id; never use it.
                next_id: AtomicU64::new(1),
            }),
        }
    }

    /// The client with every pooled connection open and handshaken, so that an unreachable daemon is
    /// reported now rather than on the first request.
    pub async fn connect(self) -> Result<Client, ClientError> {
        let client = self.build();
        let timeout = client.shared.request_timeout;
        for slot in client.shared.slots.iter() {
            client.shared.within(Instant::now() + timeout, client.shared.connection_in(slot)).await?;
        }
        Ok(client)
    }
}

/// An async client for one `keywardd` socket.
///
/// Cloning is cheap (an `Arc`), and clones share the pool: create one per process and hand clones to every
/// task. Requests from many tasks are pipelined over the pool's connections. A handle may carry an actor
/// label ([`Client::with_actor`]) that its management requests are sent on behalf of.
///
/// ```no_run
/// use keyward_client::{Client, Secret, VerifyRequest};
///
/// # async fn example() -> Result<(), keyward_client::ClientError> {
/// let client = Client::connect("/run/keyward/verify.sock").await?;
/// let answer = client.verify(VerifyRequest::new(Secret::new("kw_live_…"))).await?;
/// if answer.code.is_valid() { /* serve the request */ }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    /// The label this handle's management requests are sent on behalf of.
    actor: Option<Arc<str>>,
}

struct Shared {
    socket: PathBuf,
    daemon_user: DaemonUser,
    request_timeout: Duration,
    max_in_flight: usize,
    slots: Box<[Slot]>,
    /// Request frame buffers, given back by the connections' writers.
    frames: Arc<FramePool>,
    next_slot: AtomicUsize,
    next_id: AtomicU64,
}

/// One place in the pool: the current connection, if any, and a turn for whoever reopens it.
#[derive(Default)]
struct Slot {
    current: Mutex<Option<Arc<Connection>>>,
    /// Held while connecting, so that a burst of requests on a dead slot opens one connection, not one
    /// each. An async mutex because connecting awaits.
    reopening: tokio::sync::Mutex<()>,
}

impl Client {
    /// Settings for a client of `socket`; see [`ClientBuilder`].
    pub fn builder(socket: impl Into<PathBuf>) -> ClientBuilder {
        ClientBuilder::new(socket)
    }

    /// A client with the default settings, its connections open and handshaken.
    pub async fn connect(socket: impl Into<PathBuf>) -> Result<Client, ClientError> {
        ClientBuilder::new(socket).connect().await
    }

    /// The socket this client talks to.
    pub fn socket_path(&self) -> &Path {
        &self.shared.socket
    }

    /// The per-request timeout.
    pub fn request_timeout(&self) -> Duration {
        self.shared.request_timeout
    }

    /// A handle on the same pool whose management requests are sent on behalf of `actor` (a label the
    /// daemon records in the audit log next to this process's uid and pid), or, with `None`, as this
    /// process alone. `Ping` and `Verify` are never labelled. Cheap: one `Arc` clone.
    ///
    /// ```no_run
    /// # async fn example(client: keyward_client::Client) -> Result<(), keyward_client::ClientError> {
    /// let for_alice = client.with_actor(Some("alice@dashboard".into()));
    /// for_alice.deactivate("AbCdEf012345").await?; // audited with the label `alice@dashboard`
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_actor(&self, actor: Option<String>) -> Client {
        Client { shared: Arc::clone(&self.shared), actor: actor.map(Arc::from) }
    }

    /// The label this handle's management requests are sent on behalf of, if any.
    pub fn actor(&self) -> Option<&str> {
        self.actor.as_deref()
    }

    /// Sends `request` (inside a [`Request::As`] if this handle has an actor and it is a management
    /// request) and waits for its reply.
    ///
    /// If the chosen connection is found closed before the request was handed to it, the request goes to
    /// a fresh connection instead (nothing was sent, so this is safe for any request). If the connection
    /// breaks after that, the request fails with [`ClientError::Closed`] or [`ClientError::Io`] and the
    /// next request reopens it. An error reply is returned as [`ClientError::Refused`], so `Ok` never
    /// holds [`Reply::Error`].
    ///
    /// The request is encoded at once; the timeout starts when the returned future is first polled.
    pub fn call(&self, request: Request) -> impl Future<Output = Result<Reply, ClientError>> + Send + '_ {
        let request = requests::on_behalf_of(self.actor.as_deref(), request);
        let id = self.shared.next_request_id();
        let frame = wire::request_frame(id, &request, self.shared.frames.take());
        drop(request);
        self.shared.send(id, frame, |answer| requests::refused_as_error(answer.into_reply()))
    }

    /// Checks that the daemon answers.
    pub async fn ping(&self) -> Result<(), ClientError> {
        self.call(Request::Ping).await.and_then(requests::pong)
    }

    /// Verifies a token. Every outcome, valid or not, is an answer; see [`VerifyAnswer::code`].
    ///
    /// The request is encoded (and the token dropped) at once; the timeout starts when the returned future
    /// is first polled.
    pub fn verify(
        &self,
        request: VerifyRequest,
    ) -> impl Future<Output = Result<VerifyAnswer, ClientError>> + Send + '_ {
        let id = self.shared.next_request_id();
        let frame = wire::verify_frame(id, &request, self.shared.frames.take());
        drop(request);
        self.shared.send(id, frame, requests::verify_answer)
    }

    /// Creates a key (admin socket). The returned token is shown once and never stored by the daemon.
    pub async fn create(&self, request: CreateRequest) -> Result<CreatedKey, ClientError> {
        self.call(Request::Create(request)).await.and_then(requests::created_key)
    }

    /// Fetches one page of a workspace's keys (admin socket).
    pub async fn list_page(&self, request: ListRequest) -> Result<KeyPage, ClientError> {
        self.call(Request::List(request)).await.and_then(requests::key_page)
    }

    /// Lists every key of `workspace`, oldest first, following pages to the end (admin socket). Each page
    /// is one request with its own timeout.
    pub async fn list(&self, workspace: &str) -> Result<Vec<KeyView>, ClientError> {
        let mut listing = Listing::new(workspace);
        loop {
            let page = self.call(listing.next_request()).await.and_then(requests::key_page)?;
            if !listing.absorb(page)? {
                return Ok(listing.into_keys());
            }
        }
    }

    /// Shows one key (admin socket).
    pub async fn get(&self, id: &str) -> Result<KeyView, ClientError> {
        self.call(Request::Get { id: id.to_owned() }).await.and_then(requests::key_view)
    }

    /// Revokes one key for good (admin socket); returns it with status `revoked`.
    pub async fn revoke(&self, id: &str) -> Result<KeyView, ClientError> {
        self.call(Request::Revoke { id: id.to_owned() }).await.and_then(requests::key_view)
    }

    /// Changes a key's settings (admin socket); its token stays the same.
    pub async fn edit(&self, id: &str, changes: KeyChanges) -> Result<KeyView, ClientError> {
        self.call(Request::Edit { id: id.to_owned(), changes }).await.and_then(requests::key_view)
    }

    /// Gives a key a new token with the same settings (admin socket). The old token stops working at
    /// once, or after `grace_seconds`. The new token is shown once and never stored by the daemon.
    pub async fn regenerate(&self, id: &str, grace_seconds: u64) -> Result<CreatedKey, ClientError> {
        self.call(Request::Regenerate { id: id.to_owned(), grace_seconds }).await.and_then(requests::created_key)
    }

    /// Suspends a key until [`Client::activate`]; its verifies answer `INACTIVE` (admin socket).
    pub async fn deactivate(&self, id: &str) -> Result<KeyView, ClientError> {
        self.call(Request::Deactivate { id: id.to_owned() }).await.and_then(requests::key_view)
    }

    /// Undoes [`Client::deactivate`] (admin socket).
    pub async fn activate(&self, id: &str) -> Result<KeyView, ClientError> {
        self.call(Request::Activate { id: id.to_owned() }).await.and_then(requests::key_view)
    }

    /// Takes over a token issued by another system, so that it verifies as it is (admin socket).
    pub async fn import(&self, request: ImportRequest) -> Result<KeyView, ClientError> {
        self.call(Request::Import(request)).await.and_then(requests::key_view)
    }

    /// Reads the audit log, newest first (admin socket).
    pub async fn audit(&self, query: AuditQuery) -> Result<Vec<AuditEntry>, ClientError> {
        self.call(Request::Audit(query)).await.and_then(requests::audit_entries)
    }

    /// Sets the workspaces an account's legacy keys may act on, replacing the previous list (admin socket).
    pub async fn set_account(&self, account: AccountView) -> Result<AccountView, ClientError> {
        self.call(Request::SetAccount(account)).await.and_then(requests::account_view)
    }

    /// Shows an account's workspaces; an unknown account has none (admin socket).
    pub async fn get_account(&self, account: &str) -> Result<AccountView, ClientError> {
        self.call(Request::GetAccount { account: account.to_owned() }).await.and_then(requests::account_view)
    }

    /// Lists legacy personal keys, of one account or of all, oldest first (admin socket).
    pub async fn list_legacy(&self, account: Option<&str>) -> Result<Vec<KeyView>, ClientError> {
        self.call(Request::ListLegacy { account: account.map(str::to_owned) }).await.and_then(requests::legacy_keys)
    }

    /// Sets or adds to a key's credit balance (admin socket).
    pub async fn credits(&self, id: &str, change: CreditChange) -> Result<KeyView, ClientError> {
        self.call(Request::Credits { id: id.to_owned(), change }).await.and_then(requests::key_view)
    }

    /// One key's verifications by outcome: totals, hourly and daily (admin socket).
    pub async fn usage(&self, id: &str) -> Result<UsageReport, ClientError> {
        self.call(Request::Usage { id: id.to_owned() }).await.and_then(requests::usage_report)
    }

    /// Per-key totals of a workspace, most verifications first (admin socket).
    pub async fn workspace_usage(&self, workspace: &str) -> Result<Vec<KeyUsage>, ClientError> {
        self.call(Request::WorkspaceUsage { workspace: workspace.to_owned() }).await.and_then(requests::workspace_usage)
    }

    /// The daemon's counters: keys by status, connections, verifies by code and their latency, the
    /// Argon2 queue, the store's size (admin socket).
    pub async fn stats(&self) -> Result<StatsReport, ClientError> {
        self.call(Request::Stats).await.and_then(requests::stats_report)
    }

    /// Fleet mode: creates or upgrades the engine's schema and, on a new fleet, imports this host's store
    /// (admin socket). Not retried: it writes.
    pub async fn fleet_init(&self) -> Result<FleetReport, ClientError> {
        self.call(Request::FleetInit).await.and_then(requests::fleet_report)
    }

    /// Fleet mode: the engine, each host, its applied change and its lag (admin socket).
    pub async fn fleet_status(&self) -> Result<FleetReport, ClientError> {
        self.call(Request::FleetStatus).await.and_then(requests::fleet_report)
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("socket", &self.shared.socket)
            .field("pool_size", &self.shared.slots.len())
            .field("request_timeout", &self.shared.request_timeout)
            .field("max_in_flight", &self.shared.max_in_flight)
            .field("actor", &self.actor)
            .finish()
    }
}

impl Shared {
    fn next_request_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends a framed request (unless encoding it failed) on the next connection in turn and waits for
    /// its answer, for at most the request timeout; `typed` turns the answer into the caller's result. A
    /// frame that never left (its connection closed first) gets one more try on a newly chosen connection.
    ///
    /// One flat function rather than layers of them: every layer of `async fn` keeps its own copy of its
    /// arguments, and this future is part of every request's.
    async fn send<T>(
        &self,
        id: u64,
        frame: Result<Vec<u8>, ClientError>,
        typed: fn(Answer) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let deadline = Instant::now() + self.request_timeout;
        let mut frame = frame?;
        let mut tries = 0;
        loop {
            tries += 1;
            let connection = self.next_connection(deadline).await?;
            match connection.request(id, frame, deadline).await {
                Ok(answer) => return typed(answer),
                Err(RequestError::Unsent(unsent)) if tries < 2 => frame = unsent,
                Err(failed) => return Err(failed.into_error()),
            }
        }
    }

    /// The open connection of the next slot in turn, opening it (by `deadline`) if needed.
    async fn next_connection(&self, deadline: Instant) -> Result<Arc<Connection>, ClientError> {
        let turn = self.next_slot.fetch_add(1, Ordering::Relaxed);
        let slot = &self.slots[turn % self.slots.len()];
        match slot.open_connection() {
            Some(connection) => Ok(connection),
            // Boxed: the future of opening a connection is large, and only this slow path needs it.
            None => Box::pin(self.within(deadline, self.connection_in(slot))).await,
        }
    }

    async fn connection_in(&self, slot: &Slot) -> Result<Arc<Connection>, ClientError> {
        if let Some(connection) = slot.open_connection() {
            return Ok(connection);
        }
        let _turn = slot.reopening.lock().await;
        // Someone else may have reopened the slot while this request waited for its turn.
        if let Some(connection) = slot.open_connection() {
            return Ok(connection);
        }
        let frames = Arc::clone(&self.frames);
        let connection =
            Connection::open(&self.socket, self.daemon_user, self.max_in_flight, self.request_timeout, frames).await?;
        let connection = Arc::new(connection);
        *slot.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&connection));
        Ok(connection)
    }

    /// `work`, failed with [`ClientError::Timeout`] if it has not finished by `deadline`.
    async fn within<T>(
        &self,
        deadline: Instant,
        work: impl Future<Output = Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        match tokio::time::timeout_at(deadline, work).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Timeout(self.request_timeout)),
        }
    }
}

impl Slot {
    fn open_connection(&self) -> Option<Arc<Connection>> {
        let current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        current.as_ref().filter(|connection| connection.is_open()).map(Arc::clone)
    }
}

#[cfg(test)]
mod tests {
    use keyward_protocol::Secret;

    use super::*;

    #[test]
    fn a_verify_future_holds_the_frame_not_the_request() {
        let client = Client::builder("/nonexistent/keyward.sock").build();
        let verify = client.verify(VerifyRequest::new(Secret::new("kw_live_example")));
        let size = std::mem::size_of_val(&verify);

        assert!(size <= 400, "the verify future grew to {size} bytes");
    }
}
