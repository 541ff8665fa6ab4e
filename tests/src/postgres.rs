//! Test support for fleet tests: a throw-away PostgreSQL cluster ([`Postgres`]) that a test owns and can
//! crash, restart, dump and restore, and a relay ([`EngineLink`]) between one daemon and that cluster that
//! the test can cut or stall, like a host whose engine is down or whose network drops packets.
//!
//! Fleet daemons share their state through PostgreSQL, so their tests need a real server, not a mock: the
//! failures under test (a postmaster killed mid-write, an engine restored from an older backup, a link
//! that goes silent) are the server's and the socket's own behaviour. Each cluster lives in a temporary
//! directory of its own and listens on a Unix socket there only (no TCP), so tests run in parallel in one
//! process without sharing anything. Where there is no PostgreSQL server, [`require_postgres`] says so and
//! the test returns.
//!
//! PostgreSQL refuses to run as root, and tests run as root in CI: then the server and `initdb` run as the
//! `postgres` account (set as the child's uid and gid, so the child is the postmaster itself and signals
//! reach it directly), and the clients (`psql`, `pg_dump`, `pg_restore`) as the test's own user.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{describe, run_with_stdin, set_mode, wait_until};

/// How long a server may take to start (crash recovery included) or stop before the test gives up (a hang,
/// not a timing claim).
const PATIENCE: Duration = Duration::from_secs(60);

/// The database every daemon of a fleet test uses.
const DATABASE: &str = "keyward";

/// The cluster's superuser, whom every connection logs in as (trust authentication, Unix socket only).
const SUPERUSER: &str = "postgres";

/// The account the server runs as when the test runs as root.
const SERVER_ACCOUNT: &str = "postgres";

/// Why a fleet test did not run, and how to make it run.
const NO_SERVER: &str = "no PostgreSQL server (install it with `apt-get install postgresql`; it is looked for \
    in `pg_config --bindir` and in /usr/lib/postgresql/*/bin, which must hold `initdb` and `postgres`)";

/// How many lines of the server's log a panic message shows.
const LOG_TAIL_LINES: usize = 60;

/// Whether fleet tests can run: true if PostgreSQL server binaries are found. Otherwise the test should
/// return at once: this prints `skipped: no PostgreSQL server (...)` — unless `KEYWARD_REQUIRE_POSTGRES=1`
/// (as in CI), where a fleet test that cannot run is a failure, so this panics with that message instead.
pub fn require_postgres() -> bool {
    if server_bin_dir().is_some() {
        return true;
    }
    let required = std::env::var("KEYWARD_REQUIRE_POSTGRES").is_ok_and(|value| value == "1");
    assert!(!required, "KEYWARD_REQUIRE_POSTGRES=1 but {NO_SERVER}");
    eprintln!("skipped: {NO_SERVER}");
    false
}

/// The directory of the PostgreSQL server binaries, looked for once per process.
fn server_bin_dir() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| pg_config_bin_dir().or_else(newest_packaged_bin_dir)).as_deref()
}

/// Whether `dir` holds a PostgreSQL server: `initdb` and `postgres`.
fn holds_server(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("postgres").is_file()
}

/// `pg_config --bindir`, if `pg_config` runs and the directory it names holds a server.
fn pg_config_bin_dir() -> Option<PathBuf> {
    let output = Command::new("pg_config").arg("--bindir").stderr(Stdio::null()).output().ok()?;
    let dir = PathBuf::from(String::from_utf8(output.stdout).ok()?.trim());
    (output.status.success() && holds_server(&dir)).then_some(dir)
}

/// The newest `/usr/lib/postgresql/<version>/bin` that holds a server (Debian's layout).
fn newest_packaged_bin_dir() -> Option<PathBuf> {
    let versions = std::fs::read_dir("/usr/lib/postgresql").ok()?;
    versions
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| Some((version_key(entry.file_name().to_str()?)?, entry.path().join("bin"))))
        .filter(|(_, dir)| holds_server(dir))
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, dir)| dir)
}

