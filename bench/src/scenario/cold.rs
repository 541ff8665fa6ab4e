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
//! - a control on the echo floor ([`control`]): the same one-at-a-time probe through the floor's client,
//!   alone and under an echo flood of each attack's shape (in flight, connections, frame sizes), so the
//!   share of a flood's cost that comes from two cores running the attacker too stands beside keyward's.

mod control;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use keyward_client::{Client, Secret, VerifyCode};
use keyward_protocol::token::{Token, BASE62, KEY_ID_LEN, SECRET_LEN};
use keyward_protocol::{Environment, KeyId};
use tokio::task::JoinHandle;

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

/// What one attacker sends, and how many of its requests are in flight over how many connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attack {
    /// Wrong secrets for the valid ids of the keys `first..first + count`.
    WrongSecrets { first: u64, count: u64 },
    /// Random text, well-formed tokens of unknown ids, and tokens whose checksum is broken.
    Garbage,
}

impl Attack {
    fn in_flight(self) -> u64 {
        match self {
            Attack::WrongSecrets { .. } => 384,
            Attack::Garbage => 128,
        }
    }

    fn connections(self) -> usize {
        match self {
            Attack::WrongSecrets { .. } => 4,
            Attack::Garbage => 2,
        }
    }

    /// The seed of the generator of the attack's `n`-th worker.
    fn seed(self, n: u64) -> u64 {
        match self {
            Attack::WrongSecrets { .. } => 1000 + n,
            Attack::Garbage => 5000 + n,
        }
    }

    fn what(self) -> &'static str {
        match self {
            Attack::WrongSecrets { .. } => "wrong secrets",
            Attack::Garbage => "garbage",
        }
    }

    /// The token of a worker's next request.
    fn token(self, rng: &mut Rng) -> Secret {
        match self {
            Attack::WrongSecrets { first, count } => wrong_secret(rng, first, count),
            Attack::Garbage => garbage(rng),
        }
    }
}

fn wrong_secret(rng: &mut Rng, first: u64, count: u64) -> Secret {
    let id = seed::seeded_id(first + rng.below(count));
    let secret: [u8; SECRET_LEN] = random_base62(rng);
    Token::assemble(Environment::Live, &id, &secret)
}

