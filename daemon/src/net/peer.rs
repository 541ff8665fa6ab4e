//! Who may talk to the daemon, decided from the peer's credentials (`SO_PEERCRED`).
//!
//! The admin socket admits root, the daemon's own user, and the users and groups listed in `admin_users`
//! and `admin_groups` (a group admits its members by primary or supplementary membership). The verify socket
//! is guarded by its file mode and group; `verify_groups`, when set, narrows it further. Names are resolved
//! to ids when the configuration is loaded; a name that does not exist is logged and ignored.

use std::collections::HashSet;

use keyward_protocol::{users, Actor};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::config::{Config, Principal, Reloadable};
use crate::dispatch::SocketRole;

/// Who is at the other end of `stream` (`SO_PEERCRED`), as the access rules and the audit log name it.
pub fn peer_of(stream: &tokio::net::UnixStream) -> std::io::Result<Actor> {
    let cred = stream.peer_cred()?;
    Ok(Actor { uid: cred.uid(), gid: cred.gid(), pid: cred.pid(), label: None })
}

/// The access rules in force, which a reload replaces, and a generation that changes with each replacement
/// so that an open connection notices one with an atomic load and checks its peer again.
#[derive(Debug)]
pub struct Gatekeeper {
    rules: Reloadable<Gate>,
    generation: AtomicU64,
}

impl Gatekeeper {
    pub fn new(gate: Gate) -> Gatekeeper {
        Gatekeeper { rules: Reloadable::new(gate), generation: AtomicU64::new(0) }
    }

    /// The rules in force.
    pub fn rules(&self) -> Arc<Gate> {
        self.rules.get()
    }

    /// Puts `gate` in force; open connections check their peer against it at their next request.
    pub fn replace(&self, gate: Gate) {
        self.rules.replace(gate);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Changes with every [`Gatekeeper::replace`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether `peer`, admitted to a socket of `role` when the rules were at generation `seen`, is still
    /// admitted. The rules are read again only when a reload has replaced them since (`seen` moves on), so
    /// an open connection pays one atomic load per request.
    pub fn still_admits(&self, role: SocketRole, peer: &Actor, seen: &AtomicU64) -> bool {
        let generation = self.generation();
        // A load and a compare, no read-modify-write: this runs before every request of a connection.
        if seen.load(Ordering::Relaxed) == generation {
            return true;
        }
        seen.store(generation, Ordering::Relaxed);
        self.rules().admits(role, peer)
    }
}

/// The resolved access rules.
#[derive(Clone, Debug, Default)]
pub struct Gate {
    own_uid: u32,
    admin_uids: HashSet<u32>,
    admin_gids: HashSet<u32>,
    verify_gids: Option<HashSet<u32>>,
}

impl Gate {
    /// The rules of `config`, with names resolved now.
    pub fn new(config: &Config) -> Gate {
        Gate {
            own_uid: users::own_uid(),
            admin_uids: config.admin_users.iter().filter_map(|p| resolve(p, Kind::User)).collect(),
            admin_gids: config.admin_groups.iter().filter_map(|p| resolve(p, Kind::Group)).collect(),
            verify_gids: config
                .verify_groups
                .as_ref()
                .map(|list| list.iter().filter_map(|p| resolve(p, Kind::Group)).collect()),
        }
    }

    /// Whether `peer` may use a socket of `role`.
    pub fn admits(&self, role: SocketRole, peer: &Actor) -> bool {
        match role {
            SocketRole::Admin => {
                peer.uid == 0
                    || peer.uid == self.own_uid
                    || self.admin_uids.contains(&peer.uid)
                    || (!self.admin_gids.is_empty() && in_any_group(peer, &self.admin_gids))
            }
            SocketRole::Verify => match &self.verify_gids {
                None => true,
                Some(gids) => peer.uid == 0 || peer.uid == self.own_uid || in_any_group(peer, gids),
            },
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    User,
    Group,
}

fn resolve(principal: &Principal, kind: Kind) -> Option<u32> {
    let name = match principal {
        Principal::Id(id) => return Some(*id),
        Principal::Name(name) => name,
    };
    let id = match kind {
        Kind::User => users::user_id(name),
        Kind::Group => users::group_id(name),
    };
    if id.is_none() {
        tracing::warn!(name, "unknown user or group in the configuration; ignored");
    }
    id
}

/// Whether the peer's primary group or any supplementary group of its user is in `gids`.
fn in_any_group(peer: &Actor, gids: &HashSet<u32>) -> bool {
    gids.contains(&peer.gid) || users::supplementary_groups(peer.uid, peer.gid).iter().any(|g| gids.contains(g))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, gid: u32) -> Actor {
        Actor { uid, gid, pid: None, label: None }
    }

    #[test]
    fn root_and_self_always_pass_the_admin_socket() {
        let gate = Gate::new(&Config::default());
        // SAFETY: getuid has no preconditions.
        let me = unsafe { libc::getuid() };
        assert!(gate.admits(SocketRole::Admin, &peer(0, 0)));
        assert!(gate.admits(SocketRole::Admin, &peer(me, 12345)));
        assert!(!gate.admits(SocketRole::Admin, &peer(54321, 54321)) || me == 54321);
        assert!(gate.admits(SocketRole::Verify, &peer(54321, 54321)), "no verify_groups: the file mode decides");
    }

    #[test]
    fn an_open_connection_reads_the_rules_again_only_after_a_reload() {
        let outsider = peer(5000, 1);
        let gatekeeper = Gatekeeper::new(Gate::new(&Config::default()));
        let seen = AtomicU64::new(gatekeeper.generation());
        assert!(gatekeeper.still_admits(SocketRole::Verify, &outsider, &seen));
        gatekeeper.replace(Gate::new(&Config { verify_groups: Some(vec![Principal::Id(888)]), ..Config::default() }));
        assert!(!gatekeeper.still_admits(SocketRole::Verify, &outsider, &seen), "the reload withdrew it");
        assert_eq!(seen.load(Ordering::Relaxed), gatekeeper.generation(), "checked against the new rules");
        assert!(gatekeeper.still_admits(SocketRole::Verify, &peer(5000, 888), &seen));
    }

    #[test]
    fn listed_users_and_groups_pass() {
        let config = Config {
            admin_users: vec![Principal::Id(4242), Principal::Name("root".into())],
            admin_groups: vec![Principal::Id(777)],
            verify_groups: Some(vec![Principal::Id(888)]),
            ..Config::default()
        };
        let gate = Gate::new(&config);
        assert!(gate.admits(SocketRole::Admin, &peer(4242, 1)));
        assert!(gate.admits(SocketRole::Admin, &peer(5000, 777)), "primary group");
        assert!(!gate.admits(SocketRole::Admin, &peer(5000, 1)));
        assert!(gate.admits(SocketRole::Verify, &peer(5000, 888)));
        assert!(!gate.admits(SocketRole::Verify, &peer(5000, 1)));
        assert!(Gate::new(&Config {
            admin_users: vec![Principal::Name("no-such-user-x".into())],
            ..Config::default()
        })
        .admin_uids
        .is_empty());
    }
}
