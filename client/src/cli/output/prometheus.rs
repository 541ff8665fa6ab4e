//! `keyward stats --prometheus`: the daemon's counters in the Prometheus text exposition format (version
//! 0.0.4), for node_exporter's textfile collector or a small scrape wrapper.
//!
//! This module owns the metric names, their types and help texts; it only formats a [`StatsReport`] and
//! never talks to the daemon. Names follow Prometheus's conventions: a `keyward_` prefix, base units in the
//! name (`_seconds`, `_bytes`), `_total` on counters, and labels for what a family is split by. Every family
//! has `# HELP` and `# TYPE` lines before its samples, and split families list every label value the
//! daemon knows (every key status, every verify code) so that a rate over a code that has not happened yet
//! is 0, not absent. The key statuses and the buckets' `le` labels come from `stats`, so that `keyward
//! stats --json` and the exposition read a report the same way.
//!
//! | metric | type | from |
//! |---|---|---|
//! | `keyward_up` | gauge | always 1: the daemon answered |
//! | `keyward_build_info{version}` | gauge | 1, labelled with the daemon's version |
//! | `keyward_uptime_seconds` | gauge | `uptime_seconds` |
//! | `keyward_keys{status}` | gauge | `keys`, every status |
//! | `keyward_connections_open` | gauge | `connections_open` |
//! | `keyward_connections_total` | counter | `connections_total` |
//! | `keyward_connections_forbidden_total` | counter | `connections_forbidden` |
//! | `keyward_verify_total{code}` | counter | `verifies`, every code |
//! | `keyward_verify_duration_seconds` | histogram | `verify_latency` buckets, sum and count |
//! | `keyward_cache_hits_total`, `keyward_cache_misses_total` | counter | `cache_hits`, `cache_misses` |
//! | `keyward_argon2_running`, `keyward_argon2_waiting` | gauge | `argon2_running`, `argon2_waiting` |
//! | `keyward_busy_total` | counter | `busy_refusals` |
//! | `keyward_store_bytes` | gauge | `store_bytes` |
//! | `keyward_last_flush_timestamp_seconds` | gauge | `last_flush_at`; no sample before the first flush |
//!
//! A host in fleet mode adds the families below, after the others; a daemon on its own has none of them,
//! and its exposition is exactly what it was before fleet mode. Like the families above they carry no
//! label but `keyward_fleet_info`'s, which names the host (join on it, or on the scrape's own labels).
//!
//! | metric | type | from `fleet` |
//! |---|---|---|
//! | `keyward_fleet_info{node}` | gauge | 1, labelled with `node_id` |
//! | `keyward_fleet_engine_reachable` | gauge | `engine_reachable`, 1 or 0 |
//! | `keyward_fleet_diverged` | gauge | `diverged`, 1 or 0 |
//! | `keyward_fleet_applied_seq`, `keyward_fleet_head_seq` | gauge | `applied_seq`, `head_seq` |
//! | `keyward_fleet_lag_changes` | gauge | `head_seq - applied_seq`, as `keyward stats --json` shows it |
//! | `keyward_fleet_last_sync_timestamp_seconds` | gauge | `last_sync_at`; no sample before the first sync |
//! | `keyward_fleet_changes_applied_total` | counter | `changes_applied` |
//! | `keyward_fleet_engine_queries_total` | counter | `engine_queries` |
//! | `keyward_fleet_reconnects_total` | counter | `reconnects` |
//!
//! A daemon serving forward auth (`[http]`) adds the endpoint's families, last; one that does not has none.
//!
//! | metric | type | from `http` |
//! |---|---|---|
//! | `keyward_http_connections_open` | gauge | `connections_open` |
//! | `keyward_http_connections_total` | counter | `connections_total` |
//! | `keyward_http_connections_forbidden_total` | counter | `connections_forbidden` |
//! | `keyward_http_answers_total{status}` | counter | `answers`, every status the daemon counted |
//!
//! The percentiles of `keyward stats` are not exported: Prometheus derives them from the histogram
//! (`histogram_quantile`), and pre-computed quantiles cannot be aggregated across daemons.

use std::fmt::Write as _;

use keyward_protocol::{FleetFigures, HttpFigures, StatsReport, VerifyCode};

use super::stats::{bound_label, fleet_lag, keys_by_status};

