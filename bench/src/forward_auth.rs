//! `keyward-bench forward-auth`: what keywardd's forward-auth endpoint adds to a request through nginx.
//!
//! One run starts a release `keywardd` with `[http]` on loopback, a small upstream app (plain threads in
//! this process, answering `200 ok`), and one nginx with two sites in front of that app: the example site
//! of `proxy/nginx.conf` with the `proxy/nginx/keyward-*.conf` snippets (the files operators copy, with
//! only the addresses changed), and a site with the same `proxy_pass` and no auth. Both are driven the same
//! way with one valid key, in rounds alternating the two, and so is keywardd's `/auth` directly:
//!
//! - sequential: one keep-alive connection, one request at a time (latency with nothing queued);
//! - concurrent: `--connections` keep-alive connections on a thread each, closed loop, for `--seconds`.
//!
//! The report gives p50 and p99 of each, the p50 nginx + keyward adds over nginx alone, and the
//! throughput ratio (auth ÷ no auth); each figure is the median over the rounds. Every process runs on
//! the same machine as the load, so a ratio is the figure to compare between machines, not a rate.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use keyward_client::BlockingClient;

use crate::fixture::create_request;
use crate::load::Measurement;
use crate::process::{Daemon, Spawned};

/// How long a process may take to start listening before the run gives up.
const PATIENCE: Duration = Duration::from_secs(60);

/// The path every request asks for: the example site requires `read:tables` there, which the
/// benchmark key has.
const PATH: &str = "/v1/tables/orders";

/// The `forward-auth` subcommand's flags.
#[derive(clap::Args, Clone, Debug)]
pub struct ForwardAuthArgs {
    /// The `keywardd` to run (a release build); default: the one next to this executable.
    #[arg(long)]
    pub keywardd: Option<PathBuf>,
    /// nginx; default: /usr/sbin/nginx.
    #[arg(long, default_value = "/usr/sbin/nginx")]
    pub nginx: PathBuf,
    /// The snippets' folder; default: this repository's proxy/.
    #[arg(long)]
    pub snippets: Option<PathBuf>,
    /// A scratch directory (configuration, sockets, logs); default: a new temporary directory.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Requests of each sequential measure (after a tenth as many to warm up).
    #[arg(long, default_value_t = 10_000)]
    pub requests: u64,
    /// Keep-alive connections of each concurrent measure.
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// Seconds of each concurrent measure (after one second to warm up).
    #[arg(long, default_value_t = 4.0)]
    pub seconds: f64,
    /// Rounds (each measures every target once, in turn); each figure is the median over them.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Also write the report to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

/// What is measured, in the order a round measures them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    NoAuth,
    Auth,
    Direct,
    /// The floor of one HTTP hop: the app itself, a trivial server answering `200 ok`.
    App,
}

impl Target {
    const ALL: [Target; 4] = [Target::NoAuth, Target::Auth, Target::Direct, Target::App];

    fn label(self) -> &'static str {
        match self {
            Target::NoAuth => "nginx, no auth",
            Target::Auth => "nginx + keyward (auth_request)",
            Target::Direct => "keywardd /auth, directly",
            Target::App => "the app, directly (one hop's floor)",
        }
    }
}

