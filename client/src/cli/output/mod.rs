//! What `keyward` prints: aligned text for people, or exactly one JSON value for scripts.
//!
//! This folder owns every byte the CLI writes to stdout. This file holds what every answer shares: the
//! [`Format`], the one JSON writer, the aligned field and table writers, and the two answers that are about
//! no key and no report (`ping`'s, and a failure's with `--json`). Each family of answers has a file of its
//! own, its JSON view structs next to its text:
//!
//! - `format`: times, waits, durations, byte sizes, counts and plurals as text, and the daemon's text made
//!   safe for a terminal;
//! - `keys`: a key, a workspace's keys, the legacy keys, the answers to create, regenerate, edit,
//!   deactivate, activate, revoke, import and credits, and an account's workspaces;
//! - `verify`: a verify answer;
//! - `audit`: the audit log;
//! - `usage`: a key's verifications by outcome, and a workspace's busiest keys;
//! - `stats`: the daemon's counters, as text or JSON (a host's fleet figures among them);
//! - `prometheus`: the same counters in the Prometheus text exposition format (`stats --prometheus`);
//! - `fleet`: the fleet engine and the hosts following it (`fleet status`, `fleet init`).
//!
//! The JSON shapes are built from small borrowed view structs. Timestamps are RFC 3339 UTC in JSON and
//! `YYYY-MM-DD HH:MM` (UTC) in text; absent values are `null` in JSON and `-` in text; codes and actions
//! appear as their stable names (`VALID`, `regenerate`).
//!
//! Imports go one way: each answer file uses this file and `format`, and `prometheus` uses `stats` (the
//! key statuses, the histogram bounds' labels and a host's fleet lag, which the JSON of `stats` shows
//! too); neither this file nor `format` uses an answer file.

pub(super) mod audit;
pub(super) mod fleet;
mod format;
pub(super) mod keys;
pub(super) mod prometheus;
pub(super) mod stats;
pub(super) mod usage;
pub(super) mod verify;

use std::borrow::Cow;
use std::io::{self, Write};
use std::path::Path;

use serde::Serialize;

/// Text or JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Text,
    Json,
}

/// The answer to `ping` as JSON.
#[derive(Debug, Serialize)]
struct PingJson {
    ok: bool,
    verify_socket: String,
    admin_socket: String,
}

/// Prints that both sockets answered.
pub(crate) fn pinged(out: &mut dyn Write, format: Format, verify: &Path, admin: &Path) -> io::Result<()> {
    if format == Format::Json {
        let view = PingJson {
            ok: true,
            verify_socket: verify.display().to_string(),
            admin_socket: admin.display().to_string(),
        };
        return write_json(out, &view);
    }
    writeln!(out, "verify socket {}: ok", verify.display())?;
    writeln!(out, "admin socket  {}: ok", admin.display())
}

/// A failed command, with `--json`: `{"error": {"code": "KEY_NOT_FOUND", "message": "..."}}`.
pub(crate) fn failed(out: &mut dyn Write, code: &str, message: &str) -> io::Result<()> {
    #[derive(Serialize)]
    struct Failure<'a> {
        code: &'a str,
        message: &'a str,
    }
    #[derive(Serialize)]
    struct FailureJson<'a> {
        error: Failure<'a>,
    }
    write_json(out, &FailureJson { error: Failure { code, message } })?;
    out.flush()
}

fn write_json(out: &mut dyn Write, value: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)
}

/// `label  value` lines with the values aligned.
fn write_fields(out: &mut dyn Write, fields: &[(&str, Cow<'_, str>)]) -> io::Result<()> {
    let width = fields.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
    for (label, value) in fields {
        writeln!(out, "{label:<width$}  {value}")?;
    }
    Ok(())
}

/// A table with left-aligned columns two spaces apart and no trailing blanks.
fn write_table<const N: usize>(out: &mut dyn Write, header: &[&str; N], rows: &[[String; N]]) -> io::Result<()> {
    let mut widths = header.map(|title| title.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    write_row(out, &widths, header)?;
    for row in rows {
        write_row(out, &widths, row)?;
    }
    Ok(())
}

fn write_row<const N: usize>(out: &mut dyn Write, widths: &[usize; N], cells: &[impl AsRef<str>; N]) -> io::Result<()> {
    let mut line = String::new();
    for (column, (cell, width)) in cells.iter().zip(widths).enumerate() {
        let cell = cell.as_ref();
        line.push_str(cell);
        if column + 1 < N {
            let pad = width - cell.chars().count() + 2;
            line.extend(std::iter::repeat_n(' ', pad));
        }
    }
    writeln!(out, "{}", line.trim_end())
}

/// What the tests of more than one answer file share: rendering into text or one JSON value, the sample
/// key and the sample audit entries.
#[cfg(test)]
mod samples {
    use super::*;
    use crate::fixtures::{self, NOON};
    use keyward_protocol::{Actor, AuditAction, AuditEntry, FieldChange, KeyView};
    use serde_json::Value;

    pub(super) fn sample_key() -> KeyView {
        KeyView {
            scopes: vec!["read:all".into(), "write:tables".into()],
            expires_at: Some(NOON + 90 * 86_400),
            ..fixtures::key_view("AbCdEf012345")
        }
    }

    pub(super) fn render(print: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> String {
        let mut out = Vec::new();
        print(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    pub(super) fn render_json(print: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> Value {
        serde_json::from_str(&render(print)).expect("exactly one JSON value")
    }

    pub(super) fn audit_entries() -> Vec<AuditEntry> {
        vec![
            AuditEntry {
                seq: 8,
                at: NOON + 60,
                action: AuditAction::AccountSet,
                key_id: None,
                workspace: None,
                account: Some("acct-7".into()),
                changes: vec![FieldChange { field: "workspaces".into(), from: None, to: Some("ws-a ws-b".into()) }],
                actor: Actor { uid: 1000, gid: 1000, pid: Some(42), label: None },
            },
            AuditEntry {
                seq: 7,
                at: NOON,
                action: AuditAction::Edit,
                key_id: Some("AbCdEf012345".into()),
                workspace: Some("acme".into()),
                account: None,
                changes: vec![
                    FieldChange { field: "name".into(), from: Some("old".into()), to: Some("new".into()) },
                    FieldChange { field: "description".into(), from: Some("gone".into()), to: None },
                ],
                actor: Actor { uid: 1000, gid: 100, pid: None, label: Some("alice@dashboard".into()) },
            },
        ]
    }
}