fn garbage(rng: &mut Rng) -> Secret {
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

/// One worker of an attack on keywardd: verifies the attack's tokens and counts the answers.
struct Attacker {
    client: Client,
    attack: Attack,
    rng: Rng,
    tally: Arc<Tally>,
}

impl Caller for Attacker {
    async fn call(&mut self) -> bool {
        let token = self.attack.token(&mut self.rng);
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

    /// The attacks of this flood, `wrong_secrets` standing for the wrong-secret one.
    fn attacks(self, wrong_secrets: Attack) -> Vec<Attack> {
        match self {
            Flood::WrongSecrets => vec![wrong_secrets],
            Flood::Garbage => vec![Attack::Garbage],
            Flood::Both => vec![wrong_secrets, Attack::Garbage],
        }
    }
}

/// What one attack measured, and what its workers got back.
struct Attacked {
    attack: Attack,
    measured: Measurement,
    tally: Arc<Tally>,
}

/// What one flood measured: the legitimate client, and each attack that ran.
struct Flooded {
    legit: Measurement,
    attacks: Vec<Attacked>,
}

/// The phases of a flood: the attack's, and the legitimate client's, which starts its warm-up half a second
/// after the attack started and measures while it runs.
fn flood_phases(phase: Phase) -> (Phase, Phase) {
    let ramp = Duration::from_millis(500);
    let attack = Phase { warmup: Duration::ZERO, window: phase.warmup + ramp + phase.window };
    let legit = Phase { warmup: phase.warmup + ramp, window: phase.window };
    (attack, legit)
}

/// Starts `attack` on its own connections to keywardd for `phase`.
async fn launch(socket: &Path, attack: Attack, phase: Phase) -> Result<(JoinHandle<Measurement>, Arc<Tally>)> {
    let tally = Arc::new(Tally::default());
    let client = keyward_client(socket, attack.connections()).await?;
    let workers: Vec<_> = (0..attack.in_flight())
        .map(|n| Attacker { client: client.clone(), attack, rng: Rng::new(attack.seed(n)), tally: Arc::clone(&tally) })
        .collect();
    Ok((tokio::spawn(closed_loop(workers, phase)), tally))
}

/// Runs the attacks of `flood` on their own connections and measures `legit` (one request at a time, its
/// own connection) while they run.
async fn flood_keyward(
    socket: &Path,
    attacks: &[Attack],
    legit: &keyward_client::VerifyRequest,
    phase: Phase,
) -> Result<Flooded> {
    let (attack_phase, legit_phase) = flood_phases(phase);
    let client = keyward_client(socket, 1).await?;
    let mut running = Vec::with_capacity(attacks.len());
    for &attack in attacks {
        running.push((attack, launch(socket, attack, attack_phase).await?));
    }
    let legit = closed_loop(vec![OneKey { client, request: legit.clone() }], legit_phase).await;
    let mut attacked = Vec::with_capacity(running.len());
    for (attack, (task, tally)) in running {
        attacked.push(Attacked { attack, measured: task.await?, tally });
    }
    Ok(Flooded { legit, attacks: attacked })
}

pub(super) fn run(bench: &mut Bench) -> Result<()> {
    let settings = bench.settings.clone();
    let mut daemon = bench.daemon("cold", Storage::Disk)?;
    let template = fixture::template(&bench.rt, &mut daemon, "acme")?;
    let (cold, burst, victims) = (settings.cold_keys, settings.cold_burst, settings.victims);
    let workspace = |_: u64| "acme".to_owned();
    // Distinct stored hashes, as distinct keys have: one for each cold key, and up to 256 for the victims
    // (repeating over more), so that the daemon's per-hash cap and shared computations act as they would on
    // real keys rather than on one hash shared by the whole fixture.
    let distinct = (cold + burst + victims.min(256)) as usize;
    let hashes = seed::distinct_hashes(&bench.rt, &template.secret, distinct)?;
    let plan = SeedPlan {
        template: &template.record,
        secret: template.secret,
        hashes,
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
    let wrong_secrets = Attack::WrongSecrets { first: cold + burst, count: victims };
    let control = bench.rt.block_on(control::measure(&bench.echo_socket, phase, [wrong_secrets, Attack::Garbage]))?;
    control::unloaded_row(&mut bench.report, &control);
    for flood in [Flood::WrongSecrets, Flood::Garbage, Flood::Both] {
        let attacks = flood.attacks(wrong_secrets);
        let flooded = bench.rt.block_on(flood_keyward(&verify_socket, &attacks, &legit, phase))?;
        note_failures(&mut bench.report, &format!("legitimate verifies under {}", flood.name()), &flooded.legit);
        ensure!(flooded.legit.requests > 0, "no legitimate verify completed under {}", flood.name());
        let ratio_at = |q: f64| ratio(flooded.legit.quantile(q).as_secs_f64(), unloaded.quantile(q).as_secs_f64());
        let p99_ratio = flooded.legit.quantile(0.99).as_secs_f64() / unloaded.quantile(0.99).as_secs_f64();
        let rates: Vec<String> = flooded
            .attacks
            .iter()
            .map(|a| format!("{} {}", a.attack.what(), report::rate(a.measured.throughput())))
            .collect();
        bench.report.row(Row {
            scenario: SCENARIO.to_owned(),
            measure: format!("same, under {}: p50 / p99 / p99.9 (attack rate)", flood.name()),
            keyward: format!("{} ({})", percentiles(&flooded.legit), rates.join(", ")),
            vs_floor: format!("{} / {} / {} of unloaded", ratio_at(0.5), ratio_at(0.99), ratio_at(0.999)),
            target: "p99 ≤ 2× unloaded".to_owned(),
            verdict: Some(Verdict::check(p99_ratio <= 2.0, format!("{p99_ratio:.2}×"))),
            ..Row::default()
        });
        if let [attack] = attacks[..] {
            control::flooded_row(&mut bench.report, &control, attack, (&flooded, &unloaded));
        }
        for attacked in &flooded.attacks {
            let what = attacked.attack.what();
            bench.report.note(format!("{}: {what} got {}", flood.name(), attacked.tally.summary()));
        }
    }
    daemon.stop()
}
