//! [`FramePool`]: the request frame buffers the async client reuses instead of allocating one per request.
//!
//! A request is encoded into a buffer taken from the pool, travels through the channel to its
//! connection's writer task, and comes back once the writer has copied it into a write. Frames carry
//! tokens, so a buffer's bytes are overwritten with zeros before it is pooled. The pool keeps at most [`KEEP_FRAMES`]
//! buffers of at most [`KEEP_FRAME_BYTES`] each (a verify frame is about a hundred bytes; a large
//! management request's buffer is dropped rather than kept).

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Buffers kept for reuse, at most: a full pipeline on every connection of a large pool.
const KEEP_FRAMES: usize = 1024;
/// A buffer grown past this by a large request is freed instead of kept.
const KEEP_FRAME_BYTES: usize = 1024;

/// Spare request frame buffers, shared by a client's callers and its connections' writer tasks.
#[derive(Default)]
pub(crate) struct FramePool {
    spare: Mutex<Vec<Vec<u8>>>,
}

impl FramePool {
    /// An empty buffer, reused if one is spare.
    pub(crate) fn take(&self) -> Vec<u8> {
        self.spare().pop().unwrap_or_default()
    }

    /// Takes back the buffers of `used` worth keeping, wiped and emptied, under one lock; `used` is left
    /// empty.
    pub(crate) fn give_back(&self, used: &mut Vec<Vec<u8>>) {
        for frame in used.iter_mut() {
            frame.fill(0);
            frame.clear();
        }
        let mut spare = self.spare();
        let room = KEEP_FRAMES.saturating_sub(spare.len());
        spare.extend(used.drain(..).filter(|frame| frame.capacity() <= KEEP_FRAME_BYTES).take(room));
    }

    fn spare(&self) -> MutexGuard<'_, Vec<Vec<u8>>> {
        self.spare.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_empty_and_large_ones_are_not_kept() {
        let pool = FramePool::default();
        let mut frame = pool.take();
        frame.extend_from_slice(b"kw_live_secret");
        let kept = frame.as_ptr();
        let mut large = Vec::with_capacity(KEEP_FRAME_BYTES + 1);
        large.push(1);
        let mut used = vec![frame, large];
        pool.give_back(&mut used);
        assert!(used.is_empty());
        let again = pool.take();
        assert_eq!(again.as_ptr(), kept, "the small buffer is reused");
        assert!(again.is_empty());
        assert_eq!(pool.take().capacity(), 0, "the large buffer was dropped, not kept");
    }
}
