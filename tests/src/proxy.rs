//! keywardd's forward-auth endpoint behind real reverse proxies: nginx and Caddy started on temporary
//! directories with the snippets operators copy from `proxy/` (read from the repository and used as they
//! are, with only the addresses their comments say to change put in), an app that echoes what reached it,
//! and a blocking HTTP/1.1 client that reads every byte of a response.
//!
//! Where a proxy is not installed, [`require_nginx`] and [`require_caddy`] say so and the test returns —
//! unless `KEYWARD_REQUIRE_PROXIES=1` (as in CI), where a missing proxy fails the test.
//!
//! - [`Keyward`]: a [`Daemon`] whose configuration turns the HTTP endpoint on, at an [`Address`].
//! - [`App`]: the upstream the proxies pass allowed requests to; it answers each with a JSON [`Echo`] of
//!   its request line, headers and body length, and counts what it was sent.
//! - [`Nginx`], [`Caddy`]: the proxies, in front of an [`App`], asking a [`Keyward`].
//! - [`HttpConn`], [`Response`], [`get`]: the client.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{wait_until, ChildGuard, ConfigFile, Daemon};

/// How long a proxy may take to start, and a response to arrive, before the test gives up (a hang, not a
/// timing claim).
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The repository's `proxy/` folder: the snippets the tests run.
pub fn snippets_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the repository root").join("proxy")
}

/// The text of `proxy/<name>`, with each `(from, to)` replaced everywhere. Each `from` must occur: a
/// snippet that no longer says what its comments tell operators to change breaks the test, rather than
/// quietly running with the documented default address.
pub fn snippet(name: &str, changes: &[(&str, &str)]) -> String {
    let path = snippets_dir().join(name);
    let mut text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for (from, to) in changes {
        assert!(
            text.contains(from),
            "{} no longer holds {from:?}, which its documentation says to change",
            path.display()
        );
        text = text.replace(from, to);
    }
    text
}

/// Whether nginx is installed; see [`require_proxy`].
pub fn require_nginx() -> Option<PathBuf> {
    require_proxy("nginx", &["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"])
}

/// Whether Caddy is installed; see [`require_proxy`].
pub fn require_caddy() -> Option<PathBuf> {
    require_proxy("caddy", &["/usr/bin/caddy", "/usr/local/bin/caddy"])
}

/// The path of the proxy `name` (the first of `places` that exists, else `name` found on `PATH`). When it
/// is not installed the test should return at once: this prints `skipped: ...` — unless
/// `KEYWARD_REQUIRE_PROXIES=1`, where a test that cannot run is a failure, so this panics instead.
pub fn require_proxy(name: &str, places: &[&str]) -> Option<PathBuf> {
    let found = places.iter().map(PathBuf::from).find(|path| path.is_file()).or_else(|| {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path).map(|dir| dir.join(name)).find(|path| path.is_file())
    });
    if found.is_none() {
        let required = std::env::var("KEYWARD_REQUIRE_PROXIES").is_ok_and(|value| value == "1");
        let how = "install it with `apt-get install nginx caddy`";
        assert!(!required, "KEYWARD_REQUIRE_PROXIES=1 but {name} is not installed: {how}");
        eprintln!("skipped: {name} is not installed ({how}; KEYWARD_REQUIRE_PROXIES=1 makes this a failure)");
    }
    found
}

/// A loopback port nobody listened on a moment ago. (The port is free when this returns; a proxy or daemon
/// given it binds it a few milliseconds later. Nothing else on a test machine takes ports at random.)
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|listener| listener.local_addr()).expect("a free loopback port").port()
}

