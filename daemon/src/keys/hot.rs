//! [`HotKey`]: the snapshot of a key in use — its record, the parts a verify reads decoded once (scopes,
//! limits, the answer's bytes), and the cells that change without a management call.
//!
//! Each snapshot is immutable, behind an `Arc`. A management change builds a new
//! snapshot and swaps it in *before* the change is acknowledged, so the next verify sees it; a verify holds
//! the map's shard lock only long enough to clone the `Arc`. What changes without a management call — the
//! warm digests and the last-used time — lives in shared cells carried from one snapshot to the next.
//!
//! Rate-limit timestamps, credit balances and usage counters are such cells too. The main limit's state
//! is carried whatever plan the key moves to, and a named limit's by name; when a limit's rate changes, its
//! outstanding debt is converted request for request ([`Gcra::rescale`]), so an edit changes the limit but
//! not what was already spent.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use dashmap::DashMap;
use keyward_protocol::{answer_key, RatePolicy, ScopeSet, VerifiedKey, DEFAULT_PLAN_RATE};

use crate::host::clock::mono_nanos;
use crate::keys::activity::Activity;
use crate::keys::record::{KeyRecord, StoredSecret};
use crate::keys::store::{KeyCounters, WarmDigest};
use crate::limits::credits::CreditCell;
use crate::limits::lease::LeaseCell;
use crate::limits::limiter::Gcra;
use crate::limits::Plans;
use crate::secrets::hasher::{self, Digest};

/// A secret's warm digest: empty until a verify's secret passes Argon2 against this hash (or until the
/// digest persisted by an earlier run is reinstalled), plus whether the store holds it.
#[derive(Clone, Debug, Default)]
pub struct WarmCell(Arc<WarmState>);

#[derive(Debug, Default)]
struct WarmState {
    digest: OnceLock<Digest>,
    saved: AtomicBool,
}

impl WarmCell {
    pub fn get(&self) -> Option<&Digest> {
        self.0.digest.get()
    }

    pub fn set(&self, digest: Digest) {
        let _ = self.0.digest.set(digest);
    }

    /// The digest, if it is set and the store does not hold it yet.
    pub fn unsaved(&self) -> Option<Digest> {
        self.get().copied().filter(|_| !self.0.saved.load(Ordering::Acquire))
    }

    pub fn mark_saved(&self) {
        self.0.saved.store(true, Ordering::Release);
    }
}

/// One secret of a key as verify sees it: its hash and its warm cell. Its `Debug` prints neither.
pub struct HotSecret {
    pub phc: Arc<str>,
    pub warm: WarmCell,
    /// Whether its warm digest may be persisted: only keyward-generated secrets, whose 190 random bits make
    /// a keyed digest as safe to store as their Argon2 hash. Imported tokens, of unknown strength, re-verify
    /// through Argon2 after a restart.
    pub persistable: bool,
}

impl fmt::Debug for HotSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let warm = self.warm.get().is_some();
        write!(f, "HotSecret {{ phc: [redacted], warm: {warm}, persistable: {} }}", self.persistable)
    }
}

/// One rate limit of a key: its name in answers, its parameters, and its timestamp cell.
#[derive(Debug)]
pub struct HotLimit {
    pub policy: Arc<str>,
    pub gcra: Gcra,
    pub tat: Arc<AtomicU64>,
    /// Fleet mode, a plan shared by the fleet: the leases that decide it (the timestamp serves the fallback).
    pub lease: Option<Arc<LeaseCell>>,
}

/// One key as the verify path needs it.
#[derive(Debug)]
pub struct HotKey {
    pub record: KeyRecord,
    /// The record's scopes, parsed once and shared by every key with the same list.
    pub scopes: Arc<ScopeSet>,
    pub current: HotSecret,
    /// The previous secret during a regenerate's grace window (check `record.previous.until`).
    pub previous: Option<HotSecret>,
    /// Last-used time and usage counts, shared by every snapshot of the key.
    pub activity: Arc<Activity>,
    /// The key's plan or custom rate; `None` for an unlimited key.
    pub main_limit: Option<HotLimit>,
    /// Named limits, counted only when a verify names them.
    pub named_limits: Vec<HotLimit>,
    pub credits: Option<Arc<CreditCell>>,
    /// Fleet mode: the credits are escrowed from the engine ([`CreditCell::escrowed`]).
    pub escrow: bool,
    /// What a verify answers about the key, built on its first verify and shared by every answer of this
    /// snapshot.
    answer_key: OnceLock<Arc<AnswerKey>>,
}

/// What verify answers about a key, made once per snapshot: the key for the protocol's answer, and its
/// encoding, which the connection splices into every reply frame about the key (so answering a key reads
/// one buffer, not its strings one by one).
#[derive(Debug)]
pub struct AnswerKey {
    pub key: Arc<VerifiedKey>,
    pub encoded: Box<[u8]>,
}

