//! Startup work split over the cores: reading, decoding and indexing a million stored keys is the whole of
//! a large daemon's time to ready, and each key is independent.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex, MutexGuard};
use std::thread;

/// Items handed to a worker at a time (small enough to balance, large enough to be cheap).
const CHUNK: usize = 1024;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A worker that panicked left the protected value as valid as any other (a queue end, an error).
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `work` on every item on all cores while the calling thread is still reading `items`, so reading
/// and working overlap. Stops at the first error (from reading or from `work`) and returns it; otherwise
/// the number of items.
pub fn try_for_each<T, E>(
    items: impl Iterator<Item = Result<T, E>>,
    work: impl Fn(T) -> Result<(), E> + Sync,
) -> Result<u64, E>
where
    T: Send,
    E: Send,
{
    let workers = thread::available_parallelism().map_or(1, NonZeroUsize::get);
    let (send, receive) = mpsc::sync_channel::<Vec<T>>(workers * 2);
    let receive = Mutex::new(receive);
    let failure: Mutex<Option<E>> = Mutex::new(None);
    let failed = AtomicBool::new(false);
    let fail = |error: E| {
        lock(&failure).get_or_insert(error);
        failed.store(true, Ordering::Release);
    };
    let mut count = 0;
    thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                while let Ok(batch) = lock(&receive).recv() {
                    if let Err(error) = batch.into_iter().try_for_each(&work) {
                        return fail(error);
                    }
                }
            });
        }
        let mut batch = Vec::with_capacity(CHUNK);
        for item in items {
            match item {
                Ok(item) => batch.push(item),
                Err(error) => {
                    fail(error);
                    break;
                }
            }
            count += 1;
            if batch.len() == CHUNK {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(CHUNK));
                if failed.load(Ordering::Acquire) || send.send(full).is_err() {
                    break;
                }
            }
        }
        if !batch.is_empty() && !failed.load(Ordering::Acquire) {
            let _ = send.send(batch);
        }
        drop(send);
    });
    match failure.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner()) {
        Some(error) => Err(error),
        None => Ok(count),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn every_item_is_worked_once() {
        let sum = AtomicU64::new(0);
        let items = (1..=20_000u64).map(Ok::<_, String>);
        let add = |n| {
            sum.fetch_add(n, Ordering::Relaxed);
            Ok::<_, String>(())
        };
        let count = try_for_each(items, add).unwrap();
        assert_eq!((count, sum.into_inner()), (20_000, 20_000 * 20_001 / 2));
        assert_eq!(try_for_each(std::iter::empty::<Result<u8, ()>>(), |_| Ok(())), Ok(0));
    }

    #[test]
    fn the_first_error_stops_the_work() {
        let failing_work = try_for_each((0..50_000u32).map(Ok), |n| if n == 13_999 { Err(n) } else { Ok(()) });
        assert_eq!(failing_work, Err(13_999));
        let failing_read = (0..50_000u32).map(|n| if n == 7 { Err(n) } else { Ok(n) });
        assert_eq!(try_for_each(failing_read, |_| Ok(())), Err(7));
    }
}
