//! Fleet mode: three real `keywardd` hosts (own sockets, data directories and node ids) sharing one real
//! PostgreSQL cluster that the test starts, crashes and restarts itself ([`keyward_tests::postgres`]), with
//! a relay in front of one host's engine link so a test can cut or stall that host alone.
//!
//! Every assertion is about behaviour — what a verify answers on which host, what the CLI prints, what the
//! audit log holds — and waits only with `wait_until` (a hang bound, not a timing claim). Where no
//! PostgreSQL server is installed the tests say how to install one and skip, unless
//! `KEYWARD_REQUIRE_POSTGRES=1` (CI), where they fail instead.

use keyward_tests::fleet::{audit, create, wait_for_code, Fleet};
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
    let status = a.json(&["fleet", "status"], 0);
    assert_eq!(status["nodes"].as_array().map(Vec::len), Some(3), "{status}");
    for host in &fleet.hosts {
        let figures = host.fleet_stats();
        assert_eq!(figures["engine_reachable"], true, "{figures}");
    }
}
