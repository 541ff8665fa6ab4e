//! Operating keywardd: systemd units, socket activation and readiness, configuration files and SIGHUP,
//! peer authorization, connection limits, and the stats request.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keyward_protocol::{CreateRequest, ErrorCode, HelloReply, RatePolicy, Reply, Request, VerifyCode};
use keyward_tests::{bin, describe, wait_until, ChildGuard, ConfigFile, Daemon, RawConn};

/// The repository's `systemd/` folder.
fn units_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd")
}

fn systemd_analyze() -> Command {
    assert!(
        Command::new("systemd-analyze").arg("--version").output().is_ok(),
        "systemd-analyze is missing: install Debian's `systemd` package (.ci/run does)"
    );
    Command::new("systemd-analyze")
}

/// The units copied to `dir`, with ExecStart pointing at the binary under test (verify checks it exists).
fn staged_units(dir: &Path) -> Vec<PathBuf> {
    ["keywardd.service", "keywardd.socket", "keywardd-admin.socket"]
        .iter()
        .map(|name| {
            let text = std::fs::read_to_string(units_dir().join(name)).unwrap();
            let text = text.replace("/usr/local/bin/keywardd", bin("keywardd").to_str().unwrap());
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        })
        .collect()
}

#[test]
fn units_pass_systemd_analyze_verify_without_a_single_complaint() {
    let dir = tempfile::tempdir().unwrap();
    let units = staged_units(dir.path());
    let output = systemd_analyze().arg("verify").args(&units).output().unwrap();
    // verify exits 0 on unknown keys and bad values, so any printed line is a failure.
    assert!(output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(), "{}", describe(&output));
}

/// A drop-in of `systemd/` (`keywardd-fleet.conf`, `keywardd-http.conf`) staged as
/// `keywardd.service.d/<name>` beside the staged service, where systemd-analyze reads drop-ins from.
fn stage_drop_in(dir: &Path, file: &str, name: &str) {
    let drop_ins = dir.join("keywardd.service.d");
    std::fs::create_dir_all(&drop_ins).unwrap();
    std::fs::copy(units_dir().join(file), drop_ins.join(name)).unwrap();
}

