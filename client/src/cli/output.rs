//! What `keyward` prints: aligned text for people, or exactly one JSON value for scripts.
//!
//! This module owns every byte the CLI writes to stdout but the Prometheus exposition (`prometheus`). The JSON shapes are built from small borrowed
//! view structs; one function ([`key_json`]) maps a [`KeyView`] to its JSON form for every command that
//! answers with a key (create, list, show, edit, regenerate, deactivate, activate, revoke, import,
//! credits). Timestamps are RFC 3339 UTC in JSON and `YYYY-MM-DD HH:MM` (UTC) in text; absent values are
//! `null` in JSON and `-` in text; codes and actions appear as their stable names (`VALID`,
//! `regenerate`).
//!
//! A key's rate policy is JSON in serde's externally tagged form, lowercased:
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
use std::path::Path;

use keyward_protocol::{
    AccountView, AuditEntry, CreatedKey, KeyOrigin, KeyStatus, KeyUsage, KeyView, RateLimitStatus, RatePolicy,
    StatsReport, UsageBucket, UsageReport, VerifyAnswer, VerifyCode,
};
use serde::Serialize;

/// Text or JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Text,
    Json,
}

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
    role: Option<&'static str>,
    metadata: Option<&'a BTreeMap<String, String>>,
    account: Option<&'a str>,
    retry_after_ms: Option<u64>,
    ratelimit: Vec<RateLimitJson<'a>>,
    credits: Option<u64>,
}

/// One rate limit a verify checked.
#[derive(Debug, Serialize)]
struct RateLimitJson<'a> {
    policy: &'a str,
    limit: u64,
    remaining: u64,
    reset_at: String,
    window_seconds: u64,
}

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

/// An account as JSON.
#[derive(Debug, Serialize)]
struct AccountJson<'a> {
    account: &'a str,
    workspaces: &'a [String],
}

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

/// The answer to `ping` as JSON.
#[derive(Debug, Serialize)]
struct PingJson {
    ok: bool,
    verify_socket: String,
    admin_socket: String,
}

/// The daemon's counters as JSON: the protocol's field names, with every key status and verify code
/// present (0 when none), times as RFC 3339, and histogram bounds as strings (`"+Inf"` for the last).
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
        role: key.map(|k| k.role.as_str()),
        metadata: key.map(|k| &k.metadata),
        account: key.and_then(|k| k.account.as_deref()),
        retry_after_ms: answer.retry_after_ms,
        ratelimit: answer.ratelimit.iter().map(rate_limit_json).collect(),
        credits: answer.credits,
    }
}

fn rate_limit_json(status: &RateLimitStatus) -> RateLimitJson<'_> {
    RateLimitJson {
        policy: &status.policy,
        limit: status.limit,
        remaining: status.remaining,
        reset_at: rfc3339_millis(status.reset_at_ms),
        window_seconds: status.window_seconds,
    }
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

/// Counts by stable code name.
fn counts_json(counts: &BTreeMap<VerifyCode, u64>) -> BTreeMap<&'static str, u64> {
    counts.iter().map(|(code, n)| (code.as_str(), *n)).collect()
}

