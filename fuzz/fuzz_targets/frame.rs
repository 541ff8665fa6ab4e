//! The frame layer and request decoding: any bytes, split into frames exactly as the daemon does, decoded
//! as a handshake and as requests. Nothing may panic or allocate beyond the limits.
#![no_main]

use keyward_protocol::frame::{self, HEADER_LEN};
use keyward_protocol::{codec, Hello, RequestFrame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some(total)) = frame::next_frame_len(rest, frame::DEFAULT_MAX_REQUEST) {
        let payload = &rest[HEADER_LEN..total];
        let _ = codec::decode_request::<Hello>(payload);
        if let Ok(request) = codec::decode_request::<RequestFrame>(payload) {
            // What decodes must encode again, to the same value.
            let bytes = codec::encode(&request).expect("a decoded request encodes");
            assert_eq!(codec::decode_request::<RequestFrame>(&bytes).expect("round trip"), request);
        }
        let _ = codec::peek::<u64>(payload);
        rest = &rest[total..];
    }
    let _ = frame::read_frame(&mut &data[..], 1024);
});
