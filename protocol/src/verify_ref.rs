//! [`VerifyRequestRef`]: a verify request read in place from the bytes of its frame.
//!
//! The daemon answers most verifies from memory in well under a microsecond, and decoding an owned
//! [`VerifyRequest`] — the token and every name copied into its own allocation, the token wiped again
//! on drop — was a fifth of that. This form borrows the token and the names from the frame instead
//! ([`decode_verify_request`]); the wire form is the
//! same, so clients send [`VerifyRequest`] as ever. A verify that must wait (Argon2, a store read)
//! takes an owned copy with [`VerifyRequestRef::to_request`].

use serde::Deserialize;

use crate::codec;
use crate::message::VerifyRequest;
use crate::secret::Secret;

/// The fields of a [`VerifyRequest`], borrowed. `Debug` leaves the token out.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct VerifyRequestRef<'a> {
    pub token: &'a str,
    /// A scope the key must hold (or hold something implying it).
    #[serde(borrow)]
    pub scope: Option<&'a str>,
    /// The workspace the caller is acting on; the key must belong to it.
    #[serde(borrow)]
    pub workspace: Option<&'a str>,
    /// What the request costs against rate limits and credits.
    pub cost: u32,
    /// Named limits of the key that this request also counts against.
    #[serde(borrow)]
    pub limits: Vec<&'a str>,
}

impl VerifyRequestRef<'_> {
    /// An owned copy, for a verify that outlives the frame it was read from.
    pub fn to_request(&self) -> VerifyRequest {
        VerifyRequest {
            token: Secret::new(self.token),
            scope: self.scope.map(str::to_owned),
            workspace: self.workspace.map(str::to_owned),
            cost: self.cost,
            limits: self.limits.iter().map(|name| (*name).to_owned()).collect(),
        }
    }
}

impl VerifyRequest {
    /// This request's fields, borrowed.
    pub fn as_borrowed(&self) -> VerifyRequestRef<'_> {
        VerifyRequestRef {
            token: self.token.expose(),
            scope: self.scope.as_deref(),
            workspace: self.workspace.as_deref(),
            cost: self.cost,
            limits: self.limits.iter().map(String::as_str).collect(),
        }
    }
}

impl std::fmt::Debug for VerifyRequestRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyRequestRef")
            .field("token", &"<redacted>")
            .field("scope", &self.scope)
            .field("workspace", &self.workspace)
            .field("cost", &self.cost)
            .field("limits", &self.limits)
            .finish()
    }
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
/// bytes that do not decode — which [`codec::decode_request`] then reads (and reports) as before.
pub fn decode_verify_request(bytes: &[u8]) -> Option<(u64, VerifyRequestRef<'_>)> {
    match codec::decode_request_borrowed(bytes) {
        Ok(VerifyFrame { id, request: FirstRequests::Verify(request) }) => Some((id, request)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::sample_verify_request as request;
    use crate::message::{Request, RequestFrame};

    #[test]
    fn borrowing_and_copying_back_keep_every_field() {
        let request = request();
        assert_eq!(request.as_borrowed().to_request(), request);
        assert_eq!(VerifyRequest::default().as_borrowed().to_request(), VerifyRequest::default());
    }

    #[test]
    fn debug_leaves_the_token_out() {
        let request = request();
        let printed = format!("{:?}", request.as_borrowed());
        assert!(!printed.contains("secret-looking"), "{printed}");
        assert!(printed.contains("read:tables") && printed.contains("<redacted>"), "{printed}");
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
            let bytes = codec::encode(&RequestFrame { id, request: Request::Verify(request.clone()) }).unwrap();
            let (read_id, read) = decode_verify_request(&bytes).unwrap_or_else(|| panic!("request {n}"));
            assert_eq!((read_id, read), (id, request.as_borrowed()), "request {n}");
        }
    }

    #[test]
    fn any_other_payload_is_left_to_the_whole_decoder() {
        let verify =
            codec::encode(&RequestFrame { id: 1, request: Request::Verify(VerifyRequest::new(Secret::new("t"))) })
                .unwrap();
        let others = [
            codec::encode(&RequestFrame { id: 1, request: Request::Ping }).unwrap(),
            codec::encode(&RequestFrame { id: 1, request: Request::Stats }).unwrap(),
            codec::encode(&RequestFrame { id: 1, request: Request::Get { id: "k".into() } }).unwrap(),
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
