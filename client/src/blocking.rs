//! [`BlockingClient`]: one connection, one request at a time, no runtime needed.
//!
//! This module owns the synchronous client used by the `keyward` CLI and by callers without tokio. It
//! sends a request, waits for its reply, and returns; the per-request timeout is the socket's read and
//! write timeout. A connection that failed in any way (timeout included) is dropped, because the stream
//! may hold half a frame or a late reply; the next call connects again. Only requests that are safe to
//! repeat are retried, once, when the connection turns out to be broken mid-request.

use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use keyward_protocol::frame::{self, MAX_REPLY};
use keyward_protocol::{
    AccountView, AuditEntry, AuditQuery, CreateRequest, CreatedKey, CreditChange, FleetReport, ImportRequest,
    KeyChanges, KeyPage, KeyUsage, KeyView, ListRequest, Reply, Request, StatsReport, UsageReport, VerifyAnswer,
    VerifyRequest,
};

use crate::error::ClientError;
use crate::listing::Listing;
use crate::requests::{self, DEFAULT_REQUEST_TIMEOUT};
use crate::trust::DaemonUser;
use crate::wire::{self, Answer};

/// The shortest timeout a socket accepts (a zero socket timeout means "none" and is refused by the OS).
const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// A synchronous client for one `keywardd` socket.
///
/// ```no_run
/// use keyward_client::{BlockingClient, Secret, VerifyRequest};
///
/// let mut client = BlockingClient::connect("/run/keyward/verify.sock")?;
/// let answer = client.verify(VerifyRequest {
///     scope: Some("read:tables".into()),
///     workspace: Some("acme".into()),
///     ..VerifyRequest::new(Secret::new("kw_live_…"))
/// })?;
/// println!("{}", answer.code);
/// # Ok::<(), keyward_client::ClientError>(())
/// ```
#[derive(Debug)]
pub struct BlockingClient {
    path: PathBuf,
    daemon_user: DaemonUser,
    timeout: Duration,
    /// `None` after a failure, until the next call connects again.
    stream: Option<UnixStream>,
    next_id: u64,
    /// The label management requests are sent on behalf of.
    actor: Option<String>,
}

impl BlockingClient {
    /// Connects to the socket at `path` and completes the handshake, with the default 5-second timeout.
    pub fn connect(path: impl AsRef<Path>) -> Result<Self, ClientError> {
        Self::connect_with_timeout(path, DEFAULT_REQUEST_TIMEOUT)
    }

    /// Connects and completes the handshake; `timeout` applies to the handshake and to every request.
    pub fn connect_with_timeout(path: impl AsRef<Path>, timeout: Duration) -> Result<Self, ClientError> {
        Self::connect_trusting(path, timeout, DaemonUser::default())
    }

    /// Like [`BlockingClient::connect_with_timeout`], accepting the listener's user `daemon_user` too (besides
    /// root, this process's user and [`PACKAGED_DAEMON_USER`](crate::PACKAGED_DAEMON_USER)); anyone else's
    /// socket is refused with [`ClientError::UntrustedDaemon`] before anything is sent.
    pub fn connect_trusting(
        path: impl AsRef<Path>,
        timeout: Duration,
        daemon_user: DaemonUser,
    ) -> Result<Self, ClientError> {
        let path = path.as_ref().to_owned();
        let timeout = timeout.max(MIN_TIMEOUT);
        let stream = open(&path, daemon_user, timeout)?;
        Ok(BlockingClient { path, daemon_user, timeout, stream: Some(stream), next_id: 1, actor: None })
    }