impl AnswerKey {
    fn of(key: VerifiedKey) -> AnswerKey {
        let encoded = answer_key::wire_form(&key).expect("a key's answer always encodes: strings, integers, a map");
        AnswerKey { key: Arc::new(key), encoded: encoded.into_boxed_slice() }
    }
}

/// Where the main limit's state is carried between snapshots (named limits are lowercase words, so this
/// cannot clash).
const MAIN_LIMIT: &str = "";

/// The name a key's main limit carries in answers.
fn policy_name(policy: &RatePolicy) -> Option<&str> {
    match policy {
        RatePolicy::Plan(name) => Some(name),
        RatePolicy::Custom(_) => Some("custom"),
        RatePolicy::Unlimited => None,
    }
}

impl HotKey {
    /// A snapshot of a record loaded from storage (with its stored counters) or newly created.
    pub fn new(record: KeyRecord, counters: KeyCounters, plans: &Plans) -> HotKey {
        let warm = restored_warm_cells(&record, &counters.warm);
        let credits = match (counters.credits, record.limits.credits) {
            _ if counters.escrow => record.limits.credits.map(|_| Arc::new(CreditCell::escrowed())),
            (Some((balance, refilled_at)), _) => Some(Arc::new(CreditCell::new(balance, refilled_at))),
            (None, Some(balance)) => Some(Arc::new(CreditCell::new(balance, record.created_at))),
            (None, None) => None,
        };
        let activity = Arc::new(Activity::new(counters.last_used));
        let cells = Cells { warm, activity, tats: HashMap::new(), credits, escrow: counters.escrow, lease: None };
        HotKey::build(record, cells, plans)
    }

    /// The next snapshot of this key, keeping every live cell: a secret whose hash is unchanged keeps its
    /// warm digest (so a regenerate with a grace window leaves the old token as warm as it was), a limit
    /// keeps its timestamp by name, and the counters carry over.
    pub fn succeed(&self, record: KeyRecord, plans: &Plans) -> HotKey {
        let warm =
            std::iter::once(&self.current).chain(&self.previous).map(|s| (s.phc.clone(), s.warm.clone())).collect();
        let main = self.main_limit.iter().map(|l| (Arc::from(MAIN_LIMIT), (l.gcra, l.tat.clone())));
        let named = self.named_limits.iter().map(|l| (l.policy.clone(), (l.gcra, l.tat.clone())));
        let tats = main.chain(named).collect();
        let lease = self.main_limit.as_ref().and_then(|l| l.lease.clone());
        let credits = match (&self.credits, record.limits.credits) {
            (Some(cell), _) => Some(cell.clone()),
            (None, Some(_)) if self.escrow => Some(Arc::new(CreditCell::escrowed())),
            (None, Some(balance)) => Some(Arc::new(CreditCell::new(balance, record.created_at))),
            (None, None) => None,
        };
        let cells = Cells { warm, activity: self.activity.clone(), tats, credits, escrow: self.escrow, lease };
        HotKey::build(record, cells, plans)
    }

    fn build(mut record: KeyRecord, cells: Cells, plans: &Plans) -> HotKey {
        let hot = |secret: &StoredSecret| {
            let warm =
                cells.warm.iter().find(|(phc, _)| **phc == *secret.phc).map(|(_, w)| w.clone()).unwrap_or_default();
            HotSecret { phc: secret.phc.clone(), warm, persistable: secret.lookup.is_none() }
        };
        let now = mono_nanos();
        let limit = |slot: &str, policy: &str, rate| {
            let gcra = Gcra::new(rate);
            let tat = match cells.tats.get(slot) {
                Some((old, tat)) if *old == gcra => tat.clone(),
                Some((old, tat)) => Arc::new(AtomicU64::new(gcra.rescale(old, tat.load(Ordering::Acquire), now))),
                None => Arc::default(),
            };
            HotLimit { policy: shared_name(policy), gcra, tat, lease: None }
        };
        let main_rate = match &record.limits.rate {
            // A plan dropped from the configuration falls back to the default plan's rate, never to none.
            RatePolicy::Plan(name) => Some(plans.get(name).copied().unwrap_or(DEFAULT_PLAN_RATE)),
            RatePolicy::Custom(rate) => Some(*rate),
            RatePolicy::Unlimited => None,
        };
        let mut main_limit =
            policy_name(&record.limits.rate).zip(main_rate).map(|(name, rate)| limit(MAIN_LIMIT, name, rate));
        if let (Some(main), RatePolicy::Plan(plan)) = (&mut main_limit, &record.limits.rate) {
            if plans.is_shared(plan) {
                let rate = main_rate.expect("a plan has a rate");
                let kept = cells.lease.filter(|lease| lease.rate() == rate);
                main.lease = Some(kept.unwrap_or_else(|| Arc::new(LeaseCell::new(rate))));
            }
        }
        let named_limits = record.limits.named.iter().map(|(name, rate)| limit(name, name, *rate)).collect();
        let current = hot(&record.secret);
        let previous = record.previous.as_ref().map(|p| hot(&p.secret));
        let (list, scopes) = shared_scopes(&record.scopes);
        record.scopes = list;
        HotKey {
            record,
            scopes,
            current,
            previous,
            activity: cells.activity,
            main_limit,
            named_limits,
            credits: cells.credits,
            escrow: cells.escrow,
            answer_key: OnceLock::new(),
        }
    }

