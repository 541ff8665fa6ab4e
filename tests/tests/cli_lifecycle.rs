//! A key's life after creation through the real `keyward` CLI and `keywardd`, one test per command family:
//! edit, regenerate (with and without grace), deactivate/activate, roles, metadata, import of foreign and
//! legacy tokens with accounts, the audit log with `--actor`, credits and usage, and verify's `--cost` and
//! `--limit`. Exit codes, one-line refusals and JSON shapes are checked as an operator's script sees them.

use std::collections::BTreeSet;
use std::process::Output;
use std::time::{Duration, Instant};

use keyward_protocol::token::Token;
use keyward_protocol::{Environment, KeyId};
use keyward_tests::{describe, Daemon};
use serde_json::{json, Value};

/// How long a test waits for a grace window to close before calling it a hang.
const PATIENCE: Duration = Duration::from_secs(30);

fn token_of(created: &Value) -> String {
    created["token"].as_str().expect("the JSON holds the token").to_owned()
}

fn id_of(key: &Value) -> String {
    key["id"].as_str().expect("the JSON holds the key id").to_owned()
}

/// Asserts that `keyward ARGS` failed the documented way: exit status 2 and exactly one `keyward: …` line on
/// stderr, which is returned.
fn refused(daemon: &Daemon, args: &[&str]) -> String {
    refused_output(&daemon.cli(args))
}

fn refused_output(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(2), "{}", describe(output));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(stderr.starts_with("keyward: ") && stderr.lines().count() == 1, "one-line reason: {}", describe(output));
    assert!(output.stdout.is_empty(), "nothing on stdout: {}", describe(output));
    stderr
}

/// Asserts a usage error from clap: exit status 2, nothing on stdout, and `says` in the message.
fn usage_error(daemon: &Daemon, args: &[&str], says: &str) {
    let output = daemon.cli(args);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(output.stdout.is_empty(), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains(says), "no {says:?}: {}", describe(&output));
}

/// `keyward --json ARGS` with `stdin`, exit status `code`, stdout parsed as one JSON value.
fn json_with_stdin(daemon: &Daemon, args: &[&str], stdin: &str, code: i32) -> Value {
    let output = daemon.cli_with_stdin(&[&["--json"], args].concat(), stdin);
    assert_eq!(output.status.code(), Some(code), "keyward {args:?}: {}", describe(&output));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("no JSON ({e}): {}", describe(&output)))
}

/// Runs `keyward ARGS` (text output), asserts success, and returns stdout.
fn text(daemon: &Daemon, args: &[&str]) -> String {
    let output = daemon.cli(args);
    assert_eq!(output.status.code(), Some(0), "keyward {args:?}: {}", describe(&output));
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// The token in a text answer of `create` or `regenerate`: the line indented by four spaces.
fn token_in_text(stdout: &str) -> String {
    let line =
        stdout.lines().find(|line| line.starts_with("    kw_")).unwrap_or_else(|| panic!("no token in {stdout}"));
    line.trim().to_owned()
}

fn field_names(object: &Value) -> BTreeSet<String> {
    object.as_object().expect("an object").keys().cloned().collect()
}

/// A well-formed token (right checksum) for key `id` with a wrong secret.
fn wrong_secret_for(id: &str) -> String {
    Token::assemble(Environment::Live, &KeyId::parse(id).unwrap(), &[b'Q'; 32]).expose().to_owned()
}

/// The ratelimit entry of `answer` for `policy`.
fn limit<'a>(answer: &'a Value, policy: &str) -> &'a Value {
    let entries = answer["ratelimit"].as_array().expect("ratelimit is an array");
    entries.iter().find(|entry| entry["policy"] == policy).unwrap_or_else(|| panic!("no {policy} in {answer}"))
}