fn bucket_json(bucket: &UsageBucket) -> BucketJson {
    BucketJson { start: rfc3339(bucket.start), counts: counts_json(&bucket.counts) }
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

/// Prints a verify answer: `VALID key ID (workspace WS)`, or only the code when no key was named, then
/// when to retry and the credits left, when the daemon said.
pub(crate) fn verified(out: &mut dyn Write, format: Format, answer: &VerifyAnswer) -> io::Result<()> {
    if format == Format::Json {
        return write_json(out, &verify_json(answer));
    }
    let mut line = match &answer.key {
        Some(key) => format!("{} key {} (workspace {})", answer.code, key.id, printable(&key.workspace)),
        None => answer.code.to_string(),
    };
    if let Some(retry) = answer.retry_after_ms {
        line.push_str(&format!("; retry after {}", wait_text(retry)));
    }
    if let Some(credits) = answer.credits {
        line.push_str(&format!("; {} left", plural(credits, "credit", "credits")));
    }
    writeln!(out, "{line}")
}

/// `1 key`, `2 keys`.
fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A wait for people: `250 ms`, `2.5 s`, `4 min 10 s`, `1 h 0 min` (rounded up, so waiting that long is
/// always enough).
fn wait_text(ms: u64) -> String {
    let seconds = ms.div_ceil(1000);
    match ms {
        0..1000 => format!("{ms} ms"),
        1000..60_000 => {
            let tenths = ms.div_ceil(100);
            format!("{}.{} s", tenths / 10, tenths % 10)
        }
        _ if seconds < 3600 => format!("{} min {} s", seconds / 60, seconds % 60),
        _ => {
            let minutes = seconds.div_ceil(60);
            format!("{} h {} min", minutes / 60, minutes % 60)
        }
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

/// `VALID 3, NOT_FOUND 1`, or `-` for none.
fn counts_text(counts: &BTreeMap<VerifyCode, u64>) -> String {
    if counts.is_empty() {
        return "-".to_owned();
    }
    counts.iter().map(|(code, n)| format!("{code} {n}")).collect::<Vec<_>>().join(", ")
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

/// The share of verifies of known keys answered without Argon2; `None` before the first.
fn cache_hit_ratio(report: &StatsReport) -> Option<f64> {
    let lookups = report.cache_hits + report.cache_misses;
    (lookups > 0).then(|| report.cache_hits as f64 / lookups as f64)
}

/// Prints the daemon's counters (`stats`).
pub(crate) fn stats(out: &mut dyn Write, format: Format, report: &StatsReport) -> io::Result<()> {
    let latency = &report.verify_latency;
    if format == Format::Json {
        let view = StatsJson {
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
                    .map(|(bound, count)| BucketBoundJson { le: super::prometheus::bound_label(*bound), count: *count })
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
        };
        return write_json(out, &view);
    }
    let keys = keys_by_status(report);
    let key_total: u64 = keys.iter().map(|(_, n)| n).sum();
    let key_counts: Vec<String> =
        keys.iter().filter(|(_, n)| *n > 0).map(|(status, n)| format!("{n} {}", printable(status))).collect();
    let verify_total: u64 = report.verifies.values().sum();
    let fields: Vec<(&str, Cow<'_, str>)> = vec![
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
        (
            "Last flush",
            report.last_flush_at.map_or_else(|| "never".to_owned(), |at| format!("{} UTC", human_time(at))).into(),
        ),
    ];
    write_fields(out, &fields)
}

/// Seconds as `42 s`, `5 min 3 s`, `2 h 5 min`, `3 d 4 h`.
fn duration_text(seconds: u64) -> String {
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min {} s", seconds / 60, seconds % 60),
        3600..86_400 => format!("{} h {} min", seconds / 3600, seconds % 3600 / 60),
        _ => format!("{} d {} h", seconds / 86_400, seconds % 86_400 / 3600),
    }
}

/// Seconds as microseconds: `3.5 µs` below 10 µs, whole microseconds above.
fn micros_text(seconds: f64) -> String {
    let micros = seconds * 1e6;
    if micros < 10.0 {
        format!("{micros:.1} µs")
    } else {
        format!("{micros:.0} µs")
    }
}

/// Bytes in binary units with the exact count: `1.2 MiB (1234567 bytes)`.
fn bytes_text(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return plural(bytes, "byte", "bytes");
    }
    let mut size = bytes as f64 / 1024.0;
    let mut unit = 0;
    while size >= 1024.0 && unit + 1 < UNITS.len() {
        size /= 1024.0;
        unit += 1;
    }
    format!("{size:.1} {} ({bytes} bytes)", UNITS[unit])
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

/// Unix seconds as RFC 3339 UTC, e.g. `2026-11-23T12:00:00Z` (the bare number if out of range).
pub(crate) fn rfc3339(seconds: i64) -> String {
    match jiff::Timestamp::from_second(seconds) {
        Ok(at) => at.to_string(),
        Err(_) => seconds.to_string(),
    }
}

/// Unix milliseconds as RFC 3339 UTC with the milliseconds, e.g. `2026-11-23T12:00:00.6Z` (the bare number
/// if out of range).
pub(crate) fn rfc3339_millis(millis: i64) -> String {
    match jiff::Timestamp::from_millisecond(millis) {
        Ok(at) => at.to_string(),
        Err(_) => millis.to_string(),
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
    use keyward_protocol::{
        Actor, AuditAction, FieldChange, KeyStatus, Limits, Rate, Refill, Role, Secret, VerifiedKey, VerifyCode,
    };
    use serde_json::{json, Value};
    use std::sync::Arc;

    fn sample_key() -> KeyView {
        KeyView {
            scopes: vec!["read:all".into(), "write:tables".into()],
            expires_at: Some(NOON + 90 * 86_400),
            ..fixtures::key_view("AbCdEf012345")
        }
    }

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
        assert_eq!(rfc3339_millis(NOON * 1000 + 600), "2026-11-23T12:00:00.6Z");
        assert_eq!(rfc3339_millis(NOON * 1000), "2026-11-23T12:00:00Z");
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
    fn verify_json_names_the_key_or_nulls() {
        let key = VerifiedKey {
            scopes: vec!["admin".into()],
            role: Role::Admin,
            metadata: BTreeMap::from([("team".into(), "billing".into())]),
            ..fixtures::verified_key("AbCdEf012345")
        };
        let answer = VerifyAnswer { key: Some(Arc::new(key)), ..VerifyAnswer::refused(VerifyCode::Valid) };
        let value = render_json(|out| verified(out, Format::Json, &answer));
        assert_eq!(
            value,
            json!({
                "valid": true,
                "code": "VALID",
                "key_id": "AbCdEf012345",
                "workspace": "acme",
                "name": "CI deploy",
                "env": "live",
                "scopes": ["admin"],
                "expires_at": null,
                "role": "admin",
                "metadata": {"team": "billing"},
                "account": null,
                "retry_after_ms": null,
                "ratelimit": [],
                "credits": null,
            })
        );
        let text = render(|out| verified(out, Format::Text, &answer));
        assert_eq!(text, "VALID key AbCdEf012345 (workspace acme)\n");

        let not_found = VerifyAnswer::refused(VerifyCode::NotFound);
        let value = render_json(|out| verified(out, Format::Json, &not_found));
        assert_eq!(value["valid"], false);
        assert_eq!(value["code"], "NOT_FOUND");
        for field in ["key_id", "scopes", "role", "metadata", "account", "credits", "retry_after_ms"] {
            assert_eq!(value[field], Value::Null, "{field}");
        }
        assert_eq!(render(|out| verified(out, Format::Text, &not_found)), "NOT_FOUND\n");
    }

    #[test]
    fn a_rate_limited_answer_says_when_to_retry() {
        let status = |policy: &str, remaining| RateLimitStatus {
            policy: policy.into(),
            limit: 2,
            remaining,
            reset_at_ms: NOON * 1000 + 1500,
            window_seconds: 3600,
        };
        let answer = VerifyAnswer {
            key: Some(Arc::new(fixtures::verified_key("AbCdEf012345"))),
            retry_after_ms: Some(1800),
            ratelimit: vec![status("custom", 1), status("exports", 0)],
            credits: Some(7),
            ..VerifyAnswer::refused(VerifyCode::RateLimited)
        };
        let value = render_json(|out| verified(out, Format::Json, &answer));
        assert_eq!((&value["valid"], &value["code"]), (&json!(false), &json!("RATE_LIMITED")));
        assert_eq!(value["retry_after_ms"], 1800);
        assert_eq!(value["credits"], 7);
        assert_eq!(
            value["ratelimit"][1],
            json!({"policy": "exports", "limit": 2, "remaining": 0, "reset_at": "2026-11-23T12:00:01.5Z", "window_seconds": 3600})
        );
        let text = render(|out| verified(out, Format::Text, &answer));
        assert_eq!(text, "RATE_LIMITED key AbCdEf012345 (workspace acme); retry after 1.8 s; 7 credits left\n");
    }

    fn audit_entries() -> Vec<AuditEntry> {
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

    #[test]
    fn waits_read_naturally_and_never_short() {
        let cases = [
            (0, "0 ms"),
            (999, "999 ms"),
            (1000, "1.0 s"),
            (1001, "1.1 s"),
            (1800, "1.8 s"),
            (59_999, "60.0 s"),
            (60_000, "1 min 0 s"),
            (61_001, "1 min 2 s"),
            (3_599_998, "1 h 0 min"),
            (3_600_001, "1 h 1 min"),
        ];
        for (ms, text) in cases {
            assert_eq!(wait_text(ms), text, "{ms} ms");
        }
        assert_eq!((plural(1, "key", "keys"), plural(0, "key", "keys")), ("1 key".into(), "0 keys".into()));
    }

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
    }

    #[test]
    fn control_characters_are_escaped_in_text() {
        let mut key = sample_key();
        key.name = "evil\u{1b}[2J".into();
        let text = render(|out| self::key(out, Format::Text, &key));
        assert!(!text.contains('\u{1b}'));
        assert!(text.contains("evil\\u{1b}[2J"), "{text}");
        let mut entries = audit_entries();
        entries[1].actor.label = Some("mallory\u{1b}]0;".into());
        entries[1].changes[0].to = Some("x\u{7}".into());
        let text = render(|out| audit(out, Format::Text, &entries));
        assert!(!text.contains('\u{1b}') && !text.contains('\u{7}'), "{text}");
    }
}
