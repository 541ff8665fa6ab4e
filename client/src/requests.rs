//! What each request is for the client: whether it carries the caller's actor label, whether it may be
//! sent twice, which reply it expects, and how long it may take unless a client is told otherwise.
//!
//! Both clients ask these questions of every request they send, so the answers live in one place; the
//! protocol already classifies requests ([`Request::is_management`], [`Request::is_write`]) and this
//! module only adds what the client makes of that.
//!
//! **The actor label.** A client may act on behalf of someone (a dashboard user, a deploy job); the daemon
//! records that label in the audit log next to the peer's uid and pid. Every request of the admin socket
//! carries it except `Ping` and `Verify`, which are not audited and which the verify socket would refuse
//! inside an `As`. A request that already is an `As` is left alone, since the daemon refuses nested ones.
//!
//! **The expected reply.** The typed helpers of both clients (`ping`, `verify`, `create`, …) turn a
//! [`Reply`] into the one variant their request calls for with the functions here; anything else is
//! [`ClientError::UnexpectedReply`]. Error replies never get this far: `call` has already turned them into
//! [`ClientError::Refused`]. `verify` skips `call` and takes its answer straight from the decoded
//! [`Answer`], error replies included ([`verify_answer`]). This matching lives here rather than in
//! [`crate::wire`] because it is a fact about the request, not about bytes: `wire` turns a frame into an
//! [`Answer`] without knowing which request it answers, and this module, above it, says which answer the
//! request called for. Imports go that way only: `requests` uses `wire`, never the reverse.

use std::time::Duration;

use keyward_protocol::{
    AccountView, AuditEntry, CreatedKey, FleetReport, KeyPage, KeyUsage, KeyView, Reply, Request, StatsReport,
    UsageReport, VerifyAnswer, VerifyRequest,
};

use crate::error::ClientError;
use crate::wire::Answer;

/// How long a request may take unless a client is told otherwise.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// `request` wrapped in [`Request::As`] for `actor`, when there is an actor and the request is a
/// management request; otherwise `request` unchanged.
pub(crate) fn on_behalf_of(actor: Option<&str>, request: Request) -> Request {
    match actor {
        Some(actor) if is_management(&request) => Request::As { actor: actor.to_owned(), request: Box::new(request) },
        _ => request,
    }
}

/// Whether `request` is one an actor label belongs on: a management request that is not already an `As`.
fn is_management(request: &Request) -> bool {
    request.is_management() && !matches!(request, Request::As { .. })
}

/// Whether sending `request` twice has the same effect as sending it once, so that a request lost with a
/// broken connection may be retried.
///
/// A request that changes something may already have been carried out when the connection broke:
/// resending a create would mint a second key. A verify with a cost spends rate budget and credits, so
/// only a free one (`cost: 0`) counts as a read here.
pub(crate) fn is_idempotent(request: &Request) -> bool {
    match request {
        Request::Verify(verify) => is_idempotent_verify(verify),
        Request::As { request, .. } => is_idempotent(request),
        other => !other.is_write(),
    }
}

/// Whether sending this verify twice has the same effect as sending it once: only when it is free.
pub(crate) fn is_idempotent_verify(request: &VerifyRequest) -> bool {
    request.cost == 0
}

/// Turns an error reply into [`ClientError::Refused`]; every other reply passes through.
pub(crate) fn refused_as_error(reply: Reply) -> Result<Reply, ClientError> {
    match reply {
        Reply::Error(error) => Err(ClientError::Refused(error)),
        other => Ok(other),
    }
}

/// The answer to a Ping.
pub(crate) fn pong(reply: Reply) -> Result<(), ClientError> {
    match reply {
        Reply::Pong => Ok(()),
        other => Err(unexpected("Pong", &other)),
    }
}

/// The answer to a Verify; an error reply is [`ClientError::Refused`].
pub(crate) fn verify_answer(answer: Answer) -> Result<VerifyAnswer, ClientError> {
    match answer {
        Answer::Verify(answer) => Ok(answer),
        Answer::Other(reply) => match *reply {
            Reply::Error(error) => Err(ClientError::Refused(error)),
            other => Err(unexpected("Verify", &other)),
        },
    }
}

