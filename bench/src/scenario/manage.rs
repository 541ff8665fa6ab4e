//! Scenario 7: management through `keyward_client` on the admin socket, data on a real disk.
//!
//! - create/s: 4 clients' worth of concurrent creates for the measuring window (each create hashes a new
//!   secret with Argon2 and commits the key and its audit entry with an fsync before answering);
//! - revoke/s: the keys just created, revoked 4 at a time (a commit and fsync each, no Argon2);
//! - listing a `list_keys`-key workspace (seeded from a template) to the end, pages of 100; best of 3.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};

use super::{note_failures, Bench, Storage};
use crate::fixture::{self, create_request};
use crate::load::Measurement;
use crate::report::{self, Row, Verdict};
use crate::seed::{self, SeedPlan};
use crate::shape::keyward_client;

const SCENARIO: &str = "7. Management";
const CONCURRENCY: usize = 4;

pub(super) fn run(bench: &mut Bench) -> Result<()> {
    let settings = bench.settings.clone();
    let big = settings.list_keys;
    let mut daemon = bench.daemon("manage", Storage::Disk)?;
    let template = fixture::template(&bench.rt, &mut daemon, "acme")?;
    let workspace = |_: u64| "big".to_owned();
    let plan = SeedPlan {
        template: &template.record,
        secret: template.secret,
        hashes: Vec::new(),
        first: 0,
        count: big,
        workspace: &workspace,
    };
    seed::seed(daemon.data_dir(), &plan, 8)?;
    daemon.start()?;
    let window = settings.phase.window.max(Duration::from_secs(1));
    let admin_socket = daemon.admin_socket();

    let (creates, revokes, list_times) = bench.rt.block_on(async {
        let admin = keyward_client(&admin_socket, CONCURRENCY).await?;
        let created = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        let workers: Vec<_> = (0..CONCURRENCY)
            .map(|w| {
                let (admin, created) = (admin.clone(), created.clone());
                tokio::spawn(async move {
                    let mut measured = Measurement::empty(window);
                    let mut n = 0;
                    while started.elapsed() < window {
                        let request = create_request("mgmt", &format!("bench create {w}-{n}"))?;
                        n += 1;
                        let sent = Instant::now();
                        let result = admin.create(request).await;
                        measured.record(sent.elapsed(), result.is_ok());
                        if let Ok(key) = result {
                            created.lock().unwrap_or_else(PoisonError::into_inner).push(key.key.id);
                        }
                    }
                    Ok::<_, anyhow::Error>(measured)
                })
            })
            .collect();
        let mut creates = Measurement::empty(Duration::ZERO);
        for worker in workers {
            creates.merge(&worker.await??);
        }
        creates.window = started.elapsed();

        let to_revoke =
            Arc::new(Mutex::new(std::mem::take(&mut *created.lock().unwrap_or_else(PoisonError::into_inner))));
        let started = Instant::now();
        let workers: Vec<_> = (0..CONCURRENCY)
            .map(|_| {
                let (admin, to_revoke) = (admin.clone(), to_revoke.clone());
                tokio::spawn(async move {
                    let mut measured = Measurement::empty(Duration::ZERO);
                    loop {
                        let next = to_revoke.lock().unwrap_or_else(PoisonError::into_inner).pop();
                        let Some(id) = next else { return measured };
                        let sent = Instant::now();
                        let result = admin.revoke(&id).await;
                        measured.record(sent.elapsed(), result.is_ok());
                    }
                })
            })
            .collect();
        let mut revokes = Measurement::empty(Duration::ZERO);
        for worker in workers {
            revokes.merge(&worker.await?);
        }
        revokes.window = started.elapsed();

        let mut list_times = Vec::new();
        for _ in 0..3 {
            let started = Instant::now();
            let listed = admin.list("big").await?;
            list_times.push(started.elapsed());
            ensure!(listed.len() as u64 == big, "listing `big` returned {} keys, not {big}", listed.len());
        }
        Ok::<_, anyhow::Error>((creates, revokes, list_times))
    })?;
    note_failures(&mut bench.report, "creates", &creates);
    note_failures(&mut bench.report, "revokes", &revokes);
    for (what, measured) in [("create", &creates), ("revoke", &revokes)] {
        bench.report.row(Row {
            scenario: SCENARIO.to_owned(),
            measure: format!("{what} (durable), {CONCURRENCY} at once: rate; latency p50 / p99"),
            keyward: format!(
                "{}; {}",
                report::rate(measured.throughput()),
                report::latencies(&[measured.quantile(0.5), measured.quantile(0.99)])
            ),
            verdict: Some(Verdict::Info),
            ..Row::default()
        });
    }
    let best = list_times.iter().min().copied().unwrap_or_default();
    bench.report.row(Row {
        scenario: SCENARIO.to_owned(),
        measure: format!("list a {big}-key workspace to the end (keyward_client::list, pages of 100), best of 3"),
        keyward: report::span(best),
        verdict: Some(Verdict::Info),
        ..Row::default()
    });
    daemon.stop()
}
