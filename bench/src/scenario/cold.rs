//! Scenario 4: cold verifies after a start, and warm traffic under a flood.
//!
//! The fixture is a template key copied (see [`crate::seed`]) into `cold_keys + cold_burst` keys to verify
//! for the first time and `victims` keys whose ids the attacker knows. After the daemon starts:
//! - the first verify of each of `cold_keys` distinct keys, one at a time (Argon2 alone);
//! - the first verify of `cold_burst` other distinct keys all at once (Argon2 plus its queue);
//! - a now-warm key verified one request at a time on its own connection, alone, then while attackers
//!   flood other connections at full speed (closed loops, as fast as answers come back) with
//!   (a) wrong secrets for the victims' valid ids, which only Argon2 can refute: 384 in flight over 4
//!   connections, more than the Argon2 queue holds, so most are answered BUSY; (b) garbage: random text,
//!   tokens of unknown ids and tokens with a broken checksum, 128 in flight over 2 connections; (c) both.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use keyward_client::{Client, Secret, VerifyCode};
use keyward_protocol::token::{Token, BASE62, KEY_ID_LEN, SECRET_LEN};
use keyward_protocol::{Environment, KeyId};

use super::{note_failures, percentiles, Bench, Storage};
use crate::fixture;
use crate::load::{closed_loop, Caller, Measurement, Phase, Rng};
use crate::report::{self, ratio, Row, Verdict};
use crate::seed::{self, SeedPlan};
use crate::shape::keyward_client;
use crate::verifier::{self, outcome, OneKey, Outcome};

const SCENARIO: &str = "4. Cold verify and flood";

/// What the attackers got back.
#[derive(Default)]
struct Tally {
    busy: AtomicU64,
    refused: AtomicU64,
    valid: AtomicU64,
    failed: AtomicU64,
}

impl Tally {
    fn summary(&self) -> String {
        format!(
            "{} refused, {} BUSY, {} other errors (timeouts), {} VALID (would be a bug)",
            self.refused.load(Ordering::Relaxed),
            self.busy.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            self.valid.load(Ordering::Relaxed)
        )
    }

    fn count(&self, outcome: Outcome) -> bool {
        let cell = match outcome {
            Outcome::Answered(VerifyCode::Valid) => &self.valid,
            Outcome::Answered(_) => &self.refused,
            Outcome::Busy => &self.busy,
            Outcome::Failed => &self.failed,
        };
        cell.fetch_add(1, Ordering::Relaxed);
        matches!(outcome, Outcome::Answered(code) if code != VerifyCode::Valid)
    }
}

fn random_base62<const N: usize>(rng: &mut Rng) -> [u8; N] {
    std::array::from_fn(|_| BASE62[rng.below(62) as usize])
}

/// Wrong secrets for valid key ids.
struct WrongSecret {
    client: Client,
    first: u64,
    count: u64,
    rng: Rng,
    tally: Arc<Tally>,
}

impl Caller for WrongSecret {
    async fn call(&mut self) -> bool {
        let id = seed::seeded_id(self.first + self.rng.below(self.count));
        let secret: [u8; SECRET_LEN] = random_base62(&mut self.rng);
        let token = Token::assemble(Environment::Live, &id, &secret);
        self.tally.count(outcome(&self.client, verifier::request(token)).await)
    }
}

/// Random text, well-formed tokens of unknown ids, and tokens whose checksum is broken.
struct Garbage {
    client: Client,
    rng: Rng,
    tally: Arc<Tally>,
}

impl Garbage {
    fn token(&mut self) -> Secret {
        let rng = &mut self.rng;
        match rng.below(3) {
            0 => {
                let len = rng.below(121) as usize;
                Secret::new((0..len).map(|_| char::from(b' ' + rng.below(95) as u8)).collect::<String>())
            }
            kind => {
                // Ids starting with `G` are never minted by the fixture; a random id is unknown anyway.
                let mut id: [u8; KEY_ID_LEN] = random_base62(rng);
                id[0] = b'G';
                let secret: [u8; SECRET_LEN] = random_base62(rng);
                let token = Token::assemble(Environment::Live, &KeyId::from_base62(id), &secret);
                if kind == 1 {
                    token
                } else {
                    let mut text = token.expose().to_owned();
                    let last = if text.ends_with('0') { "1" } else { "0" };
                    text.replace_range(text.len() - 1.., last);
                    Secret::new(text)
                }
            }
        }
    }
}

