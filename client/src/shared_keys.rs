//! Decoding the key of a verify answer without rebuilding it when it has not changed.
//!
//! An app server verifies the same few keys over and over, and the daemon sends the same [`VerifiedKey`]
//! each time until the key is edited. Decoding one costs a string per field, a vector of scopes and a
//! metadata map, and dropping it as much again. This module owns a small per-thread table of the keys
//! decoded last: a key's fields are read as borrowed text out of the reply frame, compared with the entry
//! of the same key id, and when every field is equal the answer shares that entry's `Arc` instead of
//! building a copy. A key whose fields differ (it was edited) replaces its entry.
//!
//! Sharing is invisible to callers: [`VerifyAnswer::key`](keyward_protocol::VerifyAnswer::key) is an
//! `Arc` that was already shared by design. The table holds no token (a [`VerifiedKey`] never does) and at
//! most [`ENTRIES`] keys per thread.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use keyward_protocol::{Environment, Role, VerifiedKey};
use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// Keys remembered per thread; an entry is chosen by the key id's hash.
const ENTRIES: usize = 64;

thread_local! {
    static RECENT: RefCell<RecentKeys> = RefCell::new(RecentKeys::default());
}

/// Deserializes a verify answer's `key` field, sharing a remembered key when the decoded one equals it.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Arc<VerifiedKey>>, D::Error> {
    let fields = Option::<KeyFields<'de>>::deserialize(deserializer)?;
    Ok(fields.map(|fields| RECENT.with(|recent| recent.borrow_mut().share(&fields))))
}

/// The keys decoded last on this thread.
struct RecentKeys {
    entries: Box<[Option<Arc<VerifiedKey>>]>,
}

impl Default for RecentKeys {
    fn default() -> Self {
        RecentKeys { entries: vec![None; ENTRIES].into_boxed_slice() }
    }
}

impl RecentKeys {
    /// The remembered key equal to `fields`, or a new one built from them (and remembered instead).
    fn share(&mut self, fields: &KeyFields<'_>) -> Arc<VerifiedKey> {
        let entry = &mut self.entries[entry_of(&fields.id.0)];
        if let Some(key) = entry.as_ref().filter(|key| fields.equal(key)) {
            return Arc::clone(key);
        }
        let key = Arc::new(fields.to_key());
        *entry = Some(Arc::clone(&key));
        key
    }
}

/// The table entry for a key id (FNV-1a of its bytes).
fn entry_of(id: &str) -> usize {
    let hash =
        id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3));
    (hash % ENTRIES as u64) as usize
}

/// A [`VerifiedKey`] as it sits in the reply frame: text borrowed from the frame where the decoder allows.
/// The fields are in the order of [`VerifiedKey`]'s, which is the order they are encoded in.
#[derive(Deserialize)]
struct KeyFields<'a> {
    #[serde(borrow)]
    id: Text<'a>,
    #[serde(borrow)]
    workspace: Text<'a>,
    #[serde(borrow)]
    name: Text<'a>,
    env: Environment,
    #[serde(borrow)]
    scopes: Few<Text<'a>>,
    expires_at: Option<i64>,
    role: Role,
    #[serde(borrow)]
    metadata: Pairs<'a>,
    #[serde(borrow)]
    account: Option<Text<'a>>,
}

impl KeyFields<'_> {
    /// Whether `key` holds exactly these fields.
    fn equal(&self, key: &VerifiedKey) -> bool {
        let VerifiedKey { id, workspace, name, env, scopes, expires_at, role, metadata, account } = key;
        self.id.0 == *id
            && self.workspace.0 == *workspace
            && self.name.0 == *name
            && self.env == *env
            && self.scopes.len() == scopes.len()
            && self.scopes.iter().zip(scopes).all(|(ours, theirs)| ours.0 == *theirs)
            && self.expires_at == *expires_at
            && self.role == *role
            && self.metadata.0.len() == metadata.len()
            && self.metadata.0.iter().zip(metadata).all(|((k, v), (key, value))| k.0 == *key && v.0 == *value)
            && self.account.as_ref().map(|text| &*text.0) == account.as_deref()
    }

    fn to_key(&self) -> VerifiedKey {
        VerifiedKey {
            id: self.id.to_string(),
            workspace: self.workspace.to_string(),
            name: self.name.to_string(),
            env: self.env,
            scopes: self.scopes.iter().map(Text::to_string).collect(),
            expires_at: self.expires_at,
            role: self.role,
            metadata: self.metadata.0.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect(),
            account: self.account.as_ref().map(Text::to_string),
        }
    }
}

