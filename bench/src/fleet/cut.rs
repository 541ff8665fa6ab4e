//! Part 3: convergence after host c's engine link was cut, and after the engine restarts.
//!
//! A fleet of three hosts (notifications on, poll interval 1 s), host c reaching the engine through a
//! [`super::relay::Relay`]. Every host runs with a cheap Argon2 cost ([`CHEAP_ARGON2`]): the keys made
//! during the cut are new to c, and its first verify of each one costs a hash at the cost stored with the
//! key; at the default cost (~15 ms, one Argon2 thread on this machine) 100 of them would take ~1.5 s of
//! the 2 s budget and measure Argon2, not convergence. The replica's catch-up alone (c's applied change
//! reaching the fleet's newest, from `keyward stats`) is reported too, and does not depend on Argon2.
//!
//! - Cut: the relay closes c's connections and refuses new ones for `cut_seconds`, while a creates 100
//!   keys and revokes 50 of them (and c goes on verifying a key from its replica: errors counted).
//!   Restore, then poll c (stats, and a verify of every key not yet answering as it should: VALID for the
//!   50 kept, REVOKED for the 50 revoked) until every key answers correctly.
//! - Engine restart: with ~200 verifies/s per host going on, SIGKILL to the postmaster, a management call
//!   on a while it is down (how it fails, and how fast), restart; from the moment the engine accepts
//!   connections again: until a create on a succeeds, and until b and c answer VALID for that key.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use keyward_client::{BlockingClient, VerifyCode};

use super::host::{code, create_keys, wait_all, Drivers, Fleet, FleetPlan, Host, Key, CHEAP_ARGON2};
use super::table::{ms, Section};
use super::Run;
use crate::fixture::create_request;

const CREATED: usize = 100;
const REVOKED: usize = 50;

pub(super) fn run(run: &mut Run) -> Result<Vec<Section>> {
    let plan = FleetPlan {
        root: run.root.join("cut"),
        database: "cut",
        nodes: &["a", "b", "c"],
        notify: true,
        poll_interval_ms: 1000,
        top: CHEAP_ARGON2,
        fleet_lines: "",
        relay_last: true,
    };
    let mut fleet = Fleet::start(run, &plan)?;
    let mut cut =
        Section::new(&format!("3a. Convergence after a {} s cut of host c's engine link", run.args.cut_seconds));
    if let Err(error) = measure_cut(run, &fleet, &mut cut) {
        cut.note(format!("**failed**: {error:#}"));
        cut.note(format!("logs:\n```\n{}```", fleet.logs()));
    }
    let mut restart = Section::new("3b. Convergence after the engine restarts (SIGKILL to the postmaster)");
    if let Err(error) = measure_restart(run, &fleet, &mut restart) {
        restart.note(format!("**failed**: {error:#}"));
        let engine = run.cluster.as_ref().map(|c| c.log_tail()).unwrap_or_default();
        restart.note(format!("logs:\n```\n{}--- postgres log:\n{engine}\n```", fleet.logs()));
    }
    fleet.stop();
    Ok(vec![cut, restart])
}

