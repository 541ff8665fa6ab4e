//! Test support: start the real `keywardd` on a temporary data directory and sockets, drive it with the
//! real `keyward` CLI or with raw protocol frames, stop it gracefully or kill it.
//!
//! The binaries are the ones `cargo test --workspace` builds into the target directory (next to this test
//! executable's `deps/` folder); `KEYWARD_BIN_DIR` points elsewhere.
//!
//! For attacks that need a second user (root only, see [`require_root`]): [`as_uid`] runs a command as
//! another uid, [`Relay`] is a protocol connection made by another uid, [`FakeListener`] a socket another
//! uid listens on; [`start_refused`] runs a `keywardd` that must refuse to start.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Seek, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use keyward_protocol::frame::{self, MAX_REPLY};
use keyward_protocol::token::BASE62;
use keyward_protocol::{
    codec, CreateRequest, CreatedKey, Environment, ExpirySpec, Hello, HelloReply, KeyView, Reply, ReplyFrame, Request,
    RequestFrame, Role, Secret, StatsReport, VerifyAnswer, VerifyRequest, PROTOCOL_VERSION,
};
use serde_json::Value;

pub mod fleet;
pub mod postgres;
pub mod proxy;

/// How long a daemon may take to start or stop before the test gives up (a hang, not a timing claim).
const PATIENCE: Duration = Duration::from_secs(30);

/// The path of one of the project's binaries.
pub fn bin(name: &str) -> PathBuf {
    let dir = match std::env::var_os("KEYWARD_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let exe = std::env::current_exe().expect("the test executable's path");
            exe.parent().and_then(Path::parent).expect("target/<profile>/deps/..").to_owned()
        }
    };
    let path = dir.join(name);
    assert!(path.exists(), "{} is missing: run `cargo test --workspace` (it builds the binaries)", path.display());
    path
}

/// `keywardd`, without the `KEYWARD_*` variables of the test's own environment that would move its
/// locations or configuration.
pub fn keywardd() -> Command {
    let mut command = Command::new(bin("keywardd"));
    for name in ["KEYWARD_SOCKET", "KEYWARD_ADMIN_SOCKET", "KEYWARD_DATA_DIR", "KEYWARD_CONFIG"] {
        command.env_remove(name);
    }
    command
}

/// `keyward`, without the `KEYWARD_*` variables of the test's own environment that would change whom it
/// talks to.
pub fn keyward() -> Command {
    let mut command = Command::new(bin("keyward"));
    for name in ["KEYWARD_SOCKET", "KEYWARD_ADMIN_SOCKET", "KEYWARD_DAEMON_USER"] {
        command.env_remove(name);
    }
    command
}

/// Runs `command` with `stdin` as its standard input and collects what it printed.
pub fn run_with_stdin(mut command: Command, stdin: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
    // The program may exit before reading its input (a usage error): a broken pipe here is its answer, not ours.
    match child.stdin.take().expect("stdin").write_all(stdin.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("write stdin: {e}"),
        _ => {}
    }
    child.wait_with_output().expect("the program's output")
}

/// Waits until `done` holds, checking every 50 ms; panics naming `what` if it has not after 30 s (a hang,
/// not a timing claim).
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < PATIENCE, "{what} did not happen within {PATIENCE:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running `keywardd` on its own temporary directory.
pub struct Daemon {
    dir: tempfile::TempDir,
    child: Option<Child>,
    extra_args: Vec<String>,
    /// Environment variables set for the daemon (e.g. `KEYWARD_LOG`), on every start.
    env: Vec<(String, String)>,
}

impl Daemon {
    /// Starts a daemon on a fresh temporary directory and waits until both sockets answer.
    pub fn start() -> Daemon {
        Daemon::start_with(&[])
    }

    /// Starts a daemon with extra command-line flags.
    pub fn start_with(extra_args: &[&str]) -> Daemon {
        Daemon::start_with_env(&[], extra_args)
    }

    /// Starts a daemon reading `config` (which the test may rewrite and [reload](Daemon::reload)).
    pub fn start_with_config(config: &ConfigFile) -> Daemon {
        Daemon::start_with(&["--config", config.path().to_str().expect("a UTF-8 temporary path")])
    }

