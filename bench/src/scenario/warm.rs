//! Scenarios 1–3: warm verify under every shape, beside the echo floor (raw and pooled) and Redis.
//!
//! One key, created through the admin API (two scopes, a custom rate of 1,000,000,000/s that never
//! refuses, no expiry) and verified once before anything is measured, so every measured verify is warm.
//! Each verify presents the real token and requires `read:tables`, so it runs the whole warm path:
//! parse and checksum, index lookup, keyed digest and compare, state checks, scope check, rate limit,
//! usage count, answer. For every shape the four targets run back to back (raw echo, floor, keyward,
//! Redis) so that they see the same machine.

use std::sync::Arc;

use anyhow::{ensure, Result};
use keyward_client::VerifyCode;

use super::{note_failures, percentiles, Bench, Storage};
use crate::fixture::create_request;
use crate::load::Measurement;
use crate::process;
use crate::report::{self, ratio, Report, Row, Verdict};
use crate::resp::{self, RedisCall};
use crate::shape::{self, keyward_client, Shape};
use crate::verifier::{self, KEY_SCOPES, SCOPE};

/// What one shape measured on each side.
pub(super) struct Compared<'a> {
    pub scenario: &'a str,
    pub label: String,
    pub shape: Shape,
    pub raw: Option<&'a Measurement>,
    pub floor: &'a Measurement,
    pub keyward: &'a Measurement,
    pub redis: Option<&'a Measurement>,
}

/// The throughput row and the latency row of one shape, with the targets.
pub(super) fn compare_rows(report: &mut Report, c: &Compared<'_>) {
    let (kw, floor) = (c.keyward, c.floor);
    let vs_floor = kw.throughput() / floor.throughput().max(1e-9);
    let vs_redis = c.redis.map(|redis| kw.throughput() / redis.throughput().max(1e-9));
    let floor_target = matches!(c.shape, Shape::Connections(32) | Shape::Pipelined(_));
    let mut targets = Vec::new();
    let mut ok = true;
    let mut figures = Vec::new();
    if floor_target {
        targets.push("≥ 0.8× floor".to_owned());
        ok &= vs_floor >= 0.8;
        figures.push(format!("{vs_floor:.2}× floor"));
    }
    if let Some(vs_redis) = vs_redis {
        targets.push("≥ 3× Redis".to_owned());
        ok &= vs_redis >= 3.0;
        figures.push(format!("{vs_redis:.2}× Redis"));
    }
    report.row(Row {
        scenario: c.scenario.to_owned(),
        measure: format!("{}: throughput", c.label),
        raw: c.raw.map(|m| report::rate(m.throughput())).unwrap_or_default(),
        floor: report::rate(floor.throughput()),
        keyward: report::rate(kw.throughput()),
        redis: c.redis.map(|m| report::rate(m.throughput())).unwrap_or_default(),
        vs_floor: ratio(kw.throughput(), floor.throughput()),
        vs_redis: c.redis.map(|m| ratio(kw.throughput(), m.throughput())).unwrap_or_default(),
        target: targets.join("; "),
        verdict: Some(if targets.is_empty() { Verdict::Info } else { Verdict::check(ok, figures.join(", ")) }),
    });

    let q = |m: &Measurement, q: f64| m.quantile(q).as_secs_f64();
    let (p50, p99, p999) = (q(kw, 0.5) / q(floor, 0.5), q(kw, 0.99) / q(floor, 0.99), q(kw, 0.999) / q(floor, 0.999));
    let latency_target = matches!(c.shape, Shape::Connections(1) | Shape::Connections(32));
    let verdict = if latency_target {
        Verdict::check(p50 <= 1.2 && p99 <= 1.5, format!("p50 {p50:.2}×, p99 {p99:.2}×"))
    } else {
        Verdict::Info
    };
    report.row(Row {
        scenario: c.scenario.to_owned(),
        measure: format!("{}: latency p50 / p99 / p99.9", c.label),
        raw: c.raw.map(percentiles).unwrap_or_default(),
        floor: percentiles(floor),
        keyward: percentiles(kw),
        redis: c.redis.map(percentiles).unwrap_or_default(),
        vs_floor: format!("{p50:.2}× / {p99:.2}× / {p999:.2}×"),
        vs_redis: c
            .redis
            .map(|r| {
                format!(
                    "{:.2}× / {:.2}× / {:.2}×",
                    q(kw, 0.5) / q(r, 0.5),
                    q(kw, 0.99) / q(r, 0.99),
                    q(kw, 0.999) / q(r, 0.999)
                )
            })
            .unwrap_or_default(),
        target: if latency_target { "p50 ≤ 1.2×, p99 ≤ 1.5× floor".to_owned() } else { String::new() },
        verdict: Some(verdict),
    });
}

