//! The floor: an echo server with keyward's framing, and the clients that drive it.
//!
//! The server reads frames (4-byte big-endian length + payload) on a Unix socket with a multi-thread
//! tokio runtime, as `keywardd` does, and answers each with the same bytes. Its connection loop has the
//! daemon's shape without the daemon's work: read into one buffer, take every complete frame, append
//! each reply to one output buffer, one write per pass. Requests carry a 64-byte payload whose first 8
//! bytes are the request id; the attackers of the flood's control send payloads of other sizes.
//!
//! Two clients measure it:
//! - [`EchoClient`] mirrors `keyward_client::Client` step for step, minus encoding: a pool of connections
//!   chosen round-robin per request, frames built in pooled buffers, a writer task fed by a channel that
//!   coalesces queued frames into one write and gives the buffers back, a reader task that marks the
//!   waiting requests of each read answered in a mutex-guarded map (one lock per read) and wakes them. It is the floor that keyward's figures are divided by.
//! - [`RawEcho`] and [`raw_pipelined`] talk to the socket directly (write, then read; or a window of
//!   requests in flight from one task): the transport alone, to show what the client's task design costs.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};
use std::time::Instant;

use bytes::{Buf, BytesMut};
use keyward_protocol::frame::{self, HEADER_LEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

use crate::load::{histogram, Caller, Measurement, Phase};

/// Bytes of payload per request, as the benchmark's issue specifies.
pub const PAYLOAD: usize = 64;
const FRAME: usize = HEADER_LEN + PAYLOAD;
/// The same read size and write batch as keywardd and keyward-client.
const READ_CHUNK: usize = 16 * 1024;
const WRITE_BATCH: usize = 64 * 1024;

/// Serves echo connections on `path` until the process is stopped.
pub async fn serve(path: &Path) -> io::Result<()> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = echo_connection(stream).await;
        });
    }
}

async fn echo_connection(stream: UnixStream) -> io::Result<()> {
    let (mut reader, mut writer) = stream.into_split();
    let mut inbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut out = Vec::with_capacity(READ_CHUNK);
    loop {
        inbuf.reserve(READ_CHUNK);
        if reader.read_buf(&mut inbuf).await? == 0 {
            return Ok(());
        }
        while let Some(total) = frame::next_frame_len(&inbuf, frame::DEFAULT_MAX_REQUEST).map_err(io::Error::other)? {
            out.extend_from_slice(&inbuf[..total]);
            inbuf.advance(total);
        }
        if !out.is_empty() {
            writer.write_all(&out).await?;
            out.clear();
        }
    }
}

/// Payloads are never shorter than the request id they start with.
const MIN_PAYLOAD: usize = 8;

fn request_frame(id: u64, payload: usize) -> Vec<u8> {
    frame_into(Vec::new(), id, payload)
}

/// [`request_frame`] in `frame` (emptied first).
fn frame_into(mut frame: Vec<u8>, id: u64, payload: usize) -> Vec<u8> {
    let payload = payload.max(MIN_PAYLOAD);
    frame.clear();
    frame.reserve(HEADER_LEN + payload);
    frame.extend_from_slice(&(payload as u32).to_be_bytes());
    frame.extend_from_slice(&id.to_le_bytes());
    frame.resize(HEADER_LEN + payload, 0xA5);
    frame
}

/// A pooled, pipelined echo client built like `keyward_client::Client`; cheap to clone.
#[derive(Clone)]
pub struct EchoClient {
    shared: Arc<Pool>,
}

struct Pool {
    connections: Vec<EchoConnection>,
    /// Frame buffers, reused like `keyward_client`'s: taken per request, given back by the writers.
    frames: Arc<Mutex<Vec<Vec<u8>>>>,
    next_slot: AtomicUsize,
    next_id: AtomicU64,
}

fn spare(frames: &Mutex<Vec<Vec<u8>>>) -> MutexGuard<'_, Vec<Vec<u8>>> {
    frames.lock().unwrap_or_else(PoisonError::into_inner)
}

struct EchoConnection {
    outbox: mpsc::UnboundedSender<Vec<u8>>,
    waiters: Arc<Mutex<Waiters>>,
}

/// The requests waiting on one connection, as `keyward_client` keeps them: an entry per request id holding
/// the caller's waker until the reader marks it answered; the caller removes it.
struct Waiters {
    open: bool,
    by_id: HashMap<u64, Waiting>,
}