    /// Starts a daemon with extra environment variables (e.g. `[("KEYWARD_LOG", "trace")]`) and
    /// command-line flags. The variables apply to restarts too.
    pub fn start_with_env(env: &[(&str, &str)], extra_args: &[&str]) -> Daemon {
        let dir = tempfile::Builder::new().prefix("keyward-test").tempdir().expect("temp dir");
        let mut daemon = Daemon {
            dir,
            child: None,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            env: env.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect(),
        };
        daemon.launch();
        daemon
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn verify_socket(&self) -> PathBuf {
        self.dir.path().join("run/verify.sock")
    }

    pub fn admin_socket(&self) -> PathBuf {
        self.dir.path().join("run/admin.sock")
    }

    /// Everything the daemon has written to stderr so far, across restarts.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The daemon's stderr so far as raw bytes, for scans that must not skip what is not UTF-8.
    pub fn log_bytes(&self) -> Vec<u8> {
        std::fs::read(self.log_path()).expect("the daemon's log file")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("keywardd.log")
    }

    /// The base command for this daemon's locations, without spawning it.
    pub fn command(&self) -> Command {
        let mut command = keywardd();
        command
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--socket")
            .arg(self.verify_socket())
            .arg("--admin-socket")
            .arg(self.admin_socket())
            .args(&self.extra_args)
            .envs(self.env.iter().map(|(name, value)| (name, value)));
        command
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).expect("log file");
        let child =
            self.command().stdin(Stdio::null()).stdout(Stdio::null()).stderr(log).spawn().expect("spawn keywardd");
        self.child = Some(child);
        self.wait_until_ready();
    }

    fn wait_until_ready(&mut self) {
        let started = Instant::now();
        while !(answers(&self.verify_socket()) && answers(&self.admin_socket())) {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().expect("try_wait")) {
                panic!("keywardd exited during startup ({status}); log:\n{}", self.log());
            }
            assert!(started.elapsed() < PATIENCE, "keywardd did not start; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A handshaken connection to the admin socket.
    pub fn admin(&self) -> RawConn {
        RawConn::connect(&self.admin_socket()).expect("admin socket")
    }

    /// A handshaken connection to the verify socket.
    pub fn verifier(&self) -> RawConn {
        RawConn::connect(&self.verify_socket()).expect("verify socket")
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends `signal` and waits for the process to exit.
    pub fn signal_and_wait(&mut self, signal: i32) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, signal) };
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(started.elapsed() < PATIENCE, "keywardd did not stop after signal {signal}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Graceful stop (SIGTERM); returns the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal_and_wait(libc::SIGTERM)
    }

    /// Crash (SIGKILL): no chance to flush or clean up.
    pub fn kill(&mut self) {
        self.signal_and_wait(libc::SIGKILL);
    }

    /// Starts the daemon again on the same directory.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        self.launch();
    }

