//! The scenarios of a run and what they share: settings, the runtime, the echo server, the report.
//!
//! Scenarios run one after another, each on its own daemon and data directory: `warm` (floor, keyward and
//! Redis under every shape), `cold` (first verifies after a start, and the flood beside its control on the
//! echo floor), `scale` (a million keys), `restart` (warm-up after a restart) and `manage` (create, revoke,
//! list). A scenario that fails leaves a `skipped` row with its error and the run goes on.
//!
//! The orchestration is synchronous on the main thread (processes are spawned from it, see
//! [`crate::process`]); the load itself runs on a multi-thread tokio runtime through `block_on`.

mod cold;
mod manage;
mod restart;
mod scale;
mod warm;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};
use tokio::runtime::Runtime;

use crate::load::{Measurement, Phase};
use crate::process::{self, Daemon, Spawned};
use crate::report::{self, Report, Row, Verdict};
use crate::shape::Shape;

/// A scenario of the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    Warm,
    Cold,
    Scale,
    Restart,
    Manage,
}

impl Scenario {
    pub const ALL: [Scenario; 5] =
        [Scenario::Warm, Scenario::Cold, Scenario::Scale, Scenario::Restart, Scenario::Manage];

    pub fn parse(name: &str) -> Result<Scenario> {
        Ok(match name {
            "warm" => Scenario::Warm,
            "cold" => Scenario::Cold,
            "scale" => Scenario::Scale,
            "restart" => Scenario::Restart,
            "manage" => Scenario::Manage,
            other => bail!("unknown scenario {other:?}: expected warm, cold, scale, restart or manage"),
        })
    }

    fn title(self) -> &'static str {
        match self {
            Scenario::Warm => "1–3. Warm verify",
            Scenario::Cold => "4. Cold verify and flood",
            Scenario::Scale => "5. Scale",
            Scenario::Restart => "6. Restart warm-up",
            Scenario::Manage => "7. Management",
        }
    }
}

/// Everything a run is told.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where `keywardd` is.
    pub bin_dir: PathBuf,
    /// Sockets, logs and the durable data directories (a real disk: creates and revokes fsync here).
    pub work_dir: PathBuf,
    /// Data directories of the large seeded fixtures (a tmpfs when there is one).
    pub fixture_dir: PathBuf,
    /// A running Redis to compare with; `None` skips the peer.
    pub redis_socket: Option<PathBuf>,
    /// Its process id, to pin it for the same-CPU measurement (unpinned there when unknown).
    pub redis_pid: Option<u32>,
    /// The configuration (TOML) every daemon starts with; empty for the defaults.
    pub daemon_config: String,
    /// Warm-up and measuring window of every load shape.
    pub phase: Phase,
    /// Keys of the scale fixture, and how many of them the random-key traffic goes over.
    pub scale_keys: u64,
    pub scale_hot: u64,
    /// Keys of the restart fixture, and the time allowed to warm them before and after the restart.
    pub restart_keys: u64,
    pub restart_budget: Duration,
    /// Keys of the listed workspace.
    pub list_keys: u64,
    /// Distinct keys verified one at a time, and at once, just after a start.
    pub cold_keys: u64,
    pub cold_burst: u64,
    /// Valid key ids the flood sends wrong secrets for.
    pub victims: u64,
    pub scenarios: Vec<Scenario>,
}

/// Where a daemon keeps its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    Disk,
    Fixture,
}

/// A run in progress.
pub struct Bench {
    pub settings: Settings,
    pub rt: Runtime,
    pub echo_socket: PathBuf,
    _echo: Spawned,
    pub report: Report,
}

impl Bench {
    /// Starts the echo server the floor figures come from.
    pub fn new(settings: Settings) -> Result<Bench> {
        std::fs::create_dir_all(&settings.work_dir)?;
        std::fs::create_dir_all(&settings.fixture_dir)?;
        let echo_socket = settings.work_dir.join("echo.sock");
        let echo = process::start_echo(&echo_socket)?;
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        Ok(Bench { settings, rt, echo_socket, _echo: echo, report: Report::default() })
    }

    /// A daemon named `name` (not started) keeping its data on `storage`, configured with the run's
    /// daemon configuration.
    pub fn daemon(&self, name: &str, storage: Storage) -> Result<Daemon> {
        let root = self.settings.work_dir.join(name);
        let data = match storage {
            Storage::Disk => root.join("data"),
            Storage::Fixture => self.settings.fixture_dir.join(name),
        };
        Daemon::new(&self.settings.bin_dir, &root, &data, &self.settings.daemon_config)
    }

    /// The echo server's process id.
    pub fn echo_pid(&self) -> u32 {
        self._echo.pid()
    }

    /// The echo floor under `shape`, measured now.
    pub fn floor(&self, shape: crate::shape::Shape) -> Result<Measurement> {
        self.rt.block_on(crate::shape::floor(&self.echo_socket, shape, self.settings.phase))
    }
}

/// Runs the chosen scenarios and returns the report.
pub fn run(settings: Settings) -> Result<Report> {
    let scenarios = settings.scenarios.clone();
    let mut bench = Bench::new(settings)?;
    for scenario in scenarios {
        eprintln!("keyward-bench: scenario {}", scenario.title());
        let outcome = match scenario {
            Scenario::Warm => warm::run(&mut bench),
            Scenario::Cold => cold::run(&mut bench),
            Scenario::Scale => scale::run(&mut bench),
            Scenario::Restart => restart::run(&mut bench),
            Scenario::Manage => manage::run(&mut bench),
        };
        if let Err(error) = outcome {
            bench.report.row(Row {
                scenario: scenario.title().to_owned(),
                measure: "the whole scenario".to_owned(),
                verdict: Some(Verdict::Skipped(format!("failed: {error:#}"))),
                ..Row::default()
            });
        }
    }
    Ok(std::mem::take(&mut bench.report))
}

/// Creates a key on a running daemon, verifies it once, then drives warm verifies of it under `shape`;
/// returns a one-line summary. For profiling a daemon started by hand.
pub async fn drive(verify_socket: &Path, admin_socket: &Path, shape: Shape, phase: Phase) -> Result<String> {
    let admin = crate::shape::keyward_client(admin_socket, 1).await?;
    let created = admin.create(crate::fixture::create_request("acme", "bench drive key")?).await?;
    let request = crate::verifier::request(created.token);
    let measured = crate::shape::keyward(verify_socket, shape, phase, &request).await?;
    Ok(summary(shape, &measured))
}

/// Drives the echo floor at `socket` under `shape`, as [`drive`] drives a daemon.
pub async fn drive_floor(socket: &Path, shape: Shape, phase: Phase) -> Result<String> {
    Ok(summary(shape, &crate::shape::floor(socket, shape, phase).await?))
}

/// One line: the shape, throughput, failures and latency percentiles.
fn summary(shape: Shape, measured: &Measurement) -> String {
    format!(
        "{}: {} ({} failures), latency p50 / p99 / p99.9 {}",
        shape.label(),
        report::rate(measured.throughput()),
        measured.failures,
        percentiles(measured)
    )
}

/// Failures in a measurement, as a note (nothing when there were none).
fn note_failures(report: &mut Report, what: &str, measured: &Measurement) {
    if measured.failures > 0 {
        report.note(format!(
            "{what}: {} of {} requests did not get the expected answer",
            measured.failures, measured.requests
        ));
    }
}

/// `p50 / p99 / p99.9` of a measurement.
fn percentiles(m: &Measurement) -> String {
    report::latencies(&[m.quantile(0.5), m.quantile(0.99), m.quantile(0.999)])
}