#[test]
fn edit_changes_settings_but_never_the_token() {
    let daemon = Daemon::start();
    let created = daemon.create(
        "acme",
        &["write:tables"],
        &["--expires", "30d", "--description", "for CI", "--meta", "team=billing", "--meta", "tier=gold"],
    );
    let (token, id) = (token_of(&created), id_of(&created));
    assert_eq!(daemon.verify_code(&token, &["--scope", "write:tables"]), "VALID");
    assert!(created["expires_at"].is_string());

    let edited = daemon.json(
        &[
            "edit",
            &id,
            "--name",
            "read only now",
            "--description",
            "",
            "--scope",
            "read:tables",
            "--scope",
            "read:forms",
            "--expires",
            "never",
            "--meta",
            "team=",
            "--meta",
            "owner=ops",
        ],
        0,
    );
    assert_eq!(edited["id"], id.as_str());
    assert_eq!(edited["name"], "read only now");
    assert_eq!(edited["description"], Value::Null, "--description \"\" clears it");
    assert_eq!(edited["scopes"], json!(["read:forms", "read:tables"]), "the scope set is replaced");
    assert_eq!(edited["expires_at"], Value::Null, "--expires never clears the expiry");
    assert_eq!(edited["metadata"], json!({"owner": "ops", "tier": "gold"}), "--meta team= removes team");
    assert!(edited.get("token").is_none(), "an edit never shows a token");
    assert_eq!((&edited["prefix"], &edited["masked"]), (&created["prefix"], &created["masked"]), "same token");

    // The same token, with the new settings from the very next verify.
    assert_eq!(daemon.verify_code(&token, &["--scope", "write:tables"]), "INSUFFICIENT_SCOPE");
    let answer = daemon.verify(&token, &["--scope", "read:tables"]);
    assert_eq!(answer["code"], "VALID");
    assert_eq!(answer["metadata"], json!({"owner": "ops", "tier": "gold"}));
    assert_eq!(answer["name"], "read only now");

    let stdout = text(&daemon, &["edit", &id, "--expires", "30d", "--plan", "paid"]);
    assert!(stdout.contains("its token is unchanged"), "{stdout}");
    let shown = daemon.json(&["show", &id], 0);
    assert!(shown["expires_at"].is_string(), "an expiry can be set again: {shown}");
    assert_eq!(shown["rate"], json!({"plan": "paid"}));
    let answer = daemon.verify(&token, &[]);
    assert_eq!((&limit(&answer, "paid")["limit"], &answer["code"]), (&json!(1000), &json!("VALID")));

    let stderr = refused(&daemon, &["edit", &id]);
    assert!(stderr.contains("nothing to change"), "{stderr}");
    let stderr = refused(&daemon, &["edit", &id, "--plan", "gold"]);
    assert!(stderr.starts_with("keyward: INVALID_ARGUMENT: ") && stderr.contains("free, paid"), "{stderr}");
    usage_error(&daemon, &["edit", &id, "--rate-limit", "10/fortnight"], "bad rate");
    usage_error(&daemon, &["edit", &id, "--plan", "paid", "--rate-limit", "10/s"], "cannot be used with");
    refused(&daemon, &["edit", "AAAAAAAAAAAA", "--name", "nobody's key"]);
}

