//! The host: what the daemon needs from the operating system and the service manager — the clocks,
//! logging, stop and reload signals, the data directory's lock, and systemd's readiness, watchdog and
//! socket activation. The bottom floor: it imports nothing else of the crate.

pub mod clock;
pub mod lockfile;
pub mod logging;
pub mod signals;
pub mod systemd;
