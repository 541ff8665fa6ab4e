//! Part 4: a new host joins a fleet of `join_keys` (100,000) keys.
//!
//! Building the fleet: creating 100,000 keys through the API costs one engine transaction (and fsync)
//! each, one at a time fleet-wide, plus an Argon2 hash each: minutes. Instead the fleet is made the way
//! an operator moves a single host to a fleet: a template key is created through the API on a daemon on
//! its own running a cheap Argon2 cost ([`CHEAP_ARGON2`]), `join_keys - 1` copies of it are written
//! straight into its stopped store (fresh key ids, the template's hash, no audit entries), the daemon is
//! restarted with a `[fleet]` section and `fleet init` imports the store into the engine: one change per
//! key, as a fleet built by creates has. The cheap cost only makes the sample's first verifies on the new
//! host cheap; it changes nothing the join does.
//!
//! Then host d starts on an empty data directory; the figure is from its spawn to both its sockets
//! answering a Ping (it catches up with the engine before it opens them). A sample of 1,000 tokens must
//! then verify VALID on d.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use keyward_client::{BlockingClient, Client, Secret, VerifyCode};
use keyward_daemon::internals::{Change, Store};

use super::host::{fleet_config, CHEAP_ARGON2};
use super::table::{ms, Section};
use super::Run;
use crate::fixture;
use crate::fixture::Template;
use crate::load::Rng;
use crate::process::Daemon;
use crate::seed;
use crate::verifier;

const SAMPLE: usize = 1_000;

/// Copies written per store transaction.
const BATCH: usize = 2_000;

pub(super) fn run(run: &mut Run) -> Result<Section> {
    let keys = run.args.join_keys.max(2);
    let mut section = Section::new(&format!("4. A new host joins a fleet of {keys} keys"));
    let cluster = run.cluster.as_ref().context("no cluster")?;
    let conninfo = cluster.create_database("join")?;
    let root = run.root.join("join");

    // The fleet's first host, built from a seeded single-host store.
    let seeder_config = format!("lookup_key_file = \"{}\"\n{CHEAP_ARGON2}", run.lookup_key.display());
    let mut seeder = Daemon::new(&run.bin_dir, &root.join("a"), &root.join("a/data"), &seeder_config)?;
    let template = fixture::template(&run.rt, &mut seeder, "join")?;
    let seeded = seed_copies(seeder.data_dir(), &template, keys - 1)?;
    let a_config = fleet_config(run, CHEAP_ARGON2, &conninfo, "a", true, 1000, "");
    let mut a = Daemon::new(&run.bin_dir, &root.join("a"), &root.join("a/data"), &a_config)?;
    a.start().context("starting host a on the seeded store")?;
    let init_started = Instant::now();
    let report = BlockingClient::connect_with_timeout(a.admin_socket(), Duration::from_secs(900))?
        .fleet_init()
        .context("fleet init importing the seeded store")?;
    let init_took = init_started.elapsed();
    ensure!(report.reachable, "fleet init: the engine is unreachable ({:?})", report.problem);
    section.info(
        "building the fleet: seeding the store / `fleet init` importing it",
        format!(
            "{} keys in {} / {} (engine now holds {} keys, newest change #{})",
            keys,
            ms(seeded),
            ms(init_took),
            report.keys.map_or("?".to_owned(), |k| k.to_string()),
            report.head_seq.map_or("?".to_owned(), |s| s.to_string())
        ),
    );

    // The new host.
    let d_config = fleet_config(run, "", &conninfo, "d", true, 1000, "");
    let mut d = Daemon::new(&run.bin_dir, &root.join("d"), &root.join("d/data"), &d_config)?;
    let startup = d.start().context("starting host d");
    let startup = match startup {
        Ok(startup) => startup,
        Err(error) => {
            section.note(format!("**host d failed to start**: {error:#}"));
            let _ = a.stop();
            return Ok(section);
        }
    };
    section.target(
        "host d, empty data directory: spawn → both sockets answer a Ping",
        ms(startup.answering),
        "≤ 10 s",
        startup.answering <= Duration::from_secs(10),
    );
    section.info("host d: spawn → READY=1 (sd_notify)", ms(startup.ready));
    let stats = BlockingClient::connect_with_timeout(d.admin_socket(), Duration::from_secs(30))?.stats()?;
    let held: u64 = stats.keys.values().sum();
    let mark = stats.fleet.as_ref().map(|f| (f.applied_seq, f.head_seq));

    // A sample of tokens, the template's among them.
    let mut rng = Rng::new(18);
    let mut picked = std::collections::BTreeSet::new();
    while picked.len() < (SAMPLE - 1).min(keys as usize - 1) {
        picked.insert(rng.below(keys - 1));
    }
    let mut tokens: Vec<Secret> = picked.iter().map(|&n| seed::seeded_token(n, &template.secret)).collect();
    tokens.push(template.token.clone());
    let sampled = tokens.len();
    let (valid, answers) = run.rt.block_on(verify_sample(&d.verify_socket(), Arc::new(tokens)))?;
    section.target(
        format!("host d right after: keys held; sampled tokens answering VALID (applied / newest change {mark:?})"),
        format!("{held} keys; {valid} of {sampled} VALID"),
        &format!("{keys} keys; {sampled} of {sampled}"),
        held == keys && valid == sampled,
    );
    if valid != sampled {
        section.note(format!("answers of the sample on d: {answers:?}"));
        section.note(format!("host d's log:\n```\n{}\n```", d.log_tail()));
    }
    let _ = d.stop();
    let _ = a.stop();
    Ok(section)
}

