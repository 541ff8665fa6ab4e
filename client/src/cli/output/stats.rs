//! What `keyward stats` prints: the daemon's counters as aligned text for people, or as JSON with every
//! key status and verify code present (0 when none). A host in fleet mode adds its fleet figures: lines
//! after the others in text, a `fleet` object in JSON (`null` for a daemon on its own, whose output is
//! otherwise the same). A daemon serving forward auth adds its endpoint's figures the same way (`http`).
//!
//! This module also owns the three readings of a [`StatsReport`] that the Prometheus exposition shares
//! with the JSON, so that both say the same: every key status with its count ([`keys_by_status`]), a
//! histogram bucket's bound as a label ([`bound_label`]), and how many changes a host is behind the fleet
//! engine ([`fleet_lag`]). `prometheus` uses them from here; this module uses nothing of it.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{self, Write};

use keyward_protocol::{FleetFigures, HttpFigures, KeyStatus, StatsReport, VerifyCode};
use serde::Serialize;

use super::format::{bytes_text, change_text, counts_text, duration_text, human_time, micros_text, printable, rfc3339};
use super::{write_fields, write_json, Format};

/// The daemon's counters as JSON: the protocol's field names, with every key status and verify code
/// present (0 when none), times as RFC 3339, histogram bounds as strings (`"+Inf"` for the last), and the
/// fleet figures with their lag.
#[derive(Debug, Serialize)]
struct StatsJson<'a> {
    version: &'a str,
    uptime_seconds: u64,
    keys: BTreeMap<String, u64>,
    connections_open: u64,
    connections_total: u64,
    connections_forbidden: u64,
    verifies: BTreeMap<&'static str, u64>,
    verify_latency: LatencyJson,
    cache_hits: u64,
    cache_misses: u64,
    /// `null` before the first verify of a known key.
    cache_hit_ratio: Option<f64>,
    argon2_running: u64,
    argon2_waiting: u64,
    busy_refusals: u64,
    store_bytes: u64,
    last_flush_at: Option<String>,
    /// `null` for a daemon on its own.
    fleet: Option<FleetFiguresJson<'a>>,
    /// `null` when `[http]` listens nowhere; answers keyed by status (`"401"`), those the daemon counted.
    http: Option<&'a HttpFigures>,
}

/// A host's fleet figures as JSON: the protocol's field names, `last_sync_at` as RFC 3339, and the lag
/// computed from `applied_seq` and `head_seq`.
#[derive(Debug, Serialize)]
struct FleetFiguresJson<'a> {
    node_id: &'a str,
    engine_reachable: bool,
    diverged: bool,
    applied_seq: u64,
    head_seq: u64,
    lag: u64,
    last_sync_at: Option<String>,
    changes_applied: u64,
    engine_queries: u64,
    reconnects: u64,
}

#[derive(Debug, Serialize)]
struct LatencyJson {
    count: u64,
    sum_seconds: f64,
    p50_seconds: f64,
    p99_seconds: f64,
    p999_seconds: f64,
    buckets: Vec<BucketBoundJson>,
}

/// One cumulative histogram bucket: observations at or below `le` seconds.
#[derive(Debug, Serialize)]
struct BucketBoundJson {
    le: String,
    count: u64,
}

/// Every key status with its count (0 when the daemon reported none), in lifecycle order, then any status
/// name this client does not know.
pub(crate) fn keys_by_status(report: &StatsReport) -> Vec<(String, u64)> {
    const STATUSES: [KeyStatus; 6] = [
        KeyStatus::Active,
        KeyStatus::Inactive,
        KeyStatus::Expired,
        KeyStatus::Revoked,
        KeyStatus::Legacy,
        KeyStatus::Sunset,
    ];
    let mut counts: Vec<(String, u64)> = STATUSES
        .iter()
        .map(|status| (status.as_str().to_owned(), report.keys.get(status.as_str()).copied().unwrap_or(0)))
        .collect();
    for (name, count) in &report.keys {
        if !STATUSES.iter().any(|status| status.as_str() == name) {
            counts.push((name.clone(), *count));
        }
    }
    counts
}

