"""A client for ``keywardd``, the keyward API-key daemon, in pure Python (standard library only).

App servers verify tokens over the daemon's verify socket; operators create, list, show and revoke keys
over its admin socket. Both speak the length-framed bincode protocol of ``protocol/src/`` (see
``PROTOCOL.md``), which this package implements from scratch.

- :class:`Client` is the synchronous client: one connection, one request at a time, plus
  :meth:`Client.verify_many` to pipeline a batch of verifies.
- :class:`keyward.aio.AsyncClient` is the asyncio client: one pipelined connection shared by every task.

Both have one method per request: ``ping``, ``verify``, ``verify_many``; ``create``, ``list``,
``list_page``, ``get``, ``revoke``; ``edit``, ``regenerate``, ``deactivate``, ``activate``,
``import_key``; ``audit``; ``set_account``, ``get_account``, ``list_legacy``; ``credits``, ``usage``,
``workspace_usage``; ``stats``; ``fleet_init``, ``fleet_status``; and ``call`` for any request. An error
reply raises :class:`DaemonError` (a subclass per code, e.g. :class:`KeyNotFound`) with the daemon's
code and message. Tokens travel as :class:`Secret` values and never print.

Layout:

- ``client``: the synchronous :class:`Client`.
- ``aio``: :class:`~keyward.aio.AsyncClient`.
- ``messages``: every request, reply and nested type, as dataclasses; the verify fast path.
- ``codes``: :class:`VerifyCode`, :class:`ErrorCode` and the other enums, with their wire indexes.
- ``errors``: the exceptions.
- ``http``: the HTTP refusals (401/403/429/503 and their JSON bodies) for Flask, FastAPI and others.
- ``_codec``: the bincode 2 standard encoding; ``_requests``: retries, the actor label, expected replies;
  ``_trust``: default socket paths and the check of who listens on a socket.
"""

from .client import DEFAULT_TIMEOUT, Client
from .codes import AuditAction, Environment, ErrorCode, KeyOrigin, KeyStatus, Period, Role, VerifyCode
from .errors import (
    BadFrame,
    Busy,
    Conflict,
    ConnectError,
    ConnectionLost,
    DaemonError,
    EngineDiverged,
    EngineUnavailable,
    Forbidden,
    InternalError,
    InvalidArgument,
    KeyNotFound,
    KeywardError,
    ProtocolError,
    ShuttingDown,
    StorageError,
    Timeout,
    UnsupportedVersion,
    UntrustedDaemon,
    WrongSocket,
)
from .messages import (
    PROTOCOL_VERSION,
    REMOVE_REFILL,
    AccountView,
    AuditEntry,
    AuditQuery,
    CreatedKey,
    CreateRequest,
    CreditChange,
    ExpirySpec,
    ImportRequest,
    KeyChanges,
    KeyPage,
    KeyUsage,
    KeyView,
    Limits,
    ListRequest,
    Rate,
    RateLimitStatus,
    RatePolicy,
    Refill,
    Secret,
    StatsReport,
    UsageReport,
    VerifiedKey,
    VerifyAnswer,
    VerifyRequest,
)

__version__ = "0.1.0"

__all__ = [
    "Client",
    "DEFAULT_TIMEOUT",
    "PROTOCOL_VERSION",
    # codes
    "VerifyCode",
    "ErrorCode",
    "KeyStatus",
    "Role",
    "Environment",
    "KeyOrigin",
    "Period",
    "AuditAction",
    # errors
    "KeywardError",
    "ConnectError",
    "UntrustedDaemon",
    "Timeout",
    "ConnectionLost",
    "ProtocolError",
    "DaemonError",
    "UnsupportedVersion",
    "BadFrame",
    "WrongSocket",
    "InvalidArgument",
    "KeyNotFound",
    "Conflict",
    "StorageError",
    "ShuttingDown",
    "Busy",
    "Forbidden",
    "InternalError",
    "EngineUnavailable",
    "EngineDiverged",
    # messages
    "Secret",
    "VerifyRequest",
    "VerifyAnswer",
    "VerifiedKey",
    "RateLimitStatus",
    "CreateRequest",
    "CreatedKey",
    "ImportRequest",
    "KeyChanges",
    "KeyView",
    "KeyPage",
    "ListRequest",
    "AuditQuery",
    "AuditEntry",
    "AccountView",
    "UsageReport",
    "KeyUsage",
    "StatsReport",
    "ExpirySpec",
    "Limits",
    "Rate",
    "RatePolicy",
    "Refill",
    "REMOVE_REFILL",
    "CreditChange",
]
