"""HTTP answers for app servers, framework-free: the same statuses, JSON bodies and headers as the Rust
tower layer and the daemon's forward-auth endpoint (both use ``protocol/src/http.rs``), so a Flask,
FastAPI or Django app refuses requests exactly as an axum one does.

- :func:`bearer_token` takes the key from an ``Authorization: Bearer <key>`` header (scheme in any case,
  whitespace around it ignored) or raises a 401 :class:`Refusal`;
- :func:`refusal_for` turns a verify answer that is not ``VALID`` into its :class:`Refusal`;
- :func:`unavailable` is the 503 for a daemon that could not be asked (any
  :class:`~keyward.errors.KeywardError` of a verify: fail closed);
- :func:`ratelimit_headers` gives the ``RateLimit-*`` headers of an answer, for every response;
- :func:`scope_for` is the layer's resource rule: ``GET``, ``HEAD`` and ``OPTIONS`` need ``read:R``,
  every other method ``write:R``.

Every refusal's body is ``{"error": {"code": "…", "message": "…", "type": "…"}}`` with
``Content-Type: application/json`` and ``Cache-Control: no-store``:

======================================================  ======  ======================  ======================
verify answer                                           status  ``code``                ``type``
======================================================  ======  ======================  ======================
``MISSING`` (no key sent)                               401     ``invalid_api_key``     ``authentication_error``
``MALFORMED``, ``NOT_FOUND``, ``EXPIRED``, ``REVOKED``,  401     ``invalid_api_key``     ``authentication_error``
``INACTIVE``, ``LEGACY_SUNSET``, a malformed header
``INSUFFICIENT_SCOPE``                                  403     ``insufficient_scope``  ``permission_error``
``WRONG_WORKSPACE``                                     403     ``wrong_workspace``     ``permission_error``
``RATE_LIMITED`` (with ``Retry-After``)                 429     ``rate_limited``        ``rate_limit_error``
``USAGE_EXCEEDED``                                      429     ``usage_exceeded``      ``rate_limit_error``
daemon unreachable, timed out, busy                     503     ``auth_unavailable``    ``api_error``
======================================================  ======  ======================  ======================

Messages never hold the token and never say whether a key id exists.
"""

from __future__ import annotations

import json
import time
from typing import Dict, Iterable, Optional, Sequence, Union

from .codes import VerifyCode
from .messages import RateLimitStatus, Secret, VerifyAnswer

__all__ = [
    "Refusal",
    "bearer_token",
    "refusal_for",
    "unavailable",
    "internal",
    "no_workspace",
    "ratelimit_headers",
    "scope_for",
]

_SEND_BEARER = "send Authorization: Bearer <key>"
_READS = frozenset({"GET", "HEAD", "OPTIONS"})


class Refusal(Exception):
    """An answer an app server gives instead of serving the request: raise it from a dependency or a
    decorator, and turn it into a response with :attr:`status`, :meth:`body` (or :meth:`json`) and
    :meth:`headers`."""

    def __init__(
        self,
        status: int,
        code: str,
        kind: str,
        message: str,
        *,
        challenge: Optional[str] = None,
        retry_after: Optional[int] = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        #: The error type: ``authentication_error``, ``permission_error``, ``rate_limit_error``, ``api_error``.
        self.kind = kind
        self.message = message
        #: The ``WWW-Authenticate`` challenge (401, and 403 for a missing scope).
        self.challenge = challenge
        #: ``Retry-After``, in whole seconds.
        self.retry_after = retry_after
        #: Rate-limit headers of the answer that caused the refusal (see :func:`ratelimit_headers`).
        self.extra_headers: Dict[str, str] = {}

    def body(self) -> Dict[str, Dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message, "type": self.kind}}

    def json(self) -> str:
        """The body as JSON text, ASCII only (other characters escaped), as the Rust side writes it."""
        return json.dumps(self.body(), separators=(",", ":"), ensure_ascii=True)

    def headers(self) -> Dict[str, str]:
        headers = {"Content-Type": "application/json", "Cache-Control": "no-store"}
        if self.challenge is not None:
            headers["WWW-Authenticate"] = self.challenge
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        headers.update(self.extra_headers)
        return headers


