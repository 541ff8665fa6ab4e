//! The wire form of the key in a verify answer: the key's own encoding, carried as a length-prefixed byte
//! string inside the answer.
//!
//! An app server verifies the same keys over and over, and the daemon sends the same key each time until
//! it is edited. Carried as one byte string, an unchanged key can be recognised by comparing bytes (the
//! async client remembers the keys it decoded last and shares them), and the daemon can encode a key once
//! and copy it into every answer about it ([`wire_form`], [`crate::message::encode_verify_reply_into`]).
//! [`VerifyAnswer::key`](crate::VerifyAnswer::key) uses [`serialize`] and [`deserialize`] through
//! `#[serde(with)]`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::de::Visitor;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec::{self, CodecError};
use crate::lifecycle::Role;
use crate::token::Environment;

/// What an app server learns about a key whose secret was right.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedKey {
    pub id: String,
    pub workspace: String,
    pub name: String,
    pub env: Environment,
    /// Canonical scope strings.
    pub scopes: Vec<String>,
    pub expires_at: Option<i64>,
    pub role: Role,
    /// The key's metadata, so the app server needs no second lookup.
    pub metadata: BTreeMap<String, String>,
    /// For a legacy personal key: the account it belongs to (it may act on that account's workspaces).
    pub account: Option<String>,
}

/// What a present key's bytes in an answer are (after the `Option` tag): the length-prefixed encoding of
/// `key`.
pub fn wire_form(key: &VerifiedKey) -> Result<Vec<u8>, CodecError> {
    codec::encode(&Blob(&codec::encode(key)?))
}

/// Serializes an answer's key as the byte string of its encoding.
pub fn serialize<S: Serializer>(key: &Option<Arc<VerifiedKey>>, serializer: S) -> Result<S::Ok, S::Error> {
    match key {
        Some(key) => {
            let encoded = codec::encode(&**key).map_err(S::Error::custom)?;
            serializer.serialize_some(&Blob(&encoded))
        }
        None => serializer.serialize_none(),
    }
}

/// Deserializes an answer's key from the byte string of its encoding.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Arc<VerifiedKey>>, D::Error> {
    deserialize_with(deserializer, |encoded| codec::decode(encoded).map(Arc::new))
}

/// Deserializes an answer's key, handing the bytes of its encoding, when there is a key, to `decode`.
pub fn deserialize_with<'de, D, F>(deserializer: D, decode: F) -> Result<Option<Arc<VerifiedKey>>, D::Error>
where
    D: Deserializer<'de>,
    F: FnOnce(&[u8]) -> Result<Arc<VerifiedKey>, CodecError>,
{
    deserializer.deserialize_option(KeyVisitor(decode))
}

/// A byte string, serialized as one (a length, then the bytes).
struct Blob<'a>(&'a [u8]);

impl Serialize for Blob<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

struct KeyVisitor<F>(F);

impl<'de, F> Visitor<'de> for KeyVisitor<F>
where
    F: FnOnce(&[u8]) -> Result<Arc<VerifiedKey>, CodecError>,
{
    type Value = Option<Arc<VerifiedKey>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an optional key, as the bytes of its encoding")
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_bytes(BytesVisitor(self.0)).map(Some)
    }
}

struct BytesVisitor<F>(F);

impl<F> Visitor<'_> for BytesVisitor<F>
where
    F: FnOnce(&[u8]) -> Result<Arc<VerifiedKey>, CodecError>,
{
    type Value = Arc<VerifiedKey>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the bytes of a key's encoding")
    }

    fn visit_bytes<E: serde::de::Error>(self, encoded: &[u8]) -> Result<Self::Value, E> {
        (self.0)(encoded).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Holder {
        #[serde(with = "self")]
        key: Option<Arc<VerifiedKey>>,
    }

    fn key() -> VerifiedKey {
        crate::message::sample_key()
    }

    #[test]
    fn a_key_travels_as_the_byte_string_of_its_encoding() {
        let holder = Holder { key: Some(Arc::new(key())) };
        let bytes = codec::encode(&holder).unwrap();
        let inner = codec::encode(&key()).unwrap();
        assert_eq!(bytes[0], 1, "the Option tag");
        assert_eq!(bytes[1..], wire_form(&key()).unwrap());
        assert_eq!(usize::from(bytes[1]), inner.len(), "a one-byte length for a short key");
        assert_eq!(bytes[2..], inner);
        assert_eq!(codec::decode::<Holder>(&bytes).unwrap(), holder);
        let none = Holder { key: None };
        assert_eq!(codec::decode::<Holder>(&codec::encode(&none).unwrap()).unwrap(), none);
    }

    #[test]
    fn a_key_whose_bytes_do_not_decode_is_an_error() {
        let mut bytes = codec::encode(&Holder { key: Some(Arc::new(key())) }).unwrap();
        bytes[2] = 0xFF; // the id's length, the first byte inside the key's bytes, now claims more than there is
        assert!(codec::decode::<Holder>(&bytes).is_err());
    }
}
