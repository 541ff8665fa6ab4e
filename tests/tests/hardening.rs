//! The security probe's attacks, each run against the real `keywardd` and `keyward`, asserting the hardened
//! behaviour: socket directories another user could squat, a client that would hand a token to whoever
//! listens, verify connections crowding out the admin socket, a frame timer that cuts off a pipelining
//! client, a cold key locked out by a flood of wrong secrets, an admin whose removal did not end its
//! access, a token valid in the other environment, a grace-window token that forgot its key was revoked,
//! and `--json` errors that were not JSON. Then the probe's passing checks, so that they keep passing.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use keyward_protocol::token::SECRET_LEN;
use keyward_protocol::{
    CreateRequest, CreatedKey, Environment, ErrorCode, ExpirySpec, KeyId, KeyStatus, Reply, ReplyFrame, Request,
    Secret, Token, VerifyCode, VerifyRequest,
};
use keyward_tests::{
    as_uid, bin, describe, hello_frame, keyward, keywardd, mode_of, random_base62, request_frame, require_root,
    run_with_stdin, set_mode, start_refused, wait_until, ChildGuard, ConfigFile, Daemon, FakeListener, RawConn, Relay,
    NOBODY,
};
use serde_json::Value;

// 1. Socket directories: the daemon binds only in a directory nobody else controls.

/// `keywardd` with its data in `scratch/data` and both sockets in `socket_dir`.
fn keywardd_in(scratch: &Path, socket_dir: &Path) -> Command {
    let mut command = keywardd();
    command
        .arg("--data-dir")
        .arg(scratch.join("data"))
        .arg("--socket")
        .arg(socket_dir.join("verify.sock"))
        .arg("--admin-socket")
        .arg(socket_dir.join("admin.sock"));
    command
}

/// The one `keywardd: ` line of a start refused with exit status 1 (asserted).
fn refusal_line(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(1), "keywardd should refuse to start: {}", describe(output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|line| line.starts_with("keywardd: ")).collect();
    assert_eq!(lines.len(), 1, "one `keywardd: ` line: {}", describe(output));
    lines[0].to_owned()
}

/// Starts `command` (sockets in `socket_dir`), which must refuse; returns its refusal line, after checking
/// that no socket was bound in `socket_dir`.
fn refused_in(command: Command, socket_dir: &Path) -> String {
    let line = refusal_line(&start_refused(command, &socket_dir.join("verify.sock")));
    for name in ["verify.sock", "admin.sock"] {
        assert!(std::fs::symlink_metadata(socket_dir.join(name)).is_err(), "{name} was bound in {socket_dir:?}");
    }
    line
}

/// Asserts the refusal `line` names `dir` and says `what` about it.
fn assert_names(line: &str, dir: &Path, what: &str) {
    assert!(line.contains(&dir.display().to_string()) && line.contains(what), "expected {dir:?} and {what:?}: {line}");
}

/// Gives the directory `path` to `uid` with mode 0777: what a squatter prepares.
fn squat(path: &Path, uid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
    set_mode(path, 0o777);
}