    /// The socket this client talks to.
    pub fn socket_path(&self) -> &Path {
        &self.path
    }

    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sets the per-request timeout (at least 1 ms), for the current connection and later ones.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout.max(MIN_TIMEOUT);
        if let Some(stream) = &self.stream {
            if set_timeouts(stream, self.timeout).is_err() {
                self.stream = None;
            }
        }
    }

    /// Sends every later management request on behalf of `actor` (a label the daemon records in the
    /// audit log next to this process's uid and pid), or, with `None`, as this process alone. `Ping` and
    /// `Verify` are never labelled.
    pub fn set_actor(&mut self, actor: Option<String>) {
        self.actor = actor;
    }

    /// The label management requests are sent on behalf of, if any.
    pub fn actor(&self) -> Option<&str> {
        self.actor.as_deref()
    }

    /// Sends `request` (inside a [`Request::As`] if an actor is set and it is a management request) and
    /// waits for its reply.
    ///
    /// A connection found closed is replaced before sending. If it breaks while the request is under way,
    /// a read (Ping, List, Get, a Verify with `cost: 0`, …) is sent once more on a new connection; a
    /// request that changes or spends something (Create, Revoke, a Verify with a cost, …) is not, since
    /// the daemon may have carried it out. An error reply is returned as [`ClientError::Refused`], so `Ok`
    /// never holds [`Reply::Error`].
    pub fn call(&mut self, request: Request) -> Result<Reply, ClientError> {
        let request = requests::on_behalf_of(self.actor.as_deref(), request);
        let id = self.next_request_id();
        let frame = wire::request_frame(id, &request, Vec::new())?;
        let answer = self.exchange_once_more_if(requests::is_idempotent(&request), id, &frame)?;
        requests::refused_as_error(answer.into_reply())
    }

    fn next_request_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// [`Self::exchange`], and once more on a new connection if `retry` and the connection broke.
    fn exchange_once_more_if(&mut self, retry: bool, id: u64, frame: &[u8]) -> Result<Answer, ClientError> {
        match self.exchange(id, frame) {
            Err(error) if retry && error.is_broken_connection() => self.exchange(id, frame),
            other => other,
        }
    }

    /// Checks that the daemon answers.
    pub fn ping(&mut self) -> Result<(), ClientError> {
        self.call(Request::Ping).and_then(requests::pong)
    }

    /// Verifies a token. Every outcome, valid or not, is an answer; see [`VerifyAnswer::code`].
    pub fn verify(&mut self, request: VerifyRequest) -> Result<VerifyAnswer, ClientError> {
        let id = self.next_request_id();
        let frame = wire::verify_frame(id, &request, Vec::new())?;
        let retry = requests::is_idempotent_verify(&request);
        drop(request);
        self.exchange_once_more_if(retry, id, &frame).and_then(requests::verify_answer)
    }

    /// Creates a key (admin socket). The returned token is shown once and never stored by the daemon.
    pub fn create(&mut self, request: CreateRequest) -> Result<CreatedKey, ClientError> {
        self.call(Request::Create(request)).and_then(requests::created_key)
    }

    /// Fetches one page of a workspace's keys (admin socket).
    pub fn list_page(&mut self, request: ListRequest) -> Result<KeyPage, ClientError> {
        self.call(Request::List(request)).and_then(requests::key_page)
    }

    /// Lists every key of `workspace`, oldest first, following pages to the end (admin socket).
    pub fn list(&mut self, workspace: &str) -> Result<Vec<KeyView>, ClientError> {
        let mut listing = Listing::new(workspace);
        loop {
            let page = self.call(listing.next_request()).and_then(requests::key_page)?;
            if !listing.absorb(page)? {
                return Ok(listing.into_keys());
            }
        }
    }

    /// Shows one key (admin socket).
    pub fn get(&mut self, id: &str) -> Result<KeyView, ClientError> {
        self.call(Request::Get { id: id.to_owned() }).and_then(requests::key_view)
    }

    /// Revokes one key for good (admin socket); returns it with status `revoked`.
    pub fn revoke(&mut self, id: &str) -> Result<KeyView, ClientError> {
        self.call(Request::Revoke { id: id.to_owned() }).and_then(requests::key_view)
    }

    /// Changes a key's settings (admin socket); its token stays the same.
    pub fn edit(&mut self, id: &str, changes: KeyChanges) -> Result<KeyView, ClientError> {
        self.call(Request::Edit { id: id.to_owned(), changes }).and_then(requests::key_view)
    }

    /// Gives a key a new token with the same settings (admin socket). The old token stops working at
    /// once, or after `grace_seconds`. The new token is shown once and never stored by the daemon.
    pub fn regenerate(&mut self, id: &str, grace_seconds: u64) -> Result<CreatedKey, ClientError> {
        self.call(Request::Regenerate { id: id.to_owned(), grace_seconds }).and_then(requests::created_key)
    }

    /// Suspends a key until [`BlockingClient::activate`]; its verifies answer `INACTIVE` (admin socket).
    pub fn deactivate(&mut self, id: &str) -> Result<KeyView, ClientError> {
        self.call(Request::Deactivate { id: id.to_owned() }).and_then(requests::key_view)
    }

    /// Undoes [`BlockingClient::deactivate`] (admin socket).
    pub fn activate(&mut self, id: &str) -> Result<KeyView, ClientError> {
        self.call(Request::Activate { id: id.to_owned() }).and_then(requests::key_view)
    }

    /// Takes over a token issued by another system, so that it verifies as it is (admin socket).
    pub fn import(&mut self, request: ImportRequest) -> Result<KeyView, ClientError> {
        self.call(Request::Import(request)).and_then(requests::key_view)
    }

    /// Reads the audit log, newest first (admin socket).
    pub fn audit(&mut self, query: AuditQuery) -> Result<Vec<AuditEntry>, ClientError> {
        self.call(Request::Audit(query)).and_then(requests::audit_entries)
    }

    /// Sets the workspaces an account's legacy keys may act on, replacing the previous list (admin socket).
    pub fn set_account(&mut self, account: AccountView) -> Result<AccountView, ClientError> {
        self.call(Request::SetAccount(account)).and_then(requests::account_view)
    }

    /// Shows an account's workspaces; an unknown account has none (admin socket).
    pub fn get_account(&mut self, account: &str) -> Result<AccountView, ClientError> {
        self.call(Request::GetAccount { account: account.to_owned() }).and_then(requests::account_view)
    }

    /// Lists legacy personal keys, of one account or of all, oldest first (admin socket).
    pub fn list_legacy(&mut self, account: Option<&str>) -> Result<Vec<KeyView>, ClientError> {
        self.call(Request::ListLegacy { account: account.map(str::to_owned) }).and_then(requests::legacy_keys)
    }

    /// Sets or adds to a key's credit balance (admin socket).
    pub fn credits(&mut self, id: &str, change: CreditChange) -> Result<KeyView, ClientError> {
        self.call(Request::Credits { id: id.to_owned(), change }).and_then(requests::key_view)
    }

    /// One key's verifications by outcome: totals, hourly and daily (admin socket).
    pub fn usage(&mut self, id: &str) -> Result<UsageReport, ClientError> {
        self.call(Request::Usage { id: id.to_owned() }).and_then(requests::usage_report)
    }

    /// Per-key totals of a workspace, most verifications first (admin socket).
    pub fn workspace_usage(&mut self, workspace: &str) -> Result<Vec<KeyUsage>, ClientError> {
        self.call(Request::WorkspaceUsage { workspace: workspace.to_owned() }).and_then(requests::workspace_usage)
    }

    /// The daemon's counters: keys by status, connections, verifies by code and their latency, the
    /// Argon2 queue, the store's size (admin socket).
    pub fn stats(&mut self) -> Result<StatsReport, ClientError> {
        self.call(Request::Stats).and_then(requests::stats_report)
    }

    /// Fleet mode: creates or upgrades the engine's schema and, on a new fleet, imports this host's store
    /// (admin socket). Not retried: it writes.
    pub fn fleet_init(&mut self) -> Result<FleetReport, ClientError> {
        self.call(Request::FleetInit).and_then(requests::fleet_report)
    }

    /// Fleet mode: the engine, each host, its applied change and its lag (admin socket).
    pub fn fleet_status(&mut self) -> Result<FleetReport, ClientError> {
        self.call(Request::FleetStatus).and_then(requests::fleet_report)
    }

    /// One request/reply on a live connection. Any failure drops the connection: after a timeout or a
    /// broken frame the stream's position is unknown, and a stale reply must never answer a later request.
    fn exchange(&mut self, id: u64, frame: &[u8]) -> Result<Answer, ClientError> {
        let timeout = self.timeout;
        let stream = self.live_stream()?;
        let result = send_and_receive(stream, id, frame, timeout);
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    /// The current connection if it is still open, else a new one.
    fn live_stream(&mut self) -> Result<&mut UnixStream, ClientError> {
        if self.stream.as_ref().is_some_and(|stream| !is_idle_and_open(stream)) {
            self.stream = None;
        }
        if self.stream.is_none() {
            self.stream = Some(open(&self.path, self.daemon_user, self.timeout)?);
        }
        Ok(self.stream.as_mut().expect("connected just above"))
    }
}

