//! A tiny fake `keywardd` for the client's tests: a std `UnixListener` thread per daemon and a thread per
//! connection, speaking the real handshake and frames from `keyward_protocol`, answering each request
//! with whatever the test's handler says. It can answer out of order, late, never, or hang up, which the
//! real daemon does only under conditions a test cannot arrange.

// Each test file uses a different part of this module.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyward_protocol::frame::{self, DEFAULT_MAX_REQUEST, HEADER_LEN};
use keyward_protocol::lifecycle::{KeyOrigin, Role};
use keyward_protocol::{
    codec, AccountView, Actor, AuditAction, AuditEntry, CreatedKey, CreditChange, Environment, ErrorCode, ErrorReply,
    Hello, HelloReply, KeyId, KeyPage, KeyStatus, KeyUsage, KeyView, Limits, Reply, ReplyFrame, Request, RequestFrame,
    Secret, StatsReport, Token, UsageBucket, UsageReport, VerifiedKey, VerifyAnswer, VerifyCode, PROTOCOL_VERSION,
};

/// How long a reordering daemon waits for more requests before answering the ones it has, backwards.
const GATHER: Duration = Duration::from_millis(30);

/// What the fake daemon does with one request.
pub enum Action {
    Answer(Reply),
    /// Answer, then close the connection.
    AnswerThenHangUp(Reply),
    /// Wait, then answer (holding up everything behind it on this connection).
    AnswerAfter(Duration, Reply),
    /// Close the connection without answering.
    HangUp,
    /// Never answer; keep the connection.
    Ignore,
}

/// Decides what to do with a request, given the connection's number (0 for the first connection).
type Handler = dyn Fn(usize, &Request) -> Action + Send + Sync;

#[derive(Default)]
struct Stats {
    connections: AtomicUsize,
    requests: AtomicUsize,
    reordered_batches: AtomicUsize,
}

/// A running fake daemon on a socket in its own temporary directory.
pub struct FakeDaemon {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    stats: Arc<Stats>,
}

#[derive(Clone, Copy)]
enum Mode {
    InOrder,
    Reversed,
    Reject,
}

impl FakeDaemon {
    /// Answers each request as it arrives.
    pub fn start(handler: impl Fn(usize, &Request) -> Action + Send + Sync + 'static) -> FakeDaemon {
        FakeDaemon::spawn(Mode::InOrder, Arc::new(handler))
    }

    /// Gathers the requests that arrive close together and answers them in reverse order.
    pub fn start_reversing(handler: impl Fn(usize, &Request) -> Action + Send + Sync + 'static) -> FakeDaemon {
        FakeDaemon::spawn(Mode::Reversed, Arc::new(handler))
    }

    /// Refuses every handshake with `UNSUPPORTED_VERSION`.
    pub fn start_rejecting() -> FakeDaemon {
        FakeDaemon::spawn(Mode::Reject, Arc::new(|_: usize, _: &Request| Action::Ignore))
    }

    fn spawn(mode: Mode, handler: Arc<Handler>) -> FakeDaemon {
        let dir = tempfile::Builder::new().prefix("keyward-fake").tempdir().expect("temp dir");
        let socket = dir.path().join("fake.sock");
        let listener = UnixListener::bind(&socket).expect("bind the fake socket");
        let stats = Arc::new(Stats::default());
        let shared = Arc::clone(&stats);
        // The accept thread outlives the test that started it, blocked in accept(2) on a socket nobody
        // will reach again; the test process ends it.
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let number = shared.connections.fetch_add(1, Ordering::SeqCst);
                let (handler, stats) = (Arc::clone(&handler), Arc::clone(&shared));
                std::thread::spawn(move || serve(stream, number, mode, &*handler, &stats));
            }
        });
        FakeDaemon { _dir: dir, socket, stats }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.stats.connections.load(Ordering::SeqCst)
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.stats.requests.load(Ordering::SeqCst)
    }

    /// Batches of more than one request answered in reverse order.
    pub fn reordered_batches(&self) -> usize {
        self.stats.reordered_batches.load(Ordering::SeqCst)
    }
}

