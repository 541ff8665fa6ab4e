//! The `keyward` binary as a user runs it: exit statuses, stderr lines and JSON shapes, against no daemon
//! at all and against the fake daemon in `support`.

mod support;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use keyward_protocol::Request;
use serde_json::Value;
use support::{canned, good_token, lifecycle, recording, FakeDaemon, KEY_ID};

/// Runs `keyward ARGS` with `stdin`, with no socket settings from the environment.
fn keyward_with_stdin(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(args)
        .env_remove("KEYWARD_SOCKET")
        .env_remove("KEYWARD_ADMIN_SOCKET")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn keyward");
    // keyward exits without reading stdin when the arguments are wrong; that is not the test's failure.
    match child.stdin.take().expect("stdin").write_all(stdin.as_bytes()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => panic!("write stdin: {error}"),
        _ => {}
    }
    child.wait_with_output().expect("keyward output")
}

fn keyward(args: &[&str]) -> Output {
    keyward_with_stdin(args, "")
}

/// Runs `keyward` against `daemon` (on both sockets).
fn against(daemon: &FakeDaemon, args: &[&str], stdin: &str) -> Output {
    let socket = daemon.socket().to_str().expect("a UTF-8 temp path");
    keyward_with_stdin(&[&["--socket", socket, "--admin-socket", socket], args].concat(), stdin)
}

fn describe(output: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Asserts exit status `code` and parses stdout as exactly one JSON value.
fn json(output: &Output, code: i32) -> Value {
    assert_eq!(output.status.code(), Some(code), "{}", describe(output));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("not one JSON value ({e}): {}", describe(output)))
}

/// Asserts a failure: status 2 and exactly one `keyward: …` line on stderr, which is returned.
fn failure(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(2), "{}", describe(output));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(stderr.starts_with("keyward: ") && stderr.lines().count() == 1, "{}", describe(output));
    stderr
}

#[test]
fn help_lists_the_commands() {
    let output = keyward(&["--help"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let help = String::from_utf8_lossy(&output.stdout);
    let commands = [
        "create",
        "list",
        "show",
        "edit",
        "regenerate",
        "deactivate",
        "activate",
        "revoke",
        "import",
        "verify",
        "audit",
        "account",
        "credits",
        "usage",
        "ping",
        "--json",
        "--socket",
        "--admin-socket",
        "--actor",
    ];
    for command in commands {
        assert!(help.contains(command), "help does not mention {command}:\n{help}");
    }
    for command in commands.iter().take_while(|c| !c.starts_with('-')) {
        assert_eq!(keyward(&[command, "--help"]).status.code(), Some(0), "{command} --help");
    }
    let import = String::from_utf8_lossy(&keyward(&["import", "--help"]).stdout).into_owned();
    assert!(import.contains("default is\n          never") || import.contains("default is never"), "{import}");
    assert!(import.contains("own lifetime"), "import --help says why it never expires by default:\n{import}");
}

#[test]
fn an_unreachable_daemon_is_exit_2_with_one_line_naming_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("admin.sock");
    let output = keyward(&["--admin-socket", socket.to_str().unwrap(), "list", "--workspace", "acme"]);
    let stderr = failure(&output);
    assert!(stderr.contains(socket.to_str().unwrap()), "{stderr}");
    assert!(stderr.contains("is the daemon running?"), "{stderr}");
    assert!(output.stdout.is_empty());

    let verify_socket = dir.path().join("verify.sock");
    let output = keyward(&["--json", "--socket", verify_socket.to_str().unwrap(), "verify", "kw_live_x"]);
    assert!(failure(&output).contains(verify_socket.to_str().unwrap()));
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON object on stdout");
    assert_eq!(printed["error"]["code"], "UNREACHABLE", "{printed}");
    assert!(printed["error"]["message"].as_str().unwrap().contains(verify_socket.to_str().unwrap()), "{printed}");
}

#[test]
fn the_socket_comes_from_the_environment_when_not_given() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("from-env.sock");
    let output = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["show", KEY_ID])
        .env("KEYWARD_ADMIN_SOCKET", &socket)
        .output()
        .unwrap();
    assert!(failure(&output).contains(socket.to_str().unwrap()));
}

#[test]
fn bad_arguments_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("nobody.sock");
    let socket = socket.to_str().unwrap();
    let bad_scope = keyward(&["--socket", socket, "verify", "--scope", "delete:tables", "kw_live_x"]);
    assert_eq!(bad_scope.status.code(), Some(2), "{}", describe(&bad_scope));
    assert!(String::from_utf8_lossy(&bad_scope.stderr).contains("delete:tables"));

    let create = ["--admin-socket", socket, "create", "--workspace", "acme", "--name", "ci", "--scope", "read:all"];
    let bad_expiry = keyward(&[&create[..], &["--expires", "tomorrow"]].concat());
    assert_eq!(bad_expiry.status.code(), Some(2), "{}", describe(&bad_expiry));
    assert!(String::from_utf8_lossy(&bad_expiry.stderr).contains("tomorrow"));

    let bad_env = keyward(&[&create[..], &["--env", "prod"]].concat());
    assert_eq!(bad_env.status.code(), Some(2), "{}", describe(&bad_env));
    assert_eq!(keyward(&["frobnicate"]).status.code(), Some(2));
}