/// How many changes a host is behind the engine's newest as it last saw it (0 for a diverged host, which
/// is ahead).
pub(crate) fn fleet_lag(fleet: &FleetFigures) -> u64 {
    fleet.head_seq.saturating_sub(fleet.applied_seq)
}

/// The share of verifies of known keys answered without Argon2; `None` before the first.
fn cache_hit_ratio(report: &StatsReport) -> Option<f64> {
    let lookups = report.cache_hits + report.cache_misses;
    (lookups > 0).then(|| report.cache_hits as f64 / lookups as f64)
}

/// Prints the daemon's counters (`stats`).
pub(crate) fn stats(out: &mut dyn Write, format: Format, report: &StatsReport) -> io::Result<()> {
    if format == Format::Json {
        return write_json(out, &stats_json(report));
    }
    write_fields(out, &stats_fields(report))
}

/// The daemon's counters as JSON; see [`StatsJson`].
fn stats_json(report: &StatsReport) -> StatsJson<'_> {
    let latency = &report.verify_latency;
    StatsJson {
        version: &report.version,
        uptime_seconds: report.uptime_seconds,
        keys: keys_by_status(report).into_iter().collect(),
        connections_open: report.connections_open,
        connections_total: report.connections_total,
        connections_forbidden: report.connections_forbidden,
        verifies: VerifyCode::ALL
            .iter()
            .map(|code| (code.as_str(), report.verifies.get(code).copied().unwrap_or(0)))
            .collect(),
        verify_latency: LatencyJson {
            count: latency.count,
            sum_seconds: latency.sum_seconds,
            p50_seconds: latency.p50_seconds,
            p99_seconds: latency.p99_seconds,
            p999_seconds: latency.p999_seconds,
            buckets: latency
                .buckets
                .iter()
                .map(|(bound, count)| BucketBoundJson { le: bound_label(*bound), count: *count })
                .collect(),
        },
        cache_hits: report.cache_hits,
        cache_misses: report.cache_misses,
        cache_hit_ratio: cache_hit_ratio(report),
        argon2_running: report.argon2_running,
        argon2_waiting: report.argon2_waiting,
        busy_refusals: report.busy_refusals,
        store_bytes: report.store_bytes,
        last_flush_at: report.last_flush_at.map(rfc3339),
        fleet: report.fleet.as_ref().map(fleet_json),
        http: report.http.as_ref(),
    }
}

fn fleet_json(fleet: &FleetFigures) -> FleetFiguresJson<'_> {
    FleetFiguresJson {
        node_id: &fleet.node_id,
        engine_reachable: fleet.engine_reachable,
        diverged: fleet.diverged,
        applied_seq: fleet.applied_seq,
        head_seq: fleet.head_seq,
        lag: fleet_lag(fleet),
        last_sync_at: fleet.last_sync_at.map(rfc3339),
        changes_applied: fleet.changes_applied,
        engine_queries: fleet.engine_queries,
        reconnects: fleet.reconnects,
    }
}

