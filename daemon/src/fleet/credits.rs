//! Grants of escrowed credits (see [`crate::limits::credits`] and [`crate::engine::credits`]): one task per
//! host takes the keys whose cells asked for a grant ([`crate::service::Service::top_up_credits`]), asks the
//! engine, and hands the grant to the cell. Verifies never wait for it; a cell left empty meanwhile answers
//! USAGE_EXCEEDED with a retry time. With the engine unreachable, a cell spends what it holds and then
//! fails closed.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::engine::credits::grant;
use crate::host::clock::unix_now;
use crate::limits::credits::{last_boundary, refill_amount};
use crate::service::{CreditRequests, Service};

/// The pause after a failed grant request, so a dead engine is not asked in a busy loop.
const RETRY_AFTER_MS: u64 = 50;

/// Serves grant requests until `shutdown`.
pub async fn run(service: Service, mut requests: CreditRequests, shutdown: CancellationToken) {
    let Some(engine) = service.engine().cloned() else { return };
    loop {
        let id = tokio::select! {
            _ = shutdown.cancelled() => return,
            id = requests.recv() => match id { Some(id) => id, None => return },
        };
        let Some(key) = service.index().get(id.as_str()) else { continue };
        let Some(cell) = &key.credits else { continue };
        let refill = key.record.limits.refill.map(|refill| (last_boundary(refill, unix_now()), refill_amount(refill)));
        let deadline = tokio::time::Instant::now() + engine.settings.request_timeout;
        match grant(&engine, id.as_str(), refill, deadline).await {
            Ok(Some(got)) => cell.grant(got.granted, got.remaining, got.epoch, got.refilled_at),
            // No escrowed balance for the key in the engine: nothing to spend.
            Ok(None) => cell.grant(0, 0, u64::MAX, i64::MIN),
            Err(error) => {
                tracing::debug!(%error, key = %id, "cannot get a grant of credits");
                cell.grant_failed();
                // Not a busy loop against a dead engine: the next ask comes from a verify, after this pause.
                tokio::time::sleep(Duration::from_millis(RETRY_AFTER_MS)).await;
            }
        }
    }
}
