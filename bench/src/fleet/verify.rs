//! Part 2: warm verifies, fleet mode off against on, in the same run.
//!
//! A daemon on its own (no `[fleet]`) and a fleet of two hosts, a and b; one key on each side, created and
//! verified once so that every measured verify is warm. Each measurement drives one key with
//! `verify_connections` connections, one request outstanding each (closed loop, 1 s warm-up, then the
//! window), in rounds of off / on / off-busy / on-with-changes, alternated so that drift on the machine
//! falls on all alike; the rounds' histograms are merged. "With changes": a pacer on host b edits other
//! keys' names at `change_rate` per second, which host a applies while it is measured. "Off-busy" is the
//! control: the same edits on b while the daemon on its own is measured, which sees none of them — what
//! the edits' CPU on this one machine (host b, PostgreSQL) costs a daemon that applies nothing.
//!
//! Each window pins the measured daemon to CPU 1 and the benchmark (and, by default, host b and
//! PostgreSQL with its backends) to CPU 0: unpinned, this VM switches between two scheduling modes (~35
//! and ~85 µs round trips) from one window to the next, far more than the 5 % asked.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use keyward_client::{KeyChanges, VerifyCode};

use super::host::{code, create_keys, quantile, Fleet, FleetPlan, Host, Key};
use super::table::{ms, Section};
use super::Run;
use crate::load::{Measurement, Phase};
use crate::shape::{self, Shape};
use crate::verifier;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    /// The daemon on its own.
    Off,
    /// Fleet host a.
    On,
    /// The daemon on its own while host b takes the edits (which it never sees): the control, what the
    /// edits' CPU on this machine (host b, PostgreSQL) costs a daemon that applies nothing.
    OffBusy,
    /// Fleet host a while host b takes the edits and a applies them.
    Changes,
}

impl Side {
    const ALL: [Side; 4] = [Side::Off, Side::On, Side::OffBusy, Side::Changes];

    fn fleet(self) -> bool {
        matches!(self, Side::On | Side::Changes)
    }

    fn edits(self) -> bool {
        matches!(self, Side::OffBusy | Side::Changes)
    }
}

pub(super) fn run(run: &mut Run) -> Result<Section> {
    let mut section = Section::new("2. Warm verify, fleet on vs off (same run)");
    let root = run.root.join("verify");
    let solo = Host::start(run, &root.join("solo"), "solo", "", None)?;
    let plan = FleetPlan {
        root: root.clone(),
        database: "verify",
        nodes: &["a", "b"],
        notify: true,
        poll_interval_ms: 1000,
        top: "",
        fleet_lines: "",
        relay_last: false,
    };
    let mut fleet = Fleet::start(run, &plan)?;
    let outcome = measure(run, &solo, &fleet, &mut section);
    if let Err(error) = &outcome {
        section.note(format!("**failed**: {error:#}"));
        section.note(format!("logs:\n```\n{}```", fleet.logs()));
    }
    fleet.stop();
    let mut solo = solo;
    solo.stop();
    Ok(section)
}

