//! Scenario 6: warm-up after a restart, with `restart_keys` keys in active use.
//!
//! The fixture copies a template key `restart_keys` times *with the template's own hash*: whatever the
//! daemon stores for a key created through the API (today one Argon2id cost for every key) is what these
//! keys cost to verify cold, so rerunning after a change to that is all it takes.
//!
//! Warming a hundred thousand keys through Argon2 takes far longer than a benchmark may run, so the keys'
//! history is set up in two parts:
//! - `api_warmed` keys get their first verify through the daemon (Argon2) before the restart, and the
//!   daemon persists whatever it persists for them itself — the end-to-end check;
//! - the rest are recorded as verified before through the store's own batch write of warm digests
//!   ([`seed::seed_warm`]), exactly what the daemon persists for a key it has seen verify.
//!
//! Then: every key is verified once, 32 at a time over 4 connections (the keys in active use, and a check
//! that all of them are warm); the daemon restarts (SIGTERM, wait, start); and at once every key is
//! verified again, once each, in a random order, 32 at a time. That phase is every previously warm key's
//! first request after the restart: the target is that none waits more than 50 ms. Every phase stops at
//! `restart_budget`, so a daemon that comes back cold is measured for that long, not until it is warm.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use keyward_client::{Secret, VerifyCode};

use super::scale::fixture_fs;
use super::{Bench, Storage};
use crate::fixture;
use crate::load::{Measurement, Rng};
use crate::report::{self, Row, Verdict};
use crate::seed::{self, SeedPlan};
use crate::shape::keyward_client;
use crate::verifier::{self, outcome, Outcome};

const SCENARIO: &str = "6. Restart warm-up";
const WORKERS: usize = 32;
const LIMIT: Duration = Duration::from_millis(50);

/// One pass over a set of tokens: each verified once, `WORKERS` at a time.
struct Pass {
    /// Every verify's round trip; a failure is an answer other than VALID.
    measured: Measurement,
    /// When the last key answered VALID, if all did.
    all_valid_after: Option<Duration>,
    valid: u64,
    busy: u64,
    /// Verifies over [`LIMIT`]: when they were sent (since the pass began), which key, how long.
    slow: Vec<(Duration, u32, Duration)>,
}

/// Verifies every token of `tokens` once, in the order of `order`, until done or `budget` is spent.
async fn pass(
    socket: &std::path::Path,
    tokens: Arc<Vec<Secret>>,
    order: Arc<Vec<u32>>,
    budget: Duration,
) -> Result<Pass> {
    let client = keyward_client(socket, 4).await?;
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let valid = Arc::new(AtomicU64::new(0));
    let busy = Arc::new(AtomicU64::new(0));
    let last_valid = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (client, tokens, order) = (client.clone(), tokens.clone(), order.clone());
            let (next, valid, busy, last_valid) = (next.clone(), valid.clone(), busy.clone(), last_valid.clone());
            tokio::spawn(async move {
                let mut measured = Measurement::empty(Duration::ZERO);
                let mut slow = Vec::new();
                while started.elapsed() < budget {
                    let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) else { break };
                    let sent = Instant::now();
                    let answer = outcome(&client, verifier::request(tokens[i as usize].clone())).await;
                    let ok = answer == Outcome::Answered(VerifyCode::Valid);
                    let took = sent.elapsed();
                    measured.record(took, ok);
                    if took > LIMIT {
                        slow.push((sent - started, i, took));
                    }
                    match answer {
                        Outcome::Answered(VerifyCode::Valid) => {
                            valid.fetch_add(1, Ordering::Relaxed);
                            last_valid.fetch_max(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
                        }
                        Outcome::Busy => {
                            busy.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {}
                    }
                }
                (measured, slow)
            })
        })
        .collect();
    let mut measured = Measurement::empty(Duration::ZERO);
    let mut slow = Vec::new();
    for worker in workers {
        let (part, slow_part) = worker.await?;
        measured.merge(&part);
        slow.extend(slow_part);
    }
    slow.sort();
    measured.window = started.elapsed();
    let valid = valid.load(Ordering::Relaxed);
    let all_valid_after =
        (valid == order.len() as u64).then(|| Duration::from_nanos(last_valid.load(Ordering::Relaxed)));
    Ok(Pass { measured, all_valid_after, valid, busy: busy.load(Ordering::Relaxed), slow })
}

