//! Secret hashing: Argon2id for what is stored, a keyed digest for what is cached in memory, and the pool of
//! threads that runs Argon2id.
//!
//! Argon2id is deliberately slow (~15 ms at the default cost), so it never runs on an async worker. A fixed
//! pool of plain threads (`keyward-argon-N`; by default one fewer than the cores, at least one, so a core
//! stays for the async workers) takes jobs from a bounded queue. Each thread lowers its own scheduling
//! priority ([`PoolSettings::nice`], +10 by default; Linux only, where a thread's nice value is its own), so
//! when a flood of cold or wrong secrets keeps every Argon2 thread busy, the async workers answering warm
//! verifies still win the CPU. A hash or verify that finds the queue full answers [`HashError::Busy`] at
//! once; the default queue ([`QUEUE_PER_WORKER`] per thread) drains in about 1.5 s at the default cost,
//! well inside a client's timeout; a job that still waits [`MAX_QUEUE_WAIT`] (the threads starved of
//! CPU) is dropped unrun and answers BUSY too. A verify whose callers have all gone (their connection closed)
//! is skipped rather than computed.
//!
//! Four rules keep a few valid key ids from owning the pool, and a flood for one key id from locking out
//! its holder:
//! - per stored hash, at most [`PER_HASH_LIMIT`] Argon2 verifies are queued or running at once, so one
//!   known key id holds two slots, not the pool;
//! - past that, verifies of the hash wait their turn in arrival order, each [`Caller`] (a connection)
//!   holding at most one waiting place per hash; one more from a caller already waiting answers BUSY at
//!   once. Since nobody holds two places, arrival order is a round robin over the callers: a flood of
//!   wrong secrets for a public key id on some connections delays the holder's verify on another by at
//!   most one computation per flooding connection, never shuts it out (at most [`MAX_WAITING_PER_HASH`]
//!   places per hash, and a place that waited [`MAX_QUEUE_WAIT`] answers BUSY);
//! - identical verifies (same stored hash, same secret) in flight at once share one computation and its
//!   answer, so a burst of first verifies of one key costs one Argon2 run and no BUSY;
//! - the failure cache remembers the last [`FAILURE_CACHE_ENTRIES`] (hash, secret) pairs Argon2 refuted, as
//!   the hash's [`fingerprint`] and the secret's warm digest (never the secret), and answers a repeat "no"
//!   without Argon2. A pair's answer never changes (a PHC string carries its salt and cost), so nothing there
//!   goes stale; the oldest entry is forgotten first, which bounds the cache at about 600 KB.
//!
//! The threads end when the last clone of the [`Hasher`] is dropped, once the jobs already queued are done.
//!
//! Once a secret has passed Argon2 the hot index keeps its HMAC-SHA256 under a per-process random key, and
//! later verifies compare digests in constant time. The digest key lives only in this process's memory, so
//! a digest is useless to anyone who reads it from anywhere else.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio::sync::{oneshot, watch};
use zeroize::Zeroizing;

use crate::secrets::mint;

/// Argon2 verifies of one stored hash that may be queued or running at once; more wait their turn.
pub const PER_HASH_LIMIT: usize = 2;
/// Verifies that may wait for a turn on one stored hash (one per caller); past that, BUSY. Each holds the
/// presented secret (at most 512 bytes) until its turn.
pub const MAX_WAITING_PER_HASH: usize = 256;
/// Refuted (hash, secret) pairs the failure cache holds; the oldest is forgotten first. An entry is 48 bytes
/// (a 16-byte hash fingerprint and a 32-byte keyed digest), kept in a set and a queue.
pub const FAILURE_CACHE_ENTRIES: usize = 4096;
/// Jobs that may wait per Argon2 thread by default: about 1.5 s of work at the default cost (~15 ms each),
/// inside [`MAX_QUEUE_WAIT`] and well inside a client's 5 s timeout, and room for a burst of 64 first
/// verifies of distinct keys (say, imported keys after a restart) on one thread without a BUSY.
pub const QUEUE_PER_WORKER: usize = 96;
/// A job that has waited this long for a thread is dropped unrun and its callers answer BUSY: better told now
/// than left to reach their own timeout (5 s by default), and the thread is better spent on a fresher job.
/// Only reached when the threads get far less CPU than usual: a full default queue is ~0.5 s of work.
pub const MAX_QUEUE_WAIT: Duration = Duration::from_secs(2);
/// How many nice steps below the rest of the daemon the Argon2 threads run by default.
pub const DEFAULT_NICE: u8 = 10;
/// The largest nice value (the lowest priority).
pub const MAX_NICE: u8 = 19;

/// The default number of Argon2 threads: one fewer than the cores, so one core always stays for the async
/// workers, and at least one.
pub fn default_workers() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    cores.saturating_sub(1).max(1)
}

/// The default queue for `workers` Argon2 threads.
pub fn default_queue(workers: usize) -> usize {
    QUEUE_PER_WORKER * workers.max(1)
}

/// How the Argon2 pool is sized and scheduled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolSettings {
    /// Argon2 threads (at least one is started).
    pub workers: usize,
    /// Jobs that may wait for a thread; past that, hashes and cold verifies answer BUSY.
    pub queue: usize,
    /// How many nice steps below the daemon's own priority the threads run (0..=19; the result is capped
    /// at 19). Linux only; elsewhere the threads keep the daemon's priority.
    pub nice: u8,
}

