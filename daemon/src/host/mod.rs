//! The host: what the daemon needs from the operating system and the service manager — the clocks,
//! logging, stop and reload signals, the data directory's lock, and systemd's readiness, watchdog and
//! socket activation. The bottom floor: it imports nothing else of the crate.

pub mod clock;
pub mod lockfile;
pub mod logging;
pub mod signals;
pub mod systemd;

/// This machine's host name (`uname -n`), or `keyward` if it has none that is a valid node id.
pub fn host_name() -> String {
    // SAFETY: uname fills the struct it is given; a zeroed utsname is a valid argument.
    let mut names: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `names` is a valid, writable utsname.
    if unsafe { libc::uname(&mut names) } != 0 {
        return "keyward".into();
    }
    let bytes: Vec<u8> = names.nodename.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    let name: String = String::from_utf8_lossy(&bytes)
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
        .take(64)
        .collect();
    if name.is_empty() {
        "keyward".into()
    } else {
        name
    }
}
