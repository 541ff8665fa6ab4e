//! The index: a compact directory of every key, and the snapshot ([`HotKey`]) of each key in use.
//!
//! The directory holds eight bytes per key (its [`Census`], under its id) and each workspace's keys in
//! listing order, so that unknown key ids are refused, listings are paged and `stats` counts keys by
//! status without reading the store. A key's full snapshot joins the index when the key is
//! first verified or changed since startup (the caller reads its record from the store once; see
//! `Service::hot_key`), and stays: a warm verify finds it here and never touches the disk. A million keys
//! of which ten thousand are in use cost the directory (~90 bytes a key: the id map at its load factor
//! and the listing place) plus ten thousand snapshots, instead of a million snapshots of ~1.3 KiB.
//! Snapshots are never dropped, so the worst case — every key verified (or tried with a wrong secret)
//! since startup — is a snapshot per key.
//!
//! Imported tokens carry no key id, so another map finds them by their keyed lookup digest. Which keys
//! were verified since the flusher's last pass is kept in [`crate::keys::activity`].

use std::sync::Arc;

use dashmap::DashMap;
use keyward_protocol::token::KEY_ID_LEN;
use keyward_protocol::KeyId;

use crate::keys::activity::ActiveKeys;
use crate::keys::record::{Census, KeyRecord};

use crate::keys::hot::HotKey;

/// A key's place in its workspace's listing: creation time, then id (ids are 12 ASCII characters, kept
/// inline so the listing index costs no allocation per key).
type Place = (i64, RawId);

fn place(record: &KeyRecord) -> Place {
    let id = raw_id(record.id.as_str()).expect("key ids are KEY_ID_LEN ASCII characters");
    (record.created_at, id)
}

/// One workspace's keys in listing order. Keys are appended as they are indexed and sorted when a listing
/// first needs the order: new keys arrive in order anyway, and at startup a million appends cost far less
/// than a million ordered inserts.
#[derive(Debug, Default)]
struct Listing {
    places: Vec<Place>,
    sorted: bool,
}

impl Listing {
    fn add(&mut self, place: Place) {
        self.sorted = self.places.last().is_none_or(|last| *last <= place) && (self.sorted || self.places.is_empty());
        self.places.push(place);
    }

    /// Only for a key whose place changed, which its immutable workspace and creation time never let happen
    /// in practice: a linear scan is fine.
    fn remove(&mut self, place: Place) {
        self.places.retain(|&p| p != place);
    }

    fn sorted(&mut self) -> &[Place] {
        if !self.sorted {
            self.places.sort_unstable();
            self.places.dedup();
            self.sorted = true;
        }
        &self.places
    }
}

/// A key id's bytes, kept inline.
type RawId = [u8; KEY_ID_LEN];

/// `None` for text that is not the length of a key id (so no key has it).
fn raw_id(id: &str) -> Option<RawId> {
    id.as_bytes().try_into().ok()
}

/// The key id whose bytes these are (every id in the index came from a [`KeyId`]).
fn key_id(raw: &RawId) -> Option<KeyId> {
    std::str::from_utf8(raw).ok().and_then(|id| KeyId::parse(id).ok())
}

/// Hashes the index's keys: key ids are random (from the CSPRNG) and lookup digests are HMAC outputs, so a
/// multiply-and-rotate fold of their bytes spreads them as well as SipHash does, at a fraction of the cost;
/// and only operators insert keys, so nobody can choose colliding ones.
#[derive(Clone, Copy, Debug, Default)]
pub struct RandomIdHasher(u64);

impl std::hash::Hasher for RandomIdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type IdMap<K, V> = DashMap<K, V, std::hash::BuildHasherDefault<RandomIdHasher>>;

