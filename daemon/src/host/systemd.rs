//! Talking to systemd: readiness and state notifications, the watchdog, and sockets passed by socket
//! activation. Outside systemd (no `NOTIFY_SOCKET`, no `LISTEN_FDS`) every function here does nothing.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

/// Listening sockets handed over by systemd, by their `FileDescriptorName=`.
#[derive(Debug, Default)]
pub struct Activated {
    pub verify: Option<OwnedFd>,
    pub admin: Option<OwnedFd>,
}

/// Why the sockets systemd passed cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    #[error("cannot read the sockets systemd passed: {0}")]
    Unreadable(#[source] std::io::Error),
    #[error("systemd passed a socket named {0:?}; expected `verify` and `admin`")]
    UnknownName(String),
}

/// Takes the sockets systemd passed (`LISTEN_FDS`/`LISTEN_FDNAMES`, names `verify` and `admin`) and clears
/// the variables so no child inherits them. Call before any thread starts.
pub fn take_activated_sockets() -> Result<Activated, ActivationError> {
    let passed: Vec<(RawFd, String)> =
        sd_notify::listen_fds_with_names().map_err(ActivationError::Unreadable)?.collect();
    for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        // SAFETY (edition 2021: safe fn): called from main before any thread exists.
        std::env::remove_var(name);
    }
    let mut activated = Activated::default();
    for (fd, name) in passed {
        // SAFETY: systemd passed us this descriptor and nothing else owns it.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        match name.as_str() {
            "verify" => activated.verify = Some(owned),
            "admin" => activated.admin = Some(owned),
            other => return Err(ActivationError::UnknownName(other.to_owned())),
        }
    }
    Ok(activated)
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!(%error, "cannot notify systemd");
    }
}

/// The sockets listen and the index is loaded.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload began; [`ready`] ends it.
pub fn reloading() {
    send(&[NotifyState::Reloading, NotifyState::Status("reloading the configuration")]);
}

/// Shutdown began.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("draining")]);
}

/// Pings the watchdog at half its interval until `shutdown`, if the unit sets `WatchdogSec=`.
pub async fn keep_watchdog_fed(shutdown: CancellationToken) {
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    let mut ticks = tokio::time::interval((interval / 2).max(Duration::from_millis(100)));
    loop {
        tokio::select! {
            _ = ticks.tick() => send(&[NotifyState::Watchdog]),
            _ = shutdown.cancelled() => return,
        }
    }
}