pub(super) fn run(bench: &mut Bench) -> Result<()> {
    let mut daemon = bench.daemon("warm", Storage::Disk)?;
    daemon.start()?;
    let (token, request) = bench.rt.block_on(async {
        let admin = keyward_client(&daemon.admin_socket(), 1).await?;
        let created = admin.create(create_request("acme", "bench warm key")?).await?;
        let request = verifier::request(created.token.clone());
        let client = keyward_client(&daemon.verify_socket(), 1).await?;
        let answer = client.verify(request.clone()).await?;
        ensure!(answer.code == VerifyCode::Valid, "the warm key verified as {}", answer.code);
        Ok::<_, anyhow::Error>((created.token, request))
    })?;

    let redis = match bench.settings.redis_socket.clone() {
        None => {
            bench
                .report
                .note("Redis: not measured (no --redis-socket; run.sh could not install or start redis-server)");
            None
        }
        Some(socket) => {
            let scopes = KEY_SCOPES.join(" ");
            match bench.rt.block_on(resp::prepare(&socket, token.expose(), "acme", &scopes)) {
                Ok(script_sha) => {
                    let call = RedisCall {
                        script_sha,
                        token: token.expose().to_owned(),
                        scope: SCOPE.to_owned(),
                        limit: 1_000_000_000,
                    };
                    Some((socket, Arc::new(call)))
                }
                Err(error) => {
                    bench.report.note(format!("Redis: not measured, setting it up failed: {error}"));
                    None
                }
            }
        }
    };

    let phase = bench.settings.phase;
    let echo = bench.echo_socket.clone();
    for shape in Shape::ALL {
        let raw = bench.rt.block_on(shape::raw(&echo, shape, phase))?;
        let floor = bench.rt.block_on(shape::floor(&echo, shape, phase))?;
        let keyward = bench.rt.block_on(shape::keyward(&daemon.verify_socket(), shape, phase, &request))?;
        let redis = match &redis {
            Some((socket, call)) => Some(bench.rt.block_on(shape::redis(socket, shape, phase, call))?),
            None => None,
        };
        let label = shape.label();
        note_failures(&mut bench.report, &format!("echo floor, {label}"), &floor);
        note_failures(&mut bench.report, &format!("keyward, {label}"), &keyward);
        if let Some(redis) = &redis {
            note_failures(&mut bench.report, &format!("Redis, {label}"), redis);
        }
        let compared = Compared {
            scenario: "1–3. Warm verify (one key)",
            label,
            shape,
            raw: Some(&raw),
            floor: &floor,
            keyward: &keyward,
            redis: redis.as_ref(),
        };
        compare_rows(&mut bench.report, &compared);
    }

    // The one-at-a-time round trip again with the client and the server on one CPU. Across the two CPUs
    // of a virtual machine each round trip pays two cross-CPU wake-ups of a halted vCPU (tens of µs, the
    // same for every target), which hides what the targets themselves cost; on one CPU a wake-up is a
    // local context switch.
    let shape = Shape::Connections(1);
    let me = std::process::id();
    let echo_pid = bench.echo_pid();
    let raw = on_one_cpu(&[me, echo_pid], || bench.rt.block_on(shape::raw(&echo, shape, phase)))?;
    let floor = on_one_cpu(&[me, echo_pid], || bench.rt.block_on(shape::floor(&echo, shape, phase)))?;
    let keyward = on_one_cpu(&[me, daemon.pid()], || {
        bench.rt.block_on(shape::keyward(&daemon.verify_socket(), shape, phase, &request))
    })?;
    let redis = match &redis {
        Some((socket, call)) => {
            let pids: Vec<u32> = [Some(me), bench.settings.redis_pid].into_iter().flatten().collect();
            Some(on_one_cpu(&pids, || bench.rt.block_on(shape::redis(socket, shape, phase, call)))?)
        }
        None => None,
    };
    let compared = Compared {
        scenario: "1–3. Warm verify (one key)",
        label: "1 connection, 1 request at a time, client and server on one CPU".to_owned(),
        shape,
        raw: Some(&raw),
        floor: &floor,
        keyward: &keyward,
        redis: redis.as_ref(),
    };
    compare_rows(&mut bench.report, &compared);
    daemon.stop()
}

/// Runs `measure` with every thread of `pids` on CPU 0, and lets them run anywhere again afterwards.
fn on_one_cpu<T>(pids: &[u32], measure: impl FnOnce() -> Result<T>) -> Result<T> {
    struct Unpin<'a>(&'a [u32]);
    impl Drop for Unpin<'_> {
        fn drop(&mut self) {
            for &pid in self.0 {
                let _ = process::pin(pid, None);
            }
        }
    }
    let _unpin = Unpin(pids);
    for &pid in pids {
        process::pin(pid, Some(0))?;
    }
    measure()
}
