//! Revocation and races under load: dozens of verifiers hammer a key while it is revoked, deactivated,
//! regenerated (grace 0) or edited to drop a scope. Any verify sent after the change was acknowledged must
//! see the new state: zero VALID answers for the old one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyward_protocol::{CreateRequest, ExpirySpec, KeyChanges, RatePolicy, Reply, Request, Secret, VerifyCode};
use keyward_tests::{Daemon, RawConn};

const VERIFIERS: usize = 24;

/// One verify: when it was sent and what it answered.
type Sample = (Instant, VerifyCode);

fn unlimited_key(admin: &mut RawConn, scopes: &[&str]) -> (Secret, String) {
    let mut request = CreateRequest::new("race", "raced key", scopes.iter().map(|s| s.to_string()).collect());
    request.expires = ExpirySpec::Never;
    request.limits.rate = RatePolicy::Unlimited;
    match admin.request(Request::Create(request)) {
        Reply::Created(created) => (created.token, created.key.id),
        other => panic!("{other:?}"),
    }
}

/// Hammers `token` (requiring `scope`) from many connections while `change` runs on the admin socket;
/// returns every verify sent after the change was acknowledged.
fn hammer_during(
    daemon: &Daemon,
    token: &Secret,
    scope: Option<&str>,
    change: impl FnOnce(&mut RawConn),
) -> Vec<Sample> {
    hammer_with(
        daemon,
        token,
        scope,
        Window { lead: Duration::from_millis(100), after: Duration::from_millis(150) },
        change,
    )
}

/// When the change is made after the verifiers start, and how long they go on after it is acknowledged.
struct Window {
    lead: Duration,
    after: Duration,
}

/// [`hammer_during`], in a given [`Window`].
fn hammer_with(
    daemon: &Daemon,
    token: &Secret,
    scope: Option<&str>,
    window: Window,
    change: impl FnOnce(&mut RawConn),
) -> Vec<Sample> {
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..VERIFIERS)
        .map(|_| {
            let (socket, token, stop) = (daemon.verify_socket(), token.clone(), stop.clone());
            let scope = scope.map(str::to_owned);
            std::thread::spawn(move || {
                let mut conn = RawConn::connect(&socket).unwrap();
                let mut samples = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    samples.push((sent, conn.verify(&token, scope.as_deref(), None).code));
                }
                samples
            })
        })
        .collect();
    let mut admin = daemon.admin();
    std::thread::sleep(window.lead);
    change(&mut admin);
    let acknowledged = Instant::now();
    std::thread::sleep(window.after);
    stop.store(true, Ordering::Relaxed);
    let samples: Vec<Sample> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    assert!(samples.iter().any(|(sent, _)| *sent < acknowledged), "the verifiers ran before the change");
    samples.into_iter().filter(|(sent, _)| *sent > acknowledged).collect()
}

fn assert_none_valid(after: &[Sample], what: &str, expected: VerifyCode) {
    assert!(after.len() > VERIFIERS, "{what}: too few verifies after the change to mean anything ({})", after.len());
    let valid = after.iter().filter(|(_, code)| *code == VerifyCode::Valid).count();
    assert_eq!(valid, 0, "{what}: VALID answers after the change was acknowledged");
    assert!(after.iter().all(|(_, code)| *code == expected), "{what}: every later answer is {expected}");
}

#[test]
fn revoke_under_load() {
    let daemon = Daemon::start();
    let (token, id) = unlimited_key(&mut daemon.admin(), &["read:all"]);
    let after = hammer_during(&daemon, &token, None, |admin| {
        admin.revoke(&id);
    });
    assert_none_valid(&after, "revoke", VerifyCode::Revoked);
}

#[test]
fn deactivate_under_load() {
    let daemon = Daemon::start();
    let (token, id) = unlimited_key(&mut daemon.admin(), &["read:all"]);
    let after = hammer_during(&daemon, &token, None, |admin| {
        assert!(matches!(admin.request(Request::Deactivate { id }), Reply::Key(_)));
    });
    assert_none_valid(&after, "deactivate", VerifyCode::Inactive);
}

#[test]
fn regenerate_without_grace_under_load() {
    let daemon = Daemon::start();
    let (token, id) = unlimited_key(&mut daemon.admin(), &["read:all"]);
    let after = hammer_during(&daemon, &token, None, |admin| {
        assert!(matches!(admin.request(Request::Regenerate { id, grace_seconds: 0 }), Reply::Created(_)));
    });
    assert_none_valid(&after, "regenerate", VerifyCode::NotFound);
}

#[test]
fn dropping_a_scope_under_load() {
    let daemon = Daemon::start();
    let (token, id) = unlimited_key(&mut daemon.admin(), &["write:tables"]);
    let after = hammer_during(&daemon, &token, Some("write:tables"), |admin| {
        let changes = KeyChanges { scopes: Some(vec!["read:tables".into()]), ..Default::default() };
        assert!(matches!(admin.request(Request::Edit { id, changes }), Reply::Key(_)));
    });
    assert_none_valid(&after, "scope drop", VerifyCode::InsufficientScope);
}

/// After a restart with a new warm-digest key no key is in memory: the first verifies of a key read it
/// from the store (and run Argon2) while the revoke reads, changes and installs it. Whatever interleaving
/// the two find, nothing sent after the acknowledgement may pass.
#[test]
fn revoke_races_the_first_verifies_of_a_key_read_from_the_store() {
    let mut daemon = Daemon::start();
    let keys: Vec<_> = (0..4).map(|_| unlimited_key(&mut daemon.admin(), &["read:all"])).collect();
    daemon.stop();
    std::fs::remove_file(daemon.data_dir().join("warm.key")).unwrap();
    daemon.restart();
    for (token, id) in &keys {
        // The first verifies wait for Argon2 (at a low priority, on a machine other tests keep busy): the
        // window after the revoke leaves them time to finish and be followed by more.
        let window = Window { lead: Duration::from_millis(2), after: Duration::from_secs(1) };
        let after = hammer_with(&daemon, token, None, window, |admin| {
            admin.revoke(id);
        });
        assert_none_valid(&after, "revoke racing the first verifies", VerifyCode::Revoked);
    }
}
