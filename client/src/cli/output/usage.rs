//! What `keyward usage` prints: one key's verifications by outcome (totals, then the hourly and daily
//! series), or a workspace's keys by verifications, busiest first; as tables or as JSON counts by stable
//! code name.
//!
//! The counts are printed as the daemon reported them: unlike `stats`, which fills in every code with 0
//! for the series a monitor watches, a usage report shows only what happened (`-` where nothing did).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{self, Write};

use keyward_protocol::{KeyUsage, UsageBucket, UsageReport, VerifyCode};
use serde::Serialize;

use super::format::{counts_text, human_time, printable, rfc3339};
use super::{write_fields, write_json, write_table, Format};

/// One key's usage as JSON.
#[derive(Debug, Serialize)]
struct UsageJson<'a> {
    key_id: &'a str,
    totals: BTreeMap<&'static str, u64>,
    hourly: Vec<BucketJson>,
    daily: Vec<BucketJson>,
}

#[derive(Debug, Serialize)]
struct BucketJson {
    start: String,
    counts: BTreeMap<&'static str, u64>,
}

/// One key's line in a workspace's usage as JSON.
#[derive(Debug, Serialize)]
struct KeyUsageJson<'a> {
    key_id: &'a str,
    name: &'a str,
    total: u64,
    totals: BTreeMap<&'static str, u64>,
}

/// Counts by stable code name.
fn counts_json(counts: &BTreeMap<VerifyCode, u64>) -> BTreeMap<&'static str, u64> {
    counts.iter().map(|(code, n)| (code.as_str(), *n)).collect()
}

fn bucket_json(bucket: &UsageBucket) -> BucketJson {
    BucketJson { start: rfc3339(bucket.start), counts: counts_json(&bucket.counts) }
}

