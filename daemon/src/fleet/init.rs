//! `keyward fleet init` and `keyward fleet status`.
//!
//! Init creates the engine's schema and imports this host's store into it, in one transaction: the audit
//! log first (its entries keep their numbers), then the accounts, then each key's record and credit balance
//! (a snapshot row without an audit entry). Tokens are untouched: the records carry the Argon2 hashes. The
//! store becomes the new fleet's first replica. On an engine that already holds a fleet, init changes
//! nothing: this host joins it if its store is empty (or already is its replica), and is refused otherwise.

use keyward_protocol::{AuditEntry, FleetReport};

use crate::engine::rows::Body;
use crate::engine::write::{self, Init};
use crate::engine::{follow, Engine};
use crate::error::DaemonError;
use crate::host::clock::unix_now;
use crate::keys::store::ReplicaMark;
use crate::service::Service;

const NOT_IN_FLEET: &str = "this keywardd runs on its own: add a [fleet] section to its configuration and restart it";

fn engine_of(service: &Service) -> Result<&Engine, DaemonError> {
    service.engine().map(|engine| &**engine).ok_or(DaemonError::InvalidArgument(NOT_IN_FLEET.into()))
}

/// The fleet as the engine describes it.
pub async fn status(service: &Service) -> Result<FleetReport, DaemonError> {
    let engine = engine_of(service)?;
    let mut report = follow::status(engine, engine.deadline()).await;
    if engine.link.diverged() {
        report.problem =
            Some("this host refuses to follow the engine: it does not hold this host's newest change".into());
    }
    Ok(report)
}

/// Creates the fleet from this host's store, or joins the one the engine holds.
pub async fn init(service: &Service) -> Result<FleetReport, DaemonError> {
    let engine = engine_of(service)?;
    {
        let _writing = service.write_lock().await;
        if engine.replica().is_none() {
            create(service, engine).await?;
        }
    }
    status(service).await
}

async fn create(service: &Service, engine: &Engine) -> Result<(), DaemonError> {
    let changes = export(service).await?;
    let count = changes.len();
    let fleet_id = engine.settings.fleet_id.clone().unwrap_or_else(|| crate::secrets::mint::key_id().to_string());
    // Writing every change is one round trip each: allow for a large store.
    let deadline = engine.deadline() + std::time::Duration::from_millis(count as u64);
    let numbered = |body: &mut Body, seq: u64| {
        if let Body::V1 { audit: Some(entry), .. } = body {
            entry.seq = seq;
        }
    };
    let lookup_check = service.hasher().lookup_key_check();
    match write::init(engine, &fleet_id, &lookup_check, changes, unix_now(), numbered, deadline).await? {
        Init::Created { head, anchor } => {
            let mark = ReplicaMark { fleet_id: fleet_id.clone(), applied_seq: head, anchor };
            let (store, written) = (service.store().clone(), mark.clone());
            tokio::task::spawn_blocking(move || store.commit_all(&[], Some(&written)))
                .await
                .map_err(DaemonError::task("storage"))??;
            engine.set_replica(mark);
            engine.link.synced(head, head, unix_now());
            tracing::info!(fleet = %fleet_id, changes = count, keys = service.index().len(), "created the fleet from this host's store");
            Ok(())
        }
        Init::Exists { lookup_check, .. } if !super::same_lookup_key(service, &lookup_check) => {
            Err(DaemonError::Conflict(
                "the engine already holds a fleet, and its lookup key is not this host's: nothing was changed \
                 (copy the fleet's lookup.key here, then restart this host)"
                    .into(),
            ))
        }
        Init::Exists { fleet_id, .. } if engine.settings.fleet_id.as_ref().is_some_and(|id| *id != fleet_id) => {
            Err(DaemonError::Conflict(format!(
                "the engine already holds fleet `{fleet_id}`, not this host's `[fleet] fleet_id`: nothing was changed"
            )))
        }
        Init::Exists { fleet_id, .. } if service.index().is_empty() => {
            engine.set_replica(ReplicaMark { fleet_id, applied_seq: 0, anchor: None });
            Ok(())
        }
        Init::Exists { fleet_id, .. } => Err(DaemonError::Conflict(format!(
            "the engine already holds fleet `{fleet_id}`, and this host's store holds {} keys that are not its replica: \
             nothing was changed (to join the fleet, start this host with an empty data directory)",
            service.index().len()
        ))),
    }
}

/// This host's store as the first changes of a fleet.
async fn export(service: &Service) -> Result<Vec<Body>, DaemonError> {
    let service = service.clone();
    tokio::task::spawn_blocking(move || {
        let store = service.store();
        let (accounts, entries) = store.export()?;
        let keys = std::sync::Mutex::new(Vec::new());
        store.load_keys(|record| {
            let credits = store.counters(record.id.as_str())?.credits;
            keys.lock().unwrap_or_else(|p| p.into_inner()).push((record, credits));
            Ok(())
        })?;
        let mut keys = keys.into_inner().unwrap_or_else(|p| p.into_inner());
        keys.sort_by(|a, b| (a.0.created_at, a.0.id.as_str()).cmp(&(b.0.created_at, b.0.id.as_str())));
        let audit = entries.into_iter().map(|entry: AuditEntry| Body::V1 {
            key: None,
            credits: None,
            account: None,
            audit: Some(entry),
        });
        let accounts = accounts.into_iter().map(|account| Body::V1 {
            key: None,
            credits: None,
            account: Some(account),
            audit: None,
        });
        let keys = keys.into_iter().map(|(record, credits)| Body::V1 {
            key: Some(record),
            credits,
            account: None,
            audit: None,
        });
        Ok::<_, DaemonError>(audit.chain(accounts).chain(keys).collect())
    })
    .await
    .map_err(DaemonError::task("storage"))?
}
