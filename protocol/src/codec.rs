//! The payload encoding: bincode 2.0.1 through serde, standard configuration (little-endian, varint
//! integers, enums as a varint variant index followed by the variant's fields in order).
//!
//! This is the only module that names bincode. bincode 2.0.1 is pinned on purpose (3.x is an empty
//! release); swapping the encoding means replacing the functions below. Decoding is always bounded:
//! a length inside a payload that claims more memory than the limit is an error, not an allocation.
//!
//! The encoding has no framing of its own inside a payload: a struct or tuple is its fields' encodings one
//! after another, an enum its variant index then its fields, an `Option` a tag byte then the value. That
//! lets [`encode_verify_reply_into`] splice a key encoded once into every answer about it.

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::message::VerifyAnswer;
use crate::verify_ref::VerifyRequestRef;

/// The payload could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(String);

/// How much memory a request payload may claim while it is decoded (collections, strings).
const REQUEST_CLAIM_LIMIT: usize = 1024 * 1024;
/// The same for replies and stored records, which may be larger (a page of keys).
const REPLY_CLAIM_LIMIT: usize = 64 * 1024 * 1024;

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes `value` into a new buffer.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| CodecError(e.to_string()))
}

/// Encodes `value` at the end of `out`, returning the number of bytes written.
pub fn encode_into<T: Serialize>(value: &T, out: &mut Vec<u8>) -> Result<usize, CodecError> {
    bincode::serde::encode_into_std_write(value, out, config()).map_err(|e| CodecError(e.to_string()))
}

/// The variant index of [`Reply::Verify`](crate::Reply::Verify).
const VERIFY_REPLY: u32 = 1;

/// Encodes the payload of `ReplyFrame { id, reply: Reply::Verify(answer) }` at the end of `out`, with the
/// answer's key replaced by `key`: a [`VerifiedKey`](crate::VerifiedKey)'s wire form made once by
/// [`answer_key::wire_form`](crate::answer_key::wire_form), so that a key answered many times is not
/// encoded each time (`None`: no key). The bytes are exactly those of encoding the frame with `answer.key` set to that key. Returns the
/// bytes written.
pub fn encode_verify_reply_into(
    out: &mut Vec<u8>,
    id: u64,
    answer: &VerifyAnswer,
    key: Option<&[u8]>,
) -> Result<usize, CodecError> {
    let VerifyAnswer { code, key: _, retry_after_ms, ratelimit, credits } = answer;
    let start = out.len();
    // The frame's id, the reply's variant, the answer's code, and the key's `Option` tag.
    encode_into(&(id, VERIFY_REPLY, code, u8::from(key.is_some())), out)?;
    out.extend_from_slice(key.unwrap_or_default());
    encode_into(&(retry_after_ms, ratelimit, credits), out)?;
    Ok(out.len() - start)
}

/// Decodes a request-sized payload (tight memory claim limit). Trailing bytes are an error.
pub fn decode_request<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let config = config().with_limit::<REQUEST_CLAIM_LIMIT>();
    finish(bincode::serde::decode_from_slice(bytes, config), bytes.len())
}

/// A request frame as far as [`decode_verify_request`] reads it: the id, then the request's variant index,
/// which decodes here only for the variants [`Request`](crate::Request) starts with, `Ping` (0) and
/// `Verify` (1).
#[derive(Deserialize)]
struct VerifyFrame<'a> {
    id: u64,
    #[serde(borrow)]
    request: FirstRequests<'a>,
}

#[derive(Deserialize)]
enum FirstRequests<'a> {
    Ping,
    Verify(#[serde(borrow)] VerifyRequestRef<'a>),
}

