//! The payload encoding: bincode 2.0.1 through serde, standard configuration (little-endian, varint
//! integers, enums as a varint variant index followed by the variant's fields in order).
//!
//! This is the only module that names bincode. bincode 2.0.1 is pinned on purpose (3.x is an empty
//! release); swapping the encoding means replacing the functions below. Decoding is always bounded:
//! a length inside a payload that claims more memory than the limit is an error, not an allocation.
//!
//! The encoding has no framing of its own inside a payload: a struct or tuple is its fields' encodings one
//! after another, an enum its variant index then its fields, an `Option` a tag byte then the value. That
//! lets [`crate::message::encode_verify_reply_into`] splice a key encoded once into every answer about it.

use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// The payload could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(String);

/// How much memory a request payload may claim while it is decoded (collections, strings).
const REQUEST_CLAIM_LIMIT: usize = 1024 * 1024;
/// The same for replies and stored records, which may be larger (a page of keys).
const REPLY_CLAIM_LIMIT: usize = 64 * 1024 * 1024;

#[inline]
fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes `value` into a new buffer.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| CodecError(e.to_string()))
}

/// Encodes `value` at the end of `out`, returning the number of bytes written.
#[inline]
pub fn encode_into<T: Serialize>(value: &T, out: &mut Vec<u8>) -> Result<usize, CodecError> {
    bincode::serde::encode_into_std_write(value, out, config()).map_err(|e| CodecError(e.to_string()))
}

/// Decodes a request-sized payload (tight memory claim limit). Trailing bytes are an error.
pub fn decode_request<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let config = config().with_limit::<REQUEST_CLAIM_LIMIT>();
    finish(bincode::serde::decode_from_slice(bytes, config), bytes.len())
}

/// Decodes a request-sized payload in place: strings and byte strings of `T` may borrow from `bytes`
/// (tight memory claim limit). Trailing bytes are an error.
#[inline]
pub fn decode_request_borrowed<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, CodecError> {
    let config = config().with_limit::<REQUEST_CLAIM_LIMIT>();
    finish(bincode::serde::borrow_decode_from_slice(bytes, config), bytes.len())
}

/// Decodes a reply or a stored record (generous but finite claim limit). Trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let config = config().with_limit::<REPLY_CLAIM_LIMIT>();
    finish(bincode::serde::decode_from_slice(bytes, config), bytes.len())
}

/// Decodes a value from the start of `bytes`, ignoring what follows; `None` if even that fails. Lets a
/// daemon read the request id of a frame whose body it cannot decode, so the error reply can name it.
pub fn peek<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    let config = config().with_limit::<REQUEST_CLAIM_LIMIT>();
    bincode::serde::decode_from_slice(bytes, config).ok().map(|(value, _)| value)
}

#[inline]
fn finish<T>(result: Result<(T, usize), bincode::error::DecodeError>, len: usize) -> Result<T, CodecError> {
    match result {
        Ok((value, used)) if used == len => Ok(value),
        Ok((_, used)) => Err(CodecError(format!("{} unexpected bytes after the message", len - used))),
        Err(e) => Err(CodecError(e.to_string())),
    }
}
