//! [`Connection`]: one pipelined connection of the async [`Client`](crate::Client).
//!
//! This module owns a connection's moving parts. Callers hand a finished request frame to a writer task
//! through a channel and wait on their entry in a map of waiting requests; a reader task decodes reply
//! frames, puts each answer into the entry registered under the reply's id and wakes its caller, so any
//! number of requests share the connection and their replies may arrive in any order. The entry is the
//! request's only rendezvous with the reader (no channel or allocation of its own: the map is sized for a
//! full pipeline up front), and the caller takes its answer out of it. The map sits behind a `std` mutex
//! that is only ever held for a map operation, never across an `.await`.
//!
//! Each waiting request carries its deadline, and a sweeper task per connection fails the requests still
//! waiting at their deadline with [`ClientError::Timeout`], so a request costs no timer of its own. The
//! sweeper sleeps until the earliest deadline it knows of; a request registered with an earlier one (or
//! onto an empty map the sweeper stopped watching) wakes it. With one timeout for every request it wakes
//! about once per timeout while requests flow, and not at all while the connection is idle.
//!
//! When the connection breaks (end of stream, I/O error, a frame the client refuses), every waiting
//! request fails at once with the same cause, the connection is marked closed, and no new request can
//! register on it; the client then opens a new one on the next request.

use std::collections::HashMap;
use std::future::poll_fn;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use keyward_protocol::frame::{self, HEADER_LEN, MAX_REPLY};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, Notify, Semaphore, SemaphorePermit, TryAcquireError};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::error::ClientError;
use crate::trust::DaemonUser;
use crate::wire::{self, Answer, FramePool};

/// Bytes the reader asks the socket for at a time.
const READ_CHUNK: usize = 16 * 1024;
/// A read buffer grown past this by a large reply (a page of keys) is given back once it empties.
const KEEP_READ_BUFFER: usize = 256 * 1024;
/// Frames the writer coalesces into one write, at most (bytes).
const WRITE_BATCH: usize = 64 * 1024;

/// What a waiting request receives: its answer, or why it failed.
type Outcome = Result<Answer, ClientError>;

/// Why a request failed on this connection.
pub(crate) enum RequestError {
    /// The connection was closed before the frame was handed to the writer: nothing reached the daemon,
    /// so the frame (given back here) may be sent on another connection, whatever the request is.
    Unsent(Vec<u8>),
    /// The request may have reached the daemon.
    Failed(ClientError),
}

impl RequestError {
    /// The error to report when the request is not tried again.
    pub(crate) fn into_error(self) -> ClientError {
        match self {
            RequestError::Unsent(_) => ClientError::Closed,
            RequestError::Failed(error) => error,
        }
    }
}

/// A handshaken connection with its reader, writer and sweeper tasks.
pub(crate) struct Connection {
    state: Arc<State>,
    outbox: mpsc::UnboundedSender<Vec<u8>>,
    reader: AbortHandle,
}

/// What the caller side and the tasks share.
struct State {
    waiters: Mutex<Waiters>,
    /// A copy of `Waiters::open` readable without the lock, for choosing a connection.
    open: AtomicBool,
    /// Bounds the requests waiting on this connection; closed with the connection so that callers
    /// queued for a permit fail at once.
    permits: Semaphore,
    /// The permits there are.
    max_in_flight: usize,
    /// What an overdue request fails with.
    timeout: Duration,
    /// Wakes the sweeper: a deadline earlier than the one it sleeps until, or the connection closed.
    sweeper: Notify,
}

struct Waiters {
    open: bool,
    by_id: HashMap<u64, Waiting, BuildHasherDefault<IdHasher>>,
    /// When the sweeper wakes next; `None` while it waits for a request to watch.
    next_sweep: Option<Instant>,
}

/// A request's entry in the map: waiting for its answer until `deadline`, then holding it until the caller
/// takes it.
struct Waiting {
    deadline: Instant,
    state: WaitState,
}

enum WaitState {
    /// No answer yet; the waker of the caller's last poll, if it has polled.
    Pending(Option<Waker>),
    /// The answer, or why there will be none.
    Done(Outcome),
}

impl Waiting {
    fn new(deadline: Instant, waker: &Waker) -> Self {
        Waiting { deadline, state: WaitState::Pending(Some(waker.clone())) }
    }

    fn is_pending(&self) -> bool {
        matches!(self.state, WaitState::Pending(_))
    }