impl Caller for Garbage {
    async fn call(&mut self) -> bool {
        let token = self.token();
        self.tally.count(outcome(&self.client, verifier::request(token)).await)
    }
}

/// Which attackers flood.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flood {
    WrongSecrets,
    Garbage,
    Both,
}

impl Flood {
    fn name(self) -> &'static str {
        match self {
            Flood::WrongSecrets => "a flood of wrong secrets for valid ids (384 in flight)",
            Flood::Garbage => "a flood of garbage (128 in flight)",
            Flood::Both => "both floods at once",
        }
    }
}

/// What one flood measured: the legitimate client, and each attacker that ran.
struct Attacked {
    legit: Measurement,
    wrong: Option<Measurement>,
    wrong_tally: Option<Arc<Tally>>,
    garbage: Option<Measurement>,
    garbage_tally: Option<Arc<Tally>>,
}

/// Runs the attackers of `flood` on their own connections and measures `legit` (one request at a time,
/// its own connection) while they run; the attack starts half a second before the legitimate warm-up.
async fn attack(
    socket: &std::path::Path,
    flood: Flood,
    legit: &keyward_client::VerifyRequest,
    phase: Phase,
    (victims_from, victims): (u64, u64),
) -> Result<Attacked> {
    let ramp = Duration::from_millis(500);
    let attack_phase = Phase { warmup: Duration::ZERO, window: phase.warmup + ramp + phase.window };
    let legit_phase = Phase { warmup: phase.warmup + ramp, window: phase.window };
    let client = keyward_client(socket, 1).await?;
    let wrong_tally = matches!(flood, Flood::WrongSecrets | Flood::Both).then(|| Arc::new(Tally::default()));
    let garbage_tally = matches!(flood, Flood::Garbage | Flood::Both).then(|| Arc::new(Tally::default()));
    let wrong = match &wrong_tally {
        Some(tally) => {
            let attacker = keyward_client(socket, 4).await?;
            let callers: Vec<_> = (0..384)
                .map(|i| WrongSecret {
                    client: attacker.clone(),
                    first: victims_from,
                    count: victims,
                    rng: Rng::new(1000 + i),
                    tally: Arc::clone(tally),
                })
                .collect();
            Some(tokio::spawn(closed_loop(callers, attack_phase)))
        }
        None => None,
    };
    let garbage = match &garbage_tally {
        Some(tally) => {
            let attacker = keyward_client(socket, 2).await?;
            let callers: Vec<_> = (0..128)
                .map(|i| Garbage { client: attacker.clone(), rng: Rng::new(5000 + i), tally: Arc::clone(tally) })
                .collect();
            Some(tokio::spawn(closed_loop(callers, attack_phase)))
        }
        None => None,
    };
    let legit = closed_loop(vec![OneKey { client, request: legit.clone() }], legit_phase).await;
    let wrong = match wrong {
        Some(task) => Some(task.await?),
        None => None,
    };
    let garbage = match garbage {
        Some(task) => Some(task.await?),
        None => None,
    };
    Ok(Attacked { legit, wrong, wrong_tally, garbage, garbage_tally })
}

