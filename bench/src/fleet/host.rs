//! Fleet hosts: a real `keywardd` with a `[fleet]` section, its own data directory, sockets and node id
//! ([`crate::process::Daemon`] does the starting and stopping), optionally behind a [`Relay`]; a fleet of
//! them; and the calls every part makes on them (create keys, wait for a code, background verify load).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use keyward_client::{BlockingClient, Client, Secret, StatsReport, VerifyCode};
use keyward_protocol::FleetFigures;
use tokio::runtime::Runtime;

use super::relay::Relay;
use super::Run;
use crate::fixture::create_request;
use crate::process::Daemon;
use crate::verifier;

/// A cheap Argon2 cost, for the parts where first-verify hashing would otherwise dominate what is
/// measured (seeding 100,000 keys, 150 first verifies right after a cut). The stored hash carries its
/// cost, so every host verifies those keys at that cost.
pub const CHEAP_ARGON2: &str = "[argon2]\nmemory_kib = 256\niterations = 1\nparallelism = 1\n";

/// A fleet host's configuration file: the fleet's lookup key (every host needs the same one, as an
/// operator copies `lookup.key` to each), the tables in `top` (e.g. [`CHEAP_ARGON2`], `[plans]`), then the
/// `[fleet]` section of node `node` with `fleet_lines` appended to it.
pub fn fleet_config(
    run: &Run,
    top: &str,
    conninfo: &str,
    node: &str,
    notify: bool,
    poll_interval_ms: u64,
    fleet_lines: &str,
) -> String {
    let mut text = format!("lookup_key_file = \"{}\"\n{top}", run.lookup_key.display());
    text.push_str(&format!(
        "[fleet]\nengine = \"{conninfo}\"\nnode_id = \"{node}\"\npoll_interval_ms = {poll_interval_ms}\n"
    ));
    if !notify {
        text.push_str("notify = false\n");
    }
    text.push_str(fleet_lines);
    text
}

/// A key created through the API.
#[derive(Clone)]
pub struct Key {
    pub id: String,
    pub token: Secret,
}

/// One host of a fleet (or a daemon on its own).
pub struct Host {
    pub name: String,
    pub daemon: Daemon,
    pub relay: Option<Relay>,
}

impl Host {
    /// Starts `keywardd` named `name` with its files under `root` and configuration `config`.
    pub fn start(run: &Run, root: &Path, name: &str, config: &str, relay: Option<Relay>) -> Result<Host> {
        let mut daemon = Daemon::new(&run.bin_dir, root, &root.join("data"), config)?;
        daemon.start().with_context(|| format!("starting host {name}"))?;
        Ok(Host { name: name.to_owned(), daemon, relay })
    }

    pub fn verify_socket(&self) -> PathBuf {
        self.daemon.verify_socket()
    }

    pub fn admin_socket(&self) -> PathBuf {
        self.daemon.admin_socket()
    }

    /// A blocking client of the admin socket with `timeout` per request.
    pub fn admin(&self, timeout: Duration) -> Result<BlockingClient> {
        BlockingClient::connect_with_timeout(self.admin_socket(), timeout)
            .with_context(|| format!("connecting to host {}'s admin socket", self.name))
    }

    /// A blocking client of the verify socket (one connection).
    pub fn verifier(&self) -> Result<BlockingClient> {
        BlockingClient::connect_with_timeout(self.verify_socket(), Duration::from_secs(5))
            .with_context(|| format!("connecting to host {}'s verify socket", self.name))
    }

    pub fn stats(&self) -> Result<StatsReport> {
        Ok(self.admin(Duration::from_secs(5))?.stats()?)
    }

    /// The host's fleet figures (`keyward stats`).
    pub fn fleet(&self) -> Result<FleetFigures> {
        self.stats()?.fleet.ok_or_else(|| anyhow!("host {} reports no fleet figures", self.name))
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        self.daemon.log_tail()
    }

    pub fn stop(&mut self) {
        if let Err(error) = self.daemon.stop() {
            eprintln!("keyward-bench: stopping host {}: {error:#}", self.name);
        }
    }
}

