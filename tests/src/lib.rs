//! Test support: start the real `keywardd` on a temporary data directory and sockets, drive it with the
//! real `keyward` CLI or with raw protocol frames, stop it gracefully or kill it.
//!
//! The binaries are the ones `cargo test --workspace` builds into the target directory (next to this test
//! executable's `deps/` folder); `KEYWARD_BIN_DIR` points elsewhere.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use keyward_protocol::frame::{self, MAX_REPLY};
use keyward_protocol::{
    codec, CreateRequest, CreatedKey, Environment, ExpirySpec, Hello, HelloReply, KeyView, Reply, ReplyFrame, Request,
    RequestFrame, Role, Secret, StatsReport, VerifyAnswer, VerifyRequest, PROTOCOL_VERSION,
};
use serde_json::Value;

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
        let mut command = Command::new(bin("keywardd"));
        command
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--socket")
            .arg(self.verify_socket())
            .arg("--admin-socket")
            .arg(self.admin_socket())
            .args(&self.extra_args)
            .env_remove("KEYWARD_SOCKET")
            .env_remove("KEYWARD_ADMIN_SOCKET")
            .env_remove("KEYWARD_DATA_DIR")
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
        while !(self.answers(&self.verify_socket()) && self.answers(&self.admin_socket())) {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().expect("try_wait")) {
                panic!("keywardd exited during startup ({status}); log:\n{}", self.log());
            }
            assert!(started.elapsed() < PATIENCE, "keywardd did not start; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers(&self, socket: &Path) -> bool {
        RawConn::connect(socket).map(|mut conn| conn.request(Request::Ping) == Reply::Pong).unwrap_or(false)
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

    /// Runs the `keyward` CLI against this daemon.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_with_stdin(args, "")
    }

    /// Runs the `keyward` CLI with `stdin` as its standard input.
    pub fn cli_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(bin("keyward"))
            .arg("--socket")
            .arg(self.verify_socket())
            .arg("--admin-socket")
            .arg(self.admin_socket())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn keyward");
        // The CLI may exit before reading its input (a usage error): a broken pipe here is its answer, not ours.
        match child.stdin.take().expect("stdin").write_all(stdin.as_bytes()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("write stdin: {e}"),
            _ => {}
        }
        child.wait_with_output().expect("keyward output")
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

/// A readable summary of a finished command, for assertion messages.
pub fn describe(output: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A protocol connection by hand, for tests that need exact frames.
pub struct RawConn {
    pub stream: UnixStream,
    next_id: u64,
}

impl RawConn {
    /// Connects and completes the handshake.
    pub fn connect(socket: &Path) -> std::io::Result<RawConn> {
        let mut conn = RawConn::open(socket)?;
        match conn.hello(PROTOCOL_VERSION)? {
            HelloReply::Accepted { .. } => Ok(conn),
            HelloReply::Rejected(error) => Err(std::io::Error::other(error.to_string())),
        }
    }

    /// Connects without a handshake.
    pub fn open(socket: &Path) -> std::io::Result<RawConn> {
        let stream = UnixStream::connect(socket)?;
        stream.set_read_timeout(Some(PATIENCE))?;
        Ok(RawConn { stream, next_id: 1 })
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
        let request = CreateRequest {
            workspace: workspace.into(),
            name: "raw test key".into(),
            description: None,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            expires,
            env: Environment::Live,
            role: if scopes.contains(&"admin") { Role::Admin } else { Role::Member },
            metadata: Default::default(),
            limits: Default::default(),
        };
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