/// Why the hasher could not hash or verify, or could not start.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// The queue is full, the hash already has a waiting verify of this caller, or the job waited too long.
    #[error("too many verifications are waiting for the hasher; try again shortly")]
    Busy,
    #[error("the Argon2 threads have stopped")]
    Stopped,
    #[error("Argon2 failed: {0}")]
    Argon2(#[source] argon2::password_hash::Error),
    #[error("invalid Argon2 parameters: {0}")]
    Parameters(#[source] argon2::Error),
    #[error("cannot start an Argon2 thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// The two persistent HMAC keys.
pub struct DigestKeys {
    /// Keys the warm digests of verified secrets.
    pub warm: Zeroizing<[u8; 32]>,
    /// Keys the lookup digests of imported tokens.
    pub lookup: Zeroizing<[u8; 32]>,
}

impl DigestKeys {
    /// Fresh random keys, for tests and tools that persist nothing.
    pub fn ephemeral() -> DigestKeys {
        DigestKeys { warm: mint::key_material(), lookup: mint::key_material() }
    }
}

/// A keyed digest of a secret, as cached in the hot index.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Digest([u8; 32]);

impl Digest {
    /// A digest read back from the store.
    pub fn from_bytes(bytes: [u8; 32]) -> Digest {
        Digest(bytes)
    }

    /// The digest's bytes, for the store.
    pub fn to_bytes(self) -> [u8; 32] {
        self.0
    }

    /// Constant-time equality.
    pub fn matches(&self, other: &Digest) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Digest([redacted])")
    }
}

/// Argon2id cost parameters for new hashes. Verification reads the parameters stored in each hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashCost {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for HashCost {
    /// The OWASP-recommended Argon2id setting (19 MiB, 2 passes, 1 lane).
    fn default() -> Self {
        HashCost { memory_kib: 19_456, iterations: 2, parallelism: 1 }
    }
}

/// Hashes and checks secrets; cheap to clone. The Argon2 threads end when the last clone is dropped.
#[derive(Clone)]
pub struct Hasher {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    /// HMAC-SHA256 states already keyed with the warm and lookup keys: cloning one skips re-deriving the
    /// key pads (two SHA-256 blocks) on every verify. They live as long as the process, like the keys.
    warm_mac: Hmac<Sha256>,
    lookup_mac: Hmac<Sha256>,
    /// The Argon2 threads. Only tests join them; dropping a handle detaches its thread, which ends on its own
    /// once `jobs` is dropped.
    #[cfg_attr(not(test), allow(dead_code))]
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// Work for an Argon2 thread, which delivers its own result; dropping it unrun releases what it holds.
type Work = Box<dyn FnOnce() + Send>;

/// Work in the queue, and since when.
struct Job {
    work: Work,
    queued_at: Instant,
}

/// What the callers and the Argon2 threads share.
struct Shared {
    /// The Argon2 threads' queue: the last clone of the [`Hasher`] takes it away, which ends the threads once
    /// the jobs already queued are done. A finished verify queues the next waiting one of its hash here.
    jobs: Mutex<Option<SyncSender<Job>>>,
    argon: Argon2<'static>,
    /// Jobs an Argon2 thread is running.
    running: AtomicUsize,
    /// Jobs in the queue.
    waiting: AtomicUsize,
    /// Argon2 runs so far, hashes and verifies: how tests tell a cached answer from a computed one.
    computations: AtomicU64,
    /// Jobs that waited this long are dropped unrun ([`MAX_QUEUE_WAIT`]).
    max_wait: Duration,
    claims: Mutex<Claims>,
    failures: Mutex<Failures>,
}

impl Hasher {
    /// `workers` Argon2 threads at the default priority ([`DEFAULT_NICE`]); at most `queue_limit` jobs may
    /// wait for one. `keys` are the persistent keys of the lookup and warm digests ([`crate::secrets::keyfile`]).
    pub fn new(cost: HashCost, workers: usize, queue_limit: usize, keys: DigestKeys) -> Result<Self, HashError> {
        Hasher::with_pool(cost, PoolSettings { workers, queue: queue_limit, nice: DEFAULT_NICE }, keys)
    }

    /// Like [`Hasher::new`], with every setting of the Argon2 pool.
    pub fn with_pool(cost: HashCost, pool: PoolSettings, keys: DigestKeys) -> Result<Self, HashError> {
        Hasher::build(cost, pool, keys, MAX_QUEUE_WAIT)
    }

    fn build(cost: HashCost, pool: PoolSettings, keys: DigestKeys, max_wait: Duration) -> Result<Self, HashError> {
        let params =
            Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None).map_err(HashError::Parameters)?;
        let (jobs, queue) = mpsc::sync_channel(pool.queue);
        let shared = Arc::new(Shared {
            jobs: Mutex::new(Some(jobs)),
            argon: Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
            running: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            computations: AtomicU64::new(0),
            max_wait,
            claims: Mutex::new(Claims::default()),
            failures: Mutex::new(Failures::new(FAILURE_CACHE_ENTRIES)),
        });
        let threads = start_threads(pool, queue, &shared)?;
        tracing::debug!(workers = threads.len(), queue = pool.queue, nice = pool.nice, "Argon2 threads started");
        Ok(Hasher {
            inner: Arc::new(Inner {
                shared,
                warm_mac: keyed(&keys.warm),
                lookup_mac: keyed(&keys.lookup),
                threads: Mutex::new(threads),
            }),
        })
    }