    /// Sends SIGHUP and waits until the log says `configuration reloaded` once more than before.
    pub fn reload(&self) {
        let reloads = || self.log().matches("configuration reloaded").count();
        let before = reloads();
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid() as i32, libc::SIGHUP) };
        wait_until("the reload to be logged", || reloads() > before);
    }

    /// Opens the admin socket's file and the directories above it to every uid (0755 directories, a 0666
    /// socket), so that what refuses another uid is the daemon's own peer check, not the file mode.
    pub fn let_anyone_reach_the_admin_socket(&self) {
        set_mode(self.dir.path(), 0o755);
        set_mode(self.admin_socket().parent().expect("the socket directory"), 0o755);
        set_mode(&self.admin_socket(), 0o666);
    }

    /// Runs the `keyward` CLI against this daemon.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_with_stdin(args, "")
    }

    /// Runs the `keyward` CLI with `stdin` as its standard input.
    pub fn cli_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut command = keyward();
        command.arg("--socket").arg(self.verify_socket()).arg("--admin-socket").arg(self.admin_socket()).args(args);
        run_with_stdin(command, stdin)
    }

    /// Runs `keyward --json ARGS`, asserts exit code `code`, and parses stdout as one JSON value.
    pub fn json(&self, args: &[&str], code: i32) -> Value {
        let output = self.cli(&[&["--json"], args].concat());
        assert_eq!(output.status.code(), Some(code), "keyward {args:?}: {}", describe(&output));
        serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("keyward {args:?} printed no JSON ({e}): {}", describe(&output)))
    }

    /// Creates a key with `create --json` and the given extra arguments; returns the printed object.
    pub fn create(&self, workspace: &str, scopes: &[&str], extra: &[&str]) -> Value {
        let mut args = vec!["create", "--workspace", workspace, "--name", "test key"];
        for scope in scopes {
            args.extend(["--scope", scope]);
        }
        args.extend(extra);
        self.json(&args, 0)
    }

    /// `verify --json` of `token` with extra flags; returns the answer object (exit status checked
    /// against its `valid` field).
    pub fn verify(&self, token: &str, extra: &[&str]) -> Value {
        let mut args = vec!["--json", "verify"];
        args.extend(extra);
        args.push("-");
        let output = self.cli_with_stdin(&args, &format!("{token}\n"));
        let answer: Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("verify printed no JSON ({e}): {}", describe(&output)));
        let expected = if answer["valid"] == Value::Bool(true) { 0 } else { 1 };
        assert_eq!(output.status.code(), Some(expected), "verify exit code: {}", describe(&output));
        answer
    }

    /// The code a verify of `token` answers.
    pub fn verify_code(&self, token: &str, extra: &[&str]) -> String {
        self.verify(token, extra)["code"].as_str().expect("code is a string").to_owned()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether a daemon answers a ping on `socket`.
fn answers(socket: &Path) -> bool {
    RawConn::connect(socket).map(|mut conn| conn.request(Request::Ping) == Reply::Pong).unwrap_or(false)
}

/// A configuration file in a temporary directory of its own, which lives as long as this value.
pub struct ConfigFile {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl ConfigFile {
    /// A file `keyward.toml` holding `text`.
    pub fn new(text: &str) -> ConfigFile {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = ConfigFile { path: dir.path().join("keyward.toml"), _dir: dir };
        config.rewrite(text);
        config
    }

    /// Where the file is, for `--config`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the file's content with `text`, on disk before this returns.
    pub fn rewrite(&self, text: &str) {
        let mut file = std::fs::File::create(&self.path).expect("create the configuration file");
        file.write_all(text.as_bytes()).expect("write the configuration file");
        file.sync_all().expect("sync the configuration file");
    }
}

/// A readable summary of a finished command, for assertion messages.
pub fn describe(output: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The uid tests act as when they need a second user: `nobody` on Debian, never a real account.
pub const NOBODY: u32 = 65534;

/// Whether the test may act as another uid, which needs root. Otherwise the test should return at once:
/// this prints `skipped: WHY` — unless `KEYWARD_TEST_STRICT=1` (as in CI, which runs as root), where a
/// test that cannot run is a failure, so this panics instead.
pub fn require_root(why: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    let strict = std::env::var("KEYWARD_TEST_STRICT").is_ok_and(|value| value == "1");
    assert!(!strict, "KEYWARD_TEST_STRICT=1 and not root: cannot {why}");
    eprintln!("skipped: not root, so cannot {why}");
    false
}

/// `program` run as `uid` (its group too, no supplementary groups) through util-linux `setpriv`.
pub fn as_uid(uid: u32, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new("setpriv");
    command.arg(format!("--reuid={uid}")).arg(format!("--regid={uid}")).arg("--clear-groups").arg(program);
    command
}

/// Sets the permission bits of `path` (not subject to the umask).
pub fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// The permission bits of `path`.
pub fn mode_of(path: &Path) -> u32 {
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    meta.permissions().mode() & 0o7777
}

/// `N` base62 characters from the OS's random source, for ids and secrets nobody can have guessed.
pub fn random_base62<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    std::fs::File::open("/dev/urandom").and_then(|mut random| random.read_exact(&mut bytes)).expect("/dev/urandom");
    bytes.map(|b| BASE62[usize::from(b) % BASE62.len()])
}

/// A frame (length header and payload) holding `payload`.
pub fn framed(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    frame::put_frame(&mut out, payload);
    out
}

/// The bytes of a request frame: what a client puts on the wire for `request` with `id`.
pub fn request_frame(id: u64, request: Request) -> Vec<u8> {
    framed(&codec::encode(&RequestFrame { id, request }).expect("encode"))
}

/// The bytes of the handshake frame of this protocol version: the first thing any client sends.
pub fn hello_frame() -> Vec<u8> {
    framed(&codec::encode(&Hello { version: PROTOCOL_VERSION }).expect("encode"))
}

/// Lower-case hex of `bytes`, the encoding the Python helpers speak.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of lower-case or upper-case hex `text`.
pub fn unhex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex")).collect()
}

/// A child process killed when dropped, passing test or failing (a leaked one would hold the test's output
/// open, or a socket).
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `command`, a `keywardd` expected to refuse to start, and returns its output once it has exited.
/// If it comes up instead and answers on `socket`, it is killed and this panics: the refusal under test
/// did not happen.
pub fn start_refused(mut command: Command, socket: &Path) -> Output {
    let mut stderr = tempfile::tempfile().expect("a file for stderr");
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr.try_clone().expect("dup"))
        .spawn()
        .expect("spawn keywardd");
    let mut child = ChildGuard(child);
    let mut status = None;
    wait_until("keywardd to exit", || {
        status = child.0.try_wait().expect("try_wait");
        status.is_some() || answers(socket)
    });
    let mut printed = Vec::new();
    stderr.rewind().and_then(|()| stderr.read_to_end(&mut printed)).expect("read stderr");
    let Some(status) = status else {
        drop(child);
        panic!(
            "keywardd started and answers on {}: it should have refused; stderr:\n{}",
            socket.display(),
            String::from_utf8_lossy(&printed)
        );
    };
    Output { status, stdout: Vec::new(), stderr: printed }
}