/// Runs the benchmark and returns the markdown report.
pub fn run(args: ForwardAuthArgs) -> Result<String> {
    ensure!(args.nginx.is_file(), "{} is missing: apt-get install nginx", args.nginx.display());
    ensure!(
        args.rounds > 0 && args.connections > 0 && args.requests > 0,
        "rounds, connections and requests: 1 or more"
    );
    let keywardd = match &args.keywardd {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("keywardd"),
    };
    let bin_dir = keywardd.parent().context("keywardd's directory")?;
    let snippets = args.snippets.clone().unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../proxy"));
    let scratch = match &args.work_dir {
        Some(_) => None,
        None => Some(tempfile::Builder::new().prefix("keyward-bench-http").tempdir()?),
    };
    let root = args.work_dir.clone().unwrap_or_else(|| scratch.as_ref().expect("made above").path().to_owned());
    std::fs::create_dir_all(&root)?;

    let http_port = free_port()?;
    let config = format!("[http]\nlisten = [\"127.0.0.1:{http_port}\"]\n");
    let mut daemon = Daemon::new(bin_dir, &root.join("keywardd"), &root.join("keywardd/data"), &config)?;
    daemon.start()?;
    wait_listening(http_port, "keywardd's HTTP endpoint")?;
    let mut admin = BlockingClient::connect(daemon.admin_socket()).context("the admin socket")?;
    let created = admin.create(create_request("acme", "bench forward-auth key")?).context("creating the key")?;
    let token = created.token.expose().to_owned();

    let app = start_app()?;
    let (auth_port, plain_port) = (free_port()?, free_port()?);
    let _nginx = start_nginx(&args.nginx, &snippets, &root.join("nginx"), http_port, app, auth_port, plain_port)?;

    let request = |target: Target| -> (u16, Vec<u8>) {
        let key = format!("Authorization: Bearer {token}\r\n");
        match target {
            Target::NoAuth => (plain_port, format!("GET {PATH} HTTP/1.1\r\nHost: bench\r\n{key}\r\n").into_bytes()),
            Target::Auth => (auth_port, format!("GET {PATH} HTTP/1.1\r\nHost: bench\r\n{key}\r\n").into_bytes()),
            Target::Direct => (
                http_port,
                format!("GET /auth HTTP/1.1\r\nHost: bench\r\n{key}X-Keyward-Scope: read:tables\r\n\r\n").into_bytes(),
            ),
            Target::App => (app, format!("GET {PATH} HTTP/1.1\r\nHost: bench\r\n\r\n").into_bytes()),
        }
    };
    // Every target answers 200 before anything is measured: a misconfiguration is an error, not a figure.
    for target in Target::ALL {
        let (port, bytes) = request(target);
        let mut conn = Conn::open(port)?;
        let status =
            conn.call(&bytes).with_context(|| format!("{} (see the logs in {})", target.label(), root.display()))?;
        ensure!(status == 200, "{} answered {status} (see the logs in {})", target.label(), root.display());
    }

    let window = Duration::from_secs_f64(args.seconds);
    let mut sequential: Vec<Vec<Measurement>> = vec![Vec::new(); Target::ALL.len()];
    let mut concurrent: Vec<Vec<Measurement>> = vec![Vec::new(); Target::ALL.len()];
    for round in 0..args.rounds {
        for (i, target) in Target::ALL.into_iter().enumerate() {
            let (port, bytes) = request(target);
            let one = measure_sequential(port, &bytes, args.requests).context(target.label())?;
            let many = measure_concurrent(port, &bytes, args.connections, window).context(target.label())?;
            eprintln!(
                "keyward-bench: forward-auth round {} | {} | sequential p50 {} | {} connections {:.0}/s",
                round + 1,
                target.label(),
                micros(one.quantile(0.5)),
                args.connections,
                many.throughput()
            );
            sequential[i].push(one);
            concurrent[i].push(many);
        }
    }
    daemon.stop()?;

    let report = markdown(&args, &sequential, &concurrent);
    if let Some(path) = &args.report {
        std::fs::write(path, &report).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(report)
}

/// The report: a row per load and target, then what keyward adds.
fn markdown(args: &ForwardAuthArgs, sequential: &[Vec<Measurement>], concurrent: &[Vec<Measurement>]) -> String {
    let p = |runs: &[Measurement], q: f64| median(runs.iter().map(|m| m.quantile(q).as_secs_f64() * 1e6));
    let rate = |runs: &[Measurement]| median(runs.iter().map(Measurement::throughput));
    let failures = |runs: &[Measurement]| runs.iter().map(|m| m.failures).sum::<u64>();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Forward auth through nginx ({cores} cores; nginx one process, keywardd default threads, the app and \
         the load on this machine too; median of {} rounds)\n",
        args.rounds
    );
    let _ = writeln!(out, "| Load | Target | p50 | p99 | Requests/s | Failures |");
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    let loads = [
        ("sequential, 1 connection".to_owned(), sequential),
        (format!("{} connections", args.connections), concurrent),
    ];
    for (load, runs) in &loads {
        for (i, target) in Target::ALL.into_iter().enumerate() {
            let _ = writeln!(
                out,
                "| {load} | {} | {:.0} µs | {:.0} µs | {:.0} | {} |",
                target.label(),
                p(&runs[i], 0.5),
                p(&runs[i], 0.99),
                rate(&runs[i]),
                failures(&runs[i])
            );
        }
    }
    let _ = writeln!(out);
    for (load, runs) in &loads {
        let (plain, auth) = (&runs[0], &runs[1]);
        let _ = writeln!(
            out,
            "- {load}: nginx + keyward adds {:.0} µs at p50 ({:.0} µs at p99); throughput auth ÷ no auth = {:.2}",
            p(auth, 0.5) - p(plain, 0.5),
            p(auth, 0.99) - p(plain, 0.99),
            rate(auth) / rate(plain).max(1e-9)
        );
        let (direct, app) = (&runs[2], &runs[3]);
        let _ = writeln!(
            out,
            "- {load}: keywardd's /auth directly ÷ the app directly: p50 {:.2}×, throughput {:.2}",
            p(direct, 0.5) / p(app, 0.5).max(1e-9),
            rate(direct) / rate(app).max(1e-9)
        );
    }
    out
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn micros(duration: Duration) -> String {
    format!("{:.0} µs", duration.as_secs_f64() * 1e6)
}

/// `requests` round trips one after another on one connection, after a tenth as many to warm up.
fn measure_sequential(port: u16, request: &[u8], requests: u64) -> Result<Measurement> {
    let mut conn = Conn::open(port)?;
    for _ in 0..requests / 10 {
        conn.call(request)?;
    }
    let started = Instant::now();
    let mut measurement = Measurement::empty(Duration::ZERO);
    for _ in 0..requests {
        let sent = Instant::now();
        let status = conn.call(request)?;
        measurement.record(sent.elapsed(), status == 200);
    }
    measurement.window = started.elapsed();
    Ok(measurement)
}

/// `connections` closed loops, a thread and a keep-alive connection each: one second of warm-up, then
/// `window` measured (requests started inside it count).
fn measure_concurrent(port: u16, request: &[u8], connections: usize, window: Duration) -> Result<Measurement> {
    let start = Instant::now() + Duration::from_secs(1);
    let end = start + window;
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let request = request.to_vec();
            std::thread::spawn(move || -> Result<Measurement> {
                let mut conn = Conn::open(port)?;
                let mut measurement = Measurement::empty(window);
                loop {
                    let sent = Instant::now();
                    if sent >= end {
                        return Ok(measurement);
                    }
                    let status = conn.call(&request)?;
                    if sent >= start {
                        measurement.record(sent.elapsed(), status == 200);
                    }
                }
            })
        })
        .collect();
    let mut total = Measurement::empty(window);
    for worker in workers {
        let part = worker.join().map_err(|_| anyhow::anyhow!("a load thread panicked"))??;
        total.requests += part.requests;
        total.failures += part.failures;
        total.latency.add(&part.latency).map_err(|e| anyhow::anyhow!("merging histograms: {e:?}"))?;
    }
    Ok(total)
}

