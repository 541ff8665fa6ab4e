//! The flood's control: the same legitimate probe and the same attacks, against the echo floor.
//!
//! On two cores an attacker's load generator, and whatever answers it, share the CPUs with the legitimate
//! client, whichever server it is. To show how much of a flood's cost that alone explains, the legitimate
//! one-at-a-time round trip is measured on the echo server through the floor's pooled client
//! ([`EchoClient`], one connection, 64-byte payloads, as in the floor rows), alone and then while echo
//! attackers flood the echo server as [`super::flood_keyward`] floods keywardd: closed loops with the same
//! number of requests in flight over the same number of connections, each request a frame of the size
//! keyward's client sends for the attack's next token (made by the same generator from the same seeds).
//! The echo server only echoes them. The control runs right after keyward's unloaded probe and before
//! keyward's floods, while keywardd is idle. Its rows have no target: they are the yardstick for the flood
//! rows.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use keyward_client::Secret;
use keyward_protocol::{codec, Request, RequestFrame};

use super::{flood_phases, Attack, Flooded, SCENARIO};
use crate::echo::EchoClient;
use crate::load::{closed_loop, Caller, Measurement, Phase, Rng};
use crate::report::{self, ratio, Report, Row, Verdict};
use crate::scenario::{note_failures, percentiles};
use crate::shape::{self, Shape};
use crate::verifier;

const TARGET: &str = "— (control)";

/// A request id as large as the ids a flood's client reaches within its first second: bincode writes ids
/// as varints, so the id is part of a frame's size.
const FLOOD_REQUEST_ID: u64 = 1 << 20;

/// What the control measured: the probe alone, and under an echo flood shaped like each attack.
pub(super) struct Control {
    unloaded: Measurement,
    floods: Vec<EchoFlooded>,
}

/// The probe under one attack's echo flood, and the flood's own round trips.
struct EchoFlooded {
    attack: Attack,
    legit: Measurement,
    flood: Measurement,
}

impl Control {
    fn flooded(&self, attack: Attack) -> Option<&EchoFlooded> {
        self.floods.iter().find(|flooded| flooded.attack == attack)
    }
}

/// One worker of an echo flood: makes the attack's next token and echoes a frame of its verify's size.
struct EchoAttacker {
    client: EchoClient,
    attack: Attack,
    rng: Rng,
}

impl Caller for EchoAttacker {
    async fn call(&mut self) -> bool {
        let payload = verify_payload_len(self.attack.token(&mut self.rng));
        self.client.echo_payload(payload).await
    }
}

/// The payload length of the frame `keyward_client` sends to verify `token` as the attackers do.
fn verify_payload_len(token: Secret) -> usize {
    let frame = RequestFrame { id: FLOOD_REQUEST_ID, request: Request::Verify(verifier::request(token)) };
    codec::encode(&frame).map_or(0, |payload| payload.len())
}

/// Measures the probe alone on the echo server, then under an echo flood shaped like each of `attacks`.
pub(super) async fn measure(echo: &Path, phase: Phase, attacks: [Attack; 2]) -> Result<Control> {
    let unloaded = shape::floor(echo, Shape::Connections(1), phase).await?;
    let mut floods = Vec::with_capacity(attacks.len());
    for attack in attacks {
        floods.push(flood_echo(echo, attack, phase).await?);
    }
    Ok(Control { unloaded, floods })
}

/// The probe while echo attackers shaped like `attack` flood the echo server, timed as a keyward flood.
async fn flood_echo(echo: &Path, attack: Attack, phase: Phase) -> Result<EchoFlooded> {
    let (attack_phase, legit_phase) = flood_phases(phase);
    let connect = |pool| async move { EchoClient::connect(echo, pool).await.context("connecting to the echo server") };
    let probe = connect(1).await?;
    let attacker = connect(attack.connections()).await?;
    let workers: Vec<_> = (0..attack.in_flight())
        .map(|n| EchoAttacker { client: attacker.clone(), attack, rng: Rng::new(attack.seed(n)) })
        .collect();
    let flood = tokio::spawn(closed_loop(workers, attack_phase));
    let legit = closed_loop(vec![probe], legit_phase).await;
    let flood = flood.await?;
    ensure!(legit.requests > 0, "no echo round trip completed under the echo flood of {}", attack.what());
    Ok(EchoFlooded { attack, legit, flood })
}

