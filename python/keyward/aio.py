""":class:`AsyncClient`: the asyncio client, one pipelined connection behind a cheap handle.

This mirrors the Rust async ``Client``. Any number of tasks share the connection: each request gets the
next id, registers a future under it, and writes its frame; the connection's protocol reads reply frames
as they arrive and completes the future registered under each reply's id, so replies may come back in
any order and concurrent ``await client.verify(...)`` calls pipeline by themselves. Frames written in the
same turn of the event loop go out in one write.

Each request has a deadline (the client's ``timeout``, from the call to the reply, opening the connection
included); a request past it fails with :class:`~keyward.errors.Timeout` and its late reply, if any, is
dropped by id, so the connection stays usable. At most ``max_in_flight`` requests wait on the connection;
more wait for a slot within their deadline.

When the connection breaks, every waiting request fails at once with
:class:`~keyward.errors.ConnectionLost`, and the next request opens a new connection. A request whose
connection was found closed before its frame was written goes to a new one (nothing was sent); one that
may have reached the daemon is not sent again. A connection belongs to the event loop that opened it; a
client used from another loop opens another.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from typing import Any, Dict, Iterable, List, Literal, Optional, Sequence, Tuple, Union, overload

from . import _requests as rq
from . import _trust
from ._codec import MAX_REPLY
from .client import DEFAULT_TIMEOUT, Token, _verify_fields, verify_request
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
    Stats,
    StatsReport,
    Usage,
    UsageReport,
    VerifyAnswer,
    WorkspaceUsage,
    WorkspaceUsageReport,
    decode_hello_reply,
    decode_reply,
    encode_request,
    encode_verify,
    peek_id,
)

__all__ = ["AsyncClient", "DEFAULT_MAX_IN_FLIGHT"]

#: Requests that may wait on the connection at once unless set otherwise (the daemon's default too).
DEFAULT_MAX_IN_FLIGHT = 128

class _Connection(asyncio.Protocol):
    """One handshaken connection: the futures waiting for replies, by request id, and the frames queued
    for the next write."""

    def __init__(self, loop: asyncio.AbstractEventLoop, keys: KeyCache, max_in_flight: int) -> None:
        self.loop = loop
        self.keys = keys
        self.transport: Optional[asyncio.Transport] = None
        self.buf = bytearray()
        self.waiters: Dict[int, "asyncio.Future[Reply]"] = {}
        self.hello: "asyncio.Future[None]" = loop.create_future()
        self.handshaken = False
        self.closed = False
        self.cause: KeywardError = ConnectionLost()
        #: An error the daemon answered with id 0 (a frame it could not read, a stalled frame), which
        #: usually comes right before it closes: the reason given to everyone still waiting.
        self.last_refusal: Optional[ErrorReply] = None
        self.slots = asyncio.Semaphore(max_in_flight)
        self.out: List[bytes] = []
        self.flush_scheduled = False

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos, size = 0, len(buf)
        try:
            while size - pos >= 4:
                length = int.from_bytes(buf[pos : pos + 4], "big")
                if length > MAX_REPLY:
                    raise ProtocolError(
                        f"bad frame from keywardd: frame of {length} bytes exceeds the {MAX_REPLY}-byte limit"
                    )
                end = pos + 4 + length
                if end > size:
                    break
                payload = bytes(buf[pos + 4 : end])
                pos = end
                if not self.handshaken:
                    self._answer_hello(payload)
                    continue
                try:
                    answered, reply = decode_reply(payload, self.keys)
                except ProtocolError as error:
                    # A reply this package cannot read (a newer daemon's) fails its request only; the frame's
                    # end is known, so the connection is still in step. Without even an id, nobody can be
                    # told, and the connection is given up.
                    answered_id = peek_id(payload)
                    if answered_id is None:
                        raise
                    unreadable = self.waiters.pop(answered_id, None)
                    if unreadable is not None and not unreadable.done():
                        unreadable.set_exception(error)
                    continue
                waiter = self.waiters.pop(answered, None)
                if waiter is not None:
                    if not waiter.done():
                        waiter.set_result(reply)
                elif answered == 0 and isinstance(reply, ErrorReply):
                    self.last_refusal = reply
        except KeywardError as error:
            self._fail(error)
            if self.transport is not None:
                self.transport.abort()
            return
        finally:
            del buf[:pos]

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if exc is not None:
            cause: KeywardError = ConnectionLost(f"I/O error talking to keywardd: {exc}")
        elif self.last_refusal is not None:
            cause = ConnectionLost(f"keywardd closed the connection: {self.last_refusal}")
        elif self.buf:
            cause = ConnectionLost("connection closed in the middle of a frame")
        else:
            cause = ConnectionLost()
        self._fail(cause)

    def eof_received(self) -> Optional[bool]:
        return False  # close the transport

    # --- The caller side ---

    def _answer_hello(self, payload: bytes) -> None:
        reply = decode_hello_reply(payload)
        if self.hello.done():
            return
        if isinstance(reply, ErrorReply):
            self.hello.set_exception(DaemonError.from_reply(reply.code, reply.message, handshake=True))
        else:
            self.handshaken = True
            self.hello.set_result(None)

    def _fail(self, cause: KeywardError) -> None:
        """Marks the connection closed and fails every waiting request with ``cause``; only the first call
        does anything."""
        if self.closed:
            return
        self.closed = True
        self.cause = cause
        waiters, self.waiters = self.waiters, {}
        for waiter in waiters.values():
            if not waiter.done():
                waiter.set_exception(_copy(cause))
        if not self.hello.done():
            self.hello.set_exception(_copy(cause))
            self.hello.exception()  # retrieved: nobody may be waiting for it any more

    def send(self, frame: bytes) -> None:
        """Writes ``frame``, or queues it for the write at the end of this turn of the loop when other
        requests are under way (many frames in one write is most of what pipelining saves)."""
        if self.out:
            self.out.append(frame)
        elif len(self.waiters) > 1:
            self.out.append(frame)
            if not self.flush_scheduled:
                self.flush_scheduled = True
                self.loop.call_soon(self._flush)
        else:
            assert self.transport is not None
            self.transport.write(frame)

    def _flush(self) -> None:
        self.flush_scheduled = False
        if self.out and not self.closed and self.transport is not None:
            data = b"".join(self.out)
            self.out.clear()
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _copy(error: KeywardError) -> KeywardError:
    """A fresh exception per waiter (an exception object carries the traceback of where it was raised)."""
    return ConnectionLost(str(error)) if isinstance(error, ConnectionLost) else error


def _expire(waiter: "asyncio.Future[Any]", seconds: float) -> None:
    if not waiter.done():
        waiter.set_exception(Timeout(seconds))


class _Shared:
    """What every handle of one client shares: settings, the connection, ids and decoded keys."""

    def __init__(
        self, path: str, timeout: float, daemon_user: Optional[int], max_in_flight: int
    ) -> None:
        self.path = path
        self.timeout = timeout
        self.daemon_user = daemon_user
        self.max_in_flight = max_in_flight
        self.keys = KeyCache()
        # Id 0 is what the daemon answers when it cannot read a request's id; never use it.
        self.ids = itertools.count(1)
        self.connection: Optional[_Connection] = None
        self.opening: Optional[Tuple[asyncio.AbstractEventLoop, asyncio.Lock]] = None

    def lock(self, loop: asyncio.AbstractEventLoop) -> asyncio.Lock:
        # Held while connecting, so that a burst of requests on a closed connection opens one, not one each.
        if self.opening is None or self.opening[0] is not loop:
            self.opening = (loop, asyncio.Lock())
        return self.opening[1]


class AsyncClient:
    """An asyncio client for one ``keywardd`` socket; the arguments are those of
    :class:`keyward.Client`, plus ``max_in_flight``.

    Create one per process (it connects on first use, or at :meth:`connect`) and share it between tasks::

        client = AsyncClient()
        answers = await asyncio.gather(*(client.verify(t, scope="read:tables") for t in tokens))

    :meth:`with_actor` gives a handle on the same connection whose management requests are sent on behalf
    of a label (e.g. the dashboard user's name).
    """

    def __init__(
        self,
        socket: Union[str, "os.PathLike[str]", None] = None,
        *,
        admin: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        daemon_user: Union[str, int, None] = None,
        actor: Optional[str] = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    ) -> None:
        self._shared = _Shared(
            _trust.socket_path(socket, admin),
            max(float(timeout), 0.001),
            _trust.daemon_uid(daemon_user),
            max(1, max_in_flight),
        )
        self._actor = actor

    def with_actor(self, actor: Optional[str]) -> "AsyncClient":
        """A handle on the same connection whose management requests are sent on behalf of ``actor`` (or,
        with ``None``, as this process alone). ``Ping`` and ``Verify`` are never labelled."""
        handle = object.__new__(AsyncClient)
        handle._shared = self._shared
        handle._actor = actor
        return handle

    @property
    def actor(self) -> Optional[str]:
        return self._actor

    @property
    def socket_path(self) -> str:
        return self._shared.path

    @property
    def timeout(self) -> float:
        return self._shared.timeout

    def __repr__(self) -> str:
        return f"AsyncClient(socket={self._shared.path!r}, timeout={self._shared.timeout!r}, actor={self._actor!r})"

    # --- Connection ---

    async def connect(self) -> "AsyncClient":
        """Opens the connection now, so that an unreachable daemon is reported here."""
        loop = asyncio.get_running_loop()
        await self._connection(loop, loop.time() + self._shared.timeout)
        return self

    async def close(self) -> None:
        """Closes the connection; requests still waiting fail with ``ConnectionLost``. The next request
        opens a new one."""
        connection, self._shared.connection = self._shared.connection, None
        if connection is not None and not connection.loop.is_closed():
            connection.close()
            if connection.loop is asyncio.get_running_loop():
                await asyncio.sleep(0)  # let the transport finish closing

    async def __aenter__(self) -> "AsyncClient":
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _connection(self, loop: asyncio.AbstractEventLoop, deadline: float) -> _Connection:
        shared = self._shared
        connection = shared.connection
        if connection is not None and not connection.closed and connection.loop is loop:
            return connection
        lock = shared.lock(loop)
        try:
            await asyncio.wait_for(lock.acquire(), max(deadline - loop.time(), 0))
        except asyncio.TimeoutError:
            raise Timeout(shared.timeout) from None
        try:
            connection = shared.connection
            if connection is not None and not connection.closed and connection.loop is loop:
                return connection
            connection = await self._open(loop, deadline)
            shared.connection = connection
            return connection
        finally:
            lock.release()

    async def _open(self, loop: asyncio.AbstractEventLoop, deadline: float) -> _Connection:
        shared = self._shared
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise Timeout(shared.timeout)
        try:
            transport, connection = await asyncio.wait_for(
                loop.create_unix_connection(lambda: _Connection(loop, shared.keys, shared.max_in_flight), shared.path),
                remaining,
            )
        except asyncio.TimeoutError:
            raise Timeout(shared.timeout) from None
        except OSError as error:
            raise ConnectError(shared.path, error) from None
        try:
            _trust.check(transport.get_extra_info("socket"), shared.path, shared.daemon_user)
            transport.write(HELLO_FRAME)
            await asyncio.wait_for(connection.hello, max(deadline - loop.time(), 0))
        except asyncio.TimeoutError:
            transport.abort()
            raise Timeout(shared.timeout) from None
        except BaseException:
            transport.abort()
            raise
        return connection

    # --- Exchanges ---

    async def _send(self, request_id: int, frame: bytes) -> Reply:
        """Sends a framed request and waits for its reply until the deadline. A frame that never left (its
        connection closed first) gets one more try on a new connection."""
        shared = self._shared
        loop = asyncio.get_running_loop()
        deadline = loop.time() + shared.timeout
        for attempt in (1, 2):
            connection = await self._connection(loop, deadline)
            slots = connection.slots
            if slots.locked():
                try:
                    await asyncio.wait_for(slots.acquire(), max(deadline - loop.time(), 0))
                except asyncio.TimeoutError:
                    raise Timeout(shared.timeout) from None
            else:
                await slots.acquire()
            try:
                if connection.closed:
                    if attempt == 1:
                        continue
                    raise _copy(connection.cause)
                waiter: "asyncio.Future[Reply]" = loop.create_future()
                connection.waiters[request_id] = waiter
                timer = loop.call_at(deadline, _expire, waiter, shared.timeout)
                try:
                    connection.send(frame)
                    return await waiter
                finally:
                    timer.cancel()
                    connection.waiters.pop(request_id, None)
            finally:
                slots.release()
        raise AssertionError("unreachable")

    async def call(self, request: Request) -> Reply:
        """Sends ``request`` (inside ``As`` if this handle has an actor and it is a management request)
        and returns the reply. An error reply raises :class:`~keyward.errors.DaemonError`."""
        request = rq.on_behalf_of(self._actor, request)
        request_id = next(self._shared.ids)
        reply = await self._send(request_id, encode_request(request_id, request))
        if isinstance(reply, ErrorReply):
            raise rq.refused(reply)
        return reply

    # --- Requests ---

    async def ping(self) -> None:
        """Checks that the daemon answers."""
        rq.expect(await self.call(Ping()), Pong, "Pong")

    async def verify(
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
        request_id = next(self._shared.ids)
        frame = encode_verify(request_id, text, scope, workspace, cost, limits)
        del text
        return rq.verify_answer(await self._send(request_id, frame))

    @overload
    async def verify_many(
        self, requests: Iterable[Token], *, return_exceptions: Literal[False] = ...
    ) -> List[VerifyAnswer]: ...

    @overload
    async def verify_many(
        self, requests: Iterable[Token], *, return_exceptions: bool
    ) -> List[Union[VerifyAnswer, DaemonError]]: ...

    async def verify_many(
        self, requests: Iterable[Token], *, return_exceptions: bool = False
    ) -> Union[List[VerifyAnswer], List[Union[VerifyAnswer, DaemonError]]]:
        """Verifies many tokens at once, pipelined, and returns the answers in the order of ``requests``
        (as ``asyncio.gather`` of :meth:`verify` would, without a task per verify). A verify the daemon
        refused with an error is raised once every answer has arrived, or with ``return_exceptions=True``
        put in the list in its place. The deadline is the client's timeout for the whole batch."""
        batch = [verify_request(r, None, None, 1, ()) for r in requests]
        if not batch:
            return []
        shared = self._shared
        loop = asyncio.get_running_loop()
        deadline = loop.time() + shared.timeout
        connection = await self._connection(loop, deadline)
        slots = connection.slots
        registered: List[Tuple[int, "asyncio.Future[Reply]"]] = []
        timers: List[asyncio.TimerHandle] = []

        def release(_: object) -> None:
            slots.release()

        try:
            for request in batch:
                if slots.locked():
                    try:
                        await asyncio.wait_for(slots.acquire(), max(deadline - loop.time(), 0))
                    except asyncio.TimeoutError:
                        raise Timeout(shared.timeout) from None
                else:
                    await slots.acquire()
                if connection.closed:
                    slots.release()
                    raise _copy(connection.cause)
                request_id = next(shared.ids)
                waiter: "asyncio.Future[Reply]" = loop.create_future()
                waiter.add_done_callback(release)
                connection.waiters[request_id] = waiter
                registered.append((request_id, waiter))
                connection.send(
                    encode_verify(request_id, request.token.expose(), request.scope, request.workspace,
                                  request.cost, request.limits)
                )
            timers.append(loop.call_at(deadline, _expire_all, [w for _, w in registered], shared.timeout))
            outcomes = await asyncio.gather(*(w for _, w in registered), return_exceptions=True)
        finally:
            for timer in timers:
                timer.cancel()
            for request_id, waiter in registered:
                connection.waiters.pop(request_id, None)
                if not waiter.done():
                    waiter.cancel()
        results: List[Union[VerifyAnswer, DaemonError]] = []
        for outcome in outcomes:
            if isinstance(outcome, ErrorReply):
                results.append(rq.refused(outcome))
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                results.append(rq.verify_answer(outcome))
        if not return_exceptions:
            for result in results:
                if isinstance(result, DaemonError):
                    raise result
        return results

    async def create(self, request: CreateRequest) -> CreatedKey:
        """Creates a key (admin socket). The returned token is shown once and never stored by the daemon."""
        return rq.expect(await self.call(request), CreatedKey, "Created")

    async def list_page(self, request: ListRequest) -> KeyPage:
        """One page of a workspace's keys (admin socket)."""
        return rq.expect(await self.call(request), KeyPage, "Keys")

    async def list(self, workspace: str) -> List[KeyView]:
        """Every key of ``workspace``, oldest first, following pages to the end (admin socket); each page
        is one request with its own timeout."""
        listing = rq.Listing(workspace)
        while listing.absorb(await self.list_page(listing.next_request())):
            pass
        return listing.keys

    async def get(self, key_id: str) -> KeyView:
        """Shows one key (admin socket)."""
        return rq.expect(await self.call(Get(key_id)), KeyView, "Key")

    async def revoke(self, key_id: str) -> KeyView:
        """Revokes a key for good (admin socket); returns it with status ``revoked``."""
        return rq.expect(await self.call(Revoke(key_id)), KeyView, "Key")

    async def edit(self, key_id: str, changes: KeyChanges) -> KeyView:
        """Changes a key's settings (admin socket); its token stays the same."""
        return rq.expect(await self.call(Edit(key_id, changes)), KeyView, "Key")

    async def regenerate(self, key_id: str, grace_seconds: int = 0) -> CreatedKey:
        """Gives a key a new token with the same settings (admin socket)."""
        return rq.expect(await self.call(Regenerate(key_id, grace_seconds)), CreatedKey, "Created")

    async def deactivate(self, key_id: str) -> KeyView:
        """Suspends a key until :meth:`activate` (admin socket)."""
        return rq.expect(await self.call(Deactivate(key_id)), KeyView, "Key")

    async def activate(self, key_id: str) -> KeyView:
        """Undoes :meth:`deactivate` (admin socket)."""
        return rq.expect(await self.call(Activate(key_id)), KeyView, "Key")

    async def import_key(self, request: ImportRequest) -> KeyView:
        """Takes over a token issued by another system (admin socket)."""
        return rq.expect(await self.call(request), KeyView, "Key")

    async def audit(self, query: Optional[AuditQuery] = None) -> List[AuditEntry]:
        """Reads the audit log, newest first (admin socket)."""
        return rq.expect(await self.call(query or AuditQuery()), AuditLog, "Audit").entries

    async def set_account(self, account: str, workspaces: Sequence[str]) -> AccountView:
        """Sets the workspaces an account's legacy keys may act on (admin socket)."""
        return rq.expect(await self.call(AccountView(account, [*workspaces])), AccountView, "Account")

    async def get_account(self, account: str) -> AccountView:
        """An account's workspaces (admin socket)."""
        return rq.expect(await self.call(GetAccount(account)), AccountView, "Account")

    async def list_legacy(self, account: Optional[str] = None) -> List[KeyView]:
        """Legacy personal keys, of one account or of all (admin socket)."""
        return rq.legacy_keys(await self.call(ListLegacy(account)))

    async def credits(self, key_id: str, change: CreditChange) -> KeyView:
        """Sets or adds to a key's credit balance (admin socket)."""
        return rq.expect(await self.call(Credits(key_id, change)), KeyView, "Key")

    async def usage(self, key_id: str) -> UsageReport:
        """One key's verifications by outcome (admin socket)."""
        return rq.expect(await self.call(Usage(key_id)), UsageReport, "Usage")

    async def workspace_usage(self, workspace: str) -> List[KeyUsage]:
        """Per-key totals of a workspace (admin socket)."""
        return rq.expect(await self.call(WorkspaceUsage(workspace)), WorkspaceUsageReport, "WorkspaceUsage").keys

    async def stats(self) -> StatsReport:
        """The daemon's counters (admin socket)."""
        return rq.expect(await self.call(Stats()), StatsReport, "Stats")

    async def fleet_init(self) -> FleetReport:
        """Fleet mode: creates the engine's schema and imports this host's store (admin socket)."""
        return rq.expect(await self.call(FleetInit()), FleetReport, "Fleet")

    async def fleet_status(self) -> FleetReport:
        """Fleet mode: the engine and every host (admin socket)."""
        return rq.expect(await self.call(FleetStatus()), FleetReport, "Fleet")


def _expire_all(waiters: List["asyncio.Future[Any]"], seconds: float) -> None:
    for waiter in waiters:
        _expire(waiter, seconds)
