//! `keywardd`: parse flags, set up logging and signals, run the daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use keyward_daemon::{signals, Config};
use keyward_protocol::{paths, Rate};
use tokio_util::sync::CancellationToken;

/// The keyward API-key daemon.
#[derive(Debug, Parser)]
#[command(name = "keywardd", version, about)]
struct Args {
    /// Data directory (default: $XDG_STATE_HOME/keyward, else ~/.local/state/keyward).
    #[arg(long, env = paths::ENV_DATA_DIR)]
    data_dir: Option<PathBuf>,
    /// Verify socket for app servers (default: $XDG_RUNTIME_DIR/keyward/verify.sock, else /tmp/keyward-$UID/verify.sock).
    #[arg(long, env = paths::ENV_SOCKET)]
    socket: Option<PathBuf>,
    /// Admin socket for operators (default: $XDG_RUNTIME_DIR/keyward/admin.sock, else /tmp/keyward-$UID/admin.sock).
    #[arg(long, env = paths::ENV_ADMIN_SOCKET)]
    admin_socket: Option<PathBuf>,
    /// From this RFC 3339 time on, legacy personal keys answer LEGACY_SUNSET.
    #[arg(long, env = "KEYWARD_LEGACY_SUNSET", value_parser = parse_time)]
    legacy_sunset: Option<i64>,
    /// Define or redefine a rate plan, e.g. --plan paid=1000/min --plan enterprise=20000/min (repeatable;
    /// the built-in plans are free=100/min and paid=1000/min).
    #[arg(long = "plan", value_name = "NAME=N/PERIOD", value_parser = parse_plan)]
    plans: Vec<(String, Rate)>,
}

fn parse_plan(text: &str) -> Result<(String, Rate), String> {
    let (name, rate) = keyward_protocol::limits::parse_named_limit(text).map_err(|e| e.to_string())?;
    let word = !name.is_empty() && name.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-');
    if word {
        Ok((name, rate))
    } else {
        Err(format!("plan name {name:?} must be a lowercase word"))
    }
}

fn parse_time(text: &str) -> Result<i64, String> {
    text.parse::<jiff::Timestamp>()
        .map(|ts| ts.as_second())
        .map_err(|e| format!("expected an RFC 3339 time such as 2026-06-30T00:00:00Z: {e}"))
}

impl Args {
    fn into_config(self) -> Config {
        let mut config = Config::new(
            self.data_dir.unwrap_or_else(paths::default_data_dir),
            self.socket.unwrap_or_else(paths::default_verify_socket),
            self.admin_socket.unwrap_or_else(paths::default_admin_socket),
        );
        config.legacy_sunset = self.legacy_sunset;
        config.plans.extend(self.plans);
        config
    }
}

/// The log filter: `KEYWARD_LOG`, else `RUST_LOG`, else `info`. The storage engine's own logging is capped at
/// warnings whatever is asked: at trace level it would describe stored pages, and stored values include
/// hashes, which never belong in a log.
fn log_filter() -> tracing_subscriber::EnvFilter {
    let wanted = std::env::var("KEYWARD_LOG").or_else(|_| std::env::var("RUST_LOG")).unwrap_or_else(|_| "info".into());
    let filter = tracing_subscriber::EnvFilter::try_new(&wanted).unwrap_or_else(|error| {
        eprintln!("keywardd: ignoring the log filter {wanted:?}: {error}");
        tracing_subscriber::EnvFilter::new("info")
    });
    filter.add_directive("sled=warn".parse().expect("a valid directive"))
}

fn main() -> ExitCode {
    let config = Args::parse().into_config();
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(log_filter()).with_ansi(terminal).with_writer(std::io::stderr).init();
    // Every file and socket the daemon creates starts private; sockets are widened to their mode after bind.
    // SAFETY: umask only swaps the process's file mode mask; no thread exists yet to race with it.
    unsafe { libc::umask(0o077) };

    let shutdown = CancellationToken::new();
    if let Err(error) = signals::forward_stop_signals(shutdown.clone()) {
        eprintln!("keywardd: cannot install signal handlers: {error}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("keywardd: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(keyward_daemon::run(config, shutdown)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "keywardd cannot start");
            eprintln!("keywardd: {error}");
            ExitCode::FAILURE
        }
    }
}