/// The exposition of `report`, ending with a newline.
pub(crate) fn exposition(report: &StatsReport) -> String {
    let mut text = Exposition::default();
    text.family("keyward_up", "gauge", "Whether keywardd answered the stats request (always 1 when printed).");
    text.sample("keyward_up", &[], 1);
    text.family("keyward_build_info", "gauge", "The version of the running keywardd, as a label; always 1.");
    text.sample("keyward_build_info", &[("version", &report.version)], 1);
    text.family("keyward_uptime_seconds", "gauge", "Seconds since keywardd started.");
    text.sample("keyward_uptime_seconds", &[], report.uptime_seconds);

    text.family("keyward_keys", "gauge", "Keys known to keywardd, by status.");
    for (status, count) in keys_by_status(report) {
        text.sample("keyward_keys", &[("status", &status)], count);
    }

    text.family("keyward_connections_open", "gauge", "Connections open now, on both sockets.");
    text.sample("keyward_connections_open", &[], report.connections_open);
    text.family("keyward_connections_total", "counter", "Connections accepted since start, on both sockets.");
    text.sample("keyward_connections_total", &[], report.connections_total);
    text.family(
        "keyward_connections_forbidden_total",
        "counter",
        "Connections refused since start because of their peer's credentials.",
    );
    text.sample("keyward_connections_forbidden_total", &[], report.connections_forbidden);

    text.family("keyward_verify_total", "counter", "Verifies answered since start, by outcome code.");
    for code in VerifyCode::ALL {
        let count = report.verifies.get(&code).copied().unwrap_or(0);
        text.sample("keyward_verify_total", &[("code", code.as_str())], count);
    }

    let latency = &report.verify_latency;
    text.family(
        "keyward_verify_duration_seconds",
        "histogram",
        "Time from a verify request's decoding to its answer, in seconds.",
    );
    for (bound, count) in &latency.buckets {
        text.sample("keyward_verify_duration_seconds_bucket", &[("le", &bound_label(*bound))], *count);
    }
    // A report without a +Inf bucket would make the histogram invalid; the count is that bucket by definition.
    if !latency.buckets.last().is_some_and(|(bound, _)| bound.is_infinite()) {
        text.sample("keyward_verify_duration_seconds_bucket", &[("le", "+Inf")], latency.count);
    }
    text.sample("keyward_verify_duration_seconds_sum", &[], latency.sum_seconds);
    text.sample("keyward_verify_duration_seconds_count", &[], latency.count);

    text.family(
        "keyward_cache_hits_total",
        "counter",
        "Verifies of a known key answered from the warm digest cache, without Argon2.",
    );
    text.sample("keyward_cache_hits_total", &[], report.cache_hits);
    text.family("keyward_cache_misses_total", "counter", "Verifies of a known key that needed an Argon2 hash.");
    text.sample("keyward_cache_misses_total", &[], report.cache_misses);

    text.family("keyward_argon2_running", "gauge", "Argon2 hashes being computed now.");
    text.sample("keyward_argon2_running", &[], report.argon2_running);
    text.family("keyward_argon2_waiting", "gauge", "Argon2 hashes queued for a worker now.");
    text.sample("keyward_argon2_waiting", &[], report.argon2_waiting);
    text.family("keyward_busy_total", "counter", "Verifies refused with BUSY because the Argon2 queue was full.");
    text.sample("keyward_busy_total", &[], report.busy_refusals);

    text.family("keyward_store_bytes", "gauge", "Size of the data directory's store, in bytes.");
    text.sample("keyward_store_bytes", &[], report.store_bytes);
    text.family(
        "keyward_last_flush_timestamp_seconds",
        "gauge",
        "When counters were last written to the store, Unix seconds; no sample before the first flush.",
    );
    if let Some(at) = report.last_flush_at {
        text.sample("keyward_last_flush_timestamp_seconds", &[], at);
    }
    if let Some(fleet) = &report.fleet {
        fleet_families(&mut text, fleet);
    }
    if let Some(http) = &report.http {
        http_families(&mut text, http);
    }
    text.0
}

/// The families of a daemon serving forward auth; see the module documentation.
fn http_families(text: &mut Exposition, http: &HttpFigures) {
    text.family("keyward_http_connections_open", "gauge", "Connections open now on the forward-auth endpoint.");
    text.sample("keyward_http_connections_open", &[], http.connections_open);
    text.family(
        "keyward_http_connections_total",
        "counter",
        "Connections the forward-auth endpoint accepted since start.",
    );
    text.sample("keyward_http_connections_total", &[], http.connections_total);
    text.family(
        "keyward_http_connections_forbidden_total",
        "counter",
        "Connections to the forward-auth endpoint's Unix sockets refused since start for their peer's credentials.",
    );
    text.sample("keyward_http_connections_forbidden_total", &[], http.connections_forbidden);
    text.family(
        "keyward_http_answers_total",
        "counter",
        "Answers of the forward-auth endpoint since start, by HTTP status.",
    );
    for (status, count) in &http.answers {
        text.sample("keyward_http_answers_total", &[("status", &status.to_string())], count);
    }
}

