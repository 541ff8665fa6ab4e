//! The peer: what a team would run instead of keyward — Redis, one EVALSHA per verify.
//!
//! The fixture stores each token as a hash at `key:<hex sha256(token)>` with its workspace and scopes.
//! The script looks the hash up, checks the required scope, and counts the request in a fixed one-second
//! window (`INCR` of `rl:<hex>:<window>`, `EXPIRE` on the window's first request) against the limit.
//! Per request the client hashes the presented token with SHA-256 (Redis cannot run Argon2, so a team
//! would store a fast hash) and sends one EVALSHA.
//!
//! The client speaks RESP2 over a tokio `UnixStream` itself rather than through the `redis` crate, to keep
//! the workspace's dependency tree (and cargo-deny's view of it) unchanged. It is built like
//! `keyward_client::Client` and [`crate::echo::EchoClient`]: a pool chosen round-robin per request, a writer
//! task that coalesces queued commands, a reader task that completes waiting requests. Redis answers in
//! order, so waiters sit in a FIFO queue, pushed under the same lock as the command is queued.

use std::collections::VecDeque;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};

use crate::load::Caller;

/// The verify script. Returns `{1, workspace, count}` when allowed; `{0}` unknown token, `{2, workspace}`
/// missing scope, `{3, workspace, count}` over the limit.
pub const VERIFY_SCRIPT: &str = r#"
local key = redis.call('HMGET', KEYS[1], 'workspace', 'scopes')
if not key[1] then return {0} end
local scope = ARGV[1]
if scope ~= '' and not string.find(' ' .. key[2] .. ' ', ' ' .. scope .. ' ', 1, true) then
  return {2, key[1]}
end
local window = tonumber(ARGV[3])
local now = redis.call('TIME')
local counter = KEYS[2] .. ':' .. math.floor(tonumber(now[1]) / window)
local count = redis.call('INCR', counter)
if count == 1 then redis.call('EXPIRE', counter, window) end
if count > tonumber(ARGV[2]) then return {3, key[1], count} end
return {1, key[1], count}
"#;

const READ_CHUNK: usize = 16 * 1024;
const WRITE_BATCH: usize = 64 * 1024;

/// Lowercase hex of SHA-256 of `token`.
pub fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        hex.push(char::from(b"0123456789abcdef"[usize::from(byte & 15)]));
    }
    hex
}

/// Appends a RESP array of bulk strings.
pub fn put_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// The length of the first complete RESP value in `buf`; `Ok(None)` when more bytes are needed.
pub fn value_len(buf: &[u8]) -> Result<Option<usize>, String> {
    let Some(line_end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let after_line = line_end + 2;
    let Some(&kind) = buf.first() else {
        return Ok(None);
    };
    let number = || -> Result<i64, String> {
        std::str::from_utf8(&buf[1..line_end])
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| "a malformed RESP length".to_owned())
    };
    match kind {
        b'+' | b'-' | b':' => Ok(Some(after_line)),
        b'$' => {
            let len = number()?;
            if len < 0 {
                return Ok(Some(after_line));
            }
            let total = after_line + len as usize + 2;
            Ok((buf.len() >= total).then_some(total))
        }
        b'*' => {
            let count = number()?;
            let mut at = after_line;
            for _ in 0..count.max(0) {
                match value_len(&buf[at..])? {
                    Some(len) => at += len,
                    None => return Ok(None),
                }
            }
            Ok(Some(at))
        }
        other => Err(format!("unexpected RESP type byte {other:#x}")),
    }
}

/// Whether a reply of the verify script says "allowed" (`*3\r\n:1\r\n…`).
pub fn allowed(reply: &[u8]) -> bool {
    reply.starts_with(b"*3\r\n:1\r\n")
}

/// Sends one command on a fresh connection and returns its reply (setup only, not measured).
pub async fn command(path: &Path, args: &[&[u8]]) -> io::Result<Vec<u8>> {
    let mut stream = UnixStream::connect(path).await?;
    let mut out = Vec::new();
    put_command(&mut out, args);
    stream.write_all(&out).await?;
    let mut buf = Vec::with_capacity(256);
    loop {
        if let Some(len) = value_len(&buf).map_err(io::Error::other)? {
            buf.truncate(len);
            return Ok(buf);
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "redis closed the connection"));
        }
    }
}

/// Loads the script and stores `token` as a key of `workspace` with `scopes`; returns the script's SHA1.
pub async fn prepare(path: &Path, token: &str, workspace: &str, scopes: &str) -> io::Result<String> {
    let reply = command(path, &[b"SCRIPT", b"LOAD", VERIFY_SCRIPT.as_bytes()]).await?;
    let text = String::from_utf8_lossy(&reply).into_owned();
    let sha = text.lines().nth(1).filter(|line| line.len() == 40).map(str::to_owned);
    let sha = sha.ok_or_else(|| io::Error::other(format!("SCRIPT LOAD answered {text:?}")))?;
    let key = format!("key:{}", token_hash(token));
    command(path, &[b"HSET", key.as_bytes(), b"workspace", workspace.as_bytes(), b"scopes", scopes.as_bytes()]).await?;
    Ok(sha)
}

