//! [`Client`]: the async client, a small pool of pipelined connections behind one cheap handle.
//!
//! This module owns the pool: which connection a request goes to (round-robin), opening connections
//! lazily and again after one breaks, request ids, and the per-request timeout. How a single connection
//! carries many requests at once lives in [`crate::connection`].
//!
//! Per request, the client allocates the encoded frame and whatever the decoded reply holds, plus the
//! oneshot that carries the reply back; choosing a connection is an atomic increment, an uncontended lock
//! and an `Arc` clone.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use keyward_protocol::{
    CreateRequest, CreatedKey, KeyPage, KeyView, ListRequest, Reply, Request, VerifyAnswer, VerifyRequest,
};

use crate::connection::{Connection, RequestError};
use crate::error::ClientError;
use crate::listing::Listing;
use crate::{reply, wire, DEFAULT_REQUEST_TIMEOUT};

/// Settings for a [`Client`].
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    socket: PathBuf,
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
            pool_size: Self::DEFAULT_POOL_SIZE,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_in_flight: Self::DEFAULT_MAX_IN_FLIGHT,
        }
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
            shared: Arc::new(Shared {
                socket: self.socket,
                request_timeout: self.request_timeout,
                max_in_flight: self.max_in_flight,
                slots,
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
            tokio::time::timeout(timeout, client.shared.connection_in(slot))
                .await
                .map_err(|_| ClientError::Timeout(timeout))??;
        }
        Ok(client)
    }
}

/// An async client for one `keywardd` socket.
///
/// Cloning is cheap (an `Arc`), and clones share the pool: create one per process and hand clones to every
/// task. Requests from many tasks are pipelined over the pool's connections.
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
}

struct Shared {
    socket: PathBuf,
    request_timeout: Duration,
    max_in_flight: usize,
    slots: Box<[Slot]>,
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

    /// Sends `request` and waits for its reply.
    ///
    /// If the chosen connection is found closed before the request was handed to it, the request goes to
    /// a fresh connection instead (nothing was sent, so this is safe for any request). If the connection
    /// breaks after that, the request fails with [`ClientError::Closed`] or [`ClientError::Io`] and the
    /// next request reopens it. An error reply is returned as [`ClientError::Refused`], so `Ok` never
    /// holds [`Reply::Error`].
    pub async fn call(&self, request: Request) -> Result<Reply, ClientError> {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = wire::request_frame(id, request)?;
        let timeout = self.shared.request_timeout;
        let reply = tokio::time::timeout(timeout, self.shared.send(id, frame))
            .await
            .map_err(|_| ClientError::Timeout(timeout))??;
        reply::refused_as_error(reply)
    }

    /// Checks that the daemon answers.
    pub async fn ping(&self) -> Result<(), ClientError> {
        self.call(Request::Ping).await.and_then(reply::pong)
    }

    /// Verifies a token. Every outcome, valid or not, is an answer; see [`VerifyAnswer::code`].
    pub async fn verify(&self, request: VerifyRequest) -> Result<VerifyAnswer, ClientError> {
        self.call(Request::Verify(request)).await.and_then(reply::verify_answer)
    }

    /// Creates a key (admin socket). The returned token is shown once and never stored by the daemon.
    pub async fn create(&self, request: CreateRequest) -> Result<CreatedKey, ClientError> {
        self.call(Request::Create(request)).await.and_then(reply::created_key)
    }

    /// Fetches one page of a workspace's keys (admin socket).
    pub async fn list_page(&self, request: ListRequest) -> Result<KeyPage, ClientError> {
        self.call(Request::List(request)).await.and_then(reply::key_page)
    }

    /// Lists every key of `workspace`, oldest first, following pages to the end (admin socket). Each page
    /// is one request with its own timeout.
    pub async fn list(&self, workspace: &str) -> Result<Vec<KeyView>, ClientError> {
        let mut listing = Listing::new(workspace);
        loop {
            let page = self.call(listing.next_request()).await.and_then(reply::key_page)?;
            if !listing.absorb(page)? {
                return Ok(listing.into_keys());
            }
        }
    }

    /// Shows one key (admin socket).
    pub async fn get(&self, id: &str) -> Result<KeyView, ClientError> {
        self.call(Request::Get { id: id.to_owned() }).await.and_then(reply::key_view)
    }

    /// Revokes one key for good (admin socket); returns it with status `revoked`.
    pub async fn revoke(&self, id: &str) -> Result<KeyView, ClientError> {
        self.call(Request::Revoke { id: id.to_owned() }).await.and_then(reply::key_view)
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("socket", &self.shared.socket)
            .field("pool_size", &self.shared.slots.len())
            .field("request_timeout", &self.shared.request_timeout)
            .field("max_in_flight", &self.shared.max_in_flight)
            .finish()
    }
}

impl Shared {
    /// Sends a framed request on the next connection in turn. A frame that never left (its connection
    /// closed first) gets one more try on a newly chosen connection.
    async fn send(&self, id: u64, frame: Vec<u8>) -> Result<Reply, ClientError> {
        let connection = self.next_connection().await?;
        let frame = match connection.request(id, frame).await {
            Ok(reply) => return Ok(reply),
            Err(RequestError::Failed(error)) => return Err(error),
            Err(RequestError::Unsent(frame)) => frame,
        };
        let connection = self.next_connection().await?;
        match connection.request(id, frame).await {
            Ok(reply) => Ok(reply),
            Err(RequestError::Failed(error)) => Err(error),
            Err(RequestError::Unsent(_)) => Err(ClientError::Closed),
        }
    }

    /// The open connection of the next slot in turn, opening it if needed.
    async fn next_connection(&self) -> Result<Arc<Connection>, ClientError> {
        let turn = self.next_slot.fetch_add(1, Ordering::Relaxed);
        self.connection_in(&self.slots[turn % self.slots.len()]).await
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
        let connection = Arc::new(Connection::open(&self.socket, self.max_in_flight).await?);
        *slot.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&connection));
        Ok(connection)
    }
}

impl Slot {
    fn open_connection(&self) -> Option<Arc<Connection>> {
        let current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        current.as_ref().filter(|connection| connection.is_open()).map(Arc::clone)
    }
}