/// Hosts sharing one engine database.
pub struct Fleet {
    pub hosts: Vec<Host>,
}

/// How the hosts of a fleet are configured.
pub struct FleetPlan<'a> {
    /// A directory of the run for this fleet.
    pub root: PathBuf,
    /// The database (created here).
    pub database: &'a str,
    pub nodes: &'a [&'a str],
    pub notify: bool,
    pub poll_interval_ms: u64,
    /// Tables for every host's file (e.g. [`CHEAP_ARGON2`]), and lines of its `[fleet]` section.
    pub top: &'a str,
    pub fleet_lines: &'a str,
    /// Whether the last node reaches the engine through a [`Relay`].
    pub relay_last: bool,
}

impl Fleet {
    /// Creates the database, starts the first node and runs `fleet init` on it (an empty store: a new
    /// fleet), then starts the others.
    pub fn start(run: &Run, plan: &FleetPlan<'_>) -> Result<Fleet> {
        let cluster = run.cluster.as_ref().context("no cluster")?;
        cluster.create_database(plan.database)?;
        let mut hosts: Vec<Host> = Vec::new();
        for (i, node) in plan.nodes.iter().enumerate() {
            let root = plan.root.join(node);
            let relay = if plan.relay_last && i + 1 == plan.nodes.len() {
                Some(Relay::start(&root.join("pg"), cluster.port(), cluster.socket_path())?)
            } else {
                None
            };
            let socket_dir = relay.as_ref().map_or_else(|| cluster.socket_dir().to_owned(), |r| r.dir().to_owned());
            let conninfo = cluster.conninfo_via(&socket_dir, plan.database);
            let config =
                fleet_config(run, plan.top, &conninfo, node, plan.notify, plan.poll_interval_ms, plan.fleet_lines);
            let host = Host::start(run, &root, node, &config, relay)?;
            if i == 0 {
                let report = host.admin(Duration::from_secs(60))?.fleet_init().context("fleet init")?;
                if !report.reachable {
                    bail!("fleet init on {node}: the engine is unreachable ({:?})", report.problem);
                }
            }
            hosts.push(host);
        }
        Ok(Fleet { hosts })
    }

    pub fn host(&self, name: &str) -> &Host {
        self.hosts.iter().find(|host| host.name == name).expect("a host of this fleet")
    }

    pub fn stop(&mut self) {
        for host in &mut self.hosts {
            host.stop();
        }
    }

    /// Every host's log tail, for a failure's report.
    pub fn logs(&self) -> String {
        self.hosts.iter().map(|host| format!("--- host {} log:\n{}\n", host.name, host.log_tail())).collect()
    }
}

/// Creates `count` keys in `workspace` through the admin socket `admin`, `concurrency` at a time.
pub fn create_keys(rt: &Runtime, admin: &Path, workspace: &str, count: usize, concurrency: usize) -> Result<Vec<Key>> {
    rt.block_on(async {
        let client =
            Client::builder(admin).pool_size(concurrency).request_timeout(Duration::from_secs(30)).connect().await?;
        let mut tasks = Vec::new();
        for w in 0..concurrency {
            let client = client.clone();
            let mine: Vec<usize> = (w..count).step_by(concurrency).collect();
            let workspace = workspace.to_owned();
            tasks.push(tokio::spawn(async move {
                let mut keys = Vec::new();
                for n in mine {
                    let created = client.create(create_request(&workspace, &format!("fleet bench {n}"))?).await?;
                    keys.push((n, Key { id: created.key.id, token: created.token }));
                }
                Ok::<_, anyhow::Error>(keys)
            }));
        }
        let mut keys = Vec::new();
        for task in tasks {
            keys.extend(task.await??);
        }
        keys.sort_by_key(|(n, _)| *n);
        Ok(keys.into_iter().map(|(_, key)| key).collect())
    })
}

/// The code `client` answers for `token` (requiring the benchmark scope).
pub fn code(client: &mut BlockingClient, token: &Secret) -> Result<VerifyCode> {
    Ok(client.verify(verifier::request(token.clone()))?.code)
}