#[test]
fn regenerate_prints_a_new_token_and_ends_the_old_one_at_once_or_after_the_grace() {
    let daemon = Daemon::start();
    let created = daemon.create("acme", &["read:all"], &["--expires", "never", "--meta", "team=billing"]);
    let (first, id) = (token_of(&created), id_of(&created));
    assert_eq!(daemon.verify_code(&first, &[]), "VALID");

    let fresh = daemon.json(&["regenerate", &id], 0);
    assert_eq!(field_names(&fresh), field_names(&created), "the same object shape as create --json");
    let second = token_of(&fresh);
    assert!(second.starts_with("kw_live_") && second.len() == first.len() && second != first, "{second}");
    assert_eq!(fresh["id"], id.as_str(), "same key");
    assert_eq!((&fresh["scopes"], &fresh["metadata"]), (&created["scopes"], &created["metadata"]), "same settings");
    assert_eq!(fresh["previous_token_until"], Value::Null, "no grace by default");
    assert_eq!(daemon.verify_code(&first, &[]), "NOT_FOUND", "the old token stopped at once");
    assert_eq!(daemon.verify_code(&second, &[]), "VALID");

    // With a grace window, both tokens work until it ends; the text answer says until when.
    let stdout = text(&daemon, &["regenerate", &id, "--grace", "5s"]);
    assert!(stdout.contains("shown only once"), "{stdout}");
    assert!(stdout.contains("The old token keeps working until "), "{stdout}");
    let third = token_in_text(&stdout);
    assert_eq!(daemon.verify_code(&second, &[]), "VALID", "the old token inside the grace window");
    assert_eq!(daemon.verify_code(&third, &[]), "VALID");
    let shown = daemon.json(&["show", &id], 0);
    assert!(shown["previous_token_until"].as_str().is_some_and(|at| at.ends_with('Z')), "{shown}");
    let started = Instant::now();
    while daemon.verify_code(&second, &[]) != "NOT_FOUND" {
        assert!(started.elapsed() < PATIENCE, "the old token still works after {PATIENCE:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(daemon.verify_code(&third, &[]), "VALID", "the new token outlives the window");

    usage_error(&daemon, &["regenerate", &id, "--grace", "2"], "expected a number and s, m, h or d");
    let stderr = refused(&daemon, &["regenerate", &id, "--grace", "31d"]);
    assert!(stderr.contains("INVALID_ARGUMENT"), "{stderr}");
    daemon.json(&["revoke", &id], 0);
    assert!(refused(&daemon, &["regenerate", &id]).contains("CONFLICT"));
}

#[test]
fn deactivate_and_activate() {
    let daemon = Daemon::start();
    let created = daemon.create("acme", &["read:all"], &[]);
    let (token, id) = (token_of(&created), id_of(&created));

    let view = daemon.json(&["deactivate", &id], 0);
    assert_eq!(view["status"], "inactive");
    let answer = daemon.verify(&token, &[]);
    assert_eq!((&answer["code"], &answer["valid"]), (&json!("INACTIVE"), &json!(false)));
    assert_eq!(answer["key_id"], id.as_str(), "the secret was right, so the key is named");
    let output = daemon.cli_with_stdin(&["verify", "-"], &format!("{token}\n"));
    assert_eq!(output.status.code(), Some(1), "INACTIVE is exit 1: {}", describe(&output));
    assert!(refused(&daemon, &["deactivate", &id]).contains("CONFLICT"));

    let stdout = text(&daemon, &["activate", &id]);
    assert!(stdout.contains("verifies again"), "{stdout}");
    assert_eq!(daemon.verify_code(&token, &[]), "VALID");
    assert_eq!(daemon.json(&["list", "--workspace", "acme"], 0)[0]["status"], "active");
    let stdout = text(&daemon, &["deactivate", &id]);
    assert!(stdout.contains("INACTIVE") && stdout.contains(&format!("keyward activate {id}")), "{stdout}");
}

#[test]
fn member_keys_cannot_hold_the_admin_scope() {
    let daemon = Daemon::start();
    let stderr = refused(&daemon, &["create", "--workspace", "acme", "--name", "would be admin", "--scope", "admin"]);
    assert!(stderr.contains("member key cannot hold the admin scope"), "{stderr}");
    assert!(stderr.contains("--role admin"), "the reason says what to do: {stderr}");

    let admin = daemon.create("acme", &["admin"], &["--role", "admin"]);
    assert_eq!(admin["role"], "admin");
    let answer = daemon.verify(&token_of(&admin), &["--scope", "write:anything"]);
    assert_eq!((&answer["code"], &answer["role"]), (&json!("VALID"), &json!("admin")));

    let member = daemon.create("acme", &["read:all"], &[]);
    let id = id_of(&member);
    assert_eq!(member["role"], "member");
    assert!(refused(&daemon, &["edit", &id, "--scope", "admin"]).contains("member key cannot hold"));
    let promoted = daemon.json(&["edit", &id, "--scope", "admin", "--role", "admin"], 0);
    assert_eq!((&promoted["role"], &promoted["scopes"]), (&json!("admin"), &json!(["admin"])));
    refused(&daemon, &["edit", &id, "--role", "member"]);
    usage_error(&daemon, &["edit", &id, "--role", "owner"], "owner");

    let table = text(&daemon, &["list", "--workspace", "acme"]);
    let header = table.lines().next().unwrap();
    assert!(header.contains("ROLE"), "{table}");
    assert_eq!(table.lines().filter(|line| line.contains(" admin ")).count(), 2, "{table}");
}

#[test]
fn metadata_round_trips_through_verify() {
    let daemon = Daemon::start();
    let created = daemon.create("acme", &["read:all"], &["--meta", "team=billing", "--meta", "region=eu west"]);
    assert_eq!(created["metadata"], json!({"team": "billing", "region": "eu west"}));
    let answer = daemon.verify(&token_of(&created), &[]);
    assert_eq!(answer["metadata"], json!({"team": "billing", "region": "eu west"}));
    assert_eq!(
        (&answer["role"], &answer["account"], &answer["credits"]),
        (&json!("member"), &Value::Null, &Value::Null)
    );
    assert_eq!(answer["retry_after_ms"], Value::Null);
    let free = limit(&answer, "free");
    assert_eq!((&free["limit"], &free["remaining"], &free["window_seconds"]), (&json!(100), &json!(99), &json!(60)));
    assert!(free["reset_at"].as_str().is_some_and(|at| at.ends_with('Z')), "{answer}");

    let refused_answer = daemon.verify("kw_live_not_a_token", &[]);
    assert_eq!((&refused_answer["metadata"], &refused_answer["role"]), (&Value::Null, &Value::Null));
    usage_error(
        &daemon,
        &["create", "--workspace", "acme", "--name", "empty", "--scope", "read:all", "--meta", "team="],
        "no value",
    );
    let stderr = refused(
        &daemon,
        &["create", "--workspace", "acme", "--name", "bad", "--scope", "read:all", "--meta", "bad key=x"],
    );
    assert!(stderr.contains("INVALID_ARGUMENT") && stderr.contains("metadata key"), "{stderr}");
}

#[test]
fn a_foreign_token_is_imported_and_verifies_as_it_is() {
    let daemon = Daemon::start();
    let foreign = "sk_prod_3f9a1c7e2b8d4056a1c2e3f40516a7b8";
    let args =
        ["import", "--workspace", "acme", "--name", "stripe-era key", "--scope", "read:all", "--meta", "source=v1"];
    let imported = json_with_stdin(&daemon, &[&args[..], &["-"]].concat(), &format!("{foreign}\n"), 0);
    let id = id_of(&imported);
    assert_eq!((&imported["origin"], &imported["status"]), (&json!("imported"), &json!("active")));
    assert_eq!(imported["prefix"], "sk_prod_");
    assert_eq!(imported["expires_at"], Value::Null, "an import never expires unless told to");
    assert!(imported.get("token").is_none() && !imported.to_string().contains(foreign), "the token is not repeated");

    let answer = daemon.verify(foreign, &["--workspace", "acme", "--scope", "read:forms"]);
    assert_eq!((&answer["code"], &answer["key_id"]), (&json!("VALID"), &json!(id)));
    assert_eq!(answer["metadata"], json!({"source": "v1"}));
    assert_ne!(daemon.verify_code("sk_prod_3f9a1c7e2b8d4056a1c2e3f40516a7b9", &[]), "VALID", "one character off");

    let again = daemon.cli_with_stdin(&[&args[..], &["-"]].concat(), &format!("{foreign}\n"));
    assert!(refused_output(&again).contains("CONFLICT"));
    let short = daemon.cli_with_stdin(&[&args[..], &["-"]].concat(), "too short\n");
    assert!(refused_output(&short).contains("16 to 512"));

    let other = "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB";
    let output = daemon.cli_with_stdin(&[&args[..], &["--expires", "30d", "-"]].concat(), &format!("{other}\n"));
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("verifies as it is") && !stdout.contains(other), "{stdout}");
    assert_eq!(daemon.verify_code(other, &[]), "VALID");
}

#[test]
fn legacy_keys_act_on_their_account_workspaces_and_are_listed_by_last_use() {
    let daemon = Daemon::start();
    let account = daemon.json(&["account", "set", "acct-7", "--workspace", "ws-b", "--workspace", "ws-a"], 0);
    assert_eq!(account, json!({"account": "acct-7", "workspaces": ["ws-a", "ws-b"]}));
    assert_eq!(daemon.json(&["account", "show", "acct-7"], 0), account);
    assert_eq!(daemon.json(&["account", "show", "acct-8"], 0), json!({"account": "acct-8", "workspaces": []}));
    assert!(text(&daemon, &["account", "show", "acct-7"]).contains("ws-a, ws-b"));

    let legacy_token = "abc123.xR7mK9pL2qW4zz81";
    let base = ["import", "--workspace", "ws-a", "--name", "personal key", "--scope", "read:all"];
    let args = [&base[..], &["--legacy", "--account", "acct-7", "-"]].concat();
    let imported = json_with_stdin(&daemon, &args, &format!("{legacy_token}\n"), 0);
    let id = id_of(&imported);
    assert_eq!(
        (&imported["origin"], &imported["status"], &imported["account"]),
        (&json!("legacy"), &json!("legacy"), &json!("acct-7"))
    );
    usage_error(&daemon, &[&base[..], &["--legacy", "-"]].concat(), "--account");
    usage_error(&daemon, &[&base[..], &["--account", "acct-7", "-"]].concat(), "--legacy");

    let unused = daemon.json(&["list", "--legacy"], 0);
    assert_eq!(unused[0]["last_used_at"], Value::Null);
    let answer = daemon.verify(legacy_token, &["--workspace", "ws-b"]);
    assert_eq!((&answer["code"], &answer["account"]), (&json!("VALID"), &json!("acct-7")), "any of its account's");
    assert_eq!(daemon.verify_code(legacy_token, &["--workspace", "ws-c"]), "WRONG_WORKSPACE");

    let listed = daemon.json(&["list", "--legacy", "--account", "acct-7"], 0);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());
    assert!(listed[0]["last_used_at"].is_string(), "shows that the key is still in use: {listed}");
    assert_eq!(daemon.json(&["list", "--legacy", "--account", "acct-9"], 0), json!([]));
    let table = text(&daemon, &["list", "--legacy"]);
    assert!(table.starts_with("ID            LAST USED  "), "last use right after the id:\n{table}");
    assert!(table.contains(&id) && table.contains("1 used at least once"), "{table}");
    usage_error(&daemon, &["list", "--account", "acct-7"], "--legacy");

    let stderr = refused(&daemon, &["edit", &id, "--name", "renamed"]);
    assert!(stderr.contains("CONFLICT") && stderr.contains("only be viewed and revoked"), "{stderr}");
    assert_eq!(daemon.json(&["revoke", &id], 0)["status"], "revoked");
}

