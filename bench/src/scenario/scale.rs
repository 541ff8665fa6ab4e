//! Scenario 5: a million keys.
//!
//! The fixture copies a template key `scale_keys` times into the store on the fixture file system (a
//! tmpfs when there is one: committing a million keys one transaction each on a disk takes minutes).
//! The first `list_keys` copies belong to workspace `big`, the rest to a thousand others. The copies carry
//! a *cheap* Argon2 hash of the shared secret (64 KiB, 1 pass) instead of the template's, so that warming
//! the random hot set costs seconds instead of minutes; memory, startup and warm verifies do not depend on
//! the hash's cost (its PHC string is as long).
//!
//! Measured: seeding; RSS after start and after the traffic (and the peak); the warm-up of `scale_hot`
//! keys picked at random; warm verifies over those keys, a random one per request, at 1 and 32
//! connections beside the echo floor; listing `big`; startup until `READY=1` and until both sockets
//! answer, at the first start and again at a restart.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use keyward_client::VerifyCode;
use keyward_daemon::internals::{DigestKeys, HashCost, Hasher};
use zeroize::Zeroizing;

use super::warm::{compare_rows, Compared};
use super::{note_failures, Bench, Storage};
use crate::fixture;
use crate::load::Rng;
use crate::report::{self, Row, Verdict};
use crate::seed::{self, SeedPlan};
use crate::shape::{self, keyward_client, Shape};
use crate::verifier;

const SCENARIO: &str = "5. Scale";