/// Polls until `client` answers `expected` for `token`; the time it took. Fails after `patience`.
pub fn wait_code(
    client: &mut BlockingClient,
    token: &Secret,
    expected: VerifyCode,
    patience: Duration,
) -> Result<Duration> {
    let started = Instant::now();
    loop {
        let last = code(client, token);
        if matches!(last, Ok(c) if c == expected) {
            return Ok(started.elapsed());
        }
        if started.elapsed() > patience {
            bail!("still {last:?} rather than {expected} after {patience:?}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits until every host in `hosts` answers `expected` for every key, the hosts in parallel.
pub fn wait_all(hosts: &[&Host], keys: &[Key], expected: VerifyCode, patience: Duration) -> Result<()> {
    std::thread::scope(|scope| {
        let waits: Vec<_> = hosts
            .iter()
            .map(|host| {
                scope.spawn(move || -> Result<()> {
                    let mut client = host.verifier()?;
                    for key in keys {
                        wait_code(&mut client, &key.token, expected, patience)
                            .with_context(|| format!("key {} on host {}", key.id, host.name))?;
                    }
                    Ok(())
                })
            })
            .collect();
        waits.into_iter().try_for_each(|wait| wait.join().map_err(|_| anyhow!("a waiting thread panicked"))?)
    })
}

/// What one background driver did.
#[derive(Clone, Debug)]
pub struct Driven {
    pub host: String,
    pub verifies: u64,
    /// Answers other than VALID.
    pub not_valid: u64,
    /// Requests that failed (no answer).
    pub errors: u64,
    pub elapsed: Duration,
}

impl Driven {
    pub fn rate(&self) -> f64 {
        self.verifies as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Background verify load: one task per host verifying a set of keys at a paced rate.
pub struct Drivers {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Result<Driven>>>,
}

impl Drivers {
    /// Starts a driver per host in `hosts`, each verifying `keys` in turn at `rate` verifies/s.
    pub fn start(rt: &Runtime, hosts: &[&Host], keys: &[Key], rate: u64) -> Drivers {
        let stop = Arc::new(AtomicBool::new(false));
        let tokens: Arc<Vec<Secret>> = Arc::new(keys.iter().map(|key| key.token.clone()).collect());
        let tasks = hosts
            .iter()
            .map(|host| {
                let (socket, name, stop, tokens) =
                    (host.verify_socket(), host.name.clone(), stop.clone(), tokens.clone());
                rt.spawn(drive(socket, name, tokens, rate, stop))
            })
            .collect();
        Drivers { stop, tasks }
    }

    /// Stops the drivers and returns what each did.
    pub fn finish(self, rt: &Runtime) -> Result<Vec<Driven>> {
        self.stop.store(true, Ordering::SeqCst);
        rt.block_on(async {
            let mut driven = Vec::new();
            for task in self.tasks {
                driven.push(task.await??);
            }
            Ok(driven)
        })
    }
}

async fn drive(
    socket: PathBuf,
    host: String,
    tokens: Arc<Vec<Secret>>,
    rate: u64,
    stop: Arc<AtomicBool>,
) -> Result<Driven> {
    let client = Client::builder(&socket).pool_size(1).request_timeout(Duration::from_secs(2)).connect().await?;
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut driven = Driven { host, verifies: 0, not_valid: 0, errors: 0, elapsed: Duration::ZERO };
    while !stop.load(Ordering::SeqCst) {
        tick.tick().await;
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        while driven.verifies < due {
            let token = tokens[(driven.verifies % tokens.len() as u64) as usize].clone();
            driven.verifies += 1;
            match client.verify(verifier::request(token)).await {
                Ok(answer) if answer.code == VerifyCode::Valid => {}
                Ok(_) => driven.not_valid += 1,
                Err(_) => driven.errors += 1,
            }
        }
    }
    driven.elapsed = started.elapsed();
    Ok(driven)
}

/// Sorted durations' quantile `q` (nearest rank).
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}
