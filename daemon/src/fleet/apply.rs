//! Changes from the engine into this host: [`persist`] writes them to the local replica with its new
//! mark, in one transaction, and [`install`] makes them visible to verifies. Both run under the host's
//! write lock, so a change made here and one applied from the engine never interleave.
//!
//! A change to a key already in the directory installs a fresh snapshot of it (`Index::put` replaces
//! whatever a concurrent first verify promoted from the store a moment before); a new key only enters the
//! directory, and is read from the replica on its first verify, as at startup.

use std::collections::HashMap;

use keyward_protocol::AccountView;

use crate::engine::rows::{Body, Row};
use crate::engine::Engine;
use crate::error::DaemonError;
use crate::keys::hot::HotKey;
use crate::keys::record::KeyRecord;
use crate::keys::store::{Change, ReplicaMark};
use crate::service::{Found, Service};

/// Writes `rows` to the local replica with its mark advanced to the last of them, and waits until they
/// are on disk.
pub async fn persist(service: &Service, engine: &Engine, rows: &[Row], fleet_id: &str) -> Result<(), DaemonError> {
    let Some(last) = rows.last() else { return Ok(()) };
    let mark = ReplicaMark { fleet_id: fleet_id.to_owned(), applied_seq: last.seq, anchor: Some(last.change_id) };
    let bodies: Vec<Body> = rows.iter().map(|row| row.body.clone()).collect();
    let store = service.store().clone();
    let written = mark.clone();
    tokio::task::spawn_blocking(move || {
        let changes: Vec<Change<'_>> = bodies.iter().map(change_of).collect();
        store.commit_all(&changes, Some(&written))
    })
    .await
    .map_err(DaemonError::task("storage"))??;
    for row in rows {
        if let Body::V1 { audit: Some(entry), .. } = &row.body {
            service.note_audit_seq(entry.seq);
        }
    }
    engine.set_replica(mark);
    Ok(())
}

fn change_of(body: &Body) -> Change<'_> {
    let Body::V1 { key, credits, account, audit } = body;
    Change { key: key.as_ref(), credits: *credits, account: account.as_ref(), audit: audit.as_ref() }
}

/// Makes `rows` (already [persisted](persist)) visible: each key's newest record and each account.
pub async fn install(service: &Service, rows: &[Row]) -> Result<(), DaemonError> {
    // Per key: its newest record, and the newest change that set its escrowed balance.
    let mut keys: HashMap<&str, (&KeyRecord, Option<u64>)> = HashMap::new();
    let mut accounts: HashMap<&str, &AccountView> = HashMap::new();
    for row in rows {
        let Body::V1 { key, account, .. } = &row.body;
        if let Some(record) = key {
            let entry = keys.entry(record.id.as_str()).or_insert((record, None));
            entry.0 = record;
            entry.1 = row.body.escrow().map(|_| row.seq).or(entry.1);
        }
        if let Some(account) = account {
            accounts.insert(account.account.as_str(), account);
        }
    }
    for (_, account) in accounts {
        service.put_account(account.account.clone(), account.workspaces.clone());
    }
    let plans = service.plans();
    for (id, (record, escrow_epoch)) in keys {
        let snapshot = match found(service, id).await? {
            None => {
                service.index().add_stored(record);
                continue;
            }
            Some(Found::Hot(key)) => key.succeed(record.clone(), &plans),
            Some(Found::Stored(_, counters)) => HotKey::new(record.clone(), counters, &plans),
        };
        if let (Some(epoch), Some(cell)) = (escrow_epoch, &snapshot.credits) {
            cell.void(epoch);
        }
        service.top_up_credits(&service.index().put(snapshot));
    }
    Ok(())
}

/// Key `id` as it was before these changes: in use, only in the store, or new.
async fn found(service: &Service, id: &str) -> Result<Option<Found>, DaemonError> {
    if let Some(key) = service.index().get(id) {
        return Ok(Some(Found::Hot(key)));
    }
    if !service.index().contains(id) {
        return Ok(None);
    }
    let (service, id) = (service.clone(), id.to_owned());
    let found =
        tokio::task::spawn_blocking(move || service.found(&id)).await.map_err(DaemonError::task("storage"))??;
    Ok(found)
}
