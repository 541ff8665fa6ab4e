//! Escrowed credits: a host takes a grant of a key's fleet balance in one statement, and spends it locally
//! ([`crate::limits::credits::CreditCell::grant`]); the engine's row only ever goes down by what it hands
//! out, so the fleet never spends more than the balance, whatever host or connection dies.
//!
//! The grant is a slice of what is left — a sixteenth, at least one credit, at most `max` — so hosts take
//! smaller grants as the balance runs down and the last credits are not stranded on one host. A refill
//! (daily or monthly) is applied here, at grant time, once for the fleet: the host says which boundary
//! it is past and how much a refill gives.

use tokio::time::Instant;

use super::{kept, until, Engine, EngineError};

/// What a grant request got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    pub granted: u64,
    /// What the fleet has left after this grant.
    pub remaining: u64,
    /// The change that set the balance this grant is of.
    pub epoch: u64,
    pub refilled_at: i64,
}

/// Takes one grant and records it, in one transaction.
const GRANT: &str = "
WITH old AS (
    SELECT balance, refilled_at FROM keyward_credits WHERE key_id = $1 FOR UPDATE
), due AS (
    SELECT CASE WHEN $3::bigint > refilled_at THEN $4::bigint ELSE balance END AS balance,
           greatest(refilled_at, $3::bigint) AS refilled_at
    FROM old
), taken AS (
    UPDATE keyward_credits c
    SET balance = due.balance - least(due.balance, greatest(1, least($2::bigint, due.balance / 16))),
        refilled_at = due.refilled_at
    FROM due WHERE c.key_id = $1
    RETURNING least(due.balance, greatest(1, least($2::bigint, due.balance / 16))) AS granted,
              c.balance, c.epoch, c.refilled_at
), logged AS (
    INSERT INTO keyward_credit_grants (key_id, node_id, epoch, granted, at)
    SELECT $1, $5, epoch, granted, extract(epoch FROM now())::bigint FROM taken WHERE granted > 0
)
SELECT granted, balance, epoch, refilled_at FROM taken";

/// The largest single grant.
pub const MAX_GRANT: u64 = 1_000;

/// Asks for a grant of key `id`'s credits before `deadline`. `refill`: the latest refill boundary the host
/// is past and the refill's amount, for a key that refills. `None`: the key has no escrowed balance.
pub async fn grant(
    engine: &Engine,
    id: &str,
    refill: Option<(i64, u64)>,
    deadline: Instant,
) -> Result<Option<Grant>, EngineError> {
    let settings = &engine.settings;
    let mut conn = engine.grants.lock().await;
    let client = &kept(settings, &mut conn, deadline).await?.client;
    let (boundary, amount) = refill.map_or((i64::MIN, 0), |(at, amount)| (at, amount as i64));
    let max = MAX_GRANT as i64;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] = [&id, &max, &boundary, &amount, &settings.node_id];
    let result = until(settings, deadline, client.query_opt(GRANT, &params)).await;
    engine.link.queried(1);
    let row = match result {
        Ok(row) => row,
        Err(error) => {
            *conn = None;
            return Err(error);
        }
    };
    Ok(row.map(|row| Grant {
        granted: row.get::<_, i64>(0).max(0) as u64,
        remaining: row.get::<_, i64>(1).max(0) as u64,
        epoch: row.get::<_, i64>(2).max(0) as u64,
        refilled_at: row.get(3),
    }))
}