/// A string of the frame, borrowed when the decoder can lend it.
struct Text<'a>(Cow<'a, str>);

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(Text(Cow::Borrowed(text)))
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Text(Cow::Owned(text.to_owned())))
    }

    fn visit_string<E: serde::de::Error>(self, text: String) -> Result<Self::Value, E> {
        Ok(Text(Cow::Owned(text)))
    }
}

/// The metadata map's entries in encoded (sorted) order, without building a map.
struct Pairs<'a>(Few<(Text<'a>, Text<'a>)>);

impl<'de: 'a, 'a> Deserialize<'de> for Pairs<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(PairsVisitor)
    }
}

struct PairsVisitor;

impl<'de> Visitor<'de> for PairsVisitor {
    type Value = Pairs<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of strings")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut pairs = Few::default();
        while let Some(pair) = map.next_entry()? {
            pairs.push(pair);
        }
        Ok(Pairs(pairs))
    }
}

/// Items kept in place up to [`FEW`] of them, on the heap beyond: a key's scopes and metadata entries are
/// read into one of these only to be compared, and are nearly always that few, so comparing an unchanged
/// key allocates nothing.
enum Few<T> {
    Inline([Option<T>; FEW], usize),
    Heap(Vec<T>),
}

/// How many items a [`Few`] holds in place.
const FEW: usize = 8;

impl<T> Default for Few<T> {
    fn default() -> Self {
        Few::Inline(std::array::from_fn(|_| None), 0)
    }
}

impl<T> Few<T> {
    fn push(&mut self, item: T) {
        match self {
            Few::Inline(items, len) if *len < FEW => {
                items[*len] = Some(item);
                *len += 1;
            }
            Few::Inline(items, _) => {
                let mut spilled: Vec<T> = items.iter_mut().filter_map(Option::take).collect();
                spilled.push(item);
                *self = Few::Heap(spilled);
            }
            Few::Heap(items) => items.push(item),
        }
    }

    fn len(&self) -> usize {
        match self {
            Few::Inline(_, len) => *len,
            Few::Heap(items) => items.len(),
        }
    }

    fn iter(&self) -> impl Iterator<Item = &T> {
        let (inline, heap) = match self {
            Few::Inline(items, len) => (&items[..*len], &[][..]),
            Few::Heap(items) => (&[][..], items.as_slice()),
        };
        inline.iter().flatten().chain(heap)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Few<Text<'a>> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(TextsVisitor)
    }
}

struct TextsVisitor;

impl<'de> Visitor<'de> for TextsVisitor {
    type Value = Few<Text<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of strings")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut texts = Few::default();
        while let Some(text) = seq.next_element()? {
            texts.push(text);
        }
        Ok(texts)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use keyward_protocol::codec;

    use super::*;

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

    fn decode(key: &VerifiedKey) -> Arc<VerifiedKey> {
        let bytes = codec::encode(&Some(key)).unwrap();
        codec::decode::<Holder>(&bytes).unwrap().key.unwrap()
    }

    #[test]
    fn a_key_decodes_to_the_same_value() {
        let plain = key("CI deploy");
        assert_eq!(*decode(&plain), plain);
        let bare = VerifiedKey { metadata: BTreeMap::new(), scopes: vec![], account: None, ..plain.clone() };
        assert_eq!(*decode(&bare), bare);
        // More scopes and metadata entries than are kept in place.
        let many = VerifiedKey {
            scopes: (0..=FEW).map(|i| format!("read:t{i}")).collect(),
            metadata: (0..=FEW).map(|i| (format!("k{i}"), format!("v{i}"))).collect(),
            ..plain
        };
        let decoded = decode(&many);
        assert_eq!(*decoded, many);
        assert!(Arc::ptr_eq(&decoded, &decode(&many)), "a long key is shared too");
    }

    #[test]
    fn an_unchanged_key_is_shared_and_a_changed_one_is_not() {
        let first = decode(&key("CI deploy"));
        let again = decode(&key("CI deploy"));
        assert!(Arc::ptr_eq(&first, &again), "the same key decodes to the remembered Arc");
        let renamed = decode(&key("CI deploy (old)"));
        assert_eq!(renamed.name, "CI deploy (old)");
        assert!(!Arc::ptr_eq(&first, &renamed), "an edited key is built anew");
    }

    #[test]
    fn no_key_is_none() {
        let bytes = codec::encode(&None::<VerifiedKey>).unwrap();
        assert!(codec::decode::<Holder>(&bytes).unwrap().key.is_none());
    }
}