/// Where an HTTP server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Address {
    /// `127.0.0.1:port`.
    pub fn loopback(port: u16) -> Address {
        Address::Tcp(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    /// How keywardd's `[http] listen` writes it.
    pub fn listen(&self) -> String {
        match self {
            Address::Tcp(address) => address.to_string(),
            Address::Unix(path) => path.display().to_string(),
        }
    }

    /// How nginx's `upstream { server ...; }` writes it.
    pub fn nginx(&self) -> String {
        match self {
            Address::Tcp(address) => address.to_string(),
            Address::Unix(path) => format!("unix:{}", path.display()),
        }
    }

    /// How Caddy's upstreams write it.
    pub fn caddy(&self) -> String {
        match self {
            Address::Tcp(address) => address.to_string(),
            Address::Unix(path) => format!("unix/{}", path.display()),
        }
    }

    /// A new connection, with [`PATIENCE`] as its read and write timeouts.
    pub fn connect(&self) -> std::io::Result<HttpConn> {
        let stream = match self {
            Address::Tcp(address) => Stream::Tcp(TcpStream::connect_timeout(address, PATIENCE)?),
            Address::Unix(path) => Stream::Unix(UnixStream::connect(path)?),
        };
        stream.set_timeouts(PATIENCE)?;
        Ok(HttpConn { reader: BufReader::new(stream) })
    }

    /// Whether something accepts connections here.
    pub fn accepts(&self) -> bool {
        self.connect().is_ok()
    }
}

/// A TCP or Unix stream.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn set_timeouts(&self, timeout: Duration) -> std::io::Result<()> {
        match self {
            Stream::Tcp(stream) => stream.set_read_timeout(Some(timeout)).and(stream.set_write_timeout(Some(timeout))),
            Stream::Unix(stream) => stream.set_read_timeout(Some(timeout)).and(stream.set_write_timeout(Some(timeout))),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(stream) => stream.read(buf),
            Stream::Unix(stream) => stream.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(stream) => stream.write(buf),
            Stream::Unix(stream) => stream.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Tcp(stream) => stream.flush(),
            Stream::Unix(stream) => stream.flush(),
        }
    }
}

/// One HTTP/1.x connection, by hand: what is written is exactly the bytes given, and a response is read
/// whole (by `Content-Length`, chunks, or to the end of the stream).
pub struct HttpConn {
    reader: BufReader<Stream>,
}

impl HttpConn {
    /// Writes `bytes` as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let stream = self.reader.get_mut();
        stream.write_all(bytes)?;
        stream.flush()
    }

    /// Writes a request: `METHOD path HTTP/1.1`, `Host`, `headers` and, when not empty, `body` with its
    /// `Content-Length`.
    pub fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> std::io::Result<()> {
        self.send_raw(&request_bytes(method, path, headers, body))
    }

    /// Sends a request and reads its response.
    pub fn call(&mut self, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
        self.send(method, path, headers, b"").unwrap_or_else(|e| panic!("send {method} {path}: {e}"));
        self.read_response(method == "HEAD").unwrap_or_else(|e| panic!("the answer to {method} {path}: {e}"))
    }

    /// Reads one response; `head` when it answers a HEAD (no body follows, whatever its headers say).
    pub fn read_response(&mut self, head: bool) -> std::io::Result<Response> {
        let status_line = self.line()?;
        if status_line.is_empty() {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed before a response"));
        }
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default().to_owned();
        let status: u16 = parts
            .next()
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("not a status line: {status_line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let line = self.line()?;
            if line.is_empty() {
                break;
            }
            let (name, value) =
                line.split_once(':').ok_or_else(|| std::io::Error::other(format!("not a header: {line:?}")))?;
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
        let mut response = Response { version, status, headers, body: Vec::new() };
        if head || status == 204 || status == 304 || (100..200).contains(&status) {
            return Ok(response);
        }
        if response.header("transfer-encoding").is_some_and(|te| te.eq_ignore_ascii_case("chunked")) {
            response.body = self.chunks()?;
        } else if let Some(length) = response.header("content-length") {
            let length: usize = length.parse().map_err(|_| std::io::Error::other("a bad Content-Length"))?;
            response.body = vec![0; length];
            self.reader.read_exact(&mut response.body)?;
        } else {
            self.reader.read_to_end(&mut response.body)?;
        }
        Ok(response)
    }

    /// Whether the peer has closed the connection: reads until the end of the stream, discarding anything
    /// before it (an error page); an error (the read timeout) when it stays open.
    pub fn wait_closed(&mut self) -> std::io::Result<Vec<u8>> {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => Ok(rest),
            // A reset is a close too (the peer closed with unread bytes in its buffer).
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(rest),
            Err(e) => Err(e),
        }
    }

    /// One line without its CRLF; empty at the end of the stream.
    fn line(&mut self) -> std::io::Result<String> {
        let mut line = Vec::new();
        self.reader.read_until(b'\n', &mut line)?;
        while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            line.pop();
        }
        String::from_utf8(line).map_err(|_| std::io::Error::other("a line that is not UTF-8"))
    }

    fn chunks(&mut self) -> std::io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let size = self.line()?;
            let size = usize::from_str_radix(size.split(';').next().unwrap_or_default().trim(), 16)
                .map_err(|_| std::io::Error::other(format!("a bad chunk size {size:?}")))?;
            if size == 0 {
                while !self.line()?.is_empty() {}
                return Ok(body);
            }
            let start = body.len();
            body.resize(start + size, 0);
            self.reader.read_exact(&mut body[start..])?;
            self.line()?;
        }
    }
}

