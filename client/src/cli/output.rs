//! What `keyward` prints: aligned text for people, or exactly one JSON value for scripts.
//!
//! This module owns every byte the CLI writes to stdout. The JSON shapes are built from small borrowed
//! view structs; one function ([`key_json`]) maps a [`KeyView`] to its JSON form for create, list, show
//! and revoke alike. Timestamps are RFC 3339 UTC in JSON and `YYYY-MM-DD HH:MM` (UTC) in text.
//!
//! A token is printed in exactly one place, the answer to `create` ([`created`]); a listing never holds
//! one, and a verify answer only names the key.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;

use keyward_protocol::{CreatedKey, KeyView, VerifyAnswer};
use serde::Serialize;

/// Text or JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Text,
    Json,
}

/// A key as JSON. `token` is present only in the answer to `create`.
#[derive(Debug, Serialize)]
struct KeyJson<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<&'a str>,
    prefix: &'a str,
    masked: &'a str,
    name: &'a str,
    description: Option<&'a str>,
    workspace: &'a str,
    env: &'static str,
    scopes: &'a [String],
    status: &'static str,
    role: &'static str,
    created_at: String,
    expires_at: Option<String>,
    last_used_at: Option<String>,
    revoked_at: Option<String>,
    metadata: &'a BTreeMap<String, String>,
}

/// A verify answer as JSON. The key fields are `null` when the daemon named no key.
#[derive(Debug, Serialize)]
struct VerifyJson<'a> {
    valid: bool,
    code: &'static str,
    key_id: Option<&'a str>,
    workspace: Option<&'a str>,
    name: Option<&'a str>,
    env: Option<&'static str>,
    scopes: Option<&'a [String]>,
    expires_at: Option<String>,
}

/// The answer to `ping` as JSON.
#[derive(Debug, Serialize)]
struct PingJson {
    ok: bool,
    verify_socket: String,
    admin_socket: String,
}

/// The one mapping from a key to its JSON form.
fn key_json(key: &KeyView) -> KeyJson<'_> {
    KeyJson {
        id: &key.id,
        token: None,
        prefix: &key.prefix,
        masked: &key.masked,
        name: &key.name,
        description: key.description.as_deref(),
        workspace: &key.workspace,
        env: key.env.as_str(),
        scopes: &key.scopes,
        status: key.status.as_str(),
        role: key.role.as_str(),
        created_at: rfc3339(key.created_at),
        expires_at: key.expires_at.map(rfc3339),
        last_used_at: key.last_used_at.map(rfc3339),
        revoked_at: key.revoked_at.map(rfc3339),
        metadata: &key.metadata,
    }
}

fn verify_json(answer: &VerifyAnswer) -> VerifyJson<'_> {
    let key = answer.key.as_ref();
    VerifyJson {
        valid: answer.code.is_valid(),
        code: answer.code.as_str(),
        key_id: key.map(|k| k.id.as_str()),
        workspace: key.map(|k| k.workspace.as_str()),
        name: key.map(|k| k.name.as_str()),
        env: key.map(|k| k.env.as_str()),
        scopes: key.map(|k| k.scopes.as_slice()),
        expires_at: key.and_then(|k| k.expires_at).map(rfc3339),
    }
}

/// Prints a new key and its token: the only output that ever holds a token.
pub(crate) fn created(out: &mut dyn Write, format: Format, created: &CreatedKey) -> io::Result<()> {
    let key = &created.key;
    let token = created.token.expose();
    if format == Format::Json {
        return write_json(out, &KeyJson { token: Some(token), ..key_json(key) });
    }
    writeln!(out, "Created key {} ({:?}) in workspace {}.", key.id, printable(&key.name), key.workspace)?;
    writeln!(out)?;
    writeln!(out, "    {token}")?;
    writeln!(out)?;
    writeln!(out, "This token is shown only once: store it now. keywardd keeps only a hash and cannot show it again.")?;
    writeln!(out)?;
    write_fields(
        out,
        &[
            ("Environment", key.env.as_str().into()),
            ("Role", key.role.as_str().into()),
            ("Scopes", key.scopes.join(", ").into()),
            ("Expires", expiry_text(key.expires_at).into()),
        ],
    )
}