/// One keep-alive HTTP/1.1 connection that sends a fixed request and reads a response by its
/// `Content-Length` (every server here sends one). When a response says `Connection: close` (nginx does
/// after `keepalive_requests`, 1000 by default) the next request goes on a new connection, as a client's
/// would.
struct Conn {
    port: u16,
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Conn {
    fn open(port: u16) -> Result<Conn> {
        Ok(Conn { port, stream: Conn::connect(port)?, buffer: Vec::with_capacity(16 * 1024) })
    }

    fn connect(port: u16) -> Result<TcpStream> {
        let stream = TcpStream::connect(("127.0.0.1", port)).with_context(|| format!("connecting to port {port}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(stream)
    }

    /// Sends `request` and reads its response; returns the status.
    fn call(&mut self, request: &[u8]) -> Result<u16> {
        self.stream.write_all(request)?;
        let head_end = loop {
            if let Some(at) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            self.fill()?;
        };
        let head = std::str::from_utf8(&self.buffer[..head_end]).context("a response head that is not text")?;
        let status: u16 = head.get(9..12).and_then(|code| code.parse().ok()).context("a bad status line")?;
        let length: usize = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok()).flatten()
            })
            .context("a response without Content-Length")?;
        let close = head.to_ascii_lowercase().contains("\r\nconnection: close");
        while self.buffer.len() < head_end + length {
            self.fill()?;
        }
        self.buffer.drain(..head_end + length);
        if close {
            self.stream = Conn::connect(self.port)?;
            self.buffer.clear();
        }
        Ok(status)
    }