    /// Stores `outcome` unless one is stored already, and returns the waker to wake (after the lock is
    /// released).
    fn complete(&mut self, outcome: Outcome) -> Option<Waker> {
        let WaitState::Pending(waker) = &mut self.state else {
            return None;
        };
        let waker = waker.take();
        self.state = WaitState::Done(outcome);
        waker
    }
}

/// Hashes request ids, which the client hands out in sequence: one multiplication spreads them over the
/// map (the low bits stay distinct, the high bits mix).
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(byte));
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl Connection {
    /// Connects to `path`, completes the handshake, and starts the reader, writer and sweeper tasks on
    /// the current tokio runtime. Requests waiting longer than `timeout` fail with
    /// [`ClientError::Timeout`].
    /// The writer gives every frame it has written back to `frames`.
    pub(crate) async fn open(
        path: &Path,
        daemon_user: DaemonUser,
        max_in_flight: usize,
        timeout: Duration,
        frames: Arc<FramePool>,
    ) -> Result<Connection, ClientError> {
        let mut stream =
            UnixStream::connect(path).await.map_err(|source| ClientError::Connect { path: path.to_owned(), source })?;
        daemon_user.check(&stream, path)?;
        handshake(&mut stream).await?;
        let (reader, writer) = stream.into_split();
        let state = Arc::new(State::new(max_in_flight, timeout));
        let (outbox, queued) = mpsc::unbounded_channel();
        tokio::spawn(write_requests(writer, queued, Arc::clone(&state), frames));
        tokio::spawn(sweep_overdue(Arc::clone(&state)));
        let reader = tokio::spawn(read_replies(reader, Arc::clone(&state))).abort_handle();
        Ok(Connection { state, outbox, reader })
    }

    /// Whether the connection can take requests.
    pub(crate) fn is_open(&self) -> bool {
        self.state.open.load(Ordering::Acquire)
    }

    /// Sends one framed request under `id` and waits for its answer until `deadline`. If this future is
    /// dropped, the request is forgotten and a late reply is discarded.
    pub(crate) async fn request(&self, id: u64, frame: Vec<u8>, deadline: Instant) -> Result<Answer, RequestError> {
        let _permit = match self.state.permits.try_acquire() {
            Ok(permit) => permit,
            Err(TryAcquireError::Closed) => return Err(RequestError::Unsent(frame)),
            Err(TryAcquireError::NoPermits) => match self.permit_by(deadline).await {
                Ok(Some(permit)) => permit,
                Ok(None) => return Err(RequestError::Unsent(frame)),
                Err(timeout) => return Err(RequestError::Failed(timeout)),
            },
        };
        // Registered on the first poll, so that the entry holds the caller's waker from the start.
        let mut unsent = Some(frame);
        let mut registration: Option<Registration<'_>> = None;
        poll_fn(|cx| match &mut registration {
            Some(registration) => registration.poll_outcome(cx).map_err(RequestError::Failed),
            None => {
                let frame = unsent.take().expect("a request registers on its first poll only");
                let Some(registered) = Registration::new(&self.state, id, deadline, cx.waker()) else {
                    return Poll::Ready(Err(RequestError::Unsent(frame)));
                };
                registration = Some(registered);
                match self.outbox.send(frame) {
                    Ok(()) => Poll::Pending,
                    Err(unsent) => Poll::Ready(Err(RequestError::Unsent(unsent.0))),
                }
            }
        })
        .await
    }

    /// Waits for a free slot until `deadline`: `None` if the connection closed meanwhile. Boxed, so that
    /// the timer it needs is not part of every request's future.
    async fn permit_by(&self, deadline: Instant) -> Result<Option<SemaphorePermit<'_>>, ClientError> {
        match Box::pin(tokio::time::timeout_at(deadline, self.state.permits.acquire())).await {
            Ok(permit) => Ok(permit.ok()),
            Err(_) => Err(ClientError::Timeout(self.state.timeout)),
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // The writer task ends by itself when `outbox` is dropped, and the sweeper when the reader closes
        // the state; the reader would wait for the daemon.
        self.reader.abort();
    }
}

impl State {
    fn new(max_in_flight: usize, timeout: Duration) -> State {
        let max_in_flight = max_in_flight.clamp(1, Semaphore::MAX_PERMITS);
        State {
            // Sized for a full pipeline up front, so the map never regrows while requests wait on it.
            waiters: Mutex::new(Waiters {
                open: true,
                by_id: HashMap::with_capacity_and_hasher(max_in_flight.min(1024), Default::default()),
                next_sweep: None,
            }),
            open: AtomicBool::new(true),
            permits: Semaphore::new(max_in_flight),
            max_in_flight,
            timeout,
            sweeper: Notify::new(),
        }
    }