/// A directory another uid made (and left writable to all) is refused, naming that owner, and nothing is
/// bound in it: a squatter there could replace the sockets with its own.
#[test]
fn a_squatted_socket_directory_is_refused() {
    if !require_root("give a socket directory to another uid") {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let squatted = scratch.path().join("squatted");
    std::fs::create_dir(&squatted).unwrap();
    squat(&squatted, NOBODY);
    let line = refused_in(keywardd_in(scratch.path(), &squatted), &squatted);
    assert_names(&line, &squatted, "uid 65534");
}

/// Removes a directory the test made outside its temporary directories, however the test ends.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The default socket directory without `XDG_RUNTIME_DIR`, `/tmp/keyward-$UID`, is anyone's to create
/// first: a daemon started with no socket flags refuses one another uid pre-created.
#[test]
fn a_squatted_default_socket_directory_is_refused() {
    if !require_root("give the default socket directory to another uid") {
        return;
    }
    // SAFETY: getuid has no preconditions.
    let default_dir = PathBuf::from(format!("/tmp/keyward-{}", unsafe { libc::getuid() }));
    if let Err(error) = std::fs::create_dir(&default_dir) {
        eprintln!(
            "skipped: {} cannot be made for the test ({error}); it is not the test's to replace",
            default_dir.display()
        );
        return;
    }
    let _cleanup = RemoveOnDrop(default_dir.clone());
    squat(&default_dir, NOBODY);
    let home = tempfile::tempdir().unwrap();
    let mut command = keywardd();
    command.env_remove("XDG_RUNTIME_DIR").env("HOME", home.path()).env("XDG_STATE_HOME", home.path().join("state"));
    let line = refused_in(command, &default_dir);
    assert_names(&line, &default_dir, "uid 65534");
}

/// Makes the directory `path` with mode 0777 (no sticky bit), owned by the test's own uid.
fn world_writable(path: PathBuf) -> PathBuf {
    std::fs::create_dir(&path).unwrap();
    set_mode(&path, 0o777);
    path
}

/// A socket directory of the daemon's own that others may write is refused, with its mode: anyone could
/// swap the socket files in it.
#[test]
fn a_socket_directory_others_can_write_is_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let open = world_writable(scratch.path().join("open"));
    let line = refused_in(keywardd_in(scratch.path(), &open), &open);
    assert_names(&line, &open, "0777");
}

/// A socket directory that is a symbolic link is refused, even to a good directory: whoever owns the link's
/// directory could point it elsewhere.
#[test]
fn a_symbolic_link_as_socket_directory_is_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let (good, link) = (scratch.path().join("good"), scratch.path().join("link"));
    std::fs::create_dir(&good).unwrap();
    std::os::unix::fs::symlink(&good, &link).unwrap();
    let line = refused_in(keywardd_in(scratch.path(), &link), &link);
    assert_names(&line, &link, "symbolic link");
}

/// A socket directory under a parent others may write (and without the sticky bit) is refused: anyone could
/// rename the socket directory away and put their own in its place.
#[test]
fn a_socket_directory_under_a_parent_others_can_write_is_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let open = world_writable(scratch.path().join("open"));
    let run = open.join("run");
    let line = refused_in(keywardd_in(scratch.path(), &run), &run);
    assert_names(&line, &open, "0777");
}

/// A missing socket directory is created 0750: private, but the verify socket's group (mode 0660 by
/// default) can still reach its socket.
#[test]
fn a_missing_socket_directory_is_created_0750() {
    let daemon = Daemon::start();
    let dir = daemon.verify_socket().parent().unwrap().to_owned();
    assert_eq!(format!("{:04o}", mode_of(&dir)), "0750", "the socket directory {dir:?} the daemon created");
}

/// A uid that is in no group but its own (65533, with gid 65533), unlike [`NOBODY`] in `nogroup`.
const OUTSIDER: u32 = 65533;

