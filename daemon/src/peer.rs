//! Who may talk to the daemon, decided from the peer's credentials (`SO_PEERCRED`).
//!
//! The admin socket admits root, the daemon's own user, and the users and groups listed in `admin_users`
//! and `admin_groups` (a group admits its members by primary or supplementary membership). The verify socket
//! is guarded by its file mode and group; `verify_groups`, when set, narrows it further. Names are resolved
//! to ids when the configuration is loaded; a name that does not exist is logged and ignored.

use std::collections::HashSet;
use std::ffi::{CStr, CString};

use keyward_protocol::Actor;

use crate::config::{Config, Principal};
use crate::service::SocketRole;

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
            // SAFETY: getuid has no preconditions.
            own_uid: unsafe { libc::getuid() },
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
    let id = CString::new(name.as_str()).ok().and_then(|c_name| match kind {
        Kind::User => user_id(&c_name),
        Kind::Group => group_id(&c_name),
    });
    if id.is_none() {
        tracing::warn!(name, "unknown user or group in the configuration; ignored");
    }
    id
}

/// Scratch space for the reentrant passwd/group lookups.
const LOOKUP_BUFFER: usize = 16 * 1024;

fn user_id(name: &CStr) -> Option<u32> {
    let mut entry = std::mem::MaybeUninit::<libc::passwd>::zeroed();
    let mut buffer = vec![0 as libc::c_char; LOOKUP_BUFFER];
    let mut found = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; `found` is non-null only when `entry` was filled.
    let status =
        unsafe { libc::getpwnam_r(name.as_ptr(), entry.as_mut_ptr(), buffer.as_mut_ptr(), buffer.len(), &mut found) };
    // SAFETY: checked that the lookup filled `entry`.
    (status == 0 && !found.is_null()).then(|| unsafe { entry.assume_init() }.pw_uid)
}

fn group_id(name: &CStr) -> Option<u32> {
    let mut entry = std::mem::MaybeUninit::<libc::group>::zeroed();
    let mut buffer = vec![0 as libc::c_char; LOOKUP_BUFFER];
    let mut found = std::ptr::null_mut();
    // SAFETY: as in `user_id`.
    let status =
        unsafe { libc::getgrnam_r(name.as_ptr(), entry.as_mut_ptr(), buffer.as_mut_ptr(), buffer.len(), &mut found) };
    // SAFETY: checked that the lookup filled `entry`.
    (status == 0 && !found.is_null()).then(|| unsafe { entry.assume_init() }.gr_gid)
}

/// Whether the peer's primary group or any supplementary group of its user is in `gids`.
fn in_any_group(peer: &Actor, gids: &HashSet<u32>) -> bool {
    gids.contains(&peer.gid) || supplementary_groups(peer.uid, peer.gid).iter().any(|g| gids.contains(g))
}

fn supplementary_groups(uid: u32, primary: u32) -> Vec<u32> {
    let mut entry = std::mem::MaybeUninit::<libc::passwd>::zeroed();
    let mut buffer = vec![0 as libc::c_char; LOOKUP_BUFFER];
    let mut found = std::ptr::null_mut();
    // SAFETY: as in `user_id`.
    let status = unsafe { libc::getpwuid_r(uid, entry.as_mut_ptr(), buffer.as_mut_ptr(), buffer.len(), &mut found) };
    if status != 0 || found.is_null() {
        return Vec::new();
    }
    // SAFETY: checked that the lookup filled `entry`; its name points into `buffer`, still alive.
    let name = unsafe { entry.assume_init() }.pw_name;
    let mut groups = vec![0 as libc::gid_t; 64];
    loop {
        let mut count = groups.len() as libc::c_int;
        // SAFETY: `name` is a valid C string and `groups` holds `count` entries.
        let status = unsafe { libc::getgrouplist(name, primary, groups.as_mut_ptr(), &mut count) };
        if status >= 0 {
            groups.truncate(count as usize);
            return groups;
        }
        if groups.len() >= 65_536 {
            return Vec::new();
        }
        groups.resize((count as usize).max(groups.len() * 2), 0);
    }
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