fn serve(mut stream: UnixStream, number: usize, mode: Mode, handler: &Handler, stats: &Stats) {
    let Ok(Some(hello)) = frame::read_frame(&mut stream, DEFAULT_MAX_REQUEST) else { return };
    let Hello { version } = codec::decode_request(&hello).expect("the first frame is a Hello");
    assert_eq!(version, PROTOCOL_VERSION);
    if let Mode::Reject = mode {
        let refusal = ErrorReply::new(ErrorCode::UnsupportedVersion, "this fake speaks no version at all");
        send(&mut stream, &[HelloReply::Rejected(refusal)]);
        return;
    }
    send(&mut stream, &[HelloReply::Accepted { version: PROTOCOL_VERSION }]);
    let mut buf = Vec::new();
    while let Some(batch) = next_batch(&mut stream, &mut buf, matches!(mode, Mode::Reversed)) {
        let mut replies = Vec::new();
        let mut hang_up = false;
        for RequestFrame { id, request } in batch {
            stats.requests.fetch_add(1, Ordering::SeqCst);
            match handler(number, &request) {
                Action::Answer(reply) => replies.push(ReplyFrame { id, reply }),
                Action::AnswerThenHangUp(reply) => {
                    replies.push(ReplyFrame { id, reply });
                    hang_up = true;
                    break;
                }
                Action::AnswerAfter(delay, reply) => {
                    std::thread::sleep(delay);
                    replies.push(ReplyFrame { id, reply });
                }
                Action::HangUp => {
                    hang_up = true;
                    break;
                }
                Action::Ignore => {}
            }
        }
        if matches!(mode, Mode::Reversed) && replies.len() > 1 {
            replies.reverse();
            stats.reordered_batches.fetch_add(1, Ordering::SeqCst);
        }
        send(&mut stream, &replies);
        if hang_up {
            return;
        }
    }
}

/// The next requests to answer; `None` once the client has gone.
fn next_batch(stream: &mut UnixStream, buf: &mut Vec<u8>, gather: bool) -> Option<Vec<RequestFrame>> {
    loop {
        let mut frames = take_frames(buf);
        if !frames.is_empty() {
            if gather {
                stream.set_read_timeout(Some(GATHER)).expect("read timeout");
                while read_more(stream, buf).unwrap_or(0) > 0 {}
                stream.set_read_timeout(None).expect("read timeout");
                frames.extend(take_frames(buf));
            }
            return Some(frames);
        }
        if read_more(stream, buf).ok()? == 0 {
            return None;
        }
    }
}

fn read_more(stream: &mut UnixStream, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut chunk = [0u8; 16 * 1024];
    let read = stream.read(&mut chunk);
    match read {
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(n)
        }
        Err(e) if e.kind() == ErrorKind::Interrupted => Ok(1),
        Err(e) => Err(e),
    }
}

fn take_frames(buf: &mut Vec<u8>) -> Vec<RequestFrame> {
    let mut frames = Vec::new();
    let mut start = 0;
    while let Some(total) = frame::next_frame_len(&buf[start..], DEFAULT_MAX_REQUEST).expect("a sane frame") {
        let payload = &buf[start + HEADER_LEN..start + total];
        frames.push(codec::decode_request(payload).expect("a RequestFrame"));
        start += total;
    }
    buf.drain(..start);
    frames
}

fn send<T: serde::Serialize>(stream: &mut UnixStream, messages: &[T]) {
    let mut out = Vec::new();
    for message in messages {
        frame::put_frame(&mut out, &codec::encode(message).expect("encode"));
    }
    // The client may have gone (a test that timed out); that is its business.
    let _ = stream.write_all(&out);
}

// ---- Canned keys and answers -------------------------------------------------------------------------

/// The id of the key the canned daemon knows.
pub const KEY_ID: &str = "AbCdEf012345";

/// 2026-11-23T12:00:00Z.
pub const CREATED_AT: i64 = 1_795_435_200;

/// A well-formed token for [`KEY_ID`].
pub fn good_token() -> Secret {
    let id = KeyId::parse(KEY_ID).expect("a key id");
    Token::assemble(Environment::Live, &id, b"0123456789abcdefghijABCDEFGHIJxy")
}

