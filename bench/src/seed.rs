//! Fixtures written straight into a stopped daemon's data directory, through the daemon's own store.
//!
//! Creating a key through the API costs an Argon2 hash (~15 ms on this class of machine), so thousands of
//! keys cannot be created that way within a benchmark. Instead one *template* key is created through the
//! admin API, the daemon is stopped, and copies of the template's record are committed with fresh key ids
//! and the template's secret hash. Every copy's token is the template's secret under its own key id, so
//! each token verifies for real (first verify: Argon2 against the stored hash; later ones: warm). The
//! copies share one salt, which a real daemon never does; for a benchmark fixture that only changes
//! nothing the daemon can observe.
//!
//! The store offers one write: [`Store::commit`], one key and one audit entry per transaction followed by
//! a flush of sled's log. Seeding therefore costs one small transaction per key; the flush is amortised
//! by committing from several threads at once (sled groups concurrent flushes).

use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use keyward_daemon::internals::keyfile;
use keyward_daemon::internals::KeyRecord;
use keyward_daemon::internals::{hasher, DigestKeys, HashCost, Hasher};
use keyward_daemon::internals::{Change, Store, WarmDigest};
use keyward_protocol::token::{Token, BASE62, KEY_ID_LEN, SECRET_LEN};
use keyward_protocol::{Actor, AuditAction, AuditEntry, Environment, KeyId, Secret};

/// How the seeded copies differ from the template.
pub struct SeedPlan<'a> {
    /// The template record, read back from the store.
    pub template: &'a KeyRecord,
    /// The secret part of the template's token (shared by every copy).
    pub secret: [u8; SECRET_LEN],
    /// Argon2 PHC strings of the shared secret for the copies, used in turn (copy `i` of the plan gets
    /// `hashes[i % len]`): one cheap hash for a million-key fixture, or distinct hashes where the daemon must
    /// see distinct keys (its Argon2 pool caps and shares computations per stored hash). Empty: the
    /// template's own hash for every copy.
    pub hashes: Vec<String>,
    /// The first copy's number; copies are numbered `first..first + count`.
    pub first: u64,
    pub count: u64,
    /// The workspace of copy `n`.
    pub workspace: &'a (dyn Fn(u64) -> String + Sync),
}

/// What seeding took.
#[derive(Clone, Copy, Debug)]
pub struct Seeded {
    pub keys: u64,
    pub elapsed: Duration,
}

impl Seeded {
    pub fn per_second(&self) -> f64 {
        self.keys as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The key id of copy `n`: `S` followed by `n` in base62 (11 digits). Random ids never start with a
/// fixed letter on purpose, but a clash with the template's id would need it to be exactly `S…`; checked.
pub fn seeded_id(n: u64) -> KeyId {
    let mut chars = [b'0'; KEY_ID_LEN];
    chars[0] = b'S';
    let mut rest = n;
    for slot in chars[1..].iter_mut().rev() {
        *slot = BASE62[(rest % 62) as usize];
        rest /= 62;
    }
    KeyId::from_base62(chars)
}

/// The token of copy `n` of a template whose secret is `secret`.
pub fn seeded_token(n: u64, secret: &[u8; SECRET_LEN]) -> Secret {
    Token::assemble(Environment::Live, &seeded_id(n), secret)
}

/// Reads the record of key `id` from the store in `data_dir` (the daemon must be stopped).
pub fn read_record(data_dir: &Path, id: &str) -> Result<KeyRecord> {
    let store = Store::open(data_dir).context("opening the stopped daemon's store")?;
    store.record(id).context("reading the key")?.ok_or_else(|| anyhow!("key {id} is not in the store"))
}

/// Commits the plan's copies into the store in `data_dir` (the daemon must be stopped), from `threads`
/// threads at once.
pub fn seed(data_dir: &Path, plan: &SeedPlan<'_>, threads: usize) -> Result<Seeded> {
    let store = Store::open(data_dir).context("opening the stopped daemon's store")?;
    let loaded = store.load().context("loading the store")?;
    if plan.template.id.as_str().starts_with('S') {
        return Err(anyhow!("the template's key id could clash with a seeded id; create another template"));
    }
    let first_seq = loaded.next_audit_seq;
    drop(loaded);
    let started = Instant::now();
    let next = AtomicU64::new(0);
    let failure = std::sync::Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                let mut record = plan.template.clone();
                let hashes: Vec<std::sync::Arc<str>> = plan.hashes.iter().map(|h| h.as_str().into()).collect();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= plan.count {
                        return;
                    }
                    let n = plan.first + i;
                    record.id = seeded_id(n);
                    record.workspace = (plan.workspace)(n);
                    // Listing order is creation time then id; one second per copy keeps it the seeding order.
                    record.created_at = plan.template.created_at + i as i64;
                    if !hashes.is_empty() {
                        record.secret.phc = hashes[i as usize % hashes.len()].clone();
                    }
                    let token = seeded_token(n, &plan.secret);
                    record.secret.tail = token.expose()[token.expose().len() - 4..].to_owned();
                    let audit = AuditEntry {
                        seq: first_seq + i,
                        at: record.created_at,
                        action: AuditAction::Create,
                        key_id: Some(record.id.to_string()),
                        workspace: Some(record.workspace.clone()),
                        account: None,
                        changes: Vec::new(),
                        actor: Actor { label: Some("keyward-bench seed".into()), ..Actor::default() },
                    };
                    let change = Change { key: Some(&record), credits: None, account: None, audit: Some(&audit) };
                    if let Err(error) = store.commit(&change) {
                        *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
                        next.store(plan.count, Ordering::Relaxed);
                        return;
                    }
                }
            });
        }
    });
    if let Some(error) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(anyhow!("seeding failed: {error}"));
    }
    store.flush().context("final flush")?;
    Ok(Seeded { keys: plan.count, elapsed: started.elapsed() })
}