/// Every key's census by id, the snapshots of the keys in use, imported keys by lookup digest, and each
/// workspace's keys in listing order; cheap to clone.
#[derive(Clone, Default)]
pub struct Index {
    /// Every key: its packed [`Census`] under the id's 12 bytes, inline (24 bytes a key, no allocation).
    directory: Arc<IdMap<RawId, u64>>,
    /// Snapshots of the keys verified or changed since startup.
    hot: Arc<IdMap<RawId, Arc<HotKey>>>,
    imported: Arc<IdMap<[u8; 32], KeyId>>,
    /// Listing order per workspace, so a page of a workspace's keys never scans the whole index.
    workspaces: Arc<DashMap<String, Listing>>,
    /// Keys used since the flusher's last pass.
    active: Arc<ActiveKeys>,
}

/// The lookup digests of a record's imported secrets (keyward-generated secrets have none).
fn lookups(record: &KeyRecord) -> impl Iterator<Item = [u8; 32]> + '_ {
    std::iter::once(&record.secret).chain(record.previous.as_ref().map(|p| &p.secret)).filter_map(|s| s.lookup)
}

impl Index {
    /// An empty index with room for `keys` keys.
    pub fn with_capacity(keys: usize) -> Index {
        Index { directory: Arc::new(IdMap::with_capacity_and_hasher(keys, Default::default())), ..Index::default() }
    }

    /// The snapshot of key `id`, if the key is in use (see [`Index::contains`] for any key).
    pub fn get(&self, id: &str) -> Option<Arc<HotKey>> {
        self.hot.get(&raw_id(id)?).map(|entry| entry.value().clone())
    }

    /// The id of the key an imported token's lookup digest belongs to.
    pub fn find_imported(&self, lookup: &[u8; 32]) -> Option<KeyId> {
        self.imported.get(lookup).map(|entry| entry.value().clone())
    }

    /// Whether any imported key exists (lets verify skip the lookup digest for garbage when none do).
    pub fn has_imports(&self) -> bool {
        !self.imported.is_empty()
    }

    /// Whether key `id` exists.
    pub fn contains(&self, id: &str) -> bool {
        raw_id(id).is_some_and(|id| self.directory.contains_key(&id))
    }

    /// Adds a stored key to the directory without a snapshot (at startup).
    pub fn add_stored(&self, record: &KeyRecord) {
        self.enter(record, None);
    }

    /// Installs `key` as the current snapshot of its id (a new key, or the next snapshot of a key in use),
    /// and keeps the directory and the import lookups in step with it. A snapshot that arrives with a warm
    /// digest to persist (a created or regenerated key) is listed for the flusher. Returns the snapshot.
    pub fn put(&self, key: HotKey) -> Arc<HotKey> {
        let key = Arc::new(key);
        let old = self.hot.insert(place(&key.record).1, key.clone());
        self.enter(&key.record, old.as_deref().map(|old| &old.record));
        if key.has_unsaved_warm() {
            self.relist(&key);
        }
        key
    }

    /// Installs `key`, read from the store, unless a snapshot of it is in use already; returns the one in use.
    pub fn promote(&self, key: HotKey) -> Arc<HotKey> {
        let id = place(&key.record).1;
        self.hot.entry(id).or_insert_with(|| Arc::new(key)).value().clone()
    }

    /// Records `record` in the directory, the import lookups and its workspace's listing; `old` is the
    /// record it replaces, if any.
    fn enter(&self, record: &KeyRecord, old: Option<&KeyRecord>) {
        let listed = (record.workspace.as_str(), place(record));
        self.directory.insert(listed.1 .1, record.census().pack());
        let new: Vec<[u8; 32]> = lookups(record).collect();
        for gone in old.into_iter().flat_map(lookups).filter(|l| !new.contains(l)) {
            self.imported.remove(&gone);
        }
        for lookup in new {
            self.imported.insert(lookup, record.id.clone());
        }
        match old.map(|old| (old.workspace.as_str(), place(old))) {
            Some(was) if was == listed => {}
            was => {
                if let Some((workspace, at)) = was {
                    if let Some(mut listing) = self.workspaces.get_mut(workspace) {
                        listing.remove(at);
                    }
                }
                // Looked up before the entry API, which would allocate the name for every key.
                match self.workspaces.get_mut(listed.0) {
                    Some(mut listing) => listing.add(listed.1),
                    None => self.workspaces.entry(listed.0.to_owned()).or_default().add(listed.1),
                }
            }
        }
    }