/// The Python 3 that every uid can run (root's own may live under its 0700 home).
fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// Runs Python `source` with `args` as `uid`, its stdin and stdout piped, from `/` (the test's directory
/// may be closed to that uid).
fn python_as(uid: u32, source: &str, args: &[&std::ffi::OsStr]) -> ChildGuard {
    let child = as_uid(uid, python())
        .arg("-c")
        .arg(source)
        .args(args)
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("setpriv (util-linux) and python3");
    ChildGuard(child)
}

/// Reads the first line of a helper's stdout and panics unless it is `expected` (the helper failed to set up).
fn expect_line(stdout: &mut BufReader<ChildStdout>, expected: &str, what: &str) {
    let mut line = String::new();
    stdout.read_line(&mut line).expect("read the helper's stdout");
    assert_eq!(line.trim_end(), expected, "{what} did not start (its error is on the test's stderr)");
}

/// A listener on a Unix socket: binds `argv[1]` (mode 0777), prints `listening`, then for each connection
/// reads until the peer closes or one whole frame has arrived, closes it, and prints `conn HEX` with the
/// bytes it got — or `mark` when they are the marker frame `argv[2]` (hex), which the test sends itself.
pub const FAKE_LISTENER_PY: &str = r#"
import os, socket, sys
path, mark = sys.argv[1], bytes.fromhex(sys.argv[2])
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(path)
os.chmod(path, 0o777)
server.listen(64)
print("listening", flush=True)
while True:
    conn, _ = server.accept()
    conn.settimeout(30)
    got = b""
    try:
        while len(got) < 4 or len(got) < 4 + int.from_bytes(got[:4], "big"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            got += chunk
    except OSError:
        pass
    conn.close()
    print("mark" if got == mark else "conn " + got.hex(), flush=True)
"#;

/// A socket someone else listens on, for a client that should check who it is talking to before it says
/// anything: [`FAKE_LISTENER_PY`] run as another uid.
pub struct FakeListener {
    socket: PathBuf,
    stdout: BufReader<ChildStdout>,
    _child: ChildGuard,
}

impl FakeListener {
    /// The marker frame [`FakeListener::connections`] ends each batch with.
    const MARK: &'static [u8] = b"\0\0\0\x04mark";

    /// Listens on `socket` as `uid`, which must be able to create it.
    pub fn start(socket: &Path, uid: u32) -> FakeListener {
        let mut child = python_as(uid, FAKE_LISTENER_PY, &[socket.as_os_str(), hex(Self::MARK).as_ref()]);
        let mut stdout = BufReader::new(child.0.stdout.take().expect("stdout"));
        expect_line(&mut stdout, "listening", "the fake listener");
        FakeListener { socket: socket.to_owned(), stdout, _child: child }
    }

    /// The bytes each connection sent since the last call, one entry per connection, in accept order.
    /// Connections still open are waited for (the client should have exited).
    pub fn connections(&mut self) -> Vec<Vec<u8>> {
        UnixStream::connect(&self.socket).and_then(|mut own| own.write_all(Self::MARK)).expect("reach the listener");
        let mut connections = Vec::new();
        loop {
            let mut line = String::new();
            assert!(self.stdout.read_line(&mut line).expect("read the listener") > 0, "the listener died");
            match line.trim_end_matches('\n') {
                "mark" => return connections,
                other => connections.push(unhex(other.strip_prefix("conn ").expect("a connection line"))),
            }
        }
    }
}

/// A byte pipe to a Unix socket: connects to `argv[1]`, prints `connected`, then writes to the socket
/// each line of hex it reads on stdin, and prints the hex of each chunk the socket gives back; `EOF` when
/// the peer closes, `TIMEOUT` when it says nothing for 30 s.
pub const RELAY_PY: &str = r#"
import socket, sys, threading
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.settimeout(30)
sock.connect(sys.argv[1])
print("connected", flush=True)
def pump():
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            print(data.hex(), flush=True)
        print("EOF", flush=True)
    except socket.timeout:
        print("TIMEOUT", flush=True)
    except OSError:
        print("EOF", flush=True)
threading.Thread(target=pump, daemon=True).start()
while True:
    line = sys.stdin.readline()
    if not line:
        break
    try:
        sock.sendall(bytes.fromhex(line.strip()))
    except OSError:
        pass
"#;

/// A connection to a Unix socket made by another uid ([`RELAY_PY`] run through `setpriv`), as a byte
/// stream: wrap it in [`RawConn::over`] to speak the protocol as that uid, whose peer credentials the
/// daemon sees.
pub struct Relay {
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pending: VecDeque<u8>,
    closed: bool,
    _child: ChildGuard,
}

impl Relay {
    /// Connects to `socket` as `uid`.
    pub fn connect(uid: u32, socket: &Path) -> Relay {
        let mut child = python_as(uid, RELAY_PY, &[socket.as_os_str()]);
        let stdin = child.0.stdin.take().expect("stdin");
        let mut stdout = BufReader::new(child.0.stdout.take().expect("stdout"));
        expect_line(&mut stdout, "connected", "the relay");
        Relay { stdin, stdout, pending: VecDeque::new(), closed: false, _child: child }
    }

    /// Takes the relay's next line: received bytes, or the news that the peer closed.
    fn receive(&mut self) -> std::io::Result<()> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            self.closed = true;
            return Ok(());
        }
        match line.trim_end() {
            "EOF" => self.closed = true,
            "TIMEOUT" => {
                return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the relay's peer said nothing"))
            }
            bytes => self.pending.extend(unhex(bytes)),
        }
        Ok(())
    }
}