fn measure(run: &Run, solo: &Host, fleet: &Fleet, section: &mut Section) -> Result<()> {
    let (a, b) = (fleet.host("a"), fleet.host("b"));
    let solo_key = create_keys(&run.rt, &solo.admin_socket(), "warm", 1, 1)?.remove(0);
    let fleet_key = create_keys(&run.rt, &a.admin_socket(), "warm", 1, 1)?.remove(0);
    let edited = create_keys(&run.rt, &b.admin_socket(), "edited", EDIT_THREADS, 4)?;
    for (host, key) in [(solo, &solo_key), (a, &fleet_key)] {
        let answer = code(&mut host.verifier()?, &key.token)?;
        anyhow::ensure!(answer == VerifyCode::Valid, "the warm key answered {answer} on {}", host.name);
    }
    let shape = Shape::Connections(run.args.verify_connections);
    let pin = !run.args.verify_unpinned && std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2;
    let rest_cpu = match run.args.rest_cpu.as_str() {
        "0" => Some(0),
        "1" => Some(1),
        _ => None,
    };
    let mut elsewhere = vec![b.daemon.pid()];
    elsewhere.extend(run.cluster.as_ref().and_then(|cluster| cluster.pid()));
    let phase = Phase { warmup: Duration::from_secs(1), window: Duration::from_secs_f64(run.args.verify_window) };
    let mut merged = Side::ALL.map(|_| Measurement::empty(Duration::ZERO));
    let mut rounds = Vec::new();
    let mut edits = Edits::default();
    let mut applied = 0;
    let (mut queries, mut fleet_verifies) = (0, 0);
    for round in 0..run.args.verify_rounds {
        for (i, side) in Side::ALL.into_iter().enumerate() {
            let (host, key) = if side.fleet() { (a, &fleet_key) } else { (solo, &solo_key) };
            let request = verifier::request(key.token.clone());
            let before = if side.fleet() { Some(a.fleet()?) } else { None };
            let editor = side.edits().then(|| Editor::start(b, &edited, run.args.change_rate));
            let pinned = Pinned::new(pin.then(|| host.daemon.pid()), &elsewhere, rest_cpu, run.args.generator_nice)?;
            let measured = run.rt.block_on(shape::keyward(&host.verify_socket(), shape, phase, &request));
            drop(pinned);
            let measured = measured?;
            if let Some(editor) = editor {
                edits.add(editor.finish());
            }
            if let Some(before) = before {
                let after = a.fleet()?;
                queries += after.engine_queries - before.engine_queries;
                fleet_verifies += measured.requests;
                if side == Side::Changes {
                    applied += after.changes_applied - before.changes_applied;
                }
            }
            rounds.push(format!(
                "round {} {:?}: p50 {} p99 {} ({:.0}/s, {} failures)",
                round + 1,
                side,
                ms(measured.quantile(0.5)),
                ms(measured.quantile(0.99)),
                measured.throughput(),
                measured.failures
            ));
            merged[i].merge(&measured);
            merged[i].window += measured.window;
        }
    }
    let [off, on, off_busy, changes] = &merged;
    let ratio = |m: &Measurement, q: f64| m.quantile(q).as_secs_f64() / off.quantile(q).as_secs_f64().max(1e-12);
    let label = format!("{}, {} rounds of {} s", shape.label(), run.args.verify_rounds, run.args.verify_window);
    for (name, m) in [
        ("fleet off (a daemon on its own)", off),
        ("fleet on (host a)", on),
        ("fleet off while host b takes the edits (control)", off_busy),
    ] {
        section.info(
            format!("{name}: p50 / p99 / p99.9; throughput"),
            format!(
                "{} / {} / {}; {:.0}/s",
                ms(m.quantile(0.5)),
                ms(m.quantile(0.99)),
                ms(m.quantile(0.999)),
                m.throughput()
            ),
        );
    }
    section.info(
        format!("fleet on, {} changes/s flowing: p50 / p99 / p99.9; throughput", run.args.change_rate),
        format!(
            "{} / {} / {}; {:.0}/s",
            ms(changes.quantile(0.5)),
            ms(changes.quantile(0.99)),
            ms(changes.quantile(0.999)),
            changes.throughput()
        ),
    );
    let (p50, p99, p99c) = (ratio(on, 0.5), ratio(on, 0.99), ratio(changes, 0.99));
    let p99_control = changes.quantile(0.99).as_secs_f64() / off_busy.quantile(0.99).as_secs_f64().max(1e-12);
    section.target(format!("p50 fleet on / off ({label})"), format!("{p50:.3}×"), "≤ 1.05×", p50 <= 1.05);
    section.target(format!("p99 fleet on / off ({label})"), format!("{p99:.3}×"), "≤ 1.10×", p99 <= 1.10);
    section.target(
        format!("p99 fleet on with {} changes/s / off", run.args.change_rate),
        format!("{p99c:.3}×"),
        "≤ 1.20×",
        p99c <= 1.20,
    );
    section.info(
        "p99 fleet on with changes / fleet off while b takes the same edits (host a's own cost of applying them)",
        format!("{p99_control:.3}×"),
    );
    edits.latencies.sort();
    section.info(
        "changes made on b during the with-changes windows (edit latency p50 / p99); applied by a",
        format!(
            "{} edits in {} ({:.0}/s, {} failed; {} / {}); a applied {applied}",
            edits.done,
            ms(edits.elapsed),
            edits.done as f64 / edits.elapsed.as_secs_f64().max(1e-9),
            edits.failed,
            ms(quantile(&edits.latencies, 0.5)),
            ms(quantile(&edits.latencies, 0.99))
        ),
    );
    section.info(
        "engine queries by host a during its verify windows (catch-up, heartbeat; none is a verify's)",
        format!("{queries} queries over {fleet_verifies} verifies"),
    );
    let failures: u64 = merged.iter().map(|m| m.failures).sum();
    if failures > 0 {
        section.note(format!("**{failures} verifies did not answer VALID**"));
    }
    section.note(if pin {
        format!(
            "each window: the measured daemon (every thread) pinned to CPU 1, the benchmark to CPU 0 (unpinned, \
             this VM has two scheduling modes, ~35 and ~85 µs round trips at 8 connections, which swamp a 5 % \
             target); host b and PostgreSQL (with its backends) {}",
            match rest_cpu {
                Some(cpu) => format!("pinned to CPU {cpu}"),
                None => "unpinned".to_owned(),
            }
        )
    } else {
        "unpinned".to_owned()
    });
    section.note(if run.args.generator_nice != 0 {
        format!(
            "the load generator's threads run at nice {} during the windows (all four sides alike), so that host b \
             and PostgreSQL, sharing CPU 0 with them, can keep up with the edits",
            run.args.generator_nice
        )
    } else {
        "the load generator runs at nice 0".to_owned()
    });
    section.note(format!("per round: {}", rounds.join("; ")));
    Ok(())
}