/// Connects to `path` and completes the handshake.
fn open(path: &Path, daemon_user: DaemonUser, timeout: Duration) -> Result<UnixStream, ClientError> {
    let mut stream =
        UnixStream::connect(path).map_err(|source| ClientError::Connect { path: path.to_owned(), source })?;
    daemon_user.check(&stream, path)?;
    set_timeouts(&stream, timeout)?;
    handshake(&mut stream, timeout)?;
    Ok(stream)
}

/// Sends the hello and checks the answer; a refusal the daemon sent before reading the hello is reported
/// as such, not as the broken pipe the hello then met.
fn handshake(stream: &mut UnixStream, timeout: Duration) -> Result<(), ClientError> {
    if let Err(error) = stream.write_all(&wire::hello_frame()?) {
        if wire::may_hold_rejection(&error) {
            if let Ok(Some(payload)) = frame::read_frame(stream, MAX_REPLY) {
                wire::check_hello_reply(&payload)?;
            }
        }
        return Err(ClientError::from_io(error, timeout));
    }
    let payload = frame::read_frame(stream, MAX_REPLY)
        .map_err(|e| ClientError::from_frame(e, timeout))?
        .ok_or(ClientError::Closed)?;
    wire::check_hello_reply(&payload)
}

fn set_timeouts(stream: &UnixStream, timeout: Duration) -> io::Result<()> {
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))
}