    /// How many keys exist.
    pub fn len(&self) -> usize {
        self.directory.len()
    }

    pub fn is_empty(&self) -> bool {
        self.directory.is_empty()
    }

    /// Hands every key's census to `each`, in no particular order.
    pub fn census(&self, mut each: impl FnMut(Census)) {
        self.directory.iter().for_each(|entry| each(Census::unpack(*entry.value())));
    }

    /// The ids of the legacy personal keys, in no particular order.
    pub fn legacy_ids(&self) -> Vec<KeyId> {
        let legacy = self.directory.iter().filter(|entry| Census::unpack(*entry.value()).legacy);
        legacy.filter_map(|entry| key_id(entry.key())).collect()
    }

    /// Up to `limit` key ids of `workspace` in listing order, from just after `after` (a key's [`order`]),
    /// and whether more follow.
    pub fn page(&self, workspace: &str, after: Option<(i64, &str)>, limit: usize) -> (Vec<KeyId>, bool) {
        let Some(mut listing) = self.workspaces.get_mut(workspace) else {
            return (Vec::new(), false);
        };
        let places = listing.sorted();
        let start = match after {
            Some((at, id)) => {
                places.partition_point(|&place| place <= (at, raw_id(id).unwrap_or([u8::MAX; KEY_ID_LEN])))
            }
            None => 0,
        };
        let ids: Vec<KeyId> = places[start..].iter().take(limit).filter_map(|(_, id)| key_id(id)).collect();
        let more = places.len() > start + ids.len();
        (ids, more)
    }

    /// The snapshots of the keys in use, in no particular order.
    pub fn hot_keys(&self) -> Vec<Arc<HotKey>> {
        self.hot.iter().map(|entry| entry.value().clone()).collect()
    }

    /// Counts a verify of `key` answered with `code` and lists the key for the flusher.
    pub fn note_use(&self, key: &HotKey, code: keyward_protocol::VerifyCode) {
        self.active.note(&key.record.id, &key.activity, code);
    }

    /// Lists `key` for the flusher again (its values could not be saved).
    pub fn relist(&self, key: &HotKey) {
        self.active.list(&key.record.id, &key.activity);
    }

    /// The current snapshots of the keys used since the last call, each taken off the list before it is
    /// returned, so a verify from now on lists it again.
    pub fn take_active(&self) -> Vec<Arc<HotKey>> {
        let ids = self.active.take();
        let keys: Vec<Arc<HotKey>> = ids.iter().filter_map(|id| self.get(id.as_str())).collect();
        keys.iter().for_each(|key| key.activity.unlist());
        keys
    }
}