    /// Argon2 computations running now, and waiting for a thread.
    pub fn load(&self) -> (u64, u64) {
        let shared = &self.inner.shared;
        (shared.running.load(Ordering::Relaxed) as u64, shared.waiting.load(Ordering::Relaxed) as u64)
    }

    /// The keyed digest of `secret` under this process's key.
    pub fn digest(&self, secret: &[u8]) -> Digest {
        Digest(mac(&self.inner.warm_mac, secret))
    }

    /// Identifies the warm digest key, so digests persisted under another key are never reinstalled (they
    /// would never match, and a right secret would look wrong).
    pub fn warm_key_check(&self) -> [u8; 16] {
        mac(&self.inner.warm_mac, b"keyward warm key check")[..16].try_into().expect("16 bytes")
    }

    /// A check value of the lookup key (not the key): hosts of a fleet compare theirs with the fleet's.
    pub fn lookup_key_check(&self) -> [u8; 16] {
        mac(&self.inner.lookup_mac, b"keyward lookup key check")[..16].try_into().expect("16 bytes")
    }

    /// The persistent lookup digest of a whole imported token.
    pub fn lookup_digest(&self, token: &[u8]) -> [u8; 32] {
        mac(&self.inner.lookup_mac, token)
    }

    /// An Argon2id PHC string for `secret`, with a fresh random salt. BUSY when the queue is full or the job
    /// waited longer than [`MAX_QUEUE_WAIT`].
    pub async fn hash(&self, secret: Zeroizing<Vec<u8>>) -> Result<String, HashError> {
        let (answer, hashed) = oneshot::channel();
        let shared = self.inner.shared.clone();
        let work = Box::new(move || {
            if !answer.is_closed() {
                let _ = answer.send(shared.hash_new(&secret));
            }
        });
        self.inner.shared.submit(Job { work, queued_at: Instant::now() })?;
        // No answer: the job waited too long and was dropped, or it failed (and was logged).
        hashed.await.map_err(|_| HashError::Busy)?
    }

    /// Whether `secret` matches the PHC string `phc` (using the cost stored in it), asked by `caller`. A pair
    /// refuted lately is answered from the failure cache; one already being verified is waited for, not
    /// computed again; past the hash's [`PER_HASH_LIMIT`], it waits its turn. BUSY when `caller` already
    /// waits for a turn on this hash, the queue is full, or the computation waited longer than
    /// [`MAX_QUEUE_WAIT`].
    pub async fn verify(&self, secret: Zeroizing<Vec<u8>>, phc: Arc<str>, caller: Caller) -> Result<bool, HashError> {
        self.start_verify(secret, phc, caller)?.answer().await
    }

    /// [`Hasher::verify`] in two steps: everything that needs no waiting happens now (the failure cache, the
    /// hash's limit, a place in the queue), so a caller can answer a refusal inline; the Argon2 answer is
    /// awaited from the returned [`PendingVerify`].
    pub fn start_verify(
        &self,
        secret: Zeroizing<Vec<u8>>,
        phc: Arc<str>,
        caller: Caller,
    ) -> Result<PendingVerify, HashError> {
        let digest = self.digest(&secret);
        self.start_verify_digested(Verification { secret, phc, caller }, &digest)
    }

    /// [`Hasher::start_verify`] for a caller that already holds the secret's keyed [`Hasher::digest`] (the
    /// verify path computes it to compare with the warm cells), so it is not computed twice.
    pub fn start_verify_digested(
        &self,
        verification: Verification,
        digest: &Digest,
    ) -> Result<PendingVerify, HashError> {
        let attempt = Attempt { hash: fingerprint(&verification.phc), secret: digest.0 };
        if self.inner.shared.failures().knows(&attempt) {
            return Ok(PendingVerify(Pending::Refuted));
        }
        let answer = match self.inner.shared.claim(attempt, verification)? {
            Claimed::Joined(answer) | Claimed::Waiting(answer) => answer,
            Claimed::New(claim, verification, answer) => {
                self.inner.shared.submit(claim.into_job(verification, Instant::now()))?;
                answer
            }
        };
        Ok(PendingVerify(Pending::Computing(answer)))
    }
}

/// A verify admitted by [`Hasher::start_verify`], whose answer may still be computing.
pub struct PendingVerify(Pending);

enum Pending {
    /// The failure cache already knows the secret is wrong.
    Refuted,
    /// Argon2 is deciding, for this verify or an identical one.
    Computing(watch::Receiver<Option<bool>>),
}

impl PendingVerify {
    /// Whether the answer is already known to be "no" (the failure cache), with no Argon2 to wait for.
    pub fn is_refuted(&self) -> bool {
        matches!(self.0, Pending::Refuted)
    }

    /// Whether the secret matches; BUSY when its computation waited too long or failed before answering.
    pub async fn answer(self) -> Result<bool, HashError> {
        match self.0 {
            Pending::Refuted => Ok(false),
            Pending::Computing(answer) => answer_of(answer).await,
        }
    }
}

impl Drop for Inner {
    /// The last clone is gone: no more jobs, so the threads end once the queue is empty.
    fn drop(&mut self) {
        self.shared.jobs.lock().unwrap_or_else(PoisonError::into_inner).take();
    }
}

