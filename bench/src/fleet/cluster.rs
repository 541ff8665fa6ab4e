//! A throw-away PostgreSQL cluster for the fleet benchmark: `initdb` and `postgres` on a Unix socket in
//! a directory of the run (no TCP), which the benchmark can crash (SIGKILL to the postmaster) and start
//! again, and in which each part of the run gets a database of its own.
//!
//! The essentials of the test harness's cluster (`tests/src/postgres.rs`), which the benchmark cannot
//! depend on: PostgreSQL refuses to run as root, so under root `initdb` and the postmaster run as the
//! `postgres` account (the child's uid and gid, so the child is the postmaster itself and signals reach
//! it); clients (`psql`) run as the benchmark's user and log in as the superuser `postgres` (trust
//! authentication on the private socket). The postmaster is a [`Spawned`] child: it dies with the
//! benchmark.

use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::process::Spawned;

/// How long the server may take to start (crash recovery included) or stop.
const PATIENCE: Duration = Duration::from_secs(60);

/// The cluster's superuser, whom every connection logs in as.
const SUPERUSER: &str = "postgres";

/// The account the server runs as when the benchmark runs as root.
const SERVER_ACCOUNT: &str = "postgres";

/// The port number in the socket's name (`.s.PGSQL.<port>`); the server listens on no TCP port, so any
/// number does.
const PORT: u16 = 5432;

/// The newest `/usr/lib/postgresql/<version>/bin` holding `initdb` and `postgres` (Debian's layout).
pub fn default_bin_dir() -> Option<PathBuf> {
    let versions = std::fs::read_dir("/usr/lib/postgresql").ok()?;
    versions
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let version: Vec<u32> =
                entry.file_name().to_str()?.split('.').map(|part| part.parse().ok()).collect::<Option<_>>()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| dir.join("initdb").is_file() && dir.join("postgres").is_file())
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, dir)| dir)
}

/// A cluster the benchmark owns. Dropping it stops the server (SIGQUIT, then SIGKILL).
pub struct Cluster {
    root: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    bins: PathBuf,
    /// The server's uid and gid when the benchmark runs as root.
    account: Option<(u32, u32)>,
    server: Option<Spawned>,
}

impl Cluster {
    /// Creates a cluster under `root` (which must not exist yet) with the binaries in `bins`, starts it
    /// and waits until it accepts connections.
    pub fn start(root: &Path, bins: &Path) -> Result<Cluster> {
        for program in ["initdb", "postgres", "psql"] {
            if !bins.join(program).is_file() {
                bail!(
                    "{} is missing: install PostgreSQL (`apt-get install postgresql`) or pass --pg-bin-dir",
                    bins.join(program).display()
                );
            }
        }
        let account = server_account()?;
        std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
        set_mode(root, 0o755)?;
        let data_dir = root.join("data");
        let socket_dir = root.join("run");
        for (path, mode) in [(&data_dir, 0o700), (&socket_dir, 0o755)] {
            std::fs::create_dir(path).with_context(|| format!("creating {}", path.display()))?;
            if let Some((uid, gid)) = account {
                std::os::unix::fs::chown(path, Some(uid), Some(gid))
                    .with_context(|| format!("handing {} to {SERVER_ACCOUNT}", path.display()))?;
            }
            set_mode(path, mode)?;
        }
        let mut cluster =
            Cluster { root: root.to_owned(), data_dir, socket_dir, bins: bins.to_owned(), account, server: None };
        cluster.initdb()?;
        cluster.launch()?;
        Ok(cluster)
    }