/// A version directory's name (`15`, `9.6`) as numbers to compare; `None` if it is not a version.
fn version_key(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

/// A client program (`psql`, `pg_dump`, `pg_restore`): the one beside the server binaries, else whichever
/// is on `PATH`. Without the test's own `PG*` variables, which would change whom it talks to or how.
fn client(name: &str) -> Command {
    let beside_server = server_bin_dir().map(|dir| dir.join(name)).filter(|path| path.is_file());
    let mut command = Command::new(beside_server.unwrap_or_else(|| PathBuf::from(name)));
    without_pg_environment(&mut command);
    command
}

/// Removes every `PG*` variable of the test's environment from `command`'s (`PGDATA`, `PGHOST`, `PGOPTIONS`...).
fn without_pg_environment(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(|name| name.starts_with("PG")) {
            command.env_remove(name);
        }
    }
}

/// A libpq connection string for `dbname` over the socket `<socket_dir>/.s.PGSQL.<port>`.
fn conninfo_for(socket_dir: &Path, port: u16, dbname: &str) -> String {
    let host = socket_dir.to_str().expect("a UTF-8 socket directory");
    format!(
        "host={} port={port} user={} dbname={}",
        conninfo_value(host),
        conninfo_value(SUPERUSER),
        conninfo_value(dbname)
    )
}

/// `value` as a libpq key=value value: as is when it is plain, else single-quoted with `\` escapes.
fn conninfo_value(value: &str) -> String {
    let plain = !value.is_empty() && !value.chars().any(|c| c.is_whitespace() || c == '\'' || c == '\\');
    if plain {
        return value.to_owned();
    }
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// `name` as an SQL identifier, double-quoted.
fn identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The path of the Unix socket a server (or a link) on `port` listens on in `dir`.
fn socket_path(dir: &Path, port: u16) -> PathBuf {
    dir.join(format!(".s.PGSQL.{port}"))
}

/// The uid and gid the server runs as: `None` when the test is not root (it runs as the test's user).
/// Panics when the test is root and there is no `postgres` account to run it as.
fn server_account() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let account = lookup_account(SERVER_ACCOUNT);
    assert!(
        account.is_some(),
        "running as root, and PostgreSQL refuses to: it must run as the `{SERVER_ACCOUNT}` account, which does \
         not exist (the postgresql package creates it)"
    );
    account
}

/// The uid and gid of the account `name`, from the password database.
fn lookup_account(name: &str) -> Option<(u32, u32)> {
    let name = CString::new(name).expect("an account name without NUL");
    // SAFETY: passwd is plain data; getpwnam_r fills it in.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    let mut found = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call, and the buffer's length is the one passed.
    let error = unsafe { libc::getpwnam_r(name.as_ptr(), &mut entry, buffer.as_mut_ptr(), buffer.len(), &mut found) };
    (error == 0 && !found.is_null()).then_some((entry.pw_uid, entry.pw_gid))
}

/// Hands `path` to the server's account with the permission bits `mode`, when it runs as another account.
fn give_to_server(path: &Path, account: Option<(u32, u32)>, mode: u32) {
    if let Some((uid, gid)) = account {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("chown {} to {SERVER_ACCOUNT}: {e}", path.display()));
    }
    set_mode(path, mode);
}

/// The next port number of this process's clusters. Each listens only on a Unix socket in its own
/// directory, so the number needs no system-wide check; distinct numbers keep the logs unambiguous.
fn next_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    5432 + NEXT.fetch_add(1, Ordering::Relaxed) % 10_000
}

/// Whether something accepts connections on the Unix socket `path`.
fn accepts(path: &Path) -> bool {
    UnixStream::connect(path).is_ok()
}

/// The last lines of the file at `path`, for panic messages.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| format!("(cannot read {}: {e})", path.display()));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

