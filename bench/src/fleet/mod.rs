//! `keyward-bench fleet`: the fleet benchmark targets of issue 18, measured on this machine against a
//! real PostgreSQL and real `keywardd` hosts, printed as a markdown report with each figure's target and
//! whether it was met.
//!
//! The run starts its own throw-away cluster ([`cluster`]: `initdb` + `postgres` on a Unix socket in the
//! run's directory) and, per part, a database and hosts of its own ([`host`]: a release `keywardd` each,
//! with its own data directory, sockets and node id, the first one running `fleet init`):
//!
//! 1. [`revocation`]: a key revoked on host a, the first REVOKED on b and c, under ~1k verifies/s per
//!    host; with notifications and poll-only.
//! 2. [`verify`]: warm verifies, a daemon on its own against a fleet host, A/B/A/B, and again while 100
//!    changes/s flow.
//! 3. [`cut`]: host c's engine link cut for 30 s (a [`relay`] in front of it) while a makes changes, then
//!    the time to converge; the postmaster SIGKILLed and restarted, then the time until management works
//!    and its change is seen everywhere.
//! 4. [`join`]: a new host joining a fleet of 100,000 keys, from process start to answering.
//! 5. [`limits`]: escrowed credits spent from three hosts at once (and with one killed), and a shared
//!    100/min limit over three hosts counted in every 60 s window.
//!
//! Processes are spawned from the main thread only (see [`crate::process`]); load runs on a tokio
//! runtime and on plain threads.

// The parts are private; this page is their map, and `cargo doc --document-private-items` checks its links.
#![allow(rustdoc::private_intra_doc_links)]

mod cluster;
mod cut;
mod host;
mod join;
mod limits;
mod relay;
mod revocation;
mod table;
mod verify;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use tokio::runtime::Runtime;

use self::cluster::Cluster;
use self::table::Section;

/// The `fleet` subcommand's flags.
#[derive(clap::Args, Clone, Debug)]
pub struct FleetArgs {
    /// The `keywardd` to run (a release build); default: the one next to this executable.
    #[arg(long)]
    pub keywardd: Option<PathBuf>,
    /// PostgreSQL's server binaries (`initdb`, `postgres`, `psql`); default: the newest
    /// /usr/lib/postgresql/*/bin.
    #[arg(long)]
    pub pg_bin_dir: Option<PathBuf>,
    /// A scratch directory (data directories, sockets, logs, the cluster); default: a new temporary
    /// directory, removed at the end unless --keep.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Keep the scratch directory (logs) after the run.
    #[arg(long)]
    pub keep: bool,
    /// Only these parts, comma-separated: revocation, verify, cut, join, limits.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Revocations measured with notifications on.
    #[arg(long, default_value_t = 200)]
    pub repeats: usize,
    /// Revocations measured poll-only (each waits up to a poll interval).
    #[arg(long, default_value_t = 40)]
    pub poll_repeats: usize,
    /// Background verifies per second per host during the revocation part.
    #[arg(long, default_value_t = 1000)]
    pub driver_rate: u64,
    /// Microseconds each revocation watcher pauses between verifies with notifications on (0: a tight
    /// loop; each watch lasts a few milliseconds).
    #[arg(long, default_value_t = 0)]
    pub watch_pause_us: u64,
    /// The same poll-only, where each watch lasts up to a poll interval: two clients spinning for that long
    /// starve the hosts and PostgreSQL of this 2-core machine's CPU.
    #[arg(long, default_value_t = 200)]
    pub poll_watch_pause_us: u64,
    /// Seconds of each warm-verify window (after a 1 s warm-up).
    #[arg(long, default_value_t = 3.0)]
    pub verify_window: f64,
    /// A/B rounds of the warm-verify comparison.
    #[arg(long, default_value_t = 3)]
    pub verify_rounds: usize,
    /// Leave the warm-verify comparison unpinned (by default each window pins the measured daemon to CPU 1
    /// and the benchmark to CPU 0).
    #[arg(long)]
    pub verify_unpinned: bool,
    /// Where host b and PostgreSQL run during the warm-verify windows: `0` (with the load generator), `1`
    /// (with the measured daemon) or `any`.
    #[arg(long, default_value = "0")]
    pub rest_cpu: String,
    /// Nice value of the benchmark's load threads during the warm-verify windows (so that host b and
    /// PostgreSQL, sharing CPU 0 with them, keep up with the changes).
    #[arg(long, default_value_t = 0)]
    pub generator_nice: i32,
    /// Connections (one request outstanding each) of the warm-verify comparison.
    #[arg(long, default_value_t = 8)]
    pub verify_connections: usize,
    /// Changes per second flowing during the third warm-verify measurement.
    #[arg(long, default_value_t = 100)]
    pub change_rate: u64,
    /// Seconds host c's link is cut.
    #[arg(long, default_value_t = 30.0)]
    pub cut_seconds: f64,
    /// Keys of the fleet a new host joins.
    #[arg(long, default_value_t = 100_000)]
    pub join_keys: u64,
    /// Seconds of the shared-limit run (at least 60 to count a whole window).
    #[arg(long, default_value_t = 70.0)]
    pub limit_seconds: f64,
    /// Verifies per second per host of the shared-limit run (the limit is 100/min fleet-wide).
    #[arg(long, default_value_t = 20)]
    pub limit_demand: u64,
    /// A line to print under the report's heading (e.g. which daemon build was measured).
    #[arg(long)]
    pub note: Option<String>,
    /// Write the report to this file as well as printing it.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

/// A part of the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Revocation,
    Verify,
    Cut,
    Join,
    Limits,
}

