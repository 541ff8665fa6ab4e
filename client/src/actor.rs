//! Labelling management requests with the caller's actor ([`Request::As`]).
//!
//! A client may act on behalf of someone (a dashboard user, a deploy job); the daemon records that label in
//! the audit log next to the peer's uid and pid. This module owns which requests carry the label: every
//! request of the admin socket except `Ping` and `Verify`, which are not audited and which the verify
//! socket would refuse inside an `As`. A request that already is an `As` is left alone, since the daemon
//! refuses nested ones.

use keyward_protocol::Request;

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

#[cfg(test)]
mod tests {
    use super::*;
    use keyward_protocol::{Secret, VerifyRequest};

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
}