/// An active key of `workspace`.
pub fn key_view(id: &str, workspace: &str) -> KeyView {
    KeyView {
        id: id.into(),
        prefix: "kw_live_".into(),
        masked: "kw_live_****wxyz".into(),
        name: "CI deploy".into(),
        description: None,
        workspace: workspace.into(),
        env: Environment::Live,
        scopes: vec!["read:all".into()],
        status: KeyStatus::Active,
        created_at: CREATED_AT,
        last_used_at: None,
        expires_at: None,
        revoked_at: None,
        metadata: BTreeMap::new(),
        role: Role::Member,
        origin: KeyOrigin::Generated,
        account: None,
        previous_token_until: None,
        limits: Limits::default(),
    }
}

/// A valid answer naming a key of `workspace` (so a test can tell answers apart).
pub fn valid_in(workspace: &str) -> VerifyAnswer {
    let key = VerifiedKey {
        id: KEY_ID.into(),
        workspace: workspace.into(),
        name: "CI deploy".into(),
        env: Environment::Live,
        scopes: vec!["read:all".into()],
        expires_at: None,
        role: Role::Member,
        metadata: BTreeMap::new(),
        account: None,
    };
    VerifyAnswer { key: Some(std::sync::Arc::new(key)), ..VerifyAnswer::refused(VerifyCode::Valid) }
}

fn refuse(code: ErrorCode, message: &str) -> Action {
    Action::Answer(Reply::Error(ErrorReply::new(code, message)))
}

/// Answers like a daemon holding one key, [`KEY_ID`] of workspace `acme`, whose token is
/// [`good_token`]. Lists of `acme` hold three keys over two pages. A create named `x` is refused the
/// way the daemon refuses a short name.
pub fn canned(_connection: usize, request: &Request) -> Action {
    let reply = match request {
        Request::Ping => Reply::Pong,
        Request::Verify(verify) if verify.token == good_token() => {
            let workspace = verify.workspace.as_deref().unwrap_or("acme");
            if workspace != "acme" {
                let answer = VerifyAnswer { code: VerifyCode::WrongWorkspace, ..valid_in("acme") };
                return Action::Answer(Reply::Verify(answer));
            }
            Reply::Verify(valid_in("acme"))
        }
        Request::Verify(_) => Reply::Verify(VerifyAnswer::refused(VerifyCode::NotFound)),
        Request::Create(create) if create.name.trim().len() < 3 => {
            return refuse(ErrorCode::InvalidArgument, "name must be 3 to 50 characters");
        }
        Request::Create(create) => {
            let key = KeyView {
                name: create.name.clone(),
                description: create.description.clone(),
                scopes: create.scopes.clone(),
                env: create.env,
                role: create.role,
                ..key_view(KEY_ID, &create.workspace)
            };
            Reply::Created(CreatedKey { token: good_token(), key })
        }
        Request::List(list) if list.workspace != "acme" => Reply::Keys(KeyPage { keys: vec![], next: None }),
        Request::List(list) => match list.after.as_deref() {
            None => Reply::Keys(KeyPage {
                keys: vec![key_view(KEY_ID, "acme"), key_view("BBBBBBBBBBBB", "acme")],
                next: Some("BBBBBBBBBBBB".into()),
            }),
            Some("BBBBBBBBBBBB") => Reply::Keys(KeyPage { keys: vec![key_view("CCCCCCCCCCCC", "acme")], next: None }),
            Some(other) => return refuse(ErrorCode::InvalidArgument, &format!("unknown cursor {other}")),
        },
        Request::Get { id } if id == KEY_ID => Reply::Key(key_view(KEY_ID, "acme")),
        Request::Revoke { id } if id == KEY_ID => Reply::Key(KeyView {
            status: KeyStatus::Revoked,
            revoked_at: Some(CREATED_AT + 60),
            ..key_view(KEY_ID, "acme")
        }),
        Request::Get { id } | Request::Revoke { id } => {
            return refuse(ErrorCode::KeyNotFound, &format!("no key has id {id}"));
        }
        _ => return refuse(ErrorCode::Internal, "the fake daemon does not do that"),
    };
    Action::Answer(reply)
}