/// The set-up "put app servers in the socket's group" without systemd: `verify_socket_group` gives the verify
/// socket and the directory the daemon creates for it that group (0750 / 0660), so a member connects, and a
/// user outside it is told which directory keeps it out and which group to join (not "is the daemon
/// running?").
#[test]
fn app_servers_in_the_verify_socket_group_connect_and_others_are_told_why_not() {
    if !require_root("connect as other uids") {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    set_mode(scratch.path(), 0o755);
    let socket_dir = scratch.path().join("run");
    let config = ConfigFile::new(&format!("verify_socket_group = {NOBODY}\n"));
    let mut command = keywardd_in(scratch.path(), &socket_dir);
    let _daemon = ChildGuard(command.arg("--config").arg(config.path()).stderr(Stdio::null()).spawn().unwrap());
    let socket = socket_dir.join("verify.sock");
    wait_until("the daemon to answer", || RawConn::connect(&socket).is_ok());
    let group = |path: &Path| std::fs::metadata(path).unwrap().gid();
    assert_eq!((mode_of(&socket_dir), group(&socket_dir)), (0o750, NOBODY), "the socket directory");
    assert_eq!((mode_of(&socket), group(&socket)), (0o660, NOBODY), "the verify socket");

    let verify_as = |uid: u32| {
        let mut command = as_uid(uid, bin("keyward"));
        command.arg("--socket").arg(&socket).args(["verify", "-"]);
        run_with_stdin(command, &format!("{}\n", real_looking_token().expose()))
    };
    let member = verify_as(NOBODY);
    assert_eq!(member.status.code(), Some(1), "a member connects (and the token is unknown): {}", describe(&member));
    let outsider = verify_as(OUTSIDER);
    let stderr = String::from_utf8_lossy(&outsider.stderr);
    let group_name = keyward_protocol::users::group_name(NOBODY).unwrap_or_else(|| NOBODY.to_string());
    let explained = stderr.contains(&format!("may not enter {}", socket_dir.display()))
        && stderr.contains(&format!("to be in group {group_name}"));
    assert!(outsider.status.code() == Some(2) && explained, "{}", describe(&outsider));
}

// 2. The CLI checks who listens on the socket before it sends anything.

/// A token for `key_id` with a random secret: right shape and checksum, and (unless the dice are loaded) wrong.
fn wrong_token(key_id: &KeyId) -> Secret {
    Token::assemble(Environment::Live, key_id, &random_base62())
}

/// A token that looks real (right shape and checksum) for a key id nobody has.
fn real_looking_token() -> Secret {
    wrong_token(&KeyId::from_base62(random_base62()))
}

/// A listener run as uid 65534 on `verify.sock` in a directory of its own under `scratch`, as a squatter
/// would have it; returns it with its socket path.
fn squatter(scratch: &Path) -> (FakeListener, PathBuf) {
    set_mode(scratch, 0o755);
    let dir = scratch.join("squatter");
    std::fs::create_dir(&dir).unwrap();
    squat(&dir, NOBODY);
    let socket = dir.join("verify.sock");
    (FakeListener::start(&socket, NOBODY), socket)
}

/// `keyward --socket SOCKET [flags] verify -` with a real-looking token on stdin and `env` added.
fn verify_through(socket: &Path, flags: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = keyward();
    command.arg("--socket").arg(socket).args(flags).args(["verify", "-"]).envs(env.iter().copied());
    run_with_stdin(command, &format!("{}\n", real_looking_token().expose()))
}

/// The CLI reads the listener's credentials before it writes a byte: a socket uid 65534 listens on gets
/// nothing, not even the handshake, and the CLI says whom it refused.
#[test]
fn the_cli_sends_nothing_to_a_socket_another_uid_listens_on() {
    if !require_root("listen as another uid") {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let (mut listener, socket) = squatter(scratch.path());
    let output = verify_through(&socket, &[], &[]);
    let received = listener.connections();
    assert!(received.iter().all(Vec::is_empty), "the listener received {received:?}: {}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let refusal = stderr.contains("refusing to talk to") && stderr.contains(socket.to_str().unwrap());
    assert!(output.status.code() == Some(2) && refusal && stderr.contains("uid 65534"), "{}", describe(&output));
}

/// Asserts the CLI, allowed to talk to uid 65534 by `flags` or `env`, did send the listener its handshake
/// (the check must not refuse a daemon user the operator named).
fn assert_talks_to_the_named_daemon_user(flags: &[&str], env: &[(&str, &str)]) {
    let scratch = tempfile::tempdir().unwrap();
    let (mut listener, socket) = squatter(scratch.path());
    let output = verify_through(&socket, flags, env);
    let received = listener.connections();
    assert!(received.contains(&hello_frame()), "the listener received {received:?}: {}", describe(&output));
}

/// `KEYWARD_DAEMON_USER=65534` (a numeric uid) lets the CLI talk to a daemon running as that uid.
#[test]
fn keyward_daemon_user_lets_the_cli_talk_to_that_uid() {
    if require_root("listen as another uid") {
        assert_talks_to_the_named_daemon_user(&[], &[("KEYWARD_DAEMON_USER", "65534")]);
    }
}

/// `--daemon-user nobody` (a user name) lets the CLI talk to a daemon running as that user.
#[test]
fn the_daemon_user_flag_lets_the_cli_talk_to_that_user() {
    if require_root("listen as another uid") {
        assert_talks_to_the_named_daemon_user(&["--daemon-user", "nobody"], &[]);
    }
}

// 3. The admin socket has connections of its own, and a newcomer on the verify socket is served.

/// Four verify connections at most, and idle ones are not closed by the idle timer during the test.
const FOUR_VERIFY_CONNECTIONS: &str = "[limits]\nmax_connections = 4\nidle_timeout_secs = 300\n";

/// With every verify permit taken (eight clients that sent their handshake and sit idle), operators still
/// reach the admin socket: `revoke` and `show` succeed.
#[test]
fn verify_connections_cannot_take_the_admin_sockets_connections() {
    let config = ConfigFile::new(FOUR_VERIFY_CONNECTIONS);
    let daemon = Daemon::start_with_config(&config);
    let id = daemon.admin().create("ws1", &["read:all"], ExpirySpec::Never).key.id;
    let _crowd: Vec<RawConn> = (0..8)
        .map(|_| {
            let mut conn = RawConn::open(&daemon.verify_socket()).unwrap();
            conn.send_raw(&hello_frame()).unwrap();
            conn
        })
        .collect();
    for command in ["revoke", "show"] {
        let output = daemon.cli(&[command, &id]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "keyward {command} with the verify socket full: {}",
            describe(&output)
        );
    }
}

/// With every verify permit held by an idle handshaken connection, a fifth client is served, and the
/// connection idle the longest is the one the daemon closed for it.
#[test]
fn a_newcomer_is_served_by_closing_the_longest_idle_verify_connection() {
    let config = ConfigFile::new(FOUR_VERIFY_CONNECTIONS);
    let daemon = Daemon::start_with_config(&config);
    let token = daemon.admin().create("ws1", &["read:all"], ExpirySpec::Never).token;
    let mut idle: Vec<RawConn> = (0..4)
        .map(|_| RawConn::connect(&daemon.verify_socket()).expect("a client within max_connections is served"))
        .collect();
    let mut newcomer = RawConn::connect(&daemon.verify_socket()).expect("a fifth client completes its handshake");
    assert_eq!(newcomer.verify(&token, None, None).code, VerifyCode::Valid);
    assert!(idle[0].is_closed(), "the longest idle connection was closed to make room");
    for conn in &mut idle[1..] {
        assert_eq!(conn.request(Request::Ping), Reply::Pong, "only one connection was closed");
    }
}

// 4. Pipelined frames that never line up with reads are not taken for a slow-loris.

/// How far into the next frame each write ends.
const INTO_NEXT_FRAME: usize = 3;

/// Writes `frames` back to back, each write ending [`INTO_NEXT_FRAME`] bytes into the next frame, with a
/// 10 ms pause after each: the daemon's buffer never ends at a frame boundary, yet frames keep completing.
fn write_misaligned(stream: &mut UnixStream, frames: &[Vec<u8>]) -> std::io::Result<()> {
    use std::io::Write;
    let bytes = frames.concat();
    let starts = frames.iter().scan(0, |start, frame| Some(std::mem::replace(start, *start + frame.len())));
    let mut from = 0;
    for cut in starts.map(|start| start + INTO_NEXT_FRAME).chain([bytes.len()]) {
        stream.write_all(&bytes[from..cut])?;
        from = cut;
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// A client pipelining pings for about 4 s, its writes never aligned with frames, under a 1 s frame
/// timeout: every ping gets its pong, no BAD_FRAME, and the connection stays open (the frame timer restarts
/// whenever a frame completes).
#[test]
fn pipelined_frames_split_across_writes_are_not_cut_off() {
    let config = ConfigFile::new("[limits]\nframe_timeout_secs = 1\n");
    let daemon = Daemon::start_with_config(&config);
    let mut conn = daemon.verifier();
    // Ids from 1000 on take 3 bytes: every frame is 8 bytes long, so each write splits one.
    let ids: BTreeSet<u64> = (1000..1400).collect();
    let frames: Vec<Vec<u8>> = ids.iter().map(|&id| request_frame(id, Request::Ping)).collect();
    let (mut replies, expected) = (RawConn::over(conn.stream.try_clone().unwrap()), ids.len());
    let reader = std::thread::spawn(move || (0..expected).map_while(|_| replies.read_reply()).collect::<Vec<_>>());
    let written = write_misaligned(&mut conn.stream, &frames);
    let replies: Vec<ReplyFrame> = reader.join().unwrap();
    let pongs: BTreeSet<u64> =
        replies.iter().filter(|frame| frame.reply == Reply::Pong).map(|frame| frame.id).collect();
    let others: Vec<&ReplyFrame> = replies.iter().filter(|frame| frame.reply != Reply::Pong).collect();
    assert!(
        others.is_empty() && pongs == ids,
        "{} of {} pings answered; other replies: {others:?}; writing: {written:?}",
        pongs.len(),
        ids.len()
    );
    assert_eq!(conn.request(Request::Ping), Reply::Pong, "the connection is still open");
}

// 5. A cold key's holder is served during a flood of wrong secrets for its id.

/// `count` keys, each verified once, then made cold: the daemon restarted without `warm.key`, so no
/// persisted digest of their secrets counts and their next verify needs Argon2.
fn cold_keys(count: usize) -> (Daemon, Vec<CreatedKey>) {
    let mut daemon = Daemon::start();
    let keys: Vec<CreatedKey> =
        (0..count).map(|_| daemon.admin().create("ws1", &["read:all"], ExpirySpec::Never)).collect();
    let mut verifier = daemon.verifier();
    for key in &keys {
        assert_eq!(verifier.verify(&key.token, None, None).code, VerifyCode::Valid);
    }
    drop(verifier);
    daemon.stop();
    std::fs::remove_file(daemon.data_dir().join("warm.key")).unwrap();
    daemon.restart();
    (daemon, keys)
}

/// Attacker connections per cold key.
const ATTACKERS: usize = 4;
/// Verifies each attacker keeps in flight.
const ATTACK_BATCH: usize = 16;

/// Connections that pipeline verifies of `key_id` with random wrong secrets (right format and checksum)
/// until stopped, counting the BUSY answers they get.
struct Flood {
    stop: Arc<AtomicBool>,
    busy: Arc<AtomicU64>,
    attackers: Vec<JoinHandle<()>>,
}

impl Flood {
    /// Starts `attackers` connections flooding `key_id` on `socket`.
    fn start(socket: &Path, key_id: &str, attackers: usize) -> Flood {
        let (stop, busy) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let key_id = KeyId::parse(key_id).unwrap();
        let attackers = (0..attackers)
            .map(|_| {
                let conn = RawConn::connect(socket).unwrap();
                let (key_id, stop, busy) = (key_id.clone(), stop.clone(), busy.clone());
                std::thread::spawn(move || attack(conn, &key_id, &stop, &busy))
            })
            .collect();
        Flood { stop, busy, attackers }
    }

    /// BUSY answers the attackers got so far.
    fn busy(&self) -> u64 {
        self.busy.load(Ordering::Relaxed)
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for attacker in self.attackers {
            attacker.join().expect("an attacker thread");
        }
    }
}

/// One attacker: batches of wrong secrets for `key_id`, each batch's replies read before the next, until
/// `stop` (or the daemon closes the connection).
fn attack(mut conn: RawConn, key_id: &KeyId, stop: &AtomicBool, busy: &AtomicU64) {
    while !stop.load(Ordering::Relaxed) {
        for id in 0..ATTACK_BATCH as u64 {
            let request = Request::Verify(VerifyRequest::new(wrong_token(key_id)));
            if conn.send_raw(&request_frame(id, request)).is_err() {
                return;
            }
        }
        for _ in 0..ATTACK_BATCH {
            match conn.read_reply() {
                Some(ReplyFrame { reply: Reply::Error(error), .. }) if error.code == ErrorCode::Busy => {
                    busy.fetch_add(1, Ordering::Relaxed);
                }
                Some(_) => {}
                None => return,
            }
        }
    }
}

/// [`ATTACKERS`] connections flood a cold key's id with wrong secrets; its holder's one verify, once the flood
/// already gets BUSY, answers VALID — for three keys in turn, so a lucky pass is unlikely. The key's usage
/// then counts the flood: NOT_FOUND and BUSY.
#[test]
fn a_flood_of_wrong_secrets_does_not_lock_the_holder_out_of_a_cold_key() {
    let (daemon, keys) = cold_keys(3);
    for (round, key) in keys.iter().enumerate() {
        let flood = Flood::start(&daemon.verify_socket(), &key.key.id, ATTACKERS);
        wait_until("an attacker to be answered BUSY", || flood.busy() > 0);
        let reply = daemon.verifier().request(Request::Verify(VerifyRequest::new(key.token.clone())));
        flood.stop();
        let valid = matches!(&reply, Reply::Verify(answer) if answer.code == VerifyCode::Valid);
        assert!(valid, "cold key {round}: the holder's verify during the flood answered {reply:?}");
    }
    for key in &keys {
        let usage = daemon.json(&["usage", &key.key.id], 0);
        let count = |code: &str| usage["totals"][code].as_u64().unwrap_or(0);
        assert!(count("BUSY") > 0 && count("NOT_FOUND") > 0, "usage of key {}: {usage}", key.key.id);
    }
}

// 6. An admin user removed from the configuration loses the connection it already has.

/// uid 65534, an admin by `admin_users`, deactivates a key on its admin connection; the operator removes it
/// and reloads; its next request on the same connection, an Activate, is refused (FORBIDDEN or a close),
/// nothing changes, nothing is audited, and the daemon logs why.
#[test]
fn a_removed_admin_user_loses_its_open_connection() {
    if !require_root("connect as another uid") {
        return;
    }
    let config = ConfigFile::new("admin_users = [65534]\n");
    let daemon = Daemon::start_with_config(&config);
    daemon.let_anyone_reach_the_admin_socket();
    let id = daemon.admin().create("ws1", &["read:all"], ExpirySpec::Never).key.id;
    let relay = Relay::connect(NOBODY, &daemon.admin_socket());
    let mut removed = RawConn::over(relay).handshaken().expect("uid 65534 is an admin user");
    let reply = removed.request(Request::Deactivate { id: id.clone() });
    assert!(matches!(&reply, Reply::Key(view) if view.status == KeyStatus::Inactive), "{reply:?}");

    config.rewrite("admin_users = []\n");
    daemon.reload();
    removed.send_request(Request::Activate { id: id.clone() });
    match removed.read_reply() {
        None => {}
        Some(ReplyFrame { reply: Reply::Error(error), .. }) if error.code == ErrorCode::Forbidden => {}
        Some(other) => panic!("the removed admin user was answered {other:?}"),
    }
    let key = daemon.admin().get(&id);
    assert!(matches!(&key, Reply::Key(view) if view.status == KeyStatus::Inactive), "the key stays inactive: {key:?}");
    let audit = daemon.json(&["audit", "--key", &id], 0);
    let actions: Vec<&str> = audit.as_array().unwrap().iter().filter_map(|entry| entry["action"].as_str()).collect();
    assert!(actions.contains(&"deactivate") && !actions.contains(&"activate"), "{audit}");
    wait_until("the refusal to be logged", || daemon.log().contains("no longer allowed"));
    let log = daemon.log();
    let line = log.lines().find(|line| line.contains("no longer allowed")).unwrap();
    assert!(line.contains("uid=65534"), "{line}");
}

// 7. A token's environment is part of the key.

/// `token` with its environment spelled `env` and its checksum recomputed: the same key id and secret.
fn in_env(token: &Secret, env: Environment) -> Secret {
    let parsed = Token::parse(token.expose()).expect("a keyward token");
    let secret: [u8; SECRET_LEN] = parsed.secret().try_into().unwrap();
    Token::assemble(env, &KeyId::parse(parsed.key_id()).unwrap(), &secret)
}

/// The other environment.
fn other(env: Environment) -> Environment {
    match env {
        Environment::Live => Environment::Test,
        Environment::Test => Environment::Live,
    }
}

/// A live key's token rewritten as `kw_test_…` (and a test key's as `kw_live_…`) answers NOT_FOUND, while
/// the real token stays VALID: a test token pasted into production must not pass as a live one.
#[test]
fn a_token_rewritten_into_the_other_environment_is_not_found() {
    let daemon = Daemon::start();
    let (mut admin, mut verifier) = (daemon.admin(), daemon.verifier());
    for env in [Environment::Live, Environment::Test] {
        let created =
            admin.create_with(CreateRequest { env, ..CreateRequest::new("ws1", "env key", vec!["read:all".into()]) });
        let swapped = in_env(&created.token, other(env));
        assert_eq!(
            verifier.verify(&swapped, None, None).code,
            VerifyCode::NotFound,
            "a {env} key spelled {}",
            other(env)
        );
        assert_eq!(verifier.verify(&created.token, None, None).code, VerifyCode::Valid, "the {env} key's own token");
        assert_eq!(verifier.verify(&swapped, None, None).code, VerifyCode::NotFound, "after a valid verify too");
    }
}

/// The same on a cold key, whose first verify goes through Argon2 instead of the in-memory digest.
#[test]
fn a_cold_keys_token_rewritten_into_the_other_environment_is_not_found() {
    let (daemon, keys) = cold_keys(1);
    let mut verifier = daemon.verifier();
    let swapped = in_env(&keys[0].token, Environment::Test);
    assert_eq!(verifier.verify(&swapped, None, None).code, VerifyCode::NotFound, "a cold live key spelled test");
    assert_eq!(verifier.verify(&keys[0].token, None, None).code, VerifyCode::Valid);
}

// 8. Revoking a key ends the grace of its previous token with REVOKED.

/// create → regenerate with a 1 h grace → revoke: the old token, still within its grace, and the new one
/// both answer REVOKED (not NOT_FOUND, which would tell a caller to look elsewhere for its key).
#[test]
fn a_token_in_its_regenerate_grace_answers_revoked_after_a_revoke() {
    let daemon = Daemon::start();
    let created = daemon.create("ws1", &["read:all"], &[]);
    let (id, old) = (created["id"].as_str().unwrap(), created["token"].as_str().unwrap());
    let regenerated = daemon.json(&["regenerate", id, "--grace", "1h"], 0);
    let new = regenerated["token"].as_str().unwrap();
    assert_eq!(daemon.verify_code(old, &[]), "VALID", "the old token works during its grace");
    daemon.json(&["revoke", id], 0);
    assert_eq!(daemon.verify_code(old, &[]), "REVOKED", "the old token, still in its grace");
    assert_eq!(daemon.verify_code(new, &[]), "REVOKED", "the new token");
}

// 9. With --json, a failure is one JSON object on stdout.

/// A well-formed key id (12 base62 characters) that no daemon has.
const NO_SUCH_KEY: &str = "NoSuchKey123";

/// Asserts `output` is a failure (exit status 2) whose stdout is exactly one JSON object `{"error":
/// {"code": CODE, "message": "..."}}` with a non-empty message, and whose stderr still has its
/// `keyward: ` line.
fn assert_json_error(output: &Output, code: &str) {
    assert_eq!(output.status.code(), Some(2), "{}", describe(output));
    let value: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e}): {}", describe(output)));
    let object = value.as_object().unwrap_or_else(|| panic!("not an object: {value}"));
    let message = value["error"]["message"].as_str().unwrap_or_default();
    assert!(object.len() == 1 && value["error"]["code"] == code && !message.is_empty(), "{value}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.lines().any(|line| line.starts_with("keyward: ")), "{}", describe(output));
}

/// `keyward --json show` of a key that does not exist prints `{"error": {"code": "KEY_NOT_FOUND", …}}`.
#[test]
fn a_refused_request_prints_a_json_error() {
    let daemon = Daemon::start();
    assert_json_error(&daemon.cli(&["--json", "show", NO_SUCH_KEY]), "KEY_NOT_FOUND");
}

/// An unreachable daemon is a JSON error too, `UNREACHABLE`, for `show` and for `verify`; the token given
/// to `verify` appears in neither output.
#[test]
fn an_unreachable_daemon_prints_a_json_error() {
    let mut show = keyward();
    show.args(["--json", "--admin-socket", "/nonexistent/x.sock", "show", NO_SUCH_KEY]);
    assert_json_error(&run_with_stdin(show, ""), "UNREACHABLE");
    let token = real_looking_token();
    let mut verify = keyward();
    verify.args(["--json", "--socket", "/nonexistent/v.sock", "verify", "-"]);
    let output = run_with_stdin(verify, &format!("{}\n", token.expose()));
    assert_json_error(&output, "UNREACHABLE");
    let secret = String::from_utf8_lossy(Token::parse(token.expose()).unwrap().secret()).into_owned();
    assert!(!describe(&output).contains(&secret), "the token leaked: {}", describe(&output));
}

// The probe's passing checks.

/// Management requests on the verify socket, bare or on behalf of an actor, are refused with WRONG_SOCKET
/// and change nothing: the key still verifies.
#[test]
fn management_requests_on_the_verify_socket_change_nothing() {
    let daemon = Daemon::start();
    let created = daemon.admin().create("ws1", &["read:all"], ExpirySpec::Never);
    let id = created.key.id.clone();
    let mut verifier = daemon.verifier();
    let requests = [
        Request::Revoke { id: id.clone() },
        Request::Deactivate { id: id.clone() },
        Request::Regenerate { id: id.clone(), grace_seconds: 0 },
        Request::Create(CreateRequest::new("ws1", "sneaked in", vec!["admin".into()])),
        Request::As { actor: "probe".into(), request: Box::new(Request::Revoke { id }) },
    ];
    for request in requests {
        let reply = verifier.request(request.clone());
        let wrong_socket = matches!(&reply, Reply::Error(error) if error.code == ErrorCode::WrongSocket);
        assert!(wrong_socket, "{request:?} on the verify socket answered {reply:?}");
    }
    assert_eq!(verifier.verify(&created.token, None, None).code, VerifyCode::Valid, "the key is untouched");
}

/// A wrong secret for a real key id gets exactly the answer an unknown key id gets: nothing tells the
/// caller the id exists.
#[test]
fn a_wrong_secret_is_answered_like_an_unknown_key() {
    let daemon = Daemon::start();
    let created = daemon.admin().create("ws1", &["read:all"], ExpirySpec::Never);
    let mut verifier = daemon.verifier();
    let wrong_answer = verifier.verify(&wrong_token(&KeyId::parse(&created.key.id).unwrap()), None, None);
    assert_eq!(wrong_answer.code, VerifyCode::NotFound);
    assert_eq!(wrong_answer, verifier.verify(&real_looking_token(), None, None));
}
