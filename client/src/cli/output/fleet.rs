//! What `keyward fleet status` and `keyward fleet init` print: the fleet engine as this host sees it
//! (whether it answered and, if not or if this host refuses to follow it, why), then every host that has
//! reported to it with the change it has applied, how far behind it is and when it was last seen; as
//! aligned text and a table, or as JSON with the protocol's field names.
//!
//! An engine that cannot be reached is still an answer: the report says so first, loudly, before the
//! fields, and the command succeeds; what is missing then is `-` in text and `null` in JSON. Changes are
//! shown as `#N`, the engine's numbering for the whole fleet.

use std::borrow::Cow;
use std::io::{self, Write};

use keyward_protocol::{FleetReport, NodeReport};
use serde::Serialize;

use super::format::{change_text, duration_text, plural, printable, rfc3339};
use super::{write_fields, write_json, write_table, Format};

/// A fleet report as JSON: the protocol's field names, `last_seen_at` as RFC 3339.
#[derive(Debug, Serialize)]
struct FleetJson<'a> {
    engine: &'a str,
    reachable: bool,
    problem: Option<&'a str>,
    fleet_id: Option<&'a str>,
    schema_version: Option<u32>,
    head_seq: Option<u64>,
    keys: Option<u64>,
    this_node: &'a str,
    nodes: Vec<NodeJson<'a>>,
}

/// One host as JSON.
#[derive(Debug, Serialize)]
struct NodeJson<'a> {
    node_id: &'a str,
    applied_seq: u64,
    lag: u64,
    last_seen_at: String,
    last_seen_seconds_ago: u64,
    version: &'a str,
}

fn fleet_json(report: &FleetReport) -> FleetJson<'_> {
    FleetJson {
        engine: &report.engine,
        reachable: report.reachable,
        problem: report.problem.as_deref(),
        fleet_id: report.fleet_id.as_deref(),
        schema_version: report.schema_version,
        head_seq: report.head_seq,
        keys: report.keys,
        this_node: &report.this_node,
        nodes: report.nodes.iter().map(node_json).collect(),
    }
}

fn node_json(node: &NodeReport) -> NodeJson<'_> {
    NodeJson {
        node_id: &node.node_id,
        applied_seq: node.applied_seq,
        lag: node.lag,
        last_seen_at: rfc3339(node.last_seen_at),
        last_seen_seconds_ago: node.last_seen_seconds_ago,
        version: &node.version,
    }
}

/// Prints the fleet as this host sees it (`fleet status`).
pub(crate) fn status(out: &mut dyn Write, format: Format, report: &FleetReport) -> io::Result<()> {
    if format == Format::Json {
        return write_json(out, &fleet_json(report));
    }
    write_status(out, report)
}

/// Prints the fleet after `fleet init`: one line saying it is ready, then its status. The JSON is the same
/// as `fleet status`'s.
pub(crate) fn initialized(out: &mut dyn Write, format: Format, report: &FleetReport) -> io::Result<()> {
    if format == Format::Json {
        return write_json(out, &fleet_json(report));
    }
    let or_dash = |value: Option<String>| value.unwrap_or_else(|| "-".to_owned());
    writeln!(
        out,
        "Fleet {} ready: schema version {}, {}, newest change {}.",
        or_dash(report.fleet_id.as_deref().map(|id| printable(id).into_owned())),
        or_dash(report.schema_version.map(|version| version.to_string())),
        report.keys.map_or_else(|| "- keys".to_owned(), |n| plural(n, "key", "keys")),
        or_dash(report.head_seq.map(change_text)),
    )?;
    writeln!(out)?;
    write_status(out, report)
}

