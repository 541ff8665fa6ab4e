//! What a warm verify costs the async client in allocations: only what its answer holds.
//!
//! A counting global allocator counts the allocations made on the test's own thread, where a
//! `current_thread` runtime runs every task of the client (its callers, writer, reader and sweeper); the
//! fake daemon answers from threads of its own, which are not counted.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::Arc;

use keyward_client::{Client, Reply, Request, VerifyAnswer, VerifyCode, VerifyRequest};
use keyward_protocol::RateLimitStatus;
use support::{good_token, valid_in, Action, FakeDaemon};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNTED: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is passed on to the system allocator unchanged; counting touches only const-initialized
// thread-locals, which neither allocate nor register destructors.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract is passed on as it is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn count() {
    if COUNTING.get() {
        COUNTED.set(COUNTED.get() + 1);
    }
}

/// Allocations made on this thread while `work` runs.
async fn allocations_of(work: impl std::future::Future<Output = ()>) -> u64 {
    COUNTED.set(0);
    COUNTING.set(true);
    work.await;
    COUNTING.set(false);
    COUNTED.get()
}

/// A valid answer as the daemon gives it for a key with metadata and a plan limit.
fn answer() -> VerifyAnswer {
    let mut answer = valid_in("acme");
    let key = Arc::get_mut(answer.key.as_mut().unwrap()).unwrap();
    key.metadata = BTreeMap::from([("plan".into(), "pro".into()), ("team".into(), "data".into())]);
    key.scopes = vec!["read:tables".into(), "write:forms".into()];
    answer.ratelimit = vec![RateLimitStatus {
        policy: "paid".into(),
        limit: 1000,
        remaining: 999,
        reset_at_ms: 1_700_000_000_000,
        window_seconds: 60,
    }];
    answer
}

#[test]
fn a_warm_verify_allocates_only_what_its_answer_holds() {
    const WARM_UP: usize = 300;
    const COUNTED_VERIFIES: usize = 2_000;
    let daemon = FakeDaemon::start(|_, request| match request {
        Request::Verify(_) => Action::Answer(Reply::Verify(answer())),
        _ => Action::Answer(Reply::Pong),
    });
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = Client::builder(daemon.socket()).pool_size(1).connect().await.unwrap();
        let request = VerifyRequest { scope: Some("read:tables".into()), ..VerifyRequest::new(good_token()) };
        // Fills the frame pool, sizes every buffer and remembers the key.
        for _ in 0..WARM_UP {
            assert_eq!(client.verify(request.clone()).await.unwrap().code, VerifyCode::Valid);
        }
        // Built beforehand: the caller's own copies are not the client's doing.
        let requests: Vec<VerifyRequest> = (0..COUNTED_VERIFIES).map(|_| request.clone()).collect();
        let mut answers = Vec::with_capacity(COUNTED_VERIFIES);
        let allocations = allocations_of(async {
            for request in requests {
                answers.push(client.verify(request).await.unwrap());
            }
        })
        .await;
        assert!(answers.iter().all(|answer| *answer == self::answer()), "every answer decoded in full");
        assert!(answers
            .windows(2)
            .all(|pair| Arc::ptr_eq(pair[0].key.as_ref().unwrap(), pair[1].key.as_ref().unwrap())));
        // The answer's own: its rate-limit list and the policy name in it. A little room for the runtime's
        // occasional bookkeeping (its channels grow in blocks), none for a per-request allocation.
        let per_verify = allocations as f64 / COUNTED_VERIFIES as f64;
        assert!(per_verify < 2.1, "{allocations} allocations for {COUNTED_VERIFIES} verifies ({per_verify:.2} each)");
    });
}