    /// Whether more requests than the one at hand are under way, so that more frames may be on their way.
    fn others_in_flight(&self) -> bool {
        self.max_in_flight - self.permits.available_permits() > 1
    }

    fn waiters(&self) -> MutexGuard<'_, Waiters> {
        // Nothing panics while holding the lock, but a poisoned map is still a consistent map.
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands each answer of `answers` (emptied) to the request waiting for its id, if it is still waiting
    /// (it may have timed out, or given up), under one lock; `wakers` is scratch space.
    fn answer(&self, answers: &mut Vec<(u64, Answer)>, wakers: &mut Vec<Waker>) {
        {
            let mut waiters = self.waiters();
            for (id, answer) in answers.drain(..) {
                wakers.extend(waiters.by_id.get_mut(&id).and_then(|waiting| waiting.complete(Ok(answer))));
            }
        }
        wakers.drain(..).for_each(Waker::wake);
    }

    /// Fails every request whose deadline is not after `now`, and tells the sweeper when to look again.
    fn fail_overdue(&self, now: Instant) -> NextSweep {
        let (wakers, next) = {
            let mut waiters = self.waiters();
            if !waiters.open {
                return NextSweep::Never;
            }
            let mut wakers = Vec::new();
            let mut next: Option<Instant> = None;
            for waiting in waiters.by_id.values_mut().filter(|waiting| waiting.is_pending()) {
                if waiting.deadline <= now {
                    wakers.extend(waiting.complete(Err(ClientError::Timeout(self.timeout))));
                } else {
                    next = Some(next.map_or(waiting.deadline, |next| next.min(waiting.deadline)));
                }
            }
            waiters.next_sweep = next;
            (wakers, next)
        };
        wakers.into_iter().for_each(Waker::wake);
        next.map_or(NextSweep::WhenWoken, NextSweep::At)
    }

    /// Marks the connection closed and fails every waiting request with `cause`. Only the first call
    /// does anything.
    fn close(&self, cause: &ClientError) {
        let wakers: Vec<Waker> = {
            let mut waiters = self.waiters();
            if !waiters.open {
                return;
            }
            waiters.open = false;
            self.open.store(false, Ordering::Release);
            waiters.by_id.values_mut().filter_map(|waiting| waiting.complete(Err(cause.for_waiter()))).collect()
        };
        self.permits.close();
        self.sweeper.notify_one();
        wakers.into_iter().for_each(Waker::wake);
    }
}

/// A request's entry in the waiting map, owned by the request: the request takes its answer out of it,
/// and an entry whose request gives up first is removed when this is dropped.
struct Registration<'a> {
    state: &'a State,
    id: u64,
    waiting: bool,
}

impl<'a> Registration<'a> {
    /// Registers a request under `id` that waits until `deadline` and is woken through `waker`, waking
    /// the sweeper if it must look earlier than it meant to; `None` if the connection is already closed.
    fn new(state: &'a State, id: u64, deadline: Instant, waker: &Waker) -> Option<Self> {
        let mut waiters = state.waiters();
        if !waiters.open {
            return None;
        }
        waiters.by_id.insert(id, Waiting::new(deadline, waker));
        let sooner = waiters.next_sweep.is_none_or(|next| deadline < next);
        if sooner {
            waiters.next_sweep = Some(deadline);
        }
        drop(waiters);
        if sooner {
            state.sweeper.notify_one();
        }
        Some(Registration { state, id, waiting: true })
    }

    /// The outcome once the reader, the sweeper or `close` has stored it (the entry is then removed);
    /// until then, remembers the caller's waker.
    fn poll_outcome(&mut self, cx: &mut Context<'_>) -> Poll<Outcome> {
        let mut waiters = self.state.waiters();
        let Some(waiting) = waiters.by_id.get_mut(&self.id) else {
            // Only this registration removes its entry, so this cannot happen; failing is the safe answer.
            self.waiting = false;
            return Poll::Ready(Err(ClientError::Closed));
        };
        match &mut waiting.state {
            WaitState::Pending(Some(waker)) if waker.will_wake(cx.waker()) => Poll::Pending,
            WaitState::Pending(waker) => {
                *waker = Some(cx.waker().clone());
                Poll::Pending
            }
            WaitState::Done(_) => {
                let Some(Waiting { state: WaitState::Done(outcome), .. }) = waiters.by_id.remove(&self.id) else {
                    unreachable!("the entry was just seen done");
                };
                self.waiting = false;
                Poll::Ready(outcome)
            }
        }
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        if self.waiting {
            self.state.waiters().by_id.remove(&self.id);
        }
    }
}

