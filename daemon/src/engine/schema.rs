//! The engine's schema, one database per fleet. Tables:
//!
//! - `keyward_meta`: one row, the fleet's id, the schema version, and a check value of the fleet's lookup
//!   key (never the key: every host holds the same key file, and one with another is refused);
//! - `keyward_changes`: every management change in the fleet, numbered by `keyward_change_seq`: its id
//!   (so a change whose commit went unconfirmed can be looked up), time, issuing node, action and key for
//!   people reading SQL, and the encoded change ([`super::rows::Body`]: the key record with its Argon2
//!   hash, never a token; the audit entry);
//! - `keyward_keys`: each key's latest record and the change that wrote it (for SQL readers and counts);
//! - `keyward_nodes`: each host's applied change and when it last reported, so lag is visible;
//! - `keyward_credits`: each key's escrowed credits not yet granted to a host, the change that set the
//!   balance (`epoch`) and its last refill; `keyward_credit_grants`: every grant, for operators;
//! - `keyward_rate_slots`: for each fleet-wide rate limit of a key, the engine time of its next free slot.
//!
//! Versions only go up; a daemon refuses an engine whose schema is newer than it knows
//! ([`SCHEMA_VERSION`]), and `keyward fleet init` upgrades an older one.

use tokio::time::Instant;

use super::{until, Connected, EngineError, Settings};

/// The schema version this daemon writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// The statements that create version 1.
const CREATE_V1: &str = "
CREATE TABLE keyward_meta (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    fleet_id text NOT NULL,
    schema_version integer NOT NULL,
    created_at bigint NOT NULL,
    lookup_check bytea NOT NULL
);
CREATE SEQUENCE keyward_change_seq;
CREATE TABLE keyward_changes (
    seq bigint PRIMARY KEY,
    change_id bytea NOT NULL UNIQUE,
    at bigint NOT NULL,
    node_id text NOT NULL,
    action text,
    key_id text,
    body bytea NOT NULL
);
CREATE TABLE keyward_keys (
    key_id text PRIMARY KEY,
    workspace text NOT NULL,
    seq bigint NOT NULL,
    record bytea NOT NULL
);
CREATE TABLE keyward_nodes (
    node_id text PRIMARY KEY,
    applied_seq bigint NOT NULL,
    last_seen bigint NOT NULL,
    version text NOT NULL
);
CREATE TABLE keyward_credits (
    key_id text PRIMARY KEY,
    balance bigint NOT NULL CHECK (balance >= 0),
    epoch bigint NOT NULL,
    refilled_at bigint NOT NULL
);
CREATE TABLE keyward_credit_grants (
    key_id text NOT NULL,
    node_id text NOT NULL,
    epoch bigint NOT NULL,
    granted bigint NOT NULL,
    at bigint NOT NULL
);
CREATE TABLE keyward_rate_slots (
    key_id text NOT NULL,
    limit_name text NOT NULL,
    next_us bigint NOT NULL,
    PRIMARY KEY (key_id, limit_name)
);
";

/// What the engine holds: no schema yet, or a fleet's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    Empty,
    Fleet { fleet_id: String, version: u32, lookup_check: Vec<u8> },
}

/// Reads what the engine holds.
pub async fn inspect(settings: &Settings, conn: &Connected, deadline: Instant) -> Result<Found, EngineError> {
    let row =
        until(settings, deadline, conn.client.query_one("SELECT to_regclass('keyward_meta') IS NULL", &[])).await?;
    if row.get::<_, bool>(0) {
        return Ok(Found::Empty);
    }
    let row = until(
        settings,
        deadline,
        conn.client.query_one("SELECT fleet_id, schema_version, lookup_check FROM keyward_meta", &[]),
    )
    .await?;
    Ok(Found::Fleet { fleet_id: row.get(0), version: row.get::<_, i32>(1).max(0) as u32, lookup_check: row.get(2) })
}

/// Creates the schema in the open transaction of `conn`, for fleet `fleet_id`.
pub async fn create(
    settings: &Settings,
    conn: &Connected,
    deadline: Instant,
    fleet_id: &str,
    lookup_check: &[u8],
    now: i64,
) -> Result<(), EngineError> {
    until(settings, deadline, conn.client.batch_execute(CREATE_V1)).await?;
    let insert =
        "INSERT INTO keyward_meta (fleet_id, schema_version, created_at, lookup_check) VALUES ($1, $2, $3, $4)";
    let version = SCHEMA_VERSION as i32;
    until(settings, deadline, conn.client.execute(insert, &[&fleet_id, &version, &now, &lookup_check])).await?;
    Ok(())
}