enum Waiting {
    Pending(Waker),
    Answered,
}

fn lock(waiters: &Mutex<Waiters>) -> MutexGuard<'_, Waiters> {
    waiters.lock().unwrap_or_else(PoisonError::into_inner)
}

impl EchoClient {
    /// Opens `connections` connections to the echo server at `path`.
    pub async fn connect(path: &Path, connections: usize) -> io::Result<EchoClient> {
        let mut opened = Vec::with_capacity(connections);
        let frames = Arc::new(Mutex::new(Vec::new()));
        for _ in 0..connections.max(1) {
            let (reader, writer) = UnixStream::connect(path).await?.into_split();
            let waiters = Arc::new(Mutex::new(Waiters { open: true, by_id: HashMap::with_capacity(128) }));
            let (outbox, queued) = mpsc::unbounded_channel();
            tokio::spawn(write_frames(writer, queued, Arc::clone(&waiters), Arc::clone(&frames)));
            tokio::spawn(read_replies(reader, Arc::clone(&waiters)));
            opened.push(EchoConnection { outbox, waiters });
        }
        let pool = Pool { connections: opened, frames, next_slot: AtomicUsize::new(0), next_id: AtomicU64::new(1) };
        Ok(EchoClient { shared: Arc::new(pool) })
    }

    /// One round trip of a [`PAYLOAD`]-byte request: build the frame in a pooled buffer, register the
    /// caller's waker under its id, queue it, await the answer.
    pub async fn echo(&self) -> bool {
        self.echo_payload(PAYLOAD).await
    }

    /// The same round trip with a `payload`-byte request (at least 8 bytes: the id).
    pub async fn echo_payload(&self, payload: usize) -> bool {
        let shared = &self.shared;
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let turn = shared.next_slot.fetch_add(1, Ordering::Relaxed);
        let connection = &shared.connections[turn % shared.connections.len()];
        let buffer = spare(&shared.frames).pop().unwrap_or_default();
        let mut frame = Some(frame_into(buffer, id, payload));
        poll_fn(|cx| {
            let mut waiters = lock(&connection.waiters);
            if let Some(frame) = frame.take() {
                if !waiters.open {
                    return Poll::Ready(false);
                }
                waiters.by_id.insert(id, Waiting::Pending(cx.waker().clone()));
                drop(waiters);
                return match connection.outbox.send(frame) {
                    Ok(()) => Poll::Pending,
                    Err(_) => {
                        lock(&connection.waiters).by_id.remove(&id);
                        Poll::Ready(false)
                    }
                };
            }
            match waiters.by_id.get_mut(&id) {
                Some(Waiting::Pending(waker)) => {
                    waker.clone_from(cx.waker());
                    Poll::Pending
                }
                Some(Waiting::Answered) => {
                    waiters.by_id.remove(&id);
                    Poll::Ready(true)
                }
                None => Poll::Ready(false),
            }
        })
        .await
    }
}

impl Caller for EchoClient {
    async fn call(&mut self) -> bool {
        self.echo().await
    }
}

/// Writes queued frames, coalescing whatever is queued into one write. Like `keyward_client`'s writer, it
/// yields once before writing while other requests are in flight, so that the callers woken by one burst
/// of replies queue their next frames first and a pipeline is not written a frame at a time.
async fn write_frames(
    mut writer: OwnedWriteHalf,
    mut queued: mpsc::UnboundedReceiver<Vec<u8>>,
    waiters: Arc<Mutex<Waiters>>,
    frames: Arc<Mutex<Vec<Vec<u8>>>>,
) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    let mut written = Vec::new();
    while let Some(frame) = queued.recv().await {
        batch.extend_from_slice(&frame);
        written.push(frame);
        if lock(&waiters).by_id.len() > 1 {
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
        // Wiped and taken back under one lock, as `keyward_client`'s pool does.
        for frame in &mut written {
            frame.fill(0);
        }
        spare(&frames).append(&mut written);
        if writer.write_all(&batch).await.is_err() {
            return;
        }
        batch.clear();
    }
}