/// The text of a report: what is wrong, if anything, the engine's fields, then the hosts.
fn write_status(out: &mut dyn Write, report: &FleetReport) -> io::Result<()> {
    if !report.reachable {
        writeln!(
            out,
            "The fleet engine could not be reached: changes cannot be made until it answers; verifies go on from \
             this host's replica."
        )?;
        writeln!(out)?;
    } else if report.problem.is_some() {
        writeln!(
            out,
            "This host does not follow the fleet engine (see Problem): changes cannot be made; verifies go on \
             from its replica."
        )?;
        writeln!(out)?;
    }
    write_fields(out, &fleet_fields(report))?;
    if report.nodes.is_empty() {
        if report.reachable {
            writeln!(out)?;
            writeln!(out, "No host has reported to the engine yet.")?;
        }
        return Ok(());
    }
    writeln!(out)?;
    let rows: Vec<[String; 5]> = report
        .nodes
        .iter()
        .map(|node| {
            let mut name = printable(&node.node_id).into_owned();
            if node.node_id == report.this_node {
                name.push_str(" (this node)");
            }
            [
                name,
                change_text(node.applied_seq),
                node.lag.to_string(),
                format!("{} ago", duration_text(node.last_seen_seconds_ago)),
                printable(&node.version).into_owned(),
            ]
        })
        .collect();
    write_table(out, &["NODE", "APPLIED", "LAG", "LAST SEEN", "VERSION"], &rows)
}

