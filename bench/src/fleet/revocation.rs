//! Part 1: revocation through host a → first REVOKED on hosts b and c.
//!
//! A fleet of three hosts (a poll interval of 1 s; notifications on, then a second fleet poll-only), a
//! background driver per host verifying 16 other keys at ~1k verifies/s. The keys to revoke are created on
//! a beforehand, and each answers VALID on b and c before its revocation. Then, one key at a time: a
//! watcher thread per other host (one dedicated connection each) verifies the key in a loop, answering
//! VALID; the main thread revokes it on a and timestamps the ack, then verifies it on a at once (the
//! issuing host must answer REVOKED: 0 VALID after the ack); each watcher records when its first REVOKED
//! answer arrived. The figure is that moment minus the ack, b and c together (clamped at 0 when the
//! REVOKED arrived before the ack reached the benchmark — counted apart). Poll-only, each revocation
//! waits a random part of the poll interval first, so that it falls anywhere in the hosts' poll cycles
//! rather than just after the tick that ended the previous one; and its watchers pause 200 µs between
//! verifies (`--poll-watch-pause-us`): two clients spinning for up to a second at a time on this 2-core
//! machine starved PostgreSQL and the hosts in a trial (every host's engine query timed out at 2 s once,
//! a revoke took 5.6 s to ack and the max read 1.86 s), which measures the benchmark, not the fleet. With
//! notifications each watch lasts a few milliseconds and the watchers spin (`--watch-pause-us 0`).

use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use keyward_client::{BlockingClient, Secret, VerifyCode};

use super::host::{code, create_keys, quantile, wait_all, Driven, Drivers, Fleet, FleetPlan, Host, Key};
use super::table::{ms, Section};
use super::Run;
use crate::load::Rng;

const POLL_INTERVAL_MS: u64 = 1000;

/// How long a watcher waits for REVOKED before giving up on one key.
const WATCH_PATIENCE: Duration = Duration::from_secs(10);

pub(super) fn run(run: &mut Run) -> Result<Vec<Section>> {
    let notify = measure(run, true, run.args.repeats)?;
    let poll = measure(run, false, run.args.poll_repeats)?;
    Ok(vec![notify, poll])
}

/// What a watcher does with one key: starts verifying it, says so, and reports the first REVOKED.
struct Job {
    token: Secret,
}

enum Heard {
    /// The watcher verified the key once (the code it got) and keeps verifying.
    Watching(VerifyCode),
    /// The first REVOKED answer's arrival, if one came within the patience, and the verifies it sent.
    Done {
        revoked_at: Option<Instant>,
        verifies: u64,
        watched: Duration,
    },
    Failed(String),
}

fn watcher(mut client: BlockingClient, pause: Duration, jobs: mpsc::Receiver<Job>, heard: mpsc::Sender<Heard>) {
    for job in jobs {
        let first = match code(&mut client, &job.token) {
            Ok(first) => first,
            Err(error) => {
                let _ = heard.send(Heard::Failed(format!("{error:#}")));
                continue;
            }
        };
        if heard.send(Heard::Watching(first)).is_err() {
            return;
        }
        let started = Instant::now();
        let mut verifies = 1;
        let revoked_at = loop {
            verifies += 1;
            match code(&mut client, &job.token) {
                Ok(VerifyCode::Revoked) => break Some(Instant::now()),
                Ok(_) => {}
                Err(error) => {
                    let _ = heard.send(Heard::Failed(format!("{error:#}")));
                    break None;
                }
            }
            if started.elapsed() > WATCH_PATIENCE {
                break None;
            }
            if !pause.is_zero() {
                std::thread::sleep(pause);
            }
        };
        if heard.send(Heard::Done { revoked_at, verifies, watched: started.elapsed() }).is_err() {
            return;
        }
    }
}

struct Watcher {
    name: String,
    jobs: mpsc::Sender<Job>,
    heard: mpsc::Receiver<Heard>,
}

impl Watcher {
    fn start(host: &Host, pause: Duration) -> Result<Watcher> {
        let client = host.verifier()?;
        let (jobs, job_rx) = mpsc::channel();
        let (heard_tx, heard) = mpsc::channel();
        std::thread::spawn(move || watcher(client, pause, job_rx, heard_tx));
        Ok(Watcher { name: host.name.clone(), jobs, heard })
    }

    fn hear(&self) -> Result<Heard> {
        self.heard.recv_timeout(WATCH_PATIENCE * 2).map_err(|_| anyhow!("watcher {} went silent", self.name))
    }
}

/// One sample of one other host.
struct Sample {
    host: String,
    /// From the ack to the first REVOKED; `None`: none within the patience.
    latency: Option<Duration>,
    /// The REVOKED arrived before the ack did.
    before_ack: bool,
    /// The watcher's verifies of this key, and for how long it watched.
    verifies: u64,
    watched: Duration,
}

