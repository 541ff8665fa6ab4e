//! Leases of fleet-wide limits (see [`crate::limits::lease`] for why they bound every window): a limit of N
//! per period P is a schedule of *slots* one interval T = P / N apart, fleet-wide, kept as the engine time
//! of the next free slot. A lease is the next few slots that fall within a short horizon from now: the
//! statement moves the next free slot past them under the row's lock, so two hosts never get the same slot
//! and slots never come closer than T, whatever the number of hosts.

use keyward_protocol::Rate;
use tokio::time::Instant;

use super::{kept, until, Engine, EngineError};

/// What a lease request got: `count` slots, the first `first_in_us` after the engine's now (0 or more),
/// one `interval_us` apart. With none: microseconds until one falls within the horizon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub count: u64,
    pub first_in_us: u64,
    pub interval_us: u64,
    pub retry_after_us: u64,
}

/// Takes the slots from the next free one that fall before now + horizon ($4), at most $3 of them, one
/// interval ($5) apart; returns the next free slot before, and the engine's now.
const TAKE: &str = "
WITH now AS (
    SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint AS us
), old AS (
    SELECT greatest(next_us, now.us) AS first, now.us AS now
    FROM keyward_rate_slots, now WHERE key_id = $1 AND limit_name = $2 FOR UPDATE
), taken AS (
    SELECT first, now, CASE WHEN first < now + $4::bigint
        THEN least($3::bigint, (now + $4::bigint - 1 - first) / $5::bigint + 1) ELSE 0 END AS count
    FROM old
)
UPDATE keyward_rate_slots s SET next_us = taken.first + taken.count * $5::bigint
FROM taken WHERE s.key_id = $1 AND s.limit_name = $2
RETURNING taken.count, taken.first - taken.now";

/// A limit's first lease makes its row.
const MAKE: &str =
    "INSERT INTO keyward_rate_slots (key_id, limit_name, next_us) VALUES ($1, $2, 0) ON CONFLICT DO NOTHING";

/// Asks before `deadline` for at most `most` slots of key `id`'s fleet-wide limit `rate` that fall within
/// `horizon_us` from now.
pub async fn lease(
    engine: &Engine,
    id: &str,
    rate: Rate,
    most: u64,
    horizon_us: u64,
    deadline: Instant,
) -> Result<Lease, EngineError> {
    let settings = &engine.settings;
    let mut conn = engine.grants.lock().await;
    let client = &kept(settings, &mut conn, deadline).await?.client;
    let name = rate.to_string();
    let interval_us = (rate.period.seconds() * 1_000_000 / rate.count).max(1);
    let (most, horizon, interval) = (most as i64, horizon_us as i64, interval_us as i64);
    let work = async {
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] = [&id, &name, &most, &horizon, &interval];
        match client.query_opt(TAKE, &params).await? {
            Some(row) => Ok((row, 1)),
            None => {
                client.execute(MAKE, &[&id, &name]).await?;
                let row = client.query_one(TAKE, &params).await?;
                Ok((row, 3))
            }
        }
    };
    let result = until(settings, deadline, work).await;
    let (row, queries) = match result {
        Ok(answer) => answer,
        Err(error) => {
            engine.link.queried(1);
            *conn = None;
            return Err(error);
        }
    };
    engine.link.queried(queries);
    let count = row.get::<_, i64>(0).max(0) as u64;
    let first_in_us = row.get::<_, i64>(1).max(0) as u64;
    let retry_after_us = if count == 0 { first_in_us.saturating_sub(horizon_us).max(1_000) } else { 0 };
    Ok(Lease { count, first_in_us, interval_us, retry_after_us })
}