/// The probe alone, beside keyward's unloaded row.
pub(super) fn unloaded_row(report: &mut Report, control: &Control) {
    note_failures(report, "floor control, unloaded", &control.unloaded);
    report.row(Row {
        scenario: SCENARIO.to_owned(),
        measure: "floor control: echo round trip, 1 at a time: p50 / p99 / p99.9, unloaded".to_owned(),
        floor: percentiles(&control.unloaded),
        target: TARGET.to_owned(),
        verdict: Some(Verdict::Info),
        ..Row::default()
    });
}

/// `measured` at quantile `q` as a multiple of `base` at the same quantile.
fn of_unloaded(measured: &Measurement, base: &Measurement, q: f64) -> String {
    ratio(measured.quantile(q).as_secs_f64(), base.quantile(q).as_secs_f64())
}

/// The probe under the echo flood shaped like `attack`, to go beside keyward's row for the same attack,
/// with a note that puts the two p99s side by side. `keyward` is that flood and keyward's unloaded probe.
pub(super) fn flooded_row(report: &mut Report, control: &Control, attack: Attack, keyward: (&Flooded, &Measurement)) {
    let Some(flooded) = control.flooded(attack) else {
        return;
    };
    let what = attack.what();
    note_failures(report, &format!("floor control under the echo flood shaped like the {what}"), &flooded.legit);
    let at = |q: f64| of_unloaded(&flooded.legit, &control.unloaded, q);
    report.row(Row {
        scenario: SCENARIO.to_owned(),
        measure: format!(
            "floor control: echo round trip, 1 at a time, under an echo flood of the same shape as the {what} \
             ({} in flight over {} connections, frames of the same sizes): p50 / p99 / p99.9 (attack rate)",
            attack.in_flight(),
            attack.connections()
        ),
        floor: format!("{} (echo flood {})", percentiles(&flooded.legit), report::rate(flooded.flood.throughput())),
        vs_floor: format!("{} / {} / {} of unloaded", at(0.5), at(0.99), at(0.999)),
        target: TARGET.to_owned(),
        verdict: Some(Verdict::Info),
        ..Row::default()
    });
    report.note(comparison(control, flooded, keyward));
}

/// "keyward N× vs floor M×" at p99 for one attack, with the absolute figures and both attack rates.
fn comparison(
    control: &Control,
    flooded: &EchoFlooded,
    (keyward, keyward_unloaded): (&Flooded, &Measurement),
) -> String {
    let p99 = |m: &Measurement| report::latency(m.quantile(0.99));
    let keyward_rate = keyward
        .attacks
        .iter()
        .find(|attacked| attacked.attack == flooded.attack)
        .map_or_else(|| "n/a".to_owned(), |attacked| report::rate(attacked.measured.throughput()));
    format!(
        "flood of {}: legitimate p99 keyward {} of unloaded ({} against {}) vs floor control {} ({} against {}); \
         attack rate keyward {keyward_rate}, echo {}",
        flooded.attack.what(),
        of_unloaded(&keyward.legit, keyward_unloaded, 0.99),
        p99(&keyward.legit),
        p99(keyward_unloaded),
        of_unloaded(&flooded.legit, &control.unloaded, 0.99),
        p99(&flooded.legit),
        p99(&control.unloaded),
        report::rate(flooded.flood.throughput()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_sizes_follow_the_attack() {
        let mut rng = Rng::new(5000);
        let sizes: Vec<usize> = (0..200).map(|_| verify_payload_len(Attack::Garbage.token(&mut rng))).collect();
        assert!(sizes.iter().all(|&size| size > 8), "every verify is longer than an echo id");
        assert!(sizes.iter().min() < sizes.iter().max(), "garbage varies in size: {sizes:?}");
        let wrong = Attack::WrongSecrets { first: 0, count: 10 };
        let mut rng = Rng::new(1000);
        let first = verify_payload_len(wrong.token(&mut rng));
        assert!((0..50).all(|_| verify_payload_len(wrong.token(&mut rng)) == first), "wrong secrets are one size");
    }
}