fn measure(run: &mut Run, notify: bool, repeats: usize) -> Result<Section> {
    let mode = if notify { "notify on" } else { "poll-only" };
    let database = if notify { "rev_notify" } else { "rev_poll" };
    let mut section = Section::new(&format!("1{}. Revocation propagation, {mode}", if notify { "a" } else { "b" }));
    let plan = FleetPlan {
        root: run.root.join(database),
        database,
        nodes: &["a", "b", "c"],
        notify,
        poll_interval_ms: POLL_INTERVAL_MS,
        top: "",
        fleet_lines: "",
        relay_last: false,
    };
    let mut fleet = Fleet::start(run, &plan)?;
    let outcome = measure_on(run, &fleet, notify, repeats, &mut section);
    if let Err(error) = &outcome {
        section.note(format!("**failed**: {error:#}"));
        section.note(format!("logs:\n```\n{}```", fleet.logs()));
    }
    fleet.stop();
    Ok(section)
}

fn measure_on(run: &Run, fleet: &Fleet, notify: bool, repeats: usize, section: &mut Section) -> Result<()> {
    let (a, b, c) = (fleet.host("a"), fleet.host("b"), fleet.host("c"));
    let prepared = Instant::now();
    let background = create_keys(&run.rt, &a.admin_socket(), "bg", 16, 4)?;
    let victims = create_keys(&run.rt, &a.admin_socket(), "rev", repeats, 4)?;
    wait_all(&[a, b, c], &background, VerifyCode::Valid, Duration::from_secs(30)).context("background keys")?;
    wait_all(&[b, c], &victims, VerifyCode::Valid, Duration::from_secs(30)).context("keys to revoke")?;
    let prepared = prepared.elapsed();

    let drivers = Drivers::start(&run.rt, &[a, b, c], &background, run.args.driver_rate);
    std::thread::sleep(Duration::from_millis(500));
    let pause_us = if notify { run.args.watch_pause_us } else { run.args.poll_watch_pause_us };
    let measured = revoke_all(a, &[b, c], &victims, notify, Duration::from_micros(pause_us));
    let driven = drivers.finish(&run.rt)?;
    let (samples, acks, valid_after_ack) = measured?;

    report(section, notify, &samples, &acks, valid_after_ack, &driven);
    section.note(format!(
        "{} keys revoked one at a time on host a; each was created on a and seen VALID on b and c beforehand \
         (preparing them took {}); the watchers on b and c {}",
        victims.len(),
        ms(prepared),
        if pause_us == 0 {
            "verify in a tight loop, one connection each".to_owned()
        } else {
            format!("verify on one connection each, pausing {pause_us} µs between verifies")
        }
    ));
    Ok(())
}

type Measured = (Vec<Sample>, Vec<Duration>, usize);

fn revoke_all(a: &Host, others: &[&Host], victims: &[Key], notify: bool, pause: Duration) -> Result<Measured> {
    let watchers: Vec<Watcher> = others.iter().map(|host| Watcher::start(host, pause)).collect::<Result<_>>()?;
    let mut admin = a.admin(Duration::from_secs(10))?;
    let mut issuer = a.verifier()?;
    let mut samples = Vec::new();
    let mut acks = Vec::new();
    let mut valid_after_ack = 0;
    let mut rng = Rng::new(0x5eed);
    for key in victims {
        // Poll-only: at a random point of the poll cycle, not just after the tick that ended the last one.
        if !notify {
            std::thread::sleep(Duration::from_millis(rng.below(POLL_INTERVAL_MS)));
        }
        for watcher in &watchers {
            watcher
                .jobs
                .send(Job { token: key.token.clone() })
                .map_err(|_| anyhow!("watcher {} stopped", watcher.name))?;
        }
        for watcher in &watchers {
            match watcher.hear()? {
                Heard::Watching(VerifyCode::Valid) => {}
                Heard::Watching(other) => {
                    bail!("key {} answered {other} on {} before its revocation", key.id, watcher.name)
                }
                Heard::Failed(error) => bail!("watcher {}: {error}", watcher.name),
                Heard::Done { .. } => bail!("watcher {} out of step", watcher.name),
            }
        }
        let sent = Instant::now();
        admin.revoke(&key.id).with_context(|| format!("revoking {} on a", key.id))?;
        let ack = Instant::now();
        acks.push(ack - sent);
        if code(&mut issuer, &key.token)? == VerifyCode::Valid {
            valid_after_ack += 1;
        }
        for watcher in &watchers {
            match watcher.hear()? {
                Heard::Done { revoked_at, verifies, watched } => samples.push(Sample {
                    host: watcher.name.clone(),
                    latency: revoked_at.map(|at| at.saturating_duration_since(ack)),
                    before_ack: revoked_at.is_some_and(|at| at < ack),
                    verifies,
                    watched,
                }),
                Heard::Failed(error) => bail!("watcher {}: {error}", watcher.name),
                Heard::Watching(_) => bail!("watcher {} out of step", watcher.name),
            }
        }
    }
    Ok((samples, acks, valid_after_ack))
}