/// The staged units with `file` of `systemd/` staged as the service's drop-in `name`: verify must print
/// nothing and the exposure stay below 2.0. Returns what `systemd-analyze security` says of the service.
fn security_with_drop_in(file: &str, name: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let units = staged_units(dir.path());
    stage_drop_in(dir.path(), file, name);
    let output = systemd_analyze().arg("verify").args(&units).output().unwrap();
    assert!(output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(), "{}", describe(&output));
    let output =
        systemd_analyze().args(["security", "--offline=yes", "--threshold=20"]).arg(&units[0]).output().unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A fleet host's service (the drop-in opens the network to reach the engine) still passes verify without a
/// complaint and stays below 2.0 exposure; the drop-in holds the engine's password as a credential.
#[test]
fn a_fleet_host_service_passes_verify_and_stays_below_2_0_exposure() {
    let text = security_with_drop_in("keywardd-fleet.conf", "fleet.conf");
    assert!(text.contains("Service has access to the host's network"), "the drop-in was not read:\n{text}");
    let drop_in = std::fs::read_to_string(units_dir().join("keywardd-fleet.conf")).unwrap();
    assert!(drop_in.contains("LoadCredential=engine.password:"), "the password comes as a credential");
}

/// A host whose forward-auth endpoint listens on a loopback port: the drop-in shares the host's network
/// for loopback only; the service still passes verify without a complaint and stays below 2.0 exposure.
#[test]
fn an_http_endpoint_host_service_passes_verify_and_admits_loopback_only() {
    let text = security_with_drop_in("keywardd-http.conf", "http.conf");
    assert!(text.contains("Service has access to the host's network"), "the drop-in was not read:\n{text}");
    assert!(text.contains("allow list with only localhost entries"), "loopback only:\n{text}");
}

#[test]
fn the_service_scores_at_most_2_0_exposure() {
    let dir = tempfile::tempdir().unwrap();
    let units = staged_units(dir.path());
    let output =
        systemd_analyze().args(["security", "--offline=yes", "--threshold=20"]).arg(&units[0]).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", describe(&output));
    let level = text.lines().find(|l| l.contains("Overall exposure level")).expect("an exposure line");
    assert!(!level.contains("UNSAFE") && !level.contains("EXPOSED"), "{level}");
}

#[test]
fn socket_activation_and_readiness() {
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let (verify, admin) = (dir.path().join("verify.sock"), dir.path().join("admin.sock"));
    let mut activator = Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(&verify)
        .arg("-l")
        .arg(&admin)
        .arg("--fdname=verify:admin")
        .arg(format!("-ENOTIFY_SOCKET={}", notify_path.display()))
        .arg(bin("keywardd"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--socket")
        .arg(&verify)
        .arg("--admin-socket")
        .arg(&admin)
        .stderr(Stdio::piped())
        .spawn()
        .expect("systemd-socket-activate (Debian's systemd package)");
    let started = Instant::now();
    while !verify.exists() || !admin.exists() {
        assert!(started.elapsed() < Duration::from_secs(30), "the activator never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The first connection starts the daemon on the passed sockets; it answers on both.
    let mut first = RawConn::connect(&verify).expect("the daemon answers on the passed verify socket");
    assert_eq!(first.request(Request::Ping), Reply::Pong);
    let mut buf = [0u8; 4096];
    let mut messages = String::new();
    while !messages.contains("READY=1") {
        let n = notify.recv(&mut buf).expect("READY=1 within 30 s");
        messages.push_str(&String::from_utf8_lossy(&buf[..n]));
        messages.push('\n');
    }
    // Ready means ready: both sockets answer at once.
    assert_eq!(RawConn::connect(&admin).unwrap().request(Request::Ping), Reply::Pong);
    assert_eq!(RawConn::connect(&verify).unwrap().request(Request::Ping), Reply::Pong);
    assert!(messages.contains("STATUS="), "{messages}");

    // SIGHUP (what ExecReload sends): RELOADING=1, then READY=1 again.
    // SAFETY: kill(2) on our own child, which exec'd the daemon.
    unsafe { libc::kill(activator.id() as i32, libc::SIGHUP) };
    let mut reload = String::new();
    while !(reload.contains("RELOADING=1") && reload.contains("READY=1")) {
        let n = notify.recv(&mut buf).expect("RELOADING=1 and READY=1 after SIGHUP");
        reload.push_str(&String::from_utf8_lossy(&buf[..n]));
        reload.push('\n');
    }
    assert!(reload.find("RELOADING=1") < reload.rfind("READY=1"), "{reload}");

    // SIGTERM: STOPPING=1, a clean exit, and the activation sockets are systemd's to remove, not ours.
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(activator.id() as i32, libc::SIGTERM) };
    let status = activator.wait().unwrap();
    let mut stopping = String::new();
    notify.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    while let Ok(n) = notify.recv(&mut buf) {
        stopping.push_str(&String::from_utf8_lossy(&buf[..n]));
        if stopping.contains("STOPPING=1") {
            break;
        }
    }
    assert!(stopping.contains("STOPPING=1"), "{stopping}");
    assert!(status.success(), "exit {status}");
}

fn create_with_plan(admin: &mut RawConn, plan: &str) -> Reply {
    let mut request = CreateRequest::new("ws1", "planned key", vec!["read:all".into()]);
    request.limits.rate = RatePolicy::Plan(plan.into());
    admin.request(Request::Create(request))
}

#[test]
fn sighup_applies_a_good_file_and_keeps_the_old_one_on_a_bad_file() {
    let config = ConfigFile::new("[plans]\nfree = \"100/min\"\n");
    let daemon = Daemon::start_with_config(&config);
    let mut admin = daemon.admin();
    assert!(matches!(create_with_plan(&mut admin, "gold"), Reply::Error(e) if e.code == ErrorCode::InvalidArgument));

    config.rewrite("[plans]\ngold = \"5/s\"\n");
    // SAFETY: kill(2) on the daemon we started.
    unsafe { libc::kill(daemon.pid() as i32, libc::SIGHUP) };
    wait_until("the reload", || matches!(create_with_plan(&mut admin, "gold"), Reply::Created(_)));

    config.rewrite("[plans]\ngold = \"5/s\"\n[limits]\nmax_conections = 3\n");
    // SAFETY: as above.
    unsafe { libc::kill(daemon.pid() as i32, libc::SIGHUP) };
    wait_until("the rejection to be logged", || daemon.log().contains("configuration rejected"));
    let log = daemon.log();
    assert!(log.contains("keyward.toml:4:"), "the log names the file and line: {log}");
    assert!(matches!(create_with_plan(&mut admin, "gold"), Reply::Created(_)), "the old configuration stays");
    assert_eq!(admin.request(Request::Ping), Reply::Pong, "no connection was dropped by either reload");
}

#[test]
fn one_runtime_thread_serves_both_sockets_and_a_reload_says_the_count_needs_a_restart() {
    let config = ConfigFile::new("[runtime]\nthreads = 1\n");
    let daemon = Daemon::start_with_config(&config);
    let token = daemon.admin().create("ws1", &["read:all"], Default::default()).token;
    let mut verifier = daemon.verifier();
    for _ in 0..3 {
        assert_eq!(verifier.verify(&token, Some("read:all"), None).code, VerifyCode::Valid);
    }

    config.rewrite("[runtime]\nthreads = 4\n");
    // SAFETY: kill(2) on the daemon we started.
    unsafe { libc::kill(daemon.pid() as i32, libc::SIGHUP) };
    wait_until("the restart warning", || daemon.log().contains("changes only with a restart"));
    assert!(daemon.log().contains("runtime.threads"), "{}", daemon.log());
    assert_eq!(verifier.verify(&token, Some("read:all"), None).code, VerifyCode::Valid);
}

#[test]
fn json_logs_are_one_object_per_line() {
    let config = ConfigFile::new("[log]\nformat = \"json\"\nlevel = \"debug\"\n");
    let mut daemon = Daemon::start_with_config(&config);
    daemon.admin().create("ws1", &["read:all"], Default::default());
    daemon.stop();
    let log = daemon.log();
    assert!(log.lines().count() >= 3, "{log}");
    for line in log.lines() {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(entry["level"].is_string() && entry["fields"]["message"].is_string(), "{line}");
    }
}

#[test]
fn cold_verifies_beyond_the_argon2_queue_answer_busy() {
    let mut daemon = Daemon::start();
    let tokens: Vec<_> =
        (0..6).map(|_| daemon.admin().create("ws1", &["read:all"], Default::default()).token).collect();
    daemon.stop();
    // Without the warm digest key, the persisted digests are ignored and every key restarts cold.
    std::fs::remove_file(daemon.data_dir().join("warm.key")).unwrap();
    let config = ConfigFile::new("[argon2]\nworkers = 1\nqueue = 1\n");
    let restarted = daemon.command().arg("--config").arg(config.path()).stderr(Stdio::null()).spawn().unwrap();
    let mut restarted = ChildGuard(restarted);
    wait_until("the restarted daemon", || RawConn::connect(&daemon.verify_socket()).is_ok());
    // After the restart every key is cold: six first verifies at once need six Argon2 runs.
    let mut conn = daemon.verifier();
    for token in &tokens {
        conn.send_request(Request::Verify(keyward_protocol::VerifyRequest::new(token.clone())));
    }
    let replies: Vec<Reply> = (0..tokens.len()).map(|_| conn.read_reply().unwrap().reply).collect();
    let busy = replies.iter().filter(|r| matches!(r, Reply::Error(e) if e.code == ErrorCode::Busy)).count();
    let valid = replies.iter().filter(|r| matches!(r, Reply::Verify(a) if a.code == VerifyCode::Valid)).count();
    assert!(busy >= 1 && busy + valid == tokens.len(), "{replies:?}");
    // Once the queue drains, the same tokens are served.
    for token in &tokens {
        assert_eq!(daemon.verifier().verify(token, None, None).code, VerifyCode::Valid);
    }
    restarted.0.kill().unwrap();
    restarted.0.wait().unwrap();
}

#[test]
fn a_bad_config_file_refuses_to_start_with_file_line_and_reason() {
    let config = ConfigFile::new("data_dir = \"/tmp/x\"\n\n[argon2]\nworkers = 0\n");
    let output = Command::new(bin("keywardd")).arg("--config").arg(config.path()).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("keyward.toml:4:") && stderr.contains("argon2.workers"), "{stderr}");
}

#[test]
fn a_data_directory_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
    let output = Command::new(bin("keywardd"))
        .arg("--data-dir")
        .arg(&data)
        .arg("--socket")
        .arg(dir.path().join("v.sock"))
        .arg("--admin-socket")
        .arg(dir.path().join("a.sock"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("writable by group or others"), "{}", describe(&output));
}

#[test]
fn the_admin_socket_refuses_a_peer_that_is_not_allowed() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: a second uid is needed to be refused, and only root can switch to one");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let daemon = Daemon::start();
    // Let anyone reach the socket file, so the daemon's own check is what refuses.
    for path in [daemon.admin_socket().parent().unwrap().parent().unwrap(), daemon.admin_socket().parent().unwrap()] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(daemon.admin_socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let output = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(bin("keyward"))
        .arg("--admin-socket")
        .arg(daemon.admin_socket())
        .args(["list", "--workspace", "ws1"])
        .output()
        .expect("setpriv (util-linux)");
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("FORBIDDEN"), "{}", describe(&output));
    wait_until("the refusal to be logged", || daemon.log().contains("peer not allowed"));
    assert!(daemon.log().contains("uid=65534"), "{}", daemon.log());
    assert_eq!(daemon.admin().request(Request::Ping), Reply::Pong, "root is still served");
}

#[test]
fn a_connection_flood_waits_at_the_door_and_a_good_client_is_served() {
    let config = ConfigFile::new("[limits]\nmax_connections = 8\nhandshake_timeout_secs = 1\nidle_timeout_secs = 1\n");
    let daemon = Daemon::start_with_config(&config);
    let token = daemon.admin().create("ws1", &["read:all"], Default::default()).token;
    let mut good = daemon.verifier();
    // 40 connections that never say a word: the rest of the permits are taken, the others wait in the
    // kernel's backlog (not refused), and each silent one is closed after the handshake timeout.
    let flood: Vec<_> =
        (0..40).map(|_| std::os::unix::net::UnixStream::connect(daemon.verify_socket()).unwrap()).collect();
    for _ in 0..20 {
        assert_eq!(good.verify(&token, None, None).code, VerifyCode::Valid, "the connected client is served");
    }
    drop(flood);
    let mut newcomer = RawConn::connect(&daemon.verify_socket()).expect("served once the flood is gone");
    assert_eq!(newcomer.verify(&token, None, None).code, VerifyCode::Valid);
}

#[test]
fn a_slow_loris_frame_is_cut_off_while_others_are_served() {
    let config = ConfigFile::new("[limits]\nframe_timeout_secs = 1\n");
    let daemon = Daemon::start_with_config(&config);
    let mut slow = daemon.verifier();
    slow.send_raw(&[0, 0, 0, 100, 1, 2, 3]).unwrap();
    let mut good = daemon.verifier();
    assert_eq!(good.request(Request::Ping), Reply::Pong);
    let reply = slow.read_reply().expect("an error before the close");
    assert!(matches!(reply.reply, Reply::Error(ref e) if e.code == ErrorCode::BadFrame), "{reply:?}");
    assert!(slow.is_closed());
    assert_eq!(good.request(Request::Ping), Reply::Pong);
}

#[test]
fn stats_count_connections_verifies_and_cache_hits() {
    let daemon = Daemon::start();
    let mut admin = daemon.admin();
    let made = admin.create("ws1", &["read:all"], Default::default());
    let mut verifier = daemon.verifier();
    for _ in 0..5 {
        assert_eq!(verifier.verify(&made.token, None, None).code, VerifyCode::Valid);
    }
    assert_eq!(verifier.verify(&keyward_protocol::Secret::new("nope"), None, None).code, VerifyCode::Malformed);
    let report = admin.stats();
    assert_eq!(report.verifies.get(&VerifyCode::Valid), Some(&5), "{report:?}");
    assert_eq!(report.verifies[&VerifyCode::Malformed], 1);
    assert_eq!(report.cache_hits, 5, "created keys are warm from the start");
    assert_eq!(report.verify_latency.count, 6);
    assert!(
        report.verify_latency.p50_seconds > 0.0
            && report.verify_latency.p999_seconds >= report.verify_latency.p50_seconds
    );
    assert_eq!(report.keys["active"], 1);
    assert!(report.connections_open >= 2 && report.store_bytes > 0);
    match RawConn::open(&daemon.verify_socket()).unwrap().hello(keyward_protocol::PROTOCOL_VERSION).unwrap() {
        HelloReply::Accepted { .. } => {}
        other => panic!("{other:?}"),
    }
}