/// The bytes of a request, as [`HttpConn::send`] writes them.
pub fn request_bytes(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// `GET path` on a connection of its own.
pub fn get(address: &Address, path: &str, headers: &[(&str, &str)]) -> Response {
    call(address, "GET", path, headers)
}

/// `METHOD path` on a connection of its own.
pub fn call(address: &Address, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    address.connect().unwrap_or_else(|e| panic!("connect to {address:?}: {e}")).call(method, path, headers)
}

/// A response, read whole.
#[derive(Clone, Debug)]
pub struct Response {
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub version: String,
    pub status: u16,
    /// In the order received, names as sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Every header named `name` (any case).
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the whole response when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("a body that is not JSON ({e}): {self}"))
    }

    /// `error.code` of a refusal's body.
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or_else(|| panic!("no error.code: {self}")).to_owned()
    }
}

impl std::fmt::Display for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} {}", self.version, self.status)?;
        for (name, value) in &self.headers {
            writeln!(f, "{name}: {value}")?;
        }
        write!(f, "\n{}", self.text())
    }
}

/// A `keywardd` with its HTTP endpoint on.
pub struct Keyward {
    pub daemon: Daemon,
    /// Where the endpoint listens.
    pub address: Address,
    _config: ConfigFile,
    _socket_dir: tempfile::TempDir,
}

impl Keyward {
    /// On a free loopback port; `http` is more of the `[http]` table (keys, then `[[http.route]]`s) and
    /// `rest` the rest of the configuration file (e.g. `[plans]`).
    pub fn start(http: &str, rest: &str) -> Keyward {
        Keyward::start_on(|_| Address::loopback(free_port()), http, rest)
    }

    /// On a Unix socket `http.sock` in a directory of its own.
    pub fn start_unix(http: &str, rest: &str) -> Keyward {
        Keyward::start_on(|dir| Address::Unix(dir.join("http.sock")), http, rest)
    }

    fn start_on(address: impl FnOnce(&Path) -> Address, http: &str, rest: &str) -> Keyward {
        let socket_dir = tempfile::Builder::new().prefix("keyward-http").tempdir().expect("temp dir");
        let address = address(socket_dir.path());
        let listen = Value::from(address.listen());
        let config = ConfigFile::new(&format!("{rest}\n[http]\nlisten = [{listen}]\n{http}\n"));
        let daemon = Daemon::start_with_config(&config);
        let keyward = Keyward { daemon, address, _config: config, _socket_dir: socket_dir };
        wait_until("the HTTP endpoint to accept connections", || keyward.address.accepts());
        keyward
    }

    /// `GET /health`, for a test that must know the endpoint still serves.
    pub fn health(&self) -> Response {
        get(&self.address, "/health", &[])
    }

    /// Creates a key; returns its token and id.
    pub fn create(&self, workspace: &str, scopes: &[&str], extra: &[&str]) -> (String, String) {
        let created = self.daemon.create(workspace, scopes, extra);
        let field = |name: &str| created[name].as_str().unwrap_or_else(|| panic!("no {name} in {created}")).to_owned();
        (field("token"), field("id"))
    }
}

/// What the [`App`] received, as it echoes it.
#[derive(Clone, Debug)]
pub struct Echo {
    pub request_line: String,
    pub headers: Vec<(String, String)>,
    pub body_len: usize,
}

impl Echo {
    /// Parses the body an [`App`] answered with.
    pub fn from_response(response: &Response) -> Echo {
        let value = response.json();
        let request_line = value["request_line"].as_str().unwrap_or_else(|| panic!("not an echo: {response}"));
        let headers = value["headers"]
            .as_array()
            .expect("headers")
            .iter()
            .map(|pair| (pair[0].as_str().expect("a name").to_owned(), pair[1].as_str().expect("a value").to_owned()))
            .collect();
        Echo {
            request_line: request_line.to_owned(),
            headers,
            body_len: value["body_len"].as_u64().expect("a length") as usize,
        }
    }

    /// The first header named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Every header named `name` (any case).
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }
}