impl Part {
    pub const ALL: [Part; 5] = [Part::Revocation, Part::Verify, Part::Cut, Part::Join, Part::Limits];

    fn parse(name: &str) -> Result<Part> {
        Ok(match name {
            "revocation" => Part::Revocation,
            "verify" => Part::Verify,
            "cut" => Part::Cut,
            "join" => Part::Join,
            "limits" => Part::Limits,
            other => bail!("unknown part {other:?}: expected revocation, verify, cut, join or limits"),
        })
    }

    fn title(self) -> &'static str {
        match self {
            Part::Revocation => "1. Revocation propagation",
            Part::Verify => "2. Warm verify, fleet on vs off",
            Part::Cut => "3. Convergence after a cut and after an engine restart",
            Part::Join => "4. A new host joins",
            Part::Limits => "5. Shared rate limits and escrowed credits",
        }
    }
}

/// What every part shares.
pub struct Run {
    pub args: FleetArgs,
    /// Where `keywardd` is.
    pub bin_dir: PathBuf,
    /// The run's scratch directory.
    pub root: PathBuf,
    pub cluster: Option<Cluster>,
    pub rt: Runtime,
    /// The lookup key every host of the run shares (`lookup_key_file`).
    pub lookup_key: PathBuf,
}

/// Runs the chosen parts and returns the report (markdown).
pub fn run(args: FleetArgs) -> Result<String> {
    let started = Instant::now();
    let parts = if args.only.is_empty() {
        Part::ALL.to_vec()
    } else {
        args.only.iter().map(|name| Part::parse(name.trim())).collect::<Result<Vec<_>>>()?
    };
    let keywardd = match &args.keywardd {
        Some(path) => path.clone(),
        None => std::env::current_exe().context("the benchmark's own path")?.with_file_name("keywardd"),
    };
    if keywardd.file_name().and_then(|name| name.to_str()) != Some("keywardd") || !keywardd.is_file() {
        bail!(
            "{}: not a keywardd binary (build it with `cargo build --release -p keyward-daemon`)",
            keywardd.display()
        );
    }
    let bin_dir = keywardd.parent().context("keywardd's directory")?.to_owned();
    let pg_bins = match &args.pg_bin_dir {
        Some(dir) => dir.clone(),
        None => cluster::default_bin_dir()
            .context("no PostgreSQL server in /usr/lib/postgresql/*/bin (apt-get install postgresql)")?,
    };
    let temp = match &args.work_dir {
        Some(_) => None,
        None => Some(tempfile::Builder::new().prefix("kwfleet").tempdir().context("a scratch directory")?),
    };
    let root = match (&args.work_dir, &temp) {
        (Some(dir), _) => dir.clone(),
        (None, Some(temp)) => temp.path().to_owned(),
        (None, None) => unreachable!("a temporary directory when none was given"),
    };
    std::fs::create_dir_all(&root)?;
    cluster::set_mode(&root, 0o755)?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    eprintln!("keyward-bench fleet: starting PostgreSQL in {}", root.display());
    let cluster = Cluster::start(&root.join("pg"), &pg_bins)?;
    let version = cluster.psql("postgres", "SHOW server_version").unwrap_or_else(|e| format!("? ({e})"));
    let lookup_key = root.join("lookup.key");
    keyward_daemon::internals::keyfile::load_or_create(&lookup_key).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut run = Run { args: args.clone(), bin_dir, root: root.clone(), cluster: Some(cluster), rt, lookup_key };

    let mut sections = Vec::new();
    for part in &parts {
        eprintln!("keyward-bench fleet: part {} ({:.0} s into the run)", part.title(), started.elapsed().as_secs_f64());
        let outcome = match part {
            Part::Revocation => revocation::run(&mut run),
            Part::Verify => verify::run(&mut run).map(|section| vec![section]),
            Part::Cut => cut::run(&mut run),
            Part::Join => join::run(&mut run).map(|section| vec![section]),
            Part::Limits => limits::run(&mut run),
        };
        match outcome {
            Ok(done) => sections.extend(done),
            Err(error) => {
                let mut section = Section::new(part.title());
                section.note(format!("**the part failed**: {error:#}"));
                sections.push(section);
            }
        }
    }

    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut out = String::from("## Fleet benchmark (`keyward-bench fleet`)\n\n");
    out.push_str(&format!(
        "{cpus} CPUs; PostgreSQL {version} (a throw-away cluster on a Unix socket, fsync on); keywardd {}; \
         parts: {}; the whole run took {:.0} s.\n\n",
        keywardd.display(),
        parts.iter().map(|p| format!("{p:?}").to_lowercase()).collect::<Vec<_>>().join(", "),
        started.elapsed().as_secs_f64()
    ));
    if let Some(note) = &args.note {
        out.push_str(&format!("{note}\n\n"));
    }
    for section in &sections {
        out.push_str(&section.markdown());
    }
    drop(run);
    if args.keep {
        if let Some(temp) = temp {
            eprintln!("keyward-bench fleet: kept {}", temp.keep().display());
        }
    }
    Ok(out)
}
