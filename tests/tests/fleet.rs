//! Fleet mode: three real `keywardd` hosts (own sockets, data directories and node ids) sharing one real
//! PostgreSQL cluster that the test starts, crashes and restarts itself ([`keyward_tests::postgres`]), with
//! a relay in front of one host's engine link so a test can cut or stall that host alone.
//!
//! Every assertion is about behaviour — what a verify answers on which host, what the CLI prints, what the
//! audit log holds — and waits only with `wait_until` (a hang bound, not a timing claim). Where no
//! PostgreSQL server is installed the tests say how to install one and skip, unless
//! `KEYWARD_REQUIRE_POSTGRES=1` (CI), where they fail instead.

use keyward_tests::postgres::{require_postgres, EngineLink, Postgres};
use keyward_tests::{wait_until, ConfigFile, Daemon};
use serde_json::Value;

/// One host of a test fleet: its daemon, its configuration file, and the relay its engine link goes
/// through, if the test wants to cut it.
struct Host {
    daemon: Daemon,
    _config: ConfigFile,
    link: Option<EngineLink>,
}

/// The `[fleet]` section of node `node` reaching the engine at `conninfo`.
fn fleet_section(conninfo: &str, node: &str) -> String {
    format!("[fleet]\nengine = \"{conninfo}\"\nnode_id = \"{node}\"\npoll_interval_ms = 200\n")
}

impl Host {
    /// A host on a new data directory, straight to the engine or through a relay.
    fn start(postgres: &Postgres, node: &str, relayed: bool) -> Host {
        let link = relayed.then(|| EngineLink::start(postgres));
        let conninfo = link.as_ref().map_or_else(|| postgres.conninfo(), EngineLink::conninfo);
        let config = ConfigFile::new(&fleet_section(&conninfo, node));
        let daemon = Daemon::start_with_config(&config);
        Host { daemon, _config: config, link }
    }

    fn link(&self) -> &EngineLink {
        self.link.as_ref().expect("this host's engine link goes through a relay")
    }

    /// `keyward --json stats`'s fleet object.
    fn fleet_stats(&self) -> Value {
        self.daemon.json(&["stats"], 0)["fleet"].clone()
    }
}

/// A cluster and three hosts a, b, c; the fleet is created by `keyward fleet init` on a (with an empty
/// store), and c's link goes through a relay when `relay_c`.
struct Fleet {
    postgres: Postgres,
    hosts: Vec<Host>,
}

impl Fleet {
    fn start(relay_c: bool) -> Fleet {
        let postgres = Postgres::start();
        let a = Host::start(&postgres, "a", false);
        let init = a.daemon.json(&["fleet", "init"], 0);
        assert_eq!(init["reachable"], true, "fleet init: {init}");
        let b = Host::start(&postgres, "b", false);
        let c = Host::start(&postgres, "c", relay_c);
        Fleet { postgres, hosts: vec![a, b, c] }
    }

    fn host(&self, index: usize) -> &Daemon {
        &self.hosts[index].daemon
    }
}

/// The token of a new key created through `host`.
fn create(host: &Daemon, workspace: &str) -> (String, String) {
    let created = host.create(workspace, &["read:all"], &[]);
    let token = created["token"].as_str().expect("a token").to_owned();
    let id = created["id"].as_str().expect("a key id").to_owned();
    (token, id)
}

/// Waits until `host` answers `code` for `token`.
fn wait_for_code(host: &Daemon, token: &str, code: &str, what: &str) {
    wait_until(what, || host.verify_code(token, &[]) == code);
}

/// The audit log as `host` shows it, oldest first, without anything host-specific.
fn audit(host: &Daemon) -> Vec<Value> {
    let Value::Array(entries) = host.json(&["audit", "--limit", "1000"], 0) else { panic!("audit is a list") };
    entries
}

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
    drop(fleet.postgres);
}