/// The families of a host in fleet mode; see the module documentation.
fn fleet_families(text: &mut Exposition, fleet: &FleetFigures) {
    text.family("keyward_fleet_info", "gauge", "The fleet node id of this host, as a label; always 1.");
    text.sample("keyward_fleet_info", &[("node", &fleet.node_id)], 1);
    text.family(
        "keyward_fleet_engine_reachable",
        "gauge",
        "Whether this host's last exchange with the fleet engine succeeded (1) or not (0).",
    );
    text.sample("keyward_fleet_engine_reachable", &[], u8::from(fleet.engine_reachable));
    text.family(
        "keyward_fleet_diverged",
        "gauge",
        "Whether this host refuses to follow the fleet engine because it holds changes the engine does not (1).",
    );
    text.sample("keyward_fleet_diverged", &[], u8::from(fleet.diverged));
    text.family("keyward_fleet_applied_seq", "gauge", "The newest fleet change this host has applied.");
    text.sample("keyward_fleet_applied_seq", &[], fleet.applied_seq);
    text.family("keyward_fleet_head_seq", "gauge", "The fleet engine's newest change, as this host last saw it.");
    text.sample("keyward_fleet_head_seq", &[], fleet.head_seq);
    text.family("keyward_fleet_lag_changes", "gauge", "Fleet changes this host is behind the engine's newest.");
    text.sample("keyward_fleet_lag_changes", &[], fleet_lag(fleet));
    text.family(
        "keyward_fleet_last_sync_timestamp_seconds",
        "gauge",
        "When this host last caught up with the fleet engine, Unix seconds; no sample before the first sync.",
    );
    if let Some(at) = fleet.last_sync_at {
        text.sample("keyward_fleet_last_sync_timestamp_seconds", &[], at);
    }
    text.family(
        "keyward_fleet_changes_applied_total",
        "counter",
        "Changes made on other hosts that this host applied since start.",
    );
    text.sample("keyward_fleet_changes_applied_total", &[], fleet.changes_applied);
    text.family(
        "keyward_fleet_engine_queries_total",
        "counter",
        "Queries this host sent to the fleet engine since start (never one for a verify).",
    );
    text.sample("keyward_fleet_engine_queries_total", &[], fleet.engine_queries);
    text.family(
        "keyward_fleet_reconnects_total",
        "counter",
        "Times this host lost its link to the fleet engine and made it again since start.",
    );
    text.sample("keyward_fleet_reconnects_total", &[], fleet.reconnects);
}

#[derive(Default)]
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        // Help texts are ours and hold neither a backslash nor a newline, so they need no escaping.
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (index, (label, value)) in labels.iter().enumerate() {
                if index > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{label}=\"{}\"", escape_label_value(value));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

