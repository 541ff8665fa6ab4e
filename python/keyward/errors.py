"""Everything that can go wrong between a client and ``keywardd``, as exceptions.

Every exception of this package is a :class:`KeywardError`. A request the daemon refused raises a
:class:`DaemonError` (or the subclass for its code, e.g. :class:`KeyNotFound`) carrying the daemon's
stable :class:`~keyward.codes.ErrorCode` and its message, exactly as the daemon sent them. The others say why
no answer came: :class:`ConnectError` (nothing listens at the path, or this user may not reach it),
:class:`UntrustedDaemon`, :class:`Timeout`, :class:`ConnectionLost` and :class:`ProtocolError`.

No exception ever holds a token: requests are encoded before anything can fail, and the daemon never puts
a secret in a message. ``code_name`` gives one stable name per failure, as the Rust client's ``code_name``
does, for logs and machine-readable output.
"""

from __future__ import annotations

import os
from typing import Callable, Dict, Optional, Tuple, Type

from .codes import ErrorCode

__all__ = [
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
]


class KeywardError(Exception):
    """The base of every error this package raises."""

    #: A stable name for what went wrong (the daemon's code when it sent one).
    code_name: str = "IO"


class ConnectError(KeywardError):
    """The socket could not be connected to: the daemon is not running, the path is wrong, or this user
    may not reach it (the message then says which directory or file, and which group to join)."""

    code_name = "UNREACHABLE"

    def __init__(self, path: str, error: OSError) -> None:
        self.path = path
        self.errno = error.errno
        super().__init__(f"cannot reach keywardd at {path}: {error.strerror or error}; {_connect_hint(path, error)}")


class UntrustedDaemon(KeywardError):
    """The process listening on the socket runs as a user the client does not accept as the daemon's: it
    may be another local user's socket put there to collect tokens. Nothing was sent."""

    code_name = "UNTRUSTED_DAEMON"

    def __init__(self, path: str, uid: int) -> None:
        self.path = path
        self.uid = uid
        super().__init__(
            f"refusing to talk to {path}: the process listening there runs as uid {uid}, not as root, this user "
            f"or the daemon's user (keyward); if keywardd really runs as uid {uid}, say so with "
            f"KEYWARD_DAEMON_USER={uid} (or daemon_user={uid})"
        )


class Timeout(KeywardError, TimeoutError):
    """No answer arrived within the request timeout. The connection is dropped: a late reply must never
    answer a later request."""

    code_name = "TIMEOUT"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(f"keywardd did not answer within {seconds:g} s")


class ConnectionLost(KeywardError, ConnectionError):
    """The connection broke (closed by the daemon, or an I/O error) before the answer arrived. The request
    may or may not have been carried out."""

    code_name = "CLOSED"

    def __init__(self, message: str = "keywardd closed the connection before answering") -> None:
        super().__init__(message)


class ProtocolError(KeywardError):
    """The daemon sent bytes the client cannot accept: a frame over the limit, a payload that does not
    decode, or a reply that does not fit the request."""

    code_name = "PROTOCOL"


class DaemonError(KeywardError):
    """The daemon refused a request (or the handshake, then ``handshake`` is true) with an error reply.

    ``str()`` is ``CODE: message``, as the Rust client and the CLI show it.
    """

    def __init__(self, code: ErrorCode, message: str, *, handshake: bool = False) -> None:
        self.code = code
        self.message = message
        self.handshake = handshake
        self.code_name = code.as_str()
        super().__init__(f"{code.as_str()}: {message}")

    def __reduce__(self) -> Tuple[Callable[[int, str, bool], "DaemonError"], Tuple[int, str, bool]]:
        return (_rebuild_daemon_error, (int(self.code), self.message, self.handshake))

    @staticmethod
    def from_reply(code: ErrorCode, message: str, *, handshake: bool = False) -> "DaemonError":
        """The exception for an error reply: the subclass for ``code``."""
        return _BY_CODE.get(code, DaemonError)(code, message, handshake=handshake)


def _rebuild_daemon_error(code: int, message: str, handshake: bool) -> DaemonError:
    return DaemonError.from_reply(ErrorCode(code), message, handshake=handshake)


class UnsupportedVersion(DaemonError):
    """The daemon does not speak this client's protocol version."""


class BadFrame(DaemonError):
    """The daemon could not decode a frame this client sent (a bug: please report it)."""


class WrongSocket(DaemonError):
    """A management request on the verify socket: use the admin socket."""


class InvalidArgument(DaemonError):
    """An argument is invalid; the message says which and why."""


class KeyNotFound(DaemonError):
    """No key has the given id."""


class Conflict(DaemonError):
    """The request conflicts with the key's state (e.g. revoking a revoked key)."""


class StorageError(DaemonError):
    """The daemon could not write its data directory; nothing was changed."""


class ShuttingDown(DaemonError):
    """The daemon is shutting down and takes no new work."""


class Busy(DaemonError):
    """Too much work is queued in the daemon; try again shortly."""


class Forbidden(DaemonError):
    """This user may not use this socket."""


class InternalError(DaemonError):
    """A bug in the daemon; the message says what failed."""


class EngineUnavailable(DaemonError):
    """Fleet mode: the engine could not be reached, so the change was not made."""


class EngineDiverged(DaemonError):
    """Fleet mode: the engine holds fewer changes than this host; the host refuses to follow it."""


_BY_CODE: Dict[ErrorCode, Type[DaemonError]] = {
    ErrorCode.UNSUPPORTED_VERSION: UnsupportedVersion,
    ErrorCode.BAD_FRAME: BadFrame,
    ErrorCode.WRONG_SOCKET: WrongSocket,
    ErrorCode.INVALID_ARGUMENT: InvalidArgument,
    ErrorCode.KEY_NOT_FOUND: KeyNotFound,
    ErrorCode.CONFLICT: Conflict,
    ErrorCode.STORAGE: StorageError,
    ErrorCode.SHUTTING_DOWN: ShuttingDown,
    ErrorCode.BUSY: Busy,
    ErrorCode.FORBIDDEN: Forbidden,
    ErrorCode.INTERNAL: InternalError,
    ErrorCode.ENGINE_UNAVAILABLE: EngineUnavailable,
    ErrorCode.ENGINE_DIVERGED: EngineDiverged,
}


def _connect_hint(path: str, error: OSError) -> str:
    """What to tell a user whose ``connect`` to ``path`` failed with ``error`` (as the Rust client does)."""
    if isinstance(error, PermissionError):
        return _permission_hint(path)
    if isinstance(error, ConnectionRefusedError):
        return "a socket file is there but nothing listens on it; is the daemon running?"
    return "is the daemon running?"


def _permission_hint(path: str) -> str:
    uid = os.getuid()
    ancestors = []
    directory = os.path.dirname(path)
    while directory and directory not in ancestors:
        ancestors.append(directory)
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    for directory in reversed(ancestors):
        if not os.access(directory, os.X_OK):
            return f"uid {uid} may not enter {directory}{_ownership(directory)}"
    return f"uid {uid} may not connect to the socket file{_ownership(path)}"


def _ownership(path: str) -> str:
    try:
        meta = os.stat(path)
    except OSError:
        return ""
    group: Optional[str]
    try:
        import grp

        group = grp.getgrgid(meta.st_gid).gr_name
    except (ImportError, KeyError):
        group = str(meta.st_gid)
    return (
        f" (owner uid {meta.st_uid}, group {group}, mode {meta.st_mode & 0o7777:04o}): app servers need to be in "
        f"group {group} (usermod -aG {group} USER, then log in again or restart the app server)"
    )
