//! What `keyward audit` prints: the audit log, newest first, as a table of who changed which key and how,
//! or as JSON with every field of each entry (the actor's uid, gid, pid and label included).
//!
//! An actor label and a change's values are whatever a caller sent the daemon, so the table prints them
//! through `printable`: an audit log read in a terminal must not be a way to send it escape sequences.

use std::io::{self, Write};

use keyward_protocol::AuditEntry;
use serde::Serialize;

use super::format::{human_time, printable, rfc3339};
use super::{write_json, write_table, Format};

/// An audit entry as JSON.
#[derive(Debug, Serialize)]
struct AuditJson<'a> {
    seq: u64,
    at: String,
    action: &'static str,
    key_id: Option<&'a str>,
    workspace: Option<&'a str>,
    account: Option<&'a str>,
    changes: Vec<ChangeJson<'a>>,
    actor: ActorJson<'a>,
}

#[derive(Debug, Serialize)]
struct ChangeJson<'a> {
    field: &'a str,
    from: Option<&'a str>,
    to: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct ActorJson<'a> {
    uid: u32,
    gid: u32,
    pid: Option<i32>,
    label: Option<&'a str>,
}

fn audit_json(entry: &AuditEntry) -> AuditJson<'_> {
    AuditJson {
        seq: entry.seq,
        at: rfc3339(entry.at),
        action: entry.action.as_str(),
        key_id: entry.key_id.as_deref(),
        workspace: entry.workspace.as_deref(),
        account: entry.account.as_deref(),
        changes: entry
            .changes
            .iter()
            .map(|change| ChangeJson { field: &change.field, from: change.from.as_deref(), to: change.to.as_deref() })
            .collect(),
        actor: ActorJson {
            uid: entry.actor.uid,
            gid: entry.actor.gid,
            pid: entry.actor.pid,
            label: entry.actor.label.as_deref(),
        },
    }
}

/// Prints audit entries, newest first.
pub(crate) fn audit(out: &mut dyn Write, format: Format, entries: &[AuditEntry]) -> io::Result<()> {
    if format == Format::Json {
        let views: Vec<AuditJson<'_>> = entries.iter().map(audit_json).collect();
        return write_json(out, &views);
    }
    if entries.is_empty() {
        return writeln!(out, "No audit entries.");
    }
    let header = ["TIME", "ACTION", "KEY", "WORKSPACE", "ACTOR", "CHANGES"];
    let rows: Vec<[String; 6]> = entries
        .iter()
        .map(|entry| {
            [
                human_time(entry.at),
                entry.action.as_str().to_owned(),
                entry.key_id.clone().unwrap_or_else(|| "-".to_owned()),
                printable(entry.workspace.as_deref().unwrap_or("-")).into_owned(),
                actor_text(entry),
                changes_text(entry),
            ]
        })
        .collect();
    write_table(out, &header, &rows)
}

/// `label (uid N)`, or `uid N` without a label.
fn actor_text(entry: &AuditEntry) -> String {
    match &entry.actor.label {
        Some(label) => format!("{} (uid {})", printable(label), entry.actor.uid),
        None => format!("uid {}", entry.actor.uid),
    }
}

/// `field: from -> to` for each change, `-` for an absent value; an entry about an account (no key) is
/// prefixed with the account, which no other column shows.
fn changes_text(entry: &AuditEntry) -> String {
    let changes = entry.changes.iter().map(|change| {
        let from = change.from.as_deref().unwrap_or("-");
        let to = change.to.as_deref().unwrap_or("-");
        format!("{}: {from} -> {to}", change.field)
    });
    let mut text = changes.collect::<Vec<_>>().join("; ");
    if let (None, Some(account)) = (&entry.key_id, &entry.account) {
        text = format!("account {account}: {text}");
    }
    printable(&text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::output::samples::{audit_entries, render, render_json};
    use serde_json::json;

    #[test]
    fn audit_json_and_table() {
        let entries = audit_entries();
        let value = render_json(|out| audit(out, Format::Json, &entries));
        assert_eq!(
            value[1],
            json!({
                "seq": 7,
                "at": "2026-11-23T12:00:00Z",
                "action": "edit",
                "key_id": "AbCdEf012345",
                "workspace": "acme",
                "account": null,
                "changes": [
                    {"field": "name", "from": "old", "to": "new"},
                    {"field": "description", "from": "gone", "to": null},
                ],
                "actor": {"uid": 1000, "gid": 100, "pid": null, "label": "alice@dashboard"},
            })
        );
        assert_eq!(value[0]["action"], "account_set");
        assert_eq!(value[0]["actor"]["pid"], 42);

        let text = render(|out| audit(out, Format::Text, &entries));
        let expected = [
            "TIME              ACTION       KEY           WORKSPACE  ACTOR                       CHANGES",
            "2026-11-23 12:01  account_set  -             -          uid 1000                    account acct-7: workspaces: - -> ws-a ws-b",
            "2026-11-23 12:00  edit         AbCdEf012345  acme       alice@dashboard (uid 1000)  name: old -> new; description: gone -> -",
        ];
        assert_eq!(text, expected.map(|line| format!("{line}\n")).concat());
        assert_eq!(render(|out| audit(out, Format::Text, &[])), "No audit entries.\n");
    }
}
