//! Fleet mode under faults: a host whose link to the engine is cut or stalls, a postmaster killed with
//! `kill -9` under verify load, an engine restored from an older backup, bad fleet configuration at
//! startup, and a host that joins a fleet that already holds keys.
//!
//! These are the failure semantics of fleet mode (issue 18, item 7): while the engine cannot be reached,
//! verifies go on from each host's replica and management calls fail with a stable code
//! (`ENGINE_UNAVAILABLE`) instead of hanging; when it returns, every host converges by itself with nothing
//! missed or applied twice; an engine that lost changes a host has seen is refused loudly
//! (`ENGINE_DIVERGED`), never followed back in time; a host that cannot serve correctly refuses to start
//! and says why. Like `fleet.rs`, everything runs against a real PostgreSQL cluster the test owns
//! ([`keyward_tests::postgres`]), asserts behaviour only, and waits only with `wait_until` (a hang bound,
//! not a timing claim). Without a PostgreSQL server the tests skip, unless `KEYWARD_REQUIRE_POSTGRES=1`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use keyward_protocol::{
    CreateRequest, ExpirySpec, RatePolicy, Reply, ReplyFrame, Request, Secret, VerifyCode, VerifyRequest,
};
use keyward_tests::fleet::{audit, fleet_section, wait_for_code, Fleet, Host};
use keyward_tests::postgres::{require_postgres, Postgres};
use keyward_tests::{keywardd, request_frame, start_refused, wait_until, ConfigFile, Daemon};
use serde_json::Value;

/// A key created through `host` in `workspace` without a rate limit (tests verify it many times while
/// waiting): its token and id.
fn key(host: &Daemon, workspace: &str) -> (String, String) {
    let created = host.create(workspace, &["read:all"], &["--rate-limit", "none"]);
    let token = created["token"].as_str().expect("a token").to_owned();
    let id = created["id"].as_str().expect("a key id").to_owned();
    (token, id)
}

/// The `error` object of `keyward --json ARGS` on `host`, which must fail with exit status 2.
fn refused_call(host: &Daemon, args: &[&str]) -> Value {
    let printed = host.json(args, 2);
    assert!(printed["error"].is_object(), "keyward {args:?} printed no error object: {printed}");
    printed["error"].clone()
}

/// A management call on `host` that must be refused because the engine cannot be reached: code
/// `ENGINE_UNAVAILABLE`, and a message that says the change was not made (or not confirmed).
fn assert_engine_unavailable(host: &Daemon, args: &[&str], when: &str) {
    let error = refused_call(host, args);
    assert_eq!(error["code"], "ENGINE_UNAVAILABLE", "keyward {args:?} {when}: {error}");
    let message = error["message"].as_str().expect("an error message");
    assert!(
        message.contains("nothing was changed") || message.contains("did not confirm"),
        "keyward {args:?} {when}: the message does not say what became of the change: {message}"
    );
}

/// A `create` on the command line, for management calls expected to fail.
const CREATE: [&str; 7] = ["create", "--workspace", "ws-refused", "--name", "refused key", "--scope", "read:all"];

