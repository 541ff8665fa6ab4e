//! The one write transaction, used by every management change on every host:
//!
//! ```text
//! BEGIN; SELECT pg_advisory_xact_lock(K)        -- one writer in the fleet at a time
//! SELECT … FROM keyward_changes WHERE seq > A   -- what this host has not applied yet (it applies them)
//! nextval; INSERT the change (its audit entry inside); UPSERT the key; pg_notify
//! COMMIT
//! ```
//!
//! The advisory lock makes sequence order commit order: without it a reader that saw change N+1 commit
//! before N would skip N for good (measured: 439 of 3,200 changes skipped by a poller without the lock,
//! none with it). Holding it, the writer also reads every change committed before its own, so it builds
//! its change on the fleet's latest state and never needs a retry.
//!
//! A COMMIT whose answer is lost (the connection dropped, the deadline passed) has an unknown outcome.
//! [`resolve`] settles it: it ends the old connection's backend (so the transaction can no longer commit
//! late) and looks the change up by its id.

use tokio::sync::MutexGuard;
use tokio::time::Instant;

use super::rows::{Body, ChangeId, Row};
use super::{connect, kept, until, Connected, Engine, EngineError};

/// The advisory lock every writer takes ("keyward" in ASCII).
const WRITE_LOCK: i64 = 0x006b_6579_7761_7264;

/// Sets a key's escrowed balance anew: `epoch` (the change's number) voids every earlier grant.
const SET_CREDITS: &str = "INSERT INTO keyward_credits (key_id, balance, epoch, refilled_at) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (key_id) DO UPDATE SET balance = EXCLUDED.balance, epoch = EXCLUDED.epoch, refilled_at = EXCLUDED.refilled_at";

/// How a commit ended when it did not succeed.
#[derive(Debug)]
pub enum CommitError {
    /// The engine refused or never saw the COMMIT: nothing was written.
    Failed(EngineError),
    /// The answer was lost: the change may or may not be in the engine ([`resolve`] tells).
    Unknown { error: EngineError, backend_pid: i32 },
}

/// An open write transaction holding the fleet's write lock. Dropped without [`Txn::commit`], its
/// connection is closed, which rolls it back.
pub struct Txn<'a> {
    engine: &'a Engine,
    conn: MutexGuard<'a, Option<Connected>>,
    backend_pid: i32,
    deadline: Instant,
    done: bool,
}

impl Engine {
    /// Opens a write transaction before `deadline`, connecting first if needed, and takes the fleet's
    /// write lock.
    pub async fn begin(&self, deadline: Instant) -> Result<Txn<'_>, EngineError> {
        let mut conn = self.writer.lock().await;
        kept(&self.settings, &mut conn, deadline).await?;
        let mut txn = Txn { engine: self, conn, backend_pid: 0, deadline, done: false };
        let started = txn
            .guard(|c| async move {
                c.batch_execute("BEGIN").await?;
                let pid = c.query_one("SELECT pg_backend_pid(), pg_advisory_xact_lock($1)", &[&WRITE_LOCK]).await?;
                Ok(pid.get::<_, i32>(0))
            })
            .await?;
        txn.engine.link.queried(2);
        txn.backend_pid = started;
        Ok(txn)
    }
}