/// Prints a workspace's keys.
pub(crate) fn keys(out: &mut dyn Write, format: Format, workspace: &str, keys: &[KeyView]) -> io::Result<()> {
    if format == Format::Json {
        let views: Vec<KeyJson<'_>> = keys.iter().map(key_json).collect();
        return write_json(out, &views);
    }
    if keys.is_empty() {
        return writeln!(out, "No keys in workspace {}.", printable(workspace));
    }
    let header = ["ID", "PREFIX", "NAME", "SCOPES", "STATUS", "CREATED", "LAST USED", "EXPIRES"];
    let rows: Vec<[String; 8]> = keys
        .iter()
        .map(|key| {
            [
                key.id.clone(),
                key.prefix.clone(),
                printable(&key.name).into_owned(),
                key.scopes.join(","),
                key.status.as_str().to_owned(),
                human_time(key.created_at),
                key.last_used_at.map_or_else(|| "-".to_owned(), human_time),
                expiry_text(key.expires_at),
            ]
        })
        .collect();
    write_table(out, &header, &rows)
}

/// Prints one key (`show`).
pub(crate) fn key(out: &mut dyn Write, format: Format, key: &KeyView) -> io::Result<()> {
    if format == Format::Json {
        return write_json(out, &key_json(key));
    }
    let optional_time = |at: Option<i64>| at.map_or_else(|| "-".to_owned(), human_time);
    let metadata: Vec<String> = key.metadata.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut fields: Vec<(&str, Cow<'_, str>)> = vec![
        ("ID", key.id.as_str().into()),
        ("Name", printable(&key.name)),
        ("Description", key.description.as_deref().map_or("-".into(), printable)),
        ("Workspace", printable(&key.workspace)),
        ("Environment", key.env.as_str().into()),
        ("Scopes", key.scopes.join(", ").into()),
        ("Status", key.status.as_str().into()),
        ("Role", key.role.as_str().into()),
        ("Masked", key.masked.as_str().into()),
        ("Created", human_time(key.created_at).into()),
        ("Last used", optional_time(key.last_used_at).into()),
        ("Expires", expiry_text(key.expires_at).into()),
        ("Revoked", optional_time(key.revoked_at).into()),
    ];
    if !metadata.is_empty() {
        fields.push(("Metadata", printable(&metadata.join(", ")).into_owned().into()));
    }
    write_fields(out, &fields)
}

/// Prints a key that was just revoked.
pub(crate) fn revoked(out: &mut dyn Write, format: Format, key: &KeyView) -> io::Result<()> {
    if format == Format::Json {
        return write_json(out, &key_json(key));
    }
    writeln!(out, "Revoked key {} ({:?}) in workspace {}.", key.id, printable(&key.name), printable(&key.workspace))
}

