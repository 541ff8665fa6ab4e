//! Fleet mode: three real `keywardd` hosts (own sockets, data directories and node ids) sharing one real
//! PostgreSQL cluster that the test starts, crashes and restarts itself ([`keyward_tests::postgres`]), with
//! a relay in front of one host's engine link so a test can cut or stall that host alone.
//!
//! Every assertion is about behaviour — what a verify answers on which host, what the CLI prints, what the
//! audit log holds — and waits only with `wait_until` (a hang bound, not a timing claim). Where no
//! PostgreSQL server is installed the tests say how to install one and skip, unless
//! `KEYWARD_REQUIRE_POSTGRES=1` (CI), where they fail instead.

use keyward_tests::fleet::{audit, create, wait_for_code, Extra, Fleet};
use keyward_tests::postgres::require_postgres;
use keyward_tests::wait_until;
use keyward_tests::Daemon;

#[test]
fn a_change_on_any_host_is_seen_on_every_host() {
    if !require_postgres() {
        return;
    }
    let fleet = Fleet::start(false);
    let (a, b, c) = (fleet.host(0), fleet.host(1), fleet.host(2));
    let (token, id) = create(a, "ws-fleet");
    assert_eq!(a.verify_code(&token, &[]), "VALID", "the issuing host, at once");
    wait_for_code(b, &token, "VALID", "b to see the key created on a");
    wait_for_code(c, &token, "VALID", "c to see the key created on a");

    let deactivated = b.json(&["deactivate", &id], 0);
    assert_eq!(deactivated["status"], "inactive", "{deactivated}");
    assert_eq!(b.verify_code(&token, &[]), "INACTIVE", "the issuing host's very next verify");
    wait_for_code(a, &token, "INACTIVE", "a to see the deactivation on b");
    wait_for_code(c, &token, "INACTIVE", "c to see the deactivation on b");
    c.json(&["activate", &id], 0);
    wait_for_code(a, &token, "VALID", "a to see the activation on c");

    c.json(&["edit", &id, "--scope", "write:all"], 0);
    let scope_check = |host: &Daemon| host.verify_code(&token, &["--scope", "write:all"]) == "VALID";
    wait_until("a to see the edit on c", || scope_check(a));
    wait_until("b to see the edit on c", || scope_check(b));

    let regenerated = a.json(&["regenerate", &id], 0);
    let new_token = regenerated["token"].as_str().expect("a new token").to_owned();
    assert_eq!(a.verify_code(&new_token, &[]), "VALID");
    wait_for_code(b, &new_token, "VALID", "b to see the regenerated token");
    wait_for_code(c, &token, "NOT_FOUND", "c to drop the old token");

    b.json(&["revoke", &id], 0);
    assert_eq!(b.verify_code(&new_token, &[]), "REVOKED", "the issuing host's very next verify");
    wait_for_code(a, &new_token, "REVOKED", "a to see the revocation on b");
    wait_for_code(c, &new_token, "REVOKED", "c to see the revocation on b");

    wait_until("every host to hold the same audit log", || audit(a) == audit(b) && audit(b) == audit(c));
    let entries = audit(a);
    assert_eq!(entries.len(), 6, "create, deactivate, activate, edit, regenerate, revoke: {entries:?}");
    assert_no_token_in_the_engine(&fleet, &[&token, &new_token]);
    let status = a.json(&["fleet", "status"], 0);
    assert_eq!(status["nodes"].as_array().map(Vec::len), Some(3), "{status}");
    for host in &fleet.hosts {
        let figures = host.fleet_stats();
        assert_eq!(figures["engine_reachable"], true, "{figures}");
    }
}

