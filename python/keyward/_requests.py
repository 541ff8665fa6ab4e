"""What each request is for a client: whether it carries the actor label, whether it may be sent twice,
and which reply it calls for. Both clients ask these questions of every request, as the Rust client's
``requests.rs`` does.

**The actor label.** Every admin request except ``Ping`` and ``Verify`` goes inside ``As { actor }`` when
the client has an actor; one that already is an ``As`` is left alone (the daemon refuses nested ones).

**Retries.** A request lost with a broken connection is sent again (once, on a new connection) only if
sending it twice has the effect of sending it once: reads, and verifies that cost nothing. A create, a
revoke or a verify that spends rate budget may already have been carried out.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple, Type, TypeVar

from .errors import DaemonError, ProtocolError
from .messages import (
    REPLY,
    AccountView,
    Activate,
    As,
    CreateRequest,
    Credits,
    Deactivate,
    Edit,
    ErrorReply,
    FleetInit,
    ImportRequest,
    KeyPage,
    KeyView,
    ListRequest,
    Ping,
    Regenerate,
    Reply,
    Request,
    Revoke,
    VerifyAnswer,
    VerifyRequest,
)

_T = TypeVar("_T")

_WRITES: Tuple[type, ...] = (
    CreateRequest, Revoke, Edit, Regenerate, Deactivate, Activate, ImportRequest, AccountView, Credits, FleetInit
)


def is_management(request: Request) -> bool:
    """Whether only the admin socket takes ``request``: everything but ``Ping`` and ``Verify``."""
    return not isinstance(request, (Ping, VerifyRequest))


def is_write(request: Request) -> bool:
    """Whether ``request`` changes what the daemon stores."""
    if isinstance(request, As):
        return is_write(request.request)
    return isinstance(request, _WRITES)


def is_idempotent(request: Request) -> bool:
    """Whether sending ``request`` twice has the same effect as sending it once."""
    if isinstance(request, VerifyRequest):
        return request.cost == 0
    if isinstance(request, As):
        return is_idempotent(request.request)
    return not is_write(request)


def on_behalf_of(actor: Optional[str], request: Request) -> Request:
    """``request`` inside ``As`` for ``actor`` when there is one and it is a management request."""
    if actor is not None and is_management(request) and not isinstance(request, As):
        return As(actor, request)
    return request


def variant_name(reply: Any) -> str:
    """The reply's variant name. Only the name: a ``Created`` reply holds a token."""
    try:
        return REPLY.index_of(reply)[1].name
    except TypeError:
        return type(reply).__name__


def refused(reply: ErrorReply) -> DaemonError:
    return DaemonError.from_reply(reply.code, reply.message)


def expect(reply: Reply, cls: Type[_T], expected: str) -> _T:
    """``reply`` if it is the ``cls`` the request called for; an error reply raises it as a
    :class:`DaemonError`, anything else is a :class:`ProtocolError`."""
    if isinstance(reply, cls):
        return reply
    if isinstance(reply, ErrorReply):
        raise refused(reply)
    raise ProtocolError(f"keywardd answered {variant_name(reply)} where {expected} was expected")


def verify_answer(reply: Reply) -> VerifyAnswer:
    return expect(reply, VerifyAnswer, "Verify")


def legacy_keys(reply: Reply) -> List[KeyView]:
    """The keys of a ListLegacy answer: one page holding every key."""
    page = expect(reply, KeyPage, "Keys")
    if page.next is not None:
        raise ProtocolError("keywardd answered a page that says more follow where every legacy key in one page "
                            "was expected")
    return page.keys


class Listing:
    """A walk through a workspace's keys, page by page; a page that does not move forward is refused, so a
    confused daemon cannot keep a client asking forever."""

    def __init__(self, workspace: str) -> None:
        self.workspace = workspace
        self.after: Optional[str] = None
        self.keys: List[KeyView] = []

    def next_request(self) -> ListRequest:
        return ListRequest(self.workspace, self.after, 0)

    def absorb(self, page: KeyPage) -> bool:
        """Appends a page; ``True`` when another page follows."""
        if page.next is None:
            self.keys.extend(page.keys)
            return False
        if not page.keys or page.next == self.after:
            raise ProtocolError("keywardd answered a page that repeats the previous cursor where a listing page "
                                "that moves forward was expected")
        self.keys.extend(page.keys)
        self.after = page.next
        return True