impl Shared {
    /// Queues `job` for an Argon2 thread, or refuses at once when the queue is full.
    fn submit(&self, job: Job) -> Result<(), HashError> {
        self.waiting.fetch_add(1, Ordering::AcqRel);
        let sent = match &*self.jobs.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(jobs) => jobs.try_send(job).map_err(|error| match error {
                TrySendError::Full(job) => (HashError::Busy, job),
                TrySendError::Disconnected(job) => (stopped(), job),
            }),
            None => Err((stopped(), job)),
        };
        let Err((refusal, job)) = sent else { return Ok(()) };
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        // Dropped outside the lock: a refused verify's claim, released, may queue the next waiting one.
        drop(job);
        Err(refusal)
    }

    /// Queues the computation of a verify whose turn has come; when it cannot be queued, its callers answer
    /// BUSY (dropping it passes the turn on).
    fn start(self: &Arc<Self>, turn: Waiter) {
        let claim = Claim { shared: self.clone(), attempt: turn.attempt, answer: turn.answer };
        let _ = self.submit(claim.into_job(turn.verification, turn.queued_at));
    }

    /// Argon2id of `secret` with a fresh random salt, as a PHC string.
    fn hash_new(&self, secret: &[u8]) -> Result<String, HashError> {
        let salt_bytes = mint::key_material();
        let salt = SaltString::encode_b64(&salt_bytes[..16]).map_err(HashError::Argon2)?;
        self.computations.fetch_add(1, Ordering::Relaxed);
        self.argon.hash_password(secret, &salt).map(|hash| hash.to_string()).map_err(HashError::Argon2)
    }

    /// Argon2id's verdict on `secret` against `phc`; an unreadable PHC string matches nothing.
    fn matches(&self, secret: &[u8], phc: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(phc) else {
            return false;
        };
        self.computations.fetch_add(1, Ordering::Relaxed);
        self.argon.verify_password(secret, &parsed).is_ok()
    }

    /// Joins the verify of `attempt` already in flight or waiting, claims a computation for it within the
    /// hash's limit, or gives it a waiting place, the caller's only one on this hash.
    fn claim(self: &Arc<Self>, attempt: Attempt, verification: Verification) -> Result<Claimed, HashError> {
        let mut claims = self.claims();
        if let Some(answer) = claims.in_flight.get(&attempt) {
            return Ok(Claimed::Joined(answer.subscribe()));
        }
        let lane = claims.per_hash.entry(attempt.hash).or_default();
        let may_start = lane.under_way < PER_HASH_LIMIT && lane.waiting.is_empty();
        if !may_start && (lane.waiting.len() >= MAX_WAITING_PER_HASH || lane.holds_a_place(verification.caller)) {
            return Err(HashError::Busy);
        }
        let (answer, receiver) = watch::channel(None);
        let answer = Arc::new(answer);
        if may_start {
            lane.under_way += 1;
        } else {
            let queued_at = Instant::now();
            lane.waiting.push_back(Waiter { attempt, answer: answer.clone(), verification, queued_at });
            claims.in_flight.insert(attempt, answer);
            return Ok(Claimed::Waiting(receiver));
        }
        claims.in_flight.insert(attempt, answer.clone());
        Ok(Claimed::New(Claim { shared: self.clone(), attempt, answer }, verification, receiver))
    }

    fn claims(&self) -> MutexGuard<'_, Claims> {
        self.claims.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn failures(&self) -> MutexGuard<'_, Failures> {
        self.failures.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A verify's question without its secret: which stored hash (its [`fingerprint`]) and which secret (its
/// warm digest). Deliberately not `Debug`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Attempt {
    hash: [u8; 16],
    secret: [u8; 32],
}

/// Where the answer of one Argon2 verify appears: `None` until it is computed.
type Answer = Arc<watch::Sender<Option<bool>>>;

/// Who asks for a verify: one connection. Each holds at most one waiting place per stored hash.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Caller(u64);

