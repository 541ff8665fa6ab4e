//! Leases of fleet-wide limits (see [`crate::limits::lease`] for why they bound every window): one
//! transaction per lease, serialised per key by an advisory lock so two hosts never both take the last of
//! a budget. A lease is the smaller of a chunk and what the last `period + lease lifetime` of grants left
//! of the limit; none, when nothing is left, with the time until the oldest grant in that span ages out.
//! Grants older than the span are deleted as they age out.

use keyward_protocol::Rate;
use tokio::time::Instant;

use super::{connect, until, Engine, EngineError};

/// What a lease request got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// Requests granted (0: the budget is spent).
    pub granted: u64,
    /// With nothing granted: milliseconds until some of the budget is free again.
    pub retry_after_ms: u64,
}

const TAKE: &str = "
WITH now AS (
    SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS ms
), recent AS (
    SELECT coalesce(sum(amount), 0)::bigint AS used, min(granted_at_ms) AS oldest
    FROM keyward_rate_grants, now
    WHERE key_id = $1 AND limit_name = $2 AND granted_at_ms > now.ms - $3
), pruned AS (
    DELETE FROM keyward_rate_grants USING now
    WHERE key_id = $1 AND limit_name = $2 AND granted_at_ms <= now.ms - $3
), given AS (
    INSERT INTO keyward_rate_grants (key_id, limit_name, node_id, granted_at_ms, amount)
    SELECT $1, $2, $6, now.ms, least($4::bigint, $5::bigint - recent.used) FROM now, recent
    WHERE $5::bigint - recent.used > 0
    RETURNING amount
)
SELECT coalesce((SELECT amount FROM given), 0), coalesce(recent.oldest + $3 - now.ms, 0) FROM now, recent";

/// Asks for a lease of at most `chunk` requests of key `id`'s fleet-wide limit `rate`, whose leases live
/// `lease_ms`, before `deadline`.
pub async fn lease(
    engine: &Engine,
    id: &str,
    rate: Rate,
    lease_ms: u64,
    chunk: u64,
    deadline: Instant,
) -> Result<Lease, EngineError> {
    let settings = &engine.settings;
    let mut conn = engine.grants.lock().await;
    if conn.as_ref().is_none_or(|c| c.client.is_closed()) {
        *conn = None;
        *conn = Some(connect(settings, deadline, false).await?);
    }
    let client = &conn.as_ref().expect("connected above").client;
    let name = rate.to_string();
    let span = (rate.period.seconds() * 1_000 + lease_ms) as i64;
    let (chunk, limit) = (chunk as i64, rate.count as i64);
    let work = async {
        client.batch_execute("BEGIN").await?;
        client.query_one("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))", &[&id]).await?;
        let row = client.query_one(TAKE, &[&id, &name, &span, &chunk, &limit, &settings.node_id]).await?;
        client.batch_execute("COMMIT").await?;
        Ok(row)
    };
    let result = until(settings, deadline, work).await;
    engine.link.queried(4);
    let row = match result {
        Ok(row) => row,
        Err(error) => {
            // The connection may be mid-transaction: drop it, which rolls back.
            *conn = None;
            return Err(error);
        }
    };
    Ok(Lease { granted: row.get::<_, i64>(0).max(0) as u64, retry_after_ms: row.get::<_, i64>(1).max(1) as u64 })
}
