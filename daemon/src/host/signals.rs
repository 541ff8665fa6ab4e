//! Signals: SIGINT and SIGTERM start a graceful shutdown (a second one ends the process at once); SIGHUP
//! asks for a configuration reload.
//!
//! signal-hook's iterator runs on its own thread and only flips a [`CancellationToken`], which every task
//! of the daemon watches, or wakes the reload task through a [`Notify`].

use std::io;

use std::sync::Arc;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Exit status after a second stop signal cut the drain short (128 + SIGINT, as shells report it).
const FORCED_EXIT: i32 = 130;

/// Cancels `shutdown` on the first SIGINT or SIGTERM (exits on the second) and wakes `reload` on SIGHUP.
pub fn forward_signals(shutdown: CancellationToken, reload: Arc<Notify>) -> io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::Builder::new().name("keywardd-signals".into()).spawn(move || {
        for signal in signals.forever() {
            if signal == SIGHUP {
                tracing::info!("SIGHUP: reloading the configuration");
                reload.notify_one();
                continue;
            }
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
