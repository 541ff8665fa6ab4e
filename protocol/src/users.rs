//! Users and groups by name and id, from the system's databases (the reentrant `getpw*_r`/`getgr*_r`
//! calls), shared by the daemon (who may connect, the verify socket's group) and the clients (who may be
//! listening, which group a refused user should join).

use std::ffi::{CStr, CString};

/// Scratch space for the reentrant passwd/group lookups.
const LOOKUP_BUFFER: usize = 16 * 1024;

/// The uid of the user called `name`.
pub fn user_id(name: &str) -> Option<u32> {
    let name = CString::new(name).ok()?;
    let mut entry = std::mem::MaybeUninit::<libc::passwd>::zeroed();
    let mut buffer = vec![0 as libc::c_char; LOOKUP_BUFFER];
    let mut found = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; `found` is non-null only when `entry` was filled.
    let status =
        unsafe { libc::getpwnam_r(name.as_ptr(), entry.as_mut_ptr(), buffer.as_mut_ptr(), buffer.len(), &mut found) };
    // SAFETY: checked that the lookup filled `entry`.
    (status == 0 && !found.is_null()).then(|| unsafe { entry.assume_init() }.pw_uid)
}

/// The gid of the group called `name`.
pub fn group_id(name: &str) -> Option<u32> {
    let name = CString::new(name).ok()?;
    let mut entry = std::mem::MaybeUninit::<libc::group>::zeroed();
    let mut buffer = vec![0 as libc::c_char; LOOKUP_BUFFER];
    let mut found = std::ptr::null_mut();
    // SAFETY: as in `user_id`.
    let status =
        unsafe { libc::getgrnam_r(name.as_ptr(), entry.as_mut_ptr(), buffer.as_mut_ptr(), buffer.len(), &mut found) };
    // SAFETY: checked that the lookup filled `entry`.
    (status == 0 && !found.is_null()).then(|| unsafe { entry.assume_init() }.gr_gid)
}

/// The name of group `gid`.
pub fn group_name(gid: u32) -> Option<String> {
    let mut entry = std::mem::MaybeUninit::<libc::group>::zeroed();
    let mut buffer = vec![0 as libc::c_char; LOOKUP_BUFFER];
    let mut found = std::ptr::null_mut();
    // SAFETY: as in `user_id`.
    let status = unsafe { libc::getgrgid_r(gid, entry.as_mut_ptr(), buffer.as_mut_ptr(), buffer.len(), &mut found) };
    if status != 0 || found.is_null() {
        return None;
    }
    // SAFETY: checked that the lookup filled `entry`; its name points into `buffer`, still alive.
    let name = unsafe { CStr::from_ptr(entry.assume_init().gr_name) };
    Some(name.to_string_lossy().into_owned())
}

/// The uid of a user given by name or as a number (`"keyward"`, `"997"`).
pub fn user_by_name_or_id(text: &str) -> Option<u32> {
    text.parse().ok().or_else(|| user_id(text))
}

/// The groups user `uid` belongs to besides its primary group `primary` (which the list includes).
pub fn supplementary_groups(uid: u32, primary: u32) -> Vec<u32> {
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

/// This process's real uid.
pub fn own_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_found_by_name_and_number() {
        assert_eq!(user_id("root"), Some(0));
        assert_eq!(user_by_name_or_id("root"), Some(0));
        assert_eq!(user_by_name_or_id("4242"), Some(4242));
        assert_eq!(user_id("no-such-user-x"), None);
        assert_eq!(group_id("root"), Some(0));
        assert_eq!(group_name(0).as_deref(), Some("root"));
    }
}