/// Decodes the payload of a `RequestFrame` carrying a `Request::Verify` in place: its id and the request,
/// borrowing the token and the names from `bytes`. `None` for any other payload — another request, or
/// bytes that do not decode — which [`decode_request`] then reads (and reports) as before.
pub fn decode_verify_request(bytes: &[u8]) -> Option<(u64, VerifyRequestRef<'_>)> {
    let config = config().with_limit::<REQUEST_CLAIM_LIMIT>();
    match finish(bincode::serde::borrow_decode_from_slice(bytes, config), bytes.len()) {
        Ok(VerifyFrame { id, request: FirstRequests::Verify(request) }) => Some((id, request)),
        _ => None,
    }
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

fn finish<T>(result: Result<(T, usize), bincode::error::DecodeError>, len: usize) -> Result<T, CodecError> {
    match result {
        Ok((value, used)) if used == len => Ok(value),
        Ok((_, used)) => Err(CodecError(format!("{} unexpected bytes after the message", len - used))),
        Err(e) => Err(CodecError(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{
        RateLimitStatus, Reply, ReplyFrame, Request, RequestFrame, Secret, VerifiedKey, VerifyCode, VerifyRequest,
    };

    fn key() -> VerifiedKey {
        crate::message::sample_key()
    }

    fn limit(policy: &str) -> RateLimitStatus {
        RateLimitStatus {
            policy: policy.into(),
            limit: 1000,
            remaining: 999,
            reset_at_ms: 1_700_000_000_000,
            window_seconds: 60,
        }
    }

    #[test]
    fn a_verify_reply_with_a_key_encoded_once_is_the_frame_encoded_whole() {
        let encoded_key = crate::answer_key::wire_form(&key()).unwrap();
        let answers = [
            VerifyAnswer { key: Some(Arc::new(key())), ..VerifyAnswer::refused(VerifyCode::Valid) },
            VerifyAnswer {
                code: VerifyCode::RateLimited,
                key: Some(Arc::new(key())),
                retry_after_ms: Some(1_500),
                ratelimit: vec![limit("paid"), limit("burst")],
                credits: Some(u64::MAX),
            },
            VerifyAnswer {
                key: Some(Arc::new(key())),
                ratelimit: vec![limit("free")],
                credits: Some(0),
                ..VerifyAnswer::refused(VerifyCode::InsufficientScope)
            },
            VerifyAnswer::refused(VerifyCode::NotFound),
        ];
        for (n, answer) in answers.into_iter().enumerate() {
            let id = 300 * n as u64 + 7;
            let mut spliced = vec![9, 9];
            let key = answer.key.is_some().then_some(&encoded_key[..]);
            let written = encode_verify_reply_into(&mut spliced, id, &answer, key).unwrap();
            let whole = encode(&ReplyFrame { id, reply: Reply::Verify(answer) }).unwrap();
            assert_eq!(spliced[2..], whole, "answer {n}");
            assert_eq!(written, whole.len());
        }
    }

    #[test]
    fn a_verify_frame_decodes_in_place_to_the_request_it_encodes() {
        let requests = [
            VerifyRequest::new(Secret::new("kw_live_token")),
            crate::message::sample_verify_request(),
            VerifyRequest::default(),
        ];
        for (n, request) in requests.into_iter().enumerate() {
            let id = u64::MAX - n as u64;
            let bytes = encode(&RequestFrame { id, request: Request::Verify(request.clone()) }).unwrap();
            let (read_id, read) = decode_verify_request(&bytes).unwrap_or_else(|| panic!("request {n}"));
            assert_eq!((read_id, read), (id, request.as_borrowed()), "request {n}");
        }
    }

    #[test]
    fn any_other_payload_is_left_to_the_whole_decoder() {
        let verify =
            encode(&RequestFrame { id: 1, request: Request::Verify(VerifyRequest::new(Secret::new("t"))) }).unwrap();
        let others = [
            encode(&RequestFrame { id: 1, request: Request::Ping }).unwrap(),
            encode(&RequestFrame { id: 1, request: Request::Stats }).unwrap(),
            encode(&RequestFrame { id: 1, request: Request::Get { id: "k".into() } }).unwrap(),
            [&verify[..], &[0]].concat(),
            verify[..verify.len() - 1].to_vec(),
            vec![0xff; 12],
            Vec::new(),
        ];
        for (n, payload) in others.iter().enumerate() {
            assert!(decode_verify_request(payload).is_none(), "payload {n}");
        }
    }
}