/// The daemon's counters as aligned text, one line per subject, the fleet figures last.
fn stats_fields(report: &StatsReport) -> Vec<(&'static str, Cow<'_, str>)> {
    let latency = &report.verify_latency;
    let keys = keys_by_status(report);
    let key_total: u64 = keys.iter().map(|(_, n)| n).sum();
    let key_counts: Vec<String> =
        keys.iter().filter(|(_, n)| *n > 0).map(|(status, n)| format!("{n} {}", printable(status))).collect();
    let verify_total: u64 = report.verifies.values().sum();
    let mut fields = vec![
        ("Version", printable(&report.version)),
        ("Uptime", duration_text(report.uptime_seconds).into()),
        (
            "Keys",
            if key_counts.is_empty() {
                "none".into()
            } else {
                format!("{} ({key_total} in all)", key_counts.join(", ")).into()
            },
        ),
        (
            "Connections",
            format!(
                "{} open, {} since start, {} forbidden",
                report.connections_open, report.connections_total, report.connections_forbidden
            )
            .into(),
        ),
        (
            "Verifies",
            match verify_total {
                0 => "none yet".into(),
                _ => format!("{verify_total} since start: {}", counts_text(&report.verifies)).into(),
            },
        ),
        (
            "Verify latency",
            match latency.count {
                0 => "-".into(),
                _ => format!(
                    "p50 {}, p99 {}, p99.9 {}",
                    micros_text(latency.p50_seconds),
                    micros_text(latency.p99_seconds),
                    micros_text(latency.p999_seconds)
                )
                .into(),
            },
        ),
        (
            "Cache hit ratio",
            match cache_hit_ratio(report) {
                None => "- (no verify of a known key yet)".into(),
                Some(ratio) => {
                    format!("{:.1} % ({} hits, {} misses)", ratio * 100.0, report.cache_hits, report.cache_misses)
                        .into()
                }
            },
        ),
        ("Argon2", format!("{} running, {} waiting", report.argon2_running, report.argon2_waiting).into()),
        ("BUSY refusals", report.busy_refusals.to_string().into()),
        ("Store size", bytes_text(report.store_bytes).into()),
        ("Last flush", time_text(report.last_flush_at).into()),
    ];
    if let Some(fleet) = &report.fleet {
        fields.extend(fleet_fields(fleet));
    }
    if let Some(http) = &report.http {
        fields.push(("HTTP endpoint", http_text(http).into()));
    }
    fields
}

/// The forward-auth endpoint's figures on one line: `2 open, 40 since start, 0 forbidden; answered 37 × 200,
/// 3 × 401`.
fn http_text(http: &HttpFigures) -> String {
    let answers: Vec<String> = http.answers.iter().map(|(status, n)| format!("{n} × {status}")).collect();
    let answered =
        if answers.is_empty() { "nothing answered yet".to_owned() } else { format!("answered {}", answers.join(", ")) };
    format!(
        "{} open, {} since start, {} forbidden; {answered}",
        http.connections_open, http.connections_total, http.connections_forbidden
    )
}

/// A host's fleet figures as text: a diverged host says so loudly, right after whether the engine answers.
fn fleet_fields(fleet: &FleetFigures) -> Vec<(&'static str, Cow<'_, str>)> {
    let mut fields: Vec<(&str, Cow<'_, str>)> = vec![
        ("Fleet node", printable(&fleet.node_id)),
        (
            "Engine reachable",
            if fleet.engine_reachable {
                "yes".into()
            } else {
                "no: changes fail with ENGINE_UNAVAILABLE until it answers; verifies go on from the replica".into()
            },
        ),
    ];
    if fleet.diverged {
        fields.push((
            "Engine diverged",
            "YES: this host holds changes the engine does not and refuses to follow it; changes fail with \
             ENGINE_DIVERGED, verifies go on from the replica"
                .into(),
        ));
    }
    fields.extend([
        (
            "Applied change",
            format!("{} of {} (lag {})", change_text(fleet.applied_seq), change_text(fleet.head_seq), fleet_lag(fleet))
                .into(),
        ),
        ("Last sync", time_text(fleet.last_sync_at).into()),
        ("Changes applied", format!("{} from other hosts since start", fleet.changes_applied).into()),
        ("Engine queries", format!("{} since start", fleet.engine_queries).into()),
        ("Engine reconnects", format!("{} since start", fleet.reconnects).into()),
    ]);
    fields
}

/// `YYYY-MM-DD HH:MM UTC`, or `never`.
fn time_text(at: Option<i64>) -> String {
    at.map_or_else(|| "never".to_owned(), |at| format!("{} UTC", human_time(at)))
}

