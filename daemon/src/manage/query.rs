//! Reading keys and the audit log: list, show, legacy listing, audit.

use std::collections::BTreeMap;

use keyward_protocol::{
    AuditEntry, AuditQuery, KeyId, KeyPage, KeyUsage, KeyView, ListRequest, UsageBucket, UsageReport, VerifyCode,
};

use super::{existing, view_found};
use crate::error::DaemonError;
use crate::host::clock::unix_now;
use crate::keys::index::order;
use crate::keys::store::Bucket;
use crate::keys::usage::{self, CODES};
use crate::manage::validate;
use crate::service::{Found, Service};

/// Counts by code, without the zeros.
fn by_code(counts: &[u64; CODES]) -> BTreeMap<VerifyCode, u64> {
    VerifyCode::ALL.iter().zip(counts).filter(|(_, &n)| n > 0).map(|(&code, &n)| (code, n)).collect()
}

/// Buckets from the store with the pending counts added to the current one, oldest first.
fn with_pending(mut stored: Vec<(i64, [u64; CODES])>, current: i64, pending: &[u64; CODES]) -> Vec<UsageBucket> {
    if pending.iter().any(|&n| n > 0) {
        match stored.iter_mut().find(|(start, _)| *start == current) {
            Some((_, counts)) => usage::add(counts, pending),
            None => stored.push((current, *pending)),
        }
    }
    stored.into_iter().map(|(start, counts)| UsageBucket { start, counts: by_code(&counts) }).collect()
}

/// Keys per listing page when the request does not say.
const DEFAULT_PAGE: usize = 100;
/// The largest page a request may ask for.
const MAX_PAGE: usize = 1000;
/// Audit entries when the request does not say, and at most.
const DEFAULT_AUDIT: usize = 100;
const MAX_AUDIT: usize = 10_000;

/// One page of a workspace's keys, oldest first.
pub fn list(service: &Service, request: &ListRequest) -> Result<KeyPage, DaemonError> {
    let workspace = validate::workspace(&request.workspace)?;
    let after = match &request.after {
        None => None,
        Some(after) => Some(
            service
                .found(validate::key_id(after)?.as_str())?
                .filter(|found| found.record().workspace == workspace)
                .ok_or_else(|| DaemonError::InvalidArgument("`after` is not a key of this workspace".into()))?,
        ),
    };
    let page = match request.limit as usize {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    };
    let (ids, more) = service.index().page(&workspace, after.as_ref().map(|found| order(found.record())), page);
    let now = unix_now();
    let shown: Vec<KeyView> = found_all(service, &ids)?.iter().map(|found| view_found(service, found, now)).collect();
    let next = more.then(|| shown.last().map(|k| k.id.clone())).flatten();
    Ok(KeyPage { keys: shown, next })
}

/// Legacy personal keys (of one account, if given), oldest first, so operators can chase the ones
/// still in use before the sunset.
pub fn list_legacy(service: &Service, account: Option<&str>) -> Result<KeyPage, DaemonError> {
    let account = account.map(validate::account).transpose()?;
    let mut keys = found_all(service, &service.index().legacy_ids())?;
    keys.retain(|found| account.as_deref().is_none_or(|a| found.record().account.as_deref() == Some(a)));
    keys.sort_by(|a, b| order(a.record()).cmp(&order(b.record())));
    let now = unix_now();
    Ok(KeyPage { keys: keys.iter().map(|found| view_found(service, found, now)).collect(), next: None })
}

/// One key.
pub fn get(service: &Service, id: &str) -> Result<KeyView, DaemonError> {
    let id = validate::key_id(id)?;
    Ok(view_found(service, &existing(service, &id)?, unix_now()))
}

/// Keys `ids` as [found](Service::found), skipping any that no longer exist.
fn found_all(service: &Service, ids: &[KeyId]) -> Result<Vec<Found>, DaemonError> {
    let mut found = Vec::with_capacity(ids.len());
    for id in ids {
        found.extend(service.found(id.as_str())?);
    }
    Ok(found)
}

