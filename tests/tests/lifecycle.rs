//! A key's life after creation, against the real daemon: edit, regenerate (with and without grace),
//! deactivate/activate, revoke, roles, metadata, import, legacy keys and the sunset, last-used, audit.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use keyward_protocol::{
    AccountView, AuditAction, AuditQuery, CreatedKey, ErrorCode, ExpirySpec, ImportRequest, KeyChanges, KeyOrigin,
    KeyStatus, KeyView, Reply, Request, Role, Secret, VerifyCode,
};
use keyward_tests::{Daemon, RawConn};

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn key(reply: Reply) -> KeyView {
    match reply {
        Reply::Key(view) => view,
        other => panic!("expected a key, got {other:?}"),
    }
}

fn created(reply: Reply) -> CreatedKey {
    match reply {
        Reply::Created(created) => created,
        other => panic!("expected a new token, got {other:?}"),
    }
}

fn refused(reply: Reply, code: ErrorCode) -> String {
    match reply {
        Reply::Error(error) if error.code == code => error.message,
        other => panic!("expected {code}, got {other:?}"),
    }
}

fn edit(admin: &mut RawConn, id: &str, changes: KeyChanges) -> Reply {
    admin.request(Request::Edit { id: id.into(), changes })
}

/// Polls `code_now` until it returns `want`, for changes that happen when wall time passes a mark.
fn wait_for_code(want: VerifyCode, mut code_now: impl FnMut() -> VerifyCode) {
    let started = Instant::now();
    loop {
        let code = code_now();
        if code == want {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "still {code} after 30 s, wanted {want}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn import_request(token: &str, workspace: &str, legacy_account: Option<&str>) -> ImportRequest {
    ImportRequest {
        legacy_account: legacy_account.map(Into::into),
        ..ImportRequest::new(Secret::new(token), workspace, "migrated key", vec!["read:all".into()])
    }
}

#[test]
fn edit_changes_settings_and_the_next_verify_sees_them() {
    let daemon = Daemon::start();
    let (mut admin, mut verifier) = (daemon.admin(), daemon.verifier());
    let made = admin.create("ws1", &["write:tables"], ExpirySpec::Never);
    assert_eq!(verifier.verify(&made.token, Some("write:tables"), None).code, VerifyCode::Valid);

    let changes = KeyChanges {
        name: Some("  read only now ".into()),
        scopes: Some(vec!["read:tables".into()]),
        metadata: BTreeMap::from([("team".to_string(), "billing".to_string())]),
        expires: Some(ExpirySpec::Days(30)),
        ..Default::default()
    };
    let view = key(edit(&mut admin, &made.key.id, changes));
    assert_eq!(view.name, "read only now");
    assert_eq!(view.scopes, ["read:tables"]);
    assert_eq!(view.prefix, made.key.prefix, "the token is unchanged");
    assert!(view.expires_at.unwrap() > unix_now() + 29 * 86_400);

    // Same token, new settings, at once.
    assert_eq!(verifier.verify(&made.token, Some("write:tables"), None).code, VerifyCode::InsufficientScope);
    let answer = verifier.verify(&made.token, Some("read:tables"), None);
    assert_eq!(answer.code, VerifyCode::Valid);
    assert_eq!(answer.key.unwrap().metadata["team"], "billing");

    // Expiry can be cleared; metadata entries removed with an empty value.
    let changes = KeyChanges {
        expires: Some(ExpirySpec::Never),
        metadata: BTreeMap::from([("team".to_string(), String::new())]),
        ..Default::default()
    };
    let view = key(edit(&mut admin, &made.key.id, changes));
    assert_eq!(view.expires_at, None);
    assert!(view.metadata.is_empty());
    refused(edit(&mut admin, &made.key.id, KeyChanges::default()), ErrorCode::InvalidArgument);
}

#[test]
fn member_keys_never_hold_admin() {
    let daemon = Daemon::start();
    let mut admin = daemon.admin();
    let mut request = keyward_protocol::CreateRequest {
        workspace: "ws1".into(),
        name: "would be admin".into(),
        description: None,
        scopes: vec!["admin".into()],
        expires: ExpirySpec::Never,
        env: Default::default(),
        role: Role::Member,
        metadata: BTreeMap::new(),
        limits: Default::default(),
    };
    let message = refused(admin.request(Request::Create(request.clone())), ErrorCode::InvalidArgument);
    assert!(message.contains("member key cannot hold the admin scope"), "{message}");
    request.role = Role::Admin;
    let made = created(admin.request(Request::Create(request)));
    assert_eq!(made.key.role, Role::Admin);
    let answer = daemon.verifier().verify(&made.token, Some("write:anything"), None);
    assert_eq!((answer.code, answer.key.unwrap().role), (VerifyCode::Valid, Role::Admin));

    let member = admin.create("ws1", &["read:all"], ExpirySpec::Never);
    let to_admin_scope = KeyChanges { scopes: Some(vec!["admin".into()]), ..Default::default() };
    refused(edit(&mut admin, &member.key.id, to_admin_scope.clone()), ErrorCode::InvalidArgument);
    let both = KeyChanges { role: Some(Role::Admin), ..to_admin_scope };
    assert_eq!(key(edit(&mut admin, &member.key.id, both)).scopes, ["admin"]);
    // And an admin key with the admin scope cannot be demoted without dropping the scope.
    refused(
        edit(&mut admin, &member.key.id, KeyChanges { role: Some(Role::Member), ..Default::default() }),
        ErrorCode::InvalidArgument,
    );
}

#[test]
fn regenerate_without_grace_kills_the_old_token_at_once() {
    let daemon = Daemon::start();
    let (mut admin, mut verifier) = (daemon.admin(), daemon.verifier());
    let made = admin.create("ws1", &["read:all"], ExpirySpec::Never);
    assert_eq!(verifier.verify(&made.token, None, None).code, VerifyCode::Valid);
    let fresh = created(admin.request(Request::Regenerate { id: made.key.id.clone(), grace_seconds: 0 }));
    assert_ne!(fresh.token, made.token);
    assert_eq!(fresh.key.id, made.key.id, "same key, same settings");
    assert_eq!(fresh.key.scopes, made.key.scopes);
    assert_eq!(verifier.verify(&made.token, None, None).code, VerifyCode::NotFound);
    assert_eq!(verifier.verify(&fresh.token, None, None).code, VerifyCode::Valid);
}

#[test]
fn regenerate_with_grace_keeps_the_old_token_until_the_window_ends() {
    let mut daemon = Daemon::start();
    let (mut admin, mut verifier) = (daemon.admin(), daemon.verifier());
    let made = admin.create("ws1", &["read:all"], ExpirySpec::Never);
    let fresh = created(admin.request(Request::Regenerate { id: made.key.id.clone(), grace_seconds: 3 }));
    let until = fresh.key.previous_token_until.expect("a grace window");
    assert!(until > unix_now() && until <= unix_now() + 3);
    assert_eq!(verifier.verify(&made.token, None, None).code, VerifyCode::Valid, "old token inside the window");
    assert_eq!(verifier.verify(&fresh.token, None, None).code, VerifyCode::Valid);

    // The grace window survives a restart, with both secrets cold again.
    drop((admin, verifier));
    daemon.restart();
    let mut verifier = daemon.verifier();
    if unix_now() < until {
        let code = verifier.verify(&made.token, None, None).code;
        assert!(code == VerifyCode::Valid || unix_now() >= until, "old token after restart: {code}");
    }
    wait_for_code(VerifyCode::NotFound, || verifier.verify(&made.token, None, None).code);
    assert!(unix_now() >= until, "refused only once the window is over");
    assert_eq!(verifier.verify(&fresh.token, None, None).code, VerifyCode::Valid);
}

#[test]
fn grace_never_outlives_the_key_and_dead_keys_cannot_be_regenerated() {
    let daemon = Daemon::start();
    let mut admin = daemon.admin();
    let expires = unix_now() + 3600;
    let made = admin.create("ws1", &["read:all"], ExpirySpec::At(expires));
    let fresh = created(admin.request(Request::Regenerate { id: made.key.id.clone(), grace_seconds: 7 * 86_400 }));
    assert_eq!(fresh.key.previous_token_until, Some(expires), "clamped to the key's expiry");

    admin.revoke(&made.key.id);
    refused(admin.request(Request::Regenerate { id: made.key.id.clone(), grace_seconds: 0 }), ErrorCode::Conflict);
    refused(admin.request(Request::Activate { id: made.key.id.clone() }), ErrorCode::Conflict);
    refused(
        edit(&mut admin, &made.key.id, KeyChanges { name: Some("revived".into()), ..Default::default() }),
        ErrorCode::Conflict,
    );

    let soon = admin.create("ws1", &["read:all"], ExpirySpec::At(unix_now() + 2));
    let mut verifier = daemon.verifier();
    wait_for_code(VerifyCode::Expired, || verifier.verify(&soon.token, None, None).code);
    let message =
        refused(admin.request(Request::Regenerate { id: soon.key.id.clone(), grace_seconds: 0 }), ErrorCode::Conflict);
    assert!(message.contains("expired"), "{message}");
}

#[test]
fn deactivate_and_activate() {
    let daemon = Daemon::start();
    let (mut admin, mut verifier) = (daemon.admin(), daemon.verifier());
    let made = admin.create("ws1", &["read:all"], ExpirySpec::Never);
    let view = key(admin.request(Request::Deactivate { id: made.key.id.clone() }));
    assert_eq!(view.status, KeyStatus::Inactive);
    let answer = verifier.verify(&made.token, None, None);
    assert_eq!(answer.code, VerifyCode::Inactive);
    assert_eq!(answer.key.unwrap().id, made.key.id);
    refused(admin.request(Request::Deactivate { id: made.key.id.clone() }), ErrorCode::Conflict);
    assert_eq!(key(admin.request(Request::Activate { id: made.key.id.clone() })).status, KeyStatus::Active);
    assert_eq!(verifier.verify(&made.token, None, None).code, VerifyCode::Valid);
    admin.revoke(&made.key.id);
    assert_eq!(verifier.verify(&made.token, None, None).code, VerifyCode::Revoked);
}

#[test]
fn imported_foreign_tokens_verify_as_they_are() {
    let mut daemon = Daemon::start();
    let mut admin = daemon.admin();
    let foreign = "sk_prod_3f9a1c7e2b8d4056a1c2e3f40516a7b8";
    let view = key(admin.request(Request::Import(import_request(foreign, "ws1", None))));
    assert_eq!(view.origin, KeyOrigin::Imported);
    assert_eq!(view.prefix, "sk_prod_");
    assert!(!view.masked.contains("7b8"), "a short import shows at most a quarter: {}", view.masked);
    refused(admin.request(Request::Import(import_request(foreign, "ws1", None))), ErrorCode::Conflict);
    refused(admin.request(Request::Import(import_request("too short", "ws1", None))), ErrorCode::InvalidArgument);

    let token = Secret::new(foreign);
    let mut verifier = daemon.verifier();
    let answer = verifier.verify(&token, Some("read:forms"), Some("ws1"));
    assert_eq!((answer.code, answer.key.unwrap().id.clone()), (VerifyCode::Valid, view.id.clone()));
    assert_eq!(
        verifier.verify(&Secret::new("sk_prod_3f9a1c7e2b8d4056a1c2e3f40516a7b9"), None, None).code,
        VerifyCode::Malformed
    );

    // Found again after a restart (the lookup key persists), through Argon2 this time.
    drop((admin, verifier));
    daemon.restart();
    assert_eq!(daemon.verifier().verify(&token, None, None).code, VerifyCode::Valid);

    // Regenerating an imported key moves it to a keyward token.
    let fresh = created(daemon.admin().request(Request::Regenerate { id: view.id.clone(), grace_seconds: 0 }));
    assert!(fresh.token.expose().starts_with("kw_live_"));
    assert_eq!(daemon.verifier().verify(&token, None, None).code, VerifyCode::Malformed);
    assert_eq!(daemon.verifier().verify(&fresh.token, None, None).code, VerifyCode::Valid);
}

#[test]
fn legacy_keys_are_account_wide_view_and_revoke_only_and_stop_at_the_sunset() {
    let sunset = unix_now() + 4;
    let sunset_text = jiff_free_rfc3339(sunset);
    let daemon = Daemon::start_with(&["--legacy-sunset", &sunset_text]);
    let mut admin = daemon.admin();
    let account = AccountView { account: "acct-7".into(), workspaces: vec!["ws-a".into(), "ws-b".into()] };
    match admin.request(Request::SetAccount(account.clone())) {
        Reply::Account(view) => assert_eq!(view, account),
        other => panic!("{other:?}"),
    }
    let legacy_token = "abc123.xR7mK9pL2qW4zz81";
    let view = key(admin.request(Request::Import(import_request(legacy_token, "ws-a", Some("acct-7")))));
    assert_eq!(
        (view.origin, view.status, view.account.as_deref()),
        (KeyOrigin::Legacy, KeyStatus::Legacy, Some("acct-7"))
    );

    let token = Secret::new(legacy_token);
    let mut verifier = daemon.verifier();
    let answer = verifier.verify(&token, None, Some("ws-b"));
    assert_eq!(answer.code, VerifyCode::Valid, "any workspace of its account");
    assert_eq!(answer.key.unwrap().account.as_deref(), Some("acct-7"));
    assert_eq!(verifier.verify(&token, None, Some("ws-c")).code, VerifyCode::WrongWorkspace);

    // View and revoke only.
    let name = KeyChanges { name: Some("renamed".into()), ..Default::default() };
    refused(edit(&mut admin, &view.id, name), ErrorCode::Conflict);
    refused(admin.request(Request::Regenerate { id: view.id.clone(), grace_seconds: 0 }), ErrorCode::Conflict);
    refused(admin.request(Request::Deactivate { id: view.id.clone() }), ErrorCode::Conflict);
    match admin.request(Request::ListLegacy { account: Some("acct-7".into()) }) {
        Reply::Keys(page) => {
            assert_eq!(page.keys.len(), 1);
            assert!(page.keys[0].last_used_at.is_some(), "shows which legacy keys are still in use");
        }
        other => panic!("{other:?}"),
    }

    wait_for_code(VerifyCode::LegacySunset, || verifier.verify(&token, None, None).code);
    assert!(unix_now() >= sunset);
    assert_eq!(key(admin.get(&view.id)).status, KeyStatus::Sunset);
    assert_eq!(admin.revoke(&view.id).status, KeyStatus::Revoked);
}

/// RFC 3339 for Unix seconds without pulling a date library into the tests.
fn jiff_free_rfc3339(at: i64) -> String {
    let days = at.div_euclid(86_400);
    let secs = at.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

#[test]
fn last_used_moves_on_verify_and_survives_a_restart() {
    let mut daemon = Daemon::start();
    let made = daemon.admin().create("ws1", &["read:all"], ExpirySpec::Never);
    assert_eq!(key(daemon.admin().get(&made.key.id)).last_used_at, None);
    let before = unix_now();
    assert_eq!(daemon.verifier().verify(&made.token, None, None).code, VerifyCode::Valid);
    let used = key(daemon.admin().get(&made.key.id)).last_used_at.expect("set by the verify");
    assert!(used >= before);
    // A refused verify is not a use.
    let other = daemon.admin().create("ws1", &["read:tables"], ExpirySpec::Never);
    assert_eq!(daemon.verifier().verify(&other.token, Some("write:tables"), None).code, VerifyCode::InsufficientScope);
    assert_eq!(key(daemon.admin().get(&other.key.id)).last_used_at, None);

    daemon.restart();
    assert_eq!(key(daemon.admin().get(&made.key.id)).last_used_at, Some(used));
}

#[test]
fn every_management_action_is_audited_with_the_peer_uid() {
    let daemon = Daemon::start();
    let mut admin = daemon.admin();
    let made = admin.create("ws-audit", &["read:all"], ExpirySpec::Never);
    let id = made.key.id.clone();
    key(edit(&mut admin, &id, KeyChanges { name: Some("renamed key".into()), ..Default::default() }));
    created(admin.request(Request::Regenerate { id: id.clone(), grace_seconds: 0 }));
    key(admin.request(Request::Deactivate { id: id.clone() }));
    let as_dashboard =
        Request::As { actor: "alice@dashboard".into(), request: Box::new(Request::Activate { id: id.clone() }) };
    key(admin.request(as_dashboard));
    admin.revoke(&id);
    key(admin.request(Request::Import(import_request("legacy_token_0123456789", "ws-audit", None))));
    let account = AccountView { account: "acct".into(), workspaces: vec!["ws-audit".into()] };
    admin.request(Request::SetAccount(account));
    // A refused change is not audited.
    refused(admin.request(Request::Revoke { id: id.clone() }), ErrorCode::Conflict);

    let entries = match admin.request(Request::Audit(AuditQuery::default())) {
        Reply::Audit(entries) => entries,
        other => panic!("{other:?}"),
    };
    let actions: Vec<AuditAction> = entries.iter().map(|e| e.action).collect();
    use AuditAction::*;
    assert_eq!(actions, [AccountSet, Import, Revoke, Activate, Deactivate, Regenerate, Edit, Create], "newest first");
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    assert!(entries.iter().all(|e| e.actor.uid == uid && e.actor.pid.is_some()));
    assert_eq!(entries[3].actor.label.as_deref(), Some("alice@dashboard"));
    assert!(entries.windows(2).all(|w| w[0].seq == w[1].seq + 1), "consecutive sequence numbers");
    let rename = &entries[6].changes[0];
    assert_eq!((rename.field.as_str(), rename.to.as_deref()), ("name", Some("renamed key")));

    let for_key =
        match admin.request(Request::Audit(AuditQuery { key: Some(id.clone()), limit: 2, ..Default::default() })) {
            Reply::Audit(entries) => entries,
            other => panic!("{other:?}"),
        };
    assert_eq!(for_key.iter().map(|e| e.action).collect::<Vec<_>>(), [Revoke, Activate]);
}

#[test]
fn concurrent_edits_of_different_fields_lose_nothing() {
    let daemon = Daemon::start();
    let made = daemon.admin().create("ws1", &["read:all"], ExpirySpec::Never);
    let id = made.key.id.clone();
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let socket = daemon.admin_socket();
            let id = id.clone();
            std::thread::spawn(move || {
                let mut admin = RawConn::connect(&socket).unwrap();
                let changes = KeyChanges {
                    metadata: BTreeMap::from([(format!("field{i}"), format!("value{i}"))]),
                    ..Default::default()
                };
                key(edit(&mut admin, &id, changes));
            })
        })
        .collect();
    let mut admin = daemon.admin();
    key(edit(&mut admin, &id, KeyChanges { description: Some("set concurrently".into()), ..Default::default() }));
    for handle in handles {
        handle.join().unwrap();
    }
    let view = key(admin.get(&id));
    assert_eq!(view.description.as_deref(), Some("set concurrently"));
    assert_eq!(view.metadata.len(), 8, "{:?}", view.metadata);
}

fn page(admin: &mut RawConn, workspace: &str, after: Option<&str>, limit: u32) -> keyward_protocol::KeyPage {
    let request = keyward_protocol::ListRequest { workspace: workspace.into(), after: after.map(Into::into), limit };
    match admin.request(Request::List(request)) {
        Reply::Keys(page) => page,
        other => panic!("expected a page of keys, got {other:?}"),
    }
}

#[test]
fn a_workspace_lists_page_by_page_oldest_first_and_only_its_own_keys() {
    let daemon = Daemon::start();
    let mut admin = daemon.admin();
    let mut made = Vec::new();
    for i in 0..7 {
        made.push(admin.create("ws-paged", &["read:all"], ExpirySpec::Never).key);
        if i % 2 == 0 {
            admin.create("ws-other", &["read:all"], ExpirySpec::Never);
        }
    }
    admin.revoke(&made[3].id);
    let mut expected: Vec<(i64, String)> = made.iter().map(|k| (k.created_at, k.id.clone())).collect();
    expected.sort();

    let (mut seen, mut after, mut pages) = (Vec::new(), None::<String>, Vec::new());
    loop {
        let page = page(&mut admin, "ws-paged", after.as_deref(), 3);
        assert!(page.keys.iter().all(|k| k.workspace == "ws-paged"), "another workspace's key listed");
        pages.push(page.keys.len());
        seen.extend(page.keys.iter().map(|k| (k.created_at, k.id.clone())));
        match page.next {
            Some(next) => {
                assert_eq!(Some(&next), seen.last().map(|(_, id)| id), "next names the page's last key");
                after = Some(next);
            }
            None => break,
        }
    }
    assert_eq!(pages, [3, 3, 1]);
    assert_eq!(seen, expected, "every key once, oldest first, the revoked one too");
    assert_eq!(page(&mut admin, "ws-paged", None, 0).keys.len(), 7, "0 means the default page");
    assert!(page(&mut admin, "ws-nobody", None, 10).keys.is_empty());

    let foreign = page(&mut admin, "ws-other", None, 1).keys[0].id.clone();
    let request = keyward_protocol::ListRequest { workspace: "ws-paged".into(), after: Some(foreign), limit: 0 };
    refused(admin.request(Request::List(request)), ErrorCode::InvalidArgument);
}