/// Reads echoes and marks their requests answered, every echo of one read under one lock, waking the callers
/// after it is released, as `keyward_client`'s reader does.
async fn read_replies(mut reader: OwnedReadHalf, waiters: Arc<Mutex<Waiters>>) {
    let mut buf = Vec::with_capacity(READ_CHUNK);
    let mut ids = Vec::new();
    let mut wakers = Vec::new();
    loop {
        let mut start = 0;
        while let Ok(Some(total)) = frame::next_frame_len(&buf[start..], frame::MAX_REPLY) {
            let payload = &buf[start + HEADER_LEN..start + total];
            ids.push(payload.first_chunk::<8>().map_or(0, |bytes| u64::from_le_bytes(*bytes)));
            start += total;
        }
        {
            let mut waiters = lock(&waiters);
            for id in ids.drain(..) {
                if let Some(waiting) = waiters.by_id.get_mut(&id) {
                    if let Waiting::Pending(waker) = std::mem::replace(waiting, Waiting::Answered) {
                        wakers.push(waker);
                    }
                }
            }
        }
        wakers.drain(..).for_each(Waker::wake);
        buf.drain(..start);
        buf.reserve(READ_CHUNK);
        match reader.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    // Removing the entries fails every waiting request.
    let pending: Vec<Waiting> = {
        let mut waiters = lock(&waiters);
        waiters.open = false;
        waiters.by_id.drain().map(|(_, waiting)| waiting).collect()
    };
    for waiting in pending {
        if let Waiting::Pending(waker) = waiting {
            waker.wake();
        }
    }
}

/// One connection used directly: write a frame, read its echo. One request at a time.
pub struct RawEcho {
    stream: UnixStream,
    frame: [u8; FRAME],
    reply: [u8; FRAME],
}

impl RawEcho {
    pub async fn connect(path: &Path) -> io::Result<RawEcho> {
        let mut frame = [0xA5; FRAME];
        frame[..HEADER_LEN].copy_from_slice(&(PAYLOAD as u32).to_be_bytes());
        Ok(RawEcho { stream: UnixStream::connect(path).await?, frame, reply: [0; FRAME] })
    }
}

impl Caller for RawEcho {
    async fn call(&mut self) -> bool {
        self.stream.write_all(&self.frame).await.is_ok() && self.stream.read_exact(&mut self.reply).await.is_ok()
    }
}

/// One connection, one task, `depth` requests in flight: the transport's pipelining floor. The server
/// answers in order, so a queue of send times matches replies to requests.
pub async fn raw_pipelined(path: &Path, depth: usize, phase: Phase) -> io::Result<Measurement> {
    let (mut reader, mut writer) = UnixStream::connect(path).await?.into_split();
    let start = Instant::now();
    let (from, until) = (start + phase.warmup, start + phase.warmup + phase.window);
    let mut measured = Measurement { latency: histogram(), ..Measurement::empty(phase.window) };
    let mut sent: VecDeque<Instant> = VecDeque::with_capacity(depth);
    let mut out = Vec::with_capacity(depth * FRAME);
    let mut inbuf = BytesMut::with_capacity(READ_CHUNK);
    let frame = request_frame(0, PAYLOAD);
    loop {
        let now = Instant::now();
        if now < until {
            while sent.len() < depth {
                out.extend_from_slice(&frame);
                sent.push_back(now);
            }
        } else if sent.is_empty() {
            return Ok(measured);
        }
        if !out.is_empty() {
            writer.write_all(&out).await?;
            out.clear();
        }
        inbuf.reserve(READ_CHUNK);
        if reader.read_buf(&mut inbuf).await? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the echo server closed the connection"));
        }
        while inbuf.len() >= FRAME {
            inbuf.advance(FRAME);
            let at = sent.pop_front().expect("a reply answers a sent request");
            if at >= from && at < until {
                measured.record(at.elapsed(), true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_frames_carry_their_id_and_size() {
        let frame = request_frame(7, 100);
        assert_eq!(frame.len(), HEADER_LEN + 100);
        assert_eq!(frame::next_frame_len(&frame, frame::DEFAULT_MAX_REQUEST).unwrap(), Some(frame.len()));
        assert_eq!(frame[HEADER_LEN..HEADER_LEN + 8], 7u64.to_le_bytes());
        assert_eq!(request_frame(7, 0).len(), HEADER_LEN + MIN_PAYLOAD);
        assert_eq!(request_frame(7, PAYLOAD).len(), FRAME);
    }
}