/// A bucket's upper bound as its `le` label: `+Inf`, or the shortest decimal that reads back as the same
/// float (`0.000001`, `0.25`, `1`).
pub(crate) fn bound_label(bound: f64) -> String {
    if bound.is_infinite() && bound > 0.0 {
        "+Inf".to_owned()
    } else {
        bound.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::output::samples::{render, render_json};
    use crate::fixtures::NOON;
    use serde_json::{json, Value};

    fn stats_report() -> StatsReport {
        StatsReport {
            version: "0.1.0".into(),
            uptime_seconds: 7384,
            keys: BTreeMap::from([("active".into(), 3), ("revoked".into(), 1)]),
            connections_open: 2,
            connections_total: 17,
            connections_forbidden: 0,
            verifies: BTreeMap::from([(VerifyCode::Valid, 10), (VerifyCode::NotFound, 2)]),
            verify_latency: keyward_protocol::LatencySummary {
                count: 12,
                sum_seconds: 0.00125,
                p50_seconds: 12.4e-6,
                p99_seconds: 3.5e-6,
                p999_seconds: 0.0009,
                buckets: vec![(1e-6, 0), (2.5e-5, 9), (f64::INFINITY, 12)],
            },
            cache_hits: 10,
            cache_misses: 2,
            argon2_running: 1,
            argon2_waiting: 0,
            busy_refusals: 4,
            store_bytes: 1_234_567,
            last_flush_at: Some(NOON + 5),
            fleet: None,
            http: None,
        }
    }

    /// A host three changes behind, which has reconnected once.
    fn fleet_figures() -> FleetFigures {
        FleetFigures {
            node_id: "web-2".into(),
            engine_reachable: true,
            diverged: false,
            applied_seq: 41,
            head_seq: 44,
            last_sync_at: Some(NOON + 7),
            changes_applied: 12,
            engine_queries: 345,
            reconnects: 1,
        }
    }

    #[test]
    fn stats_text_reads_at_a_glance() {
        let text = render(|out| stats(out, Format::Text, &stats_report()));
        let expected = [
            "Version          0.1.0",
            "Uptime           2 h 3 min",
            "Keys             3 active, 1 revoked (4 in all)",
            "Connections      2 open, 17 since start, 0 forbidden",
            "Verifies         12 since start: VALID 10, NOT_FOUND 2",
            "Verify latency   p50 12 µs, p99 3.5 µs, p99.9 900 µs",
            "Cache hit ratio  83.3 % (10 hits, 2 misses)",
            "Argon2           1 running, 0 waiting",
            "BUSY refusals    4",
            "Store size       1.2 MiB (1234567 bytes)",
            "Last flush       2026-11-23 12:00 UTC",
        ];
        assert_eq!(text, expected.map(|line| format!("{line}\n")).concat());
        let idle = StatsReport { version: "0.1.0".into(), ..StatsReport::default() };
        let text = render(|out| stats(out, Format::Text, &idle));
        for line in
            ["Keys             none", "Verifies         none yet", "Verify latency   -", "Last flush       never"]
        {
            assert!(text.contains(line), "{line}: {text}");
        }
        assert!(text.contains("Store size       0 bytes"), "{text}");
        assert_eq!((duration_text(42), duration_text(90_000)), ("42 s".into(), "1 d 1 h".into()));
    }

    #[test]
    fn stats_json_has_every_status_and_code() {
        let value = render_json(|out| stats(out, Format::Json, &stats_report()));
        assert_eq!(
            value["keys"],
            json!({"active": 3, "inactive": 0, "expired": 0, "revoked": 1, "legacy": 0, "sunset": 0})
        );
        assert_eq!(value["verifies"].as_object().unwrap().len(), VerifyCode::ALL.len());
        assert_eq!((&value["verifies"]["VALID"], &value["verifies"]["RATE_LIMITED"]), (&json!(10), &json!(0)));
        assert_eq!(
            value["verify_latency"]["buckets"],
            json!([{"le": "0.000001", "count": 0}, {"le": "0.000025", "count": 9}, {"le": "+Inf", "count": 12}])
        );
        assert_eq!(value["verify_latency"]["count"], 12);
        assert_eq!(value["cache_hit_ratio"].as_f64().map(|r| (r * 1000.0).round()), Some(833.0));
        assert_eq!(value["last_flush_at"], "2026-11-23T12:00:05Z");
        assert_eq!((&value["connections_total"], &value["busy_refusals"]), (&json!(17), &json!(4)));
        let idle = render_json(|out| stats(out, Format::Json, &StatsReport::default()));
        assert_eq!((&idle["cache_hit_ratio"], &idle["last_flush_at"]), (&Value::Null, &Value::Null));
        assert_eq!(value["fleet"], Value::Null, "a daemon on its own");
        assert!(value.as_object().unwrap().contains_key("fleet"));
    }

    #[test]
    fn stats_text_of_a_fleet_host_ends_with_its_fleet_figures() {
        let report = StatsReport { fleet: Some(fleet_figures()), ..stats_report() };
        let text = render(|out| stats(out, Format::Text, &report));
        let single = render(|out| stats(out, Format::Text, &stats_report()));
        let expected = [
            "Fleet node         web-2",
            "Engine reachable   yes",
            "Applied change     #41 of #44 (lag 3)",
            "Last sync          2026-11-23 12:00 UTC",
            "Changes applied    12 from other hosts since start",
            "Engine queries     345 since start",
            "Engine reconnects  1 since start",
        ];
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[lines.len() - expected.len()..], expected);
        assert_eq!(lines.len(), single.lines().count() + expected.len());
        assert_eq!(lines[0], "Version            0.1.0", "one alignment for every line");
        assert!(!text.contains("diverged"), "{text}");

        let lost = FleetFigures {
            engine_reachable: false,
            diverged: true,
            applied_seq: 44,
            head_seq: 40,
            last_sync_at: None,
            ..fleet_figures()
        };
        let text = render(|out| stats(out, Format::Text, &StatsReport { fleet: Some(lost), ..stats_report() }));
        for line in [
            "Engine reachable   no: changes fail with ENGINE_UNAVAILABLE until it answers; verifies go on from the \
             replica",
            "Engine diverged    YES: this host holds changes the engine does not and refuses to follow it; changes \
             fail with ENGINE_DIVERGED, verifies go on from the replica",
            "Applied change     #44 of #40 (lag 0)",
            "Last sync          never",
        ] {
            assert!(text.contains(&format!("\n{line}\n")), "{line}: {text}");
        }
        let diverged_at = text.find("Engine diverged").unwrap();
        assert!(text.find("Engine reachable").unwrap() < diverged_at && diverged_at < text.find("Applied").unwrap());
    }

    #[test]
    fn a_daemon_serving_forward_auth_shows_its_endpoint_last() {
        let http = HttpFigures {
            connections_open: 2,
            connections_total: 40,
            connections_forbidden: 0,
            answers: BTreeMap::from([(200, 37), (401, 3)]),
        };
        let report = StatsReport { http: Some(http), ..stats_report() };
        let text = render(|out| stats(out, Format::Text, &report));
        assert_eq!(
            text.lines().last(),
            Some("HTTP endpoint    2 open, 40 since start, 0 forbidden; answered 37 × 200, 3 × 401")
        );
        let value = render_json(|out| stats(out, Format::Json, &report));
        assert_eq!(
            value["http"],
            json!({"connections_open": 2, "connections_total": 40, "connections_forbidden": 0,
                   "answers": {"200": 37, "401": 3}})
        );
        let off = render_json(|out| stats(out, Format::Json, &stats_report()));
        assert_eq!(off["http"], Value::Null, "no [http]");
        assert!(!render(|out| stats(out, Format::Text, &stats_report())).contains("HTTP endpoint"));
    }

    #[test]
    fn stats_json_of_a_fleet_host_has_its_figures_and_lag() {
        let report = StatsReport { fleet: Some(fleet_figures()), ..stats_report() };
        let value = render_json(|out| stats(out, Format::Json, &report));
        assert_eq!(
            value["fleet"],
            json!({
                "node_id": "web-2",
                "engine_reachable": true,
                "diverged": false,
                "applied_seq": 41,
                "head_seq": 44,
                "lag": 3,
                "last_sync_at": "2026-11-23T12:00:07Z",
                "changes_applied": 12,
                "engine_queries": 345,
                "reconnects": 1,
            })
        );
        assert_eq!(value["verifies"]["VALID"], 10, "the other counters are unchanged");
        let never = FleetFigures { last_sync_at: None, applied_seq: 50, ..fleet_figures() };
        let value = render_json(|out| stats(out, Format::Json, &StatsReport { fleet: Some(never), ..stats_report() }));
        assert_eq!((&value["fleet"]["last_sync_at"], &value["fleet"]["lag"]), (&Value::Null, &json!(0)));
    }
}