fn measure_cut(run: &Run, fleet: &Fleet, section: &mut Section) -> Result<()> {
    let (a, b, c) = (fleet.host("a"), fleet.host("b"), fleet.host("c"));
    let relay = c.relay.as_ref().context("host c has no relay")?;
    let canary = create_keys(&run.rt, &a.admin_socket(), "canary", 1, 1)?;
    wait_all(&[a, b, c], &canary, VerifyCode::Valid, Duration::from_secs(10)).context("the canary key")?;

    relay.cut();
    let cut_at = Instant::now();
    let cut_for = Duration::from_secs_f64(run.args.cut_seconds);
    // c notices: its follower's connection closed.
    let noticed = wait_for(Duration::from_secs(10), || Ok(!c.fleet()?.engine_reachable));
    let noticed = noticed.map(|_| cut_at.elapsed());

    let keys = create_keys(&run.rt, &a.admin_socket(), "cut", CREATED, 4)?;
    let mut admin = a.admin(Duration::from_secs(10))?;
    for key in &keys[..REVOKED] {
        admin.revoke(&key.id).with_context(|| format!("revoking {} on a during the cut", key.id))?;
    }
    let changes_done = cut_at.elapsed();
    let head = a.fleet()?.applied_seq;
    let at_cut = c.fleet()?.applied_seq;

    // Until the cut is over, c keeps verifying the canary from its replica.
    let mut canary_client = c.verifier()?;
    let (mut canary_verifies, mut canary_bad) = (0u64, 0u64);
    while cut_at.elapsed() < cut_for {
        canary_verifies += 1;
        if !matches!(code(&mut canary_client, &canary[0].token), Ok(VerifyCode::Valid)) {
            canary_bad += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let c_during = c.fleet()?;

    relay.restore();
    let restored = Instant::now();
    let expected = |i: usize| if i < REVOKED { VerifyCode::Revoked } else { VerifyCode::Valid };
    let mut pending: Vec<(usize, &Key)> = keys.iter().enumerate().collect();
    let mut verifier = c.verifier()?;
    let mut stats = c.admin(Duration::from_secs(5))?;
    let mut caught_up = None;
    let mut wrong_seen = 0u64;
    while !pending.is_empty() || caught_up.is_none() {
        if restored.elapsed() > Duration::from_secs(60) {
            bail!(
                "host c had not converged 60 s after the link returned: {} keys still answer wrongly, replica at {:?} of {head}",
                pending.len(),
                stats.stats().ok().and_then(|s| s.fleet).map(|f| f.applied_seq)
            );
        }
        if caught_up.is_none() && stats.stats()?.fleet.is_some_and(|f| f.applied_seq >= head) {
            caught_up = Some(restored.elapsed());
        }
        let mut still = Vec::new();
        for (i, key) in pending {
            match code(&mut verifier, &key.token) {
                Ok(answer) if answer == expected(i) => {}
                Ok(VerifyCode::NotFound) => still.push((i, key)),
                Ok(_) => {
                    wrong_seen += 1;
                    still.push((i, key));
                }
                Err(_) => still.push((i, key)),
            }
        }
        pending = still;
        std::thread::sleep(Duration::from_millis(1));
    }
    let converged = restored.elapsed();
    let caught_up = caught_up.expect("set before the loop ends");
    let c_after = c.fleet()?;

    section.target(
        format!(
            "link restored → c answers correctly for all {CREATED} keys ({REVOKED} REVOKED, {} VALID)",
            CREATED - REVOKED
        ),
        ms(converged),
        "≤ 2 s",
        converged <= Duration::from_secs(2),
    );
    section.info("link restored → c's replica at the fleet's newest change (keyward stats)", ms(caught_up));
    section.info(
        "changes made on a during the cut; c's applied change before / at the end of the cut / after",
        format!(
            "{} creates + {REVOKED} revokes in {} (fleet's newest #{head}); c: #{at_cut} / #{} / #{}",
            CREATED,
            ms(changes_done),
            c_during.applied_seq,
            c_after.applied_seq
        ),
    );
    section.info(
        "host c during the cut: engine reachable / noticed after / canary verifies not VALID",
        format!(
            "{} / {} / {canary_bad} of {canary_verifies}",
            c_during.engine_reachable,
            noticed.map_or_else(|e| format!("not within 10 s ({e:#})"), ms)
        ),
    );
    section.info(
        "host c after: reconnects / changes applied since start",
        format!("{} / {}", c_after.reconnects, c_after.changes_applied),
    );
    if wrong_seen > 0 {
        section.note(format!(
            "{wrong_seen} answers on c after the restore were neither NOT_FOUND (not yet applied) nor the final code \
             (a kept key's creation applied before its revocation is a legitimate intermediate VALID)"
        ));
    }
    let _ = b;
    Ok(())
}

fn measure_restart(run: &mut Run, fleet: &Fleet, section: &mut Section) -> Result<()> {
    let (a, b, c) = (fleet.host("a"), fleet.host("b"), fleet.host("c"));
    let background = create_keys(&run.rt, &a.admin_socket(), "restart-bg", 8, 4)?;
    wait_all(&[a, b, c], &background, VerifyCode::Valid, Duration::from_secs(10))?;
    let drivers = Drivers::start(&run.rt, &[a, b, c], &background, 200);
    std::thread::sleep(Duration::from_millis(500));
    let outcome = kill_and_restart(run, a, &[b, c], section);
    let driven = drivers.finish(&run.rt)?;
    outcome?;
    let errors: u64 = driven.iter().map(|d| d.errors + d.not_valid).sum();
    let total: u64 = driven.iter().map(|d| d.verifies).sum();
    section.target(
        "verifies on a, b, c (~200/s each) during the outage and recovery that were not VALID",
        format!("{errors} of {total}"),
        "0",
        errors == 0,
    );
    Ok(())
}

fn kill_and_restart(run: &mut Run, a: &Host, others: &[&Host], section: &mut Section) -> Result<()> {
    let cluster = run.cluster.as_mut().context("no cluster")?;
    cluster.kill9()?;
    let killed = Instant::now();
    // A management call while the engine is down: how fast and how it fails.
    std::thread::sleep(Duration::from_millis(500));
    let mut admin = a.admin(Duration::from_secs(10))?;
    let sent = Instant::now();
    let down = admin.create(create_request("restart", "during the outage")?);
    let refused_in = sent.elapsed();
    let refusal = match &down {
        Ok(_) => "it succeeded (!)".to_owned(),
        Err(error) => format!("{error}"),
    };
    section.target(
        "a management call on a while the engine is down: fails within",
        format!("{} ({refusal})", ms(refused_in)),
        "≤ 2 s, a clear error",
        down.is_err() && refused_in <= Duration::from_secs(2),
    );
    std::thread::sleep(Duration::from_secs(1));
    let restarting = Instant::now();
    let up = cluster.restart()?;
    let restarted_in = up - restarting;

    let mut attempts = 0;
    let mut last_error = String::new();
    let created = loop {
        if up.elapsed() > Duration::from_secs(60) {
            bail!("no management call on a succeeded within 60 s of the engine's restart: {last_error}");
        }
        attempts += 1;
        let mut admin = a.admin(Duration::from_secs(5))?;
        match admin.create(create_request("restart", &format!("after the restart {attempts}"))?) {
            Ok(created) => break created,
            Err(error) => {
                last_error = error.to_string();
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    };
    let managed = up.elapsed();
    let token = created.token;
    std::thread::scope(|scope| -> Result<()> {
        let waits: Vec<_> = others
            .iter()
            .map(|host| {
                let token = token.clone();
                scope.spawn(move || -> Result<()> {
                    let mut client: BlockingClient = host.verifier()?;
                    let started = Instant::now();
                    while code(&mut client, &token)? != VerifyCode::Valid {
                        if started.elapsed() > Duration::from_secs(60) {
                            bail!("host {} did not see the key made after the restart within 60 s", host.name);
                        }
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Ok(())
                })
            })
            .collect();
        waits.into_iter().try_for_each(|wait| wait.join().map_err(|_| anyhow!("a waiting thread panicked"))?)
    })?;
    let visible = up.elapsed();
    section.target(
        "engine accepting again → a management call on a succeeds",
        format!(
            "{} ({attempts} attempts{})",
            ms(managed),
            if attempts > 1 { format!("; last refusal: {last_error}") } else { String::new() }
        ),
        "≤ 5 s",
        managed <= Duration::from_secs(5),
    );
    section.target(
        "engine accepting again → that change answers VALID on b and c",
        ms(visible),
        "≤ 5 s",
        visible <= Duration::from_secs(5),
    );
    section.info(
        "engine down for (SIGKILL → restarted and accepting, crash recovery included)",
        format!("{} (restart itself {})", ms(up - killed), ms(restarted_in)),
    );
    Ok(())
}

/// Polls `condition` every 5 ms until it holds; fails after `patience`.
fn wait_for(patience: Duration, mut condition: impl FnMut() -> Result<bool>) -> Result<()> {
    let started = Instant::now();
    loop {
        if condition().unwrap_or(false) {
            return Ok(());
        }
        if started.elapsed() > patience {
            bail!("not within {}", ms(patience));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