/// When the sweeper looks at the waiting requests again.
enum NextSweep {
    /// At the earliest deadline, or sooner if woken.
    At(Instant),
    /// Nothing waits: when a registration wakes it.
    WhenWoken,
    /// The connection is closed.
    Never,
}

/// The sweeper task: fails requests at their deadline until the connection closes.
async fn sweep_overdue(state: Arc<State>) {
    let sleep = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(sleep);
    loop {
        match state.fail_overdue(Instant::now()) {
            NextSweep::At(deadline) => {
                sleep.as_mut().reset(deadline);
                tokio::select! {
                    () = &mut sleep => {}
                    () = state.sweeper.notified() => {}
                }
            }
            NextSweep::WhenWoken => state.sweeper.notified().await,
            NextSweep::Never => return,
        }
    }
}

/// Sends the hello and checks the answer, before the stream is split. A refusal the daemon sent before
/// reading the hello is reported as such, not as the broken pipe the hello then met.
async fn handshake(stream: &mut UnixStream) -> Result<(), ClientError> {
    if let Err(error) = stream.write_all(&wire::hello_frame()?).await {
        if wire::may_hold_rejection(&error) {
            read_hello_reply(stream).await?;
        }
        return Err(ClientError::Io(error));
    }
    read_hello_reply(stream).await
}

async fn read_hello_reply(stream: &mut UnixStream) -> Result<(), ClientError> {
    let mut header = [0u8; HEADER_LEN];
    read_exact_or_closed(stream, &mut header).await?;
    // Checks the announced length against the limit before allocating for it.
    frame::next_frame_len(&header, MAX_REPLY).map_err(ClientError::Frame)?;
    let mut payload = vec![0u8; u32::from_be_bytes(header) as usize];
    read_exact_or_closed(stream, &mut payload).await?;
    wire::check_hello_reply(&payload)
}

async fn read_exact_or_closed(stream: &mut UnixStream, buf: &mut [u8]) -> Result<(), ClientError> {
    match stream.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => Err(ClientError::Closed),
        Err(error) => Err(ClientError::Io(error)),
    }
}

/// The writer task: sends queued frames until the connection is dropped or a write fails, and gives their
/// buffers back to `frames` once they are copied into a write.
async fn write_requests(
    mut writer: OwnedWriteHalf,
    mut queued: mpsc::UnboundedReceiver<Vec<u8>>,
    state: Arc<State>,
    frames: Arc<FramePool>,
) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    let mut written = Vec::new();
    while let Some(frame) = queued.recv().await {
        // Under load many callers queue a frame between two wake-ups of this task; one write for all of
        // them instead of one per frame is most of what pipelining saves.
        batch.extend_from_slice(&frame);
        written.push(frame);
        if state.others_in_flight() {
            // A burst of replies wakes many callers at once, and the first frame one of them queues wakes
            // this task, which the scheduler then runs next, before the rest of the burst: without this
            // yield, every frame of a pipeline would be a write of its own.
            tokio::task::yield_now().await;
        }
        while batch.len() < WRITE_BATCH {
            match queued.try_recv() {
                Ok(frame) => {
                    batch.extend_from_slice(&frame);
                    written.push(frame);
                }
                Err(_) => break,
            }
        }
        frames.give_back(&mut written);
        if let Err(error) = writer.write_all(&batch).await {
            state.close(&ClientError::Io(error));
            return;
        }
        batch.clear();
    }
}

/// The reader task: dispatches reply frames to their waiters until the connection breaks.
async fn read_replies(mut reader: OwnedReadHalf, state: Arc<State>) {
    // However this task ends (including being aborted, or dropped with its runtime), nobody may be left
    // waiting for a reply that can no longer come.
    let _closer = CloseOnExit(Arc::clone(&state));
    let mut buf = Vec::with_capacity(READ_CHUNK);
    let mut batch = Batch::default();
    let cause = loop {
        if let Err(cause) = batch.dispatch(&mut buf, &state) {
            break cause;
        }
        if buf.is_empty() && buf.capacity() > KEEP_READ_BUFFER {
            buf = Vec::with_capacity(READ_CHUNK);
        }
        buf.reserve(READ_CHUNK);
        match reader.read_buf(&mut buf).await {
            Ok(0) if buf.is_empty() => break ClientError::Closed,
            Ok(0) => break ClientError::Frame(frame::FrameError::Truncated),
            Ok(_) => {}
            Err(error) => break ClientError::Io(error),
        }
    };
    state.close(&cause);
}

