//! Durable storage: the one module that knows sled.
//!
//! Trees:
//! - `keys`: key id → versioned, codec-encoded [`KeyRecord`];
//! - `audit`: big-endian sequence number → [`AuditEntry`];
//! - `accounts`: account → the workspaces its legacy keys may act on;
//! - `last_used`: key id → Unix seconds, big-endian (written in batches, apart from the records, so the
//!   batch writer can never overwrite a management change);
//! - `credits`: key id → live credit balance and last refill (batches, and with `credits` commands);
//! - `usage`: key id + `h`/`d` + bucket start (big-endian) → verification counts by code, summed by a
//!   merge operator;
//! - `warm`: key id → the warm digests of its verified secrets, each with the fingerprint of the hash it
//!   was verified against (batches; only keyward-generated secrets, see [`crate::keys::index`]);
//! - `fleet`: in fleet mode, which fleet this store is a replica of and the newest change it holds
//!   ([`ReplicaMark`]), written in the same transaction as the changes it counts.
//!
//! Beside the sled files, `store.manifest` records how much the store held at its last sync (the audit
//! sequence and the key count, both of which only grow). sled opens a damaged, truncated or missing log as
//! an empty database without complaint; the manifest turns that into a refusal to start, because a daemon
//! that silently forgot its revocations would let revoked keys verify again.
//!
//! A management change and its audit entry are written in one sled transaction and flushed (fsync of
//! sled's log) before [`Store::commit`] returns: a caller that acknowledges afterwards never acknowledges
//! something a crash could lose, and the audit log never holds an entry for a change that did not happen.
//!
//! All methods block; async callers run them on the blocking pool.

use std::collections::HashSet;
use std::path::Path;

use keyward_protocol::{codec, AccountView, AuditEntry};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use crate::keys::parallel;
use crate::keys::record::KeyRecord;
use crate::keys::usage::{self, CODES};

/// Storage failed. The message names the data directory or record, never any secret material.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the key store in {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("stored {what} cannot be decoded ({reason}); the data directory may be corrupt")]
    Corrupt { what: String, reason: String },
    #[error("{0}")]
    Io(String),
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        match e {
            // sled takes no more writes after an I/O failure (it cannot know what reached the disk), so
            // say what the operator must do; reads are served from memory meanwhile.
            sled::Error::Io(io) => StoreError::Io(format!(
                "{}; the store takes no more writes until keywardd is restarted with room on the disk \
                 (verifies keep working, nothing acknowledged is lost)",
                describe_io(&io)
            )),
            other => StoreError::Io(other.to_string()),
        }
    }
}

/// An I/O error in words. sled wraps the operating system's error in a custom one whose text is a debug
/// dump, so describe it by its kind (or OS error, when it kept one).
fn describe_io(error: &std::io::Error) -> String {
    match (error.raw_os_error(), error.kind()) {
        (Some(code), _) => std::io::Error::from_raw_os_error(code).to_string(),
        (None, std::io::ErrorKind::StorageFull) => "No space left on device".to_owned(),
        (None, kind) => kind.to_string(),
    }
}

/// The on-disk envelope of a key. New record layouts are new variants, so old data stays readable.
#[derive(Deserialize)]
enum StoredKey {
    V1(KeyRecord),
}

/// [`StoredKey`] borrowed for writing; encodes to the same bytes.
#[derive(Serialize)]
enum StoredKeyRef<'a> {
    V1(&'a KeyRecord),
}

/// One durable change: a key (and its credit balance) and/or an account, with its audit entry (which only
/// the snapshot of a key imported into a fleet lacks).
pub struct Change<'a> {
    pub key: Option<&'a KeyRecord>,
    /// The key's live credit balance and last refill, when the change sets it.
    pub credits: Option<(u64, i64)>,
    pub account: Option<&'a AccountView>,
    pub audit: Option<&'a AuditEntry>,
}

