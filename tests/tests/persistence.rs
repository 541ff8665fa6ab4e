//! What survives a restart and a crash, and who may own a data directory or socket.

use keyward_protocol::{ExpirySpec, KeyStatus, Reply, VerifyCode};
use keyward_tests::{describe, Daemon};

#[test]
fn keys_and_revocations_survive_a_graceful_restart() {
    let mut daemon = Daemon::start();
    let mut admin = daemon.admin();
    let kept = admin.create("ws1", &["read:all"], ExpirySpec::Never);
    let revoked = admin.create("ws1", &["write:tables"], ExpirySpec::Days(30));
    admin.revoke(&revoked.key.id);
    drop(admin);

    let status = daemon.stop();
    assert!(status.success(), "graceful stop exits 0: {status}");
    assert!(!daemon.verify_socket().exists() && !daemon.admin_socket().exists(), "socket files removed");
    daemon.restart();

    // After a restart every key is cold: this goes through Argon2 against the stored hash.
    let mut verifier = daemon.verifier();
    assert_eq!(verifier.verify(&kept.token, Some("read:forms"), Some("ws1")).code, VerifyCode::Valid);
    assert_eq!(verifier.verify(&revoked.token, None, None).code, VerifyCode::Revoked);
    match daemon.admin().get(&revoked.key.id) {
        Reply::Key(view) => {
            assert_eq!(view.status, KeyStatus::Revoked);
            assert_eq!(view.name, revoked.key.name);
            assert_eq!(view.expires_at, revoked.key.expires_at);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn acknowledged_creates_and_revokes_survive_sigkill() {
    let mut daemon = Daemon::start();
    let mut admin = daemon.admin();
    let created: Vec<_> = (0..12).map(|_| admin.create("ws-crash", &["read:tables"], ExpirySpec::Never)).collect();
    let revoked = &created[11];
    admin.revoke(&revoked.key.id);
    // No pause, no graceful stop: the acknowledgements above are all the daemon promised.
    daemon.kill();
    assert!(daemon.verify_socket().exists(), "a crash leaves the socket file behind");

    daemon.restart();
    let mut verifier = daemon.verifier();
    for key in &created[..11] {
        assert_eq!(verifier.verify(&key.token, None, None).code, VerifyCode::Valid, "key {}", key.key.id);
    }
    assert_eq!(verifier.verify(&revoked.token, None, None).code, VerifyCode::Revoked);
}

#[test]
fn a_second_daemon_on_the_same_data_dir_refuses_to_start() {
    let daemon = Daemon::start();
    let other = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(keyward_tests::bin("keywardd"))
        .arg("--data-dir")
        .arg(daemon.data_dir())
        .arg("--socket")
        .arg(other.path().join("v.sock"))
        .arg("--admin-socket")
        .arg(other.path().join("a.sock"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("already using data directory"), "{stderr}");
    assert!(stderr.contains(&daemon.pid().to_string()), "names the owner's pid: {stderr}");
    assert_eq!(daemon.verifier().request(keyward_protocol::Request::Ping), Reply::Pong, "the first keeps serving");
}

#[test]
fn a_socket_another_daemon_answers_on_is_not_stolen() {
    let daemon = Daemon::start();
    let other = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(keyward_tests::bin("keywardd"))
        .arg("--data-dir")
        .arg(other.path().join("data"))
        .arg("--socket")
        .arg(daemon.verify_socket())
        .arg("--admin-socket")
        .arg(other.path().join("a.sock"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("in use"), "{}", describe(&output));
    assert_eq!(daemon.verifier().request(keyward_protocol::Request::Ping), Reply::Pong);
}
