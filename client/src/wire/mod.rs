//! Bytes ↔ meaning, the client's side: framing the handshake and requests, unframing the daemon's
//! answers.
//!
//! Both clients go through these functions, so there is one place where a request becomes bytes and a
//! reply frame becomes an [`Answer`]. The framing and the encoding themselves belong to `keyward_protocol`
//! ([`frame`], [`codec`]); this module only applies them. A request frame is built in a single buffer the
//! caller provides (header placeholder, payload encoded after it, length patched in); the async client
//! reuses those buffers ([`FramePool`]). Requests are encoded from references ([`RequestFrame`]'s fields, a
//! verify as the `Verify` variant of [`Request`]), so building a frame moves nothing; replies decode into
//! an [`Answer`].
//!
//! This module says nothing about which answer a request calls for: that is a fact about the request,
//! and lives in [`crate::requests`], which uses this module and is never used by it.
//!
//! [`RequestFrame`]: keyward_protocol::RequestFrame
//!
//! # Layout
//! - `answer`: [`Answer`], what a reply decodes to (a verify answer inline, anything else boxed).
//! - `shared_keys`: decoding a verify answer's key without rebuilding one that has not changed
//!   (recognised by its bytes).
//! - `frames`: [`FramePool`], the request frame buffers the async client reuses.

mod answer;
mod frames;
mod shared_keys;

pub(crate) use answer::Answer;
pub(crate) use frames::FramePool;

use keyward_protocol::frame::{self, HEADER_LEN};
use keyward_protocol::{codec, Hello, HelloReply, Request, VerifyRequest, PROTOCOL_VERSION};
use serde::{Serialize, Serializer};

use crate::error::ClientError;
use answer::AnswerFrame;

/// Room for a typical request (a verify is about a hundred bytes), so encoding it never reallocates.
const REQUEST_CAPACITY: usize = 256;

/// The handshake frame, header included.
pub(crate) fn hello_frame() -> Result<Vec<u8>, ClientError> {
    let payload = codec::encode(&Hello { version: PROTOCOL_VERSION })?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    frame::put_frame(&mut out, &payload);
    Ok(out)
}

/// Checks the daemon's answer to the handshake.
pub(crate) fn check_hello_reply(payload: &[u8]) -> Result<(), ClientError> {
    match codec::decode::<HelloReply>(payload)? {
        HelloReply::Accepted { .. } => Ok(()),
        HelloReply::Rejected(error) => Err(ClientError::Rejected(error)),
    }
}

/// Whether a failed write of the hello may still have a refusal waiting to be read. A daemon that refuses
/// the peer (its uid or groups are not allowed) writes its rejection at once, without reading the hello,
/// and closes; a hello written after that meets a closed socket, `EPIPE` or `ECONNRESET`, while the
/// rejection sits unread in the receive buffer. Reporting the broken pipe would hide the daemon's reason.
pub(crate) fn may_hold_rejection(error: &std::io::Error) -> bool {
    matches!(error.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset)
}

/// The frame for `request` under `id`, header included, in `out` (emptied first).
pub(crate) fn request_frame(id: u64, request: &Request, out: Vec<u8>) -> Result<Vec<u8>, ClientError> {
    frame_of(&FrameRef { id, request }, out)
}

/// The frame for a verify under `id`: the same bytes as [`request_frame`] of `Request::Verify(request)`.
pub(crate) fn verify_frame(id: u64, request: &VerifyRequest, out: Vec<u8>) -> Result<Vec<u8>, ClientError> {
    frame_of(&FrameRef { id, request: &VerifyRef(request) }, out)
}

fn frame_of(frame: &impl Serialize, mut out: Vec<u8>) -> Result<Vec<u8>, ClientError> {
    out.clear();
    out.reserve(REQUEST_CAPACITY);
    out.extend_from_slice(&[0; HEADER_LEN]);
    let len = codec::encode_into(frame, &mut out)?;
    let len = u32::try_from(len).expect("a request is far below 4 GiB");
    out[..HEADER_LEN].copy_from_slice(&len.to_be_bytes());
    Ok(out)
}

/// [`RequestFrame`](keyward_protocol::RequestFrame) over a borrowed request: the same fields in the same
/// order, so the same bytes.
#[derive(Serialize)]
struct FrameRef<'a, R: Serialize> {
    id: u64,
    request: &'a R,
}

/// `Request::Verify` over a borrowed [`VerifyRequest`].
struct VerifyRef<'a>(&'a VerifyRequest);

impl Serialize for VerifyRef<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // `Verify` is the second variant of `Request`; the test below checks the bytes against the enum's.
        serializer.serialize_newtype_variant("Request", 1, "Verify", self.0)
    }
}

/// Decodes one reply frame's payload into the id it answers and the answer.
pub(crate) fn decode_reply(payload: &[u8]) -> Result<(u64, Answer), ClientError> {
    let frame: AnswerFrame = codec::decode(payload)?;
    Ok((frame.id, frame.into_answer()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyward_protocol::{RequestFrame, Secret};

    #[test]
    fn request_frame_is_length_prefixed_and_decodes_back() {
        let request = Request::Verify(VerifyRequest {
            scope: Some("read:tables".into()),
            ..VerifyRequest::new(Secret::new("kw_live_example"))
        });
        let bytes = request_frame(42, &request, vec![9; 3]).unwrap();
        let total = frame::next_frame_len(&bytes, frame::DEFAULT_MAX_REQUEST).unwrap();
        assert_eq!(total, Some(bytes.len()));
        let decoded: RequestFrame = codec::decode_request(&bytes[HEADER_LEN..]).unwrap();
        assert_eq!(decoded, RequestFrame { id: 42, request });
    }

    #[test]
    fn a_verify_frame_is_the_frame_of_its_request() {
        let verify = VerifyRequest {
            scope: Some("read:tables".into()),
            limits: vec!["burst".into()],
            ..VerifyRequest::new(Secret::new("kw_live_example"))
        };
        let expected = codec::encode(&RequestFrame { id: 300, request: Request::Verify(verify.clone()) }).unwrap();
        assert_eq!(verify_frame(300, &verify, Vec::new()).unwrap()[HEADER_LEN..], expected);
        assert_eq!(request_frame(300, &Request::Verify(verify), Vec::new()).unwrap()[HEADER_LEN..], expected);
    }

    #[test]
    fn hello_frame_is_the_fixed_handshake() {
        assert_eq!(hello_frame().unwrap(), [0, 0, 0, 1, PROTOCOL_VERSION as u8]);
    }
}