def _invalid_key(message: str, token_given: bool = True) -> Refusal:
    # RFC 6750 §3: a request without credentials gets a bare challenge.
    challenge = 'Bearer error="invalid_token"' if token_given else "Bearer"
    return Refusal(401, "invalid_api_key", "authentication_error", message, challenge=challenge)


def bearer_token(authorization: Union[str, Sequence[str], None]) -> Secret:
    """The key of an ``Authorization`` header (its value, or every value when a framework gives a list),
    or a 401 :class:`Refusal` for a missing, doubled, non-Bearer, empty or unreadable header."""
    if authorization is None:
        values: Sequence[str] = ()
    elif isinstance(authorization, str):
        values = (authorization,)
    else:
        values = authorization
    if not values:
        raise _invalid_key(f"Missing Authorization header: {_SEND_BEARER}", token_given=False)
    if len(values) > 1:
        raise _invalid_key(f"Send one Authorization header, not several: {_SEND_BEARER}")
    value = values[0]
    if any(not (ch == "\t" or " " <= ch <= "~") for ch in value):
        raise _invalid_key(f"The Authorization header is not readable text: {_SEND_BEARER}")
    text = value.strip(" \t")
    scheme, token = text, ""
    for i, ch in enumerate(text):
        if ch in " \t":
            scheme, token = text[:i], text[i + 1 :].strip(" \t")
            break
    if scheme.lower() != "bearer":
        raise _invalid_key(f"Use the Bearer scheme: {_SEND_BEARER}")
    if not token:
        raise _invalid_key(f"The API key is empty: {_SEND_BEARER}")
    return Secret(token)


def scope_for(method: str, resource: str) -> str:
    """The scope a request needs under the resource rule: ``read:R`` to read, ``write:R`` otherwise."""
    return f"{'read' if method.upper() in _READS else 'write'}:{resource}"


def refusal_for(
    answer: VerifyAnswer, scope: Optional[str] = None, workspace: Optional[str] = None, now_ms: Optional[int] = None
) -> Optional[Refusal]:
    """The refusal for a verify answer, with its rate-limit headers; ``None`` when it is ``VALID`` and the
    request may go on. ``scope`` and ``workspace`` are what the route required, for the 403 messages."""
    code = answer.code
    if code is VerifyCode.VALID:
        if answer.key is None:
            # The daemon contradicted itself; never serve a request on a key nobody named.
            return unavailable()
        return None
    refusal = _refusal(code, answer.retry_after_ms, scope, workspace)
    refusal.extra_headers = ratelimit_headers(answer.ratelimit, now_ms)
    return refusal