/// In fleet mode: the fleet this store is a replica of, and the newest change it holds with that change's
/// id (so a host can tell an engine restored from an older backup from the one it followed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaMark {
    pub fleet_id: String,
    pub applied_seq: u64,
    pub anchor: Option<[u8; 16]>,
}

/// The `fleet` tree's one entry.
const REPLICA: &[u8] = b"replica";

/// A [`Change`] encoded for the store.
struct Encoded<'a> {
    key: Option<(&'a str, Vec<u8>)>,
    credits: Option<Vec<u8>>,
    account: Option<(&'a str, Vec<u8>)>,
    audit: Option<(u64, Vec<u8>)>,
}

impl<'a> Encoded<'a> {
    fn of(change: &Change<'a>) -> Result<Encoded<'a>, StoreError> {
        let key = change
            .key
            .map(|record| Ok::<_, StoreError>((record.id.as_str(), encode(&StoredKeyRef::V1(record), "a key")?)));
        let account =
            change.account.map(|a| Ok::<_, StoreError>((a.account.as_str(), encode(&a.workspaces, "an account")?)));
        let audit = change.audit.map(|entry| Ok::<_, StoreError>((entry.seq, encode(entry, "an audit entry")?)));
        Ok(Encoded {
            key: key.transpose()?,
            credits: change.credits.map(|state| encode(&state, "credits")).transpose()?,
            account: account.transpose()?,
            audit: audit.transpose()?,
        })
    }
}

/// Hourly or daily usage buckets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bucket {
    Hour,
    Day,
}

impl Bucket {
    fn tag(self) -> u8 {
        match self {
            Bucket::Hour => b'h',
            Bucket::Day => b'd',
        }
    }
}

fn usage_key(id: &str, bucket: Bucket, start: i64) -> Vec<u8> {
    let mut key = Vec::with_capacity(id.len() + 9);
    key.extend_from_slice(id.as_bytes());
    key.push(bucket.tag());
    key.extend_from_slice(&start.to_be_bytes());
    key
}

/// Sums two encoded count arrays (sled merge operator for the `usage` tree).
fn merge_counts(_key: &[u8], old: Option<&[u8]>, new: &[u8]) -> Option<Vec<u8>> {
    let decode_counts = |bytes: &[u8]| codec::decode::<Vec<u64>>(bytes).unwrap_or_default();
    let mut sum = old.map(decode_counts).unwrap_or_default();
    let add = decode_counts(new);
    sum.resize(sum.len().max(add.len()), 0);
    for (total, n) in sum.iter_mut().zip(add) {
        *total += n;
    }
    codec::encode(&sum).ok()
}

/// The `warm` tree's entry holding the warm key's check value (no key id starts with a NUL byte).
const WARM_CHECK: &[u8] = b"\0check";

/// A persisted warm digest: the fingerprint of the hash it was verified against, and the digest.
pub type WarmDigest = ([u8; 16], [u8; 32]);

/// Everything loaded at startup but the keys ([`Store::load_keys`]).
pub struct Loaded {
    pub accounts: Vec<AccountView>,
    /// The ids of the keys with persisted warm digests: the keys in use before the restart.
    pub warm_keys: HashSet<String>,
    /// The sequence number the next audit entry gets.
    pub next_audit_seq: u64,
}

/// What the store holds about a key besides its record: what the flusher last wrote. Its `Debug` counts
/// the warm digests rather than printing them.
#[derive(Clone, Default)]
pub struct KeyCounters {
    pub last_used: Option<i64>,
    /// Live credit balance and last refill.
    pub credits: Option<(u64, i64)>,
    /// Warm digests persisted by an earlier run: `(fingerprint of the hash, digest)` per secret.
    pub warm: Vec<WarmDigest>,
    /// Fleet mode: the key's credits are escrowed from the engine, so any saved balance is not this host's
    /// to spend (not stored; set by whoever builds the snapshot).
    pub escrow: bool,
}

impl std::fmt::Debug for KeyCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCounters")
            .field("last_used", &self.last_used)
            .field("credits", &self.credits)
            .field("warm", &format_args!("[{} redacted]", self.warm.len()))
            .field("escrow", &self.escrow)
            .finish()
    }
}