/// c's link to the engine is cut while a creates a key, revokes another and edits one: c goes on
/// answering from what it knows, refuses management calls with `ENGINE_UNAVAILABLE`, restarts and serves
/// its replica while still cut, and once the link returns it converges by itself: the same audit log as
/// a, nothing missed or applied twice, and its stats show the reconnection.
#[test]
fn a_host_cut_from_the_engine_converges_when_the_link_returns() {
    if !require_postgres() {
        return;
    }
    let mut fleet = Fleet::start(true);
    let (k1, k1_id) = key(fleet.host(0), "ws-cut");
    wait_for_code(fleet.host(2), &k1, "VALID", "c to see k1 created on a");

    fleet.hosts[2].link().cut();
    let (a, c) = (fleet.host(0), fleet.host(2));
    let (k2, k2_id) = key(a, "ws-cut");
    a.json(&["revoke", &k1_id], 0);
    a.json(&["edit", &k2_id, "--scope", "write:all"], 0);
    assert_eq!(a.verify_code(&k1, &[]), "REVOKED", "the issuing host's very next verify");

    wait_until("c's stats to say the engine cannot be reached", || {
        fleet.hosts[2].fleet_stats()["engine_reachable"] == false
    });
    assert_eq!(c.verify_code(&k1, &[]), "VALID", "c, cut off, still serves k1 as it knew it");
    assert_eq!(c.verify_code(&k2, &[]), "NOT_FOUND", "c, cut off, cannot know k2");
    assert_engine_unavailable(c, &CREATE, "on a host cut from the engine");

    fleet.hosts[2].daemon.restart();
    let (a, c) = (fleet.host(0), fleet.host(2));
    assert_eq!(c.verify_code(&k1, &[]), "VALID", "c, restarted while cut, serves k1 from its replica");
    assert_eq!(c.verify_code(&k2, &[]), "NOT_FOUND", "c, restarted while cut, has not seen k2");
    assert_engine_unavailable(c, &CREATE, "on a host restarted while cut from the engine");

    fleet.hosts[2].link().restore();
    wait_for_code(c, &k1, "REVOKED", "c to see k1's revocation once the link is back");
    wait_for_code(c, &k2, "VALID", "c to see k2 once the link is back");
    wait_until("c to see the edit of k2", || c.verify_code(&k2, &["--scope", "write:all"]) == "VALID");

    let on_a = audit(a);
    assert_eq!(on_a.len(), 4, "create k1, create k2, revoke k1, edit k2 (no refused call): {on_a:?}");
    assert_eq!(audit(c), on_a, "c's audit log is a's: nothing missed or applied twice");
    let figures = fleet.hosts[2].fleet_stats();
    assert_eq!(figures["engine_reachable"], true, "{figures}");
    assert!(figures["reconnects"].as_u64().is_some_and(|n| n >= 1), "c counts its reconnection: {figures}");
    assert_eq!(figures["diverged"], false, "{figures}");
}

/// c's link to the engine stalls (packets vanish, connections stay open) while a creates a key and
/// revokes the one c made: management calls on c, on its open write connection and on a new one, fail
/// with `ENGINE_UNAVAILABLE` and return instead of hanging; verifies on c go on; once the link returns,
/// a's changes reach c and c's own management works again.
#[test]
fn a_stalled_link_fails_management_cleanly_and_recovers() {
    if !require_postgres() {
        return;
    }
    let fleet = Fleet::start(true);
    let (a, c) = (fleet.host(0), fleet.host(2));
    // Made on c, so that c's write connection is open when the link stalls.
    let (k1, k1_id) = key(c, "ws-stall");
    wait_for_code(a, &k1, "VALID", "a to see k1 created on c");

    fleet.hosts[2].link().stall();
    let (k2, _) = key(a, "ws-stall");
    a.json(&["revoke", &k1_id], 0);
    assert_engine_unavailable(c, &CREATE, "on a host whose engine link stalls (its open connection)");
    assert_engine_unavailable(c, &["deactivate", &k1_id], "on a host whose engine link stalls (a new connection)");
    assert_eq!(c.verify_code(&k1, &[]), "VALID", "c, stalled, still serves k1 as it knew it");
    assert_eq!(c.verify_code(&k2, &[]), "NOT_FOUND", "c, stalled, cannot know k2");

    fleet.hosts[2].link().restore();
    wait_for_code(c, &k1, "REVOKED", "c to see k1's revocation once the link is back");
    wait_for_code(c, &k2, "VALID", "c to see k2 once the link is back");
    let (k3, _) = key(c, "ws-stall");
    assert_eq!(c.verify_code(&k3, &[]), "VALID", "c's own management works again");
    wait_for_code(a, &k3, "VALID", "a to see k3 created on c after the stall");

    let on_a = audit(a);
    assert_eq!(on_a.len(), 4, "create k1, create k2, revoke k1, create k3 (no refused call): {on_a:?}");
    assert_eq!(audit(c), on_a, "c's audit log is a's: nothing missed or applied twice");
}

/// What one verify-load thread saw.
#[derive(Default)]
struct Tally {
    /// Answers other than `VALID`.
    not_valid: Vec<String>,
    /// Replies that were not verify answers, and connections that broke.
    errors: Vec<String>,
}

/// A thread verifying one token on one host's verify socket until told to stop, counting `VALID`
/// answers as it goes.
struct Load {
    valid: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Tally>,
}

/// Pause between two verifies of one load thread: the load is steady but small (the machine has 2 cores
/// and other tests run alongside); not a timing claim.
const LOAD_PACE: Duration = Duration::from_millis(20);

