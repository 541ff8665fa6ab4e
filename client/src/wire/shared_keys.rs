//! Decoding the key of a verify answer without rebuilding it when it has not changed.
//!
//! An app server verifies the same few keys over and over, and the daemon sends the same [`VerifiedKey`]
//! each time until the key is edited. Decoding one costs a string per field, a vector of scopes and a
//! metadata map, and dropping it as much again. An answer carries its key as the byte string of the key's
//! encoding ([`keyward_protocol::answer_key`]), so this module keeps a small per-thread table of the keys
//! decoded last with their bytes: an answer whose key bytes equal an entry's shares that entry's `Arc`
//! after one comparison of bytes, without decoding anything. Other bytes are decoded and replace the entry
//! they map to (an edited key maps to its old entry: the entry is chosen by the bytes the key's id is in).
//!
//! Sharing is invisible to callers: [`VerifyAnswer::key`](keyward_protocol::VerifyAnswer::key) is an
//! `Arc` that was already shared by design. The table holds no token (a [`VerifiedKey`] never does) and at
//! most [`ENTRIES`] keys per thread.

use std::cell::RefCell;
use std::sync::Arc;

use keyward_protocol::codec::{self, CodecError};
use keyward_protocol::{answer_key, VerifiedKey};
use serde::Deserializer;

/// Keys remembered per thread; an entry is chosen by a hash of the start of the key's bytes.
const ENTRIES: usize = 64;
/// How much of a key's bytes chooses its entry: the id comes first (a length byte and 12 characters).
const ENTRY_PREFIX: usize = 16;

thread_local! {
    static RECENT: RefCell<RecentKeys> = RefCell::new(RecentKeys::default());
}

/// Deserializes a verify answer's `key` field, sharing a remembered key when the key's bytes equal its.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Arc<VerifiedKey>>, D::Error> {
    answer_key::deserialize_with(deserializer, |encoded| RECENT.with(|recent| recent.borrow_mut().share(encoded)))
}

/// The keys decoded last on this thread.
struct RecentKeys {
    entries: Box<[Option<Remembered>]>,
}

/// A decoded key and the bytes it was decoded from.
#[derive(Clone)]
struct Remembered {
    encoded: Box<[u8]>,
    key: Arc<VerifiedKey>,
}

impl Default for RecentKeys {
    fn default() -> Self {
        RecentKeys { entries: vec![None; ENTRIES].into_boxed_slice() }
    }
}

impl RecentKeys {
    /// The remembered key whose bytes are `encoded`, or the key decoded from them (and remembered instead).
    fn share(&mut self, encoded: &[u8]) -> Result<Arc<VerifiedKey>, CodecError> {
        let entry = &mut self.entries[entry_of(encoded)];
        if let Some(remembered) = entry.as_ref().filter(|remembered| *remembered.encoded == *encoded) {
            return Ok(Arc::clone(&remembered.key));
        }
        let key = Arc::new(codec::decode::<VerifiedKey>(encoded)?);
        *entry = Some(Remembered { encoded: encoded.into(), key: Arc::clone(&key) });
        Ok(key)
    }
}

/// The table entry for a key's bytes (FNV-1a of their start, where the id is).
fn entry_of(encoded: &[u8]) -> usize {
    let start = &encoded[..encoded.len().min(ENTRY_PREFIX)];
    let hash = start
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, &byte| (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3));
    (hash % ENTRIES as u64) as usize
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use keyward_protocol::{Environment, Role};
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Serialize)]
    struct Out<'a> {
        #[serde(with = "answer_key")]
        key: &'a Option<Arc<VerifiedKey>>,
    }

    #[derive(Deserialize)]
    struct Holder {
        #[serde(deserialize_with = "deserialize")]
        key: Option<Arc<VerifiedKey>>,
    }

    fn key(name: &str) -> VerifiedKey {
        VerifiedKey {
            id: "AbCdEf012345".into(),
            workspace: "acme".into(),
            name: name.into(),
            env: Environment::Live,
            scopes: vec!["read:tables".into(), "write:forms".into()],
            expires_at: Some(1_900_000_000),
            role: Role::default(),
            metadata: BTreeMap::from([("plan".into(), "pro".into()), ("team".into(), "data".into())]),
            account: Some("acct_1".into()),
        }
    }

    fn round_trip(key: Option<VerifiedKey>) -> Option<Arc<VerifiedKey>> {
        let bytes = codec::encode(&Out { key: &key.map(Arc::new) }).unwrap();
        codec::decode::<Holder>(&bytes).unwrap().key
    }

    fn decode(key: &VerifiedKey) -> Arc<VerifiedKey> {
        round_trip(Some(key.clone())).unwrap()
    }

    #[test]
    fn a_key_decodes_to_the_same_value() {
        let plain = key("CI deploy");
        assert_eq!(*decode(&plain), plain);
        let bare = VerifiedKey { metadata: BTreeMap::new(), scopes: vec![], account: None, ..plain };
        assert_eq!(*decode(&bare), bare);
    }

    #[test]
    fn an_unchanged_key_is_shared_and_a_changed_one_is_not() {
        let first = decode(&key("CI deploy"));
        let again = decode(&key("CI deploy"));
        assert!(Arc::ptr_eq(&first, &again), "the same key decodes to the remembered Arc");
        let renamed = decode(&key("CI deploy (old)"));
        assert_eq!(renamed.name, "CI deploy (old)");
        assert!(!Arc::ptr_eq(&first, &renamed), "an edited key is built anew");
        assert!(Arc::ptr_eq(&renamed, &decode(&key("CI deploy (old)"))), "and remembered in its place");
    }

    #[test]
    fn no_key_is_none() {
        assert!(round_trip(None).is_none());
    }

    #[test]
    fn bytes_that_are_not_a_key_are_an_error() {
        let mut bytes = codec::encode(&Out { key: &Some(Arc::new(key("CI deploy"))) }).unwrap();
        bytes[2] = 0xFF; // the id's length, inside the key's bytes
        assert!(codec::decode::<Holder>(&bytes).is_err());
    }
}