/// While it lives: the measured daemon on CPU 1; the benchmark, and the rest of the fleet (host b, the
/// PostgreSQL server and its backends) on CPU 0, as if they ran on other machines. Unpinned after.
struct Pinned {
    pids: Vec<u32>,
    niced: bool,
}

impl Pinned {
    fn new(measured: Option<u32>, elsewhere: &[u32], rest_cpu: Option<usize>, nice: i32) -> Result<Pinned> {
        let niced = nice != 0;
        if niced {
            renice_load_threads(nice);
        }
        let Some(measured) = measured else { return Ok(Pinned { pids: Vec::new(), niced }) };
        let mut others: Vec<u32> = elsewhere.iter().flat_map(|&pid| with_descendants(pid)).collect();
        pin(measured, Some(1))?;
        pin(std::process::id(), Some(0))?;
        for &pid in &others {
            // A backend that just exited is no error.
            let _ = pin(pid, rest_cpu);
        }
        others.push(std::process::id());
        others.push(measured);
        Ok(Pinned { pids: others, niced })
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        for &pid in &self.pids {
            let _ = pin(pid, None);
        }
        if self.niced {
            renice_load_threads(0);
        }
    }
}

/// Sets the nice value of this process's tokio worker threads (the load generator's).
fn renice_load_threads(nice: i32) {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return };
    for task in tasks.flatten() {
        let is_worker =
            std::fs::read_to_string(task.path().join("comm")).is_ok_and(|comm| comm.starts_with("tokio-runtime"));
        let Some(tid) = task.file_name().to_str().and_then(|name| name.parse::<libc::id_t>().ok()) else { continue };
        if is_worker {
            // SAFETY: setpriority on one of this process's threads; a failure only leaves its priority as is.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, nice) };
        }
    }
}

