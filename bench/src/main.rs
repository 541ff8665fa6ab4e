//! `keyward-bench`: parse flags and run a benchmark, or serve the echo floor. See `bench/run.sh`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use keyward_bench::load::Phase;
use keyward_bench::scenario::{self, Scenario, Settings};

#[derive(Parser)]
#[command(name = "keyward-bench", about = "Load benchmark of keywardd against an echo floor and Redis")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the scenarios and print the markdown table.
    Run(RunArgs),
    /// Serve the echo floor on a Unix socket (started by `run`; stops with the process).
    EchoServer {
        #[arg(long)]
        socket: PathBuf,
    },
    /// Drive warm verifies against an already running keywardd (e.g. to profile it with `perf record
    /// -p PID`): creates one key on the admin socket, then verifies it for `--seconds`. With `--floor`,
    /// drives an `echo-server` the same way instead, for a side-by-side profile.
    Drive {
        /// The daemon's verify socket (the echo server's socket with `--floor`).
        #[arg(long)]
        socket: PathBuf,
        /// The daemon's admin socket.
        #[arg(long, required_unless_present = "floor")]
        admin_socket: Option<PathBuf>,
        /// Drive the echo floor at `--socket` rather than keywardd.
        #[arg(long)]
        floor: bool,
        /// `conns:N` (N connections, one request outstanding each) or `pipelined:N` (depth N on one).
        #[arg(long, default_value = "conns:32")]
        shape: String,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
    },
    /// Measure fleet mode's targets (issue 18): starts its own PostgreSQL cluster and keywardd hosts, prints
    /// a markdown report.
    Fleet(keyward_bench::fleet::FleetArgs),
    /// What the forward-auth endpoint adds behind nginx (the proxy/ snippets) over nginx alone: starts its
    /// own keywardd, nginx and upstream, prints a markdown report.
    ForwardAuth(keyward_bench::forward_auth::ForwardAuthArgs),
}

#[derive(Args)]
struct RunArgs {
    /// A short run that only checks everything works (small fixtures, 1 s windows).
    #[arg(long)]
    quick: bool,
    /// Where `keywardd` was built (target/release).
    #[arg(long)]
    bin_dir: PathBuf,
    /// A scratch directory on a real disk: sockets, logs, durable data directories.
    #[arg(long)]
    work_dir: PathBuf,
    /// A scratch directory for the large seeded fixtures (default: the work directory).
    #[arg(long)]
    fixture_dir: Option<PathBuf>,
    /// A running Redis's Unix socket; without it the Redis comparison is skipped.
    #[arg(long)]
    redis_socket: Option<PathBuf>,
    /// The Redis server's process id (pinned with the client for the same-CPU measurement).
    #[arg(long)]
    redis_pid: Option<u32>,
    /// A keywardd configuration file (TOML) every daemon of the run starts with, e.g. to rerun a scenario
    /// with `[argon2] workers = 1`. Its data directory and socket settings are overridden.
    #[arg(long)]
    daemon_config: Option<PathBuf>,
    /// Write the table (and notes) to this file as well as printing it.
    #[arg(long)]
    table: Option<PathBuf>,
    /// Only these scenarios, comma-separated: warm, cold, scale, restart, manage.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Seconds of warm-up before each measuring window.
    #[arg(long)]
    warmup: Option<f64>,
    /// Seconds of each measuring window.
    #[arg(long)]
    window: Option<f64>,
    /// Keys of the scale fixture (default 1,000,000; 20,000 with --quick).
    #[arg(long)]
    scale_keys: Option<u64>,
    /// Keys of the restart fixture (default 100,000; 2,000 with --quick).
    #[arg(long)]
    restart_keys: Option<u64>,
    /// Seconds allowed to warm the restart fixture, before and again after the restart (default 40).
    #[arg(long)]
    restart_budget: Option<f64>,
}

impl RunArgs {
    fn settings(&self) -> Result<Settings> {
        let quick = self.quick;
        let pick = |given: Option<f64>, full: f64, short: f64| given.unwrap_or(if quick { short } else { full });
        let count = |given: Option<u64>, full: u64, short: u64| given.unwrap_or(if quick { short } else { full });
        let scenarios = if self.only.is_empty() {
            Scenario::ALL.to_vec()
        } else {
            self.only.iter().map(|name| Scenario::parse(name.trim())).collect::<Result<_>>()?
        };
        Ok(Settings {
            bin_dir: self.bin_dir.clone(),
            work_dir: self.work_dir.clone(),
            fixture_dir: self.fixture_dir.clone().unwrap_or_else(|| self.work_dir.join("fixtures")),
            redis_socket: self.redis_socket.clone(),
            redis_pid: self.redis_pid,
            daemon_config: match &self.daemon_config {
                Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
                None => String::new(),
            },
            phase: Phase {
                warmup: Duration::from_secs_f64(pick(self.warmup, 1.0, 0.3)),
                window: Duration::from_secs_f64(pick(self.window, 4.0, 1.0)),
            },
            scale_keys: count(self.scale_keys, 1_000_000, 20_000),
            scale_hot: if quick { 2_000 } else { 10_000 },
            restart_keys: count(self.restart_keys, 100_000, 2_000),
            restart_budget: Duration::from_secs_f64(pick(self.restart_budget, 40.0, 8.0)),
            list_keys: if quick { 1_000 } else { 10_000 },
            cold_keys: if quick { 20 } else { 200 },
            cold_burst: if quick { 16 } else { 64 },
            victims: if quick { 100 } else { 1_000 },
            scenarios,
        })
    }
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::EchoServer { socket } => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(keyward_bench::echo::serve(&socket)).context("echo server")
        }
        Command::Drive { socket, admin_socket, floor, shape, seconds } => {
            let shape = keyward_bench::shape::Shape::parse(&shape)?;
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let phase = Phase { warmup: Duration::from_millis(500), window: Duration::from_secs_f64(seconds) };
            let line = match admin_socket.filter(|_| !floor) {
                Some(admin_socket) => runtime.block_on(scenario::drive(&socket, &admin_socket, shape, phase))?,
                None => runtime.block_on(scenario::drive_floor(&socket, shape, phase))?,
            };
            println!("{line}");
            Ok(())
        }
        Command::Fleet(args) => {
            let path = args.report.clone();
            let report = keyward_bench::fleet::run(args)?;
            if let Some(path) = &path {
                std::fs::write(path, &report).with_context(|| format!("writing {}", path.display()))?;
            }
            println!("{report}");
            Ok(())
        }
        Command::ForwardAuth(args) => {
            println!("{}", keyward_bench::forward_auth::run(args)?);
            Ok(())
        }
        Command::Run(args) => {
            let settings = args.settings()?;
            let report = scenario::run(settings)?;
            let table = report.markdown();
            if let Some(path) = &args.table {
                std::fs::write(path, &table).with_context(|| format!("writing {}", path.display()))?;
            }
            println!("{table}");
            Ok(())
        }
    }
}