/// Verifies every token on `socket`, 8 at a time; how many answered VALID, and every answer by code.
async fn verify_sample(socket: &std::path::Path, tokens: Arc<Vec<Secret>>) -> Result<(usize, Vec<(String, usize)>)> {
    let client = Client::builder(socket).pool_size(8).request_timeout(Duration::from_secs(30)).connect().await?;
    let mut tasks = Vec::new();
    for w in 0..8 {
        let (client, tokens) = (client.clone(), tokens.clone());
        tasks.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            for token in tokens.iter().skip(w).step_by(8) {
                let answer = client.verify(verifier::request(token.clone())).await;
                answers.push(match answer {
                    Ok(answer) => answer.code.to_string(),
                    Err(error) => format!("error: {error}"),
                });
            }
            answers
        }));
    }
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for task in tasks {
        for answer in task.await? {
            *counts.entry(answer).or_default() += 1;
        }
    }
    let valid = counts.get(&VerifyCode::Valid.to_string()).copied().unwrap_or(0);
    Ok((valid, counts.into_iter().collect()))
}

/// Writes `count` copies of the template into the stopped daemon's store at `data_dir` (ids and tokens of
/// [`seed::seeded_id`] and [`seed::seeded_token`], the template's hash), `BATCH` to a transaction, without
/// audit entries: the fleet's log then holds one change per key, as a fleet built by creates would (the
/// template's own creation is audited). How long it took.
fn seed_copies(data_dir: &std::path::Path, template: &Template, count: u64) -> Result<Duration> {
    ensure!(!template.record.id.as_str().starts_with('S'), "the template's key id could clash with a seeded id");
    let store = Store::open(data_dir).context("opening the stopped daemon's store")?;
    let started = Instant::now();
    let mut records = Vec::with_capacity(BATCH);
    for n in 0..count {
        let mut record = template.record.clone();
        record.id = seed::seeded_id(n);
        // Listing order is creation time then id; one second per copy keeps it the seeding order.
        record.created_at = template.record.created_at + n as i64;
        let token = seed::seeded_token(n, &template.secret);
        record.secret.tail = token.expose()[token.expose().len() - 4..].to_owned();
        records.push(record);
        if records.len() == BATCH || n + 1 == count {
            let changes: Vec<Change<'_>> =
                records.iter().map(|r| Change { key: Some(r), credits: None, account: None, audit: None }).collect();
            store.commit_all(&changes, None).context("seeding the store")?;
            records.clear();
        }
    }
    store.flush().context("flushing the seeded store")?;
    Ok(started.elapsed())
}
