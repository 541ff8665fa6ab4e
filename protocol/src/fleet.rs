//! Fleet mode as clients see it: the state of the fleet engine (PostgreSQL) and of each host following it
//! ([`FleetReport`], the answer to `keyward fleet status` and `keyward fleet init`), and the figures a host
//! adds to its stats ([`FleetFigures`]).
//!
//! Changes are numbered by the engine, one sequence for the whole fleet; a host's *applied* change is the
//! highest it holds in its local replica, and its *lag* how many changes it is behind the engine's newest.

use serde::{Deserialize, Serialize};

/// The fleet as one host sees it, read from the engine when it could be reached.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetReport {
    /// The engine's address without any password, e.g. `host=/run/postgresql port=5432 dbname=keyward`.
    pub engine: String,
    /// Whether the engine answered this request.
    pub reachable: bool,
    /// Why not, or why this host refuses to follow it (a diverged engine), in words.
    pub problem: Option<String>,
    pub fleet_id: Option<String>,
    pub schema_version: Option<u32>,
    /// The engine's newest change.
    pub head_seq: Option<u64>,
    /// Keys the engine holds.
    pub keys: Option<u64>,
    /// The host that answered.
    pub this_node: String,
    /// Every host that has reported to the engine, by node id.
    pub nodes: Vec<NodeReport>,
}

/// One host, as it last reported to the engine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReport {
    pub node_id: String,
    pub applied_seq: u64,
    /// Changes behind the engine's newest.
    pub lag: u64,
    /// When it last reported (Unix seconds).
    pub last_seen_at: i64,
    /// Seconds since then, by the engine's clock.
    pub last_seen_seconds_ago: u64,
    /// The keywardd version it runs.
    pub version: String,
}

/// A host's fleet figures in `keyward stats` and Prometheus.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetFigures {
    pub node_id: String,
    /// Whether the host's last exchange with the engine succeeded.
    pub engine_reachable: bool,
    /// The host refuses to follow the engine: it holds changes the engine does not (restored from an older
    /// backup). Verifies go on from the replica; management calls fail with `ENGINE_DIVERGED`.
    pub diverged: bool,
    /// The newest change this host has applied, and the engine's newest as last seen.
    pub applied_seq: u64,
    pub head_seq: u64,
    /// When the host last caught up with the engine (Unix seconds).
    pub last_sync_at: Option<i64>,
    /// Changes made on other hosts that this one applied since it started.
    pub changes_applied: u64,
    /// Queries this host sent to the engine since it started (catch-up, heartbeat, writes; never a verify).
    pub engine_queries: u64,
    /// Times the host lost its link to the engine and made it again.
    pub reconnects: u64,
}