/// The answer to a Create or a Regenerate.
pub(crate) fn created_key(reply: Reply) -> Result<CreatedKey, ClientError> {
    match reply {
        Reply::Created(created) => Ok(created),
        other => Err(unexpected("Created", &other)),
    }
}

/// The answer to a List or a ListLegacy.
pub(crate) fn key_page(reply: Reply) -> Result<KeyPage, ClientError> {
    match reply {
        Reply::Keys(page) => Ok(page),
        other => Err(unexpected("Keys", &other)),
    }
}

/// The answer to a Get, Revoke, Edit, Deactivate, Activate, Import or Credits.
pub(crate) fn key_view(reply: Reply) -> Result<KeyView, ClientError> {
    match reply {
        Reply::Key(view) => Ok(view),
        other => Err(unexpected("Key", &other)),
    }
}

/// The answer to an Audit.
pub(crate) fn audit_entries(reply: Reply) -> Result<Vec<AuditEntry>, ClientError> {
    match reply {
        Reply::Audit(entries) => Ok(entries),
        other => Err(unexpected("Audit", &other)),
    }
}

/// The answer to a SetAccount or a GetAccount.
pub(crate) fn account_view(reply: Reply) -> Result<AccountView, ClientError> {
    match reply {
        Reply::Account(account) => Ok(account),
        other => Err(unexpected("Account", &other)),
    }
}

/// The answer to a Usage.
pub(crate) fn usage_report(reply: Reply) -> Result<UsageReport, ClientError> {
    match reply {
        Reply::Usage(report) => Ok(report),
        other => Err(unexpected("Usage", &other)),
    }
}

/// The answer to a WorkspaceUsage.
pub(crate) fn workspace_usage(reply: Reply) -> Result<Vec<KeyUsage>, ClientError> {
    match reply {
        Reply::WorkspaceUsage(keys) => Ok(keys),
        other => Err(unexpected("WorkspaceUsage", &other)),
    }
}

/// The answer to a Stats.
pub(crate) fn stats_report(reply: Reply) -> Result<StatsReport, ClientError> {
    match reply {
        Reply::Stats(report) => Ok(*report),
        other => Err(unexpected("Stats", &other)),
    }
}

/// The answer to a FleetInit or a FleetStatus.
pub(crate) fn fleet_report(reply: Reply) -> Result<FleetReport, ClientError> {
    match reply {
        Reply::Fleet(report) => Ok(*report),
        other => Err(unexpected("Fleet", &other)),
    }
}

/// The keys of a ListLegacy answer: one page holding every key, so a `next` would be a confused daemon.
pub(crate) fn legacy_keys(reply: Reply) -> Result<Vec<KeyView>, ClientError> {
    match key_page(reply)? {
        KeyPage { keys, next: None } => Ok(keys),
        KeyPage { next: Some(_), .. } => Err(ClientError::UnexpectedReply {
            expected: "every legacy key in one page",
            got: "a page that says more follow",
        }),
    }
}

fn unexpected(expected: &'static str, got: &Reply) -> ClientError {
    ClientError::UnexpectedReply { expected, got: variant_name(got) }
}