def _refusal(code: VerifyCode, retry_after_ms: Optional[int], scope: Optional[str], workspace: Optional[str]) -> Refusal:
    if code is VerifyCode.MISSING:
        # An HTTP door never sends an empty token, but the daemon's word is mapped all the same.
        return _invalid_key(f"Missing API key: {_SEND_BEARER}", token_given=False)
    invalid = {
        VerifyCode.MALFORMED: "Malformed API key: use the full key exactly as it was shown at creation, not just its id",
        VerifyCode.NOT_FOUND: "The API key provided is invalid",
        VerifyCode.EXPIRED: "The API key has expired: create a new key",
        VerifyCode.REVOKED: "The API key has been revoked: create a new key",
        VerifyCode.INACTIVE: "The API key is deactivated: ask a workspace admin to activate it, or create a new key",
        VerifyCode.LEGACY_SUNSET: "Legacy personal API keys no longer work: create a workspace key and use it instead",
    }
    if code in invalid:
        return _invalid_key(invalid[code])
    if code is VerifyCode.INSUFFICIENT_SCOPE:
        message = f"This key lacks the {scope} scope" if scope else "This key lacks the scope this endpoint requires"
        # RFC 6750 §3.1; a scope is a-z0-9:_- only, safe in a quoted string.
        challenge = (f'Bearer error="insufficient_scope", scope="{scope}"' if scope
                     else 'Bearer error="insufficient_scope"')
        return Refusal(403, "insufficient_scope", "permission_error", message, challenge=challenge)
    if code is VerifyCode.WRONG_WORKSPACE:
        message = (f"This key cannot act on workspace {workspace}: it belongs to another" if workspace
                   else "This key cannot act on this workspace: it belongs to another")
        return Refusal(403, "wrong_workspace", "permission_error", message)
    if code is VerifyCode.RATE_LIMITED:
        # Rounded up, and never 0: a client told to retry now would only be refused again.
        retry_after = None if retry_after_ms is None else max(1, -(-retry_after_ms // 1000))
        if retry_after is None:
            message = "This request costs more than this key's rate limit allows in one window"
        elif retry_after == 1:
            message = "Rate limit exceeded: retry after 1 second"
        else:
            message = f"Rate limit exceeded: retry after {retry_after} seconds"
        return Refusal(429, "rate_limited", "rate_limit_error", message, retry_after=retry_after)
    if code is VerifyCode.USAGE_EXCEEDED:
        return Refusal(429, "usage_exceeded", "rate_limit_error",
                       "This key has used up its credits: wait for the refill or add credits")
    if code is VerifyCode.VALID:
        return internal()  # a VALID answer is never a refusal: the daemon contradicted itself
    return unavailable()  # BUSY is an error reply, never an answer; mapped as that error is; so is a code
    # this package does not know (a newer daemon's), which is never VALID


def unavailable() -> Refusal:
    """The daemon could not be asked (unreachable, timed out, overloaded, or any other client error):
    fail closed with a 503."""
    return Refusal(503, "auth_unavailable", "api_error",
                   "API key verification is temporarily unavailable: retry shortly", retry_after=1)


def internal(message: str = "The server could not authenticate this request") -> Refusal:
    """A 500 ``internal_error``: the server cannot authenticate the request for a reason of its own (a
    misconfiguration the operator must fix)."""
    return Refusal(500, "internal_error", "api_error", message)


def no_workspace() -> Refusal:
    """The route takes the workspace from the request and this request names none."""
    return Refusal(403, "wrong_workspace", "permission_error", "This request does not name a workspace")


def ratelimit_headers(limits: Iterable[RateLimitStatus], now_ms: Optional[int] = None) -> Dict[str, str]:
    """The rate-limit headers of an answer (none for a key without limits): ``RateLimit-Limit``,
    ``-Remaining`` and ``-Reset`` for the most restrictive limit (fewest remaining; of equals, the one that
    resets last), and ``RateLimit-Policy`` / ``RateLimit`` (draft-ietf-httpapi-ratelimit-headers-10) for
    every limit. Resets are whole seconds, rounded up."""
    limits = list(limits)
    if not limits:
        return {}
    now = int(time.time() * 1000) if now_ms is None else now_ms
    tightest = min(limits, key=lambda limit: (limit.remaining, -limit.reset_at_ms))
    return {
        "RateLimit-Limit": str(tightest.limit),
        "RateLimit-Remaining": str(tightest.remaining),
        "RateLimit-Reset": str(_seconds_until(tightest.reset_at_ms, now)),
        "RateLimit-Policy": ", ".join(
            f"{_sf_string(limit.policy)};q={limit.limit};w={max(limit.window_seconds, 1)}" for limit in limits
        ),
        "RateLimit": ", ".join(
            f"{_sf_string(limit.policy)};r={limit.remaining};t={_seconds_until(limit.reset_at_ms, now)}"
            for limit in limits
        ),
    }


def _seconds_until(at_ms: int, now_ms: int) -> int:
    return -(-max(at_ms - now_ms, 0) // 1000)


def _sf_string(text: str) -> str:
    """``text`` as a Structured Field String (RFC 8941 §3.3.3); what a String cannot hold becomes ``?``."""
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            out.append("?")
    out.append('"')
    return "".join(out)