/// sled's page cache. It serves management calls, the flusher, and the first verify of each key since
/// startup (which reads the key's record); sled's default (1 GiB) would fill with every record at startup
/// and stay resident.
const PAGE_CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// The manifest's file name in the data directory.
const MANIFEST: &str = "store.manifest";

/// What the store held at its last sync.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HighWater {
    /// The last audit sequence number written.
    pub audit_seq: u64,
    pub keys: u64,
}

impl HighWater {
    fn render(self) -> String {
        format!("audit_seq={}\nkeys={}\n", self.audit_seq, self.keys)
    }

    fn parse(text: &str) -> Option<HighWater> {
        let mut mark = HighWater::default();
        for line in text.lines() {
            match line.split_once('=')? {
                ("audit_seq", n) => mark.audit_seq = n.parse().ok()?,
                ("keys", n) => mark.keys = n.parse().ok()?,
                _ => return None,
            }
        }
        Some(mark)
    }
}

/// The key store.
pub struct Store {
    dir: std::path::PathBuf,
    db: sled::Db,
    keys: sled::Tree,
    audit: sled::Tree,
    accounts: sled::Tree,
    last_used: sled::Tree,
    credits: sled::Tree,
    usage: sled::Tree,
    warm: sled::Tree,
    fleet: sled::Tree,
}

fn encode<T: Serialize>(value: &T, what: &str) -> Result<Vec<u8>, StoreError> {
    codec::encode(value).map_err(|e| StoreError::Io(format!("encoding {what}: {e}")))
}

fn decode<T: DeserializeOwned>(bytes: &[u8], what: impl FnOnce() -> String) -> Result<T, StoreError> {
    codec::decode(bytes).map_err(|e| StoreError::Corrupt { what: what(), reason: e.to_string() })
}