/// A label value with `\`, `"` and newlines escaped, as the format requires. Values come from the daemon
/// (status names, its version), which a test double or a future daemon could spell in any way.
fn escape_label_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use keyward_protocol::{HttpFigures, LatencySummary};

    use super::*;

    /// One parsed sample line: `name{label="value",...} value`.
    #[derive(Debug)]
    struct Sample {
        name: String,
        labels: BTreeMap<String, String>,
        value: f64,
    }

    /// A strict reader of the subset of the format this module writes: every non-comment line must be a
    /// sample, every sample must follow its family's `# TYPE` line, and a family's samples are contiguous.
    fn parse(text: &str) -> (Vec<Sample>, HashMap<String, String>) {
        assert!(text.ends_with('\n'), "the exposition ends with a newline");
        let mut types: HashMap<String, String> = HashMap::new();
        let mut helps: Vec<String> = Vec::new();
        let mut samples = Vec::new();
        let mut finished: Vec<String> = Vec::new();
        let mut current: Option<String> = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("HELP name text");
                assert!(!help.is_empty(), "{line}");
                helps.push(name.to_owned());
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                assert_eq!(helps.last().map(String::as_str), Some(name), "HELP right before TYPE: {line}");
                assert!(types.insert(name.to_owned(), kind.to_owned()).is_none(), "one TYPE per family: {line}");
                if let Some(done) = current.replace(name.to_owned()) {
                    finished.push(done);
                }
                continue;
            }
            assert!(!line.starts_with('#') && !line.is_empty(), "only HELP, TYPE and samples: {line:?}");
            let sample = parse_sample(line);
            let family = family_of(&sample.name, &types);
            assert_eq!(current.as_deref(), Some(family.as_str()), "{line}: sample after another family's TYPE");
            assert!(!finished.contains(&family), "{line}: family samples are contiguous");
            samples.push(sample);
        }
        (samples, types)
    }

    fn parse_sample(line: &str) -> Sample {
        let (series, value) = line.rsplit_once(' ').expect("name and value");
        let value = match value {
            "+Inf" => f64::INFINITY,
            value => value.parse().unwrap_or_else(|_| panic!("a float value: {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("closing brace: {line}"));
                let labels = body
                    .split(',')
                    .map(|pair| {
                        let (label, quoted) = pair.split_once('=').expect("label=value");
                        let value = quoted.strip_prefix('"').and_then(|v| v.strip_suffix('"')).expect("quoted");
                        assert!(valid_name(label), "label name {label}");
                        (label.to_owned(), value.to_owned())
                    })
                    .collect();
                (name, labels)
            }
        };
        assert!(valid_name(name) && name.starts_with("keyward_"), "metric name {name}");
        Sample { name: name.to_owned(), labels, value }
    }

    fn valid_name(name: &str) -> bool {
        let mut chars = name.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    }

    /// The family a sample belongs to: itself, or a histogram whose `_bucket`, `_sum` or `_count` it is.
    fn family_of(name: &str, types: &HashMap<String, String>) -> String {
        if types.contains_key(name) {
            return name.to_owned();
        }
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix) {
                if types.get(base).map(String::as_str) == Some("histogram") {
                    return base.to_owned();
                }
            }
        }
        panic!("{name} has no TYPE line before it");
    }

    fn report() -> StatsReport {
        let buckets = vec![(1e-6, 0), (2.5e-5, 9), (1e-3, 11), (1.0, 12), (f64::INFINITY, 12)];
        StatsReport {
            version: "0.1.0".into(),
            uptime_seconds: 7384,
            keys: BTreeMap::from([("active".into(), 3), ("revoked".into(), 1)]),
            connections_open: 2,
            connections_total: 17,
            connections_forbidden: 1,
            verifies: BTreeMap::from([(VerifyCode::Valid, 10), (VerifyCode::NotFound, 2)]),
            verify_latency: LatencySummary {
                count: 12,
                sum_seconds: 0.00125,
                p50_seconds: 12e-6,
                p99_seconds: 400e-6,
                p999_seconds: 900e-6,
                buckets,
            },
            cache_hits: 10,
            cache_misses: 2,
            argon2_running: 1,
            argon2_waiting: 0,
            busy_refusals: 0,
            store_bytes: 1_234_567,
            last_flush_at: Some(1_795_435_205),
            fleet: None,
            http: None,
        }
    }

    fn fleet_report() -> StatsReport {
        let fleet = FleetFigures {
            node_id: "web-2".into(),
            engine_reachable: true,
            diverged: false,
            applied_seq: 41,
            head_seq: 44,
            last_sync_at: Some(1_795_435_207),
            changes_applied: 12,
            engine_queries: 345,
            reconnects: 1,
        };
        StatsReport { fleet: Some(fleet), ..report() }
    }

    fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
        let wanted: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let found: Vec<&Sample> = samples.iter().filter(|s| s.name == name && s.labels == wanted).collect();
        assert_eq!(found.len(), 1, "exactly one {name}{labels:?}");
        found[0].value
    }

    #[test]
    fn every_line_parses_and_every_family_is_typed() {
        let text = exposition(&report());
        let (samples, types) = parse(&text);
        for (name, kind) in [
            ("keyward_up", "gauge"),
            ("keyward_uptime_seconds", "gauge"),
            ("keyward_keys", "gauge"),
            ("keyward_connections_open", "gauge"),
            ("keyward_connections_total", "counter"),
            ("keyward_connections_forbidden_total", "counter"),
            ("keyward_verify_total", "counter"),
            ("keyward_verify_duration_seconds", "histogram"),
            ("keyward_cache_hits_total", "counter"),
            ("keyward_cache_misses_total", "counter"),
            ("keyward_argon2_running", "gauge"),
            ("keyward_argon2_waiting", "gauge"),
            ("keyward_busy_total", "counter"),
            ("keyward_store_bytes", "gauge"),
            ("keyward_last_flush_timestamp_seconds", "gauge"),
        ] {
            assert_eq!(types.get(name).map(String::as_str), Some(kind), "{name}");
        }
        for (name, kind) in &types {
            assert_eq!(name.ends_with("_total"), kind == "counter", "{name}: counters and only counters end in _total");
        }
        assert_eq!(value(&samples, "keyward_up", &[]), 1.0);
        assert_eq!(value(&samples, "keyward_build_info", &[("version", "0.1.0")]), 1.0);
        assert_eq!(value(&samples, "keyward_uptime_seconds", &[]), 7384.0);
        assert_eq!(value(&samples, "keyward_connections_forbidden_total", &[]), 1.0);
        assert_eq!(value(&samples, "keyward_store_bytes", &[]), 1_234_567.0);
        assert_eq!(value(&samples, "keyward_last_flush_timestamp_seconds", &[]), 1_795_435_205.0);
        assert_eq!(value(&samples, "keyward_cache_hits_total", &[]), 10.0);
        assert_eq!(value(&samples, "keyward_argon2_running", &[]), 1.0);
    }

    #[test]
    fn every_status_and_code_is_present() {
        let (samples, _) = parse(&exposition(&report()));
        for status in ["active", "expired", "revoked", "inactive", "legacy", "sunset"] {
            let expected = match status {
                "active" => 3.0,
                "revoked" => 1.0,
                _ => 0.0,
            };
            assert_eq!(value(&samples, "keyward_keys", &[("status", status)]), expected, "{status}");
        }
        for code in VerifyCode::ALL {
            let expected = match code {
                VerifyCode::Valid => 10.0,
                VerifyCode::NotFound => 2.0,
                _ => 0.0,
            };
            assert_eq!(value(&samples, "keyward_verify_total", &[("code", code.as_str())]), expected, "{code}");
        }
    }

    #[test]
    fn the_histogram_is_cumulative_and_ends_at_inf() {
        let (samples, _) = parse(&exposition(&report()));
        let buckets: Vec<&Sample> =
            samples.iter().filter(|s| s.name == "keyward_verify_duration_seconds_bucket").collect();
        let bounds: Vec<f64> = buckets
            .iter()
            .map(|s| match s.labels["le"].as_str() {
                "+Inf" => f64::INFINITY,
                le => le.parse().expect("a float bound"),
            })
            .collect();
        assert!(bounds.windows(2).all(|pair| pair[0] < pair[1]), "bounds increase: {bounds:?}");
        assert_eq!(bounds.last(), Some(&f64::INFINITY));
        assert!(buckets.windows(2).all(|pair| pair[0].value <= pair[1].value), "counts never decrease");
        assert_eq!(buckets[0].labels["le"], "0.000001");
        let count = value(&samples, "keyward_verify_duration_seconds_count", &[]);
        assert_eq!(buckets.last().unwrap().value, count, "+Inf holds every observation");
        assert_eq!(count, 12.0);
        assert_eq!(value(&samples, "keyward_verify_duration_seconds_sum", &[]), 0.00125);
    }

    #[test]
    fn an_idle_daemon_still_has_a_valid_histogram_and_no_flush_sample() {
        let idle = StatsReport { version: "0.1.0".into(), ..StatsReport::default() };
        let text = exposition(&idle);
        let (samples, types) = parse(&text);
        assert!(types.contains_key("keyward_last_flush_timestamp_seconds"));
        assert!(!samples.iter().any(|s| s.name == "keyward_last_flush_timestamp_seconds"), "never flushed");
        assert_eq!(value(&samples, "keyward_verify_duration_seconds_bucket", &[("le", "+Inf")]), 0.0);
        assert_eq!(value(&samples, "keyward_verify_total", &[("code", "RATE_LIMITED")]), 0.0);
    }

    #[test]
    fn a_daemon_on_its_own_has_no_fleet_family() {
        let text = exposition(&report());
        assert!(!text.contains("keyward_fleet"), "{text}");
        assert!(text.ends_with(
            "# TYPE keyward_last_flush_timestamp_seconds gauge\nkeyward_last_flush_timestamp_seconds 1795435205\n"
        ));
    }

    #[test]
    fn a_fleet_host_adds_its_families_after_the_others() {
        let text = exposition(&fleet_report());
        let fleet = text.strip_prefix(&exposition(&report())).expect("the single-host exposition, then the fleet's");
        assert!(fleet.starts_with("# HELP keyward_fleet_info "), "{fleet}");
        let (samples, types) = parse(&text);
        for (name, kind, expected) in [
            ("keyward_fleet_engine_reachable", "gauge", 1.0),
            ("keyward_fleet_diverged", "gauge", 0.0),
            ("keyward_fleet_applied_seq", "gauge", 41.0),
            ("keyward_fleet_head_seq", "gauge", 44.0),
            ("keyward_fleet_lag_changes", "gauge", 3.0),
            ("keyward_fleet_last_sync_timestamp_seconds", "gauge", 1_795_435_207.0),
            ("keyward_fleet_changes_applied_total", "counter", 12.0),
            ("keyward_fleet_engine_queries_total", "counter", 345.0),
            ("keyward_fleet_reconnects_total", "counter", 1.0),
        ] {
            assert_eq!(types.get(name).map(String::as_str), Some(kind), "{name}");
            assert_eq!(value(&samples, name, &[]), expected, "{name}");
        }
        assert_eq!(types.get("keyward_fleet_info").map(String::as_str), Some("gauge"));
        assert_eq!(value(&samples, "keyward_fleet_info", &[("node", "web-2")]), 1.0);
        for (name, kind) in &types {
            assert_eq!(name.ends_with("_total"), kind == "counter", "{name}: counters and only counters end in _total");
        }
        assert!(fleet.contains("\nkeyward_fleet_lag_changes 3\n"), "{fleet}");
    }

    #[test]
    fn a_daemon_serving_forward_auth_adds_its_families_last() {
        let http = HttpFigures {
            connections_open: 2,
            connections_total: 40,
            connections_forbidden: 1,
            answers: BTreeMap::from([(200, 37), (401, 3)]),
        };
        let text = exposition(&StatsReport { http: Some(http), ..report() });
        let added =
            text.strip_prefix(&exposition(&report())).expect("the exposition without [http], then the endpoint's");
        assert!(added.starts_with("# HELP keyward_http_connections_open "), "{added}");
        let (samples, types) = parse(&text);
        for (name, kind, expected) in [
            ("keyward_http_connections_open", "gauge", 2.0),
            ("keyward_http_connections_total", "counter", 40.0),
            ("keyward_http_connections_forbidden_total", "counter", 1.0),
        ] {
            assert_eq!(types.get(name).map(String::as_str), Some(kind), "{name}");
            assert_eq!(value(&samples, name, &[]), expected, "{name}");
        }
        assert_eq!(types.get("keyward_http_answers_total").map(String::as_str), Some("counter"));
        assert_eq!(value(&samples, "keyward_http_answers_total", &[("status", "200")]), 37.0);
        assert_eq!(value(&samples, "keyward_http_answers_total", &[("status", "401")]), 3.0);
        assert!(!exposition(&report()).contains("keyward_http"), "no [http], no families");
    }

    #[test]
    fn a_lost_fleet_host_reads_as_such() {
        let mut lost = fleet_report();
        let fleet = lost.fleet.as_mut().unwrap();
        (fleet.engine_reachable, fleet.diverged, fleet.applied_seq, fleet.head_seq) = (false, true, 44, 40);
        fleet.last_sync_at = None;
        fleet.node_id = "web \"2\"".into();
        let text = exposition(&lost);
        let (samples, types) = parse(&text);
        assert_eq!(value(&samples, "keyward_fleet_engine_reachable", &[]), 0.0);
        assert_eq!(value(&samples, "keyward_fleet_diverged", &[]), 1.0);
        assert_eq!(value(&samples, "keyward_fleet_lag_changes", &[]), 0.0, "a diverged host is ahead, not behind");
        assert!(types.contains_key("keyward_fleet_last_sync_timestamp_seconds"));
        assert!(!samples.iter().any(|s| s.name == "keyward_fleet_last_sync_timestamp_seconds"), "never synced");
        assert!(text.contains(r#"keyward_fleet_info{node="web \"2\""} 1"#), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        let odd = StatsReport {
            version: "1.0 \"beta\"\\\nx".into(),
            keys: BTreeMap::from([("new\"status".into(), 1)]),
            ..report()
        };
        let text = exposition(&odd);
        assert!(text.contains(r#"keyward_build_info{version="1.0 \"beta\"\\\nx"} 1"#), "{text}");
        assert!(text.contains(r#"keyward_keys{status="new\"status"} 1"#), "{text}");
        assert_eq!(text.lines().filter(|line| line.starts_with("keyward_build_info")).count(), 1);
    }
}
