//! A management change in fleet mode ([`begin`], then [`commit`]), on top of the single-host sequence
//! in [`crate::manage`]:
//!
//! 1. take the host's write lock, open the engine's write transaction (the fleet-wide lock) and apply every
//!    change other hosts committed since this host's last: the change is built on the fleet's latest state;
//! 2. number the change, write it with its audit entry, COMMIT;
//! 3. write it to the local replica (with the replica's mark) and flush; the caller swaps the snapshot and
//!    only then answers.
//!
//! Every step has a deadline (`request_timeout`, 2 s by default): half of it up to the COMMIT, the rest
//! to settle a COMMIT whose answer was lost, by the change's id ([`crate::engine::write::resolve`]). A
//! call that fails says whether nothing changed ([`DaemonError::Engine`]) or the engine did not confirm
//! ([`DaemonError::Unconfirmed`]); none waits longer than the budget.

use tokio::sync::MutexGuard;
use tokio::time::Instant;

use crate::engine::rows::{Body, Row};
use crate::engine::write::{resolve, CommitError, Txn};
use crate::engine::Engine;
use crate::error::DaemonError;
use crate::secrets::mint;
use crate::service::Service;

use super::apply;

/// The write lock, and in fleet mode the engine's open write transaction.
pub struct Writing<'a> {
    _local: MutexGuard<'a, ()>,
    fleet: Option<FleetWrite<'a>>,
}

struct FleetWrite<'a> {
    engine: &'a Engine,
    txn: Txn<'a>,
    /// When the whole call must have answered.
    deadline: Instant,
}

/// Takes the write lock; in fleet mode also opens the engine's write transaction and applies what other
/// hosts committed first.
pub async fn begin(service: &Service) -> Result<Writing<'_>, DaemonError> {
    let local = service.write_lock().await;
    let Some(engine) = service.engine() else { return Ok(Writing { _local: local, fleet: None }) };
    let Some(replica) = writable(engine)? else {
        return Err(DaemonError::NoFleet("the fleet engine holds no fleet yet: run `keyward fleet init` first"));
    };
    let deadline = engine.deadline();
    let budget = engine.settings.request_timeout / 2;
    let mut txn = engine.begin(Instant::now() + budget).await?;
    if !txn.holds(replica.applied_seq, replica.anchor).await? {
        // Restored from an older backup since this host last followed it: writing now would number the
        // change below what this host holds. The follower says so in the log.
        engine.link.set_diverged(true);
        return Err(diverged());
    }
    let behind = txn.changes_after(replica.applied_seq).await?;
    if !behind.is_empty() {
        apply::persist(service, engine, &behind, &replica.fleet_id).await?;
        apply::install(service, &behind).await?;
        engine.link.applied(behind.len() as u64);
    }
    Ok(Writing { _local: local, fleet: Some(FleetWrite { engine, txn, deadline }) })
}

impl Writing<'_> {
    /// Fleet mode: the fleet's ungranted balance of key `id`'s escrowed credits and its last refill, held
    /// still until the commit; `None` on a host on its own or for a key without escrowed credits.
    pub async fn escrowed_credits(&mut self, id: &str) -> Result<Option<(u64, i64)>, DaemonError> {
        match &mut self.fleet {
            Some(fleet) => Ok(fleet.txn.credits(id).await?),
            None => Ok(None),
        }
    }
}

/// The replica's mark when this host may write: not diverged, part of a fleet.
fn writable(engine: &Engine) -> Result<Option<crate::keys::store::ReplicaMark>, DaemonError> {
    if engine.link.diverged() {
        return Err(diverged());
    }
    Ok(engine.replica())
}

fn diverged() -> DaemonError {
    DaemonError::Diverged(
        "this host refuses to follow the fleet engine: it does not hold the newest change this host has applied \
         (restored from an older backup?); see keywardd's log"
            .into(),
    )
}

/// Commits a change through the engine and writes it to the local replica. `build` gets the change's
/// sequence number (its audit entry's) and returns the change. On a host on its own, does nothing and
/// returns `None`: the caller writes to the store itself.
pub async fn commit(
    service: &Service,
    writing: &mut Writing<'_>,
    at: i64,
    build: impl FnOnce(u64) -> Body,
) -> Result<Option<u64>, DaemonError> {
    let Some(FleetWrite { engine, mut txn, deadline }) = writing.fleet.take() else { return Ok(None) };
    let seq = txn.next_seq().await?;
    if seq <= engine.link.applied_seq() {
        // A sequence reset behind what this host holds (the engine was tampered with or restored).
        engine.link.set_diverged(true);
        return Err(diverged());
    }
    let body = build(seq);
    let change_id = mint::change_id();
    txn.insert(seq, &change_id, &body, at).await?;
    match txn.commit().await {
        Ok(()) => {}
        Err(CommitError::Failed(error)) => return Err(DaemonError::Engine(error)),
        Err(CommitError::Unknown { error, backend_pid }) => {
            match resolve(engine, &change_id, backend_pid, deadline).await {
                Ok(Some(committed)) if committed == seq => {
                    tracing::warn!(seq, "the engine's answer to a commit was lost; the change was committed");
                }
                Ok(_) => return Err(DaemonError::Engine(error)),
                Err(_) => return Err(DaemonError::Unconfirmed(error)),
            }
        }
    }
    let fleet_id = engine.replica().map(|mark| mark.fleet_id).unwrap_or_default();
    apply::persist(service, engine, &[Row { seq, change_id, body }], &fleet_id).await?;
    Ok(Some(seq))
}
