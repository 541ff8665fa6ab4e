//! The processes a run starts: `keywardd` (started, restarted, measured, stopped) and the echo server.
//!
//! Every child is started with `PR_SET_PDEATHSIG = SIGKILL`, so that whatever happens to the benchmark
//! (a panic, a signal, `run.sh`'s trap) no child outlives it; a [`Child`] wrapper also kills on drop.
//! Children are spawned from the main thread only: the death signal fires when the *thread* that forked
//! ends, and the main thread lives as long as the process.

use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use keyward_client::BlockingClient;

/// How long a daemon may take to become ready or to stop before the run gives up.
const PATIENCE: Duration = Duration::from_secs(120);

/// A child process, killed (SIGKILL) and reaped when dropped.
pub struct Spawned {
    child: Option<Child>,
    name: &'static str,
}

impl Spawned {
    /// Starts `command` with stdin closed and the parent-death signal set.
    pub fn start(mut command: Command, name: &'static str) -> Result<Spawned> {
        // SAFETY: prctl is async-signal-safe and touches only the calling (child) process.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.stdin(Stdio::null()).spawn().with_context(|| format!("starting {name}"))?;
        Ok(Spawned { child: Some(child), name })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Whether the process has exited (and its status).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|child| child.try_wait().ok().flatten())
    }

    /// Sends `signal` and waits up to `patience` for the exit, then kills.
    pub fn stop(&mut self, signal: i32, patience: Duration) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        // SAFETY: kill(2) on our own child's pid, which we have not reaped yet.
        unsafe { libc::kill(child.id() as i32, signal) };
        let started = Instant::now();
        while started.elapsed() < patience {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = child.kill();
        let _ = child.wait();
        bail!("{} did not stop within {patience:?} after signal {signal}; killed", self.name)
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The echo server (this binary's `echo-server` subcommand) on `socket`; returns once it accepts.
pub fn start_echo(socket: &Path) -> Result<Spawned> {
    let mut command = Command::new(std::env::current_exe().context("the benchmark's own path")?);
    command.arg("echo-server").arg("--socket").arg(socket);
    let mut server = Spawned::start(command, "echo server")?;
    let started = Instant::now();
    while std::os::unix::net::UnixStream::connect(socket).is_err() {
        if let Some(status) = server.exited() {
            bail!("the echo server exited at startup ({status})");
        }
        if started.elapsed() > PATIENCE {
            bail!("the echo server did not start");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(server)
}

/// How long a start took.
#[derive(Clone, Copy, Debug)]
pub struct Startup {
    /// From spawn to the `READY=1` notification on our `NOTIFY_SOCKET`.
    pub ready: Duration,
    /// From spawn to both sockets answering a Ping.
    pub answering: Duration,
}

/// Memory of a process, from `/proc/PID/status`.
#[derive(Clone, Copy, Debug)]
pub struct Memory {
    /// Resident now (VmRSS), KiB.
    pub rss_kib: u64,
    /// Peak resident (VmHWM), KiB.
    pub peak_kib: u64,
}

impl Memory {
    pub fn rss_mib(&self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }

    pub fn peak_mib(&self) -> f64 {
        self.peak_kib as f64 / 1024.0
    }
}

/// One `keywardd` with its own sockets, log and configuration; its data directory may live elsewhere (a
/// tmpfs for large fixtures).
pub struct Daemon {
    bin: PathBuf,
    root: PathBuf,
    data_dir: PathBuf,
    process: Option<Spawned>,
}

impl Daemon {
    /// A daemon of `bin_dir/keywardd` with its files under `root` and its data in `data_dir`, configured
    /// with `config` (TOML; empty for the defaults). Not started.
    pub fn new(bin_dir: &Path, root: &Path, data_dir: &Path, config: &str) -> Result<Daemon> {
        std::fs::create_dir_all(root.join("run")).with_context(|| format!("creating {}", root.display()))?;
        std::fs::write(root.join("keywardd.toml"), config).context("writing the daemon's configuration")?;
        let bin = bin_dir.join("keywardd");
        if !bin.exists() {
            bail!("{} is missing: build it with `cargo build --release -p keyward-daemon`", bin.display());
        }
        Ok(Daemon { bin, root: root.to_owned(), data_dir: data_dir.to_owned(), process: None })
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn verify_socket(&self) -> PathBuf {
        self.root.join("run/verify.sock")
    }

    pub fn admin_socket(&self) -> PathBuf {
        self.root.join("run/admin.sock")
    }

    pub fn log_path(&self) -> PathBuf {
        self.root.join("keywardd.log")
    }

    pub fn pid(&self) -> u32 {
        self.process.as_ref().map_or(0, Spawned::pid)
    }

    /// Starts the daemon and waits until it has notified readiness and both sockets answer a Ping.
    pub fn start(&mut self) -> Result<Startup> {
        if self.process.is_some() {
            bail!("the daemon is already running");
        }
        let notify_path = self.root.join("notify.sock");
        let _ = std::fs::remove_file(&notify_path);
        let notify = UnixDatagram::bind(&notify_path).context("binding the readiness socket")?;
        notify.set_read_timeout(Some(Duration::from_millis(2)))?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path())?;
        let mut command = Command::new(&self.bin);
        command
            .arg("--config")
            .arg(self.root.join("keywardd.toml"))
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--socket")
            .arg(self.verify_socket())
            .arg("--admin-socket")
            .arg(self.admin_socket())
            .env_remove("KEYWARD_SOCKET")
            .env_remove("KEYWARD_ADMIN_SOCKET")
            .env_remove("KEYWARD_DATA_DIR")
            .env_remove("KEYWARD_CONFIG")
            .env_remove("LISTEN_FDS")
            .env_remove("WATCHDOG_USEC")
            .env("NOTIFY_SOCKET", &notify_path)
            .stdout(Stdio::null())
            .stderr(log);
        let spawned_at = Instant::now();
        self.process = Some(Spawned::start(command, "keywardd")?);
        let mut ready = None;
        let mut message = [0u8; 4096];
        while ready.is_none() {
            if let Ok(len) = notify.recv(&mut message) {
                if message[..len].split(|&b| b == b'\n').any(|line| line == b"READY=1") {
                    ready = Some(spawned_at.elapsed());
                }
            }
            self.check_alive(spawned_at)?;
        }
        while !(answers(&self.verify_socket()) && answers(&self.admin_socket())) {
            self.check_alive(spawned_at)?;
            std::thread::sleep(Duration::from_millis(1));
        }
        let answering = spawned_at.elapsed();
        let _ = std::fs::remove_file(&notify_path);
        Ok(Startup { ready: ready.expect("set above"), answering })
    }

    fn check_alive(&mut self, since: Instant) -> Result<()> {
        let process = self.process.as_mut().ok_or_else(|| anyhow!("not started"))?;
        if let Some(status) = process.exited() {
            self.process = None;
            bail!("keywardd exited during startup ({status}); log:\n{}", self.log_tail());
        }
        if since.elapsed() > PATIENCE {
            bail!("keywardd did not become ready within {PATIENCE:?}; log:\n{}", self.log_tail());
        }
        Ok(())
    }

    /// The last lines of the daemon's log, for error messages.
    pub fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(self.log_path()) {
            let _ = file.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Graceful stop (SIGTERM: drain, final flush), waiting for the exit.
    pub fn stop(&mut self) -> Result<()> {
        match self.process.take() {
            Some(mut process) => process.stop(libc::SIGTERM, PATIENCE),
            None => Ok(()),
        }
    }

    /// The daemon's memory now.
    pub fn memory(&self) -> Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .context("reading the daemon's /proc status")?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .ok_or_else(|| anyhow!("no {name} in /proc status"))
        };
        Ok(Memory { rss_kib: field("VmRSS:")?, peak_kib: field("VmHWM:")? })
    }
}

/// Whether the socket at `path` answers a Ping right now.
fn answers(path: &Path) -> bool {
    BlockingClient::connect_with_timeout(path, Duration::from_millis(500)).and_then(|mut client| client.ping()).is_ok()
}

/// Restricts every thread of process `pid` to CPU `cpu`, or lets them run anywhere again with `None`.
/// Threads the process starts later inherit the mask of the thread that starts them.
pub fn pin(pid: u32, cpu: Option<usize>) -> Result<()> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // SAFETY: cpu_set_t is plain data; the CPU_* helpers only write inside it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for c in 0..cpus {
        if cpu.is_none_or(|only| only == c) {
            // SAFETY: `c` is below the number of CPUs, far below CPU_SETSIZE.
            unsafe { libc::CPU_SET(c, &mut set) };
        }
    }
    let tasks =
        std::fs::read_dir(format!("/proc/{pid}/task")).with_context(|| format!("listing the threads of {pid}"))?;
    for task in tasks {
        let Some(tid) = task?.file_name().to_str().and_then(|name| name.parse::<libc::pid_t>().ok()) else {
            continue;
        };
        // SAFETY: sched_setaffinity reads `set` for its size; a thread that just exited gives ESRCH, ignored.
        let status = unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) };
        if status != 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH) {
            return Err(std::io::Error::last_os_error()).with_context(|| format!("pinning thread {tid} of {pid}"));
        }
    }
    Ok(())
}