/// A random order of `0..n`.
fn shuffled(n: usize, seed: u64) -> Vec<u32> {
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mut rng = Rng::new(seed);
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    order
}

pub(super) fn run(bench: &mut Bench) -> Result<()> {
    let settings = bench.settings.clone();
    let (keys, budget) = (settings.restart_keys, settings.restart_budget);
    let api_warmed = (keys / 10).min(if settings.restart_keys >= 10_000 { 500 } else { 50 });
    let mut daemon = bench.daemon("restart", Storage::Fixture)?;
    let template = fixture::template(&bench.rt, &mut daemon, "acme")?;
    let workspace = |n: u64| format!("ws{}", n % 100);
    // The keys warmed through the daemon get distinct hashes (one Argon2 run each, as distinct keys would
    // cost); the hashes repeat over the other keys, which restart warm without Argon2.
    let hashes = seed::distinct_hashes(&bench.rt, &template.secret, api_warmed as usize)?;
    let plan = SeedPlan {
        template: &template.record,
        secret: template.secret,
        hashes: hashes.clone(),
        first: 0,
        count: keys,
        workspace: &workspace,
    };
    let seeded = seed::seed(daemon.data_dir(), &plan, 8)?;
    let marked = seed::seed_warm(daemon.data_dir(), &hashes, &template.secret, api_warmed..keys)?;
    bench.report.note(format!(
        "restart: {keys} keys seeded in {} ({}, {}); warm digests of {} of them written in {}",
        report::span(seeded.elapsed),
        report::rate(seeded.per_second()),
        fixture_fs(bench),
        marked.keys,
        report::span(marked.elapsed)
    ));
    let tokens: Arc<Vec<Secret>> = Arc::new((0..keys).map(|n| seed::seeded_token(n, &template.secret)).collect());
    daemon.start()?;

    // Before: the first verify of the API-warmed keys (Argon2), then every key once.
    let first: Arc<Vec<u32>> = Arc::new((0..api_warmed as u32).collect());
    let warming = bench.rt.block_on(pass(&daemon.verify_socket(), tokens.clone(), first, budget))?;
    bench.report.row(Row {
        scenario: SCENARIO.to_owned(),
        measure: format!(
            "before the restart: first verify of {api_warmed} keys ({WORKERS} at once; the other {} are marked \
             verified through the store): time; p50 / p99",
            keys - api_warmed
        ),
        keyward: format!(
            "{} VALID in {}; {}",
            warming.valid,
            report::span(warming.measured.window),
            report::latencies(&[warming.measured.quantile(0.5), warming.measured.quantile(0.99)])
        ),
        verdict: Some(Verdict::Info),
        ..Row::default()
    });
    let everyone: Arc<Vec<u32>> = Arc::new(shuffled(keys as usize, 11));
    let before = bench.rt.block_on(pass(&daemon.verify_socket(), tokens.clone(), everyone, budget))?;
    bench.report.row(Row {
        scenario: SCENARIO.to_owned(),
        measure: format!(
            "before the restart: every one of the {keys} keys verified once ({WORKERS} at once): p50 / p99 / max"
        ),
        keyward: format!("{}; {}", describe(&before, keys), report::latencies(&quantiles(&before.measured))),
        verdict: Some(Verdict::Info),
        ..Row::default()
    });

    // Restart, then every previously warm key once, at once.
    daemon.stop()?;
    let startup = daemon.start()?;
    bench.report.row(Row {
        scenario: SCENARIO.to_owned(),
        measure: format!("restart with {keys} keys: start until READY=1 / until both sockets answer"),
        keyward: format!("{} / {}", report::span(startup.ready), report::span(startup.answering)),
        verdict: Some(Verdict::Info),
        ..Row::default()
    });
    let again: Arc<Vec<u32>> = Arc::new(shuffled(keys as usize, 12));
    let after = bench.rt.block_on(pass(&daemon.verify_socket(), tokens, again, budget))?;
    bench.report.row(Row {
        scenario: SCENARIO.to_owned(),
        measure: format!("after the restart: every previously warm key verified once, at once ({WORKERS} in flight)"),
        keyward: describe(&after, keys),
        verdict: Some(Verdict::Info),
        ..Row::default()
    });
    let slow = after.measured.count_above(LIMIT);
    let max = after.measured.max();
    bench.report.row(Row {
        scenario: SCENARIO.to_owned(),
        measure: "meanwhile: p50 / p99 / max; verifies over 50 ms".to_owned(),
        keyward: format!(
            "{}; {slow} of {} over 50 ms{}",
            report::latencies(&quantiles(&after.measured)),
            after.measured.requests,
            if after.busy > 0 { format!("; {} BUSY", after.busy) } else { String::new() }
        ),
        target: "no verify of a previously warm key > 50 ms".to_owned(),
        verdict: Some(Verdict::check(slow == 0 && after.busy == 0, format!("max {}", report::latency(max)))),
        ..Row::default()
    });
    if !after.slow.is_empty() {
        bench.report.note(slow_note(&after.slow, api_warmed));
    }
    let inside = bench.rt.block_on(daemon_side_over(&daemon.admin_socket(), LIMIT))?;
    bench.report.note(format!(
        "restart: by the daemon's own latency histogram (request decoded → answer ready, `keyward stats`), {} \
         verifies since the restart took over {} inside keywardd",
        inside,
        report::latency(LIMIT)
    ));
    daemon.stop()
}