/// Panics with `what` and `output` unless the command succeeded.
fn check(what: &str, output: &Output) {
    assert!(output.status.success(), "{what} failed: {}", describe(output));
}

/// A throw-away PostgreSQL cluster the test owns: `initdb` and `postgres` on a Unix socket in a temporary
/// directory, with the database `keyward`. Dropping it stops the server and removes the directory.
pub struct Postgres {
    dir: tempfile::TempDir,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    port: u16,
    bins: &'static Path,
    /// The server's uid and gid when the test runs as root; `None` when it runs as the test's user.
    account: Option<(u32, u32)>,
    /// The postmaster, while it runs.
    server: Option<Child>,
}

impl Postgres {
    /// Creates a fresh cluster with `initdb` and starts it, waiting until it accepts connections, then
    /// creates the database `keyward`. Panics with the server's log when it fails.
    pub fn start() -> Postgres {
        let bins = server_bin_dir().unwrap_or_else(|| panic!("{NO_SERVER}"));
        let account = server_account();
        let dir = tempfile::Builder::new().prefix("keyward-pg").tempdir().expect("temp dir");
        // The server's account must reach its data and socket directories through this one.
        set_mode(dir.path(), 0o755);
        let data_dir = dir.path().join("data");
        let socket_dir = dir.path().join("run");
        for (path, mode) in [(&data_dir, 0o700), (&socket_dir, 0o755)] {
            std::fs::create_dir(path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
            give_to_server(path, account, mode);
        }
        let mut postgres = Postgres { dir, data_dir, socket_dir, port: next_port(), bins, account, server: None };
        postgres.initdb();
        postgres.launch();
        postgres.psql_in("postgres", &format!("CREATE DATABASE {}", identifier(DATABASE)));
        postgres
    }

    /// The directory holding the server's Unix socket (`.s.PGSQL.<port>`).
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The port number in the server's socket name (it listens on no TCP port).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A libpq key=value connection string for the database `keyward` as the cluster's superuser:
    /// `host=<socket_dir> port=<port> user=postgres dbname=keyward`.
    pub fn conninfo(&self) -> String {
        self.conninfo_via(&self.socket_dir, self.port)
    }

    /// The same connection string through another socket, `<socket_dir>/.s.PGSQL.<port>` (an
    /// [`EngineLink`]'s).
    pub fn conninfo_via(&self, socket_dir: &Path, port: u16) -> String {
        conninfo_for(socket_dir, port, DATABASE)
    }

    /// Crashes the server: SIGKILL to the postmaster, then waits until it has exited, its socket refuses
    /// connections and its children have gone (each exits when it notices the postmaster is gone).
    pub fn kill9(&mut self) {
        let interlock = self.shared_memory_id();
        self.signal_and_wait(libc::SIGKILL);
        let socket = socket_path(&self.socket_dir, self.port);
        wait_until("the killed server's socket to refuse connections", || !accepts(&socket));
        if let Some(id) = interlock {
            wait_until("the killed postmaster's children to exit", || !shared_memory_in_use(id));
        }
    }

    /// Starts the server again on the same data directory, socket and port (stopping it first if it runs),
    /// and waits until it accepts connections, crash recovery after [`Postgres::kill9`] included.
    pub fn restart(&mut self) {
        if self.server.is_some() {
            self.stop();
        }
        self.launch();
    }

    /// Fast shutdown, as `pg_ctl stop -m fast`: SIGINT to the postmaster, then waits until it has exited.
    pub fn stop(&mut self) {
        let status = self.signal_and_wait(libc::SIGINT);
        assert!(status.success(), "the server's fast shutdown ended with {status}; log:\n{}", self.log_tail());
    }

    /// Runs `sql` with `psql` against the database `keyward` (each statement on its own, as a script, so
    /// statements that refuse a transaction block work) and returns what it printed, unaligned and without
    /// headers, minus the final newline. Panics with its stderr when a statement fails.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_in(DATABASE, sql)
    }