    /// The directory holding the server's socket.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The postmaster's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().map(Spawned::pid)
    }

    pub fn port(&self) -> u16 {
        PORT
    }

    /// The server's socket, `<socket_dir>/.s.PGSQL.<port>`.
    pub fn socket_path(&self) -> PathBuf {
        socket_path(&self.socket_dir, PORT)
    }

    /// A key=value connection string for `dbname` over the socket in `socket_dir` (the server's own, or
    /// a relay's).
    pub fn conninfo_via(&self, socket_dir: &Path, dbname: &str) -> String {
        format!("host={} port={PORT} user={SUPERUSER} dbname={dbname}", socket_dir.display())
    }

    /// Creates the empty database `name` (a plain identifier) and returns its connection string.
    pub fn create_database(&self, name: &str) -> Result<String> {
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""))?;
        Ok(self.conninfo_via(&self.socket_dir, name))
    }

    /// Runs `sql` with `psql` in `dbname`; returns what it printed (unaligned, no headers).
    pub fn psql(&self, dbname: &str, sql: &str) -> Result<String> {
        let mut command = Command::new(self.bins.join("psql"));
        without_pg_environment(&mut command);
        let output = command
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(self.conninfo_via(&self.socket_dir, dbname))
            .arg("-c")
            .arg(sql)
            .stdin(Stdio::null())
            .output()
            .context("running psql")?;
        if !output.status.success() {
            bail!("psql {sql:?} failed: {}", String::from_utf8_lossy(&output.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Crashes the server: SIGKILL to the postmaster, then waits until it has exited, its socket refuses
    /// connections and its children have gone.
    pub fn kill9(&mut self) -> Result<()> {
        let interlock = self.shared_memory_id();
        let mut server = self.server.take().context("the server is not running")?;
        server.stop(libc::SIGKILL, PATIENCE)?;
        let started = Instant::now();
        while UnixStream::connect(self.socket_path()).is_ok() || interlock.is_some_and(shared_memory_in_use) {
            if started.elapsed() > PATIENCE {
                bail!("the killed postmaster's socket or children lingered for {PATIENCE:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// Starts the server again on the same data directory and socket (after [`Cluster::kill9`]) and
    /// returns the moment it was seen accepting connections, crash recovery over.
    pub fn restart(&mut self) -> Result<Instant> {
        if self.server.is_some() {
            bail!("the server is running");
        }
        self.launch()
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn log_path(&self) -> PathBuf {
        self.root.join("postgres.log")
    }

    /// A server program run as the server's account, from the cluster's directory, without `PG*`
    /// variables.
    fn server_command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bins.join(program));
        command.current_dir(&self.root);
        without_pg_environment(&mut command);
        if let Some((uid, gid)) = self.account {
            command.uid(uid).gid(gid);
        }
        command
    }

    fn initdb(&self) -> Result<()> {
        let output = self
            .server_command("initdb")
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"])
            .stdin(Stdio::null())
            .output()
            .context("running initdb")?;
        if !output.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&output.stderr).trim());
        }
        Ok(())
    }

    /// Spawns the postmaster (its output appended to the log) and waits until it is ready.
    fn launch(&mut self) -> Result<Instant> {
        let log = std::fs::File::options().create(true).append(true).open(self.log_path())?;
        let mut command = self.server_command("postgres");
        command
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-k")
            .arg(&self.socket_dir)
            .arg("-p")
            .arg(PORT.to_string())
            .args(["-c", "listen_addresses=", "-c", "fsync=on", "-c", "max_connections=100"])
            .args(["-c", "shared_buffers=64MB"])
            .stdout(log.try_clone()?)
            .stderr(log);
        self.server = Some(Spawned::start(command, "postgres")?);
        self.wait_until_ready()
    }

    /// Waits until this postmaster's `postmaster.pid` says `ready` (written once recovery is over) and
    /// its socket accepts connections.
    fn wait_until_ready(&mut self) -> Result<Instant> {
        let started = Instant::now();
        loop {
            let server = self.server.as_mut().context("no postmaster")?;
            if let Some(status) = server.exited() {
                self.server = None;
                bail!("postgres exited during startup ({status}); log:\n{}", self.log_tail());
            }
            let pid = server.pid();
            if self.lock_file_line(1).is_some_and(|line| line.parse() == Ok(pid))
                && self.lock_file_line(8).as_deref() == Some("ready")
                && UnixStream::connect(self.socket_path()).is_ok()
            {
                return Ok(Instant::now());
            }
            if started.elapsed() > PATIENCE {
                bail!("postgres did not start within {PATIENCE:?}; log:\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Line `number` (from 1) of `postmaster.pid`.
    fn lock_file_line(&self, number: usize) -> Option<String> {
        let text = std::fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        text.lines().nth(number - 1).map(|line| line.trim().to_owned())
    }

    /// The System V shared memory segment the postmaster and its children keep attached (line 7 of
    /// `postmaster.pid`: `<key> <id>`).
    fn shared_memory_id(&self) -> Option<libc::c_int> {
        self.lock_file_line(7)?.split_whitespace().nth(1)?.parse().ok()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.stop(libc::SIGQUIT, PATIENCE / 2);
        }
    }
}

/// `<dir>/.s.PGSQL.<port>`.
pub fn socket_path(dir: &Path, port: u16) -> PathBuf {
    dir.join(format!(".s.PGSQL.{port}"))
}

pub fn set_mode(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))
}

fn without_pg_environment(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(|name| name.starts_with("PG")) {
            command.env_remove(name);
        }
    }
}

/// The uid and gid the server runs as: `None` unless the benchmark is root.
fn server_account() -> Result<Option<(u32, u32)>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = CString::new(SERVER_ACCOUNT).expect("no NUL");
    // SAFETY: passwd is plain data; getpwnam_r fills it in.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    let mut found = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call, and the buffer's length is the one passed.
    let error = unsafe { libc::getpwnam_r(name.as_ptr(), &mut entry, buffer.as_mut_ptr(), buffer.len(), &mut found) };
    if error != 0 || found.is_null() {
        bail!("running as root, and PostgreSQL refuses to: there is no `{SERVER_ACCOUNT}` account to run it as");
    }
    Ok(Some((entry.pw_uid, entry.pw_gid)))
}

/// Whether any process still has the shared memory segment `id` attached.
fn shared_memory_in_use(id: libc::c_int) -> bool {
    // SAFETY: shmid_ds is plain data; shmctl fills it in.
    let mut status: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT writes one shmid_ds to a valid pointer.
    let result = unsafe { libc::shmctl(id, libc::IPC_STAT, &mut status) };
    result == 0 && status.shm_nattch > 0
}