/// Answers like [`canned`], plus the lifecycle requests: each gets a fixed reply that echoes what it was
/// asked (the edited name, the grace window, the credit change, …). A request inside an `As` is answered
/// as if it came alone.
pub fn lifecycle(connection: usize, request: &Request) -> Action {
    let key = |id: &str| key_view(id, "acme");
    let reply = match request {
        Request::As { request, .. } => return lifecycle(connection, request),
        Request::Edit { id, changes } => {
            Reply::Key(KeyView { name: changes.name.clone().unwrap_or_else(|| "CI deploy".into()), ..key(id) })
        }
        Request::Regenerate { id, grace_seconds } => Reply::Created(CreatedKey {
            token: good_token(),
            key: KeyView {
                previous_token_until: (*grace_seconds > 0).then(|| CREATED_AT + *grace_seconds as i64),
                ..key(id)
            },
        }),
        Request::Deactivate { id } => Reply::Key(KeyView { status: KeyStatus::Inactive, ..key(id) }),
        Request::Activate { id } => Reply::Key(key(id)),
        Request::Import(import) => Reply::Key(KeyView {
            origin: if import.legacy_account.is_some() { KeyOrigin::Legacy } else { KeyOrigin::Imported },
            account: import.legacy_account.clone(),
            prefix: import.token.expose().chars().take(4).collect(),
            ..key("IIIIIIIIIIII")
        }),
        Request::Audit(query) => Reply::Audit(vec![AuditEntry {
            seq: 1,
            at: CREATED_AT,
            action: AuditAction::Create,
            key_id: query.key.clone().or_else(|| Some(KEY_ID.into())),
            workspace: query.workspace.clone().or_else(|| Some("acme".into())),
            account: None,
            changes: vec![],
            actor: Actor { uid: 1000, gid: 1000, pid: Some(1), label: None },
        }]),
        Request::SetAccount(account) => Reply::Account(account.clone()),
        Request::GetAccount { account } => {
            Reply::Account(AccountView { account: account.clone(), workspaces: vec!["acme".into()] })
        }
        Request::ListLegacy { account } => Reply::Keys(KeyPage {
            keys: vec![KeyView { origin: KeyOrigin::Legacy, account: account.clone(), ..key("LLLLLLLLLLLL") }],
            next: None,
        }),
        Request::Credits { id, change } => {
            let credits = match change {
                CreditChange::Set(n) => *n,
                CreditChange::Add(n) => 10 + n,
            };
            Reply::Key(KeyView { limits: Limits { credits: Some(credits), ..Limits::default() }, ..key(id) })
        }
        Request::Usage { id } => {
            let counts = BTreeMap::from([(VerifyCode::Valid, 3)]);
            Reply::Usage(UsageReport {
                key_id: id.clone(),
                totals: counts.clone(),
                hourly: vec![UsageBucket { start: CREATED_AT, counts: counts.clone() }],
                daily: vec![UsageBucket { start: CREATED_AT - 43_200, counts }],
            })
        }
        Request::WorkspaceUsage { .. } => Reply::WorkspaceUsage(vec![KeyUsage {
            key_id: KEY_ID.into(),
            name: "CI deploy".into(),
            total: 3,
            totals: BTreeMap::from([(VerifyCode::Valid, 3)]),
        }]),
        Request::Stats => Reply::Stats(Box::new(StatsReport { version: "fake".into(), ..StatsReport::default() })),
        _ => return canned(connection, request),
    };
    Action::Answer(reply)
}

/// Every request a fake daemon received, in order.
pub type Received = Arc<Mutex<Vec<Request>>>;

/// `handler`, remembering each request it is given.
pub fn recording(
    handler: impl Fn(usize, &Request) -> Action + Send + Sync + 'static,
) -> (Received, impl Fn(usize, &Request) -> Action + Send + Sync + 'static) {
    let received = Received::default();
    let log = Arc::clone(&received);
    let recorder = move |connection: usize, request: &Request| {
        log.lock().unwrap().push(request.clone());
        handler(connection, request)
    };
    (received, recorder)
}
