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

fn cache_counts(daemon: &Daemon) -> (u64, u64) {
    let report = daemon.admin().stats();
    (report.cache_hits, report.cache_misses)
}

#[test]
fn warm_keys_stay_warm_across_restarts_but_imported_tokens_do_not() {
    let mut daemon = Daemon::start();
    let mut admin = daemon.admin();
    let kept: Vec<_> = (0..3).map(|_| admin.create("ws1", &["read:all"], ExpirySpec::Never)).collect();
    let rotated =
        match admin.request(keyward_protocol::Request::Regenerate { id: kept[2].key.id.clone(), grace_seconds: 0 }) {
            Reply::Created(created) => created,
            other => panic!("{other:?}"),
        };
    let foreign = keyward_protocol::Secret::new("sk_prod_3f9a1c7e2b8d4056a1c2e3f40516a7b8");
    let import = keyward_protocol::ImportRequest::new(foreign.clone(), "ws1", "imported", vec!["read:all".into()]);
    assert!(matches!(admin.request(keyward_protocol::Request::Import(import.clone())), Reply::Key(_)));
    drop(admin);
    daemon.restart();

    let mut verifier = daemon.verifier();
    for token in [&kept[0].token, &kept[1].token, &rotated.token] {
        assert_eq!(verifier.verify(token, None, None).code, VerifyCode::Valid);
    }
    assert_eq!(verifier.verify(&kept[2].token, None, None).code, VerifyCode::NotFound, "the rotated-out token");
    assert_eq!(cache_counts(&daemon), (4, 0), "no Argon2 after the restart for keyward keys");
    assert_eq!(verifier.verify(&foreign, None, None).code, VerifyCode::Valid);
    assert_eq!(cache_counts(&daemon), (4, 1), "an imported token pays Argon2 again");

    // A replaced warm key: the persisted digests are ignored, keys start cold, and still verify.
    daemon.stop();
    std::fs::remove_file(daemon.data_dir().join("warm.key")).unwrap();
    daemon.restart();
    let mut verifier = daemon.verifier();
    assert_eq!(verifier.verify(&kept[0].token, None, None).code, VerifyCode::Valid);
    assert_eq!(cache_counts(&daemon), (0, 1));
}

#[test]
fn a_damaged_store_is_refused_never_opened_empty() {
    let mut daemon = Daemon::start();
    let mut admin = daemon.admin();
    for _ in 0..3 {
        admin.create("ws1", &["read:all"], ExpirySpec::Never);
    }
    drop(admin);
    daemon.stop();
    let pristine = tempfile::tempdir().unwrap();
    let copy = |from: &std::path::Path, to: &std::path::Path| {
        let status = std::process::Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap();
        assert!(status.success());
    };
    copy(&daemon.data_dir(), &pristine.path().join("data"));
    let db = daemon.data_dir().join("keys.sled/db");
    let damages: [(&str, &dyn Fn()); 3] = [
        ("truncated", &|| std::fs::OpenOptions::new().write(true).open(&db).unwrap().set_len(100).unwrap()),
        ("garbled", &|| {
            let mut bytes = std::fs::read(&db).unwrap();
            let middle = bytes.len() / 2;
            bytes[middle..middle + 64].iter_mut().for_each(|b| *b ^= 0x5a);
            std::fs::write(&db, bytes).unwrap();
        }),
        ("missing", &|| std::fs::remove_file(&db).unwrap()),
    ];
    for (what, damage) in damages {
        std::fs::remove_dir_all(daemon.data_dir()).unwrap();
        copy(&pristine.path().join("data"), &daemon.data_dir());
        damage();
        let output = daemon.command().output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{what} store: {}", describe(&output));
        assert!(stderr.contains("damaged, truncated or replaced"), "{what}: {stderr}");
    }
    // The operator may accept the store as it is by deleting the manifest.
    std::fs::remove_file(daemon.data_dir().join("store.manifest")).unwrap();
    daemon.restart();
    assert_eq!(daemon.verifier().request(keyward_protocol::Request::Ping), Reply::Pong);
}