/// Restricts every thread of `pid` to CPU `cpu`, or lets them run on every online CPU with `None`.
/// (Not [`crate::process::pin`], which counts the CPUs this process may use: once the benchmark is
/// pinned, that is one, and unpinning would pin to CPU 0.)
fn pin(pid: u32, cpu: Option<usize>) -> Result<()> {
    // SAFETY: sysconf has no preconditions.
    let online = usize::try_from(unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }).unwrap_or(1).max(1);
    // SAFETY: cpu_set_t is plain data; the CPU_* helpers only write inside it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for c in (0..online).filter(|&c| cpu.is_none_or(|only| only == c)) {
        // SAFETY: `c` is below the number of CPUs, far below CPU_SETSIZE.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    let tasks =
        std::fs::read_dir(format!("/proc/{pid}/task")).with_context(|| format!("listing the threads of {pid}"))?;
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|name| name.parse::<libc::pid_t>().ok()) else { continue };
        // SAFETY: sched_setaffinity reads `set` for its size.
        if unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) } != 0 {
            let error = std::io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::ESRCH) {
                return Err(error).with_context(|| format!("pinning thread {tid} of {pid}"));
            }
        }
    }
    Ok(())
}

/// `pid` and every process descended from it, from `/proc/*/stat`.
fn with_descendants(pid: u32) -> Vec<u32> {
    let mut parents = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(child) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
            // `pid (comm) state ppid …`; comm may hold spaces and parentheses: split after the last `)`.
            let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                parents.push((child, ppid));
            }
        }
    }
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(parents.iter().filter(|(_, ppid)| *ppid == parent).map(|(child, _)| *child));
        i += 1;
    }
    found
}

#[derive(Default)]
struct Edits {
    done: u64,
    failed: u64,
    elapsed: Duration,
    /// Each edit's request → ack.
    latencies: Vec<Duration>,
}

impl Edits {
    fn add(&mut self, other: Edits) {
        self.done += other.done;
        self.failed += other.failed;
        self.elapsed += other.elapsed;
        self.latencies.extend(other.latencies);
    }
}

/// Edits on host b at a paced rate from a few threads (each edit is one engine transaction).
struct Editor {
    stop: Arc<AtomicBool>,
    started: Instant,
    threads: Vec<std::thread::JoinHandle<Edits>>,
}

const EDIT_THREADS: usize = 8;

impl Editor {
    fn start(b: &Host, keys: &[Key], rate: u64) -> Editor {
        let stop = Arc::new(AtomicBool::new(false));
        let next = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let threads = (0..EDIT_THREADS)
            .map(|t| {
                let (stop, next, key) = (stop.clone(), next.clone(), keys[t % keys.len()].clone());
                let admin = b.admin(Duration::from_secs(5)).context("host b's admin socket");
                std::thread::spawn(move || {
                    let mut edits = Edits::default();
                    let Ok(mut admin) = admin else {
                        edits.failed = 1;
                        return edits;
                    };
                    while !stop.load(Ordering::SeqCst) {
                        let slot = next.fetch_add(1, Ordering::SeqCst);
                        let due = started + Duration::from_secs_f64(slot as f64 / rate.max(1) as f64);
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let changes = KeyChanges { name: Some(format!("edit {slot}")), ..KeyChanges::default() };
                        let sent = Instant::now();
                        match admin.edit(&key.id, changes) {
                            Ok(_) => edits.done += 1,
                            Err(_) => edits.failed += 1,
                        }
                        edits.latencies.push(sent.elapsed());
                    }
                    edits
                })
            })
            .collect();
        Editor { stop, started, threads }
    }

    fn finish(self) -> Edits {
        self.stop.store(true, Ordering::SeqCst);
        let mut edits = Edits { elapsed: self.started.elapsed(), ..Edits::default() };
        for thread in self.threads {
            let mine = thread.join().unwrap_or(Edits { failed: 1, ..Edits::default() });
            edits.done += mine.done;
            edits.failed += mine.failed;
            edits.latencies.extend(mine.latencies);
        }
        edits
    }
}