pub(super) fn run(bench: &mut Bench) -> Result<()> {
    let settings = bench.settings.clone();
    let (keys, hot, big) = (settings.scale_keys, settings.scale_hot.min(settings.scale_keys), settings.list_keys);
    let mut daemon = bench.daemon("scale", Storage::Fixture)?;
    let template = fixture::template(&bench.rt, &mut daemon, "acme")?;
    let cheap = bench.rt.block_on(async {
        let cost = HashCost { memory_kib: 64, iterations: 1, parallelism: 1 };
        let hasher = Hasher::new(cost, 1, 1, DigestKeys::ephemeral()).map_err(anyhow::Error::msg)?;
        Ok::<_, anyhow::Error>(hasher.hash(Zeroizing::new(template.secret.to_vec())).await?)
    })?;
    let workspace = |n: u64| if n < big { "big".to_owned() } else { format!("ws{}", n % 1000) };
    let plan = SeedPlan {
        template: &template.record,
        secret: template.secret,
        hashes: vec![cheap],
        first: 0,
        count: keys,
        workspace: &workspace,
    };
    let seeded = seed::seed(daemon.data_dir(), &plan, 8)?;
    bench.report.row(Row {
        scenario: SCENARIO.to_owned(),
        measure: format!("seed {keys} keys into the store (Store::commit per key, 8 threads, {})", fixture_fs(bench)),
        keyward: format!("{} ({})", report::span(seeded.elapsed), report::rate(seeded.per_second())),
        verdict: Some(Verdict::Info),
        ..Row::default()
    });

    let startup = daemon.start()?;
    let after_start = daemon.memory()?;

    // A random hot set, warmed with one verify each.
    let mut rng = Rng::new(42);
    let mut chosen = HashSet::with_capacity(hot as usize);
    while (chosen.len() as u64) < hot {
        chosen.insert(rng.below(keys));
    }
    let tokens: Arc<Vec<_>> = Arc::new(chosen.into_iter().map(|n| seed::seeded_token(n, &template.secret)).collect());
    let verify_socket = daemon.verify_socket();
    let warmed = bench.rt.block_on(async {
        let client = keyward_client(&verify_socket, 4).await?;
        let started = Instant::now();
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let workers: Vec<_> = (0..32)
            .map(|_| {
                let (client, tokens, next) = (client.clone(), Arc::clone(&tokens), Arc::clone(&next));
                tokio::spawn(async move {
                    let mut valid = 0u64;
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(token) = tokens.get(i) else { return valid };
                        if matches!(client.verify(verifier::request(token.clone())).await, Ok(a) if a.code == VerifyCode::Valid) {
                            valid += 1;
                        }
                    }
                })
            })
            .collect();
        let mut valid = 0;
        for worker in workers {
            valid += worker.await?;
        }
        Ok::<_, anyhow::Error>((valid, started.elapsed()))
    })?;
    ensure!(warmed.0 == hot, "only {} of {hot} hot keys verified", warmed.0);
    bench.report.note(format!(
        "scale: the {hot} random hot keys were warmed (one verify each, 32 at once) in {}",
        report::span(warmed.1)
    ));

    let phase = settings.phase;
    for shape in [Shape::Connections(1), Shape::Connections(32)] {
        let floor = bench.floor(shape)?;
        let keyward = bench.rt.block_on(shape::keyward_random(&verify_socket, shape, phase, &tokens))?;
        let label = format!("{}, random key of {hot}", shape.label());
        note_failures(&mut bench.report, &format!("scale, {label}"), &keyward);
        let compared = Compared {
            scenario: "5. Scale (1M keys)",
            label,
            shape,
            raw: None,
            floor: &floor,
            keyward: &keyward,
            redis: None,
        };
        compare_rows(&mut bench.report, &compared);
    }

    let after_traffic = daemon.memory()?;
    let rss_ok = after_traffic.rss_mib() <= 400.0;
    bench.report.row(Row {
        scenario: SCENARIO.to_owned(),
        measure: format!("{keys} keys: RSS after start / after the traffic (peak)"),
        keyward: format!(
            "{:.0} / {:.0} MiB (peak {:.0} MiB)",
            after_start.rss_mib(),
            after_traffic.rss_mib(),
            after_traffic.peak_mib()
        ),
        target: "RSS ≤ 400 MiB".to_owned(),
        verdict: Some(Verdict::check(rss_ok, format!("{:.0} MiB", after_traffic.rss_mib()))),
        ..Row::default()
    });

    let listed = bench.rt.block_on(async {
        let admin = keyward_client(&daemon.admin_socket(), 1).await?;
        let started = Instant::now();
        let keys = admin.list("big").await?;
        Ok::<_, anyhow::Error>((keys.len() as u64, started.elapsed()))
    })?;
    ensure!(listed.0 == big, "listing `big` returned {} keys, not {big}", listed.0);
    bench.report.row(Row {
        scenario: SCENARIO.to_owned(),
        measure: format!("list a {big}-key workspace among {keys} keys (keyward_client::list, pages of 100)"),
        keyward: report::span(listed.1),
        verdict: Some(Verdict::Info),
        ..Row::default()
    });

    // Startup once more: the first start follows the seeding straight away, on a busy machine; a second
    // start tells a slow start from a noisy moment. The verdict takes the faster.
    daemon.stop()?;
    let restarted = daemon.start()?;
    let best = startup.ready.min(restarted.ready);
    bench.report.row(Row {
        scenario: SCENARIO.to_owned(),
        measure: format!("{keys} keys: start until READY=1 / until both sockets answer a Ping; first start · restart"),
        keyward: format!(
            "{} / {} · {} / {}",
            report::span(startup.ready),
            report::span(startup.answering),
            report::span(restarted.ready),
            report::span(restarted.answering)
        ),
        target: "READY ≤ 3 s".to_owned(),
        verdict: Some(Verdict::check(best <= Duration::from_secs(3), format!("best {}", report::span(best)))),
        ..Row::default()
    });
    daemon.stop()
}

/// Which file system the fixtures live on, for the table.
pub(super) fn fixture_fs(bench: &Bench) -> &'static str {
    if bench.settings.fixture_dir.starts_with("/dev/shm") {
        "tmpfs"
    } else {
        "disk"
    }
}