#[test]
fn the_audit_log_records_each_action_with_uid_and_actor_label() {
    let daemon = Daemon::start();
    let created = daemon.create("acme", &["read:all"], &[]);
    let id = id_of(&created);
    let as_alice = ["--actor", "alice@dashboard"];
    daemon.json(&[&as_alice[..], &["edit", &id, "--name", "renamed key"]].concat(), 0);
    daemon.json(&["regenerate", &id], 0);
    daemon.json(&["deactivate", &id, "--actor", "ops bot"], 0);
    daemon.json(&["activate", &id], 0);
    daemon.json(&["credits", &id, "--set", "5"], 0);
    daemon.json(&["revoke", &id], 0);
    json_with_stdin(
        &daemon,
        &["import", "--workspace", "acme", "--name", "old", "--scope", "read:all", "-"],
        "sk_prod_0123456789abcdef\n",
        0,
    );
    daemon.json(&[&as_alice[..], &["account", "set", "acct", "--workspace", "acme"]].concat(), 0);
    refused(&daemon, &["revoke", &id]);

    let entries = daemon.json(&["audit"], 0);
    let entries = entries.as_array().expect("an array");
    let actions: Vec<&str> = entries.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        ["account_set", "import", "revoke", "credits", "activate", "deactivate", "regenerate", "edit", "create"],
        "newest first, refusals not audited"
    );
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    for entry in entries {
        assert_eq!(entry["actor"]["uid"], uid, "{entry}");
        assert!(entry["actor"]["pid"].is_number() && entry["actor"]["gid"].is_number(), "{entry}");
        assert!(entry["at"].as_str().is_some_and(|at| at.ends_with('Z')), "{entry}");
    }
    let label = |action: &str| entries.iter().find(|e| e["action"] == action).unwrap()["actor"]["label"].clone();
    assert_eq!(label("edit"), "alice@dashboard");
    assert_eq!(label("deactivate"), "ops bot");
    assert_eq!(label("account_set"), "alice@dashboard");
    assert_eq!(label("create"), Value::Null);
    let seqs: Vec<u64> = entries.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] == w[1] + 1), "consecutive sequence numbers: {seqs:?}");
    let edit = entries.iter().find(|e| e["action"] == "edit").unwrap();
    assert_eq!((&edit["key_id"], &edit["workspace"]), (&json!(id), &json!("acme")));
    assert!(
        edit["changes"]
            .as_array()
            .unwrap()
            .contains(&json!({"field": "name", "from": "test key", "to": "renamed key"})),
        "{edit}"
    );
    let account_set = &entries[0];
    assert_eq!((&account_set["key_id"], &account_set["account"]), (&Value::Null, &json!("acct")));

    let of_key = daemon.json(&["audit", "--key", &id, "--limit", "2"], 0);
    let of_key: Vec<&Value> = of_key.as_array().unwrap().iter().map(|e| &e["action"]).collect();
    assert_eq!(of_key, [&json!("revoke"), &json!("credits")]);
    let of_workspace = daemon.json(&["audit", "--workspace", "acme"], 0);
    assert_eq!(of_workspace.as_array().unwrap().len(), 8, "every entry but the account's");
    assert_eq!(daemon.json(&["audit", "--since", "2999-01-01T00:00:00Z"], 0), json!([]));

    let table = text(&daemon, &["audit"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["TIME", "ACTION", "KEY", "WORKSPACE", "ACTOR", "CHANGES"]);
    assert!(table.contains(&format!("alice@dashboard (uid {uid})")), "{table}");
    assert!(table.contains("name: test key -> renamed key"), "{table}");
}

