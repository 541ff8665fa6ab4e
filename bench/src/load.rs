//! The load generator: closed-loop workers, a warm-up, a fixed measuring window, an HDR histogram.
//!
//! Every target (the echo floor, keywardd, Redis) is driven through the same loop: each worker task
//! sends one request, waits for its answer, records the round trip, and sends the next. A shape is the
//! number of workers and how the target spreads them over connections (one connection each, or all on one
//! pipelined connection); the target decides that, the loop does not. Latency is the time from handing
//! the request to the client to getting its answer back, in nanoseconds.
//!
//! Requests that *start* inside the measuring window count; throughput is that count divided by the
//! window. Every loop is bounded by time: nothing here runs longer than warm-up plus window plus one
//! request's timeout.

use std::future::Future;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// How long a shape runs.
#[derive(Clone, Copy, Debug)]
pub struct Phase {
    /// Requests before this are sent but not counted (connections open, caches and branch predictors warm).
    pub warmup: Duration,
    /// The measuring window.
    pub window: Duration,
}

/// One request against a target. A caller is owned by one worker task.
pub trait Caller: Send + 'static {
    /// Sends one request and waits for its answer; `false` when the answer was not the expected one (an
    /// error, a refusal, a wrong code). Failures are counted, not retried.
    fn call(&mut self) -> impl Future<Output = bool> + Send;
}

/// What one shape measured.
#[derive(Clone)]
pub struct Measurement {
    /// Requests started in the window.
    pub requests: u64,
    /// Of those, how many did not get the expected answer.
    pub failures: u64,
    pub window: Duration,
    /// Round trips in nanoseconds.
    pub latency: Histogram<u64>,
}

/// A histogram for round trips from 100 ns to 10 minutes at 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(100, 600_000_000_000, 3).expect("valid histogram bounds")
}

impl Measurement {
    pub fn empty(window: Duration) -> Measurement {
        Measurement { requests: 0, failures: 0, window, latency: histogram() }
    }

    /// Requests per second over the window.
    pub fn throughput(&self) -> f64 {
        self.requests as f64 / self.window.as_secs_f64().max(1e-9)
    }

    /// The latency at quantile `q` (0.5, 0.99, …).
    pub fn quantile(&self, q: f64) -> Duration {
        Duration::from_nanos(self.latency.value_at_quantile(q))
    }

    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.latency.max())
    }

    /// Round trips longer than `limit`.
    pub fn count_above(&self, limit: Duration) -> u64 {
        let limit = u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX);
        let above = |value: u64| self.latency.lowest_equivalent(value) > limit;
        self.latency.iter_recorded().filter(|v| above(v.value_iterated_to())).map(|v| v.count_at_value()).sum()
    }

    /// Adds a latency sample (nanoseconds, clamped into the histogram's range).
    pub fn record(&mut self, elapsed: Duration, ok: bool) {
        self.requests += 1;
        if !ok {
            self.failures += 1;
        }
        self.latency.saturating_record(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
    }

    pub fn merge(&mut self, other: &Measurement) {
        self.requests += other.requests;
        self.failures += other.failures;
        self.latency.add(&other.latency).expect("histograms with the same bounds");
    }
}

/// Runs one worker per caller until the phase is over and merges what they measured.
pub async fn closed_loop<C: Caller>(callers: Vec<C>, phase: Phase) -> Measurement {
    let start = Instant::now();
    let from = start + phase.warmup;
    let until = from + phase.window;
    let workers: Vec<_> =
        callers.into_iter().map(|caller| tokio::spawn(worker(caller, from, until, phase.window))).collect();
    let mut total = Measurement::empty(phase.window);
    for worker in workers {
        match worker.await {
            Ok(measured) => total.merge(&measured),
            Err(error) => eprintln!("keyward-bench: a load worker failed: {error}"),
        }
    }
    total
}

async fn worker<C: Caller>(mut caller: C, from: Instant, until: Instant, window: Duration) -> Measurement {
    let mut measured = Measurement::empty(window);
    loop {
        let sent = Instant::now();
        if sent >= until {
            return measured;
        }
        let ok = caller.call().await;
        if sent >= from {
            measured.record(sent.elapsed(), ok);
        }
    }
}

/// A small, fast, seedable generator (SplitMix64) for picking keys and making garbage; not for secrets.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measurement_counts_and_quantiles() {
        let mut m = Measurement::empty(Duration::from_secs(2));
        for micros in 1..=100 {
            m.record(Duration::from_micros(micros), micros != 50);
        }
        assert_eq!((m.requests, m.failures), (100, 1));
        assert!((m.throughput() - 50.0).abs() < 1e-9);
        let p50 = m.quantile(0.5).as_nanos() as f64;
        assert!((p50 - 50_000.0).abs() / 50_000.0 < 0.01, "{p50}");
        assert_eq!(m.count_above(Duration::from_micros(90)), 10);
    }

    #[test]
    fn rng_stays_below_its_bound() {
        let mut rng = Rng::new(7);
        assert!((0..10_000).all(|_| rng.below(10) < 10));
    }
}