    /// [`Postgres::psql`] against the database `dbname`.
    fn psql_in(&self, dbname: &str, sql: &str) -> String {
        let mut command = client("psql");
        command.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-", "-d"]);
        command.arg(conninfo_for(&self.socket_dir, self.port, dbname));
        let output = run_with_stdin(command, sql);
        check(&format!("psql in {dbname} of {sql:?}"), &output);
        let stdout = String::from_utf8(output.stdout).expect("psql prints UTF-8");
        stdout.trim_end_matches('\n').to_owned()
    }

    /// Creates a second, empty database `name` on the same cluster, for a test that needs a separate fleet,
    /// and returns its connection string.
    pub fn create_database(&self, name: &str) -> String {
        self.psql_in("postgres", &format!("CREATE DATABASE {}", identifier(name)));
        conninfo_for(&self.socket_dir, self.port, name)
    }

    /// Writes a backup of the database `keyward` to `path` (`pg_dump -Fc`).
    pub fn dump(&self, path: &Path) {
        let output = client("pg_dump").args(["-Fc", "-f"]).arg(path).arg("-d").arg(self.conninfo()).output();
        check("pg_dump", &output.expect("run pg_dump"));
    }

    /// Replaces the database `keyward` with the backup at `path`, as an engine restored from an older
    /// backup: restores it into a database of its own, then drops `keyward` (ending its sessions, which
    /// must reconnect) and renames the restored one, so no one sees a half-restored database.
    pub fn restore(&self, path: &Path) {
        let staging = format!("{DATABASE}_restoring");
        let conninfo = self.create_database_afresh(&staging);
        let output =
            client("pg_restore").args(["--exit-on-error", "--no-owner", "-d"]).arg(conninfo).arg(path).output();
        check("pg_restore", &output.expect("run pg_restore"));
        self.psql_in(
            "postgres",
            &format!(
                "DROP DATABASE {live} WITH (FORCE);\nALTER DATABASE {staging} RENAME TO {live};",
                live = identifier(DATABASE),
                staging = identifier(&staging)
            ),
        );
    }