/// The engine's fields, `-` for what it did not tell.
fn fleet_fields(report: &FleetReport) -> Vec<(&'static str, Cow<'_, str>)> {
    let or_dash = |value: Option<String>| Cow::Owned(value.unwrap_or_else(|| "-".to_owned()));
    let mut fields: Vec<(&str, Cow<'_, str>)> =
        vec![("Engine", printable(&report.engine)), ("Reachable", if report.reachable { "yes" } else { "no" }.into())];
    if let Some(problem) = &report.problem {
        fields.push(("Problem", printable(problem)));
    }
    fields.extend([
        ("Fleet ID", report.fleet_id.as_deref().map_or("-".into(), printable)),
        ("Schema version", or_dash(report.schema_version.map(|version| version.to_string()))),
        ("Head change", or_dash(report.head_seq.map(change_text))),
        ("Keys", or_dash(report.keys.map(|n| n.to_string()))),
        ("This node", printable(&report.this_node)),
    ]);
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::output::samples::{render, render_json};
    use crate::fixtures::NOON;
    use serde_json::json;

    const ENGINE: &str = "host=/run/postgresql port=5432 dbname=keyward";

    /// Two hosts: this one up to date, the other three changes behind and last seen 75 s ago.
    fn fleet_report() -> FleetReport {
        FleetReport {
            engine: ENGINE.into(),
            reachable: true,
            problem: None,
            fleet_id: Some("f-3c9a1e".into()),
            schema_version: Some(1),
            head_seq: Some(44),
            keys: Some(12),
            this_node: "web-1".into(),
            nodes: vec![
                NodeReport {
                    node_id: "web-1".into(),
                    applied_seq: 44,
                    lag: 0,
                    last_seen_at: NOON - 3,
                    last_seen_seconds_ago: 3,
                    version: "0.2.0".into(),
                },
                NodeReport {
                    node_id: "web-2".into(),
                    applied_seq: 41,
                    lag: 3,
                    last_seen_at: NOON - 75,
                    last_seen_seconds_ago: 75,
                    version: "0.1.9".into(),
                },
            ],
        }
    }

    /// A report whose engine could not be reached: only its address and this node are known.
    fn unreachable_report() -> FleetReport {
        FleetReport {
            engine: ENGINE.into(),
            reachable: false,
            problem: Some("connection refused (os error 111)".into()),
            this_node: "web-1".into(),
            ..FleetReport::default()
        }
    }

    #[test]
    fn status_text_shows_the_engine_then_every_host() {
        let text = render(|out| status(out, Format::Text, &fleet_report()));
        let expected = [
            "Engine          host=/run/postgresql port=5432 dbname=keyward",
            "Reachable       yes",
            "Fleet ID        f-3c9a1e",
            "Schema version  1",
            "Head change     #44",
            "Keys            12",
            "This node       web-1",
            "",
            "NODE               APPLIED  LAG  LAST SEEN       VERSION",
            "web-1 (this node)  #44      0    3 s ago         0.2.0",
            "web-2              #41      3    1 min 15 s ago  0.1.9",
        ];
        assert_eq!(text, expected.map(|line| format!("{line}\n")).concat());
    }

    #[test]
    fn status_json_has_the_protocol_fields() {
        let value = render_json(|out| status(out, Format::Json, &fleet_report()));
        assert_eq!(
            value,
            json!({
                "engine": ENGINE,
                "reachable": true,
                "problem": null,
                "fleet_id": "f-3c9a1e",
                "schema_version": 1,
                "head_seq": 44,
                "keys": 12,
                "this_node": "web-1",
                "nodes": [
                    {
                        "node_id": "web-1",
                        "applied_seq": 44,
                        "lag": 0,
                        "last_seen_at": "2026-11-23T11:59:57Z",
                        "last_seen_seconds_ago": 3,
                        "version": "0.2.0",
                    },
                    {
                        "node_id": "web-2",
                        "applied_seq": 41,
                        "lag": 3,
                        "last_seen_at": "2026-11-23T11:58:45Z",
                        "last_seen_seconds_ago": 75,
                        "version": "0.1.9",
                    },
                ],
            })
        );
    }

    #[test]
    fn an_unreachable_engine_is_said_first() {
        let text = render(|out| status(out, Format::Text, &unreachable_report()));
        let expected = [
            "The fleet engine could not be reached: changes cannot be made until it answers; verifies go on from \
             this host's replica.",
            "",
            "Engine          host=/run/postgresql port=5432 dbname=keyward",
            "Reachable       no",
            "Problem         connection refused (os error 111)",
            "Fleet ID        -",
            "Schema version  -",
            "Head change     -",
            "Keys            -",
            "This node       web-1",
        ];
        assert_eq!(text, expected.map(|line| format!("{line}\n")).concat());
        let value = render_json(|out| status(out, Format::Json, &unreachable_report()));
        assert_eq!(
            (&value["reachable"], &value["problem"]),
            (&json!(false), &json!("connection refused (os error 111)"))
        );
        assert_eq!((&value["head_seq"], &value["nodes"]), (&json!(null), &json!([])));
    }

    #[test]
    fn a_host_that_refuses_to_follow_says_why() {
        let diverged = FleetReport {
            problem: Some("the engine holds #40, this host has applied #44\u{1b}[2J".into()),
            ..fleet_report()
        };
        let text = render(|out| status(out, Format::Text, &diverged));
        assert!(text.starts_with("This host does not follow the fleet engine (see Problem)"), "{text}");
        assert!(text.contains("\nProblem         the engine holds #40, this host has applied #44\\u{1b}[2J\n"));
        assert!(!text.contains('\u{1b}'), "{text}");
        let fresh = FleetReport { nodes: vec![], ..fleet_report() };
        assert!(
            render(|out| status(out, Format::Text, &fresh)).ends_with("\n\nNo host has reported to the engine yet.\n")
        );
    }

    #[test]
    fn init_says_the_fleet_is_ready_then_shows_it() {
        let report = fleet_report();
        let text = render(|out| initialized(out, Format::Text, &report));
        let status_text = render(|out| status(out, Format::Text, &report));
        assert_eq!(
            text,
            format!("Fleet f-3c9a1e ready: schema version 1, 12 keys, newest change #44.\n\n{status_text}")
        );
        assert_eq!(
            render_json(|out| initialized(out, Format::Json, &report)),
            render_json(|out| status(out, Format::Json, &report))
        );
        let one = FleetReport { keys: Some(1), ..fleet_report() };
        assert!(render(|out| initialized(out, Format::Text, &one))
            .starts_with("Fleet f-3c9a1e ready: schema version 1, 1 key,"));
    }
}