impl Txn<'_> {
    /// Runs `work` on the connection under the deadline; any failure closes the connection.
    async fn guard<'c, T, F, Fut>(&'c mut self, work: F) -> Result<T, EngineError>
    where
        F: FnOnce(&'c tokio_postgres::Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, tokio_postgres::Error>> + 'c,
    {
        let settings = &self.engine.settings;
        let client = &self.conn.as_ref().expect("a transaction has a connection").client;
        let result = until(settings, self.deadline, work(client)).await;
        if result.is_err() {
            self.engine.link.set_reachable(false);
        }
        result
    }

    /// Every change after `applied`, oldest first (the ones this host must apply before writing).
    pub async fn changes_after(&mut self, applied: u64) -> Result<Vec<Row>, EngineError> {
        let after = applied as i64;
        let query = "SELECT seq, change_id, body FROM keyward_changes WHERE seq > $1 ORDER BY seq";
        let rows = self.guard(|c| async move { c.query(query, &[&after]).await }).await;
        self.engine.link.queried(1);
        rows?.iter().map(Row::read).collect()
    }

    /// Whether change `applied` is still in the engine with id `anchor` (always, before any change): `false`
    /// means the engine does not hold what this host has applied.
    pub async fn holds(&mut self, applied: u64, anchor: Option<ChangeId>) -> Result<bool, EngineError> {
        if applied == 0 {
            return Ok(true);
        }
        let seq = applied as i64;
        let query = "SELECT change_id FROM keyward_changes WHERE seq = $1";
        let row = self.guard(|c| async move { c.query_opt(query, &[&seq]).await }).await?;
        self.engine.link.queried(1);
        Ok(match (row, anchor) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(row), Some(anchor)) => row.get::<_, &[u8]>(0) == anchor.as_slice(),
        })
    }

    /// Takes the next sequence number, for the change about to be [inserted](Txn::insert).
    pub async fn next_seq(&mut self) -> Result<u64, EngineError> {
        let row = self.guard(|c| async move { c.query_one("SELECT nextval('keyward_change_seq')", &[]).await }).await?;
        self.engine.link.queried(1);
        Ok(row.get::<_, i64>(0).max(0) as u64)
    }

    /// Writes change `seq` made at `at` (and the key's latest record); every host is notified at commit.
    pub async fn insert(&mut self, seq: u64, change_id: &ChangeId, body: &Body, at: i64) -> Result<(), EngineError> {
        let bytes = body.encode()?;
        let (key_id, action) = body.labels();
        let Body::V1 { key, .. } = body;
        let record =
            key.as_ref().map(|k| (k.workspace.clone(), Body::encode_record(k))).map(|(w, r)| r.map(|r| (w, r)));
        let record = record.transpose()?;
        let node = self.engine.settings.node_id.clone();
        let escrow = body.escrow();
        let (seq, change_id) = (seq as i64, change_id.as_slice());
        self.guard(|c| async move {
            let insert = "INSERT INTO keyward_changes (seq, change_id, at, node_id, action, key_id, body) \
                          VALUES ($1, $2, $3, $4, $5, $6, $7)";
            c.execute(insert, &[&seq, &change_id, &at, &node, &action, &key_id, &bytes]).await?;
            if let (Some(id), Some((workspace, record))) = (&key_id, &record) {
                let upsert = "INSERT INTO keyward_keys (key_id, workspace, seq, record) VALUES ($1, $2, $3, $4) \
                              ON CONFLICT (key_id) DO UPDATE SET seq = EXCLUDED.seq, record = EXCLUDED.record";
                c.execute(upsert, &[id, workspace, &seq, record]).await?;
            }
            if let (Some(id), Some((balance, refilled_at))) = (&key_id, escrow) {
                let (balance, refilled_at) = (balance as i64, refilled_at);
                c.execute(SET_CREDITS, &[id, &balance, &seq, &refilled_at]).await?;
            }
            c.execute("SELECT pg_notify('keyward_changes', $1)", &[&seq.to_string()]).await?;
            Ok(())
        })
        .await?;
        self.engine.link.queried(3 + u64::from(escrow.is_some()));
        Ok(())
    }

    /// The fleet's ungranted balance of key `id`'s credits and its last refill, locked until the commit (so no grant moves it
    /// while a credits change is built on it); `None` if the key has no escrowed credits.
    pub async fn credits(&mut self, id: &str) -> Result<Option<(u64, i64)>, EngineError> {
        let query = "SELECT balance, refilled_at FROM keyward_credits WHERE key_id = $1 FOR UPDATE";
        let row = self.guard(|c| async move { c.query_opt(query, &[&id]).await }).await?;
        self.engine.link.queried(1);
        Ok(row.map(|row| (row.get::<_, i64>(0).max(0) as u64, row.get::<_, i64>(1))))
    }

    /// The open connection, for the statements of `fleet init` that run in this transaction.
    pub(super) fn connection(&self) -> &Connected {
        self.conn.as_ref().expect("a transaction has a connection")
    }

    pub(super) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Commits. On success the change is durable in the engine and every host will apply it.
    pub async fn commit(mut self) -> Result<(), CommitError> {
        let backend_pid = self.backend_pid;
        let result = self.guard(|c| async move { c.batch_execute("COMMIT").await }).await;
        self.engine.link.queried(1);
        self.done = true;
        match result {
            Ok(()) => {
                self.engine.link.set_reachable(true);
                Ok(())
            }
            Err(error @ EngineError::Query { .. }) => {
                *self.conn = None;
                Err(CommitError::Failed(error))
            }
            Err(error) => {
                *self.conn = None;
                Err(CommitError::Unknown { error, backend_pid })
            }
        }
    }
}

