//! `keywardd`: parse flags, read the configuration, set up logging and signals, run the daemon.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use keyward_daemon::config::file::{self, ConfigError};
use keyward_daemon::{logging, signals, systemd, Config, Launch, Reload};
use keyward_protocol::{limits, paths, Rate};
use tokio_util::sync::CancellationToken;

/// The keyward API-key daemon.
#[derive(Clone, Debug, Parser)]
#[command(name = "keywardd", version, about)]
struct Args {
    /// Configuration file (default: /etc/keyward/keyward.toml when it exists). Flags and KEYWARD_*
    /// variables override it.
    #[arg(long, env = "KEYWARD_CONFIG")]
    config: Option<PathBuf>,
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

fn parse_time(text: &str) -> Result<i64, String> {
    text.parse::<jiff::Timestamp>()
        .map(|ts| ts.as_second())
        .map_err(|e| format!("expected an RFC 3339 time such as 2026-06-30T00:00:00Z: {e}"))
}

fn parse_plan(text: &str) -> Result<(String, Rate), String> {
    let (name, rate) = limits::parse_named_limit(text).map_err(|e| e.to_string())?;
    limits::check_plan_name(&name).map_err(|e| e.to_string())?;
    Ok((name, rate))
}

impl Args {
    /// The configuration: defaults, then the file, then flags and environment variables. The log level
    /// comes from `KEYWARD_LOG`, else `RUST_LOG`, else the file, else `info`.
    fn config(&self) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        let default_file = PathBuf::from(file::DEFAULT_PATH);
        match &self.config {
            Some(path) => file::load(path, &mut config)?,
            None if default_file.exists() => file::load(&default_file, &mut config)?,
            None => {}
        }
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        if let Some(socket) = &self.socket {
            config.verify_socket = socket.clone();
        }
        if let Some(socket) = &self.admin_socket {
            config.admin_socket = socket.clone();
        }
        if self.legacy_sunset.is_some() {
            config.legacy_sunset = self.legacy_sunset;
        }
        config.plans.extend(self.plans.iter().cloned());
        if let Ok(level) = std::env::var("KEYWARD_LOG").or_else(|_| std::env::var("RUST_LOG")) {
            config.log_level = level;
        }
        Ok(config)
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match args.config() {
        Ok(config) => config,
        Err(error) => return fail(&format!("configuration: {error}")),
    };
    let log = match logging::init(config.log_format, &config.log_level) {
        Ok(handle) => handle,
        Err(error) => return fail(&format!("logging: {error}")),
    };
    // Every file and socket the daemon creates starts private; sockets are widened to their mode after bind.
    // SAFETY: umask only swaps the process's file mode mask; no thread exists yet to race with it.
    unsafe { libc::umask(0o077) };
    let activated = match systemd::take_activated_sockets() {
        Ok(activated) => activated,
        Err(error) => return fail(&error.to_string()),
    };

    let shutdown = CancellationToken::new();
    let requested = Arc::new(tokio::sync::Notify::new());
    if let Err(error) = signals::forward_signals(shutdown.clone(), requested.clone()) {
        return fail(&format!("cannot install signal handlers: {error}"));
    }
    let reload = Reload {
        requested,
        load: Box::new(move || args.config()),
        set_log_level: Box::new(move |level| log.set_level(level)),
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = config.runtime_threads {
        runtime.worker_threads(threads);
    }
    let runtime = match runtime.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => return fail(&format!("cannot start the runtime: {error}")),
    };
    let launch = Launch { config, shutdown, reload: Some(reload), activated };
    match runtime.block_on(keyward_daemon::run_with(launch)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "keywardd cannot start");
            fail(&error.to_string())
        }
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("keywardd: {message}");
    ExitCode::FAILURE
}