impl Store {
    /// Opens (or creates) the store under `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let open_error = |e: sled::Error| StoreError::Open { path: dir.display().to_string(), reason: e.to_string() };
        let db = sled::Config::new()
            .path(dir.join("keys.sled"))
            .cache_capacity(PAGE_CACHE_BYTES)
            .open()
            .map_err(open_error)?;
        let tree = |name: &str| db.open_tree(name).map_err(open_error);
        let (keys, audit, accounts, last_used) = (tree("keys")?, tree("audit")?, tree("accounts")?, tree("last_used")?);
        let (credits, usage, warm, fleet) = (tree("credits")?, tree("usage")?, tree("warm")?, tree("fleet")?);
        usage.set_merge_operator(merge_counts);
        Ok(Store { dir: dir.to_owned(), db, keys, audit, accounts, last_used, credits, usage, warm, fleet })
    }

    /// Everything the daemon keeps in memory but the keys themselves ([`Store::load_keys`]). Fails on the
    /// first value that cannot be decoded.
    pub fn load(&self) -> Result<Loaded, StoreError> {
        let mut accounts = Vec::new();
        for entry in self.accounts.iter() {
            let (account, bytes) = entry?;
            let account = String::from_utf8_lossy(&account).into_owned();
            let workspaces = decode(&bytes, || format!("account {account}"))?;
            accounts.push(AccountView { account, workspaces });
        }
        let mut warm_keys = HashSet::new();
        for id in self.warm.iter().keys() {
            let id = id?;
            if id.as_ref() != WARM_CHECK {
                warm_keys.insert(String::from_utf8_lossy(&id).into_owned());
            }
        }
        let next_audit_seq = match self.audit.last()? {
            Some((seq, _)) => u64::from_be_bytes(<[u8; 8]>::try_from(seq.as_ref()).unwrap_or_default()) + 1,
            None => 1,
        };
        Ok(Loaded { accounts, warm_keys, next_audit_seq })
    }

    /// Key `id`'s last-used time, credit state and persisted warm digests, as last written.
    pub fn counters(&self, id: &str) -> Result<KeyCounters, StoreError> {
        let last_used = match self.last_used.get(id)? {
            Some(bytes) => Some(i64::from_be_bytes(<[u8; 8]>::try_from(bytes.as_ref()).map_err(|_| {
                StoreError::Corrupt { what: format!("last-used time of key {id}"), reason: "not 8 bytes".into() }
            })?)),
            None => None,
        };
        let credits = match self.credits.get(id)? {
            Some(bytes) => Some(decode(&bytes, || format!("credits of key {id}"))?),
            None => None,
        };
        let warm = match self.warm.get(id)? {
            Some(bytes) => decode(&bytes, || format!("warm digests of key {id}"))?,
            None => Vec::new(),
        };
        Ok(KeyCounters { last_used, credits, warm, escrow: false })
    }

    /// Writes a change and its audit entry atomically, and waits until they are on disk.
    pub fn commit(&self, change: &Change<'_>) -> Result<(), StoreError> {
        self.commit_all(std::slice::from_ref(change), None)
    }

    /// Writes `changes` (and, in fleet mode, the replica's new `mark`) in one transaction, and waits until
    /// they are on disk.
    pub fn commit_all(&self, changes: &[Change<'_>], mark: Option<&ReplicaMark>) -> Result<(), StoreError> {
        let encoded = changes.iter().map(Encoded::of).collect::<Result<Vec<_>, _>>()?;
        let mark = mark.map(|mark| encode(mark, "the replica mark")).transpose()?;
        let trees = (&self.keys, &self.accounts, &self.audit, &self.credits, &self.fleet);
        let result: Result<(), TransactionError<()>> = trees.transaction(|(keys, accounts, log, balances, fleet)| {
            for change in &encoded {
                if let Some((id, bytes)) = &change.key {
                    keys.insert(id.as_bytes(), bytes.as_slice())?;
                    if let Some(credits) = &change.credits {
                        balances.insert(id.as_bytes(), credits.as_slice())?;
                    }
                }
                if let Some((name, bytes)) = &change.account {
                    accounts.insert(name.as_bytes(), bytes.as_slice())?;
                }
                if let Some((seq, bytes)) = &change.audit {
                    log.insert(&seq.to_be_bytes(), bytes.as_slice())?;
                }
            }
            if let Some(mark) = &mark {
                fleet.insert(REPLICA, mark.as_slice())?;
            }
            Ok::<(), ConflictableTransactionError<()>>(())
        });
        result.map_err(|e| match e {
            TransactionError::Storage(error) => StoreError::from(error),
            TransactionError::Abort(()) => StoreError::Io("the store aborted the transaction".into()),
        })?;
        self.flush()
    }

    /// Which fleet this store is a replica of, and the newest change it holds; `None` for a store that
    /// has never been part of a fleet.
    pub fn replica_mark(&self) -> Result<Option<ReplicaMark>, StoreError> {
        let Some(bytes) = self.fleet.get(REPLICA)? else { return Ok(None) };
        Ok(Some(decode(&bytes, || "the replica mark".to_owned())?))
    }

    /// Every account and audit entry, oldest entry first (for `keyward fleet init`).
    pub fn export(&self) -> Result<(Vec<AccountView>, Vec<AuditEntry>), StoreError> {
        let accounts = self.load()?.accounts;
        let mut entries = Vec::new();
        for entry in self.audit.iter() {
            let (seq, bytes) = entry?;
            entries.push(decode(&bytes, || format!("audit entry {:?}", seq.as_ref()))?);
        }
        Ok((accounts, entries))
    }

    /// Audit entries, newest first, that `keep` accepts, at most `limit` of them.
    pub fn audit_entries(
        &self,
        limit: usize,
        keep: impl Fn(&AuditEntry) -> bool,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let mut entries = Vec::new();
        for entry in self.audit.iter().rev() {
            let (seq, bytes) = entry?;
            let entry: AuditEntry = decode(&bytes, || format!("audit entry {:?}", seq.as_ref()))?;
            if keep(&entry) {
                entries.push(entry);
                if entries.len() == limit {
                    break;
                }
            }
        }
        Ok(entries)
    }

    /// Records last-used times and credit balances; [`Store::flush`] makes them durable.
    ///
    /// Entry by entry rather than as a `sled::Batch`: sled 0.34 keeps memory for every applied batch (measured:
    /// ~12 MB retained per batch of 10,000 eight-byte values, every flush, without bound), while single
    /// inserts stay flat. Each value stands alone, so nothing needs the batch's atomicity; the flush makes
    /// them durable together.
    pub fn save_counters(
        &self,
        last_used: &[(String, i64)],
        credits: &[(String, (u64, i64))],
    ) -> Result<(), StoreError> {
        for (id, at) in last_used {
            self.last_used.insert(id.as_bytes(), &at.to_be_bytes())?;
        }
        for (id, state) in credits {
            self.credits.insert(id.as_bytes(), encode(state, "credits")?)?;
        }
        Ok(())
    }

    /// The check value of the key the persisted warm digests were made with.
    pub fn warm_check(&self) -> Result<Option<[u8; 16]>, StoreError> {
        Ok(self.warm.get(WARM_CHECK)?.and_then(|bytes| <[u8; 16]>::try_from(bytes.as_ref()).ok()))
    }

    /// Drops every persisted warm digest and records the check value of the key future ones use.
    pub fn reset_warm(&self, check: [u8; 16]) -> Result<(), StoreError> {
        self.warm.clear()?;
        self.warm.insert(WARM_CHECK, &check)?;
        self.flush()
    }

    /// Replaces the persisted warm digests of each key in `batch`, and flushes (entry by entry, as
    /// [`Store::save_counters`] explains).
    pub fn save_warm(&self, batch: &[(String, Vec<WarmDigest>)]) -> Result<(), StoreError> {
        for (id, digests) in batch {
            self.warm.insert(id.as_bytes(), encode(digests, "warm digests")?)?;
        }
        self.flush()
    }

    /// Adds drained counts to the hourly and daily buckets containing `at`, and flushes.
    pub fn add_usage(&self, at: i64, counts: &[(String, [u64; CODES])]) -> Result<(), StoreError> {
        for (id, counts) in counts {
            let bytes = encode(&counts.to_vec(), "usage counts")?;
            self.usage.merge(usage_key(id, Bucket::Hour, usage::hour_start(at)), bytes.as_slice())?;
            self.usage.merge(usage_key(id, Bucket::Day, usage::day_start(at)), bytes)?;
        }
        self.flush()
    }

    /// A key's buckets of one kind starting at or after `since`, oldest first.
    pub fn usage_buckets(&self, id: &str, bucket: Bucket, since: i64) -> Result<Vec<(i64, [u64; CODES])>, StoreError> {
        let mut prefix = id.as_bytes().to_vec();
        prefix.push(bucket.tag());
        let mut buckets = Vec::new();
        for entry in self.usage.range(usage_key(id, bucket, since)..) {
            let (key, bytes) = entry?;
            if !key.starts_with(&prefix) {
                break;
            }
            let start = <[u8; 8]>::try_from(&key[prefix.len()..]).map(i64::from_be_bytes).unwrap_or_default();
            let mut counts = [0; CODES];
            usage::add(&mut counts, &decode::<Vec<u64>>(&bytes, || format!("usage of key {id}"))?);
            buckets.push((start, counts));
        }
        Ok(buckets)
    }

    /// Deletes hourly buckets that started before `hours_before` and daily ones before `days_before`.
    pub fn prune_usage(&self, hours_before: i64, days_before: i64) -> Result<usize, StoreError> {
        let mut pruned = 0;
        for entry in self.usage.iter() {
            let (key, _) = entry?;
            let Some((&tag, start)) = key.len().checked_sub(9).map(|at| (&key[at], &key[at + 1..])) else {
                continue;
            };
            let start = <[u8; 8]>::try_from(start).map(i64::from_be_bytes).unwrap_or_default();
            let old = (tag == b'h' && start < hours_before) || (tag == b'd' && start < days_before);
            if old {
                self.usage.remove(&key)?;
                pruned += 1;
            }
        }
        Ok(pruned)
    }

    /// The store's size on disk, in bytes.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    /// Every stored key, handed to `each` from all cores while the store is still being read (`each` runs on
    /// several threads at once); returns how many. Fails on the first record that cannot be decoded: a
    /// daemon that silently skipped a revoked key would let it verify again.
    pub fn load_keys(&self, each: impl Fn(KeyRecord) -> Result<(), StoreError> + Sync) -> Result<u64, StoreError> {
        parallel::try_for_each(self.keys.iter().map(|entry| entry.map_err(StoreError::from)), |(id, bytes)| {
            let StoredKey::V1(record) = decode(&bytes, || format!("key {}", String::from_utf8_lossy(&id)))?;
            each(record)
        })
    }

    /// How many keys the store held at its last recorded high-water mark (0 if none was recorded): a size
    /// hint for the index, read without walking the store.
    pub fn recorded_keys(&self) -> usize {
        self.recorded_high_water().ok().flatten().map_or(0, |mark| mark.keys as usize)
    }

    /// The manifest's high-water mark; `None` when there is no manifest (a new store, or one from before
    /// manifests).
    fn recorded_high_water(&self) -> Result<Option<HighWater>, StoreError> {
        let path = self.dir.join(MANIFEST);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::Io(format!("cannot read {}: {e}", path.display()))),
        };
        let recorded = HighWater::parse(&text).ok_or_else(|| StoreError::Corrupt {
            what: path.display().to_string(),
            reason: "unreadable; if the store is intact, delete the file".into(),
        })?;
        Ok(Some(recorded))
    }

    /// The stored record of key `id`, if there is one.
    pub fn record(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        let Some(bytes) = self.keys.get(id)? else { return Ok(None) };
        let StoredKey::V1(record) = decode(&bytes, || format!("key {id}"))?;
        Ok(Some(record))
    }

    /// Refuses a store that holds less than the manifest says it held (`found`): it was damaged or replaced.
    pub fn check_high_water(&self, found: HighWater) -> Result<(), StoreError> {
        let Some(recorded) = self.recorded_high_water()? else { return Ok(()) };
        let path = self.dir.join(MANIFEST);
        if found.audit_seq < recorded.audit_seq || found.keys < recorded.keys {
            return Err(StoreError::Corrupt {
                what: "key store".into(),
                reason: format!(
                    "it holds {} keys and audit entries up to #{}, but at its last sync it held {} keys and \
                     entries up to #{}: keys.sled was damaged, truncated or replaced. Restore the data directory \
                     from a backup; to accept the store as it is, delete {}",
                    found.keys,
                    found.audit_seq,
                    recorded.keys,
                    recorded.audit_seq,
                    path.display()
                ),
            });
        }
        Ok(())
    }

    /// Records `mark` in the manifest, atomically (write, fsync, rename, fsync the directory).
    pub fn record_high_water(&self, mark: HighWater) -> Result<(), StoreError> {
        let io = |e: std::io::Error| StoreError::Io(format!("writing the store manifest: {e}"));
        let partial = self.dir.join(format!("{MANIFEST}.new"));
        let mut file = std::fs::File::create(&partial).map_err(io)?;
        std::io::Write::write_all(&mut file, mark.render().as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&partial, self.dir.join(MANIFEST)).map_err(io)?;
        std::fs::File::open(&self.dir).and_then(|dir| dir.sync_all()).map_err(io)
    }

    /// Waits until every write so far is on disk.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}