impl Caller {
    /// A caller no other has been or will be.
    pub fn next() -> Caller {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Caller(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// One Argon2 verify to run: the presented secret, the stored hash, and who asks.
pub struct Verification {
    pub secret: Zeroizing<Vec<u8>>,
    pub phc: Arc<str>,
    pub caller: Caller,
}

/// The Argon2 verifies under way and waiting.
#[derive(Default)]
struct Claims {
    /// Per stored hash (fingerprint): its computations and the verifies waiting for a turn; absent when none.
    per_hash: HashMap<[u8; 16], Lane>,
    /// The computation of each attempt under way or waiting, which identical verifies join.
    in_flight: HashMap<Attempt, Answer>,
}

/// One stored hash's computations.
#[derive(Default)]
struct Lane {
    /// Computations queued or running, at most [`PER_HASH_LIMIT`].
    under_way: usize,
    /// Verifies waiting for a turn, in arrival order, at most one per caller.
    waiting: VecDeque<Waiter>,
}

impl Lane {
    /// Whether `caller` already waits for a turn here (a place whose callers all left does not count).
    fn holds_a_place(&self, caller: Caller) -> bool {
        self.waiting.iter().any(|waiter| waiter.verification.caller == caller && !waiter.answer.is_closed())
    }
}

/// A verify waiting for a turn on its hash.
struct Waiter {
    attempt: Attempt,
    answer: Answer,
    verification: Verification,
    queued_at: Instant,
}

impl Claims {
    /// Stops `answer` from being joined, unless another computation of the same attempt has replaced it.
    fn close(&mut self, attempt: &Attempt, answer: &Answer) {
        if self.in_flight.get(attempt).is_some_and(|current| Arc::ptr_eq(current, answer)) {
            self.in_flight.remove(attempt);
        }
    }

    /// Ends one computation of `attempt`, and hands its turn to the first waiting verify someone still
    /// waits for and that has not waited too long (the others are dropped: their callers answer BUSY).
    fn release(&mut self, attempt: &Attempt, answer: &Answer, max_wait: Duration) -> Option<Waiter> {
        self.close(attempt, answer);
        let Entry::Occupied(mut lane) = self.per_hash.entry(attempt.hash) else { return None };
        let mut next = None;
        let mut dropped = Vec::new();
        while let Some(waiter) = lane.get_mut().waiting.pop_front() {
            if waiter.answer.is_closed() || waiter.queued_at.elapsed() >= max_wait {
                dropped.push(waiter);
            } else {
                next = Some(waiter);
                break;
            }
        }
        if next.is_none() {
            lane.get_mut().under_way -= 1;
            if lane.get().under_way == 0 && lane.get().waiting.is_empty() {
                lane.remove();
            }
        }
        for waiter in dropped {
            self.close(&waiter.attempt, &waiter.answer);
        }
        next
    }
}

/// What [`Shared::claim`] gave a verify.
enum Claimed {
    /// The same attempt is being computed or waits: wait for its answer.
    Joined(watch::Receiver<Option<bool>>),
    /// A computation to queue, and where its answer will appear.
    New(Claim, Verification, watch::Receiver<Option<bool>>),
    /// A place in the hash's line; the computation is queued when its turn comes.
    Waiting(watch::Receiver<Option<bool>>),
}

/// One Argon2 verify's hold on its stored hash's limit. Dropping it (answered, refused by a full queue, or
/// skipped) releases the hold; verifies still waiting without an answer then see BUSY.
struct Claim {
    shared: Arc<Shared>,
    attempt: Attempt,
    answer: Answer,
}

impl Claim {
    /// The Argon2 job that computes this claim's verification.
    fn into_job(self, verification: Verification, queued_at: Instant) -> Job {
        let Verification { secret, phc, .. } = verification;
        Job { work: Box::new(move || self.run(&secret, &phc)), queued_at }
    }

    /// On an Argon2 thread: computes the verdict, remembers a refutation, and publishes the answer.
    fn run(self, secret: &[u8], phc: &str) {
        if self.abandoned() {
            return;
        }
        let matched = self.shared.matches(secret, phc);
        if !matched {
            self.shared.failures().remember(self.attempt);
        }
        // The hold is released before the answer appears, so whoever reads the answer finds the hash's slot
        // free again.
        let answer = self.answer.clone();
        drop(self);
        answer.send_replace(Some(matched));
    }

    /// Whether every verify waiting for this answer has gone (e.g. its connection closed); if so, no later
    /// verify can join it. Joiners subscribe under the same lock.
    fn abandoned(&self) -> bool {
        let mut claims = self.shared.claims();
        let abandoned = self.answer.is_closed();
        if abandoned {
            claims.close(&self.attempt, &self.answer);
        }
        abandoned
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let next = self.shared.claims().release(&self.attempt, &self.answer, self.shared.max_wait);
        if let Some(turn) = next {
            self.shared.start(turn);
        }
    }
}

fn stopped() -> HashError {
    HashError::Stopped
}

/// Waits for an Argon2 verify's answer; BUSY when its computation was refused or failed before answering.
async fn answer_of(mut answer: watch::Receiver<Option<bool>>) -> Result<bool, HashError> {
    match answer.wait_for(Option::is_some).await {
        Ok(matched) => Ok(*matched == Some(true)),
        Err(_) => Err(HashError::Busy),
    }
}

/// The failure cache: attempts Argon2 refuted lately, at most `capacity`, oldest forgotten first.
struct Failures {
    known: HashSet<Attempt>,
    oldest_first: VecDeque<Attempt>,
    capacity: usize,
}

impl Failures {
    fn new(capacity: usize) -> Failures {
        Failures { known: HashSet::new(), oldest_first: VecDeque::new(), capacity }
    }

    fn knows(&self, attempt: &Attempt) -> bool {
        self.known.contains(attempt)
    }

    fn remember(&mut self, attempt: Attempt) {
        if self.capacity == 0 || self.known.contains(&attempt) {
            return;
        }
        if self.oldest_first.len() == self.capacity {
            if let Some(oldest) = self.oldest_first.pop_front() {
                self.known.remove(&oldest);
            }
        }
        self.known.insert(attempt);
        self.oldest_first.push_back(attempt);
    }
}

/// Starts the Argon2 threads, which share `queue`.
fn start_threads(
    pool: PoolSettings,
    queue: Receiver<Job>,
    shared: &Arc<Shared>,
) -> Result<Vec<JoinHandle<()>>, HashError> {
    let queue = Arc::new(Mutex::new(queue));
    (0..pool.workers.max(1))
        .map(|n| {
            let (queue, shared) = (queue.clone(), shared.clone());
            std::thread::Builder::new()
                .name(format!("keyward-argon-{n}"))
                .spawn(move || serve(&queue, &shared, pool.nice))
                .map_err(HashError::Thread)
        })
        .collect()
}

/// An Argon2 thread: lowers its own priority, then runs jobs until the queue is closed and empty. A job that
/// waited too long is dropped unrun.
fn serve(queue: &Mutex<Receiver<Job>>, shared: &Shared, nice: u8) {
    if let Err(error) = lower_priority(nice) {
        tracing::warn!(%error, nice, "an Argon2 thread could not lower its priority");
    }
    while let Some(job) = next_job(queue) {
        shared.waiting.fetch_sub(1, Ordering::AcqRel);
        if job.queued_at.elapsed() >= shared.max_wait {
            continue;
        }
        shared.running.fetch_add(1, Ordering::AcqRel);
        if std::panic::catch_unwind(AssertUnwindSafe(job.work)).is_err() {
            tracing::error!("an Argon2 job panicked; the requests waiting for it answer BUSY or fail");
        }
        shared.running.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The next job, or `None` once every sender is gone and the queue is empty.
fn next_job(queue: &Mutex<Receiver<Job>>) -> Option<Job> {
    queue.lock().unwrap_or_else(PoisonError::into_inner).recv().ok()
}

/// Lowers the calling thread's priority by `nice` steps, to at most [`MAX_NICE`]; never raises it. On Linux
/// a thread's nice value is its own, so the rest of the daemon keeps its priority.
#[cfg(target_os = "linux")]
fn lower_priority(nice: u8) -> std::io::Result<()> {
    if nice == 0 {
        return Ok(());
    }
    let current = own_priority()?;
    let lowered = (current + i32::from(nice)).min(i32::from(MAX_NICE));
    // SAFETY: setpriority takes no pointers; the id is this thread's own, so only this thread changes.
    if lowered > current && unsafe { libc::setpriority(libc::PRIO_PROCESS, own_thread_id(), lowered) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Elsewhere `PRIO_PROCESS` would lower the whole daemon, so the threads keep its priority.
#[cfg(not(target_os = "linux"))]
fn lower_priority(_nice: u8) -> std::io::Result<()> {
    Ok(())
}

/// The calling thread's nice value.
#[cfg(target_os = "linux")]
fn own_priority() -> std::io::Result<i32> {
    // getpriority may return -1 as a nice value: only errno tells an error apart, so it is cleared first.
    // SAFETY: errno is this thread's own; getpriority takes no pointers.
    let priority = unsafe {
        *libc::__errno_location() = 0;
        libc::getpriority(libc::PRIO_PROCESS, own_thread_id())
    };
    let error = std::io::Error::last_os_error();
    match error.raw_os_error() {
        Some(errno) if priority == -1 && errno != 0 => Err(error),
        _ => Ok(priority),
    }
}

#[cfg(target_os = "linux")]
fn own_thread_id() -> libc::id_t {
    // SAFETY: gettid has no preconditions and cannot fail.
    let id = unsafe { libc::gettid() };
    id as libc::id_t
}

/// Identifies a stored hash without revealing it: the first 16 bytes of SHA-256 of the PHC string. A
/// persisted warm digest is reinstalled only on the hash it was verified against.
pub fn fingerprint(phc: &str) -> [u8; 16] {
    let digest = <Sha256 as sha2::Digest>::digest(phc.as_bytes());
    digest[..16].try_into().expect("SHA-256 is 32 bytes")
}

fn keyed(key: &[u8; 32]) -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length")
}

fn mac(keyed: &Hmac<Sha256>, message: &[u8]) -> [u8; 32] {
    let mut mac = keyed.clone();
    mac.update(message);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};
    use std::time::Duration;

    use super::*;

    const CHEAP: HashCost = HashCost { memory_kib: 64, iterations: 1, parallelism: 1 };

    fn pool(workers: usize, queue: usize) -> Hasher {
        Hasher::new(CHEAP, workers, queue, DigestKeys::ephemeral()).unwrap()
    }

    fn cheap() -> Hasher {
        pool(2, 8)
    }

    fn secret(text: &str) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(text.as_bytes().to_vec())
    }

    async fn stored(hasher: &Hasher, text: &str) -> Arc<str> {
        hasher.hash(secret(text)).await.unwrap().into()
    }

    /// The caller the tests verify as, unless they need several.
    const ONE: Caller = Caller(0);

    fn submit(hasher: &Hasher, work: Work) -> Result<(), HashError> {
        hasher.inner.shared.submit(Job { work, queued_at: Instant::now() })
    }

    fn computations(hasher: &Hasher) -> u64 {
        hasher.inner.shared.computations.load(Ordering::Relaxed)
    }

    fn holds_no_claims(hasher: &Hasher) -> bool {
        let claims = hasher.inner.shared.claims();
        claims.per_hash.is_empty() && claims.in_flight.is_empty()
    }

    /// Polls `future` once: far enough for a hash to be refused or queued.
    fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
        Pin::new(future).poll(&mut Context::from_waker(Waker::noop()))
    }

    /// Occupies an Argon2 thread until the returned sender is dropped.
    fn occupy_a_thread(hasher: &Hasher) -> mpsc::Sender<()> {
        let (started, has_started) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let job = move || {
            started.send(()).unwrap();
            let _ = released.recv();
        };
        submit(hasher, Box::new(job)).unwrap();
        has_started.recv().unwrap();
        release
    }

    #[tokio::test]
    async fn hash_then_verify() {
        let hasher = cheap();
        let phc = hasher.hash(Zeroizing::new(b"right".to_vec())).await.unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(!phc.contains("right"));
        let phc: Arc<str> = phc.into();
        assert!(hasher.verify(Zeroizing::new(b"right".to_vec()), phc.clone(), ONE).await.unwrap());
        assert!(!hasher.verify(Zeroizing::new(b"wrong".to_vec()), phc, ONE).await.unwrap());
        assert_eq!(computations(&hasher), 3, "the hash and both verifies ran Argon2");
        assert!(holds_no_claims(&hasher));
    }

    #[test]
    fn digests_are_keyed_per_hasher() {
        let (a, b) = (cheap(), cheap());
        assert!(a.digest(b"s").matches(&a.digest(b"s")));
        assert!(!a.digest(b"s").matches(&a.digest(b"t")));
        assert!(!a.digest(b"s").matches(&b.digest(b"s")), "other keys give other digests");
    }

    #[tokio::test]
    async fn a_full_queue_answers_busy_at_once() {
        let hasher = pool(1, 1);
        let phc = stored(&hasher, "right").await;
        let release = occupy_a_thread(&hasher);
        let (done, queued_job_done) = mpsc::channel();
        submit(&hasher, Box::new(move || done.send(()).unwrap())).unwrap();
        assert_eq!(hasher.load(), (1, 1));

        assert!(matches!(hasher.start_verify(secret("right"), phc.clone(), ONE), Err(HashError::Busy)));
        assert!(matches!(poll_once(&mut Box::pin(hasher.hash(secret("new")))), Poll::Ready(Err(HashError::Busy))));
        assert!(holds_no_claims(&hasher), "a refused verify holds nothing");
        assert_eq!(hasher.load(), (1, 1));

        drop(release);
        queued_job_done.recv().unwrap();
        assert!(hasher.verify(secret("right"), phc, ONE).await.unwrap(), "served once the queue drains");
    }

    #[tokio::test]
    async fn past_two_computations_of_one_hash_a_caller_waits_in_one_place_while_another_hash_gets_through() {
        let hasher = pool(1, 8);
        let (a, b) = (stored(&hasher, "secret a").await, stored(&hasher, "secret b").await);
        let release = occupy_a_thread(&hasher);
        let first = hasher.start_verify(secret("wrong 1"), a.clone(), ONE).unwrap();
        let second = hasher.start_verify(secret("wrong 2"), a.clone(), ONE).unwrap();

        let third = hasher.start_verify(secret("secret a"), a.clone(), ONE).expect("waits for a turn");
        let fourth = hasher.start_verify(secret("wrong 4"), a.clone(), ONE);
        assert!(matches!(fourth, Err(HashError::Busy)), "this caller already waits for a turn on this hash");
        let other_hash = hasher.start_verify(secret("secret b"), b, ONE).expect("another hash still gets a place");
        assert_eq!(hasher.load(), (1, 3), "the waiting verify is not queued until its turn");

        drop(release);
        assert!(!first.answer().await.unwrap());
        assert!(!second.answer().await.unwrap());
        assert!(third.answer().await.unwrap(), "its turn came when one of the first two finished");
        assert!(other_hash.answer().await.unwrap());
        assert!(holds_no_claims(&hasher), "an answered verify has released its hash");
    }

    #[tokio::test]
    async fn a_flood_for_one_hash_on_one_connection_cannot_shut_out_another() {
        let hasher = pool(1, 64);
        let phc = stored(&hasher, "right").await;
        let (flood, holder) = (Caller(1), Caller(2));
        let release = occupy_a_thread(&hasher);
        let mut flooded: Vec<_> = (0..3)
            .map(|n| {
                hasher.start_verify(secret(&format!("wrong {n}")), phc.clone(), flood).expect("two run, one waits")
            })
            .collect();
        let held = hasher.start_verify(secret("right"), phc.clone(), holder).expect("the holder waits its turn");
        for n in 3..50 {
            let refused = hasher.start_verify(secret(&format!("wrong {n}")), phc.clone(), flood);
            assert!(matches!(refused, Err(HashError::Busy)), "the flood holds one waiting place, not the line");
        }
        drop(release);
        assert!(held.answer().await.unwrap(), "the holder is served after at most the flood's one waiting verify");
        for verify in flooded.drain(..) {
            assert!(!verify.answer().await.unwrap());
        }
        assert!(holds_no_claims(&hasher));
    }

    #[tokio::test]
    async fn a_waiting_verify_nobody_waits_for_any_more_passes_its_turn_on() {
        let hasher = pool(1, 8);
        let phc = stored(&hasher, "right").await;
        let before = computations(&hasher);
        let release = occupy_a_thread(&hasher);
        let running: Vec<_> =
            (0..2).map(|n| hasher.start_verify(secret(&format!("w{n}")), phc.clone(), ONE).unwrap()).collect();
        drop(hasher.start_verify(secret("gone"), phc.clone(), Caller(7)).unwrap());
        let next =
            hasher.start_verify(secret("right"), phc.clone(), Caller(7)).expect("a place left by its callers is free");
        drop(release);
        for verify in running {
            assert!(!verify.answer().await.unwrap());
        }
        assert!(next.answer().await.unwrap());
        assert_eq!(computations(&hasher), before + 3, "the abandoned one was never computed");
        assert!(holds_no_claims(&hasher));
    }

    #[tokio::test]
    async fn identical_concurrent_verifies_share_one_computation() {
        let hasher = pool(1, 8);
        let phc = stored(&hasher, "right").await;
        let before = computations(&hasher);
        let release = occupy_a_thread(&hasher);
        let verifies: Vec<_> = (0..5)
            .map(|_| hasher.start_verify(secret("right"), phc.clone(), ONE).expect("joins, never BUSY"))
            .collect();
        assert_eq!(hasher.load(), (1, 1), "one computation queued for all five");

        drop(release);
        for verify in verifies {
            assert!(verify.answer().await.unwrap());
        }
        assert_eq!(computations(&hasher), before + 1);
    }

    #[tokio::test]
    async fn a_repeated_wrong_secret_is_refused_without_argon2() {
        let hasher = cheap();
        let (a, b) = (stored(&hasher, "secret a").await, stored(&hasher, "secret b").await);
        let before = computations(&hasher);
        assert!(!hasher.verify(secret("wrong"), a.clone(), ONE).await.unwrap());
        assert_eq!(computations(&hasher), before + 1);

        assert!(!hasher.verify(secret("wrong"), a.clone(), ONE).await.unwrap());
        assert_eq!(computations(&hasher), before + 1, "answered from the failure cache");
        assert!(!hasher.verify(secret("wrong"), b, ONE).await.unwrap());
        assert_eq!(computations(&hasher), before + 2, "the cache is per hash");
        assert!(hasher.verify(secret("secret a"), a, ONE).await.unwrap());
        assert_eq!(computations(&hasher), before + 3, "a right secret is never in the cache");
    }

    #[test]
    fn the_failure_cache_forgets_its_oldest_entries_first() {
        let attempt = |n: u8| Attempt { hash: [n; 16], secret: [n; 32] };
        let mut failures = Failures::new(2);
        failures.remember(attempt(1));
        failures.remember(attempt(2));
        failures.remember(attempt(1));
        failures.remember(attempt(3));
        assert!(!failures.knows(&attempt(1)));
        assert!(failures.knows(&attempt(2)) && failures.knows(&attempt(3)));
        assert_eq!((failures.known.len(), failures.oldest_first.len()), (2, 2));
    }

    #[tokio::test]
    async fn a_verify_nobody_waits_for_is_skipped() {
        let hasher = pool(1, 8);
        let phc = stored(&hasher, "right").await;
        let before = computations(&hasher);
        let release = occupy_a_thread(&hasher);
        let gone = hasher.start_verify(secret("wrong"), phc.clone(), ONE).unwrap();
        drop(gone);

        drop(release);
        assert!(hasher.verify(secret("right"), phc, ONE).await.unwrap());
        assert_eq!(computations(&hasher), before + 1, "only the verify still awaited ran Argon2");
        assert!(holds_no_claims(&hasher));
    }

    #[tokio::test]
    async fn dropping_the_last_clone_ends_the_threads() {
        let hasher = pool(2, 8);
        let threads = std::mem::take(&mut *hasher.inner.threads.lock().unwrap());
        assert_eq!(threads.len(), 2);
        let clone = hasher.clone();
        drop(hasher);
        let phc = stored(&clone, "right").await;
        assert!(clone.verify(secret("right"), phc, ONE).await.unwrap(), "a clone keeps the threads");

        drop(clone);
        let (ended, all_ended) = mpsc::channel();
        std::thread::spawn(move || {
            threads.into_iter().for_each(|thread| thread.join().unwrap());
            let _ = ended.send(());
        });
        all_ended.recv_timeout(Duration::from_secs(60)).expect("the Argon2 threads end with the last clone");
    }

    #[tokio::test]
    async fn a_job_that_waited_too_long_answers_busy_unrun() {
        let settings = PoolSettings { workers: 1, queue: 8, nice: 0 };
        let hasher = Hasher::build(CHEAP, settings, DigestKeys::ephemeral(), Duration::ZERO).unwrap();
        assert!(matches!(hasher.hash(secret("new")).await, Err(HashError::Busy)));
        let phc = "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
        assert!(matches!(hasher.verify(secret("any"), phc.into(), ONE).await, Err(HashError::Busy)));
        assert_eq!(computations(&hasher), 0);
        assert!(holds_no_claims(&hasher));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn argon2_threads_are_named_and_run_at_a_lower_priority() {
        let settings = PoolSettings { workers: 1, queue: 1, nice: 3 };
        let hasher = Hasher::with_pool(CHEAP, settings, DigestKeys::ephemeral()).unwrap();
        let (report, reported) = mpsc::channel();
        let job = move || {
            let _ = report.send((own_priority().unwrap(), std::thread::current().name().map(str::to_owned)));
        };
        submit(&hasher, Box::new(job)).unwrap();
        let (priority, name) = reported.recv().unwrap();
        let ours = own_priority().unwrap();
        assert_eq!(priority, (ours + 3).min(i32::from(MAX_NICE)));
        assert_eq!(name.as_deref(), Some("keyward-argon-0"));
    }

    #[test]
    fn default_sizes_leave_a_core_and_scale_the_queue() {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        assert_eq!(default_workers(), cores.saturating_sub(1).max(1));
        assert_eq!(default_queue(3), 3 * QUEUE_PER_WORKER);
        assert_eq!(default_queue(0), QUEUE_PER_WORKER);
    }
}