    /// Drops the database `name` if it exists and creates it empty; returns its connection string.
    fn create_database_afresh(&self, name: &str) -> String {
        self.psql_in("postgres", &format!("DROP DATABASE IF EXISTS {} WITH (FORCE);", identifier(name)));
        self.create_database(name)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// The last lines of the server's log (every start appends to it).
    fn log_tail(&self) -> String {
        tail(&self.log_path())
    }

    /// A server program (`initdb`, `postgres`) run as the server's account, from the temporary directory
    /// (which that account can reach), without the test's `PG*` variables.
    fn server_command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bins.join(program));
        command.current_dir(self.dir.path()).stdin(Stdio::null());
        without_pg_environment(&mut command);
        if let Some((uid, gid)) = self.account {
            command.uid(uid).gid(gid);
        }
        command
    }

    /// Creates the cluster: superuser `postgres`, trust authentication (the socket's directory is private),
    /// UTF-8 in the C locale whatever the test's locale is.
    fn initdb(&self) {
        let output = self
            .server_command("initdb")
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"])
            .output()
            .expect("run initdb");
        check("initdb", &output);
    }

    /// Spawns the postmaster on the cluster, its output appended to the log, and waits until it is ready.
    fn launch(&mut self) {
        let log = File::options().create(true).append(true).open(self.log_path()).expect("the server's log file");
        let child = self
            .server_command("postgres")
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-k")
            .arg(&self.socket_dir)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-c", "listen_addresses=", "-c", "fsync=on", "-c", "max_connections=100"])
            .args(["-c", "shared_buffers=32MB"])
            .stdout(log.try_clone().expect("dup the log file"))
            .stderr(log)
            .spawn()
            .expect("spawn postgres");
        self.server = Some(child);
        self.wait_until_ready();
    }

    /// Waits until this postmaster says it is ready (its `postmaster.pid` names it and reads `ready`, which
    /// it writes once recovery is over) and its socket accepts connections. Panics with the log if it exits
    /// or takes too long.
    fn wait_until_ready(&mut self) {
        let started = Instant::now();
        let socket = socket_path(&self.socket_dir, self.port);
        loop {
            let server = self.server.as_mut().expect("a postmaster was spawned");
            if let Some(status) = server.try_wait().expect("try_wait") {
                self.server = None;
                panic!("postgres exited during startup ({status}); log:\n{}", self.log_tail());
            }
            let pid = server.id();
            if self.lock_file_line(1).is_some_and(|line| line.parse() == Ok(pid))
                && self.lock_file_line(8).as_deref() == Some("ready")
                && accepts(&socket)
            {
                return;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "postgres did not start within {PATIENCE:?}; log:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Line `number` (from 1) of `postmaster.pid`, trimmed, if the file has it.
    fn lock_file_line(&self, number: usize) -> Option<String> {
        let text = std::fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        text.lines().nth(number - 1).map(|line| line.trim().to_owned())
    }

    /// The id of the System V shared memory segment the postmaster and every child of it keep attached (the
    /// interlock a new postmaster checks), from line 7 of `postmaster.pid`: `<key> <id>`.
    fn shared_memory_id(&self) -> Option<libc::c_int> {
        self.lock_file_line(7)?.split_whitespace().nth(1)?.parse().ok()
    }

    /// Sends `signal` to the postmaster and waits until it has exited; panics with the log if it does not.
    fn signal_and_wait(&mut self, signal: libc::c_int) -> ExitStatus {
        let mut server = self.server.take().expect("the server is running");
        signal_child(&server, signal);
        let started = Instant::now();
        loop {
            if let Some(status) = server.try_wait().expect("try_wait") {
                return status;
            }
            if started.elapsed() > PATIENCE {
                let _ = server.kill();
                let _ = server.wait();
                panic!("postgres did not exit after signal {signal}; log:\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Postgres {
    /// Immediate shutdown (SIGQUIT: the postmaster stops its children and exits), SIGKILL if it lingers;
    /// then the temporary directory goes away.
    fn drop(&mut self) {
        let Some(mut server) = self.server.take() else { return };
        signal_child(&server, libc::SIGQUIT);
        let started = Instant::now();
        while started.elapsed() < PATIENCE / 2 {
            if server.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = server.kill();
        let _ = server.wait();
    }
}

/// Sends `signal` to `child`, which has not been waited for yet (so its pid is still its own).
fn signal_child(child: &Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("a pid fits pid_t");
    // SAFETY: kill(2) on our own child's pid, which is not reaped yet.
    unsafe { libc::kill(pid, signal) };
}

/// Whether any process still has the System V shared memory segment `id` attached (a gone segment is not
/// in use).
fn shared_memory_in_use(id: libc::c_int) -> bool {
    // SAFETY: shmid_ds is plain data; shmctl fills it in.
    let mut status: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT writes one shmid_ds to a valid pointer.
    let result = unsafe { libc::shmctl(id, libc::IPC_STAT, &mut status) };
    result == 0 && status.shm_nattch > 0
}

/// What an [`EngineLink`] does with connections.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// Relays bytes both ways.
    Forward,
    /// Closes every connection as soon as it is accepted.
    Cut,
    /// Accepts connections and moves no bytes.
    Stall,
}

/// One connection through the link: the sockets to close when it is cut, and whether it is stalled.
struct Relayed {
    /// The client's side, and the cluster's side once it is connected.
    sockets: Vec<UnixStream>,
    /// Set when the link stalls: the pumps drop what they read instead of passing it on.
    stalled: Arc<AtomicBool>,
}

impl Relayed {
    /// Closes both directions of both sides; the pumps' reads then end.
    fn close(&self) {
        for socket in &self.sockets {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

/// What the link's threads share.
struct LinkState {
    /// The cluster's socket.
    target: PathBuf,
    mode: Mutex<Mode>,
    /// The open connections, by a number of the link's own.
    connections: Mutex<HashMap<u64, Relayed>>,
    next_id: AtomicU64,
    accepted: AtomicUsize,
    /// How many bytes stalled connections have swallowed.
    dropped: AtomicUsize,
    /// Set when the link is dropped: the accept thread returns.
    closing: AtomicBool,
}

impl LinkState {
    fn mode(&self) -> Mode {
        *self.mode.lock().expect("the link's mode lock (a link thread panicked)")
    }

    fn connections(&self) -> MutexGuard<'_, HashMap<u64, Relayed>> {
        self.connections.lock().expect("the link's connection table lock (a link thread panicked)")
    }

    /// Closes and forgets every connection for which `which` holds.
    fn close_where(&self, which: impl Fn(&Relayed) -> bool) {
        self.connections().retain(|_, relayed| {
            let close = which(relayed);
            if close {
                relayed.close();
            }
            !close
        });
    }

    /// Handles one accepted connection according to the mode.
    fn admit(self: &Arc<Self>, client: UnixStream) {
        self.accepted.fetch_add(1, Ordering::SeqCst);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        // Holding the table's lock while deciding, so a cut or stall cannot slip in between.
        let mut connections = self.connections();
        match self.mode() {
            Mode::Cut => {
                let _ = client.shutdown(Shutdown::Both);
            }
            Mode::Stall => {
                let stalled = Arc::new(AtomicBool::new(true));
                connections.insert(id, Relayed { sockets: vec![client], stalled });
            }
            Mode::Forward => {
                // The cluster is down (killed or stopped): the client sees its connection closed, as it would.
                let Ok(server) = UnixStream::connect(&self.target) else {
                    let _ = client.shutdown(Shutdown::Both);
                    return;
                };
                let stalled = Arc::new(AtomicBool::new(false));
                let relayed = Relayed { sockets: vec![clone(&client), clone(&server)], stalled: stalled.clone() };
                connections.insert(id, relayed);
                self.spawn_pump(id, clone(&client), clone(&server), stalled.clone());
                self.spawn_pump(id, server, client, stalled);
            }
        }
    }

    /// A thread that copies `from` to `to` until either closes; a stalled connection's bytes are read and
    /// dropped. When it ends it closes the whole connection, so its twin ends too.
    fn spawn_pump(self: &Arc<Self>, id: u64, mut from: UnixStream, mut to: UnixStream, stalled: Arc<AtomicBool>) {
        let state = Arc::clone(self);
        std::thread::spawn(move || {
            let mut buffer = [0u8; 16 * 1024];
            loop {
                let n = match from.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if stalled.load(Ordering::SeqCst) {
                    state.dropped.fetch_add(n, Ordering::SeqCst);
                } else if to.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
            state.connections().remove(&id);
        });
    }

    /// Accepts connections until the link is dropped.
    fn accept_loop(self: Arc<Self>, listener: UnixListener) {
        for client in listener.incoming() {
            if self.closing.load(Ordering::SeqCst) {
                return;
            }
            if let Ok(client) = client {
                self.admit(client);
            }
        }
    }
}

/// A second handle on `socket` (for the pump threads and the connection table).
fn clone(socket: &UnixStream) -> UnixStream {
    socket.try_clone().expect("dup a relayed socket")
}

/// A relay between one daemon and the cluster, so that a test can cut and restore that one host's link.
/// It listens on a Unix socket of its own, `<its dir>/.s.PGSQL.<port>` (the cluster's port number, its own
/// temporary directory), and forwards every connection to the cluster's socket byte for byte, with a thread
/// per direction per connection.
pub struct EngineLink {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    conninfo: String,
    state: Arc<LinkState>,
    accept_thread: Option<JoinHandle<()>>,
}

impl EngineLink {
    /// Starts a link to `postgres`, forwarding.
    pub fn start(postgres: &Postgres) -> EngineLink {
        let dir = tempfile::Builder::new().prefix("keyward-pglink").tempdir().expect("temp dir");
        // Like the cluster's own socket: reachable by every uid, so a daemon run as another one can use it.
        set_mode(dir.path(), 0o755);
        let socket = socket_path(dir.path(), postgres.port());
        let listener = UnixListener::bind(&socket).unwrap_or_else(|e| panic!("bind {}: {e}", socket.display()));
        set_mode(&socket, 0o777);
        let state = Arc::new(LinkState {
            target: socket_path(postgres.socket_dir(), postgres.port()),
            mode: Mutex::new(Mode::Forward),
            connections: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            accepted: AtomicUsize::new(0),
            dropped: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
        });
        let accept_state = Arc::clone(&state);
        let accept_thread = std::thread::spawn(move || accept_state.accept_loop(listener));
        let conninfo = postgres.conninfo_via(dir.path(), postgres.port());
        EngineLink { _dir: dir, socket, conninfo, state, accept_thread: Some(accept_thread) }
    }

    /// The connection string for the database `keyward` through the link.
    pub fn conninfo(&self) -> String {
        self.conninfo.clone()
    }

    /// Cuts the link, like a host whose engine is down: closes every relayed connection at once (both
    /// directions) and closes each new one as soon as it is accepted, until [`EngineLink::restore`].
    pub fn cut(&self) {
        self.set_mode(Mode::Cut);
        self.state.close_where(|_| true);
    }

    /// Stalls the link, like a network partition where packets vanish: connections stay open but no bytes
    /// move (what arrives is dropped), and new connections are accepted but never forwarded, until
    /// [`EngineLink::restore`], which closes the stalled connections rather than resuming them.
    pub fn stall(&self) {
        let connections = self.state.connections();
        for relayed in connections.values() {
            relayed.stalled.store(true, Ordering::SeqCst);
        }
        self.set_mode(Mode::Stall);
    }

    /// Forwards new connections again; closes the connections a stall left open.
    pub fn restore(&self) {
        self.set_mode(Mode::Forward);
        self.state.close_where(|relayed| relayed.stalled.load(Ordering::SeqCst));
    }

    /// How many connections the link has accepted so far, forwarded or not (to assert that a daemon
    /// reconnected).
    pub fn connections_accepted(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }

    fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().expect("the link's mode lock (a link thread panicked)") = mode;
    }
}

impl Drop for EngineLink {
    /// Stops the accept thread (woken by a connection of its own) and closes every connection.
    fn drop(&mut self) {
        self.state.closing.store(true, Ordering::SeqCst);
        let woken = UnixStream::connect(&self.socket).is_ok();
        if let Some(thread) = self.accept_thread.take() {
            // Without the wake-up the thread would wait in accept forever: leave it rather than hang.
            if woken {
                let _ = thread.join();
            }
        }
        self.state.close_where(|_| true);
    }
}

/// `psql -c QUERY` against `conninfo` with `PGCONNECT_TIMEOUT=2`, for checking a link by hand.
#[cfg(test)]
fn psql_through(conninfo: &str, query: &str) -> Output {
    let mut command = client("psql");
    command.env("PGCONNECT_TIMEOUT", "2").args(["-X", "-A", "-t", "-d", conninfo, "-c", query]);
    command.stdin(Stdio::null()).output().expect("run psql")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_starts_answers_survives_kill9_and_restarts() {
        if !require_postgres() {
            return;
        }
        let mut postgres = Postgres::start();
        postgres.psql("CREATE TABLE t(x int); INSERT INTO t VALUES (1)");
        postgres.kill9();
        assert!(!accepts(&socket_path(postgres.socket_dir(), postgres.port())), "the killed server still answers");
        postgres.restart();
        assert_eq!(postgres.psql("SELECT x FROM t"), "1", "the committed row survives the crash");
        postgres.stop();
        postgres.restart();
        assert_eq!(postgres.psql("SELECT count(*) FROM t"), "1", "and a clean stop and start");
    }

    #[test]
    fn a_dump_restores_the_older_state_and_a_second_database_is_separate() {
        if !require_postgres() {
            return;
        }
        let postgres = Postgres::start();
        postgres.psql("CREATE TABLE t(x int); INSERT INTO t VALUES (1)");
        let backup = tempfile::NamedTempFile::new().expect("a file for the backup");
        postgres.dump(backup.path());
        postgres.psql("INSERT INTO t VALUES (2)");
        postgres.restore(backup.path());
        assert_eq!(postgres.psql("SELECT x FROM t ORDER BY x"), "1", "the backup's rows, not the later ones");

        let other = postgres.create_database("second fleet");
        let output = psql_through(&other, "SELECT count(*) FROM pg_tables WHERE tablename = 't'");
        check("psql in the second database", &output);
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "0", "the second database is empty");
    }

    #[test]
    fn the_link_cuts_stalls_and_restores() {
        if !require_postgres() {
            return;
        }
        let postgres = Postgres::start();
        let link = EngineLink::start(&postgres);
        let works = |when: &str| {
            let output = psql_through(&link.conninfo(), "select 1");
            check(&format!("psql through the link {when}"), &output);
            assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "1");
        };
        let fails = |when: &str| -> String {
            let output = psql_through(&link.conninfo(), "select 1");
            assert!(!output.status.success(), "psql through the link {when} worked: {}", describe(&output));
            String::from_utf8_lossy(&output.stderr).into_owned()
        };

        works("at first");
        assert_eq!(link.connections_accepted(), 1);

        link.cut();
        let error = fails("when cut");
        assert!(error.contains("closed the connection"), "a cut link closes the connection: {error}");
        link.restore();
        works("restored after a cut");

        link.stall();
        let error = fails("when stalled");
        assert!(error.contains("timeout expired"), "a stalled link times out: {error}");
        link.restore();
        works("restored after a stall");
        assert_eq!(link.connections_accepted(), 5, "every attempt reached the link");
    }

    #[test]
    fn a_stall_holds_an_open_connection_and_restore_closes_it() {
        if !require_postgres() {
            return;
        }
        let postgres = Postgres::start();
        let link = EngineLink::start(&postgres);
        let mut session = client("psql")
            .args(["-X", "-A", "-t", "-q", "-d", &link.conninfo()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn psql");
        let mut input = session.stdin.take().expect("psql's stdin");
        wait_until("psql's session to open through the link", || {
            postgres.psql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'") == "2"
        });
        link.stall();
        writeln!(input, "select 42;").expect("write to psql");
        wait_until("the stalled link to swallow the query", || link.state.dropped.load(Ordering::SeqCst) > 0);
        let seen = postgres.psql("SELECT count(*) FROM pg_stat_activity WHERE query = 'select 42;'");
        assert_eq!(seen, "0", "the server saw a query sent through a stalled link");
        link.restore();
        drop(input);
        let output = session.wait_with_output().expect("psql's output");
        assert!(!String::from_utf8_lossy(&output.stdout).contains("42"), "a stalled query got through");
        assert!(!output.status.success(), "the stalled session was not closed: {}", describe(&output));
    }

    #[test]
    fn conninfo_values_are_quoted_when_needed() {
        assert_eq!(conninfo_value("/tmp/keyward-pg1/run"), "/tmp/keyward-pg1/run");
        assert_eq!(conninfo_value("a b"), "'a b'");
        assert_eq!(conninfo_value(r"it's\"), r"'it\'s\\'");
        assert_eq!(conninfo_value(""), "''");
        assert_eq!(identifier(r#"a"b"#), r#""a""b""#);
        assert_eq!(version_key("9.6"), Some(vec![9, 6]));
        assert_eq!(version_key("15"), Some(vec![15]));
        assert_eq!(version_key("common"), None);
    }
}