/// Audit entries matching `query`, newest first.
pub async fn audit(service: &Service, query: AuditQuery) -> Result<Vec<AuditEntry>, DaemonError> {
    if let Some(key) = &query.key {
        validate::key_id(key)?;
    }
    let limit = match query.limit as usize {
        0 => DEFAULT_AUDIT,
        n => n.min(MAX_AUDIT),
    };
    let store = service.store().clone();
    tokio::task::spawn_blocking(move || {
        store.audit_entries(limit, |entry| {
            query.workspace.as_ref().is_none_or(|ws| entry.workspace.as_ref() == Some(ws))
                && query.key.as_ref().is_none_or(|key| entry.key_id.as_ref() == Some(key))
                && query.since.is_none_or(|since| entry.at >= since)
        })
    })
    .await
    .map_err(DaemonError::task("audit"))?
    .map_err(DaemonError::from)
}

/// One key's verifications by outcome: totals over 90 days, hourly for 48 hours, daily for 90 days.
pub async fn usage(service: &Service, id: &str) -> Result<UsageReport, DaemonError> {
    let id = validate::key_id(id)?;
    if !service.index().contains(id.as_str()) {
        return Err(DaemonError::KeyNotFound(id.to_string()));
    }
    let now = unix_now();
    let (hour, day) = (usage::hour_start(now), usage::day_start(now));
    let store = service.store().clone();
    let key_id = id.to_string();
    let (hourly, daily) = tokio::task::spawn_blocking(move || {
        let hourly = store.usage_buckets(&key_id, Bucket::Hour, usage::first_hour_kept(now))?;
        let daily = store.usage_buckets(&key_id, Bucket::Day, usage::first_day_kept(now))?;
        Ok::<_, DaemonError>((hourly, daily))
    })
    .await
    .map_err(DaemonError::task("usage"))??;
    let pending = service.index().get(id.as_str()).map_or([0; CODES], |key| key.activity.usage.pending());
    let hourly = with_pending(hourly, hour, &pending);
    let daily = with_pending(daily, day, &pending);
    let mut totals = BTreeMap::new();
    for (code, n) in daily.iter().flat_map(|bucket| &bucket.counts) {
        *totals.entry(*code).or_insert(0) += n;
    }
    Ok(UsageReport { key_id: id.to_string(), totals, hourly, daily })
}

/// Per-key totals over 90 days for one workspace, most verifications first.
pub async fn workspace_usage(service: &Service, workspace: &str) -> Result<Vec<KeyUsage>, DaemonError> {
    let workspace = validate::workspace(workspace)?;
    let (ids, _) = service.index().page(&workspace, None, usize::MAX);
    let since = usage::first_day_kept(unix_now());
    let service = service.clone();
    let mut report = tokio::task::spawn_blocking(move || {
        found_all(&service, &ids)?
            .iter()
            .map(|found| {
                let record = found.record();
                let mut counts = match found {
                    Found::Hot(key) => key.activity.usage.pending(),
                    Found::Stored(..) => [0; CODES],
                };
                for (_, day) in service.store().usage_buckets(record.id.as_str(), Bucket::Day, since)? {
                    usage::add(&mut counts, &day);
                }
                Ok(KeyUsage {
                    key_id: record.id.to_string(),
                    name: record.name.clone(),
                    total: counts.iter().sum(),
                    totals: by_code(&counts),
                })
            })
            .collect::<Result<Vec<_>, DaemonError>>()
    })
    .await
    .map_err(DaemonError::task("usage"))??;
    report.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.key_id.cmp(&b.key_id)));
    Ok(report)
}

/// The daemon's counters, with the key census and Argon2 load.
pub fn report(service: &Service) -> keyward_protocol::StatsReport {
    let mut report = service.stats().report();
    let now = unix_now();
    let sunset = service.legacy_sunset();
    let mut counts = std::collections::HashMap::new();
    service.index().census(|census| *counts.entry(census.status(now, sunset)).or_insert(0) += 1);
    report.keys.extend(counts.into_iter().map(|(status, n)| (status.as_str().to_owned(), n)));
    (report.argon2_running, report.argon2_waiting) = service.hasher().load();
    report.store_bytes = service.store().size_on_disk();
    report.fleet = service.engine().map(|engine| engine.link.figures(&engine.settings.node_id));
    report
}