/// The application behind the proxy: answers every request `200` with a JSON body holding its request
/// line, every header as received (`[[name, value], ...]`) and its body's length; HTTP/1.1 keep-alive,
/// one thread per connection.
pub struct App {
    pub port: u16,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl App {
    pub fn start() -> App {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the app");
        let port = listener.local_addr().expect("its address").port();
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (counter, stopping) = (requests.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let counter = counter.clone();
                std::thread::spawn(move || {
                    let _ = App::serve(stream, &counter);
                });
            }
        });
        App { port, requests, stop }
    }

    /// How many requests have reached the app.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn serve(stream: TcpStream, counter: &AtomicUsize) -> std::io::Result<()> {
        stream.set_read_timeout(Some(PATIENCE))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut writer = stream;
        loop {
            let mut request_line = String::new();
            if reader.read_line(&mut request_line)? == 0 {
                return Ok(());
            }
            let request_line = request_line.trim_end().to_owned();
            let mut headers = Vec::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line)?;
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    headers.push((name.trim().to_owned(), value.trim().to_owned()));
                }
            }
            let header = |name: &str| headers.iter().find(|(n, _): &&(String, String)| n.eq_ignore_ascii_case(name));
            let length: usize = header("content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
            std::io::copy(&mut (&mut reader).take(length as u64), &mut std::io::sink())?;
            let close = request_line.ends_with("HTTP/1.0")
                && !header("connection").is_some_and(|(_, v)| v.eq_ignore_ascii_case("keep-alive"))
                || header("connection").is_some_and(|(_, v)| v.eq_ignore_ascii_case("close"));
            counter.fetch_add(1, Ordering::SeqCst);
            let pairs: Vec<Value> = headers.iter().map(|(n, v)| json!([n, v])).collect();
            let body = json!({"request_line": request_line, "headers": pairs, "body_len": length}).to_string();
            write!(
                writer,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n{body}",
                body.len(),
                if close { "Connection: close\r\n" } else { "" }
            )?;
            writer.flush()?;
            if close {
                return Ok(());
            }
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// A proxy process on a temporary directory: its configuration, logs and state live there.
struct ProxyProcess {
    dir: tempfile::TempDir,
    child: ChildGuard,
    address: Address,
    log: PathBuf,
}

impl ProxyProcess {
    fn spawn(mut command: Command, dir: tempfile::TempDir, port: u16, log: PathBuf, what: &str) -> ProxyProcess {
        let output = std::fs::File::create(dir.path().join("output.log")).expect("the output file");
        let child = command
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("dup"))
            .stderr(output)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let mut process = ProxyProcess { dir, child: ChildGuard(child), address: Address::loopback(port), log };
        let started = Instant::now();
        while !process.address.accepts() {
            if let Some(status) = process.child.0.try_wait().expect("try_wait") {
                panic!("{what} exited during startup ({status}):\n{}", process.logs());
            }
            assert!(started.elapsed() < PATIENCE, "{what} did not start listening:\n{}", process.logs());
            std::thread::sleep(Duration::from_millis(20));
        }
        process
    }

    /// The proxy's log and what it printed, for assertion messages.
    fn logs(&self) -> String {
        let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
        format!(
            "--- {}:\n{}\n--- output:\n{}",
            self.log.display(),
            read(&self.log),
            read(&self.dir.path().join("output.log"))
        )
    }
}

/// nginx running `proxy/nginx.conf` (the example site) with `proxy/nginx/keyward-*.conf` included, in front
/// of an [`App`].
pub struct Nginx {
    process: ProxyProcess,
}