/// Verifies the daemon itself timed at over `limit` since it started (from its stats histogram, whose
/// bucket bounds are within 12.5 % of the true values), to tell a stall inside keywardd from a client or
/// scheduler one.
async fn daemon_side_over(admin_socket: &std::path::Path, limit: Duration) -> Result<u64> {
    let stats = keyward_client(admin_socket, 1).await?.stats().await?;
    let buckets = &stats.verify_latency.buckets;
    let at_or_below = buckets.iter().take_while(|(bound, _)| *bound <= limit.as_secs_f64()).last().map_or(0, |b| b.1);
    Ok(stats.verify_latency.count.saturating_sub(at_or_below))
}

/// Which keys the slow verifies after the restart were for, and when they were sent: Argon2 for cold
/// keys spreads them over the pass; a stall of the daemon sends a burst of them at one moment.
fn slow_note(slow: &[(Duration, u32, Duration)], api_warmed: u64) -> String {
    let through_api = slow.iter().filter(|(_, i, _)| u64::from(*i) < api_warmed).count();
    let mut bursts: Vec<(u128, usize, Duration)> = Vec::new();
    for &(sent, _, took) in slow {
        let bucket = sent.as_millis() / 10;
        match bursts.last_mut() {
            Some((at, count, longest)) if *at == bucket => {
                *count += 1;
                *longest = (*longest).max(took);
            }
            _ => bursts.push((bucket, 1, took)),
        }
    }
    let shown: Vec<String> = bursts
        .iter()
        .take(12)
        .map(|(at, count, longest)| format!("{count} at {} ms (up to {})", at * 10, report::latency(*longest)))
        .collect();
    format!(
        "restart: the {} verifies over 50 ms after the restart were for {through_api} keys warmed through the API \
         and {} keys marked through the store; sent (10 ms buckets from the start of the pass): {}{}",
        slow.len(),
        slow.len() - through_api,
        shown.join(", "),
        if bursts.len() > 12 { ", …" } else { "" }
    )
}

fn quantiles(m: &Measurement) -> [Duration; 3] {
    [m.quantile(0.5), m.quantile(0.99), m.max()]
}

/// `all N VALID after T`, or how far a pass got within its budget.
fn describe(pass: &Pass, keys: u64) -> String {
    match pass.all_valid_after {
        Some(after) => format!("all {keys} VALID after {}", report::span(after)),
        None => {
            let pace = pass.valid.max(1) as f64 / pass.measured.window.as_secs_f64();
            format!(
                "{} of {keys} VALID when the budget ({}) ran out; at that pace all in ~{}",
                pass.valid,
                report::span(pass.measured.window),
                report::span(Duration::from_secs_f64(keys as f64 / pace))
            )
        }
    }
}
