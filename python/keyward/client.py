""":class:`Client`: one connection to a ``keywardd`` socket, one request at a time, no event loop needed.

This mirrors the Rust ``BlockingClient``. A call sends its request and waits for the reply; the timeout is
the socket's read and write timeout (``SO_RCVTIMEO``/``SO_SNDTIMEO``, so a warm verify costs one
``send`` and one ``recv``). A connection that failed in any way, a timeout included, is dropped, because
the stream may hold half a frame or a late reply; the next call connects again. Before sending, an idle
connection the daemon has closed is noticed (a poll that does not wait) and replaced, so even a create goes out
on a working connection. If the connection breaks while a request is under way, only a request that is
safe to repeat (a read, a verify with ``cost=0``) is sent once more.

:meth:`Client.verify_many` pipelines: it keeps up to ``window`` verifies in flight on the connection and
matches the answers, which may come back in any order, by request id.

A :class:`Client` may be shared between threads (calls take turns on its one connection); an app server
with many threads is better served by one client per thread (``threading.local``) or by
:class:`keyward.aio.AsyncClient`.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import threading
from typing import Iterable, List, Literal, Optional, Sequence, Tuple, Union, overload

from . import _requests as rq
from . import _trust
from ._codec import MAX_REPLY
from .errors import ConnectError, ConnectionLost, DaemonError, KeywardError, ProtocolError, Timeout
from .messages import (
    HELLO_FRAME,
    AccountView,
    Activate,
    AuditEntry,
    AuditLog,
    AuditQuery,
    CreatedKey,
    CreateRequest,
    CreditChange,
    Credits,
    Deactivate,
    Edit,
    ErrorReply,
    FleetInit,
    FleetReport,
    FleetStatus,
    Get,
    GetAccount,
    ImportRequest,
    KeyCache,
    KeyChanges,
    KeyPage,
    KeyUsage,
    KeyView,
    ListLegacy,
    ListRequest,
    Ping,
    Pong,
    Regenerate,
    Reply,
    Request,
    Revoke,
    Secret,
    Stats,
    StatsReport,
    Usage,
    UsageReport,
    VerifyAnswer,
    VerifyRequest,
    WorkspaceUsage,
    WorkspaceUsageReport,
    decode_hello_reply,
    decode_reply,
    encode_request,
    encode_verify,
    peek_id,
)

__all__ = ["Client", "DEFAULT_TIMEOUT", "Token"]

#: How long a request may take unless a client is told otherwise, in seconds (as the Rust clients).
DEFAULT_TIMEOUT = 5.0
#: The shortest timeout a socket accepts (a zero socket timeout means "none").
_MIN_TIMEOUT = 0.001
#: Verifies :meth:`Client.verify_many` keeps in flight (the daemon's default per-connection limit).
DEFAULT_WINDOW = 128

_READ_CHUNK = 64 * 1024

_Socket = socket.socket

#: What a verify takes: the token (as text or a :class:`Secret`), or a whole :class:`VerifyRequest`.
Token = Union[str, Secret, VerifyRequest]


def _timeval(seconds: float) -> bytes:
    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1_000_000))


def _verify_fields(
    token: Token, scope: Optional[str], workspace: Optional[str], cost: int, limits: Sequence[str]
) -> Tuple[str, Optional[str], Optional[str], int, Sequence[str]]:
    """What a verify sends, without building a :class:`VerifyRequest` for it (the hot path)."""
    if isinstance(token, VerifyRequest):
        return token.token.expose(), token.scope, token.workspace, token.cost, token.limits
    if isinstance(token, Secret):
        return token.expose(), scope, workspace, cost, limits
    if not isinstance(token, str):
        raise TypeError(f"a token is a str or a Secret, not {type(token).__name__}")
    return token, scope, workspace, cost, limits


def verify_request(
    token: Token, scope: Optional[str], workspace: Optional[str], cost: int, limits: Sequence[str]
) -> VerifyRequest:
    if isinstance(token, VerifyRequest):
        return token
    return VerifyRequest(Secret(token), scope, workspace, cost, list(limits))


class Client:
    """A synchronous client for one ``keywardd`` socket.

    ``socket`` is the socket's path; by default the verify socket (``$KEYWARD_SOCKET``, else
    ``$XDG_RUNTIME_DIR/keyward/verify.sock``, else ``/tmp/keyward-$UID/verify.sock``), or with
    ``admin=True`` the admin socket (``$KEYWARD_ADMIN_SOCKET``, else ``admin.sock`` beside it).
    ``timeout`` (seconds) applies to connecting and the handshake and to every read and write.
    ``daemon_user`` (a name or uid; default ``$KEYWARD_DAEMON_USER``) is one more user the daemon may run
    as, besides root, this process's user and ``keyward``. ``actor`` is a label the daemon records in the
    audit log for every management request of this client.

    The client connects on first use (or at :meth:`connect`, or on entering a ``with`` block)::

        with Client() as client:
            answer = client.verify(token, scope="read:tables", workspace="acme")
            if answer.valid:
                ...
    """

    def __init__(
        self,
        socket: Union[str, "os.PathLike[str]", None] = None,
        *,
        admin: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        daemon_user: Union[str, int, None] = None,
        actor: Optional[str] = None,
    ) -> None:
        self._path = _trust.socket_path(socket, admin)
        self._timeout = max(float(timeout), _MIN_TIMEOUT)
        self._daemon_user = _trust.daemon_uid(daemon_user)
        self._actor = actor
        self._sock: Optional[_Socket] = None
        self._poller = select.poll()
        self._buf = bytearray()
        self._next_id = 1
        self._lock = threading.RLock()
        self._keys = KeyCache()

    # --- Settings ---

    @property
    def socket_path(self) -> str:
        return self._path

    @property
    def timeout(self) -> float:
        return self._timeout

    @timeout.setter
    def timeout(self, seconds: float) -> None:
        with self._lock:
            self._timeout = max(float(seconds), _MIN_TIMEOUT)
            if self._sock is not None:
                try:
                    self._set_timeouts(self._sock)
                except OSError:
                    self._drop()

    @property
    def actor(self) -> Optional[str]:
        """The label management requests are sent on behalf of, if any."""
        return self._actor

    def set_actor(self, actor: Optional[str]) -> None:
        """Sends every later management request on behalf of ``actor`` (``None``: as this process alone).
        ``Ping`` and ``Verify`` are never labelled."""
        self._actor = actor

    def __repr__(self) -> str:
        return f"Client(socket={self._path!r}, timeout={self._timeout!r}, actor={self._actor!r})"

    # --- Connection ---

    def connect(self) -> "Client":
        """Opens the connection now (if it is not open), so that an unreachable daemon is reported here."""
        with self._lock:
            self._live()
        return self

    def close(self) -> None:
        with self._lock:
            self._drop()

    def __enter__(self) -> "Client":
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _drop(self) -> None:
        sock, self._sock = self._sock, None
        self._buf.clear()
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def _set_timeouts(self, sock: "socket.socket") -> None:
        # Kernel socket timeouts rather than Python's: a read is then one recv(2), not poll(2) and recv(2).
        value = _timeval(self._timeout)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)

    def _live(self) -> "socket.socket":
        """The current connection if it is still open and idle, else a new one."""
        sock = self._sock
        # Between requests nothing should be readable: end of stream (the daemon restarted, or closed an
        # idle connection) and unexpected bytes both make the connection unusable. A poll with no timeout
        # says so without blocking or consuming anything, so that even a create, which is never retried,
        # goes out on a working connection.
        if sock is not None and (self._buf or self._poller.poll(0)):
            self._drop()
            sock = None
        if sock is None:
            sock = self._open()
            self._poller = select.poll()
            self._poller.register(sock.fileno(), select.POLLIN)
            self._sock = sock
        return sock

    def _open(self) -> "socket.socket":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._set_timeouts(sock)
            try:
                sock.connect(self._path)
            except (BlockingIOError, socket.timeout):
                raise Timeout(self._timeout) from None
            except OSError as error:
                raise ConnectError(self._path, error) from None
            _trust.check(sock, self._path, self._daemon_user)
            self._buf.clear()
            self._handshake(sock)
        except BaseException:
            sock.close()
            self._buf.clear()
            raise
        return sock

    def _handshake(self, sock: "socket.socket") -> None:
        try:
            sock.sendall(HELLO_FRAME)
        except (BrokenPipeError, ConnectionResetError) as error:
            # A daemon that refuses this peer writes its rejection at once and closes: report its reason,
            # not the broken pipe the hello then met.
            try:
                _check_hello(self._read_frame(sock))
            except DaemonError:
                raise
            except (KeywardError, OSError):
                pass
            raise ConnectionLost(f"I/O error talking to keywardd: {error}") from None
        except OSError as error:
            raise self._io_error(error) from None
        _check_hello(self._read_frame(sock))

    def _io_error(self, error: OSError) -> KeywardError:
        # An expired kernel socket timeout surfaces as EAGAIN (BlockingIOError).
        if isinstance(error, (BlockingIOError, socket.timeout)):
            return Timeout(self._timeout)
        return ConnectionLost(f"I/O error talking to keywardd: {error}")

    def _read_frame(self, sock: "socket.socket") -> bytes:
        """The next frame's payload; the announced length is checked before anything is read into it."""
        buf = self._buf
        while True:
            if len(buf) >= 4:
                n = int.from_bytes(buf[:4], "big")
                if n > MAX_REPLY:
                    raise ProtocolError(f"bad frame from keywardd: frame of {n} bytes exceeds the {MAX_REPLY}-byte limit")
                end = 4 + n
                if len(buf) >= end:
                    payload = bytes(buf[4:end])
                    del buf[:end]
                    return payload
            try:
                chunk = sock.recv(_READ_CHUNK)
            except OSError as error:
                raise self._io_error(error) from None
            if not chunk:
                raise ConnectionLost("connection closed in the middle of a frame" if buf else
                                     "keywardd closed the connection before answering")
            if not buf and len(chunk) >= 4 and len(chunk) == 4 + int.from_bytes(chunk[:4], "big"):
                return chunk[4:]  # the usual case: the read is exactly one reply
            buf += chunk

    # --- Exchanges ---

    def _request_id(self) -> int:
        request_id = self._next_id
        self._next_id += 1
        return request_id

    def _exchange(self, request_id: int, frame: bytes, retry: bool) -> Reply:
        with self._lock:
            try:
                return self._exchange_once(request_id, frame)
            except ConnectionLost:
                if not retry:
                    raise
                return self._exchange_once(request_id, frame)

    def _exchange_once(self, request_id: int, frame: bytes) -> Reply:
        """One request and its reply on a live connection. Any failure drops the connection: after a
        timeout or a broken frame its position in the stream is unknown."""
        sock = self._live()
        try:
            try:
                sock.sendall(frame)
            except OSError as error:
                raise self._io_error(error) from None
            payload = self._read_frame(sock)
        except BaseException:
            self._drop()
            raise
        try:
            answered, reply = decode_reply(payload, self._keys)
        except ProtocolError:
            # A reply this package cannot read (a newer daemon's) fails this request only: the frame's end
            # is known, so the connection is still in step, as long as the frame was the answer to it.
            if peek_id(payload) != request_id:
                self._drop()
            raise
        # Id 0 is the daemon's answer to a frame whose id it could not read; with one request on the wire,
        # that frame was ours.
        if answered == request_id or (answered == 0 and isinstance(reply, ErrorReply)):
            return reply
        self._drop()
        raise ProtocolError("keywardd answered a reply to another request where the reply to the request just "
                            "sent was expected")

    def call(self, request: Request) -> Reply:
        """Sends ``request`` (inside ``As`` if this client has an actor and it is a management request)
        and returns the reply. An error reply raises :class:`~keyward.errors.DaemonError`."""
        request = rq.on_behalf_of(self._actor, request)
        with self._lock:
            request_id = self._request_id()
        reply = self._exchange(request_id, encode_request(request_id, request), rq.is_idempotent(request))
        if isinstance(reply, ErrorReply):
            raise rq.refused(reply)
        return reply

    # --- Requests ---

    def ping(self) -> None:
        """Checks that the daemon answers."""
        rq.expect(self.call(Ping()), Pong, "Pong")

    def verify(
        self,
        token: Token,
        *,
        scope: Optional[str] = None,
        workspace: Optional[str] = None,
        cost: int = 1,
        limits: Sequence[str] = (),
    ) -> VerifyAnswer:
        """Verifies a token (either socket). Every outcome, valid or not, is an answer: see
        :attr:`VerifyAnswer.code`. ``token`` may be a whole :class:`VerifyRequest` instead."""
        text, scope, workspace, cost, limits = _verify_fields(token, scope, workspace, cost, limits)
        with self._lock:
            request_id = self._next_id
            self._next_id += 1
            frame = encode_verify(request_id, text, scope, workspace, cost, limits)
            del text
            return rq.verify_answer(self._exchange(request_id, frame, cost == 0))

    @overload
    def verify_many(
        self, requests: Iterable[Token], *, return_exceptions: Literal[False] = ..., window: int = ...
    ) -> List[VerifyAnswer]: ...

    @overload
    def verify_many(
        self, requests: Iterable[Token], *, return_exceptions: bool, window: int = ...
    ) -> List[Union[VerifyAnswer, DaemonError]]: ...

    def verify_many(
        self, requests: Iterable[Token], *, return_exceptions: bool = False, window: int = DEFAULT_WINDOW
    ) -> Union[List[VerifyAnswer], List[Union[VerifyAnswer, DaemonError]]]:
        """Verifies many tokens at once, pipelined on the one connection (at most ``window`` in flight), and
        returns the answers in the order of ``requests``.

        A verify the daemon refused with an error (``BUSY`` when its Argon2 queue is full) is raised as a
        :class:`~keyward.errors.DaemonError` once every answer has arrived, or, with
        ``return_exceptions=True``, put in the list in its place. Nothing is retried."""
        batch = [verify_request(r, None, None, 1, ()) for r in requests]
        if not batch:
            return []
        window = max(1, window)
        results: List[Union[VerifyAnswer, DaemonError, None]] = [None] * len(batch)
        with self._lock:
            ids = [self._request_id() for _ in batch]
            frames = [
                encode_verify(i, r.token.expose(), r.scope, r.workspace, r.cost, r.limits) for i, r in zip(ids, batch)
            ]
            waiting = {request_id: n for n, request_id in enumerate(ids)}
            unreadable: Optional[ProtocolError] = None
            sock = self._live()
            try:
                sent = self._send_frames(sock, frames, 0, min(window, len(frames)))
                while waiting:
                    payload = self._read_frame(sock)
                    try:
                        answered, reply = decode_reply(payload, self._keys)
                    except ProtocolError as error:
                        n = waiting.pop(peek_id(payload) or 0, None)
                        if n is None:
                            raise
                        unreadable = unreadable or error
                        continue
                    n = waiting.pop(answered, None)
                    if n is None:
                        if answered == 0 and isinstance(reply, ErrorReply):
                            raise rq.refused(reply)
                        raise ProtocolError("keywardd answered a request that is not waiting")
                    results[n] = rq.refused(reply) if isinstance(reply, ErrorReply) else rq.verify_answer(reply)
                    in_flight = sent - (len(frames) - len(waiting))
                    if sent < len(frames) and in_flight <= window // 2:
                        sent = self._send_frames(sock, frames, sent, min(len(frames), sent + window - in_flight))
            except BaseException:
                self._drop()
                raise
        if unreadable is not None:
            raise unreadable
        if not return_exceptions:
            for result in results:
                if isinstance(result, DaemonError):
                    raise result
        return results  # type: ignore[return-value]

    def _send_frames(self, sock: "socket.socket", frames: List[bytes], start: int, stop: int) -> int:
        try:
            sock.sendall(b"".join(frames[start:stop]))
        except OSError as error:
            raise self._io_error(error) from None
        return stop

    def create(self, request: CreateRequest) -> CreatedKey:
        """Creates a key (admin socket). The returned token is shown once and never stored by the daemon."""
        return rq.expect(self.call(request), CreatedKey, "Created")

    def list_page(self, request: ListRequest) -> KeyPage:
        """One page of a workspace's keys (admin socket)."""
        return rq.expect(self.call(request), KeyPage, "Keys")

    def list(self, workspace: str) -> List[KeyView]:
        """Every key of ``workspace``, oldest first, following pages to the end (admin socket)."""
        listing = rq.Listing(workspace)
        while listing.absorb(self.list_page(listing.next_request())):
            pass
        return listing.keys

    def get(self, key_id: str) -> KeyView:
        """Shows one key (admin socket)."""
        return rq.expect(self.call(Get(key_id)), KeyView, "Key")

    def revoke(self, key_id: str) -> KeyView:
        """Revokes a key for good (admin socket); returns it with status ``revoked``."""
        return rq.expect(self.call(Revoke(key_id)), KeyView, "Key")

    def edit(self, key_id: str, changes: KeyChanges) -> KeyView:
        """Changes a key's settings (admin socket); its token stays the same."""
        return rq.expect(self.call(Edit(key_id, changes)), KeyView, "Key")

    def regenerate(self, key_id: str, grace_seconds: int = 0) -> CreatedKey:
        """Gives a key a new token with the same settings (admin socket); the old one stops working at
        once, or after ``grace_seconds``."""
        return rq.expect(self.call(Regenerate(key_id, grace_seconds)), CreatedKey, "Created")

    def deactivate(self, key_id: str) -> KeyView:
        """Suspends a key until :meth:`activate`; its verifies answer ``INACTIVE`` (admin socket)."""
        return rq.expect(self.call(Deactivate(key_id)), KeyView, "Key")

    def activate(self, key_id: str) -> KeyView:
        """Undoes :meth:`deactivate` (admin socket)."""
        return rq.expect(self.call(Activate(key_id)), KeyView, "Key")

    def import_key(self, request: ImportRequest) -> KeyView:
        """Takes over a token issued by another system, so that it verifies as it is (admin socket)."""
        return rq.expect(self.call(request), KeyView, "Key")

    def audit(self, query: Optional[AuditQuery] = None) -> List[AuditEntry]:
        """Reads the audit log, newest first (admin socket)."""
        return rq.expect(self.call(query or AuditQuery()), AuditLog, "Audit").entries

    def set_account(self, account: str, workspaces: Sequence[str]) -> AccountView:
        """Sets the workspaces an account's legacy keys may act on, replacing the previous list (admin
        socket)."""
        return rq.expect(self.call(AccountView(account, list(workspaces))), AccountView, "Account")

    def get_account(self, account: str) -> AccountView:
        """An account's workspaces; an unknown account has none (admin socket)."""
        return rq.expect(self.call(GetAccount(account)), AccountView, "Account")

    def list_legacy(self, account: Optional[str] = None) -> List[KeyView]:
        """Legacy personal keys, of one account or of all, oldest first (admin socket)."""
        return rq.legacy_keys(self.call(ListLegacy(account)))

    def credits(self, key_id: str, change: CreditChange) -> KeyView:
        """Sets or adds to a key's credit balance (admin socket)."""
        return rq.expect(self.call(Credits(key_id, change)), KeyView, "Key")

    def usage(self, key_id: str) -> UsageReport:
        """One key's verifications by outcome: totals, hourly and daily (admin socket)."""
        return rq.expect(self.call(Usage(key_id)), UsageReport, "Usage")

    def workspace_usage(self, workspace: str) -> List[KeyUsage]:
        """Per-key totals of a workspace, most verifications first (admin socket)."""
        return rq.expect(self.call(WorkspaceUsage(workspace)), WorkspaceUsageReport, "WorkspaceUsage").keys

    def stats(self) -> StatsReport:
        """The daemon's counters (admin socket)."""
        return rq.expect(self.call(Stats()), StatsReport, "Stats")

    def fleet_init(self) -> FleetReport:
        """Fleet mode: creates or upgrades the engine's schema and, on a new fleet, imports this host's
        store (admin socket). Not retried: it writes."""
        return rq.expect(self.call(FleetInit()), FleetReport, "Fleet")

    def fleet_status(self) -> FleetReport:
        """Fleet mode: the engine, each host, its applied change and its lag (admin socket)."""
        return rq.expect(self.call(FleetStatus()), FleetReport, "Fleet")


def _check_hello(payload: bytes) -> None:
    reply = decode_hello_reply(payload)
    if isinstance(reply, ErrorReply):
        raise DaemonError.from_reply(reply.code, reply.message, handshake=True)