impl Nginx {
    /// Starts `nginx` (from [`require_nginx`]) asking `keyward`, passing allowed requests to the app on
    /// `app_port`. What changes in the snippets is exactly what their comments name: the listen address,
    /// the app's address, where the snippet files are, and keywardd's address.
    pub fn start(nginx: &Path, keyward: &Address, app_port: u16) -> Nginx {
        let dir = tempfile::Builder::new().prefix("keyward-nginx").tempdir().expect("temp dir");
        let root = dir.path();
        let snippets = root.join("keyward");
        std::fs::create_dir(&snippets).expect("the snippets' directory");
        for name in ["keyward-server.conf", "keyward-protect.conf"] {
            std::fs::write(snippets.join(name), snippet(&format!("nginx/{name}"), &[])).expect("write a snippet");
        }
        let upstream = snippet("nginx/keyward-upstream.conf", &[("127.0.0.1:9311", &keyward.nginx())]);
        std::fs::write(snippets.join("keyward-upstream.conf"), upstream).expect("write a snippet");
        let port = free_port();
        let site = snippet(
            "nginx.conf",
            &[
                ("/etc/nginx/keyward/", &format!("{}/", snippets.display())),
                ("127.0.0.1:8080", &format!("127.0.0.1:{port}")),
                ("127.0.0.1:8000", &format!("127.0.0.1:{app_port}")),
            ],
        );
        std::fs::write(root.join("site.conf"), site).expect("write the site");
        // One process, no workers (`master_process off` below): a worker outlives a SIGKILLed master and
        // would go on serving the test's port. As root, `user root` keeps nginx from switching to `nobody`,
        // who cannot reach the test's 0700 directories.
        // SAFETY: geteuid has no preconditions.
        let user = if unsafe { libc::geteuid() } == 0 { "user root;" } else { "" };
        let temp: String = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
            .iter()
            .map(|kind| format!("    {kind}_temp_path {};\n", root.join(kind).display()))
            .collect();
        let main = format!(
            "{user}\npid {root}/nginx.pid;\nerror_log {root}/error.log info;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n    access_log off;\n{temp}    include {root}/site.conf;\n}}\n",
            root = root.display()
        );
        std::fs::write(root.join("nginx.conf"), main).expect("write nginx.conf");
        let mut command = Command::new(nginx);
        command
            .arg("-p")
            .arg(root)
            .arg("-c")
            .arg(root.join("nginx.conf"))
            .arg("-e")
            .arg(root.join("error.log"))
            .args(["-g", "daemon off; master_process off;"]);
        let log = root.join("error.log");
        Nginx { process: ProxyProcess::spawn(command, dir, port, log, "nginx") }
    }

    /// Where clients reach it.
    pub fn address(&self) -> &Address {
        &self.process.address
    }

    /// Its error log (at level info) and output, for assertion messages.
    pub fn logs(&self) -> String {
        self.process.logs()
    }
}

/// Caddy running `proxy/Caddyfile` (the example site) importing `proxy/caddy/keyward.caddy`, in front of an
/// [`App`].
pub struct Caddy {
    process: ProxyProcess,
}

impl Caddy {
    /// Starts `caddy` (from [`require_caddy`]) asking `keyward`, passing allowed requests to the app on
    /// `app_port`; no admin endpoint, no automatic HTTPS, its home and state in its directory.
    pub fn start(caddy: &Path, keyward: &Address, app_port: u16) -> Caddy {
        let dir = tempfile::Builder::new().prefix("keyward-caddy").tempdir().expect("temp dir");
        let root = dir.path();
        let auth = snippet("caddy/keyward.caddy", &[("127.0.0.1:9311", &keyward.caddy())]);
        std::fs::write(root.join("keyward.caddy"), auth).expect("write the snippet");
        let port = free_port();
        let site = snippet(
            "Caddyfile",
            &[
                ("/etc/caddy/keyward.caddy", &root.join("keyward.caddy").display().to_string()),
                // Any host name, on loopback only (a site address with a host would match that Host only).
                (":8080 {", &format!(":{port} {{\n\tbind 127.0.0.1")),
                ("127.0.0.1:8000", &format!("127.0.0.1:{app_port}")),
            ],
        );
        let log = root.join("caddy.log");
        let global = format!(
            "{{\n\tadmin off\n\tauto_https off\n\tstorage file_system {}\n\
             \tlog {{\n\t\toutput file {}\n\t\tlevel INFO\n\t}}\n}}\n",
            root.join("data").display(),
            log.display()
        );
        let config = root.join("Caddyfile");
        std::fs::write(&config, format!("{global}\n{site}")).expect("write the Caddyfile");
        let mut command = Command::new(caddy);
        command
            .arg("run")
            .arg("--config")
            .arg(&config)
            .args(["--adapter", "caddyfile"])
            .env("HOME", root)
            .env("XDG_DATA_HOME", root.join("xdg-data"))
            .env("XDG_CONFIG_HOME", root.join("xdg-config"));
        Caddy { process: ProxyProcess::spawn(command, dir, port, log, "caddy") }
    }

    /// Where clients reach it.
    pub fn address(&self) -> &Address {
        &self.process.address
    }

    /// Its log and output, for assertion messages.
    pub fn logs(&self) -> String {
        self.process.logs()
    }
}
