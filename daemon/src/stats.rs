//! Operational counters: connections, verifies by code, verify service time, cache hits, Argon2 load, and
//! the forward-auth endpoint's connections and answers.
//!
//! Everything is an atomic counter bumped on the path it measures; nothing allocates or locks. The verify
//! service time goes into a log-linear histogram (8 buckets per power of two of nanoseconds, so any
//! reported percentile is within 12.5 % of the truth) from which [`Stats::report`] derives p50/p99/p99.9 and
//! Prometheus-style cumulative buckets.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use keyward_protocol::{HttpFigures, LatencySummary, StatsReport, VerifyCode};

use crate::keys::usage::{slot, CODES};

const SUB_BUCKETS: usize = 8;
/// Powers of two covered: 2^0 ns up to 2^40 ns (~18 minutes).
const OCTAVES: usize = 40;
const BUCKETS: usize = OCTAVES * SUB_BUCKETS + 1;
/// The bounds exported as Prometheus buckets, in seconds.
const EXPORTED_BOUNDS: &[f64] = &[
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5,
    1.0,
];

/// A lock-free latency histogram.
struct Histogram {
    buckets: Box<[AtomicU64; BUCKETS]>,
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn new() -> Histogram {
        Histogram { buckets: Box::new(std::array::from_fn(|_| AtomicU64::new(0))), sum_nanos: AtomicU64::new(0) }
    }

    fn index(nanos: u64) -> usize {
        if nanos < SUB_BUCKETS as u64 {
            return nanos as usize;
        }
        let octave = 63 - nanos.leading_zeros() as usize; // >= 3
        let sub = ((nanos >> (octave - 3)) & (SUB_BUCKETS as u64 - 1)) as usize;
        ((octave - 2) * SUB_BUCKETS + sub).min(BUCKETS - 1)
    }

    /// The largest value a bucket holds, in nanoseconds.
    fn upper(index: usize) -> u64 {
        if index < SUB_BUCKETS {
            return index as u64;
        }
        let octave = index / SUB_BUCKETS + 2;
        let sub = (index % SUB_BUCKETS) as u64;
        ((SUB_BUCKETS as u64 + sub + 1) << (octave - 3)) - 1
    }

    fn record(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[Histogram::index(nanos)].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    fn summary(&self) -> LatencySummary {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        let count: u64 = counts.iter().sum();
        let percentile = |q: f64| {
            let rank = ((count as f64) * q).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (index, n) in counts.iter().enumerate() {
                seen += n;
                if seen >= rank {
                    return Histogram::upper(index) as f64 / 1e9;
                }
            }
            0.0
        };
        let mut buckets: Vec<(f64, u64)> = EXPORTED_BOUNDS
            .iter()
            .map(|&bound| {
                let below: u64 = counts
                    .iter()
                    .enumerate()
                    .filter(|(index, _)| (Histogram::upper(*index) as f64) / 1e9 <= bound)
                    .map(|(_, n)| n)
                    .sum();
                (bound, below)
            })
            .collect();
        buckets.push((f64::INFINITY, count));
        LatencySummary {
            count,
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            p50_seconds: if count == 0 { 0.0 } else { percentile(0.5) },
            p99_seconds: if count == 0 { 0.0 } else { percentile(0.99) },
            p999_seconds: if count == 0 { 0.0 } else { percentile(0.999) },
            buckets,
        }
    }
}

/// The statuses the forward-auth endpoint answers with, counted each in its own cell.
const HTTP_STATUSES: [u16; 7] = [200, 401, 403, 404, 429, 500, 503];

/// The forward-auth endpoint's counters; reported only once it serves (`[http]` lists addresses).
#[derive(Default)]
struct HttpCounters {
    serving: AtomicBool,
    connections_open: AtomicU64,
    connections_total: AtomicU64,
    connections_forbidden: AtomicU64,
    answers: [AtomicU64; HTTP_STATUSES.len()],
}

impl HttpCounters {
    fn figures(&self) -> Option<HttpFigures> {
        if !self.serving.load(Ordering::Relaxed) {
            return None;
        }
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Some(HttpFigures {
            connections_open: load(&self.connections_open),
            connections_total: load(&self.connections_total),
            connections_forbidden: load(&self.connections_forbidden),
            answers: HTTP_STATUSES
                .iter()
                .zip(&self.answers)
                .map(|(&status, n)| (status, load(n)))
                .filter(|(_, n)| *n > 0)
                .collect(),
        })
    }
}

/// The daemon's counters.
pub struct Stats {
    started: Instant,
    connections_open: AtomicU64,
    connections_total: AtomicU64,
    connections_forbidden: AtomicU64,
    verifies: [AtomicU64; CODES],
    latency: Histogram,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    busy: AtomicU64,
    last_flush_at: AtomicI64,
    /// The store high-water mark last recorded in the manifest: (audit sequence, keys).
    recorded_audit_seq: AtomicU64,
    recorded_keys: AtomicU64,
    http: HttpCounters,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            started: Instant::now(),
            connections_open: AtomicU64::new(0),
            connections_total: AtomicU64::new(0),
            connections_forbidden: AtomicU64::new(0),
            verifies: std::array::from_fn(|_| AtomicU64::new(0)),
            latency: Histogram::new(),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            busy: AtomicU64::new(0),
            last_flush_at: AtomicI64::new(0),
            recorded_audit_seq: AtomicU64::new(u64::MAX),
            recorded_keys: AtomicU64::new(u64::MAX),
            http: HttpCounters::default(),
        }
    }
}

