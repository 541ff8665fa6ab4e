//! Signals: SIGINT and SIGTERM start a graceful shutdown; a second one ends the process at once.
//!
//! signal-hook's iterator runs on its own thread and only flips a [`CancellationToken`], which every task
//! of the daemon watches.

use std::io;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tokio_util::sync::CancellationToken;

/// Exit status after a second stop signal cut the drain short (128 + SIGINT, as shells report it).
const FORCED_EXIT: i32 = 130;

/// Cancels `shutdown` on the first SIGINT or SIGTERM; exits on the second.
pub fn forward_stop_signals(shutdown: CancellationToken) -> io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new().name("keywardd-signals".into()).spawn(move || {
        for signal in signals.forever() {
            if shutdown.is_cancelled() {
                tracing::warn!(signal, "second stop signal: exiting without finishing the drain");
                std::process::exit(FORCED_EXIT);
            }
            tracing::info!(signal, "stop signal: finishing in-flight requests");
            shutdown.cancel();
        }
    })?;
    Ok(())
}