fn report(
    section: &mut Section,
    notify: bool,
    samples: &[Sample],
    acks: &[Duration],
    valid_after_ack: usize,
    driven: &[Driven],
) {
    let missing = samples.iter().filter(|s| s.latency.is_none()).count();
    let mut latencies: Vec<Duration> = samples.iter().map(|s| s.latency.unwrap_or(WATCH_PATIENCE)).collect();
    latencies.sort();
    let q = |p: f64| quantile(&latencies, p);
    let (p50, p90, p99, max) = (q(0.5), q(0.9), q(0.99), q(1.0));
    let spread = format!("p50 {} / p90 {} / p99 {} / max {}", ms(p50), ms(p90), ms(p99), ms(max));
    let what = format!("ack on a → first REVOKED on b and c ({} samples)", samples.len());
    if notify {
        section.target(format!("{what}: p50"), ms(p50), "≤ 10 ms", p50 <= Duration::from_millis(10));
        section.target(format!("{what}: p99"), ms(p99), "≤ 100 ms", p99 <= Duration::from_millis(100));
        section.target(format!("{what}: max"), ms(max), "≤ 1 s", max <= Duration::from_secs(1) && missing == 0);
        section.info(format!("{what}: p50 / p90 / p99 / max"), spread);
    } else {
        let limit = Duration::from_millis(POLL_INTERVAL_MS + 100);
        section.target(
            format!("{what}: max (poll interval {POLL_INTERVAL_MS} ms)"),
            ms(max),
            &format!("≤ poll interval + 100 ms = {}", ms(limit)),
            max <= limit && missing == 0,
        );
        section.info(format!("{what}: p50 / p90 / p99 / max"), spread);
        let over: Vec<String> = samples
            .iter()
            .filter(|s| s.latency.is_none_or(|l| l > limit))
            .map(|s| format!("{} {}", s.host, s.latency.map_or("never".to_owned(), ms)))
            .collect();
        if !over.is_empty() {
            section.note(format!("samples over {}: {}", ms(limit), over.join(", ")));
        }
    }
    for host in ["b", "c"] {
        let mut mine: Vec<Duration> =
            samples.iter().filter(|s| s.host == host).map(|s| s.latency.unwrap_or(WATCH_PATIENCE)).collect();
        mine.sort();
        section.info(
            format!("host {host} alone: p50 / p99 / max"),
            format!("{} / {} / {}", ms(quantile(&mine, 0.5)), ms(quantile(&mine, 0.99)), ms(quantile(&mine, 1.0))),
        );
    }
    section.target(
        "issuing host a: VALID answers on its first verify after the ack",
        format!("{valid_after_ack} of {}", acks.len()),
        "0",
        valid_after_ack == 0,
    );
    let mut acks = acks.to_vec();
    acks.sort();
    section.info(
        "revoke on a, request → ack: p50 / p99 / max",
        format!("{} / {} / {}", ms(quantile(&acks, 0.5)), ms(quantile(&acks, 0.99)), ms(quantile(&acks, 1.0))),
    );
    let early = samples.iter().filter(|s| s.before_ack).count();
    if early > 0 {
        section.note(format!(
            "{early} of {} first REVOKED answers on b/c arrived before the ack reached the benchmark (a commits \
             to the engine, then writes its own replica and answers): counted as 0 ms",
            samples.len()
        ));
    }
    if missing > 0 {
        section.note(format!(
            "**{missing} of {} watches saw no REVOKED within {}** (counted as {} above)",
            samples.len(),
            ms(WATCH_PATIENCE),
            ms(WATCH_PATIENCE)
        ));
    }
    let load = driven
        .iter()
        .map(|d| format!("{} {:.0}/s ({} not VALID, {} errors)", d.host, d.rate(), d.not_valid, d.errors))
        .collect::<Vec<_>>()
        .join(", ");
    section.info("background verifies per host while measuring", load);
    let watching = ["b", "c"]
        .map(|host| {
            let (verifies, watched) = samples
                .iter()
                .filter(|s| s.host == host)
                .fold((0, Duration::ZERO), |(n, t), s| (n + s.verifies, t + s.watched));
            format!("{host} {:.0}/s", verifies as f64 / watched.as_secs_f64().max(1e-9))
        })
        .join(", ");
    section.info("watchers' verifies per second while watching (the resolution of the figure)", watching);
}
