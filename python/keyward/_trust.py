"""Where the daemon listens, and who a client hands a token to.

Default sockets (as ``protocol/src/paths.rs``): ``$KEYWARD_SOCKET`` / ``$KEYWARD_ADMIN_SOCKET`` when set,
else ``$XDG_RUNTIME_DIR/keyward/{verify,admin}.sock``, else ``/tmp/keyward-$UID/…``.

Before anything is sent, even the handshake, a client reads the credentials of the process listening on
the socket (``SO_PEERCRED``, recorded by the kernel when that process called ``listen``) and talks only to
a daemon running as root, as this process's user, as the user ``keyward`` (the packaged daemon's), or as
the user named by ``daemon_user`` / ``$KEYWARD_DAEMON_USER``, as the Rust client and the CLI do. A socket
another local user put at the path is refused with :class:`~keyward.errors.UntrustedDaemon`.
"""

from __future__ import annotations

import functools
import os
import socket
import struct
from typing import Optional, Union

from .errors import UntrustedDaemon

#: The user the packaged daemon runs as.
PACKAGED_DAEMON_USER = "keyward"

_UCRED = struct.Struct("3i")


def default_socket_dir() -> str:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "keyward")
    return f"/tmp/keyward-{os.getuid()}"


def default_verify_socket() -> str:
    """The verify socket (app servers): ``$KEYWARD_SOCKET``, else the default location."""
    return os.environ.get("KEYWARD_SOCKET") or os.path.join(default_socket_dir(), "verify.sock")


def default_admin_socket() -> str:
    """The admin socket (operators): ``$KEYWARD_ADMIN_SOCKET``, else the default location."""
    return os.environ.get("KEYWARD_ADMIN_SOCKET") or os.path.join(default_socket_dir(), "admin.sock")


def socket_path(path: Union[str, "os.PathLike[str]", None], admin: bool) -> str:
    if path is not None:
        return os.fspath(path)
    return default_admin_socket() if admin else default_verify_socket()


def _uid_of(name: str) -> Optional[int]:
    try:
        import pwd

        return pwd.getpwnam(name).pw_uid
    except (ImportError, KeyError):
        return None


def daemon_uid(user: Union[str, int, None]) -> Optional[int]:
    """The uid named by ``user`` (a name or a number), else by ``$KEYWARD_DAEMON_USER``; ``None`` if
    neither says. An unknown name is a :class:`ValueError`."""
    if user is None:
        user = os.environ.get("KEYWARD_DAEMON_USER") or None
        if user is None:
            return None
    if isinstance(user, int):
        return user
    if user.isdigit():
        return int(user)
    uid = _uid_of(user)
    if uid is None:
        raise ValueError(f"no user {user!r} on this system")
    return uid


@functools.lru_cache(maxsize=None)
def _packaged_uid() -> Optional[int]:
    return _uid_of(PACKAGED_DAEMON_USER)


def accepts(uid: int, daemon_user: Optional[int]) -> bool:
    """Whether a daemon running as ``uid`` may be told a token."""
    return uid == 0 or uid == os.getuid() or uid == daemon_user or uid == _packaged_uid()


def listener_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a connected Unix stream socket."""
    _, uid, _ = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    return int(uid)


def check(sock: socket.socket, path: str, daemon_user: Optional[int]) -> None:
    """Refuses ``path`` unless the process listening on ``sock`` runs as a user this client accepts."""
    uid = listener_uid(sock)
    if not accepts(uid, daemon_user):
        raise UntrustedDaemon(path, uid)