/// `count` Argon2id hashes of `secret` at the daemon's default cost, each with its own salt, computed on
/// every core: distinct stored hashes for copies the daemon must treat as distinct keys (its Argon2 pool
/// caps computations per stored hash and lets identical ones share a single run, which a fixture of copies
/// sharing one hash would turn into a measurement of that sharing).
pub fn distinct_hashes(rt: &tokio::runtime::Runtime, secret: &[u8; SECRET_LEN], count: usize) -> Result<Vec<String>> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let hasher =
        Hasher::new(HashCost::default(), workers, workers, DigestKeys::ephemeral()).map_err(anyhow::Error::msg)?;
    rt.block_on(async {
        // A wave of one computation per thread at a time: the hasher drops work that waited too long.
        let mut hashes = Vec::with_capacity(count);
        while hashes.len() < count {
            let mut wave = tokio::task::JoinSet::new();
            for _ in 0..workers.min(count - hashes.len()) {
                let (hasher, secret) = (hasher.clone(), zeroize::Zeroizing::new(secret.to_vec()));
                wave.spawn(async move { hasher.hash(secret).await });
            }
            while let Some(hash) = wave.join_next().await {
                hashes.push(hash?.map_err(|e| anyhow!("hashing a fixture secret: {e}"))?);
            }
        }
        Ok(hashes)
    })
}

/// Records, through the store's own batch write, that copies `numbers` were verified before: their warm
/// digests under the data directory's warm key, as the daemon persists them for keys it has seen verify.
/// This stands for a history of verifies that would cost an Argon2 hash per key to replay. The daemon
/// must have started once on `data_dir` (it records which warm key the digests belong to).
/// Copy `n` was seeded with `hashes[n % hashes.len()]` (a plan with `first: 0`).
pub fn seed_warm(data_dir: &Path, hashes: &[String], secret: &[u8; SECRET_LEN], numbers: Range<u64>) -> Result<Seeded> {
    let key = |name: &str| keyfile::load_or_create(&data_dir.join(name)).map_err(|e| anyhow!("{e}"));
    let keys = DigestKeys { warm: key(keyfile::WARM_KEY)?, lookup: key(keyfile::LOOKUP_KEY)? };
    let hasher = Hasher::new(HashCost::default(), 1, 1, keys).map_err(anyhow::Error::msg)?;
    let digest_of = |phc: &String| -> WarmDigest { (hasher::fingerprint(phc), hasher.digest(secret).to_bytes()) };
    let digests: Vec<WarmDigest> = hashes.iter().map(digest_of).collect();
    let store = Store::open(data_dir).context("opening the stopped daemon's store")?;
    let started = Instant::now();
    let count = numbers.end.saturating_sub(numbers.start);
    let mut batch = Vec::with_capacity(10_000);
    for n in numbers {
        batch.push((seeded_id(n).to_string(), vec![digests[n as usize % digests.len()]]));
        if batch.len() == 10_000 {
            store.save_warm(&batch).context("saving warm digests")?;
            batch.clear();
        }
    }
    store.save_warm(&batch).context("saving warm digests")?;
    Ok(Seeded { keys: count, elapsed: started.elapsed() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_ids_are_distinct_well_formed_and_verifiable_tokens() {
        let secret = [b'x'; SECRET_LEN];
        assert_ne!(seeded_id(0), seeded_id(1));
        assert_eq!(seeded_id(61).as_str(), "S0000000000z");
        assert_eq!(seeded_id(62).as_str(), "S00000000010");
        let token = seeded_token(1_000_000, &secret);
        let parsed = Token::parse(token.expose()).expect("a seeded token parses");
        assert_eq!(parsed.key_id(), seeded_id(1_000_000).as_str());
        assert_eq!(parsed.secret(), &secret);
    }
}
