//! Part 5: a fleet-wide rate limit and escrowed credits, on three hosts.
//!
//! One fleet (a, b, c; notifications on), every host with the plan `shared = "100/min"` listed in
//! `[fleet] shared_plans`.
//!
//! - Shared limit (first): see below.
//! - Credits: a key with 10,000 credits (and a rate that never refuses) spent from 3 hosts × 8
//!   connections at once, each connection verifying until its host answers USAGE_EXCEEDED without a retry
//!   time (the fleet's balance is gone; with a retry time the host is waiting for its next grant). The VALID
//!   answers, the few that found the key on each host first included, must be exactly 10,000. Then again
//!   with a second key, SIGKILLing host c once it has spent a little: never more than 10,000.
//! - Shared limit: a key on the plan verified from all three hosts at a paced demand far above the limit
//!   (`limit_demand` verifies/s per host, one connection each) for `limit_seconds`; the arrival time of
//!   every VALID answer is kept, and every 60 s window of the run is counted (at most 103, the target; at
//!   least 80 while demand exceeds the limit). Three per-host limits would admit up to 300.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use keyward_client::{Client, CreateRequest, Secret, VerifyCode};
use keyward_protocol::RatePolicy;

use super::host::{code, Fleet, FleetPlan, Host, Key};
use super::table::{ms, Section};
use super::Run;
use crate::fixture::create_request;
use crate::verifier;

const CREDITS: u64 = 10_000;
const CONNECTIONS: usize = 8;
const LIMIT: u64 = 100;
const WINDOW: Duration = Duration::from_secs(60);

pub(super) fn run(run: &mut Run) -> Result<Vec<Section>> {
    let plan = FleetPlan {
        root: run.root.join("limits"),
        database: "limits",
        nodes: &["a", "b", "c"],
        notify: true,
        poll_interval_ms: 1000,
        top: "[plans]\nshared = \"100/min\"\n",
        fleet_lines: "shared_plans = [\"shared\"]\n",
        relay_last: false,
    };
    let mut fleet = Fleet::start(run, &plan)?;
    // The shared limit first: the credits' last run kills host c.
    let mut shared = Section::new("5a. A shared 100/min limit over 3 hosts");
    if let Err(error) = measure_shared(run, &fleet, &mut shared) {
        shared.note(format!("**failed**: {error:#}"));
        shared.note(format!("logs:\n```\n{}```", fleet.logs()));
    }
    let mut credits = Section::new("5b. Escrowed credits: 10,000 over 3 hosts × 8 connections");
    if let Err(error) = measure_credits(run, &fleet, &mut credits) {
        credits.note(format!("**failed**: {error:#}"));
        credits.note(format!("logs:\n```\n{}```", fleet.logs()));
    }
    fleet.stop();
    Ok(vec![shared, credits])
}

/// Creates one key on `a` from `request`, and waits until every host knows it; the VALID answers those
/// first verifies got, with their arrival.
fn key_everywhere(run: &Run, fleet: &Fleet, request: CreateRequest) -> Result<(Key, Vec<Instant>)> {
    let a = fleet.host("a");
    let created = run.rt.block_on(async {
        let client = Client::builder(a.admin_socket()).request_timeout(Duration::from_secs(30)).connect().await?;
        Ok::<_, anyhow::Error>(client.create(request).await?)
    })?;
    let key = Key { id: created.key.id, token: created.token };
    let mut valid = Vec::new();
    for host in &fleet.hosts {
        let mut client = host.verifier()?;
        let started = Instant::now();
        loop {
            match code(&mut client, &key.token)? {
                VerifyCode::NotFound if started.elapsed() < Duration::from_secs(10) => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                VerifyCode::NotFound => bail!("host {} did not learn key {} within 10 s", host.name, key.id),
                VerifyCode::Valid => {
                    valid.push(Instant::now());
                    break;
                }
                _ => break,
            }
        }
    }
    Ok((key, valid))
}