impl Load {
    fn start(host: &Daemon, token: Secret) -> Load {
        let (valid, stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
        let mut conn = host.verifier();
        let (counted, stopped) = (valid.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut tally = Tally::default();
            let mut id = 0;
            while !stopped.load(Ordering::SeqCst) {
                id += 1;
                let request = Request::Verify(VerifyRequest::new(token.clone()));
                if let Err(error) = conn.send_raw(&request_frame(id, request)) {
                    tally.errors.push(format!("sending verify #{id}: {error}"));
                    break;
                }
                match conn.read_reply() {
                    Some(ReplyFrame { id: answered, reply: Reply::Verify(answer) }) if answered == id => {
                        if answer.code == VerifyCode::Valid {
                            counted.fetch_add(1, Ordering::SeqCst);
                        } else {
                            tally.not_valid.push(format!("verify #{id}: {:?}", answer.code));
                        }
                    }
                    Some(other) => tally.errors.push(format!("verify #{id}: {other:?}")),
                    None => {
                        tally.errors.push(format!("verify #{id}: the connection closed"));
                        break;
                    }
                }
                std::thread::sleep(LOAD_PACE);
            }
            tally
        });
        Load { valid, stop, thread }
    }

    fn valid(&self) -> u64 {
        self.valid.load(Ordering::SeqCst)
    }

    /// Stops the thread; what it saw besides its `VALID` answers.
    fn finish(self) -> Tally {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("a verify-load thread panicked")
    }
}

/// A key without a rate limit created through `host`'s admin socket: its token.
fn unlimited_key(host: &Daemon, workspace: &str) -> Secret {
    let mut request = CreateRequest::new(workspace, "load key", vec!["read:all".into()]);
    request.expires = ExpirySpec::Never;
    request.limits.rate = RatePolicy::Unlimited;
    host.admin().create_with(request).token
}

/// The postmaster is killed with `kill -9` while every host verifies its own key in a loop: not one verify
/// fails or answers anything but `VALID`, before, during or after the outage; a management call fails
/// with `ENGINE_UNAVAILABLE` while the engine is down; once it restarts, management works again and the
/// other hosts see its change, without restarting any daemon.
#[test]
fn killing_the_postmaster_under_verify_load_loses_no_verify() {
    if !require_postgres() {
        return;
    }
    let mut fleet = Fleet::start(false);
    let loads: Vec<Load> = (0..fleet.hosts.len())
        .map(|index| {
            let host = fleet.host(index);
            Load::start(host, unlimited_key(host, "ws-kill"))
        })
        .collect();
    wait_until("every host to answer verifies under load", || loads.iter().all(|load| load.valid() > 0));

    fleet.postgres.kill9();
    let at_kill: Vec<u64> = loads.iter().map(Load::valid).collect();
    assert_engine_unavailable(fleet.host(0), &CREATE, "with the postmaster killed");
    wait_until("every host to go on answering verifies with the engine down", || {
        loads.iter().zip(&at_kill).all(|(load, &before)| load.valid() > before)
    });

    fleet.postgres.restart();
    let a = fleet.host(0);
    let mut k4 = None;
    wait_until("a management call on a to succeed once the engine is back", || {
        let output = a.cli(&["--json", "create", "--workspace", "ws-kill", "--name", "key k4", "--scope", "read:all"]);
        let printed: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
        if output.status.success() {
            k4 = printed["token"].as_str().map(str::to_owned);
            return true;
        }
        assert_eq!(printed["error"]["code"], "ENGINE_UNAVAILABLE", "a create while the engine restarts: {printed}");
        false
    });
    let k4 = k4.expect("the created key's token");
    assert_eq!(a.verify_code(&k4, &[]), "VALID", "the issuing host's very next verify");
    wait_for_code(fleet.host(1), &k4, "VALID", "b to see k4, created after the engine restarted");
    wait_for_code(fleet.host(2), &k4, "VALID", "c to see k4, created after the engine restarted");
    let at_recovery: Vec<u64> = loads.iter().map(Load::valid).collect();
    wait_until("every host to go on answering verifies after the engine is back", || {
        loads.iter().zip(&at_recovery).all(|(load, &before)| load.valid() > before)
    });

    for (index, load) in loads.into_iter().enumerate() {
        let total = load.valid();
        let tally = load.finish();
        let host = fleet.hosts[index].daemon.verify_socket();
        assert!(
            tally.errors.is_empty(),
            "host {index}: verify errors: {:?}",
            &tally.errors[..tally.errors.len().min(5)]
        );
        assert!(
            tally.not_valid.is_empty(),
            "host {index} ({}): {} answers were not VALID, the first: {:?}",
            host.display(),
            tally.not_valid.len(),
            &tally.not_valid[..tally.not_valid.len().min(5)]
        );
        assert!(at_kill[index] > 0 && total > at_kill[index], "host {index}: verifies before and after the kill");
    }
}