/// Neither any of `tokens` nor its secret part (after the last `_`) is anywhere in the engine: not in a
/// text column, not inside an encoded record or change. The engine holds Argon2 hashes only.
fn assert_no_token_in_the_engine(fleet: &Fleet, tokens: &[&str]) {
    let tables = ["keyward_meta", "keyward_changes", "keyward_keys", "keyward_nodes", "keyward_credits"];
    let mut everything = String::new();
    for table in tables {
        // Each row as text (a bytea column as hex), then the encoded columns as raw bytes.
        everything.push_str(&fleet.postgres.psql(&format!("SELECT t::text FROM {table} t")));
    }
    everything.push_str(&fleet.postgres.psql("SELECT encode(body, 'escape') FROM keyward_changes"));
    everything.push_str(&fleet.postgres.psql("SELECT encode(record, 'escape') FROM keyward_keys"));
    for token in tokens {
        let secret = token.rsplit('_').next().expect("a token has a secret part");
        for needle in [*token, secret] {
            // As text, and as the hex a bytea column shows as text.
            assert!(!everything.contains(needle), "a token or secret is in the engine");
            assert!(!everything.contains(&keyward_tests::hex(needle.as_bytes())), "a token or secret is in the engine");
        }
    }
    assert!(everything.contains("$argon2id$"), "the engine holds the Argon2 hashes (the search looked at the records)");
}

/// Verifies `token` on `host` until the fleet's credits are spent as far as this host can tell (USAGE_EXCEEDED
/// without a retry time), counting the VALID answers; `stop` ends it early.
fn spend_until_exhausted(host: &Daemon, token: &str, stop: &std::sync::atomic::AtomicBool) -> u64 {
    use keyward_protocol::{Secret, VerifyCode};
    use std::sync::atomic::Ordering;
    let mut conn = host.verifier();
    let token = Secret::new(token);
    let mut valid = 0;
    while !stop.load(Ordering::Relaxed) {
        let answer = conn.verify(&token, None, None);
        match answer.code {
            VerifyCode::Valid => valid += 1,
            VerifyCode::UsageExceeded if answer.retry_after_ms.is_none() => break,
            VerifyCode::UsageExceeded => std::thread::sleep(std::time::Duration::from_millis(5)),
            other => panic!("a verify of a key with credits answered {other:?}"),
        }
    }
    valid
}

/// Credits are escrowed: three hosts spending one key's 300 credits at once get exactly 300 VALID between
/// them (the fleet never over-spends, and in a clean run strands nothing); `credits --add` on another host
/// voids what each holds and gives the fleet the new balance; a host killed mid-run takes its unspent grant
/// with it (under-spend, never over-spend).
#[test]
fn escrowed_credits_hold_exactly_across_hosts() {
    if !require_postgres() {
        return;
    }
    let mut fleet = Fleet::start(false);
    let created = fleet.host(0).create("ws-credits", &["read:all"], &["--credits", "300", "--rate-limit", "none"]);
    let (token, id) = (created["token"].as_str().unwrap().to_owned(), created["id"].as_str().unwrap().to_owned());
    for host in 1..3 {
        wait_for_code(fleet.host(host), &token, "VALID", "every host to know the key");
    }
    // Those two verifies (on b and c) spent two credits already.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let spent: u64 = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..3)
            .map(|i| {
                let (host, token, stop) = (fleet.host(i), &token, &stop);
                scope.spawn(move || spend_until_exhausted(host, token, stop))
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("a spender")).sum()
    });
    assert_eq!(spent + 2, 300, "exactly the balance, spread over the hosts");

    fleet.host(1).json(&["credits", &id, "--add", "120"], 0);
    wait_for_code(fleet.host(2), &token, "VALID", "c to get a grant of the new balance");
    // Kill c while the others and c itself spend: what c held is lost, never spent twice.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (spenders, killed) = fleet.hosts.split_at_mut(2);
    let spent: u64 = std::thread::scope(|scope| {
        let workers: Vec<_> = spenders
            .iter()
            .map(|host| {
                let (host, token, stop) = (&host.daemon, &token, &stop);
                scope.spawn(move || spend_until_exhausted(host, token, stop))
            })
            .collect();
        let on_c = spend_until_some(&killed[0].daemon, &token, 10);
        killed[0].daemon.kill();
        on_c + workers.into_iter().map(|w| w.join().expect("a spender")).sum::<u64>()
    });
    let total = spent + 1;
    assert!(total <= 120, "never more than the balance: {total} of 120");
}

/// Verifies `token` on `host` until `n` answered VALID; returns `n`.
fn spend_until_some(host: &Daemon, token: &str, n: u64) -> u64 {
    let mut conn = host.verifier();
    let token = keyward_protocol::Secret::new(token);
    let mut valid = 0;
    while valid < n {
        if conn.verify(&token, None, None).code == keyward_protocol::VerifyCode::Valid {
            valid += 1;
        }
    }
    valid
}

