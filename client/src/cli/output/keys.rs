//! What `keyward` prints about keys: one key (`show`), a workspace's keys, the legacy personal keys, the
//! answers to create, regenerate, edit, deactivate, activate, revoke, import and credits, and an account's
//! workspaces (which its legacy keys may act on).
//!
//! One function ([`key_json`]) maps a [`KeyView`] to its JSON form for every command that answers with a
//! key. A key's rate policy is JSON in serde's externally tagged form, lowercased:
//!
//! ```text
//! {"plan": "free"}         a plan of the daemon's (free, paid, or one it defines)
//! {"custom": "100/min"}    a rate of the key's own
//! "none"                   no rate limit
//! ```
//!
//! and its named limits an object of name → rate (`{"exports": "10/h"}`), its credits the *current*
//! balance or `null`, its refill `"5000/month@1"`, `"500/day"` or `null`.
//!
//! A token is printed in exactly two places, the answers to `create` ([`created`]) and `regenerate`
//! ([`regenerated`]); a listing never holds one, an import never repeats the token it was given, and a
//! verify answer only names the key.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{self, Write};

use keyward_protocol::{AccountView, CreatedKey, KeyOrigin, KeyView, RatePolicy};
use serde::Serialize;

use super::format::{expiry_text, human_time, plural, printable, rfc3339};
use super::{write_fields, write_json, write_table, Format};

/// A key as JSON. `token` is present only in the answers to `create` and `regenerate`.
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
    origin: &'static str,
    account: Option<&'a str>,
    created_at: String,
    expires_at: Option<String>,
    last_used_at: Option<String>,
    revoked_at: Option<String>,
    previous_token_until: Option<String>,
    metadata: &'a BTreeMap<String, String>,
    rate: RateJson<'a>,
    limits: BTreeMap<&'a str, String>,
    credits: Option<u64>,
    refill: Option<String>,
}

/// A rate policy as JSON; see the module documentation.
#[derive(Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum RateJson<'a> {
    Plan(&'a str),
    Custom(String),
    None,
}

impl<'a> From<&'a RatePolicy> for RateJson<'a> {
    fn from(policy: &'a RatePolicy) -> Self {
        match policy {
            RatePolicy::Plan(name) => RateJson::Plan(name),
            RatePolicy::Custom(rate) => RateJson::Custom(rate.to_string()),
            RatePolicy::Unlimited => RateJson::None,
        }
    }
}

/// An account as JSON.
#[derive(Debug, Serialize)]
struct AccountJson<'a> {
    account: &'a str,
    workspaces: &'a [String],
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
        origin: key.origin.as_str(),
        account: key.account.as_deref(),
        created_at: rfc3339(key.created_at),
        expires_at: key.expires_at.map(rfc3339),
        last_used_at: key.last_used_at.map(rfc3339),
        revoked_at: key.revoked_at.map(rfc3339),
        previous_token_until: key.previous_token_until.map(rfc3339),
        metadata: &key.metadata,
        rate: RateJson::from(&key.limits.rate),
        limits: key.limits.named.iter().map(|(name, rate)| (name.as_str(), rate.to_string())).collect(),
        credits: key.limits.credits,
        refill: key.limits.refill.map(|refill| refill.to_string()),
    }
}

/// Prints a new key and its token: one of the two outputs that ever hold a token.
pub(crate) fn created(out: &mut dyn Write, format: Format, created: &CreatedKey) -> io::Result<()> {
    let key = &created.key;
    if format == Format::Json {
        return write_json(out, &KeyJson { token: Some(created.token.expose()), ..key_json(key) });
    }
    writeln!(out, "Created key {} ({:?}) in workspace {}.", key.id, printable(&key.name), printable(&key.workspace))?;
    write_token(out, created)?;
    writeln!(out)?;
    write_fields(out, &new_key_fields(key))
}

/// Prints a key's new token after a regenerate, and until when the old one works: the other output
/// that holds a token. The JSON is the same shape as `create`'s.
pub(crate) fn regenerated(out: &mut dyn Write, format: Format, created: &CreatedKey) -> io::Result<()> {
    let key = &created.key;
    if format == Format::Json {
        return write_json(out, &KeyJson { token: Some(created.token.expose()), ..key_json(key) });
    }
    writeln!(
        out,
        "Regenerated key {} ({:?}) in workspace {}: same id and settings, new token.",
        key.id,
        printable(&key.name),
        printable(&key.workspace)
    )?;
    write_token(out, created)?;
    match key.previous_token_until {
        Some(until) => writeln!(
            out,
            "The old token keeps working until {} UTC ({until_rfc}); after that it answers NOT_FOUND.",
            human_time(until),
            until_rfc = rfc3339(until),
        )?,
        None => writeln!(out, "The old token stopped working now: it answers NOT_FOUND.")?,
    }
    writeln!(out)?;
    write_fields(out, &new_key_fields(key))
}

