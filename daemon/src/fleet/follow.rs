//! Following the engine: every host applies every change, promptly and exactly once.
//!
//! One task per host holds a connection to the engine. It catches up (every change after the replica's
//! newest, a page at a time) when it connects, on each notification (LISTEN/NOTIFY, which only lowers
//! latency) and on each poll tick (which alone guarantees nothing is missed: a notification lost with a
//! connection, or a pooler that drops LISTEN, costs at most one poll interval). On each tick it also
//! reports its progress (`keyward fleet status`). Any failure drops the connection; the task reconnects,
//! backing off up to the poll interval, and catches up again — nothing is applied twice, because only
//! changes after the replica's mark are fetched, and the mark moves in the same local transaction as the
//! changes.
//!
//! Before applying, each page checks that the engine still holds the replica's newest change under the
//! same id. If it does not, the engine lost changes this host has (restored from an older backup, or
//! another database): the host stops following it, says so loudly in its log and its stats, refuses
//! management calls (`ENGINE_DIVERGED`), and goes on verifying from its replica — never rolling back.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::engine::follow::{Follower, Page, PAGE};
use crate::engine::schema::{Found, SCHEMA_VERSION};
use crate::engine::{Engine, EngineError};
use crate::error::DaemonError;
use crate::host::clock::unix_now;
use crate::keys::store::ReplicaMark;
use crate::service::Service;

use super::apply;

/// Why following stopped for now (the task reconnects).
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("applying changes from the engine: {0}")]
    Apply(#[from] DaemonError),
    #[error("the connection to the engine closed")]
    Closed,
}

/// Follows the engine until `shutdown`.
pub async fn run(service: Service, shutdown: CancellationToken) {
    let Some(engine) = service.engine().cloned() else { return };
    let mut backoff = Duration::from_millis(50);
    let mut lost_since: Option<Instant> = None;
    loop {
        let connected = tokio::select! {
            _ = shutdown.cancelled() => return,
            connected = Follower::connect(&engine, Instant::now() + engine.settings.connect_timeout) => connected,
        };
        let error = match connected {
            Ok(mut follower) => {
                if lost_since.take().is_some() {
                    engine.link.reconnected();
                    tracing::info!(engine = %engine.settings.address(), "the fleet engine is reachable again; catching up");
                }
                backoff = Duration::from_millis(50);
                match follow(&service, &engine, &mut follower, &shutdown).await {
                    Ok(()) => return,
                    Err(error) => error,
                }
            }
            Err(error) => FollowError::Engine(error),
        };
        engine.link.set_reachable(false);
        if lost_since.is_none() {
            lost_since = Some(Instant::now());
            tracing::warn!(%error, "lost the fleet engine; verifies go on from the local replica, management calls fail until it is back");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(engine.settings.poll_interval);
    }
}

/// Follows on one connection until it fails (or `shutdown`: `Ok`).
async fn follow(
    service: &Service,
    engine: &Engine,
    follower: &mut Follower,
    shutdown: &CancellationToken,
) -> Result<(), FollowError> {
    catch_up(service, engine, follower).await?;
    report(engine, follower).await?;
    let mut tick = tokio::time::interval(engine.settings.poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            notified = follower.notified() => {
                notified.ok_or(FollowError::Closed)?;
                catch_up(service, engine, follower).await?;
            }
            _ = tick.tick() => {
                catch_up(service, engine, follower).await?;
                report(engine, follower).await?;
            }
        }
    }
}

async fn report(engine: &Engine, follower: &Follower) -> Result<(), FollowError> {
    if engine.replica().is_some() {
        follower.report(engine, engine.link.applied_seq(), deadline(engine)).await?;
    }
    Ok(())
}

fn deadline(engine: &Engine) -> Instant {
    Instant::now() + engine.settings.request_timeout
}

/// Applies every change after the replica's newest, a page at a time.
pub async fn catch_up(service: &Service, engine: &Engine, follower: &Follower) -> Result<(), FollowError> {
    loop {
        let Some(mark) = current_mark(service, engine, follower).await? else { return Ok(()) };
        let page = follower.page(engine, mark.applied_seq, mark.anchor, deadline(engine)).await?;
        engine.link.set_reachable(true);
        if !page.anchored {
            diverged(engine, &mark, page.head);
            return Ok(());
        }
        if engine.link.diverged() {
            engine.link.set_diverged(false);
            tracing::info!("the fleet engine holds this host's newest change again; following it");
        }
        let full = page.rows.len() as i64 == PAGE;
        apply_page(service, engine, &mark, page).await?;
        if !full {
            return Ok(());
        }
    }
}

/// The replica's mark; on a host that is not part of a fleet yet, adopts the engine's fleet once one exists
/// (`keyward fleet init` ran on another host) if this host's store is empty.
async fn current_mark(
    service: &Service,
    engine: &Engine,
    follower: &Follower,
) -> Result<Option<ReplicaMark>, FollowError> {
    if let Some(mark) = engine.replica() {
        return Ok(Some(mark));
    }
    let Found::Fleet { fleet_id, version, lookup_check } = follower.inspect(engine, deadline(engine)).await? else {
        return Ok(None);
    };
    let expected = engine.settings.fleet_id.as_ref();
    if version != SCHEMA_VERSION || expected.is_some_and(|id| *id != fleet_id) {
        tracing::error!(fleet = %fleet_id, version, "the engine now holds a fleet this host may not join (another fleet_id or schema version); not joining it");
        return Ok(None);
    }
    if !super::same_lookup_key(service, &lookup_check) {
        tracing::error!(fleet = %fleet_id, "the engine now holds a fleet whose lookup key is not this host's: not joining it; copy the fleet's lookup.key here and restart");
        return Ok(None);
    }
    let _writing = service.write_lock().await;
    if engine.replica().is_none() && service.index().is_empty() {
        tracing::info!(fleet = %fleet_id, "the engine now holds a fleet; joining it");
        engine.set_replica(ReplicaMark { fleet_id, applied_seq: 0, anchor: None });
    }
    Ok(engine.replica())
}

async fn apply_page(service: &Service, engine: &Engine, mark: &ReplicaMark, page: Page) -> Result<(), FollowError> {
    let head = page.head;
    let _writing = service.write_lock().await;
    // A change this host made meanwhile moved the mark: skip what it already holds.
    let applied = engine.link.applied_seq();
    let rows: Vec<_> = page.rows.into_iter().filter(|row| row.seq > applied).collect();
    if !rows.is_empty() {
        apply::persist(service, engine, &rows, &mark.fleet_id).await?;
        apply::install(service, &rows).await?;
        engine.link.applied(rows.len() as u64);
    }
    engine.link.synced(engine.link.applied_seq(), head, unix_now());
    Ok(())
}

fn diverged(engine: &Engine, mark: &ReplicaMark, head: u64) {
    if !engine.link.diverged() {
        tracing::error!(
            applied = mark.applied_seq,
            engine_newest = head,
            "REFUSING TO FOLLOW THE FLEET ENGINE: it does not hold change #{} that this host has applied (its newest \
             is #{head}); it was restored from an older backup or is another database. Verifies go on from the \
             local replica; management calls fail. Restore the engine to a state that holds change #{}, or \
             rebuild this host's replica (stop keywardd, move its data directory away, start it)",
            mark.applied_seq,
            mark.applied_seq,
        );
    }
    engine.link.set_diverged(true);
}