/// Verifies `token` on `conn` until `stop` or until the daemon goes away, counting VALID answers; any answer
/// but VALID and RATE_LIMITED fails the test. A verify a millisecond is demand enough (30 times the limit
/// over three hosts) without starving the engine of the two cores three daemons share with it: a starved
/// engine makes hosts fall back to their own share of the limit, which is not what this test measures.
fn verify_until(mut conn: keyward_tests::RawConn, token: &str, stop: &std::sync::atomic::AtomicBool) -> u64 {
    use keyward_protocol::{codec, Reply, Request, RequestFrame, VerifyCode, VerifyRequest};
    let mut valid = 0;
    for id in 1.. {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        let request = Request::Verify(VerifyRequest::new(keyward_protocol::Secret::new(token)));
        let frame = codec::encode(&RequestFrame { id, request }).expect("a request encodes");
        let Some(reply) = conn.send(&frame).ok().and_then(|()| conn.read_reply()) else { break };
        match reply.reply {
            Reply::Verify(answer) if answer.code == VerifyCode::Valid => valid += 1,
            Reply::Verify(answer) if answer.code == VerifyCode::RateLimited => {}
            other => panic!("a verify of a rate-limited key answered {other:?}"),
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    valid
}

/// A plan in `[fleet] shared_plans` is one limit for the whole fleet: three hosts verifying one key as
/// fast as they can get, between them, no more than the limit allows one host — also when one host is
/// killed halfway. The engine hands out slots one interval (1/N of the period) apart, and each is spent
/// within a lease's lifetime L of its time (a tenth of the period), so over the run's T seconds at most
/// N × (T + L) / P + 1 pass; three per-host limits would pass three times the rate (and a burst of N each).
#[test]
fn a_shared_plan_limits_the_whole_fleet() {
    if !require_postgres() {
        return;
    }
    const LIMIT: u64 = 30;
    let extra = Extra { top: format!("[plans]\nteam = \"{LIMIT}/s\"\n"), fleet: "shared_plans = [\"team\"]\n".into() };
    let mut fleet = Fleet::start_with(false, &extra);
    let started = std::time::Instant::now();
    let created = fleet.host(0).create("ws-shared", &["read:all"], &["--plan", "team"]);
    let token = created["token"].as_str().expect("a token").to_owned();
    for host in 1..3 {
        wait_until("every host to know the key", || fleet.host(host).verify_code(&token, &[]) != "NOT_FOUND");
    }
    let conns: Vec<_> = (0..3).map(|i| fleet.host(i).verifier()).collect();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let per_host: Vec<u64> = std::thread::scope(|scope| {
        let workers: Vec<_> = conns
            .into_iter()
            .map(|conn| {
                let (token, stop) = (&token, &stop);
                scope.spawn(move || verify_until(conn, token, stop))
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_secs(2));
        fleet.hosts[2].daemon.kill();
        std::thread::sleep(std::time::Duration::from_secs(2));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        workers.into_iter().map(|w| w.join().expect("a verifier")).collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    // The two verifies that found the key on b and c may have passed too.
    let admitted = per_host.iter().sum::<u64>() + 2;
    let bound = (LIMIT as f64 * (seconds + 0.1)).floor() as u64 + 1;
    assert!(admitted <= bound, "{admitted} admitted in {seconds:.1} s ({per_host:?}), at most {bound} allowed");
    assert!(per_host.iter().all(|&n| n > 0), "every host got leases: {per_host:?}");
    let stats = fleet.hosts[1].fleet_stats();
    assert_eq!(stats["engine_reachable"], true, "{stats}");
}

/// Verifies never reach the engine: a host that follows by a rare poll alone (no LISTEN, so nothing but
/// verifies happens while they run) sends the engine not one query for hundreds of verifies, warm or not.
#[test]
fn verifies_never_query_the_engine() {
    if !require_postgres() {
        return;
    }
    let postgres = keyward_tests::postgres::Postgres::start();
    let text = format!(
        "[fleet]\nengine = \"{}\"\nnode_id = \"quiet\"\nnotify = false\npoll_interval_ms = 600000\n",
        postgres.conninfo()
    );
    let config = keyward_tests::ConfigFile::new(&text);
    let host = Daemon::start_with_config(&config);
    host.json(&["fleet", "init"], 0);
    let created = host.create("ws-quiet", &["read:all"], &["--rate-limit", "none"]);
    let token = keyward_protocol::Secret::new(created["token"].as_str().expect("a token"));
    let queries = || host.json(&["stats"], 0)["fleet"]["engine_queries"].as_u64().expect("engine_queries");
    let before = queries();
    let mut conn = host.verifier();
    for _ in 0..500 {
        assert_eq!(conn.verify(&token, None, None).code, keyward_protocol::VerifyCode::Valid);
    }
    let wrong = keyward_protocol::Secret::new(format!("{}x", &created["token"].as_str().unwrap()[..20]));
    assert_ne!(conn.verify(&wrong, None, None).code, keyward_protocol::VerifyCode::Valid);
    assert_eq!(queries(), before, "engine queries during 501 verifies");
}

/// `keyward fleet init` on a host that ran on its own brings its whole store into the new fleet: a host
/// joining afterwards verifies every token the same way (a generated key, an imported one, a legacy key
/// through its account's workspaces, a revoked one), shows the same credits, and holds the same audit log.
#[test]
fn fleet_init_imports_a_single_host_store_intact() {
    if !require_postgres() {
        return;
    }
    let postgres = keyward_tests::postgres::Postgres::start();
    let config = keyward_tests::ConfigFile::new("");
    let mut single = Daemon::start_with_config(&config);
    let (generated, _) = create(&single, "ws-a");
    let with_credits = single.create("ws-a", &["read:all"], &["--credits", "40", "--rate-limit", "none"]);
    let credits_token = with_credits["token"].as_str().expect("a token").to_owned();
    let (revoked, revoked_id) = create(&single, "ws-a");
    single.json(&["revoke", &revoked_id], 0);
    let imported = "sk_prod_9e8d7c6b5a4f30211f2e3d4c5b6a7980";
    let args = ["--json", "import", "--workspace", "ws-a", "--name", "old key", "--scope", "read:all", "-"];
    assert!(single.cli_with_stdin(&args, &format!("{imported}\n")).status.success());
    single.json(&["account", "set", "acct-1", "--workspace", "ws-a", "--workspace", "ws-b"], 0);
    let legacy = "legacy.token.0123456789";
    let args = [
        "--json",
        "import",
        "--workspace",
        "ws-a",
        "--name",
        "personal",
        "--scope",
        "read:all",
        "--legacy",
        "--account",
        "acct-1",
        "-",
    ];
    assert!(single.cli_with_stdin(&args, &format!("{legacy}\n")).status.success());
    for _ in 0..5 {
        assert_eq!(single.verify_code(&credits_token, &[]), "VALID");
    }
    assert_eq!(single.verify_code(imported, &[]), "VALID", "imported, on its own");
    single.restart();
    assert_eq!(single.verify_code(imported, &[]), "VALID", "imported, on its own, restarted");
    let audit_before = audit(&single);

    config.rewrite(&format!("[fleet]\nengine = \"{}\"\nnode_id = \"first\"\n", postgres.conninfo()));
    single.restart();
    assert_eq!(single.verify_code(&generated, &[]), "VALID", "serves its store before fleet init");
    assert_eq!(single.verify_code(imported, &[]), "VALID", "imported, fleet mode, before init");
    let refused =
        single.cli(&["--json", "create", "--workspace", "ws-a", "--name", "too early", "--scope", "read:all"]);
    assert!(String::from_utf8_lossy(&refused.stdout).contains("ENGINE_UNAVAILABLE"), "before fleet init");
    let report = single.json(&["fleet", "init"], 0);
    assert_eq!(report["keys"], 5, "{report}");
    assert_eq!(audit(&single), audit_before, "the store's own audit log is unchanged");

    // The operator's step: the new host gets the first one's lookup key.
    let joined_config = keyward_tests::ConfigFile::new(&format!(
        "lookup_key_file = \"{}\"\n[fleet]\nengine = \"{}\"\nnode_id = \"second\"\n",
        single.data_dir().join("lookup.key").display(),
        postgres.conninfo()
    ));
    let joined = Daemon::start_with_config(&joined_config);
    for host in [&single, &joined] {
        assert_eq!(host.verify_code(&generated, &[]), "VALID");
        assert_eq!(host.verify_code(imported, &[]), "VALID");
        assert_eq!(host.verify_code(legacy, &["--workspace", "ws-b"]), "VALID", "through its account");
        assert_eq!(host.verify_code(&revoked, &[]), "REVOKED");
    }
    assert_eq!(audit(&joined), audit_before, "the joined host holds the same audit log");
    // The joined host's first use of the key asks for its first grant of the fleet's credits; until it
    // arrives the answer is USAGE_EXCEEDED with a retry time, which an app server honours.
    let mut answer = joined.verify(&credits_token, &[]);
    while answer["code"] == "USAGE_EXCEEDED" && answer["retry_after_ms"].is_u64() {
        answer = joined.verify(&credits_token, &[]);
    }
    assert_eq!(answer["code"], "VALID", "{answer}");
    // 40 credits, 5 spent before the move, one now: the fleet holds the rest.
    assert_eq!(answer["credits"].as_u64().map(|left| left <= 34), Some(true), "{answer}");
}

/// With `notify = false` (a pooler in transaction mode cannot LISTEN) the poll alone carries every change.
#[test]
fn the_poll_alone_carries_every_change() {
    if !require_postgres() {
        return;
    }
    let fleet = Fleet::start_with(false, &Extra { fleet: "notify = false\n".into(), ..Extra::default() });
    let (a, b) = (fleet.host(0), fleet.host(1));
    let (token, id) = create(a, "ws-poll");
    wait_for_code(b, &token, "VALID", "b to see the key by polling");
    a.json(&["revoke", &id], 0);
    wait_for_code(b, &token, "REVOKED", "b to see the revocation by polling");
    wait_until("the audit logs to agree", || audit(a) == audit(b));
}

/// A COMMIT the engine does not answer in time has an unknown outcome: the host ends the backend that ran
/// it (so it can never commit late) and looks the change up by its id. Here a deferred trigger holds every
/// COMMIT of a change for 5 s, past the host's budget: the call fails with ENGINE_UNAVAILABLE saying nothing
/// was changed, and indeed no host ever sees the key; once the engine answers again the same call works.
#[test]
fn a_commit_left_unanswered_is_settled_never_applied_late() {
    if !require_postgres() {
        return;
    }
    let fleet = Fleet::start(false);
    let (a, b) = (fleet.host(0), fleet.host(1));
    fleet.postgres.psql(
        "CREATE FUNCTION keyward_test_slow_commit() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN PERFORM pg_sleep(5); RETURN NULL; END $$;
         CREATE CONSTRAINT TRIGGER keyward_test_slow AFTER INSERT ON keyward_changes \
         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION keyward_test_slow_commit();",
    );
    let args = ["--json", "create", "--workspace", "ws-slow", "--name", "never made", "--scope", "read:all"];
    let refused = a.cli(&args);
    let printed = String::from_utf8_lossy(&refused.stdout).into_owned();
    assert_eq!(refused.status.code(), Some(2), "{printed}");
    assert!(printed.contains("ENGINE_UNAVAILABLE") && printed.contains("nothing was changed"), "{printed}");
    // DROP TRIGGER waits for every transaction holding the table: had the held COMMIT's backend lived on,
    // this would wait for it to commit, and the count below would see its change.
    fleet.postgres.psql("DROP TRIGGER keyward_test_slow ON keyward_changes");
    let (token, _) = create(a, "ws-slow");
    wait_for_code(b, &token, "VALID", "b to see the key made after the engine answered again");
    let listed = a.json(&["list", "--workspace", "ws-slow"], 0);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "only the second create happened: {listed}");
    let in_engine = fleet.postgres.psql("SELECT count(*) FROM keyward_changes WHERE action = 'create'");
    assert_eq!(in_engine, "1", "the unanswered change never committed");
    wait_until("the audit logs to agree", || audit(a) == audit(b));
}