/// What the spenders of one host got.
#[derive(Default)]
struct Spent {
    valid: AtomicU64,
    /// USAGE_EXCEEDED with a retry time: waiting for a grant.
    waits: AtomicU64,
    /// Answers that should not happen, and failed requests.
    other: AtomicU64,
    errors: AtomicU64,
}

/// Verifies `token` on `socket` from `CONNECTIONS` tasks until the fleet's balance is gone (or `stop`).
async fn spend(socket: std::path::PathBuf, token: Secret, spent: Arc<Spent>, stop: Arc<AtomicBool>) -> Result<()> {
    let client = Client::builder(&socket)
        .pool_size(CONNECTIONS)
        .request_timeout(Duration::from_secs(5))
        .connect()
        .await
        .context("connecting a spender")?;
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let (client, token, spent, stop) = (client.clone(), token.clone(), spent.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(60) {
                match client.verify(verifier::request(token.clone())).await {
                    Ok(answer) => match answer.code {
                        VerifyCode::Valid => {
                            spent.valid.fetch_add(1, Ordering::Relaxed);
                        }
                        VerifyCode::UsageExceeded if answer.retry_after_ms.is_none() => return,
                        VerifyCode::UsageExceeded => {
                            spent.waits.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                        _ => {
                            spent.other.fetch_add(1, Ordering::Relaxed);
                        }
                    },
                    Err(_) => {
                        // A killed host: this connection is done.
                        spent.errors.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    Ok(())
}

fn credits_request(name: &str) -> Result<CreateRequest> {
    let mut request = create_request("credits", name)?;
    request.limits.credits = Some(CREDITS);
    Ok(request)
}

fn measure_credits(run: &Run, fleet: &Fleet, section: &mut Section) -> Result<()> {
    // A clean run.
    let (key, first) = key_everywhere(run, fleet, credits_request("escrow clean")?)?;
    let started = Instant::now();
    let (spent, _) = spend_on(run, &fleet.hosts.iter().collect::<Vec<_>>(), &key, None)?;
    let took = started.elapsed();
    let valid: u64 = spent.iter().map(|s| s.valid.load(Ordering::Relaxed)).sum::<u64>() + first.len() as u64;
    section.target(
        format!("clean run: VALID answers for a key of {CREDITS} credits, 3 hosts × {CONNECTIONS} connections"),
        format!("{valid} (in {})", ms(took)),
        &format!("exactly {CREDITS}"),
        valid == CREDITS,
    );
    section.info(
        "clean run: VALID per host (a, b, c); waits for a grant; other answers / errors",
        per_host(&spent, &first),
    );

    // Host c killed mid-run.
    let (key, first) = key_everywhere(run, fleet, credits_request("escrow kill")?)?;
    let c = fleet.host("c");
    let (spent, killed_after) = spend_on(run, &fleet.hosts.iter().collect::<Vec<_>>(), &key, Some((c, 500)))?;
    let valid: u64 = spent.iter().map(|s| s.valid.load(Ordering::Relaxed)).sum::<u64>() + first.len() as u64;
    section.target(
        "host c SIGKILLed mid-run: VALID answers over the three hosts",
        format!(
            "{valid} (c killed after {killed_after} VALID of its own; {} stranded with it)",
            CREDITS.saturating_sub(valid)
        ),
        &format!("≤ {CREDITS}"),
        valid <= CREDITS,
    );
    section.info(
        "with the kill: VALID per host (a, b, c); waits for a grant; other answers / errors",
        per_host(&spent, &first),
    );
    Ok(())
}

fn per_host(spent: &[Arc<Spent>], first: &[Instant]) -> String {
    let valid: Vec<String> = spent.iter().map(|s| s.valid.load(Ordering::Relaxed).to_string()).collect();
    let waits: u64 = spent.iter().map(|s| s.waits.load(Ordering::Relaxed)).sum();
    let other: u64 = spent.iter().map(|s| s.other.load(Ordering::Relaxed)).sum();
    let errors: u64 = spent.iter().map(|s| s.errors.load(Ordering::Relaxed)).sum();
    format!(
        "{} (+{} on the first verifies that found the key); {waits}; {other} / {errors}",
        valid.join(", "),
        first.len()
    )
}

/// Spends `key` on every host at once; with `kill`, SIGKILLs that host once it has `n` VALID answers.
/// Returns each host's counts (in `hosts` order) and, with a kill, how many VALID the killed host had.
fn spend_on(run: &Run, hosts: &[&Host], key: &Key, kill: Option<(&Host, u64)>) -> Result<(Vec<Arc<Spent>>, u64)> {
    let stop = Arc::new(AtomicBool::new(false));
    let spent: Vec<Arc<Spent>> = hosts.iter().map(|_| Arc::new(Spent::default())).collect();
    let tasks: Vec<_> = hosts
        .iter()
        .zip(&spent)
        .map(|(host, spent)| run.rt.spawn(spend(host.verify_socket(), key.token.clone(), spent.clone(), stop.clone())))
        .collect();
    let mut killed_after = 0;
    if let Some((victim, n)) = kill {
        let index = hosts.iter().position(|host| host.name == victim.name).context("the host to kill")?;
        let started = Instant::now();
        while spent[index].valid.load(Ordering::Relaxed) < n && started.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_micros(200));
        }
        // SAFETY: kill(2) on our own child, not reaped yet.
        unsafe { libc::kill(victim.daemon.pid() as libc::pid_t, libc::SIGKILL) };
        killed_after = spent[index].valid.load(Ordering::Relaxed);
    }
    run.rt.block_on(async {
        for task in tasks {
            task.await??;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok((spent, killed_after))
}

fn measure_shared(run: &Run, fleet: &Fleet, section: &mut Section) -> Result<()> {
    let mut request = create_request("shared", "shared limit")?;
    request.limits.rate = RatePolicy::Plan("shared".into());
    let (key, mut admitted) = key_everywhere(run, fleet, request)?;
    let started = admitted.first().copied().unwrap_or_else(Instant::now);
    let demand = run.args.limit_demand.max(1);
    let until = Instant::now() + Duration::from_secs_f64(run.args.limit_seconds);
    let per_host: Vec<(Vec<Instant>, u64, u64)> = std::thread::scope(|scope| {
        let drivers: Vec<_> = fleet
            .hosts
            .iter()
            .map(|host| {
                let token = key.token.clone();
                scope.spawn(move || -> Result<(Vec<Instant>, u64, u64)> {
                    let mut client = host.verifier()?;
                    let (mut valid, mut limited, mut other) = (Vec::new(), 0, 0);
                    let begun = Instant::now();
                    let mut sent = 0u64;
                    while Instant::now() < until {
                        let due = begun + Duration::from_secs_f64(sent as f64 / demand as f64);
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        sent += 1;
                        match code(&mut client, &token) {
                            Ok(VerifyCode::Valid) => valid.push(Instant::now()),
                            Ok(VerifyCode::RateLimited) => limited += 1,
                            _ => other += 1,
                        }
                    }
                    Ok((valid, limited, other))
                })
            })
            .collect();
        drivers.into_iter().map(|d| d.join().map_err(|_| anyhow::anyhow!("a driver panicked"))?).collect::<Result<_>>()
    })?;
    let ended = Instant::now();
    let shares: Vec<String> = per_host.iter().map(|(valid, _, _)| valid.len().to_string()).collect();
    let limited: u64 = per_host.iter().map(|(_, limited, _)| limited).sum();
    let other: u64 = per_host.iter().map(|(_, _, other)| other).sum();
    for (valid, _, _) in &per_host {
        admitted.extend(valid);
    }
    admitted.sort();
    let (most, least) = windows(&admitted, started, ended);
    let span = ended - started;
    section.target(
        format!("admitted in any 60 s window of the {} s run (3 hosts at {demand} verifies/s each)", span.as_secs()),
        most.to_string(),
        "≤ 103",
        most <= 103,
    );
    match least {
        Some(least) => section.target(
            "admitted in every 60 s window while demand exceeds the limit: at least",
            least.to_string(),
            "≥ 80",
            least >= 80,
        ),
        None => section.info("admitted in every 60 s window: at least", "the run is shorter than 60 s"),
    }
    section.info(
        "admitted in all; per host (a, b, c); RATE_LIMITED answers; other answers",
        format!("{} in {}; {}; {limited}; {other}", admitted.len(), ms(span), shares.join(", ")),
    );
    let buckets = (span.as_secs_f64() / 5.0).ceil() as usize;
    let mut counts = vec![0usize; buckets.max(1)];
    for &t in &admitted {
        let bucket = ((t.saturating_duration_since(started).as_secs_f64() / 5.0) as usize).min(counts.len() - 1);
        counts[bucket] += 1;
    }
    section.info(
        "admitted per 5 s of the run, from the first",
        counts.iter().map(usize::to_string).collect::<Vec<_>>().join(" "),
    );
    let bursts = bursts(&admitted, Duration::from_secs(5));
    section.info(
        "admissions in bursts (runs without a 5 s gap): admitted in each, over how long, from the first",
        bursts
            .iter()
            .map(|(n, from, lasted)| {
                format!("{n} in {} at {}", ms(*lasted), ms(from.saturating_duration_since(started)))
            })
            .collect::<Vec<_>>()
            .join("; "),
    );
    section.note(format!("per-host limits would admit up to {} per 60 s over 3 hosts (3 × {LIMIT})", 3 * LIMIT));
    Ok(())
}

/// The most and the fewest arrivals in a window of [`WINDOW`] inside `[start, end]` (`None` for the
/// fewest when the run is shorter than a window). `times` is sorted.
fn windows(times: &[Instant], start: Instant, end: Instant) -> (usize, Option<usize>) {
    let most = (0..times.len()).map(|i| times[i..].partition_point(|&t| t <= times[i] + WINDOW)).max().unwrap_or(0);
    if end < start + WINDOW {
        return (most, None);
    }
    // The fewest: windows starting at the run's start or just after an arrival, and ending inside the run.
    let mut least = times.partition_point(|&t| t <= start + WINDOW);
    for (i, &t) in times.iter().enumerate() {
        if t + WINDOW > end {
            break;
        }
        let upto = times.partition_point(|&u| u <= t + WINDOW);
        least = least.min(upto - (i + 1));
    }
    (most, Some(least))
}

/// Sorted arrivals grouped into runs without a gap of `gap`: each run's size, first arrival and span.
fn bursts(times: &[Instant], gap: Duration) -> Vec<(usize, Instant, Duration)> {
    let mut runs: Vec<(usize, Instant, Duration)> = Vec::new();
    let mut last: Option<Instant> = None;
    for &t in times {
        match (runs.last_mut(), last) {
            (Some(run), Some(previous)) if t - previous < gap => {
                run.0 += 1;
                run.2 = t - run.1;
            }
            _ => runs.push((1, t, Duration::ZERO)),
        }
        last = Some(t);
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_count_the_densest_and_the_sparsest_minute() {
        let start = Instant::now();
        let at = |s: f64| start + Duration::from_secs_f64(s);
        // One a second for 90 s, plus a burst of 5 at 80.5 s.
        let mut times: Vec<Instant> = (0..90).map(|s| at(s as f64)).collect();
        times.extend((0..5).map(|_| at(80.5)));
        times.sort();
        let (most, least) = windows(&times, start, at(90.0));
        assert_eq!(most, 66, "61 ticks (both ends) and the burst");
        assert_eq!(least, Some(60), "(t, t + 60] right after a tick, before the burst");
        assert_eq!(windows(&times, start, at(50.0)).1, None);
        let runs = bursts(&[at(0.0), at(1.0), at(10.0)], Duration::from_secs(5));
        assert_eq!(
            runs.iter().map(|r| (r.0, r.2)).collect::<Vec<_>>(),
            [(2, Duration::from_secs(1)), (1, Duration::ZERO)]
        );
    }
}
