//! A test fleet: a [`Postgres`] cluster and hosts ([`Host`]: a real `keywardd` with a `[fleet]` section,
//! its own sockets, data directory and node id), optionally behind an [`EngineLink`] each, and the few
//! reads fleet tests share (a key's token, the audit log, a host's fleet figures).

use serde_json::Value;

use crate::postgres::{EngineLink, Postgres};
use crate::{wait_until, ConfigFile, Daemon};

/// One host of a test fleet: its daemon, its configuration file, and the relay its engine link goes
/// through, if the test wants to cut it.
pub struct Host {
    pub daemon: Daemon,
    pub config: ConfigFile,
    pub link: Option<EngineLink>,
}

/// A fleet host's configuration for node `node` reaching the engine at `conninfo`: the fleet's lookup key
/// ([`fleet_lookup_key`]) and the `[fleet]` section, to which lines may be appended.
pub fn fleet_section(conninfo: &str, node: &str) -> String {
    format!("{}{}", lookup_key_line(), fleet_table(conninfo, node))
}

/// The `[fleet]` table alone.
fn fleet_table(conninfo: &str, node: &str) -> String {
    format!("[fleet]\nengine = \"{conninfo}\"\nnode_id = \"{node}\"\npoll_interval_ms = 200\n")
}

fn lookup_key_line() -> String {
    format!("lookup_key_file = \"{}\"\n", fleet_lookup_key().display())
}

/// The lookup key every test fleet of this process shares (the hosts of a fleet need the same one, as an
/// operator copies `lookup.key` to each): 32 random bytes, mode 0600, made once.
pub fn fleet_lookup_key() -> &'static std::path::Path {
    static KEY: std::sync::OnceLock<(tempfile::TempDir, std::path::PathBuf)> = std::sync::OnceLock::new();
    let (_, path) = KEY.get_or_init(|| {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = tempfile::Builder::new().prefix("keyward-fleet-key").tempdir().expect("a temp dir");
        let path = dir.path().join("lookup.key");
        let key: [u8; 32] = crate::random_base62();
        let mut file =
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).expect("the key file");
        std::io::Write::write_all(&mut file, &key).expect("write the key file");
        (dir, path)
    });
    path
}

/// Configuration a test adds to every host's file: top-level tables (e.g. `[plans]`) and lines of the
/// `[fleet]` section.
#[derive(Clone, Debug, Default)]
pub struct Extra {
    pub top: String,
    pub fleet: String,
}

impl Host {
    /// A host on a new data directory, straight to the engine or through a relay.
    pub fn start(postgres: &Postgres, node: &str, relayed: bool) -> Host {
        Host::start_with(postgres, node, relayed, &Extra::default())
    }

    /// [`Host::start`] with more configuration.
    pub fn start_with(postgres: &Postgres, node: &str, relayed: bool, extra: &Extra) -> Host {
        let link = relayed.then(|| EngineLink::start(postgres));
        let conninfo = link.as_ref().map_or_else(|| postgres.conninfo(), EngineLink::conninfo);
        let text = format!("{}{}{}{}", lookup_key_line(), extra.top, fleet_table(&conninfo, node), extra.fleet);
        let config = ConfigFile::new(&text);
        let daemon = Daemon::start_with_config(&config);
        Host { daemon, config, link }
    }

    pub fn link(&self) -> &EngineLink {
        self.link.as_ref().expect("this host's engine link goes through a relay")
    }

    /// `keyward --json stats`'s fleet object.
    pub fn fleet_stats(&self) -> Value {
        self.daemon.json(&["stats"], 0)["fleet"].clone()
    }
}

/// A cluster and three hosts a, b, c; the fleet is created by `keyward fleet init` on a (with an empty
/// store), and c's link goes through a relay when `relay_c`.
pub struct Fleet {
    pub postgres: Postgres,
    pub hosts: Vec<Host>,
}

impl Fleet {
    pub fn start(relay_c: bool) -> Fleet {
        Fleet::start_with(relay_c, &Extra::default())
    }

    /// [`Fleet::start`] with more configuration on every host.
    pub fn start_with(relay_c: bool, extra: &Extra) -> Fleet {
        let postgres = Postgres::start();
        let a = Host::start_with(&postgres, "a", false, extra);
        let init = a.daemon.json(&["fleet", "init"], 0);
        assert_eq!(init["reachable"], true, "fleet init: {init}");
        let b = Host::start_with(&postgres, "b", false, extra);
        let c = Host::start_with(&postgres, "c", relay_c, extra);
        Fleet { postgres, hosts: vec![a, b, c] }
    }

    pub fn host(&self, index: usize) -> &Daemon {
        &self.hosts[index].daemon
    }
}

/// The token of a new key created through `host`.
pub fn create(host: &Daemon, workspace: &str) -> (String, String) {
    let created = host.create(workspace, &["read:all"], &[]);
    let token = created["token"].as_str().expect("a token").to_owned();
    let id = created["id"].as_str().expect("a key id").to_owned();
    (token, id)
}

/// Waits until `host` answers `code` for `token`.
pub fn wait_for_code(host: &Daemon, token: &str, code: &str, what: &str) {
    wait_until(what, || host.verify_code(token, &[]) == code);
}

/// The audit log as `host` shows it, oldest first, without anything host-specific.
pub fn audit(host: &Daemon) -> Vec<Value> {
    let Value::Array(entries) = host.json(&["audit", "--limit", "1000"], 0) else { panic!("audit is a list") };
    entries
}