/// Writes one request frame and reads the reply to it.
fn send_and_receive(stream: &mut UnixStream, id: u64, frame: &[u8], timeout: Duration) -> Result<Answer, ClientError> {
    stream.write_all(frame).map_err(|e| ClientError::from_io(e, timeout))?;
    let payload = frame::read_frame(stream, MAX_REPLY)
        .map_err(|e| ClientError::from_frame(e, timeout))?
        .ok_or(ClientError::Closed)?;
    let (answered, answer) = wire::decode_reply(&payload)?;
    // Id 0 is the daemon's answer to a frame whose id it could not read; with one request on the wire,
    // that frame was ours.
    let ours = answered == id || (answered == 0 && answer.is_error());
    if ours {
        Ok(answer)
    } else {
        Err(ClientError::UnexpectedReply {
            expected: "the reply to the request just sent",
            got: "a reply to another request",
        })
    }
}

/// Whether an idle connection is still open, without blocking or consuming anything.
///
/// A daemon that restarted or dropped the connection leaves it at end-of-stream; finding that out before
/// sending means even a Create (which is never retried) goes out on a working connection. Between requests
/// nothing should be readable, so unexpected bytes also make the connection unusable.
fn is_idle_and_open(stream: &UnixStream) -> bool {
    let mut byte = 0u8;
    // SAFETY: `recv` writes at most one byte into `byte`, which outlives the call, on a descriptor that
    // `stream` keeps open for the duration of the call. MSG_PEEK leaves the stream untouched.
    let read = unsafe {
        libc::recv(stream.as_raw_fd(), (&mut byte as *mut u8).cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT)
    };
    read < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
}

#[cfg(test)]
mod tests {
    use keyward_protocol::{codec, ErrorCode, ErrorReply, HelloReply};

    use super::*;

    #[test]
    fn a_refusal_sent_before_the_hello_is_reported_not_the_broken_pipe() {
        let (mut ours, mut daemon) = UnixStream::pair().unwrap();
        let rejection = HelloReply::Rejected(ErrorReply::new(ErrorCode::Forbidden, "this user may not"));
        frame::write_frame(&mut daemon, &codec::encode(&rejection).unwrap()).unwrap();
        drop(daemon);
        let error = handshake(&mut ours, Duration::from_secs(1)).unwrap_err();
        assert!(matches!(&error, ClientError::Rejected(reply) if reply.code == ErrorCode::Forbidden), "{error}");

        let (mut ours, daemon) = UnixStream::pair().unwrap();
        drop(daemon);
        let error = handshake(&mut ours, Duration::from_secs(1)).unwrap_err();
        assert!(matches!(&error, ClientError::Io(e) if e.kind() == io::ErrorKind::BrokenPipe), "{error}");
    }
}
