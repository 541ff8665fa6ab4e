//! The frame layer and request decoding: any bytes, split into frames exactly as the daemon does, decoded
//! as a handshake and as requests. Nothing may panic or allocate beyond the limits, and a verify read in
//! place is exactly the request the whole decoder reads from the same bytes.
#![no_main]

use keyward_protocol::verify_ref;
use keyward_protocol::frame::{self, HEADER_LEN};
use keyward_protocol::{codec, Hello, Request, RequestFrame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some(total)) = frame::next_frame_len(rest, frame::DEFAULT_MAX_REQUEST) {
        let payload = &rest[HEADER_LEN..total];
        let _ = codec::decode_request::<Hello>(payload);
        let whole = codec::decode_request::<RequestFrame>(payload);
        if let Some((id, in_place)) = verify_ref::decode_verify_request(payload) {
            match &whole {
                Ok(RequestFrame { id: whole_id, request: Request::Verify(verify) }) => {
                    assert_eq!((id, in_place), (*whole_id, verify.as_borrowed()));
                }
                other => panic!("read in place as a verify, whole as {other:?}"),
            }
        }
        if let Ok(request) = whole {
            // What decodes must encode again, to the same value.
            let bytes = codec::encode(&request).expect("a decoded request encodes");
            assert_eq!(codec::decode_request::<RequestFrame>(&bytes).expect("round trip"), request);
        }
        let _ = codec::peek::<u64>(payload);
        rest = &rest[total..];
    }
    let _ = frame::read_frame(&mut &data[..], 1024);
});
