//! The key path through the real `keyward` CLI and `keywardd`: create → verify → revoke, every verify
//! code, scopes, workspaces, expiry, listings, exit codes and JSON shapes.

use keyward_tests::{describe, Daemon};
use serde_json::Value;

fn token_of(created: &Value) -> String {
    created["token"].as_str().expect("create --json prints the token").to_owned()
}

#[test]
fn create_prints_the_token_once_with_the_documented_fields() {
    let daemon = Daemon::start();
    let created = daemon.create("acme", &["read:tables", "write:tables"], &["--expires", "30d"]);
    for field in ["id", "token", "prefix", "name", "workspace", "scopes", "created_at", "expires_at"] {
        assert!(!created[field].is_null(), "create --json has {field}: {created}");
    }
    let token = token_of(&created);
    assert!(token.starts_with("kw_live_") && token.len() == 59, "{token}");
    assert_eq!(created["prefix"], "kw_live_");
    assert_eq!(created["prefix"].as_str().unwrap(), &token[..8]);
    assert_eq!(created["scopes"], serde_json::json!(["read:tables", "write:tables"]));
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'), "RFC 3339 UTC");

    let test_key = daemon.create("acme", &["read:all"], &["--env", "test"]);
    assert!(token_of(&test_key).starts_with("kw_test_"));
    let never = daemon.create("acme", &["read:all"], &["--expires", "never"]);
    assert!(never["expires_at"].is_null());
}

#[test]
fn every_verify_code_through_the_cli() {
    let daemon = Daemon::start();
    let created = daemon.create("acme", &["read:tables"], &[]);
    let token = token_of(&created);
    let id = created["id"].as_str().unwrap();

    let valid = daemon.verify(&token, &[]);
    assert_eq!(valid["valid"], true);
    assert_eq!(valid["code"], "VALID");
    assert_eq!(valid["key_id"], id);
    assert_eq!(valid["workspace"], "acme");
    assert_eq!(valid["scopes"], serde_json::json!(["read:tables"]));

    // Wrong secret with a valid checksum: looks right, is not.
    let other = token_of(&daemon.create("acme", &["read:tables"], &[]));
    let forged = format!("{}{}", &token[..21], &other[21..]);
    let forged_answer = daemon.verify(&forged, &[]);
    assert_eq!(forged_answer["code"], "MALFORMED", "a spliced token fails its checksum");
    let unknown_id = format!("kw_live_{}{}", "A".repeat(12), &token[20..]);
    assert_eq!(daemon.verify_code(&unknown_id, &[]), "MALFORMED");
    assert_eq!(daemon.verify_code(&token[..58], &[]), "MALFORMED", "truncated");
    let mut bad_checksum = token.clone();
    let last = if bad_checksum.ends_with('A') { "B" } else { "A" };
    bad_checksum.replace_range(58.., last);
    assert_eq!(daemon.verify_code(&bad_checksum, &[]), "MALFORMED");
    assert_eq!(daemon.verify_code(id, &[]), "MALFORMED", "the id alone is not a key");
    assert_eq!(daemon.verify_code("", &[]), "MISSING");
    let answer = daemon.verify("", &[]);
    assert_eq!(answer["valid"], false);
    assert!(answer["key_id"].is_null());

    assert_eq!(daemon.verify_code(&token, &["--workspace", "other"]), "WRONG_WORKSPACE");
    assert_eq!(daemon.verify_code(&token, &["--workspace", "acme", "--scope", "read:tables"]), "VALID");
    assert_eq!(daemon.verify_code(&token, &["--scope", "write:tables"]), "INSUFFICIENT_SCOPE");
}

#[test]
fn unknown_id_and_wrong_secret_answer_the_same() {
    let daemon = Daemon::start();
    let token = token_of(&daemon.create("acme", &["read:all"], &[]));
    // Build well-formed tokens (right checksum) with a wrong secret and with an unknown id.
    let wrong_secret = keyward_protocol::token::Token::assemble(
        keyward_protocol::Environment::Live,
        &keyward_protocol::KeyId::parse(&token[8..20]).unwrap(),
        &[b'Q'; 32],
    );
    let unknown_id = keyward_protocol::token::Token::assemble(
        keyward_protocol::Environment::Live,
        &keyward_protocol::KeyId::parse("Zz9Zz9Zz9Zz9").unwrap(),
        &[b'Q'; 32],
    );
    let a = daemon.verify(wrong_secret.expose(), &[]);
    let b = daemon.verify(unknown_id.expose(), &[]);
    assert_eq!(a["code"], "NOT_FOUND");
    assert_eq!(a, b, "no oracle: the same answer, field for field");
}