#[test]
fn credits_and_usage_count_a_known_verify_sequence() {
    let daemon = Daemon::start();
    let created = daemon.create("acme", &["read:all"], &["--credits", "5"]);
    let (token, id) = (token_of(&created), id_of(&created));
    assert_eq!(created["credits"], 5);
    for left in [4, 3, 2] {
        let answer = daemon.verify(&token, &[]);
        assert_eq!((&answer["code"], &answer["credits"]), (&json!("VALID"), &json!(left)));
    }
    for _ in 0..2 {
        let answer = daemon.verify(&token, &["--scope", "write:tables"]);
        assert_eq!((&answer["code"], &answer["credits"]), (&json!("INSUFFICIENT_SCOPE"), &json!(2)), "nothing spent");
    }
    assert_eq!(daemon.verify_code(&wrong_secret_for(&id), &[]), "NOT_FOUND");

    assert_eq!(daemon.json(&["credits", &id, "--add", "3"], 0)["credits"], 5, "refusals spent nothing");
    assert_eq!(daemon.json(&["credits", &id, "--set", "10"], 0)["credits"], 10);
    assert!(text(&daemon, &["credits", &id, "--set", "1"]).contains("now has 1 credit."));
    assert_eq!(daemon.verify(&token, &[])["credits"], 0);
    let exceeded = daemon.cli_with_stdin(&["--json", "verify", "-"], &format!("{token}\n"));
    assert_eq!(exceeded.status.code(), Some(1), "USAGE_EXCEEDED is exit 1: {}", describe(&exceeded));
    let exceeded: Value = serde_json::from_slice(&exceeded.stdout).unwrap();
    assert_eq!((&exceeded["code"], &exceeded["credits"]), (&json!("USAGE_EXCEEDED"), &json!(0)));

    let quiet = daemon.create("acme", &["read:all"], &[]);
    assert_eq!(daemon.verify_code(&token_of(&quiet), &[]), "VALID");
    assert!(refused(&daemon, &["credits", &id_of(&quiet), "--add", "1"]).contains("CONFLICT"), "no credits to add to");

    let usage = daemon.json(&["usage", &id], 0);
    let expected = json!({"VALID": 4, "INSUFFICIENT_SCOPE": 2, "NOT_FOUND": 1, "USAGE_EXCEEDED": 1});
    assert_eq!(usage["key_id"], id.as_str());
    assert_eq!(usage["totals"], expected);
    for series in ["hourly", "daily"] {
        // The run may straddle an hour or a day; the buckets add up to the totals either way.
        let mut sum = std::collections::BTreeMap::<String, u64>::new();
        for bucket in usage[series].as_array().unwrap() {
            assert!(bucket["start"].as_str().is_some_and(|at| at.ends_with('Z')), "{bucket}");
            for (code, n) in bucket["counts"].as_object().unwrap() {
                *sum.entry(code.clone()).or_default() += n.as_u64().unwrap();
            }
        }
        assert_eq!(serde_json::to_value(sum).unwrap(), expected, "{series}");
    }
    let stdout = text(&daemon, &["usage", &id]);
    assert!(stdout.contains("over the last 90 days: 8") && stdout.contains("Hourly"), "{stdout}");

    let workspace = daemon.json(&["usage", "--workspace", "acme"], 0);
    assert_eq!(
        workspace,
        json!([
            {"key_id": id, "name": "test key", "total": 8, "totals": expected},
            {"key_id": id_of(&quiet), "name": "test key", "total": 1, "totals": {"VALID": 1}},
        ]),
        "busiest key first"
    );
    assert!(text(&daemon, &["usage", "--workspace", "acme"]).starts_with("ID  "));
    usage_error(&daemon, &["usage"], "required");
    usage_error(&daemon, &["credits", &id], "required");
}