    /// What a verify answers about the key.
    pub fn answer_key(&self) -> Arc<AnswerKey> {
        self.answer_key.get_or_init(|| Arc::new(AnswerKey::of(self.record.verified()))).clone()
    }

    /// The last successful verify, if any.
    pub fn last_used_at(&self) -> Option<i64> {
        self.activity.last_used_at()
    }

    /// The secrets whose warm digests may be persisted: keyward-generated ones.
    pub fn persistable_secrets(&self) -> impl Iterator<Item = &HotSecret> {
        std::iter::once(&self.current).chain(&self.previous).filter(|secret| secret.persistable)
    }

    /// Whether a persistable secret is warm and its digest not stored yet.
    pub fn has_unsaved_warm(&self) -> bool {
        self.persistable_secrets().any(|secret| secret.warm.unsaved().is_some())
    }
}

/// A scope list and its parsed form, one of each per distinct list: a million keys hold a handful of
/// distinct lists, so each is parsed and allocated once and the records share it. Entries are never
/// dropped; there is at most one per distinct list ever indexed, and keys (which hold them) never leave the
/// index either.
fn shared_scopes(scopes: &[String]) -> (Arc<[String]>, Arc<ScopeSet>) {
    static SHARED: OnceLock<DashMap<Arc<[String]>, Arc<ScopeSet>>> = OnceLock::new();
    let shared = SHARED.get_or_init(DashMap::default);
    if let Some(entry) = shared.get(scopes) {
        return (entry.key().clone(), entry.value().clone());
    }
    let set = Arc::new(ScopeSet::parse(scopes).unwrap_or_default());
    let entry = shared.entry(scopes.into()).or_insert(set);
    (entry.key().clone(), entry.value().clone())
}

/// A limit's name in answers (a plan name, `custom`, or a named limit), one allocation per distinct name.
fn shared_name(name: &str) -> Arc<str> {
    static SHARED: OnceLock<DashMap<Box<str>, Arc<str>>> = OnceLock::new();
    let shared = SHARED.get_or_init(DashMap::default);
    if let Some(name) = shared.get(name) {
        return name.clone();
    }
    shared.entry(name.into()).or_insert_with(|| Arc::from(name)).clone()
}

/// Warm cells for a loaded record's secrets from the digests an earlier run persisted, each reinstalled
/// only on the very hash it was verified against (a regenerate since then leaves the new secret cold).
fn restored_warm_cells(record: &KeyRecord, persisted: &[WarmDigest]) -> Vec<(Arc<str>, WarmCell)> {
    std::iter::once(&record.secret)
        .chain(record.previous.as_ref().map(|p| &p.secret))
        .filter(|secret| secret.lookup.is_none())
        .filter_map(|secret| {
            let fingerprint = hasher::fingerprint(&secret.phc);
            let (_, digest) = persisted.iter().find(|(print, _)| *print == fingerprint)?;
            let cell = WarmCell::default();
            cell.set(Digest::from_bytes(*digest));
            cell.mark_saved();
            Some((secret.phc.clone(), cell))
        })
        .collect()
}

/// The cells one snapshot hands to the next.
struct Cells {
    warm: Vec<(Arc<str>, WarmCell)>,
    activity: Arc<Activity>,
    /// Limit parameters and timestamps: the main limit under [`MAIN_LIMIT`], named limits by name.
    tats: HashMap<Arc<str>, (Gcra, Arc<AtomicU64>)>,
    credits: Option<Arc<CreditCell>>,
    escrow: bool,
    /// The main limit's leases, kept while it stays on the same shared plan and rate.
    lease: Option<Arc<LeaseCell>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_scope_lists_and_limit_names_share_one_allocation() {
        let list = |scopes: &[&str]| scopes.iter().map(|s| s.to_string()).collect::<Vec<String>>();
        let ((list_a, a), (list_b, b)) = (
            shared_scopes(&list(&["read:tables", "write:forms"])),
            shared_scopes(&list(&["read:tables", "write:forms"])),
        );
        assert!(Arc::ptr_eq(&a, &b) && Arc::ptr_eq(&list_a, &list_b));
        assert_eq!(&*list_a, ["read:tables", "write:forms"]);
        assert_eq!(a.grants("read:forms"), Ok(true), "write implies read");
        assert_eq!(a.grants("write:tables"), Ok(false));
        let (_, other) = shared_scopes(&list(&["admin"]));
        assert!(!Arc::ptr_eq(&a, &other) && other.grants("write:tables") == Ok(true));
        assert!(Arc::ptr_eq(&shared_name("free"), &shared_name("free")));
        assert_eq!(&*shared_name("paid"), "paid");
    }
}