/// The token between blank lines, and the warning that it will not be shown again.
fn write_token(out: &mut dyn Write, created: &CreatedKey) -> io::Result<()> {
    writeln!(out)?;
    writeln!(out, "    {}", created.token.expose())?;
    writeln!(out)?;
    writeln!(out, "This token is shown only once: store it now. keywardd keeps only a hash and cannot show it again.")
}

/// The settings worth confirming right after a key gets a token.
fn new_key_fields(key: &KeyView) -> Vec<(&'static str, Cow<'_, str>)> {
    let mut fields: Vec<(&str, Cow<'_, str>)> = vec![
        ("Environment", key.env.as_str().into()),
        ("Role", key.role.as_str().into()),
        ("Scopes", key.scopes.join(", ").into()),
        ("Expires", expiry_text(key.expires_at).into()),
    ];
    fields.extend(limit_fields(key));
    fields
}

/// Rate, named limits, credits and refill, as `show` and `create` print them; the rate always, the
/// others when set.
fn limit_fields(key: &KeyView) -> Vec<(&'static str, Cow<'_, str>)> {
    let limits = &key.limits;
    let mut fields: Vec<(&str, Cow<'_, str>)> = vec![("Rate limit", rate_text(&limits.rate).into())];
    if !limits.named.is_empty() {
        let named: Vec<String> = limits.named.iter().map(|(name, rate)| format!("{name}={rate}")).collect();
        fields.push(("Named limits", named.join(", ").into()));
    }
    if let Some(credits) = limits.credits {
        fields.push(("Credits", credits.to_string().into()));
    }
    if let Some(refill) = limits.refill {
        fields.push(("Refill", refill.to_string().into()));
    }
    fields
}

fn rate_text(policy: &RatePolicy) -> String {
    match policy {
        RatePolicy::Plan(name) => format!("plan {}", printable(name)),
        RatePolicy::Custom(rate) => rate.to_string(),
        RatePolicy::Unlimited => "none".to_owned(),
    }
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
    let header = ["ID", "PREFIX", "NAME", "ROLE", "SCOPES", "STATUS", "CREATED", "LAST USED", "EXPIRES"];
    let rows: Vec<[String; 9]> = keys
        .iter()
        .map(|key| {
            [
                key.id.clone(),
                printable(&key.prefix).into_owned(),
                printable(&key.name).into_owned(),
                key.role.as_str().to_owned(),
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

/// Prints legacy personal keys. Their listing exists to find the ones still in use before the sunset, so
/// when each was last used comes right after its id, and a key never used says `never`.
pub(crate) fn legacy_keys(
    out: &mut dyn Write,
    format: Format,
    account: Option<&str>,
    keys: &[KeyView],
) -> io::Result<()> {
    if format == Format::Json {
        let views: Vec<KeyJson<'_>> = keys.iter().map(key_json).collect();
        return write_json(out, &views);
    }
    if keys.is_empty() {
        return match account {
            Some(account) => writeln!(out, "No legacy keys of account {}.", printable(account)),
            None => writeln!(out, "No legacy keys."),
        };
    }
    let header = ["ID", "LAST USED", "ACCOUNT", "NAME", "STATUS", "PREFIX", "WORKSPACE", "CREATED"];
    let rows: Vec<[String; 8]> = keys
        .iter()
        .map(|key| {
            [
                key.id.clone(),
                key.last_used_at.map_or_else(|| "never".to_owned(), human_time),
                printable(key.account.as_deref().unwrap_or("-")).into_owned(),
                printable(&key.name).into_owned(),
                key.status.as_str().to_owned(),
                printable(&key.prefix).into_owned(),
                printable(&key.workspace).into_owned(),
                human_time(key.created_at),
            ]
        })
        .collect();
    write_table(out, &header, &rows)?;
    let unused = keys.iter().filter(|key| key.last_used_at.is_none()).count();
    writeln!(out)?;
    let total = plural(keys.len() as u64, "legacy key", "legacy keys");
    writeln!(out, "{total}, {} used at least once, {unused} never used.", keys.len() - unused)
}

/// Prints one key (`show`).
pub(crate) fn key(out: &mut dyn Write, format: Format, key: &KeyView) -> io::Result<()> {
    if format == Format::Json {
        return write_json(out, &key_json(key));
    }
    write_fields(out, &key_fields(key))
}

/// Every field of a key, for `show` and after a change.
fn key_fields(key: &KeyView) -> Vec<(&'static str, Cow<'_, str>)> {
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
        ("Origin", key.origin.as_str().into()),
    ];
    if let Some(account) = &key.account {
        fields.push(("Account", printable(account)));
    }
    fields.extend([
        ("Masked", printable(&key.masked)),
        ("Created", human_time(key.created_at).into()),
        ("Last used", optional_time(key.last_used_at).into()),
        ("Expires", expiry_text(key.expires_at).into()),
        ("Revoked", optional_time(key.revoked_at).into()),
    ]);
    if let Some(until) = key.previous_token_until {
        fields.push(("Old token until", human_time(until).into()));
    }
    fields.extend(limit_fields(key));
    if !metadata.is_empty() {
        fields.push(("Metadata", printable(&metadata.join(", ")).into_owned().into()));
    }
    fields
}

/// `Key ID ("name") in workspace WS`, the way every change confirmation names its key.
fn key_title(key: &KeyView) -> String {
    format!("key {} ({:?}) in workspace {}", key.id, printable(&key.name), printable(&key.workspace))
}

/// Prints a key after an edit.
pub(crate) fn edited(out: &mut dyn Write, format: Format, key: &KeyView) -> io::Result<()> {
    if format == Format::Json {
        return write_json(out, &key_json(key));
    }
    writeln!(out, "Updated {}; its token is unchanged.", key_title(key))?;
    writeln!(out)?;
    write_fields(out, &key_fields(key))
}

/// Prints a key that was just deactivated.
pub(crate) fn deactivated(out: &mut dyn Write, format: Format, key: &KeyView) -> io::Result<()> {
    if format == Format::Json {
        return write_json(out, &key_json(key));
    }
    writeln!(out, "Deactivated {}: its verifies answer INACTIVE until `keyward activate {}`.", key_title(key), key.id)
}

/// Prints a key that was just activated.
pub(crate) fn activated(out: &mut dyn Write, format: Format, key: &KeyView) -> io::Result<()> {
    if format == Format::Json {
        return write_json(out, &key_json(key));
    }
    writeln!(out, "Activated {}: its token verifies again (status {}).", key_title(key), key.status.as_str())
}

/// Prints a key that was just revoked.
pub(crate) fn revoked(out: &mut dyn Write, format: Format, key: &KeyView) -> io::Result<()> {
    if format == Format::Json {
        return write_json(out, &key_json(key));
    }
    writeln!(out, "Revoked key {} ({:?}) in workspace {}.", key.id, printable(&key.name), printable(&key.workspace))
}

/// Prints a key that was just imported. The token it was given is not repeated.
pub(crate) fn imported(out: &mut dyn Write, format: Format, key: &KeyView) -> io::Result<()> {
    if format == Format::Json {
        return write_json(out, &key_json(key));
    }
    writeln!(out, "Imported {}.", key_title(key))?;
    match (key.origin, &key.account) {
        (KeyOrigin::Legacy, Some(account)) => writeln!(
            out,
            "It is a legacy personal key of account {}: it may act on the account's workspaces (keyward account \
             set), can only be viewed and revoked, and stops working at the legacy sunset.",
            printable(account)
        )?,
        _ => writeln!(out, "The token verifies as it is; keywardd keeps only its hash.")?,
    }
    writeln!(out)?;
    write_fields(out, &key_fields(key))
}

/// Prints a key's credit balance after a change.
pub(crate) fn credited(out: &mut dyn Write, format: Format, key: &KeyView) -> io::Result<()> {
    if format == Format::Json {
        return write_json(out, &key_json(key));
    }
    let balance = key.limits.credits.map_or_else(|| "no credits".to_owned(), |n| plural(n, "credit", "credits"));
    writeln!(out, "Key {} ({:?}) now has {balance}.", key.id, printable(&key.name))
}

/// Prints an account's workspaces.
pub(crate) fn account(out: &mut dyn Write, format: Format, account: &AccountView) -> io::Result<()> {
    if format == Format::Json {
        return write_json(out, &AccountJson { account: &account.account, workspaces: &account.workspaces });
    }
    if account.workspaces.is_empty() {
        return writeln!(out, "Account {}: its legacy keys may act on no workspace.", printable(&account.account));
    }
    writeln!(
        out,
        "Account {}: its legacy keys may act on {}.",
        printable(&account.account),
        printable(&account.workspaces.join(", "))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::output::samples::{render, render_json, sample_key};
    use crate::fixtures::{self, NOON};
    use keyward_protocol::{KeyStatus, Limits, Rate, Refill, Role, Secret};
    use serde_json::{json, Value};

    /// A key with every optional setting set.
    fn limited_key() -> KeyView {
        KeyView {
            metadata: BTreeMap::from([("team".into(), "billing".into())]),
            previous_token_until: Some(NOON + 3600),
            limits: Limits {
                rate: RatePolicy::Custom("2/h".parse().unwrap()),
                named: BTreeMap::from([("exports".into(), "1/h".parse::<Rate>().unwrap())]),
                credits: Some(42),
                refill: Some(Refill::Monthly { amount: 5000, day: 1 }),
            },
            ..sample_key()
        }
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
                "origin": "generated",
                "account": null,
                "created_at": "2026-11-23T12:00:00Z",
                "expires_at": "2027-02-21T12:00:00Z",
                "last_used_at": null,
                "revoked_at": null,
                "previous_token_until": null,
                "metadata": {},
                "rate": {"plan": "free"},
                "limits": {},
                "credits": null,
                "refill": null,
            })
        );
    }

    #[test]
    fn key_json_shows_limits_credits_and_the_grace_window() {
        let key = limited_key();
        let value = render_json(|out| self::key(out, Format::Json, &key));
        assert_eq!(value["rate"], json!({"custom": "2/h"}));
        assert_eq!(value["limits"], json!({"exports": "1/h"}));
        assert_eq!(value["credits"], 42);
        assert_eq!(value["refill"], "5000/month@1");
        assert_eq!(value["metadata"], json!({"team": "billing"}));
        assert_eq!(value["previous_token_until"], "2026-11-23T13:00:00Z");

        let unlimited = KeyView { limits: Limits { rate: RatePolicy::Unlimited, ..Limits::default() }, ..sample_key() };
        assert_eq!(render_json(|out| self::key(out, Format::Json, &unlimited))["rate"], "none");

        let legacy = KeyView {
            origin: KeyOrigin::Legacy,
            status: KeyStatus::Legacy,
            account: Some("acct-7".into()),
            role: Role::Admin,
            ..sample_key()
        };
        let value = render_json(|out| self::key(out, Format::Json, &legacy));
        assert_eq!(
            (&value["origin"], &value["status"], &value["account"]),
            (&json!("legacy"), &json!("legacy"), &json!("acct-7"))
        );
        assert_eq!(value["role"], "admin");
    }

    #[test]
    fn show_text_lists_the_settings() {
        let text = render(|out| self::key(out, Format::Text, &limited_key()));
        for (label, value) in [
            ("Origin", "generated"),
            ("Old token until", "2026-11-23 13:00"),
            ("Rate limit", "2/h"),
            ("Named limits", "exports=1/h"),
            ("Credits", "42"),
            ("Refill", "5000/month@1"),
            ("Metadata", "team=billing"),
        ] {
            let line = format!("\n{label:<15}  {value}\n");
            assert!(text.contains(&line), "no {line:?} in:\n{text}");
        }
        assert!(!text.contains("Account"), "{text}");
        let text = render(|out| self::key(out, Format::Text, &sample_key()));
        assert!(text.contains("\nRate limit   plan free\n") && !text.contains("Credits"), "{text}");
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
    fn regenerated_is_shaped_like_created_and_says_until_when_the_old_token_works() {
        let fresh = CreatedKey { token: Secret::new("kw_live_new_token"), key: limited_key() };
        let created = render_json(|out| self::created(out, Format::Json, &fresh));
        let regenerated = render_json(|out| self::regenerated(out, Format::Json, &fresh));
        assert_eq!(created, regenerated, "the same object shape");
        assert_eq!(regenerated["token"], "kw_live_new_token");

        let text = render(|out| self::regenerated(out, Format::Text, &fresh));
        assert!(text.contains("\n    kw_live_new_token\n") && text.contains("shown only once"), "{text}");
        assert!(
            text.contains("The old token keeps working until 2026-11-23 13:00 UTC (2026-11-23T13:00:00Z)"),
            "{text}"
        );

        let at_once = CreatedKey { token: Secret::new("kw_live_new_token"), key: sample_key() };
        let text = render(|out| self::regenerated(out, Format::Text, &at_once));
        assert!(text.contains("The old token stopped working now"), "{text}");
    }

    #[test]
    fn list_json_is_an_array_and_text_is_a_table() {
        let mut revoked = sample_key();
        revoked.id = "ZZZZZZ999999".into();
        revoked.status = KeyStatus::Revoked;
        revoked.role = Role::Admin;
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
            "ID            PREFIX    NAME       ROLE    SCOPES                 STATUS   CREATED           LAST USED         EXPIRES",
            "AbCdEf012345  kw_live_  CI deploy  member  read:all,write:tables  active   2026-11-23 12:00  -                 2027-02-21 12:00",
            "ZZZZZZ999999  kw_live_  CI deploy  admin   read:all,write:tables  revoked  2026-11-23 12:00  2026-11-23 12:01  never",
        ];
        assert_eq!(text, expected.map(|line| format!("{line}\n")).concat());
        let empty = render(|out| self::keys(out, Format::Text, "acme", &[]));
        assert_eq!(empty, "No keys in workspace acme.\n");
    }

    #[test]
    fn legacy_listing_leads_with_last_use() {
        let legacy = |id: &str, used: Option<i64>| KeyView {
            origin: KeyOrigin::Legacy,
            status: KeyStatus::Legacy,
            account: Some("acct-7".into()),
            prefix: "abc1".into(),
            last_used_at: used,
            ..fixtures::key_view(id)
        };
        let keys = [legacy("AAAAAAAAAAAA", Some(NOON + 60)), legacy("BBBBBBBBBBBB", None)];
        let text = render(|out| legacy_keys(out, Format::Text, Some("acct-7"), &keys));
        let expected = [
            "ID            LAST USED         ACCOUNT  NAME       STATUS  PREFIX  WORKSPACE  CREATED",
            "AAAAAAAAAAAA  2026-11-23 12:01  acct-7   CI deploy  legacy  abc1    acme       2026-11-23 12:00",
            "BBBBBBBBBBBB  never             acct-7   CI deploy  legacy  abc1    acme       2026-11-23 12:00",
            "",
            "2 legacy keys, 1 used at least once, 1 never used.",
        ];
        assert_eq!(text, expected.map(|line| format!("{line}\n")).concat());
        let value = render_json(|out| legacy_keys(out, Format::Json, None, &keys));
        assert_eq!(value[0]["account"], "acct-7");
        assert_eq!(value[1]["last_used_at"], Value::Null);
        assert_eq!(render(|out| legacy_keys(out, Format::Text, Some("x"), &[])), "No legacy keys of account x.\n");
        assert_eq!(render(|out| legacy_keys(out, Format::Text, None, &[])), "No legacy keys.\n");
    }

    #[test]
    fn change_confirmations_print_the_key() {
        let key = sample_key();
        for print in [edited, deactivated, activated, revoked, imported, credited] {
            assert_eq!(
                render_json(|out| print(out, Format::Json, &key)),
                render_json(|out| self::key(out, Format::Json, &key))
            );
            let text = render(|out| print(out, Format::Text, &key));
            assert!(text.contains("AbCdEf012345"), "{text}");
        }
        assert!(render(|out| edited(out, Format::Text, &key)).contains("its token is unchanged"));
        assert!(render(|out| deactivated(out, Format::Text, &key)).contains("INACTIVE"));
        assert_eq!(
            render(|out| credited(out, Format::Text, &limited_key())),
            "Key AbCdEf012345 (\"CI deploy\") now has 42 credits.\n"
        );
        let legacy = KeyView { origin: KeyOrigin::Legacy, account: Some("acct-7".into()), ..sample_key() };
        assert!(render(|out| imported(out, Format::Text, &legacy)).contains("legacy personal key of account acct-7"));
    }

    #[test]
    fn account_json_and_text() {
        let view = AccountView { account: "acct-7".into(), workspaces: vec!["ws-a".into(), "ws-b".into()] };
        assert_eq!(
            render_json(|out| account(out, Format::Json, &view)),
            json!({"account": "acct-7", "workspaces": ["ws-a", "ws-b"]})
        );
        assert_eq!(
            render(|out| account(out, Format::Text, &view)),
            "Account acct-7: its legacy keys may act on ws-a, ws-b.\n"
        );
        let empty = AccountView { account: "acct-8".into(), workspaces: vec![] };
        assert!(render(|out| account(out, Format::Text, &empty)).contains("no workspace"));
    }
}