#[test]
fn create_prints_the_token_once_with_the_key() {
    let daemon = FakeDaemon::start(canned);
    let args = ["create", "--workspace", "acme", "--name", "CI deploy", "--scope", "read:all", "--json"];
    let created = json(&against(&daemon, &args, ""), 0);
    assert_eq!(created["token"], good_token().expose());
    assert_eq!(created["id"], KEY_ID);
    assert_eq!(created["workspace"], "acme");
    assert_eq!(created["scopes"], serde_json::json!(["read:all"]));
    assert_eq!(created["status"], "active");
    assert_eq!(created["env"], "live");
    assert_eq!(created["created_at"], "2026-11-23T12:00:00Z");
    for field in ["prefix", "masked", "name", "description", "expires_at", "last_used_at", "revoked_at"] {
        assert!(created.get(field).is_some(), "create --json lacks {field}: {created}");
    }

    let text = against(&daemon, &args[..args.len() - 1], "");
    assert_eq!(text.status.code(), Some(0), "{}", describe(&text));
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.contains(good_token().expose()) && stdout.contains("shown only once"), "{stdout}");
}

#[test]
fn a_refused_request_is_exit_2_with_code_and_message() {
    let daemon = FakeDaemon::start(canned);
    let args = ["create", "--workspace", "acme", "--name", "x", "--scope", "read:all"];
    let stderr = failure(&against(&daemon, &args, ""));
    assert_eq!(stderr, "keyward: INVALID_ARGUMENT: name must be 3 to 50 characters\n");
    let stderr = failure(&against(&daemon, &["show", "ZZZZZZZZZZZZ"], ""));
    assert!(stderr.starts_with("keyward: KEY_NOT_FOUND: "), "{stderr}");
}