    fn fill(&mut self) -> Result<()> {
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk)?;
        if n == 0 {
            bail!("the server closed the connection");
        }
        self.buffer.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

/// A free loopback port (nothing else on a benchmark machine takes ports at random).
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_listening(port: u16, what: &str) -> Result<()> {
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        ensure!(started.elapsed() < PATIENCE, "{what} did not listen on port {port}");
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// The upstream app: answers every request `200 ok`, closing when asked (nginx's default proxy_pass sends
/// HTTP/1.0 with `Connection: close`, so a connection per request); 64 threads accepting, so that no
/// request waits for a thread to be started. Returns its port.
fn start_app() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    for _ in 0..64 {
        let listener = listener.try_clone()?;
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                serve_app(stream);
            }
        });
    }
    Ok(port)
}

fn serve_app(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
        buffer.drain(..end + 4);
        let close = head.contains("connection: close") || head.lines().next().is_some_and(|l| l.ends_with("http/1.0"));
        let answer: &[u8] = if close {
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
        } else {
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        };
        if stream.write_all(answer).is_err() || close {
            return;
        }
    }
}

/// One nginx: the example site (`proxy/nginx.conf` and its snippets, addresses changed as their comments
/// say) on `auth_port`, and the same `proxy_pass` without auth on `plain_port`, both to the app on
/// `app_port`; keywardd at `keyward_port`.
fn start_nginx(
    nginx: &Path,
    snippets: &Path,
    root: &Path,
    keyward_port: u16,
    app_port: u16,
    auth_port: u16,
    plain_port: u16,
) -> Result<Spawned> {
    let read = |name: &str, changes: &[(&str, String)]| -> Result<String> {
        let path = snippets.join(name);
        let mut text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        for (from, to) in changes {
            ensure!(text.contains(from), "{} no longer holds {from:?}", path.display());
            text = text.replace(from, to);
        }
        Ok(text)
    };
    let dir = root.join("keyward");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("keyward-server.conf"), read("nginx/keyward-server.conf", &[])?)?;
    std::fs::write(dir.join("keyward-protect.conf"), read("nginx/keyward-protect.conf", &[])?)?;
    let upstream = read("nginx/keyward-upstream.conf", &[("127.0.0.1:9311", format!("127.0.0.1:{keyward_port}"))])?;
    std::fs::write(dir.join("keyward-upstream.conf"), upstream)?;
    let site = read(
        "nginx.conf",
        &[
            ("/etc/nginx/keyward/", format!("{}/", dir.display())),
            ("127.0.0.1:8080", format!("127.0.0.1:{auth_port}")),
            ("127.0.0.1:8000", format!("127.0.0.1:{app_port}")),
        ],
    )?;
    std::fs::write(root.join("site.conf"), site)?;
    // SAFETY: geteuid has no preconditions.
    let user = if unsafe { libc::geteuid() } == 0 { "user root;" } else { "" };
    let r = root.display();
    let main = [
        user.to_owned(),
        format!("pid {r}/nginx.pid;"),
        format!("error_log {r}/error.log warn;"),
        "events { worker_connections 1024; }".to_owned(),
        "http {".to_owned(),
        "    access_log off;".to_owned(),
        format!("    client_body_temp_path {r}/body;"),
        format!("    proxy_temp_path {r}/proxy;"),
        format!("    fastcgi_temp_path {r}/fastcgi;"),
        format!("    uwsgi_temp_path {r}/uwsgi;"),
        format!("    scgi_temp_path {r}/scgi;"),
        format!("    include {r}/site.conf;"),
        // The same proxy_pass as the example site's, without auth.
        format!(
            "    server {{ listen 127.0.0.1:{plain_port}; location / {{ proxy_pass http://127.0.0.1:{app_port}; }} }}"
        ),
        "}".to_owned(),
    ]
    .join("\n");
    std::fs::write(root.join("nginx.conf"), main)?;
    // `master_process off`: one process serving (as one worker would), which dies with the benchmark: a
    // worker would outlive its SIGKILLed master and keep the ports.
    let log = std::fs::File::create(root.join("nginx.out"))?;
    let mut command = Command::new(nginx);
    command
        .arg("-p")
        .arg(root)
        .arg("-c")
        .arg(root.join("nginx.conf"))
        .arg("-e")
        .arg(root.join("error.log"))
        .args(["-g", "daemon off; master_process off;"])
        .stdout(Stdio::null())
        .stderr(log);
    let mut process = Spawned::start(command, "nginx")?;
    for port in [auth_port, plain_port] {
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = process.exited() {
                bail!("nginx exited at startup ({status}); see {}", root.display());
            }
            ensure!(started.elapsed() < PATIENCE, "nginx did not listen on {port}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Ok(process)
}