/// The reader's scratch space for the answers of one read, kept between reads so that dispatching
/// allocates nothing.
#[derive(Default)]
struct Batch {
    answers: Vec<(u64, Answer)>,
    wakers: Vec<Waker>,
}

impl Batch {
    /// Answers every complete frame at the start of `buf` and removes them from it. The answers decoded
    /// before a frame that breaks the connection are still handed over.
    fn dispatch(&mut self, buf: &mut Vec<u8>, state: &State) -> Result<(), ClientError> {
        let mut start = 0;
        let decoded = loop {
            let total = match frame::next_frame_len(&buf[start..], MAX_REPLY) {
                Ok(Some(total)) => total,
                Ok(None) => break Ok(()),
                Err(error) => break Err(ClientError::Frame(error)),
            };
            match wire::decode_reply(&buf[start + HEADER_LEN..start + total]) {
                Ok(answer) => self.answers.push(answer),
                Err(error) => break Err(error),
            }
            start += total;
        };
        state.answer(&mut self.answers, &mut self.wakers);
        buf.drain(..start);
        decoded
    }
}

struct CloseOnExit(Arc<State>);

impl Drop for CloseOnExit {
    fn drop(&mut self) {
        self.0.close(&ClientError::Closed);
    }
}

#[cfg(test)]
mod tests {
    use keyward_protocol::{codec, ErrorCode, ErrorReply, HelloReply, Reply};

    use super::*;

    fn pong() -> Vec<(u64, Answer)> {
        vec![(7, Answer::Other(Box::new(Reply::Pong)))]
    }

    fn poll(registration: &mut Registration<'_>) -> Poll<Outcome> {
        registration.poll_outcome(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn an_answer_waits_in_its_entry_until_the_request_takes_it() {
        let state = State::new(4, Duration::from_secs(5));
        let mut registration = Registration::new(&state, 7, Instant::now() + state.timeout, Waker::noop()).unwrap();
        assert!(poll(&mut registration).is_pending());
        state.answer(&mut pong(), &mut Vec::new());
        assert_eq!(state.waiters().by_id.len(), 1, "the answer is held for the request");
        assert!(matches!(poll(&mut registration), Poll::Ready(Ok(Answer::Other(reply))) if *reply == Reply::Pong));
        assert!(state.waiters().by_id.is_empty(), "taking the answer removes the entry");
    }

    #[test]
    fn a_request_that_gives_up_leaves_no_entry_and_its_late_answer_is_dropped() {
        let state = State::new(4, Duration::from_secs(5));
        let registration = Registration::new(&state, 7, Instant::now() + state.timeout, Waker::noop()).unwrap();
        drop(registration);
        assert!(state.waiters().by_id.is_empty());
        state.answer(&mut pong(), &mut Vec::new());
        assert!(state.waiters().by_id.is_empty(), "a late answer creates no entry");
    }

    #[test]
    fn overdue_and_closed_requests_fail_and_a_closed_connection_takes_no_more() {
        let state = State::new(4, Duration::from_secs(5));
        let now = Instant::now();
        let mut overdue = Registration::new(&state, 1, now, Waker::noop()).unwrap();
        let mut later = Registration::new(&state, 2, now + state.timeout, Waker::noop()).unwrap();
        assert!(matches!(state.fail_overdue(now), NextSweep::At(at) if at == now + state.timeout));
        assert!(matches!(poll(&mut overdue), Poll::Ready(Err(ClientError::Timeout(_)))));
        assert!(poll(&mut later).is_pending());
        state.close(&ClientError::Closed);
        assert!(matches!(poll(&mut later), Poll::Ready(Err(ClientError::Closed))));
        assert!(Registration::new(&state, 3, now, Waker::noop()).is_none());
        assert!(state.waiters().by_id.is_empty());
    }

    #[tokio::test]
    async fn a_refusal_sent_before_the_hello_is_reported_not_the_broken_pipe() {
        let (mut ours, mut daemon) = UnixStream::pair().unwrap();
        let rejection = HelloReply::Rejected(ErrorReply::new(ErrorCode::Forbidden, "this user may not"));
        let mut out = Vec::new();
        frame::put_frame(&mut out, &codec::encode(&rejection).unwrap());
        daemon.write_all(&out).await.unwrap();
        drop(daemon);
        let error = handshake(&mut ours).await.unwrap_err();
        assert!(matches!(&error, ClientError::Rejected(reply) if reply.code == ErrorCode::Forbidden), "{error}");
    }
}