#[test]
fn list_follows_every_page() {
    let daemon = FakeDaemon::start(canned);
    let keys = json(&against(&daemon, &["--json", "list", "--workspace", "acme"], ""), 0);
    let ids: Vec<&str> = keys.as_array().expect("an array").iter().map(|k| k["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [KEY_ID, "BBBBBBBBBBBB", "CCCCCCCCCCCC"]);
    assert!(keys[0].get("token").is_none(), "a listing never holds a token");
    assert_eq!(keys[0]["status"], "active");
    assert_eq!(keys[0]["last_used_at"], Value::Null);
    assert_eq!(keys[0]["metadata"], serde_json::json!({}));

    let empty = json(&against(&daemon, &["list", "--workspace", "other", "--json"], ""), 0);
    assert_eq!(empty, serde_json::json!([]));

    let table = against(&daemon, &["list", "--workspace", "acme"], "");
    let stdout = String::from_utf8_lossy(&table.stdout);
    assert!(stdout.starts_with("ID  "), "{stdout}");
    for column in ["PREFIX", "NAME", "SCOPES", "STATUS", "CREATED", "LAST USED", "EXPIRES"] {
        assert!(stdout.lines().next().unwrap().contains(column), "{stdout}");
    }
    assert_eq!(stdout.lines().count(), 4, "{stdout}");
}

#[test]
fn show_and_revoke_print_one_key() {
    let daemon = FakeDaemon::start(canned);
    let shown = json(&against(&daemon, &["show", KEY_ID, "--json"], ""), 0);
    assert_eq!(shown["id"], KEY_ID);
    assert!(shown.get("token").is_none());
    let revoked = json(&against(&daemon, &["--json", "revoke", KEY_ID], ""), 0);
    assert_eq!(revoked["status"], "revoked");
    assert_eq!(revoked["revoked_at"], "2026-11-23T12:01:00Z");
}

#[test]
fn verify_exit_status_says_whether_the_token_is_valid() {
    let daemon = FakeDaemon::start(canned);
    let token = format!("{}\n", good_token().expose());
    let valid = json(&against(&daemon, &["--json", "verify", "--scope", "read:tables", "-"], &token), 0);
    assert_eq!(valid["valid"], true);
    assert_eq!(valid["code"], "VALID");
    assert_eq!(valid["key_id"], KEY_ID);
    assert_eq!(valid["workspace"], "acme");
    assert_eq!(valid["scopes"], serde_json::json!(["read:all"]));

    let wrong = json(&against(&daemon, &["--json", "verify", "--workspace", "elsewhere", "-"], &token), 1);
    assert_eq!(wrong["code"], "WRONG_WORKSPACE");
    assert_eq!(wrong["valid"], false);

    let unknown = json(&against(&daemon, &["verify", "--json", "kw_live_not_a_real_token"], ""), 1);
    assert_eq!(unknown["code"], "NOT_FOUND");
    assert_eq!(unknown["key_id"], Value::Null);
    assert_eq!(unknown["scopes"], Value::Null);

    let text = against(&daemon, &["verify", "-"], &token);
    assert_eq!(text.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&text.stdout), format!("VALID key {KEY_ID} (workspace acme)\n"));
    let text = against(&daemon, &["verify", "kw_live_nope"], "");
    assert_eq!(
        (text.status.code(), String::from_utf8_lossy(&text.stdout).into_owned()),
        (Some(1), "NOT_FOUND\n".into())
    );
}

#[test]
fn ping_checks_both_sockets() {
    let daemon = FakeDaemon::start(canned);
    let answer = json(&against(&daemon, &["--json", "ping"], ""), 0);
    assert_eq!(answer["ok"], true);
    assert_eq!(daemon.connections(), 2, "one connection per socket");

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("admin.sock");
    let socket = daemon.socket().to_str().unwrap();
    let output = keyward(&["--socket", socket, "--admin-socket", missing.to_str().unwrap(), "ping"]);
    assert!(failure(&output).contains(missing.to_str().unwrap()));
}

#[test]
fn a_rejected_handshake_is_reported() {
    let daemon = FakeDaemon::start_rejecting();
    let stderr = failure(&against(&daemon, &["ping"], ""));
    assert!(stderr.contains("UNSUPPORTED_VERSION"), "{stderr}");
}

#[test]
fn actor_labels_what_the_admin_socket_is_asked() {
    let (received, handler) = recording(lifecycle);
    let daemon = FakeDaemon::start(handler);
    let output = against(&daemon, &["--actor", "alice@dashboard", "deactivate", KEY_ID], "");
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let output = against(&daemon, &["verify", "--actor", "alice@dashboard", "-"], good_token().expose());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let output = against(&daemon, &["deactivate", KEY_ID], "");
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let requests = received.lock().unwrap().clone();
    assert!(
        matches!(
            &requests[..],
            [Request::As { actor, request }, Request::Verify(_), Request::Deactivate { .. }]
                if actor == "alice@dashboard" && matches!(**request, Request::Deactivate { .. })
        ),
        "{requests:?}"
    );
}

#[test]
fn lifecycle_commands_print_one_json_value() {
    let daemon = FakeDaemon::start(lifecycle);
    let run = |args: &[&str], stdin: &str| json(&against(&daemon, &[&["--json"], args].concat(), stdin), 0);
    let edited = run(&["edit", KEY_ID, "--name", "renamed", "--meta", "team="], "");
    assert_eq!((&edited["id"], &edited["name"]), (&Value::from(KEY_ID), &Value::from("renamed")));
    let regenerated = run(&["regenerate", KEY_ID, "--grace", "1m"], "");
    assert_eq!(regenerated["token"], good_token().expose());
    assert_eq!(regenerated["previous_token_until"], "2026-11-23T12:01:00Z");
    assert_eq!(run(&["deactivate", KEY_ID], "")["status"], "inactive");
    let imported = run(
        &["import", "--workspace", "acme", "--name", "old", "--scope", "read:all", "-"],
        "sk_prod_0123456789abcdef\n",
    );
    assert_eq!((&imported["origin"], &imported["prefix"]), (&Value::from("imported"), &Value::from("sk_p")));
    assert!(!imported.to_string().contains("sk_prod_0123456789abcdef"), "an import never repeats the token");
    let legacy = run(
        &[
            "import",
            "--workspace",
            "acme",
            "--name",
            "old",
            "--scope",
            "read:all",
            "--legacy",
            "--account",
            "acct-7",
            "-",
        ],
        "abc123.xR7mK9pL2qW4zz81\n",
    );
    assert_eq!((&legacy["origin"], &legacy["account"]), (&Value::from("legacy"), &Value::from("acct-7")));
    assert_eq!(run(&["audit", "--key", KEY_ID], "")[0]["action"], "create");
    let account = run(&["account", "set", "acct-7", "--workspace", "ws-a"], "");
    assert_eq!(account, serde_json::json!({"account": "acct-7", "workspaces": ["ws-a"]}));
    assert_eq!(run(&["account", "show", "acct-7"], "")["workspaces"], serde_json::json!(["acme"]));
    assert_eq!(run(&["list", "--legacy", "--account", "acct-7"], "")[0]["origin"], "legacy");
    assert_eq!(run(&["credits", KEY_ID, "--add", "5"], "")["credits"], 15);
    assert_eq!(run(&["usage", KEY_ID], "")["totals"], serde_json::json!({"VALID": 3}));
    assert_eq!(run(&["usage", "--workspace", "acme"], "")[0]["total"], 3);
}

#[test]
fn edit_with_nothing_to_change_is_a_usage_error() {
    let daemon = FakeDaemon::start(lifecycle);
    let output = against(&daemon, &["edit", KEY_ID], "");
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--name"), "{}", describe(&output));
    assert_eq!(daemon.requests(), 0, "nothing was sent");
}