/// The listing order of a key.
pub fn order(record: &KeyRecord) -> (i64, &str) {
    (record.created_at, record.id.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::record::StoredSecret;
    use crate::keys::store::KeyCounters;
    use crate::limits::Plans;
    use crate::secrets::hasher;

    fn record(id: &str, workspace: &str, created_at: i64) -> KeyRecord {
        KeyRecord {
            id: KeyId::parse(id).unwrap(),
            env: keyward_protocol::Environment::Live,
            workspace: workspace.into(),
            name: "test key".into(),
            description: None,
            scopes: Arc::from(vec!["read:all".to_owned()]),
            role: keyward_protocol::Role::Member,
            metadata: Default::default(),
            created_at,
            expires_at: None,
            revoked_at: None,
            state: crate::keys::record::KeyState::Active,
            origin: keyward_protocol::KeyOrigin::Generated,
            account: None,
            secret: StoredSecret {
                phc: Arc::from("$argon2id$test"),
                prefix: "kw_live_".into(),
                tail: "abcd".into(),
                lookup: None,
            },
            previous: None,
            limits: Default::default(),
        }
    }

    fn snapshot(record: KeyRecord) -> HotKey {
        HotKey::new(record, KeyCounters::default(), &Plans::default())
    }

    #[test]
    fn stored_keys_are_in_the_directory_and_join_the_snapshots_once() {
        let index = Index::default();
        index.add_stored(&record("BBBBBBBBBBBB", "ws", 2));
        index.add_stored(&record("AAAAAAAAAAAA", "ws", 2));
        index.add_stored(&record("CCCCCCCCCCCC", "ws", 1));
        assert!(index.contains("AAAAAAAAAAAA") && !index.contains("DDDDDDDDDDDD") && !index.contains("short"));
        assert!(index.get("AAAAAAAAAAAA").is_none(), "no snapshot until the key is used");
        let (ids, more) = index.page("ws", None, 2);
        assert_eq!(
            (ids.iter().map(KeyId::as_str).collect::<Vec<_>>(), more),
            (vec!["CCCCCCCCCCCC", "AAAAAAAAAAAA"], true)
        );
        let (ids, more) = index.page("ws", Some((2, "AAAAAAAAAAAA")), 2);
        assert_eq!((ids.iter().map(KeyId::as_str).collect::<Vec<_>>(), more), (vec!["BBBBBBBBBBBB"], false));

        // The first verify's snapshot joins; a second one read meanwhile does not replace it.
        let first = index.promote(snapshot(record("AAAAAAAAAAAA", "ws", 2)));
        let second = index.promote(snapshot(record("AAAAAAAAAAAA", "ws", 2)));
        assert!(Arc::ptr_eq(&first, &second));
        // A change's snapshot replaces it, and a verify's stale read arriving later does not undo that.
        let mut revoked = record("AAAAAAAAAAAA", "ws", 2);
        revoked.revoked_at = Some(3);
        index.put(first.succeed(revoked, &Plans::default()));
        let stale = index.promote(snapshot(record("AAAAAAAAAAAA", "ws", 2)));
        assert_eq!(stale.record.revoked_at, Some(3));
        assert_eq!(index.get("AAAAAAAAAAAA").unwrap().record.revoked_at, Some(3));

        let mut statuses = Vec::new();
        index.census(|census| statuses.push(census.status(10, None)));
        statuses.sort_by_key(|status| status.as_str());
        use keyward_protocol::KeyStatus::{Active, Revoked};
        assert_eq!(statuses, [Active, Active, Revoked]);
        assert_eq!(index.len(), 3);
    }

    #[test]
    fn debug_prints_no_hash_and_no_digest() {
        let digest = [0xAB; 32];
        let fingerprint = hasher::fingerprint("$argon2id$test");
        let counters = KeyCounters { warm: vec![(fingerprint, digest)], ..KeyCounters::default() };
        let key = HotKey::new(record("AAAAAAAAAAAA", "ws", 1), counters.clone(), &Plans::default());
        assert!(key.current.warm.get().is_some(), "the persisted digest was restored");
        for printed in [format!("{key:?}"), format!("{counters:?}")] {
            assert!(!printed.contains("argon2id"), "{printed}");
            assert!(!printed.contains("171") && !printed.to_lowercase().contains("abab"), "{printed}");
        }
    }

    #[test]
    fn a_listing_sorts_what_arrived_out_of_order_when_asked() {
        let place = |at: i64, id: &str| (at, raw_id(id).unwrap());
        let mut listing = Listing::default();
        listing.add(place(1, "AAAAAAAAAAAA"));
        listing.add(place(2, "AAAAAAAAAAAA"));
        assert!(listing.sorted, "appends in order keep it sorted");
        listing.add(place(1, "BBBBBBBBBBBB"));
        assert!(!listing.sorted);
        let order = [place(1, "AAAAAAAAAAAA"), place(1, "BBBBBBBBBBBB"), place(2, "AAAAAAAAAAAA")];
        assert_eq!(listing.sorted(), order);
        listing.remove(place(1, "BBBBBBBBBBBB"));
        assert_eq!(listing.sorted(), [order[0], order[2]]);
    }
}