/// Prints a verify answer: `VALID key ID (workspace WS)`, or only the code when no key was named.
pub(crate) fn verified(out: &mut dyn Write, format: Format, answer: &VerifyAnswer) -> io::Result<()> {
    if format == Format::Json {
        return write_json(out, &verify_json(answer));
    }
    match &answer.key {
        Some(key) => writeln!(out, "{} key {} (workspace {})", answer.code, key.id, printable(&key.workspace)),
        None => writeln!(out, "{}", answer.code),
    }
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

/// Unix seconds as RFC 3339 UTC, e.g. `2026-11-23T12:00:00Z` (the bare number if out of range).
pub(crate) fn rfc3339(seconds: i64) -> String {
    match jiff::Timestamp::from_second(seconds) {
        Ok(at) => at.to_string(),
        Err(_) => seconds.to_string(),
    }
}

/// Unix seconds as `YYYY-MM-DD HH:MM` in UTC (the bare number if out of range).
pub(crate) fn human_time(seconds: i64) -> String {
    match jiff::Timestamp::from_second(seconds) {
        Ok(at) => at.strftime("%Y-%m-%d %H:%M").to_string(),
        Err(_) => seconds.to_string(),
    }
}

fn expiry_text(expires_at: Option<i64>) -> String {
    expires_at.map_or_else(|| "never".to_owned(), human_time)
}

/// Text from the daemon with control characters escaped, so a crafted name or description cannot send
/// escape sequences to the operator's terminal.
fn printable(text: &str) -> Cow<'_, str> {
    if text.chars().any(char::is_control) {
        Cow::Owned(text.chars().flat_map(char::escape_default).collect())
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{self, NOON};
    use keyward_protocol::{KeyStatus, Secret, VerifiedKey, VerifyCode};
    use serde_json::{json, Value};

    fn sample_key() -> KeyView {
        KeyView {
            scopes: vec!["read:all".into(), "write:tables".into()],
            expires_at: Some(NOON + 90 * 86_400),
            ..fixtures::key_view("AbCdEf012345")
        }
    }

    fn render(print: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> String {
        let mut out = Vec::new();
        print(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn render_json(print: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> Value {
        serde_json::from_str(&render(print)).expect("exactly one JSON value")
    }

    #[test]
    fn timestamps_are_utc() {
        assert_eq!(rfc3339(NOON), "2026-11-23T12:00:00Z");
        assert_eq!(human_time(NOON), "2026-11-23 12:00");
        assert_eq!(human_time(0), "1970-01-01 00:00");
        assert_eq!(rfc3339(i64::MAX), i64::MAX.to_string());
    }

    #[test]
    fn key_json_has_every_field_and_no_token() {
        let key = sample_key();
        let value = render_json(|out| self::key(out, Format::Json, &key));
        assert_eq!(
            value,
            json!({
                "id": "AbCdEf012345",
                "prefix": "kw_live_",
                "masked": "kw_live_****Zq9T",
                "name": "CI deploy",
                "description": null,
                "workspace": "acme",
                "env": "live",
                "scopes": ["read:all", "write:tables"],
                "status": "active",
                "role": "member",
                "created_at": "2026-11-23T12:00:00Z",
                "expires_at": "2027-02-21T12:00:00Z",
                "last_used_at": null,
                "revoked_at": null,
                "metadata": {},
            })
        );
    }

    #[test]
    fn created_json_is_the_key_plus_its_token() {
        let created = CreatedKey { token: Secret::new("kw_live_the_token"), key: sample_key() };
        let value = render_json(|out| self::created(out, Format::Json, &created));
        assert_eq!(value["token"], "kw_live_the_token");
        assert_eq!(value["id"], "AbCdEf012345");
        assert_eq!(value["status"], "active");
        let text = render(|out| self::created(out, Format::Text, &created));
        assert!(text.contains("\n    kw_live_the_token\n"), "{text}");
        assert!(text.contains("shown only once"), "{text}");
    }

    #[test]
    fn list_json_is_an_array_and_text_is_a_table() {
        let mut revoked = sample_key();
        revoked.id = "ZZZZZZ999999".into();
        revoked.status = KeyStatus::Revoked;
        revoked.last_used_at = Some(NOON + 60);
        revoked.revoked_at = Some(NOON + 120);
        revoked.expires_at = None;
        let keys = [sample_key(), revoked];
        let value = render_json(|out| self::keys(out, Format::Json, "acme", &keys));
        let array = value.as_array().expect("an array");
        assert_eq!(array.len(), 2);
        assert_eq!(array[1]["status"], "revoked");
        assert_eq!(array[1]["expires_at"], Value::Null);
        assert_eq!(array[1]["revoked_at"], "2026-11-23T12:02:00Z");
        assert!(array.iter().all(|key| key.get("token").is_none()));

        let text = render(|out| self::keys(out, Format::Text, "acme", &keys));
        let expected = [
            "ID            PREFIX    NAME       SCOPES                 STATUS   CREATED           LAST USED         EXPIRES",
            "AbCdEf012345  kw_live_  CI deploy  read:all,write:tables  active   2026-11-23 12:00  -                 2027-02-21 12:00",
            "ZZZZZZ999999  kw_live_  CI deploy  read:all,write:tables  revoked  2026-11-23 12:00  2026-11-23 12:01  never",
        ];
        assert_eq!(text, expected.map(|line| format!("{line}\n")).concat());
        let empty = render(|out| self::keys(out, Format::Text, "acme", &[]));
        assert_eq!(empty, "No keys in workspace acme.\n");
    }

    #[test]
    fn verify_json_names_the_key_or_nulls() {
        let key = VerifiedKey { scopes: vec!["admin".into()], ..fixtures::verified_key("AbCdEf012345") };
        let answer = VerifyAnswer { key: Some(key), ..VerifyAnswer::refused(VerifyCode::Valid) };
        let value = render_json(|out| verified(out, Format::Json, &answer));
        assert_eq!(value["valid"], true);
        assert_eq!(value["code"], "VALID");
        assert_eq!(value["key_id"], "AbCdEf012345");
        assert_eq!(value["scopes"], json!(["admin"]));
        assert_eq!(value["expires_at"], Value::Null);
        let text = render(|out| verified(out, Format::Text, &answer));
        assert_eq!(text, "VALID key AbCdEf012345 (workspace acme)\n");

        let not_found = VerifyAnswer::refused(VerifyCode::NotFound);
        let value = render_json(|out| verified(out, Format::Json, &not_found));
        assert_eq!(value["valid"], false);
        assert_eq!(value["code"], "NOT_FOUND");
        assert_eq!(value["key_id"], Value::Null);
        assert_eq!(value["scopes"], Value::Null);
        assert_eq!(render(|out| verified(out, Format::Text, &not_found)), "NOT_FOUND\n");
    }

    #[test]
    fn control_characters_are_escaped_in_text() {
        let mut key = sample_key();
        key.name = "evil\u{1b}[2J".into();
        let text = render(|out| self::key(out, Format::Text, &key));
        assert!(!text.contains('\u{1b}'));
        assert!(text.contains("evil\\u{1b}[2J"), "{text}");
    }
}