/// The reply's variant name. Only the name: a `Created` reply holds a token, so a reply is never printed.
fn variant_name(reply: &Reply) -> &'static str {
    match reply {
        Reply::Pong => "Pong",
        Reply::Verify(_) => "Verify",
        Reply::Created(_) => "Created",
        Reply::Keys(_) => "Keys",
        Reply::Key(_) => "Key",
        Reply::Error(_) => "Error",
        Reply::Audit(_) => "Audit",
        Reply::Account(_) => "Account",
        Reply::Usage(_) => "Usage",
        Reply::WorkspaceUsage(_) => "WorkspaceUsage",
        Reply::Stats(_) => "Stats",
        Reply::Fleet(_) => "Fleet",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyward_protocol::{ErrorCode, ErrorReply, Secret};

    #[test]
    fn management_requests_are_wrapped_once() {
        let revoke = Request::Revoke { id: "AbCdEf012345".into() };
        assert_eq!(on_behalf_of(None, revoke.clone()), revoke);
        let wrapped = on_behalf_of(Some("alice"), revoke.clone());
        assert_eq!(wrapped, Request::As { actor: "alice".into(), request: Box::new(revoke) });
        assert_eq!(on_behalf_of(Some("bob"), wrapped.clone()), wrapped, "never nested");
    }

    #[test]
    fn ping_and_verify_are_never_wrapped() {
        assert_eq!(on_behalf_of(Some("alice"), Request::Ping), Request::Ping);
        let verify = Request::Verify(VerifyRequest::new(Secret::new("kw_live_x")));
        assert_eq!(on_behalf_of(Some("alice"), verify.clone()), verify);
    }

    #[test]
    fn a_reply_of_the_wrong_kind_is_named_not_printed() {
        let error = verify_answer(Answer::Other(Box::new(Reply::Pong))).unwrap_err();
        assert_eq!(error.to_string(), "keywardd answered Pong where Verify was expected");
        assert!(pong(Reply::Pong).is_ok());
    }

    #[test]
    fn an_error_reply_to_a_verify_is_a_refusal() {
        let busy = Answer::Other(Box::new(Reply::Error(ErrorReply::new(ErrorCode::Busy, "try again"))));
        assert!(matches!(verify_answer(busy), Err(ClientError::Refused(error)) if error.code == ErrorCode::Busy));
        let valid = VerifyAnswer::refused(keyward_protocol::VerifyCode::Valid);
        assert_eq!(verify_answer(Answer::Verify(valid.clone())).unwrap(), valid);
    }

    #[test]
    fn error_replies_become_refusals() {
        let reply = Reply::Error(ErrorReply::new(ErrorCode::Busy, "try again"));
        assert!(matches!(refused_as_error(reply), Err(ClientError::Refused(_))));
        assert!(matches!(refused_as_error(Reply::Pong), Ok(Reply::Pong)));
    }

    #[test]
    fn only_reads_are_retried() {
        assert!(is_idempotent(&Request::Ping));
        assert!(is_idempotent(&Request::Get { id: "AbCdEf012345".into() }));
        assert!(!is_idempotent(&Request::Revoke { id: "AbCdEf012345".into() }));
        let paid = VerifyRequest::new(Secret::new("kw_live_x"));
        assert!(!is_idempotent(&Request::Verify(paid.clone())), "a verify with a cost spends credits");
        assert!(is_idempotent(&Request::Verify(VerifyRequest { cost: 0, ..paid })));
        let revoke_as = Request::As { actor: "ops".into(), request: Box::new(Request::Revoke { id: "x".into() }) };
        assert!(!is_idempotent(&revoke_as));
        let audit_as = Request::As { actor: "ops".into(), request: Box::new(Request::Audit(Default::default())) };
        assert!(is_idempotent(&audit_as), "a read stays a read on someone's behalf");
    }

    #[test]
    fn reads_of_the_lifecycle_are_retried_and_changes_never() {
        let id = || "AbCdEf012345".to_string();
        let reads = [
            Request::Audit(Default::default()),
            Request::GetAccount { account: "acct".into() },
            Request::ListLegacy { account: None },
            Request::Usage { id: id() },
            Request::WorkspaceUsage { workspace: "ws".into() },
        ];
        assert!(reads.iter().all(is_idempotent));
        let changes = [
            Request::Edit { id: id(), changes: Default::default() },
            Request::Regenerate { id: id(), grace_seconds: 0 },
            Request::Deactivate { id: id() },
            Request::Activate { id: id() },
            Request::SetAccount(Default::default()),
            Request::Credits { id: id(), change: keyward_protocol::CreditChange::Add(1) },
        ];
        assert!(!changes.iter().any(is_idempotent));
    }

    #[test]
    fn a_legacy_listing_is_one_page() {
        let page = |next: Option<&str>| Reply::Keys(KeyPage { keys: vec![], next: next.map(Into::into) });
        assert!(legacy_keys(page(None)).unwrap().is_empty());
        assert!(matches!(legacy_keys(page(Some("x"))), Err(ClientError::UnexpectedReply { .. })));
        assert!(matches!(usage_report(Reply::Pong), Err(ClientError::UnexpectedReply { expected: "Usage", .. })));
    }
}