pub(super) fn run(bench: &mut Bench) -> Result<()> {
    let settings = bench.settings.clone();
    let mut daemon = bench.daemon("cold", Storage::Disk)?;
    let template = fixture::template(&bench.rt, &mut daemon, "acme")?;
    let (cold, burst, victims) = (settings.cold_keys, settings.cold_burst, settings.victims);
    let workspace = |_: u64| "acme".to_owned();
    let plan = SeedPlan {
        template: &template.record,
        secret: template.secret,
        phc: None,
        first: 0,
        count: cold + burst + victims,
        workspace: &workspace,
    };
    seed::seed(daemon.data_dir(), &plan, 8)?;
    daemon.start()?;
    let verify_socket = daemon.verify_socket();
    let token = |n: u64| seed::seeded_token(n, &template.secret);

    // First verifies, one at a time.
    let sequential = bench.rt.block_on(async {
        let client = keyward_client(&verify_socket, 1).await?;
        let mut measured = Measurement::empty(Duration::ZERO);
        let started = Instant::now();
        for n in 0..cold {
            let sent = Instant::now();
            let answer = client.verify(verifier::request(token(n))).await?;
            measured.record(sent.elapsed(), answer.code == VerifyCode::Valid);
        }
        measured.window = started.elapsed();
        Ok::<_, anyhow::Error>(measured)
    })?;
    note_failures(&mut bench.report, "cold verify, one at a time", &sequential);
    bench.report.row(Row {
        scenario: SCENARIO.to_owned(),
        measure: format!("first verify after start, one at a time ({cold} distinct keys): p50 / p99 / p99.9"),
        keyward: percentiles(&sequential),
        target: "— (Argon2 by design)".to_owned(),
        verdict: Some(Verdict::Info),
        ..Row::default()
    });

    // First verifies, all at once.
    let at_once = bench.rt.block_on(async {
        let client = keyward_client(&verify_socket, 4).await?;
        let tasks: Vec<_> = (cold..cold + burst)
            .map(|n| {
                let (client, request) = (client.clone(), verifier::request(token(n)));
                tokio::spawn(async move {
                    let sent = Instant::now();
                    let ok = matches!(client.verify(request).await, Ok(a) if a.code == VerifyCode::Valid);
                    (sent.elapsed(), ok)
                })
            })
            .collect();
        let mut measured = Measurement::empty(Duration::ZERO);
        for task in tasks {
            let (elapsed, ok) = task.await?;
            measured.record(elapsed, ok);
        }
        Ok::<_, anyhow::Error>(measured)
    })?;
    note_failures(&mut bench.report, "cold verify, all at once", &at_once);
    bench.report.row(Row {
        scenario: SCENARIO.to_owned(),
        measure: format!("first verify after start, {burst} distinct keys at once: p50 / p99 / max"),
        keyward: report::latencies(&[at_once.quantile(0.5), at_once.quantile(0.99), at_once.max()]),
        target: "—".to_owned(),
        verdict: Some(Verdict::Info),
        ..Row::default()
    });

    // Legitimate warm traffic alone, then under each flood.
    let phase = settings.phase;
    let legit = verifier::request(token(0));
    let unloaded = bench.rt.block_on(async {
        let client = keyward_client(&verify_socket, 1).await?;
        Ok::<_, anyhow::Error>(closed_loop(vec![OneKey { client, request: legit.clone() }], phase).await)
    })?;
    note_failures(&mut bench.report, "legitimate verifies, unloaded", &unloaded);
    bench.report.row(Row {
        scenario: SCENARIO.to_owned(),
        measure: "legitimate warm verify, 1 at a time: p50 / p99 / p99.9, unloaded".to_owned(),
        keyward: percentiles(&unloaded),
        verdict: Some(Verdict::Info),
        ..Row::default()
    });
    let victims_from = cold + burst;
    for flood in [Flood::WrongSecrets, Flood::Garbage, Flood::Both] {
        let attacked = bench.rt.block_on(attack(&verify_socket, flood, &legit, phase, (victims_from, victims)))?;
        note_failures(&mut bench.report, &format!("legitimate verifies under {}", flood.name()), &attacked.legit);
        ensure!(attacked.legit.requests > 0, "no legitimate verify completed under {}", flood.name());
        let ratio_at = |q: f64| ratio(attacked.legit.quantile(q).as_secs_f64(), unloaded.quantile(q).as_secs_f64());
        let p99_ratio = attacked.legit.quantile(0.99).as_secs_f64() / unloaded.quantile(0.99).as_secs_f64();
        let attackers = [
            (&attacked.wrong, &attacked.wrong_tally, "wrong secrets"),
            (&attacked.garbage, &attacked.garbage_tally, "garbage"),
        ];
        let rates: Vec<String> = attackers
            .iter()
            .filter_map(|(m, _, what)| m.as_ref().map(|m| format!("{what} {}", report::rate(m.throughput()))))
            .collect();
        bench.report.row(Row {
            scenario: SCENARIO.to_owned(),
            measure: format!("same, under {}: p50 / p99 / p99.9 (attack rate)", flood.name()),
            keyward: format!("{} ({})", percentiles(&attacked.legit), rates.join(", ")),
            vs_floor: format!("{} / {} / {} of unloaded", ratio_at(0.5), ratio_at(0.99), ratio_at(0.999)),
            target: "p99 ≤ 2× unloaded".to_owned(),
            verdict: Some(Verdict::check(p99_ratio <= 2.0, format!("{p99_ratio:.2}×"))),
            ..Row::default()
        });
        for (_, tally, what) in attackers {
            if let Some(tally) = tally {
                bench.report.note(format!("{}: {what} got {}", flood.name(), tally.summary()));
            }
        }
    }
    daemon.stop()
}
