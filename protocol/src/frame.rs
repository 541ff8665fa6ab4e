//! The frame layer: a 4-byte big-endian payload length followed by the payload.
//!
//! This module owns the length header and its limits. It never allocates for a frame before the length has
//! been checked against the caller's maximum, so a hostile 4 GiB length prefix costs four bytes of reading
//! and an error, not four gigabytes of memory.

use std::io::{self, Read, Write};

/// Bytes in the length header.
pub const HEADER_LEN: usize = 4;

/// The default largest request payload a daemon accepts.
pub const DEFAULT_MAX_REQUEST: u32 = 64 * 1024;

/// The largest reply payload a client accepts. Replies can be larger than requests (a page of listed keys),
/// but are still bounded so a confused peer cannot make a client allocate without limit.
pub const MAX_REPLY: u32 = 16 * 1024 * 1024;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length prefix is larger than the receiver allows.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge { len: u32, max: u32 },
    /// The peer closed the stream in the middle of a frame.
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Where the next complete frame sits in `buf`, if one is there.
///
/// Returns `Ok(None)` when more bytes are needed, `Ok(Some(total))` when `buf[HEADER_LEN..total]` is a
/// whole payload, and an error when the announced length exceeds `max`: the caller should answer and close,
/// because the stream can no longer be resynchronised.
pub fn next_frame_len(buf: &[u8], max: u32) -> Result<Option<usize>, FrameError> {
    let Some(header) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(*header);
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let total = HEADER_LEN + len as usize;
    Ok((buf.len() >= total).then_some(total))
}

/// Appends a frame holding `payload` to `out`.
///
/// # Panics
/// If `payload` is 4 GiB or more, which no caller in keyward can produce.
pub fn put_frame(out: &mut Vec<u8>, payload: &[u8]) {
    let len = u32::try_from(payload.len()).expect("frame payload below 4 GiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
}

/// Reads one frame's payload from a blocking reader. `Ok(None)` means the peer closed cleanly between frames.
pub fn read_frame(reader: &mut impl Read, max: u32) -> Result<Option<Vec<u8>>, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    match read_full(reader, &mut header)? {
        0 => return Ok(None),
        HEADER_LEN => {}
        _ => return Err(FrameError::Truncated),
    }
    let len = u32::from_be_bytes(header);
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let mut payload = vec![0u8; len as usize];
    if read_full(reader, &mut payload)? != payload.len() {
        return Err(FrameError::Truncated);
    }
    Ok(Some(payload))
}

/// Writes one frame to a blocking writer (header and payload in one write where the writer allows).
pub fn write_frame(writer: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    put_frame(&mut out, payload);
    writer.write_all(&out)?;
    writer.flush()
}

/// Fills `buf` as far as the stream allows; returns how many bytes were read (short only at end of stream).
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_frame_len_waits_for_header_and_payload() {
        assert_eq!(next_frame_len(&[0, 0], 10).unwrap(), None);
        assert_eq!(next_frame_len(&[0, 0, 0, 3, 1, 2], 10).unwrap(), None);
        assert_eq!(next_frame_len(&[0, 0, 0, 3, 1, 2, 3, 9], 10).unwrap(), Some(7));
    }

    #[test]
    fn oversized_length_is_refused_before_payload_arrives() {
        let err = next_frame_len(&[0xff, 0xff, 0xff, 0xff], DEFAULT_MAX_REQUEST).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { len: u32::MAX, .. }));
        let err = read_frame(&mut &[0xffu8, 0xff, 0xff, 0xff][..], 64).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { .. }));
    }

    #[test]
    fn blocking_round_trip_and_truncation() {
        let mut wire = Vec::new();
        write_frame(&mut wire, b"hello").unwrap();
        let mut reader = &wire[..];
        assert_eq!(read_frame(&mut reader, 64).unwrap().unwrap(), b"hello");
        assert!(read_frame(&mut reader, 64).unwrap().is_none());
        let err = read_frame(&mut &wire[..6], 64).unwrap_err();
        assert!(matches!(err, FrameError::Truncated));
    }
}
