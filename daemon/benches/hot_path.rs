//! Micro-benchmarks of the pieces every warm verify runs: the GCRA limiter, credits, usage counters,
//! scope checks and the keyed digest. Run with `cargo bench -p keyward-daemon --bench hot_path`.
//! (The whole round trip, against the socket floor, is measured by the project's load benchmark.)

use std::sync::atomic::AtomicU64;

use divan::{black_box, Bencher};
use keyward_daemon::internals::mono_nanos;
use keyward_daemon::internals::CreditCell;
use keyward_daemon::internals::Gcra;
use keyward_daemon::internals::UsageCell;
use keyward_daemon::internals::{DigestKeys, HashCost, Hasher};
use keyward_protocol::{Period, Rate, ScopeSet, VerifyCode};

fn main() {
    divan::main();
}

#[divan::bench]
fn limiter_reserve(bencher: Bencher) {
    let limit = Gcra::new(Rate { count: 1_000_000_000, period: Period::Second });
    let cell = AtomicU64::new(0);
    bencher.bench(|| limit.reserve(black_box(&cell), mono_nanos(), 1));
}

#[divan::bench(threads = [1, 2, 4])]
fn limiter_reserve_contended(bencher: Bencher) {
    static CELL: AtomicU64 = AtomicU64::new(0);
    let limit = Gcra::new(Rate { count: 1_000_000_000, period: Period::Second });
    bencher.bench(|| limit.reserve(black_box(&CELL), mono_nanos(), 1));
}

#[divan::bench]
fn credits_spend(bencher: Bencher) {
    let cell = CreditCell::new(u64::MAX, 0);
    bencher.bench(|| cell.spend(1, None, black_box(0)));
}

#[divan::bench]
fn usage_count(bencher: Bencher) {
    let cell = UsageCell::default();
    bencher.bench(|| cell.count(black_box(VerifyCode::Valid)));
}

#[divan::bench]
fn scope_grants(bencher: Bencher) {
    let scopes = ScopeSet::parse(&["read:tables", "write:forms", "read:workflows"]).unwrap();
    bencher.bench(|| scopes.grants(black_box("read:forms")));
}

#[divan::bench]
fn warm_digest(bencher: Bencher) {
    let hasher = Hasher::new(HashCost::default(), 1, 1, DigestKeys::ephemeral()).unwrap();
    let secret = [b'a'; 32];
    bencher.bench(|| hasher.digest(black_box(&secret)));
}