/// A pooled, pipelined RESP client; cheap to clone.
#[derive(Clone)]
pub struct RedisClient {
    shared: Arc<Pool>,
}

struct Pool {
    connections: Vec<RespConnection>,
    next_slot: AtomicUsize,
}

type Waiter = oneshot::Sender<Vec<u8>>;

struct RespConnection {
    outbox: mpsc::UnboundedSender<Vec<u8>>,
    /// Waiting requests in command order: a command is queued while this lock is held, so the order of
    /// the waiters is the order of the commands on the wire.
    waiters: Arc<Mutex<VecDeque<Waiter>>>,
}

impl RedisClient {
    pub async fn connect(path: &Path, connections: usize) -> io::Result<RedisClient> {
        let mut opened = Vec::with_capacity(connections);
        for _ in 0..connections.max(1) {
            let (reader, writer) = UnixStream::connect(path).await?.into_split();
            let waiters = Arc::new(Mutex::new(VecDeque::with_capacity(128)));
            let (outbox, queued) = mpsc::unbounded_channel();
            tokio::spawn(write_commands(writer, queued));
            tokio::spawn(read_replies(reader, Arc::clone(&waiters)));
            opened.push(RespConnection { outbox, waiters });
        }
        Ok(RedisClient { shared: Arc::new(Pool { connections: opened, next_slot: AtomicUsize::new(0) }) })
    }

    /// Sends one encoded command and waits for its reply.
    pub async fn send(&self, command: Vec<u8>) -> Option<Vec<u8>> {
        let turn = self.shared.next_slot.fetch_add(1, Ordering::Relaxed);
        let connection = &self.shared.connections[turn % self.shared.connections.len()];
        let (waiter, answer) = oneshot::channel();
        {
            let mut waiters = connection.waiters.lock().unwrap_or_else(PoisonError::into_inner);
            waiters.push_back(waiter);
            connection.outbox.send(command).ok()?;
        }
        answer.await.ok()
    }
}

async fn write_commands(mut writer: OwnedWriteHalf, mut queued: mpsc::UnboundedReceiver<Vec<u8>>) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    while let Some(command) = queued.recv().await {
        batch.extend_from_slice(&command);
        while batch.len() < WRITE_BATCH {
            match queued.try_recv() {
                Ok(command) => batch.extend_from_slice(&command),
                Err(_) => break,
            }
        }
        if writer.write_all(&batch).await.is_err() {
            return;
        }
        batch.clear();
    }
}

async fn read_replies(mut reader: OwnedReadHalf, waiters: Arc<Mutex<VecDeque<Waiter>>>) {
    let mut buf = Vec::with_capacity(READ_CHUNK);
    'read: loop {
        let mut start = 0;
        loop {
            match value_len(&buf[start..]) {
                Ok(Some(len)) => {
                    let waiter = waiters.lock().unwrap_or_else(PoisonError::into_inner).pop_front();
                    if let Some(waiter) = waiter {
                        let _ = waiter.send(buf[start..start + len].to_vec());
                    }
                    start += len;
                }
                Ok(None) => break,
                Err(_) => break 'read,
            }
        }
        buf.drain(..start);
        buf.reserve(READ_CHUNK);
        match reader.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    waiters.lock().unwrap_or_else(PoisonError::into_inner).clear();
}

/// What every verify through Redis sends: the script, the token, the required scope and the limit.
pub struct RedisCall {
    pub script_sha: String,
    pub token: String,
    pub scope: String,
    /// Requests allowed per one-second window.
    pub limit: u64,
}

/// One verify through Redis: hash the token, EVALSHA the script with the key, the window counter, the
/// required scope, the limit and the window.
#[derive(Clone)]
pub struct RedisVerifier {
    pub client: RedisClient,
    pub call: Arc<RedisCall>,
}

impl Caller for RedisVerifier {
    async fn call(&mut self) -> bool {
        let call = &*self.call;
        let hash = token_hash(&call.token);
        let key = format!("key:{hash}");
        let counter = format!("rl:{hash}");
        let limit = call.limit.to_string();
        let mut command = Vec::with_capacity(256);
        put_command(
            &mut command,
            &[
                b"EVALSHA",
                call.script_sha.as_bytes(),
                b"2",
                key.as_bytes(),
                counter.as_bytes(),
                call.scope.as_bytes(),
                limit.as_bytes(),
                b"1",
            ],
        );
        self.client.send(command).await.is_some_and(|reply| allowed(&reply))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resp_values_are_measured_whole_or_not_at_all() {
        let reply = b"*3\r\n:1\r\n$4\r\nacme\r\n:12\r\n";
        assert_eq!(value_len(reply).unwrap(), Some(reply.len()));
        assert_eq!(value_len(&reply[..reply.len() - 1]).unwrap(), None);
        assert_eq!(value_len(b"-NOSCRIPT No matching script\r\n+OK").unwrap(), Some(30));
        assert_eq!(value_len(b"$-1\r\n").unwrap(), Some(5));
        assert!(allowed(reply));
        assert!(!allowed(b"*1\r\n:0\r\n"));
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        put_command(&mut out, &[b"GET", b"k"]);
        assert_eq!(out, b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
        assert_eq!(token_hash("abc").len(), 64);
        assert!(token_hash("abc").starts_with("ba7816bf"));
    }
}
