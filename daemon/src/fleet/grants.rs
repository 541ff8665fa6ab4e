//! What keys want from the engine besides changes: grants of escrowed credits ([`crate::limits::credits`],
//! [`crate::engine::credits`]) and leases of fleet-wide limits ([`crate::limits::lease`],
//! [`crate::engine::leases`]). One task per host takes what verifies queued
//! ([`crate::service::Service::top_up_credits`], [`crate::service::Service::top_up_lease`]), asks the
//! engine, and hands the answer to the key's cell. Verifies never wait for it: a cell left empty meanwhile
//! refuses with a retry time. With the engine unreachable, credits are spent as far as this host holds
//! them and then fail closed; a fleet-wide limit falls back to this host's share of it.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::engine::credits::grant;
use crate::engine::leases::lease;
use crate::engine::Engine;
use crate::host::clock::{mono_nanos, unix_now};
use crate::keys::hot::HotKey;
use crate::limits::credits::{last_boundary, refill_amount};
use crate::service::{GrantRequests, Service, Wanted};

/// The pause after a failed request, so a dead engine is not asked in a busy loop.
const PAUSE_AFTER_FAILURE: Duration = Duration::from_millis(50);

/// Serves grant requests until `shutdown`.
pub async fn run(service: Service, mut requests: GrantRequests, shutdown: CancellationToken) {
    let Some(engine) = service.engine().cloned() else { return };
    // The keys warm since before the restart: their first verifies need no Argon2, so their first grants
    // are asked for now.
    for key in service.index().hot_keys() {
        service.top_up_credits(&key);
    }
    loop {
        let wanted = tokio::select! {
            _ = shutdown.cancelled() => return,
            wanted = requests.recv() => match wanted { Some(wanted) => wanted, None => return },
        };
        let id = match &wanted {
            Wanted::Credits(id) | Wanted::Lease(id) => id,
        };
        let Some(key) = service.index().get(id.as_str()) else { continue };
        let answered = match wanted {
            Wanted::Credits(_) => credits(&engine, &key).await,
            Wanted::Lease(_) => renew(&engine, &key).await,
        };
        if !answered {
            tokio::time::sleep(PAUSE_AFTER_FAILURE).await;
        }
    }
}

/// Asks for a grant of `key`'s credits; `false` if the engine could not be asked.
async fn credits(engine: &Engine, key: &HotKey) -> bool {
    let Some(cell) = &key.credits else { return true };
    let refill = key.record.limits.refill.map(|refill| (last_boundary(refill, unix_now()), refill_amount(refill)));
    let deadline = Instant::now() + engine.settings.request_timeout;
    match grant(engine, key.record.id.as_str(), refill, deadline).await {
        Ok(Some(got)) => cell.grant(got.granted, got.remaining, got.epoch, got.refilled_at),
        // No escrowed balance for the key in the engine: nothing to spend.
        Ok(None) => cell.grant(0, 0, u64::MAX, i64::MIN),
        Err(error) => {
            tracing::debug!(%error, key = %key.record.id, "cannot get a grant of credits");
            cell.grant_failed();
            return false;
        }
    }
    true
}

/// Asks for a lease of `key`'s fleet-wide limit; `false` if the engine could not be asked.
async fn renew(engine: &Engine, key: &HotKey) -> bool {
    let Some(cell) = key.main_limit.as_ref().and_then(|limit| limit.lease.as_ref()) else { return true };
    let asked_at = mono_nanos();
    let deadline = Instant::now() + engine.settings.request_timeout;
    let hosts = engine.link.hosts();
    match lease(engine, key.record.id.as_str(), cell.rate(), cell.chunk(), cell.horizon_us(), deadline).await {
        Ok(got) if got.count > 0 => cell.granted(got.count, got.first_in_us, asked_at, mono_nanos(), hosts),
        Ok(got) => cell.refused(mono_nanos(), got.retry_after_us, hosts),
        Err(error) => {
            tracing::debug!(%error, key = %key.record.id, "cannot get a lease of a fleet-wide limit");
            cell.failed(mono_nanos());
            return false;
        }
    }
    true
}