/// The engine is restored from a backup older than what every host has applied (k2's creation and k1's
/// revocation are missing from it): every host refuses to follow it, says so in its log and stats, fails
/// management calls with `ENGINE_DIVERGED`, and goes on verifying from its replica — k1 stays revoked, k2
/// stays valid. A host restarted in that state still refuses rather than rolling back.
#[test]
fn an_engine_restored_from_an_older_backup_is_refused_loudly() {
    if !require_postgres() {
        return;
    }
    let mut fleet = Fleet::start(false);
    let (k1, k1_id) = key(fleet.host(0), "ws-backup");
    for index in 1..3 {
        wait_for_code(fleet.host(index), &k1, "VALID", "every host to see k1");
    }
    let backup = tempfile::NamedTempFile::new().expect("a file for the backup");
    fleet.postgres.dump(backup.path());
    let (k2, _) = key(fleet.host(0), "ws-backup");
    fleet.host(1).json(&["revoke", &k1_id], 0);
    for index in 0..3 {
        wait_for_code(fleet.host(index), &k1, "REVOKED", "every host to see k1's revocation");
        wait_for_code(fleet.host(index), &k2, "VALID", "every host to see k2");
    }

    fleet.postgres.restore(backup.path());
    for (index, host) in fleet.hosts.iter().enumerate() {
        wait_until(&format!("host {index} to report the diverged engine"), || host.fleet_stats()["diverged"] == true);
    }
    for (index, host) in fleet.hosts.iter().enumerate() {
        let daemon = &host.daemon;
        let error = refused_call(daemon, &CREATE);
        assert_eq!(error["code"], "ENGINE_DIVERGED", "host {index}, a create against the older engine: {error}");
        assert_eq!(daemon.verify_code(&k1, &[]), "REVOKED", "host {index}: no rollback of k1's revocation");
        assert_eq!(daemon.verify_code(&k2, &[]), "VALID", "host {index}: no rollback of k2's creation");
        assert!(daemon.log().contains("REFUSING TO FOLLOW"), "host {index} says so in its log:\n{}", daemon.log());
    }

    let refusals = |daemon: &Daemon| daemon.log().matches("REFUSING TO FOLLOW").count();
    let before = refusals(&fleet.hosts[1].daemon);
    fleet.hosts[1].daemon.restart();
    let b = &fleet.hosts[1];
    let figures = b.fleet_stats();
    assert_eq!(figures["diverged"], true, "b, restarted, still refuses the older engine: {figures}");
    assert_eq!(b.daemon.verify_code(&k1, &[]), "REVOKED", "b, restarted: no rollback of k1's revocation");
    assert_eq!(b.daemon.verify_code(&k2, &[]), "VALID", "b, restarted: no rollback of k2's creation");
    let error = refused_call(&b.daemon, &CREATE);
    assert_eq!(error["code"], "ENGINE_DIVERGED", "b, restarted, a create against the older engine: {error}");
    assert!(refusals(&b.daemon) > before, "b, restarted, says so in its log again:\n{}", b.daemon.log());
}

/// Runs a `keywardd` on fresh locations (an empty data directory) reading `config`, which must refuse to
/// start; returns its stderr.
fn refused_start(config: &str, what: &str) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = ConfigFile::new(config);
    let socket = dir.path().join("run/verify.sock");
    let mut command = keywardd();
    command.arg("--config").arg(config.path()).arg("--data-dir").arg(dir.path().join("data"));
    command.arg("--socket").arg(&socket).arg("--admin-socket").arg(dir.path().join("run/admin.sock"));
    refused_output(command, &socket, what)
}

/// Runs `command`, a `keywardd` that must refuse to start (exit status not 0); returns its stderr.
fn refused_output(command: std::process::Command, socket: &std::path::Path, what: &str) -> String {
    let output = start_refused(command, socket);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "{what}: keywardd exited with {} instead of refusing: {stderr}", output.status);
    stderr
}

