//! The one `match` over [`Request`]: which socket may ask what, which part of the daemon answers it, and
//! errors turned into replies (here and nowhere else; [`DaemonError::to_reply`] is the mapping).
//!
//! What memory can answer is answered inline ([`Handled::Now`], and a warm verify as [`Handled::Verified`],
//! whose reply bytes the connection splices in); what must wait for the hasher or the disk comes back as a
//! future ([`Handled::Later`]) the connection runs off its read path.

use std::future::Future;
use std::pin::Pin;

use keyward_protocol::{Actor, Reply, Request, VerifyRequestRef};

use crate::error::DaemonError;
use crate::fleet;
use crate::host::clock::Now;
use crate::manage::{self, validate};
use crate::secrets::hasher::Caller;
use crate::service::Service;
use crate::verify::{self, Step, Verdict};

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
    /// A verify answered from memory, encoded by [`Verdict::encode_reply`].
    Verified(Verdict),
    Later(Pin<Box<dyn Future<Output = Reply> + Send + 'static>>),
}

fn reply_from<T>(result: Result<T, DaemonError>, wrap: impl FnOnce(T) -> Reply) -> Reply {
    match result {
        Ok(value) => wrap(value),
        Err(error) => Reply::Error(error.to_reply()),
    }
}

/// Answers a verify that arrived at `now`, on either socket: from memory when it can, else as work that
/// waits for the store or Argon2. The request is borrowed: read in place from its frame on the hot path.
/// `caller` is the connection, which waits its own turn if Argon2 must decide.
pub fn handle_verify(service: &Service, request: &VerifyRequestRef<'_>, now: Now, caller: Caller) -> Handled {
    let started = now.at;
    match verify::verify_now(service, request, now, caller) {
        Ok(Step::Done(verdict)) => {
            service.stats().verified(verdict.code(), started.elapsed());
            Handled::Verified(verdict)
        }
        Ok(step) => later(service, move |s| async move {
            let answer = verify::verify_later(&s, step).await;
            match &answer {
                Ok(answer) => s.stats().verified(answer.code, started.elapsed()),
                Err(DaemonError::Busy) => s.stats().busy_refusal(),
                Err(_) => {}
            }
            reply_from(answer, Reply::Verify)
        }),
        Err(error) => {
            if matches!(error, DaemonError::Busy) {
                service.stats().busy_refusal();
            }
            Handled::Now(Reply::Error(error.to_reply()))
        }
    }
}

/// Answers `request` arriving on a socket of `role` from `actor` over the connection `caller`.
pub fn handle(service: &Service, request: Request, role: SocketRole, actor: &Actor, caller: Caller) -> Handled {
    match (role, request) {
        (_, Request::Ping) => Handled::Now(Reply::Pong),
        (_, Request::Verify(verify)) => handle_verify(service, &verify.as_borrowed(), Now::read(), caller),
        (SocketRole::Verify, request) if request.is_management() => Handled::Now(Reply::Error(
            DaemonError::WrongSocket("management requests are only accepted on the admin socket").to_reply(),
        )),
        (_, request) => manage(service, request, actor.clone(), caller),
    }
}

fn manage(service: &Service, request: Request, actor: Actor, caller: Caller) -> Handled {
    match request {
        Request::Ping | Request::Verify(_) => handle(service, request, SocketRole::Admin, &actor, caller),
        Request::As { actor: label, request } => match (validate::actor(&label), *request) {
            (Err(error), _) => Handled::Now(Reply::Error(error.to_reply())),
            (Ok(_), Request::As { .. }) => Handled::Now(Reply::Error(
                DaemonError::InvalidArgument("`As` requests cannot be nested".into()).to_reply(),
            )),
            (Ok(label), inner) => manage(service, inner, Actor { label: Some(label), ..actor }, caller),
        },
        Request::List(list) => blocking(service, move |s| manage::list(s, &list), Reply::Keys),
        Request::Get { id } => blocking(service, move |s| manage::get(s, &id), Reply::Key),
        Request::ListLegacy { account } => {
            blocking(service, move |s| manage::list_legacy(s, account.as_deref()), Reply::Keys)
        }
        Request::GetAccount { account } => {
            Handled::Now(reply_from(manage::get_account(service, &account), Reply::Account))
        }
        Request::Stats => Handled::Now(Reply::Stats(Box::new(manage::report(service)))),
        Request::Usage { id } => {
            later(service, |s| async move { reply_from(manage::usage(&s, &id).await, Reply::Usage) })
        }
        Request::WorkspaceUsage { workspace } => later(service, |s| async move {
            reply_from(manage::workspace_usage(&s, &workspace).await, Reply::WorkspaceUsage)
        }),
        Request::Credits { id, change } => {
            later(
                service,
                |s| async move { reply_from(manage::change_credits(&s, &id, change, &actor).await, Reply::Key) },
            )
        }
        Request::Audit(query) => {
            later(service, |s| async move { reply_from(manage::audit(&s, query).await, Reply::Audit) })
        }
        Request::Create(create) => {
            later(service, |s| async move { reply_from(manage::create(&s, create, &actor).await, Reply::Created) })
        }
        Request::Import(import) => {
            later(service, |s| async move { reply_from(manage::import(&s, import, &actor).await, Reply::Key) })
        }
        Request::Edit { id, changes } => {
            later(service, |s| async move { reply_from(manage::edit(&s, &id, changes, &actor).await, Reply::Key) })
        }
        Request::Regenerate { id, grace_seconds } => later(service, move |s| async move {
            reply_from(manage::regenerate(&s, &id, grace_seconds, &actor).await, Reply::Created)
        }),
        Request::Deactivate { id } => {
            later(service, |s| async move { reply_from(manage::set_active(&s, &id, false, &actor).await, Reply::Key) })
        }
        Request::Activate { id } => {
            later(service, |s| async move { reply_from(manage::set_active(&s, &id, true, &actor).await, Reply::Key) })
        }
        Request::Revoke { id } => {
            later(service, |s| async move { reply_from(manage::revoke(&s, &id, &actor).await, Reply::Key) })
        }
        Request::FleetInit => later(service, |s| async move { reply_from(fleet::init(&s).await, fleet_reply) }),
        Request::FleetStatus => later(service, |s| async move { reply_from(fleet::status(&s).await, fleet_reply) }),
        Request::SetAccount(account) => {
            later(
                service,
                |s| async move { reply_from(manage::set_account(&s, account, &actor).await, Reply::Account) },
            )
        }
    }
}

fn fleet_reply(report: keyward_protocol::FleetReport) -> Reply {
    Reply::Fleet(Box::new(report))
}

/// Runs `work` on the blocking pool (it reads the store) and replies with what it returns.
fn blocking<T: Send + 'static>(
    service: &Service,
    work: impl FnOnce(&Service) -> Result<T, DaemonError> + Send + 'static,
    wrap: impl FnOnce(T) -> Reply + Send + 'static,
) -> Handled {
    later(service, |s| async move {
        let result = tokio::task::spawn_blocking(move || work(&s))
            .await
            .unwrap_or_else(|e| Err(DaemonError::task("storage")(e)));
        reply_from(result, wrap)
    })
}

fn later<F, Fut>(service: &Service, work: F) -> Handled
where
    F: FnOnce(Service) -> Fut,
    Fut: Future<Output = Reply> + Send + 'static,
{
    Handled::Later(Box::pin(work(service.clone())))
}