/// Counts an open connection until dropped.
pub struct OpenConnection<'a>(&'a AtomicU64);

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Stats {
    pub fn connection_opened(&self) -> OpenConnection<'_> {
        self.connections_open.fetch_add(1, Ordering::Relaxed);
        self.connections_total.fetch_add(1, Ordering::Relaxed);
        OpenConnection(&self.connections_open)
    }

    /// The forward-auth endpoint serves: its figures are reported from now on.
    pub fn http_serving(&self) {
        self.http.serving.store(true, Ordering::Relaxed);
    }

    pub fn http_connection_opened(&self) -> OpenConnection<'_> {
        self.http.connections_open.fetch_add(1, Ordering::Relaxed);
        self.http.connections_total.fetch_add(1, Ordering::Relaxed);
        OpenConnection(&self.http.connections_open)
    }

    pub fn http_connection_forbidden(&self) {
        self.http.connections_forbidden.fetch_add(1, Ordering::Relaxed);
    }

    /// The endpoint answered with `status` (one of its own: others are not counted).
    pub fn http_answered(&self, status: u16) {
        if let Some(index) = HTTP_STATUSES.iter().position(|&known| known == status) {
            self.http.answers[index].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn connection_forbidden(&self) {
        self.connections_forbidden.fetch_add(1, Ordering::Relaxed);
    }

    /// A verify answered `code` after `elapsed`.
    pub fn verified(&self, code: VerifyCode, elapsed: Duration) {
        self.verifies[slot(code)].fetch_add(1, Ordering::Relaxed);
        self.latency.record(elapsed);
    }

    pub fn cache_hit(&self) {
        self.cache_hits.fetch_add(1, Ordering::Relaxed);
    }

    pub fn cache_miss(&self) {
        self.cache_misses.fetch_add(1, Ordering::Relaxed);
    }

    pub fn busy_refusal(&self) {
        self.busy.fetch_add(1, Ordering::Relaxed);
    }

    /// The high-water mark last recorded (`u64::MAX` pairs before the first).
    pub fn high_water(&self) -> (u64, u64) {
        (self.recorded_audit_seq.load(Ordering::Relaxed), self.recorded_keys.load(Ordering::Relaxed))
    }

    pub fn set_high_water(&self, audit_seq: u64, keys: u64) {
        self.recorded_audit_seq.store(audit_seq, Ordering::Relaxed);
        self.recorded_keys.store(keys, Ordering::Relaxed);
    }

    pub fn flushed(&self, at: i64) {
        self.last_flush_at.store(at, Ordering::Relaxed);
    }

    /// The counters as a report; the caller fills in what lives elsewhere (keys, Argon2 load, store size).
    pub fn report(&self) -> StatsReport {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        StatsReport {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_seconds: self.started.elapsed().as_secs(),
            connections_open: load(&self.connections_open),
            connections_total: load(&self.connections_total),
            connections_forbidden: load(&self.connections_forbidden),
            verifies: VerifyCode::ALL
                .iter()
                .map(|&code| (code, load(&self.verifies[slot(code)])))
                .filter(|(_, n)| *n > 0)
                .collect(),
            verify_latency: self.latency.summary(),
            cache_hits: load(&self.cache_hits),
            cache_misses: load(&self.cache_misses),
            busy_refusals: load(&self.busy),
            last_flush_at: Some(self.last_flush_at.load(Ordering::Relaxed)).filter(|&at| at > 0),
            http: self.http.figures(),
            ..StatsReport::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_bound_their_values_within_an_eighth() {
        for nanos in [0, 1, 7, 8, 9, 15, 16, 100, 1_000, 12_345, 999_999, 1 << 30] {
            let index = Histogram::index(nanos);
            let upper = Histogram::upper(index);
            assert!(upper >= nanos, "{nanos} above its bucket's bound {upper}");
            assert!(upper as f64 <= nanos as f64 * 1.125 + 1.0, "{nanos}: bound {upper} too loose");
            if index > 0 {
                assert!(Histogram::upper(index - 1) < nanos, "{nanos} belongs to an earlier bucket");
            }
        }
    }

    #[test]
    fn http_figures_appear_once_the_endpoint_serves() {
        let stats = Stats::default();
        assert_eq!(stats.report().http, None, "no [http]: no figures");
        stats.http_serving();
        let open = stats.http_connection_opened();
        for status in [200, 200, 429, 431] {
            stats.http_answered(status);
        }
        let figures = stats.report().http.expect("serving");
        assert_eq!((figures.connections_open, figures.connections_total), (1, 1));
        assert_eq!(figures.answers, [(200, 2), (429, 1)].into(), "431 is hyper's, not counted");
        drop(open);
        assert_eq!(stats.report().http.unwrap().connections_open, 0);
        assert_eq!(stats.report().connections_open, 0, "the socket's count is apart");
    }

    #[test]
    fn percentiles_and_buckets() {
        let stats = Stats::default();
        for _ in 0..990 {
            stats.verified(VerifyCode::Valid, Duration::from_micros(10));
        }
        for _ in 0..10 {
            stats.verified(VerifyCode::NotFound, Duration::from_millis(20));
        }
        let report = stats.report();
        let latency = &report.verify_latency;
        assert_eq!(latency.count, 1000);
        assert!((10e-6..11.3e-6).contains(&latency.p50_seconds), "{}", latency.p50_seconds);
        assert!((20e-3..22.6e-3).contains(&latency.p999_seconds), "{}", latency.p999_seconds);
        assert_eq!(report.verifies[&VerifyCode::Valid], 990);
        let at = |bound: f64| latency.buckets.iter().find(|(b, _)| *b == bound).unwrap().1;
        assert_eq!((at(2.5e-5), at(2.5e-2), at(f64::INFINITY)), (990, 1000, 1000));
    }
}