/// Fleet configurations a host cannot serve with are startup errors that say what is wrong: an engine
/// that cannot be reached by a host that never synced, a `fleet_id` naming another fleet, a password in
/// `engine` (not printed), a data directory holding a single host's keys, and an engine whose schema is
/// newer than this keywardd.
#[test]
fn bad_fleet_configuration_is_a_clear_startup_error() {
    if !require_postgres() {
        return;
    }
    // (a) Nothing listens in the socket directory, and the data directory is empty.
    let nowhere = tempfile::tempdir().expect("temp dir");
    let conninfo = format!("host={} port=5432 user=postgres dbname=keyward", nowhere.path().display());
    let stderr = refused_start(&fleet_section(&conninfo, "lonely"), "an unreachable engine");
    assert!(stderr.contains("cannot be reached"), "an unreachable engine is named as such: {stderr}");
    assert!(stderr.contains("never synced"), "and the host says it has nothing to serve: {stderr}");

    // (d) A password in the connection string.
    let with_password =
        format!("host={} port=5432 user=postgres dbname=keyward password=secret", nowhere.path().display());
    let stderr = refused_start(&fleet_section(&with_password, "leaky"), "a password in `engine`");
    assert!(stderr.contains("password_file"), "the error points at `password_file`: {stderr}");
    assert!(!stderr.contains("secret"), "the error prints the password: {stderr}");

    let postgres = Postgres::start();
    let a = Host::start(&postgres, "a", false);
    let init = a.daemon.json(&["fleet", "init"], 0);
    let fleet_id = init["fleet_id"].as_str().expect("the new fleet's id").to_owned();
    assert_ne!(fleet_id, "other");

    // (b) `fleet_id` names another fleet than the engine's.
    let config = format!("{}fleet_id = \"other\"\n", fleet_section(&postgres.conninfo(), "stranger"));
    let stderr = refused_start(&config, "another fleet's id");
    assert!(stderr.contains(&fleet_id), "the error names the engine's fleet `{fleet_id}`: {stderr}");
    assert!(stderr.contains("other"), "and the configured one: {stderr}");

    // (e) A single host's store, with a key, pointed at the fleet.
    let mut single = Daemon::start();
    single.create("ws-single", &["read:all"], &[]);
    single.stop();
    let config = ConfigFile::new(&fleet_section(&postgres.conninfo(), "single"));
    let mut command = single.command();
    command.arg("--config").arg(config.path());
    let stderr = refused_output(command, &single.verify_socket(), "a single host's store");
    assert!(stderr.contains("not a replica"), "the store is named as no replica of the fleet: {stderr}");
    assert!(stderr.contains("fleet init"), "with `fleet init` as the way to bring its keys along: {stderr}");

    // (c) The engine's schema is newer than this keywardd's.
    postgres.psql("UPDATE keyward_meta SET schema_version = 99");
    let stderr = refused_start(&fleet_section(&postgres.conninfo(), "behind"), "a newer schema");
    assert!(stderr.contains("newer"), "the schema is named as newer: {stderr}");
    assert!(stderr.contains("99"), "with its version: {stderr}");
}

/// A host that joins a fleet already holding 50 keys is ready with all of them: each token verifies
/// `VALID` on it at once, with no waiting, because startup catches up before the sockets open.
#[test]
fn a_host_joining_later_loads_every_key() {
    if !require_postgres() {
        return;
    }
    let postgres = Postgres::start();
    let a = Host::start(&postgres, "a", false);
    let init = a.daemon.json(&["fleet", "init"], 0);
    assert_eq!(init["reachable"], true, "fleet init: {init}");
    let mut admin = a.daemon.admin();
    let tokens: Vec<Secret> = (0..50)
        .map(|_| {
            let mut request = CreateRequest::new("ws-join", "joined key", vec!["read:all".into()]);
            request.limits.rate = RatePolicy::Unlimited;
            admin.create_with(request).token
        })
        .collect();

    let d = Host::start(&postgres, "d", false);
    let mut verifier = d.daemon.verifier();
    let codes: Vec<VerifyCode> = tokens.iter().map(|token| verifier.verify(token, None, None).code).collect();
    let valid = codes.iter().filter(|code| **code == VerifyCode::Valid).count();
    assert_eq!(valid, 50, "every key verifies on the new host as soon as it is ready: {codes:?}");
    assert_eq!(audit(&d.daemon), audit(&a.daemon), "the new host holds the fleet's whole audit log");
}
