//! The follower's side of the engine: one connection per host that LISTENs for changes (when notify is
//! on) and asks for the changes after the host's applied one, a page at a time; the host's progress
//! report (`keyward_nodes`); and the fleet's status for `keyward fleet status`.

use keyward_protocol::{FleetReport, NodeReport};
use tokio::time::Instant;

use super::rows::{ChangeId, Row};
use super::schema::{self, Found};
use super::{connect, until, Connected, Engine, EngineError};

/// The channel every change is announced on.
pub const CHANNEL: &str = "keyward_changes";

/// A host that reported within this many seconds counts as one of the fleet's (for a fleet-wide limit's
/// fallback share).
const RECENT_SECONDS: i64 = 30;

/// Changes fetched per round trip.
pub const PAGE: i64 = 2_000;

/// The follower's connection.
pub struct Follower {
    conn: Connected,
}

/// A page of changes after an applied one.
pub struct Page {
    /// Whether the applied change is still in the engine with the same id. `false`: the engine does not
    /// hold what this host has applied (restored from an older backup, or another database).
    pub anchored: bool,
    /// The changes after it, oldest first, at most [`PAGE`].
    pub rows: Vec<Row>,
    /// The engine's newest change.
    pub head: u64,
}

impl Follower {
    /// Connects (and LISTENs when notify is on) before `deadline`.
    pub async fn connect(engine: &Engine, deadline: Instant) -> Result<Follower, EngineError> {
        let settings = &engine.settings;
        let conn = connect(settings, deadline, settings.notify).await?;
        if settings.notify {
            until(settings, deadline, conn.client.batch_execute(&format!("LISTEN {CHANNEL}"))).await?;
            engine.link.queried(1);
        }
        Ok(Follower { conn })
    }

    /// Waits for the next notification; `None` when the connection closed (or notify is off: never).
    pub async fn notified(&mut self) -> Option<()> {
        match &mut self.conn.notifications {
            Some(receiver) => {
                receiver.recv().await?;
                // One catch-up answers every notification that arrived meanwhile.
                while receiver.try_recv().is_ok() {}
                Some(())
            }
            None => std::future::pending().await,
        }
    }

    /// What the engine holds (no schema, or a fleet's id and schema version).
    pub async fn inspect(&self, engine: &Engine, deadline: Instant) -> Result<Found, EngineError> {
        engine.link.queried(2);
        schema::inspect(&engine.settings, &self.conn, deadline).await
    }

    /// The changes after `applied` (whose id was `anchor`), in one snapshot: whether `applied` is still
    /// there as this host knows it, up to [`PAGE`] changes after it, and the newest change.
    pub async fn page(
        &self,
        engine: &Engine,
        applied: u64,
        anchor: Option<ChangeId>,
        deadline: Instant,
    ) -> Result<Page, EngineError> {
        let settings = &engine.settings;
        let client = &self.conn.client;
        let after = applied as i64;
        let work = async {
            client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?;
            let head = client.query_one("SELECT coalesce(max(seq), 0) FROM keyward_changes", &[]).await?;
            let anchor_row =
                client.query_opt("SELECT change_id FROM keyward_changes WHERE seq = $1", &[&after]).await?;
            let rows = client
                .query(
                    "SELECT seq, change_id, body FROM keyward_changes WHERE seq > $1 ORDER BY seq LIMIT $2",
                    &[&after, &PAGE],
                )
                .await?;
            client.batch_execute("COMMIT").await?;
            Ok((head.get::<_, i64>(0), anchor_row, rows))
        };
        let (head, anchor_row, rows) = until(settings, deadline, work).await?;
        engine.link.queried(5);
        let anchored = match (applied, anchor) {
            (0, _) => true,
            (_, None) => anchor_row.is_some(),
            (_, Some(anchor)) => anchor_row.is_some_and(|row| row.get::<_, &[u8]>(0) == anchor.as_slice()),
        };
        let rows = rows.iter().map(Row::read).collect::<Result<Vec<_>, _>>()?;
        Ok(Page { anchored, rows, head: head.max(0) as u64 })
    }

    /// Reports this host's applied change to the engine, and learns how many hosts reported lately.
    pub async fn report(&self, engine: &Engine, applied: u64, deadline: Instant) -> Result<(), EngineError> {
        let settings = &engine.settings;
        let upsert = "INSERT INTO keyward_nodes (node_id, applied_seq, last_seen, version) \
                      VALUES ($1, $2, extract(epoch FROM now())::bigint, $3) \
                      ON CONFLICT (node_id) DO UPDATE SET applied_seq = EXCLUDED.applied_seq, \
                      last_seen = EXCLUDED.last_seen, version = EXCLUDED.version";
        let applied = applied as i64;
        let version = env!("CARGO_PKG_VERSION");
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&settings.node_id, &applied, &version];
        until(settings, deadline, self.conn.client.execute(upsert, &params)).await?;
        let recent = "SELECT count(*) FROM keyward_nodes WHERE last_seen > extract(epoch FROM now())::bigint - $1";
        let window = (settings.poll_interval.as_secs() as i64 * 3).max(RECENT_SECONDS);
        let hosts = until(settings, deadline, self.conn.client.query_one(recent, &[&window])).await?;
        engine.link.set_hosts(hosts.get::<_, i64>(0).max(1) as u64);
        engine.link.queried(2);
        Ok(())
    }
}

/// The fleet as the engine describes it, read on a connection of its own before `deadline`. An engine
/// that cannot be reached is a report that says so, not an error.
pub async fn status(engine: &Engine, deadline: Instant) -> FleetReport {
    let settings = &engine.settings;
    let mut report =
        FleetReport { engine: settings.address(), this_node: settings.node_id.clone(), ..FleetReport::default() };
    match read_status(engine, deadline, &mut report).await {
        Ok(()) => report.reachable = true,
        Err(error) => report.problem = Some(error.to_string()),
    }
    report
}

async fn read_status(engine: &Engine, deadline: Instant, report: &mut FleetReport) -> Result<(), EngineError> {
    let settings = &engine.settings;
    let conn = connect(settings, deadline, false).await?;
    let Found::Fleet { fleet_id, version, .. } = schema::inspect(settings, &conn, deadline).await? else {
        report.problem = Some("the engine has no keyward schema yet: run `keyward fleet init`".into());
        return Ok(());
    };
    (report.fleet_id, report.schema_version) = (Some(fleet_id), Some(version));
    let client = &conn.client;
    let work = async {
        let head = client
            .query_one("SELECT coalesce(max(seq), 0), (SELECT count(*) FROM keyward_keys) FROM keyward_changes", &[])
            .await?;
        let nodes = client
            .query(
                "SELECT node_id, applied_seq, last_seen, version, extract(epoch FROM now())::bigint - last_seen \
                 FROM keyward_nodes ORDER BY node_id",
                &[],
            )
            .await?;
        Ok((head, nodes))
    };
    let (head, nodes) = until(settings, deadline, work).await?;
    engine.link.queried(4);
    let head_seq = head.get::<_, i64>(0).max(0) as u64;
    (report.head_seq, report.keys) = (Some(head_seq), Some(head.get::<_, i64>(1).max(0) as u64));
    report.nodes = nodes
        .iter()
        .map(|row| {
            let applied_seq = row.get::<_, i64>(1).max(0) as u64;
            NodeReport {
                node_id: row.get(0),
                applied_seq,
                lag: head_seq.saturating_sub(applied_seq),
                last_seen_at: row.get(2),
                version: row.get(3),
                last_seen_seconds_ago: row.get::<_, i64>(4).max(0) as u64,
            }
        })
        .collect();
    Ok(())
}
