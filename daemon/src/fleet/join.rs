//! Startup in fleet mode: before the sockets open, the host finds out which fleet the engine holds and
//! whether its own store is that fleet's replica, and catches up, so that a new host is ready with every
//! key and a returning one with every change made while it was away.
//!
//! | the engine             | this store                     | then                                        |
//! |------------------------|--------------------------------|---------------------------------------------|
//! | unreachable            | a replica                      | serve the replica; the follower reconnects  |
//! | unreachable            | never part of a fleet          | refuse to start: nothing to serve           |
//! | no schema              | never part of a fleet          | serve it; management waits for `fleet init` |
//! | no schema              | a replica                      | refuse: wrong or emptied database           |
//! | schema newer than ours | any                            | refuse: upgrade keywardd                    |
//! | fleet F                | a replica of F, or empty       | catch up, serve                             |
//! | fleet F                | a replica of G, or `fleet_id`≠F| refuse: wrong fleet                         |
//! | fleet F                | keys, never part of a fleet    | refuse: import it with `fleet init` instead |
//! | fleet F, another lookup key | any                       | refuse: copy the fleet's `lookup.key`       |

use tokio::time::Instant;

use crate::engine::follow::Follower;
use crate::engine::schema::{Found, SCHEMA_VERSION};
use crate::engine::{Engine, EngineError};
use crate::keys::store::{ReplicaMark, StoreError};
use crate::service::Service;

use super::follow::{catch_up, FollowError};

/// Why a fleet host could not start.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("{0}; this host has never synced with the fleet, so it has no keys to serve: start it once the engine can be reached")]
    Unreachable(EngineError),
    #[error("the fleet engine's schema is version {found}, newer than this keywardd knows ({SCHEMA_VERSION}): upgrade keywardd")]
    SchemaTooNew { found: u32 },
    #[error("the fleet engine's schema is version {found}, older than this keywardd's ({SCHEMA_VERSION}): run `keyward fleet init` on a host of the old version's fleet to upgrade it")]
    SchemaTooOld { found: u32 },
    #[error("the fleet engine holds fleet `{engine}`, but {expected}: point `[fleet] engine` at the right database")]
    WrongFleet { engine: String, expected: String },
    #[error("the fleet engine holds no fleet, but this host's store is a replica of fleet `{0}`: the engine is another or an emptied database; point `[fleet] engine` at the fleet's database")]
    EmptyEngine(String),
    #[error("the fleet engine holds fleet `{fleet}`, and this host's store holds {keys} keys of its own, not a replica of it: start this host with an empty data directory to join the fleet (to bring these keys into a new fleet, run `keyward fleet init` against an empty engine)")]
    NotAReplica { fleet: String, keys: usize },
    #[error("this host's lookup key ({}) is not the fleet's, so imported tokens would not verify here: copy `lookup.key` from a host of the fleet to that file (mode 0600, owned by keywardd's user), or point `lookup_key_file` at a copy", path.display())]
    LookupKey { path: std::path::PathBuf },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the first catch-up with the fleet engine failed: {0}")]
    CatchUp(#[from] FollowError),
}

/// A host with a replica serves it while the engine cannot be reached; one without cannot start.
fn serve_replica(engine: &Engine, mark: Option<ReplicaMark>, error: EngineError) -> Result<(), JoinError> {
    let Some(mark) = mark else { return Err(JoinError::Unreachable(error)) };
    tracing::warn!(%error, fleet = %mark.fleet_id, applied = mark.applied_seq,
        "the fleet engine cannot be reached; serving the local replica until it can");
    engine.set_replica(mark);
    Ok(())
}

/// Joins the fleet of `service`'s engine (if it has one): see the module's table.
/// `lookup_key` is where this host's lookup key lives (named when it is not the fleet's).
pub async fn join(service: &Service, lookup_key: &std::path::Path) -> Result<(), JoinError> {
    let Some(engine) = service.engine() else { return Ok(()) };
    let settings = &engine.settings;
    let mark = service.store().replica_mark()?;
    let deadline = Instant::now() + settings.connect_timeout + settings.request_timeout;
    let follower = match Follower::connect(engine, deadline).await {
        Ok(follower) => follower,
        Err(error) => return serve_replica(engine, mark, error),
    };
    let found = match follower.inspect(engine, deadline).await {
        Ok(found) => found,
        Err(error) => return serve_replica(engine, mark, error),
    };
    engine.link.set_reachable(true);
    let (fleet_id, version, lookup_check) = match found {
        Found::Empty => {
            if let Some(mark) = mark {
                return Err(JoinError::EmptyEngine(mark.fleet_id));
            }
            tracing::warn!(engine = %settings.address(),
                "the fleet engine holds no fleet yet: run `keyward fleet init` (on the host whose store holds the keys); until then management calls fail");
            return Ok(());
        }
        Found::Fleet { fleet_id, version, lookup_check } => (fleet_id, version, lookup_check),
    };
    if version > SCHEMA_VERSION {
        return Err(JoinError::SchemaTooNew { found: version });
    }
    if version < SCHEMA_VERSION {
        return Err(JoinError::SchemaTooOld { found: version });
    }
    if let Some(expected) = settings.fleet_id.as_ref().filter(|id| **id != fleet_id) {
        return Err(JoinError::WrongFleet {
            engine: fleet_id,
            expected: format!("`[fleet] fleet_id` is `{expected}`"),
        });
    }
    let mark = match mark {
        Some(mark) if mark.fleet_id != fleet_id => {
            let expected = format!("this host's store is a replica of fleet `{}`", mark.fleet_id);
            return Err(JoinError::WrongFleet { engine: fleet_id, expected });
        }
        Some(mark) => mark,
        None if !service.index().is_empty() => {
            return Err(JoinError::NotAReplica { fleet: fleet_id, keys: service.index().len() });
        }
        None => ReplicaMark { fleet_id, applied_seq: 0, anchor: None },
    };
    if !super::same_lookup_key(service, &lookup_check) {
        return Err(JoinError::LookupKey { path: lookup_key.to_owned() });
    }
    engine.set_replica(mark.clone());
    if let Err(error) = catch_up(service, engine, &follower).await {
        match error {
            // The engine stopped answering after it let this host in: a replica serves what it has.
            FollowError::Engine(error) if mark.applied_seq > 0 || !service.index().is_empty() => {
                return serve_replica(engine, Some(mark), error)
            }
            error => return Err(JoinError::CatchUp(error)),
        }
    }
    let figures = engine.link.figures(&settings.node_id);
    tracing::info!(node = %settings.node_id, applied = figures.applied_seq, keys = service.index().len(), "joined the fleet");
    Ok(())
}