impl Drop for Txn<'_> {
    fn drop(&mut self) {
        if !self.done {
            // Closing the connection rolls the transaction back and releases the lock.
            *self.conn = None;
        }
    }
}

/// Settles a commit of unknown outcome before `deadline`: ends the backend that ran it (so it cannot
/// commit late), then looks for change `change_id`. `Ok(Some(seq))`: it was committed as `seq`;
/// `Ok(None)`: it was not, and never will be.
pub async fn resolve(
    engine: &Engine,
    change_id: &ChangeId,
    backend_pid: i32,
    deadline: Instant,
) -> Result<Option<u64>, EngineError> {
    let settings = &engine.settings;
    let conn = connect(settings, deadline, false).await?;
    let pid: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&backend_pid];
    until(settings, deadline, conn.client.query_one("SELECT pg_terminate_backend($1)", &pid)).await?;
    // pg_terminate_backend only signals; wait until the backend is gone before trusting the lookup.
    let gone = "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)";
    while !until(settings, deadline, conn.client.query_one(gone, &pid)).await?.get::<_, bool>(0) {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let id = change_id.as_slice();
    let id: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&id];
    let find = conn.client.query_opt("SELECT seq FROM keyward_changes WHERE change_id = $1", &id);
    let row = until(settings, deadline, find).await?;
    engine.link.queried(3);
    engine.link.set_reachable(true);
    Ok(row.map(|row| row.get::<_, i64>(0).max(0) as u64))
}

/// What `keyward fleet init` found or made.
#[derive(Debug)]
pub enum Init {
    /// A new fleet: the schema was created and the changes written; the last is `head`, with id `anchor`.
    Created { head: u64, anchor: Option<ChangeId> },
    /// The engine already holds fleet `fleet_id`, whose lookup key has check value `lookup_check`
    /// (nothing was written).
    Exists { fleet_id: String, lookup_check: Vec<u8> },
}

/// Creates fleet `fleet_id` with `changes` as its first changes, in one transaction, unless the engine
/// holds a fleet already. Each change gets the next sequence number; `number` puts it into the change
/// (its audit entry's `seq`) before it is written.
pub async fn init(
    engine: &Engine,
    fleet_id: &str,
    lookup_check: &[u8],
    changes: Vec<Body>,
    now: i64,
    number: impl Fn(&mut Body, u64),
    deadline: Instant,
) -> Result<Init, EngineError> {
    let mut txn = engine.begin(deadline).await?;
    let found = super::schema::inspect(&engine.settings, txn.connection(), txn.deadline()).await?;
    if let super::schema::Found::Fleet { fleet_id, lookup_check, .. } = found {
        return Ok(Init::Exists { fleet_id, lookup_check });
    }
    super::schema::create(&engine.settings, txn.connection(), txn.deadline(), fleet_id, lookup_check, now).await?;
    let (mut head, mut anchor) = (0, None);
    for mut body in changes {
        let seq = txn.next_seq().await?;
        number(&mut body, seq);
        let change_id = crate::secrets::mint::change_id();
        txn.insert(seq, &change_id, &body, now).await?;
        (head, anchor) = (seq, Some(change_id));
    }
    txn.commit().await.map_err(|e| match e {
        CommitError::Failed(error) | CommitError::Unknown { error, .. } => error,
    })?;
    Ok(Init::Created { head, anchor })
}