impl Read for Relay {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pending.is_empty() && !self.closed {
            self.receive()?;
        }
        let n = buf.len().min(self.pending.len());
        for (slot, byte) in buf.iter_mut().zip(self.pending.drain(..n)) {
            *slot = byte;
        }
        Ok(n)
    }
}

impl Write for Relay {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        writeln!(self.stdin, "{}", hex(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.stdin.flush()
    }
}

/// A protocol connection by hand, for tests that need exact frames: over a Unix socket, or over any byte
/// stream (e.g. a [`Relay`]).
pub struct RawConn<S = UnixStream> {
    pub stream: S,
    next_id: u64,
}

impl RawConn {
    /// Connects and completes the handshake.
    pub fn connect(socket: &Path) -> std::io::Result<RawConn> {
        RawConn::open(socket)?.handshaken()
    }

    /// Connects without a handshake.
    pub fn open(socket: &Path) -> std::io::Result<RawConn> {
        let stream = UnixStream::connect(socket)?;
        stream.set_read_timeout(Some(PATIENCE))?;
        Ok(RawConn::over(stream))
    }
}

impl<S: Read + Write> RawConn<S> {
    /// A connection over `stream`, before the handshake.
    pub fn over(stream: S) -> Self {
        RawConn { stream, next_id: 1 }
    }