#[test]
fn scope_implication_table_through_the_daemon() {
    let daemon = Daemon::start();
    let table: &[(&str, &[(&str, &str)])] = &[
        ("admin", &[("admin", "VALID"), ("write:all", "VALID"), ("read:tables", "VALID")]),
        ("write:all", &[("write:tables", "VALID"), ("read:forms", "VALID"), ("admin", "INSUFFICIENT_SCOPE")]),
        ("read:all", &[("read:agents", "VALID"), ("write:agents", "INSUFFICIENT_SCOPE")]),
        ("write:tables", &[("read:tables", "VALID"), ("read:workflows", "INSUFFICIENT_SCOPE")]),
        (
            "read:tables",
            &[("read:tables", "VALID"), ("write:tables", "INSUFFICIENT_SCOPE"), ("read:all", "INSUFFICIENT_SCOPE")],
        ),
    ];
    for (held, checks) in table {
        let extra: &[&str] = if *held == "admin" { &["--role", "admin"] } else { &[] };
        let token = token_of(&daemon.create("acme", &[held], extra));
        for (required, code) in *checks {
            assert_eq!(daemon.verify_code(&token, &["--scope", required]), *code, "{held} vs {required}");
        }
    }
    let output = daemon.cli_with_stdin(&["verify", "--scope", "delete:tables", "-"], "x\n");
    assert_eq!(output.status.code(), Some(2), "an invalid scope is a usage error: {}", describe(&output));
}

#[test]
fn a_key_turns_expired_when_its_time_passes() {
    let daemon = Daemon::start();
    let soon = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
    let soon = jiff_like(soon);
    let token = token_of(&daemon.create("acme", &["read:all"], &["--expires", &soon]));
    assert_eq!(daemon.verify_code(&token, &[]), "VALID");
    let started = std::time::Instant::now();
    while daemon.verify_code(&token, &[]) != "EXPIRED" {
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "never expired");
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    let listed = daemon.json(&["list", "--workspace", "acme"], 0);
    assert_eq!(listed[0]["status"], "expired");
}

/// RFC 3339 (UTC, whole seconds) for a system time, via the `date` the tests already rely on being POSIX.
fn jiff_like(at: std::time::SystemTime) -> String {
    let secs = at.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let output = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[test]
fn revoke_takes_effect_on_the_next_verify_and_is_permanent() {
    let daemon = Daemon::start();
    let created = daemon.create("acme", &["read:all"], &[]);
    let (token, id) = (token_of(&created), created["id"].as_str().unwrap().to_owned());
    assert_eq!(daemon.verify_code(&token, &[]), "VALID");
    let revoked = daemon.json(&["revoke", &id], 0);
    assert_eq!(revoked["status"], "revoked");
    let answer = daemon.verify(&token, &[]);
    assert_eq!((answer["code"].as_str(), answer["valid"].as_bool()), (Some("REVOKED"), Some(false)));
    let again = daemon.cli(&["revoke", &id]);
    assert_eq!(again.status.code(), Some(2), "{}", describe(&again));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.starts_with("keyward: ") && stderr.trim().lines().count() == 1, "one-line reason: {stderr}");
}

#[test]
fn listings_never_show_a_token_or_hash() {
    let daemon = Daemon::start();
    let tokens: Vec<String> = (0..3).map(|_| token_of(&daemon.create("acme", &["read:all"], &[]))).collect();
    daemon.create("elsewhere", &["read:all"], &[]);
    let listed = daemon.json(&["list", "--workspace", "acme"], 0);
    let keys = listed.as_array().expect("an array");
    assert_eq!(keys.len(), 3, "only this workspace");
    for field in
        ["id", "prefix", "masked", "name", "workspace", "scopes", "status", "created_at", "last_used_at", "expires_at"]
    {
        assert!(keys[0].get(field).is_some(), "list --json has {field}");
    }
    let text = listed.to_string();
    for token in &tokens {
        assert!(!text.contains(&token[21..53]), "a secret leaked into the listing");
        assert!(!text.contains(token.as_str()));
    }
    assert!(!text.contains("$argon2"), "a hash leaked into the listing");
    let masked = keys[0]["masked"].as_str().unwrap();
    assert!(masked.starts_with("kw_live_") && masked.contains("****"), "{masked}");

    let human = daemon.cli(&["list", "--workspace", "acme"]);
    assert!(human.status.success());
    let human = String::from_utf8_lossy(&human.stdout);
    assert!(tokens.iter().all(|t| !human.contains(&t[21..53])) && !human.contains("$argon2"));

    let shown = daemon.json(&["show", keys[0]["id"].as_str().unwrap()], 0);
    assert_eq!(shown["id"], keys[0]["id"]);
    let missing = daemon.cli(&["show", "AAAAAAAAAAAA"]);
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn an_unreachable_daemon_is_exit_code_2() {
    let daemon = Daemon::start();
    let output = std::process::Command::new(keyward_tests::bin("keyward"))
        .args([
            "--socket",
            "/nonexistent/keyward.sock",
            "--admin-socket",
            "/nonexistent/admin.sock",
            "list",
            "--workspace",
            "x",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    drop(daemon);
}
