//! [`Service`]: the daemon's shared state in one cheap handle, and the dispatch of every request.
//!
//! [`Service::handle`] is the single `match` over [`Request`]: it decides what each socket may ask, answers
//! what memory can answer inline ([`Handled::Now`]) and hands back a future for what must wait for the
//! hasher or the disk ([`Handled::Later`]). Errors become replies here and nowhere else.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use keyward_protocol::{Reply, Request};
use tokio::sync::{Mutex, MutexGuard};

use crate::error::DaemonError;
use crate::hasher::Hasher;
use crate::index::Index;
use crate::store::Store;
use crate::verify::Step;

/// Which socket a connection came in on, and so which requests it may make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketRole {
    /// App servers: Ping and Verify.
    Verify,
    /// Operators: everything.
    Admin,
}

/// A request's answer: ready now, or a future to await off the connection's read path.
// `Now` is large (a whole reply) but short-lived; boxing it would put an allocation on the warm verify path.
#[allow(clippy::large_enum_variant)]
pub enum Handled {
    Now(Reply),
    Later(Pin<Box<dyn Future<Output = Reply> + Send + 'static>>),
}

/// The daemon's shared state; clones share everything.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

struct Inner {
    index: Index,
    store: Arc<Store>,
    hasher: Hasher,
    /// Serialises changes so each is read-modify-write on the latest snapshot of a key.
    writes: Mutex<()>,
}

fn reply_from<T>(result: Result<T, DaemonError>, wrap: impl FnOnce(T) -> Reply) -> Reply {
    match result {
        Ok(value) => wrap(value),
        Err(error) => Reply::Error(error.to_reply()),
    }
}

impl Service {
    pub fn new(index: Index, store: Store, hasher: Hasher) -> Service {
        Service { inner: Arc::new(Inner { index, store: Arc::new(store), hasher, writes: Mutex::new(()) }) }
    }

    pub fn index(&self) -> &Index {
        &self.inner.index
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.inner.store
    }

    pub fn hasher(&self) -> &Hasher {
        &self.inner.hasher
    }

    pub(crate) async fn write_lock(&self) -> MutexGuard<'_, ()> {
        self.inner.writes.lock().await
    }

    /// Answers `request` arriving on a socket of `role`.
    pub fn handle(&self, request: Request, role: SocketRole) -> Handled {
        match (role, request) {
            (_, Request::Ping) => Handled::Now(Reply::Pong),
            (_, Request::Verify(verify)) => match self.verify_now(verify) {
                Ok(Step::Done(answer)) => Handled::Now(Reply::Verify(answer)),
                Ok(Step::Cold(check)) => {
                    let service = self.clone();
                    Handled::Later(Box::pin(async move { reply_from(service.verify_cold(check).await, Reply::Verify) }))
                }
                Err(error) => Handled::Now(Reply::Error(error.to_reply())),
            },
            (SocketRole::Verify, _) => Handled::Now(Reply::Error(
                DaemonError::WrongSocket("management requests are only accepted on the admin socket").to_reply(),
            )),
            (SocketRole::Admin, Request::Create(create)) => {
                let service = self.clone();
                Handled::Later(Box::pin(async move { reply_from(service.create(create).await, Reply::Created) }))
            }
            (SocketRole::Admin, Request::List(list)) => Handled::Now(reply_from(self.list(&list), Reply::Keys)),
            (SocketRole::Admin, Request::Get { id }) => Handled::Now(reply_from(self.get(&id), Reply::Key)),
            (SocketRole::Admin, Request::Revoke { id }) => {
                let service = self.clone();
                Handled::Later(Box::pin(async move { reply_from(service.revoke(&id).await, Reply::Key) }))
            }
        }
    }
}