fn key_view(reply: Reply) -> keyward_protocol::KeyView {
    match reply {
        Reply::Key(view) => view,
        other => panic!("expected a key, got {other:?}"),
    }
}

fn census(daemon: &Daemon) -> std::collections::BTreeMap<String, u64> {
    daemon.admin().stats().keys.into_iter().collect()
}

/// After a restart a key joins the daemon's memory only when it is first verified or changed; until then
/// listings, `get`, `stats` and changes read it from the store. An operator must see no difference.
#[test]
fn keys_not_used_since_a_restart_are_listed_counted_and_changed_from_the_store() {
    use keyward_protocol::{CreditChange, KeyChanges, ListRequest, Request};
    let mut daemon = Daemon::start();
    let mut admin = daemon.admin();
    let keys: Vec<_> = (0..4).map(|_| admin.create("ws-cold", &["read:all"], ExpirySpec::Never)).collect();
    let [used, revoked, deactivated, edited] = [&keys[0], &keys[1], &keys[2], &keys[3]];
    key_view(admin.request(Request::Credits { id: used.key.id.clone(), change: CreditChange::Set(5) }));
    assert_eq!(daemon.verifier().verify(&used.token, None, None).credits, Some(4));
    drop(admin);
    daemon.restart();

    // Nothing verified since the restart: every view comes from the store.
    let mut admin = daemon.admin();
    let list = ListRequest { workspace: "ws-cold".into(), after: None, limit: 0 };
    let page = match admin.request(Request::List(list)) {
        Reply::Keys(page) => page,
        other => panic!("{other:?}"),
    };
    let listed: Vec<(i64, &str)> = page.keys.iter().map(|k| (k.created_at, k.id.as_str())).collect();
    let mut expected: Vec<(i64, &str)> = keys.iter().map(|k| (k.key.created_at, k.key.id.as_str())).collect();
    expected.sort();
    assert_eq!(listed, expected, "oldest first, then by id");
    for view in &page.keys {
        assert_eq!(view.last_used_at.is_some(), view.id == used.key.id, "only the used key has a last use");
    }
    let shown = key_view(admin.get(&used.key.id));
    assert_eq!(shown.limits.credits, Some(4), "the balance the daemon wrote at shutdown");
    assert!(shown.last_used_at.is_some());
    assert_eq!(census(&daemon).get("active"), Some(&4));

    // Changes to keys that were never loaded take effect on the very next verify.
    assert_eq!(admin.revoke(&revoked.key.id).status, KeyStatus::Revoked);
    let inactive = key_view(admin.request(Request::Deactivate { id: deactivated.key.id.clone() }));
    assert_eq!(inactive.status, KeyStatus::Inactive);
    let changes = KeyChanges { scopes: Some(vec!["read:tables".into()]), ..Default::default() };
    assert_eq!(key_view(admin.request(Request::Edit { id: edited.key.id.clone(), changes })).scopes, ["read:tables"]);
    let mut verifier = daemon.verifier();
    assert_eq!(verifier.verify(&revoked.token, None, None).code, VerifyCode::Revoked);
    assert_eq!(verifier.verify(&deactivated.token, None, None).code, VerifyCode::Inactive);
    assert_eq!(verifier.verify(&edited.token, Some("read:forms"), None).code, VerifyCode::InsufficientScope);
    assert_eq!(verifier.verify(&edited.token, Some("read:tables"), None).code, VerifyCode::Valid);
    assert_eq!(verifier.verify(&used.token, None, None).credits, Some(3), "the stored balance, spent once more");
    let expected = [("active", 2), ("inactive", 1), ("revoked", 1)].map(|(status, n)| (status.to_owned(), n));
    assert_eq!(census(&daemon), expected.into_iter().collect());
    match admin.get("ZZZZZZZZZZZZ") {
        Reply::Error(error) => assert_eq!(error.code, keyward_protocol::ErrorCode::KeyNotFound),
        other => panic!("an unknown id: {other:?}"),
    }
}