/// Prints one key's usage: totals, then the hourly and daily series.
pub(crate) fn usage(out: &mut dyn Write, format: Format, report: &UsageReport) -> io::Result<()> {
    if format == Format::Json {
        let view = UsageJson {
            key_id: &report.key_id,
            totals: counts_json(&report.totals),
            hourly: report.hourly.iter().map(bucket_json).collect(),
            daily: report.daily.iter().map(bucket_json).collect(),
        };
        return write_json(out, &view);
    }
    let total: u64 = report.totals.values().sum();
    writeln!(out, "Verifications of key {} over the last 90 days: {total}", report.key_id)?;
    if total == 0 {
        return Ok(());
    }
    let fields: Vec<(&str, Cow<'_, str>)> =
        report.totals.iter().map(|(code, n)| (code.as_str(), n.to_string().into())).collect();
    writeln!(out)?;
    write_fields(out, &fields)?;
    for (title, column, buckets) in
        [("Hourly, last 48 hours (UTC)", "HOUR", &report.hourly), ("Daily, last 90 days (UTC)", "DAY", &report.daily)]
    {
        if buckets.is_empty() {
            continue;
        }
        writeln!(out)?;
        writeln!(out, "{title}")?;
        let rows: Vec<[String; 3]> = buckets
            .iter()
            .map(|bucket| {
                [human_time(bucket.start), bucket.counts.values().sum::<u64>().to_string(), counts_text(&bucket.counts)]
            })
            .collect();
        write_table(out, &[column, "TOTAL", "BY CODE"], &rows)?;
    }
    Ok(())
}

/// Prints a workspace's keys by verifications, busiest first.
pub(crate) fn workspace_usage(
    out: &mut dyn Write,
    format: Format,
    workspace: &str,
    keys: &[KeyUsage],
) -> io::Result<()> {
    if format == Format::Json {
        let views: Vec<KeyUsageJson<'_>> = keys
            .iter()
            .map(|key| KeyUsageJson {
                key_id: &key.key_id,
                name: &key.name,
                total: key.total,
                totals: counts_json(&key.totals),
            })
            .collect();
        return write_json(out, &views);
    }
    if keys.is_empty() {
        return writeln!(out, "No keys in workspace {}.", printable(workspace));
    }
    let rows: Vec<[String; 4]> = keys
        .iter()
        .map(|key| {
            [key.key_id.clone(), printable(&key.name).into_owned(), key.total.to_string(), counts_text(&key.totals)]
        })
        .collect();
    write_table(out, &["ID", "NAME", "TOTAL", "BY CODE"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::output::samples::{render, render_json};
    use crate::fixtures::NOON;
    use serde_json::json;

    fn usage_report() -> UsageReport {
        let counts = BTreeMap::from([(VerifyCode::Valid, 3), (VerifyCode::InsufficientScope, 2)]);
        UsageReport {
            key_id: "AbCdEf012345".into(),
            totals: counts.clone(),
            hourly: vec![UsageBucket { start: NOON, counts: counts.clone() }],
            daily: vec![UsageBucket { start: NOON - 12 * 3600, counts }],
        }
    }

    #[test]
    fn usage_json_and_text() {
        let report = usage_report();
        let value = render_json(|out| usage(out, Format::Json, &report));
        assert_eq!(
            value,
            json!({
                "key_id": "AbCdEf012345",
                "totals": {"VALID": 3, "INSUFFICIENT_SCOPE": 2},
                "hourly": [{"start": "2026-11-23T12:00:00Z", "counts": {"VALID": 3, "INSUFFICIENT_SCOPE": 2}}],
                "daily": [{"start": "2026-11-23T00:00:00Z", "counts": {"VALID": 3, "INSUFFICIENT_SCOPE": 2}}],
            })
        );
        let text = render(|out| usage(out, Format::Text, &report));
        let expected = [
            "Verifications of key AbCdEf012345 over the last 90 days: 5",
            "",
            "VALID               3",
            "INSUFFICIENT_SCOPE  2",
            "",
            "Hourly, last 48 hours (UTC)",
            "HOUR              TOTAL  BY CODE",
            "2026-11-23 12:00  5      VALID 3, INSUFFICIENT_SCOPE 2",
            "",
            "Daily, last 90 days (UTC)",
            "DAY               TOTAL  BY CODE",
            "2026-11-23 00:00  5      VALID 3, INSUFFICIENT_SCOPE 2",
        ];
        assert_eq!(text, expected.map(|line| format!("{line}\n")).concat());
        let quiet = UsageReport { key_id: "AbCdEf012345".into(), ..UsageReport::default() };
        assert_eq!(
            render(|out| usage(out, Format::Text, &quiet)),
            "Verifications of key AbCdEf012345 over the last 90 days: 0\n"
        );
    }

    #[test]
    fn workspace_usage_json_and_text() {
        let keys = [
            KeyUsage { key_id: "AAAAAAAAAAAA".into(), name: "busy".into(), total: 6, totals: usage_report().totals },
            KeyUsage { key_id: "BBBBBBBBBBBB".into(), name: "quiet".into(), total: 0, totals: BTreeMap::new() },
        ];
        let value = render_json(|out| workspace_usage(out, Format::Json, "acme", &keys));
        assert_eq!(
            value,
            json!([
                {"key_id": "AAAAAAAAAAAA", "name": "busy", "total": 6, "totals": {"VALID": 3, "INSUFFICIENT_SCOPE": 2}},
                {"key_id": "BBBBBBBBBBBB", "name": "quiet", "total": 0, "totals": {}},
            ])
        );
        let text = render(|out| workspace_usage(out, Format::Text, "acme", &keys));
        let expected = [
            "ID            NAME   TOTAL  BY CODE",
            "AAAAAAAAAAAA  busy   6      VALID 3, INSUFFICIENT_SCOPE 2",
            "BBBBBBBBBBBB  quiet  0      -",
        ];
        assert_eq!(text, expected.map(|line| format!("{line}\n")).concat());
    }
}