#[test]
fn verify_cost_and_named_limits_through_the_cli() {
    let daemon = Daemon::start();
    let created = daemon.create("acme", &["read:all"], &["--rate-limit", "2/h", "--limit", "exports=1/h"]);
    let token = token_of(&created);
    assert_eq!((&created["rate"], &created["limits"]), (&json!({"custom": "2/h"}), &json!({"exports": "1/h"})));

    let first = daemon.verify(&token, &["--limit", "exports"]);
    assert_eq!(first["code"], "VALID");
    assert_eq!((&limit(&first, "custom")["limit"], &limit(&first, "custom")["remaining"]), (&json!(2), &json!(1)));
    assert_eq!(
        (&limit(&first, "exports")["remaining"], &limit(&first, "exports")["window_seconds"]),
        (&json!(0), &json!(3600))
    );

    let output = daemon.cli_with_stdin(&["--json", "verify", "--limit", "exports", "-"], &format!("{token}\n"));
    assert_eq!(output.status.code(), Some(1), "RATE_LIMITED is exit 1: {}", describe(&output));
    let limited: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!((&limited["code"], &limited["valid"]), (&json!("RATE_LIMITED"), &json!(false)));
    assert!(limited["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0), "{limited}");
    assert_eq!(limited["ratelimit"].as_array().unwrap().len(), 2, "{limited}");
    assert!(limit(&limited, "exports")["reset_at"].as_str().is_some_and(|at| at.ends_with('Z')), "{limited}");
    assert_eq!(limit(&limited, "custom")["remaining"], 1, "a refused request spends nothing");

    let check = daemon.verify(&token, &["--cost", "0"]);
    assert_eq!((&check["code"], &limit(&check, "custom")["remaining"]), (&json!("VALID"), &json!(1)), "cost 0");
    assert_eq!(daemon.verify_code(&token, &["--cost", "2"]), "RATE_LIMITED", "only 1 left");
    assert_eq!(daemon.verify(&token, &[])["code"], "VALID");
    let output = daemon.cli_with_stdin(&["verify", "-"], &format!("{token}\n"));
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let line = String::from_utf8_lossy(&output.stdout);
    assert!(line.starts_with("RATE_LIMITED key ") && line.contains("retry after "), "{line}");
    usage_error(&daemon, &["verify", "--cost", "lots", "-"], "lots");
}