    /// Completes the handshake; an error if the daemon refuses it.
    pub fn handshaken(mut self) -> std::io::Result<Self> {
        match self.hello(PROTOCOL_VERSION)? {
            HelloReply::Accepted { .. } => Ok(self),
            HelloReply::Rejected(error) => Err(std::io::Error::other(error.to_string())),
        }
    }

    /// Sends a handshake naming `version` and reads the answer.
    pub fn hello(&mut self, version: u16) -> std::io::Result<HelloReply> {
        self.send(&codec::encode(&Hello { version }).expect("encode"))?;
        let payload = self.read_payload()?.ok_or_else(|| std::io::Error::other("closed during handshake"))?;
        Ok(codec::decode(&payload).expect("a HelloReply"))
    }

    /// Sends one frame with `payload`.
    pub fn send(&mut self, payload: &[u8]) -> std::io::Result<()> {
        frame::write_frame(&mut self.stream, payload)
    }

    /// Sends raw bytes, framing included.
    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends `request` with the next id, without reading.
    pub fn send_request(&mut self, request: Request) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.send_request_with_id(id, request);
        id
    }

    pub fn send_request_with_id(&mut self, id: u64, request: Request) {
        self.send(&codec::encode(&RequestFrame { id, request }).expect("encode")).expect("send request");
    }

    /// Reads one frame's payload; `None` if the daemon closed the connection.
    pub fn read_payload(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        frame::read_frame(&mut self.stream, MAX_REPLY).map_err(std::io::Error::other)
    }

    /// Reads one reply frame; `None` if the daemon closed the connection.
    pub fn read_reply(&mut self) -> Option<ReplyFrame> {
        self.read_payload().ok().flatten().map(|payload| codec::decode(&payload).expect("a ReplyFrame"))
    }

    /// Sends `request` and returns its reply (checking the id is echoed).
    pub fn request(&mut self, request: Request) -> Reply {
        let id = self.send_request(request);
        let frame = self.read_reply().expect("a reply");
        assert_eq!(frame.id, id, "reply id echoes the request id");
        frame.reply
    }

    /// Creates a key in `workspace` with `scopes` (admin socket).
    pub fn create(&mut self, workspace: &str, scopes: &[&str], expires: ExpirySpec) -> CreatedKey {
        self.create_with(CreateRequest {
            workspace: workspace.into(),
            name: "raw test key".into(),
            description: None,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            expires,
            env: Environment::Live,
            role: if scopes.contains(&"admin") { Role::Admin } else { Role::Member },
            metadata: Default::default(),
            limits: Default::default(),
        })
    }

    /// Creates the key `request` describes (admin socket).
    pub fn create_with(&mut self, request: CreateRequest) -> CreatedKey {
        match self.request(Request::Create(request)) {
            Reply::Created(created) => created,
            other => panic!("create answered {other:?}"),
        }
    }

    /// Verifies `token`, optionally requiring a scope and a workspace.
    pub fn verify(&mut self, token: &Secret, scope: Option<&str>, workspace: Option<&str>) -> VerifyAnswer {
        let request = VerifyRequest {
            scope: scope.map(Into::into),
            workspace: workspace.map(Into::into),
            ..VerifyRequest::new(token.clone())
        };
        match self.request(Request::Verify(request)) {
            Reply::Verify(answer) => answer,
            other => panic!("verify answered {other:?}"),
        }
    }

    /// Shows one key (admin socket).
    pub fn get(&mut self, id: &str) -> Reply {
        self.request(Request::Get { id: id.into() })
    }

    /// Revokes one key (admin socket).
    pub fn revoke(&mut self, id: &str) -> KeyView {
        match self.request(Request::Revoke { id: id.into() }) {
            Reply::Key(view) => view,
            other => panic!("revoke answered {other:?}"),
        }
    }

    /// The daemon's counters (admin socket), as `keyward stats` shows them.
    pub fn stats(&mut self) -> StatsReport {
        match self.request(Request::Stats) {
            Reply::Stats(report) => *report,
            other => panic!("stats answered {other:?}"),
        }
    }

    /// Whether the daemon has closed this connection (reads to end of stream).
    pub fn is_closed(&mut self) -> bool {
        let mut rest = Vec::new();
        self.stream.read_to_end(&mut rest).is_ok()
    }
}
