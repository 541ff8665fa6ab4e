//! `keyward stats` against the real daemon: the text, `--json` and `--prometheus` outputs after a known
//! mix of verifies, and the counts each of them reports.

use std::collections::BTreeMap;

use keyward_tests::{describe, Daemon};
use serde_json::Value;

fn token_of(created: &Value) -> String {
    created["token"].as_str().expect("create --json prints the token").to_owned()
}

/// Three VALID, one INSUFFICIENT_SCOPE, one MALFORMED; one key revoked (its verify answers REVOKED).
fn daemon_with_known_traffic() -> Daemon {
    let daemon = Daemon::start();
    let token = token_of(&daemon.create("acme", &["read:tables"], &[]));
    for _ in 0..3 {
        assert_eq!(daemon.verify_code(&token, &[]), "VALID");
    }
    assert_eq!(daemon.verify_code(&token, &["--scope", "write:tables"]), "INSUFFICIENT_SCOPE");
    assert_eq!(daemon.verify_code("kw_live_not-a-token", &[]), "MALFORMED");
    let revoked = daemon.create("acme", &["read:all"], &[]);
    let id = revoked["id"].as_str().unwrap();
    assert_eq!(daemon.json(&["revoke", id], 0)["status"], "revoked");
    assert_eq!(daemon.verify_code(&token_of(&revoked), &[]), "REVOKED");
    daemon
}

/// The samples of a Prometheus exposition as `series -> value`, where `series` is the line up to the value
/// (`name{label="v"}`); checks on the way that every sample follows its family's `# TYPE` line.
fn samples(text: &str) -> BTreeMap<String, f64> {
    let mut typed: Vec<(String, String)> = Vec::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            typed.push((name.to_owned(), kind.to_owned()));
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line:?}"));
        let name = series.split('{').next().unwrap();
        let (family, kind) = typed.last().unwrap_or_else(|| panic!("{line}: no TYPE line before it"));
        let belongs = name == family
            || (kind == "histogram" && ["_bucket", "_sum", "_count"].iter().any(|s| name == format!("{family}{s}")));
        assert!(belongs, "{line} follows the TYPE line of {family}");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number: {line}"));
        assert!(samples.insert(series.to_owned(), value).is_none(), "duplicate series {series}");
    }
    samples
}

#[test]
fn prometheus_exposition_counts_what_happened() {
    let daemon = daemon_with_known_traffic();
    let output = daemon.cli(&["stats", "--prometheus"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let text = String::from_utf8(output.stdout).expect("UTF-8");
    let samples = samples(&text);
    let at = |series: &str| *samples.get(series).unwrap_or_else(|| panic!("no {series} in\n{text}"));

    assert_eq!(at("keyward_up"), 1.0);
    assert_eq!(at(r#"keyward_verify_total{code="VALID"}"#), 3.0);
    assert_eq!(at(r#"keyward_verify_total{code="INSUFFICIENT_SCOPE"}"#), 1.0);
    assert_eq!(at(r#"keyward_verify_total{code="MALFORMED"}"#), 1.0);
    assert_eq!(at(r#"keyward_verify_total{code="REVOKED"}"#), 1.0);
    assert_eq!(at(r#"keyward_verify_total{code="RATE_LIMITED"}"#), 0.0, "every code is present");
    assert_eq!(at(r#"keyward_keys{status="active"}"#), 1.0);
    assert_eq!(at(r#"keyward_keys{status="revoked"}"#), 1.0);
    assert_eq!(at(r#"keyward_keys{status="sunset"}"#), 0.0, "every status is present");
    assert!(at("keyward_connections_total") >= 7.0, "one connection per CLI run at least");
    assert!(at("keyward_uptime_seconds") >= 0.0);
    assert!(at("keyward_store_bytes") > 0.0);

    let buckets: Vec<(&String, f64)> = samples
        .iter()
        .filter(|(s, _)| s.starts_with("keyward_verify_duration_seconds_bucket"))
        .map(|(s, v)| (s, *v))
        .collect();
    assert!(buckets.len() > 2, "{buckets:?}");
    let mut counts: Vec<(f64, f64)> = buckets
        .iter()
        .map(|(series, count)| {
            let le = series.split("le=\"").nth(1).and_then(|rest| rest.strip_suffix("\"}")).expect("an le label");
            (if le == "+Inf" { f64::INFINITY } else { le.parse().expect("a bound") }, *count)
        })
        .collect();
    counts.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(counts.windows(2).all(|pair| pair[0].1 <= pair[1].1), "cumulative: {counts:?}");
    assert_eq!(counts.last().unwrap(), &(f64::INFINITY, 6.0), "+Inf holds every verify");
    assert_eq!(at("keyward_verify_duration_seconds_count"), 6.0);
    assert!(at("keyward_verify_duration_seconds_sum") > 0.0);
}

#[test]
fn json_and_text_agree_with_the_exposition() {
    let daemon = daemon_with_known_traffic();
    let stats = daemon.json(&["stats"], 0);
    assert_eq!(stats["verifies"]["VALID"], 3);
    assert_eq!(stats["verifies"]["REVOKED"], 1);
    assert_eq!(stats["verifies"]["USAGE_EXCEEDED"], 0);
    assert_eq!(stats["keys"]["active"], 1);
    assert_eq!(stats["keys"]["revoked"], 1);
    assert_eq!(stats["verify_latency"]["count"], 6);
    let buckets = stats["verify_latency"]["buckets"].as_array().expect("buckets");
    assert_eq!(buckets.last().unwrap()["le"], "+Inf");
    assert_eq!(buckets.last().unwrap()["count"], 6);
    assert!(stats["verify_latency"]["p50_seconds"].as_f64().unwrap() > 0.0);
    assert!(stats["version"].is_string() && stats["uptime_seconds"].is_u64());
    assert_eq!(stats["connections_forbidden"], 0);

    let output = daemon.cli(&["stats"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("1 active, 1 revoked (2 in all)"), "{text}");
    assert!(text.contains("6 since start: VALID 3"), "{text}");
    assert!(text.contains("p50 ") && text.contains(" µs"), "{text}");

    let both = daemon.cli(&["stats", "--json", "--prometheus"]);
    assert_eq!(both.status.code(), Some(2), "{}", describe(&both));
    assert!(both.stdout.is_empty());
}
