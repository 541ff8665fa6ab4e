//! Startup work split over the cores: decoding a million stored keys and building their hot entries is
//! the whole of a large daemon's time to ready, and each item is independent.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::thread;

/// Items per chunk handed to one thread at a time (small enough to balance, large enough to be cheap).
const CHUNK: usize = 4096;

/// `work` applied to every item on all cores; the results come in no particular order, and the first
/// error stops the work. Threads take the items in batches straight from `items`, so nothing is copied
/// twice and the memory held at once stays that of `items` plus the results.
pub fn try_map<T, R, E>(items: Vec<T>, work: impl Fn(T) -> Result<R, E> + Sync) -> Result<Vec<R>, E>
where
    T: Send,
    R: Send,
    E: Send,
{
    let threads = thread::available_parallelism().map_or(1, NonZeroUsize::get);
    if threads == 1 || items.len() <= CHUNK {
        return items.into_iter().map(work).collect();
    }
    let total = items.len();
    let source = Mutex::new(items.into_iter());
    let batch =
        || -> Vec<T> { source.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).by_ref().take(CHUNK).collect() };
    let work = &work;
    thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let items = batch();
                        if items.is_empty() {
                            return Ok(done);
                        }
                        for item in items {
                            done.push(work(item)?);
                        }
                    }
                })
            })
            .collect();
        let mut results = Vec::with_capacity(total);
        for worker in workers {
            results.extend(worker.join().expect("a startup worker panicked")?);
        }
        Ok(results)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_is_mapped_once_and_an_error_stops_the_work() {
        let items: Vec<u32> = (0..20_000).collect();
        let mut doubled = try_map(items.clone(), |n| Ok::<_, String>(n * 2)).unwrap();
        doubled.sort_unstable();
        assert_eq!(doubled, items.iter().map(|n| n * 2).collect::<Vec<_>>());
        let failed = try_map(items, |n| if n == 13_999 { Err(n) } else { Ok(n) });
        assert_eq!(failed, Err(13_999));
        assert_eq!(try_map(Vec::<u32>::new(), Ok::<_, ()>), Ok(vec![]));
    }
}
